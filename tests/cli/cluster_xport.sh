#!/usr/bin/env bash
# cluster_xport: KV pulls over the workers' transport (worker/net/xport_pull.c)
# with real processes: cluster_transfer.sh's scenario and checks (the pulled
# pages, the outputs equal to recomputing, every counter) run again with both
# workers on the ZeroMQ reference transport (--kv-xport zmq-ref), which takes
# the place NCCL takes between GPU workers:
#   1. no fault: the pages come over the transport (xport_pulled_tokens =
#      the op's pulled tokens, the source counts xport_served, no fallback);
#   2. the sender drops a page: the transfer passes its deadline, the
#      reserved pages are invalidated and released, and the pull falls back
#      to ZeroMQ for the same pages: pulled, cached and computed tokens and
#      the outputs are exactly those of the plain run (this one with
#      --inline-pulls: the engine thread owns the data socket and answers
#      itself; in 1 and 3 the pull server thread forwards the pull and sends
#      the engine thread's answer);
#   3. the joining side gets a wrong token: the join passes its deadline,
#      same fallback, same results.
# --pull-timeout-ms 6000 leaves the fallback room: the transport's deadlines
# are a third of it (2 s each).
set -u
here=$(dirname "$0")
run() {
  local expect=$1
  shift
  echo "cluster_xport: --kv-xport zmq-ref $* (expect: $expect)"
  HELIUM_XPORT_EXPECT=$expect HELIUM_WORKER_ARGS="--kv-xport zmq-ref --pull-timeout-ms 6000 $*" \
    bash "$here/cluster_transfer.sh" || { echo "cluster_xport: FAILED ($expect $*)" >&2; exit 1; }
}
run transport
run fallback-invalidated --kv-xport-fault drop --inline-pulls
run fallback --kv-xport-fault token
echo "cluster_xport: ok"
