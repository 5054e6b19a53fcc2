#!/usr/bin/env bash
# cluster_feed: the helium policy's feed rule (--helium-feed).
#
# A coordinator (helium policy, --helium-feed 1, no worker yet): three jobs
# submitted together (one batch: each within 250 ms of the one before) all
# start, feed rule or not: three first calls queued, none parked. A job
# submitted on its own a while later finds the cluster busy (3 calls ready,
# 1 allowed a worker) and waits parked, accepted and QUEUED. Then a worker
# joins: the calls drain, the parked job starts, and every job ends DONE with
# each llm output equal to `helium-worker generate` of its rendered prompt.
# With --helium-feed 0 the lone job would start at once (parked 0): the test
# fails.
source "$(dirname "$0")/cluster_lib.bash"

export HELIUM_COORD_ARGS="$HELIUM_COORD_ARGS --policy helium --helium-feed 1"

topic_wf "$TMP/wf.json"

cluster_up 0 # the coordinator alone

TOPICS=("apples" "pears" "plums" "figs")
for k in 0 1 2; do # the batch: submitted at once
  ctl submit "$TMP/wf.json" --input "topic=${TOPICS[$k]}" >"$TMP/id-$k" &
done
wait
IDS=()
for k in 0 1 2; do
  IDS+=("$(cat "$TMP/id-$k")")
  [ -n "${IDS[$k]}" ] || fail "submit ${TOPICS[$k]} failed"
done
sleep 1.2 # metrics republished; and the lone job below arrives well past the batch
wait_metric helium_jobs_parked 0
ctl --json status >"$TMP/status.json" || fail "status failed"
[ "$(jfield "$TMP/status.json" queue_depth)" = 3 ] || fail "each job of the batch queues its first call: $(cat "$TMP/status.json")"
note "a batch of 3 started together (3 calls queued, none parked)"

IDS+=("$(ctl submit "$TMP/wf.json" --input "topic=${TOPICS[3]}")") || fail "submit ${TOPICS[3]} failed"
wait_metric helium_jobs_parked 1
ctl --json status >"$TMP/status.json" || fail "status failed"
[ "$(jfield "$TMP/status.json" jobs_queued)" = 4 ] || fail "status: $(cat "$TMP/status.json")"
[ "$(jfield "$TMP/status.json" queue_depth)" = 3 ] || fail "the lone job queued a call: $(cat "$TMP/status.json")"
note "a job arriving on its own while the cluster is busy waits parked"

start_worker w1
for k in 0 1 2 3; do
  wait_job "${IDS[$k]}" "$TMP/job-$k.json" 120 || fail "job ${IDS[$k]} did not finish DONE: $(cat "$TMP/job-$k.json")"
done
wait_metric helium_jobs_parked 0

pyrun "$TMP" "${TOPICS[@]}" <<'PYEOF'
import sys
tmp, topics = sys.argv[1], sys.argv[2:]
for k in range(4):
    check_topic_job(f"{tmp}/job-{k}.json", topics[k], k)
PYEOF
note "ok: the parked job ran once the worker drained the batch; outputs match helium-worker generate"
