#!/usr/bin/env bash
# ptxas_check: registers, shared memory and spills of every kernel in kernels/
# for sm_90 (nvcc -Xptxas -v), one line a kernel. Fails when a kernel of the
# attention or GEMV families spills (spill stores or loads > 0 bytes): those
# are the decode hot loops, where local-memory traffic would eat the
# bandwidth they live on. Usage: ptxas_check.sh NVCC KERNELS_DIR
set -euo pipefail
NVCC=${1:-nvcc}
DIR=${2:-$(dirname "$0")}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fail=0
for cu in "$DIR"/*.cu; do
  name=$(basename "$cu" .cu)
  "$NVCC" -std=c++17 -O3 -arch=sm_90 -I"$DIR" -Xptxas -v -c "$cu" -o "$tmp/$name.o" 2>"$tmp/$name.log" || {
    cat "$tmp/$name.log"; echo "ptxas_check: $name.cu does not compile"; exit 1; }
  # ptxas prints "Compiling entry function 'X'" then "Used N registers ..." and
  # "N bytes stack frame, N bytes spill stores, N bytes spill loads".
  awk -v file="$name" '
    /Compiling entry function/ { match($0, /'"'"'[^'"'"']+'"'"'/); fn = substr($0, RSTART + 1, RLENGTH - 2) }
    /bytes spill stores/ { st = $0; sub(/.*stack frame, /, "", st); split(st, a, " "); ss = a[1]; sl = a[5] }
    /Used [0-9]+ registers/ { match($0, /Used [0-9]+ registers/); regs = substr($0, RSTART + 5, RLENGTH - 15);
      printf "%-10s regs %-4s spill-st %-5s spill-ld %-5s %s\n", file, regs, ss, sl, fn }' "$tmp/$name.log" > "$tmp/$name.tab"
  cat "$tmp/$name.tab"
  if [[ $name == attention || $name == gemv ]]; then
    if awk '$5 != 0 || $7 != 0 { bad = 1 } END { exit !bad }' "$tmp/$name.tab"; then
      echo "ptxas_check: FAIL: a kernel in $name.cu spills"; fail=1
    fi
    [[ -s $tmp/$name.tab ]] || { echo "ptxas_check: FAIL: no ptxas report for $name.cu"; fail=1; }
  fi
done
[[ $fail == 0 ]] && echo "ptxas_check: ok (no spills in attention or gemv kernels)"
exit $fail
