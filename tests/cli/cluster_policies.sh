#!/usr/bin/env bash
# cluster_policies: the five scheduling policies (isolated, prefix, router,
# kvflow, helium) run the same batch of jobs, each on a fresh 2-worker
# cluster, and give the same outputs while doing different amounts of work.
#
# The batch: three jobs of one fan-out/fan-in workflow -- a planner op, three
# experts that share a long static system prompt and wait for the plan, a
# copy of the first expert (an identical computation: helium merges it), an
# op whose output nothing uses (helium prunes it), a map over the lines of the
# planner's and two experts' outputs (its width known only at run time), a
# final op over the experts and the map, and a bounded loop that polishes the
# final answer (2 rounds, round 2 reading round 1 through {{prev}}; the job's
# output).
# Jobs 1 and 2 have identical inputs.
#
# Checks:
#  - every job is DONE; every llm op that ran under a policy has exactly the
#    output it has under `isolated` (greedy), and so do the map's items and
#    the loop's rounds; the planner's output equals
#    `helium-worker generate`;
#  - isolated: cached_tokens == 0 (no prefix reuse at all);
#  - prefix and router: cached_tokens > 0;
#  - helium: the unused op is SKIPPED (ops_pruned >= 1), the expert copy is
#    merged (ops_merged >= 1), job 2 is answered by in-flight dedup or the
#    result cache (dedup_hits + rcache_hits >= 1), the shared expert prompt
#    is prefilled ahead (warm_tasks >= 1), plan_us > 0;
#  - kvflow and helium pinned something (pins >= 1) and released all of it
#    once the jobs ended (unpins == pins);
#  - computed tokens: helium < router < isolated;
#  - helium again with workers whose KV holds one expert call and little more
#    (run "helium-tight": --ctx 352 --kv-blocks 23): the same outputs, and
#    every pin released; with room to spare (run "helium") the KV admission
#    never holds a call back (kv_waits == 0). (Whether the tight run's calls
#    wait in the admission or in the route's free-page guard depends on
#    timing; tests/unit/test_coord_opt.c checks the admission itself.)
source "$(dirname "$0")/cluster_lib.bash"

EXPERT_SYS=$(python3 -c '
words = "you are one expert on a panel that reviews the weekly operations of a retail chain and every expert reads the plan below then answers in one short paragraph with the single most useful fact and a number".split()
print(" ".join(words[i % len(words)] for i in range(120)))')

python3 - "$TMP/wf.json" "$EXPERT_SYS" <<'PYEOF'
import json, sys
path, sys_prompt = sys.argv[1:3]
def expert(k):
    return sys_prompt + "\nExpert %d on {{input.topic}}.\nPlan: {{op.plan}}\nAnswer:" % k
wf = {
    "name": "policies_fanout",
    "inputs": [{"name": "topic"}],
    "ops": [
        {"id": "plan", "type": "llm", "max_tokens": 8, "prompt": "Planner notes. Topic: {{input.topic}}\nPlan:"},
        {"id": "e1", "type": "llm", "max_tokens": 8, "prompt": expert(1)},
        {"id": "e2", "type": "llm", "max_tokens": 8, "prompt": expert(2)},
        {"id": "e3", "type": "llm", "max_tokens": 8, "prompt": expert(3)},
        {"id": "e1_again", "type": "llm", "max_tokens": 8, "prompt": expert(1)},
        {"id": "unused", "type": "llm", "max_tokens": 8, "prompt": "A side note nobody reads about {{input.topic}}:"},
        {"id": "notes", "type": "join", "refs": ["op.plan", "op.e2", "op.e3"], "separator": "\n"},
        {"id": "steps", "type": "map", "over": "op.notes", "split": "lines", "max_width": 64,
         "body": {"type": "llm", "max_tokens": 4, "prompt": "Check one plan step for {{input.topic}}: {{item}}\nCheck:"}},
        {"id": "final", "type": "llm", "max_tokens": 8,
         "prompt": "Summary for {{input.topic}}.\nA: {{op.e1}}\nB: {{op.e2}}\nC: {{op.e3}}\nD: {{op.e1_again}}\n"
                   "Checks: {{op.steps}}\nVerdict:"},
        {"id": "polish", "type": "loop", "max_rounds": 2, "until_contains": "\u0001never\u0001", "body": [
            {"id": "pol", "type": "llm", "max_tokens": 4,
             "prompt": "Polish the verdict on {{input.topic}}: {{op.final}}\nPrevious try: {{prev}}\nPolished:"}]},
    ],
    "output": "polish",
}
json.dump(wf, open(path, "w"))
PYEOF

TOPICS=("store 12 dairy deliveries" "store 12 dairy deliveries" "store 40 staff levels")
RUNS=(isolated prefix router kvflow helium helium-tight)

for R in "${RUNS[@]}"; do
  P=${R%-tight}
  if [ "$R" != "$P" ]; then export HELIUM_WORKER_ARGS="--ctx 352 --kv-blocks 23"; else unset HELIUM_WORKER_ARGS; fi
  RUN=$TMP/run-$R
  mkdir -p "$RUN"
  cluster_up 2
  ids=()
  for k in 0 1 2; do
    id=$(ctl submit "$TMP/wf.json" --policy "$P" --input "topic=${TOPICS[$k]}") || fail "$P: submit $k failed"
    ids+=("$id")
  done
  for k in 0 1 2; do
    wait_job "${ids[$k]}" "$TMP/$R.job$k.json" 120 || fail "$R: job ${ids[$k]} did not finish DONE: $(head -c 800 "$TMP/$R.job$k.json")"
  done
  # pins are released right after the last consumer's result: give the sweep a moment
  for _ in $(seq 1 50); do
    ctl --json status >"$TMP/$R.status.json" || fail "$R: status failed"
    pyrun "$TMP/$R.status.json" "$P" <<'PYEOF' && break
import sys
c = load_json(sys.argv[1])["counters"]
p = sys.argv[2]
sys.exit(0 if c.get("pins." + p, 0) == c.get("unpins." + p, 0) else 1)
PYEOF
    sleep 0.1
  done
  curl -sf "http://127.0.0.1:$((PORT + 2))/metrics" >"$TMP/$R.metrics" || fail "$R: no metrics page"
  $CLUSTER down "$RUN" >/dev/null 2>&1 || true
  note "$R done"
done
unset HELIUM_WORKER_ARGS

pyrun "$TMP" "$TMP/wf.json" <<'PYEOF' || fail "policy checks failed"
import sys
tmp, wfpath = sys.argv[1:3]
wf = load_json(wfpath)
pols = ["isolated", "prefix", "router", "kvflow", "helium", "helium-tight"]
jobs = {p: [load_json("%s/%s.job%d.json" % (tmp, p, k)) for k in range(3)] for p in pols}
cnt = {}
for p in pols:
    c = load_json("%s/%s.status.json" % (tmp, p))["counters"]
    q = p.split("-")[0]
    cnt[p] = {k[: -len(q) - 1]: v for k, v in c.items() if k.endswith("." + q)}
llm_ids = [o["id"] for o in wf["ops"] if o["type"] == "llm"]

# outputs: identical to isolated wherever an op ran
for p in pols:
    for k in range(3):
        j = jobs[p][k]
        check(j["state"] == "DONE", "%s job %d: %s" % (p, k, j["state"]))
        check(j.get("policy") == p.split("-")[0], "%s job %d reports policy %s" % (p, k, j.get("policy")))
        t = j.get("timing", {})
        check(t.get("submitted_us", 0) > 0 and t.get("finished_us", 0) >= t.get("submitted_us", 0),
              "%s job %d timing %s" % (p, k, t))
        ops, ref = ops_by_id(j), ops_by_id(jobs["isolated"][k])
        for oid in llm_ids:
            if p.startswith("helium") and oid == "unused":
                check(ops[oid]["state"] == "SKIPPED", "helium job %d: unused op is %s" % (k, ops[oid]["state"]))
                continue
            check(ops[oid]["state"] == "DONE", "%s job %d op %s is %s" % (p, k, oid, ops[oid]["state"]))
            check(ops[oid]["output"] == ref[oid]["output"],
                  "%s job %d op %s: %r != isolated %r" % (p, k, oid, ops[oid]["output"], ref[oid]["output"]))
        for o in j["ops"]:
            if o.get("kind") in ("map", "loop"):
                r = ref[o["op_id"]]
                check(o["state"] == "DONE" and (o.get("outputs"), o.get("output"), o.get("round")) ==
                      (r.get("outputs"), r.get("output"), r.get("round")),
                      "%s job %d %s %s: %r != isolated %r" % (p, k, o["kind"], o["op_id"], o, r))
        check(ops["polish"].get("round") == 2, "%s job %d: the loop ran %r rounds" % (p, k, ops["polish"].get("round")))
        check(j["output"] == jobs["isolated"][k]["output"], "%s job %d output differs" % (p, k))
for k in range(3):
    o = ops_by_id(jobs["helium"][k])
    check(len(o["steps"].get("outputs") or []) >= 3, "helium job %d: the map ran %r" % (k, o["steps"]))
    print("job %d: the map over the notes' lines ran %d items; the loop %d rounds" % (
        k, len(o["steps"].get("outputs") or []), o["polish"].get("round", 0)))
plan_prompt = "Planner notes. Topic: store 12 dairy deliveries\nPlan:"
check(ops_by_id(jobs["isolated"][0])["plan"]["output"] == generate(plan_prompt, 8)["text"],
      "plan output differs from helium-worker generate")

def g(p, k):
    return cnt[p].get(k, 0)

check(g("isolated", "cached_tokens") == 0, "isolated reused %d cached tokens" % g("isolated", "cached_tokens"))
for p in ("prefix", "router"):
    check(g(p, "cached_tokens") > 0, "%s reused no cached tokens" % p)
check(g("helium", "ops_pruned") >= 1, "helium pruned nothing")
check(g("helium", "ops_merged") >= 1, "helium merged nothing")
check(g("helium", "dedup_hits") + g("helium", "rcache_hits") >= 1, "helium: no dedup or result-cache hit")
check(g("helium", "warm_tasks") >= 1, "helium warmed nothing")
check(g("helium", "plan_us") > 0, "helium: plan_us is 0")
check(g("helium", "kv_waits") == 0, "helium: %d calls held back for KV with room to spare" % g("helium", "kv_waits"))
for p in ("kvflow", "helium", "helium-tight"):
    check(g(p, "pins") >= 1, "%s pinned nothing" % p)
    check(g(p, "unpins") == g(p, "pins"), "%s: %d pins, %d unpins" % (p, g(p, "pins"), g(p, "unpins")))
ci, cr, ch = g("isolated", "computed_tokens"), g("router", "computed_tokens"), g("helium", "computed_tokens")
check(ch < cr < ci, "computed tokens: helium %d, router %d, isolated %d" % (ch, cr, ci))
for p in pols:
    check(g(p, "min_prompt_tokens") > 0 and g(p, "jobs") == 3, "%s: min_prompt %d, jobs %d" % (
        p, g(p, "min_prompt_tokens"), g(p, "jobs")))
    print("%-12s computed %5d  prompt %5d  cached %5d  pulled %4d  min %5d  warm %d/%d  rcache %d/%d  dedup %d  "
          "pruned %d  merged %d  pins %d/%d  held %d  kv_waits %d  plan_us %d" % (
          p, g(p, "computed_tokens"), g(p, "prompt_tokens"), g(p, "cached_tokens"), g(p, "pulled_tokens"),
          g(p, "min_prompt_tokens"), g(p, "warm_tasks"), g(p, "warm_tokens"), g(p, "rcache_hits"),
          g(p, "rcache_lookups"), g(p, "dedup_hits"), g(p, "ops_pruned"), g(p, "ops_merged"), g(p, "pins"),
          g(p, "unpins"), g(p, "held"), g(p, "kv_waits"), g(p, "plan_us")))
PYEOF
grep -q 'helium_policy_computed_tokens_total{policy="helium"}' "$TMP/helium.metrics" ||
  fail "/metrics lacks helium_policy_computed_tokens_total"
note "ok"
