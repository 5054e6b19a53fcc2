#!/usr/bin/env bash
# cluster_e2e: a coordinator and two workers run a fan-out/fan-in workflow
# (one long shared system prompt, four branches, a reducer, a map over three
# items, a join) submitted with `heliumctl submit --wait --json`. Checks: the
# job is DONE; every llm call's output (each branch, the reducer, every map
# item) equals `helium-worker generate --prompt <the same rendered prompt>`
# run alone on the same model; the join and the job output are assembled
# from them; heliumctl's other commands (status, jobs, result) agree; --wait
# follows the job by the coordinator's push path (one request, no polling).
source "$(dirname "$0")/cluster_lib.bash"

cluster_up 2

SYSTEM="You are one member of a panel of analysts who review short business documents for a retail chain. Every member follows the same rules: base every claim on the document, quote numbers exactly, prefer plain words, lead with the most important finding and keep the answer short. The document follows."
cat >"$TMP/wf.json" <<'EOF'
{
  "name": "e2e_fanout",
  "inputs": [
    {"name": "system"},
    {"name": "doc"},
    {"name": "items", "default": "Lyon\nParis\nOslo"}
  ],
  "ops": [
    {"id": "finance", "type": "llm", "max_tokens": 20,
     "prompt": "{{input.system}}\nDocument: {{input.doc}}\nYour aspect: finance.\nAssessment:"},
    {"id": "legal", "type": "llm", "max_tokens": 20,
     "prompt": "{{input.system}}\nDocument: {{input.doc}}\nYour aspect: legal.\nAssessment:"},
    {"id": "operations", "type": "llm", "max_tokens": 20,
     "prompt": "{{input.system}}\nDocument: {{input.doc}}\nYour aspect: operations.\nAssessment:"},
    {"id": "market", "type": "llm", "max_tokens": 20,
     "prompt": "{{input.system}}\nDocument: {{input.doc}}\nYour aspect: market.\nAssessment:"},
    {"id": "reduce", "type": "llm", "max_tokens": 24,
     "prompt": "{{input.system}}\nMerge the four assessments.\nFinance: {{op.finance}}\nLegal: {{op.legal}}\nOperations: {{op.operations}}\nMarket: {{op.market}}\nSummary:"},
    {"id": "stores", "type": "map", "over": "input.items", "split": "lines",
     "body": {"type": "llm", "max_tokens": 12, "prompt": "{{input.system}}\nStore: {{item}}.\nVerdict:"}},
    {"id": "final", "type": "join", "parts": "{{op.reduce}}\n---\n{{op.stores}}"}
  ],
  "output": "final"
}
EOF
DOC="Weekly report, store 112: sales 48,200 EUR (-4% week over week), foot traffic flat, two staff on leave, one late delivery of dairy products."

# coordinator counter NAME (client_requests counts this status request too)
counter() { ctl --json status | python3 -c 'import json,sys; print(json.load(sys.stdin)["counters"].get(sys.argv[1], -1))' "$1"; }
WAITS0=$(counter job_waits)
REQ0=$(counter client_requests)
# --wait follows the job by the coordinator's push path: with a timeout longer
# than the test, no liveness probe can be sent, so the wait is one request
"$HELIUM_BIN/heliumctl" --coordinator "$HELIUM_COORDINATOR" --timeout-ms 3600000 --json submit "$TMP/wf.json" \
  --input "system=$SYSTEM" --input "doc=$DOC" --wait >"$TMP/job.json" 2>"$TMP/progress.txt" ||
  { cat "$TMP/progress.txt" "$TMP/job.json" >&2; fail "submit --wait failed"; }
grep -q "ops" "$TMP/progress.txt" || fail "no progress lines from submit --wait: $(cat "$TMP/progress.txt")"
grep -q "submitted" "$TMP/progress.txt" || fail "no job id line from submit --wait: $(cat "$TMP/progress.txt")"
REQ1=$(counter client_requests)
[ "$((REQ1 - REQ0))" = 2 ] ||
  fail "submit --wait sent $((REQ1 - REQ0 - 1)) requests (want 1: the submit; polling would send more)"
[ "$(counter job_waits)" = "$((WAITS0 + 1))" ] || fail "the coordinator did not count the push wait"
[ "$(counter job_waiters)" = 0 ] || fail "a waiter outlived its job"

pyrun "$TMP/job.json" "$TMP/wf.json" "$SYSTEM" "$DOC" <<'PYEOF' || fail "outputs differ from helium-worker generate"
job = load_json(sys.argv[1])
wf = load_json(sys.argv[2])
inputs = {"system": sys.argv[3], "doc": sys.argv[4], "items": "Lyon\nParis\nOslo"}
check(job["state"] == "DONE", "job state %s (error %s)" % (job["state"], job.get("error")))
ops = ops_by_id(job)
outs = {}
n_checked = 0
for op in wf["ops"]:
    st = ops.get(op["id"])
    check(st is not None, "op %s missing from the job status" % op["id"])
    check(st["state"] == "DONE", "op %s is %s" % (op["id"], st["state"]))
    if op["type"] == "llm":
        prompt = render(op["prompt"], inputs, outs)
        ref = generate(prompt, op["max_tokens"])
        check(st["output"] == ref["text"], "op %s: cluster %r != generate %r" % (op["id"], st["output"], ref["text"]))
        check(st["worker"] in ("w1", "w2"), "op %s: worker %r" % (op["id"], st["worker"]))
        check(st["generated_tokens"] == len(ref["ids"]),
              "op %s: %d generated tokens, generate made %d" % (op["id"], st["generated_tokens"], len(ref["ids"])))
        check(st["prompt_tokens"] == ref["prompt_tokens"],
              "op %s: prompt_tokens %d, generate counted %d" % (op["id"], st["prompt_tokens"], ref["prompt_tokens"]))
        n_checked += 1
    elif op["type"] == "map":
        items = inputs["items"].split("\n")
        check(st["items_total"] == len(items), "map %s: items_total %d" % (op["id"], st["items_total"]))
        check(len(st["outputs"]) == len(items), "map %s: %d outputs" % (op["id"], len(st["outputs"])))
        for i, it in enumerate(items):
            ref = generate(render(op["body"]["prompt"], inputs, outs, item=it), op["body"]["max_tokens"])
            check(st["outputs"][i] == ref["text"],
                  "map %s item %d: cluster %r != generate %r" % (op["id"], i, st["outputs"][i], ref["text"]))
            n_checked += 1
        check(st["output"] == "\n".join(st["outputs"]), "map %s: output is not its items joined" % op["id"])
    elif op["type"] == "join":
        want = render(op["parts"], inputs, outs)
        check(st["output"] == want, "join %s: %r != %r" % (op["id"], st["output"], want))
    outs[op["id"]] = st["output"]
check(job["output"] == outs["final"], "job output is not the output op's")
check(n_checked == 8, "checked %d llm calls, expected 8" % n_checked)
print("e2e: %d llm calls match generate; workers used: %s" % (
    n_checked, sorted({o["worker"] for o in job["ops"] if o["worker"]})))
PYEOF

JOB=$(jfield "$TMP/job.json" job_id)
# result (text and JSON) and jobs agree with what --wait printed
ctl --json result "$JOB" >"$TMP/result.json" || fail "result $JOB failed"
pyrun "$TMP/job.json" "$TMP/result.json" <<'PYEOF' || fail "result differs from submit --wait"
import json, sys
a, b = load_json(sys.argv[1]), load_json(sys.argv[2])
assert a["state"] == b["state"] == "DONE"
assert a["output"] == b["output"]
assert [o["output"] for o in a["ops"]] == [o["output"] for o in b["ops"]]
PYEOF
ctl result "$JOB" >"$TMP/result.txt" || fail "result (text) failed"
grep -q "=== output" "$TMP/result.txt" || fail "text result has no output section"
ctl jobs >"$TMP/jobs.txt" || fail "jobs failed"
grep -q "$JOB.*DONE" "$TMP/jobs.txt" || fail "jobs does not list $JOB as DONE: $(cat "$TMP/jobs.txt")"
ctl --json status >"$TMP/status.json" || fail "status failed"
pyrun "$TMP/status.json" <<'PYEOF' || fail "status is wrong: $(cat "$TMP/status.json")"
import json, sys
s = load_json(sys.argv[1])
alive = sorted(w["id"] for w in s["workers"] if w["alive"])
assert alive == ["w1", "w2"], alive
assert s["jobs_done"] >= 1, s["jobs_done"]
assert sum(w["lookup_tokens"] for w in s["workers"]) > 0
PYEOF
ctl status >/dev/null || fail "status (text) failed"
# unknown job: typed NOT_FOUND, exit 1
if ctl result job-999999 2>"$TMP/nf.txt"; then fail "result of an unknown job succeeded"; fi
grep -q "error NOT_FOUND" "$TMP/nf.txt" || fail "unknown job: $(cat "$TMP/nf.txt")"
note "ok"
