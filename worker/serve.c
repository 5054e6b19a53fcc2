/* serve: `helium-worker serve`, one worker process of a Helium cluster.
 *
 * One thread runs one zmq_poll loop over: the coordinator DEALER (routing id =
 * worker id; WorkerMsg out, CoordMsg in), the data ROUTER (peers pull KV pages
 * from us: PeerMsg), one DEALER per peer we pull from, and a monitor pipe that
 * reports the coordinator connection coming and going. Between polls the loop
 * runs one engine step, so a dispatch that arrives mid-generation joins the
 * running batch at the next step (continuous batching across ops). The poll
 * waits 0 ms while the engine has work, else until the next timer (heartbeat,
 * registration retry, pull deadline), at most 100 ms.
 *
 * Invariants:
 *   - every task (a dispatch) is either PULLING (KV pull in flight, not yet in
 *     the engine) or submitted (eng_id names its engine request); each task
 *     gets exactly one OpResult, then is freed;
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
 * Policies carried by a dispatch: no_cache (neither reuse nor commit prefix
 * pages: the isolated baseline), warm (prefill only: one sampled token that
 * is not reported; the prompt's pages stay cached), pin/pin_tag (above).
 * The wire format is proto/helium.proto; the runtime contract is the cluster
 * contract (Register, Heartbeat, CacheEvents, Dispatch/OpResult, KV pulls).
 */
#define _GNU_SOURCE /* memmem */
#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <zmq.h>

#include "args.h"
#include "blockhash.h"
#include "engine.h"
#include "helium.pb-c.h"
#include "herr.h"
#include "kvserve.h"
#include "model.h"
#include "workflow.h"

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
#define SRV_MAX_PENDING_EVENTS 8192        /* beyond this, send a snapshot instead (bounds the O(n) dedup) */
#define SRV_MAX_PIN_TAGS 4096              /* live pin tags at most */
#define SRV_MAX_TAG_LEN 256                /* bytes of one pin tag */

/* ---------------------------------------------------------------- logging */

typedef enum { LOG_ERROR = 0, LOG_WARN = 1, LOG_INFO = 2, LOG_DEBUG = 3 } log_level;

static log_level g_log_level = LOG_INFO;
static char g_log_id[WF_MAX_ID_LEN + 1] = "?";
static volatile sig_atomic_t g_stop_signal;

static void slog(log_level lv, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void slog(log_level lv, const char *fmt, ...) {
    static const char *names[] = {"error", "warn", "info", "debug"};
    if (lv > g_log_level) return;
    char line[2048];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    fprintf(stderr, "[worker %s] %s: %s\n", g_log_id, names[lv], line);
}

static void kvs_log(int level, const char *msg) { slog((log_level)level, "%s", msg); }

static void on_signal(int sig) {
    (void)sig;
    g_stop_signal = 1;
}

static int64_t mono_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static uint64_t epoch_us(void) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

/* ---------------------------------------------------------------- small containers */

typedef struct {
    uint64_t *v;
    size_t n, cap;
} u64vec;

static bool u64_push(u64vec *a, uint64_t x) {
    if (a->n == a->cap) {
        size_t nc = a->cap ? a->cap * 2 : 64;
        uint64_t *nv = realloc(a->v, nc * sizeof *nv);
        if (!nv) return false;
        a->v = nv;
        a->cap = nc;
    }
    a->v[a->n++] = x;
    return true;
}

/* Removes x if present (order not kept). O(n). */
static bool u64_remove(u64vec *a, uint64_t x) {
    for (size_t i = 0; i < a->n; i++)
        if (a->v[i] == x) {
            a->v[i] = a->v[--a->n];
            return true;
        }
    return false;
}

static bool u64_has(const u64vec *a, uint64_t x) {
    for (size_t i = 0; i < a->n; i++)
        if (a->v[i] == x) return true;
    return false;
}

static void u64_free(u64vec *a) {
    free(a->v);
    memset(a, 0, sizeof *a);
}

static int64_t mono_us(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

/* ---------------------------------------------------------------- state */

typedef struct {
    const char *coord_ep, *model_path, *id, *data_ep, *advertise;
    eng_config ec;
    int heartbeat_ms;     /* until a RegisterAck says otherwise */
    int pull_timeout_ms;
    bool inline_pulls;    /* serve peers' pulls between engine steps, not from the pull server thread */
    log_level level;
} srv_opts;

typedef struct {
    char *ep;
    void *sock;          /* DEALER connected to ep */
    int inflight;        /* pulls waiting for an answer */
    bool broken;         /* a pull timed out: close once nothing is in flight */
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
    char **stops;           /* (n_stops) stop strings, non-empty */
    int n_stops;
    size_t max_stop_len;
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
    u64vec pinned;          /* imported pages pinned until the request runs */
    uint64_t wait_xfer;     /* != 0: held until this pull (another task's) ends, as it brings our prefix */
    /* streaming */
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

typedef struct {
    srv_opts o;
    char id[WF_MAX_ID_LEN + 1];
    model_t *m;
    eng_t *e;
    kvc_t *kvc;
    int32_t bs;
    size_t page_bytes;
    void *zctx, *coord, *data, *mon;
    char data_ep[512];      /* advertised data endpoint ("" = none) */
    peer_t *peers;
    int n_peers;
    task_t *tasks;
    int n_tasks;
    bool registered, coord_up;
    uint32_t hb_ms;
    int64_t next_reg_ms, next_hb_ms;
    u64vec ev_stored, ev_removed;
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
    kvs_t *kvs;             /* the pull server thread (owns the data socket), or NULL: inline */
    bool draining, stop, ever_registered;
    int exit_code;
} srv_t;

/* ---------------------------------------------------------------- sending */

static int send_bytes(srv_t *s, void *sock, const char *what, const void *ident, size_t ident_len,
                      bool delim, void *buf, size_t len) {
    if (ident && zmq_send(sock, ident, ident_len, ZMQ_SNDMORE | ZMQ_DONTWAIT) < 0) goto fail;
    if (delim && zmq_send(sock, "", 0, ZMQ_SNDMORE | ZMQ_DONTWAIT) < 0) goto fail;
    if (zmq_send(sock, buf, len, ZMQ_DONTWAIT) < 0) goto fail;
    return 0;
fail:
    s->send_errors++;
    slog(LOG_WARN, "could not send %s (%zu bytes): %s", what, len, zmq_strerror(zmq_errno()));
    return HE_EUNAVAIL;
}

static int send_wmsg(srv_t *s, Helium__WorkerMsg *w, const char *what) {
    w->protocol_version = SRV_PROTO;
    w->worker_id = s->id;
    size_t n = helium__worker_msg__get_packed_size(w);
    uint8_t *buf = malloc(n ? n : 1);
    if (!buf) {
        slog(LOG_ERROR, "out of memory packing %s", what);
        return HE_ENOMEM;
    }
    helium__worker_msg__pack(w, buf);
    int rc = send_bytes(s, s->coord, what, NULL, 0, false, buf, n);
    free(buf);
    return rc;
}

static int send_peer(srv_t *s, void *sock, const void *ident, size_t ident_len, bool delim,
                     Helium__PeerMsg *p, const char *what) {
    p->protocol_version = SRV_PROTO;
    size_t n = helium__peer_msg__get_packed_size(p);
    uint8_t *buf = malloc(n ? n : 1);
    if (!buf) {
        slog(LOG_ERROR, "out of memory packing %s", what);
        return HE_ENOMEM;
    }
    helium__peer_msg__pack(p, buf);
    int rc = send_bytes(s, sock, what, ident, ident_len, delim, buf, n);
    free(buf);
    return rc;
}

static void bad_frame(srv_t *s, const char *from, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void bad_frame(srv_t *s, const char *from, const char *fmt, ...) {
    char why[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(why, sizeof why, fmt, ap);
    va_end(ap);
    s->bad_frames++;
    /* a flood of garbage must not flood the log: the first few at warn */
    slog(s->bad_frames <= 20 ? LOG_WARN : LOG_DEBUG, "dropped a bad frame from %s: %s (%lld so far)", from, why,
         (long long)s->bad_frames);
}

/* ---------------------------------------------------------------- registration, heartbeats, cache events */

static void send_register(srv_t *s) {
    const model_t *m = s->m;
    Helium__Register r = HELIUM__REGISTER__INIT;
    r.worker_id = s->id;
    r.model = (char *)m->name;
    r.model_root = m->root_hash;
    r.block_size = (uint32_t)s->bs;
    r.kv_blocks_total = (uint32_t)kvc_n_blocks(s->kvc);
    r.backend = "cpu";
    r.n_ctx = (uint32_t)eng_n_ctx(s->e);
    r.max_batch = (uint32_t)(s->o.ec.max_batch_tokens > 0 ? s->o.ec.max_batch_tokens : 512);
    r.data_endpoint = s->data_ep;
    r.n_layers = (uint32_t)m->hp.n_layers;
    r.kv_dim = (uint32_t)m->hp.kv_dim;
    r.kv_dtype = "f32";
    r.version = SRV_VERSION;
    Helium__WorkerMsg w = HELIUM__WORKER_MSG__INIT;
    w.body_case = HELIUM__WORKER_MSG__BODY_REG;
    w.reg = &r;
    if (send_wmsg(s, &w, "Register") == 0) slog(LOG_DEBUG, "sent Register to %s", s->o.coord_ep);
}

static void send_heartbeat(srv_t *s) {
    eng_counters c = eng_get_counters(s->e);
    kvc_stats ks = kvc_get_stats(s->kvc);
    int queued = eng_n_waiting(s->e);
    for (task_t *t = s->tasks; t; t = t->next)
        if (!t->submitted) queued++;
    Helium__Load load = HELIUM__LOAD__INIT;
    load.running = (uint32_t)eng_n_running(s->e);
    load.queued = (uint32_t)queued;
    load.kv_used = (uint32_t)ks.blocks_used;
    load.kv_cached = (uint32_t)ks.blocks_cached;
    load.kv_free = (uint32_t)ks.blocks_free;
    struct {
        const char *k;
        int64_t v;
    } kv[] = {
        {"prompt_tokens", c.prompt_tokens},
        {"cached_tokens", c.cached_tokens},
        {"computed_tokens", c.computed_tokens},
        {"generated_tokens", c.generated_tokens},
        {"pulled_tokens", s->pulled_tokens},
        {"forward_us", (int64_t)(c.forward_seconds * 1e6)},
        {"exported_blocks", c.exported_blocks + s->exported + kvs_exported_blocks(s->kvs)},
        {"imported_blocks", c.imported_blocks},
        {"preemptions", c.preemptions},
        {"hit_tokens", c.cached_tokens},
        {"lookup_tokens", c.prompt_tokens},
        {"requests", c.requests},
        {"steps", c.steps},
        {"decode_steps", c.decode_steps},
        {"decode_rows", c.decode_rows},
        {"decode_us", (int64_t)(c.decode_seconds * 1e6)},
        {"evictions", ks.evictions},
        {"bad_frames", s->bad_frames + kvs_bad_frames(s->kvs)},
        {"send_errors", s->send_errors + kvs_send_errors(s->kvs)},
        {"pulls_served", s->pulls_served + kvs_pulls_served(s->kvs)},
        {"pull_waits", s->pull_waits},
        {"pinned_evictions", s->pinned_evictions},
        {"pin_updates", s->pin_updates},
        {"pinned_blocks", ks.blocks_pinned},
        {"pin_tags", s->n_tags},
        {"pin_refused", s->pin_refused},
        {"warm_tasks", s->warm_tasks},
        {"pull_us", s->pull_us},
        {"pull_bytes", s->pull_bytes},
    };
    enum { NKV = sizeof kv / sizeof kv[0] };
    Helium__Heartbeat__CountersEntry ents[NKV], *pents[NKV];
    for (int i = 0; i < NKV; i++) {
        helium__heartbeat__counters_entry__init(&ents[i]);
        ents[i].key = (char *)kv[i].k;
        ents[i].value = kv[i].v > 0 ? (uint64_t)kv[i].v : 0;
        pents[i] = &ents[i];
    }
    Helium__Heartbeat hb = HELIUM__HEARTBEAT__INIT;
    hb.load = &load;
    hb.n_counters = NKV;
    hb.counters = pents;
    hb.cache_seq = s->cache_seq;
    Helium__WorkerMsg w = HELIUM__WORKER_MSG__INIT;
    w.body_case = HELIUM__WORKER_MSG__BODY_HEARTBEAT;
    w.heartbeat = &hb;
    send_wmsg(s, &w, "Heartbeat");
}

/* A pinned block was evicted under memory pressure (kvcache.h): its pins are
 * gone, so no tag or task may unpin that hash later (it could be a new block
 * of the same hash by then). */
static void forget_pins_of(srv_t *s, uint64_t hash) {
    for (int i = 0; i < s->n_tags; i++)
        if (u64_remove(&s->tags[i].h, hash)) s->n_tag_pinned--;
    for (task_t *t = s->tasks; t; t = t->next)
        if (u64_remove(&t->pinned, hash)) s->n_pinned--;
    s->pinned_evictions++;
}

/* kvcache event callback: buffers the change, keeping stored/removed disjoint. */
static void on_cache_event(void *ud, kvc_event ev, uint64_t hash, int32_t block) {
    (void)block;
    srv_t *s = ud;
    if (ev == KVC_EV_REMOVED_PINNED) forget_pins_of(s, hash);
    if (!s->registered || s->ev_overflow) return; /* the next snapshot covers it */
    u64vec *add = ev == KVC_EV_STORED ? &s->ev_stored : &s->ev_removed;
    u64vec *del = ev == KVC_EV_STORED ? &s->ev_removed : &s->ev_stored;
    u64_remove(del, hash);
    if (u64_has(add, hash)) return;
    if (s->ev_stored.n + s->ev_removed.n >= SRV_MAX_PENDING_EVENTS || !u64_push(add, hash)) {
        s->ev_overflow = true;
        s->ev_stored.n = s->ev_removed.n = 0;
    }
}

/* Sends every committed hash as a snapshot; clears the pending events. */
static void send_snapshot(srv_t *s) {
    u64vec all = {0};
    int32_t nb = kvc_n_blocks(s->kvc);
    for (int32_t b = 0; b < nb; b++) {
        uint64_t h;
        if (kvc_block_hash(s->kvc, b, &h) && !u64_push(&all, h)) {
            slog(LOG_ERROR, "out of memory building a cache snapshot");
            u64_free(&all);
            return;
        }
    }
    Helium__CacheEvents ce = HELIUM__CACHE_EVENTS__INIT;
    ce.n_stored = all.n;
    ce.stored = all.v;
    ce.snapshot = true;
    ce.seq = s->cache_seq + 1;
    Helium__WorkerMsg w = HELIUM__WORKER_MSG__INIT;
    w.body_case = HELIUM__WORKER_MSG__BODY_CACHE_EVENTS;
    w.cache_events = &ce;
    if (send_wmsg(s, &w, "CacheEvents snapshot") == 0) {
        s->cache_seq++;
        s->ev_stored.n = s->ev_removed.n = 0;
        s->ev_overflow = false;
        slog(LOG_DEBUG, "sent cache snapshot seq %llu: %zu blocks", (unsigned long long)s->cache_seq, all.n);
    }
    u64_free(&all);
}

/* Sends buffered cache events (if any). Kept for the next try if the send fails. */
static void flush_cache_events(srv_t *s) {
    if (!s->registered) return;
    if (s->ev_overflow) {
        send_snapshot(s);
        return;
    }
    if (s->ev_stored.n == 0 && s->ev_removed.n == 0) return;
    Helium__CacheEvents ce = HELIUM__CACHE_EVENTS__INIT;
    ce.n_stored = s->ev_stored.n;
    ce.stored = s->ev_stored.v;
    ce.n_removed = s->ev_removed.n;
    ce.removed = s->ev_removed.v;
    ce.seq = s->cache_seq + 1;
    Helium__WorkerMsg w = HELIUM__WORKER_MSG__INIT;
    w.body_case = HELIUM__WORKER_MSG__BODY_CACHE_EVENTS;
    w.cache_events = &ce;
    if (send_wmsg(s, &w, "CacheEvents") == 0) {
        s->cache_seq++;
        slog(LOG_DEBUG, "cache events seq %llu: %zu stored, %zu removed", (unsigned long long)s->cache_seq,
             s->ev_stored.n, s->ev_removed.n);
        s->ev_stored.n = s->ev_removed.n = 0;
    }
}

/* ---------------------------------------------------------------- tasks */

static task_t *find_task(srv_t *s, uint64_t task_id) {
    for (task_t *t = s->tasks; t; t = t->next)
        if (t->task_id == task_id) return t;
    return NULL;
}

static task_t *find_task_by_eng(srv_t *s, uint64_t eng_id) {
    for (task_t *t = s->tasks; t; t = t->next)
        if (t->submitted && t->eng_id == eng_id) return t;
    return NULL;
}

static void unpin_task(srv_t *s, task_t *t) {
    if (!t->pinned.n) return;
    eng_unpin(s->e, t->pinned.v, (int32_t)t->pinned.n);
    s->n_pinned -= (int64_t)t->pinned.n;
    t->pinned.n = 0;
}

/* ---------------------------------------------------------------- workflow pins */

static int find_tag(const srv_t *s, const char *tag) {
    for (int i = 0; i < s->n_tags; i++)
        if (!strcmp(s->tags[i].tag, tag)) return i;
    return -1;
}

/* Unpins every block held under tags[i] and forgets the tag. */
static void drop_tag(srv_t *s, int i) {
    pin_tag_t *g = &s->tags[i];
    if (g->h.n) eng_unpin(s->e, g->h.v, (int32_t)g->h.n);
    s->n_tag_pinned -= (int64_t)g->h.n;
    free(g->tag);
    u64_free(&g->h);
    s->tags[i] = s->tags[--s->n_tags];
}

/* Pins t's leading run of cached hashes under its tag (once; before its
 * result goes out). Hashes the tag holds already are not pinned again; a
 * hash that is not cached ends the run; beyond SRV_MAX_PIN_TAGS tags or
 * kv_blocks/2 pinned blocks the rest is refused (counted in pin_refused).
 * O(n_pin * pins under the tag + n_tags). */
static void apply_pins(srv_t *s, task_t *t) {
    if (t->pin_done || !t->pin_tag || t->n_pin <= 0) return;
    t->pin_done = true;
    int gi = find_tag(s, t->pin_tag);
    if (gi < 0) {
        if (s->n_tags >= SRV_MAX_PIN_TAGS) {
            s->pin_refused += t->n_pin;
            slog(LOG_WARN, "task %llu: %d live pin tags already; not pinning %d blocks under '%s'",
                 (unsigned long long)t->task_id, s->n_tags, t->n_pin, t->pin_tag);
            return;
        }
        if (s->n_tags == s->cap_tags) {
            int nc = s->cap_tags ? 2 * s->cap_tags : 16;
            pin_tag_t *nt = realloc(s->tags, sizeof *nt * (size_t)nc);
            if (!nt) {
                slog(LOG_ERROR, "out of memory for pin tag '%s'", t->pin_tag);
                return;
            }
            s->tags = nt;
            s->cap_tags = nc;
        }
        char *tag = strdup(t->pin_tag);
        if (!tag) {
            slog(LOG_ERROR, "out of memory for pin tag '%s'", t->pin_tag);
            return;
        }
        gi = s->n_tags++;
        s->tags[gi] = (pin_tag_t){.tag = tag, .steps = t->pin_steps};
    }
    pin_tag_t *g = &s->tags[gi];
    if (t->pin_steps < g->steps) g->steps = t->pin_steps;
    int64_t budget = kvc_n_blocks(s->kvc) / 2;
    int32_t pinned = 0, held = 0, refused = 0, i = 0;
    for (; i < t->n_pin; i++) {
        uint64_t h = t->pin[i];
        if (u64_has(&g->h, h)) {
            held++;
            continue;
        }
        if (s->n_tag_pinned >= budget) {
            refused = t->n_pin - i;
            break;
        }
        if (kvc_pin_prio(s->kvc, h, t->pin_steps) != 0) break; /* not cached: the run ends */
        if (!u64_push(&g->h, h)) {
            eng_unpin(s->e, &h, 1);
            refused = t->n_pin - i;
            break;
        }
        s->n_tag_pinned++;
        pinned++;
    }
    if (refused) {
        s->pin_refused += refused;
        slog(LOG_WARN, "task %llu: pin budget (%lld of %d KV blocks) reached; refused %d blocks under '%s'",
             (unsigned long long)t->task_id, (long long)budget, kvc_n_blocks(s->kvc), refused, t->pin_tag);
    }
    slog(LOG_DEBUG, "task %llu: pinned %d blocks under '%s' (%d held already, %d not cached; tag holds %zu)",
         (unsigned long long)t->task_id, pinned, t->pin_tag, held, refused ? 0 : t->n_pin - i, g->h.n);
    if (g->h.n == 0) drop_tag(s, gi);
}

static void on_unpin(srv_t *s, const Helium__Unpin *u) {
    const char *tag = u->tag ? u->tag : "";
    /* tasks not yet pinned under tag pin nothing now: nobody would unpin it */
    int pending = 0;
    for (task_t *t = s->tasks; t; t = t->next)
        if (!t->pin_done && t->pin_tag && !strcmp(t->pin_tag, tag)) {
            t->pin_done = true;
            pending++;
        }
    int gi = find_tag(s, tag);
    if (gi < 0) {
        slog(LOG_DEBUG, "Unpin of unknown tag '%s' ignored (%d pending pins dropped)", tag, pending);
        return;
    }
    size_t n = s->tags[gi].h.n;
    drop_tag(s, gi);
    slog(LOG_DEBUG, "unpinned %zu blocks under '%s' (%d pending pins dropped)", n, tag, pending);
}

/* PinSteps: the tag's blocks are needed `steps` ahead now. Each block gets
 * the lowest need over the tags holding it, and 0 while any other pin (a
 * pull being served, a task about to run) holds it too. Tasks that will pin
 * under the tag later pin with the new value. O(blocks of the tag * pinned
 * blocks of all tags). */
static void on_pin_steps(srv_t *s, const Helium__PinSteps *p) {
    const char *tag = p->tag ? p->tag : "";
    for (task_t *t = s->tasks; t; t = t->next)
        if (!t->pin_done && t->pin_tag && !strcmp(t->pin_tag, tag)) t->pin_steps = p->steps;
    int gi = find_tag(s, tag);
    if (gi < 0) {
        slog(LOG_DEBUG, "PinSteps for unknown tag '%s' ignored", tag);
        return;
    }
    pin_tag_t *g = &s->tags[gi];
    g->steps = p->steps;
    for (size_t k = 0; k < g->h.n; k++) {
        uint64_t h = g->h.v[k];
        uint32_t lo = p->steps;
        int32_t holders = 0;
        for (int j = 0; j < s->n_tags; j++)
            if (u64_has(&s->tags[j].h, h)) {
                holders++;
                if (s->tags[j].steps < lo) lo = s->tags[j].steps;
            }
        if (kvc_pin_count(s->kvc, h) > holders) lo = 0;
        kvc_set_prio(s->kvc, h, lo); /* pinned under g: cannot fail */
    }
    s->pin_updates++;
    slog(LOG_DEBUG, "'%s': %zu blocks now needed %u steps ahead", tag, g->h.n, p->steps);
}

static void drop_all_tags(srv_t *s) {
    while (s->n_tags) drop_tag(s, s->n_tags - 1);
}

static void peer_release(srv_t *s, int i);

/* Unlinks t, drops what it holds (pins, a pull in flight), frees it. */
static void task_free(srv_t *s, task_t *t) {
    for (task_t **pp = &s->tasks; *pp; pp = &(*pp)->next)
        if (*pp == t) {
            *pp = t->next;
            s->n_tasks--;
            break;
        }
    unpin_task(s, t);
    if (t->pulling) {
        t->pulling = false;
        peer_release(s, t->peer);
    }
    free(t->job_id);
    free(t->op_id);
    free(t->prompt);
    free(t->stop_ids);
    for (int i = 0; i < t->n_stops; i++) free(t->stops[i]);
    free(t->stops);
    free(t->want);
    free(t->pin_tag);
    free(t->pin);
    u64_free(&t->pinned);
    free(t);
}

static Helium__ErrorCode map_err(int code) {
    switch (code) {
    case HE_ECONTEXT: return HELIUM__ERROR_CODE__ERROR_PROMPT_TOO_LONG;
    case HE_EEMPTY:
    case HE_ERANGE:
    case HE_EINVAL: return HELIUM__ERROR_CODE__ERROR_INVALID;
    case HE_ECANCELED: return HELIUM__ERROR_CODE__ERROR_CANCELED;
    case HE_EUNAVAIL: return HELIUM__ERROR_CODE__ERROR_UNAVAILABLE;
    case HE_ETIMEOUT: return HELIUM__ERROR_CODE__ERROR_TIMEOUT;
    default: return HELIUM__ERROR_CODE__ERROR_INTERNAL;
    }
}

static void fill_result_header(Helium__OpResult *r, const task_t *t) {
    r->task_id = t->task_id;
    r->job_id = t->job_id;
    r->op_id = t->op_id;
    r->attempt = t->attempt;
    r->item = t->item;
    r->round = t->round;
    r->prompt_tokens = (uint32_t)t->n_prompt;
}

/* Sends OpResult{error} for t and frees it. */
static void fail_task(srv_t *s, task_t *t, Helium__ErrorCode code, const char *msg) {
    Helium__Error err = HELIUM__ERROR__INIT;
    err.code = code;
    err.message = (char *)msg;
    err.op_id = t->op_id;
    Helium__OpResult r = HELIUM__OP_RESULT__INIT;
    fill_result_header(&r, t);
    r.computed_tokens = 0;
    r.error = &err;
    r.finish_reason = HELIUM__FINISH_REASON__FINISH_ERROR;
    Helium__WorkerMsg w = HELIUM__WORKER_MSG__INIT;
    w.body_case = HELIUM__WORKER_MSG__BODY_RESULT;
    w.result = &r;
    send_wmsg(s, &w, "OpResult");
    s->results++;
    slog(code == HELIUM__ERROR_CODE__ERROR_CANCELED ? LOG_INFO : LOG_WARN, "task %llu (job %s op %s) failed: %s",
         (unsigned long long)t->task_id, t->job_id, t->op_id, msg);
    task_free(s, t);
}

static void submit_task(srv_t *s, task_t *t) {
    int rc = eng_submit(s->e, t->prompt, t->n_prompt, &t->rq, &t->eng_id);
    if (rc) {
        char msg[512];
        snprintf(msg, sizeof msg, "%s", he_msg());
        fail_task(s, t, map_err(rc), msg);
        return;
    }
    t->submitted = true;
    slog(LOG_DEBUG, "task %llu submitted as engine request %llu", (unsigned long long)t->task_id,
         (unsigned long long)t->eng_id);
}

/* Offset of the first stop string in text[0..len), or len if none. */
static size_t stop_cut(const task_t *t, const char *text, size_t len) {
    size_t cut = len;
    for (int i = 0; i < t->n_stops; i++) {
        const char *p = memmem(text, len, t->stops[i], strlen(t->stops[i]));
        if (p && (size_t)(p - text) < cut) cut = (size_t)(p - text);
    }
    return cut;
}

/* Largest end <= limit that does not split a UTF-8 character of text[0..len). */
static size_t utf8_boundary(const char *text, size_t len, size_t limit) {
    if (limit >= len) {
        /* drop an incomplete trailing sequence */
        size_t i = len, back = 0;
        while (i > 0 && back < 4 && ((unsigned char)text[i - 1] & 0xC0) == 0x80) {
            i--;
            back++;
        }
        if (i == 0) return len;
        unsigned char lead = (unsigned char)text[i - 1];
        size_t need = lead >= 0xF0 ? 4 : lead >= 0xE0 ? 3 : lead >= 0xC0 ? 2 : 1;
        return (need > 1 && back + 1 < need) ? i - 1 : len;
    }
    size_t i = limit;
    while (i > 0 && ((unsigned char)text[i] & 0xC0) == 0x80 && limit - i < 3) i--;
    return i;
}

/* Sends OpProgress with ids[t->n_streamed_ids..n) and the text that is safe to
 * show: never past a stop string, holding back bytes that could start one and
 * incomplete UTF-8 (final: everything up to the cut). */
static void stream_progress(srv_t *s, task_t *t, const int32_t *ids, int32_t n, bool final) {
    if (n < t->n_streamed_ids) return;
    char *text = tok_decode(s->m->tok, ids, n, false);
    if (!text) return;
    size_t len = strlen(text), cut = stop_cut(t, text, len), end;
    if (final) {
        end = cut;
    } else if (cut < len) {
        end = utf8_boundary(text, len, cut);
    } else {
        size_t hold = t->max_stop_len > 0 ? t->max_stop_len - 1 : 0;
        end = utf8_boundary(text, len, len > hold ? len - hold : 0);
    }
    if (end < t->n_streamed_bytes) end = t->n_streamed_bytes;
    if (n == t->n_streamed_ids && end == t->n_streamed_bytes) {
        free(text);
        return;
    }
    char saved = text[end];
    text[end] = 0;
    Helium__OpProgress p = HELIUM__OP_PROGRESS__INIT;
    p.task_id = t->task_id;
    p.job_id = t->job_id;
    p.op_id = t->op_id;
    p.attempt = t->attempt;
    p.item = t->item;
    p.text = text + t->n_streamed_bytes;
    p.n_ids = (size_t)(n - t->n_streamed_ids);
    p.ids = (int32_t *)ids + t->n_streamed_ids;
    p.n_generated = (uint32_t)n;
    Helium__WorkerMsg w = HELIUM__WORKER_MSG__INIT;
    w.body_case = HELIUM__WORKER_MSG__BODY_PROGRESS;
    w.progress = &p;
    if (send_wmsg(s, &w, "OpProgress") == 0) {
        t->n_streamed_ids = n;
        t->n_streamed_bytes = end;
    }
    text[end] = saved;
    free(text);
}

static Helium__FinishReason finish_code(eng_finish f) {
    switch (f) {
    case ENG_FINISH_STOP: return HELIUM__FINISH_REASON__FINISH_STOP;
    case ENG_FINISH_LENGTH: return HELIUM__FINISH_REASON__FINISH_LENGTH;
    case ENG_FINISH_CONTEXT: return HELIUM__FINISH_REASON__FINISH_CONTEXT;
    default: return HELIUM__FINISH_REASON__FINISH_ERROR;
    }
}

static const char *finish_name(Helium__FinishReason f) {
    const ProtobufCEnumValue *v = protobuf_c_enum_descriptor_get_value(&helium__finish_reason__descriptor, (int)f);
    return v ? v->name : "?";
}

/* An engine request finished: send its OpResult and free the task. */
static void on_engine_result(srv_t *s, eng_result *er) {
    task_t *t = find_task_by_eng(s, er->id);
    if (!t) {
        slog(LOG_DEBUG, "engine result %llu has no task", (unsigned long long)er->id);
        return;
    }
    if (er->finish == ENG_FINISH_ERROR) {
        char msg[64];
        if (er->error == HE_ECANCELED) snprintf(msg, sizeof msg, "canceled");
        else snprintf(msg, sizeof msg, "engine error %s", he_name(er->error));
        fail_task(s, t, map_err(er->error), msg);
        return;
    }
    if (er->n_gen > 0 && !er->ids) {
        fail_task(s, t, HELIUM__ERROR_CODE__ERROR_INTERNAL, "out of memory");
        return;
    }
    apply_pins(s, t); /* the prompt's full pages are committed (and still cached) now */
    uint64_t now = epoch_us();
    if (!t->t_first_us && er->n_gen > 0) t->t_first_us = now;
    int32_t n_gen = t->warm ? 0 : er->n_gen; /* a warm task's one token is not an answer */
    if (t->warm) s->warm_tasks++;
    if (t->stream && !t->warm) stream_progress(s, t, er->ids, n_gen, true);
    char *text = t->warm ? NULL : tok_decode(s->m->tok, er->ids, n_gen, false);
    size_t len = text ? strlen(text) : 0;
    if (text) text[stop_cut(t, text, len)] = 0;
    int32_t cached = er->cached_tokens;
    int32_t pulled = t->pulled_tokens < cached ? t->pulled_tokens : cached;
    Helium__Timing tm = HELIUM__TIMING__INIT;
    tm.started_us = t->t_recv_us;
    tm.first_token_us = t->t_first_us;
    tm.finished_us = now;
    tm.prefill_dur_us = t->t_first_us ? t->t_first_us - t->t_recv_us : now - t->t_recv_us;
    tm.decode_dur_us = t->t_first_us ? now - t->t_first_us : 0;
    Helium__OpResult r = HELIUM__OP_RESULT__INIT;
    fill_result_header(&r, t);
    r.text = text ? text : "";
    r.n_ids = (size_t)n_gen;
    r.ids = n_gen ? er->ids : NULL;
    r.prompt_tokens = (uint32_t)er->prompt_tokens;
    r.cached_tokens = (uint32_t)cached;
    r.computed_tokens = (uint32_t)(er->prompt_tokens - cached);
    r.pulled_tokens = (uint32_t)pulled;
    r.generated_tokens = (uint32_t)n_gen;
    r.finish_reason = t->warm ? HELIUM__FINISH_REASON__FINISH_WARM : finish_code(er->finish);
    r.timing = &tm;
    Helium__WorkerMsg w = HELIUM__WORKER_MSG__INIT;
    w.body_case = HELIUM__WORKER_MSG__BODY_RESULT;
    w.result = &r;
    send_wmsg(s, &w, "OpResult");
    s->results++;
    slog(LOG_INFO,
         "task %llu (job %s op %s) finished: %d prompt tokens (%d cached, %d computed, %d pulled), %d generated, "
         "%s, %.1f ms",
         (unsigned long long)t->task_id, t->job_id, t->op_id, er->prompt_tokens, cached,
         er->prompt_tokens - cached, pulled, n_gen, finish_name(r.finish_reason), (double)(now - t->t_recv_us) / 1000.0);
    free(text);
    task_free(s, t);
}

/* After a step: record first tokens, stream progress, release pull pins of
 * requests now running, apply workflow pins of requests past their prompt. */
static void after_step(srv_t *s) {
    for (task_t *t = s->tasks; t; t = t->next) {
        if (!t->submitted) continue;
        int32_t n = 0;
        const int32_t *ids = eng_peek_tokens(s->e, t->eng_id, &n);
        if (!ids) continue;
        if (t->pinned.n) unpin_task(s, t); /* running: its pages hold refs now */
        if (n > 0 && !t->pin_done) apply_pins(s, t); /* prompt computed, full pages committed */
        if (n > 0 && !t->t_first_us) t->t_first_us = epoch_us();
        if (t->stream && n > t->n_streamed_ids) stream_progress(s, t, ids, n, false);
    }
    eng_result er;
    while (eng_next_result(s->e, &er)) {
        on_engine_result(s, &er);
        eng_result_free(&er);
    }
    flush_cache_events(s);
}

/* ---------------------------------------------------------------- KV transfer */

static void peer_close(peer_t *p) {
    if (p->sock) zmq_close(p->sock);
    free(p->ep);
    memset(p, 0, sizeof *p);
}

/* A pull on peer i ended (answered, timed out or abandoned). */
static void peer_release(srv_t *s, int i) {
    if (i < 0 || i >= s->n_peers) return;
    peer_t *p = &s->peers[i];
    if (p->inflight > 0) p->inflight--;
    if (p->broken && p->inflight == 0) {
        slog(LOG_DEBUG, "closing the connection to peer %s", p->ep);
        zmq_close(p->sock);
        p->sock = NULL;
        p->broken = false;
    }
}

/* DEALER for endpoint ep (cached); index or -1. */
static int peer_get(srv_t *s, const char *ep) {
    int slot = -1;
    for (int i = 0; i < s->n_peers; i++) {
        if (s->peers[i].ep && !strcmp(s->peers[i].ep, ep)) {
            slot = i;
            if (s->peers[i].sock) return i;
            break;
        }
    }
    if (slot < 0) {
        for (int i = 0; i < s->n_peers && slot < 0; i++)
            if (!s->peers[i].ep) slot = i;
        if (slot < 0 && s->n_peers < SRV_MAX_PEERS) slot = s->n_peers++;
        for (int i = 0; i < s->n_peers && slot < 0; i++) /* evict an idle one */
            if (s->peers[i].inflight == 0) {
                peer_close(&s->peers[i]);
                slot = i;
            }
        if (slot < 0) return -1;
        s->peers[slot].ep = strdup(ep);
        if (!s->peers[slot].ep) return -1;
    }
    peer_t *p = &s->peers[slot];
    p->sock = zmq_socket(s->zctx, ZMQ_DEALER);
    int zero = 0;
    int64_t maxmsg = SRV_MAX_MSG_BYTES;
    if (!p->sock) return -1;
    zmq_setsockopt(p->sock, ZMQ_LINGER, &zero, sizeof zero);
    zmq_setsockopt(p->sock, ZMQ_MAXMSGSIZE, &maxmsg, sizeof maxmsg);
    if (zmq_connect(p->sock, ep) != 0) {
        slog(LOG_WARN, "cannot connect to peer %s: %s", ep, zmq_strerror(zmq_errno()));
        peer_close(p);
        return -1;
    }
    p->inflight = 0;
    p->broken = false;
    return slot;
}

/* Checks a KvPages header against our model and page geometry. */
static int check_pages_header(const srv_t *s, const Helium__KvPages *kp) {
    const model_t *m = s->m;
    if (kp->protocol_version != SRV_PROTO)
        return he_set(HE_EPROTO, "KvPages protocol_version %u (want %d)", kp->protocol_version, SRV_PROTO);
    if (kp->model_root != m->root_hash) return he_set(HE_EPROTO, "KvPages from another model (root differs)");
    if (kp->n_layers != (uint32_t)m->hp.n_layers || kp->kv_dim != (uint32_t)m->hp.kv_dim ||
        kp->block_size != (uint32_t)s->bs)
        return he_set(HE_EPROTO, "KvPages geometry %u layers x %u kv_dim x %u tokens, want %d x %d x %d",
                      kp->n_layers, kp->kv_dim, kp->block_size, m->hp.n_layers, m->hp.kv_dim, s->bs);
    if (!kp->dtype || strcmp(kp->dtype, "f32"))
        return he_set(HE_EUNSUPPORTED, "KvPages dtype '%s' (only f32)", kp->dtype ? kp->dtype : "");
    return 0;
}

/* Checks one page: payload size, and the hash chain when tokens are given. */
static int check_page(const srv_t *s, const Helium__KvPage *pg) {
    if (!pg) return he_set(HE_EPROTO, "missing page");
    if (pg->data.len != s->page_bytes || !pg->data.data)
        return he_set(HE_EPROTO, "page of %zu bytes, want %zu", pg->data.len, s->page_bytes);
    if (pg->n_tokens) {
        if (pg->n_tokens != (size_t)s->bs) return he_set(HE_EPROTO, "page with %zu tokens", pg->n_tokens);
        if (bh_chain(pg->parent, pg->tokens, s->bs) != pg->hash)
            return he_set(HE_EPROTO, "page hash does not match its parent and tokens");
    }
    return 0;
}

/* Imports one verified page; pins it for t (if any, within budget). Returns
 * 1 stored, 0 already cached, or a negative herr code. */
static int import_page(srv_t *s, task_t *t, const Helium__KvPage *pg) {
    int rc = eng_kv_import(s->e, &pg->hash, 1, pg->data.data);
    if (rc == 1 && t && s->n_pinned < kvc_n_blocks(s->kvc) / 4 && eng_pin(s->e, &pg->hash, 1) == 1) {
        if (u64_push(&t->pinned, pg->hash)) s->n_pinned++;
        else eng_unpin(s->e, &pg->hash, 1);
    }
    return rc;
}

/* The transfer of a pull in flight that brings pages of t's prompt (its
 * first wanted page is one of t's usable prompt blocks), or 0. A task that
 * arrives while a sibling's pull brings its prefix waits for that pull instead
 * of recomputing the pages (the engine's in-flight dedup only knows pages
 * being computed, not pages on the wire). */
static uint64_t pull_bringing(srv_t *s, const task_t *t) {
    int32_t nuse = (t->n_prompt - 1) / s->bs;
    if (nuse <= 0 || s->o.ec.no_prefix_cache || t->rq.no_cache) return 0;
    bool any = false;
    for (const task_t *x = s->tasks; x && !any; x = x->next) any = x != t && x->pulling && x->n_want > x->n_got;
    if (!any) return 0;
    uint64_t *ph = malloc(sizeof(uint64_t) * (size_t)(t->n_prompt / s->bs + 1));
    if (!ph) return 0;
    eng_prompt_hashes(s->e, t->prompt, t->n_prompt, ph);
    uint64_t xfer = 0;
    for (const task_t *x = s->tasks; x && !xfer; x = x->next) {
        if (x == t || !x->pulling || x->n_want <= x->n_got) continue;
        uint64_t h = x->want[x->n_got];
        for (int32_t i = 0; i < nuse; i++)
            if (ph[i] == h) {
                xfer = x->xfer;
                break;
            }
    }
    free(ph);
    return xfer;
}

/* Submits every task held for a pull that is no longer in flight. */
static void release_pull_waiters(srv_t *s) {
    for (;;) {
        task_t *w = NULL;
        for (task_t *t = s->tasks; t && !w; t = t->next) {
            if (!t->wait_xfer) continue;
            bool live = false;
            for (const task_t *x = s->tasks; x && !live; x = x->next) live = x->pulling && x->xfer == t->wait_xfer;
            if (!live) w = t;
        }
        if (!w) return;
        slog(LOG_DEBUG, "task %llu: pull %llu ended; submitting", (unsigned long long)w->task_id,
             (unsigned long long)w->wait_xfer);
        w->wait_xfer = 0;
        submit_task(s, w); /* may fail and free w: the scan restarts */
    }
}

/* Ends t's pull and submits it to the engine. */
static void finish_pull(srv_t *s, task_t *t, const char *why) {
    t->pulling = false;
    peer_release(s, t->peer);
    slog(LOG_INFO, "task %llu pull %llu %s: %d of %d pages, %d tokens imported in %.1f ms",
         (unsigned long long)t->task_id, (unsigned long long)t->xfer, why, t->n_got, t->n_want, t->pulled_tokens,
         (double)(mono_us() - t->pull_start_us) / 1e3);
    free(t->want);
    t->want = NULL;
    submit_task(s, t);
    release_pull_waiters(s);
}

/* KvPages answering one of our pulls. */
static void on_pull_pages(srv_t *s, const Helium__KvPages *kp, const char *from) {
    task_t *t = NULL;
    for (task_t *x = s->tasks; x; x = x->next)
        if (x->pulling && x->xfer == kp->transfer_id) t = x;
    if (!t) {
        slog(LOG_DEBUG, "KvPages for unknown or expired transfer %llu from %s", (unsigned long long)kp->transfer_id,
             from);
        return;
    }
    if (check_pages_header(s, kp)) {
        bad_frame(s, from, "%s", he_msg());
        finish_pull(s, t, "rejected");
        return;
    }
    bool bad = false;
    int32_t got0 = t->n_got;
    for (size_t i = 0; i < kp->n_pages; i++) {
        const Helium__KvPage *pg = kp->pages[i];
        if (t->n_got >= t->n_want || check_page(s, pg) || pg->hash != t->want[t->n_got]) {
            bad_frame(s, from, "page %zu of transfer %llu does not match the request", i,
                      (unsigned long long)kp->transfer_id);
            bad = true;
            break;
        }
        int rc = import_page(s, t, pg);
        if (rc < 0) {
            slog(LOG_WARN, "KV import failed: %s", he_msg());
            bad = true;
            break;
        }
        t->pulled_tokens += rc * s->bs;
        s->pulled_tokens += rc * s->bs;
        t->n_got++;
    }
    if (t->n_got > got0) {
        /* link time: from the KvPull (or the previous chunk) to these pages
         * imported, less the engine steps run meanwhile. Replies are read
         * between steps, so pages that arrived mid-step waited for its end:
         * that wait is this worker's, not the link's. */
        int64_t now = mono_us(), link = (now - t->pull_mark_us) - (s->step_us - t->pull_mark_step);
        s->pull_us += link > 1 ? link : 1;
        t->pull_mark_step = s->step_us;
        s->pull_bytes += (int64_t)(t->n_got - got0) * (int64_t)s->page_bytes;
        t->pull_mark_us = now;
    }
    flush_cache_events(s);
    if (bad) finish_pull(s, t, "stopped early");
    else if (kp->last || t->n_got >= t->n_want) finish_pull(s, t, "done");
}

/* Starts a pull for t if the hint is usable. Returns true if one is in flight. */
static bool start_pull(srv_t *s, task_t *t, const Helium__KvPullHint *h) {
    if (!h->source_endpoint || !h->source_endpoint[0] || h->n_hashes == 0) return false;
    if (s->data_ep[0] && !strcmp(h->source_endpoint, s->data_ep)) return false;
    if (s->o.ec.no_prefix_cache) return false;
    /* usable prompt blocks: the engine always computes the last prompt token */
    int32_t nuse = (t->n_prompt - 1) / s->bs;
    if (nuse <= 0 || h->first_block >= (uint32_t)nuse) return false;
    uint64_t *ph = malloc(sizeof(uint64_t) * (size_t)(t->n_prompt / s->bs + 1));
    if (!ph) return false;
    eng_prompt_hashes(s->e, t->prompt, t->n_prompt, ph);
    /* the hint must name our prompt's blocks; keep the agreeing run */
    int32_t first = (int32_t)h->first_block, k = 0;
    while ((size_t)k < h->n_hashes && first + k < nuse && h->hashes[k] == ph[first + k]) k++;
    if ((size_t)k < h->n_hashes && first + k < nuse)
        slog(LOG_WARN, "task %llu: pull hint differs from the prompt at block %d; using %d of %zu blocks",
             (unsigned long long)t->task_id, first + k, k, h->n_hashes);
    /* ask from our first missing block to the end of the hint */
    int32_t end = first + k, lo = 0;
    while (lo < end && kvc_lookup(s->kvc, ph[lo]) >= 0) lo++;
    if (lo >= end) {
        free(ph);
        return false;
    }
    int pi = peer_get(s, h->source_endpoint);
    if (pi < 0) {
        free(ph);
        return false;
    }
    t->n_want = end - lo;
    t->want = malloc(sizeof(uint64_t) * (size_t)t->n_want);
    if (!t->want) {
        free(ph);
        return false;
    }
    memcpy(t->want, ph + lo, sizeof(uint64_t) * (size_t)t->n_want);
    free(ph);
    t->xfer = ++s->next_xfer;
    Helium__KvPull pull = HELIUM__KV_PULL__INIT;
    pull.transfer_id = t->xfer;
    pull.n_hashes = (size_t)t->n_want;
    pull.hashes = t->want;
    pull.requester = s->id;
    Helium__PeerMsg pm = HELIUM__PEER_MSG__INIT;
    pm.body_case = HELIUM__PEER_MSG__BODY_PULL;
    pm.pull = &pull;
    if (send_peer(s, s->peers[pi].sock, NULL, 0, false, &pm, "KvPull")) {
        free(t->want);
        t->want = NULL;
        return false;
    }
    s->peers[pi].inflight++;
    t->peer = pi;
    t->pulling = true;
    t->pull_deadline_ms = mono_ms() + s->o.pull_timeout_ms;
    t->pull_mark_us = t->pull_start_us = mono_us();
    t->pull_mark_step = s->step_us;
    slog(LOG_INFO, "task %llu: pulling blocks %d..%d from %s (%s), transfer %llu", (unsigned long long)t->task_id,
         lo, end - 1, h->source_worker ? h->source_worker : "?", h->source_endpoint, (unsigned long long)t->xfer);
    return true;
}

/* Exports the leading cached run of hashes[0..n) as KvPages messages of at
 * most SRV_CHUNK_BYTES each, handing each to emit (the last has last=true).
 * Returns pages exported, or a negative herr code. */
static int export_pages(srv_t *s, uint64_t xfer, const uint64_t *hashes, int32_t n, kvs_emit_fn emit, void *ud) {
    int rc = kvs_export(s->e, &s->geom, xfer, hashes, n, SRV_CHUNK_BYTES, emit, ud);
    if (rc > 0) s->exported += rc;
    return rc;
}

typedef struct {
    srv_t *s;
    void *sock;
    const void *ident;
    size_t ident_len;
    bool delim;
} peer_dest;

static int send_to_dest(void *ud, Helium__PeerMsg *m, const char *what) {
    const peer_dest *d = ud;
    return send_peer(d->s, d->sock, d->ident, d->ident_len, d->delim, m, what);
}

static int emit_to_peer(void *ud, Helium__KvPages *kp) {
    const peer_dest *d = ud;
    Helium__PeerMsg pm = HELIUM__PEER_MSG__INIT;
    pm.body_case = HELIUM__PEER_MSG__BODY_PAGES;
    pm.pages = kp;
    return send_peer(d->s, d->sock, d->ident, d->ident_len, d->delim, &pm, "KvPages");
}

/* Imports pages pushed to us (KvImport from the coordinator, or PeerMsg pages
 * on the data endpoint). Their hashes cannot be checked against a prompt, so
 * only geometry (and the chain, where tokens come along) is verified. */
static void import_pushed(srv_t *s, const Helium__KvPages *kp, const char *from) {
    if (check_pages_header(s, kp)) {
        bad_frame(s, from, "%s", he_msg());
        return;
    }
    int stored = 0;
    for (size_t i = 0; i < kp->n_pages; i++) {
        if (check_page(s, kp->pages[i])) {
            bad_frame(s, from, "page %zu: %s", i, he_msg());
            break;
        }
        int rc = import_page(s, NULL, kp->pages[i]);
        if (rc < 0) {
            slog(LOG_WARN, "KV import from %s failed: %s", from, he_msg());
            break;
        }
        stored += rc;
    }
    slog(LOG_INFO, "imported %d of %zu pushed KV pages from %s (transfer %llu)", stored, kp->n_pages, from,
         (unsigned long long)kp->transfer_id);
    flush_cache_events(s);
}

/* ---------------------------------------------------------------- coordinator messages */

static char *dup_str(const char *x) { return strdup(x ? x : ""); }

static void on_dispatch(srv_t *s, const Helium__Dispatch *d) {
    s->dispatches++;
    if (find_task(s, d->task_id)) {
        slog(LOG_WARN, "task %llu dispatched twice; ignoring the repeat", (unsigned long long)d->task_id);
        return;
    }
    task_t *t = calloc(1, sizeof *t);
    if (!t) {
        slog(LOG_ERROR, "out of memory for task %llu", (unsigned long long)d->task_id);
        return;
    }
    t->task_id = d->task_id;
    t->job_id = dup_str(d->job_id);
    t->op_id = dup_str(d->op_id);
    t->attempt = d->attempt;
    t->item = d->item;
    t->round = d->round;
    t->stream = d->stream;
    t->peer = -1;
    t->t_recv_us = epoch_us();
    t->next = s->tasks;
    s->tasks = t;
    s->n_tasks++;
    if (!t->job_id || !t->op_id) {
        fail_task(s, t, HELIUM__ERROR_CODE__ERROR_INTERNAL, "out of memory");
        return;
    }
    if (s->draining) {
        fail_task(s, t, HELIUM__ERROR_CODE__ERROR_UNAVAILABLE, "worker is shutting down");
        return;
    }
    /* prompt: ids (the coordinator's normal case), else text tokenized like generate --prompt */
    if (d->n_prompt_ids > 0) {
        if (d->n_prompt_ids > (size_t)INT32_MAX / 8) {
            fail_task(s, t, HELIUM__ERROR_CODE__ERROR_PROMPT_TOO_LONG, "prompt too long");
            return;
        }
        t->n_prompt = (int32_t)d->n_prompt_ids;
        t->prompt = malloc(sizeof(int32_t) * d->n_prompt_ids);
        if (t->prompt) memcpy(t->prompt, d->prompt_ids, sizeof(int32_t) * d->n_prompt_ids);
    } else if (d->prompt && d->prompt[0]) {
        size_t len = strlen(d->prompt);
        if (len > WF_MAX_PROMPT_BYTES * 4) {
            fail_task(s, t, HELIUM__ERROR_CODE__ERROR_PROMPT_TOO_LONG, "prompt text too long");
            return;
        }
        bool bos = tok_add_bos_default(s->m->tok);
        int need = tok_encode(s->m->tok, d->prompt, len, bos, false, NULL, 0);
        if (need < 0) {
            fail_task(s, t, map_err(need), he_msg());
            return;
        }
        t->prompt = malloc(sizeof(int32_t) * (size_t)(need ? need : 1));
        if (t->prompt) {
            int got = tok_encode(s->m->tok, d->prompt, len, bos, false, t->prompt, need);
            if (got < 0) {
                fail_task(s, t, map_err(got), he_msg());
                return;
            }
            t->n_prompt = got;
        }
    } else {
        fail_task(s, t, HELIUM__ERROR_CODE__ERROR_INVALID, "empty prompt");
        return;
    }
    if (!t->prompt) {
        fail_task(s, t, HELIUM__ERROR_CODE__ERROR_INTERNAL, "out of memory");
        return;
    }
    /* sampling and limits */
    smp_params sp = {.temperature = 0, .top_k = 0, .top_p = 1.0f, .seed = 0};
    if (d->sampling) {
        sp.temperature = d->sampling->temperature;
        sp.top_k = d->sampling->top_k > (uint32_t)INT32_MAX ? INT32_MAX : (int32_t)d->sampling->top_k;
        sp.top_p = d->sampling->top_p == 0 ? 1.0f : d->sampling->top_p;
        sp.seed = d->sampling->seed;
        if (!(sp.temperature >= 0 && sp.temperature < 1e6f) || !(sp.top_p > 0 && sp.top_p <= 1)) {
            fail_task(s, t, HELIUM__ERROR_CODE__ERROR_INVALID, "bad sampling parameters");
            return;
        }
    }
    uint32_t max_tokens = d->max_tokens ? d->max_tokens : WF_DEFAULT_MAX_TOKENS;
    if (max_tokens > WF_MAX_TOKENS) {
        fail_task(s, t, HELIUM__ERROR_CODE__ERROR_LIMIT, "max_tokens above the limit");
        return;
    }
    if (d->n_stop_ids > SRV_MAX_STOP_IDS || d->n_stop > SRV_MAX_STOPS) {
        fail_task(s, t, HELIUM__ERROR_CODE__ERROR_LIMIT, "too many stop tokens or strings");
        return;
    }
    if (d->n_stop_ids) {
        t->stop_ids = malloc(sizeof(int32_t) * d->n_stop_ids);
        if (!t->stop_ids) {
            fail_task(s, t, HELIUM__ERROR_CODE__ERROR_INTERNAL, "out of memory");
            return;
        }
        memcpy(t->stop_ids, d->stop_ids, sizeof(int32_t) * d->n_stop_ids);
    }
    if (d->n_stop) {
        t->stops = calloc(d->n_stop, sizeof *t->stops);
        if (!t->stops) {
            fail_task(s, t, HELIUM__ERROR_CODE__ERROR_INTERNAL, "out of memory");
            return;
        }
        for (size_t i = 0; i < d->n_stop; i++) {
            const char *x = d->stop[i] ? d->stop[i] : "";
            size_t l = strlen(x);
            if (l == 0) continue;
            if (l > SRV_MAX_STOP_LEN) {
                fail_task(s, t, HELIUM__ERROR_CODE__ERROR_LIMIT, "stop string too long");
                return;
            }
            if (!(t->stops[t->n_stops] = strdup(x))) {
                fail_task(s, t, HELIUM__ERROR_CODE__ERROR_INTERNAL, "out of memory");
                return;
            }
            t->n_stops++;
            if (l > t->max_stop_len) t->max_stop_len = l;
        }
    }
    t->rq = (eng_request){.sampling = sp, .max_tokens = (int32_t)max_tokens, .stop_ids = t->stop_ids,
                          .n_stop = (int32_t)d->n_stop_ids, .no_cache = d->no_cache, .user = t->task_id};
    if (d->warm) {
        /* prefill only: one token, whatever it is, ends the request */
        t->warm = true;
        t->stream = false;
        t->rq.max_tokens = 1;
        t->rq.ignore_eos = true;
        t->rq.n_stop = 0;
    }
    if (d->n_pin > 0) {
        const char *tag = d->pin_tag ? d->pin_tag : "";
        size_t max_pin = (size_t)kvc_n_blocks(s->kvc);
        if (!tag[0] || strlen(tag) > SRV_MAX_TAG_LEN) {
            s->pin_refused += (int64_t)d->n_pin;
            slog(LOG_WARN, "task %llu: %zu pins with %s tag ignored", (unsigned long long)t->task_id, d->n_pin,
                 tag[0] ? "an overlong" : "no");
        } else {
            size_t n = d->n_pin < max_pin ? d->n_pin : max_pin;
            if (n < d->n_pin) {
                s->pin_refused += (int64_t)(d->n_pin - n);
                slog(LOG_WARN, "task %llu: %zu pins for %zu KV blocks; keeping the first %zu",
                     (unsigned long long)t->task_id, d->n_pin, max_pin, n);
            }
            t->pin_tag = strdup(tag);
            t->pin = malloc(sizeof(uint64_t) * n);
            if (!t->pin_tag || !t->pin) {
                fail_task(s, t, HELIUM__ERROR_CODE__ERROR_INTERNAL, "out of memory");
                return;
            }
            memcpy(t->pin, d->pin, sizeof(uint64_t) * n);
            t->n_pin = (int32_t)n;
            t->pin_steps = d->pin_steps;
        }
    }
    slog(LOG_INFO, "dispatch task %llu (job %s op %s attempt %u item %u): %d prompt tokens, max %u new%s%s%s%s%s%s",
         (unsigned long long)t->task_id, t->job_id, t->op_id, t->attempt, t->item, t->n_prompt, t->rq.max_tokens,
         t->stream ? ", streaming" : "", d->pull ? ", pull hint" : "", t->warm ? ", warm" : "",
         t->rq.no_cache ? ", no cache" : "", t->pin_tag ? ", pin under " : "", t->pin_tag ? t->pin_tag : "");
    if ((t->wait_xfer = pull_bringing(s, t)) != 0) {
        s->pull_waits++;
        slog(LOG_DEBUG, "task %llu waits for pull %llu, which brings its prefix", (unsigned long long)t->task_id,
             (unsigned long long)t->wait_xfer);
        return;
    }
    if (d->pull && start_pull(s, t, d->pull)) return;
    submit_task(s, t);
}

static void on_cancel(srv_t *s, const Helium__Cancel *c) {
    if (c->task_id == 0 && (!c->job_id || !c->job_id[0])) {
        slog(LOG_WARN, "Cancel without task_id or job_id ignored");
        return;
    }
    int n = 0;
    for (task_t *t = s->tasks, *next; t; t = next) {
        next = t->next;
        bool match = c->task_id ? t->task_id == c->task_id : !strcmp(t->job_id, c->job_id);
        if (!match) continue;
        n++;
        if (t->submitted) {
            if (eng_cancel(s->e, t->eng_id)) slog(LOG_DEBUG, "cancel: %s", he_msg());
        } else {
            fail_task(s, t, HELIUM__ERROR_CODE__ERROR_CANCELED, "canceled");
        }
    }
    /* canceled engine requests report through eng_next_result */
    eng_result er;
    while (eng_next_result(s->e, &er)) {
        on_engine_result(s, &er);
        eng_result_free(&er);
    }
    slog(LOG_INFO, "cancel (task %llu job %s): %d task(s)", (unsigned long long)c->task_id,
         c->job_id ? c->job_id : "", n);
}

typedef struct {
    srv_t *s;
    const Helium__KvExportRequest *rq;
} coord_dest;

static int emit_to_coord(void *ud, Helium__KvPages *kp) {
    /* one KvExportReply per chunk, pages inline */
    const coord_dest *d = ud;
    srv_t *s = d->s;
    const Helium__KvExportRequest *rq = d->rq;
    Helium__KvExportReply rep = HELIUM__KV_EXPORT_REPLY__INIT;
    rep.transfer_id = rq->transfer_id;
    rep.n_found = (uint32_t)kp->n_pages;
    rep.bytes = (uint64_t)kp->n_pages * s->page_bytes;
    rep.pages = kp;
    Helium__WorkerMsg w = HELIUM__WORKER_MSG__INIT;
    w.body_case = HELIUM__WORKER_MSG__BODY_KV_EXPORT_REPLY;
    w.kv_export_reply = &rep;
    return send_wmsg(s, &w, "KvExportReply");
}

static void on_kv_export(srv_t *s, const Helium__KvExportRequest *rq) {
    int32_t max = eng_n_ctx(s->e) / s->bs + 1;
    int rc;
    if (rq->n_hashes > (size_t)max) {
        rc = he_set(HE_ELIMIT, "export of %zu blocks (at most %d)", rq->n_hashes, max);
    } else if (!rq->destination || !rq->destination[0]) {
        coord_dest d = {.s = s, .rq = rq};
        rc = export_pages(s, rq->transfer_id, rq->hashes, (int32_t)rq->n_hashes, emit_to_coord, &d);
    } else {
        int pi = peer_get(s, rq->destination);
        if (pi < 0) {
            rc = he_set(HE_EUNAVAIL, "cannot reach %s", rq->destination);
        } else {
            peer_dest d = {.s = s, .sock = s->peers[pi].sock};
            rc = export_pages(s, rq->transfer_id, rq->hashes, (int32_t)rq->n_hashes, emit_to_peer, &d);
            if (rc >= 0) {
                Helium__KvExportReply rep = HELIUM__KV_EXPORT_REPLY__INIT;
                rep.transfer_id = rq->transfer_id;
                rep.n_found = (uint32_t)rc;
                rep.bytes = (uint64_t)rc * s->page_bytes;
                Helium__WorkerMsg w = HELIUM__WORKER_MSG__INIT;
                w.body_case = HELIUM__WORKER_MSG__BODY_KV_EXPORT_REPLY;
                w.kv_export_reply = &rep;
                send_wmsg(s, &w, "KvExportReply");
            }
        }
    }
    if (rc < 0) {
        Helium__Error err = HELIUM__ERROR__INIT;
        err.code = map_err(rc);
        err.message = (char *)he_msg();
        Helium__KvExportReply rep = HELIUM__KV_EXPORT_REPLY__INIT;
        rep.transfer_id = rq->transfer_id;
        rep.error = &err;
        Helium__WorkerMsg w = HELIUM__WORKER_MSG__INIT;
        w.body_case = HELIUM__WORKER_MSG__BODY_KV_EXPORT_REPLY;
        w.kv_export_reply = &rep;
        send_wmsg(s, &w, "KvExportReply");
        slog(LOG_WARN, "KV export %llu failed: %s", (unsigned long long)rq->transfer_id, he_msg());
    } else {
        slog(LOG_INFO, "KV export %llu: %d of %zu blocks", (unsigned long long)rq->transfer_id, rc, rq->n_hashes);
    }
}

static void on_register_ack(srv_t *s, const Helium__RegisterAck *a) {
    if (!a->accepted) {
        const char *why = a->error && a->error->message ? a->error->message : "no reason given";
        slog(LOG_ERROR, "the coordinator rejected this worker: %s", why);
        s->exit_code = 1;
        s->stop = true;
        return;
    }
    if (a->worker_id && a->worker_id[0] && strcmp(a->worker_id, s->id))
        slog(LOG_WARN, "coordinator calls this worker '%s'; keeping id '%s' (it is the routing id)", a->worker_id,
             s->id);
    bool was = s->registered;
    if (!was && s->ever_registered && s->n_tags) {
        /* the coordinator treats a re-registration as a restart: nobody
         * will unpin the tags it knew about */
        slog(LOG_INFO, "registered again: releasing %d pin tags (%lld blocks)", s->n_tags,
             (long long)s->n_tag_pinned);
        drop_all_tags(s);
    }
    s->registered = true;
    s->ever_registered = true;
    if (a->heartbeat_ms > 0) s->hb_ms = a->heartbeat_ms < 10 ? 10 : a->heartbeat_ms;
    s->next_hb_ms = mono_ms();
    if (!was) slog(LOG_INFO, "registered with the coordinator at %s (heartbeat %u ms)", s->o.coord_ep, s->hb_ms);
    /* the coordinator's directory may be new: give it our whole cache */
    send_snapshot(s);
}

static void on_coord_frame(srv_t *s, const void *data, size_t len) {
    Helium__CoordMsg *c = helium__coord_msg__unpack(NULL, len, data);
    if (!c) {
        bad_frame(s, "the coordinator", "undecodable CoordMsg of %zu bytes", len);
        return;
    }
    if (c->protocol_version != SRV_PROTO) {
        bad_frame(s, "the coordinator", "protocol_version %u (this worker speaks %d)", c->protocol_version,
                  SRV_PROTO);
        helium__coord_msg__free_unpacked(c, NULL);
        return;
    }
    switch (c->body_case) {
    case HELIUM__COORD_MSG__BODY_REGISTER_ACK:
        if (c->register_ack) on_register_ack(s, c->register_ack);
        break;
    case HELIUM__COORD_MSG__BODY_DISPATCH:
        if (c->dispatch) on_dispatch(s, c->dispatch);
        break;
    case HELIUM__COORD_MSG__BODY_CANCEL:
        if (c->cancel) on_cancel(s, c->cancel);
        break;
    case HELIUM__COORD_MSG__BODY_KV_EXPORT:
        if (c->kv_export) on_kv_export(s, c->kv_export);
        break;
    case HELIUM__COORD_MSG__BODY_KV_IMPORT:
        if (c->kv_import && c->kv_import->pages) import_pushed(s, c->kv_import->pages, "the coordinator");
        break;
    case HELIUM__COORD_MSG__BODY_SHUTDOWN:
        if (c->shutdown) {
            slog(LOG_INFO, "shutdown requested%s%s%s", c->shutdown->drain ? " (draining)" : "",
                 c->shutdown->reason && c->shutdown->reason[0] ? ": " : "",
                 c->shutdown->reason ? c->shutdown->reason : "");
            if (c->shutdown->drain) s->draining = true;
            else s->stop = true;
        }
        break;
    case HELIUM__COORD_MSG__BODY_UNPIN:
        if (c->unpin) on_unpin(s, c->unpin);
        break;
    case HELIUM__COORD_MSG__BODY_PIN_STEPS:
        if (c->pin_steps) on_pin_steps(s, c->pin_steps);
        break;
    case HELIUM__COORD_MSG__BODY_RESYNC:
        slog(LOG_INFO, "cache resync requested (coordinator at seq %llu, we are at %llu)",
             c->resync ? (unsigned long long)c->resync->last_seq : 0ull, (unsigned long long)s->cache_seq);
        send_snapshot(s);
        break;
    default:
        slog(LOG_DEBUG, "ignoring CoordMsg with body %d", (int)c->body_case);
        break;
    }
    helium__coord_msg__free_unpacked(c, NULL);
}

/* ---------------------------------------------------------------- peer messages */

/* On the data ROUTER: [identity, (empty,) payload]. */
static void on_data_frame(srv_t *s, const void *ident, size_t ident_len, bool delim, const void *data,
                          size_t len) {
    Helium__PeerMsg *p = helium__peer_msg__unpack(NULL, len, data);
    if (!p) {
        bad_frame(s, "a peer (data endpoint)", "undecodable PeerMsg of %zu bytes", len);
        return;
    }
    if (p->protocol_version != SRV_PROTO) {
        bad_frame(s, "a peer (data endpoint)", "protocol_version %u", p->protocol_version);
        helium__peer_msg__free_unpacked(p, NULL);
        return;
    }
    peer_dest d = {.s = s, .sock = s->data, .ident = ident, .ident_len = ident_len, .delim = delim};
    if (p->body_case == HELIUM__PEER_MSG__BODY_PULL && p->pull && !s->data) {
        /* the pull server thread answers pulls; it forwards only the rest */
        bad_frame(s, "the pull server", "a forwarded KvPull");
    } else if (p->body_case == HELIUM__PEER_MSG__BODY_PULL && p->pull) {
        const Helium__KvPull *pl = p->pull;
        s->pulls_served++;
        int rc = kvs_answer_pull(s->e, &s->geom, pl, eng_n_ctx(s->e) / s->bs + 1, SRV_CHUNK_BYTES, send_to_dest, &d);
        if (rc > 0) s->exported += rc;
        slog(LOG_INFO, "served pull %llu for %s: %d of %zu blocks", (unsigned long long)pl->transfer_id,
             pl->requester && pl->requester[0] ? pl->requester : "?", rc, pl->n_hashes);
    } else if (p->body_case == HELIUM__PEER_MSG__BODY_PAGES && p->pages) {
        import_pushed(s, p->pages, "a peer");
    } else {
        slog(LOG_DEBUG, "ignoring PeerMsg with body %d on the data endpoint", (int)p->body_case);
    }
    helium__peer_msg__free_unpacked(p, NULL);
}

/* On a pull DEALER: the answer to one of our pulls. */
static void on_peer_reply(srv_t *s, int pi, const void *data, size_t len) {
    const char *ep = s->peers[pi].ep ? s->peers[pi].ep : "?";
    Helium__PeerMsg *p = helium__peer_msg__unpack(NULL, len, data);
    if (!p) {
        bad_frame(s, ep, "undecodable PeerMsg of %zu bytes", len);
        return;
    }
    if (p->protocol_version != SRV_PROTO) {
        bad_frame(s, ep, "protocol_version %u", p->protocol_version);
    } else if (p->body_case == HELIUM__PEER_MSG__BODY_PAGES && p->pages) {
        on_pull_pages(s, p->pages, ep);
    } else if (p->body_case == HELIUM__PEER_MSG__BODY_ERROR && p->error) {
        slog(LOG_WARN, "peer %s refused a pull: %s", ep, p->error->message ? p->error->message : "");
        /* the error does not say which transfer: end every pull on this peer */
        for (task_t *t = s->tasks, *next; t; t = next) {
            next = t->next;
            if (t->pulling && t->peer == pi) finish_pull(s, t, "refused");
        }
    } else {
        slog(LOG_DEBUG, "ignoring PeerMsg with body %d from %s", (int)p->body_case, ep);
    }
    helium__peer_msg__free_unpacked(p, NULL);
}

/* ---------------------------------------------------------------- socket reading */

/* Reads one whole message from sock (non-blocking): up to 3 frames kept
 * (frames beyond are read and dropped). Returns the frame count, 0 if none
 * waiting, -1 on error. */
static int recv_msg(void *sock, zmq_msg_t fr[3], int *n_dropped) {
    int n = 0, more = 1;
    *n_dropped = 0;
    while (more) {
        zmq_msg_t m;
        zmq_msg_init(&m);
        if (zmq_msg_recv(&m, sock, n == 0 ? ZMQ_DONTWAIT : 0) < 0) {
            zmq_msg_close(&m);
            for (int i = 0; i < n; i++) zmq_msg_close(&fr[i]);
            return (n == 0 && zmq_errno() == EAGAIN) ? 0 : -1;
        }
        more = zmq_msg_more(&m);
        if (n < 3) fr[n++] = m;
        else {
            zmq_msg_close(&m);
            (*n_dropped)++;
        }
    }
    return n;
}

static void read_coord(srv_t *s) {
    for (int k = 0; k < SRV_DRAIN_MSGS && !s->stop; k++) {
        zmq_msg_t fr[3];
        int dropped, n = recv_msg(s->coord, fr, &dropped);
        if (n <= 0) return;
        /* one frame expected; tolerate a leading empty delimiter */
        if (n == 1 && !dropped) {
            on_coord_frame(s, zmq_msg_data(&fr[0]), zmq_msg_size(&fr[0]));
        } else if (n == 2 && !dropped && zmq_msg_size(&fr[0]) == 0) {
            on_coord_frame(s, zmq_msg_data(&fr[1]), zmq_msg_size(&fr[1]));
        } else {
            bad_frame(s, "the coordinator", "message of %d frames", n + dropped);
        }
        for (int i = 0; i < n; i++) zmq_msg_close(&fr[i]);
    }
}

static void read_data(srv_t *s) {
    for (int k = 0; k < SRV_DRAIN_MSGS && !s->stop; k++) {
        zmq_msg_t fr[3];
        int dropped, n = recv_msg(s->data, fr, &dropped);
        if (n <= 0) return;
        if (n == 2 && !dropped) {
            on_data_frame(s, zmq_msg_data(&fr[0]), zmq_msg_size(&fr[0]), false, zmq_msg_data(&fr[1]),
                          zmq_msg_size(&fr[1]));
        } else if (n == 3 && !dropped && zmq_msg_size(&fr[1]) == 0) {
            on_data_frame(s, zmq_msg_data(&fr[0]), zmq_msg_size(&fr[0]), true, zmq_msg_data(&fr[2]),
                          zmq_msg_size(&fr[2]));
        } else {
            bad_frame(s, "a peer (data endpoint)", "message of %d frames", n + dropped);
        }
        for (int i = 0; i < n; i++) zmq_msg_close(&fr[i]);
    }
}

/* From the pull server thread: [identity, delimiter flag, payload]. */
static void read_forwarded(srv_t *s) {
    void *sock = kvs_forward_socket(s->kvs);
    for (int k = 0; k < SRV_DRAIN_MSGS && !s->stop; k++) {
        zmq_msg_t fr[3];
        int dropped, n = recv_msg(sock, fr, &dropped);
        if (n <= 0) return;
        if (n == 3 && !dropped && zmq_msg_size(&fr[1]) == 1)
            on_data_frame(s, zmq_msg_data(&fr[0]), zmq_msg_size(&fr[0]), *(const uint8_t *)zmq_msg_data(&fr[1]) != 0,
                          zmq_msg_data(&fr[2]), zmq_msg_size(&fr[2]));
        else bad_frame(s, "the pull server", "message of %d frames", n + dropped);
        for (int i = 0; i < n; i++) zmq_msg_close(&fr[i]);
    }
}

static void read_peer(srv_t *s, int pi) {
    for (int k = 0; k < SRV_DRAIN_MSGS && !s->stop && s->peers[pi].sock; k++) {
        zmq_msg_t fr[3];
        int dropped, n = recv_msg(s->peers[pi].sock, fr, &dropped);
        if (n <= 0) return;
        if (n == 1 && !dropped) on_peer_reply(s, pi, zmq_msg_data(&fr[0]), zmq_msg_size(&fr[0]));
        else if (n == 2 && !dropped && zmq_msg_size(&fr[0]) == 0)
            on_peer_reply(s, pi, zmq_msg_data(&fr[1]), zmq_msg_size(&fr[1]));
        else bad_frame(s, s->peers[pi].ep, "message of %d frames", n + dropped);
        for (int i = 0; i < n; i++) zmq_msg_close(&fr[i]);
    }
}

/* Monitor events of the coordinator connection: re-register after a reconnect. */
static void read_monitor(srv_t *s) {
    for (int k = 0; k < SRV_DRAIN_MSGS; k++) {
        zmq_msg_t fr[3];
        int dropped, n = recv_msg(s->mon, fr, &dropped);
        if (n <= 0) return;
        if (zmq_msg_size(&fr[0]) >= 6) {
            uint16_t ev;
            memcpy(&ev, zmq_msg_data(&fr[0]), 2);
            if (ev == ZMQ_EVENT_CONNECTED) {
                s->coord_up = true;
                slog(LOG_DEBUG, "connected to the coordinator");
                if (!s->registered) s->next_reg_ms = mono_ms(); /* register now */
            } else if (ev == ZMQ_EVENT_DISCONNECTED) {
                s->coord_up = false;
                if (s->registered)
                    slog(LOG_WARN, "lost the connection to the coordinator; re-registering when it is back");
                s->registered = false;
                s->next_reg_ms = mono_ms() + 5 * SRV_REG_RETRY_MS;
            }
        }
        for (int i = 0; i < n; i++) zmq_msg_close(&fr[i]);
    }
}

/* ---------------------------------------------------------------- setup, loop, teardown */

static void usage(FILE *f) {
    fprintf(f,
            "usage: helium-worker serve --coordinator ENDPOINT --model FILE [options]\n"
            "  --coordinator EP     coordinator's worker endpoint (e.g. tcp://127.0.0.1:7701)\n"
            "  --model FILE         GGUF model\n"
            "  --id ID              worker id (default w<pid>)\n"
            "  --data EP            bind this data endpoint for KV pulls (e.g. tcp://127.0.0.1:7711;\n"
            "                       tcp://127.0.0.1:* picks a free port); default: none\n"
            "  --advertise EP       data endpoint to tell peers (default: the bound one)\n"
            "  --threads N  --kv-mb MB  --block-size N  --batch-tokens N  --max-seqs N  --ctx N\n"
            "  --kv-blocks N        KV pages (overrides --kv-mb; at least ctx/block-size + 1)\n"
            "  --no-prefix-cache    compute every prompt token\n"
            "  --heartbeat-ms N     heartbeat period until the coordinator sets one (default 500)\n"
            "  --pull-timeout-ms N  give up on a KV pull after N ms and recompute (default 2000)\n"
            "  --inline-pulls       serve peers' KV pulls between engine steps (default: from a thread\n"
            "                       of their own, at once)\n"
            "  --log-level L        error | warn | info | debug (default info)\n");
}

enum { S_COORD = 256, S_MODEL, S_ID, S_DATA, S_ADV, S_THREADS, S_KVMB, S_KVBLOCKS, S_BS, S_BATCH, S_SEQS, S_CTX,
       S_NOPC, S_HB, S_PULLTO, S_INLINE, S_LOG, S_HELP };

static int parse_int(const char *name, const char *v, int lo, int hi, int *out) {
    if (args_int(v, lo, hi, out)) return 0;
    fprintf(stderr, "helium-worker serve: --%s must be an integer in [%d, %d]\n", name, lo, hi);
    return 2;
}

static int parse_args(int argc, char **argv, srv_opts *o) {
    static const struct option lo[] = {
        {"coordinator", 1, 0, S_COORD}, {"model", 1, 0, S_MODEL}, {"id", 1, 0, S_ID}, {"data", 1, 0, S_DATA},
        {"advertise", 1, 0, S_ADV}, {"threads", 1, 0, S_THREADS}, {"kv-mb", 1, 0, S_KVMB},
        {"kv-blocks", 1, 0, S_KVBLOCKS},
        {"block-size", 1, 0, S_BS}, {"batch-tokens", 1, 0, S_BATCH}, {"max-seqs", 1, 0, S_SEQS},
        {"ctx", 1, 0, S_CTX}, {"no-prefix-cache", 0, 0, S_NOPC}, {"heartbeat-ms", 1, 0, S_HB},
        {"pull-timeout-ms", 1, 0, S_PULLTO}, {"inline-pulls", 0, 0, S_INLINE}, {"log-level", 1, 0, S_LOG}, {"help", 0, 0, S_HELP}, {0, 0, 0, 0}};
    memset(o, 0, sizeof *o);
    o->heartbeat_ms = 500;
    o->pull_timeout_ms = 2000;
    o->level = LOG_INFO;
    optind = 2;
    int c, rc = 0, v;
    while ((c = getopt_long(argc, argv, "", lo, NULL)) != -1) {
        switch (c) {
        case S_COORD: o->coord_ep = optarg; break;
        case S_MODEL: o->model_path = optarg; break;
        case S_ID: o->id = optarg; break;
        case S_DATA: o->data_ep = optarg; break;
        case S_ADV: o->advertise = optarg; break;
        case S_THREADS: rc = parse_int("threads", optarg, 0, 1024, &o->ec.n_threads); break;
        case S_KVMB: rc = parse_int("kv-mb", optarg, 1, 1 << 20, &o->ec.kv_mem_mb); break;
        case S_KVBLOCKS: rc = parse_int("kv-blocks", optarg, 1, 1 << 24, &o->ec.n_blocks); break;
        case S_BS: rc = parse_int("block-size", optarg, 1, 1024, &o->ec.block_size); break;
        case S_BATCH: rc = parse_int("batch-tokens", optarg, 1, 1 << 20, &o->ec.max_batch_tokens); break;
        case S_SEQS: rc = parse_int("max-seqs", optarg, 1, 4096, &o->ec.max_seqs); break;
        case S_CTX: rc = parse_int("ctx", optarg, 2, 1 << 20, &o->ec.n_ctx); break;
        case S_NOPC: o->ec.no_prefix_cache = true; break;
        case S_HB: rc = parse_int("heartbeat-ms", optarg, 10, 600000, &o->heartbeat_ms); break;
        case S_PULLTO: rc = parse_int("pull-timeout-ms", optarg, 1, 600000, &o->pull_timeout_ms); break;
        case S_INLINE: o->inline_pulls = true; break;
        case S_LOG:
            v = -1;
            if (!strcmp(optarg, "error")) v = LOG_ERROR;
            else if (!strcmp(optarg, "warn")) v = LOG_WARN;
            else if (!strcmp(optarg, "info")) v = LOG_INFO;
            else if (!strcmp(optarg, "debug")) v = LOG_DEBUG;
            if (v < 0) {
                fprintf(stderr, "helium-worker serve: --log-level must be error, warn, info or debug\n");
                rc = 2;
            } else {
                o->level = (log_level)v;
            }
            break;
        case S_HELP: usage(stdout); exit(0);
        default: usage(stderr); return 2;
        }
        if (rc) return rc;
    }
    if (optind < argc) {
        fprintf(stderr, "helium-worker serve: unexpected argument '%s'\n", argv[optind]);
        return 2;
    }
    if (!o->coord_ep || !o->model_path) {
        fprintf(stderr, "helium-worker serve: --coordinator and --model are required\n");
        usage(stderr);
        return 2;
    }
    if (o->id) {
        size_t l = strlen(o->id);
        bool ok = l >= 1 && l <= WF_MAX_ID_LEN;
        for (size_t i = 0; ok && i < l; i++) {
            char ch = o->id[i];
            ok = (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') || ch == '_' ||
                 ch == '-' || ch == '.';
        }
        if (!ok) {
            fprintf(stderr, "helium-worker serve: --id must be 1-%d characters of [A-Za-z0-9_.-]\n", WF_MAX_ID_LEN);
            return 2;
        }
    }
    return 0;
}

static int setup(srv_t *s) {
    int rc = model_load(s->o.model_path, &s->m);
    if (rc) {
        slog(LOG_ERROR, "cannot load model %s: %s: %s", s->o.model_path, he_name(rc), he_msg());
        return 1;
    }
    s->e = eng_new(s->m, NULL, &s->o.ec);
    if (!s->e) {
        slog(LOG_ERROR, "cannot start the engine: %s", he_msg());
        return 1;
    }
    s->kvc = eng_kvc(s->e);
    s->bs = eng_block_size(s->e);
    s->page_bytes = eng_kv_page_bytes(s->e);
    s->geom = (kvs_geom){.model_root = s->m->root_hash, .n_layers = (uint32_t)s->m->hp.n_layers,
                         .kv_dim = (uint32_t)s->m->hp.kv_dim, .block_size = (uint32_t)s->bs,
                         .page_bytes = s->page_bytes, .protocol_version = SRV_PROTO};
    kvc_set_event_cb(s->kvc, on_cache_event, s);
    s->peers = calloc(SRV_MAX_PEERS, sizeof *s->peers);
    s->zctx = zmq_ctx_new();
    if (!s->peers || !s->zctx) {
        slog(LOG_ERROR, "out of memory");
        return 1;
    }
    int zero = 0, hwm = 100000;
    int64_t maxmsg = SRV_MAX_MSG_BYTES;
    /* coordinator DEALER */
    s->coord = zmq_socket(s->zctx, ZMQ_DEALER);
    if (!s->coord) goto zfail;
    zmq_setsockopt(s->coord, ZMQ_ROUTING_ID, s->id, strlen(s->id));
    zmq_setsockopt(s->coord, ZMQ_LINGER, &zero, sizeof zero);
    zmq_setsockopt(s->coord, ZMQ_SNDHWM, &hwm, sizeof hwm);
    zmq_setsockopt(s->coord, ZMQ_MAXMSGSIZE, &maxmsg, sizeof maxmsg);
    char mon_ep[96];
    snprintf(mon_ep, sizeof mon_ep, "inproc://helium-serve-monitor-%d", (int)getpid());
    if (zmq_socket_monitor(s->coord, mon_ep, ZMQ_EVENT_CONNECTED | ZMQ_EVENT_DISCONNECTED) != 0) goto zfail;
    s->mon = zmq_socket(s->zctx, ZMQ_PAIR);
    if (!s->mon || zmq_connect(s->mon, mon_ep) != 0) goto zfail;
    zmq_setsockopt(s->mon, ZMQ_LINGER, &zero, sizeof zero);
    if (zmq_connect(s->coord, s->o.coord_ep) != 0) {
        slog(LOG_ERROR, "bad coordinator endpoint '%s': %s", s->o.coord_ep, zmq_strerror(zmq_errno()));
        return 1;
    }
    /* data ROUTER */
    if (s->o.data_ep) {
        s->data = zmq_socket(s->zctx, ZMQ_ROUTER);
        if (!s->data) goto zfail;
        zmq_setsockopt(s->data, ZMQ_LINGER, &zero, sizeof zero);
        zmq_setsockopt(s->data, ZMQ_SNDHWM, &hwm, sizeof hwm);
        zmq_setsockopt(s->data, ZMQ_MAXMSGSIZE, &maxmsg, sizeof maxmsg);
        if (zmq_bind(s->data, s->o.data_ep) != 0) {
            slog(LOG_ERROR, "cannot bind data endpoint %s: %s", s->o.data_ep, zmq_strerror(zmq_errno()));
            return 1;
        }
        size_t l = sizeof s->data_ep;
        if (s->o.advertise) snprintf(s->data_ep, sizeof s->data_ep, "%s", s->o.advertise);
        else if (zmq_getsockopt(s->data, ZMQ_LAST_ENDPOINT, s->data_ep, &l) != 0)
            snprintf(s->data_ep, sizeof s->data_ep, "%s", s->o.data_ep);
        if (strstr(s->data_ep, "0.0.0.0") || strstr(s->data_ep, "//*"))
            slog(LOG_WARN, "data endpoint %s is not reachable as written; use --advertise", s->data_ep);
        if (!s->o.inline_pulls) {
            kvs_config kc = {.zctx = s->zctx, .data = s->data, .e = s->e, .geom = s->geom,
                             .max_blocks = eng_n_ctx(s->e) / s->bs + 1, .chunk_bytes = SRV_CHUNK_BYTES,
                             .log = kvs_log};
            if ((s->kvs = kvs_start(&kc))) s->data = NULL; /* the thread owns it now */
            else slog(LOG_WARN, "no pull server thread (%s): serving pulls between engine steps", he_msg());
        }
    }
    s->hb_ms = (uint32_t)s->o.heartbeat_ms;
    s->next_reg_ms = mono_ms() + 250; /* sooner once the monitor reports the connection */
    kvc_stats ks = kvc_get_stats(s->kvc);
    slog(LOG_INFO, "model %s (%d layers, kv_dim %d, ctx %d), %lld KV blocks of %d tokens; coordinator %s, data %s",
         s->m->name, s->m->hp.n_layers, s->m->hp.kv_dim, eng_n_ctx(s->e), (long long)ks.blocks_total, s->bs,
         s->o.coord_ep, s->data_ep[0] ? s->data_ep : "(none)");
    return 0;
zfail:
    slog(LOG_ERROR, "zmq setup failed: %s", zmq_strerror(zmq_errno()));
    return 1;
}

static void teardown(srv_t *s) {
    kvs_stop(&s->kvs); /* it closes the data socket */
    while (s->tasks) task_free(s, s->tasks);
    for (int i = 0; i < s->n_peers; i++) peer_close(&s->peers[i]);
    free(s->peers);
    if (s->coord) {
        zmq_socket_monitor(s->coord, NULL, 0);
        zmq_close(s->coord);
    }
    if (s->mon) zmq_close(s->mon);
    if (s->data) zmq_close(s->data);
    if (s->zctx) zmq_ctx_term(s->zctx);
    u64_free(&s->ev_stored);
    u64_free(&s->ev_removed);
    if (s->e) drop_all_tags(s);
    free(s->tags);
    eng_destroy(&s->e);
    model_destroy(&s->m);
}

/* Timers: registration retries, heartbeats, pull deadlines. Returns ms until
 * the next one is due (capped at SRV_MAX_POLL_MS). */
static int run_timers(srv_t *s) {
    int64_t now = mono_ms(), next = now + SRV_MAX_POLL_MS;
    if (!s->registered) {
        /* while the connection is down a Register would only queue up: retry
         * rarely then, and at once when the monitor reports a connection */
        if (now >= s->next_reg_ms) {
            send_register(s);
            s->next_reg_ms = now + (s->coord_up ? SRV_REG_RETRY_MS : 5 * SRV_REG_RETRY_MS);
        }
        if (s->next_reg_ms < next) next = s->next_reg_ms;
    } else {
        if (now >= s->next_hb_ms) {
            send_heartbeat(s);
            s->next_hb_ms = now + s->hb_ms;
        }
        if (s->next_hb_ms < next) next = s->next_hb_ms;
    }
    release_pull_waiters(s); /* a pull that ended without finish_pull (canceled task) */
    for (task_t *t = s->tasks, *nx; t; t = nx) {
        nx = t->next;
        if (!t->pulling) continue;
        if (now >= t->pull_deadline_ms) {
            if (t->peer >= 0 && t->peer < s->n_peers) s->peers[t->peer].broken = true;
            slog(LOG_WARN, "task %llu: KV pull %llu timed out; recomputing", (unsigned long long)t->task_id,
                 (unsigned long long)t->xfer);
            finish_pull(s, t, "timed out");
        } else if (t->pull_deadline_ms < next) {
            next = t->pull_deadline_ms;
        }
    }
    return next > now ? (int)(next - now) : 0;
}

static int serve_loop(srv_t *s) {
    zmq_pollitem_t items[3 + SRV_MAX_PEERS];
    int peer_of[3 + SRV_MAX_PEERS];
    while (!s->stop && !g_stop_signal) {
        int wait = run_timers(s);
        bool busy = eng_n_running(s->e) + eng_n_waiting(s->e) > 0;
        int n = 0;
        items[n++] = (zmq_pollitem_t){.socket = s->coord, .events = ZMQ_POLLIN};
        items[n++] = (zmq_pollitem_t){.socket = s->mon, .events = ZMQ_POLLIN};
        if (s->data) items[n++] = (zmq_pollitem_t){.socket = s->data, .events = ZMQ_POLLIN};
        else if (s->kvs) items[n++] = (zmq_pollitem_t){.socket = kvs_forward_socket(s->kvs), .events = ZMQ_POLLIN};
        int fixed = n;
        for (int i = 0; i < s->n_peers; i++)
            if (s->peers[i].sock) {
                peer_of[n] = i;
                items[n++] = (zmq_pollitem_t){.socket = s->peers[i].sock, .events = ZMQ_POLLIN};
            }
        int rc = zmq_poll(items, n, busy ? 0 : wait);
        if (rc < 0) {
            if (zmq_errno() == EINTR) continue;
            slog(LOG_ERROR, "zmq_poll: %s", zmq_strerror(zmq_errno()));
            return 1;
        }
        if (items[0].revents & ZMQ_POLLIN) read_coord(s);
        if (items[1].revents & ZMQ_POLLIN) read_monitor(s);
        if (fixed > 2 && (items[2].revents & ZMQ_POLLIN)) {
            if (s->data) read_data(s);
            else read_forwarded(s);
        }
        for (int i = fixed; i < n; i++)
            if (items[i].revents & ZMQ_POLLIN) read_peer(s, peer_of[i]);
        if (s->stop) break;
        if (eng_n_running(s->e) + eng_n_waiting(s->e) > 0) {
            int64_t t0 = mono_us();
            int st = eng_step(s->e);
            s->step_us += mono_us() - t0;
            if (st < 0) {
                slog(LOG_ERROR, "engine step failed: %s: %s", he_name(st), he_msg());
                while (s->tasks) fail_task(s, s->tasks, HELIUM__ERROR_CODE__ERROR_INTERNAL, "engine failure");
                return 1;
            }
            after_step(s);
        }
        if (s->draining && s->n_tasks == 0) {
            slog(LOG_INFO, "drained; exiting");
            break;
        }
    }
    if (g_stop_signal) slog(LOG_INFO, "signal received; exiting");
    return s->exit_code;
}

int worker_serve_main(int argc, char **argv) {
    srv_t *s = calloc(1, sizeof *s);
    if (!s) return 1;
    int rc = parse_args(argc, argv, &s->o);
    if (rc) {
        free(s);
        return rc;
    }
    g_log_level = s->o.level;
    if (s->o.id) snprintf(s->id, sizeof s->id, "%s", s->o.id);
    else snprintf(s->id, sizeof s->id, "w%d", (int)getpid());
    snprintf(g_log_id, sizeof g_log_id, "%s", s->id);
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);
    rc = setup(s);
    if (!rc) rc = serve_loop(s);
    teardown(s);
    slog(LOG_INFO, "stopped (exit %d)", rc);
    free(s);
    return rc;
}
