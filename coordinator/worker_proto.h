/* worker_proto: the coordinator's side of the worker protocol.
 *
 * A WorkerMsg frame from the worker ROUTER is checked (nesting, unpack,
 * protocol_version) before anything reads it; a bad one is dropped, logged
 * and counted, never fatal. Register admits a worker whose KV geometry and
 * model match the cluster's (the first one sets them) and answers with a
 * RegisterAck; CacheEvents keep the prefix directory in step with each
 * worker's cache (a gap in their seq numbers, or a heartbeat ahead of them,
 * asks for a snapshot: CacheResync); OpResult completes, retries (internal
 * or unavailable, up to COORD_RETRIES attempts) or fails its task, and feeds
 * the result cache and dedup followers; OpProgress appends streamed text.
 * A worker silent for worker_timeout_ms, or found disconnected when sent to,
 * is lost: its directory entries go and its tasks are re-queued. Replies to
 * workers go through c->send (wsend.h).
 */
#ifndef HELIUM_COORD_WORKER_PROTO_H
#define HELIUM_COORD_WORKER_PROTO_H

#include "coord_impl.h"

/* One frame from the worker with ROUTER identity ident. */
void wp_on_frame(coord_t *c, const uint8_t *ident, size_t ident_len, const uint8_t *data, size_t len);
/* The decoded message handlers (wp_on_frame calls them after its checks). */
void wp_on_register(coord_t *c, const uint8_t *ident, size_t ident_len, const Helium__Register *reg);
void wp_on_cache_events(coord_t *c, wkr_t *w, const Helium__CacheEvents *ce);
void wp_on_result(coord_t *c, wkr_t *w, const Helium__OpResult *r);
void wp_on_progress(coord_t *c, wkr_t *w, const Helium__OpProgress *p);
/* Marks w dead: drops its directory entries and re-queues its tasks. */
void wp_worker_lost(coord_t *c, wkr_t *w, const char *why);
/* Loses every alive worker silent for more than worker_timeout_ms. */
void wp_check_liveness(coord_t *c);

#endif
