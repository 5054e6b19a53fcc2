/* sched: see sched.h.
 *
 * KV demand: a task may need ceil((prompt + max_tokens) / block_size) pages,
 * capped by the context and by the largest eligible worker's pool (a task
 * bigger than every pool still runs; the engine preempts as needed). Work
 * per placement: one bh_prefix over the prompt, one dir_match, and
 * route_pick over at most DIR_MAX_WORKERS workers.
 */
#include "sched.h"

#include <stdlib.h>
#include <string.h>

#include "blockhash.h"
#include "herr.h"
#include "log.h"

#define PEND_BUCKETS 4096u

/* How many dispatched tasks on one worker count a pending block: the block
 * leaves the pending directory only when the last of them ends. */
typedef struct pend_ref {
    uint64_t hash;
    int slot;
    int32_t n;
    struct pend_ref *next;
} pend_ref;

struct sched {
    dir_t *dir;
    dir_t *pending;         /* blocks of dispatched, unfinished tasks (owned) */
    pend_ref **pref;        /* (n_buckets, a power of two) their counts */
    uint32_t n_buckets;     /* PEND_BUCKETS at first; doubles when refs pass twice it */
    size_t n_refs;
    wkrs_t *ws;
    route_config rc;
    double helium_load_weight;
    int64_t helium_starve_tokens;
    bool helium_hold_idle;  /* hold even a call whose pick is about to go idle */
    bool helium_split;      /* hold a sibling whose group's worker is the heavier one, to pull it elsewhere */
    bool baseline_pulls;    /* router and kvflow may move KV between workers too */
    sched_fit_fn helium_fit; /* helium's KV admission (NULL: the free-page guard) */
    void *helium_fit_ctx;
    uint64_t root;
    uint32_t block_size;
    bool have_model;
    uint64_t *hashes;       /* (cap_hashes) scratch */
    int32_t cap_hashes;
    uint32_t rr;            /* round-robin cursor (isolated) */
    sched_counters c;
};

int sched_policy_from_name(const char *s) {
    if (!s) return -1;
    if (strcmp(s, "router") == 0) return SCHED_ROUTER;
    if (strcmp(s, "prefix") == 0) return SCHED_PREFIX;
    if (strcmp(s, "isolated") == 0) return SCHED_ISOLATED;
    if (strcmp(s, "kvflow") == 0) return SCHED_KVFLOW;
    if (strcmp(s, "helium") == 0) return SCHED_HELIUM;
    return -1;
}

const char *sched_policy_name(sched_policy p) {
    switch (p) {
    case SCHED_ROUTER: return "router";
    case SCHED_PREFIX: return "prefix";
    case SCHED_ISOLATED: return "isolated";
    case SCHED_KVFLOW: return "kvflow";
    case SCHED_HELIUM: return "helium";
    case SCHED_N_POLICIES: break;
    }
    return "?";
}

bool sched_cache_aware(sched_policy p) { return p == SCHED_ROUTER || p == SCHED_KVFLOW || p == SCHED_HELIUM; }
bool sched_shares_cache(sched_policy p) { return p != SCHED_ISOLATED; }
bool sched_feeds_jobs(sched_policy p) { return p == SCHED_HELIUM; }

sched_t *sched_new(dir_t *dir, wkrs_t *workers) {
    sched_t *s = calloc(1, sizeof *s);
    if (!s) return NULL;
    s->dir = dir;
    s->ws = workers;
    if (!(s->pending = dir_new()) || !(s->pref = calloc(PEND_BUCKETS, sizeof *s->pref))) {
        dir_destroy(&s->pending);
        free(s);
        return NULL;
    }
    s->n_buckets = PEND_BUCKETS;
    route_config_default(&s->rc);
    s->helium_load_weight = 0.25;
    s->helium_starve_tokens = 512;
    s->helium_hold_idle = true;
    s->helium_split = true;
    s->baseline_pulls = true;
    return s;
}

void sched_destroy(sched_t **self_p) {
    if (!self_p || !*self_p) return;
    sched_t *s = *self_p;
    for (uint32_t b = 0; b < s->n_buckets; b++)
        for (pend_ref *r = s->pref[b], *nx; r; r = nx) {
            nx = r->next;
            free(r);
        }
    free(s->pref);
    free(s->hashes);
    dir_destroy(&s->pending);
    free(*self_p);
    *self_p = NULL;
}

void sched_set_model(sched_t *s, uint64_t root, uint32_t block_size, size_t page_bytes) {
    s->root = root;
    s->block_size = block_size;
    s->rc.page_bytes = page_bytes;
    s->have_model = true;
}

route_config *sched_route_config(sched_t *s) { return &s->rc; }

int32_t sched_real_run(sched_t *s, int slot, const uint64_t *hashes, int32_t n) {
    if (slot < 0 || slot >= DIR_MAX_WORKERS || n <= 0) return 0;
    int32_t r = 0;
    while (r < n && dir_holds(s->dir, hashes[r], slot)) r++;
    return r;
}

void sched_prefill_progress(sched_t *s, wkr_t *w) {
    int32_t bs = (int32_t)s->block_size;
    if (bs <= 0) return;
    for (size_t i = 0; i < w->n_inflight; i++) {
        job_task *t = w->inflight[i];
        if (t->kind != JT_LLM || !t->hashes || t->n_hashes <= 0) continue;
        if (t->load_tokens <= t->decode_tokens) continue; /* its prefill is done already */
        /* the run only grows while it is in flight (its blocks are in use
         * there once computed): extend it from where it was seen last,
         * O(new blocks) per event instead of O(run) */
        int32_t r = t->prog_run > 0 && t->prog_run <= t->n_hashes ? t->prog_run : 0;
        if (w->slot >= 0 && w->slot < DIR_MAX_WORKERS)
            while (r < t->n_hashes && dir_holds(s->dir, t->hashes[r], w->slot)) r++;
        t->prog_run = r;
        int64_t left = (int64_t)t->n_ids - (int64_t)r * bs;
        if (left < 0) left = 0;
        left += t->decode_tokens;
        if (left >= t->load_tokens) continue;
        w->load_tokens -= t->load_tokens - left;
        if (w->load_tokens < 0) w->load_tokens = 0;
        t->load_tokens = left;
    }
}

int64_t sched_helium_starve_tokens(const sched_t *s) { return s->helium_starve_tokens; }

void sched_set_helium_weights(sched_t *s, double load_weight, int64_t starve_tokens) {
    if (load_weight >= 0) s->helium_load_weight = load_weight;
    if (starve_tokens >= 0) s->helium_starve_tokens = starve_tokens;
}

void sched_set_helium_hold_idle(sched_t *s, bool on) { s->helium_hold_idle = on; }
void sched_set_helium_split(sched_t *s, bool on) { s->helium_split = on; }
void sched_set_baseline_pulls(sched_t *s, bool on) { s->baseline_pulls = on; }

/* Helium's split rule: the pick reuses a prefix it is still computing (a
 * group of siblings follows its leader there). If some other eligible worker
 * would, after pulling that prefix once it is committed, still carry less
 * work than the pick carries now -- the move shortens the busier queue --
 * returns true: the call waits, and when the pages are committed routing
 * sends it there with a pull. Whole groups cannot balance two workers when
 * there are, say, five of them; this splits the last one. A prefix of a
 * quarter of the other worker's KV or more is not copied (as coord.c's KV
 * admission does not copy one). */
static bool split_pays(const sched_t *s, const route_config *rc, const route_worker *rw, int nw, int pick,
                       const int32_t *runs, const int32_t *real, const int32_t *pend, wkr_t *const *wk, int32_t n,
                       int32_t pages, uint32_t max_tokens) {
    int psl = wk[pick]->slot;
    int32_t bs = (int32_t)s->block_size, r = runs[psl];
    if (r <= 0 || pend[psl] <= real[psl] || rc->page_bytes == 0) return false;
    int64_t reuse = (int64_t)r * bs > n - 1 ? n - 1 : (int64_t)r * bs;
    int64_t own = (int64_t)n - reuse + max_tokens;
    for (int k = 0; k < nw; k++) {
        if (k == pick || rw[k].kv_blocks_avail < pages) continue;
        int32_t missing = r - runs[wk[k]->slot];
        /* a prefix large against k's KV (a quarter or more) is not copied
         * there: under KV pressure two copies would evict what both need */
        if (missing <= 0 || 4 * (int64_t)missing >= (int64_t)wk[k]->kv_blocks_total) continue;
        double t_pull, t_rec;
        double rate = route_pull_times_pair(rc, &rw[k], &rw[pick], missing, bs, &t_pull, &t_rec);
        if (t_pull >= t_rec) continue;
        if (rw[k].load_tokens + own + (int64_t)(t_pull * rate) < rw[pick].load_tokens) return true;
    }
    return false;
}

void sched_set_helium_fit(sched_t *s, sched_fit_fn fit, void *ctx) {
    s->helium_fit = fit;
    s->helium_fit_ctx = ctx;
}

void sched_get_counters(const sched_t *s, sched_counters *out) { *out = s->c; }

static uint32_t pend_bucket(uint64_t hash, int slot, uint32_t n_buckets) {
    uint64_t x = (hash ^ (uint64_t)slot * 0x9e3779b97f4a7c15ULL) * 0xbf58476d1ce4e5b9ULL;
    return (uint32_t)(x >> 32) & (n_buckets - 1);
}

/* Doubles the buckets once the refs pass twice their number (chains stay
 * short at 128 workers); on ENOMEM the table keeps its size. */
static void pend_grow(sched_t *s) {
    if (s->n_refs <= 2 * (size_t)s->n_buckets || s->n_buckets >= (1u << 30)) return;
    uint32_t nb = s->n_buckets * 2;
    pend_ref **nt = calloc(nb, sizeof *nt);
    if (!nt) return;
    for (uint32_t b = 0; b < s->n_buckets; b++)
        for (pend_ref *r = s->pref[b], *nx; r; r = nx) {
            nx = r->next;
            uint32_t k = pend_bucket(r->hash, r->slot, nb);
            r->next = nt[k];
            nt[k] = r;
        }
    free(s->pref);
    s->pref = nt;
    s->n_buckets = nb;
}

static pend_ref **pend_find(sched_t *s, uint64_t hash, int slot) {
    pend_ref **p = &s->pref[pend_bucket(hash, slot, s->n_buckets)];
    while (*p && ((*p)->hash != hash || (*p)->slot != slot)) p = &(*p)->next;
    return p;
}

void sched_pending_add(sched_t *s, int slot, const uint64_t *hashes, int32_t n) {
    for (int32_t i = 0; i < n; i++) {
        pend_ref **p = pend_find(s, hashes[i], slot);
        if (*p) {
            (*p)->n++;
            continue;
        }
        pend_ref *r = malloc(sizeof *r);
        if (!r) continue; /* uncounted: the block may leave the directory early (placement only) */
        *r = (pend_ref){.hash = hashes[i], .slot = slot, .n = 1, .next = NULL};
        *p = r;
        s->n_refs++;
        dir_add(s->pending, hashes[i], slot);
    }
    pend_grow(s);
}

void sched_pending_remove(sched_t *s, int slot, const uint64_t *hashes, int32_t n) {
    for (int32_t i = 0; i < n; i++) {
        pend_ref **p = pend_find(s, hashes[i], slot), *r = *p;
        if (!r || --r->n > 0) continue; /* never added (an isolated task), or others still count it */
        *p = r->next;
        free(r);
        s->n_refs--;
        dir_remove(s->pending, hashes[i], slot);
    }
}

void sched_pending_drop(sched_t *s, int slot) {
    for (uint32_t b = 0; b < s->n_buckets; b++)
        for (pend_ref **p = &s->pref[b]; *p;) {
            if ((*p)->slot == slot) {
                pend_ref *r = *p;
                *p = r->next;
                free(r);
                s->n_refs--;
            } else {
                p = &(*p)->next;
            }
        }
    dir_drop_worker(s->pending, slot);
}

/* Longest run of prompt blocks that a worker other than pick is computing
 * now (pending, beyond what it has cached), capped at cap. */
static int32_t pending_elsewhere(wkr_t *const *wk, int nw, int pick, const int32_t *real, const int32_t *pend,
                                 int32_t cap, int *at_slot) {
    int32_t pe = 0;
    *at_slot = -1;
    for (int k = 0; k < nw; k++) {
        if (k == pick) continue;
        int sl = wk[k]->slot;
        if (sl < 0 || sl >= DIR_MAX_WORKERS || pend[sl] <= real[sl]) continue;
        int32_t r = pend[sl] > cap ? cap : pend[sl];
        if (r > pe) {
            pe = r;
            *at_slot = sl;
        }
    }
    return pe;
}

/* Prompt blocks the decision's worker will hold before computing: its own
 * run (cached or pending) plus what it pulls. */
static int32_t have_after(const route_decision *d) { return d->reuse_blocks + (d->pull_from >= 0 ? d->pull_blocks : 0); }

static bool same_model(const sched_t *s, const wkr_t *w) {
    return s->have_model && w->model_root == s->root && w->block_size == s->block_size;
}

int sched_place(sched_t *s, sched_policy policy, const int32_t *ids, int32_t n, uint32_t max_tokens,
                sched_choice *out) {
    int rc = sched_place_ex(s, policy, ids, n, max_tokens, SCHED_DRY, out);
    if (rc == 0 && out->worker) sched_count(s, out);
    return rc;
}

void sched_count(sched_t *s, const sched_choice *ch) {
    s->c.decisions++;
    if (ch->reuse_blocks > 0) s->c.affinity++;
    if (ch->pull_from) {
        s->c.pulls++;
        s->c.pull_blocks += (uint64_t)ch->pull_blocks;
    } else if (ch->d.t_pull_s > 0 || ch->d.t_recompute_s > 0) {
        s->c.recomputes++;
    }
    if (ch->d.imbalanced) s->c.imbalanced++;
}

/* The prompt's block hashes: pre (pre_nb of them) when the caller has them
 * (sched_hashes), else computed into the scratch. */
typedef struct {
    const uint64_t *pre;
    int32_t pre_nb;
} prompt_hashes;

static int place(sched_t *s, sched_policy policy, const int32_t *ids, int32_t n, prompt_hashes ph,
                 uint32_t max_tokens, int only, unsigned flags, sched_choice *out);

int sched_place_ex(sched_t *s, sched_policy policy, const int32_t *ids, int32_t n, uint32_t max_tokens,
                   unsigned flags, sched_choice *out) {
    return place(s, policy, ids, n, (prompt_hashes){NULL, 0}, max_tokens, -1, flags, out);
}

int sched_place_on(sched_t *s, sched_policy policy, const int32_t *ids, int32_t n, uint32_t max_tokens, int slot,
                   unsigned flags, sched_choice *out) {
    return place(s, policy, ids, n, (prompt_hashes){NULL, 0}, max_tokens, slot < 0 ? DIR_MAX_WORKERS : slot, flags,
                 out);
}

int sched_hashes(const sched_t *s, const int32_t *ids, int32_t n, uint64_t **out, int32_t *nb) {
    *out = NULL;
    *nb = 0;
    if (!s->have_model || s->block_size == 0 || n < (int32_t)s->block_size) return 0;
    int32_t cap = n / (int32_t)s->block_size;
    uint64_t *h = malloc((size_t)cap * sizeof *h);
    if (!h) return he_set(HE_ENOMEM, "out of memory");
    *nb = bh_prefix(s->root, ids, n, (int32_t)s->block_size, h);
    *out = h;
    return 0;
}

/* Of a call's pages, the leading blocks that calls in flight on worker slot
 * already hold (pend: their runs in the pending directory). */
static int32_t shared_pages(const int32_t *pend, int slot, int32_t pages) {
    return pend[slot] < pages ? pend[slot] : pages;
}

/* Workers that share a KV transport (wkr_xport_shared) get the same
 * non-zero group: a hash of transport, domain and KV type. */
static uint32_t sched_xport_group(const wkr_t *w) {
    if (!w->kv_xport[0]) return 0;
    uint32_t h = 2166136261u;
    const char *parts[3] = {w->kv_xport, w->xport_domain, w->kv_dtype};
    for (int i = 0; i < 3; i++) {
        for (const unsigned char *p = (const unsigned char *)parts[i]; *p; p++) h = (h ^ *p) * 16777619u;
        h = (h ^ 0xff) * 16777619u;
    }
    return h ? h : 1;
}

/* only >= 0: consider that slot alone. */
/* The workers one placement weighs, and the prompt's runs on each (by slot). */
typedef struct {
    route_worker rw[DIR_MAX_WORKERS]; /* (nw) eligible workers */
    wkr_t *wk[DIR_MAX_WORKERS];       /* (nw) */
    int nw;
    int32_t real[DIR_MAX_WORKERS];    /* runs the real directory shows (pull sources) */
    int32_t pend[DIR_MAX_WORKERS];    /* runs of blocks being computed by dispatched tasks */
    int32_t runs[DIR_MAX_WORKERS];    /* the larger of the two */
} cands;

/* Gathers the eligible workers (alive, same model, context holds n + 1;
 * only >= 0: that slot alone) into c. Returns 0, HE_EUNAVAIL or
 * HE_ECONTEXT; *max_pool is the largest eligible KV pool. */
static int gather(sched_t *s, int32_t n, int only, cands *c, int32_t *max_pool) {
    int n_alive = 0;
    uint32_t max_ctx = 0;
    c->nw = 0;
    *max_pool = 0;
    for (int i = 0; i < wkrs_cap(s->ws); i++) {
        wkr_t *w = wkrs_by_slot(s->ws, i);
        if (!w || !w->alive || w->draining || !same_model(s, w)) continue;
        n_alive++;
        if (only >= 0 && i != only) continue;
        if (w->n_ctx > max_ctx) max_ctx = w->n_ctx;
        if ((int64_t)n + 1 > (int64_t)w->n_ctx) continue;
        if ((int32_t)w->kv_blocks_total > *max_pool) *max_pool = (int32_t)w->kv_blocks_total;
        c->wk[c->nw] = w;
        c->rw[c->nw] = (route_worker){.slot = w->slot, .alive = true, .kv_blocks_avail = wkr_kv_avail(w),
                                      .load_tokens = w->load_tokens, .prefill_tok_s = w->prefill_tok_s,
                                      .link_bytes_s = w->link_bytes_s,
                                      .xport_group = sched_xport_group(w),
                                      .xport_link_bytes_s = w->xport_link_bytes_s};
        c->nw++;
    }
    if (n_alive == 0) return he_set(HE_EUNAVAIL, "no worker is alive");
    if (c->nw == 0)
        return he_set(HE_ECONTEXT, "the prompt has %d tokens; with one generated token it does not fit the "
                      "context of %u tokens", n, max_ctx);
    return 0;
}

/* Cache-aware and cache-blind (prefix) placement: matches the prompt's nb
 * block hashes against both directories, adjusts each worker's room, and
 * lets route_pick_src decide (*d); for helium also its hold and split rules
 * (out->hold, out->split). Returns the pick's index in c, or -1. */
static int pick_routed(sched_t *s, sched_policy policy, int32_t n, int32_t nb, int32_t pages, uint32_t max_tokens,
                       cands *c, route_decision *d, sched_choice *out) {
    bool aware = sched_cache_aware(policy);
    int32_t bs = (int32_t)s->block_size;
    int nw = c->nw;
    if (aware && nb) {
        dir_match(s->dir, s->hashes, nb, c->real);
        dir_match(s->pending, s->hashes, nb, c->pend);
        for (int w = 0; w < DIR_MAX_WORKERS; w++) c->runs[w] = c->real[w] > c->pend[w] ? c->real[w] : c->pend[w];
    }
    /* The leading blocks that calls in flight on a worker already hold
     * (their pages are in use there, or reserved by them) are shared,
     * not allocated again: a worker needs room only for the rest. */
    for (int k = 0; k < nw; k++) {
        /* helium's admission knows which pages are its own pinned
         * prefixes (this call's among them) and which can go */
        if (policy == SCHED_HELIUM && s->helium_fit)
            c->rw[k].kv_blocks_avail = s->helium_fit(s->helium_fit_ctx, c->wk[k], s->hashes, nb, pages) ? pages : 0;
        else
            c->rw[k].kv_blocks_avail += shared_pages(c->pend, c->wk[k]->slot, pages);
    }
    route_config rc = s->rc;
    rc.cache_aware = aware;
    rc.allow_pull = aware && rc.page_bytes > 0 && (policy == SCHED_HELIUM || s->baseline_pulls);
    if (policy == SCHED_HELIUM) {
        rc.load_weight = s->helium_load_weight;
        rc.starve_tokens = s->helium_starve_tokens;
        /* A pull's measured rate includes the time the request waits for
         * the busy source's current step; a worker with other work in
         * flight keeps computing meanwhile, so for it only the transfer
         * itself costs throughput: judge its pulls at the nominal link
         * rate (route_config default) rather than the measured one. */
        for (int k = 0; k < nw; k++)
            if (c->rw[k].load_tokens >= rc.starve_tokens && c->rw[k].link_bytes_s < rc.default_link_bytes_s)
                c->rw[k].link_bytes_s = rc.default_link_bytes_s;
    }
    route_pick_src(&rc, c->rw, nw, c->runs, c->real, n, bs, pages, d);
    int pick = d->worker;
    if (policy == SCHED_HELIUM && pick >= 0) {
        /* Would the pick recompute prefix pages that another worker is
         * computing right now, half of what it would compute or more? If pulling them
         * once they are committed beats recomputing, the call waits
         * (out->hold) and is placed again when they are: then the
         * idle-worker rule sends it to the idle worker with a pull, or
         * affinity sends it to the holder. */
        int32_t cap = n > 0 ? (n - 1) / bs : 0;
        int pe_slot;
        const int32_t pe = pending_elsewhere(c->wk, nw, pick, c->real, c->pend, cap, &pe_slot);
        if (pe >= have_after(d) + SCHED_HOLD_MIN_BLOCKS && 2 * (pe - have_after(d)) >= cap - have_after(d)) {
            double t_pull, t_rec;
            const route_worker *src = NULL; /* the worker computing them: the pull's source */
            for (int k = 0; k < nw && !src; k++)
                if (c->wk[k]->slot == pe_slot) src = &c->rw[k];
            route_pull_times_pair(&rc, &c->rw[pick], src, pe - have_after(d), bs, &t_pull, &t_rec);
            bool idle = rc.starve_tokens > 0 && c->rw[pick].load_tokens < rc.starve_tokens;
            if (rc.page_bytes > 0 && t_pull < t_rec && (s->helium_hold_idle || !idle)) {
                out->hold = true;
                out->wait_slot = pe_slot;
                out->wait_run = pe;
            }
        }
        if (!out->hold && s->helium_split &&
            split_pays(s, &rc, c->rw, nw, pick, c->runs, c->real, c->pend, c->wk, n, pages, max_tokens)) {
            out->hold = out->split = true;
            out->wait_slot = c->wk[pick]->slot;
            out->wait_run = c->pend[out->wait_slot];
        }
    }
    return pick;
}

/* Fills the rest of out for the pick (holder, reserve, reuse, pull, load). */
static void fill_choice(sched_t *s, sched_policy policy, int32_t n, int32_t nb, int32_t pages, uint32_t max_tokens,
                        const cands *c, int pick, const route_decision *d, sched_choice *out) {
    bool aware = sched_cache_aware(policy);
    int32_t bs = (int32_t)s->block_size;
    const int32_t *real = c->real, *pend = c->pend;
    wkr_t *const *wk = c->wk;
    out->d = *d;
    out->worker = wk[pick];
    if (aware)
        for (int k = 0; k < c->nw; k++) {
            int sl = wk[k]->slot;
            int32_t r = real[sl] > pend[sl] ? real[sl] : pend[sl];
            if (k != pick && r > out->holder_run) {
                out->holder_run = r;
                out->holder_slot = sl;
            }
        }
    out->reserve_pages = aware ? pages - shared_pages(pend, wk[pick]->slot, pages) : pages;
    out->reuse_blocks = policy == SCHED_ISOLATED ? 0 : d->reuse_blocks;
    out->real_blocks = aware ? real[wk[pick]->slot] : 0;
    if (out->real_blocks > out->reuse_blocks) out->real_blocks = out->reuse_blocks;
    if (aware && d->pull_from >= 0 && d->pull_from < c->nw && d->pull_blocks > 0 && *wk[d->pull_from]->endpoint) {
        /* pull only what the source really holds */
        int32_t end = d->reuse_blocks + d->pull_blocks, have = real[wk[d->pull_from]->slot];
        if (end > have) end = have;
        if (end > nb) end = nb;
        if (end > d->reuse_blocks) {
            out->pull_from = wk[d->pull_from];
            out->pull_first = d->reuse_blocks;
            out->pull_blocks = end - d->reuse_blocks;
        }
    }
    out->planned_blocks = out->reuse_blocks + (d->pull_from >= 0 ? d->pull_blocks : 0);
    int64_t reuse_tok = (int64_t)(out->reuse_blocks + out->pull_blocks) * bs;
    if (reuse_tok > n - 1) reuse_tok = n > 0 ? n - 1 : 0;
    out->load_tokens = (int64_t)n - reuse_tok + max_tokens;
}

static int place(sched_t *s, sched_policy policy, const int32_t *ids, int32_t n, prompt_hashes ph,
                 uint32_t max_tokens, int only, unsigned flags, sched_choice *out) {
    memset(out, 0, sizeof *out);
    out->holder_slot = -1;
    out->wait_slot = -1;
    s->c.placements++;
    cands c;
    memset(c.real, 0, sizeof c.real);
    memset(c.pend, 0, sizeof c.pend);
    memset(c.runs, 0, sizeof c.runs);
    int32_t max_pool;
    int rc = gather(s, n, only, &c, &max_pool);
    if (rc) return rc;

    int32_t bs = (int32_t)s->block_size;
    int64_t need_tok = (int64_t)n + max_tokens;
    int32_t pages = (int32_t)((need_tok + bs - 1) / bs);
    if (pages > max_pool) pages = max_pool;
    out->pages = pages;

    /* the prompt's block hashes */
    int32_t nb = n / bs;
    if (ph.pre && ph.pre_nb == nb) {
        /* the caller's (sched_hashes): copied, as out->hashes is the scratch */
    } else {
        ph.pre = NULL;
    }
    if (nb > s->cap_hashes) {
        uint64_t *h = realloc(s->hashes, (size_t)nb * sizeof *h);
        if (!h) return he_set(HE_ENOMEM, "out of memory");
        s->hashes = h;
        s->cap_hashes = nb;
    }
    if (ph.pre)
        memcpy(s->hashes, ph.pre, (size_t)nb * sizeof *s->hashes);
    else
        nb = nb ? bh_prefix(s->root, ids, n, bs, s->hashes) : 0;
    out->hashes = s->hashes;
    out->n_hashes = nb;

    int pick = -1;
    route_decision d = {.worker = -1, .pull_from = -1};
    if (policy == SCHED_ISOLATED) {
        /* round robin over eligible workers with room, starting after the last pick */
        for (int k = 0; k < c.nw && pick < 0; k++) {
            int i = (int)((s->rr + (uint32_t)k) % (uint32_t)c.nw);
            if (c.rw[i].kv_blocks_avail >= pages) pick = i;
        }
        if (pick >= 0) s->rr = (uint32_t)(pick + 1);
        d.worker = pick;
    } else {
        pick = pick_routed(s, policy, n, nb, pages, max_tokens, &c, &d, out);
    }
    if (pick < 0 || pick >= c.nw) {
        if (policy == SCHED_HELIUM && s->helium_fit)
            clog_msg(CLOG_DEBUG, "route: %d-token prompt waits (no worker's working set has room for %d pages)", n,
                     pages);
        else
            clog_msg(CLOG_DEBUG, "route: %d-token prompt waits (no eligible worker has %d free pages)", n, pages);
        return 0;
    }
    fill_choice(s, policy, n, nb, pages, max_tokens, &c, pick, &d, out);

    if (!(flags & SCHED_DRY)) sched_count(s, out);
    if (clog_on(CLOG_DEBUG))
        clog_msg(CLOG_DEBUG,
             "route[%s]: %d tokens (%d blocks) -> %s: reuse %d blocks, pull %d from %s (t_pull %.4fs vs "
             "t_recompute %.4fs), cost %.0f, load %lld%s",
             sched_policy_name(policy), n, nb, out->worker->id, out->reuse_blocks, out->pull_blocks,
             out->pull_from ? out->pull_from->id : "-", d.t_pull_s, d.t_recompute_s, d.cost,
             (long long)out->worker->load_tokens, d.imbalanced ? " (imbalance override)" : "");
    return 0;
}

/* Helium's holder rule, with its KV admission on: under KV pressure a call's
 * own prefix (three quarters of its prompt or more) is not copied to a
 * second worker when it is large against that worker's KV (a quarter or
 * more): the call goes to the worker holding it (or computing it), or waits
 * for room there, so that each worker's KV holds distinct prefixes. (A
 * shorter prefix that many groups share, like one document every job reads,
 * is still routed as usual: every worker needs it; and a worker about to go
 * idle takes the call anyway, copying or pulling the prefix.) */
static sched_verdict helium_holder(sched_t *s, const int32_t *ids, int32_t n, prompt_hashes ph,
                                   uint32_t max_tokens, sched_choice *ch) {
    wkr_t *w = ch->worker;
    wkr_t *h = ch->holder_slot >= 0 ? wkrs_by_slot(s->ws, ch->holder_slot) : NULL;
    int32_t extra = ch->holder_run - ch->reuse_blocks;
    bool idle = w->load_tokens < s->helium_starve_tokens;
    if (h && !idle && extra >= SCHED_HOLD_MIN_BLOCKS && 4 * (int64_t)extra >= (int64_t)w->kv_blocks_total &&
        4 * (int64_t)ch->holder_run >= 3 * (int64_t)ch->n_hashes) {
        sched_choice hc;
        if (place(s, SCHED_HELIUM, ids, n, ph, max_tokens, h->slot, SCHED_DRY, &hc) || !hc.worker || hc.hold) {
            ch->wait_slot = h->slot; /* waits for the holder, not for room anywhere */
            return SCHED_WAIT_KV;
        }
        *ch = hc;
    }
    /* (its worker's working set has room for it: place admits only such
     * workers, sched_set_helium_fit) */
    return SCHED_GO;
}

int sched_decide(sched_t *s, sched_policy policy, const int32_t *ids, int32_t n, uint32_t max_tokens,
                 sched_choice *out, sched_verdict *v) {
    return sched_decide_h(s, policy, ids, n, NULL, 0, max_tokens, out, v);
}

int sched_decide_h(sched_t *s, sched_policy policy, const int32_t *ids, int32_t n, const uint64_t *hashes,
                   int32_t nb, uint32_t max_tokens, sched_choice *out, sched_verdict *v) {
    *v = SCHED_WAIT;
    prompt_hashes ph = {hashes, nb};
    int rc = place(s, policy, ids, n, ph, max_tokens, -1, SCHED_DRY, out);
    if (rc) return rc;
    bool kv_admit = policy == SCHED_HELIUM && s->helium_fit;
    if (!out->worker) {
        /* helium: no worker's working set has room for it (sched_set_helium_fit) */
        *v = kv_admit ? SCHED_WAIT_KV : SCHED_WAIT;
        return 0;
    }
    if (out->hold) {
        /* its prefix is being computed on another worker: pull it once it is
         * committed instead of computing it twice. The pending pages go away
         * with their task, so the wait is bounded by it. */
        *v = SCHED_HOLD;
        return 0;
    }
    *v = kv_admit ? helium_holder(s, ids, n, ph, max_tokens, out) : SCHED_GO;
    /* (a placement that counts on prefix pages the chosen worker itself is
     * computing goes at once: its engine admits the call when they are
     * committed, and its serve loop holds it while a sibling's pull brings
     * them.) */
    return 0;
}
