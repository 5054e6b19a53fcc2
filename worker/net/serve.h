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
    clog_level level;
} srv_opts;

/* Runs a worker until it is told to stop; returns the exit code (0 clean). */
int srv_run(const srv_opts *o);

#endif
