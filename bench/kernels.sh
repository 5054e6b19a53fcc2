#!/bin/bash
# Builds and runs the CPU kernel harness (bench/kernels.c) against worker/cpu.
# usage: bench/kernels.sh [n_threads] [min_seconds_per_case] [type|all] [n]
# (env: KERNELS_IN_CACHE=1 keeps weights cache-resident; KERNELS_GEMM_MIN=n
# turns on the OpenBLAS path from batch n)
# Numbers from a shared machine are noisy: compare runs made back to back.
set -euo pipefail
src=$(cd "$(dirname "$0")/.." && pwd)
# the harness is the CMake target bench_kernels (linked against the engine
# library); a Release build dir, build/ unless HELIUM_BUILD_DIR says otherwise
build=${HELIUM_BUILD_DIR:-$src/build}
[ -f "$build/CMakeCache.txt" ] || cmake -S "$src" -B "$build" -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build "$build" --target bench_kernels -j "$(nproc)" >/dev/null
"$build/bench/bench_kernels" "$@"
