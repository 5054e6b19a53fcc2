/* opt_warm: pre-warming, part of the optimizer (see opt.h, opt_warm, and
 * opt.c for the pins it creates): a static prefix that two or more pending
 * helium calls share, and no worker holds or is computing, is prefilled
 * ahead of time on a worker whose KV stays half free with it, and pinned
 * there. Also the two results that finish or shrink a warm (opt_cache_stored,
 * opt_warm_result). Single-threaded: the coordinator's loop. */
#include "opt_impl.h"

#include <stdio.h>
#include <string.h>

#include "log.h"


/* ---- warming's memo: a prefix that could not be warmed is tried again only
 * when what stopped it may have moved: for lack of room, some working set
 * shrank or the workers changed (warm_room_sig); when part of it was being
 * computed on a worker, those blocks are cached there (the directory shows
 * the run) or a call left that worker. Two tables, last run's and this
 * run's (entries of prefixes gone from the tree lapse). */

enum { WARM_WAIT_ROOM = 1, WARM_WAIT_STORED = 2 };

static uint64_t warm_room_sig(const opt_t *o) {
    uint64_t r = sig_mix(0x6a09e667f3bcc909ULL, o->pins_shrink_gen);
    for (int i = 0; i < wkrs_cap(o->wkrs); i++) {
        const wkr_t *w = wkrs_by_slot(o->wkrs, i);
        if (!w) continue;
        uint64_t id = sig_mix(sig_mix(w->registered_us, (uint64_t)i), (uint64_t)w->alive | (uint64_t)w->draining << 1);
        r = sig_mix(sig_mix(r, id), w->inflight_removed);
    }
    return r;
}

/* a prefix whose blocks [0, run) were being computed on slot: still waiting? */
static bool warm_still_computing(const opt_t *o, const opt_warm_memo *m, const ptree_prefix *p) {
    const wkr_t *w = wkrs_by_slot(o->wkrs, m->slot);
    if (!w || !w->alive || w->inflight_removed != m->sig) return false;
    int32_t run = m->run < p->n_blocks ? m->run : p->n_blocks;
    return sched_real_run(o->sched, m->slot, p->hashes, run) < run;
}

static opt_warm_memo *warm_slot(opt_warm_memo *tab, size_t cap, uint64_t h) {
    if (!cap) return NULL;
    size_t i = (size_t)(h ^ h >> 31) & (cap - 1);
    while (tab[i].h && tab[i].h != h) i = (i + 1) & (cap - 1);
    return &tab[i];
}

/* the wait last run recorded for prefix h (NULL: none) */
static const opt_warm_memo *warm_prev(const opt_t *o, uint64_t h) {
    const opt_warm_memo *m = warm_slot(o->wm[o->wm_cur ^ 1], o->cap_wm[o->wm_cur ^ 1], h);
    return m && m->h == h ? m : NULL;
}

static void warm_note(opt_t *o, uint64_t h, uint8_t kind, uint64_t sig, int slot, int32_t run) {
    opt_warm_memo *m = warm_slot(o->wm[o->wm_cur], o->cap_wm[o->wm_cur], h);
    if (m) *m = (opt_warm_memo){.h = h, .sig = sig, .kind = kind, .slot = slot, .run = run};
}

void opt_warm(opt_t *o) {
    if (!o->warm_dirty || !o->have_model || !o->io.send_warm) return;
    o->warm_dirty = false;
    o->warm_deferred = false;
    ptree_t *pt = o->pt[1];
    const ptree_prefix *pre;
    int n = ptree_shared_prefixes(pt, 2, &pre);
    bool deferred = false;
    uint64_t sig_room = warm_room_sig(o);
    /* this run's table: at least twice the prefixes, a power of two, empty */
    o->wm_cur ^= 1;
    size_t want = 64;
    while (want < 2 * (size_t)(n > 0 ? n : 0)) want *= 2;
    if (o->cap_wm[o->wm_cur] < want) {
        opt_warm_memo *t = realloc(o->wm[o->wm_cur], want * sizeof *t);
        if (t) {
            o->wm[o->wm_cur] = t;
            o->cap_wm[o->wm_cur] = want;
        }
    }
    if (o->wm[o->wm_cur]) memset(o->wm[o->wm_cur], 0, o->cap_wm[o->wm_cur] * sizeof *o->wm[o->wm_cur]);
    for (int i = 0; i < n; i++) {
        const ptree_prefix *p = &pre[i];
        if (!p->leaf || p->ready > 0 || p->n_blocks <= 0) continue;
        /* pinned on some worker already (covering(): a pin whose block
         * nb - 1 is the prefix's last; chained hashes name their position) */
        uint64_t h = p->hashes[p->n_blocks - 1];
        if (hcount_get(o->pinned, h)) continue;
        const opt_warm_memo *was = warm_prev(o, h);
        if (was && (was->kind == WARM_WAIT_STORED ? warm_still_computing(o, was, p) : was->sig == sig_room)) {
            warm_note(o, h, was->kind, was->sig, was->slot, was->run); /* nothing it waits on moved */
            deferred = true;
            continue;
        }
        sched_choice ch;
        if (sched_place_ex(o->sched, SCHED_HELIUM, p->tokens, p->n_tokens, 1, SCHED_DRY, &ch) || !ch.worker) {
            warm_note(o, h, WARM_WAIT_ROOM, sig_room, -1, 0);
            continue;
        }
        if (ch.hold || ch.planned_blocks > ch.real_blocks + ch.pull_blocks) {
            deferred = true; /* part of it is being computed: warm the rest once it is cached */
            const wkr_t *cw = ch.hold && ch.wait_slot >= 0 ? wkrs_by_slot(o->wkrs, ch.wait_slot) : ch.worker;
            int32_t run = ch.hold && ch.wait_slot >= 0 ? ch.wait_run : ch.planned_blocks;
            if (cw) warm_note(o, h, WARM_WAIT_STORED, cw->inflight_removed, cw->slot, run);
            continue;
        }
        wkr_t *w = ch.worker;
        /* warming is speculative: only into a worker whose KV stays half
         * free with it and everything pinned there */
        int64_t half = (int64_t)w->kv_blocks_total / 2;
        if (opt_ws_need(o, w, p->hashes, p->n_blocks, p->n_blocks + 1, true, half) > half) {
            deferred = true;
            warm_note(o, h, WARM_WAIT_ROOM, sig_room, -1, 0);
            continue;
        }
        uint64_t task_id = o->io.next_task_id(o->io.ctx);
        char tag[OPT_TAG_LEN];
        snprintf(tag, sizeof tag, "pin-%llu", (unsigned long long)(o->next_pin + 1));
        if (o->io.send_warm(o->io.ctx, w, task_id, p->tokens, p->n_tokens, p->hashes, p->n_blocks, tag,
                              steps_u32(p->steps), &ch))
            continue;
        sched_count(o->sched, &ch);
        opt_pin *g = opt_pin_new(o, tag, w->slot, SCHED_HELIUM, p->hashes, p->n_blocks, p->tokens);
        if (!g) continue; /* the warm still runs; nothing pins its blocks */
        g->warm_task = task_id;
        g->warm_load = ch.load_tokens;
        g->steps = steps_u32(p->steps);
        opt_pin_moved(o, g, false);
        w->load_tokens += ch.load_tokens;
        sched_pending_add(o->sched, w->slot, p->hashes, p->n_blocks);
        clog_msg(CLOG_DEBUG, "warm %s: %d blocks shared by %d pending calls -> %s (task %llu%s)", tag, p->n_blocks,
                 p->sharers, w->id, (unsigned long long)task_id, ch.pull_from ? ", with pull" : "");
    }
    /* a deferred prefix waits for pages being computed or for room: warm
     * again on the next stored blocks, pin change or tree change */
    o->warm_deferred = deferred;
}

void opt_cache_stored(opt_t *o, wkr_t *w) {
    if (o->warm_deferred) o->warm_dirty = true;
    if (w->slot < 0 || w->slot >= DIR_MAX_WORKERS) return;
    const opt_pin_list *l = &o->warming[w->slot];
    for (size_t i = 0; i < l->n; i++) {
        opt_pin *g = l->v[i];
        if (!g->warm_task || g->slot != w->slot || g->warm_load <= 0) continue;
        /* what is left: the blocks not cached yet (+ the one sampled token) */
        int32_t run = sched_real_run(o->sched, w->slot, g->hashes, g->n_blocks);
        int64_t left = (int64_t)(g->n_blocks - run) * o->bs + 1;
        if (left >= g->warm_load) continue;
        w->load_tokens -= g->warm_load - left;
        if (w->load_tokens < 0) w->load_tokens = 0;
        g->warm_load = left;
    }
}

bool opt_warm_result(opt_t *o, wkr_t *w, uint64_t task_id, bool ok, uint32_t computed, uint32_t cached,
                     uint32_t pulled) {
    (void)cached;
    if (!task_id || w->slot < 0 || w->slot >= DIR_MAX_WORKERS) return false;
    const opt_pin_list *l = &o->warming[w->slot];
    for (size_t i = 0; i < l->n; i++) {
        opt_pin *g = l->v[i];
        if (g->warm_task != task_id || g->slot != w->slot) continue;
        g->warm_task = 0;
        opt_pin_moved(o, g, true);
        w->load_tokens -= g->warm_load;
        if (w->load_tokens < 0) w->load_tokens = 0;
        sched_pending_remove(o->sched, w->slot, g->hashes, g->n_blocks);
        opt_counters *st = opt_st_of(o, g->pol);
        st->warm_tasks++;
        st->warm_tokens += computed;
        st->computed_tokens += computed;
        st->pulled_tokens += pulled;
        o->sweep_dirty = true;
        if (!ok) opt_pin_release(o, g->gidx);
        return true;
    }
    return false;
}
