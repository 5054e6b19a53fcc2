#!/bin/bash
# Builds and runs the CPU kernel harness (bench/kernels.c) against worker/cpu.
# usage: bench/kernels.sh [n_threads] [min_seconds_per_case] [type|all] [n]
# (env: KERNELS_IN_CACHE=1 keeps weights cache-resident; KERNELS_GEMM_MIN=n
# turns on the OpenBLAS path from batch n)
# Numbers from a shared machine are noisy: compare runs made back to back.
set -euo pipefail
src=$(cd "$(dirname "$0")/.." && pwd)
out=${TMPDIR:-/tmp}/helium-kernels.$$
trap 'rm -f "$out"' EXIT
gcc -std=gnu11 -O3 -march=native -fopenmp -Wall -Wextra -Wno-unused-parameter \
    -I"$src/common" -I"$src/worker" -I"$src/worker/cpu" \
    "$src/bench/kernels.c" "$src/worker/cpu/cpu_ops.c" "$src/worker/cpu/cpu_quant.c" \
    "$src/common/herr.c" "$src/common/gguf.c" \
    -o "$out" $(pkg-config --libs openblas 2>/dev/null || echo -lopenblas) -lm
"$out" "$@"
