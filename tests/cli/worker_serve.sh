#!/usr/bin/env bash
# worker_serve: `helium-worker serve` against a scripted fake coordinator
# (tests/cli/fake_coord.c, built here against the build's generated proto
# code), without the real coordinator. Two workers (w1 with a data endpoint,
# w2) run: results equal `helium-worker generate --prompt-ids`, the prefix
# cache is reused (cached_tokens > 0), w2 pulls A's KV pages from w1
# (pulled_tokens > 0), malformed frames are dropped and counted, cache events
# mirror the cache, streaming chunks add up to the result, Cancel and a
# too-long prompt get typed answers, concurrent dispatches batch correctly;
# after a coordinator restart both register again with a cache snapshot, and
# Shutdown makes both exit 0; SIGTERM also exits 0. Then one worker with 64
# KV blocks runs the optimizer's dispatch policies (fake_coord "policy"
# mode): no_cache, warm (prefill only), pin/Unpin under tags against a cache
# flood, the pin budget, and their heartbeat counters.
# Env: HELIUM_BIN, HELIUM_SRC, HELIUM_BUILD (set by ctest);
# HELIUM_TEST_MODEL=FILE uses that model instead of helium-mkmodel's.
set -euo pipefail
export HELIUM_WORKER_INSECURE=1 # the fake coordinator speaks plain TCP

: "${HELIUM_BIN:?set HELIUM_BIN to the bin directory of the build}"
: "${HELIUM_SRC:?set HELIUM_SRC to the source tree}"
HELIUM_BUILD=${HELIUM_BUILD:-$(dirname "$HELIUM_BIN")}
NAME=worker_serve

TMP=$(mktemp -d "/tmp/helium-$NAME.XXXXXX")
PIDS=()
cleanup() {
  local rc=$?
  for p in "${PIDS[@]}"; do kill -KILL "$p" 2>/dev/null || true; done
  if [ $rc -eq 0 ] && [ -z "${KEEP_TMP:-}" ]; then rm -rf "$TMP"; else echo "$NAME: exit $rc; files kept in $TMP" >&2; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

fail() {
  echo "FAIL $NAME: $*" >&2
  for f in "$TMP"/*.log; do
    [ -f "$f" ] || continue
    echo "---- tail of $f" >&2
    tail -n 30 "$f" >&2
  done
  exit 1
}

WORKER=$HELIUM_BIN/helium-worker
[ -x "$WORKER" ] || fail "$WORKER is missing (not built)"
# the fake coordinator (tests/cli/fake_coord.c, a CMake target)
FAKE_COORD=$HELIUM_BUILD/tests/fake_coord
[ -x "$FAKE_COORD" ] || fail "$FAKE_COORD is missing (not built)"

# the model
if [ -n "${HELIUM_TEST_MODEL:-}" ]; then
  MODEL=$HELIUM_TEST_MODEL
else
  MODEL=$TMP/m.gguf
  "$HELIUM_BIN/helium-mkmodel" --preset tiny --arch llama --dtype f32 --seed 3 -o "$MODEL" >"$TMP/mkmodel.log" 2>&1 ||
    fail "helium-mkmodel failed"
fi

# prompts: A (about 45 tokens), B = A's first 32 tokens + other text
TEXT_A="The cat sat on the mat and looked at the dog. The dog sat on the rug and looked back at the cat, and then both of them went to sleep in the warm sun by the window"
TEXT_B="A completely different ending about a hello world program"
IDS_A=$("$WORKER" tokenize --model "$MODEL" --text "$TEXT_A") || fail "tokenize failed"
IDS_X=$("$WORKER" tokenize --model "$MODEL" --text "$TEXT_B" --no-bos) || fail "tokenize failed"
NA=$(echo "$IDS_A" | tr ',' '\n' | wc -l)
[ "$NA" -ge 34 ] || fail "prompt A has only $NA tokens"
IDS_B="$(echo "$IDS_A" | cut -d, -f1-32),$IDS_X"
MAXTOK=12
BS=8
ENGINE_OPTS=(--block-size "$BS" --ctx 256 --kv-mb 16 --threads 1 --pull-timeout-ms 500)

# reference outputs
ref() {
  "$WORKER" generate --model "$MODEL" --prompt-ids "$1" --max-tokens "$MAXTOK" --json --block-size "$BS" --threads 1 \
    2>>"$TMP/ref.log" | head -n 1 | grep -o '"ids":\[[^]]*\]' | sed 's/"ids":\[//; s/\]//'
}
EXP_A=$(ref "$IDS_A") || fail "reference generate failed"
EXP_B=$(ref "$IDS_B") || fail "reference generate failed"
[ -n "$EXP_A" ] && [ -n "$EXP_B" ] || fail "reference generate gave no ids (A='$EXP_A' B='$EXP_B')"


# start_fake MODE [N_WORKERS]: the fake coordinator in the background ($FC), listening when this returns
start_fake() {
  "$FAKE_COORD" "$COORD" "${2:-2}" "$IDS_A" "$IDS_B" "$EXP_A" "$EXP_B" "$MAXTOK" "$1" >"$TMP/fake_$1.out" 2>"$TMP/fake_$1.log" &
  FC=$!
  PIDS+=("$FC")
  for _ in $(seq 100); do grep -q listening "$TMP/fake_$1.out" 2>/dev/null && break; sleep 0.1; done
  grep -q listening "$TMP/fake_$1.out" || fail "fake coordinator did not start: $(cat "$TMP/fake_$1.out")"
}
# wait_fake MODE: waits for it and checks that it passed
wait_fake() {
  local rc=0
  wait "$FC" || rc=$?
  cat "$TMP/fake_$1.out"
  [ $rc -eq 0 ] || fail "fake coordinator ($1): $(grep FAIL "$TMP/fake_$1.out" || echo "exit $rc")"
}

# a free port for the fake coordinator (another test may hold the first pick)
for try in 0 1 2 3 4 5 6 7; do
  PORT=$((20000 + ($$ * 7 + try * 997) % 30000))
  COORD=tcp://127.0.0.1:$PORT
  "$FAKE_COORD" "$COORD" 2 "$IDS_A" "$IDS_B" "$EXP_A" "$EXP_B" "$MAXTOK" main >"$TMP/fake_main.out" 2>"$TMP/fake_main.log" &
  FC=$!
  PIDS+=("$FC")
  for _ in $(seq 100); do
    grep -q "listening\|FAIL" "$TMP/fake_main.out" 2>/dev/null && break
    sleep 0.1
  done
  grep -q listening "$TMP/fake_main.out" && break
done
grep -q listening "$TMP/fake_main.out" || fail "fake coordinator did not start: $(cat "$TMP/fake_main.out")"

"$WORKER" serve --coordinator "$COORD" --model "$MODEL" --id w1 --data "tcp://127.0.0.1:*" "${ENGINE_OPTS[@]}" \
  --log-level debug 2>"$TMP/w1.log" &
W1=$!
PIDS+=("$W1")
"$WORKER" serve --coordinator "$COORD" --model "$MODEL" --id w2 --data "tcp://127.0.0.1:*" "${ENGINE_OPTS[@]}" \
  --log-level debug 2>"$TMP/w2.log" &
W2=$!
PIDS+=("$W2")

wait_fake main
# the coordinator "restarts": both workers must notice and register again
start_fake rejoin
wait_fake rejoin

# both workers exit 0 after Shutdown (give them 20 s)
for w in "$W1:w1" "$W2:w2"; do
  pid=${w%%:*}
  id=${w##*:}
  for _ in $(seq 200); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  kill -0 "$pid" 2>/dev/null && fail "$id did not exit after Shutdown"
  rc=0
  wait "$pid" || rc=$?
  [ $rc -eq 0 ] || fail "$id exited $rc after Shutdown"
done
grep -q "bad frame" "$TMP/w1.log" || fail "w1 logged no bad frames"
grep -aq "\[worker w1[ .0-9]*\] dispatch task" "$TMP/w1.log" || fail "w1 did not log its dispatches"
grep -aq "\[worker w2[ .0-9]*\] task 3 pull" "$TMP/w2.log" || fail "w2 did not log its pull"
if grep -q "ERROR: AddressSanitizer\|runtime error:" "$TMP"/w*.log; then fail "sanitizer report in a worker log"; fi

# SIGTERM: a worker with no coordinator exits 0 promptly
"$WORKER" serve --coordinator "tcp://127.0.0.1:$((PORT + 1))" --model "$MODEL" --id w3 "${ENGINE_OPTS[@]}" \
  2>"$TMP/w3.log" &
W3=$!
PIDS+=("$W3")
sleep 1
kill -TERM "$W3"
for _ in $(seq 100); do kill -0 "$W3" 2>/dev/null || break; sleep 0.1; done
kill -0 "$W3" 2>/dev/null && fail "w3 ignored SIGTERM"
rc=0
wait "$W3" || rc=$?
[ $rc -eq 0 ] || fail "w3 exited $rc after SIGTERM"

# usage errors exit 2
rc=0
"$WORKER" serve --model "$MODEL" 2>/dev/null || rc=$?
[ $rc -eq 2 ] || fail "serve without --coordinator exited $rc, want 2"

# One worker (w1, small KV) against fake_coord in MODE; the worker must exit
# 0 after the Shutdown that ends the mode, with no sanitizer report.
# Usage: one_worker_mode MODE KV_BLOCKS LOG
one_worker_mode() {
  local mode=$1 kvb=$2 log=$3 pid rc=0
  start_fake "$mode" 1
  "$WORKER" serve --coordinator "$COORD" --model "$MODEL" --id w1 --block-size "$BS" --ctx 256 \
    --kv-blocks "$kvb" --threads 1 --log-level debug 2>"$log" &
  pid=$!
  PIDS+=("$pid")
  wait_fake "$mode"
  for _ in $(seq 200); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  kill -0 "$pid" 2>/dev/null && fail "the $mode worker did not exit after Shutdown"
  wait "$pid" || rc=$?
  [ $rc -eq 0 ] || fail "the $mode worker exited $rc after Shutdown"
  if grep -q "ERROR: AddressSanitizer\|runtime error:" "$log"; then fail "sanitizer report in the $mode worker log"; fi
}

# the workflow optimizer's dispatch policies on a worker with a small KV cache
one_worker_mode policy 64 "$TMP/wp.log"
grep -q "pin budget" "$TMP/wp.log" || fail "the policy worker did not log the refused pins"

# workflow-aware eviction: pinned pages go in order of steps to execution
one_worker_mode evict 40 "$TMP/we.log"

echo "PASS $NAME"
