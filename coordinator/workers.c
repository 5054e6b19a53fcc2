/* workers: see workers.h.
 *
 * Rates: each heartbeat carries cumulative counters. The forward-pass speed
 * is (delta computed_tokens + delta generated_tokens) / delta forward_us,
 * smoothed (EMA, weight 1/2) over heartbeats whose forward time grew by at
 * least 20 ms, so idle heartbeats leave the estimate alone. The pull
 * bandwidth likewise comes from pulled_tokens and pull_us when the worker
 * reports them.
 */
#include "workers.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "herr.h"

struct wkrs {
    wkr_t *w[DIR_MAX_WORKERS]; /* by slot; NULL = free */
    int cap;                   /* highest used slot + 1 */
};

wkrs_t *wkrs_new(void) { return calloc(1, sizeof(wkrs_t)); }

static void wkr_free(wkr_t *w) {
    if (!w) return;
    free(w->inflight);
    hcount_destroy(&w->ws_blocks);
    for (int k = 0; k < 2; k++) hcount_destroy(&w->ws_pins[k]);
    free(w);
}

void wkrs_destroy(wkrs_t **self_p) {
    if (!self_p || !*self_p) return;
    for (int i = 0; i < DIR_MAX_WORKERS; i++) wkr_free((*self_p)->w[i]);
    free(*self_p);
    *self_p = NULL;
}

wkr_t *wkrs_by_ident(wkrs_t *t, const void *ident, size_t len) {
    for (int i = 0; i < t->cap; i++) {
        wkr_t *w = t->w[i];
        if (w && w->ident_len == len && memcmp(w->ident, ident, len) == 0) return w;
    }
    return NULL;
}

wkr_t *wkrs_by_slot(wkrs_t *t, int slot) {
    return slot >= 0 && slot < DIR_MAX_WORKERS ? t->w[slot] : NULL;
}

int wkrs_cap(const wkrs_t *t) { return t->cap; }

int wkrs_alive(const wkrs_t *t) {
    int n = 0;
    for (int i = 0; i < t->cap; i++) n += t->w[i] && t->w[i]->alive;
    return n;
}

int wkrs_add(wkrs_t *t, const void *ident, size_t len, wkr_t **out) {
    *out = NULL;
    if (len == 0 || len > WKR_IDENT_MAX) return he_set(HE_EINVAL, "bad routing id length %zu", len);
    int slot = -1;
    for (int i = 0; i < DIR_MAX_WORKERS && slot < 0; i++)
        if (!t->w[i]) slot = i;
    for (int i = 0; i < t->cap && slot < 0; i++) /* reuse a dead worker's slot */
        if (!t->w[i]->alive && t->w[i]->n_inflight == 0) {
            wkr_free(t->w[i]);
            t->w[i] = NULL;
            slot = i;
        }
    if (slot < 0) return he_set(HE_ELIMIT, "the coordinator serves at most %d workers", DIR_MAX_WORKERS);
    wkr_t *w = calloc(1, sizeof *w);
    if (!w) return he_set(HE_ENOMEM, "out of memory");
    static uint64_t uids; /* the coordinator's loop is single-threaded (workers.h) */
    w->uid = ++uids;
    w->slot = slot;
    memcpy(w->ident, ident, len);
    w->ident_len = len;
    t->w[slot] = w;
    if (slot + 1 > t->cap) t->cap = slot + 1;
    *out = w;
    return 0;
}

static void copy_str(char *dst, size_t cap, const char *s) { snprintf(dst, cap, "%s", s ? s : ""); }

void wkr_register(wkr_t *w, const Helium__Register *reg, uint64_t now_us) {
    w->draining = false;
    if (reg->worker_id && *reg->worker_id) {
        copy_str(w->id, sizeof w->id, reg->worker_id);
    } else {
        bool printable = w->ident_len < sizeof w->id;
        for (size_t i = 0; printable && i < w->ident_len; i++)
            printable = isgraph(w->ident[i]) != 0;
        if (printable) {
            memcpy(w->id, w->ident, w->ident_len);
            w->id[w->ident_len] = 0;
        } else {
            snprintf(w->id, sizeof w->id, "w%d", w->slot);
        }
    }
    copy_str(w->model, sizeof w->model, reg->model);
    copy_str(w->backend, sizeof w->backend, reg->backend);
    copy_str(w->endpoint, sizeof w->endpoint, reg->data_endpoint);
    copy_str(w->data_key, sizeof w->data_key, reg->data_key);
    copy_str(w->kv_dtype, sizeof w->kv_dtype, reg->kv_dtype);
    copy_str(w->kv_xport, sizeof w->kv_xport, reg->kv_xport);
    copy_str(w->xport_domain, sizeof w->xport_domain, reg->xport_domain);
    copy_str(w->version, sizeof w->version, reg->version);
    w->model_root = reg->model_root;
    w->block_size = reg->block_size;
    w->kv_blocks_total = reg->kv_blocks_total;
    w->n_ctx = reg->n_ctx;
    w->max_batch = reg->max_batch;
    w->n_layers = reg->n_layers;
    w->kv_dim = reg->kv_dim;
    size_t dbytes = strcmp(w->kv_dtype, "f16") == 0 || strcmp(w->kv_dtype, "bf16") == 0 ? 2 : 4;
    w->page_bytes = (size_t)w->n_layers * 2 * w->block_size * w->kv_dim * dbytes;
    w->registered_us = now_us;
    w->running = w->queued = w->kv_used = w->kv_cached = 0;
    w->kv_free = w->kv_blocks_total;
    w->reserved_pages = 0;
    w->n_counters = 0;
    w->prefill_tok_s = w->link_bytes_s = w->xport_link_bytes_s = 0;
    w->have_prev = false;
    w->cache_seq = 0;
    w->seq_known = false;
    w->resync_pending = false;
}

const char *wkr_xport_shared(const wkr_t *src, const wkr_t *dst) {
    if (!src || !dst || src == dst || !src->kv_xport[0] || strcmp(src->kv_xport, dst->kv_xport)) return NULL;
    if (strcmp(src->xport_domain, dst->xport_domain)) return NULL;
    if (strcmp(src->kv_dtype, dst->kv_dtype)) return NULL; /* a transport moves raw pool pages */
    return src->kv_xport;
}

/* A link rate from one pair of cumulative counters (tokens pulled, link
 * microseconds): updates *rate (an EMA) once 1 ms of new link time and new
 * tokens have accumulated since *pt / *pu, then moves them; resets them when
 * the counters went back (a restarted worker). */
static double ema(double old, double x);
static void link_rate(const wkr_t *w, uint64_t tokens, uint64_t us, uint64_t *pt, uint64_t *pu, double *rate) {
    if (us >= *pu + 1000 && tokens > *pt && w->block_size) {
        double bytes = (double)(tokens - *pt) / w->block_size * (double)w->page_bytes;
        *rate = ema(*rate, bytes / ((double)(us - *pu) / 1e6));
        *pt = tokens;
        *pu = us;
    }
    if (us < *pu || tokens < *pt) {
        *pt = tokens;
        *pu = us;
    }
}

uint64_t wkr_counter_get(const wkr_t *w, const char *key) {
    for (size_t i = 0; i < w->n_counters; i++)
        if (strcmp(w->counters[i].key, key) == 0) return w->counters[i].value;
    return 0;
}

static double ema(double old, double x) { return old > 0 ? 0.5 * old + 0.5 * x : x; }

void wkr_heartbeat(wkr_t *w, const Helium__Heartbeat *hb, uint64_t now_us) {
    w->last_hb_us = now_us;
    if (hb->load) {
        w->running = hb->load->running;
        w->queued = hb->load->queued;
        w->kv_used = hb->load->kv_used;
        w->kv_cached = hb->load->kv_cached;
        w->kv_free = hb->load->kv_free;
        w->reserved_pages = 0;
    }
    w->n_counters = 0;
    for (size_t i = 0; i < hb->n_counters && w->n_counters < WKR_MAX_COUNTERS; i++) {
        const Helium__Heartbeat__CountersEntry *e = hb->counters[i];
        if (!e || !e->key || !*e->key) continue;
        wkr_counter *c = &w->counters[w->n_counters++];
        copy_str(c->key, sizeof c->key, e->key);
        c->value = e->value;
    }
    uint64_t tokens = wkr_counter_get(w, "computed_tokens") + wkr_counter_get(w, "generated_tokens");
    uint64_t fwd = wkr_counter_get(w, "forward_us");
    /* pulled_tokens / pull_us cover every pull; the xport_ ones the pulls over
     * the worker's transport: ZeroMQ's share is the difference */
    uint64_t xpulled = wkr_counter_get(w, "xport_pulled_tokens"), xpull_us = wkr_counter_get(w, "xport_pull_us");
    uint64_t pulled = wkr_counter_get(w, "pulled_tokens"), pull_us = wkr_counter_get(w, "pull_us");
    pulled = pulled > xpulled ? pulled - xpulled : 0;
    pull_us = pull_us > xpull_us ? pull_us - xpull_us : 0;
    if (w->have_prev) {
        if (fwd >= w->prev_forward_us + 20000 && tokens >= w->prev_tokens) {
            double x = (double)(tokens - w->prev_tokens) / ((double)(fwd - w->prev_forward_us) / 1e6);
            if (x > 0) w->prefill_tok_s = ema(w->prefill_tok_s, x);
            w->prev_tokens = tokens;
            w->prev_forward_us = fwd;
        }
        link_rate(w, pulled, pull_us, &w->prev_pulled, &w->prev_pull_us, &w->link_bytes_s);
        link_rate(w, xpulled, xpull_us, &w->prev_xpulled, &w->prev_xpull_us, &w->xport_link_bytes_s);
        if (fwd < w->prev_forward_us || tokens < w->prev_tokens) { /* counters were reset */
            w->prev_tokens = tokens;
            w->prev_forward_us = fwd;
        }
    } else {
        w->prev_xpulled = xpulled;
        w->prev_xpull_us = xpull_us;
        w->prev_tokens = tokens;
        w->prev_forward_us = fwd;
        w->prev_pulled = pulled;
        w->prev_pull_us = pull_us;
        w->have_prev = true;
    }
}

int32_t wkr_kv_avail(const wkr_t *w) {
    int64_t a = (int64_t)w->kv_free + w->kv_cached - w->reserved_pages;
    if (a > (int64_t)w->kv_blocks_total) a = w->kv_blocks_total;
    if (a < 0) a = 0;
    return (int32_t)a;
}

/* Source of inflight_gen values: unique across workers and slot reuse. The
 * coordinator's loop is single-threaded (workers.h). */
static uint64_t inflight_gens;

/* A block entered (d = 1) or left (d = -1) w's set of in-flight blocks:
 * the count of blocks also in a pins' set moves with it. */
static void ws_both_move(wkr_t *w, uint64_t h, int d) {
    for (int k = 0; k < 2; k++)
        if (w->ws_pins[k] && hcount_get(w->ws_pins[k], h)) w->ws_both[k] += d;
}

/* Keeps w's counted set of in-flight prompt blocks (a task's hashes and
 * pages do not change while it is in flight), and the blocks it shares with
 * the pins' sets. On ENOMEM the set is given up (ws_bad) and the optimizer
 * rebuilds working sets from the list instead. */
static void ws_track(wkr_t *w, const job_task *t, bool add) {
    if (t->kind != JT_LLM) return;
    if (add) {
        w->n_llm_inflight++;
    } else if (w->n_llm_inflight > 0) {
        w->n_llm_inflight--;
    }
    int64_t priv = t->pages > t->n_hashes ? t->pages - t->n_hashes : 0;
    w->ws_priv += add ? priv : -priv;
    if (w->ws_bad) return;
    if (!w->ws_blocks && !(w->ws_blocks = hcount_new())) {
        w->ws_bad = true;
        return;
    }
    for (int32_t k = 0; k < t->n_hashes; k++) {
        uint64_t h = t->hashes[k];
        uint32_t was = hcount_get(w->ws_blocks, h);
        if (!add) {
            if (!was) continue;
            hcount_remove(w->ws_blocks, h);
            if (was == 1) ws_both_move(w, h, -1);
        } else if (hcount_add(w->ws_blocks, h)) {
            w->ws_bad = true;
            return;
        } else if (was == 0) {
            ws_both_move(w, h, 1);
        }
    }
}

int wkr_inflight_add(wkr_t *w, job_task *t) {
    if (w->n_inflight == w->cap_inflight) {
        size_t c = w->cap_inflight ? w->cap_inflight * 2 : 16;
        job_task **v = realloc(w->inflight, c * sizeof *v);
        if (!v) return he_set(HE_ENOMEM, "out of memory");
        w->inflight = v;
        w->cap_inflight = c;
    }
    w->inflight[w->n_inflight++] = t;
    w->inflight_gen = ++inflight_gens;
    ws_track(w, t, true);
    w->load_tokens += t->load_tokens;
    w->reserved_pages += t->reserve_pages;
    return 0;
}

void wkr_inflight_remove(wkr_t *w, job_task *t) {
    for (size_t i = 0; i < w->n_inflight; i++)
        if (w->inflight[i] == t) {
            w->inflight[i] = w->inflight[--w->n_inflight];
            w->inflight_gen = ++inflight_gens;
            ws_track(w, t, false);
            w->inflight_removed++;
            w->load_tokens -= t->load_tokens;
            if (w->load_tokens < 0) w->load_tokens = 0;
            w->reserved_pages -= t->reserve_pages; /* its pages become reclaimable */
            return;
        }
}
