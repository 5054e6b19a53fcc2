#!/usr/bin/env bash
# Installs the Debian packages Helium needs, if any is missing. Idempotent and
# fast when everything is there (one dpkg query). Needs root (or sudo) only
# when something must be installed.
set -euo pipefail
PKGS=(build-essential cmake pkg-config libzmq3-dev libprotobuf-c-dev protobuf-c-compiler
      libcriterion-dev libcurl4-openssl-dev libopenblas-dev libxxhash-dev libcjson-dev
      libmicrohttpd-dev python3 curl
      clang libclang-rt-14-dev) # clang + libFuzzer runtime: tests/fuzz
missing=()
for p in "${PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
  exit 0
fi
echo "install-deps: installing ${missing[*]}"
SUDO=""
if [ "$(id -u)" != 0 ]; then SUDO=sudo; fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
