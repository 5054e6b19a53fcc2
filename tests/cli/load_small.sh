#!/usr/bin/env bash
# load_small: bench/load at a small size (50 jobs from 5 concurrent clients,
# 2 workers of the tiny model, over CURVE), with malformed frames and cancels
# mixed in. Checks every job's final state, not timings: each job the client
# canceled right after its acknowledgement ends CANCELED, every other job
# ends DONE, none is lost or left running; every malformed frame got an
# answer; the coordinator counted every submit and every malformed frame, and
# still serves afterwards.
export HELIUM_CURVE=1
source "$(dirname "$0")/cluster_lib.bash"

LOADGEN=$HELIUM_BUILD/tests/loadgen
[ -x "$LOADGEN" ] || fail "$LOADGEN is missing (not built)"
cluster_up 2

JOBS=50 CLIENTS=5 CANCEL_EVERY=10 BAD_EVERY=5
BAD0=$(ctl --json status | python3 -c 'import json,sys; print(json.load(sys.stdin)["counters"]["bad_client_frames"])')
"$LOADGEN" "$HELIUM_COORDINATOR" $JOBS $CLIENTS $CANCEL_EVERY $BAD_EVERY 8 >"$TMP/load.json" 2>"$TMP/load.err" ||
  fail "loadgen failed: $(cat "$TMP/load.err") $(head -c 600 "$TMP/load.json")"
ctl --json status >"$TMP/status.json" || fail "the coordinator stopped serving after the load"

python3 - "$TMP/load.json" "$TMP/status.json" "$JOBS" "$CANCEL_EVERY" "$BAD_EVERY" "$BAD0" <<'PYEOF' ||
import json, sys
r = json.load(open(sys.argv[1]))
st = json.load(open(sys.argv[2]))["counters"]
jobs, cancel_every, bad_every, bad0 = map(int, sys.argv[3:7])
errs = []
assert len(r["job_list"]) == jobs
ids = set()
for j in r["job_list"]:
    want_cancel = j["i"] % cancel_every == cancel_every - 1
    if j["cancel"] != want_cancel:
        errs.append(f"job {j['i']}: cancel flag {j['cancel']}")
    want = "CANCELED" if want_cancel else "DONE"
    if j["state"] != want:
        errs.append(f"job {j['i']} ({j['id']}): {j['state']}, want {want}")
    if not j["id"] or j["id"] in ids:
        errs.append(f"job {j['i']}: id '{j['id']}' missing or repeated")
    ids.add(j["id"])
n_bad = len(range(0, jobs, bad_every))
if r["malformed_sent"] != n_bad or r["malformed_answered"] != n_bad:
    errs.append(f"malformed frames: {r['malformed_answered']} answered of {r['malformed_sent']} sent, want {n_bad}")
if r["request_errors"]:
    errs.append(f"{r['request_errors']} requests got no reply")
if st["jobs_submitted"] < jobs:
    errs.append(f"the coordinator counted {st['jobs_submitted']} submits, want >= {jobs}")
if st["bad_client_frames"] - bad0 < n_bad:
    errs.append(f"the coordinator counted {st['bad_client_frames'] - bad0} bad frames, want >= {n_bad}")
if errs:
    print("\n".join(errs))
    sys.exit(1)
print(f"states: {r['states']}, submit p50 {r['submit_ms']['p50']} ms (not checked)")
PYEOF
  fail "wrong final states (above)"
note "ok: $JOBS jobs, every final state right"
