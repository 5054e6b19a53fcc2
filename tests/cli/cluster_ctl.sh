#!/usr/bin/env bash
# cluster_ctl: heliumctl on its own (no cluster): usage errors exit 2, an
# unreachable coordinator gives the documented message and exit 1 (and does
# not hang), bad workflow files are refused locally with the wire's error
# names, and --json errors are JSON.
set -euo pipefail
export HELIUMCTL_INSECURE=1 # no keys (tests/cli/cluster_curve.sh checks CURVE)
: "${HELIUM_BIN:?}" "${HELIUM_SRC:?}"
CTL=$HELIUM_BIN/heliumctl
[ -x "$CTL" ] || { echo "cluster_ctl: $CTL not built" >&2; exit 1; }
TMP=$(mktemp -d /tmp/helium-ctl.XXXXXX)
trap 'rm -rf "$TMP"' EXIT
fail() { echo "FAIL cluster_ctl: $*" >&2; exit 1; }

# expect RC CMD...: runs CMD (stdout -> $TMP/out, stderr -> $TMP/err), checks its exit status
expect() {
  local want=$1; shift
  local rc=0
  timeout 20 "$@" >"$TMP/out" 2>"$TMP/err" || rc=$?
  [ "$rc" = "$want" ] || fail "'$*' exited $rc, expected $want; stderr: $(cat "$TMP/err")"
}

expect 2 "$CTL"
expect 0 "$CTL" --help
grep -q "submit FILE.json" "$TMP/out" || fail "--help lacks the submit usage"
expect 2 "$CTL" frobnicate
expect 2 "$CTL" --timeout-ms abc status
expect 2 "$CTL" --timeout-ms 0 status
expect 2 "$CTL" submit
expect 2 "$CTL" submit a.json b.json
expect 2 "$CTL" submit a.json --input novalue
expect 2 "$CTL" result
expect 2 "$CTL" cancel a b
expect 2 "$CTL" jobs --limit x
expect 2 "$CTL" status extra

# nobody listens on this port: every command reports it and exits 1
EP=tcp://127.0.0.1:$((10025 + ($$ % 400) * 50))
for cmd in status jobs "result job-1" "cancel job-1"; do
  # shellcheck disable=SC2086
  expect 1 "$CTL" --coordinator "$EP" --timeout-ms 300 $cmd
  grep -q "heliumctl: coordinator at $EP did not answer within 300 ms" "$TMP/err" ||
    fail "$cmd: unexpected message: $(cat "$TMP/err")"
done
HELIUM_COORDINATOR=$EP expect 1 "$CTL" --timeout-ms 200 status
grep -q "coordinator at $EP" "$TMP/err" || fail "HELIUM_COORDINATOR was not used: $(cat "$TMP/err")"
expect 1 "$CTL" --json --coordinator "$EP" --timeout-ms 200 status
python3 -c 'import json,sys; e=json.load(open(sys.argv[1]))["error"]; assert e["code"]=="UNAVAILABLE", e' "$TMP/out" ||
  fail "--json error output: $(cat "$TMP/out")"
expect 1 "$CTL" --coordinator "not an endpoint" status

# bad workflow files never leave the machine
expect 1 "$CTL" --coordinator "$EP" --timeout-ms 200 submit "$TMP/missing.json"
grep -q "cannot open" "$TMP/err" || fail "missing file: $(cat "$TMP/err")"
echo '{"ops": [' >"$TMP/broken.json"
expect 1 "$CTL" --coordinator "$EP" --timeout-ms 200 submit "$TMP/broken.json"
grep -q "error INVALID" "$TMP/err" || fail "broken JSON: $(cat "$TMP/err")"
expect 1 "$CTL" --coordinator "$EP" --timeout-ms 200 submit "$HELIUM_SRC/examples/bad_cycle.json"
grep -q "error CYCLE" "$TMP/err" || fail "cycle: $(cat "$TMP/err")"
echo '{"ops": [{"id": "a", "type": "llm", "prompt": "x {{op.ghost}}"}]}' >"$TMP/dangling.json"
expect 1 "$CTL" --coordinator "$EP" --timeout-ms 200 submit "$TMP/dangling.json"
grep -q "error DANGLING_REF" "$TMP/err" || fail "dangling: $(cat "$TMP/err")"
echo '{"ops": [{"id": "a", "type": "teleport"}]}' >"$TMP/unknown.json"
expect 1 "$CTL" --json --coordinator "$EP" --timeout-ms 200 submit "$TMP/unknown.json"
grep -q "error UNKNOWN_OP" "$TMP/err" || fail "unknown op: $(cat "$TMP/err")"
python3 -c 'import json,sys; e=json.load(open(sys.argv[1]))["error"]; assert e["code"]=="UNKNOWN_OP", e' "$TMP/out" ||
  fail "--json local error: $(cat "$TMP/out")"
# a valid file gets as far as the network
expect 1 "$CTL" --coordinator "$EP" --timeout-ms 200 submit "$HELIUM_SRC/examples/map_reduce.json" --input document=x
grep -q "did not answer" "$TMP/err" || fail "valid workflow: $(cat "$TMP/err")"
expect 1 "$CTL" --coordinator "$EP" --timeout-ms 200 submit "$HELIUM_SRC/examples/map_reduce.json" --input-file "document=$TMP/nope.txt"
grep -q "input 'document'" "$TMP/err" || fail "missing input file: $(cat "$TMP/err")"
echo "cluster_ctl: ok"
