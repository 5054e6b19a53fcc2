/* workers: the coordinator's table of registered workers.
 *
 * A worker is known by its ZeroMQ routing id (the DEALER identity it connects
 * with) and holds one directory slot in [0, DIR_MAX_WORKERS) for its life in
 * the table; a dead worker keeps its entry (shown as not alive) until it
 * comes back or its slot is needed for a new one. For each worker the table
 * keeps what it registered (model root, KV geometry), its last reported load
 * and counters, rates measured from counter deltas, its cache-event sequence
 * state, and the tasks dispatched to it and not yet finished (in-flight), from
 * which its outstanding load in tokens is summed.
 *
 * Single-threaded: the coordinator's loop owns it.
 */
#ifndef HELIUM_COORD_WORKERS_H
#define HELIUM_COORD_WORKERS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "dir.h"
#include "helium.pb-c.h"
#include "hcount.h"
#include "jobs.h"

#define WKR_ID_LEN 64
#define WKR_IDENT_MAX 255     /* ZeroMQ routing ids are 1..255 bytes */
#define WKR_MAX_COUNTERS 48

typedef struct {
    char key[48];
    uint64_t value;
} wkr_counter;

typedef struct wkr {
    int slot;                 /* directory slot, index in the table */
    char id[WKR_ID_LEN];      /* display id (Register.worker_id, else the routing id) */
    uint8_t ident[WKR_IDENT_MAX];
    size_t ident_len;         /* routing id: ident[0..ident_len) */
    bool alive;
    bool draining;            /* its heartbeat says "draining" (SIGTERM): nothing more is placed on it */
    int64_t last_seen_ms;     /* monotonic time of the last message */
    uint64_t last_hb_us;      /* wall time of the last heartbeat */
    uint64_t registered_us;

    /* registration */
    char model[128], backend[32], endpoint[256], kv_dtype[16], version[64];
    char data_key[41];          /* the data endpoint's CURVE public key (Z85), "" = in the clear */
    char kv_xport[16];          /* KV transport besides ZeroMQ (Register.kv_xport), "" = none */
    char xport_domain[64];      /* who may join its transport links (Register.xport_domain) */
    uint64_t model_root;
    uint32_t block_size, kv_blocks_total, n_ctx, max_batch, n_layers, kv_dim;
    size_t page_bytes;        /* one KV page on the wire: n_layers * 2 * block_size * kv_dim * dtype bytes */

    /* last heartbeat */
    uint32_t running, queued, kv_used, kv_cached, kv_free;
    int32_t reserved_pages;   /* pages reserved by dispatches since that heartbeat (net of releases) */
    wkr_counter counters[WKR_MAX_COUNTERS];
    size_t n_counters;

    /* rates measured from counter deltas (<= 0: unknown) */
    double prefill_tok_s;     /* tokens per second of forward time */
    double link_bytes_s;      /* KV pull bandwidth into this worker over ZeroMQ (KvPages) */
    double xport_link_bytes_s; /* ... over its KV transport (kv_xport; heartbeat xport_* counters) */
    uint64_t prev_tokens, prev_forward_us, prev_pulled, prev_pull_us, prev_xpulled, prev_xpull_us;
    bool have_prev;

    /* cache events */
    uint64_t cache_seq;       /* last seq applied */
    uint64_t cache_gen;       /* moves with every batch of cache events or snapshot applied (never repeats) */
    bool seq_known;           /* false until the first event after (re)registration */
    bool resync_pending;      /* CacheResync sent, waiting for the snapshot */

    /* in-flight tasks */
    job_task **inflight;      /* (n_inflight) */
    size_t n_inflight, cap_inflight;
    int64_t load_tokens;      /* sum of the in-flight tasks' load_tokens */
    uint64_t inflight_gen;    /* changes with every in-flight add or remove (never repeats) */
    uint64_t inflight_removed; /* in-flight removals so far (only these shrink its working set) */
    hcount_t *ws_blocks;      /* prompt blocks of its in-flight LLM calls, counted (opt.c ws_need); NULL
                                 or ws_bad: not kept (out of memory), ws_need rebuilds from the list */
    bool ws_bad;
    int64_t ws_priv;          /* their pages beyond their prompt blocks */
    hcount_t *ws_pins[2];     /* blocks of the pins on it that count toward its working set, counted;
                                 kept by opt.c ([0]: pins a ready call needs or being warmed, [1]:
                                 every live pin; NULL: none yet) */
    int64_t ws_both[2];       /* distinct blocks in both ws_blocks and ws_pins[k] (its working set
                                 is |ws_blocks| + |ws_pins[k]| - ws_both[k] blocks) */
    bool ws_pins_bad;         /* opt.c gave the pins' sets up (out of memory): it rebuilds instead */
    uint64_t uid;             /* unique over the coordinator's life (a reused slot gets a new one) */
    size_t n_llm_inflight;    /* in-flight LLM calls */
} wkr_t;

typedef struct wkrs wkrs_t;

wkrs_t *wkrs_new(void);
void wkrs_destroy(wkrs_t **self_p);

/* Lookups; NULL if none. */
wkr_t *wkrs_by_ident(wkrs_t *t, const void *ident, size_t len);
wkr_t *wkrs_by_slot(wkrs_t *t, int slot);
/* Number of slots in use (alive or dead); iterate slots [0, wkrs_cap). */
int wkrs_cap(const wkrs_t *t);
int wkrs_alive(const wkrs_t *t);

/* Adds a worker for routing id ident (1..255 bytes), reusing the slot of a
 * dead worker when the table is full (that worker's in-flight list must be
 * empty). HE_ELIMIT when every slot holds a live worker. */
int wkrs_add(wkrs_t *t, const void *ident, size_t len, wkr_t **out);

/* Fills the registration fields from reg; clears load, rates and sequence
 * state. The display id is reg->worker_id, else the routing id if printable,
 * else "w<slot>". */
void wkr_register(wkr_t *w, const Helium__Register *reg, uint64_t now_us);

/* Applies a heartbeat: load, counters, measured rates. */
void wkr_heartbeat(wkr_t *w, const Helium__Heartbeat *hb, uint64_t now_us);

/* The transport pulls between a source and a destination worker may use:
 * both registered the same kv_xport in the same xport_domain. NULL: ZeroMQ. */
const char *wkr_xport_shared(const wkr_t *src, const wkr_t *dst);

/* A counter from the last heartbeat (0 if absent). */
uint64_t wkr_counter_get(const wkr_t *w, const char *key);

/* Free plus reclaimable KV pages, minus reservations since the heartbeat. */
int32_t wkr_kv_avail(const wkr_t *w);

/* In-flight bookkeeping: add records t (and its load_tokens, pages); remove
 * forgets it and releases them. remove is a no-op for unknown tasks. */
int wkr_inflight_add(wkr_t *w, job_task *t);
void wkr_inflight_remove(wkr_t *w, job_task *t);

#endif
