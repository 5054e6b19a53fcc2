#!/usr/bin/env bash
# cluster_e2e_curve: the end-to-end workflow test (cluster_e2e.sh: outputs
# equal to helium-worker generate, heliumctl's commands, the push wait) on a
# cluster with CURVE on every socket: client RPC, worker channel and the
# workers' KV data sockets (docs/security.md).
export HELIUM_CURVE=1
exec bash "$(dirname "$0")/cluster_e2e.sh"
