/* jobs: see jobs.h. The table of jobs, admission (parked jobs), the ready
 * FIFO, task events and ending jobs; the workflow interpreter that advances a
 * job (jobs_pump) is jobs_flow.c; struct jobs and what both share are
 * jobs_impl.h.
 *
 * Invariants: a live task is referenced from exactly one place in its job
 * (job_op.task, or job_op.tasks[item] of its map) and, while queued, from the
 * ready FIFO; job->live_tasks counts them. A finished job has no live tasks.
 */
#include "jobs_impl.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "clock.h"
#include "herr.h"
#include "render.h"

/* ------------------------------------------------------------------ helpers */

char *jobs_dup_n(const char *s, size_t n) {
    char *p = malloc(n + 1);
    if (!p) return NULL;
    if (n) memcpy(p, s, n);
    p[n] = 0;
    return p;
}

bool jobs_active(const job_t *j) {
    return j->state == HELIUM__JOB_STATE__JOB_QUEUED || j->state == HELIUM__JOB_STATE__JOB_RUNNING;
}

bool jobs_is_final(Helium__JobState s) {
    return s == HELIUM__JOB_STATE__JOB_DONE || s == HELIUM__JOB_STATE__JOB_FAILED ||
           s == HELIUM__JOB_STATE__JOB_CANCELED;
}

Helium__ErrorCode jobs_code_of(int he) {
    switch (he) {
    case HE_ELIMIT: return HELIUM__ERROR_CODE__ERROR_LIMIT;
    case HE_ENOMEM: return HELIUM__ERROR_CODE__ERROR_INTERNAL;
    case HE_ECONTEXT: return HELIUM__ERROR_CODE__ERROR_PROMPT_TOO_LONG;
    case HE_EREF: return HELIUM__ERROR_CODE__ERROR_DANGLING_REF;
    default: return HELIUM__ERROR_CODE__ERROR_INVALID;
    }
}

/* Innermost enclosing op of kind k of op i, or -1. */
int jobs_enclosing(const wf_t *wf, int i, wf_kind k) {
    for (int a = wf->ops[i]->parent; a >= 0; a = wf->ops[a]->parent)
        if (wf->ops[a]->kind == k) return a;
    return -1;
}

bool jobs_is_descendant(const wf_t *wf, int i, int anc) {
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

void jobs_q_push(jobs_t *js, job_task *t, bool front) {
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
void jobs_emit(job_t *j, int op, uint32_t item, const char *text, size_t len, bool done) {
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
    char *s = jobs_dup_n(text ? text : "", text ? len : 0);
    if (!s) return;
    j->chunks[j->n_chunks++] = (job_chunk){.seq = ++j->chunk_seq, .op = op, .item = item, .text = s,
                                           .len = text ? len : 0, .done = done};
    j->chunk_bytes += text ? len : 0;
    if (j->owner->hooks.job_progress) j->owner->hooks.job_progress(j->owner->hooks.ctx, j);
}

/* ------------------------------------------------------------------- tasks */

void jobs_task_free(job_task *t) {
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
    jobs_task_free(t);
}

/* The op record that accounts for t: its map for items, else its own. */
static job_op *owner_rec(job_t *j, const job_task *t) { return &j->ops[t->map >= 0 ? t->map : t->op]; }

/* ------------------------------------------------------------------ ending */

void jobs_free_op_state(job_op *o) {
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
    for (size_t i = 0; j->ops && i < j->wf->n_ops; i++) jobs_free_op_state(&j->ops[i]);
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
void jobs_finish(job_t *j, Helium__JobState st) {
    if (!jobs_active(j)) return;
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
void jobs_fail_op(job_t *j, int i, Helium__ErrorCode code, const char *msg) {
    if (!jobs_active(j)) return;
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
    jobs_finish(j, HELIUM__JOB_STATE__JOB_FAILED);
}

/* ---------------------------------------------------------- admission */

static bool has_room(const jobs_t *js, const job_t *j) {
    if (js->max_active && js->n_started >= js->max_active) return false;
    return !js->hooks.may_start || js->hooks.may_start(js->hooks.ctx, j);
}

static void start_job(jobs_t *js, job_t *j) {
    j->started = true;
    js->n_started++;
    jobs_pump(j);
}

/* Starts parked jobs, oldest first, while there is room. A job that ends
 * inside (pump) makes room for the next one; the loop takes it. */
static void unpark(jobs_t *js) {
    if (js->unparking) return;
    js->unparking = true;
    while (js->park_head && has_room(js, js->park_head)) {
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

void jobs_unpark(jobs_t *js) {
    if (js && js->park_head) unpark(js);
}

/* --------------------------------------------------------------- the table */

jobs_t *jobs_new(const jobs_config *cfg, const jobs_hooks *hooks) {
    jobs_t *js = calloc(1, sizeof *js);
    if (!js) return NULL;
    if (cfg) js->cfg = *cfg;
    if (!js->cfg.keep_finished) js->cfg.keep_finished = 1000;
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
                jobs_task_free(o->task);
            }
            for (uint32_t k = 0; o->tasks && k < o->n_items; k++)
                if (o->tasks[k]) {
                    q_remove(js, o->tasks[k]);
                    jobs_task_free(o->tasks[k]);
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
    j->submitted_us = js->cfg.submit_clock ? js->cfg.submit_clock(js->cfg.submit_clock_ctx) : clock_wall_us();
    js->counts.submitted++;
    js->counts.queued++;
    *out = j;
    if (js->hooks.job_new) js->hooks.job_new(js->hooks.ctx, j);
    if (!js->park_head && has_room(js, j)) {
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
    if (!j || !jobs_active(j)) return;
    j->err = HELIUM__ERROR_CODE__ERROR_CANCELED;
    free(j->err_msg);
    j->err_msg = strdup(why ? why : "canceled");
    jobs_finish(j, HELIUM__JOB_STATE__JOB_CANCELED);
}

void jobs_each_newest(jobs_t *js, size_t limit, bool active_only, void (*fn)(void *u, job_t *j), void *u) {
    size_t seen = 0, given = 0;
    for (uint64_t n = js->last_num; n > 0 && seen < js->n_live && given < limit; n--) {
        job_t *j = js->by_num[n - 1];
        if (!j) continue;
        seen++;
        if (active_only && !jobs_active(j)) continue;
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
    jobs_q_push(js, t, true);
}

void jobs_task_progress(jobs_t *js, job_task *t, const char *text, size_t len) {
    (void)js;
    job_t *j = t->job;
    job_op *o = owner_rec(j, t);
    if (!o->first_token_us) o->first_token_us = clock_wall_us();
    t->streamed += len;
    jobs_emit(j, t->map >= 0 ? t->map : t->op, t->item, text, len, false);
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
    char *s = jobs_dup_n(r->text ? r->text : "", len);
    int op = t->op, m = t->map;
    uint32_t item = t->item;
    size_t streamed = t->streamed;
    jobs_task_free(t);
    if (!s) {
        jobs_fail_op(j, m >= 0 ? m : op, HELIUM__ERROR_CODE__ERROR_INTERNAL, "out of memory");
        return;
    }
    /* the final chunk carries what streaming did not deliver */
    size_t rest = streamed <= len ? len - streamed : 0;
    if (m >= 0) {
        job_op *mo = &j->ops[m];
        mo->item_out[item] = s;
        mo->items_done++;
        jobs_emit(j, m, item, s + (len - rest), rest, true);
        if (mo->items_done == mo->n_items) jobs_map_finish(j, m);
    } else {
        jobs_emit(j, op, 0, s + (len - rest), rest, true);
        jobs_op_done(j, op, s, len);
    }
    jobs_pump(j);
}

void jobs_task_fail(jobs_t *js, job_task *t, Helium__ErrorCode code, const char *msg) {
    job_t *j = t->job;
    if (js->hooks.task_end) js->hooks.task_end(js->hooks.ctx, t, NULL, code, msg);
    q_remove(js, t);
    task_detach(j, t);
    int op = t->op;
    jobs_task_free(t);
    jobs_fail_op(j, op, code, msg);
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
    if (!j || !jobs_active(j) || op < 0 || (size_t)op >= j->wf->n_ops) return NULL;
    int p = j->wf->ops[op]->parent;
    if (p >= 0 && j->wf->ops[p]->kind == WF_MAP) {
        const job_op *m = &j->ops[p];
        return m->tasks && item < m->n_items ? m->tasks[item] : NULL;
    }
    return item == 0 ? j->ops[op].task : NULL;
}

job_task *jobs_find_task(jobs_t *js, const char *job_id, const char *op_id, uint32_t item) {
    job_t *j = jobs_get(js, job_id);
    if (!j || !jobs_active(j) || !op_id) return NULL;
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
