#!/usr/bin/env bash
# deploy probes: what the containers rely on, checked on the host build
# without Docker (so it runs everywhere, fast):
#   - the coordinator and two workers configured only through the environment
#     (HELIUM_COORD_*, HELIUM_WORKER_*; no option on the command line);
#   - the coordinator's /healthz is 200 at once, /readyz 503 until a worker
#     registers, then 200; a worker's /readyz is 200 once registered;
#   - a worker SIGTERMed while it holds calls drains: /readyz turns 503, the
#     coordinator places nothing more on it, it exits 0, and the job
#     completes with the outputs of a clean run;
#   - SIGTERM to the coordinator: /readyz stops answering, exit 0;
#   - a bad switch value in the environment is refused (exit 2, the variable
#     named), and the command line wins over the environment.
set -euo pipefail
# no CURVE keys in this test (everything on loopback); ignored by builds
# without the option
export HELIUM_COORD_INSECURE=1 HELIUM_WORKER_INSECURE=1 HELIUMCTL_INSECURE=1
SRC=${HELIUM_SRC:-$(cd "$(dirname "$0")/../.." && pwd)}
BIN=${HELIUM_BIN:-$SRC/build/bin}
NAME=probes
for b in helium-coordinator helium-worker heliumctl helium-mkmodel; do
  [ -x "$BIN/$b" ] || { echo "$NAME: $BIN/$b is missing (not built)" >&2; exit 1; }
done
TMP=$(mktemp -d /tmp/helium-deploy-$NAME.XXXXXX)
PIDS=()
cleanup() {
  local rc=$?
  for p in "${PIDS[@]}"; do kill -9 "$p" 2>/dev/null || true; done
  if [ $rc -eq 0 ]; then rm -rf "$TMP"; else
    for f in "$TMP"/*.log; do echo "---- $f" >&2; tail -n 20 "$f" >&2; done
    echo "$NAME: exit $rc; files kept in $TMP" >&2
  fi
}
trap cleanup EXIT
fail() { echo "FAIL $NAME: $*" >&2; exit 1; }
note() { echo "$NAME: $*"; }
code() { curl -s -o /dev/null -w '%{http_code}' "$1" 2>/dev/null || true; }
wait_code() { # URL CODE SECONDS
  local deadline=$((SECONDS + $3))
  while [ $SECONDS -lt $deadline ]; do [ "$(code "$1")" = "$2" ] && return 0; sleep 0.1; done
  return 1
}

"$BIN/helium-mkmodel" --preset tiny --arch llama --dtype f32 --seed 3 -o "$TMP/m.gguf" >/dev/null 2>&1 || fail "mkmodel"
EPH=$(awk '{print $1}' /proc/sys/net/ipv4/ip_local_port_range 2>/dev/null || echo 32768)
[ "$EPH" -gt 12000 ] 2>/dev/null || EPH=32768
P=$((10000 + (($$ * 13 + 7) % ((EPH - 10100) / 50)) * 50))
HTTP=http://127.0.0.1:$((P + 2))

# ---- the environment layer refuses a bad switch and loses to the command line
if HELIUM_COORD_STREAM=perhaps "$BIN/helium-coordinator" --model "$TMP/m.gguf" >"$TMP/bad.out" 2>&1; then
  fail "HELIUM_COORD_STREAM=perhaps was accepted"
else
  [ $? -eq 2 ] && grep -q "HELIUM_COORD_STREAM='perhaps'" "$TMP/bad.out" || fail "bad switch: $(cat "$TMP/bad.out")"
fi
HELIUM_COORD_METRICS_PORT=$((P + 3)) "$BIN/helium-coordinator" --model "$TMP/m.gguf" --metrics-port 0 \
  --listen "tcp://127.0.0.1:$P" --workers "tcp://127.0.0.1:$((P + 1))" >"$TMP/cl.log" 2>&1 &
pid=$!
sleep 1
kill -0 $pid 2>/dev/null || fail "coordinator with --metrics-port 0 did not start"
[ "$(code "http://127.0.0.1:$((P + 3))/healthz")" = 000 ] ||
  fail "HELIUM_COORD_METRICS_PORT won over the command line's --metrics-port 0"
kill -TERM $pid; wait $pid || fail "coordinator exit $? after SIGTERM"
note "environment: a bad switch is refused, the command line wins"

# ---- a cluster configured by environment only
env HELIUM_COORD_MODEL="$TMP/m.gguf" HELIUM_COORD_LISTEN="tcp://127.0.0.1:$P" HELIUM_COORD_WORKERS="tcp://127.0.0.1:$((P + 1))" \
  HELIUM_COORD_METRICS_PORT=$((P + 2)) HELIUM_COORD_HEARTBEAT_MS=200 HELIUM_COORD_WORKER_TIMEOUT_MS=2000 \
  HELIUM_COORD_POLICY=helium "$BIN/helium-coordinator" >"$TMP/coordinator.log" 2>&1 &
COORD=$!
PIDS+=("$COORD")
wait_code "$HTTP/healthz" 200 20 || fail "coordinator /healthz never 200"
[ "$(code "$HTTP/readyz")" = 503 ] || fail "coordinator /readyz is $(code "$HTTP/readyz") with no worker"
READYZ=$(curl -s "$HTTP/readyz" || true)
grep -q "no worker" <<<"$READYZ" || fail "/readyz does not say why it is not ready"
start_worker() { # ID INDEX
  env HELIUM_WORKER_COORDINATOR="tcp://127.0.0.1:$((P + 1))" HELIUM_WORKER_MODEL="$TMP/m.gguf" HELIUM_WORKER_ID="$1" \
    HELIUM_WORKER_DATA="tcp://127.0.0.1:$((P + 10 * $2 + 1))" HELIUM_WORKER_HEALTH_PORT=$((P + 10 * $2 + 2)) \
    HELIUM_WORKER_THREADS=1 HELIUM_WORKER_DRAIN_TIMEOUT_MS=60000 "$BIN/helium-worker" serve >"$TMP/$1.log" 2>&1 &
  PIDS+=("$!")
  eval "PID_$1=$!"
}
start_worker w1 1
start_worker w2 2
for i in 1 2; do
  wait_code "http://127.0.0.1:$((P + 10 * i + 2))/readyz" 200 30 || fail "worker w$i /readyz never 200"
  [ "$(code "http://127.0.0.1:$((P + 10 * i + 2))/healthz")" = 200 ] || fail "worker w$i /healthz not 200"
done
wait_code "$HTTP/readyz" 200 10 || fail "coordinator /readyz not 200 with two workers"
ctl() { "$BIN/heliumctl" --coordinator "tcp://127.0.0.1:$P" --timeout-ms 10000 "$@"; }
ctl --json status | python3 -c 'import json,sys; ws=json.loads(sys.stdin.buffer.read().decode("utf-8","surrogateescape"))["workers"]; assert sorted(w["id"] for w in ws if w["alive"]) == ["w1","w2"], ws' ||
  fail "workers not registered under their HELIUM_WORKER_ID"
note "environment-only cluster up; probes answer as documented"

# ---- SIGTERM a worker holding calls: it drains
cat >"$TMP/wf.json" <<'EOF'
{"name": "probes", "inputs": [{"name": "stores"}],
 "ops": [{"id": "audit", "type": "map", "over": "input.stores", "split": "lines",
          "body": {"type": "llm", "max_tokens": 40, "prompt": "Store: {{item}}\nVerdict:"}},
         {"id": "sum", "type": "llm", "max_tokens": 40, "prompt": "Verdicts:\n{{op.audit}}\nSummary:"}],
 "output": "sum"}
EOF
STORES=$'Lyon\nParis\nBerlin\nMadrid\nMilan\nVienna\nZurich\nOslo'
ctl --json submit "$TMP/wf.json" --input "stores=$STORES" --wait --quiet >"$TMP/clean.json" || fail "clean run failed"
kill -STOP "$PID_w1" "$PID_w2"
# (router: the helium policy would answer a repeated workflow from its result cache)
JOB=$(ctl submit "$TMP/wf.json" --input "stores=$STORES" --policy router) || { kill -CONT "$PID_w1" "$PID_w2"; fail "submit"; }
VICTIM=""
for _ in $(seq 1 200); do
  VICTIM=$(ctl --json result "$JOB" 2>/dev/null | python3 -c 'import json,sys
try:
    m = {o["op_id"]: o for o in json.loads(sys.stdin.buffer.read().decode("utf-8","surrogateescape"))["ops"]}["audit"]
    print(m["worker"] if m["state"] == "RUNNING" and m["worker"] else "")
except Exception: print("")' || true)
  [ -n "$VICTIM" ] && break
  sleep 0.05
done
[ -n "$VICTIM" ] || { kill -CONT "$PID_w1" "$PID_w2"; fail "no worker held an item"; }
eval "VPID=\$PID_$VICTIM"
VI=${VICTIM#w}
kill -CONT "$PID_w1" "$PID_w2"
kill -TERM "$VPID"
wait_code "http://127.0.0.1:$((P + 10 * VI + 2))/readyz" 503 5 || true # it may already be gone
rc=0; wait "$VPID" || rc=$?
[ $rc -eq 0 ] || fail "$VICTIM exited $rc after SIGTERM"
grep -q -i "draining" "$TMP/$VICTIM.log" || fail "$VICTIM's log says nothing of draining"
grep -q "worker $VICTIM is draining" "$TMP/coordinator.log" || fail "the coordinator was not told $VICTIM drains"
deadline=$((SECONDS + 120))
while [ $SECONDS -lt $deadline ]; do
  ctl --json result "$JOB" >"$TMP/drained.json" 2>/dev/null || true
  python3 -c 'import json,sys; sys.exit(0 if json.loads(open(sys.argv[1],"rb").read().decode("utf-8","surrogateescape"))["state"] in ("DONE","FAILED","CANCELED") else 1)' \
    "$TMP/drained.json" 2>/dev/null && break
  sleep 0.2
done
python3 - "$TMP/clean.json" "$TMP/drained.json" <<'EOF' || fail "the drained run differs from the clean one"
import json, sys
a, b = (json.loads(open(p, "rb").read().decode("utf-8", "surrogateescape")) for p in sys.argv[1:3])
assert b["state"] == "DONE", b["state"]
oa = {o["op_id"]: o for o in a["ops"]}; ob = {o["op_id"]: o for o in b["ops"]}
assert oa["audit"]["outputs"] == ob["audit"]["outputs"] and oa["sum"]["output"] == ob["sum"]["output"]
assert a["output"] == b["output"] and a["output"]
EOF
note "$VICTIM drained on SIGTERM (exit 0); the job completed with the clean run's outputs"

# ---- SIGTERM the rest
for p in "$PID_w1" "$PID_w2"; do
  kill -0 "$p" 2>/dev/null || continue
  kill -TERM "$p"; rc=0; wait "$p" || rc=$?
  [ $rc -eq 0 ] || fail "worker exit $rc after SIGTERM"
done
kill -TERM "$COORD"; rc=0; wait "$COORD" || rc=$?
[ $rc -eq 0 ] || fail "coordinator exit $rc after SIGTERM"
[ "$(code "$HTTP/readyz")" = 000 ] || fail "the coordinator's port still answers after exit"
note "SIGTERM: every process exited 0"
echo "$NAME: 1 passed, 0 failed"
