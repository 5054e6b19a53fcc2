#!/usr/bin/env bash
# bench/gpu/run.sh: the GPU benchmarks, on the GPU machine, after
# `tests/gpu/run.sh pack` on a build machine (carry .gpu-pack). Prints each
# kernel against its floor (bench_kernels.c says how each is measured); the
# output goes to $OUT/bench_gpu.txt too. Never run yet (docs/gpu.md).
set -uo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
source "$ROOT/tests/gpu/run.sh" libs
LOG=${OUT:-/tmp/helium-gpu}
mkdir -p "$LOG"
nvidia-smi -L
timeout 300 "$HELIUM_BIN/bench_gpu_kernels" 2>&1 | tee "$LOG/bench_gpu.txt"
