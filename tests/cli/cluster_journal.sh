#!/usr/bin/env bash
# cluster_journal: a coordinator with --journal survives kill -9 (issue 17).
#  1. an uninterrupted run: N jobs (a map over 3 items, then 2 dependent llm
#     calls) on a 2-worker cluster, outputs kept as the reference;
#  2. the same N jobs again, the coordinator killed with SIGKILL 0-0.7 s
#     after each submit starts (before, during or after its acknowledgement,
#     while earlier jobs run), then a few more times (KILLS in all, at least
#     20), each time restarted on the same journal (job 3's kill lands with
#     the workers stopped, so one certainly finds it running); a submit that got no
#     acknowledgement is sent again (as a heliumctl user would);
#  3. every acknowledged job is listed exactly once, ends DONE, with outputs
#     byte-identical to the reference; no job the client never heard of but
#     the unacknowledged submits exists; replays took finished calls from the
#     journal (not recomputed) and re-dispatched the rest; the journal was
#     compacted along the way (a tiny --journal-compact-mb);
#  4. a torn tail is truncated and reported at start; a flipped byte in the
#     middle makes the coordinator refuse to start with a clear error.
source "$(dirname "$0")/cluster_lib.bash"

N=${JOURNAL_TEST_JOBS:-22}
KILLS=${JOURNAL_TEST_KILLS:-22}
JDIR=$TMP/journal
export HELIUM_COORD_ARGS="--heartbeat-ms 200 --worker-timeout-ms 2000 --journal $JDIR --fsync batch --journal-compact-mb 0.005"
cluster_up 2

cat >"$TMP/wf.json" <<'EOF'
{
  "name": "journal_chain",
  "inputs": [{"name": "topic"}],
  "ops": [
    {"id": "parts", "type": "map", "over": "input.topic", "split": "lines",
     "body": {"type": "llm", "max_tokens": 24, "prompt": "Write one line about {{item}}:"}},
    {"id": "sum", "type": "llm", "max_tokens": 400, "prompt": "Lines:\n{{op.parts}}\nIn short:"},
    {"id": "end", "type": "llm", "max_tokens": 400, "prompt": "{{op.sum}}\nAnd so:"}
  ],
  "output": "end"
}
EOF
topic() { printf 'apples %d\npears %d\nplums %d' "$1" "$1" "$1"; }

# ---- 1. the uninterrupted reference
REF_IDS=()
for i in $(seq 1 "$N"); do
  REF_IDS+=("$(ctl submit "$TMP/wf.json" --input "topic=$(topic "$i")")") || fail "reference submit $i failed"
done
for i in $(seq 1 "$N"); do
  wait_job "${REF_IDS[$((i - 1))]}" "$TMP/ref-$i.json" 300 || fail "reference job $i did not finish: $(cat "$TMP/ref-$i.json")"
done
note "reference: $N jobs done"

# ---- 2. the same jobs under kill -9
coord_pid() { cat "$RUN/coordinator.pid"; }
start_coord() {
  # the same command line as scripts/cluster.sh (same ports, same journal)
  # shellcheck disable=SC2086
  "$HELIUM_BIN/helium-coordinator" --model "$HELIUM_MODEL" --listen "$HELIUM_COORDINATOR" \
    --workers "$HELIUM_WORKERS_EP" --metrics-port 0 $HELIUM_COORD_ARGS </dev/null >>"$RUN/coordinator.log" 2>&1 &
  echo $! >"$RUN/coordinator.pid"
}

wait_up() {
  for _ in $(seq 1 100); do
    "$HELIUM_BIN/heliumctl" --coordinator "$HELIUM_COORDINATOR" --timeout-ms 500 status >/dev/null 2>&1 && return 0
    kill -0 "$(coord_pid)" 2>/dev/null || return 1
    sleep 0.1
  done
  return 1
}
kill_restart() {
  kill -9 "$(coord_pid)" 2>/dev/null || true
  wait "$(coord_pid)" 2>/dev/null || true
  kills=$((kills + 1))
  start_coord
  wait_up || fail "the coordinator did not come back after kill $kills: $(tail -n 5 "$RUN/coordinator.log")"
}
submit() { # submit I: prints the job id if the coordinator acknowledged
  "$HELIUM_BIN/heliumctl" --coordinator "$HELIUM_COORDINATOR" --timeout-ms 1500 submit "$TMP/wf.json" \
    --input "topic=$(topic "$1")" 2>/dev/null
}

# (sum and end decode 400 tokens each, one after the other, so that a job
# still runs when a kill lands even on a fast, quiet machine)
# Job i is submitted and the coordinator is killed 0-0.7 s later: before,
# during or after the acknowledgement, while earlier jobs still run. A submit
# that got no answer is sent again (as a heliumctl user would), without a
# kill, until one is acknowledged.
: >"$TMP/acked.txt"
: >"$TMP/unacked.txt"
kills=0
replays_before=$(grep -c "journal .*: replayed" "$RUN/coordinator.log" || true)
for i in $(seq 1 "$N"); do
  if [ "$i" -eq 3 ]; then
    # one kill certainly lands while a job runs (on a fast machine the random
    # ones can all miss): the workers are stopped from its submit to the restart
    kill_worker w1 STOP
    kill_worker w2 STOP
    id=$(submit "$i") || id=""
    [ -n "$id" ] || fail "submit $i (workers stopped) was not acknowledged"
    kill_restart
    kill_worker w1 CONT
    kill_worker w2 CONT
    echo "$i $id" >>"$TMP/acked.txt"
    continue
  fi
  submit "$i" >"$TMP/sub-$i.out" &
  sub=$!
  sleep "0.$((RANDOM % 8))"
  kill_restart
  wait $sub || true
  id=$(cat "$TMP/sub-$i.out")
  while [ -z "$id" ]; do
    echo "$i" >>"$TMP/unacked.txt"
    id=$(submit "$i") || id=""
  done
  echo "$i $id" >>"$TMP/acked.txt"
done
while [ $kills -lt "$KILLS" ]; do # more kills while the last jobs run
  sleep "0.$((RANDOM % 5))"
  kill_restart
done
note "$kills kills; $(wc -l <"$TMP/acked.txt") submits acknowledged, $(wc -l <"$TMP/unacked.txt") unanswered (retried)"
[ "$(wc -l <"$TMP/acked.txt")" -eq "$N" ] || fail "the client got $(wc -l <"$TMP/acked.txt") of $N acknowledgements"

# ---- 3. every acknowledged job completes once, identical to the reference
while read -r i id; do
  wait_job "$id" "$TMP/got-$i.json" 300 || fail "acknowledged $id (input $i) did not finish: $(cat "$TMP/got-$i.json")"
done <"$TMP/acked.txt"
ctl --json jobs --limit 1000 >"$TMP/jobs.json" || fail "jobs listing failed"
pyrun "$TMP" "$N" "$(wc -l <"$TMP/unacked.txt")" <<'PYEOF'
import collections
tmp, n, unacked = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
acked = [l.split() for l in open(tmp + "/acked.txt")]
listing = load_json(tmp + "/jobs.json")
jobs = listing["jobs"] if isinstance(listing, dict) else listing
ids = [j["job_id"] for j in jobs]
dup = [k for k, c in collections.Counter(ids).items() if c > 1]
check(not dup, f"job ids listed twice: {dup}")
for i, jid in acked:
    check(ids.count(jid) == 1, f"{jid} is listed {ids.count(jid)} times")
    ref, got = load_json(f"{tmp}/ref-{i}.json"), load_json(f"{tmp}/got-{i}.json")
    check(got["state"] == "DONE", f"{jid}: {got['state']}")
    check(got.get("output") == ref.get("output"), f"{jid}: output differs from the uninterrupted run")
    r, g = ops_by_id(ref), ops_by_id(got)
    for op in ("parts", "sum", "end"):
        check(g[op].get("output") == r[op].get("output"), f"{jid}: op {op} differs from the uninterrupted run")
# jobs beyond the reference run and the acked ones: only unacknowledged submits may add some
extra = len(ids) - n - len(acked)
check(0 <= extra <= unacked, f"{extra} jobs nobody was told about, but only {unacked} submits went unanswered")
print(f"{len(acked)} acknowledged jobs DONE once each, outputs identical; {extra} extra jobs from unanswered submits")
PYEOF
[ $? -eq 0 ] || fail "the journaled jobs differ"

replays=$(grep -c "journal .*: replayed" "$RUN/coordinator.log" || true)
[ $((replays - replays_before)) -ge "$KILLS" ] || fail "only $((replays - replays_before)) replays for $kills kills"
taken=$(grep -o "[0-9]* calls taken from it" "$RUN/coordinator.log" | awk '{s += $1} END {print s + 0}')
[ "$taken" -gt 0 ] || fail "no replay took a finished call from the journal"
grep -q "journal: compacted" "$RUN/coordinator.log" || fail "the journal was never compacted"
busy=$(grep -c "journal .*: replayed .*([1-9][0-9]* queued or running" "$RUN/coordinator.log" || true)
[ "$busy" -gt 0 ] || fail "no kill hit the batch while jobs were running"
note "$busy of the restarts found jobs still running and re-dispatched them"
note "replays took $taken finished calls from the journal; compactions: $(grep -c 'journal: compacted' "$RUN/coordinator.log")"

# ---- 4. a torn tail and a flipped byte
kill -9 "$(coord_pid)"
wait "$(coord_pid)" 2>/dev/null || true
J=$JDIR/journal
size=$(stat -c %s "$J")
printf '\x40\x00\x00\x00partial' >>"$J" # a frame header and a few bytes of a record
start_coord
for _ in $(seq 1 100); do
  grep -q "torn tail of 11 bytes" "$RUN/coordinator.log" && break
  sleep 0.1
done
grep -q "a torn tail of 11 bytes .* was truncated" "$RUN/coordinator.log" || fail "the torn tail was not reported"
[ "$(stat -c %s "$J")" -le "$size" ] || fail "the torn tail is still in the journal"
kill -9 "$(coord_pid)"
wait "$(coord_pid)" 2>/dev/null || true
python3 - "$J" <<'PYEOF'
import sys
b = bytearray(open(sys.argv[1], "rb").read())
b[len(b) // 2] ^= 0x20   # inside some record in the middle
open(sys.argv[1], "wb").write(b)
PYEOF
rc=0
timeout 30 "$HELIUM_BIN/helium-coordinator" --model "$HELIUM_MODEL" --listen "$HELIUM_COORDINATOR" \
  --workers "$HELIUM_WORKERS_EP" --metrics-port 0 --journal "$JDIR" >"$TMP/corrupt.log" 2>&1 || rc=$?
[ $rc = 1 ] || fail "a corrupt journal: exit $rc, want 1 ($(tail -n 3 "$TMP/corrupt.log"))"
grep -q "is corrupt" "$TMP/corrupt.log" || fail "no clear error for a corrupt journal: $(tail -n 3 "$TMP/corrupt.log")"
note "corrupt journal refused: $(grep -o 'record [0-9]* at byte [0-9]* is corrupt ([^;]*' "$TMP/corrupt.log" | head -n1)"
echo "cluster_journal: ok"
