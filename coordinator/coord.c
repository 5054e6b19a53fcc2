/* coord: see coord.h.
 *
 * Ownership: the coordinator owns the job table, the worker table, the prefix
 * directory, the scheduler, the tool runner and the metrics server. A task
 * running on a worker is listed in that worker's in-flight set (workers.h);
 * a running tool task holds its tool_call in task->runner. Both are released
 * on completion, on abort (jobs hook) and, for workers, on loss (the tasks go
 * back to the ready queue with the next attempt number).
 *
 * Clients waiting on a job (SubmitJob.wait) hang off job->user as a list of
 * waiters; they are answered from the job_end hook, so every waiter is gone
 * before its job can be evicted.
 *
 * Policies (per job, SubmitJob.policy): placement is sched.h's; the rest is
 * done here with the optimizer (opt.h): isolated dispatches with no_cache;
 * kvflow and helium keep their pending calls in the optimizer's prefix trees
 * (hooks task_new / op_done / job_end) and pin shared prefixes on dispatch;
 * helium also plans at submit (pruning, merging), answers deterministic calls
 * from the result cache or attaches them to an identical call in flight (a
 * follower is "started" with no worker and t->opt pointing at the entry; the
 * leader's result completes it), warms shared prefixes before sleep, places
 * its ready calls in the prefix tree's order first, and holds a call whose
 * placement counts on prefix blocks still being computed until they are
 * cached.
 */
#include "coord.h"

#include <errno.h>
#include <inttypes.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zmq.h>

#include "clock.h"
#include "dir.h"
#include "gguf.h"
#include "helium.pb-c.h"
#include "herr.h"
#include "jobs.h"
#include "log.h"
#include "metrics.h"
#include "opt.h"
#include "pbcheck.h"
#include "render.h"
#include "reply.h"
#include "sched.h"
#include "tokenizer.h"
#include "tools.h"
#include "wf_proto.h"
#include "workers.h"

#define COORD_MAX_MSG (64 << 20)    /* largest frame accepted from any peer */
#define COORD_MAX_DEPTH 24          /* protobuf nesting accepted from peers */
#define COORD_BATCH 512             /* messages handled per socket per loop turn */
#define COORD_MAX_WAITERS 256       /* clients waiting on one job */
#define COORD_METRICS_MS 500
#define COORD_RETRIES 3             /* attempts of a task whose worker reported an internal error */

typedef struct waiter {
    uint8_t ident[256];
    size_t ident_len;
    bool delim;                     /* REQ-style client: echo an empty delimiter frame */
    uint64_t request_id;
    bool stream;                    /* send partial JobStatus replies (more = true) */
    uint64_t seq_sent;              /* last partial seq sent */
    struct waiter *next;
} waiter;

typedef struct {
    uint64_t bad_client_frames, bad_worker_frames, unknown_worker_msgs, stale_results;
    uint64_t redispatches, resyncs, workers_lost, rejected_workers;
    uint64_t prompt_tokens, cached_tokens, pulled_tokens, generated_tokens;
    uint64_t kv_pulls, kv_pull_bytes, tool_calls, tool_errors, requests;
} coord_stats;

struct coord {
    coord_config cfg;
    void *zctx, *client, *wsock;
    tok_t *tok;
    jobs_t *jobs;
    wkrs_t *wkrs;
    dir_t *dir;
    sched_t *sched;
    opt_t *opt;                     /* workflow optimizer and per-policy counters */
    tools_t *tools;
    metrics_t *metrics;
    int policy;                     /* default sched_policy */
    bool have_model;                /* the cluster's root and block size are set */
    uint64_t root;
    uint32_t block_size;
    size_t page_bytes;
    uint64_t next_task_id;
    bool dirty;                     /* the ready queue may be placeable */
    job_t **stream_jobs;            /* (n_stream) jobs with new partial output and streaming waiters */
    size_t n_stream, cap_stream;
    int64_t next_liveness_ms, next_metrics_ms;
    uint64_t started_us;
    coord_stats st;
};

/* --------------------------------------------------------------- sending */

static int send_frames(void *sock, const void *ident, size_t ident_len, bool delim, const void *data, size_t len) {
    if (zmq_send(sock, ident, ident_len, ZMQ_SNDMORE | ZMQ_DONTWAIT) < 0) return -1;
    if (delim && zmq_send(sock, "", 0, ZMQ_SNDMORE | ZMQ_DONTWAIT) < 0) return -1;
    return zmq_send(sock, data, len, ZMQ_DONTWAIT) < 0 ? -1 : 0;
}

static void send_reply(coord_t *c, const void *ident, size_t ident_len, bool delim, Helium__Reply *r) {
    uint8_t *buf;
    size_t len;
    if (rep_pack(r, &buf, &len)) {
        clog_msg(CLOG_ERROR, "cannot pack a reply: %s", he_msg());
        return;
    }
    if (send_frames(c->client, ident, ident_len, delim, buf, len))
        clog_msg(CLOG_DEBUG, "reply to a client dropped: %s", zmq_strerror(zmq_errno()));
    free(buf);
}

static void reply_error(coord_t *c, const void *ident, size_t ident_len, bool delim, uint64_t request_id,
                        Helium__ErrorCode code, const char *msg, const char *op_id) {
    rep_arena a = {0};
    Helium__Reply r = HELIUM__REPLY__INIT;
    r.request_id = request_id;
    r.error = rep_error(&a, code, msg, op_id);
    send_reply(c, ident, ident_len, delim, &r);
    rep_arena_free(&a);
}

/* Sends msg to worker w. Returns 0, -2 if the worker is not connected
 * (EHOSTUNREACH), -1 if it could not be queued otherwise (EAGAIN: full). */
static int send_worker(coord_t *c, wkr_t *w, Helium__CoordMsg *msg) {
    msg->protocol_version = HELIUM__PROTOCOL__PROTOCOL_CURRENT;
    size_t n = helium__coord_msg__get_packed_size(msg);
    uint8_t *buf = malloc(n ? n : 1);
    if (!buf) return -1;
    helium__coord_msg__pack(msg, buf);
    int rc = send_frames(c->wsock, w->ident, w->ident_len, false, buf, n);
    int err = zmq_errno();
    free(buf);
    if (rc) {
        clog_msg(CLOG_DEBUG, "send to worker %s failed: %s", w->id, zmq_strerror(err));
        return err == EHOSTUNREACH ? -2 : -1;
    }
    return 0;
}

static void send_cancel(coord_t *c, wkr_t *w, const job_task *t) {
    Helium__Cancel cn = HELIUM__CANCEL__INIT;
    cn.task_id = t->task_id;
    cn.job_id = t->job->id;
    Helium__CoordMsg m = HELIUM__COORD_MSG__INIT;
    m.body_case = HELIUM__COORD_MSG__BODY_CANCEL;
    m.cancel = &cn;
    send_worker(c, w, &m);
}

static void send_resync(coord_t *c, wkr_t *w) {
    Helium__CacheResync rs = HELIUM__CACHE_RESYNC__INIT;
    rs.last_seq = w->cache_seq;
    Helium__CoordMsg m = HELIUM__COORD_MSG__INIT;
    m.body_case = HELIUM__COORD_MSG__BODY_RESYNC;
    m.resync = &rs;
    if (send_worker(c, w, &m) == 0) {
        w->resync_pending = true;
        c->st.resyncs++;
        clog_msg(CLOG_DEBUG, "worker %s: cache resync requested after seq %" PRIu64, w->id, w->cache_seq);
    }
}

/* Forgets a task that leaves worker w: in-flight load, reserved pages and
 * the pending blocks it was to bring. */
static void task_release(coord_t *c, wkr_t *w, job_task *t) {
    wkr_inflight_remove(w, t);
    sched_pending_remove(c->sched, w->slot, t->hashes, t->n_hashes);
    opt_task_gone(c->opt, t);
}

/* The optimizer's sending (opt_io). */
static uint64_t io_next_task_id(void *ctx) { return ++((coord_t *)ctx)->next_task_id; }

static int io_send_warm(void *ctx, wkr_t *w, uint64_t task_id, const int32_t *ids, int32_t n, const uint64_t *hashes,
                        int32_t n_blocks, const char *tag, uint32_t steps, const sched_choice *ch) {
    coord_t *c = ctx;
    Helium__Sampling smp = HELIUM__SAMPLING__INIT;
    Helium__KvPullHint pull = HELIUM__KV_PULL_HINT__INIT;
    Helium__Dispatch d = HELIUM__DISPATCH__INIT;
    d.task_id = task_id;
    d.job_id = "";
    d.op_id = "warm";
    d.attempt = 1;
    d.n_prompt_ids = (size_t)n;
    d.prompt_ids = (int32_t *)ids;
    d.sampling = &smp;
    d.max_tokens = 1;
    d.warm = true;
    d.n_pin = (size_t)n_blocks;
    d.pin = (uint64_t *)hashes;
    d.pin_tag = (char *)tag;
    d.pin_steps = steps;
    if (ch->pull_from) {
        pull.source_worker = ch->pull_from->id;
        pull.source_endpoint = ch->pull_from->endpoint;
        pull.first_block = (uint32_t)ch->pull_first;
        pull.n_hashes = (size_t)ch->pull_blocks;
        pull.hashes = (uint64_t *)ch->hashes + ch->pull_first;
        d.pull = &pull;
    }
    Helium__CoordMsg m = HELIUM__COORD_MSG__INIT;
    m.body_case = HELIUM__COORD_MSG__BODY_DISPATCH;
    m.dispatch = &d;
    return send_worker(c, w, &m) ? -1 : 0;
}

static bool helium_fit(void *ctx, const wkr_t *w, const uint64_t *hashes, int32_t nb, int32_t pages) {
    return opt_ws_fits(ctx, w, hashes, nb, pages);
}

static void io_send_pin_steps(void *ctx, wkr_t *w, const char *tag, uint32_t steps) {
    Helium__PinSteps p = HELIUM__PIN_STEPS__INIT;
    p.tag = (char *)tag;
    p.steps = steps;
    Helium__CoordMsg m = HELIUM__COORD_MSG__INIT;
    m.body_case = HELIUM__COORD_MSG__BODY_PIN_STEPS;
    m.pin_steps = &p;
    send_worker(ctx, w, &m);
}

static void io_send_unpin(void *ctx, wkr_t *w, const char *tag) {
    Helium__Unpin u = HELIUM__UNPIN__INIT;
    u.tag = (char *)tag;
    Helium__CoordMsg m = HELIUM__COORD_MSG__INIT;
    m.body_case = HELIUM__COORD_MSG__BODY_UNPIN;
    m.unpin = &u;
    send_worker(ctx, w, &m);
}

/* ---------------------------------------------------------------- waiters */

static void waiters_free(job_t *j) {
    waiter *w = j->user;
    while (w) {
        waiter *n = w->next;
        free(w);
        w = n;
    }
    j->user = NULL;
}

static void answer_waiter(coord_t *c, job_t *j, waiter *w, bool final) {
    rep_arena a = {0};
    Helium__Reply r = HELIUM__REPLY__INIT;
    r.request_id = w->request_id;
    r.more = !final;
    r.body_case = HELIUM__REPLY__BODY_JOB;
    r.job = rep_job_status(&a, j, final, w->stream ? w->seq_sent : UINT64_MAX);
    if (a.oom || !r.job) {
        r.body_case = HELIUM__REPLY__BODY__NOT_SET;
        r.error = rep_error(&a, HELIUM__ERROR_CODE__ERROR_INTERNAL, "out of memory building the job status", "");
    }
    if (j->n_chunks) w->seq_sent = j->chunks[j->n_chunks - 1].seq;
    send_reply(c, w->ident, w->ident_len, w->delim, &r);
    rep_arena_free(&a);
}

/* Sends pending partial output to streaming waiters (before sleep). */
static void flush_streams(coord_t *c) {
    for (size_t k = 0; k < c->n_stream; k++) {
        job_t *j = c->stream_jobs[k];
        for (waiter *w = j->user; w; w = w->next)
            if (w->stream && j->n_chunks && j->chunks[j->n_chunks - 1].seq > w->seq_sent) answer_waiter(c, j, w, false);
    }
    c->n_stream = 0;
}

/* ------------------------------------------------------------- jobs hooks */

static void hook_task_abort(void *ctx, job_task *t) {
    coord_t *c = ctx;
    opt_dd_drop(c->opt, t); /* a dedup follower leaves; a leader's followers will run themselves */
    opt_task_gone(c->opt, t);
    if (t->kind == JT_TOOL && t->runner) {
        tools_abort(c->tools, t->runner);
        t->runner = NULL;
    }
    if (t->worker >= 0) {
        wkr_t *w = wkrs_by_slot(c->wkrs, t->worker);
        if (w) {
            task_release(c, w, t);
            if (w->alive) send_cancel(c, w, t);
        }
        t->worker = -1;
    }
}

static void hook_job_end(void *ctx, job_t *j) {
    coord_t *c = ctx;
    opt_job_end(c->opt, j);
    uint64_t ms = (j->finished_us - j->submitted_us) / 1000;
    if (j->state == HELIUM__JOB_STATE__JOB_DONE)
        clog_msg(CLOG_INFO, "%s done in %" PRIu64 " ms", j->id, ms);
    else if (j->state == HELIUM__JOB_STATE__JOB_FAILED)
        clog_msg(CLOG_INFO, "%s failed after %" PRIu64 " ms: %s (op %s)", j->id, ms, j->err_msg ? j->err_msg : "",
             j->err_op ? j->err_op : "-");
    else
        clog_msg(CLOG_INFO, "%s canceled after %" PRIu64 " ms", j->id, ms);
    for (size_t k = 0; k < c->n_stream; k++) /* no more streaming for it */
        if (c->stream_jobs[k] == j) c->stream_jobs[k--] = c->stream_jobs[--c->n_stream];
    for (waiter *w = j->user; w; w = w->next) answer_waiter(c, j, w, true);
    waiters_free(j);
    c->dirty = true;
    c->next_metrics_ms = clock_mono_ms(); /* publish the new counts at the next turn */
}

static int tokenize(coord_t *c, job_task *t);

/* A new task: llm tasks of the optimizing policies are tokenized now, so the
 * prefix tree knows their whole prompt while they wait in the queue. */
static void hook_task_new(void *ctx, job_task *t) {
    coord_t *c = ctx;
    if (t->kind != JT_LLM || !opt_tracks((sched_policy)t->job->pol)) return;
    if (!t->ids && tokenize(c, t)) return; /* start_llm reports it */
    opt_task_new(c->opt, t);
}

static void hook_op_done(void *ctx, job_t *j, int i) {
    coord_t *c = ctx;
    opt_op_done(c->opt, j, i);
}

static void hook_job_progress(void *ctx, job_t *j) {
    coord_t *c = ctx;
    bool streaming = false;
    for (waiter *w = j->user; w && !streaming; w = w->next) streaming = w->stream;
    if (!streaming) return;
    for (size_t k = 0; k < c->n_stream; k++)
        if (c->stream_jobs[k] == j) return;
    if (c->n_stream == c->cap_stream) {
        size_t cap = c->cap_stream ? c->cap_stream * 2 : 16;
        job_t **v = realloc(c->stream_jobs, cap * sizeof *v);
        if (!v) return;
        c->stream_jobs = v;
        c->cap_stream = cap;
    }
    c->stream_jobs[c->n_stream++] = j;
}

/* ------------------------------------------------------------ tool calls */

static void tool_done(void *ctx, void *user, Helium__ErrorCode code, const char *body, size_t len) {
    coord_t *c = ctx;
    job_task *t = user;
    t->runner = NULL;
    if (code == HELIUM__ERROR_CODE__ERROR_OK) {
        job_result r = {.text = body, .len = len};
        jobs_task_done(c->jobs, t, &r);
    } else {
        c->st.tool_errors++;
        clog_msg(CLOG_INFO, "%s: op %s: %.*s", t->job->id, t->job->wf->ops[t->op]->id, (int)len, body);
        jobs_task_fail(c->jobs, t, code, body);
    }
    c->dirty = true;
}

/* ----------------------------------------------------------- placement */

/* START_CHANGED: the task completed at once (result cache): other queued
 * tasks may have gone, the walk restarts. */
typedef enum { START_OK, START_WAIT, START_FAILED, START_CHANGED } start_rc;

static void worker_lost(coord_t *c, wkr_t *w, const char *why);

static start_rc fail_task(coord_t *c, job_task *t, Helium__ErrorCode code, const char *msg) {
    clog_msg(CLOG_INFO, "%s: op %s fails: %s", t->job->id, t->job->wf->ops[t->op]->id, msg);
    jobs_task_fail(c->jobs, t, code, msg);
    return START_FAILED;
}

static start_rc start_tool(coord_t *c, job_task *t) {
    const wf_op *op = t->job->wf->ops[t->op];
    tool_request rq = {.method = op->tool.method, .url = t->url, .body = t->text, .body_len = t->text_len,
                       .headers = op->tool.headers, .n_headers = op->tool.n_headers,
                       .timeout_ms = op->tool.timeout_ms, .max_response_bytes = op->tool.max_response_bytes,
                       .wf_hosts = t->job->wf->allow_hosts, .n_wf_hosts = t->job->wf->n_allow_hosts};
    tool_call *h;
    if (tools_start(c->tools, &rq, t, &h)) {
        char msg[512];
        snprintf(msg, sizeof msg, "%s", he_msg());
        c->st.tool_errors++;
        return fail_task(c, t, HELIUM__ERROR_CODE__ERROR_TOOL, msg);
    }
    t->runner = h;
    c->st.tool_calls++;
    jobs_task_start(c->jobs, t, -1, NULL, ++c->next_task_id);
    return START_OK;
}

static int tokenize(coord_t *c, job_task *t) {
    int cap = (int)(t->text_len / 2 + 16);
    int32_t *ids = malloc((size_t)cap * sizeof *ids);
    if (!ids) return he_set(HE_ENOMEM, "out of memory");
    bool bos = tok_add_bos_default(c->tok);
    int n = tok_encode(c->tok, t->text, t->text_len, bos, false, ids, cap);
    if (n > cap) {
        int32_t *v = realloc(ids, (size_t)n * sizeof *v);
        if (!v) {
            free(ids);
            return he_set(HE_ENOMEM, "out of memory");
        }
        ids = v;
        n = tok_encode(c->tok, t->text, t->text_len, bos, false, ids, n);
    }
    if (n < 0) {
        free(ids);
        return n;
    }
    if (n == 0) {
        free(ids);
        return he_set(HE_EEMPTY, "the prompt renders to no tokens");
    }
    t->ids = ids;
    t->n_ids = n;
    return 0;
}

/* Helium: answers t from the result cache or attaches it to an identical
 * call in flight. Returns START_CHANGED / START_OK if so, START_WAIT if t
 * must be dispatched (then *lead says whether it leads a new dedup entry
 * under *key). */
static start_rc try_reuse(coord_t *c, job_task *t, bool *lead, rcache_key *key) {
    *lead = false;
    rcache_call call;
    if (opt_dd_leads(t) || !c->have_model || !opt_call_of(c->opt, t, &call)) return START_WAIT;
    opt_counters *st = opt_stats(c->opt, SCHED_HELIUM);
    *key = rcache_key_of(&call);
    if (!t->looked) st->rcache_lookups++; /* once per task, however often it is placed */
    t->looked = true;
    rcache_val v;
    if (rcache_get(opt_rcache(c->opt), *key, clock_wall_us(), &v) == 1) {
        st->rcache_hits++;
        opt_count_prompt(c->opt, t);
        opt_call_gone(c->opt, t);
        char *text = malloc(v.len + 1);
        if (!text) {
            fail_task(c, t, HELIUM__ERROR_CODE__ERROR_INTERNAL, "out of memory");
            return START_CHANGED;
        }
        memcpy(text, v.text, v.len);
        text[v.len] = 0;
        job_result res = {.text = text, .len = v.len};
        clog_msg(CLOG_DEBUG, "%s: op %s item %u answered from the result cache", t->job->id,
                 t->job->wf->ops[t->op]->id, t->item);
        jobs_task_done(c->jobs, t, &res);
        free(text);
        return START_CHANGED;
    }
    opt_dd *e = opt_dd_find(c->opt, *key);
    if (e && opt_dd_follow(c->opt, e, t) == 0) {
        st->dedup_hits++;
        opt_count_prompt(c->opt, t);
        opt_call_gone(c->opt, t);
        jobs_task_start(c->jobs, t, -1, NULL, ++c->next_task_id);
        clog_msg(CLOG_DEBUG, "%s: op %s item %u waits for an identical call in flight", t->job->id,
                 t->job->wf->ops[t->op]->id, t->item);
        return START_OK;
    }
    *lead = true;
    return START_WAIT;
}

static start_rc kv_wait(opt_counters *st, job_task *t) {
    if (!t->kv_held) st->kv_waits++;
    t->kv_held = true;
    return START_WAIT;
}

static start_rc start_llm(coord_t *c, job_task *t) {
    const wf_op *op = t->job->wf->ops[t->op];
    if (!t->ids) {
        int rc = tokenize(c, t);
        if (rc) {
            char msg[512];
            snprintf(msg, sizeof msg, "cannot tokenize the prompt: %s", he_msg());
            return fail_task(c, t, rc == HE_EEMPTY ? HELIUM__ERROR_CODE__ERROR_INVALID : rep_code(rc), msg);
        }
    }
    sched_policy policy = (sched_policy)t->job->pol;
    opt_counters *st = opt_stats(c->opt, policy);
    bool lead = false;
    rcache_key key = {0, 0};
    if (policy == SCHED_HELIUM) {
        start_rc r = try_reuse(c, t, &lead, &key);
        if (r != START_WAIT) return r;
    }
    sched_choice ch;
    int rc = sched_place_ex(c->sched, policy, t->ids, t->n_ids, op->llm.max_tokens, SCHED_DRY, &ch);
    if (rc == HE_EUNAVAIL) return START_WAIT;
    if (rc == HE_ECONTEXT) {
        char msg[512];
        snprintf(msg, sizeof msg, "%s", he_msg());
        return fail_task(c, t, HELIUM__ERROR_CODE__ERROR_PROMPT_TOO_LONG, msg);
    }
    if (rc) return fail_task(c, t, rep_code(rc), he_msg());
    if (!ch.worker) {
        /* helium: no worker's working set has room for it (sched_set_helium_fit) */
        if (policy == SCHED_HELIUM && c->cfg.helium_kv_admit != 0) return kv_wait(st, t);
        return START_WAIT;
    }
    wkr_t *w = ch.worker;
    if (ch.hold) {
        /* its prefix is being computed on another worker: pull it once it is
         * committed instead of computing it twice (sched.h). The pending
         * pages go away with their task, so the wait is bounded by it. */
        if (!t->held) st->held++;
        t->held = true;
        if (ch.split)
            clog_msg(CLOG_DEBUG, "%s: op %s waits to pull its prefix to a lighter worker than %s (split)",
                     t->job->id, t->job->wf->ops[t->op]->id, w->id);
        return START_WAIT;
    }
    if (policy == SCHED_HELIUM && c->cfg.helium_kv_admit != 0) {
        /* Under KV pressure a call's own prefix (three quarters of its
         * prompt or more) is not copied to a second worker when it is large
         * against that worker's KV (a quarter or more): the call goes to the
         * worker holding it (or computing it), or waits for room there, so
         * that each worker's KV holds distinct prefixes. (A shorter prefix
         * that many groups share, like one document every job reads, is
         * still routed as usual: every worker needs it; and a worker about
         * to go idle takes the call anyway, copying or pulling the prefix.) */
        wkr_t *h = ch.holder_slot >= 0 ? wkrs_by_slot(c->wkrs, ch.holder_slot) : NULL;
        int32_t extra = ch.holder_run - ch.reuse_blocks;
        bool idle = w->load_tokens < sched_helium_starve_tokens(c->sched);
        if (h && !idle && extra >= SCHED_HOLD_MIN_BLOCKS && 4 * (int64_t)extra >= (int64_t)w->kv_blocks_total &&
            4 * (int64_t)ch.holder_run >= 3 * (int64_t)ch.n_hashes) {
            sched_choice hc;
            if (sched_place_on(c->sched, policy, t->ids, t->n_ids, op->llm.max_tokens, h->slot, SCHED_DRY, &hc) ||
                !hc.worker || hc.hold)
                return kv_wait(st, t);
            ch = hc;
            w = hc.worker;
        }
        /* (its worker's working set has room for it: sched_place admits
         * only such workers, sched_set_helium_fit) */
    }
    /* (a placement that counts on prefix pages the chosen worker itself is
     * computing goes at once: its engine admits the call when they are
     * committed, and its serve loop holds it while a sibling's pull brings
     * them.) */
    bool track = opt_tracks(policy);
    char tag[OPT_TAG_LEN] = "";
    int32_t want = 0;
    if (track) {
        opt_call_gone(c->opt, t);
        want = opt_pin_want(c->opt, t, w->slot, ch.hashes, ch.n_hashes, tag);
    }

    Helium__Sampling smp = HELIUM__SAMPLING__INIT;
    smp.temperature = op->llm.sampling.temperature;
    smp.top_k = op->llm.sampling.top_k;
    smp.top_p = op->llm.sampling.top_p;
    smp.seed = t->seed;
    Helium__KvPullHint pull = HELIUM__KV_PULL_HINT__INIT;
    Helium__Dispatch d = HELIUM__DISPATCH__INIT;
    uint64_t task_id = c->next_task_id + 1;
    d.task_id = task_id;
    d.job_id = t->job->id;
    d.op_id = op->id;
    d.attempt = t->attempt + 1;
    d.item = t->item;
    d.round = t->round;
    d.n_prompt_ids = (size_t)t->n_ids;
    d.prompt_ids = t->ids;
    d.sampling = &smp;
    d.max_tokens = op->llm.max_tokens;
    d.n_stop = op->llm.n_stop;
    d.stop = op->llm.stop;
    d.stream = t->job->stream || c->cfg.stream;
    d.no_cache = policy == SCHED_ISOLATED;
    if (want > 0) {
        d.n_pin = (size_t)want;
        d.pin = (uint64_t *)ch.hashes;
        d.pin_tag = tag;
        d.pin_steps = opt_pin_steps(c->opt, t);
    }
    if (ch.pull_from) {
        pull.source_worker = ch.pull_from->id;
        pull.source_endpoint = ch.pull_from->endpoint;
        pull.first_block = (uint32_t)ch.pull_first;
        pull.n_hashes = (size_t)ch.pull_blocks;
        pull.hashes = (uint64_t *)ch.hashes + ch.pull_first;
        d.pull = &pull;
    }
    Helium__CoordMsg m = HELIUM__COORD_MSG__INIT;
    m.body_case = HELIUM__COORD_MSG__BODY_DISPATCH;
    m.dispatch = &d;
    int sent = send_worker(c, w, &m);
    if (sent && track) opt_call_back(c->opt, t);
    if (sent == -2) { /* not connected: it is gone */
        worker_lost(c, w, "disconnected");
        return START_FAILED; /* re-walk the queue: tasks came back */
    }
    if (sent) return START_WAIT; /* its queue is full */
    c->next_task_id = task_id;
    t->load_tokens = ch.load_tokens;
    t->decode_tokens = op->llm.max_tokens;
    t->pages = ch.pages;
    t->reserve_pages = ch.reserve_pages;
    if (!t->hashes && ch.n_hashes > 0 && (t->hashes = malloc((size_t)ch.n_hashes * sizeof *t->hashes))) {
        memcpy(t->hashes, ch.hashes, (size_t)ch.n_hashes * sizeof *t->hashes);
        t->n_hashes = ch.n_hashes;
    }
    jobs_task_start(c->jobs, t, w->slot, w->id, task_id);
    if (wkr_inflight_add(w, t)) {
        /* cannot track it: take it back */
        send_cancel(c, w, t);
        jobs_task_requeue(c->jobs, t);
        if (track) opt_call_back(c->opt, t);
        return START_WAIT;
    }
    /* an isolated task publishes no blocks: it brings the worker nothing */
    if (policy != SCHED_ISOLATED) sched_pending_add(c->sched, w->slot, t->hashes, t->n_hashes);
    if (track) opt_pin_commit(c->opt, t, w->slot, t->hashes, t->n_hashes, want, tag);
    if (lead) opt_dd_lead(c->opt, key, t);
    opt_count_prompt(c->opt, t);
    sched_count(c->sched, &ch);
    st->dispatched++;
    clog_msg(CLOG_DEBUG, "%s: op %s item %u attempt %u -> %s (task %" PRIu64 ", %d tokens%s%s%s)", t->job->id, op->id,
         t->item, t->attempt, w->id, task_id, t->n_ids, ch.pull_from ? ", with pull" : "", want > 0 ? ", pins " : "",
         want > 0 ? tag : "");
    return START_OK;
}

/* Places every ready task that can run now. A failing task may end its job
 * and remove other queued tasks, so the walk restarts after each failure. */
/* Followers whose dedup leader went away (canceled, failed) run on their own. */
static void requeue_orphans(coord_t *c) {
    for (job_task *f; (f = opt_dd_pop_orphan(c->opt));) {
        jobs_task_requeue(c->jobs, f);
        opt_call_back(c->opt, f);
        c->dirty = true;
    }
}

static void dispatch_ready(coord_t *c) {
    c->dirty = false;
    requeue_orphans(c);
    /* helium's ready calls first, in the prefix tree's order */
    const ptree_slot *sl;
    int n = opt_order(c->opt, &sl);
    if (n > 0) {
        ptree_slot *order = malloc((size_t)n * sizeof *order);
        if (order) {
            memcpy(order, sl, (size_t)n * sizeof *order);
            /* Two passes: first each group's leader (a call sharing less than
             * half its static prefix with the call before it in the tree's
             * order), so groups of siblings spread over the workers by load;
             * then the rest, which follow their leader's prefix. */
            bool stop = false;
            for (int pass = 0; pass < 2 && !stop; pass++) {
                for (int k = 0; k < n; k++) {
                    bool leader = k == 0 || 2 * (int64_t)order[k].shared_prev < (int64_t)order[k].prefix_len;
                    if (leader != (pass == 0)) continue;
                    job_task *t = jobs_task_of(c->jobs, order[k].job, order[k].op, order[k].item);
                    if (!t || !t->queued || t->kind != JT_LLM) continue;
                    start_rc rc = start_llm(c, t);
                    if (rc == START_FAILED || rc == START_CHANGED) { /* the FIFO walk goes on */
                        stop = true;
                        break;
                    }
                }
            }
            free(order);
        }
    }
    bool again = true;
    while (again) {
        again = false;
        job_task *next;
        for (job_task *t = jobs_ready_first(c->jobs); t; t = next) {
            next = jobs_ready_next(t);
            start_rc rc = t->kind == JT_TOOL ? start_tool(c, t) : start_llm(c, t);
            if (rc == START_FAILED || rc == START_CHANGED) {
                again = true;
                break;
            }
        }
    }
}

/* ---------------------------------------------------------------- workers */

/* Marks w dead: drops its directory entries and re-queues its tasks. */
static void worker_lost(coord_t *c, wkr_t *w, const char *why) {
    size_t n = w->n_inflight;
    if (w->alive) c->st.workers_lost++;
    w->alive = false;
    dir_drop_worker(c->dir, w->slot);
    sched_pending_drop(c->sched, w->slot);
    opt_worker_lost(c->opt, w->slot);
    while (w->n_inflight) {
        job_task *t = w->inflight[w->n_inflight - 1];
        wkr_inflight_remove(w, t);
        opt_task_gone(c->opt, t);
        jobs_task_requeue(c->jobs, t);
        opt_call_back(c->opt, t);
        c->st.redispatches++;
    }
    w->load_tokens = 0;
    w->resync_pending = false;
    w->seq_known = false;
    clog_msg(CLOG_WARN, "worker %s lost (%s): %zu task(s) re-queued", w->id, why, n);
    c->dirty = true;
}

static void reject_worker(coord_t *c, const void *ident, size_t len, const char *id, const char *why) {
    Helium__Error e = HELIUM__ERROR__INIT;
    e.code = HELIUM__ERROR_CODE__ERROR_INVALID;
    e.message = (char *)why;
    Helium__RegisterAck ack = HELIUM__REGISTER_ACK__INIT;
    ack.worker_id = (char *)id;
    ack.accepted = false;
    ack.error = &e;
    ack.heartbeat_ms = (uint32_t)c->cfg.heartbeat_ms;
    Helium__CoordMsg m = HELIUM__COORD_MSG__INIT;
    m.protocol_version = HELIUM__PROTOCOL__PROTOCOL_CURRENT;
    m.body_case = HELIUM__COORD_MSG__BODY_REGISTER_ACK;
    m.register_ack = &ack;
    size_t n = helium__coord_msg__get_packed_size(&m);
    uint8_t *buf = malloc(n ? n : 1);
    if (buf) {
        helium__coord_msg__pack(&m, buf);
        send_frames(c->wsock, ident, len, false, buf, n);
        free(buf);
    }
    c->st.rejected_workers++;
    clog_msg(CLOG_WARN, "worker %s rejected: %s", id, why);
}

static void on_register(coord_t *c, const uint8_t *ident, size_t ident_len, const Helium__Register *reg) {
    char shown[WKR_ID_LEN];
    snprintf(shown, sizeof shown, "%s", reg->worker_id && *reg->worker_id ? reg->worker_id : "?");
    char why[256];
    if (!reg->block_size || !reg->kv_blocks_total || !reg->n_ctx || reg->block_size > 4096) {
        snprintf(why, sizeof why, "bad KV geometry (block_size %u, kv_blocks_total %u, n_ctx %u)", reg->block_size,
                 reg->kv_blocks_total, reg->n_ctx);
        reject_worker(c, ident, ident_len, shown, why);
        return;
    }
    if (c->have_model && (reg->model_root != c->root || reg->block_size != c->block_size)) {
        snprintf(why, sizeof why,
                 "model root %016" PRIx64 " / block size %u differ from the cluster's %016" PRIx64 " / %u",
                 reg->model_root, reg->block_size, c->root, c->block_size);
        reject_worker(c, ident, ident_len, shown, why);
        return;
    }
    wkr_t *w = wkrs_by_ident(c->wkrs, ident, ident_len);
    if (w) {
        if (w->n_inflight || w->alive) {
            /* a restarted worker lost whatever it was running (and its pins) */
            dir_drop_worker(c->dir, w->slot);
            sched_pending_drop(c->sched, w->slot);
            opt_worker_lost(c->opt, w->slot);
            if (w->n_inflight) worker_lost(c, w, "re-registered");
        }
    } else if (wkrs_add(c->wkrs, ident, ident_len, &w)) {
        reject_worker(c, ident, ident_len, shown, he_msg());
        return;
    } else {
        dir_drop_worker(c->dir, w->slot); /* a reused slot starts empty */
        sched_pending_drop(c->sched, w->slot);
        opt_worker_lost(c->opt, w->slot);
    }
    wkr_register(w, reg, clock_wall_us());
    w->alive = true;
    w->last_seen_ms = clock_mono_ms();
    if (!c->have_model) {
        c->have_model = true;
        c->root = reg->model_root;
        c->block_size = reg->block_size;
        c->page_bytes = w->page_bytes;
        sched_set_model(c->sched, c->root, c->block_size, c->page_bytes);
        if (opt_set_model(c->opt, c->root, (int32_t)c->block_size))
            clog_msg(CLOG_WARN, "the optimizer's prefix trees are off: %s", he_msg());
        clog_msg(CLOG_INFO, "cluster model: root %016" PRIx64 ", block size %u, %zu bytes per KV page", c->root,
             c->block_size, c->page_bytes);
    }
    Helium__RegisterAck ack = HELIUM__REGISTER_ACK__INIT;
    ack.worker_id = w->id;
    ack.accepted = true;
    ack.heartbeat_ms = (uint32_t)c->cfg.heartbeat_ms;
    Helium__CoordMsg m = HELIUM__COORD_MSG__INIT;
    m.body_case = HELIUM__COORD_MSG__BODY_REGISTER_ACK;
    m.register_ack = &ack;
    send_worker(c, w, &m);
    clog_msg(CLOG_INFO, "worker %s registered: model '%s', %s, %u KV blocks x %u tokens, n_ctx %u, data %s", w->id,
         w->model, w->backend, w->kv_blocks_total, w->block_size, w->n_ctx, *w->endpoint ? w->endpoint : "-");
    c->dirty = true;
}

static void on_cache_events(coord_t *c, wkr_t *w, const Helium__CacheEvents *ce) {
    if (ce->snapshot) {
        dir_drop_worker(c->dir, w->slot);
        for (size_t i = 0; i < ce->n_stored; i++) dir_add(c->dir, ce->stored[i], w->slot);
        w->cache_seq = ce->seq;
        w->seq_known = true;
        w->resync_pending = false;
        clog_msg(CLOG_DEBUG, "worker %s: cache snapshot of %zu blocks (seq %" PRIu64 ")", w->id, ce->n_stored, ce->seq);
        return;
    }
    if (w->resync_pending) return; /* the snapshot will cover it */
    if (w->seq_known && ce->seq != w->cache_seq + 1) {
        clog_msg(CLOG_INFO, "worker %s: cache event seq %" PRIu64 " after %" PRIu64 ": resyncing", w->id, ce->seq,
             w->cache_seq);
        send_resync(c, w);
        return;
    }
    /* removals first: a block evicted and stored again in one batch is held */
    for (size_t i = 0; i < ce->n_removed; i++) dir_remove(c->dir, ce->removed[i], w->slot);
    for (size_t i = 0; i < ce->n_stored; i++) dir_add(c->dir, ce->stored[i], w->slot);
    w->cache_seq = ce->seq;
    w->seq_known = true;
    if (ce->n_stored) {
        opt_cache_stored(c->opt, w);
        sched_prefill_progress(c->sched, w);
    }
    if (ce->n_stored && jobs_ready_count(c->jobs)) c->dirty = true; /* held tasks may go now */
}

/* The live task an OpResult/OpProgress from w refers to, or NULL if stale. */
static job_task *match_task(coord_t *c, wkr_t *w, const char *job_id, const char *op_id, uint32_t item,
                            uint64_t task_id, uint32_t attempt) {
    job_task *t = jobs_find_task(c->jobs, job_id, op_id, item);
    if (!t || t->task_id != task_id || t->attempt != attempt || t->worker != w->slot) return NULL;
    return t;
}

static void on_result(coord_t *c, wkr_t *w, const Helium__OpResult *r) {
    bool ok = !r->error || r->error->code == HELIUM__ERROR_CODE__ERROR_OK;
    if (opt_warm_result(c->opt, w, r->task_id, ok, r->computed_tokens, r->cached_tokens, r->pulled_tokens)) {
        clog_msg(CLOG_DEBUG, "worker %s: warm task %" PRIu64 " %s: %u prompt tokens, %u computed", w->id,
                 r->task_id, ok ? "done" : "failed", r->prompt_tokens, r->computed_tokens);
        c->dirty = true;
        return;
    }
    job_task *t = match_task(c, w, r->job_id, r->op_id, r->item, r->task_id, r->attempt);
    if (!t) {
        c->st.stale_results++;
        clog_msg(CLOG_DEBUG, "worker %s: stale result for %s/%s item %u attempt %u (task %" PRIu64 ") ignored", w->id,
             r->job_id ? r->job_id : "", r->op_id ? r->op_id : "", r->item, r->attempt, r->task_id);
        return;
    }
    task_release(c, w, t);
    c->dirty = true;
    if (r->error && r->error->code != HELIUM__ERROR_CODE__ERROR_OK) {
        Helium__ErrorCode code = r->error->code;
        const char *msg = r->error->message && *r->error->message ? r->error->message : "the worker failed the task";
        if ((code == HELIUM__ERROR_CODE__ERROR_INTERNAL || code == HELIUM__ERROR_CODE__ERROR_UNAVAILABLE) &&
            t->attempt < COORD_RETRIES) {
            clog_msg(CLOG_WARN, "%s: op %s failed on %s (%s); retrying", t->job->id, r->op_id, w->id, msg);
            jobs_task_requeue(c->jobs, t);
            opt_call_back(c->opt, t);
            c->st.redispatches++;
            return;
        }
        opt_dd_drop(c->opt, t); /* its followers run on their own */
        char full[600];
        snprintf(full, sizeof full, "%s (worker %s)", msg, w->id);
        if ((unsigned)code > HELIUM__ERROR_CODE__ERROR_TIMEOUT) code = HELIUM__ERROR_CODE__ERROR_INTERNAL;
        fail_task(c, t, code, full);
        return;
    }
    c->st.prompt_tokens += r->prompt_tokens;
    c->st.cached_tokens += r->cached_tokens;
    c->st.pulled_tokens += r->pulled_tokens;
    c->st.generated_tokens += r->generated_tokens;
    if (r->pulled_tokens && c->block_size) {
        c->st.kv_pulls++;
        c->st.kv_pull_bytes += (uint64_t)(r->pulled_tokens / c->block_size) * c->page_bytes;
    }
    opt_counters *st = opt_stats(c->opt, (sched_policy)t->job->pol);
    st->prompt_tokens += r->prompt_tokens;
    st->computed_tokens += r->computed_tokens;
    st->cached_tokens += r->cached_tokens;
    st->pulled_tokens += r->pulled_tokens;
    st->generated_tokens += r->generated_tokens;
    if (r->pulled_tokens) st->kv_pulls++;
    const char *text = r->text ? r->text : "";
    job_result res = {.text = text, .len = strlen(text), .prompt_tokens = r->prompt_tokens,
                      .cached_tokens = r->cached_tokens, .pulled_tokens = r->pulled_tokens,
                      .generated_tokens = r->generated_tokens, .worker = w->id,
                      .first_token_us = r->timing ? r->timing->first_token_us : 0};
    clog_msg(CLOG_DEBUG, "%s: op %s item %u done on %s: %u prompt (%u cached, %u pulled), %u generated", t->job->id,
         r->op_id, r->item, w->id, r->prompt_tokens, r->cached_tokens, r->pulled_tokens, r->generated_tokens);
    /* helium: the result answers the identical calls waiting on it, now and later */
    rcache_key key;
    opt_dd *e = opt_dd_finish(c->opt, t, &key);
    if (e) {
        rcache_val v = {.text = text, .len = res.len, .ids = r->ids, .n_ids = r->n_ids,
                        .generated_tokens = r->generated_tokens};
        rcache_put(opt_rcache(c->opt), key, &v, 0, clock_wall_us());
    }
    jobs_task_done(c->jobs, t, &res);
    if (e) {
        /* a follower's job may end (or fail others) as each one completes;
         * aborted followers leave e on their own (abort hook) */
        job_result fr = {.text = text, .len = res.len, .worker = w->id};
        for (job_task *f; (f = opt_dd_pop(e));) jobs_task_done(c->jobs, f, &fr);
        opt_dd_free(&e);
    }
}

static void on_progress(coord_t *c, wkr_t *w, const Helium__OpProgress *p) {
    job_task *t = match_task(c, w, p->job_id, p->op_id, p->item, p->task_id, p->attempt);
    if (t && p->text && *p->text) jobs_task_progress(c->jobs, t, p->text, strlen(p->text));
}

static void on_worker_frame(coord_t *c, const uint8_t *ident, size_t ident_len, const uint8_t *data, size_t len) {
    if (!pb_depth_ok(&helium__worker_msg__descriptor, data, len, COORD_MAX_DEPTH)) {
        c->st.bad_worker_frames++;
        clog_msg(CLOG_WARN, "malformed frame (%zu bytes) from a worker dropped", len);
        return;
    }
    Helium__WorkerMsg *m = helium__worker_msg__unpack(NULL, len, data);
    if (!m) {
        c->st.bad_worker_frames++;
        clog_msg(CLOG_WARN, "unparseable frame (%zu bytes) from a worker dropped", len);
        return;
    }
    if (m->protocol_version != HELIUM__PROTOCOL__PROTOCOL_CURRENT) {
        c->st.bad_worker_frames++;
        clog_msg(CLOG_WARN, "worker frame with protocol_version %u dropped", m->protocol_version);
        helium__worker_msg__free_unpacked(m, NULL);
        return;
    }
    if (m->body_case == HELIUM__WORKER_MSG__BODY_REG) {
        on_register(c, ident, ident_len, m->reg);
        helium__worker_msg__free_unpacked(m, NULL);
        return;
    }
    wkr_t *w = wkrs_by_ident(c->wkrs, ident, ident_len);
    if (!w) {
        c->st.unknown_worker_msgs++;
        clog_msg(CLOG_DEBUG, "message %d from an unregistered worker dropped", (int)m->body_case);
        helium__worker_msg__free_unpacked(m, NULL);
        return;
    }
    w->last_seen_ms = clock_mono_ms();
    if (!w->alive) {
        w->alive = true;
        w->seq_known = false;
        clog_msg(CLOG_INFO, "worker %s is back", w->id);
        send_resync(c, w); /* its directory entries were dropped */
        c->dirty = true;
    }
    switch (m->body_case) {
    case HELIUM__WORKER_MSG__BODY_HEARTBEAT:
        wkr_heartbeat(w, m->heartbeat, clock_wall_us());
        if (!w->resync_pending && m->heartbeat->cache_seq > w->cache_seq) {
            clog_msg(CLOG_INFO, "worker %s: heartbeat reports cache seq %" PRIu64 ", applied %" PRIu64 ": resyncing",
                 w->id, m->heartbeat->cache_seq, w->cache_seq);
            send_resync(c, w);
        }
        if (jobs_ready_count(c->jobs)) c->dirty = true;
        break;
    case HELIUM__WORKER_MSG__BODY_CACHE_EVENTS: on_cache_events(c, w, m->cache_events); break;
    case HELIUM__WORKER_MSG__BODY_RESULT: on_result(c, w, m->result); break;
    case HELIUM__WORKER_MSG__BODY_PROGRESS: on_progress(c, w, m->progress); break;
    default: clog_msg(CLOG_DEBUG, "worker %s: message %d ignored", w->id, (int)m->body_case); break;
    }
    helium__worker_msg__free_unpacked(m, NULL);
}

static void check_liveness(coord_t *c) {
    int64_t now = clock_mono_ms();
    for (int i = 0; i < wkrs_cap(c->wkrs); i++) {
        wkr_t *w = wkrs_by_slot(c->wkrs, i);
        if (w && w->alive && now - w->last_seen_ms > c->cfg.worker_timeout_ms) {
            char why[64];
            snprintf(why, sizeof why, "silent for %lld ms", (long long)(now - w->last_seen_ms));
            worker_lost(c, w, why);
        }
    }
}

/* --------------------------------------------------------------- clients */

typedef struct {
    rep_arena *a;
    Helium__JobList *list;
    size_t cap;
} list_ctx;

static void list_one(void *u, job_t *j) {
    list_ctx *lc = u;
    if (lc->list->n_jobs < lc->cap) {
        Helium__JobSummary *s = rep_job_summary(lc->a, j);
        if (s) lc->list->jobs[lc->list->n_jobs++] = s;
    }
}

/* The reply body that says a job was accepted. */
static void reply_accepted(rep_arena *a, Helium__Reply *r, char *job_id, size_t n_ops) {
    r->body_case = HELIUM__REPLY__BODY_ACCEPTED;
    r->accepted = rep_alloc(a, sizeof *r->accepted);
    if (!r->accepted) return;
    helium__job_accepted__init(r->accepted);
    r->accepted->job_id = job_id;
    r->accepted->n_ops = (uint32_t)n_ops;
}

/* Handles SubmitJob. Returns true if the reply is deferred (the client waits
 * for the job's end), false if r is to be sent now. */
static bool do_submit(coord_t *c, const uint8_t *ident, size_t ident_len, bool delim, const Helium__Request *rq,
                      rep_arena *a, Helium__Reply *r) {
    const Helium__SubmitJob *sj = rq->submit;
    if (!sj->workflow) {
        r->error = rep_error(a, HELIUM__ERROR_CODE__ERROR_INVALID, "submit without a workflow", "");
        return false;
    }
    const char *pname = sj->policy && *sj->policy ? sj->policy : sched_policy_name((sched_policy)c->policy);
    int pol = sched_policy_from_name(pname);
    if (pol < 0) {
        char *msg = rep_printf(a, "unknown policy '%.64s' (want " SCHED_POLICY_NAMES ")", pname);
        r->error = rep_error(a, HELIUM__ERROR_CODE__ERROR_INVALID, msg, "");
        return false;
    }
    wf_t *wf = NULL;
    int rc = wfp_from_proto(sj->workflow, &wf);
    if (rc) {
        const char *msg = he_msg();
        r->error = rep_error(a, wfp_error_code(rc), msg, rep_op_from_msg(a, msg));
        clog_msg(CLOG_INFO, "submit rejected: %s", msg);
        return false;
    }
    wf_kv *in = calloc(sj->n_inputs ? sj->n_inputs : 1, sizeof *in);
    if (!in) {
        wf_destroy(&wf);
        r->error = rep_error(a, HELIUM__ERROR_CODE__ERROR_INTERNAL, "out of memory", "");
        return false;
    }
    size_t n = 0;
    for (size_t i = 0; i < sj->n_inputs; i++)
        if (sj->inputs[i]) in[n++] = (wf_kv){sj->inputs[i]->key ? sj->inputs[i]->key : "",
                                             sj->inputs[i]->value ? sj->inputs[i]->value : ""};
    const char *wname = wf->name ? wf->name : "";
    char name[80];
    snprintf(name, sizeof name, "%s", wname);
    size_t n_ops = wf->n_ops;
    job_t *j = NULL;
    opt_prep prep;
    opt_prepare(c->opt, (sched_policy)pol, wf, in, n, &prep);
    rc = jobs_submit_planned(c->jobs, &wf, in, n, pname, sj->client_tag, sj->stream || c->cfg.stream, &prep.plan, &j);
    free(in);
    if (rc) opt_prep_free(&prep);
    else {
        opt_stats(c->opt, (sched_policy)pol)->jobs++;
        opt_arrive(c->opt, j, &prep);
    }
    if (rc) {
        r->error = rep_error(a, rep_code(rc) == HELIUM__ERROR_CODE__ERROR_LIMIT ? HELIUM__ERROR_CODE__ERROR_LIMIT
                                                                             : HELIUM__ERROR_CODE__ERROR_INVALID,
                             he_msg(), "");
        clog_msg(CLOG_INFO, "submit rejected: %s", he_msg());
        return false;
    }
    clog_msg(CLOG_INFO, "%s submitted: workflow '%s', %zu ops, policy %s%s", j->id, name, n_ops, pname,
         sj->wait ? ", client waits" : "");
    c->dirty = true;
    if (sj->wait && !jobs_is_final(j->state)) {
        size_t nw = 0;
        for (waiter *w = j->user; w; w = w->next) nw++;
        waiter *w = nw < COORD_MAX_WAITERS ? calloc(1, sizeof *w) : NULL;
        if (!w) {
            r->error = rep_error(a, HELIUM__ERROR_CODE__ERROR_LIMIT, "too many clients wait on this job; poll it", "");
            reply_accepted(a, r, j->id, n_ops);
            return false;
        }
        memcpy(w->ident, ident, ident_len);
        w->ident_len = ident_len;
        w->delim = delim;
        w->request_id = rq->request_id;
        w->stream = sj->stream;
        w->next = j->user;
        j->user = w;
        return true; /* answered when the job ends */
    }
    if (sj->wait) { /* ended at once */
        r->body_case = HELIUM__REPLY__BODY_JOB;
        r->job = rep_job_status(a, j, true, UINT64_MAX);
        return false;
    }
    reply_accepted(a, r, j->id, n_ops);
    return false;
}

/* The optimizer's counters by name (in_kv: the total is already among the
 * coordinator's own counters under that name). */
static const struct {
    const char *name;
    size_t off;
    bool in_kv;
} opt_fields[] = {
#define OF(f, kv) {#f, offsetof(opt_counters, f), kv}
    OF(jobs, false), OF(llm_tasks, false), OF(dispatched, false), OF(prompt_tokens, true),
    OF(computed_tokens, false), OF(cached_tokens, true), OF(pulled_tokens, true), OF(generated_tokens, true),
    OF(kv_pulls, true), OF(warm_tasks, false), OF(warm_tokens, false), OF(rcache_lookups, false),
    OF(rcache_hits, false), OF(dedup_hits, false), OF(ops_pruned, false), OF(ops_merged, false),
    OF(plan_us, false), OF(pins, false), OF(unpins, false), OF(pin_updates, false), OF(held, false), OF(kv_waits, false),
    OF(min_prompt_tokens, false),
#undef OF
};

/* Sum of the optimizer's counters over the policies. */
static void opt_total(coord_t *c, opt_counters *tot) {
    memset(tot, 0, sizeof *tot);
    for (int p = 0; p < SCHED_N_POLICIES; p++) {
        const opt_counters *oc = opt_stats(c->opt, (sched_policy)p);
        for (size_t i = 0; i < sizeof opt_fields / sizeof *opt_fields; i++)
            *(uint64_t *)((char *)tot + opt_fields[i].off) += *(const uint64_t *)((const char *)oc + opt_fields[i].off);
    }
}

static void do_status(coord_t *c, const Helium__ClusterStatus *cs, rep_arena *a, Helium__Reply *r) {
    Helium__ClusterStatusReply *s = rep_alloc(a, sizeof *s);
    if (!s) return;
    helium__cluster_status_reply__init(s);
    int nw = wkrs_cap(c->wkrs);
    s->workers = rep_alloc(a, (size_t)(nw ? nw : 1) * sizeof *s->workers);
    for (int i = 0; s->workers && i < nw; i++) {
        wkr_t *w = wkrs_by_slot(c->wkrs, i);
        Helium__WorkerInfo *x = w ? rep_worker_info(a, w, cs->counters) : NULL;
        if (x) s->workers[s->n_workers++] = x;
    }
    jobs_counts jc;
    jobs_get_counts(c->jobs, &jc);
    s->queue_depth = (uint32_t)jobs_ready_count(c->jobs);
    s->jobs_queued = (uint32_t)jc.queued;
    s->jobs_running = (uint32_t)jc.running;
    s->jobs_done = jc.done;
    s->jobs_failed = jc.failed;
    s->jobs_canceled = jc.canceled;
    s->directory_blocks = dir_size(c->dir);
    s->policy = (char *)sched_policy_name((sched_policy)c->policy);
    s->uptime_dur_us = clock_wall_us() - c->started_us;
    if (cs->counters) {
        sched_counters sc;
        sched_get_counters(c->sched, &sc);
        struct {
            const char *k;
            uint64_t v;
        } kv[] = {{"jobs_submitted", jc.submitted}, {"prompt_tokens", c->st.prompt_tokens},
                  {"cached_tokens", c->st.cached_tokens}, {"pulled_tokens", c->st.pulled_tokens},
                  {"generated_tokens", c->st.generated_tokens}, {"kv_pulls", c->st.kv_pulls},
                  {"kv_pull_bytes", c->st.kv_pull_bytes}, {"route_decisions", sc.decisions},
                  {"route_affinity", sc.affinity}, {"route_pulls", sc.pulls},
                  {"route_recomputes", sc.recomputes}, {"route_imbalance", sc.imbalanced},
                  {"redispatches", c->st.redispatches}, {"workers_lost", c->st.workers_lost},
                  {"stale_results", c->st.stale_results}, {"cache_resyncs", c->st.resyncs},
                  {"bad_client_frames", c->st.bad_client_frames},
                  {"bad_worker_frames", c->st.bad_worker_frames}, {"tool_calls", c->st.tool_calls},
                  {"tool_errors", c->st.tool_errors}};
        size_t n = sizeof kv / sizeof *kv;
        opt_counters tot;
        opt_total(c, &tot);
        size_t n_opt = sizeof opt_fields / sizeof *opt_fields;
        s->counters = rep_alloc(a, (n + n_opt * (1 + SCHED_N_POLICIES)) * sizeof *s->counters);
        for (size_t i = 0; s->counters && i < n; i++) {
            Helium__ClusterStatusReply__CountersEntry *e = rep_alloc(a, sizeof *e);
            if (!e) break;
            helium__cluster_status_reply__counters_entry__init(e);
            e->key = (char *)kv[i].k;
            e->value = kv[i].v;
            s->counters[s->n_counters++] = e;
        }
        /* the optimizer's counters: totals as NAME (prompt_tokens etc. above
         * are the same totals), per policy as NAME.POLICY */
        for (int p = -1; s->counters && p < SCHED_N_POLICIES; p++) {
            const opt_counters *oc = p < 0 ? &tot : opt_stats(c->opt, (sched_policy)p);
            for (size_t i = 0; i < n_opt; i++) {
                if (p < 0 && opt_fields[i].in_kv) continue;
                Helium__ClusterStatusReply__CountersEntry *e = rep_alloc(a, sizeof *e);
                if (!e) break;
                helium__cluster_status_reply__counters_entry__init(e);
                e->key = p < 0 ? (char *)opt_fields[i].name
                               : rep_printf(a, "%s.%s", opt_fields[i].name, sched_policy_name((sched_policy)p));
                e->value = *(const uint64_t *)((const char *)oc + opt_fields[i].off);
                s->counters[s->n_counters++] = e;
            }
        }
    }
    r->body_case = HELIUM__REPLY__BODY_CLUSTER;
    r->cluster = s;
}

static void on_client_frame(coord_t *c, const uint8_t *ident, size_t ident_len, bool delim, const uint8_t *data,
                            size_t len) {
    c->st.requests++;
    if (!pb_depth_ok(&helium__request__descriptor, data, len, COORD_MAX_DEPTH)) {
        c->st.bad_client_frames++;
        reply_error(c, ident, ident_len, delim, 0, HELIUM__ERROR_CODE__ERROR_PROTOCOL,
                    "malformed Request frame (bad wire format or nesting too deep)", "");
        return;
    }
    Helium__Request *rq = helium__request__unpack(NULL, len, data);
    if (!rq) {
        c->st.bad_client_frames++;
        char msg[96];
        snprintf(msg, sizeof msg, "the frame (%zu bytes) is not a helium.Request", len);
        reply_error(c, ident, ident_len, delim, 0, HELIUM__ERROR_CODE__ERROR_PROTOCOL, msg, "");
        return;
    }
    if (rq->protocol_version != HELIUM__PROTOCOL__PROTOCOL_CURRENT) {
        c->st.bad_client_frames++;
        char msg[96];
        snprintf(msg, sizeof msg, "protocol_version %u is not %d", rq->protocol_version,
                 HELIUM__PROTOCOL__PROTOCOL_CURRENT);
        reply_error(c, ident, ident_len, delim, rq->request_id, HELIUM__ERROR_CODE__ERROR_PROTOCOL, msg, "");
        helium__request__free_unpacked(rq, NULL);
        return;
    }
    rep_arena a = {0};
    Helium__Reply r = HELIUM__REPLY__INIT;
    r.request_id = rq->request_id;
    bool deferred = false;
    switch (rq->body_case) {
    case HELIUM__REQUEST__BODY_SUBMIT: deferred = do_submit(c, ident, ident_len, delim, rq, &a, &r); break;
    case HELIUM__REQUEST__BODY_GET_JOB: {
        job_t *j = jobs_get(c->jobs, rq->get_job->job_id);
        if (!j) {
            r.error = rep_error(&a, HELIUM__ERROR_CODE__ERROR_NOT_FOUND,
                                rep_printf(&a, "no job '%.64s'", rq->get_job->job_id ? rq->get_job->job_id : ""),
                                "");
            break;
        }
        r.body_case = HELIUM__REPLY__BODY_JOB;
        r.job = rep_job_status(&a, j, rq->get_job->outputs, rq->get_job->partial_after);
        break;
    }
    case HELIUM__REQUEST__BODY_LIST_JOBS: {
        size_t limit = rq->list_jobs->limit ? rq->list_jobs->limit : 100;
        if (limit > 1000) limit = 1000;
        Helium__JobList *l = rep_alloc(&a, sizeof *l);
        if (!l) break;
        helium__job_list__init(l);
        l->jobs = rep_alloc(&a, limit * sizeof *l->jobs);
        list_ctx lc = {&a, l, l->jobs ? limit : 0};
        jobs_each_newest(c->jobs, limit, rq->list_jobs->active_only, list_one, &lc);
        r.body_case = HELIUM__REPLY__BODY_JOBS;
        r.jobs = l;
        break;
    }
    case HELIUM__REQUEST__BODY_CANCEL: {
        job_t *j = jobs_get(c->jobs, rq->cancel->job_id);
        if (!j) {
            r.error = rep_error(&a, HELIUM__ERROR_CODE__ERROR_NOT_FOUND,
                                rep_printf(&a, "no job '%.64s'", rq->cancel->job_id ? rq->cancel->job_id : ""), "");
            break;
        }
        if (!jobs_is_final(j->state)) {
            clog_msg(CLOG_INFO, "%s: cancel requested", j->id);
            jobs_cancel(c->jobs, j, "canceled by a client");
        }
        r.body_case = HELIUM__REPLY__BODY_JOB;
        r.job = rep_job_status(&a, j, false, UINT64_MAX);
        break;
    }
    case HELIUM__REQUEST__BODY_STATUS: do_status(c, rq->status, &a, &r); break;
    default:
        r.error = rep_error(&a, HELIUM__ERROR_CODE__ERROR_INVALID, "the request has no body", "");
        break;
    }
    if (a.oom) {
        rep_arena_free(&a);
        reply_error(c, ident, ident_len, delim, rq->request_id, HELIUM__ERROR_CODE__ERROR_INTERNAL,
                    "out of memory building the reply", "");
    } else {
        if (!deferred) send_reply(c, ident, ident_len, delim, &r);
        rep_arena_free(&a);
    }
    helium__request__free_unpacked(rq, NULL);
}

/* Receives one multipart message (at most 4 frames kept; the rest discarded).
 * Returns the number of frames, 0 if none was waiting, -1 on error. */
static int recv_multipart(void *sock, zmq_msg_t *parts, int max, int *total) {
    int n = 0;
    *total = 0;
    for (;;) {
        zmq_msg_t tmp, *m = n < max ? &parts[n] : &tmp;
        zmq_msg_init(m);
        if (zmq_msg_recv(m, sock, *total == 0 ? ZMQ_DONTWAIT : 0) < 0) {
            zmq_msg_close(m);
            if (*total == 0 && zmq_errno() == EAGAIN) return 0;
            for (int i = 0; i < n; i++) zmq_msg_close(&parts[i]);
            return -1;
        }
        (*total)++;
        int more = zmq_msg_more(m);
        if (n < max) n++;
        else zmq_msg_close(m);
        if (!more) return n;
    }
}

static void clients_readable(coord_t *c) {
    for (int k = 0; k < COORD_BATCH; k++) {
        zmq_msg_t p[4];
        int total, n = recv_multipart(c->client, p, 4, &total);
        if (n <= 0) return;
        const uint8_t *ident = zmq_msg_data(&p[0]);
        size_t ident_len = zmq_msg_size(&p[0]);
        if (n == 2) {
            on_client_frame(c, ident, ident_len, false, zmq_msg_data(&p[1]), zmq_msg_size(&p[1]));
        } else if (n == 3 && total == 3 && zmq_msg_size(&p[1]) == 0) {
            on_client_frame(c, ident, ident_len, true, zmq_msg_data(&p[2]), zmq_msg_size(&p[2]));
        } else {
            c->st.bad_client_frames++;
            bool delim = n >= 2 && zmq_msg_size(&p[1]) == 0;
            reply_error(c, ident, ident_len, delim, 0, HELIUM__ERROR_CODE__ERROR_PROTOCOL,
                        "a request is one frame (a packed helium.Request)", "");
        }
        for (int i = 0; i < n; i++) zmq_msg_close(&p[i]);
    }
}

static void workers_readable(coord_t *c) {
    for (int k = 0; k < COORD_BATCH; k++) {
        zmq_msg_t p[3];
        int total, n = recv_multipart(c->wsock, p, 3, &total);
        if (n <= 0) return;
        if (n == 2 && total == 2)
            on_worker_frame(c, zmq_msg_data(&p[0]), zmq_msg_size(&p[0]), zmq_msg_data(&p[1]), zmq_msg_size(&p[1]));
        else {
            c->st.bad_worker_frames++;
            clog_msg(CLOG_WARN, "worker message of %d frames dropped (want one)", total - 1);
        }
        for (int i = 0; i < n; i++) zmq_msg_close(&p[i]);
    }
}

/* ---------------------------------------------------------------- metrics */

static void publish_metrics(coord_t *c) {
    if (!c->metrics) return;
    sbuf b;
    sb_init(&b, 4u << 20);
    jobs_counts jc;
    jobs_get_counts(c->jobs, &jc);
    sched_counters sc;
    sched_get_counters(c->sched, &sc);
    met_head(&b, "helium_jobs", "gauge", "Jobs by state (queued/running now; done/failed/canceled since start).");
    met_value(&b, "helium_jobs", "state=\"queued\"", (double)jc.queued);
    met_value(&b, "helium_jobs", "state=\"running\"", (double)jc.running);
    met_value(&b, "helium_jobs", "state=\"done\"", (double)jc.done);
    met_value(&b, "helium_jobs", "state=\"failed\"", (double)jc.failed);
    met_value(&b, "helium_jobs", "state=\"canceled\"", (double)jc.canceled);
    struct {
        const char *name, *type, *help;
        double v;
    } g[] = {
        {"helium_jobs_submitted_total", "counter", "Jobs accepted.", (double)jc.submitted},
        {"helium_queue_depth", "gauge", "Tasks ready and not yet placed on a worker.",
         (double)jobs_ready_count(c->jobs)},
        {"helium_prompt_tokens_total", "counter", "Prompt tokens of finished LLM tasks.", (double)c->st.prompt_tokens},
        {"helium_cached_tokens_total", "counter", "Prompt tokens served from a worker's KV cache (hit rate = cached/prompt).",
         (double)c->st.cached_tokens},
        {"helium_pulled_tokens_total", "counter", "Prompt tokens whose KV was pulled from a peer.",
         (double)c->st.pulled_tokens},
        {"helium_generated_tokens_total", "counter", "Generated tokens of finished LLM tasks.",
         (double)c->st.generated_tokens},
        {"helium_kv_pulls_total", "counter", "Finished tasks that imported KV pages from a peer.", (double)c->st.kv_pulls},
        {"helium_kv_pull_bytes_total", "counter", "KV bytes pulled between workers.", (double)c->st.kv_pull_bytes},
        {"helium_route_decisions_total", "counter", "LLM tasks placed.", (double)sc.decisions},
        {"helium_route_affinity_total", "counter", "Placements on a worker already holding part of the prefix.",
         (double)sc.affinity},
        {"helium_route_pulls_total", "counter", "Placements that chose a KV pull.", (double)sc.pulls},
        {"helium_route_recomputes_total", "counter", "Placements that chose recompute over a considered pull.",
         (double)sc.recomputes},
        {"helium_route_imbalance_total", "counter", "Placements decided by the load-imbalance guard.",
         (double)sc.imbalanced},
        {"helium_redispatches_total", "counter", "Tasks re-queued after losing their worker.",
         (double)c->st.redispatches},
        {"helium_stale_results_total", "counter", "Results of superseded attempts ignored.", (double)c->st.stale_results},
        {"helium_tool_calls_total", "counter", "Tool HTTP calls started.", (double)c->st.tool_calls},
        {"helium_directory_blocks", "gauge", "Distinct KV blocks in the prefix directory.", (double)dir_size(c->dir)},
        {"helium_workers_alive", "gauge", "Workers alive.", (double)wkrs_alive(c->wkrs)},
    };
    for (size_t i = 0; i < sizeof g / sizeof *g; i++) {
        met_head(&b, g[i].name, g[i].type, g[i].help);
        met_value(&b, g[i].name, "", g[i].v);
    }
    opt_counters tot;
    opt_total(c, &tot);
    {
        char name[96];
        for (size_t i = 0; i < sizeof opt_fields / sizeof *opt_fields; i++) {
            if (opt_fields[i].in_kv) continue;
            snprintf(name, sizeof name, "helium_opt_%s_total", opt_fields[i].name);
            met_head(&b, name, "counter", "Optimizer / policy work counter (see coordinator/opt.h), all policies.");
            met_value(&b, name, "", (double)*(const uint64_t *)((const char *)&tot + opt_fields[i].off));
        }
        for (size_t i = 0; i < sizeof opt_fields / sizeof *opt_fields; i++) {
            snprintf(name, sizeof name, "helium_policy_%s_total", opt_fields[i].name);
            met_head(&b, name, "counter", "Work counter of each scheduling policy (see coordinator/opt.h).");
            for (int p = 0; p < SCHED_N_POLICIES; p++) {
                char l[64] = "";
                met_label(l, sizeof l, "policy", sched_policy_name((sched_policy)p));
                const opt_counters *oc = opt_stats(c->opt, (sched_policy)p);
                met_value(&b, name, l, (double)*(const uint64_t *)((const char *)oc + opt_fields[i].off));
            }
        }
    }
    met_head(&b, "helium_bad_frames_total", "counter", "Malformed frames received, by peer kind.");
    met_value(&b, "helium_bad_frames_total", "peer=\"client\"", (double)c->st.bad_client_frames);
    met_value(&b, "helium_bad_frames_total", "peer=\"worker\"", (double)c->st.bad_worker_frames);
    met_head(&b, "helium_worker_alive", "gauge", "1 if the worker is alive.");
    for (int i = 0; i < wkrs_cap(c->wkrs); i++) {
        wkr_t *w = wkrs_by_slot(c->wkrs, i);
        if (!w) continue;
        char l[160] = "";
        met_label(l, sizeof l, "worker", w->id);
        met_value(&b, "helium_worker_alive", l, w->alive);
    }
    met_head(&b, "helium_worker_load_tokens", "gauge", "Outstanding work dispatched to the worker, in tokens.");
    for (int i = 0; i < wkrs_cap(c->wkrs); i++) {
        wkr_t *w = wkrs_by_slot(c->wkrs, i);
        if (!w) continue;
        char l[160] = "";
        met_label(l, sizeof l, "worker", w->id);
        met_value(&b, "helium_worker_load_tokens", l, (double)w->load_tokens);
    }
    met_head(&b, "helium_worker_kv_blocks", "gauge", "KV blocks of the worker by state (last heartbeat).");
    for (int i = 0; i < wkrs_cap(c->wkrs); i++) {
        wkr_t *w = wkrs_by_slot(c->wkrs, i);
        if (!w) continue;
        static const char *st[] = {"used", "cached", "total"};
        double v[] = {w->kv_used, w->kv_cached, w->kv_blocks_total};
        for (int k = 0; k < 3; k++) {
            char l[200] = "";
            met_label(l, sizeof l, "worker", w->id);
            met_label(l, sizeof l, "state", st[k]);
            met_value(&b, "helium_worker_kv_blocks", l, v[k]);
        }
    }
    met_head(&b, "helium_worker_prefill_tokens_per_second", "gauge", "Measured forward-pass speed of the worker.");
    for (int i = 0; i < wkrs_cap(c->wkrs); i++) {
        wkr_t *w = wkrs_by_slot(c->wkrs, i);
        if (!w) continue;
        char l[160] = "";
        met_label(l, sizeof l, "worker", w->id);
        met_value(&b, "helium_worker_prefill_tokens_per_second", l, w->prefill_tok_s);
    }
    if (b.p) metrics_publish(c->metrics, b.p, b.len);
    sb_free(&b);
}

/* ------------------------------------------------------------- lifecycle */

static void *bind_router(coord_t *c, const char *ep, bool workers) {
    void *s = zmq_socket(c->zctx, ZMQ_ROUTER);
    if (!s) return NULL;
    int zero = 0, one = 1, hwm = 100000;
    int64_t max = COORD_MAX_MSG;
    zmq_setsockopt(s, ZMQ_LINGER, &zero, sizeof zero);
    zmq_setsockopt(s, ZMQ_MAXMSGSIZE, &max, sizeof max);
    zmq_setsockopt(s, ZMQ_SNDHWM, &hwm, sizeof hwm);
    zmq_setsockopt(s, ZMQ_RCVHWM, &hwm, sizeof hwm);
    if (workers) {
        /* know when a worker is not connected; a restarted worker takes over its id */
        zmq_setsockopt(s, ZMQ_ROUTER_MANDATORY, &one, sizeof one);
        zmq_setsockopt(s, ZMQ_ROUTER_HANDOVER, &one, sizeof one);
    }
    if (zmq_bind(s, ep) != 0) {
        he_set(HE_EIO, "cannot bind %s: %s", ep, zmq_strerror(zmq_errno()));
        zmq_close(s);
        return NULL;
    }
    return s;
}

coord_t *coord_new(const coord_config *cfg) {
    coord_t *c = calloc(1, sizeof *c);
    if (!c) {
        he_set(HE_ENOMEM, "out of memory");
        return NULL;
    }
    c->cfg = *cfg;
    if (!c->cfg.listen) c->cfg.listen = "tcp://127.0.0.1:7700";
    if (!c->cfg.workers) c->cfg.workers = "tcp://127.0.0.1:7701";
    if (c->cfg.heartbeat_ms <= 0) c->cfg.heartbeat_ms = 500;
    if (c->cfg.worker_timeout_ms <= 0) c->cfg.worker_timeout_ms = 3000;
    c->policy = sched_policy_from_name(c->cfg.policy ? c->cfg.policy : "router");
    if (c->policy < 0) {
        he_set(HE_EINVAL, "unknown policy '%s' (want " SCHED_POLICY_NAMES ")", c->cfg.policy);
        goto fail;
    }
    if (!c->cfg.model_path) {
        he_set(HE_EINVAL, "no model (--model FILE)");
        goto fail;
    }
    gguf_t *g = NULL;
    int rc = gguf_open(c->cfg.model_path, &g);
    if (rc) goto fail;
    c->tok = tok_new_from_gguf(g);
    gguf_destroy(&g);
    if (!c->tok) goto fail;

    jobs_config jc = {.keep_finished = c->cfg.keep_jobs};
    jobs_hooks hk = {.ctx = c, .task_abort = hook_task_abort, .job_end = hook_job_end,
                     .job_progress = hook_job_progress, .task_new = hook_task_new, .op_done = hook_op_done};
    static const char *const default_hosts[] = {"127.0.0.1", "localhost"};
    const char *const *hosts = c->cfg.n_allow_hosts ? c->cfg.allow_hosts : default_hosts;
    size_t n_hosts = c->cfg.n_allow_hosts ? c->cfg.n_allow_hosts : 2;
    c->jobs = jobs_new(&jc, &hk);
    c->wkrs = wkrs_new();
    c->dir = dir_new();
    c->sched = c->dir && c->wkrs ? sched_new(c->dir, c->wkrs) : NULL;
    if (c->sched) {
        route_config *rc = sched_route_config(c->sched);
        if (c->cfg.imbalance_abs > 0) rc->imbalance_abs = c->cfg.imbalance_abs;
        if (c->cfg.imbalance_rel > 0) rc->imbalance_rel = c->cfg.imbalance_rel;
        sched_set_helium_weights(c->sched, c->cfg.helium_load_weight, c->cfg.helium_starve_tokens);
        if (c->cfg.helium_hold_idle >= 0) sched_set_helium_hold_idle(c->sched, c->cfg.helium_hold_idle != 0);
        if (c->cfg.helium_split >= 0) sched_set_helium_split(c->sched, c->cfg.helium_split != 0);
        if (c->cfg.baseline_pulls >= 0) sched_set_baseline_pulls(c->sched, c->cfg.baseline_pulls != 0);
    }
    c->tools = tools_new(hosts, n_hosts, tool_done, c);
    opt_io io = {.ctx = c, .next_task_id = io_next_task_id, .send_warm = io_send_warm, .send_unpin = io_send_unpin,
                 .send_pin_steps = io_send_pin_steps};
    c->opt = c->sched && c->wkrs && c->jobs ? opt_new(c->tok, c->sched, c->wkrs, c->jobs, &io, 0) : NULL;
    if (c->opt && c->cfg.helium_kv_admit != 0) sched_set_helium_fit(c->sched, helium_fit, c->opt);
    if (!c->jobs || !c->wkrs || !c->dir || !c->sched || !c->tools || !c->opt) {
        he_set(HE_ENOMEM, "cannot create the coordinator's tables");
        goto fail;
    }
    c->zctx = zmq_ctx_new();
    if (!c->zctx) {
        he_set(HE_EIO, "zmq_ctx_new failed");
        goto fail;
    }
    if (!(c->client = bind_router(c, c->cfg.listen, false))) goto fail;
    if (!(c->wsock = bind_router(c, c->cfg.workers, true))) goto fail;
    if (c->cfg.metrics_port > 0 && !(c->metrics = metrics_new(c->cfg.metrics_host, c->cfg.metrics_port))) goto fail;
    c->started_us = clock_wall_us();
    publish_metrics(c);
    clog_msg(CLOG_INFO, "listening: clients %s, workers %s, metrics %s%s%d; policy %s; heartbeat %d ms, timeout %d ms",
         c->cfg.listen, c->cfg.workers, c->metrics ? (c->cfg.metrics_host ? c->cfg.metrics_host : "127.0.0.1") : "off",
         c->metrics ? ":" : "", c->metrics ? c->cfg.metrics_port : 0, sched_policy_name((sched_policy)c->policy),
         c->cfg.heartbeat_ms, c->cfg.worker_timeout_ms);
    return c;
fail:
    coord_destroy(&c);
    return NULL;
}

static void free_waiters_of(void *u, job_t *j) {
    (void)u;
    waiters_free(j);
}

void coord_destroy(coord_t **self_p) {
    if (!self_p || !*self_p) return;
    coord_t *c = *self_p;
    metrics_destroy(&c->metrics); /* first: its thread must stop before anything else goes */
    if (c->jobs) jobs_each_newest(c->jobs, SIZE_MAX, true, free_waiters_of, NULL);
    tools_destroy(&c->tools);
    jobs_destroy(&c->jobs);
    opt_destroy(&c->opt); /* after the jobs: it holds (and never follows) task pointers */
    sched_destroy(&c->sched);
    dir_destroy(&c->dir);
    wkrs_destroy(&c->wkrs);
    tok_destroy(&c->tok);
    if (c->client) zmq_close(c->client);
    if (c->wsock) zmq_close(c->wsock);
    if (c->zctx) zmq_ctx_term(c->zctx);
    free(c->stream_jobs);
    free(c);
    *self_p = NULL;
}

#define COORD_MAX_POLL (2 + 256)

int coord_run(coord_t *c, volatile sig_atomic_t *stop) {
    zmq_pollitem_t items[COORD_MAX_POLL];
    int tick = c->cfg.heartbeat_ms / 2;
    if (tick > 250) tick = 250;
    if (tick < 10) tick = 10;
    c->next_liveness_ms = clock_mono_ms() + tick;
    c->next_metrics_ms = clock_mono_ms() + COORD_METRICS_MS;
    while (!*stop) {
        /* before sleep: warm shared prefixes, release pins nobody needs,
         * place what can run, stream what was generated */
        requeue_orphans(c);
        opt_warm(c->opt);
        opt_sweep(c->opt);
        if (c->dirty && jobs_ready_count(c->jobs)) dispatch_ready(c);
        if (c->n_stream) flush_streams(c);

        int64_t now = clock_mono_ms();
        if (now >= c->next_liveness_ms) {
            check_liveness(c);
            c->next_liveness_ms = now + tick;
            if (c->dirty && jobs_ready_count(c->jobs)) dispatch_ready(c);
        }
        if (now >= c->next_metrics_ms) {
            publish_metrics(c);
            c->next_metrics_ms = now + COORD_METRICS_MS;
        }
        int64_t next = c->next_liveness_ms < c->next_metrics_ms ? c->next_liveness_ms : c->next_metrics_ms;
        long timeout = (long)(next - clock_mono_ms());
        if (timeout < 0) timeout = 0;
        long tt = tools_timeout_ms(c->tools);
        if (tt >= 0 && tt < timeout) timeout = tt;
        if (c->dirty && jobs_ready_count(c->jobs)) timeout = 0; /* something changed while placing */

        items[0] = (zmq_pollitem_t){.socket = c->client, .events = ZMQ_POLLIN};
        items[1] = (zmq_pollitem_t){.socket = c->wsock, .events = ZMQ_POLLIN};
        int nt = tools_poll_items(c->tools, items + 2, COORD_MAX_POLL - 2);
        int rc = zmq_poll(items, 2 + nt, timeout);
        if (rc < 0) {
            if (zmq_errno() == EINTR) continue;
            if (zmq_errno() == ETERM) break;
            clog_msg(CLOG_ERROR, "zmq_poll: %s", zmq_strerror(zmq_errno()));
            return he_set(HE_EIO, "zmq_poll: %s", zmq_strerror(zmq_errno()));
        }
        if (items[1].revents & ZMQ_POLLIN) workers_readable(c);
        if (items[0].revents & ZMQ_POLLIN) clients_readable(c);
        tools_perform(c->tools, items + 2, nt);
    }
    clog_msg(CLOG_INFO, "shutting down");
    return 0;
}
