/* jobs_flow: the workflow interpreter, part of jobs (see jobs.h and jobs.c):
 * rendering templates, starting ops (llm and tool tasks, maps, loops, joins,
 * aliases) and the pass that advances a job (jobs_pump).
 *
 * Execution is driven by jobs_pump(): one pass walks the top-level scope in
 * topological order, starting every WAITING op whose deps are DONE and
 * descending into RUNNING loops; because the order is topological, a chain of
 * ops that finish at once (joins) completes within one pass. Passes repeat
 * until nothing changes, so an event costs O(ops + deps) per pass.
 */
#include "jobs_impl.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "clock.h"
#include "herr.h"
#include "render.h"

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
        int l = jobs_enclosing(j->wf, c->op, WF_LOOP);
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
    int l = jobs_enclosing(j->wf, i, WF_LOOP);
    return l >= 0 ? j->ops[l].round : 0;
}

/* Marks op i DONE with output text (ownership taken). */
void jobs_op_done(job_t *j, int i, char *text, size_t len) {
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
        jobs_task_free(t);
        return rc;
    }
    j->live_tasks++;
    jobs_q_push(j->owner, t, false);
    *out = t;
    if (j->owner->hooks.task_new) j->owner->hooks.task_new(j->owner->hooks.ctx, t);
    return 0;
}

/* Every item of map m is done: its output is their outputs joined by lines. */
void jobs_map_finish(job_t *j, int m) {
    job_op *o = &j->ops[m];
    sbuf b;
    sb_init(&b, JOBS_MAX_TEXT);
    int rc = rnd_join(o->item_out, o->n_items, "\n", 1, &b);
    if (rc) {
        sb_free(&b);
        jobs_fail_op(j, m, jobs_code_of(rc), he_msg());
        return;
    }
    size_t len;
    char *s = sb_take(&b, &len);
    if (!s) {
        jobs_fail_op(j, m, HELIUM__ERROR_CODE__ERROR_INTERNAL, "out of memory");
        return;
    }
    int body = j->wf->ops[m]->map.body;
    if (body >= 0) {
        j->ops[body].state = HELIUM__OP_STATE__OP_DONE;
        j->ops[body].finished_us = clock_wall_us();
    }
    jobs_op_done(j, m, s, len);
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
        jobs_fail_op(j, m, jobs_code_of(rc), he_msg());
        return;
    }
    o->item_out = calloc(o->n_items ? o->n_items : 1, sizeof *o->item_out);
    o->tasks = calloc(o->n_items ? o->n_items : 1, sizeof *o->tasks);
    if (!o->item_out || !o->tasks) {
        jobs_fail_op(j, m, HELIUM__ERROR_CODE__ERROR_INTERNAL, "out of memory");
        return;
    }
    o->state = HELIUM__OP_STATE__OP_RUNNING;
    o->ready_us = clock_wall_us();
    int body = op->map.body;
    if (body < 0) {
        jobs_fail_op(j, m, HELIUM__ERROR_CODE__ERROR_INVALID, "map has no body op");
        return;
    }
    j->ops[body].state = HELIUM__OP_STATE__OP_RUNNING;
    const wf_op *bop = j->wf->ops[body];
    for (uint32_t k = 0; k < o->n_items; k++) {
        if (bop->kind == WF_JOIN) {
            size_t len;
            char *s;
            if ((rc = render(j, body, &bop->join.parts, o->items[k], &s, &len))) {
                jobs_fail_op(j, body, jobs_code_of(rc), he_msg());
                return;
            }
            o->item_out[k] = s;
            o->items_done++;
            jobs_emit(j, m, k, s, len, true);
        } else if ((rc = make_task(j, body, m, k, o->items[k], &o->tasks[k]))) {
            jobs_fail_op(j, body, jobs_code_of(rc), he_msg());
            return;
        }
    }
    if (o->items_done == o->n_items) jobs_map_finish(j, m);
}

/* Resets every op inside loop l for a new round. */
static void loop_reset_body(job_t *j, int l) {
    for (size_t i = (size_t)l + 1; i < j->wf->n_ops; i++)
        if (jobs_is_descendant(j->wf, (int)i, l)) {
            jobs_free_op_state(&j->ops[i]);
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
            jobs_op_done(j, i, s, len);
            jobs_emit(j, i, 0, s, len, true);
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
    if (rc) jobs_fail_op(j, i, jobs_code_of(rc), he_msg());
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
    char *s = jobs_dup_n(src->out ? src->out : "", src->out ? src->out_len : 0);
    if (!s) {
        jobs_fail_op(j, i, HELIUM__ERROR_CODE__ERROR_INTERNAL, "out of memory");
        return true;
    }
    size_t len = src->out ? src->out_len : 0;
    j->ops[i].ready_us = j->ops[i].started_us = clock_wall_us();
    jobs_op_done(j, i, s, len);
    jobs_emit(j, i, 0, s, len, true);
    *changed = true;
    return true;
}

/* A round of loop l finished: ends the loop or starts the next round. */
static void loop_round_end(job_t *j, int l) {
    const wf_op *op = j->wf->ops[l];
    job_op *o = &j->ops[l];
    const job_op *src = &j->ops[op->loop.output];
    size_t len = src->out_len;
    char *s = jobs_dup_n(src->out ? src->out : "", src->out ? len : 0);
    if (!s) {
        jobs_fail_op(j, l, HELIUM__ERROR_CODE__ERROR_INTERNAL, "out of memory");
        return;
    }
    bool stop = o->round >= op->loop.max_rounds ||
                (op->loop.until_contains && *op->loop.until_contains && strstr(s, op->loop.until_contains));
    if (stop) {
        jobs_op_done(j, l, s, len);
        jobs_emit(j, l, 0, s, len, true);
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
    for (size_t k = 0; k < n && jobs_active(j); k++) {
        int i = order[k];
        if (j->ops[i].state == HELIUM__OP_STATE__OP_WAITING && is_pruned(j, i)) {
            j->ops[i].state = HELIUM__OP_STATE__OP_SKIPPED;
            continue;
        }
        if (j->ops[i].state == HELIUM__OP_STATE__OP_WAITING && try_alias(j, i, changed)) {
            if (!jobs_active(j)) return;
            continue;
        }
        if (j->ops[i].state == HELIUM__OP_STATE__OP_WAITING && deps_done(j, i)) {
            start_op(j, i);
            *changed = true;
        }
        if (!jobs_active(j)) return;
        const wf_op *op = j->wf->ops[i];
        if (op->kind == WF_LOOP && j->ops[i].state == HELIUM__OP_STATE__OP_RUNNING) {
            scope_pass(j, i, changed);
            if (jobs_active(j) && scope_done(j, op->order, op->n_order)) {
                loop_round_end(j, i);
                *changed = true;
            }
        }
    }
}

/* Advances job j as far as it goes now; ends it when every top-level op is done. */
void jobs_pump(job_t *j) {
    bool changed = true;
    while (changed && jobs_active(j)) {
        changed = false;
        scope_pass(j, -1, &changed);
    }
    if (jobs_active(j) && scope_done(j, j->wf->order, j->wf->n_order)) jobs_finish(j, HELIUM__JOB_STATE__JOB_DONE);
}
