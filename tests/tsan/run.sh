#!/usr/bin/env bash
# ThreadSanitizer check (issue 14): builds the tree with HELIUM_SANITIZE=thread
# in its own build dir and runs, clean of data races,
#   - tsan_copyout: the engine's KV copy-out from the pull server's side of
#     the cache lock while the engine thread imports and evicts pages;
#   - tests/cli/cluster_transfer.sh: a real cluster (coordinator, two workers
#     with their pull server threads) moving KV pages between workers.
# libzmq and libgomp are not instrumented: races TSan reports inside them
# (their I/O threads reading buffers we handed over) are suppressed by
# tests/tsan/suppressions.txt, which names only those libraries.
# usage: tests/tsan/run.sh [BUILD_DIR]   (default build-tsan)
set -euo pipefail
SRC="$(cd "$(dirname "$0")/../.." && pwd)"
B="${1:-$SRC/build-tsan}"
case "$B" in /*) ;; *) B="$SRC/$B" ;; esac
cmake -S "$SRC" -B "$B" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DHELIUM_SANITIZE=thread -DHELIUM_CUDA=OFF \
  -DHELIUM_WERROR=ON >/dev/null
cmake --build "$B" -j "$(nproc)" --target helium-worker helium-coordinator heliumctl helium-mkmodel tsan_copyout
export TSAN_OPTIONS="halt_on_error=1 exitcode=66 second_deadlock_stack=1 suppressions=$SRC/tests/tsan/suppressions.txt"
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
"$B/bin/helium-mkmodel" --preset tiny --arch llama --dtype f32 --seed 7 -o "$TMP/tiny.gguf" >/dev/null
"$B/bin/tsan_copyout" "$TMP/tiny.gguf"
HELIUM_BIN="$B/bin" HELIUM_SRC="$SRC" HELIUM_BUILD="$B" bash "$SRC/tests/cli/cluster_transfer.sh"
echo "tsan: 2 passed, 0 failed"
