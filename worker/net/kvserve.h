/* kvserve: a worker's KV pages for its peers, served from a thread of its own.
 *
 * A worker's main thread runs engine steps, and a step under prefill takes
 * tens to hundreds of milliseconds; a peer's pull that arrived mid-step used
 * to wait for the step to end, while the peer's call waited for the pages.
 * The server thread owns the data ROUTER socket (PeerMsg): it answers KvPull
 * requests at once, copying each committed page out of the KV cache under the
 * cache's lock (kvcache.h: a committed page is never written again, and the
 * lock keeps it from being evicted and reused during the copy), and forwards
 * every other message to the main thread unread, over an inproc PAIR.
 *
 * Forwarded messages are three frames: [peer identity][one byte: 1 if the
 * peer sent an empty delimiter frame, else 0][payload]. The same three
 * frames from the main thread (kvs_reply) are a reply the thread sends to
 * that peer; any other message from the main thread stops the thread. A
 * KvPull that asks for a transport (KvPull.xport) is forwarded too: the
 * engine thread holds its pages while they are in flight (worker/net/
 * xport_pull.c) and answers through kvs_reply.
 *
 * kvs_export is the export itself, also used by the main thread for the
 * coordinator's KvExportRequest.
 */
#ifndef HELIUM_KVSERVE_H
#define HELIUM_KVSERVE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "engine.h"
#include "helium.pb-c.h"

/* What a KvPages message says about the pages (the model's KV geometry). */
typedef struct {
    uint64_t model_root;
    uint32_t n_layers, kv_dim, block_size;
    size_t page_bytes;
    uint32_t protocol_version;
} kvs_geom;

/* Receives one KvPages message (chunk) of an export; non-zero stops it. */
typedef int (*kvs_emit_fn)(void *ud, Helium__KvPages *kp);

/* Exports the leading cached run of hashes[0..n) as KvPages messages of at
 * most chunk_bytes each (the last one has last = true; an empty run sends one
 * empty last message), handing each to emit. Thread-safe against the engine's
 * own thread (eng_kv_copy_out). Returns pages exported, or a negative herr
 * code. */
int kvs_export(eng_t *e, const kvs_geom *g, uint64_t xfer, const uint64_t *hashes, int32_t n, size_t chunk_bytes,
               kvs_emit_fn emit, void *ud);

/* Sends one PeerMsg to the peer that asked (the caller's socket and routing);
 * non-zero stops the answer. */
typedef int (*kvs_send_fn)(void *ud, Helium__PeerMsg *m, const char *what);

/* Answers one KvPull: a LIMIT error when it names more than max_blocks
 * blocks, else the leading cached run of its blocks as KvPages (kvs_export).
 * Returns pages exported (0 after an error reply), or a negative herr code. */
int kvs_answer_pull(eng_t *e, const kvs_geom *g, const Helium__KvPull *pl, int32_t max_blocks, size_t chunk_bytes,
                    kvs_send_fn send, void *ud);

typedef void (*kvs_log_fn)(int level, const char *msg); /* 0 error, 1 warn, 2 info, 3 debug */

typedef struct {
    void *zctx;
    void *data;          /* the bound data ROUTER: the server thread owns it from kvs_start on */
    eng_t *e;
    kvs_geom geom;
    int32_t max_blocks;  /* most blocks one pull may ask for */
    size_t chunk_bytes;  /* KV bytes per KvPages message */
    kvs_log_fn log;
} kvs_config;

typedef struct kvs kvs_t;

/* Starts the server thread. NULL on failure (he_msg says why); the data
 * socket then still belongs to the caller. */
kvs_t *kvs_start(const kvs_config *cfg);
/* The main thread's end of the PAIR: poll it and read forwarded messages. */
void *kvs_forward_socket(kvs_t *k);
/* The main thread's answer to a forwarded message: the thread sends buf to
 * the peer ident (with an empty delimiter frame first if delim). Main thread
 * only. 0, or HE_EUNAVAIL when the pipe is full. */
int kvs_reply(kvs_t *k, const void *ident, size_t ident_len, bool delim, const void *buf, size_t len);
/* Stops and joins the thread, which closes the data socket. */
void kvs_stop(kvs_t **self_p);

/* Counters of the server thread (read from any thread). */
int64_t kvs_pulls_served(const kvs_t *k);
int64_t kvs_exported_blocks(const kvs_t *k);
int64_t kvs_bad_frames(const kvs_t *k);
int64_t kvs_send_errors(const kvs_t *k);

#endif
