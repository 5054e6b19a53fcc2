#!/usr/bin/env bash
# base-image.sh: make a local Debian 12 base image where no image registry can
# be reached, with debootstrap (minbase variant) and `docker import`.
#
#   deploy/base-image.sh [TAG]     prints the tag of the image it made or found
#
# The image stands in for debian:bookworm-slim: build with
#   docker build --build-arg BASE=$(deploy/base-image.sh) -f deploy/Dockerfile .
#
# Invariant: the tag carries a content key (a hash of this script, the suite,
# the variant and the mirror), so an image with that tag was made by exactly
# this recipe and is reused as is; the root-filesystem tarball is also kept
# under $HELIUM_CACHE/base/ so a wiped Docker data root re-imports in seconds
# instead of bootstrapping again (about a minute on 2 cores).
#
# Environment: HELIUM_CACHE (default ~/.cache/helium), DEBIAN_MIRROR (default:
# the first deb.debian.org-style URI in /etc/apt/sources.list*, else
# http://deb.debian.org/debian), DOCKER (docker client, default docker).
# Needs root (debootstrap) and debootstrap itself (scripts/install-deps.sh
# --deploy installs it).
set -euo pipefail

SUITE=bookworm
VARIANT=minbase
CACHE=${HELIUM_CACHE:-$HOME/.cache/helium}
DOCKER=${DOCKER:-docker}

mirror() {
  if [ -n "${DEBIAN_MIRROR:-}" ]; then echo "$DEBIAN_MIRROR"; return; fi
  local u
  u=$(grep -hoE '(URIs:[[:space:]]*|^deb[[:space:]]+)https?://[^[:space:]]+/debian/?([[:space:]]|$)' \
        /etc/apt/sources.list /etc/apt/sources.list.d/* 2>/dev/null |
      grep -oE 'https?://[^[:space:]]+' | grep -v security | head -n1 || true)
  echo "${u:-http://deb.debian.org/debian}"
}

MIRROR=$(mirror)
KEY=$( { cat "${BASH_SOURCE[0]}"; echo "$SUITE $VARIANT $MIRROR"; } | sha256sum | cut -c1-12)
TAG=${1:-helium-base:$SUITE-$KEY}

if "$DOCKER" image inspect "$TAG" >/dev/null 2>&1; then
  echo "$TAG"
  exit 0
fi

TARBALL=$CACHE/base/$SUITE-$VARIANT-$KEY.tar
if [ ! -s "$TARBALL" ]; then
  command -v debootstrap >/dev/null || { echo "base-image.sh: debootstrap not found" >&2; exit 1; }
  mkdir -p "$CACHE/base"
  ROOT=$(mktemp -d "$CACHE/base/root.XXXXXX")
  trap 'rm -rf "$ROOT" "$TARBALL.tmp"' EXIT
  echo "base-image.sh: debootstrap --variant=$VARIANT $SUITE from $MIRROR" >&2
  debootstrap --variant="$VARIANT" "$SUITE" "$ROOT" "$MIRROR" >"$CACHE/base/debootstrap.log" 2>&1 ||
    { tail -20 "$CACHE/base/debootstrap.log" >&2; exit 1; }
  # slim it as debian:*-slim is: no apt lists, no caches, no docs
  rm -rf "$ROOT"/var/lib/apt/lists/* "$ROOT"/var/cache/apt/*.bin "$ROOT"/var/cache/apt/archives/*.deb \
         "$ROOT"/usr/share/doc/* "$ROOT"/usr/share/man/*
  tar --numeric-owner -C "$ROOT" -cf "$TARBALL.tmp" .
  mv "$TARBALL.tmp" "$TARBALL"
  rm -rf "$ROOT"
  trap - EXIT
fi
"$DOCKER" import --change 'CMD ["/bin/bash"]' --change 'ENV LANG=C.UTF-8' "$TARBALL" "$TAG" >/dev/null
echo "$TAG"
