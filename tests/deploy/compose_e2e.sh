#!/usr/bin/env bash
# compose_e2e: Helium's image and deploy/compose.yaml, run for real.
#   1. starts a dockerd of its own (data root under ~/.cache/helium/docker so
#      the base image and the build's layers are reused across runs; no
#      bridge, no iptables: every container uses the host network), or exits
#      77 (ctest: skipped) saying why where dockerd cannot start;
#   2. builds the base (deploy/base-image.sh, cached by content key) and the
#      image (deploy/Dockerfile);
#   3. starts deploy/compose.yaml with tests/deploy/compose.hostnet.yaml
#      (every endpoint on 127.0.0.1, ports picked by this test) on a generated
#      model, and waits for the coordinator's /readyz and the workers';
#   4. runs a workflow with heliumctl from the host, and the same workflow on a
#      cluster of the host build outside containers: every op's output must
#      be equal;
#   5. runs it again with one worker container killed (SIGKILL) while it holds
#      map items: the job completes with the same outputs, re-dispatched;
#   6. runs it again and stops a worker with SIGTERM while it holds items: it
#      drains and exits 0, the job completes with the same outputs;
#   7. `docker-compose stop` (SIGTERM) the rest: every exit status is 0;
#   8. tears everything down (containers, network, dockerd, files).
# Nothing listens beyond loopback. Cost on 2 cores: about 8 minutes cold
# (debootstrap, apt, compile), 2-3 minutes with the caches warm.
set -euo pipefail
SRC=${HELIUM_SRC:-$(cd "$(dirname "$0")/../.." && pwd)}
BIN=${HELIUM_BIN:-$SRC/build/bin}
CACHE=${HELIUM_CACHE:-$HOME/.cache/helium}
NAME=compose_e2e
note() { echo "$NAME: $*"; }
skip() { echo "$NAME: SKIPPED: $*"; exit 77; }

for b in helium-coordinator helium-worker heliumctl helium-mkmodel; do
  [ -x "$BIN/$b" ] || { echo "$NAME: $BIN/$b is missing (not built)" >&2; exit 1; }
done
[ "$(id -u)" = 0 ] || skip "dockerd needs root here (no rootless setup)"
bash "$SRC/scripts/install-deps.sh" --deploy >/dev/null 2>&1 ||
  skip "cannot install docker.io/docker-compose/debootstrap (scripts/install-deps.sh --deploy failed)"
command -v dockerd >/dev/null || skip "dockerd not installed"
DOCKER=/usr/bin/docker # Debian's client, the daemon's own version
[ -x "$DOCKER" ] || DOCKER=$(command -v docker)

mkdir -p "$CACHE/docker"
# one run at a time per data root (a second dockerd on it would fail)
exec 9>"$CACHE/docker/e2e.lock"
flock -w 1800 9 || skip "another compose_e2e run holds $CACHE/docker/e2e.lock"

TMP=$(mktemp -d /tmp/helium-$NAME.XXXXXX)
chmod 755 "$TMP"
export DOCKER_HOST=unix://$TMP/docker.sock
PROJECT=helium-e2e-$$
# the shipped file with the host-network override, merged by docker-compose
# itself; published ports are then dropped (docker refuses them on the host
# network, and a Compose v1 override cannot delete list entries)
MERGED=$TMP/compose.merged.yaml
DC=(docker-compose -p "$PROJECT" -f "$MERGED")
DOCKERD_PID=""
REF_RUN=$TMP/ref

cleanup() {
  local rc=$?
  set +e
  if [ -n "$DOCKERD_PID" ]; then
    if [ $rc -ne 0 ]; then
      for s in coordinator worker-1 worker-2; do
        echo "---- logs of $s (tail)" >&2
        "${DC[@]}" logs --no-color --tail 30 "$s" >&2 2>/dev/null
      done
    fi
    "${DC[@]}" down -v --remove-orphans -t 5 >/dev/null 2>&1
    "$DOCKER" image prune -f >/dev/null 2>&1
    kill "$DOCKERD_PID" 2>/dev/null
    for _ in $(seq 1 100); do kill -0 "$DOCKERD_PID" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$DOCKERD_PID" 2>/dev/null
  fi
  HELIUM_BIN=$BIN bash "$SRC/scripts/cluster.sh" down "$REF_RUN" >/dev/null 2>&1
  # dockerd leaves its network namespace mounted under the exec root
  awk -v t="$TMP/" 'index($2, t) == 1 {print $2}' /proc/mounts | sort -r | while read -r m; do umount -l "$m"; done
  if [ $rc -ne 0 ] && [ $rc -ne 77 ]; then
    [ -f "$TMP/dockerd.log" ] && { echo "---- dockerd log (tail)" >&2; tail -n 15 "$TMP/dockerd.log" >&2; }
    echo "$NAME: exit $rc; files kept in $TMP" >&2
  else
    rm -rf "$TMP"
  fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM
fail() { echo "FAIL $NAME: $*" >&2; exit 1; }

# ---- 1. dockerd
start_dockerd() { # DRIVER
  mkdir -p "$TMP/exec"
  dockerd --data-root "$CACHE/docker/data-$1" --exec-root "$TMP/exec" -H "$DOCKER_HOST" \
    --pidfile "$TMP/dockerd.pid" --bridge=none --iptables=false --ip6tables=false \
    --storage-driver "$1" >"$TMP/dockerd.log" 2>&1 &
  DOCKERD_PID=$!
  for _ in $(seq 1 150); do
    "$DOCKER" info >/dev/null 2>&1 && return 0
    kill -0 "$DOCKERD_PID" 2>/dev/null || break
    sleep 0.2
  done
  kill "$DOCKERD_PID" 2>/dev/null; wait "$DOCKERD_PID" 2>/dev/null
  DOCKERD_PID=""
  return 1
}
if start_dockerd overlay2; then DRIVER=overlay2
elif start_dockerd vfs; then DRIVER=vfs
else skip "dockerd does not start here: $(tail -n 3 "$TMP/dockerd.log" | tr '\n' ' ')"
fi
note "dockerd $("$DOCKER" version -f '{{.Server.Version}}') up ($DRIVER)"

# ---- 2. images
BASE=$(DOCKER=$DOCKER HELIUM_CACHE=$CACHE bash "$SRC/deploy/base-image.sh") || fail "deploy/base-image.sh failed"
IMAGE=helium:e2e
nice "$DOCKER" build -q --network host -f "$SRC/deploy/Dockerfile" --build-arg "BASE=$BASE" -t "$IMAGE" "$SRC" \
  >"$TMP/build.log" 2>&1 || { tail -n 40 "$TMP/build.log" >&2; fail "docker build failed"; }
[ "$("$DOCKER" run --rm --network host --entrypoint id "$IMAGE" -u)" = 10001 ] || fail "the image does not run as uid 10001"
note "image $IMAGE built on $BASE"

# ---- 3. compose up
mkdir -p "$TMP/models"
"$BIN/helium-mkmodel" --preset tiny --arch llama --dtype f32 --seed 3 -o "$TMP/models/model.gguf" >/dev/null 2>&1 ||
  fail "helium-mkmodel failed"
chmod 755 "$TMP/models"; chmod 644 "$TMP/models/model.gguf"
EPH=$(awk '{print $1}' /proc/sys/net/ipv4/ip_local_port_range 2>/dev/null || echo 32768)
[ "$EPH" -gt 12000 ] 2>/dev/null || EPH=32768
P=$((10000 + ($$ * 7 % ((EPH - 10100) / 50)) * 50))
export HT_CLIENT=$P HT_WORKERS=$((P + 1)) HT_HTTP=$((P + 2)) HT_W1_DATA=$((P + 11)) HT_W1_HEALTH=$((P + 12))
export HT_W2_DATA=$((P + 21)) HT_W2_HEALTH=$((P + 22))
export HELIUM_IMAGE=$IMAGE HELIUM_MODELS_DIR=$TMP/models HELIUM_WORKER_THREADS=1
export HELIUMCTL_INSECURE=1 # the compose file runs without CURVE keys (and so does the reference cluster)
docker-compose -f "$SRC/deploy/compose.yaml" -f "$SRC/tests/deploy/compose.hostnet.yaml" config >"$TMP/merged.raw" ||
  fail "docker-compose config failed"
/usr/bin/python3 - "$TMP/merged.raw" "$MERGED" <<'EOF' || fail "cannot drop the published ports"
import sys, yaml  # python3-yaml: a dependency of Debian's docker-compose
c = yaml.safe_load(open(sys.argv[1]))
for name, s in c["services"].items():
    if s.get("network_mode") == "host":
        s.pop("ports", None)
yaml.safe_dump(c, open(sys.argv[2], "w"), sort_keys=False)
EOF
"${DC[@]}" up -d --no-build >"$TMP/up.log" 2>&1 || { cat "$TMP/up.log" >&2; fail "docker-compose up failed"; }

# wait_http URL SECONDS: until URL answers 200
wait_http() {
  local deadline=$((SECONDS + $2))
  while [ $SECONDS -lt $deadline ]; do
    curl -fsS -o /dev/null "$1" 2>/dev/null && return 0
    sleep 0.3
  done
  return 1
}
wait_http "http://127.0.0.1:$HT_HTTP/readyz" 120 || fail "coordinator /readyz never answered 200"
wait_http "http://127.0.0.1:$HT_W1_HEALTH/readyz" 60 || fail "worker-1 /readyz never answered 200"
wait_http "http://127.0.0.1:$HT_W2_HEALTH/readyz" 60 || fail "worker-2 /readyz never answered 200"
code=$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$HT_HTTP/healthz")
[ "$code" = 200 ] || fail "coordinator /healthz answered $code"
note "coordinator and both workers ready"
ctl() { "$BIN/heliumctl" --coordinator "tcp://127.0.0.1:$HT_CLIENT" --timeout-ms 10000 "$@"; }
ctl --json status >"$TMP/status.json" || fail "heliumctl status failed"
python3 - "$TMP/status.json" "$HT_W1_DATA" "$HT_W2_DATA" <<'EOF' || fail "workers not as configured"
import json, sys
st = json.loads(open(sys.argv[1],"rb").read().decode("utf-8","surrogateescape"))
ws = {w["id"]: w for w in st["workers"]}
assert set(ws) == {"worker-1", "worker-2"}, ws.keys()
assert all(w["alive"] for w in ws.values()), ws
EOF

# ---- 4. a workflow, in containers and outside them
cat >"$TMP/wf.json" <<'EOF'
{
  "name": "deploy_e2e",
  "inputs": [{"name": "system"}, {"name": "stores"}],
  "ops": [
    {"id": "audit", "type": "map", "over": "input.stores", "split": "lines",
     "body": {"type": "llm", "max_tokens": 48, "prompt": "{{input.system}}\nStore: {{item}}\nVerdict:"}},
    {"id": "s1", "type": "llm", "max_tokens": 48, "prompt": "{{input.system}}\nAll verdicts:\n{{op.audit}}\nSummary:"},
    {"id": "s2", "type": "llm", "max_tokens": 48, "prompt": "{{input.system}}\nSummary: {{op.s1}}\nActions:"}
  ],
  "output": "s2"
}
EOF
SYSTEM="You are a store auditor. For the store named below, write a short verdict about its weekly figures."
STORES=$'Lyon\nParis\nBerlin\nMadrid\nMilan\nVienna\nZurich\nOslo'
submit() { ctl "$@" "$TMP/wf.json" --input "system=$SYSTEM" --input "stores=$STORES"; }
submit --json submit --wait --quiet >"$TMP/containers.json" || fail "workflow failed in containers: $(head -c 400 "$TMP/containers.json")"

# the same on the host build, outside containers (scripts/cluster.sh, other ports)
mkdir -p "$REF_RUN"
HELIUM_BIN=$BIN HELIUM_MODEL=$TMP/models/model.gguf HELIUM_PORT=$((P + 30)) HELIUM_WATCH_PID=$$ \
  HELIUM_COORD_ARGS="--policy helium" bash "$SRC/scripts/cluster.sh" up "$REF_RUN" 2 >"$TMP/ref-up.log" 2>&1 ||
  { cat "$TMP/ref-up.log" >&2; fail "reference cluster did not start"; }
"$BIN/heliumctl" --coordinator "tcp://127.0.0.1:$((P + 30))" --timeout-ms 10000 --json submit "$TMP/wf.json" \
  --input "system=$SYSTEM" --input "stores=$STORES" --wait --quiet >"$TMP/host.json" || fail "reference run failed"
HELIUM_BIN=$BIN bash "$SRC/scripts/cluster.sh" down "$REF_RUN" >/dev/null 2>&1 || true

# same JSON A B [MIN_ATTEMPTS_OVER]: every op output of B equals A's
same() {
  python3 - "$@" <<'EOF'
import json, sys
def load(p):
    with open(p, "rb") as f:
        return json.loads(f.read().decode("utf-8", "surrogateescape"))
a, b = load(sys.argv[1]), load(sys.argv[2])
assert a["state"] == "DONE" and b["state"] == "DONE", (a["state"], b["state"], b.get("error"))
oa = {o["op_id"]: o for o in a["ops"]}
ob = {o["op_id"]: o for o in b["ops"]}
for k in ("audit", "s1", "s2"):
    assert oa[k]["output"] == ob[k]["output"], "op %s differs: %r vs %r" % (k, oa[k]["output"][:80], ob[k]["output"][:80])
assert oa["audit"]["outputs"] == ob["audit"]["outputs"], "map items differ"
assert len(ob["audit"]["outputs"]) == 8
assert a["output"] == b["output"]
assert any(o["output"] for o in oa.values()), "empty outputs"
if len(sys.argv) > 3:
    m = ob["audit"]
    assert m["attempts"] > m["items_total"], "%d attempts for %d items: nothing was re-dispatched" % (m["attempts"], m["items_total"])
EOF
}
same "$TMP/host.json" "$TMP/containers.json" || fail "containers' outputs differ from the host build's"
note "workflow in containers = workflow outside containers (11 llm calls)"

# every metric the Grafana dashboard queries is on the live /metrics page
curl -fsS "http://127.0.0.1:$HT_HTTP/metrics" >"$TMP/metrics.txt" || fail "GET /metrics failed"
for m in $(grep -oE 'helium_[a-z_]+' "$SRC/deploy/grafana/helium.json" | sort -u); do
  grep -q "^$m[{ ]" "$TMP/metrics.txt" || fail "the dashboard queries $m, which /metrics does not export"
done
grep -q '^helium_job_seconds_count 1$' "$TMP/metrics.txt" || fail "helium_job_seconds does not count the one job"
note "every metric of deploy/grafana/helium.json is exported"

cid() { "${DC[@]}" ps -q "$1"; }
# running_worker JOB: the worker holding a running map item ("" if none yet)
running_worker() {
  ctl --json result "$1" 2>/dev/null | python3 -c 'import json,sys
try:
    m = {o["op_id"]: o for o in json.loads(sys.stdin.buffer.read().decode("utf-8","surrogateescape"))["ops"]}["audit"]
    print(m["worker"] if m["state"] == "RUNNING" and m["worker"] else "")
except Exception:
    print("")' 2>/dev/null || true
}
# freeze both workers, submit, find the one holding items (no race: frozen
# workers cannot finish them); prints the job id and the victim
start_held_job() {
  "$DOCKER" kill -s STOP "$(cid worker-1)" "$(cid worker-2)" >/dev/null
  local job victim=""
  # router: the helium policy would answer a repeated workflow from its result cache
  job=$(submit submit --policy router) || fail "submit failed"
  for _ in $(seq 1 200); do
    victim=$(running_worker "$job")
    [ -n "$victim" ] && break
    sleep 0.05
  done
  [ -n "$victim" ] || fail "no worker ever held an item of $job"
  echo "$job $victim"
}
wait_done() { # JOB OUT
  local deadline=$((SECONDS + 240)) state
  while [ $SECONDS -lt $deadline ]; do
    ctl --json result "$1" >"$2" 2>/dev/null || true
    state=$(python3 -c 'import json,sys; print(json.loads(open(sys.argv[1],"rb").read().decode("utf-8","surrogateescape"))["state"])' "$2" 2>/dev/null || echo "?")
    case $state in DONE) return 0 ;; FAILED|CANCELED) return 1 ;; esac
    sleep 0.2
  done
  return 1
}
other() { [ "$1" = worker-1 ] && echo worker-2 || echo worker-1; }

# ---- 5. SIGKILL one worker container mid-job
read -r JOB VICTIM < <(start_held_job) || true
[ -n "${VICTIM:-}" ] || fail "could not hold a job on a worker"
SURV=$(other "$VICTIM")
"$DOCKER" kill -s KILL "$(cid "$VICTIM")" >/dev/null
"$DOCKER" kill -s CONT "$(cid "$SURV")" >/dev/null
note "killed $VICTIM's container (SIGKILL) while it held items of $JOB"
wait_done "$JOB" "$TMP/killed.json" || fail "job $JOB did not complete after the kill"
same "$TMP/host.json" "$TMP/killed.json" redispatched || fail "outputs after the kill differ"
note "job completed on $SURV with the same outputs"

# bring the victim back (its restart policy may already have)
"${DC[@]}" start "$VICTIM" >/dev/null 2>&1 || true
"$DOCKER" kill -s CONT "$(cid "$VICTIM")" >/dev/null 2>&1 || true
H=$HT_W1_HEALTH; [ "$VICTIM" = worker-2 ] && H=$HT_W2_HEALTH
wait_http "http://127.0.0.1:$H/readyz" 60 || fail "$VICTIM did not come back"

# ---- 6. SIGTERM a worker mid-job: it drains and exits 0
read -r JOB VICTIM < <(start_held_job) || true
[ -n "${VICTIM:-}" ] || fail "could not hold a job on a worker"
SURV=$(other "$VICTIM")
"$DOCKER" kill -s CONT "$(cid "$VICTIM")" "$(cid "$SURV")" >/dev/null
"$DOCKER" stop -t 60 "$(cid "$VICTIM")" >/dev/null
ec=$("$DOCKER" inspect -f '{{.State.ExitCode}}' "$(cid "$VICTIM")")
[ "$ec" = 0 ] || fail "$VICTIM exited $ec after SIGTERM"
wait_done "$JOB" "$TMP/drained.json" || fail "job $JOB did not complete after $VICTIM drained"
same "$TMP/host.json" "$TMP/drained.json" || fail "outputs after the drain differ"
# (the log into a file first: with pipefail, grep -q quitting at the first
# match could SIGPIPE docker-compose and fail the pipeline)
"${DC[@]}" logs --no-color "$VICTIM" >"$TMP/victim.log" 2>/dev/null || true
grep -q -i 'drain' "$TMP/victim.log" || fail "$VICTIM's log says nothing of draining"
note "$VICTIM drained on SIGTERM (exit 0); job completed with the same outputs"

# ---- 7. SIGTERM the rest: clean exits
"${DC[@]}" stop -t 60 >/dev/null 2>&1 || fail "docker-compose stop failed"
for s in coordinator worker-1 worker-2; do
  ec=$("$DOCKER" inspect -f '{{.State.ExitCode}}' "$(cid "$s")")
  [ "$ec" = 0 ] || fail "$s exited $ec after SIGTERM"
done
note "coordinator and workers exited 0 on SIGTERM"
echo "$NAME: 1 passed, 0 failed"
