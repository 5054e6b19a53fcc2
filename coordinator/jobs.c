/* jobs: see jobs.h.
 *
 * Execution is driven by pump(): one pass walks the top-level scope in
 * topological order, starting every WAITING op whose deps are DONE and
 * descending into RUNNING loops; because the order is topological, a chain of
 * ops that finish at once (joins) completes within one pass. Passes repeat
 * until nothing changes, so an event costs O(ops + deps) per pass.
 *
 * Invariants: a live task is referenced from exactly one place in its job
 * (job_op.task, or job_op.tasks[item] of its map) and, while queued, from the
 * ready FIFO; job->live_tasks counts them. A finished job has no live tasks.
 */
#include "jobs.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "clock.h"
#include "herr.h"
#include "render.h"

struct jobs {
    jobs_config cfg;
    jobs_hooks hooks;
    job_t **by_num;         /* (cap_num) by_num[N-1] = job N, NULL once evicted */
    size_t cap_num;
    uint64_t last_num;      /* last job number handed out */
    size_t n_live;          /* non-NULL entries of by_num */
    uint64_t *fin;          /* (cfg.keep_finished) ring of finished job numbers, oldest at fin_head */
    size_t fin_head, fin_len;
    job_task *qhead, *qtail;
    size_t qlen;
    jobs_counts counts;
    size_t max_active;      /* jobs_set_max_active (0: no limit) */
    size_t n_started;       /* active jobs started (not parked) */
    job_t *park_head, *park_tail; /* parked jobs, oldest first */
    bool unparking;         /* inside unpark (a job ending there does not recurse) */
};

/* ------------------------------------------------------------------ helpers */

static char *dup_n(const char *s, size_t n) {
    char *p = malloc(n + 1);
    if (!p) return NULL;
    if (n) memcpy(p, s, n);
    p[n] = 0;
    return p;
}

static bool active(const job_t *j) {
    return j->state == HELIUM__JOB_STATE__JOB_QUEUED || j->state == HELIUM__JOB_STATE__JOB_RUNNING;
}

bool jobs_is_final(Helium__JobState s) {
    return s == HELIUM__JOB_STATE__JOB_DONE || s == HELIUM__JOB_STATE__JOB_FAILED ||
           s == HELIUM__JOB_STATE__JOB_CANCELED;
}

static Helium__ErrorCode code_of(int he) {
    switch (he) {
    case HE_ELIMIT: return HELIUM__ERROR_CODE__ERROR_LIMIT;
    case HE_ENOMEM: return HELIUM__ERROR_CODE__ERROR_INTERNAL;
    case HE_ECONTEXT: return HELIUM__ERROR_CODE__ERROR_PROMPT_TOO_LONG;
    case HE_EREF: return HELIUM__ERROR_CODE__ERROR_DANGLING_REF;
    default: return HELIUM__ERROR_CODE__ERROR_INVALID;
    }
}

/* Innermost enclosing op of kind k of op i, or -1. */
static int enclosing(const wf_t *wf, int i, wf_kind k) {
    for (int a = wf->ops[i]->parent; a >= 0; a = wf->ops[a]->parent)
        if (wf->ops[a]->kind == k) return a;
    return -1;
}

static bool is_descendant(const wf_t *wf, int i, int anc) {
    for (int a = wf->ops[i]->parent; a >= 0; a = wf->ops[a]->parent)
        if (a == anc) return true;
    return false;
}

/* --------------------------------------------------------------- ready FIFO */

static void q_remove(jobs_t *js, job_task *t) {
    if (!t->queued) return;
    if (t->qprev) t->qprev->qnext = t->qnext; else js->qhead = t->qnext;
    if (t->qnext) t->qnext->qprev = t->qprev; else js->qtail = t->qprev;
    t->qprev = t->qnext = NULL;
    t->queued = false;
    js->qlen--;
}

static void q_push(jobs_t *js, job_task *t, bool front) {
    t->queued = true;
    t->ready_us = clock_wall_us();
    if (front) {
        t->qprev = NULL;
        t->qnext = js->qhead;
        if (js->qhead) js->qhead->qprev = t; else js->qtail = t;
        js->qhead = t;
    } else {
        t->qnext = NULL;
        t->qprev = js->qtail;
        if (js->qtail) js->qtail->qnext = t; else js->qhead = t;
        js->qtail = t;
    }
    js->qlen++;
}

job_task *jobs_ready_first(jobs_t *js) { return js->qhead; }
job_task *jobs_ready_next(job_task *t) { return t->qnext; }
size_t jobs_ready_count(const jobs_t *js) { return js->qlen; }

/* ------------------------------------------------------------ partial text */

static void chunk_drop_oldest(job_t *j) {
    j->chunk_bytes -= j->chunks[0].len;
    free(j->chunks[0].text);
    memmove(j->chunks, j->chunks + 1, (j->n_chunks - 1) * sizeof *j->chunks);
    j->n_chunks--;
}

/* Appends a partial-output chunk (text truncated to the per-job byte bound). */
static void emit(job_t *j, int op, uint32_t item, const char *text, size_t len, bool done) {
    if (len > JOBS_MAX_CHUNK_BYTES) len = JOBS_MAX_CHUNK_BYTES;
    while (j->n_chunks && (j->n_chunks >= JOBS_MAX_CHUNKS || j->chunk_bytes + len > JOBS_MAX_CHUNK_BYTES))
        chunk_drop_oldest(j);
    if (j->n_chunks == j->cap_chunks) {
        size_t c = j->cap_chunks ? j->cap_chunks * 2 : 16;
        job_chunk *v = realloc(j->chunks, c * sizeof *v);
        if (!v) return; /* partial output is best effort */
        j->chunks = v;
        j->cap_chunks = c;
    }
    char *s = dup_n(text ? text : "", text ? len : 0);
    if (!s) return;
    j->chunks[j->n_chunks++] = (job_chunk){.seq = ++j->chunk_seq, .op = op, .item = item, .text = s,
                                           .len = text ? len : 0, .done = done};
    j->chunk_bytes += text ? len : 0;
    if (j->owner->hooks.job_progress) j->owner->hooks.job_progress(j->owner->hooks.ctx, j);
}

/* ------------------------------------------------------------------- tasks */

static void task_free(job_task *t) {
    if (!t) return;
    free(t->text);
    free(t->url);
    free(t->ids);
    free(t->hashes);
    free(t->pinl);
    free(t);
}

/* Removes t from its job's references (not from the FIFO). */
static void task_detach(job_t *j, job_task *t) {
    if (t->map >= 0) {
        job_op *m = &j->ops[t->map];
        if (m->tasks && t->item < m->n_items && m->tasks[t->item] == t) m->tasks[t->item] = NULL;
    } else if (j->ops[t->op].task == t) {
        j->ops[t->op].task = NULL;
    }
    j->live_tasks--;
}

/* Drops a live task: dequeued, or stopped through the abort hook if started. */
static void task_kill(job_t *j, job_task *t) {
    jobs_t *js = j->owner;
    bool started = !t->queued && (t->worker >= 0 || t->runner);
    if (t->queued) q_remove(js, t);
    if ((started || t->opt) && js->hooks.task_abort) js->hooks.task_abort(js->hooks.ctx, t);
    task_detach(j, t);
    task_free(t);
}

/* The op record that accounts for t: its map for items, else its own. */
static job_op *owner_rec(job_t *j, const job_task *t) { return &j->ops[t->map >= 0 ? t->map : t->op]; }

/* ------------------------------------------------------------------ ending */

static void free_op_state(job_op *o) {
    free(o->out);
    rnd_free_items(o->items, o->n_items);
    rnd_free_items(o->item_out, o->n_items);
    free(o->tasks);
    free(o->prev);
    free(o->err_msg);
    memset(o, 0, sizeof *o);
}

static void job_free(job_t *j) {
    if (!j) return;
    for (size_t i = 0; j->ops && i < j->wf->n_ops; i++) free_op_state(&j->ops[i]);
    free(j->ops);
    for (size_t i = 0; j->input_vals && i < j->wf->n_inputs; i++) free(j->input_vals[i]);
    free(j->input_vals);
    for (size_t i = 0; i < j->n_chunks; i++) free(j->chunks[i].text);
    free(j->chunks);
    wf_destroy(&j->wf);
    free(j->policy);
    free(j->client_tag);
    free(j->err_msg);
    free(j->err_op);
    free(j->pruned);
    free(j->alias);
    free(j->cp);
    free(j->start);
    if (j->park && j->owner && j->owner->hooks.park_free) j->owner->hooks.park_free(j->owner->hooks.ctx, j);
    free(j);
}

static void fin_push(jobs_t *js, job_t *j) {
    size_t cap = js->cfg.keep_finished;
    if (js->fin_len == cap) {
        uint64_t old = js->fin[js->fin_head];
        js->fin_head = (js->fin_head + 1) % cap;
        js->fin_len--;
        if (old >= 1 && old <= js->last_num && js->by_num[old - 1]) {
            job_free(js->by_num[old - 1]);
            js->by_num[old - 1] = NULL;
            js->n_live--;
        }
    }
    js->fin[(js->fin_head + js->fin_len) % cap] = j->num;
    js->fin_len++;
}

static void unpark(jobs_t *js);

/* Takes a parked job out of the FIFO (it was canceled). O(parked jobs). */
static void park_remove(jobs_t *js, job_t *j) {
    job_t **pp = &js->park_head, *prev = NULL;
    while (*pp && *pp != j) {
        prev = *pp;
        pp = &(*pp)->park_next;
    }
    if (!*pp) return;
    *pp = j->park_next;
    if (js->park_tail == j) js->park_tail = prev;
    j->park_next = NULL;
    j->parked = false;
    js->counts.parked--;
}

/* Ends an active job in state st: stops its tasks, settles op states, runs
 * the job_end hook, files the job among the finished and starts parked jobs
 * there is room for now. */
static void job_finish(job_t *j, Helium__JobState st) {
    if (!active(j)) return;
    jobs_t *js = j->owner;
    if (j->state == HELIUM__JOB_STATE__JOB_QUEUED) js->counts.queued--; else js->counts.running--;
    if (j->parked) park_remove(js, j);
    if (j->started) {
        j->started = false;
        js->n_started--;
    }
    j->state = st;
    j->finished_us = clock_wall_us();
    for (size_t i = 0; i < j->wf->n_ops; i++) {
        job_op *o = &j->ops[i];
        if (o->task) task_kill(j, o->task);
        for (uint32_t k = 0; o->tasks && k < o->n_items; k++)
            if (o->tasks[k]) task_kill(j, o->tasks[k]);
        if (o->state == HELIUM__OP_STATE__OP_WAITING) o->state = HELIUM__OP_STATE__OP_SKIPPED;
        else if (o->state == HELIUM__OP_STATE__OP_READY || o->state == HELIUM__OP_STATE__OP_RUNNING) {
            o->state = HELIUM__OP_STATE__OP_CANCELED;
            o->finished_us = j->finished_us;
        }
    }
    if (st == HELIUM__JOB_STATE__JOB_DONE) js->counts.done++;
    else if (st == HELIUM__JOB_STATE__JOB_FAILED) js->counts.failed++;
    else js->counts.canceled++;
    if (js->hooks.job_end) js->hooks.job_end(js->hooks.ctx, j);
    if (j->park && js->hooks.park_free) js->hooks.park_free(js->hooks.ctx, j); /* ended parked */
    fin_push(js, j);
    unpark(js);
}

/* Fails op i (and the map/loop ops enclosing it) and the job. */
static void job_fail(job_t *j, int i, Helium__ErrorCode code, const char *msg) {
    if (!active(j)) return;
    uint64_t now = clock_wall_us();
    for (int a = i; a >= 0; a = j->wf->ops[a]->parent) {
        job_op *o = &j->ops[a];
        o->state = HELIUM__OP_STATE__OP_FAILED;
        o->err = code;
        free(o->err_msg);
        o->err_msg = strdup(msg ? msg : "");
        o->finished_us = now;
    }
    j->err = code;
    free(j->err_msg);
    j->err_msg = strdup(msg ? msg : "");
    free(j->err_op);
    j->err_op = strdup(j->wf->ops[i]->id);
    job_finish(j, HELIUM__JOB_STATE__JOB_FAILED);
}

/* --------------------------------------------------------------- rendering */

typedef struct {
    job_t *j;
    int op;                 /* the consuming op */
    const char *item;       /* {{item}} value, or NULL */
    const char *sep;        /* separator for list (map) values */
} render_ctx;

static int render_value(void *u, const wf_part *p, sbuf *out) {
    render_ctx *c = u;
    job_t *j = c->j;
    switch (p->kind) {
    case WF_PART_INPUT:
        if (p->ref < 0 || (size_t)p->ref >= j->wf->n_inputs) return he_set(HE_EREF, "bad input reference");
        return sb_adds(out, j->input_vals[p->ref]);
    case WF_PART_OP: {
        if (p->ref < 0 || (size_t)p->ref >= j->wf->n_ops) return he_set(HE_EREF, "bad op reference");
        const job_op *o = &j->ops[p->ref];
        if (j->wf->ops[p->ref]->kind == WF_MAP && o->item_out && o->state == HELIUM__OP_STATE__OP_DONE)
            return rnd_join(o->item_out, o->n_items, c->sep, strlen(c->sep), out);
        return sb_add(out, o->out ? o->out : "", o->out ? o->out_len : 0);
    }
    case WF_PART_ITEM: return sb_adds(out, c->item ? c->item : "");
    case WF_PART_PREV: {
        int l = enclosing(j->wf, c->op, WF_LOOP);
        return sb_adds(out, l >= 0 && j->ops[l].prev ? j->ops[l].prev : "");
    }
    default: return he_set(HE_EINVAL, "bad template part");
    }
}

/* Renders template t of op i (item: map item value or NULL) into a new string. */
static int render(job_t *j, int i, const wf_tmpl *t, const char *item, char **out, size_t *len) {
    const wf_op *op = j->wf->ops[i];
    render_ctx c = {.j = j, .op = i, .item = item,
                    .sep = op->kind == WF_JOIN && op->join.separator ? op->join.separator : "\n"};
    sbuf b;
    sb_init(&b, JOBS_MAX_TEXT);
    int rc = rnd_template(t, render_value, &c, &b);
    if (rc) {
        sb_free(&b);
        return rc;
    }
    *out = sb_take(&b, len);
    return *out ? 0 : he_set(HE_ENOMEM, "out of memory");
}

/* ----------------------------------------------------------------- op flow */

static uint32_t cur_round(const job_t *j, int i) {
    int l = enclosing(j->wf, i, WF_LOOP);
    return l >= 0 ? j->ops[l].round : 0;
}

/* Marks op i DONE with output text (ownership taken). */
static void op_done(job_t *j, int i, char *text, size_t len) {
    job_op *o = &j->ops[i];
    free(o->out);
    o->out = text;
    o->out_len = len;
    o->state = HELIUM__OP_STATE__OP_DONE;
    o->finished_us = clock_wall_us();
    jobs_t *js = j->owner;
    if (js->hooks.op_done) js->hooks.op_done(js->hooks.ctx, j, i);
}

/* Creates a task for op i (map item `item` of map m, or m = -1) and queues it. */
static int make_task(job_t *j, int i, int m, uint32_t item, const char *item_val, job_task **out) {
    const wf_op *op = j->wf->ops[i];
    job_task *t = calloc(1, sizeof *t);
    if (!t) return he_set(HE_ENOMEM, "out of memory");
    t->job = j;
    t->op = i;
    t->map = m;
    t->item = item;
    t->round = cur_round(j, i);
    t->worker = -1;
    int rc;
    if (op->kind == WF_LLM) {
        t->kind = JT_LLM;
        t->seed = op->llm.sampling.seed + item;
        if (op->llm.n_messages) { /* the chat through the model's template */
            render_ctx c = {.j = j, .op = i, .item = item_val, .sep = "\n"};
            rc = rnd_chat(j->owner->cfg.chat, op, render_value, &c, JOBS_MAX_TEXT, &t->text, &t->text_len);
        } else {
            rc = render(j, i, &op->llm.prompt, item_val, &t->text, &t->text_len);
        }
    } else {
        t->kind = JT_TOOL;
        size_t ul;
        rc = render(j, i, &op->tool.url, item_val, &t->url, &ul);
        if (!rc) rc = render(j, i, &op->tool.body, item_val, &t->text, &t->text_len);
    }
    if (rc) {
        task_free(t);
        return rc;
    }
    j->live_tasks++;
    q_push(j->owner, t, false);
    *out = t;
    if (j->owner->hooks.task_new) j->owner->hooks.task_new(j->owner->hooks.ctx, t);
    return 0;
}

static void map_finish(job_t *j, int m) {
    job_op *o = &j->ops[m];
    sbuf b;
    sb_init(&b, JOBS_MAX_TEXT);
    int rc = rnd_join(o->item_out, o->n_items, "\n", 1, &b);
    if (rc) {
        sb_free(&b);
        job_fail(j, m, code_of(rc), he_msg());
        return;
    }
    size_t len;
    char *s = sb_take(&b, &len);
    if (!s) {
        job_fail(j, m, HELIUM__ERROR_CODE__ERROR_INTERNAL, "out of memory");
        return;
    }
    int body = j->wf->ops[m]->map.body;
    if (body >= 0) {
        j->ops[body].state = HELIUM__OP_STATE__OP_DONE;
        j->ops[body].finished_us = clock_wall_us();
    }
    op_done(j, m, s, len);
}

/* The list a map iterates: a copy of a map's item outputs, or a split text. */
static int map_list(job_t *j, int m, char ***items, uint32_t *n) {
    const wf_op *op = j->wf->ops[m];
    const wf_part *over = &op->map.over;
    if (over->kind == WF_PART_OP && over->ref >= 0 && j->wf->ops[over->ref]->kind == WF_MAP &&
        j->ops[over->ref].item_out) {
        const job_op *src = &j->ops[over->ref];
        if (src->n_items > op->map.max_width)
            return he_set(HE_ELIMIT, "the list has %u items, more than max_width %u", src->n_items,
                          op->map.max_width);
        *n = 0;
        *items = calloc(src->n_items ? src->n_items : 1, sizeof **items);
        if (!*items) return he_set(HE_ENOMEM, "out of memory");
        for (uint32_t k = 0; k < src->n_items; k++) {
            if (!((*items)[k] = strdup(src->item_out[k] ? src->item_out[k] : ""))) {
                rnd_free_items(*items, k);
                return he_set(HE_ENOMEM, "out of memory");
            }
        }
        *n = src->n_items;
        return 0;
    }
    const char *text = "";
    size_t len = 0;
    if (over->kind == WF_PART_INPUT && over->ref >= 0 && (size_t)over->ref < j->wf->n_inputs) {
        text = j->input_vals[over->ref];
        len = strlen(text);
    } else if (over->kind == WF_PART_OP && over->ref >= 0 && (size_t)over->ref < j->wf->n_ops) {
        text = j->ops[over->ref].out ? j->ops[over->ref].out : "";
        len = j->ops[over->ref].out_len;
    } else {
        return he_set(HE_EREF, "map has no list to iterate");
    }
    return rnd_split(text, len, op->map.split, op->map.max_width, items, n);
}

static void start_map(job_t *j, int m) {
    job_op *o = &j->ops[m];
    const wf_op *op = j->wf->ops[m];
    int rc = map_list(j, m, &o->items, &o->n_items);
    if (rc) {
        job_fail(j, m, code_of(rc), he_msg());
        return;
    }
    o->item_out = calloc(o->n_items ? o->n_items : 1, sizeof *o->item_out);
    o->tasks = calloc(o->n_items ? o->n_items : 1, sizeof *o->tasks);
    if (!o->item_out || !o->tasks) {
        job_fail(j, m, HELIUM__ERROR_CODE__ERROR_INTERNAL, "out of memory");
        return;
    }
    o->state = HELIUM__OP_STATE__OP_RUNNING;
    o->ready_us = clock_wall_us();
    int body = op->map.body;
    if (body < 0) {
        job_fail(j, m, HELIUM__ERROR_CODE__ERROR_INVALID, "map has no body op");
        return;
    }
    j->ops[body].state = HELIUM__OP_STATE__OP_RUNNING;
    const wf_op *bop = j->wf->ops[body];
    for (uint32_t k = 0; k < o->n_items; k++) {
        if (bop->kind == WF_JOIN) {
            size_t len;
            char *s;
            if ((rc = render(j, body, &bop->join.parts, o->items[k], &s, &len))) {
                job_fail(j, body, code_of(rc), he_msg());
                return;
            }
            o->item_out[k] = s;
            o->items_done++;
            emit(j, m, k, s, len, true);
        } else if ((rc = make_task(j, body, m, k, o->items[k], &o->tasks[k]))) {
            job_fail(j, body, code_of(rc), he_msg());
            return;
        }
    }
    if (o->items_done == o->n_items) map_finish(j, m);
}

/* Resets every op inside loop l for a new round. */
static void loop_reset_body(job_t *j, int l) {
    for (size_t i = (size_t)l + 1; i < j->wf->n_ops; i++)
        if (is_descendant(j->wf, (int)i, l)) {
            free_op_state(&j->ops[i]);
            j->ops[i].state = HELIUM__OP_STATE__OP_WAITING;
        }
}

static void start_op(job_t *j, int i) {
    const wf_op *op = j->wf->ops[i];
    job_op *o = &j->ops[i];
    o->ready_us = clock_wall_us();
    int rc = 0;
    switch (op->kind) {
    case WF_LLM:
    case WF_TOOL:
        o->state = HELIUM__OP_STATE__OP_READY;
        rc = make_task(j, i, -1, 0, NULL, &o->task);
        break;
    case WF_JOIN: {
        char *s;
        size_t len;
        if (!(rc = render(j, i, &op->join.parts, NULL, &s, &len))) {
            op_done(j, i, s, len);
            emit(j, i, 0, s, len, true);
        }
        break;
    }
    case WF_MAP: start_map(j, i); return;
    case WF_LOOP:
        o->state = HELIUM__OP_STATE__OP_RUNNING;
        o->round = 1;
        if (!(o->prev = strdup(""))) rc = he_set(HE_ENOMEM, "out of memory");
        loop_reset_body(j, i);
        break;
    default: rc = he_set(HE_EINVAL, "unknown operator kind"); break;
    }
    if (rc) job_fail(j, i, code_of(rc), he_msg());
}

static bool deps_done(const job_t *j, int i) {
    const wf_op *op = j->wf->ops[i];
    for (size_t k = 0; k < op->n_deps; k++)
        if (j->ops[op->deps[k]].state != HELIUM__OP_STATE__OP_DONE) return false;
    return true;
}

static bool is_pruned(const job_t *j, int i) { return j->pruned && j->pruned[i]; }

/* Every op of the scope is settled: DONE, or pruned (never runs). */
static bool scope_done(const job_t *j, const int *order, size_t n) {
    for (size_t k = 0; k < n; k++) {
        int i = order[k];
        if (j->ops[i].state != HELIUM__OP_STATE__OP_DONE &&
            !(is_pruned(j, i) && j->ops[i].state == HELIUM__OP_STATE__OP_SKIPPED))
            return false;
    }
    return true;
}

/* Op i copies the output of op alias[i] (an identical computation) once it
 * is done. Returns true if op i is aliased (done now or waiting). */
static bool try_alias(job_t *j, int i, bool *changed) {
    int a = j->alias ? j->alias[i] : -1;
    if (a < 0) return false;
    const job_op *src = &j->ops[a];
    if (src->state != HELIUM__OP_STATE__OP_DONE) return true;
    char *s = dup_n(src->out ? src->out : "", src->out ? src->out_len : 0);
    if (!s) {
        job_fail(j, i, HELIUM__ERROR_CODE__ERROR_INTERNAL, "out of memory");
        return true;
    }
    size_t len = src->out ? src->out_len : 0;
    j->ops[i].ready_us = j->ops[i].started_us = clock_wall_us();
    op_done(j, i, s, len);
    emit(j, i, 0, s, len, true);
    *changed = true;
    return true;
}

/* A round of loop l finished: ends the loop or starts the next round. */
static void loop_round_end(job_t *j, int l) {
    const wf_op *op = j->wf->ops[l];
    job_op *o = &j->ops[l];
    const job_op *src = &j->ops[op->loop.output];
    size_t len = src->out_len;
    char *s = dup_n(src->out ? src->out : "", src->out ? len : 0);
    if (!s) {
        job_fail(j, l, HELIUM__ERROR_CODE__ERROR_INTERNAL, "out of memory");
        return;
    }
    bool stop = o->round >= op->loop.max_rounds ||
                (op->loop.until_contains && *op->loop.until_contains && strstr(s, op->loop.until_contains));
    if (stop) {
        op_done(j, l, s, len);
        emit(j, l, 0, s, len, true);
        return;
    }
    free(o->prev);
    o->prev = s;
    o->round++;
    loop_reset_body(j, l);
}

/* One pass over a scope (-1 = top level). Sets *changed if anything started. */
static void scope_pass(job_t *j, int scope, bool *changed) {
    const int *order = scope < 0 ? j->wf->order : j->wf->ops[scope]->order;
    size_t n = scope < 0 ? j->wf->n_order : j->wf->ops[scope]->n_order;
    for (size_t k = 0; k < n && active(j); k++) {
        int i = order[k];
        if (j->ops[i].state == HELIUM__OP_STATE__OP_WAITING && is_pruned(j, i)) {
            j->ops[i].state = HELIUM__OP_STATE__OP_SKIPPED;
            continue;
        }
        if (j->ops[i].state == HELIUM__OP_STATE__OP_WAITING && try_alias(j, i, changed)) {
            if (!active(j)) return;
            continue;
        }
        if (j->ops[i].state == HELIUM__OP_STATE__OP_WAITING && deps_done(j, i)) {
            start_op(j, i);
            *changed = true;
        }
        if (!active(j)) return;
        const wf_op *op = j->wf->ops[i];
        if (op->kind == WF_LOOP && j->ops[i].state == HELIUM__OP_STATE__OP_RUNNING) {
            scope_pass(j, i, changed);
            if (active(j) && scope_done(j, op->order, op->n_order)) {
                loop_round_end(j, i);
                *changed = true;
            }
        }
    }
}

/* Advances job j as far as it goes now; ends it when every top-level op is done. */
static void pump(job_t *j) {
    bool changed = true;
    while (changed && active(j)) {
        changed = false;
        scope_pass(j, -1, &changed);
    }
    if (active(j) && scope_done(j, j->wf->order, j->wf->n_order)) job_finish(j, HELIUM__JOB_STATE__JOB_DONE);
}

/* ---------------------------------------------------------- admission */

static bool has_room(const jobs_t *js) { return !js->max_active || js->n_started < js->max_active; }

static void start_job(jobs_t *js, job_t *j) {
    j->started = true;
    js->n_started++;
    pump(j);
}

/* Starts parked jobs, oldest first, while there is room. A job that ends
 * inside (pump) makes room for the next one; the loop takes it. */
static void unpark(jobs_t *js) {
    if (js->unparking) return;
    js->unparking = true;
    while (js->park_head && has_room(js)) {
        job_t *j = js->park_head;
        js->park_head = j->park_next;
        if (!js->park_head) js->park_tail = NULL;
        j->park_next = NULL;
        j->parked = false;
        js->counts.parked--;
        uint64_t num = j->num;
        start_job(js, j);
        /* the job may have ended and, past keep_finished, been freed */
        job_t *still = num <= js->last_num ? js->by_num[num - 1] : NULL;
        if (still && js->hooks.job_start) js->hooks.job_start(js->hooks.ctx, still);
    }
    js->unparking = false;
}

void jobs_set_max_active(jobs_t *js, size_t n) {
    if (js->max_active == n) return;
    js->max_active = n;
    unpark(js);
}

size_t jobs_max_active(const jobs_t *js) { return js->max_active; }

/* --------------------------------------------------------------- the table */

jobs_t *jobs_new(const jobs_config *cfg, const jobs_hooks *hooks) {
    jobs_t *js = calloc(1, sizeof *js);
    if (!js) return NULL;
    js->cfg.keep_finished = cfg && cfg->keep_finished ? cfg->keep_finished : 1000;
    js->cfg.chat = cfg ? cfg->chat : NULL;
    if (hooks) js->hooks = *hooks;
    js->fin = calloc(js->cfg.keep_finished, sizeof *js->fin);
    if (!js->fin) {
        free(js);
        return NULL;
    }
    return js;
}

void jobs_destroy(jobs_t **self_p) {
    if (!self_p || !*self_p) return;
    jobs_t *js = *self_p;
    for (uint64_t n = 0; n < js->last_num; n++) {
        job_t *j = js->by_num[n];
        if (!j) continue;
        for (size_t i = 0; i < j->wf->n_ops; i++) {
            job_op *o = &j->ops[i];
            if (o->task) {
                q_remove(js, o->task);
                task_free(o->task);
            }
            for (uint32_t k = 0; o->tasks && k < o->n_items; k++)
                if (o->tasks[k]) {
                    q_remove(js, o->tasks[k]);
                    task_free(o->tasks[k]);
                }
        }
        job_free(j);
    }
    free(js->by_num);
    free(js->fin);
    free(js);
    *self_p = NULL;
}

job_t *jobs_get(jobs_t *js, const char *id) {
    if (!id || strncmp(id, "job-", 4) != 0) return NULL;
    const char *p = id + 4;
    if (*p < '1' || *p > '9') return NULL;
    uint64_t n = 0;
    for (; *p; p++) {
        if (*p < '0' || *p > '9' || n > UINT64_MAX / 20) return NULL;
        n = n * 10 + (uint64_t)(*p - '0');
    }
    if (n < 1 || n > js->last_num) return NULL;
    return js->by_num[n - 1];
}

/* Copies the usable parts of plan p into j. */
static int take_plan(job_t *j, const jobs_plan *p) {
    const wf_t *wf = j->wf;
    size_t n = wf->n_ops ? wf->n_ops : 1;
    j->pol = p->pol;
    if (p->pruned) {
        if (!(j->pruned = calloc(n, 1))) return he_set(HE_ENOMEM, "out of memory");
        memcpy(j->pruned, p->pruned, wf->n_ops);
        /* never prune the output op, nor the body of a kept map (the plan keeps
         * them anyway; this guards the job against a bad plan) */
        if (wf->output >= 0) j->pruned[wf->output] = 0;
        for (size_t i = 0; i < wf->n_ops; i++)
            if (!j->pruned[i] && wf->ops[i]->kind == WF_MAP && wf->ops[i]->map.body >= 0)
                j->pruned[wf->ops[i]->map.body] = 0;
    }
    if (p->alias) {
        if (!(j->alias = malloc(n * sizeof *j->alias))) return he_set(HE_ENOMEM, "out of memory");
        for (size_t i = 0; i < wf->n_ops; i++) {
            int a = p->alias[i];
            const wf_op *o = wf->ops[i];
            bool ok = a >= 0 && (size_t)a < wf->n_ops && (size_t)a != i && o->parent < 0 &&
                      wf->ops[a]->parent < 0 && o->kind == wf->ops[a]->kind &&
                      (o->kind == WF_LLM || o->kind == WF_TOOL || o->kind == WF_JOIN) &&
                      !(j->pruned && (j->pruned[i] || j->pruned[a]));
            j->alias[i] = ok ? a : -1;
        }
        /* no chains: an alias target must not be aliased itself */
        for (size_t i = 0; i < wf->n_ops; i++)
            if (j->alias[i] >= 0 && j->alias[j->alias[i]] >= 0) j->alias[i] = -1;
    }
    if (p->cp && (j->cp = malloc(n * sizeof *j->cp))) memcpy(j->cp, p->cp, wf->n_ops * sizeof *j->cp);
    if (p->start && (j->start = malloc(n * sizeof *j->start)))
        memcpy(j->start, p->start, wf->n_ops * sizeof *j->start);
    return 0;
}

int jobs_submit(jobs_t *js, wf_t **wf_p, const wf_kv *inputs, size_t n, const char *policy,
                const char *client_tag, bool stream, job_t **out) {
    return jobs_submit_planned(js, wf_p, inputs, n, policy, client_tag, stream, NULL, out);
}

int jobs_submit_planned(jobs_t *js, wf_t **wf_p, const wf_kv *inputs, size_t n, const char *policy,
                        const char *client_tag, bool stream, const jobs_plan *plan, job_t **out) {
    wf_t *wf = *wf_p;
    *wf_p = NULL;
    *out = NULL;
    if (!wf || !wf->valid) {
        wf_destroy(&wf);
        return he_set(HE_EINVAL, "workflow is not validated");
    }
    for (size_t k = 0; k < n; k++) {
        if (!inputs[k].key || wf_find_input(wf, inputs[k].key) < 0) {
            he_set(HE_EINVAL, "unknown input '%.128s' (the workflow does not declare it)",
                   inputs[k].key ? inputs[k].key : "");
            wf_destroy(&wf);
            return HE_EINVAL;
        }
        if (inputs[k].value && strlen(inputs[k].value) > JOBS_MAX_INPUT) {
            he_set(HE_ELIMIT, "input '%.128s' is longer than %u bytes", inputs[k].key, JOBS_MAX_INPUT);
            wf_destroy(&wf);
            return HE_ELIMIT;
        }
    }
    job_t *j = calloc(1, sizeof *j);
    if (!j) {
        wf_destroy(&wf);
        return he_set(HE_ENOMEM, "out of memory");
    }
    j->wf = wf;
    j->owner = js;
    int rc = 0;
    j->ops = calloc(wf->n_ops ? wf->n_ops : 1, sizeof *j->ops);
    j->input_vals = calloc(wf->n_inputs ? wf->n_inputs : 1, sizeof *j->input_vals);
    j->policy = strdup(policy ? policy : "");
    j->client_tag = strdup(client_tag ? client_tag : "");
    if (!j->ops || !j->input_vals || !j->policy || !j->client_tag) rc = he_set(HE_ENOMEM, "out of memory");
    if (!rc && plan) rc = take_plan(j, plan);
    for (size_t i = 0; !rc && i < wf->n_inputs; i++) {
        const wf_input *in = &wf->inputs[i];
        const char *v = NULL;
        for (size_t k = n; k-- > 0;) /* the last value given wins */
            if (strcmp(inputs[k].key, in->name) == 0) {
                v = inputs[k].value ? inputs[k].value : "";
                break;
            }
        if (!v && in->has_default) v = in->def ? in->def : "";
        if (!v) {
            rc = he_set(HE_EINVAL, "missing input '%s'", in->name);
            break;
        }
        if (!(j->input_vals[i] = strdup(v))) rc = he_set(HE_ENOMEM, "out of memory");
    }
    if (!rc && js->last_num == js->cap_num) {
        size_t c = js->cap_num ? js->cap_num * 2 : 64;
        job_t **v = realloc(js->by_num, c * sizeof *v);
        if (!v) rc = he_set(HE_ENOMEM, "out of memory");
        else {
            js->by_num = v;
            js->cap_num = c;
        }
    }
    if (rc) {
        job_free(j);
        return rc;
    }
    for (size_t i = 0; i < wf->n_ops; i++) j->ops[i].state = HELIUM__OP_STATE__OP_WAITING;
    j->num = ++js->last_num;
    snprintf(j->id, sizeof j->id, "job-%" PRIu64, j->num);
    js->by_num[j->num - 1] = j;
    js->n_live++;
    j->stream = stream;
    j->state = HELIUM__JOB_STATE__JOB_QUEUED;
    j->submitted_us = clock_wall_us();
    js->counts.submitted++;
    js->counts.queued++;
    *out = j;
    if (js->hooks.job_new) js->hooks.job_new(js->hooks.ctx, j);
    if (has_room(js) && !js->park_head) {
        start_job(js, j);
    } else { /* accepted; runs when a started job ends (jobs_set_max_active) */
        j->parked = true;
        if (js->park_tail) js->park_tail->park_next = j;
        else js->park_head = j;
        js->park_tail = j;
        js->counts.parked++;
    }
    return 0;
}

void jobs_cancel(jobs_t *js, job_t *j, const char *why) {
    (void)js;
    if (!j || !active(j)) return;
    j->err = HELIUM__ERROR_CODE__ERROR_CANCELED;
    free(j->err_msg);
    j->err_msg = strdup(why ? why : "canceled");
    job_finish(j, HELIUM__JOB_STATE__JOB_CANCELED);
}

void jobs_each_newest(jobs_t *js, size_t limit, bool active_only, void (*fn)(void *u, job_t *j), void *u) {
    size_t seen = 0, given = 0;
    for (uint64_t n = js->last_num; n > 0 && seen < js->n_live && given < limit; n--) {
        job_t *j = js->by_num[n - 1];
        if (!j) continue;
        seen++;
        if (active_only && !active(j)) continue;
        fn(u, j);
        given++;
    }
}

void jobs_get_counts(const jobs_t *js, jobs_counts *out) { *out = js->counts; }

/* ------------------------------------------------------------ task events */

void jobs_task_start(jobs_t *js, job_task *t, int worker, const char *worker_id, uint64_t task_id) {
    job_t *j = t->job;
    uint64_t now = clock_wall_us();
    q_remove(js, t);
    t->worker = worker;
    t->task_id = task_id;
    t->attempt++;
    t->streamed = 0;
    job_op *o = owner_rec(j, t);
    o->attempts++;
    if (worker_id) snprintf(o->worker, sizeof o->worker, "%s", worker_id);
    if (!o->started_us) o->started_us = now;
    if (now > t->ready_us) o->queue_dur_us += now - t->ready_us;
    if (t->map < 0) j->ops[t->op].state = HELIUM__OP_STATE__OP_RUNNING;
    if (j->state == HELIUM__JOB_STATE__JOB_QUEUED) {
        j->state = HELIUM__JOB_STATE__JOB_RUNNING;
        j->started_us = now;
        js->counts.queued--;
        js->counts.running++;
    }
}

void jobs_task_requeue(jobs_t *js, job_task *t) {
    t->worker = -1;
    t->runner = NULL;
    t->load_tokens = 0;
    t->decode_tokens = 0;
    t->pages = 0;
    t->reserve_pages = 0;
    t->wait.kind = 0;
    if (t->map < 0) t->job->ops[t->op].state = HELIUM__OP_STATE__OP_READY;
    q_push(js, t, true);
}

void jobs_task_progress(jobs_t *js, job_task *t, const char *text, size_t len) {
    (void)js;
    job_t *j = t->job;
    job_op *o = owner_rec(j, t);
    if (!o->first_token_us) o->first_token_us = clock_wall_us();
    t->streamed += len;
    emit(j, t->map >= 0 ? t->map : t->op, t->item, text, len, false);
}

void jobs_task_done(jobs_t *js, job_task *t, const job_result *r) {
    job_t *j = t->job;
    if (js->hooks.task_end) js->hooks.task_end(js->hooks.ctx, t, r, HELIUM__ERROR_CODE__ERROR_OK, NULL);
    q_remove(js, t);
    task_detach(j, t);
    job_op *o = owner_rec(j, t);
    o->prompt_tokens += r->prompt_tokens;
    o->cached_tokens += r->cached_tokens;
    o->pulled_tokens += r->pulled_tokens;
    o->generated_tokens += r->generated_tokens;
    if (r->first_token_us && !o->first_token_us) o->first_token_us = r->first_token_us;
    if (r->worker) snprintf(o->worker, sizeof o->worker, "%s", r->worker);
    size_t len = r->text ? r->len : 0;
    if (len > JOBS_MAX_TEXT) len = JOBS_MAX_TEXT;
    char *s = dup_n(r->text ? r->text : "", len);
    int op = t->op, m = t->map;
    uint32_t item = t->item;
    size_t streamed = t->streamed;
    task_free(t);
    if (!s) {
        job_fail(j, m >= 0 ? m : op, HELIUM__ERROR_CODE__ERROR_INTERNAL, "out of memory");
        return;
    }
    /* the final chunk carries what streaming did not deliver */
    size_t rest = streamed <= len ? len - streamed : 0;
    if (m >= 0) {
        job_op *mo = &j->ops[m];
        mo->item_out[item] = s;
        mo->items_done++;
        emit(j, m, item, s + (len - rest), rest, true);
        if (mo->items_done == mo->n_items) map_finish(j, m);
    } else {
        emit(j, op, 0, s + (len - rest), rest, true);
        op_done(j, op, s, len);
    }
    pump(j);
}

void jobs_task_fail(jobs_t *js, job_task *t, Helium__ErrorCode code, const char *msg) {
    job_t *j = t->job;
    if (js->hooks.task_end) js->hooks.task_end(js->hooks.ctx, t, NULL, code, msg);
    q_remove(js, t);
    task_detach(j, t);
    int op = t->op;
    task_free(t);
    job_fail(j, op, code, msg);
}

job_t *jobs_by_num(jobs_t *js, uint64_t num) {
    return num >= 1 && num <= js->last_num ? js->by_num[num - 1] : NULL;
}

int jobs_skip_to(jobs_t *js, uint64_t num) {
    if (num <= js->last_num) return he_set(HE_EINVAL, "job number %" PRIu64 " was handed out already", num);
    if (num - 1 > js->cap_num) {
        size_t c = js->cap_num ? js->cap_num : 64;
        while (c < num - 1) c *= 2;
        job_t **v = realloc(js->by_num, c * sizeof *v);
        if (!v) return he_set(HE_ENOMEM, "out of memory");
        js->by_num = v;
        js->cap_num = c;
    }
    for (uint64_t k = js->last_num; k < num - 1; k++) js->by_num[k] = NULL;
    js->last_num = num - 1;
    return 0;
}

job_task *jobs_task_of(jobs_t *js, uint64_t num, int op, uint32_t item) {
    job_t *j = jobs_by_num(js, num);
    if (!j || !active(j) || op < 0 || (size_t)op >= j->wf->n_ops) return NULL;
    int p = j->wf->ops[op]->parent;
    if (p >= 0 && j->wf->ops[p]->kind == WF_MAP) {
        const job_op *m = &j->ops[p];
        return m->tasks && item < m->n_items ? m->tasks[item] : NULL;
    }
    return item == 0 ? j->ops[op].task : NULL;
}

job_task *jobs_find_task(jobs_t *js, const char *job_id, const char *op_id, uint32_t item) {
    job_t *j = jobs_get(js, job_id);
    if (!j || !active(j) || !op_id) return NULL;
    int i = wf_find(j->wf, op_id);
    if (i < 0) return NULL;
    int p = j->wf->ops[i]->parent;
    if (p >= 0 && j->wf->ops[p]->kind == WF_MAP) {
        const job_op *m = &j->ops[p];
        return m->tasks && item < m->n_items ? m->tasks[item] : NULL;
    }
    return item == 0 ? j->ops[i].task : NULL;
}

const char *jobs_op_output(const job_t *j, int i, size_t *len) {
    const job_op *o = &j->ops[i];
    *len = o->out ? o->out_len : 0;
    return o->out ? o->out : "";
}
