#!/usr/bin/env bash
# cluster.sh: start and stop a local Helium cluster (one coordinator and N
# workers on loopback), for the demo and the multi-process tests.
#
#   scripts/cluster.sh up DIR [N]        start coordinator + N workers (default 2); waits
#                                        until every worker has registered
#   scripts/cluster.sh worker DIR ID     start one more worker (id ID, e.g. w3); waits
#                                        until it has registered
#   scripts/cluster.sh down DIR          stop everything started in DIR (SIGTERM, then
#                                        SIGKILL after 5 s)
#   scripts/cluster.sh status DIR        heliumctl status against DIR's coordinator
#
# Environment:
#   HELIUM_BIN          directory of the binaries (default: build/bin of this checkout)
#   HELIUM_MODEL        GGUF model; default DIR/model.gguf, written with
#                       helium-mkmodel --preset tiny if it is missing
#   HELIUM_PORT         base TCP port (default 7700): coordinator clients on PORT,
#                       workers on PORT+1, metrics on PORT+2, worker i's data endpoint
#                       on PORT+10+i
#   HELIUM_THREADS      threads per worker (default 1)
#   HELIUM_COORD_ARGS   extra arguments for helium-coordinator
#   HELIUM_WORKER_ARGS  extra arguments for every helium-worker serve
#   HELIUM_UP_TIMEOUT   seconds to wait for registration (default 60)
#   HELIUM_WATCH_PID    if set, a watcher stops the cluster when that process is gone
#                       (tests set it to themselves, so a killed test leaves nothing behind)
#   HELIUM_CURVE        1: CURVE on every socket (docs/security.md): keys in DIR/keys/
#                       (coordinator, client, one per worker), DIR/keys/authorized_keys
#                       (client + workers, for the coordinator) and DIR/keys/workers.keys
#                       (workers, for the data sockets); a worker added later is appended
#                       and everyone is sent SIGHUP. Otherwise every program gets --insecure.
#   HELIUM_CURVE_DATA   with HELIUM_CURVE=1: "clear" serves KV pulls in the clear (--clear-data)
#
# DIR receives: coordinator.pid, <id>.pid, coordinator.log, <id>.log, and
# cluster.env (HELIUM_COORDINATOR, HELIUM_WORKERS_EP, HELIUM_MODEL, HELIUM_PORT,
# HELIUM_METRICS_PORT, and heliumctl's HELIUMCTL_KEY + HELIUMCTL_SERVER_KEY or
# HELIUMCTL_INSECURE, exported) that scripts can source. Every process's stdin, stdout
# and stderr are redirected, so callers' pipes never stay open.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
BIN=${HELIUM_BIN:-$HERE/../build/bin}

die() { echo "cluster.sh: $*" >&2; exit 1; }

usage() {
  sed -n '2,30p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'
  exit 2
}

# running PID: true if PID exists and is not a zombie (an orphan whose parent
# does not reap it still answers kill -0)
running() {
  kill -0 "$1" 2>/dev/null || return 1
  local st
  st=$(awk '{print $3}' "/proc/$1/stat" 2>/dev/null) || return 0
  [ "$st" != Z ]
}
# alive PIDFILE: true if the process recorded in PIDFILE runs
alive() { [ -f "$1" ] && running "$(cat "$1")"; }

# n_alive_workers: how many workers the coordinator reports alive (0 on error)
n_alive_workers() {
  "$BIN/heliumctl" --coordinator "$HELIUM_COORDINATOR" --timeout-ms 2000 --json status 2>/dev/null |
    python3 -c 'import json,sys
try: print(sum(1 for w in json.load(sys.stdin)["workers"] if w["alive"]))
except Exception: print(0)' 2>/dev/null || echo 0
}

# is_registered ID: true if worker ID is alive at the coordinator
is_registered() {
  "$BIN/heliumctl" --coordinator "$HELIUM_COORDINATOR" --timeout-ms 2000 --json status 2>/dev/null |
    python3 -c 'import json,sys
ws = json.load(sys.stdin)["workers"]
sys.exit(0 if any(w["id"] == sys.argv[1] and w["alive"] for w in ws) else 1)' "$1" 2>/dev/null
}

# keygen DIR NAME: DIR/keys/NAME.{key,pub} unless they exist
keygen() {
  mkdir -p "$1/keys"
  [ -f "$1/keys/$2.key" ] || "$BIN/heliumctl" keygen "$1/keys/$2" >/dev/null
}

# worker_auth DIR ID: a worker's key arguments (CURVE: its key, added to both
# key lists, the running processes told to re-read them)
worker_auth() {
  local dir=$1 id=$2
  if [ "${HELIUM_CURVE:-0}" != 1 ]; then echo "--insecure"; return; fi
  if [ ! -f "$dir/keys/$id.key" ]; then
    keygen "$dir" "$id"
    cat "$dir/keys/$id.pub" >>"$dir/keys/authorized_keys"
    cat "$dir/keys/$id.pub" >>"$dir/keys/workers.keys"
    local f
    for f in "$dir"/*.pid; do [ -f "$f" ] && kill -HUP "$(cat "$f")" 2>/dev/null; done
    sleep 0.3
  fi
  echo "--key $dir/keys/$id.key --server-key $dir/keys/coordinator.pub --authorized-keys $dir/keys/workers.keys" \
    "$([ "${HELIUM_CURVE_DATA:-}" = clear ] && echo --clear-data)"
}

load_env() {
  local dir=$1
  [ -f "$dir/cluster.env" ] || die "$dir/cluster.env not found (is a cluster up in $dir?)"
  # shellcheck disable=SC1091
  . "$dir/cluster.env"
}

start_worker() { # DIR ID INDEX
  local dir=$1 id=$2 idx=$3
  alive "$dir/$id.pid" && die "worker $id already runs (pid $(cat "$dir/$id.pid"))"
  local data="tcp://127.0.0.1:$((HELIUM_PORT + 10 + idx))"
  local auth; auth=$(worker_auth "$dir" "$id")
  # shellcheck disable=SC2086
  "$BIN/helium-worker" serve --coordinator "$HELIUM_WORKERS_EP" --model "$HELIUM_MODEL" --id "$id" \
    --data "$data" --threads "${HELIUM_THREADS:-1}" $auth ${HELIUM_WORKER_ARGS:-} \
    </dev/null >"$dir/$id.log" 2>&1 &
  echo $! >"$dir/$id.pid"
}

# wait_registered DIR ID...: until every ID is alive at the coordinator;
# prints why and returns 1 if the coordinator or a worker exits, or on timeout.
wait_registered() {
  local dir=$1; shift
  local deadline=$((SECONDS + ${HELIUM_UP_TIMEOUT:-60}))
  for id in "$@"; do
    until is_registered "$id"; do
      if ! alive "$dir/coordinator.pid"; then
        tail -n 20 "$dir/coordinator.log" >&2 || true
        echo "cluster.sh: the coordinator exited (log: $dir/coordinator.log)" >&2
        return 1
      fi
      if ! alive "$dir/$id.pid"; then
        tail -n 20 "$dir/$id.log" >&2 || true
        echo "cluster.sh: worker $id exited (log: $dir/$id.log)" >&2
        return 1
      fi
      if [ $SECONDS -ge $deadline ]; then
        echo "cluster.sh: worker $id did not register within ${HELIUM_UP_TIMEOUT:-60} s (logs in $dir)" >&2
        return 1
      fi
      sleep 0.2
    done
  done
}

cmd_up() {
  local dir=${1:?DIR}; local n=${2:-2}
  [[ $n =~ ^[0-9]+$ ]] || die "N must be a number"
  mkdir -p "$dir"
  dir=$(cd "$dir" && pwd)
  alive "$dir/coordinator.pid" && die "a coordinator already runs in $dir (pid $(cat "$dir/coordinator.pid"))"
  for b in helium-coordinator helium-worker heliumctl; do
    [ -x "$BIN/$b" ] || die "$BIN/$b not found (build first, or set HELIUM_BIN)"
  done
  local port=${HELIUM_PORT:-7700}
  local model=${HELIUM_MODEL:-$dir/model.gguf}
  if [ ! -f "$model" ]; then
    [ -x "$BIN/helium-mkmodel" ] || die "no model at $model and no helium-mkmodel to write one"
    "$BIN/helium-mkmodel" --preset tiny --arch llama --dtype f32 --seed 3 -o "$model" >"$dir/mkmodel.log" 2>&1 ||
      die "helium-mkmodel failed (log: $dir/mkmodel.log)"
  fi
  model=$(cd "$(dirname "$model")" && pwd)/$(basename "$model")
  cat >"$dir/cluster.env" <<EOF
HELIUM_COORDINATOR=tcp://127.0.0.1:$port
HELIUM_WORKERS_EP=tcp://127.0.0.1:$((port + 1))
HELIUM_METRICS_PORT=$((port + 2))
HELIUM_PORT=$port
HELIUM_MODEL=$model
EOF
  local coord_auth=--insecure
  if [ "${HELIUM_CURVE:-0}" = 1 ]; then
    rm -rf "$dir/keys"
    keygen "$dir" coordinator
    keygen "$dir" client
    cp "$dir/keys/client.pub" "$dir/keys/authorized_keys"
    : >"$dir/keys/workers.keys"
    for ((i = 1; i <= n; i++)); do # before anyone runs: nobody needs a SIGHUP
      keygen "$dir" "w$i"
      cat "$dir/keys/w$i.pub" | tee -a "$dir/keys/workers.keys" >>"$dir/keys/authorized_keys"
    done
    coord_auth="--key $dir/keys/coordinator.key --authorized-keys $dir/keys/authorized_keys"
    printf 'export HELIUMCTL_KEY=%s\nexport HELIUMCTL_SERVER_KEY=%s\n' "$dir/keys/client.key" \
      "$dir/keys/coordinator.pub" >>"$dir/cluster.env"
  else
    echo "export HELIUMCTL_INSECURE=1" >>"$dir/cluster.env"
  fi
  load_env "$dir"
  if [ -n "${HELIUM_WATCH_PID:-}" ]; then
    (
      trap '' INT
      while kill -0 "$HELIUM_WATCH_PID" 2>/dev/null; do sleep 1; done
      HELIUM_IN_WATCHER=1 cmd_down "$dir"
      rm -f "$dir/watch.pidw"
    ) </dev/null >/dev/null 2>&1 &
    echo $! >"$dir/watch.pidw"
  fi
  if "$BIN/heliumctl" --coordinator "$HELIUM_COORDINATOR" --timeout-ms 300 status >/dev/null 2>&1; then
    die "a coordinator already answers at $HELIUM_COORDINATOR (set HELIUM_PORT)"
  fi
  # shellcheck disable=SC2086
  "$BIN/helium-coordinator" --model "$HELIUM_MODEL" --listen "$HELIUM_COORDINATOR" \
    --workers "$HELIUM_WORKERS_EP" --metrics-port "$HELIUM_METRICS_PORT" $coord_auth ${HELIUM_COORD_ARGS:-} \
    </dev/null >"$dir/coordinator.log" 2>&1 &
  echo $! >"$dir/coordinator.pid"
  local ids=()
  for ((i = 1; i <= n; i++)); do
    start_worker "$dir" "w$i" "$i"
    ids+=("w$i")
  done
  if ! wait_registered "$dir" "${ids[@]}" || ! alive "$dir/coordinator.pid"; then
    alive "$dir/coordinator.pid" || echo "cluster.sh: the coordinator exited: $(tail -n 3 "$dir/coordinator.log")" >&2
    cmd_down "$dir"
    exit 1
  fi
  echo "cluster up in $dir: coordinator $HELIUM_COORDINATOR, $n worker(s)"
}

cmd_worker() {
  local dir=${1:?DIR}; local id=${2:?ID}
  dir=$(cd "$dir" && pwd)
  load_env "$dir"
  local idx=${id//[!0-9]/}
  [ -n "$idx" ] || idx=$((RANDOM % 80 + 20))
  start_worker "$dir" "$id" "$idx"
  if ! wait_registered "$dir" "$id"; then
    local p; p=$(cat "$dir/$id.pid")
    running "$p" && kill -KILL "$p" 2>/dev/null
    rm -f "$dir/$id.pid"
    exit 1
  fi
  echo "worker $id up"
}

cmd_down() {
  local dir=${1:?DIR}
  [ -d "$dir" ] || return 0
  if [ -z "${HELIUM_IN_WATCHER:-}" ] && [ -f "$dir/watch.pidw" ]; then
    kill "$(cat "$dir/watch.pidw")" 2>/dev/null || true
    rm -f "$dir/watch.pidw"
  fi
  local pids=()
  for f in "$dir"/*.pid; do
    [ -f "$f" ] || continue
    local p; p=$(cat "$f")
    if running "$p"; then
      kill -TERM "$p" 2>/dev/null || true
      kill -CONT "$p" 2>/dev/null || true # a stopped process must run to see SIGTERM
      pids+=("$p")
    fi
  done
  local deadline=$((SECONDS + 5))
  for p in "${pids[@]}"; do
    while running "$p" && [ $SECONDS -lt $deadline ]; do sleep 0.1; done
    if running "$p"; then kill -KILL "$p" 2>/dev/null || true; fi
  done
  for f in "$dir"/*.pid; do [ -f "$f" ] && rm -f "$f"; done
  return 0
}

cmd_status() {
  local dir=${1:?DIR}
  load_env "$dir"
  "$BIN/heliumctl" --coordinator "$HELIUM_COORDINATOR" status
}

case ${1:-} in
  up) shift; cmd_up "$@" ;;
  worker) shift; cmd_worker "$@" ;;
  down) shift; cmd_down "$@" ;;
  status) shift; cmd_status "$@" ;;
  -h|--help|help|"") usage ;;
  *) die "unknown command '$1' (up, worker, down, status)" ;;
esac
