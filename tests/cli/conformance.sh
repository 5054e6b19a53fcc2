#!/usr/bin/env bash
# Conformance with llama.cpp, from committed vectors (no llama.cpp needed):
# regenerates each model in tests/conformance/vectors/manifest.json with
# helium-mkmodel (its sha256 must match, else the vectors are stale), compares
# `helium-worker eval` logits at every position with llama.cpp's (relative L2
# <= 1e-4 F32, 1e-3 F16, 2e-2 Q8_0) and `helium-worker tokenize --no-bos` with
# llama.cpp's ids for the strings in tokenize.json. The work is done by
# tests/conformance/check.py (python3 standard library only).
# Refresh the vectors with `make conformance`.
#
# Env: HELIUM_BIN (dir holding helium-mkmodel and helium-worker), HELIUM_SRC.
set -u
here=$(cd "$(dirname "$0")" && pwd)
SRC=${HELIUM_SRC:-$(cd "$here/../.." && pwd)}
BIN=${HELIUM_BIN:-$SRC/build/bin}
PY=$(command -v python3 || true)
for exe in helium-mkmodel helium-worker; do
    if [ ! -x "$BIN/$exe" ]; then
        echo "FAIL: $BIN/$exe not found or not executable (set HELIUM_BIN)"
        exit 1
    fi
done
if [ -z "$PY" ]; then
    echo "FAIL: python3 not found (needed to read the vectors)"
    exit 1
fi
exec "$PY" "$SRC/tests/conformance/check.py" --bin "$BIN" --vectors "$SRC/tests/conformance/vectors" "$@"
