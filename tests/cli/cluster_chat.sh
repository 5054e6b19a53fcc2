#!/usr/bin/env bash
# cluster_chat: llm ops given as chat `messages` through a real cluster
# (coordinator --chat-template chatml, two workers, the helium policy, the
# generated tiny model whose vocabulary has <|im_start|> / <|im_end|>). Checks:
# every map item's output equals `helium-worker generate --prompt-ids` on the
# ids `helium-worker tokenize --chat` gives for the same chat (one system
# message shared by all items, then the item), and the generated and prompt
# token counts agree; the shared system message is served from the prefix
# cache (cached tokens > 0); a message with an unknown role is refused with a
# typed error naming the op; a coordinator started with an unknown
# --chat-template exits with a typed error.
export HELIUM_COORD_ARGS="--chat-template chatml ${HELIUM_COORD_ARGS:-}"
source "$(dirname "$0")/cluster_lib.bash"

# an unknown template name: the coordinator refuses to start
if "$HELIUM_BIN/helium-coordinator" --model "$MODEL" --chat-template no-such-family \
    --listen "tcp://127.0.0.1:$((PORT + 45))" --workers "tcp://127.0.0.1:$((PORT + 46))" \
    --metrics-port 0 >"$TMP/bad.log" 2>&1; then
  fail "the coordinator started with --chat-template no-such-family"
fi
grep -q "unknown chat template .no-such-family." "$TMP/bad.log" ||
  fail "unknown template: expected an error naming it, got: $(cat "$TMP/bad.log")"

cluster_up 2

SYSTEM="You review store reports for a retail chain. Quote numbers exactly and keep every answer to one short line."
cat >"$TMP/wf.json" <<'EOF'
{
  "name": "chat_map",
  "inputs": [{"name": "system"}, {"name": "items", "default": "Lyon sales -4%\nParis sales -18%\nOslo sales +3%"}],
  "ops": [
    {"id": "stores", "type": "map", "over": "input.items", "split": "lines",
     "body": {"type": "llm", "max_tokens": 12,
              "messages": [{"role": "system", "content": "{{input.system}}"},
                           {"role": "user", "content": "Report: {{item}}"}]}}
  ],
  "output": "stores"
}
EOF
ctl --json submit "$TMP/wf.json" --policy helium --input "system=$SYSTEM" --wait >"$TMP/job.json" 2>"$TMP/submit.err" ||
  fail "submit failed: $(cat "$TMP/submit.err")"

pyrun "$TMP/job.json" "$SYSTEM" "$TMP" <<'PYEOF' || fail "chat outputs differ from helium-worker generate"
job, system, tmp = load_json(sys.argv[1]), sys.argv[2], sys.argv[3]
check(job["state"] == "DONE", "job state %s" % job["state"])
st = ops_by_id(job)["stores"]
items = ["Lyon sales -4%", "Paris sales -18%", "Oslo sales +3%"]
check(len(st["outputs"]) == 3, "3 map items, got %d" % len(st["outputs"]))
for i, it in enumerate(items):
    path = os.path.join(tmp, "chat%d.json" % i)
    json.dump([{"role": "system", "content": system}, {"role": "user", "content": "Report: " + it}], open(path, "w"))
    ids = subprocess.run([BIN + "/helium-worker", "tokenize", "--model", MODEL, "--chat", path, "--chat-template", "chatml"],
                         check=True, capture_output=True, text=True).stdout.strip()
    out = subprocess.run([BIN + "/helium-worker", "generate", "--model", MODEL, "--prompt-ids", ids, "--max-tokens", "12",
                          "--threads", "1", "--json"], check=True, capture_output=True).stdout
    ref = json.loads(out.decode("utf-8", "surrogateescape").splitlines()[0])
    check(st["outputs"][i] == ref["text"], "item %d: cluster %r != generate %r" % (i, st["outputs"][i], ref["text"]))
check(st["prompt_tokens"] > 0 and st["cached_tokens"] > 0,
      "the shared system message was not served from cache (prompt %d, cached %d)" % (st["prompt_tokens"], st["cached_tokens"]))
print("chat: 3 map items equal generate on the rendered chat; %d of %d prompt tokens cached" %
      (st["cached_tokens"], st["prompt_tokens"]))
PYEOF

# helium-worker generate parses control tokens in --prompt by default, as the
# coordinator does (and as `tokenize --special` does); --no-special is text
pyrun "$TMP" <<'PYEOF' || fail "generate's control-token parsing"
prompt = "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n"
def run(*flags):
    out = subprocess.run([BIN + "/helium-worker", "generate", "--model", MODEL, "--prompt", prompt, "--max-tokens", "4",
                          "--threads", "1", "--json"] + list(flags), check=True, capture_output=True).stdout
    return json.loads(out.decode("utf-8", "surrogateescape").splitlines()[0])
ids = subprocess.run([BIN + "/helium-worker", "tokenize", "--model", MODEL, "--text", prompt, "--special"],
                     check=True, capture_output=True, text=True).stdout.strip().split(",")
d, s, n = run(), run("--special"), run("--no-special")
check(d["prompt_tokens"] == s["prompt_tokens"] == len(ids), "default %d, --special %d, tokenize --special %d tokens" % (
    d["prompt_tokens"], s["prompt_tokens"], len(ids)))
check(d["ids"] == s["ids"], "default and --special generate differently")
check(n["prompt_tokens"] > d["prompt_tokens"], "--no-special: %d tokens, parsed: %d" % (n["prompt_tokens"], d["prompt_tokens"]))
PYEOF

# an unknown role: refused at submit, typed, naming the op
cat >"$TMP/bad.json" <<'EOF'
{"ops": [{"id": "ask", "type": "llm", "messages": [{"role": "narrator", "content": "hello"}]}]}
EOF
if ctl submit "$TMP/bad.json" >"$TMP/bad.out" 2>&1; then fail "a message with role 'narrator' was accepted"; fi
grep -q "narrator" "$TMP/bad.out" && grep -q "'ask'" "$TMP/bad.out" ||
  fail "unknown role: expected an error naming the role and the op, got: $(cat "$TMP/bad.out")"
note "PASS"
