#!/usr/bin/env bash
# cluster_faults: the cluster survives what goes wrong.
#  1. kill -9 of a worker in the middle of a workflow (a map over 8 items,
#     then a chain of dependent llm ops): the job still completes, every
#     output equals a clean run's (and `helium-worker generate`'s), the dead
#     worker is reported dead, and its in-flight items were re-dispatched.
#  2. malformed frames on the client endpoint (random bytes, a truncated
#     Request, a wrong protocol_version, an empty frame) get a typed PROTOCOL
#     error; a REQ-socket client (with its delimiter frame) is answered.
#  3. bad workflows get typed errors naming the op: a cycle, a dangling
#     reference, an unknown op kind, a missing input (sent as raw protos,
#     since heliumctl refuses them itself: that is checked too), and a prompt
#     longer than the context (the job FAILS with PROMPT_TOO_LONG).
#  4. after all that, the coordinator still serves a normal job.
#  5. a worker declared lost that resumes sends a stale result: the prompt
#     tokens it computed are counted (lost_computed_tokens), not dropped.
source "$(dirname "$0")/cluster_lib.bash"

# quick failure detection for this test
export HELIUM_COORD_ARGS="$HELIUM_COORD_ARGS --heartbeat-ms 200 --worker-timeout-ms 3000" # keeps cluster_lib's --policy router
cluster_up 2
COORD_PID=$(cat "$RUN/coordinator.pid")

# running_worker JOB OP: the worker that op OP of JOB shows as RUNNING on
# (polled for up to ~2 s); empty if none
running_worker() {
  local w="" _
  for _ in $(seq 1 100); do
    ctl --json result "$1" >"$TMP/mid.json" 2>/dev/null || true
    w=$(pyrun "$TMP/mid.json" "$2" <<'PYEOF'
try:
    o = ops_by_id(load_json(sys.argv[1]))[sys.argv[2]]
    print(o["worker"] if o["state"] == "RUNNING" and o["worker"] else "")
except Exception:
    print("")
PYEOF
    )
    [ -n "$w" ] && break
    sleep 0.02
  done
  echo "$w"
}

RAWSEND=$HELIUM_BUILD/tests/rawsend # tests/cli/rawsend.c, a CMake target
[ -x "$RAWSEND" ] || fail "$RAWSEND is missing (not built)"

# ---- 1. kill -9 a worker mid-workflow
SYSTEM="You are a store auditor. For the store named below, write a short verdict about its weekly figures, in plain words, starting with the most important point."
cat >"$TMP/wf.json" <<'EOF'
{
  "name": "faults_map",
  "inputs": [{"name": "system"}, {"name": "stores"}],
  "ops": [
    {"id": "audit", "type": "map", "over": "input.stores", "split": "lines",
     "body": {"type": "llm", "max_tokens": 64, "prompt": "{{input.system}}\nStore: {{item}}\nVerdict:"}},
    {"id": "s1", "type": "llm", "max_tokens": 64, "prompt": "{{input.system}}\nAll verdicts:\n{{op.audit}}\nStep 1:"},
    {"id": "s2", "type": "llm", "max_tokens": 64, "prompt": "{{input.system}}\nStep 1 said: {{op.s1}}\nStep 2:"},
    {"id": "s3", "type": "llm", "max_tokens": 64, "prompt": "{{input.system}}\nStep 2 said: {{op.s2}}\nStep 3:"},
    {"id": "s4", "type": "llm", "max_tokens": 64, "prompt": "{{input.system}}\nStep 3 said: {{op.s3}}\nStep 4:"}
  ],
  "output": "s4"
}
EOF
STORES=$'Lyon\nParis\nBerlin\nMadrid\nMilan\nVienna\nZurich\nOslo'

ctl --json submit "$TMP/wf.json" --input "system=$SYSTEM" --input "stores=$STORES" --wait --quiet >"$TMP/clean.json" ||
  fail "clean run failed: $(cat "$TMP/clean.json")"

# Fault injection without races: freeze both workers, then submit (the map
# items dispatched to them can't finish: a second run of the same inputs is
# all prefix-cache hits, and a worker left running would finish its items
# before any signal could reach it), kill -9 the one that got the last
# dispatched item, let the other go on.
kill_worker w1 STOP
kill_worker w2 STOP
JOB=$(ctl submit "$TMP/wf.json" --input "system=$SYSTEM" --input "stores=$STORES") ||
  { kill_worker w1 CONT; kill_worker w2 CONT; fail "submit failed"; }
VICTIM=$(running_worker "$JOB" audit)
[ -n "$VICTIM" ] || { kill_worker w1 CONT; kill_worker w2 CONT; fail "the map of $JOB never showed a running item"; }
case $VICTIM in w1) SURVIVOR=w2 ;; w2) SURVIVOR=w1 ;; *) fail "map ran on '$VICTIM'" ;; esac
kill_worker "$VICTIM" KILL
kill_worker "$SURVIVOR" CONT
note "killed $VICTIM (kill -9) while it held map items of $JOB"

wait_job "$JOB" "$TMP/faulted.json" 240 || fail "job $JOB did not complete after the fault: $(head -c 600 "$TMP/faulted.json")"

pyrun "$TMP/clean.json" "$TMP/faulted.json" "$VICTIM" "$SYSTEM" "$STORES" <<'PYEOF' || fail "faulted run differs"
clean, faulted = load_json(sys.argv[1]), load_json(sys.argv[2])
victim, system, stores = sys.argv[3:6]
check(clean["state"] == "DONE" and faulted["state"] == "DONE", "states %s / %s" % (clean["state"], faulted["state"]))
c, f = ops_by_id(clean), ops_by_id(faulted)
for oid in ("audit", "s1", "s2", "s3", "s4"):
    check(c[oid]["output"] == f[oid]["output"], "op %s: faulted output differs from the clean run" % oid)
check(c["audit"]["outputs"] == f["audit"]["outputs"], "map items differ")
check(clean["output"] == faulted["output"], "job outputs differ")
# ground truth for the clean run
inputs = {"system": system, "stores": stores}
for i, it in enumerate(stores.split("\n")):
    ref = generate(render("{{input.system}}\nStore: {{item}}\nVerdict:", inputs, {}, item=it), 64)
    check(c["audit"]["outputs"][i] == ref["text"], "map item %d differs from generate" % i)
outs = {"audit": c["audit"]["output"]}
tmpl = {"s1": "{{input.system}}\nAll verdicts:\n{{op.audit}}\nStep 1:",
        "s2": "{{input.system}}\nStep 1 said: {{op.s1}}\nStep 2:",
        "s3": "{{input.system}}\nStep 2 said: {{op.s2}}\nStep 3:",
        "s4": "{{input.system}}\nStep 3 said: {{op.s3}}\nStep 4:"}
for oid in ("s1", "s2", "s3", "s4"):
    ref = generate(render(tmpl[oid], inputs, outs), 64)
    check(c[oid]["output"] == ref["text"], "op %s differs from generate" % oid)
    outs[oid] = c[oid]["output"]
# the victim's items were re-dispatched (it was frozen: they could not finish)
m = f["audit"]
check(m["attempts"] > m["items_total"], "map: %d attempts for %d items after the kill" % (m["attempts"], m["items_total"]))
for oid in ("s1", "s2", "s3", "s4"):
    check(f[oid]["worker"] != victim, "op %s ran on the dead worker %s" % (oid, victim))
print("faults: %d map attempts for %d items; s1..s4 ran on %s" % (m["attempts"], m["items_total"], f["s4"]["worker"]))
PYEOF

# the dead worker is reported dead
ctl --json status >"$TMP/status.json" || fail "status failed"
pyrun "$TMP/status.json" "$VICTIM" <<'PYEOF' || fail "status after the kill: $(cat "$TMP/status.json")"
import json, sys
s = load_json(sys.argv[1])
w = {x["id"]: x for x in s["workers"]}
assert sys.argv[2] not in w or not w[sys.argv[2]]["alive"], "killed worker still alive"
assert sum(1 for x in s["workers"] if x["alive"]) == 1
PYEOF

# ---- 2. malformed frames
EP=$HELIUM_COORDINATOR
for mode in garbage truncated badversion empty; do
  out=$("$RAWSEND" "$EP" "$mode" 5000) || fail "rawsend $mode: no reply ($out)"
  case $out in code=PROTOCOL*) ;; *) fail "rawsend $mode: expected a PROTOCOL error, got: $out" ;; esac
done
out=$("$RAWSEND" "$EP" req 5000) || fail "REQ client got no reply ($out)"
case $out in "code=OK "*"request_id=4242 "*"body=13 "*) ;; *) fail "REQ client: unexpected reply: $out" ;; esac

# ---- 3. bad workflows: raw protos straight to the coordinator
expect_raw() { # MODE CODE OP
  local out
  out=$("$RAWSEND" "$EP" "$1" 5000) || fail "rawsend $1: no reply ($out)"
  case $out in "code=$2 op=$3 "*) ;; *) fail "rawsend $1: expected code=$2 op=$3, got: $out" ;; esac
}
out=$("$RAWSEND" "$EP" cycle 5000) || fail "rawsend cycle: no reply"
case $out in "code=CYCLE op=a "*|"code=CYCLE op=b "*) ;; *) fail "cycle: got $out" ;; esac
expect_raw dangling DANGLING_REF a
expect_raw unknownop UNKNOWN_OP mystery
out=$("$RAWSEND" "$EP" noinput 5000) || fail "rawsend noinput: no reply"
case $out in "code=INVALID "*doc*) ;; *) fail "missing input: got $out" ;; esac

# ... and through heliumctl, which checks files itself with the same codes
expect_ctl() { # FILE CODE
  if ctl submit "$1" --input text=x >"$TMP/o.txt" 2>"$TMP/e.txt"; then fail "submit $1 succeeded"; fi
  grep -q "heliumctl: error $2" "$TMP/e.txt" || fail "submit $1: expected error $2, got: $(cat "$TMP/e.txt")"
}
expect_ctl "$HELIUM_SRC/examples/bad_cycle.json" CYCLE
cat >"$TMP/dangling.json" <<'EOF'
{"ops": [{"id": "a", "type": "llm", "prompt": "x {{op.ghost}}"}]}
EOF
expect_ctl "$TMP/dangling.json" DANGLING_REF
cat >"$TMP/unknown.json" <<'EOF'
{"ops": [{"id": "a", "type": "teleport", "prompt": "x"}]}
EOF
expect_ctl "$TMP/unknown.json" UNKNOWN_OP

# a prompt longer than the context: accepted, then the job FAILS naming the op
cat >"$TMP/long.json" <<'EOF'
{"name": "too_long", "inputs": ["text"],
 "ops": [{"id": "short", "type": "llm", "max_tokens": 4, "prompt": "Hello"},
         {"id": "huge", "type": "llm", "max_tokens": 16, "prompt": "Summarize: {{input.text}}"}]}
EOF
LONGTEXT=$(python3 -c 'print(" ".join("word%d" % i for i in range(3000)))')
if ctl --json submit "$TMP/long.json" --input "text=$LONGTEXT" --wait --quiet >"$TMP/long.out" 2>"$TMP/long.err"; then
  fail "an over-long prompt succeeded"
fi
grep -q "error PROMPT_TOO_LONG.*(op huge)" "$TMP/long.err" || fail "over-long prompt: $(cat "$TMP/long.err")"
pyrun "$TMP/long.out" <<'PYEOF' || fail "over-long prompt job status: $(cat "$TMP/long.out")"
import json, sys
j = load_json(sys.argv[1])
assert j["state"] == "FAILED", j["state"]
assert j["error"]["code"] == "PROMPT_TOO_LONG" and j["error"]["op_id"] == "huge", j["error"]
PYEOF

# ---- 4. still serving
kill -0 "$COORD_PID" || fail "the coordinator died"
cat >"$TMP/ok.json" <<'EOF'
{"ops": [{"id": "hello", "type": "llm", "max_tokens": 16, "prompt": "The store manager reviewed the weekly report and"}]}
EOF
ctl --json submit "$TMP/ok.json" --wait --quiet >"$TMP/ok.out" || fail "a normal job failed after the faults"
pyrun "$TMP/ok.out" <<'PYEOF' || fail "the normal job's output is wrong"
j = load_json(sys.argv[1])
check(j["state"] == "DONE", j["state"])
ref = generate("The store manager reviewed the weekly report and", 16)
check(j["output"] == ref["text"], "%r != %r" % (j["output"], ref["text"]))
PYEOF

# ---- 5. a worker declared lost that comes back with its result: the result
# is stale (the call ran again elsewhere), but the prompt tokens it computed
# are real work (and its KV re-enters the directory through the resync), so
# they are counted: computed_tokens never drops below the batch's minimum.
start_worker w3
ctl --json status >"$TMP/s5.json" || fail "status failed"
ALIVE=$(pyrun "$TMP/s5.json" <<'PYEOF'
print(" ".join(x["id"] for x in load_json(sys.argv[1])["workers"] if x["alive"]))
PYEOF
)
[ "$(echo "$ALIVE" | wc -w)" = 2 ] || fail "expected two live workers before step 5, got '$ALIVE'"
for w in $ALIVE; do kill_worker "$w" STOP; done
LATE=$(python3 -c 'print(" ".join("fact%d" % i for i in range(300)))')
cat >"$TMP/late.json" <<'EOF'
{"name": "late", "inputs": ["text"],
 "ops": [{"id": "sum", "type": "llm", "max_tokens": 8, "prompt": "Facts: {{input.text}}\nSummary:"}]}
EOF
JOB=$(ctl submit "$TMP/late.json" --input "text=$LATE") ||
  { for w in $ALIVE; do kill_worker "$w" CONT; done; fail "submit (step 5) failed"; }
LATEW=$(running_worker "$JOB" sum)
[ -n "$LATEW" ] || { for w in $ALIVE; do kill_worker "$w" CONT; done; fail "job $JOB never showed a running op"; }
for w in $ALIVE; do [ "$w" = "$LATEW" ] || kill_worker "$w" CONT; done
wait_job "$JOB" "$TMP/late.out" 120 || { kill_worker "$LATEW" CONT; fail "job $JOB did not complete with $LATEW frozen"; }
kill_worker "$LATEW" CONT
note "froze $LATEW past its timeout; the call ran again elsewhere; $LATEW resumed"
ok=""
for _ in $(seq 1 150); do
  ctl --json status >"$TMP/late-status.json" || fail "status failed"
  if pyrun "$TMP/late-status.json" <<'PYEOF'
c = load_json(sys.argv[1])["counters"]
sys.exit(0 if c.get("stale_results", 0) >= 1 and c.get("lost_computed_tokens", 0) > 0 else 1)
PYEOF
  then ok=1; break; fi
  sleep 0.1
done
[ -n "$ok" ] || fail "no stale result with computed tokens counted after $LATEW resumed: $(head -c 1500 "$TMP/late-status.json")"
pyrun "$TMP/late-status.json" "$TMP/late.out" <<'PYEOF' || fail "counters after the late result"
s, j = load_json(sys.argv[1]), load_json(sys.argv[2])
c = s["counters"]
check(j["state"] == "DONE", j["state"])
comp, mn = c.get("computed_tokens.router", 0), c.get("min_prompt_tokens.router", 0)
check(mn > 0 and comp >= mn, "computed_tokens %d below the minimum %d" % (comp, mn))
print("late result: stale_results %d, lost_computed_tokens %d, computed %d >= min %d" % (
    c["stale_results"], c["lost_computed_tokens"], comp, mn))
PYEOF
note "ok"
