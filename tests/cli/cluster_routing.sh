#!/usr/bin/env bash
# cluster_routing: the coordinator routes by cached prefix, and stops doing
# so when the prefix's holder is overloaded.
#
# Deterministic by construction (routing is a pure function of the directory
# and the in-flight load, and ties go to the lower slot), no timing involved:
#  1. one worker w1: op P (a ~400-token system prompt S1 + a question) runs;
#     op B sharing S1 runs with cached_tokens > 0 and w1's hit counters grow.
#  2. three long "hog" ops are dispatched to w1 (the only worker); w1 is then
#     frozen (SIGSTOP), so its in-flight load (> imbalance_abs = 4096 tokens)
#     stays. A second worker w2 registers. Op C (S1 + another question) goes to
#     w2 despite w1 holding S1 (w2 recomputes it after its KV pull from the
#     frozen w1 times out), and op Q (a new prefix S2) goes to w2 as well.
#     Their outputs equal `helium-worker generate`.
#  3. w1 resumes; the hogs finish. With both workers idle, op D sharing S2
#     goes to w2, the worker holding S2 (the higher slot: without affinity the
#     tie would go to w1), with cached_tokens > 0.
source "$(dirname "$0")/cluster_lib.bash"

# w1 is frozen for a few seconds on purpose: it must not be declared dead
export HELIUM_COORD_ARGS="${HELIUM_COORD_ARGS:-} --worker-timeout-ms 120000" # keeps cluster_lib's --policy router
cluster_up 1

S1=$(python3 -c '
words = "the regional manager reviews every store report with care and notes the sales figures the staff levels the deliveries and the customer complaints before the weekly call".split()
print(" ".join(words[i % len(words)] for i in range(160)))')
S2=$(python3 -c '
words = "a warehouse team tracks pallets trucks and shelves across three sites and writes a short log entry for every late shipment and every damaged box".split()
print(" ".join(words[i % len(words)] for i in range(135)))')

# one_op FILE ID PROMPT MAXTOK: writes a one-llm-op workflow
one_op() {
  python3 - "$@" <<'PYEOF'
import json, sys
path, oid, prompt, mt = sys.argv[1:5]
json.dump({"name": oid, "ops": [{"id": oid, "type": "llm", "prompt": prompt, "max_tokens": int(mt)}]},
          open(path, "w"))
PYEOF
}

# run_op ID PROMPT MAXTOK: runs it, leaves the job JSON in $TMP/ID.json
run_op() {
  one_op "$TMP/$1.wf.json" "$1" "$2" "$3"
  ctl --json submit "$TMP/$1.wf.json" --wait --quiet >"$TMP/$1.json" || fail "op $1 failed: $(head -c 600 "$TMP/$1.json")"
}

# op_field ID FIELD: a field of op ID in $TMP/ID.json
op_field() {
  pyrun "$TMP/$1.json" "$1" "$2" <<'PYEOF'
import sys
print(ops_by_id(load_json(sys.argv[1]))[sys.argv[2]][sys.argv[3]])
PYEOF
}

# check_ref ID PROMPT MAXTOK: op ID's output equals generate's
check_ref() {
  pyrun "$TMP/$1.json" "$1" "$2" "$3" <<'PYEOF' || fail "op $1 differs from helium-worker generate"
import sys
path, oid, prompt, mt = sys.argv[1:5]
op = ops_by_id(load_json(path))[oid]
ref = generate(prompt, int(mt))
check(op["output"] == ref["text"], "op %s: %r != %r" % (oid, op["output"], ref["text"]))
PYEOF
}

# worker_counter ID KEY: a worker's hit_tokens/lookup_tokens (WorkerInfo) or heartbeat counter
worker_stat() {
  ctl --json status >"$TMP/st.json" || fail "status failed"
  pyrun "$TMP/st.json" "$1" "$2" <<'PYEOF'
import sys
s = load_json(sys.argv[1])
w = [x for x in s["workers"] if x["id"] == sys.argv[2]][0]
k = sys.argv[3]
print(w[k] if k in w else w["counters"].get(k, 0))
PYEOF
}

# wait_blocks N: until the directory holds at least N blocks (cache events arrived)
wait_blocks() {
  for _ in $(seq 1 200); do
    ctl --json status >"$TMP/st.json" 2>/dev/null || true
    [ "$(jfield "$TMP/st.json" directory_blocks)" != "?" ] && [ "$(jfield "$TMP/st.json" directory_blocks)" -ge "$1" ] && return 0
    sleep 0.05
  done
  fail "the directory never reached $1 blocks"
}

# ---- 1. cache hit on the only worker
run_op P "$S1
Question: how are sales?
Answer:" 8
[ "$(op_field P worker)" = w1 ] || fail "P ran on $(op_field P worker)"
wait_blocks 20
HIT0=$(worker_stat w1 hit_tokens)
run_op B "$S1
Question: how are staff levels?
Answer:" 8
[ "$(op_field B worker)" = w1 ] || fail "B ran on $(op_field B worker)"
B_CACHED=$(op_field B cached_tokens)
[ "$B_CACHED" -ge 320 ] || fail "B reused only $B_CACHED cached tokens of its ~400-token shared prefix"
check_ref B "$S1
Question: how are staff levels?
Answer:" 8
# the heartbeat after B carries w1's new hit count
for _ in $(seq 1 100); do
  HIT1=$(worker_stat w1 hit_tokens)
  [ "$HIT1" -ge $((HIT0 + B_CACHED)) ] && break
  sleep 0.1
done
[ "$HIT1" -ge $((HIT0 + B_CACHED)) ] || fail "w1 hit_tokens went from $HIT0 to $HIT1 (B reused $B_CACHED)"
ctl status | grep -q "^w1 " || fail "status table has no w1 row"
note "B reused $B_CACHED tokens on w1; hit_tokens $HIT0 -> $HIT1"

# ---- 2. overload w1, freeze it, add w2
# hogs: prompts whose greedy generation runs the full 1900 tokens (checked
# here with generate: deterministic), so none can end before w1 is frozen
pyrun "$TMP/hogs.json" <<'PYEOF' || fail "cannot find three hog prompts that generate 1900 tokens"
import json, sys
hogs = []
for t in ("lighthouse", "harbor", "garden", "river", "bridge", "bakery", "ferry", "forest", "museum", "castle"):
    p = "Tell a long tale about the %s." % t
    if generate(p, 1900)["finish"] == "length":
        hogs.append(p)
    if len(hogs) == 3:
        break
check(len(hogs) == 3, "only %d hog prompts" % len(hogs))
json.dump({"name": "hogs", "ops": [{"id": "hog%d" % (i + 1), "type": "llm", "max_tokens": 1900, "prompt": p}
                                   for i, p in enumerate(hogs)]}, open(sys.argv[1], "w"))
PYEOF
HOGS=$(ctl submit "$TMP/hogs.json") || fail "hogs submit failed"
# all three must be running on w1 when it is frozen
hogs_running() {
  ctl --json result "$HOGS" >"$TMP/hogs.now.json" 2>/dev/null || true
  pyrun "$TMP/hogs.now.json" <<'PYEOF'
import sys
try:
    j = load_json(sys.argv[1])
    print(sum(1 for o in j["ops"] if o["state"] == "RUNNING" and o["worker"] == "w1"))
except Exception:
    print(0)
PYEOF
}
for _ in $(seq 1 400); do
  n=$(hogs_running)
  [ "$n" = 3 ] && break
  sleep 0.02
done
[ "$n" = 3 ] || fail "the hogs were not all running on w1"
kill_worker w1 STOP
[ "$(hogs_running)" = 3 ] || { kill_worker w1 CONT; fail "a hog finished before w1 was frozen"; }

start_worker w2
cat >"$TMP/cq.json" <<EOF
$(python3 - "$S1" "$S2" <<'PYEOF'
import json, sys
s1, s2 = sys.argv[1:3]
print(json.dumps({"name": "cq", "ops": [
    {"id": "c", "type": "llm", "max_tokens": 8, "prompt": s1 + "\nQuestion: how are deliveries?\nAnswer:"},
    {"id": "q", "type": "llm", "max_tokens": 8, "prompt": s2 + "\nQuestion: what was late?\nAnswer:"}]}))
PYEOF
)
EOF
timeout 120 "$HELIUM_BIN/heliumctl" --json submit "$TMP/cq.json" --wait --quiet >"$TMP/cq.out" || { kill_worker w1 CONT; fail "job c/q failed: $(head -c 600 "$TMP/cq.out")"; }
kill_worker w1 CONT
pyrun "$TMP/cq.out" "$S1" "$S2" <<'PYEOF' || fail "routing under load is wrong"
import sys
j = load_json(sys.argv[1])
s1, s2 = sys.argv[2:4]
ops = ops_by_id(j)
check(ops["c"]["worker"] == "w2", "c (shares w1's prefix, w1 overloaded) ran on %s" % ops["c"]["worker"])
check(ops["q"]["worker"] == "w2", "q (new prefix, w1 overloaded) ran on %s" % ops["q"]["worker"])
for oid, p in (("c", s1 + "\nQuestion: how are deliveries?\nAnswer:"), ("q", s2 + "\nQuestion: what was late?\nAnswer:")):
    ref = generate(p, 8)
    check(ops[oid]["output"] == ref["text"], "%s: %r != %r" % (oid, ops[oid]["output"], ref["text"]))
print("routing: c and q went to w2 while w1 was overloaded (c pulled %d, cached %d)" % (
    ops["c"]["pulled_tokens"], ops["c"]["cached_tokens"]))
PYEOF
wait_job "$HOGS" "$TMP/hogs.done.json" 240 || fail "the hogs did not finish after w1 resumed"

# ---- 3. affinity beats the slot order
wait_blocks 30
run_op D "$S2
Question: what was damaged?
Answer:" 8
[ "$(op_field D worker)" = w2 ] || fail "D (shares S2, held by w2 only) ran on $(op_field D worker)"
D_CACHED=$(op_field D cached_tokens)
[ "$D_CACHED" -ge 256 ] || fail "D reused only $D_CACHED tokens on w2"
check_ref D "$S2
Question: what was damaged?
Answer:" 8
note "D reused $D_CACHED tokens on w2"
note "ok"
