#!/usr/bin/env bash
# sim_check: the cluster-scale simulator (bench/sim, helium-sim) at a tiny
# size. Nine jobs, one of each bench workload (the customer_service tool call
# is a real HTTP call to a local service), on 2 simulated workers whose KV
# cache holds only 400 blocks (so evictions, pins and admission waits
# happen), under every policy. Checks (bench/sim/run.py check): every job
# ends DONE, no policy computes fewer prompt tokens than the coordinator's
# minimum, and every job's outputs (a digest of every op's output) are
# identical under every policy. No timing is asserted.
set -u
here=$(cd "$(dirname "$0")" && pwd)
SRC=${HELIUM_SRC:-$(cd "$here/../.." && pwd)}
BUILD=${HELIUM_BUILD:-$SRC/build}
[ -x "$BUILD/bin/helium-mkmodel" ] || { echo "FAIL: no helium-mkmodel in $BUILD/bin"; exit 1; }
tmp=$(mktemp -d "${TMPDIR:-/tmp}/sim-check.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
PYTHONDONTWRITEBYTECODE=1 python3 "$SRC/bench/sim/run.py" check --build "$BUILD" --preset tiny \
    --geometry 16,400,4096,512 --workers 2 --jobs 9 --workdir "$tmp" > "$tmp/log" 2>&1
rc=$?
cat "$tmp/log" | tail -12
if [ "$rc" -ne 0 ] || ! grep -q '^sim check: ok' "$tmp/log"; then
    echo "FAIL: bench/sim/run.py check exited $rc"
    exit 1
fi
n=$(grep -cE '^(isolated|prefix|router|kvflow|helium) +jobs 9/9' "$tmp/log")
[ "$n" -eq 5 ] || { echo "FAIL: $n of 5 policies ran every job"; exit 1; }
# the work saved: helium's waiting calls are not placed again while nothing
# they wait on moved (coordinator/place.c), with the same outputs (above)
skipped=$(grep -E '^helium +jobs' "$tmp/log" | sed -n 's/.* skipped \([0-9]*\).*/\1/p')
[ -n "$skipped" ] && [ "$skipped" -gt 0 ] || { echo "FAIL: helium skipped no placement (got '$skipped')"; exit 1; }
echo "ok"
