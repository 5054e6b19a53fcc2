/* opt_ws: the working sets of helium's KV admission, part of the optimizer
 * (see opt.h, opt_ws_fits). A worker's working set is the union of the
 * prompt blocks of its calls in flight (wkr_t.ws_blocks, counted by
 * workers.c as calls come and go) and the blocks of its pins that count
 * (wkr_t.ws_pins, counted here as pins change: opt_pin_ws_sync), with the
 * number of blocks in both kept beside them (ws_both), so its size is one
 * subtraction; when either count was given up (out of memory) the set is
 * rebuilt from the in-flight list and the pins instead.
 */
#include "opt_impl.h"

#include <string.h>

static void set_clear(u64set *s) {
    if (s->v) memset(s->v, 0, s->cap * sizeof *s->v);
    s->n = 0;
}

static bool set_has(const u64set *s, uint64_t x) {
    if (!x) x = 1;
    if (!s->cap) return false;
    size_t h = (size_t)(x * 0x9e3779b97f4a7c15ULL) & (s->cap - 1);
    for (; s->v[h]; h = (h + 1) & (s->cap - 1))
        if (s->v[h] == x) return true;
    return false;
}

/* The leading blocks of g that count toward its worker's working set:
 * want[1] with every live pin counted (warming's test), want[0] for ready
 * calls: what a pending call that is ready now still needs, all of it while
 * being warmed (blocks of users in flight are counted with them); a prefix
 * whose readers wait upstream reserves nothing: it stays pinned, evicted
 * after other idle blocks, but a call that can run now comes first. */
static void pin_ws_want(const opt_pin *g, int32_t want[2]) {
    int32_t live = g->warm_task ? g->n_blocks : g->live;
    want[1] = live;
    want[0] = !g->warm_task && g->steps > 0 ? 0 : live;
}

static void list_add(opt_pin_list *l, opt_pin *g, size_t *idx) {
    if (grow((void **)&l->v, &l->cap, l->n + 1, sizeof *l->v)) return; /* the caller checks *idx */
    *idx = l->n;
    l->v[l->n++] = g;
}

void opt_pin_ws_sync(opt_t *o, opt_pin *g, bool gone) {
    bool indexed = g->slot >= 0 && g->slot < DIR_MAX_WORKERS;
    bool warming = indexed && !gone && g->warm_task;
    if (warming != g->in_warming) {
        opt_pin_list *l = &o->warming[g->slot];
        if (warming) {
            g->widx = SIZE_MAX;
            list_add(l, g, &g->widx);
            g->in_warming = g->widx != SIZE_MAX;
        } else {
            opt_pin *last = l->v[--l->n];
            l->v[g->widx] = last;
            last->widx = g->widx;
            g->in_warming = false;
        }
    }
    wkr_t *w = indexed ? wkrs_by_slot(o->wkrs, g->slot) : NULL;
    if (!w || w->uid != g->ws_uid) { /* what was counted went with its worker */
        g->ws_n[0] = g->ws_n[1] = 0;
        g->ws_uid = w ? w->uid : 0;
    }
    if (!w || w->ws_pins_bad) return;
    int32_t want[2] = {0, 0};
    if (!gone) pin_ws_want(g, want);
    for (int k = 0; k < 2; k++) {
        if (g->ws_n[k] < want[k] && !w->ws_pins[k] && !(w->ws_pins[k] = hcount_new())) {
            w->ws_pins_bad = true;
            return;
        }
        hcount_t *pn = w->ws_pins[k];
        while (g->ws_n[k] < want[k]) {
            uint64_t h = g->hashes[g->ws_n[k]];
            uint32_t was = hcount_get(pn, h);
            if (hcount_add(pn, h)) {
                w->ws_pins_bad = true;
                return;
            }
            if (!was && w->ws_blocks && hcount_get(w->ws_blocks, h)) w->ws_both[k]++;
            g->ws_n[k]++;
        }
        while (g->ws_n[k] > want[k]) {
            uint64_t h = g->hashes[--g->ws_n[k]];
            uint32_t was = hcount_get(pn, h);
            hcount_remove(pn, h);
            if (was == 1 && w->ws_blocks && hcount_get(w->ws_blocks, h)) w->ws_both[k]--;
        }
    }
}

/* w's whole working set rebuilt into ws from its in-flight list and its
 * pins (the fallback when its counted sets were given up: out of memory);
 * *busy: a call in flight or a pin being warmed; *priv: pages of in-flight
 * calls beyond their prompt blocks. O(in-flight blocks + pin blocks). */
static void ws_rebuild(opt_t *o, const wkr_t *w, bool all_pins, u64set *ws, bool *busy, int64_t *priv) {
    set_clear(ws);
    *busy = false;
    *priv = 0;
    for (size_t i = 0; i < w->n_inflight; i++) {
        const job_task *t = w->inflight[i];
        if (t->kind != JT_LLM) continue;
        *busy = true;
        for (int32_t k = 0; k < t->n_hashes; k++) opt_set_add(ws, t->hashes[k]);
        if (t->pages > t->n_hashes) *priv += t->pages - t->n_hashes;
    }
    size_t np;
    opt_pin *const *pv = opt_pins_on(o, w->slot, &np);
    for (size_t i = 0; i < np; i++) {
        const opt_pin *g = pv[i];
        if (g->slot != w->slot) continue;
        if (g->warm_task) *busy = true;
        int32_t want[2];
        pin_ws_want(g, want);
        for (int32_t k = 0; k < want[all_pins]; k++) opt_set_add(ws, g->hashes[k]);
    }
}

/* Pages worker w would need with a call of `pages` pages (prompt blocks
 * hashes[0..nb)) added, as opt.h describes for opt_ws_fits; all_pins: count
 * every live pinned prefix, not only those a ready call needs. -1: w has no
 * call in flight and admits this one whatever it needs (all_pins, or no
 * prefix reserved for ready calls there, or the call reads mostly such a
 * prefix). The working set is the union of the worker's in-flight blocks
 * (counted as calls come and go, wkr_t.ws_blocks) and its pins' blocks
 * (counted as pins change, wkr_t.ws_pins), whose size is kept with it
 * (ws_both): O(log nb) per call, O(1) when even an all-fresh prompt stays
 * under limit (then that bound is returned: callers compare the result with
 * limit, and their verdict is the same). */
int64_t opt_ws_need(opt_t *o, const wkr_t *w, const uint64_t *hashes, int32_t nb, int32_t pages, bool all_pins,
                       int64_t limit) {
    int k = all_pins ? 1 : 0;
    const hcount_t *fl = w->ws_blocks, *pn = w->ws_pins[k];
    bool counted = !w->ws_bad && !w->ws_pins_bad && w->slot >= 0 && w->slot < DIR_MAX_WORKERS;
    int64_t n_ws, priv;
    bool busy;
    u64set *ws = NULL;
    if (counted) {
        n_ws = (int64_t)(fl ? hcount_size(fl) : 0) + (int64_t)(pn ? hcount_size(pn) : 0) - w->ws_both[k];
        priv = w->ws_priv;
        busy = w->n_llm_inflight > 0 || o->warming[w->slot].n > 0;
    } else {
        ws = &o->ws_scratch;
        ws_rebuild(o, w, all_pins, ws, &busy, &priv);
        n_ws = (int64_t)ws->n;
    }
    int64_t own = pages > nb ? pages - nb : 1;
    if (!busy && (all_pins || n_ws == 0)) return -1;
    /* every block fresh still fits under limit: the caller's verdict cannot
     * change, so skip counting (fresh <= nb) */
    int64_t upper = n_ws + priv + nb + own;
    if (upper <= limit) return upper;
    /* nor can it when even no fresh block is over limit (a busy worker:
     * the idle rule below looks at fresh) */
    int64_t lower = n_ws + priv + own;
    if (busy && lower > limit) return lower;
    /* The working set is a union of chains from the first block (a call's
     * prompt blocks, a pin's leading blocks) and block hashes are chained,
     * so the prompt's blocks in it are a leading run: binary search for
     * its end. O(log nb). */
    int32_t lo = 0, hi = nb; /* hashes[0..lo) in ws; hashes[hi..nb) not */
    while (lo < hi) {
        int32_t mid = lo + (hi - lo) / 2;
        bool in = ws ? set_has(ws, hashes[mid])
                     : (fl && hcount_get(fl, hashes[mid])) || (pn && hcount_get(pn, hashes[mid]));
        if (in) lo = mid + 1;
        else hi = mid;
    }
    int64_t fresh = nb - lo;
    /* An idle worker still holding prefixes that ready calls need takes one
     * of those readers whatever it costs (progress), but not a call that
     * brings a prefix of its own: that would evict what the ready readers
     * are about to use (their calls come later in the dispatch order than a
     * group's leader). */
    if (!busy && 2 * fresh <= (int64_t)nb) return -1;
    return n_ws + priv + fresh + own;
}

bool opt_ws_fits(opt_t *o, const wkr_t *w, const uint64_t *hashes, int32_t nb, int32_t pages) {
    int64_t total = (int64_t)w->kv_blocks_total;
    return opt_ws_need(o, w, hashes, nb, pages, false, total) <= total;
}
