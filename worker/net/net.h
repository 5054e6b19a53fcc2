/* net: the state the files of worker/net/ share (private to this folder;
 * serve.h lists which file does what).
 *
 * One thread runs everything here except the pull server (kvserve.c), which
 * shares nothing with it but the engine's KV copy-out (kvcache.h's lock) and
 * its own counters.
 *
 * Invariants:
 *   - every task (a dispatch) is either PULLING (KV pull in flight, not yet in
 *     the engine), WAITING for another task's pull that brings its prefix, or
 *     submitted (eng_id names its engine request); each task gets exactly one
 *     OpResult, then is freed;
 *   - cache events are buffered between flushes with stored and removed kept
 *     disjoint (the later event for a hash wins), so the order of the two lists
 *     in one CacheEvents message never matters; seq counts sent messages;
 *   - nothing read from a socket is trusted: undecodable frames, wrong
 *     protocol_version, bad page geometry or hashes are logged, counted and
 *     dropped; they never stop the loop;
 *   - workflow pins (Dispatch.pin + pin_tag) are held under their tag until
 *     an Unpin{tag}: each hash at most once per tag, at most SRV_MAX_PIN_TAGS
 *     tags and kv_blocks/2 pinned blocks in all (beyond that pins are refused
 *     and counted), and all of them are released when the worker registers
 *     again (a coordinator that lost us also lost its tags), so none leak.
 */
#ifndef HELIUM_NET_H
#define HELIUM_NET_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "clock.h"
#include "engine.h"
#include "helium.pb-c.h"
#include "kvserve.h"
#include "log.h"
#include "health.h"
#include "serve.h"
#include "u64vec.h"
#include "workflow.h"
#include "xport.h"
#include "zauth.h"

#define SRV_VERSION "helium-worker 0.1"
#define SRV_PROTO HELIUM__PROTOCOL__PROTOCOL_CURRENT
#define SRV_REG_RETRY_MS 1000
#define SRV_MAX_POLL_MS 100
#define SRV_MAX_MSG_BYTES (256ll << 20)   /* largest frame accepted on any socket */
#ifndef SRV_CHUNK_BYTES
#define SRV_CHUNK_BYTES ((size_t)8 << 20) /* KV bytes per KvPages message */
#endif
#define SRV_MAX_PEERS 64
#define SRV_MAX_STOP_IDS 1024
#define SRV_MAX_STOPS 64
#define SRV_MAX_STOP_LEN 4096
#define SRV_DRAIN_MSGS 256                 /* frames read per socket per loop turn */
#define SRV_MAX_PENDING_EVENTS 8192        /* beyond this, send a snapshot instead */
#define SRV_EV_SLOTS (2 * SRV_MAX_PENDING_EVENTS) /* the pending set's slots (a power of two, at most half full) */
#define SRV_MAX_PIN_TAGS 4096              /* live pin tags at most */
#define SRV_MAX_TAG_LEN 256                /* bytes of one pin tag */

typedef struct {
    char *ep;
    void *sock;          /* DEALER connected to ep */
    int inflight;        /* pulls waiting for an answer */
    bool broken;         /* a pull timed out: close once nothing is in flight */
    char key[41];        /* the peer's data CURVE key this socket expects ("" = in the clear) */
} peer_t;

typedef struct task {
    uint64_t task_id;
    char *job_id, *op_id;
    uint32_t attempt, item, round;
    bool warm;              /* prefill only: answer with counts, no text */
    /* workflow pin, applied once the prompt's KV is computed (first token) */
    char *pin_tag;          /* NULL: no pin */
    uint32_t pin_steps;     /* steps until the pinned blocks are needed (eviction priority) */
    uint64_t *pin;          /* (n_pin) hashes to pin, prefix order */
    int32_t n_pin;
    bool pin_done;
    int32_t *prompt;        /* (n_prompt) */
    int32_t n_prompt;
    eng_request rq;
    int32_t *stop_ids;      /* (rq.n_stop) */
    char **stops;           /* (n_stops) stop strings, non-empty (the engine ends generation at one) */
    int32_t n_stops;
    bool stream;
    bool submitted;
    uint64_t eng_id;
    /* KV pull in flight (!submitted) */
    bool pulling;
    uint64_t xfer;
    int peer;               /* index into srv.peers */
    int64_t pull_deadline_ms;
    int64_t pull_mark_us;   /* when the KvPull went out, or the last pages came in */
    int64_t pull_mark_step; /* s->step_us then: the engine's time since is not the link's */
    int64_t pull_start_us;  /* when the KvPull went out */
    uint64_t *want;         /* (n_want) hashes asked for, prefix order */
    int32_t n_want, n_got;
    int32_t pulled_tokens;
    int64_t pull_link_us, pull_wire_bytes; /* its pull's link time and bytes (OpResult.pull_us/bytes) */
    bool pull_xported;      /* some of them came over the transport */
    u64vec pinned;          /* imported pages pinned until the request runs */
    /* the pull over a transport (xport_pull.c); main thread only */
    bool xp_offered;        /* our KvPull asked for s->xp (its answer is still to come) */
    uint64_t xp_peer;       /* the link's key (xpl_peer_key of the peer's endpoint) */
    int32_t *xp_pages;      /* (xp_n) reserved destination pages while the transfer runs; NULL: none */
    int32_t xp_n;
    int64_t xp_start_us;    /* when the transfer was started */
    uint64_t wait_xfer;     /* != 0: held until this pull (another task's) ends, as it brings our prefix */
    /* streaming: what OpProgress messages have carried so far */
    int32_t n_streamed_ids;
    size_t n_streamed_bytes;
    /* timing */
    uint64_t t_recv_us, t_first_us;
    struct task *next;
} task_t;

/* Blocks pinned under one workflow tag; each hash once. */
typedef struct {
    char *tag;
    u64vec h;               /* (h.n) pinned hashes */
    uint32_t steps;         /* steps until a call reads them (Dispatch.pin_steps, then PinSteps) */
} pin_tag_t;

typedef struct srv {
    srv_opts o;
    char id[WF_MAX_ID_LEN + 1];
    model_t *m;
    eng_t *e;
    int32_t bs;
    size_t page_bytes;
    void *zctx, *coord, *data, *mon;
    char data_ep[512];      /* advertised data endpoint ("" = none) */
    zauth_keys keys;        /* own CURVE key pair and the coordinator's key (empty: --insecure) */
    zauth_t *zauth;         /* the data socket's ZAP handler, NULL if the data plane is in the clear */
    peer_t *peers;          /* (SRV_MAX_PEERS) */
    int n_peers;
    task_t *tasks;
    int n_tasks;
    bool registered, coord_up;
    uint32_t hb_ms;
    int64_t next_reg_ms, next_hb_ms;
    /* pending cache events (cachesync.c): an open-addressing set of hashes, each
     * with its latest event, so that stored and removed stay disjoint in O(1) */
    uint64_t ev_key[SRV_EV_SLOTS];
    uint8_t ev_state[SRV_EV_SLOTS]; /* 0 empty, KVC_EV_STORED, KVC_EV_REMOVED */
    int32_t ev_n;           /* occupied slots (at most SRV_MAX_PENDING_EVENTS) */
    bool ev_overflow;       /* pending events were dropped: send a snapshot */
    uint64_t cache_seq;
    uint64_t next_xfer;
    int64_t n_pinned;       /* pages pinned by pulls */
    pin_tag_t *tags;        /* (n_tags) live workflow pin tags */
    int n_tags, cap_tags;
    int64_t n_tag_pinned;   /* sum of tags[i].h.n: pins held for tags */
    /* counters (beyond the engine's) */
    int64_t pulled_tokens, bad_frames, send_errors, dispatches, results, pulls_served, pull_waits, pinned_evictions;
    int64_t pin_updates;
    int64_t warm_tasks, pin_refused, pull_us, pull_bytes;
    int64_t step_us;        /* time inside eng_step, all steps */
    int64_t exported;       /* pages this thread exported (the pull server counts its own) */
    kvs_geom geom;          /* what our KvPages say about the pages */
    /* the KV transport under pulls (xport_pull.c), NULL: ZeroMQ KvPages only */
    xport_t *xp;
    char xp_name[16];       /* Register.kv_xport ("" = none) */
    char xp_domain[64];     /* Register.xport_domain */
    struct xpl_serve *xp_serves; /* (xp_n_serves) our held pages in flight to peers */
    int xp_n_serves, xp_cap_serves;
    int64_t xp_pulled_tokens, xp_pull_us, xp_fallbacks, xp_declined, xp_served, xp_serve_failed;
    kvs_t *kvs;             /* the pull server thread (owns the data socket), or NULL: inline */
    bool draining, stop, ever_registered;
    int exit_code;
    health_t *health;       /* the probe port, or NULL */
    bool sig_drain;         /* draining because of a signal (drain_deadline_ms applies) */
    bool leaving;           /* the last heartbeat says so: the coordinator hands our calls back */
    int64_t drain_deadline_ms;
} srv_t;

/* coordlink.c: sending, and the coordinator's messages */
int srv_send_bytes(srv_t *s, void *sock, const char *what, const void *ident, size_t ident_len, bool delim,
                   void *buf, size_t len);
int srv_send_wmsg(srv_t *s, Helium__WorkerMsg *w, const char *what);
int srv_send_peer(srv_t *s, void *sock, const void *ident, size_t ident_len, bool delim, Helium__PeerMsg *p,
                  const char *what);
void srv_bad_frame(srv_t *s, const char *from, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
void srv_send_register(srv_t *s);
void srv_send_heartbeat(srv_t *s);
void srv_on_coord_frame(srv_t *s, const void *data, size_t len);

/* cachesync.c */
void csync_on_event(void *ud, kvc_event ev, uint64_t hash, int32_t block);
void csync_snapshot(srv_t *s);
void csync_flush(srv_t *s);

/* tasks.c */
task_t *task_find(srv_t *s, uint64_t task_id);
void task_free(srv_t *s, task_t *t);
void task_fail(srv_t *s, task_t *t, Helium__ErrorCode code, const char *msg);
void task_submit(srv_t *s, task_t *t);
void task_unpin(srv_t *s, task_t *t);
void task_after_step(srv_t *s);
void task_drain_results(srv_t *s);
void task_on_dispatch(srv_t *s, const Helium__Dispatch *d);
void task_on_cancel(srv_t *s, const Helium__Cancel *c);

/* pins.c */
void pins_apply(srv_t *s, task_t *t);
void pins_forget(srv_t *s, uint64_t hash);
void pins_on_unpin(srv_t *s, const Helium__Unpin *u);
void pins_on_steps(srv_t *s, const Helium__PinSteps *p);
void pins_drop_all(srv_t *s);

/* pull.c */
void pull_peer_close(peer_t *p);
void pull_peer_release(srv_t *s, int i);
bool pull_start(srv_t *s, task_t *t, const Helium__KvPullHint *h);
uint64_t pull_bringing(srv_t *s, const task_t *t);
void pull_release_waiters(srv_t *s);
void pull_finish(srv_t *s, task_t *t, const char *why);
int64_t pull_timers(srv_t *s, int64_t now, int64_t next);
void pull_import_pushed(srv_t *s, const Helium__KvPages *kp, const char *from);
void pull_on_kv_export(srv_t *s, const Helium__KvExportRequest *rq);
void pull_on_data_frame(srv_t *s, const void *ident, size_t ident_len, bool delim, const void *data, size_t len);
void pull_on_peer_reply(srv_t *s, int pi, const void *data, size_t len);
int pull_resend(srv_t *s, task_t *t);
void pull_pin_imported(srv_t *s, task_t *t, uint64_t hash);
void pull_link_time(srv_t *s, task_t *t, int32_t pages, size_t page_bytes, int64_t *link_us);

/* xport_pull.c: pulls over the KV transport (xport.h), both ends */
int xpl_setup(srv_t *s);
void xpl_teardown(srv_t *s);
uint64_t xpl_peer_key(const char *name);
void xpl_offer(srv_t *s, task_t *t, const Helium__KvPullHint *h, Helium__KvPull *pull, uint8_t *token);
bool xpl_on_pages(srv_t *s, task_t *t, const Helium__KvPages *kp, const char *from);
void xpl_task_gone(srv_t *s, task_t *t);
void xpl_serve_pull(srv_t *s, const void *ident, size_t ident_len, bool delim, const Helium__KvPull *pl);
int64_t xpl_timers(srv_t *s, int64_t now, int64_t next);

#endif
