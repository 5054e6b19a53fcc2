/* opt_dedup: the optimizer's reuse of identical calls (helium policy):
 * opt_call_of gives an LLM task's result-cache identity (model, prompt ids,
 * sampling, seed, stops), and the dedup table keeps one leader per identical
 * in-flight call with its followers, which get the leader's result instead
 * of computing it again.
 *
 * Invariants: an entry is in its hash bucket while its leader lives; when
 * the leader is dropped with followers waiting it moves to the orphan list,
 * whose followers opt_dd_pop_orphan hands back one at a time. A task
 * points at its entry (task->opt) exactly while it is its leader or one of
 * its followers. Lookups hash on the key (OPT_DD_BUCKETS chains).
 */
#include <string.h>

#include "opt_impl.h"

/* ---------------------------------------------------- result cache, dedup */

bool opt_call_of(const opt_t *o, const job_task *t, rcache_call *c) {
    memset(c, 0, sizeof *c);
    if (t->kind != JT_LLM || !t->ids || t->n_ids <= 0) return false;
    const wf_op *op = t->job->wf->ops[t->op];
    c->kind = RCACHE_LLM;
    c->model_root = o->root;
    c->model = op->llm.model;
    c->ids = t->ids;
    c->n_ids = (size_t)t->n_ids;
    c->temperature = op->llm.sampling.temperature;
    c->top_k = op->llm.sampling.top_k;
    c->top_p = op->llm.sampling.top_p;
    c->seed = t->seed;
    c->seeded = op->llm.sampling.seed != 0;
    c->max_tokens = op->llm.max_tokens;
    c->stop = (const char *const *)op->llm.stop;
    c->n_stop = op->llm.n_stop;
    return rcache_cacheable(c, false);
}

static opt_dd **bucket(opt_t *o, rcache_key k) { return &o->dd[k.lo & (OPT_DD_BUCKETS - 1)]; }

opt_dd *opt_dd_find(opt_t *o, rcache_key key) {
    for (opt_dd *e = *bucket(o, key); e; e = e->next)
        if (e->leader && e->key.lo == key.lo && e->key.hi == key.hi) return e;
    return NULL;
}

int opt_dd_lead(opt_t *o, rcache_key key, job_task *t) {
    opt_dd *e = calloc(1, sizeof *e);
    if (!e) return he_set(HE_ENOMEM, "out of memory");
    e->key = key;
    e->leader = t;
    opt_dd **b = bucket(o, key);
    e->next = *b;
    *b = e;
    t->opt = e;
    return 0;
}

int opt_dd_follow(opt_t *o, opt_dd *e, job_task *t) {
    (void)o;
    if (grow((void **)&e->f, &e->cap_f, e->n_f + 1, sizeof *e->f)) return HE_ENOMEM;
    e->f[e->n_f++] = t;
    t->opt = e;
    return 0;
}

bool opt_dd_leads(const job_task *t) { return t->opt && ((const opt_dd *)t->opt)->leader == t; }

static void unlink_entry(opt_t *o, opt_dd *e) {
    for (opt_dd **pp = bucket(o, e->key); *pp; pp = &(*pp)->next)
        if (*pp == e) {
            *pp = e->next;
            e->next = NULL;
            return;
        }
}

opt_dd *opt_dd_finish(opt_t *o, job_task *t, rcache_key *key) {
    opt_dd *e = t->opt;
    if (!e || e->leader != t) return NULL;
    unlink_entry(o, e);
    e->leader = NULL;
    t->opt = NULL;
    *key = e->key;
    return e;
}

job_task *opt_dd_pop(opt_dd *e) {
    if (!e || e->n_f == 0) return NULL;
    job_task *t = e->f[0];
    memmove(e->f, e->f + 1, (e->n_f - 1) * sizeof *e->f);
    e->n_f--;
    t->opt = NULL;
    return t;
}

void opt_dd_free(opt_dd **e) {
    if (!e || !*e) return;
    free((*e)->f);
    free(*e);
    *e = NULL;
}

void opt_dd_drop(opt_t *o, job_task *t) {
    opt_dd *e = t->opt;
    if (!e) return;
    t->opt = NULL;
    if (e->leader == t) {
        unlink_entry(o, e);
        e->leader = NULL;
        if (e->n_f == 0) {
            opt_dd_free(&e);
            return;
        }
        e->next = o->orphans;
        o->orphans = e;
        return;
    }
    for (size_t k = 0; k < e->n_f; k++)
        if (e->f[k] == t) {
            memmove(e->f + k, e->f + k + 1, (e->n_f - k - 1) * sizeof *e->f);
            e->n_f--;
            return;
        }
}

job_task *opt_dd_pop_orphan(opt_t *o) {
    while (o->orphans) {
        opt_dd *e = o->orphans;
        job_task *t = opt_dd_pop(e);
        if (t) return t;
        o->orphans = e->next;
        opt_dd_free(&e);
    }
    return NULL;
}
