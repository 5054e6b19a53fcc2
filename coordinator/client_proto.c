/* client_proto: see client_proto.h.
 *
 * Replies are built in an arena (reply.h) and packed at once; strings owned
 * by jobs and workers are borrowed, so nothing built here outlives the turn.
 */
#include "client_proto.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "clock.h"
#include "herr.h"
#include "log.h"
#include "pbcheck.h"
#include "render.h"
#include "reply.h"
#include "werr.h"
#include "wf_proto.h"

typedef struct waiter {
    uint8_t ident[256];
    size_t ident_len;
    bool delim;                     /* REQ-style client: echo an empty delimiter frame */
    uint64_t request_id;
    bool stream;                    /* send partial JobStatus replies (more = true) */
    uint64_t seq_sent;              /* last partial seq sent */
    struct waiter *next;
} waiter;

void cp_waiters_free(coord_t *c, job_t *j) {
    waiter *w = j->user;
    while (w) {
        waiter *n = w->next;
        free(w);
        c->n_waiters--;
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
    coord_send_reply(c, w->ident, w->ident_len, w->delim, &r);
    rep_arena_free(&a);
}

/* Sends pending partial output to streaming waiters (before sleep). */
void cp_flush_streams(coord_t *c) {
    for (size_t k = 0; k < c->n_stream; k++) {
        job_t *j = c->stream_jobs[k];
        for (waiter *w = j->user; w; w = w->next)
            if (w->stream && j->n_chunks && j->chunks[j->n_chunks - 1].seq > w->seq_sent) answer_waiter(c, j, w, false);
    }
    c->n_stream = 0;
}

void cp_job_end(coord_t *c, job_t *j) {
    for (size_t k = 0; k < c->n_stream; k++) /* no more streaming for it */
        if (c->stream_jobs[k] == j) c->stream_jobs[k--] = c->stream_jobs[--c->n_stream];
    for (waiter *w = j->user; w; w = w->next) answer_waiter(c, j, w, true);
    cp_waiters_free(c, j);
}

void cp_job_progress(coord_t *c, job_t *j) {
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

/* Handles SubmitJob. Fills r, the reply to send now: JobAccepted, or with
 * wait JobAccepted with more = true (the client is then a waiter, pushed its
 * partial and final JobStatus), or the final JobStatus of a job that ended
 * at once. */
static void do_submit(coord_t *c, const uint8_t *ident, size_t ident_len, bool delim, const Helium__Request *rq,
                      rep_arena *a, Helium__Reply *r) {
    const Helium__SubmitJob *sj = rq->submit;
    if (!sj->workflow) {
        r->error = rep_error(a, HELIUM__ERROR_CODE__ERROR_INVALID, "submit without a workflow", "");
        return;
    }
    const char *pname = sj->policy && *sj->policy ? sj->policy : sched_policy_name((sched_policy)c->policy);
    int pol = sched_policy_from_name(pname);
    if (pol < 0) {
        char *msg = rep_printf(a, "unknown policy '%.64s' (want " SCHED_POLICY_NAMES ")", pname);
        r->error = rep_error(a, HELIUM__ERROR_CODE__ERROR_INVALID, msg, "");
        return;
    }
    wf_t *wf = NULL;
    int rc = wfp_from_proto(sj->workflow, &wf);
    if (!rc && (rc = rnd_chat_lower(c->chat, wf))) wf_destroy(&wf); /* messages -> the planner's prompt */
    if (rc) {
        const char *msg = he_msg();
        r->error = rep_error(a, werr_code(rc), msg, he_op());
        clog_msg(CLOG_INFO, "submit rejected: %s", msg);
        return;
    }
    wf_kv *in = calloc(sj->n_inputs ? sj->n_inputs : 1, sizeof *in);
    if (!in) {
        wf_destroy(&wf);
        r->error = rep_error(a, HELIUM__ERROR_CODE__ERROR_INTERNAL, "out of memory", "");
        return;
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
        coord_job_arrive(c, j, &prep);
    }
    if (rc) {
        r->error = rep_error(a, werr_code(rc) == HELIUM__ERROR_CODE__ERROR_LIMIT ? HELIUM__ERROR_CODE__ERROR_LIMIT
                                                                             : HELIUM__ERROR_CODE__ERROR_INVALID,
                             he_msg(), "");
        clog_msg(CLOG_INFO, "submit rejected: %s", he_msg());
        return;
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
            return;
        }
        memcpy(w->ident, ident, ident_len);
        w->ident_len = ident_len;
        w->delim = delim;
        w->request_id = rq->request_id;
        w->stream = sj->stream;
        w->next = j->user;
        j->user = w;
        c->n_waiters++;
        c->st.waits++;
        /* accepted now (more: the job's status follows, pushed as it
         * streams and when it ends) */
        reply_accepted(a, r, j->id, n_ops);
        r->more = true;
        return;
    }
    if (sj->wait) { /* ended at once */
        r->body_case = HELIUM__REPLY__BODY_JOB;
        r->job = rep_job_status(a, j, true, UINT64_MAX);
        return;
    }
    reply_accepted(a, r, j->id, n_ops);
}

/* ClusterStatus: workers, job counts and (counters) the coordinator's,
 * scheduler's and optimizer's counters (totals, and per policy as NAME.POLICY). */
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
        zauth_counts za = zauth_stats(c->zauth); /* all 0 when insecure */
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
                  {"stale_results", c->st.stale_results},
                  {"lost_computed_tokens", c->st.lost_computed_tokens}, {"cache_resyncs", c->st.resyncs},
                  {"bad_client_frames", c->st.bad_client_frames},
                  {"bad_worker_frames", c->st.bad_worker_frames}, {"tool_calls", c->st.tool_calls},
                  {"tool_errors", c->st.tool_errors}, {"client_requests", c->st.requests},
                  {"job_waits", c->st.waits}, {"job_waiters", c->n_waiters},
                  {"auth_allowed", za.allowed}, {"auth_refused_unknown_key", za.unknown_key},
                  {"auth_refused_mechanism", za.mechanism}, {"auth_refused_crypto", za.crypto},
                  {"auth_refused_protocol", za.protocol}};
        size_t n = sizeof kv / sizeof *kv;
        opt_counters tot;
        met_opt_total(c->opt, &tot);
        size_t n_opt = MET_N_OPT_FIELDS;
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
                if (p < 0 && met_opt_fields[i].in_kv) continue;
                Helium__ClusterStatusReply__CountersEntry *e = rep_alloc(a, sizeof *e);
                if (!e) break;
                helium__cluster_status_reply__counters_entry__init(e);
                e->key = p < 0 ? (char *)met_opt_fields[i].name
                               : rep_printf(a, "%s.%s", met_opt_fields[i].name, sched_policy_name((sched_policy)p));
                e->value = *(const uint64_t *)((const char *)oc + met_opt_fields[i].off);
                s->counters[s->n_counters++] = e;
            }
        }
    }
    r->body_case = HELIUM__REPLY__BODY_CLUSTER;
    r->cluster = s;
}

void cp_on_frame(coord_t *c, const uint8_t *ident, size_t ident_len, bool delim, const uint8_t *data,
                            size_t len) {
    c->st.requests++;
    if (!pb_depth_ok(&helium__request__descriptor, data, len, COORD_MAX_DEPTH)) {
        c->st.bad_client_frames++;
        coord_reply_error(c, ident, ident_len, delim, 0, HELIUM__ERROR_CODE__ERROR_PROTOCOL,
                    "malformed Request frame (bad wire format or nesting too deep)", "");
        return;
    }
    Helium__Request *rq = helium__request__unpack(NULL, len, data);
    if (!rq) {
        c->st.bad_client_frames++;
        char msg[96];
        snprintf(msg, sizeof msg, "the frame (%zu bytes) is not a helium.Request", len);
        coord_reply_error(c, ident, ident_len, delim, 0, HELIUM__ERROR_CODE__ERROR_PROTOCOL, msg, "");
        return;
    }
    if (rq->protocol_version != HELIUM__PROTOCOL__PROTOCOL_CURRENT) {
        c->st.bad_client_frames++;
        char msg[96];
        snprintf(msg, sizeof msg, "protocol_version %u is not %d", rq->protocol_version,
                 HELIUM__PROTOCOL__PROTOCOL_CURRENT);
        coord_reply_error(c, ident, ident_len, delim, rq->request_id, HELIUM__ERROR_CODE__ERROR_PROTOCOL, msg, "");
        helium__request__free_unpacked(rq, NULL);
        return;
    }
    rep_arena a = {0};
    Helium__Reply r = HELIUM__REPLY__INIT;
    r.request_id = rq->request_id;
    switch (rq->body_case) {
    case HELIUM__REQUEST__BODY_SUBMIT: do_submit(c, ident, ident_len, delim, rq, &a, &r); break;
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
        coord_reply_error(c, ident, ident_len, delim, rq->request_id, HELIUM__ERROR_CODE__ERROR_INTERNAL,
                    "out of memory building the reply", "");
    } else {
        coord_send_reply(c, ident, ident_len, delim, &r);
        rep_arena_free(&a);
    }
    helium__request__free_unpacked(rq, NULL);
}
