#!/usr/bin/env bash
# tests/gpu/run.sh: the GPU checks in one command (see docs/gpu.md).
#
#   tests/gpu/run.sh pack   on a build machine (CUDA toolkit, no GPU needed):
#                           Release build with CUDA into build-gpu/, then the test
#                           programs, helium-mkmodel, helium-worker and every shared
#                           library ldd names that a bare CUDA machine lacks (not the
#                           CUDA libraries, not glibc / libstdc++), xz-compressed
#                           into .gpu-pack/pack.tar.xz (about 12 MB: the device tool
#                           carries at most 64 MiB with the tree; OpenBLAS alone is
#                           36 MB uncompressed). .gpu-pack/ and build-gpu/ are
#                           git-ignored through .git/info/exclude.
#   tests/gpu/run.sh run    on the GPU machine, from the repository root, with
#                           .gpu-pack carried along: runs every GPU program, prints
#                           one line per check and a summary; logs under $OUT (or
#                           /tmp/helium-gpu). Needs no compiler, no package.
#   tests/gpu/run.sh        pack, then run (a machine that has both).
#
# For the device tool: pack here, then
#   run(command="bash tests/gpu/run.sh run", carry=[".gpu-pack"], timeout_s=540)
# Budget: the whole run is meant to finish in under 8 minutes on an H100/H200
# (each program is capped by `timeout`).
set -uo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
PACK=$ROOT/.gpu-pack
UNPACK=${HELIUM_GPU_UNPACK:-/tmp/helium-gpu-pack}
MODE=${1:-all}

pack() {
  set -e
  local B=$ROOT/build-gpu
  cmake -S "$ROOT" -B "$B" -DCMAKE_BUILD_TYPE=Release -DHELIUM_CUDA=ON -DHELIUM_NATIVE=OFF \
    -DCMAKE_CUDA_ARCHITECTURES=90 >/dev/null   # the GPU machines lent here are H200s (sm_90)
  cmake --build "$B" -j "${JOBS:-2}" --target gpu_kernels gpu_attention gpu_model gpu_nccl bench_gpu_kernels helium-mkmodel helium-worker \
    helium-coordinator heliumctl
  local stage=$B/pack
  rm -rf "$stage" "$PACK" && mkdir -p "$stage/bin" "$stage/lib" "$PACK"
  cp "$B"/gpu/gpu_* "$B"/gpu/bench_gpu_kernels "$B/bin/helium-mkmodel" "$B/bin/helium-worker" \
    "$B/bin/helium-coordinator" "$B/bin/heliumctl" "$stage/bin/"
  strip "$stage"/bin/* 2>/dev/null || true
  # libraries a CUDA image lacks: everything ldd resolves except the CUDA
  # libraries (the GPU machine's own) and the C/C++ runtime
  for b in "$stage"/bin/*; do ldd "$b"; done | awk '$3 ~ /^\// {print $3}' | sort -u | while read -r lib; do
    case $(basename "$lib") in
      libc.so*|libm.so*|libpthread.so*|libdl.so*|librt.so*|ld-linux*|libstdc++.so*|libgcc_s.so*) ;;
      libcuda.so*|libcudart.so*|libcublas*|libnccl*|libnvidia*) ;;
      *) cp -L "$lib" "$stage/lib/" ;;
    esac
  done
  tar -cJf "$PACK/pack.tar.xz" -C "$stage" bin lib
  grep -qxF '/.gpu-pack/' "$ROOT/.git/info/exclude" 2>/dev/null || echo '/.gpu-pack/' >> "$ROOT/.git/info/exclude"
  grep -qxF '/build-gpu/' "$ROOT/.git/info/exclude" 2>/dev/null || echo '/build-gpu/' >> "$ROOT/.git/info/exclude"
  du -sh "$PACK"
  echo "packed: carry .gpu-pack and run 'bash tests/gpu/run.sh run' on the GPU machine"
  set +e
}

# A directory holding lib$1*.so* on the GPU machine: the CUDA toolkit's, else
# the one PyTorch's nvidia-* wheels install.
find_libdir() {
  local name=$1 mod=$2 d
  for d in /usr/local/cuda/lib64 /usr/local/cuda/targets/x86_64-linux/lib /usr/lib/x86_64-linux-gnu; do
    ls "$d"/lib"$name".so* >/dev/null 2>&1 && { echo "$d"; return; }
  done
  python3 - "$mod" <<'PY' 2>/dev/null
import importlib, os, sys
m = importlib.import_module(sys.argv[1])
for p in list(getattr(m, "__path__", [])):
    if os.path.isdir(os.path.join(p, "lib")): print(os.path.join(p, "lib")); break
PY
}

# Unpacks the pack; the packed libraries, then cuBLAS and NCCL of the GPU machine.
setup_libs() {
  [[ -f $PACK/pack.tar.xz ]] || { echo "run.sh: no $PACK/pack.tar.xz (run 'tests/gpu/run.sh pack' on a build machine)"; exit 2; }
  rm -rf "$UNPACK" && mkdir -p "$UNPACK"
  if command -v xz >/dev/null; then tar -xJf "$PACK/pack.tar.xz" -C "$UNPACK" || exit 2
  else python3 -c 'import sys, tarfile; tarfile.open(sys.argv[1]).extractall(sys.argv[2])' "$PACK/pack.tar.xz" "$UNPACK" || exit 2
  fi
  local cublas nccl
  cublas=$(find_libdir cublas nvidia.cublas)
  nccl=$(find_libdir nccl nvidia.nccl)
  echo "cuBLAS from: ${cublas:-not found}; NCCL from: ${nccl:-not found}"
  export LD_LIBRARY_PATH=$UNPACK/lib:${cublas}:${nccl}:${LD_LIBRARY_PATH:-}
  export HELIUM_BIN=$UNPACK/bin
}

# cluster_check NAME TITLE WORKER_ARGS XPORT_EXPECT: tests/cli/cluster_transfer.sh
# with those worker arguments; one ok/FAIL line in gpu_cluster.log.
cluster_check() {
  local name=$1 title=$2 args=$3 expect=$4 t=$SECONDS
  echo "=== $title"
  HELIUM_SRC=$ROOT HELIUM_WORKER_ARGS="$args" HELIUM_XPORT_EXPECT=$expect KEEP_TMP=1 \
    timeout 240 bash "$ROOT/tests/cli/cluster_transfer.sh" >"$LOG/$name.log" 2>&1
  local rc=$?
  # the workers' logs, for the record (KEEP_TMP keeps the run directory)
  local d
  d=$(grep -o 'files kept in [^ ]*' "$LOG/$name.log" | awk '{print $4}' | tail -1)
  [[ -n $d && -d $d/run ]] && cat "$d"/run/*.log >"$LOG/$name.workers.log" 2>/dev/null
  tail -5 "$LOG/$name.log"
  if [[ $rc == 0 ]]; then echo "ok   $title ($((SECONDS - t)) s)" | tee -a "$LOG/gpu_cluster.log"
  else echo "FAIL $title: rc $rc (log $LOG/$name.log)" | tee -a "$LOG/gpu_cluster.log"; fails=$((fails + 1)); fi
}

run() {
  local LOG=${OUT:-/tmp/helium-gpu}
  mkdir -p "$LOG"
  nvidia-smi -L || { echo "run.sh: no GPU (nvidia-smi failed)"; exit 2; }
  setup_libs
  local fails=0 t0=$SECONDS
  for prog in gpu_kernels gpu_attention gpu_model gpu_nccl; do
    local t=$SECONDS
    echo "=== $prog"
    timeout 150 "$HELIUM_BIN/$prog" 2>&1 | tee "$LOG/$prog.log"
    local rc=${PIPESTATUS[0]}
    echo "=== $prog rc=$rc ($((SECONDS - t)) s)"
    [[ $rc == 0 ]] || fails=$((fails + 1))
  done
  # a real cluster of two GPU workers (coordinator, heliumctl, ZeroMQ pulls of
  # F16 pages between them): the CPU-side transfer test with --backend cuda
  # (--kv-xport off: KvPages over ZeroMQ only)
  cluster_check cluster_cuda "cluster_transfer, two CUDA workers, ZeroMQ" "--backend cuda --kv-xport off" ""
  # the same two workers with the NCCL transport under the pull
  # (worker/net/xport_pull.c): the unique id travels in the KvPull, both
  # processes join a 2-rank communicator, the server sends the held pages
  # with ncclSend, the puller receives them into reserved pages. Two ranks on
  # one GPU may be refused by NCCL ("Duplicate GPU"): then the link aborts
  # and the pull falls back to ZeroMQ, which this check accepts and reports
  # ("transport tried: transport|fallback"); outputs and counters are
  # checked either way. The long pull timeout gives NCCL's first join 10 s.
  cluster_check cluster_nccl "cluster_transfer, two CUDA workers, NCCL transport" \
    "--backend cuda --kv-xport nccl --pull-timeout-ms 30000" tried
  grep -h -i 'transport tried:\|KV transport\|xport\|nccl' "$LOG/cluster_nccl.log" "$LOG/cluster_nccl.workers.log" \
    2>/dev/null | head -20
  echo "--- summary ($((SECONDS - t0)) s)"
  grep -h -E '^(ok|FAIL) ' "$LOG"/gpu_*.log | awk '{n[$1]++} END {printf "checks: %d ok, %d FAIL\n", n["ok"], n["FAIL"]}'
  grep -h '^FAIL ' "$LOG"/gpu_*.log || true
  grep -h 'checks passed' "$LOG"/gpu_*.log
  [[ $fails == 0 ]] && echo "ALL GPU TESTS PASSED" || echo "GPU TESTS FAILED: $fails program(s)"
  return $((fails > 0))
}

case $MODE in
  libs) setup_libs; return 0 2>/dev/null || exit 0 ;;  # sourced by bench/gpu/run.sh
  pack) pack ;;
  run) run ;;
  all) pack && run ;;
  *) echo "usage: $0 [pack|run]"; exit 2 ;;
esac
