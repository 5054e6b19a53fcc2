/* reply: see reply.h.
 *
 * JobStatus lists ops in the workflow's topological order, each map or loop
 * op followed by its body ops (in their own order). A map's body op carries
 * only its state and kind; the map op carries the items, the per-item
 * outputs and the token counts summed over items.
 */
#include "reply.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "herr.h"

void *rep_alloc(rep_arena *a, size_t size) {
    if (a->n == a->cap) {
        size_t c = a->cap ? a->cap * 2 : 32;
        void **v = realloc(a->v, c * sizeof *v);
        if (!v) {
            a->oom = true;
            return NULL;
        }
        a->v = v;
        a->cap = c;
    }
    void *p = calloc(1, size ? size : 1);
    if (!p) {
        a->oom = true;
        return NULL;
    }
    a->v[a->n++] = p;
    return p;
}

char *rep_strdup(rep_arena *a, const char *s) {
    size_t n = s ? strlen(s) : 0;
    char *p = rep_alloc(a, n + 1);
    if (p && n) memcpy(p, s, n);
    return p ? p : (char *)protobuf_c_empty_string;
}

char *rep_printf(rep_arena *a, const char *fmt, ...) {
    char buf[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    return rep_strdup(a, buf);
}

void rep_arena_free(rep_arena *a) {
    for (size_t i = 0; i < a->n; i++) free(a->v[i]);
    free(a->v);
    memset(a, 0, sizeof *a);
}

Helium__Error *rep_error(rep_arena *a, Helium__ErrorCode code, const char *msg, const char *op_id) {
    Helium__Error *e = rep_alloc(a, sizeof *e);
    if (!e) return NULL;
    helium__error__init(e);
    e->code = code;
    e->message = rep_strdup(a, msg);
    e->op_id = rep_strdup(a, op_id);
    return e;
}

static Helium__Timing *timing(rep_arena *a, uint64_t submitted, uint64_t started, uint64_t first, uint64_t finished,
                              uint64_t queue_dur) {
    Helium__Timing *t = rep_alloc(a, sizeof *t);
    if (!t) return NULL;
    helium__timing__init(t);
    t->submitted_us = submitted;
    t->started_us = started;
    t->first_token_us = first;
    t->finished_us = finished;
    t->queue_dur_us = queue_dur;
    return t;
}

static Helium__OpStatus *op_status(rep_arena *a, const job_t *j, int i, bool outputs) {
    const wf_op *op = j->wf->ops[i];
    const job_op *o = &j->ops[i];
    Helium__OpStatus *s = rep_alloc(a, sizeof *s);
    if (!s) return NULL;
    helium__op_status__init(s);
    s->op_id = op->id;
    s->state = o->state;
    s->kind = (char *)wf_kind_name(op->kind);
    bool map_body = op->parent >= 0 && j->wf->ops[op->parent]->kind == WF_MAP;
    s->timing = timing(a, o->ready_us, o->started_us, o->first_token_us, o->finished_us, o->queue_dur_us);
    if (map_body) return s; /* accounted on the map op */
    s->worker = (char *)o->worker;
    if (outputs && o->out) s->output = o->out;
    s->prompt_tokens = o->prompt_tokens;
    s->cached_tokens = o->cached_tokens;
    s->generated_tokens = o->generated_tokens;
    s->pulled_tokens = o->pulled_tokens;
    s->attempts = o->attempts;
    if (o->state == HELIUM__OP_STATE__OP_FAILED && o->err != HELIUM__ERROR_CODE__ERROR_OK)
        s->error = rep_error(a, o->err, o->err_msg, op->id);
    if (op->kind == WF_MAP) {
        s->items_total = o->n_items;
        s->items_done = o->items_done;
        if (outputs && o->item_out && o->n_items) {
            s->outputs = rep_alloc(a, o->n_items * sizeof *s->outputs);
            if (s->outputs) {
                for (uint32_t k = 0; k < o->n_items; k++)
                    s->outputs[k] = o->item_out[k] ? o->item_out[k] : (char *)protobuf_c_empty_string;
                s->n_outputs = o->n_items;
            }
        }
    }
    if (op->kind == WF_LOOP) s->round = o->round;
    return s;
}

/* Appends the ops of a scope (and nested bodies) in order. */
static void add_scope(rep_arena *a, const job_t *j, const int *order, size_t n, bool outputs,
                      Helium__OpStatus **v, size_t *nv) {
    for (size_t k = 0; k < n; k++) {
        int i = order[k];
        Helium__OpStatus *s = op_status(a, j, i, outputs);
        if (s && *nv < j->wf->n_ops) v[(*nv)++] = s;
        const wf_op *op = j->wf->ops[i];
        if (op->kind == WF_MAP || op->kind == WF_LOOP) add_scope(a, j, op->order, op->n_order, outputs, v, nv);
    }
}

Helium__JobStatus *rep_job_status(rep_arena *a, const job_t *j, bool outputs, uint64_t partial_after) {
    Helium__JobStatus *s = rep_alloc(a, sizeof *s);
    if (!s) return NULL;
    helium__job_status__init(s);
    s->job_id = (char *)j->id;
    s->state = j->state;
    s->workflow_name = j->wf->name ? j->wf->name : (char *)protobuf_c_empty_string;
    s->client_tag = j->client_tag;
    s->policy = j->policy;
    s->timing = timing(a, j->submitted_us, j->started_us, 0, j->finished_us, 0);
    if (j->state == HELIUM__JOB_STATE__JOB_FAILED || j->state == HELIUM__JOB_STATE__JOB_CANCELED)
        s->error = rep_error(a, j->err, j->err_msg, j->err_op);
    if (j->state == HELIUM__JOB_STATE__JOB_DONE && j->wf->output >= 0) {
        size_t len;
        s->output = (char *)jobs_op_output(j, j->wf->output, &len);
    }
    s->ops = rep_alloc(a, (j->wf->n_ops ? j->wf->n_ops : 1) * sizeof *s->ops);
    if (s->ops) add_scope(a, j, j->wf->order, j->wf->n_order, outputs, s->ops, &s->n_ops);
    size_t first = 0;
    while (first < j->n_chunks && j->chunks[first].seq <= partial_after) first++;
    if (first < j->n_chunks) {
        s->partial = rep_alloc(a, (j->n_chunks - first) * sizeof *s->partial);
        for (size_t k = first; s->partial && k < j->n_chunks; k++) {
            const job_chunk *c = &j->chunks[k];
            Helium__PartialOutput *p = rep_alloc(a, sizeof *p);
            if (!p) break;
            helium__partial_output__init(p);
            p->op_id = j->wf->ops[c->op]->id;
            p->item = c->item;
            p->seq = c->seq;
            p->text = c->text;
            p->done = c->done;
            s->partial[s->n_partial++] = p;
        }
    }
    return s;
}

Helium__JobSummary *rep_job_summary(rep_arena *a, const job_t *j) {
    Helium__JobSummary *s = rep_alloc(a, sizeof *s);
    if (!s) return NULL;
    helium__job_summary__init(s);
    s->job_id = (char *)j->id;
    s->workflow_name = j->wf->name ? j->wf->name : (char *)protobuf_c_empty_string;
    s->state = j->state;
    s->n_ops = (uint32_t)j->wf->n_ops;
    for (size_t i = 0; i < j->wf->n_ops; i++) s->n_done += j->ops[i].state == HELIUM__OP_STATE__OP_DONE;
    s->timing = timing(a, j->submitted_us, j->started_us, 0, j->finished_us, 0);
    return s;
}

Helium__WorkerInfo *rep_worker_info(rep_arena *a, const wkr_t *w, bool counters) {
    Helium__WorkerInfo *x = rep_alloc(a, sizeof *x);
    if (!x) return NULL;
    helium__worker_info__init(x);
    x->id = (char *)w->id;
    x->endpoint = (char *)w->endpoint;
    x->model = (char *)w->model;
    x->backend = (char *)w->backend;
    x->block_size = w->block_size;
    x->kv_blocks_total = w->kv_blocks_total;
    x->kv_blocks_used = w->kv_used;
    x->kv_blocks_cached = w->kv_cached;
    x->queue_depth = w->queued;
    x->running = w->running;
    x->hit_tokens = wkr_counter_get(w, "cached_tokens");
    x->lookup_tokens = wkr_counter_get(w, "prompt_tokens");
    x->alive = w->alive;
    x->last_heartbeat_us = w->last_hb_us;
    x->model_root = w->model_root;
    x->n_ctx = w->n_ctx;
    x->max_batch = w->max_batch;
    if (counters && w->n_counters) {
        x->counters = rep_alloc(a, w->n_counters * sizeof *x->counters);
        for (size_t i = 0; x->counters && i < w->n_counters; i++) {
            Helium__WorkerInfo__CountersEntry *e = rep_alloc(a, sizeof *e);
            if (!e) break;
            helium__worker_info__counters_entry__init(e);
            e->key = (char *)w->counters[i].key;
            e->value = w->counters[i].value;
            x->counters[x->n_counters++] = e;
        }
    }
    return x;
}

int rep_pack(Helium__Reply *r, uint8_t **buf, size_t *len) {
    r->protocol_version = HELIUM__PROTOCOL__PROTOCOL_CURRENT;
    size_t n = helium__reply__get_packed_size(r);
    uint8_t *b = malloc(n ? n : 1);
    if (!b) return he_set(HE_ENOMEM, "out of memory");
    *len = helium__reply__pack(r, b);
    *buf = b;
    return 0;
}
