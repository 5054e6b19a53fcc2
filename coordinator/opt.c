/* opt: see opt.h.
 *
 * Ownership: pin groups, dedup entries, the prefix trees, the result cache
 * and the min-prompt sets are owned here. Tasks are borrowed: a task sits in
 * a group's user list or a dedup entry only while it is live, and the
 * coordinator calls opt_task_gone / opt_dd_drop before jobs frees it (from
 * its task_abort hook and its result path).
 *
 * Work: a sweep costs a stamp check per pin group, and a ptree_match only
 * where the tree changed under its last match; warming one
 * ptree_shared_prefixes plus one placement per uncovered prefix; both run
 * only after something changed. Group lookups are linear in the groups
 * (indexed by worker: opt.spins); dedup lookups hash on the key.
 *
 * The result cache's call identity and the dedup table (one computation per
 * identical in-flight call) are opt_dedup.c; pre-warming is opt_warm.c; the
 * working sets of KV admission are opt_ws.c;
 * struct opt and the helpers they share are opt_impl.h.
 */
#include "opt_impl.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <xxhash.h>

#include "blockhash.h"
#include "herr.h"
#include "log.h"
#include "plan.h"

/* ------------------------------------------------------------- helpers */

static uint64_t mono_us(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

bool opt_tracks(sched_policy p) { return p == SCHED_KVFLOW || p == SCHED_HELIUM; }
bool opt_reuses(sched_policy p) { return p == SCHED_HELIUM; }

static ptree_t *tree_of(opt_t *o, int pol) {
    if (!o->have_model) return NULL;
    return pol == SCHED_KVFLOW ? o->pt[0] : pol == SCHED_HELIUM ? o->pt[1] : NULL;
}

opt_counters *opt_st_of(opt_t *o, int pol) {
    return &o->st[pol >= 0 && pol < SCHED_N_POLICIES ? pol : SCHED_ROUTER];
}


static void changed(opt_t *o, int pol) {
    o->sweep_dirty = true;
    if (pol == SCHED_HELIUM) o->warm_dirty = true;
}

/* Adds x; returns 1 if it was new (or the set is full), 0 if present. */
int opt_set_add(u64set *s, uint64_t x) {
    if (!x) x = 1;
    if ((s->n + 1) * 2 > s->cap) {
        size_t nc = s->cap ? s->cap * 2 : 1024;
        if (nc / 2 > OPT_MAX_SET) return 1;
        uint64_t *nv = calloc(nc, sizeof *nv);
        if (!nv) return 1;
        for (size_t i = 0; i < s->cap; i++) {
            uint64_t y = s->v[i];
            if (!y) continue;
            size_t h = (size_t)(y * 0x9e3779b97f4a7c15ULL) & (nc - 1);
            while (nv[h]) h = (h + 1) & (nc - 1);
            nv[h] = y;
        }
        free(s->v);
        s->v = nv;
        s->cap = nc;
    }
    size_t h = (size_t)(x * 0x9e3779b97f4a7c15ULL) & (s->cap - 1);
    while (s->v[h]) {
        if (s->v[h] == x) return 0;
        h = (h + 1) & (s->cap - 1);
    }
    s->v[h] = x;
    s->n++;
    return 1;
}

/* ---------------------------------------------------------- lifecycle */

opt_t *opt_new(const tok_t *tok, sched_t *sched, wkrs_t *wkrs, jobs_t *jobs, const opt_io *io,
               size_t rcache_bytes) {
    opt_t *o = calloc(1, sizeof *o);
    if (!o) return NULL;
    o->tok = tok;
    o->sched = sched;
    o->wkrs = wkrs;
    o->jobs = jobs;
    if (io) o->io = *io;
    if (!(o->rc = rcache_new(rcache_bytes ? rcache_bytes : OPT_RCACHE_BYTES)) || !(o->pinned = hcount_new())) {
        rcache_destroy(&o->rc);
        free(o);
        return NULL;
    }
    return o;
}

static void user_drop(opt_pin *g, uint32_t i);

/* unlink: take g out of its users' links (not at opt_destroy: the tasks
 * may be gone before it) */
static void pin_free(opt_pin *g, bool unlink) {
    if (!g) return;
    while (unlink && g->n_users > 0) user_drop(g, (uint32_t)g->n_users - 1);
    free(g->hashes);
    free(g->tokens);
    free(g->users);
    free(g);
}

static void dd_free_chain(opt_dd *e) {
    while (e) {
        opt_dd *n = e->next;
        free(e->f);
        free(e);
        e = n;
    }
}

void opt_destroy(opt_t **self_p) {
    if (!self_p || !*self_p) return;
    opt_t *o = *self_p;
    for (size_t i = 0; i < o->n_pins; i++) pin_free(o->pins[i], false);
    free(o->pins);
    for (int i = 0; i < DIR_MAX_WORKERS; i++) {
        free(o->spins[i].v);
        free(o->warming[i].v);
    }
    for (int b = 0; b < OPT_DD_BUCKETS; b++) dd_free_chain(o->dd[b]);
    dd_free_chain(o->orphans);
    ptree_destroy(&o->pt[0]);
    ptree_destroy(&o->pt[1]);
    rcache_destroy(&o->rc);
    for (int p = 0; p < SCHED_N_POLICIES; p++) {
        free(o->prompts[p].v);
        free(o->blocks[p].v);
    }
    free(o->slots);
    free(o->sw);
    free(o->wm[0]);
    free(o->wm[1]);
    hcount_destroy(&o->pinned);
    free(o->ws_scratch.v);
    free(o->hbuf);
    free(o);
    *self_p = NULL;
}

int opt_set_model(opt_t *o, uint64_t root, int32_t block_size) {
    if (o->have_model) return 0;
    if (block_size <= 0) return he_set(HE_EINVAL, "bad block size %d", block_size);
    o->pt[0] = ptree_new(o->tok, root, block_size);
    o->pt[1] = ptree_new(o->tok, root, block_size);
    if (!o->pt[0] || !o->pt[1]) {
        ptree_destroy(&o->pt[0]);
        ptree_destroy(&o->pt[1]);
        return he_set(HE_ENOMEM, "out of memory");
    }
    o->root = root;
    o->bs = block_size;
    o->have_model = true;
    return 0;
}

opt_counters *opt_stats(opt_t *o, sched_policy p) { return opt_st_of(o, p); }
uint64_t opt_pins_gen(const opt_t *o) { return o->pins_gen; }
uint64_t opt_pins_shrink_gen(const opt_t *o) { return o->pins_shrink_gen; }
uint64_t opt_pins_shrink_slot(const opt_t *o, int slot) {
    return slot >= 0 && slot < DIR_MAX_WORKERS ? o->pins_shrink_slot[slot] : o->pins_shrink_gen;
}
rcache_t *opt_rcache(opt_t *o) { return o->rc; }

/* ------------------------------------------------------------ planning */

typedef struct {
    const wf_t *wf;
    const char **vals;      /* (wf->n_inputs) value in effect or NULL */
    const job_t *j;         /* live job (op outputs), or NULL at arrival */
} val_ctx;

static int value_of(void *u, const wf_part *p, const char **s, size_t *len) {
    val_ctx *c = u;
    if (p->kind == WF_PART_INPUT) {
        if (p->ref < 0 || (size_t)p->ref >= c->wf->n_inputs) return 0;
        const char *v = c->j ? c->j->input_vals[p->ref] : c->vals[p->ref];
        if (!v) return 0;
        *s = v;
        *len = strlen(v);
        return 1;
    }
    if (p->kind == WF_PART_OP && c->j && p->ref >= 0 && (size_t)p->ref < c->wf->n_ops &&
        c->j->ops[p->ref].state == HELIUM__OP_STATE__OP_DONE) {
        *s = jobs_op_output(c->j, p->ref, len);
        return 1;
    }
    return 0; /* item, prev, outputs not known yet */
}

void opt_prep_free(opt_prep *prep) {
    if (!prep) return;
    free(prep->pruned);
    free(prep->alias);
    free(prep->cp);
    free(prep->start);
    for (size_t i = 0; prep->prefix && i < prep->n_ops; i++) free(prep->prefix[i]);
    free(prep->prefix);
    free(prep->n_prefix);
    memset(prep, 0, sizeof *prep);
}

/* Pruning and merging (helium): fills prep->pruned / alias from plan_build. */
static void prep_plan(const wf_t *wf, const wf_kv *in, size_t n, opt_prep *prep) {
    const char **names = calloc(n ? n : 1, sizeof *names), **vals = calloc(n ? n : 1, sizeof *vals);
    plan_t *pl = NULL;
    if (names && vals) {
        for (size_t k = 0; k < n; k++) {
            names[k] = in[k].key;
            vals[k] = in[k].value ? in[k].value : "";
        }
        if (plan_build(wf, names, vals, n, 0, &pl, NULL)) {
            clog_msg(CLOG_DEBUG, "plan: %s (the job runs unplanned)", he_msg());
            pl = NULL;
        }
    }
    free(names);
    free(vals);
    if (!pl) return;
    size_t nops = wf->n_ops ? wf->n_ops : 1;
    prep->pruned = calloc(nops, 1);
    prep->alias = malloc(nops * sizeof *prep->alias);
    if (!prep->pruned || !prep->alias) {
        free(prep->pruned);
        free(prep->alias);
        prep->pruned = NULL;
        prep->alias = NULL;
        plan_destroy(&pl);
        return;
    }
    for (size_t i = 0; i < wf->n_ops; i++) {
        int node = plan_node_of(pl, 0, (int)i);
        const plan_node *nd = node >= 0 ? plan_node_at(pl, (size_t)node) : NULL;
        prep->pruned[i] = nd == NULL;
        prep->alias[i] = nd && nd->rep.job == 0 && nd->rep.op != (int)i ? nd->rep.op : -1;
    }
    plan_destroy(&pl);
}

/* Static prefixes and critical paths (kvflow, helium). */
static void prep_prefixes(opt_t *o, const wf_t *wf, const wf_kv *in, size_t n, opt_prep *prep) {
    size_t nops = wf->n_ops ? wf->n_ops : 1;
    const char **vals = calloc(wf->n_inputs ? wf->n_inputs : 1, sizeof *vals);
    int64_t *cost = calloc(nops, sizeof *cost);
    prep->prefix = calloc(nops, sizeof *prep->prefix);
    prep->n_prefix = calloc(nops, sizeof *prep->n_prefix);
    prep->cp = calloc(nops, sizeof *prep->cp);
    prep->start = calloc(nops, sizeof *prep->start);
    if (!vals || !cost || !prep->prefix || !prep->n_prefix || !prep->cp || !prep->start) goto fail;
    for (size_t k = 0; k < wf->n_inputs; k++)
        vals[k] = wf->inputs[k].has_default ? (wf->inputs[k].def ? wf->inputs[k].def : "") : NULL;
    for (size_t k = 0; k < n; k++) { /* the last value given wins */
        int idx = in[k].key ? wf_find_input(wf, in[k].key) : -1;
        if (idx >= 0) vals[idx] = in[k].value ? in[k].value : "";
    }
    val_ctx vc = {.wf = wf, .vals = vals, .j = NULL};
    ptree_t *pt = o->pt[0];
    for (size_t i = 0; i < wf->n_ops; i++) {
        const wf_op *op = wf->ops[i];
        if (op->kind == WF_TOOL) cost[i] = OPT_TOOL_COST;
        if (op->kind != WF_LLM || (prep->pruned && prep->pruned[i])) continue;
        bool complete = false;
        int nt = 0;
        if (ptree_tmpl_prefix(pt, &op->llm.prompt, value_of, &vc, &prep->prefix[i], &nt, &complete)) {
            prep->prefix[i] = NULL;
            nt = 0;
        }
        prep->n_prefix[i] = nt;
        cost[i] = ptree_llm_cost(nt + (complete ? 0 : OPT_DYN_GUESS), 0, (int32_t)op->llm.max_tokens);
    }
    if (ptree_critical_path(wf, cost, prep->cp, prep->start)) goto fail;
    free(vals);
    free(cost);
    return;
fail:
    free(vals);
    free(cost);
    for (size_t i = 0; prep->prefix && i < wf->n_ops; i++) free(prep->prefix[i]);
    free(prep->prefix);
    free(prep->n_prefix);
    free(prep->cp);
    free(prep->start);
    prep->prefix = NULL;
    prep->n_prefix = NULL;
    prep->cp = prep->start = NULL;
}

int opt_prepare(opt_t *o, sched_policy p, const wf_t *wf, const wf_kv *inputs, size_t n, opt_prep *prep) {
    memset(prep, 0, sizeof *prep);
    prep->t0_us = mono_us();
    prep->plan.pol = (int)p;
    if (!wf || !wf->valid || !opt_tracks(p)) return 0;
    prep->n_ops = wf->n_ops;
    if (p == SCHED_HELIUM) prep_plan(wf, inputs, n, prep);
    if (o->have_model) prep_prefixes(o, wf, inputs, n, prep);
    prep->plan.pruned = prep->pruned;
    prep->plan.alias = prep->alias;
    prep->plan.cp = prep->cp;
    prep->plan.start = prep->start;
    return 0;
}

void opt_arrive(opt_t *o, job_t *j, opt_prep *prep) {
    int pol = j->pol;
    opt_counters *st = opt_st_of(o, pol);
    const wf_t *wf = j->wf;
    for (size_t i = 0; i < wf->n_ops; i++) {
        if (j->pruned && j->pruned[i]) st->ops_pruned++;
        if (j->alias && j->alias[i] >= 0) st->ops_merged++;
    }
    ptree_t *pt = tree_of(o, pol);
    bool live = j->state == HELIUM__JOB_STATE__JOB_QUEUED || j->state == HELIUM__JOB_STATE__JOB_RUNNING;
    if (pt && live && prep->prefix && prep->n_ops == wf->n_ops) {
        for (size_t i = 0; i < wf->n_ops; i++) {
            const wf_op *op = wf->ops[i];
            if (op->kind != WF_LLM || (j->pruned && j->pruned[i]) || (j->alias && j->alias[i] >= 0)) continue;
            if (j->ops[i].state != HELIUM__OP_STATE__OP_WAITING || ptree_has_op(pt, j->num, (int32_t)i, 0)) continue;
            int np = prep->n_prefix[i];
            if (ptree_add_op(pt, j->num, (int32_t)i, 0, prep->prefix[i], np, np + OPT_DYN_GUESS,
                             (int)op->llm.max_tokens))
                continue;
            int64_t steps = j->start ? j->start[i] : 1, cp = j->cp ? j->cp[i] : 0;
            ptree_set_sched(pt, j->num, (int32_t)i, 0, steps > 0 ? steps : 1, cp >= 0 ? cp : 0, false);
        }
        changed(o, pol);
    }
    if (opt_tracks((sched_policy)pol)) st->plan_us += mono_us() - prep->t0_us;
    opt_prep_free(prep);
}

/* ------------------------------------------------------ pending calls */

static void call_ready(opt_t *o, job_task *t) {
    job_t *j = t->job;
    ptree_t *pt = tree_of(o, j->pol);
    if (!pt || t->kind != JT_LLM || !t->ids || t->n_ids <= 0) return;
    const wf_op *op = j->wf->ops[t->op];
    int rc = ptree_has_op(pt, j->num, t->op, t->item)
                 ? ptree_set_prefix(pt, j->num, t->op, t->item, t->ids, t->n_ids)
                 : ptree_add_op(pt, j->num, t->op, t->item, t->ids, t->n_ids, t->n_ids, (int)op->llm.max_tokens);
    if (rc) return;
    int64_t cp = j->cp ? j->cp[t->op] : 0;
    ptree_set_sched(pt, j->num, t->op, t->item, 0, cp >= 0 ? cp : 0, true);
    changed(o, j->pol);
}

void opt_task_new(opt_t *o, job_task *t) {
    uint64_t t0 = mono_us();
    call_ready(o, t);
    if (tree_of(o, t->job->pol)) opt_st_of(o, t->job->pol)->plan_us += mono_us() - t0;
}

void opt_call_back(opt_t *o, job_task *t) { call_ready(o, t); }

void opt_call_gone(opt_t *o, job_task *t) {
    ptree_t *pt = tree_of(o, t->job->pol);
    if (pt && ptree_remove_op(pt, t->job->num, t->op, t->item) == 0) changed(o, t->job->pol);
}

static bool refs_op(const wf_tmpl *t, int i) {
    for (size_t k = 0; k < t->n; k++)
        if (t->v[k].kind == WF_PART_OP && t->v[k].ref == i) return true;
    return false;
}

/* Whether op i's output just extended t's static text: the first part of t
 * that was unknown before i finished refers to i. Otherwise the text before
 * the first unknown part is as it was, and so are its tokens. */
static bool extends_static(const wf_tmpl *t, int i, val_ctx *vc) {
    for (size_t k = 0; k < t->n; k++) {
        const wf_part *p = &t->v[k];
        if (p->kind == WF_PART_TEXT) continue;
        if (p->kind == WF_PART_OP && p->ref == i) return true;
        const char *s;
        size_t len;
        if (value_of(vc, p, &s, &len) != 1) return false;
    }
    return false;
}

/* Whether top-level op k has every dependency DONE: the job's pump, which
 * runs right after opt_op_done, makes it a call and call_ready puts its
 * whole prompt's ids in the tree. */
static bool about_to_run(const job_t *j, const wf_op *op) {
    if (op->parent >= 0) return false;
    for (size_t d = 0; d < op->n_deps; d++)
        if (j->ops[op->deps[d]].state != HELIUM__OP_STATE__OP_DONE) return false;
    return true;
}

void opt_op_done(opt_t *o, job_t *j, int i) {
    ptree_t *pt = tree_of(o, j->pol);
    if (!pt) return;
    uint64_t t0 = mono_us();
    const wf_t *wf = j->wf;
    val_ctx vc = {.wf = wf, .vals = NULL, .j = j};
    for (size_t k = 0; k < wf->n_ops; k++) {
        const wf_op *op = wf->ops[k];
        if (op->kind != WF_LLM || j->ops[k].state != HELIUM__OP_STATE__OP_WAITING) continue;
        if (!refs_op(&op->llm.prompt, i) || about_to_run(j, op) || !extends_static(&op->llm.prompt, i, &vc) ||
            !ptree_has_op(pt, j->num, (int32_t)k, 0))
            continue;
        int32_t *ids = NULL;
        int n = 0;
        bool complete = false;
        if (ptree_tmpl_prefix(pt, &op->llm.prompt, value_of, &vc, &ids, &n, &complete) == 0)
            ptree_set_prefix(pt, j->num, (int32_t)k, 0, ids, n);
        free(ids);
    }
    changed(o, j->pol);
    opt_st_of(o, j->pol)->plan_us += mono_us() - t0;
}

void opt_job_end(opt_t *o, job_t *j) {
    ptree_t *pt = tree_of(o, j->pol);
    if (pt && ptree_remove_job(pt, j->num) > 0) changed(o, j->pol);
    o->sweep_dirty = true;
}

void opt_count_prompt(opt_t *o, job_task *t) {
    if (t->counted || !o->have_model || !t->ids || t->n_ids <= 0) return;
    t->counted = true;
    int32_t nb = t->n_ids / o->bs;
    if (grow((void **)&o->hbuf, &o->cap_hbuf, (size_t)nb + 1, sizeof *o->hbuf)) return;
    nb = nb ? bh_prefix(o->root, t->ids, t->n_ids, o->bs, o->hbuf) : 0;
    int pol = t->job->pol;
    opt_counters *st = opt_st_of(o, pol);
    st->llm_tasks++;
    uint64_t digest = XXH3_64bits(t->ids, (size_t)t->n_ids * sizeof *t->ids) ^ (uint64_t)t->n_ids;
    if (!opt_set_add(&o->prompts[pol], digest)) return; /* this prompt was counted */
    uint64_t fresh = 0;
    for (int32_t b = 0; b < nb; b++) fresh += (uint64_t)opt_set_add(&o->blocks[pol], o->hbuf[b]);
    uint64_t tail = (uint64_t)(t->n_ids - nb * o->bs);
    st->min_prompt_tokens += fresh * (uint64_t)o->bs + tail + (tail == 0 && fresh == 0 ? 1 : 0);
}

/* ---------------------------------------------------------------- pins */

/* The pins changed on slot; shrink: the change may leave a working set
 * smaller (a pin gone, fewer live blocks, other steps, a warm done), so a
 * call waiting for room may fit. */
static void pins_moved(opt_t *o, int slot, bool shrink) {
    o->pins_gen++;
    if (shrink) {
        o->pins_shrink_gen++;
        if (slot >= 0 && slot < DIR_MAX_WORKERS) o->pins_shrink_slot[slot]++;
    }
    if (o->warm_deferred) o->warm_dirty = true; /* room may have come */
}

void opt_pin_moved(opt_t *o, opt_pin *g, bool shrink) {
    opt_pin_ws_sync(o, g, false);
    pins_moved(o, g->slot, shrink);
}

opt_pin *opt_pin_new(opt_t *o, const char *tag, int slot, sched_policy pol, const uint64_t *hashes,
                        int32_t nb, const int32_t *tokens) {
    if (grow((void **)&o->pins, &o->cap_pins, o->n_pins + 1, sizeof *o->pins)) return NULL;
    bool indexed = slot >= 0 && slot < DIR_MAX_WORKERS;
    opt_pin_list *sl = indexed ? &o->spins[slot] : NULL;
    if (sl && grow((void **)&sl->v, &sl->cap, sl->n + 1, sizeof *sl->v)) return NULL;
    opt_pin *g = calloc(1, sizeof *g);
    if (!g) return NULL;
    g->hashes = malloc((size_t)nb * sizeof *g->hashes);
    g->tokens = malloc((size_t)nb * (size_t)o->bs * sizeof *g->tokens);
    if (!g->hashes || !g->tokens) {
        pin_free(g, false);
        return NULL;
    }
    snprintf(g->tag, sizeof g->tag, "%s", tag);
    g->slot = slot;
    g->pol = pol;
    g->n_blocks = nb;
    g->live = nb;
    memcpy(g->hashes, hashes, (size_t)nb * sizeof *g->hashes);
    memcpy(g->tokens, tokens, (size_t)nb * (size_t)o->bs * sizeof *g->tokens);
    if (pol == SCHED_HELIUM) { /* into o->pinned, all blocks or none */
        int32_t k = 0;
        while (k < nb && hcount_add(o->pinned, hashes[k]) == 0) k++;
        g->counted = k == nb;
        if (!g->counted)
            while (k-- > 0) hcount_remove(o->pinned, hashes[k]);
    }
    g->gidx = o->n_pins;
    o->pins[o->n_pins++] = g;
    if (sl) {
        g->sidx = sl->n;
        sl->v[sl->n++] = g;
    }
    opt_pin_moved(o, g, false);
    o->next_pin++;
    opt_st_of(o, pol)->pins++;
    return g;
}

static void pin_remove_at(opt_t *o, size_t i) {
    opt_pin *g = o->pins[i];
    int slot = g->slot;
    for (int32_t k = 0; g->counted && k < g->n_blocks; k++) hcount_remove(o->pinned, g->hashes[k]);
    opt_pin_ws_sync(o, g, true);
    if (slot >= 0 && slot < DIR_MAX_WORKERS) {
        opt_pin_list *sl = &o->spins[slot];
        opt_pin *last = sl->v[--sl->n];
        sl->v[g->sidx] = last;
        last->sidx = g->sidx;
    }
    pin_free(g, true);
    o->pins[i] = o->pins[--o->n_pins];
    if (i < o->n_pins) o->pins[i]->gidx = i;
    pins_moved(o, slot, true);
}

/* Drops user i of g, and g from that task's links (both swap-removes). */
static void user_drop(opt_pin *g, uint32_t i) {
    opt_user u = g->users[i];
    job_task *t = u.t;
    struct opt_plink last = t->pinl[--t->n_pinl];
    if (u.li < t->n_pinl) {
        t->pinl[u.li] = last;
        last.g->users[last.ui].li = u.li;
    }
    opt_user lu = g->users[--g->n_users];
    if (i < g->n_users) {
        g->users[i] = lu;
        lu.t->pinl[lu.li].ui = i;
    }
}

static void pin_add_user(opt_pin *g, job_task *t) {
    for (uint32_t k = 0; k < t->n_pinl; k++) /* a task uses a few pins */
        if (t->pinl[k].g == g) return;
    if (grow((void **)&g->users, &g->cap_users, g->n_users + 1, sizeof *g->users)) return;
    size_t cap = t->cap_pinl;
    if (grow((void **)&t->pinl, &cap, (size_t)t->n_pinl + 1, sizeof *t->pinl)) return;
    t->cap_pinl = (uint32_t)cap;
    t->pinl[t->n_pinl] = (struct opt_plink){.g = g, .ui = (uint32_t)g->n_users};
    g->users[g->n_users++] = (opt_user){.t = t, .li = t->n_pinl++};
}

/* The pins to look at for worker slot `slot` (all of them when it is out
 * of range): *n of them. */
opt_pin *const *opt_pins_on(const opt_t *o, int slot, size_t *n) {
    if (slot >= 0 && slot < DIR_MAX_WORKERS) {
        *n = o->spins[slot].n;
        return o->spins[slot].v;
    }
    *n = o->n_pins;
    return o->pins;
}

/* A group of policy pol (on an alive worker; on `slot` if slot >= 0) whose
 * blocks include hashes[0..nb). */
static opt_pin *covering(opt_t *o, sched_policy pol, int slot, const uint64_t *hashes, int32_t nb) {
    if (nb <= 0) return NULL;
    size_t np;
    opt_pin *const *pv = opt_pins_on(o, slot, &np);
    for (size_t i = 0; i < np; i++) {
        opt_pin *g = pv[i];
        if (g->pol != pol || (slot >= 0 && g->slot != slot) || g->n_blocks < nb) continue;
        if (g->hashes[nb - 1] != hashes[nb - 1]) continue;
        wkr_t *w = wkrs_by_slot(o->wkrs, g->slot);
        if (w && w->alive) return g;
    }
    return NULL;
}

int32_t opt_pin_want(opt_t *o, const job_task *t, int slot, const uint64_t *hashes, int32_t nb, char tag[OPT_TAG_LEN]) {
    tag[0] = 0;
    ptree_t *pt = tree_of(o, t->job->pol);
    if (!pt || nb <= 0 || !t->ids) return 0;
    ptree_match_info mi;
    if (ptree_match(pt, t->ids, t->n_ids, &mi) || mi.sharers <= 0) return 0;
    int32_t k = mi.matched / o->bs;
    if (k > nb) k = nb;
    if (k <= 0 || covering(o, (sched_policy)t->job->pol, slot, hashes, k)) return 0;
    snprintf(tag, OPT_TAG_LEN, "pin-%llu", (unsigned long long)(o->next_pin + 1));
    return k;
}


uint32_t opt_pin_steps(opt_t *o, const job_task *t) {
    ptree_t *pt = tree_of(o, t->job->pol);
    ptree_match_info mi;
    if (!pt || !t->ids || ptree_match(pt, t->ids, t->n_ids, &mi) || mi.sharers <= 0) return 0;
    return steps_u32(mi.steps);
}

void opt_pin_commit(opt_t *o, job_task *t, int slot, const uint64_t *hashes, int32_t nb, int32_t want,
                    const char *tag) {
    sched_policy pol = (sched_policy)t->job->pol;
    if (!tree_of(o, pol)) return;
    size_t np;
    opt_pin *const *pv = opt_pins_on(o, slot, &np);
    for (size_t i = 0; i < np; i++) {
        opt_pin *g = pv[i];
        if (g->pol == pol && g->slot == slot && nb > 0 && g->hashes[0] == hashes[0])
            pin_add_user(g, t); /* shares at least one block (hashes are chained) */
    }
    if (want > 0 && want <= nb && tag && *tag && t->ids && t->n_ids >= want * o->bs) {
        opt_pin *g = opt_pin_new(o, tag, slot, pol, hashes, want, t->ids);
        if (g) {
            g->steps = opt_pin_steps(o, t); /* what the Dispatch carried */
            opt_pin_moved(o, g, false);
            pin_add_user(g, t);
            clog_msg(CLOG_DEBUG, "%s: %s pins %d blocks on slot %d for pending calls", t->job->id, g->tag, want, slot);
        }
    }
}

void opt_task_gone(opt_t *o, job_task *t) {
    while (t->n_pinl > 0) {
        struct opt_plink l = t->pinl[t->n_pinl - 1];
        user_drop(l.g, l.ui);
        o->sweep_dirty = true;
    }
}

/* The group's prefix matched against its policy's tree (nonzero: no tree or
 * no match): its last answer while that answer's stamp holds (nothing
 * changed where its match ended), else through the sweep's memo (groups of
 * one prefix on several workers match once) when it has room. */
static int sweep_match(opt_t *o, opt_pin *g, ptree_match_info *mi) {
    ptree_t *pt = tree_of(o, g->pol);
    if (!pt || g->n_blocks <= 0) return -1;
    if (ptree_stamp_valid(pt, &g->sst)) {
        *mi = g->smi;
        return g->smrc;
    }
    int rc;
    if (!o->cap_sw) {
        rc = ptree_match_stamp(pt, g->tokens, g->n_blocks * o->bs, mi, &g->sst);
    } else {
        uint64_t h = g->hashes[g->n_blocks - 1];
        size_t mask = o->cap_sw - 1;
        opt_sweep_hit *e;
        for (size_t i = (size_t)(h ^ h >> 29) & mask;; i = (i + 1) & mask) {
            e = &o->sw[i];
            if (e->gen != o->sweeps) {
                *e = (opt_sweep_hit){.gen = o->sweeps, .h = h, .nb = g->n_blocks, .pol = (int32_t)g->pol};
                e->rc = ptree_match_stamp(pt, g->tokens, g->n_blocks * o->bs, &e->mi, &e->st);
                break;
            }
            if (e->h == h && e->nb == g->n_blocks && e->pol == (int32_t)g->pol) break;
        }
        *mi = e->mi;
        rc = e->rc;
        g->sst = e->st;
    }
    g->smi = *mi;
    g->smrc = rc;
    return rc;
}

/* Leading blocks of the group that some pending call of its policy shares
 * (0: none; the group is not needed), from its match (rc, mi). */
static int32_t needed(opt_t *o, const opt_pin *g, int rc, const ptree_match_info *mi) {
    if (rc || mi->sharers <= 0) return 0;
    int32_t k = (int32_t)(mi->matched / o->bs);
    return k < g->n_blocks ? k : g->n_blocks;
}

void opt_pin_release(opt_t *o, size_t i) {
    opt_pin *g = o->pins[i];
    wkr_t *w = wkrs_by_slot(o->wkrs, g->slot);
    if (w && w->alive && o->io.send_unpin) o->io.send_unpin(o->io.ctx, w, g->tag);
    opt_st_of(o, g->pol)->unpins++;
    clog_msg(CLOG_DEBUG, "%s released on %s", g->tag, w ? w->id : "?");
    pin_remove_at(o, i);
}

/* Worth a PinSteps: the need became immediate or stopped being so, or moved
 * by more than a quarter (priorities only order evictions; small drifts
 * would be traffic for nothing). */
static bool steps_moved(uint32_t was, uint32_t now) {
    if (was == now) return false;
    if (was == 0 || now == 0) return true;
    uint32_t d = was > now ? was - now : now - was;
    return (uint64_t)d * 4 > (uint64_t)was;
}

/* The group's priority follows the plan: the steps until the nearest pending
 * call that reads its blocks runs (ptree steps: 0 once one is ready). */
static void refresh_steps(opt_t *o, opt_pin *g, int rc, const ptree_match_info *mi) {
    if (!o->io.send_pin_steps || g->warm_task || rc || mi->sharers <= 0 || mi->matched < o->bs)
        return; /* no pending reader: the group goes when its users end */
    uint32_t now = steps_u32(mi->steps);
    if (!steps_moved(g->steps, now)) return;
    wkr_t *w = wkrs_by_slot(o->wkrs, g->slot);
    if (!w || !w->alive) return;
    o->io.send_pin_steps(o->io.ctx, w, g->tag, now);
    clog_msg(CLOG_DEBUG, "%s on %s: needed %u steps ahead (was %u)", g->tag, w->id, now, g->steps);
    g->steps = now;
    opt_pin_moved(o, g, true);
    opt_st_of(o, g->pol)->pin_updates++;
}

void opt_sweep(opt_t *o) {
    if (!o->sweep_dirty) return;
    o->sweep_dirty = false;
    /* the memo: twice the groups, a power of two (without it: a match per group) */
    size_t want = 16;
    while (want < 2 * o->n_pins) want *= 2;
    if (want > o->cap_sw) {
        opt_sweep_hit *nsw = calloc(want, sizeof *nsw); /* gen 0: empty */
        if (nsw) {
            free(o->sw);
            o->sw = nsw;
            o->cap_sw = want;
        }
    }
    o->sweeps++; /* empties the memo */
    for (size_t i = 0; i < o->n_pins;) {
        opt_pin *g = o->pins[i];
        ptree_match_info mi;
        int rc = sweep_match(o, g, &mi);
        int32_t live = needed(o, g, rc, &mi);
        if (live != g->live) {
            bool shrink = live < g->live;
            g->live = live;
            opt_pin_moved(o, g, shrink);
        }
        if (!g->warm_task && g->n_users == 0 && g->live == 0) {
            opt_pin_release(o, i); /* moves the last group into slot i */
        } else {
            refresh_steps(o, g, rc, &mi);
            i++;
        }
    }
}

void opt_worker_lost(opt_t *o, int slot) {
    for (size_t i = 0; i < o->n_pins;) {
        if (o->pins[i]->slot == slot) {
            opt_st_of(o, o->pins[i]->pol)->unpins++;
            pin_remove_at(o, i);
        } else {
            i++;
        }
    }
    o->warm_dirty = true;
}

/* ---------------------------------------------------------------- order */

int opt_order(opt_t *o, const ptree_slot **slots) {
    *slots = NULL;
    if (!o->have_model) return 0;
    uint64_t gen = ptree_gen(o->pt[1]);
    if (o->order_valid && o->order_gen == gen) { /* the tree did not change: the same order */
        *slots = o->n_order > 0 ? o->slots : NULL;
        return o->n_order;
    }
    for (;;) {
        int n = ptree_order(o->pt[1], o->slots, (int)o->cap_slots);
        o->order_valid = n >= 0 && (size_t)n <= o->cap_slots;
        o->order_gen = gen;
        o->n_order = n > 0 && o->order_valid ? n : 0;
        if (n <= 0) return 0;
        if ((size_t)n <= o->cap_slots) {
            *slots = o->slots;
            return n;
        }
        if (grow((void **)&o->slots, &o->cap_slots, (size_t)n, sizeof *o->slots)) return 0;
    }
}
