#!/usr/bin/env bash
# Builds llama.cpp's llama-server from the llama.cpp source that PyPI's
# llama-cpp-python source distribution carries (vendor/llama.cpp), for
# bench/peer. Nothing lands in the repository: the sdist, the source tree and
# the build live in ~/.cache/helium/llama.cpp-<version>-<flags hash>/, and a
# second run with the same version and flags only prints the binary's path.
#
# Flags: portable x86 (GGML_NATIVE=OFF) with AVX2, plus AVX-512/VNNI only
# where /proc/cpuinfo shows avx512f; AMX off; no libcurl. Same flags, same
# hash, same cache directory.
#
# Usage: bench/peer/build-llama-server.sh [-jN]   (default -j2, run under nice)
# Prints the absolute path of llama-server on its last line of stdout.
# Env: LLAMA_CPP_PY_VERSION pins the llama-cpp-python sdist (default: newest).
set -euo pipefail

JOBS="${1:--j2}"
CACHE="${HELIUM_CACHE:-$HOME/.cache/helium}"
mkdir -p "$CACHE/sdist"

FLAGS=(-DCMAKE_BUILD_TYPE=Release -DGGML_NATIVE=OFF -DGGML_AVX2=ON
       -DGGML_AMX_INT8=OFF -DGGML_AMX_TILE=OFF -DGGML_AMX_BF16=OFF
       -DLLAMA_CURL=OFF -DBUILD_SHARED_LIBS=OFF -DLLAMA_BUILD_TESTS=OFF
       -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_SERVER=ON)
if grep -qw avx512f /proc/cpuinfo; then
  FLAGS+=(-DGGML_AVX512=ON -DGGML_AVX512_VNNI=ON)
fi

# 1. the sdist (cached; pip only runs when no tarball of the wanted version is here)
spec="llama-cpp-python"
if [ -n "${LLAMA_CPP_PY_VERSION:-}" ]; then spec="llama-cpp-python==$LLAMA_CPP_PY_VERSION"; fi
tarball=""
if [ -n "${LLAMA_CPP_PY_VERSION:-}" ]; then
  tarball=$(ls "$CACHE/sdist/llama_cpp_python-$LLAMA_CPP_PY_VERSION.tar.gz" 2>/dev/null || true)
else
  tarball=$(ls -t "$CACHE"/sdist/llama_cpp_python-*.tar.gz 2>/dev/null | head -1 || true)
fi
if [ -z "$tarball" ]; then
  pip download --no-deps --no-binary :all: -d "$CACHE/sdist" "$spec" >&2
  tarball=$(ls -t "$CACHE"/sdist/llama_cpp_python-*.tar.gz | head -1)
fi
version=$(basename "$tarball" .tar.gz); version=${version#llama_cpp_python-}

hash=$(printf '%s\n' "${FLAGS[@]}" | sha256sum | cut -c1-12)
dir="$CACHE/llama.cpp-$version-$hash"
bin="$dir/build/bin/llama-server"
if [ -x "$bin" ]; then echo "$bin"; exit 0; fi

# 2. the source: vendor/llama.cpp out of the sdist
mkdir -p "$dir"
if [ ! -f "$dir/src/CMakeLists.txt" ]; then
  rm -rf "$dir/src" "$dir/unpack"; mkdir -p "$dir/unpack"
  tar -xzf "$tarball" -C "$dir/unpack"
  mv "$dir/unpack/llama_cpp_python-$version/vendor/llama.cpp" "$dir/src"
  rm -rf "$dir/unpack"
fi
printf '%s\n' "${FLAGS[@]}" > "$dir/flags.txt"

# 3. configure and build the one target
nice cmake -S "$dir/src" -B "$dir/build" "${FLAGS[@]}" >&2
nice cmake --build "$dir/build" --target llama-server "$JOBS" >&2
test -x "$bin"
echo "$bin"
