#!/usr/bin/env bash
# bench_workloads: the workflow files shipped in bench/workloads/{small,paper}
# are exactly what bench/workloads/workloads.py generates (the benchmark runs
# the generated ones and only warns when they differ, so a stale shipped file
# would mislead a reader, not the bench). Regenerate with:
#   python3 bench/workloads/workloads.py --scale small   (and --scale paper)
set -u
here=$(cd "$(dirname "$0")" && pwd)
SRC=${HELIUM_SRC:-$(cd "$here/../.." && pwd)}
tmp=$(mktemp -d "${TMPDIR:-/tmp}/bench-workloads.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
fails=0
for scale in small paper; do
    PYTHONDONTWRITEBYTECODE=1 python3 "$SRC/bench/workloads/workloads.py" --scale "$scale" --out "$tmp" >/dev/null ||
        { echo "FAIL: workloads.py --scale $scale failed"; exit 1; }
    n=0
    for f in "$SRC/bench/workloads/$scale"/*.json; do
        n=$((n + 1))
        g="$tmp/$scale/$(basename "$f")"
        if [ ! -f "$g" ]; then
            echo "FAIL: $f is shipped but workloads.py no longer writes it"
            fails=$((fails + 1))
        elif ! python3 -c 'import json,sys; sys.exit(json.load(open(sys.argv[1])) != json.load(open(sys.argv[2])))' "$f" "$g"; then
            echo "FAIL: $f differs from what workloads.py generates (regenerate it)"
            fails=$((fails + 1))
        fi
    done
    for g in "$tmp/$scale"/*.json; do
        [ -f "$SRC/bench/workloads/$scale/$(basename "$g")" ] ||
            { echo "FAIL: workloads.py writes $(basename "$g") ($scale) but it is not shipped"; fails=$((fails + 1)); }
    done
    [ "$n" -ge 9 ] || { echo "FAIL: only $n shipped $scale workloads"; fails=$((fails + 1)); }
done
[ "$fails" -eq 0 ] && echo "PASS: shipped workloads match the generator" || exit 1
