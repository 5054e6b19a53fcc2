#!/usr/bin/env bash
# cuda_backend: the worker's backend options. On a machine without a GPU, a
# CUDA-built helium-worker refuses --backend cuda at once with a clear typed
# error (exit 1, no crash, no sanitizer report); bad backend options are
# usage errors; --backend cpu runs as before. Skipped, with the reason
# printed, only when this build carries no CUDA backend. On a machine WITH a
# GPU the refusal check is replaced by a one-prompt CUDA run (tests/gpu/run.sh
# checks the backend itself).
set -euo pipefail
BIN=${HELIUM_BIN:?}
W=$BIN/helium-worker
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
"$BIN/helium-mkmodel" --preset tiny --seed 3 -o "$tmp/m.gguf" >/dev/null 2>&1

# usage errors (exit 2) whatever the build
for bad in "--backend tpu" "--kv-dtype f8" "--kv-memory 0" "--kv-memory 120%" "--kv-memory x"; do
  set +e
  "$W" generate --model "$tmp/m.gguf" --prompt hi $bad >"$tmp/out" 2>&1
  rc=$?
  set -e
  [[ $rc == 2 ]] || { echo "FAIL: '$bad' exited $rc, want 2"; cat "$tmp/out"; exit 1; }
  grep -qi "bad\|unknown" "$tmp/out" || { echo "FAIL: '$bad' gave no clear message"; cat "$tmp/out"; exit 1; }
done
set +e
"$W" generate --model "$tmp/m.gguf" --prompt hi --kv-dtype bf16 >"$tmp/out" 2>&1
rc=$?
set -e
[[ $rc == 2 ]] && grep -q "needs --backend cuda" "$tmp/out" || { echo "FAIL: --kv-dtype without cuda: rc $rc"; cat "$tmp/out"; exit 1; }
"$W" generate --model "$tmp/m.gguf" --prompt hi --max-tokens 3 --backend cpu --kv-memory 64 >/dev/null \
  || { echo "FAIL: --backend cpu"; exit 1; }
echo "ok: backend option errors are usage errors; --backend cpu runs"

backends=$("$W" --help 2>&1 | sed -n 's/^backends in this build: //p' | head -1)
if [[ $backends != *cuda* ]]; then
  echo "SKIP (reason: this build has no CUDA backend: backends '$backends'; HELIUM_CUDA=OFF or no toolkit)"
  exit 0
fi
if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then
  "$W" generate --model "$tmp/m.gguf" --prompt hi --max-tokens 3 --backend cuda >/dev/null \
    || { echo "FAIL: --backend cuda on a GPU machine"; exit 1; }
  echo "ok: a GPU is present and --backend cuda ran one prompt"
  exit 0
fi
start=$(date +%s%N)
set +e
"$W" generate --model "$tmp/m.gguf" --prompt hi --backend cuda >"$tmp/out" 2>&1
rc=$?
set -e
ms=$(( ($(date +%s%N) - start) / 1000000 ))
cat "$tmp/out"
[[ $rc == 1 ]] || { echo "FAIL: --backend cuda without a GPU exited $rc, want 1"; exit 1; }
grep -qi "no usable CUDA GPU\|no CUDA GPU" "$tmp/out" && grep -q -- "--backend cpu" "$tmp/out" \
  || { echo "FAIL: no clear message"; exit 1; }
if grep -qi "sanitizer\|segmentation\|core dumped" "$tmp/out"; then echo "FAIL: crashed"; exit 1; fi
echo "ok: --backend cuda refused without a GPU (exit 1, a clear message) in $ms ms"
# serve, by option and by environment (HELIUM_WORKER_BACKEND): the worker stops
# before it registers, with the same message
for how in opt env; do
  set +e
  if [[ $how == opt ]]; then
    timeout 60 "$W" serve --coordinator tcp://127.0.0.1:9 --model "$tmp/m.gguf" --insecure --backend cuda >"$tmp/out" 2>&1
  else
    HELIUM_WORKER_BACKEND=cuda timeout 60 "$W" serve --coordinator tcp://127.0.0.1:9 --model "$tmp/m.gguf" --insecure >"$tmp/out" 2>&1
  fi
  rc=$?
  set -e
  [[ $rc == 1 ]] && grep -qi "no usable CUDA GPU\|no CUDA GPU" "$tmp/out" \
    || { echo "FAIL: serve --backend cuda ($how) exited $rc"; cat "$tmp/out"; exit 1; }
done
echo "ok: serve refuses --backend cuda without a GPU (option and HELIUM_WORKER_BACKEND)"
