#!/usr/bin/env bash
# cluster_transfer_curve: the KV transfer test (cluster_transfer.sh: a worker
# pulls a prefix's pages from its peer, output identical to recomputing,
# exact token counters) with CURVE on the data sockets: the puller learns the
# source's public key from the coordinator (KvPullHint.source_key) and the
# source's ZAP handler admits only the keys of workers.keys.
export HELIUM_CURVE=1
exec bash "$(dirname "$0")/cluster_transfer.sh"
