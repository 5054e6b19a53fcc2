#!/usr/bin/env bash
# run.sh: builds the libFuzzer targets with clang in a build dir of their own
# and runs each one: first every committed input (tests/fuzz/regress/<t>/,
# earlier crashes, and tests/fuzz/corpus/<t>/, the seeds) once, then
# FUZZ_SECONDS of fuzzing from the seeds. Used by `make fuzz` (60 s each) and
# by the ctest entry fuzz_smoke (30 s each, FUZZ_BUILD under the ctest build).
#
# Env: FUZZ_SECONDS (default 60), FUZZ_BUILD (default build-fuzz under the
# source tree), FUZZ_TARGETS (names without the fuzz_ prefix; default all),
# FUZZ_JOBS (build parallelism, default 2), FUZZ_WORK (where the growing
# corpora and any crash input go; default $FUZZ_BUILD/work).
# A crash fails the run; the input is kept in FUZZ_WORK/artifacts/<t>/ and the
# fix's commit copies it to tests/fuzz/regress/<t>/. Output ends with
# "N passed, N failed" (one per target).
set -uo pipefail

SRC=${HELIUM_SRC:-$(cd "$(dirname "$0")/../.." && pwd)}
FUZZ_SECONDS=${FUZZ_SECONDS:-60}
FUZZ_BUILD=${FUZZ_BUILD:-$SRC/build-fuzz}
FUZZ_JOBS=${FUZZ_JOBS:-2}
FUZZ_WORK=${FUZZ_WORK:-$FUZZ_BUILD/work}
HERE=$SRC/tests/fuzz

die() { echo "fuzz: $*" >&2; exit 1; }

command -v clang >/dev/null || die "clang is missing (scripts/install-deps.sh installs it)"
rt=$(clang -print-file-name=libclang_rt.fuzzer-x86_64.a 2>/dev/null || true)
if [ ! -f "$rt" ]; then
  rt=$(find /usr/lib/llvm-*/lib/clang -name 'libclang_rt.fuzzer*.a' 2>/dev/null | head -n1)
  [ -n "$rt" ] || die "the libFuzzer runtime (libclang-rt-*-dev) is missing: scripts/install-deps.sh installs it"
fi

echo "fuzz: building in $FUZZ_BUILD with $(clang --version | head -n1)"
CC=clang cmake -S "$SRC" -B "$FUZZ_BUILD" -DHELIUM_FUZZ=ON -DHELIUM_CUDA=OFF -DHELIUM_SANITIZE=OFF \
  -DCMAKE_BUILD_TYPE=RelWithDebInfo >"$FUZZ_BUILD.cmake.log" 2>&1 || { cat "$FUZZ_BUILD.cmake.log"; die "cmake failed"; }
cmake --build "$FUZZ_BUILD" -j "$FUZZ_JOBS" --target fuzzers >"$FUZZ_BUILD.build.log" 2>&1 ||
  { tail -n 40 "$FUZZ_BUILD.build.log"; die "build failed"; }

if [ -n "${FUZZ_TARGETS:-}" ]; then
  targets=$FUZZ_TARGETS
else
  targets=$(cd "$FUZZ_BUILD/fuzz" && ls fuzz_* | sed 's/^fuzz_//' | sort)
fi

# abort_on_error: a finding is a crash libFuzzer records; leaks are findings too
export ASAN_OPTIONS=abort_on_error=1:detect_leaks=1:allocator_may_return_null=1
export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1

passed=0 failed=0
for t in $targets; do
  bin=$FUZZ_BUILD/fuzz/fuzz_$t
  [ -x "$bin" ] || { echo "fuzz $t: no such target"; failed=$((failed + 1)); continue; }
  work=$FUZZ_WORK/corpus/$t art=$FUZZ_WORK/artifacts/$t
  mkdir -p "$work" "$art"
  dict=()
  [ -f "$HERE/$t.dict" ] && dict=(-dict="$HERE/$t.dict")
  # 1. replay every committed input once (regressions first)
  inputs=()
  for d in "$HERE/regress/$t" "$HERE/corpus/$t"; do
    [ -d "$d" ] && inputs+=("$d"/*)
  done
  if [ ${#inputs[@]} -gt 0 ] && ! "$bin" -runs=1 "${inputs[@]}" >"$art/replay.log" 2>&1; then
    echo "fuzz $t: FAILED replaying the committed inputs:"
    tail -n 30 "$art/replay.log"
    failed=$((failed + 1))
    continue
  fi
  # 2. fuzz from the seeds (new inputs go to the work corpus, not the repo)
  seeds=()
  [ -d "$HERE/corpus/$t" ] && seeds+=("$HERE/corpus/$t")
  log=$art/fuzz.log
  "$bin" "${dict[@]}" -max_total_time="$FUZZ_SECONDS" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
    -artifact_prefix="$art/" "$work" "${seeds[@]}" >"$log" 2>&1
  rc=$?
  execs=$(grep -m1 'stat::number_of_executed_units' "$log" | awk '{print $2}')
  cov=$(grep -E '^#[0-9]+[[:space:]]' "$log" | tail -n1 | grep -o 'cov: [0-9]*' | awk '{print $2}')
  ft=$(grep -E '^#[0-9]+[[:space:]]' "$log" | tail -n1 | grep -o 'ft: [0-9]*' | awk '{print $2}')
  ncorp=$(find "$work" -type f | wc -l)
  if [ $rc -eq 0 ]; then
    echo "fuzz $t: ok, ${FUZZ_SECONDS}s, ${execs:-?} executions, cov ${cov:-?} edges, ft ${ft:-?}, corpus $ncorp"
    passed=$((passed + 1))
  else
    echo "fuzz $t: FAILED (exit $rc) after ${execs:-?} executions; input kept in $art/"
    grep -E 'ERROR|invariant|SUMMARY|#[0-9]+ in ' "$log" | head -n 25
    failed=$((failed + 1))
  fi
done
echo "$passed passed, $failed failed"
[ $failed -eq 0 ]
