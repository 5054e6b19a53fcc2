#!/usr/bin/env bash
# The main job, on a real model: a local Helium cluster (one coordinator
# under the `helium` policy, two workers on loopback) runs SmolLM2-135M-
# Instruct (fetched once by scripts/fetch-model.sh into ~/.cache/helium) on
#   1. the store-monitoring workflow written as chat messages
#      (examples/store_monitoring_chat.json): one call per store, all sharing
#      the system message, then a regional summary;
#   2. the customer-service workflow (examples/customer_service_chat.json) for
#      two customers: intent, an order lookup through a local HTTP order
#      service, a draft reply and a polish pass.
# Every chat is rendered by the model's own chat template. It ends by printing
# what the optimizer saved: prompt tokens the workers computed, against the
# minimum any system must compute and against `isolated` (no cache: every
# prompt token computed).
#
# Without network (or with HELIUM_DEMO_MODEL=generated) it says so and runs on
# a generated model (seeded random weights: the answers are not English).
# HELIUM_DEMO_MODEL=FILE.gguf runs any model with a chat template.
set -euo pipefail
BUILD=${1:-build}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
export HELIUM_BIN=${HELIUM_BIN:-$ROOT/$BUILD/bin}
CTL_BIN="$HELIUM_BIN/heliumctl"
# a worker busy with a long prefill on a loaded machine must not be taken for dead
COORD_ARGS=${HELIUM_COORD_ARGS:---worker-timeout-ms 60000}

MODEL=${HELIUM_DEMO_MODEL:-}
if [ -z "$MODEL" ]; then
  echo "== fetching SmolLM2-135M-Instruct (Q4_1, as its authors ship it) with scripts/fetch-model.sh"
  if MODEL=$(bash "$ROOT/scripts/fetch-model.sh" smollm2-135m-instruct); then
    echo "   $MODEL"
  else
    echo "== could not fetch the model (no network?): falling back to a generated model."
    echo "   Its weights are seeded random numbers, so the answers below are not English."
    MODEL=generated
  fi
fi
if [ "$MODEL" = generated ]; then
  MODELS=${HELIUM_MODELS:-$ROOT/models}
  mkdir -p "$MODELS"
  MODEL="$MODELS/small-llama-f32.gguf"
  [ -f "$MODEL" ] || "$HELIUM_BIN/helium-mkmodel" --preset small --arch llama --dtype f32 --seed 1 -o "$MODEL"
  COORD_ARGS="$COORD_ARGS --chat-template chatml" # its vocabulary has <|im_start|> and <|im_end|>
fi

RUN=$(mktemp -d /tmp/helium-demo.XXXXXX)
ORDERS_PID=
cleanup() {
  [ -n "$ORDERS_PID" ] && kill "$ORDERS_PID" 2>/dev/null || true
  bash "$ROOT/scripts/cluster.sh" down "$RUN" >/dev/null 2>&1 || true
  rm -rf "$RUN"
}
trap cleanup EXIT
export HELIUM_MODEL="$MODEL" HELIUM_PORT=${HELIUM_PORT:-7700} HELIUM_THREADS=${HELIUM_THREADS:-1}
export HELIUM_COORD_ARGS="$COORD_ARGS"
echo "== starting a local cluster: coordinator (policy helium) on tcp://127.0.0.1:$HELIUM_PORT, two workers"
bash "$ROOT/scripts/cluster.sh" up "$RUN" 2
# shellcheck disable=SC1091
source "$RUN/cluster.env"
CTL=("$CTL_BIN" --coordinator "$HELIUM_COORDINATOR" --timeout-ms 600000)

STORES='Store 101 Lyon: sales -4% vs last year, out-of-stock 2.1%, no alarms, 1 complaint.
Store 102 Paris Bastille: sales -18% vs last year, out-of-stock 3.0%, no alarms, 2 complaints.
Store 103 Berlin Mitte: sales +6%, out-of-stock 9.2%, no alarms, 0 complaints.
Store 104 Madrid Sol: sales -2%, out-of-stock 1.5%, refrigeration alarm 35 minutes, 1 complaint.
Store 105 Milan Duomo: sales -31% vs last year, out-of-stock 4.4%, no alarms, 6 complaints.
Store 106 Vienna: sales +1%, out-of-stock 0.9%, no alarms, 0 complaints, staff absence 25%.'

echo
echo "== heliumctl submit examples/store_monitoring_chat.json --wait   (6 stores, one shared system message)"
"${CTL[@]}" submit "$ROOT/examples/store_monitoring_chat.json" --input "stores=$STORES" --wait --quiet

# a tiny order service for the customer-service workflow's tool call
python3 - "$RUN/orders.port" <<'PY' &
import http.server, json, sys
ORDERS = {
    "A1001": {"order_id": "A1001", "status": "shipped", "carrier": "DHL", "shipped_on": "2026-11-28",
              "items": ["trail jacket (M)"], "estimated_delivery": "2026-12-03"},
    "A1002": {"order_id": "A1002", "status": "delivered", "delivered_on": "2026-11-20",
              "items": ["2-person tent", "sleeping bag"], "member": True},
}
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        o = ORDERS.get(self.path.rsplit("/", 1)[-1])
        body = json.dumps(o if o else {"error": "no such order"}).encode()
        self.send_response(200 if o else 404)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *a): pass
s = http.server.HTTPServer(("127.0.0.1", 8089), H)
open(sys.argv[1], "w").write("8089")
s.serve_forever()
PY
ORDERS_PID=$!
for _ in $(seq 50); do [ -f "$RUN/orders.port" ] && break; sleep 0.1; done

echo
echo "== heliumctl submit examples/customer_service_chat.json --wait   (customer 1: where is my order?)"
"${CTL[@]}" submit "$ROOT/examples/customer_service_chat.json" --wait --quiet --input order_id=A1001 \
  --input "message=Hi, I ordered a trail jacket last week and it still has not arrived. Where is my order A1001?"
echo
echo "== heliumctl submit examples/customer_service_chat.json --wait   (customer 2: a return)"
"${CTL[@]}" submit "$ROOT/examples/customer_service_chat.json" --wait --quiet --input order_id=A1002 \
  --input "message=The tent from order A1002 is too small for us. Can I send it back, and do I pay for the return?"

echo
echo "== heliumctl status"
"${CTL[@]}" status
echo
echo "== what the optimizer saved (prompt tokens of every LLM call in this demo)"
"${CTL[@]}" --json status | python3 -c '
import json, sys
c = json.load(sys.stdin).get("counters", {})
p, comp, mn = c.get("prompt_tokens"), c.get("computed_tokens"), c.get("min_prompt_tokens")
if not p or comp is None:
    sys.exit("no counters in heliumctl status")
print(f"  prompt tokens of all calls:          {p:7d}   (what `isolated`, with no cache, computes)")
print(f"  computed by the workers (helium):    {comp:7d}   = {comp / p:.0%} of isolated, {p - comp} tokens saved")
if mn:
    print(f"  minimum any system must compute:     {mn:7d}   helium computed {comp / mn:.2f}x the minimum")
'
echo
echo "== shutting the cluster down"
