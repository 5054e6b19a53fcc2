#!/usr/bin/env bash
# cluster_admission: the coordinator's job window (--max-active-jobs).
#
# A coordinator with --max-active-jobs 1 and no worker yet accepts three
# jobs: the first starts (its first call waits in the ready queue for a
# worker), the other two are parked: accepted and QUEUED, nothing of them
# queued (/metrics: helium_jobs_parked 2, helium_jobs_max_active 1;
# heliumctl: 3 queued, queue depth 1). A job canceled while parked ends
# CANCELED and never runs. Then a worker joins: the jobs run one after
# another, oldest first, all DONE, each llm output equal to
# `helium-worker generate` of its rendered prompt (greedy), and nothing is
# left parked.
source "$(dirname "$0")/cluster_lib.bash"

export HELIUM_COORD_ARGS="$HELIUM_COORD_ARGS --max-active-jobs 1"

topic_wf "$TMP/wf.json"

cluster_up 0 # the coordinator alone

TOPICS=("apples" "pears" "plums" "figs")
IDS=()
for t in "${TOPICS[@]}"; do
  IDS+=("$(ctl submit "$TMP/wf.json" --input "topic=$t")") || fail "submit $t failed"
done

wait_metric helium_jobs_parked 3 # one job started of four
wait_metric helium_jobs_max_active 1
ctl --json status >"$TMP/status.json" || fail "status failed"
[ "$(jfield "$TMP/status.json" jobs_queued)" = 4 ] || fail "status: $(cat "$TMP/status.json")"
[ "$(jfield "$TMP/status.json" queue_depth)" = 1 ] || fail "only the started job's first call may be queued: $(cat "$TMP/status.json")"

ctl cancel "${IDS[2]}" >/dev/null || fail "cancel of a parked job failed"
wait_metric helium_jobs_parked 2
note "4 jobs accepted, 1 started, 3 parked; one canceled while parked"

start_worker w1
for k in 0 1 3; do
  wait_job "${IDS[$k]}" "$TMP/job-$k.json" 120 || fail "job ${IDS[$k]} did not finish DONE: $(cat "$TMP/job-$k.json")"
done
ctl --json result "${IDS[2]}" >"$TMP/job-2.json" || true
[ "$(jfield "$TMP/job-2.json" state)" = CANCELED ] || fail "the canceled parked job: $(cat "$TMP/job-2.json")"
wait_metric helium_jobs_parked 0

pyrun "$TMP" "${TOPICS[@]}" <<'PYEOF'
import sys
tmp, topics = sys.argv[1], sys.argv[2:]
for k in (0, 1, 3):
    check_topic_job(f"{tmp}/job-{k}.json", topics[k], k)
j2 = load_json(f"{tmp}/job-2.json")
check(all(o.get("attempts", 0) == 0 for o in j2["ops"]), "the canceled parked job ran something")
PYEOF
note "ok: parked jobs ran after the worker joined, oldest first; outputs match helium-worker generate"
