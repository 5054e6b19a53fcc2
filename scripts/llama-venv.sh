#!/usr/bin/env bash
# scripts/llama-venv.sh: builds (once) the llama.cpp reference Helium compares
# against, llama-cpp-python pinned to one version, in a venv at
# $HELIUM_CACHE/venv-llama (default ~/.cache/helium/venv-llama), and prints
# the venv's python. Idempotent: a venv that already imports llama_cpp at the
# pinned version is reused at once.
#
# Built from source with CPU flags chosen from /proc/cpuinfo, never -march=
# native and never AMX: the prebuilt/native flags crash on quantized models on
# some Xeons here, and an AVX-512 build crashes on an AVX2-only EPYC. So the
# build is per machine kind (the venv records its flags in BUILD_FLAGS and is
# rebuilt when they differ). Takes ~15-20 minutes on 2 cores.
#
# Used by scripts/fetch-model.sh (llama.cpp's quantizer writes the derived
# test models), tests/conformance (vectors) and bench/engine-real.
set -euo pipefail
VERSION=0.3.36
CACHE=${HELIUM_CACHE:-$HOME/.cache/helium}
VENV=${HELIUM_LLAMA_VENV:-$CACHE/venv-llama}
flags="-DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON"
flags+=" -DGGML_AMX_INT8=OFF -DGGML_AMX_TILE=OFF -DGGML_AMX_BF16=OFF"
if grep -qw avx512f /proc/cpuinfo; then
    flags+=" -DGGML_AVX512=ON"
    grep -qw avx512_vnni /proc/cpuinfo && flags+=" -DGGML_AVX512_VNNI=ON"
else
    flags+=" -DGGML_AVX512=OFF"
fi
flags+=" -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF"
if [ -x "$VENV/bin/python" ] && [ "$(cat "$VENV/BUILD_FLAGS" 2>/dev/null)" = "$VERSION $flags" ] &&
   "$VENV/bin/python" -c "import llama_cpp, numpy, sys; sys.exit(llama_cpp.__version__ != '$VERSION')" 2>/dev/null; then
    echo "$VENV/bin/python"
    exit 0
fi
command -v python3 >/dev/null || { echo "llama-venv: python3 is missing (scripts/install-deps.sh)" >&2; exit 1; }
echo "llama-venv: building llama-cpp-python $VERSION into $VENV (once; ~15-20 min on 2 cores)" >&2
rm -rf "$VENV"
python3 -m venv "$VENV" >&2
export CMAKE_ARGS="$flags"
export CMAKE_BUILD_PARALLEL_LEVEL=${CMAKE_BUILD_PARALLEL_LEVEL:-$(nproc)}
if ! nice "$VENV/bin/pip" install -q --disable-pip-version-check "llama-cpp-python==$VERSION" numpy >&2; then
    echo "llama-venv: building llama-cpp-python failed (no network to PyPI, or no compiler?)" >&2
    exit 1
fi
echo "$VERSION $flags" > "$VENV/BUILD_FLAGS"
echo "$VENV/bin/python"
