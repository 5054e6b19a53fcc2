/* tasks: a dispatched call's life on this worker.
 *
 * Dispatch -> a task (prompt ids, sampling, limits, stop tokens and strings,
 * pins, a pull hint) -> an engine request -> OpProgress while it streams ->
 * exactly one OpResult, then the task is freed. Stop strings are the
 * engine's (eng_request.stops, detok.h): generation ends the moment the text
 * contains one, and the text is cut before it; streaming sends only the text
 * that is new and safe to show. A warm task (prefill only) reports counts and
 * no text.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "herr.h"
#include "net.h"
#include "werr.h"

task_t *task_find(srv_t *s, uint64_t task_id) {
    for (task_t *t = s->tasks; t; t = t->next)
        if (t->task_id == task_id) return t;
    return NULL;
}

static task_t *find_task_by_eng(srv_t *s, uint64_t eng_id) {
    for (task_t *t = s->tasks; t; t = t->next)
        if (t->submitted && t->eng_id == eng_id) return t;
    return NULL;
}

void task_unpin(srv_t *s, task_t *t) {
    if (!t->pinned.n) return;
    eng_unpin(s->e, t->pinned.v, (int32_t)t->pinned.n);
    s->n_pinned -= (int64_t)t->pinned.n;
    t->pinned.n = 0;
}

/* Unlinks t, drops what it holds (pins, a pull in flight), frees it. */
void task_free(srv_t *s, task_t *t) {
    for (task_t **pp = &s->tasks; *pp; pp = &(*pp)->next)
        if (*pp == t) {
            *pp = t->next;
            s->n_tasks--;
            break;
        }
    task_unpin(s, t);
    xpl_task_gone(s, t); /* a transfer over the KV transport is abandoned, its pages released */
    if (t->pulling) {
        t->pulling = false;
        pull_peer_release(s, t->peer);
    }
    free(t->job_id);
    free(t->op_id);
    free(t->prompt);
    free(t->stop_ids);
    for (int i = 0; i < t->n_stops; i++) free(t->stops[i]);
    free(t->stops);
    free(t->want);
    free(t->pin_tag);
    free(t->pin);
    u64v_free(&t->pinned);
    free(t);
}

static void fill_result_header(Helium__OpResult *r, const task_t *t) {
    r->task_id = t->task_id;
    r->job_id = t->job_id;
    r->op_id = t->op_id;
    r->attempt = t->attempt;
    r->item = t->item;
    r->round = t->round;
    r->prompt_tokens = (uint32_t)t->n_prompt;
}

/* Sends OpResult{error} for t and frees it. */
void task_fail(srv_t *s, task_t *t, Helium__ErrorCode code, const char *msg) {
    Helium__Error err = HELIUM__ERROR__INIT;
    err.code = code;
    err.message = (char *)msg;
    err.op_id = t->op_id;
    Helium__OpResult r = HELIUM__OP_RESULT__INIT;
    fill_result_header(&r, t);
    r.computed_tokens = 0;
    r.error = &err;
    r.finish_reason = HELIUM__FINISH_REASON__FINISH_ERROR;
    Helium__WorkerMsg w = HELIUM__WORKER_MSG__INIT;
    w.body_case = HELIUM__WORKER_MSG__BODY_RESULT;
    w.result = &r;
    srv_send_wmsg(s, &w, "OpResult");
    s->results++;
    clog_msg(code == HELIUM__ERROR_CODE__ERROR_CANCELED ? CLOG_INFO : CLOG_WARN, "task %llu (job %s op %s) failed: %s",
         (unsigned long long)t->task_id, t->job_id, t->op_id, msg);
    task_free(s, t);
}

void task_submit(srv_t *s, task_t *t) {
    int rc = eng_submit(s->e, t->prompt, t->n_prompt, &t->rq, &t->eng_id);
    if (rc) {
        char msg[512];
        snprintf(msg, sizeof msg, "%s", he_msg());
        task_fail(s, t, werr_code(rc), msg);
        return;
    }
    t->submitted = true;
    clog_msg(CLOG_DEBUG, "task %llu submitted as engine request %llu", (unsigned long long)t->task_id,
         (unsigned long long)t->eng_id);
}

/* Sends OpProgress with ids[t->n_streamed_ids..n) and the text that is new
 * since the last one and safe to show (text[n_streamed_bytes..stable): the
 * engine holds back what could still start a stop string, and incomplete
 * UTF-8; at the end, everything up to the cut). */
static void stream_progress(srv_t *s, task_t *t, const int32_t *ids, int32_t n, const char *text, size_t stable) {
    if (n < t->n_streamed_ids || stable < t->n_streamed_bytes) return;
    if (n == t->n_streamed_ids && stable == t->n_streamed_bytes) return;
    char *piece = malloc(stable - t->n_streamed_bytes + 1);
    if (!piece) return;
    memcpy(piece, text + t->n_streamed_bytes, stable - t->n_streamed_bytes);
    piece[stable - t->n_streamed_bytes] = 0;
    Helium__OpProgress p = HELIUM__OP_PROGRESS__INIT;
    p.task_id = t->task_id;
    p.job_id = t->job_id;
    p.op_id = t->op_id;
    p.attempt = t->attempt;
    p.item = t->item;
    p.text = piece;
    p.n_ids = (size_t)(n - t->n_streamed_ids);
    p.ids = (int32_t *)ids + t->n_streamed_ids;
    p.n_generated = (uint32_t)n;
    Helium__WorkerMsg w = HELIUM__WORKER_MSG__INIT;
    w.body_case = HELIUM__WORKER_MSG__BODY_PROGRESS;
    w.progress = &p;
    if (srv_send_wmsg(s, &w, "OpProgress") == 0) {
        t->n_streamed_ids = n;
        t->n_streamed_bytes = stable;
    }
    free(piece);
}

static Helium__FinishReason finish_code(eng_finish f) {
    switch (f) {
    case ENG_FINISH_STOP: return HELIUM__FINISH_REASON__FINISH_STOP;
    case ENG_FINISH_LENGTH: return HELIUM__FINISH_REASON__FINISH_LENGTH;
    case ENG_FINISH_CONTEXT: return HELIUM__FINISH_REASON__FINISH_CONTEXT;
    default: return HELIUM__FINISH_REASON__FINISH_ERROR;
    }
}

static const char *finish_name(Helium__FinishReason f) {
    const ProtobufCEnumValue *v = protobuf_c_enum_descriptor_get_value(&helium__finish_reason__descriptor, (int)f);
    return v ? v->name : "?";
}

/* An engine request finished: send its OpResult and free the task. */
static void on_engine_result(srv_t *s, eng_result *er) {
    task_t *t = find_task_by_eng(s, er->id);
    if (!t) {
        clog_msg(CLOG_DEBUG, "engine result %llu has no task", (unsigned long long)er->id);
        return;
    }
    if (er->finish == ENG_FINISH_ERROR) {
        char msg[64];
        if (er->error == HE_ECANCELED) snprintf(msg, sizeof msg, "canceled");
        else snprintf(msg, sizeof msg, "engine error %s", he_name(er->error));
        task_fail(s, t, werr_code(er->error), msg);
        return;
    }
    if (er->n_gen > 0 && !er->ids) {
        task_fail(s, t, HELIUM__ERROR_CODE__ERROR_INTERNAL, "out of memory");
        return;
    }
    pins_apply(s, t); /* the prompt's full pages are committed (and still cached) now */
    uint64_t now = clock_wall_us();
    if (!t->t_first_us && er->n_gen > 0) t->t_first_us = now;
    int32_t n_gen = t->warm ? 0 : er->n_gen; /* a warm task's one token is not an answer */
    if (t->warm) s->warm_tasks++;
    const char *text = t->warm || !er->text ? "" : er->text;
    if (t->stream && !t->warm) stream_progress(s, t, er->ids, n_gen, text, t->warm ? 0 : er->text_len);
    int32_t cached = er->cached_tokens;
    int32_t pulled = t->pulled_tokens < cached ? t->pulled_tokens : cached;
    Helium__Timing tm = HELIUM__TIMING__INIT;
    tm.started_us = t->t_recv_us;
    tm.first_token_us = t->t_first_us;
    tm.finished_us = now;
    tm.prefill_dur_us = t->t_first_us ? t->t_first_us - t->t_recv_us : now - t->t_recv_us;
    tm.decode_dur_us = t->t_first_us ? now - t->t_first_us : 0;
    Helium__OpResult r = HELIUM__OP_RESULT__INIT;
    fill_result_header(&r, t);
    r.text = (char *)text;
    r.n_ids = (size_t)n_gen;
    r.ids = n_gen ? er->ids : NULL;
    r.prompt_tokens = (uint32_t)er->prompt_tokens;
    r.cached_tokens = (uint32_t)cached;
    r.computed_tokens = (uint32_t)(er->prompt_tokens - cached);
    r.pulled_tokens = (uint32_t)pulled;
    r.generated_tokens = (uint32_t)n_gen;
    r.finish_reason = t->warm ? HELIUM__FINISH_REASON__FINISH_WARM : finish_code(er->finish);
    r.timing = &tm;
    if (t->pull_wire_bytes > 0) {
        r.pull_us = (uint64_t)t->pull_link_us;
        r.pull_bytes = (uint64_t)t->pull_wire_bytes;
        r.pull_xport = t->pull_xported;
    }
    Helium__WorkerMsg w = HELIUM__WORKER_MSG__INIT;
    w.body_case = HELIUM__WORKER_MSG__BODY_RESULT;
    w.result = &r;
    srv_send_wmsg(s, &w, "OpResult");
    s->results++;
    clog_msg(CLOG_INFO,
         "task %llu (job %s op %s) finished: %d prompt tokens (%d cached, %d computed, %d pulled), %d generated, "
         "%s, %.1f ms",
         (unsigned long long)t->task_id, t->job_id, t->op_id, er->prompt_tokens, cached,
         er->prompt_tokens - cached, pulled, n_gen, finish_name(r.finish_reason), (double)(now - t->t_recv_us) / 1000.0);
    task_free(s, t);
}

/* After a step: record first tokens, stream progress, release pull pins of
 * requests now running, apply workflow pins of requests past their prompt. */
void task_after_step(srv_t *s) {
    for (task_t *t = s->tasks; t; t = t->next) {
        if (!t->submitted) continue;
        int32_t n = 0;
        const int32_t *ids = eng_peek_tokens(s->e, t->eng_id, &n);
        if (!ids) continue;
        if (t->pinned.n) task_unpin(s, t); /* running: its pages hold refs now */
        if (n > 0 && !t->pin_done) pins_apply(s, t); /* prompt computed, full pages committed */
        if (n > 0 && !t->t_first_us) t->t_first_us = clock_wall_us();
        size_t len = 0, stable = 0;
        const char *text = t->stream ? eng_peek_text(s->e, t->eng_id, &len, &stable) : NULL;
        if (text && n > t->n_streamed_ids) stream_progress(s, t, ids, n, text, stable);
    }
    task_drain_results(s);
    csync_flush(s);
}

static char *dup_str(const char *x) { return strdup(x ? x : ""); }

/* The prompt: ids (the coordinator's normal case), else text tokenized like
 * `generate --prompt` (control tokens are not parsed: text from a client is
 * not trusted to carry them). 0, or fails t (and frees it) and returns -1. */
static int task_prompt(srv_t *s, task_t *t, const Helium__Dispatch *d) {
    if (d->n_prompt_ids > 0) {
        if (d->n_prompt_ids > (size_t)INT32_MAX / 8) {
            task_fail(s, t, HELIUM__ERROR_CODE__ERROR_PROMPT_TOO_LONG, "prompt too long");
            return -1;
        }
        t->n_prompt = (int32_t)d->n_prompt_ids;
        t->prompt = malloc(sizeof(int32_t) * d->n_prompt_ids);
        if (t->prompt) memcpy(t->prompt, d->prompt_ids, sizeof(int32_t) * d->n_prompt_ids);
    } else if (d->prompt && d->prompt[0]) {
        size_t len = strlen(d->prompt);
        if (len > WF_MAX_PROMPT_BYTES * 4) {
            task_fail(s, t, HELIUM__ERROR_CODE__ERROR_PROMPT_TOO_LONG, "prompt text too long");
            return -1;
        }
        bool bos = tok_add_bos_default(s->m->tok);
        int need = tok_encode(s->m->tok, d->prompt, len, bos, false, NULL, 0);
        if (need < 0) {
            task_fail(s, t, werr_code(need), he_msg());
            return -1;
        }
        t->prompt = malloc(sizeof(int32_t) * (size_t)(need ? need : 1));
        if (t->prompt) {
            int got = tok_encode(s->m->tok, d->prompt, len, bos, false, t->prompt, need);
            if (got < 0) {
                task_fail(s, t, werr_code(got), he_msg());
                return -1;
            }
            t->n_prompt = got;
        }
    } else {
        task_fail(s, t, HELIUM__ERROR_CODE__ERROR_INVALID, "empty prompt");
        return -1;
    }
    if (!t->prompt) {
        task_fail(s, t, HELIUM__ERROR_CODE__ERROR_INTERNAL, "out of memory");
        return -1;
    }
    return 0;
}

/* Sampling, max_tokens, stop ids and stop strings into t->rq, checked
 * against the limits. 0, or fails t (and frees it) and returns -1. */
static int task_request(srv_t *s, task_t *t, const Helium__Dispatch *d) {
    smp_params sp = {.temperature = 0, .top_k = 0, .top_p = 1.0f, .seed = 0};
    if (d->sampling) {
        sp.temperature = d->sampling->temperature;
        sp.top_k = d->sampling->top_k > (uint32_t)INT32_MAX ? INT32_MAX : (int32_t)d->sampling->top_k;
        sp.top_p = d->sampling->top_p == 0 ? 1.0f : d->sampling->top_p;
        sp.seed = d->sampling->seed;
        if (!(sp.temperature >= 0 && sp.temperature < 1e6f) || !(sp.top_p > 0 && sp.top_p <= 1)) {
            task_fail(s, t, HELIUM__ERROR_CODE__ERROR_INVALID, "bad sampling parameters");
            return -1;
        }
    }
    uint32_t max_tokens = d->max_tokens ? d->max_tokens : WF_DEFAULT_MAX_TOKENS;
    if (max_tokens > WF_MAX_TOKENS) {
        task_fail(s, t, HELIUM__ERROR_CODE__ERROR_LIMIT, "max_tokens above the limit");
        return -1;
    }
    if (d->n_stop_ids > SRV_MAX_STOP_IDS || d->n_stop > SRV_MAX_STOPS) {
        task_fail(s, t, HELIUM__ERROR_CODE__ERROR_LIMIT, "too many stop tokens or strings");
        return -1;
    }
    if (d->n_stop_ids) {
        t->stop_ids = malloc(sizeof(int32_t) * d->n_stop_ids);
        if (!t->stop_ids) {
            task_fail(s, t, HELIUM__ERROR_CODE__ERROR_INTERNAL, "out of memory");
            return -1;
        }
        memcpy(t->stop_ids, d->stop_ids, sizeof(int32_t) * d->n_stop_ids);
    }
    if (d->n_stop) {
        t->stops = calloc(d->n_stop, sizeof *t->stops);
        if (!t->stops) {
            task_fail(s, t, HELIUM__ERROR_CODE__ERROR_INTERNAL, "out of memory");
            return -1;
        }
        for (size_t i = 0; i < d->n_stop; i++) {
            const char *x = d->stop[i] ? d->stop[i] : "";
            size_t l = strlen(x);
            if (l == 0) continue;
            if (l > SRV_MAX_STOP_LEN) {
                task_fail(s, t, HELIUM__ERROR_CODE__ERROR_LIMIT, "stop string too long");
                return -1;
            }
            if (!(t->stops[t->n_stops] = strdup(x))) {
                task_fail(s, t, HELIUM__ERROR_CODE__ERROR_INTERNAL, "out of memory");
                return -1;
            }
            t->n_stops++;
        }
    }
    t->rq = (eng_request){.sampling = sp, .max_tokens = (int32_t)max_tokens, .stop_ids = t->stop_ids,
                          .n_stop = (int32_t)d->n_stop_ids, .stops = (const char *const *)t->stops,
                          .n_stops = t->n_stops, .keep_text = true, .no_cache = d->no_cache, .user = t->task_id};
    if (d->warm) {
        /* prefill only: one token, whatever it is, ends the request */
        t->warm = true;
        t->stream = false;
        t->rq.max_tokens = 1;
        t->rq.ignore_eos = true;
        t->rq.n_stop = 0;
        t->rq.n_stops = 0;
        t->rq.stops = NULL;
        t->rq.keep_text = false;
    }
    return 0;
}

/* The workflow pin a dispatch asks for (pins.c applies it once the prompt is
 * computed). Pins beyond the pool, or without a usable tag, are refused and
 * counted. 0, or fails t (and frees it) and returns -1. */
static int task_pins(srv_t *s, task_t *t, const Helium__Dispatch *d) {
    if (d->n_pin == 0) return 0;
    const char *tag = d->pin_tag ? d->pin_tag : "";
    size_t max_pin = (size_t)eng_kv_blocks(s->e);
    if (!tag[0] || strlen(tag) > SRV_MAX_TAG_LEN) {
        s->pin_refused += (int64_t)d->n_pin;
        clog_msg(CLOG_WARN, "task %llu: %zu pins with %s tag ignored", (unsigned long long)t->task_id, d->n_pin,
                 tag[0] ? "an overlong" : "no");
        return 0;
    }
    size_t n = d->n_pin < max_pin ? d->n_pin : max_pin;
    if (n < d->n_pin) {
        s->pin_refused += (int64_t)(d->n_pin - n);
        clog_msg(CLOG_WARN, "task %llu: %zu pins for %zu KV blocks; keeping the first %zu",
                 (unsigned long long)t->task_id, d->n_pin, max_pin, n);
    }
    t->pin_tag = strdup(tag);
    t->pin = malloc(sizeof(uint64_t) * n);
    if (!t->pin_tag || !t->pin) {
        task_fail(s, t, HELIUM__ERROR_CODE__ERROR_INTERNAL, "out of memory");
        return -1;
    }
    memcpy(t->pin, d->pin, sizeof(uint64_t) * n);
    t->n_pin = (int32_t)n;
    t->pin_steps = d->pin_steps;
    return 0;
}

/* A Dispatch: a new task, submitted to the engine at once, or after a KV
 * pull (its hint), or after another task's pull that brings its prefix. A
 * task id seen before is a repeat and ignored; anything wrong in the
 * dispatch fails the task with a typed error (its one OpResult). */
void task_on_dispatch(srv_t *s, const Helium__Dispatch *d) {
    s->dispatches++;
    if (task_find(s, d->task_id)) {
        clog_msg(CLOG_WARN, "task %llu dispatched twice; ignoring the repeat", (unsigned long long)d->task_id);
        return;
    }
    task_t *t = calloc(1, sizeof *t);
    if (!t) {
        clog_msg(CLOG_ERROR, "out of memory for task %llu", (unsigned long long)d->task_id);
        return;
    }
    t->task_id = d->task_id;
    t->job_id = dup_str(d->job_id);
    t->op_id = dup_str(d->op_id);
    t->attempt = d->attempt;
    t->item = d->item;
    t->round = d->round;
    t->stream = d->stream;
    t->peer = -1;
    t->t_recv_us = clock_wall_us();
    t->next = s->tasks;
    s->tasks = t;
    s->n_tasks++;
    if (!t->job_id || !t->op_id) {
        task_fail(s, t, HELIUM__ERROR_CODE__ERROR_INTERNAL, "out of memory");
        return;
    }
    if (s->draining) {
        task_fail(s, t, HELIUM__ERROR_CODE__ERROR_UNAVAILABLE, "worker is shutting down");
        return;
    }
    if (task_prompt(s, t, d) || task_request(s, t, d) || task_pins(s, t, d)) return;
    clog_msg(CLOG_INFO, "dispatch task %llu (job %s op %s attempt %u item %u): %d prompt tokens, max %u new%s%s%s%s%s%s",
             (unsigned long long)t->task_id, t->job_id, t->op_id, t->attempt, t->item, t->n_prompt, t->rq.max_tokens,
             t->stream ? ", streaming" : "", d->pull ? ", pull hint" : "", t->warm ? ", warm" : "",
             t->rq.no_cache ? ", no cache" : "", t->pin_tag ? ", pin under " : "", t->pin_tag ? t->pin_tag : "");
    if ((t->wait_xfer = pull_bringing(s, t)) != 0) {
        s->pull_waits++;
        clog_msg(CLOG_DEBUG, "task %llu waits for pull %llu, which brings its prefix", (unsigned long long)t->task_id,
                 (unsigned long long)t->wait_xfer);
        return;
    }
    if (d->pull && pull_start(s, t, d->pull)) return;
    task_submit(s, t);
}

/* Results of finished (or canceled) engine requests: their OpResults. */
void task_drain_results(srv_t *s) {
    eng_result er;
    while (eng_next_result(s->e, &er)) {
        on_engine_result(s, &er);
        eng_result_free(&er);
    }
}

void task_on_cancel(srv_t *s, const Helium__Cancel *c) {
    if (c->task_id == 0 && (!c->job_id || !c->job_id[0])) {
        clog_msg(CLOG_WARN, "Cancel without task_id or job_id ignored");
        return;
    }
    int n = 0;
    for (task_t *t = s->tasks, *next; t; t = next) {
        next = t->next;
        bool match = c->task_id ? t->task_id == c->task_id : !strcmp(t->job_id, c->job_id);
        if (!match) continue;
        n++;
        if (t->submitted) {
            if (eng_cancel(s->e, t->eng_id)) clog_msg(CLOG_DEBUG, "cancel: %s", he_msg());
        } else {
            task_fail(s, t, HELIUM__ERROR_CODE__ERROR_CANCELED, "canceled");
        }
    }
    task_drain_results(s); /* canceled engine requests report through eng_next_result */
    clog_msg(CLOG_INFO, "cancel (task %llu job %s): %d task(s)", (unsigned long long)c->task_id,
         c->job_id ? c->job_id : "", n);
}
