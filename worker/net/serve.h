/* serve: `helium-worker serve`, one worker process of a Helium cluster (the
 * worker's network side; the engine it drives is worker/engine.h).
 *
 * worker/main.c parses the command line into srv_opts and calls srv_run,
 * which loads the model, connects to the coordinator, serves until a signal,
 * a Shutdown or a fatal error, and returns the process's exit code.
 *
 * The files of this folder, one job each (they share net.h, private):
 *   serve.c      the poll loop, timers, socket setup and reading
 *   coordlink.c  messages to and from the coordinator: Register, Heartbeat,
 *                the CoordMsg switch
 *   cachesync.c  cache events and snapshots that mirror our KV cache into
 *                the coordinator's directory
 *   tasks.c      a dispatched call's life: Dispatch -> engine request ->
 *                OpProgress / OpResult, Cancel
 *   pins.c       workflow pins (Dispatch.pin, Unpin, PinSteps)
 *   pull.c       the KV-pull client, pushed pages and exports
 *   kvserve.c    the pull server thread (peers' pulls of our pages)
 *   health.c     the HTTP probe port (/healthz, /readyz)
 *
 * SIGTERM or SIGINT drains: the worker tells the coordinator (heartbeat
 * counter "draining"), takes nothing more, finishes what it holds (at most
 * drain_timeout_ms), says "leaving" (the coordinator re-dispatches anything
 * still assigned to it) and exits 0. A second signal exits at once.
 */
#ifndef HELIUM_SERVE_H
#define HELIUM_SERVE_H

#include <stdbool.h>

#include "engine.h"
#include "log.h"

typedef struct {
    const char *coord_ep, *model_path, *id, *data_ep, *advertise;
    eng_config ec;
    int heartbeat_ms;     /* until a RegisterAck says otherwise */
    int pull_timeout_ms;
    bool inline_pulls;    /* serve peers' pulls between engine steps, not from the pull server thread */
    const char *kv_xport; /* KV transport under pulls (xport_pull.c): auto (nccl on --backend cuda), nccl,
                             zmq-ref, off; NULL = auto */
    const char *xport_domain;   /* Register.xport_domain (NULL: the host name) */
    const char *kv_xport_fault; /* tests: a fault the zmq-ref transport injects (drop, token, send) */
    /* CURVE (common/zauth.h, docs/security.md); insecure = no keys at all */
    const char *key_file;        /* own secret key: the coordinator link, pulls and the data socket */
    const char *server_key_file; /* the coordinator's public key */
    const char *authorized_keys; /* worker keys the data socket lets pull (re-read on SIGHUP) */
    bool insecure;
    bool clear_data;             /* keys on the coordinator link, the data socket in the clear */
    clog_level level;
    const char *health_host; /* probe port's address (NULL = 127.0.0.1) */
    int health_port;      /* HTTP /healthz and /readyz (health.h); 0 = none */
    int drain_timeout_ms; /* after SIGTERM: finish calls for at most this long, then leave */
} srv_opts;

/* Runs a worker until it is told to stop; returns the exit code (0 clean). */
int srv_run(const srv_opts *o);

#endif
