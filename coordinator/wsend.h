/* wsend: the coordinator's one way to reach its workers.
 *
 * Placement (place.c), the optimizer's warm-ups and pins (opt.h's opt_io,
 * filled by place.c) and the worker protocol (worker_proto.c) send nothing
 * themselves: every message to a worker goes through a wsend_i, a struct of
 * function pointers plus a context (the way ggml's backends fill
 * ggml_backend_i). The coordinator's implementation (coord.c) packs a
 * helium.CoordMsg and queues it on the worker ROUTER socket; a simulator can
 * fill one with simulated workers and drive the same modules without
 * sockets (coord_impl.h, coord_core_new).
 *
 * Messages are borrowed for the call only. Sends never block: a message that
 * cannot be queued is reported (dispatch) or dropped (the rest: the protocol
 * recovers from a lost Cancel, PinSteps, Unpin or CacheResync on its own).
 */
#ifndef HELIUM_COORD_WSEND_H
#define HELIUM_COORD_WSEND_H

#include <stddef.h>
#include <stdint.h>

#include "helium.pb-c.h"
#include "workers.h"

#define WSEND_FULL (-1) /* not queued: the worker's queue is full, or out of memory */
#define WSEND_GONE (-2) /* not queued: the worker is not connected */

typedef struct {
    void *ctx;
    /* A Dispatch: an LLM call, or a warm prefill when d->warm (the
     * optimizer's). Returns 0 if queued, WSEND_GONE or WSEND_FULL. */
    int (*dispatch)(void *ctx, wkr_t *w, const Helium__Dispatch *d);
    /* Cancel{task_id, job_id}: the task's job ended or it was taken back. */
    void (*cancel)(void *ctx, wkr_t *w, uint64_t task_id, const char *job_id);
    /* PinSteps{tag, steps}: a pin group's eviction priority. */
    void (*pin_steps)(void *ctx, wkr_t *w, const char *tag, uint32_t steps);
    /* Unpin{tag}: the pin group is no longer needed. */
    void (*unpin)(void *ctx, wkr_t *w, const char *tag);
    /* CacheResync{last_seq}: ask for a snapshot of the worker's cache.
     * Returns 0 if queued. */
    int (*resync)(void *ctx, wkr_t *w, uint64_t last_seq);
    /* RegisterAck to the peer ident (a registered worker's, or a rejected
     * one's that has no wkr_t). */
    void (*register_ack)(void *ctx, const uint8_t *ident, size_t ident_len, const Helium__RegisterAck *ack);
} wsend_i;

#endif
