#!/usr/bin/env bash
# The main job: a local Helium cluster (one coordinator, two workers on
# loopback, the generated small model) runs the store-monitoring workflow of
# examples/: one LLM call per store, all sharing a long system prompt and the
# company guidelines, then a regional summary. It shows progress and results,
# the cluster's status (load, KV blocks, prefix hit rate), and shuts down.
set -euo pipefail
BUILD=${1:-build}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
export HELIUM_BIN=${HELIUM_BIN:-$ROOT/$BUILD/bin}
MODELS=${HELIUM_MODELS:-$ROOT/models}
mkdir -p "$MODELS"
MODEL="$MODELS/small-llama-f32.gguf"
if [ ! -f "$MODEL" ]; then
  echo "== writing the demo model with helium-mkmodel (no weights can be downloaded: seeded random weights, real BPE vocabulary)"
  "$HELIUM_BIN/helium-mkmodel" --preset small --arch llama --dtype f32 --seed 1 -o "$MODEL"
fi

RUN=$(mktemp -d /tmp/helium-demo.XXXXXX)
cleanup() { bash "$ROOT/scripts/cluster.sh" down "$RUN" >/dev/null 2>&1 || true; rm -rf "$RUN"; }
trap cleanup EXIT
export HELIUM_MODEL="$MODEL" HELIUM_PORT=${HELIUM_PORT:-7700} HELIUM_THREADS=${HELIUM_THREADS:-1}
echo "== starting a local cluster: coordinator on tcp://127.0.0.1:$HELIUM_PORT, two workers"
bash "$ROOT/scripts/cluster.sh" up "$RUN" 2
# shellcheck disable=SC1091
source "$RUN/cluster.env"
CTL=("$HELIUM_BIN/heliumctl" --coordinator "$HELIUM_COORDINATOR")

STORES='Store 101 Lyon: sales -4% vs last year, out-of-stock 2.1%, no alarms, 1 complaint.
Store 102 Paris Bastille: sales -18% vs last year, out-of-stock 3.0%, no alarms, 2 complaints.
Store 103 Berlin Mitte: sales +6%, out-of-stock 9.2%, no alarms, 0 complaints.
Store 104 Madrid Sol: sales -2%, out-of-stock 1.5%, refrigeration alarm 35 minutes, 1 complaint.
Store 105 Milan Duomo: sales -31% vs last year, out-of-stock 4.4%, no alarms, 6 complaints.
Store 106 Vienna: sales +1%, out-of-stock 0.9%, no alarms, 0 complaints, staff absence 25%.
Store 107 Zurich: sales -9%, out-of-stock 2.2%, no alarms, 1 food-safety complaint.
Store 108 Oslo: sales +3%, out-of-stock 1.1%, no alarms, 0 complaints, shrink 3.1%.'

echo
echo "== heliumctl submit examples/store_monitoring.json --wait   (8 stores, one shared prefix)"
"${CTL[@]}" submit "$ROOT/examples/store_monitoring.json" --input "stores=$STORES" --wait
echo
echo "== heliumctl status"
"${CTL[@]}" status
echo
echo "== shutting the cluster down"
