/* coord: see coord.h. The loop, the lifecycle, frame sending and the jobs
 * hooks; the protocols, placement and the metrics page are in the files
 * coord_impl.h lists.
 *
 * Policies (per job, SubmitJob.policy): placement is sched.h's
 * (sched_decide); the rest is the optimizer's (opt.h): isolated dispatches
 * with no_cache; kvflow and helium keep their pending calls in the
 * optimizer's prefix trees (hooks task_new / op_done / job_end) and pin
 * shared prefixes on dispatch; helium also plans at submit (pruning,
 * merging), answers deterministic calls from the result cache or attaches
 * them to an identical call in flight, warms shared prefixes before sleep,
 * places its ready calls in the prefix tree's order first, and holds a call
 * whose placement counts on prefix blocks still being computed until they
 * are cached.
 */
#include "coord.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zmq.h>

#include "client_proto.h"
#include "clock.h"
#include "coord_impl.h"
#include "gguf.h"
#include "herr.h"
#include "log.h"
#include "place.h"
#include "reply.h"
#include "worker_proto.h"

/* --------------------------------------------------------------- sending */

int coord_send_frames(void *sock, const void *ident, size_t ident_len, bool delim, const void *data, size_t len) {
    if (zmq_send(sock, ident, ident_len, ZMQ_SNDMORE | ZMQ_DONTWAIT) < 0) return -1;
    if (delim && zmq_send(sock, "", 0, ZMQ_SNDMORE | ZMQ_DONTWAIT) < 0) return -1;
    return zmq_send(sock, data, len, ZMQ_DONTWAIT) < 0 ? -1 : 0;
}

void coord_send_reply(coord_t *c, const void *ident, size_t ident_len, bool delim, Helium__Reply *r) {
    uint8_t *buf;
    size_t len;
    if (rep_pack(r, &buf, &len)) {
        clog_msg(CLOG_ERROR, "cannot pack a reply: %s", he_msg());
        return;
    }
    if (jrec_holding(c->jrec)) /* an ack leaves once what it acknowledges is durable */
        jrec_hold_reply(c->jrec, c->client, ident, ident_len, delim, buf, len);
    else if (coord_send_frames(c->client, ident, ident_len, delim, buf, len))
        clog_msg(CLOG_DEBUG, "reply to a client dropped: %s", zmq_strerror(zmq_errno()));
    free(buf);
}

void coord_reply_error(coord_t *c, const void *ident, size_t ident_len, bool delim, uint64_t request_id,
                       Helium__ErrorCode code, const char *msg, const char *op_id) {
    rep_arena a = {0};
    Helium__Reply r = HELIUM__REPLY__INIT;
    r.request_id = request_id;
    r.error = rep_error(&a, code, msg, op_id);
    coord_send_reply(c, ident, ident_len, delim, &r);
    rep_arena_free(&a);
}

/* ---------------------------------- wsend_i over the worker ROUTER socket */

/* Sends msg to the peer ident. Returns 0, WSEND_GONE if it is not connected
 * (EHOSTUNREACH), WSEND_FULL if it could not be queued otherwise. */
static int zsend(coord_t *c, const uint8_t *ident, size_t ident_len, const char *who, Helium__CoordMsg *msg) {
    msg->protocol_version = HELIUM__PROTOCOL__PROTOCOL_CURRENT;
    size_t n = helium__coord_msg__get_packed_size(msg);
    uint8_t *buf = malloc(n ? n : 1);
    if (!buf) return WSEND_FULL;
    helium__coord_msg__pack(msg, buf);
    int rc = coord_send_frames(c->wsock, ident, ident_len, false, buf, n);
    int err = zmq_errno();
    free(buf);
    if (rc) {
        clog_msg(CLOG_DEBUG, "send to worker %s failed: %s", who, zmq_strerror(err));
        return err == EHOSTUNREACH ? WSEND_GONE : WSEND_FULL;
    }
    return 0;
}

static int zs_dispatch(void *ctx, wkr_t *w, const Helium__Dispatch *d) {
    Helium__CoordMsg m = HELIUM__COORD_MSG__INIT;
    m.body_case = HELIUM__COORD_MSG__BODY_DISPATCH;
    m.dispatch = (Helium__Dispatch *)d;
    return zsend(ctx, w->ident, w->ident_len, w->id, &m);
}

static void zs_cancel(void *ctx, wkr_t *w, uint64_t task_id, const char *job_id) {
    Helium__Cancel cn = HELIUM__CANCEL__INIT;
    cn.task_id = task_id;
    cn.job_id = (char *)job_id;
    Helium__CoordMsg m = HELIUM__COORD_MSG__INIT;
    m.body_case = HELIUM__COORD_MSG__BODY_CANCEL;
    m.cancel = &cn;
    zsend(ctx, w->ident, w->ident_len, w->id, &m);
}

static void zs_pin_steps(void *ctx, wkr_t *w, const char *tag, uint32_t steps) {
    Helium__PinSteps p = HELIUM__PIN_STEPS__INIT;
    p.tag = (char *)tag;
    p.steps = steps;
    Helium__CoordMsg m = HELIUM__COORD_MSG__INIT;
    m.body_case = HELIUM__COORD_MSG__BODY_PIN_STEPS;
    m.pin_steps = &p;
    zsend(ctx, w->ident, w->ident_len, w->id, &m);
}

static void zs_unpin(void *ctx, wkr_t *w, const char *tag) {
    Helium__Unpin u = HELIUM__UNPIN__INIT;
    u.tag = (char *)tag;
    Helium__CoordMsg m = HELIUM__COORD_MSG__INIT;
    m.body_case = HELIUM__COORD_MSG__BODY_UNPIN;
    m.unpin = &u;
    zsend(ctx, w->ident, w->ident_len, w->id, &m);
}

static int zs_resync(void *ctx, wkr_t *w, uint64_t last_seq) {
    Helium__CacheResync rs = HELIUM__CACHE_RESYNC__INIT;
    rs.last_seq = last_seq;
    Helium__CoordMsg m = HELIUM__COORD_MSG__INIT;
    m.body_case = HELIUM__COORD_MSG__BODY_RESYNC;
    m.resync = &rs;
    return zsend(ctx, w->ident, w->ident_len, w->id, &m);
}

static void zs_register_ack(void *ctx, const uint8_t *ident, size_t ident_len, const Helium__RegisterAck *ack) {
    Helium__CoordMsg m = HELIUM__COORD_MSG__INIT;
    m.body_case = HELIUM__COORD_MSG__BODY_REGISTER_ACK;
    m.register_ack = (Helium__RegisterAck *)ack;
    zsend(ctx, ident, ident_len, ack->worker_id ? ack->worker_id : "?", &m);
}

/* ------------------------------------------------------------- jobs hooks */

static void hook_task_abort(void *ctx, job_task *t) { place_task_abort(ctx, t); }
static void hook_task_new(void *ctx, job_task *t) { place_task_new(ctx, t); }
static void hook_job_progress(void *ctx, job_t *j) { cp_job_progress(ctx, j); }
static void hook_job_new(void *ctx, job_t *j) { jrec_job_new(((coord_t *)ctx)->jrec, j); }
static void hook_task_end(void *ctx, const job_task *t, const job_result *r, Helium__ErrorCode code,
                          const char *msg) {
    jrec_task_end(((coord_t *)ctx)->jrec, t, r, code, msg);
}

static void hook_op_done(void *ctx, job_t *j, int i) {
    coord_t *c = ctx;
    opt_op_done(c->opt, j, i);
}

static void hook_job_end(void *ctx, job_t *j) {
    coord_t *c = ctx;
    opt_job_end(c->opt, j);
    uint64_t ms = (j->finished_us - j->submitted_us) / 1000;
    double sec = (double)(j->finished_us - j->submitted_us) / 1e6;
    c->st.job_seconds[met_bucket(met_job_bounds, MET_JOB_BUCKETS, sec)]++;
    c->st.job_seconds_sum += sec;
    if (j->state == HELIUM__JOB_STATE__JOB_DONE)
        clog_msg(CLOG_INFO, "%s done in %" PRIu64 " ms", j->id, ms);
    else if (j->state == HELIUM__JOB_STATE__JOB_FAILED)
        clog_msg(CLOG_INFO, "%s failed after %" PRIu64 " ms: %s (op %s)", j->id, ms, j->err_msg ? j->err_msg : "",
                 j->err_op ? j->err_op : "-");
    else
        clog_msg(CLOG_INFO, "%s canceled after %" PRIu64 " ms", j->id, ms);
    jrec_job_end(c->jrec, j);
    cp_job_end(c, j);
    c->dirty = true;
    c->next_metrics_ms = clock_mono_ms(); /* publish the new counts at the next turn */
}

/* A parked job started: its plan goes to the optimizer now. */
static void hook_job_start(void *ctx, job_t *j) {
    coord_t *c = ctx;
    opt_prep *prep = j->park;
    j->park = NULL;
    if (prep) {
        opt_arrive(c->opt, j, prep);
        free(prep);
    }
}

static void hook_park_free(void *ctx, job_t *j) {
    (void)ctx;
    opt_prep *prep = j->park;
    j->park = NULL;
    if (prep) {
        opt_prep_free(prep);
        free(prep);
    }
}

void coord_job_arrive(coord_t *c, job_t *j, opt_prep *prep) {
    if (!j->parked) {
        opt_arrive(c->opt, j, prep);
        return;
    }
    opt_prep *keep = malloc(sizeof *keep);
    if (!keep) { /* the plan is only an optimization: the job runs without its prefixes known ahead */
        opt_prep_free(prep);
        return;
    }
    *keep = *prep;
    j->park = keep;
}

void coord_admit(coord_t *c) {
    long n = c->cfg.max_active_jobs;
    if (n < 0) {
        n = (long)COORD_ACTIVE_PER_WORKER * wkrs_alive(c->wkrs);
        if (n < COORD_ACTIVE_MIN) n = COORD_ACTIVE_MIN;
    }
    jobs_set_max_active(c->jobs, (size_t)n);
    jobs_unpark(c->jobs); /* the feed rule's room comes with calls ending */
}

/* The feed rule (jobs hooks.may_start), for policies that feed jobs
 * (sched_feeds_jobs). Jobs submitted together (each within
 * COORD_BATCH_GAP_US of the job started before it) start as the window
 * allows: a batch is run for throughput. A job that arrives on its own
 * starts only while the calls ready or running number fewer than
 * helium_feed per live worker: under live traffic the jobs of a burst then
 * start one after another as the earlier ones leave room, instead of all at
 * once sharing every step (which makes the burst's first job wait for its
 * last). */
static bool hook_may_start(void *ctx, const job_t *j) {
    coord_t *c = ctx;
    if (!sched_feeds_jobs((sched_policy)j->pol) || c->cfg.helium_feed == 0) return true;
    uint64_t prev = c->feed_prev_us;
    bool batch = c->feed_any && j->submitted_us >= prev && j->submitted_us - prev <= COORD_BATCH_GAP_US;
    if (!batch) {
        long per = c->cfg.helium_feed < 0 ? COORD_FEED_PER_WORKER : c->cfg.helium_feed;
        size_t busy = jobs_ready_count(c->jobs);
        int alive = 0;
        for (int i = 0; i < wkrs_cap(c->wkrs); i++) {
            const wkr_t *w = wkrs_by_slot(c->wkrs, i);
            if (!w || !w->alive) continue;
            alive++;
            busy += w->n_inflight;
        }
        if (busy >= (size_t)per * (size_t)(alive > 0 ? alive : 1)) return false;
    }
    c->feed_any = true; /* j starts now (jobs.c has_room) */
    c->feed_prev_us = j->submitted_us;
    return true;
}

static bool helium_fit(void *ctx, const wkr_t *w, const uint64_t *hashes, int32_t nb, int32_t pages) {
    return opt_ws_fits(ctx, w, hashes, nb, pages);
}

/* -------------------------------------------------------------- receiving */

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
            cp_on_frame(c, ident, ident_len, false, zmq_msg_data(&p[1]), zmq_msg_size(&p[1]));
        } else if (n == 3 && total == 3 && zmq_msg_size(&p[1]) == 0) {
            cp_on_frame(c, ident, ident_len, true, zmq_msg_data(&p[2]), zmq_msg_size(&p[2]));
        } else {
            c->st.bad_client_frames++;
            bool delim = n >= 2 && zmq_msg_size(&p[1]) == 0;
            coord_reply_error(c, ident, ident_len, delim, 0, HELIUM__ERROR_CODE__ERROR_PROTOCOL,
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
            wp_on_frame(c, zmq_msg_data(&p[0]), zmq_msg_size(&p[0]), zmq_msg_data(&p[1]), zmq_msg_size(&p[1]));
        else {
            c->st.bad_worker_frames++;
            clog_msg(CLOG_WARN, "worker message of %d frames dropped (want one)", total - 1);
        }
        for (int i = 0; i < n; i++) zmq_msg_close(&p[i]);
    }
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
    if (c->zauth && (zauth_set_server(s, &c->keys) || zauth_watch(c->zauth, s))) {
        zmq_close(s);
        return NULL;
    }
    if (zmq_bind(s, ep) != 0) {
        he_set(HE_EIO, "cannot bind %s: %s", ep, zmq_strerror(zmq_errno()));
        zmq_close(s);
        return NULL;
    }
    return s;
}

coord_t *coord_core_new(const coord_config *cfg, const wsend_i *send) {
    coord_t *c = calloc(1, sizeof *c);
    if (!c) {
        he_set(HE_ENOMEM, "out of memory");
        return NULL;
    }
    c->cfg = *cfg;
    c->send = *send;
    if (!c->send.ctx) c->send.ctx = c;
    if (!c->cfg.listen) c->cfg.listen = "tcp://127.0.0.1:7700";
    if (!c->cfg.workers) c->cfg.workers = "tcp://127.0.0.1:7701";
    if (c->cfg.heartbeat_ms <= 0) c->cfg.heartbeat_ms = 500;
    if (c->cfg.worker_timeout_ms <= 0) c->cfg.worker_timeout_ms = 3000;
    c->policy = sched_policy_from_name(c->cfg.policy ? c->cfg.policy : "helium");
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
    if (c->tok) { /* no template of its own is fine until a `messages` op comes (render.h) */
        rc = chat_new(g, c->tok, c->cfg.chat_template, &c->chat);
        if (rc == HE_ENOTFOUND && !c->cfg.chat_template) rc = 0;
        if (rc) tok_destroy(&c->tok);
    }
    gguf_destroy(&g);
    if (!c->tok) goto fail;

    jobs_config jc = {.keep_finished = c->cfg.keep_jobs, .chat = c->chat, .submit_clock = c->cfg.submit_clock,
                      .submit_clock_ctx = c->cfg.submit_clock_ctx};
    jobs_hooks hk = {.ctx = c, .task_abort = hook_task_abort, .job_end = hook_job_end,
                     .job_progress = hook_job_progress, .task_new = hook_task_new, .op_done = hook_op_done,
                     .job_new = hook_job_new, .task_end = hook_task_end, .job_start = hook_job_start,
                     .park_free = hook_park_free, .may_start = hook_may_start};
    static const char *const default_hosts[] = {"127.0.0.1", "localhost"};
    const char *const *hosts = c->cfg.n_allow_hosts ? c->cfg.allow_hosts : default_hosts;
    size_t n_hosts = c->cfg.n_allow_hosts ? c->cfg.n_allow_hosts : 2;
    c->jobs = jobs_new(&jc, &hk);
    c->wkrs = wkrs_new();
    c->dir = dir_new();
    c->links = links_new();
    c->sched = c->dir && c->wkrs ? sched_new(c->dir, c->wkrs) : NULL;
    if (c->sched) {
        route_config *rc = sched_route_config(c->sched);
        rc->pair_time = links_time; /* each pair's fitted link, once it has pulls */
        rc->pair_ctx = c->links;
        if (c->cfg.imbalance_abs > 0) rc->imbalance_abs = c->cfg.imbalance_abs;
        if (c->cfg.imbalance_rel > 0) rc->imbalance_rel = c->cfg.imbalance_rel;
        sched_set_helium_weights(c->sched, c->cfg.helium_load_weight, c->cfg.helium_starve_tokens);
        if (c->cfg.helium_hold_idle >= 0) sched_set_helium_hold_idle(c->sched, c->cfg.helium_hold_idle != 0);
        if (c->cfg.helium_split >= 0) sched_set_helium_split(c->sched, c->cfg.helium_split != 0);
        if (c->cfg.baseline_pulls >= 0) sched_set_baseline_pulls(c->sched, c->cfg.baseline_pulls != 0);
    }
    c->tools = tools_new(hosts, n_hosts, place_tool_done, c);
    opt_io io = place_opt_io(c);
    c->opt = c->sched && c->wkrs && c->jobs ? opt_new(c->tok, c->sched, c->wkrs, c->jobs, &io, 0) : NULL;
    if (c->opt && c->cfg.helium_kv_admit != 0) sched_set_helium_fit(c->sched, helium_fit, c->opt);
    if (!c->jobs || !c->wkrs || !c->dir || !c->links || !c->sched || !c->tools || !c->opt) {
        he_set(HE_ENOMEM, "cannot create the coordinator's tables");
        goto fail;
    }
    c->started_us = clock_wall_us();
    return c;
fail:
    coord_destroy(&c);
    return NULL;
}

/* Reads the coordinator's key and the authorized keys and binds the ZAP
 * handler. 0 or a herr code. */
static int start_auth(coord_t *c) {
    if (!c->cfg.key_file || !c->cfg.authorized_keys)
        return he_set(HE_EINVAL, "CURVE needs --key FILE and --authorized-keys FILE (or --insecure)");
    int rc = zauth_read_secret(c->cfg.key_file, &c->keys);
    if (rc) return rc;
    if (!(c->zauth = zauth_new(c->zctx, "coord"))) return HE_EIO;
    rc = zauth_load(c->zauth, c->cfg.authorized_keys);
    if (rc < 0) return rc;
    clog_msg(CLOG_INFO, "CURVE on: public key %s, %d authorized key(s) from %s", c->keys.pub, rc,
             c->cfg.authorized_keys);
    return 0;
}

/* SIGHUP: the authorized keys again (a bad file keeps the current set). */
static void reload_auth(coord_t *c) {
    if (!c->zauth) return;
    int rc = zauth_load(c->zauth, c->cfg.authorized_keys);
    if (rc < 0) clog_msg(CLOG_ERROR, "authorized keys not reloaded (the previous %zu stay): %s", zauth_n_keys(c->zauth),
                         he_msg());
    else clog_msg(CLOG_INFO, "authorized keys reloaded: %d key(s) from %s", rc, c->cfg.authorized_keys);
}

coord_t *coord_new(const coord_config *cfg) {
    wsend_i zs = {.ctx = NULL, .dispatch = zs_dispatch, .cancel = zs_cancel, .pin_steps = zs_pin_steps,
                  .unpin = zs_unpin, .resync = zs_resync, .register_ack = zs_register_ack};
    coord_t *c = coord_core_new(cfg, &zs);
    if (!c) return NULL;
    c->zctx = zmq_ctx_new();
    if (!c->zctx) {
        he_set(HE_EIO, "zmq_ctx_new failed");
        goto fail;
    }
    if (!c->cfg.insecure && start_auth(c)) goto fail; /* the ZAP handler, before any CURVE socket */
    if (c->cfg.insecure)
        clog_msg(CLOG_WARN, "--insecure: no CURVE; whoever reaches %s or %s may submit jobs or register as a worker",
                 c->cfg.listen, c->cfg.workers);
    if (!(c->client = bind_router(c, c->cfg.listen, false))) goto fail;
    if (!(c->wsock = bind_router(c, c->cfg.workers, true))) goto fail;
    if (c->cfg.metrics_port > 0 && !(c->metrics = metrics_new(c->cfg.metrics_host, c->cfg.metrics_port))) goto fail;
    if (c->cfg.journal_dir) {
        /* replay before the first client or worker is read; task ids start
         * past any a previous run could have given workers still running */
        jrec_config jc = {.dir = c->cfg.journal_dir, .mode = (jnl_fsync)c->cfg.journal_fsync,
                          .compact_bytes = c->cfg.journal_compact_bytes};
        if (jrec_open(c, &jc, &c->jrec)) goto fail;
        c->next_task_id = clock_wall_us();
    }
    met_publish_coord(c);
    clog_msg(CLOG_INFO, "listening: clients %s, workers %s, metrics %s%s%d; policy %s; heartbeat %d ms, timeout %d ms",
         c->cfg.listen, c->cfg.workers, c->metrics ? (c->cfg.metrics_host ? c->cfg.metrics_host : "127.0.0.1") : "off",
         c->metrics ? ":" : "", c->metrics ? c->cfg.metrics_port : 0, sched_policy_name((sched_policy)c->policy),
         c->cfg.heartbeat_ms, c->cfg.worker_timeout_ms);
    return c;
fail:
    coord_destroy(&c);
    return NULL;
}

static void free_waiters_of(void *u, job_t *j) { cp_waiters_free(u, j); }

void coord_destroy(coord_t **self_p) {
    if (!self_p || !*self_p) return;
    coord_t *c = *self_p;
    metrics_destroy(&c->metrics); /* first: its thread must stop before anything else goes */
    if (c->jobs) jobs_each_newest(c->jobs, SIZE_MAX, true, free_waiters_of, c);
    tools_destroy(&c->tools);
    jrec_destroy(&c->jrec); /* before the jobs: replies it holds go nowhere now */
    jobs_destroy(&c->jobs);
    opt_destroy(&c->opt); /* after the jobs: it holds (and never follows) task pointers */
    sched_destroy(&c->sched);
    links_destroy(&c->links);
    dir_destroy(&c->dir);
    wkrs_destroy(&c->wkrs);
    tok_destroy(&c->tok);
    chat_destroy(&c->chat);
    if (c->client) zmq_close(c->client);
    if (c->wsock) zmq_close(c->wsock);
    zauth_destroy(&c->zauth); /* after the sockets it watches */
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
        if (c->cfg.reload_keys && *c->cfg.reload_keys) {
            *c->cfg.reload_keys = 0;
            reload_auth(c);
        }
        /* before sleep: warm shared prefixes, release pins nobody needs,
         * place what can run, stream what was generated */
        coord_admit(c);
        place_requeue_orphans(c);
        opt_warm(c->opt);
        opt_sweep(c->opt);
        if (c->dirty && jobs_ready_count(c->jobs)) place_dispatch_ready(c);
        if (c->n_stream) cp_flush_streams(c);
        if (c->jrec && jrec_before_sleep(c->jrec, c)) /* sync, then release the acks it held */
            return he_set(HE_EIO, "the journal failed: %s", he_msg());

        int64_t now = clock_mono_ms();
        if (now >= c->next_liveness_ms) {
            wp_check_liveness(c);
            c->next_liveness_ms = now + tick;
            if (c->dirty && jobs_ready_count(c->jobs)) place_dispatch_ready(c);
        }
        if (now >= c->next_metrics_ms) {
            met_publish_coord(c);
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
    metrics_set_ready(c->metrics, false, "stopping");
    clog_msg(CLOG_INFO, "shutting down");
    return 0;
}
