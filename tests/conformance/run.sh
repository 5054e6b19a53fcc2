#!/usr/bin/env bash
# tests/conformance/run.sh BUILD_DIR: regenerates the llama.cpp conformance
# vectors in tests/conformance/vectors/ (called by `make conformance`). Needs a
# Python with llama-cpp-python, numpy and gguf: $HELIUM_PYTHON, else
# /opt/helium-venv/bin/python. Afterwards it runs tests/cli/conformance.sh so
# the fresh vectors are checked against Helium at once.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
src=$(cd "$here/../.." && pwd)
build=${1:-build}
case $build in /*) ;; *) build=$src/$build ;; esac
py=${HELIUM_PYTHON:-/opt/helium-venv/bin/python}
if ! "$py" -c "import llama_cpp, numpy" 2>/dev/null; then
    echo "run.sh: $py lacks llama_cpp/numpy (pip install llama-cpp-python numpy gguf)" >&2
    exit 1
fi
"$py" "$here/gen_vectors.py" --bin "$build/bin" --out "$here/vectors"
HELIUM_BIN=$build/bin HELIUM_SRC=$src bash "$src/tests/cli/conformance.sh"
