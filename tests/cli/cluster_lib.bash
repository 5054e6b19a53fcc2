# cluster_lib.bash: shared setup for the multi-process cluster tests
# (tests/cli/cluster_*.sh source it; the .bash suffix keeps ctest from running
# it as a test of its own).
#
# Provides: $TMP (scratch dir, removed on exit), $RUN (cluster run dir),
# $MODEL (tiny llama f32 model, seed 3), $PORT (base port derived from $$),
# ctl (heliumctl against the cluster), cluster_up N, start_worker ID,
# kill_worker ID, fail MSG (dumps the logs' tails and exits 1), and the
# python helper $PYLIB (render + reference generation).
# Every process a test starts goes through scripts/cluster.sh and is stopped
# by the EXIT trap, whatever happens.

set -euo pipefail

: "${HELIUM_BIN:?set HELIUM_BIN to the bin directory of a build}"
: "${HELIUM_SRC:?set HELIUM_SRC to the source tree}"
HELIUM_BUILD=${HELIUM_BUILD:-$(dirname "$HELIUM_BIN")}
export HELIUM_BIN HELIUM_SRC HELIUM_BUILD

TEST_NAME=$(basename "$0" .sh)
# Keys: HELIUM_CURVE=1 runs the test's cluster with CURVE on every socket
# (scripts/cluster.sh makes the keys; cluster.env hands heliumctl its own);
# otherwise every program is told --insecure, also those a test starts itself.
if [ "${HELIUM_CURVE:-0}" != 1 ]; then
  export HELIUM_COORD_INSECURE=1 HELIUM_WORKER_INSECURE=1 HELIUMCTL_INSECURE=1
fi
for b in helium-coordinator helium-worker heliumctl helium-mkmodel; do
  if [ ! -x "$HELIUM_BIN/$b" ]; then
    echo "$TEST_NAME: $HELIUM_BIN/$b is missing (not built)" >&2
    exit 1
  fi
done

TMP=$(mktemp -d "/tmp/helium-$TEST_NAME.XXXXXX")
RUN=$TMP/run
mkdir -p "$RUN"
# An unusual base port per test process, below the kernel's ephemeral range
# (outgoing connections take ports from there), step 50: a cluster uses
# PORT .. PORT+30. cluster_up moves to another slot if a bind fails anyway.
EPHEMERAL_LOW=$(awk '{print $1}' /proc/sys/net/ipv4/ip_local_port_range 2>/dev/null || echo 32768)
[ "$EPHEMERAL_LOW" -gt 12000 ] 2>/dev/null || EPHEMERAL_LOW=32768
PORT_SLOTS=$(((EPHEMERAL_LOW - 100 - 10000) / 50))
port_for() { echo $((10000 + (($$ + $1 * 97) % PORT_SLOTS) * 50)); }
PORT=$(port_for 0)
export HELIUM_PORT=$PORT
export HELIUM_WATCH_PID=$$ # the cluster goes away with this test, even on SIGKILL
CLUSTER="bash $HELIUM_SRC/scripts/cluster.sh"

cleanup() {
  local rc=$?
  $CLUSTER down "$RUN" >/dev/null 2>&1 || true
  if [ $rc -eq 0 ] && [ -z "${KEEP_TMP:-}" ]; then
    rm -rf "$TMP"
  else
    echo "$TEST_NAME: exit $rc; files kept in $TMP" >&2
  fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

fail() {
  echo "FAIL $TEST_NAME: $*" >&2
  for f in "$RUN"/*.log; do
    [ -f "$f" ] || continue
    echo "---- tail of $f" >&2
    tail -n 25 "$f" >&2
  done
  exit 1
}

note() { echo "$TEST_NAME: $*"; }

MODEL=$TMP/m.gguf
"$HELIUM_BIN/helium-mkmodel" --preset tiny --arch llama --dtype f32 --seed 3 -o "$MODEL" >"$TMP/mkmodel.log" 2>&1 ||
  fail "helium-mkmodel failed: $(cat "$TMP/mkmodel.log")"
export HELIUM_MODEL=$MODEL
# These tests exercise the cluster's routing, transfer and fault machinery as
# written against the `router` policy (the coordinator's default was `router`
# until the demo made `helium` the default; helium also prunes operators whose
# output nothing reads). A test that wants another policy sets --policy in
# HELIUM_COORD_ARGS or per job; the last --policy given wins.
export HELIUM_COORD_ARGS="--policy router ${HELIUM_COORD_ARGS:-}"

# cluster_up N: coordinator + workers w1..wN, waits until all registered.
# Tries up to 5 port slots if something else holds a port.
cluster_up() {
  local try
  for try in 0 1 2 3 4; do
    PORT=$(port_for "$try")
    export HELIUM_PORT=$PORT
    if $CLUSTER up "$RUN" "$1" >"$TMP/up.log" 2>&1; then
      # shellcheck disable=SC1091
      . "$RUN/cluster.env"
      export HELIUM_COORDINATOR
      return 0
    fi
    grep -q -e "Address already in use" -e "already answers" "$TMP/up.log" "$RUN"/*.log 2>/dev/null || break
    note "port $PORT is taken; trying another"
    rm -f "$RUN"/*.log "$RUN/cluster.env"
  done
  cat "$TMP/up.log" >&2
  fail "cluster up failed"
}

# start_worker ID: one more worker (registered when this returns).
start_worker() {
  $CLUSTER worker "$RUN" "$1" >"$TMP/up-$1.log" 2>&1 || { cat "$TMP/up-$1.log" >&2; fail "worker $1 did not start"; }
}

# kill_worker ID [SIGNAL]: signal (default KILL) worker ID.
kill_worker() {
  local pid
  pid=$(cat "$RUN/$1.pid")
  kill -"${2:-KILL}" "$pid" 2>/dev/null || true
}

# wait_job JOB OUT [SECONDS]: polls `heliumctl result` until JOB ends; the last
# status (JSON) is left in OUT. Returns 0 if it ended DONE.
wait_job() {
  local job=$1 out=$2 limit=${3:-120} state
  local deadline=$((SECONDS + limit))
  while [ $SECONDS -lt $deadline ]; do
    ctl --json result "$job" >"$out" 2>/dev/null || true
    state=$(jfield "$out" state)
    case $state in
      DONE) return 0 ;;
      FAILED|CANCELED) return 1 ;;
    esac
    sleep 0.2
  done
  return 1
}

# pyrun ARGS... <<'EOF' ... EOF: runs the heredoc's Python after $PYLIB
# (render, generate, load_json, check, ...), with sys.argv[1:] = ARGS.
pyrun() { python3 <(cat "$PYLIB" -) "$@"; }
# jfield FILE KEY: top-level field KEY of heliumctl JSON output FILE ("?" if none).
jfield() {
  python3 -c 'import json,sys
try: print(json.loads(open(sys.argv[1],"rb").read().decode("utf-8","surrogateescape"))[sys.argv[2]])
except Exception: print("?")' "$1" "$2"
}

ctl() { "$HELIUM_BIN/heliumctl" --coordinator "$HELIUM_COORDINATOR" --timeout-ms 10000 "$@"; }

metric() { # metric NAME: its value on /metrics ("?" if absent)
  curl -sf "http://127.0.0.1:$HELIUM_METRICS_PORT/metrics" | awk -v n="$1" '$1 == n {print $2; f=1} END {if (!f) print "?"}'
}
# wait_metric NAME VALUE: /metrics is republished about once a second
wait_metric() {
  local v
  for _ in $(seq 1 50); do
    v=$(metric "$1")
    [ "$v" = "$2" ] && return 0
    sleep 0.1
  done
  fail "$1 is $v (want $2)"
}

# topic_wf FILE: a two-call chain on input `topic` (check_topic_job checks
# a job of it against helium-worker generate)
topic_wf() {
  cat >"$1" <<'EOF'
{
  "name": "topic",
  "inputs": [{"name": "topic"}],
  "ops": [
    {"id": "a", "type": "llm", "max_tokens": 6, "prompt": "Notes on {{input.topic}}:"},
    {"id": "b", "type": "llm", "max_tokens": 6, "prompt": "{{op.a}}\nIn short, {{input.topic}} is"}
  ],
  "output": "b"
}
EOF
}

# The Python helper the tests share: rendering the test workflows' templates
# and computing reference outputs with `helium-worker generate`.
PYLIB=$TMP/cluster_ref.py
export PYLIB
cat >"$PYLIB" <<'PYEOF'
import json, os, re, subprocess, sys

BIN = os.environ["HELIUM_BIN"]
MODEL = os.environ["HELIUM_MODEL"]

def render(tmpl, inputs, ops, item=None):
    """Renders {{input.X}}, {{op.Y}} and {{item}} (the test workflows use no escapes)."""
    def sub(m):
        k = m.group(1)
        if k.startswith("input."):
            return inputs[k[6:]]
        if k.startswith("op."):
            return ops[k[3:]]
        if k == "item":
            return item
        raise KeyError(k)
    return re.sub(r"\{\{([A-Za-z0-9_.\-]+)\}\}", sub, tmpl)

def load_json(path):
    """heliumctl's JSON: model text may hold bytes that are not UTF-8; keep
    them (surrogateescape) so comparisons stay byte-exact."""
    with open(path, "rb") as f:
        return json.loads(f.read().decode("utf-8", "surrogateescape"))

_cache = {}

def generate(prompt, max_tokens):
    """Greedy reference: helium-worker generate --prompt P --max-tokens N --json
    (one thread, like the test workers: on a busy machine OpenMP threads spin)."""
    key = (prompt, max_tokens)
    if key not in _cache:
        out = subprocess.run([BIN + "/helium-worker", "generate", "--model", MODEL, "--prompt", prompt,
                              "--max-tokens", str(max_tokens), "--threads", "1", "--json"],
                             check=True, capture_output=True).stdout
        first = json.loads(out.decode("utf-8", "surrogateescape").splitlines()[0])
        if "text" not in first:
            raise RuntimeError("reference generate failed: " + out)
        _cache[key] = first
    return _cache[key]

def ops_by_id(job):
    return {o["op_id"]: o for o in job["ops"]}

def check(cond, msg):
    if not cond:
        print("CHECK FAILED: " + msg, file=sys.stderr)
        sys.exit(1)

def check_topic_job(path, topic, k):
    """A job of topic_wf (`heliumctl --json result` in path): each op's
    output equals `helium-worker generate` of its rendered prompt, each op
    ran once."""
    ops = ops_by_id(load_json(path))
    a = generate(f"Notes on {topic}:", 6)["text"]
    check(ops["a"]["output"] == a, f"job {k} op a: {ops['a']['output']!r} != {a!r}")
    b = generate(f"{a}\nIn short, {topic} is", 6)["text"]
    check(ops["b"]["output"] == b, f"job {k} op b: {ops['b']['output']!r} != {b!r}")
    check(ops["a"]["attempts"] == 1, f"job {k} op a ran {ops['a']['attempts']} times")
PYEOF
