#!/usr/bin/env bash
# long.sh SLOT: one slot of the long fuzzing runs (tests/fuzz/README.md, "Long
# runs"). Start one slot per core you can spare, e.g. `long.sh 1 & long.sh 2 &`
# after `FUZZ_BUILD=DIR tests/fuzz/run.sh` built the targets. Each slot
# repeatedly picks the target with the least accumulated CPU time (not running
# in another slot) and fuzzes it for SEG wall seconds at SCHED_IDLE + nice 19
# (it takes only CPU nothing else wants), until every target has GOAL CPU
# seconds; one line per segment goes to $F/log.tsv:
#   utc target wall_s user_s sys_s execs cov ft corpus rc
# Corpora persist in $F/corpus/<target> (outside the repo); a crash stops that
# target (file $F/stop.<target>) and keeps the input in $F/artifacts/<target>/.
# Env: FUZZ_HOME (default ~/.cache/helium/fuzz), FUZZ_BIN (the build's fuzz/
# folder), FUZZ_SRC (the source tree, for dictionaries), SEG, GOAL.
set -u
F=${FUZZ_HOME:-$HOME/.cache/helium/fuzz}
SRC0=$(cd "$(dirname "$0")/../.." && pwd)
B=${FUZZ_BIN:-$SRC0/build-fuzz/fuzz}
SRC=${FUZZ_SRC:-$SRC0}
mkdir -p "$F/corpus"
for t in gguf tokenizer workflow wire coord worker; do
  [ -d "$F/corpus/$t" ] || { mkdir -p "$F/corpus/$t"; cp "$SRC/tests/fuzz/corpus/$t"/* "$F/corpus/$t/" 2>/dev/null; }
done
SEG=${SEG:-600}
GOAL=${GOAL:-3700}
slot=$1
# CPU seconds of the runs before log.tsv existed (tests/fuzz/README.md "Long runs")
declare -A prev=([gguf]=240 [tokenizer]=204 [workflow]=204 [wire]=240 [coord]=90 [worker]=66)
export ASAN_OPTIONS=abort_on_error=1:detect_leaks=1:allocator_may_return_null=1
export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
cpu_of() { awk -v t="$1" '$2==t {s+=$4+$5} END {printf "%d", s}' "$F/log.tsv" 2>/dev/null; }
while :; do
  best= bestc=999999999
  for t in gguf tokenizer workflow wire coord worker; do
    [ -f "$F/stop.$t" ] && continue
    [ -d "$F/run.$t" ] && continue
    c=$(( $(cpu_of $t) + ${prev[$t]} ))
    [ $c -ge $GOAL ] && continue
    [ $c -lt $bestc ] && { best=$t; bestc=$c; }
  done
  [ -z "$best" ] && { echo "slot $slot: nothing left"; exit 0; }
  mkdir "$F/run.$best" 2>/dev/null || { sleep 1; continue; }
  t=$best; art=$F/artifacts/$t; mkdir -p "$art"
  dict=(); [ -f "$SRC/tests/fuzz/$t.dict" ] && dict=(-dict="$SRC/tests/fuzz/$t.dict")
  log=$art/seg-$(date -u +%H%M%S).log
  TIMEFORMAT='%R %U %S'
  tm=$( { time chrt -i 0 nice -n 19 "$B/fuzz_$t" "${dict[@]}" -max_total_time=$SEG -timeout=60 -rss_limit_mb=2048 \
      -print_final_stats=1 -artifact_prefix="$art/" "$F/corpus/$t" >"$log" 2>&1; echo "rc=$?" >>"$log"; } 2>&1 )
  rc=$(grep -o 'rc=[0-9]*' "$log" | tail -1 | cut -d= -f2)
  execs=$(grep -m1 'stat::number_of_executed_units' "$log" | awk '{print $2}')
  last=$(grep -E '^#[0-9]+[[:space:]]' "$log" | tail -n1)
  cov=$(echo "$last" | grep -o 'cov: [0-9]*' | awk '{print $2}')
  ft=$(echo "$last" | grep -o 'ft: [0-9]*' | awk '{print $2}')
  n=$(ls "$F/corpus/$t" | wc -l)
  echo -e "$(date -u +%FT%TZ)\t$t\t$tm\t${execs:-?}\t${cov:-?}\t${ft:-?}\t$n\t$rc" | tr ' ' '\t' >>"$F/log.tsv"
  [ "$rc" != 0 ] && touch "$F/stop.$t"   # a finding: look at it before fuzzing this target again
  rmdir "$F/run.$t"
done
