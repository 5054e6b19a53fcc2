#!/usr/bin/env bash
# bench_arrival: bench/workflows --arrival at a tiny size. Three customer
# service jobs (an LLM call, an HTTP tool call, a draft, a polish loop) arrive
# by a Poisson pattern and by a submit-time trace, under every policy, each
# point on a fresh 2-worker cluster with the tiny generated model. Greedy
# outputs must be identical under every policy and arrival pattern: the bench
# compares every op output of every job with the first run's and exits 1 on a
# difference; this test also reads arrival.json and checks that every point
# finished all its jobs and was compared. No timing is asserted.
set -u
here=$(cd "$(dirname "$0")" && pwd)
SRC=${HELIUM_SRC:-$(cd "$here/../.." && pwd)}
BUILD=${HELIUM_BUILD:-$SRC/build}
[ -x "$BUILD/bin/helium-worker" ] || { echo "FAIL: no helium-worker in $BUILD/bin"; exit 1; }
tmp=$(mktemp -d "${TMPDIR:-/tmp}/bench-arrival.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
printf '0\n0.4\n0.5\n' > "$tmp/trace.txt"
PYTHONDONTWRITEBYTECODE=1 python3 "$SRC/bench/workflows.py" --build "$BUILD" --preset tiny \
    --workloads customer_service --arrival poisson:120 --arrival "trace:$tmp/trace.txt" --arrival-jobs 3 \
    --workdir "$tmp/work" --out "$tmp/out" --no-plots --timeout 300 > "$tmp/log" 2>&1
rc=$?
if [ "$rc" -ne 0 ]; then
    tail -30 "$tmp/log"
    echo "FAIL: bench/workflows --arrival exited $rc (an output mismatch or a failed point)"
    exit 1
fi
python3 - "$tmp/out/arrival.json" <<'PY' || exit 1
import json, sys
doc = json.load(open(sys.argv[1]))
pols = doc["settings"]["policies"]
pts = doc["points"]
bad = []
if len(pts) != 2 * len(pols):
    bad.append(f"{len(pts)} points, expected {2 * len(pols)} (2 patterns x {len(pols)} policies)")
for p in pts:
    where = f"{p['policy']} / {p['label']}"
    if p.get("jobs_done") != 3:
        bad.append(f"{where}: {p.get('jobs_done')} of 3 jobs done ({p.get('error')})")
    if p.get("outputs_check") not in ("reference", "ok"):
        bad.append(f"{where}: outputs {p.get('outputs_check')}")
    if p.get("latency_p99_s") is None or p.get("latency_p50_s") is None:
        bad.append(f"{where}: no latency percentiles")
    # the work bound's inputs: the minimum is a property of the jobs, the same
    # for every policy, and no policy computes less than it
    if not p.get("min_prompt_tokens") or p.get("computed_tokens", 0) < p["min_prompt_tokens"]:
        bad.append(f"{where}: computed {p.get('computed_tokens')} tokens, minimum {p.get('min_prompt_tokens')}")
mins = {p.get("min_prompt_tokens") for p in pts if p["label"] == pts[0]["label"]}
if len(mins) != 1:
    bad.append(f"min_prompt_tokens differs between policies on the same jobs: {sorted(mins, key=str)}")
for key, a in doc["analysis"].items():
    if a.get("least_work_tok") and a.get("work_bound") is not None and a["work_bound"] < 1.0:
        bad.append(f"{key}: work bound {a['work_bound']} < 1 (a baseline did less than the least work)")
refs = sum(1 for p in pts if p.get("outputs_check") == "reference")
if refs != 1:
    bad.append(f"{refs} reference runs, expected 1 (every other point compared with it)")
if sorted({p["policy"] for p in pts}) != sorted(pols):
    bad.append("not every policy ran")
for b in bad:
    print("FAIL:", b)
sys.exit(1 if bad else 0)
PY
echo "PASS: identical greedy outputs under $(python3 -c 'import json,sys; print(len(json.load(open(sys.argv[1]))["points"]))' "$tmp/out/arrival.json") (policy, arrival pattern) points"
