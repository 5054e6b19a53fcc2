/* worker_proto: see worker_proto.h.
 *
 * A worker's directory entries are trusted only while its cache events
 * arrive in sequence (w->seq_known); until the snapshot a resync asked for
 * arrives (w->resync_pending), incremental events are ignored. A result is
 * matched to its task by job, op, item, task id, attempt and worker; any
 * other (a superseded attempt, a canceled task) is stale and only counted.
 */
#include "worker_proto.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "clock.h"
#include "herr.h"
#include "log.h"
#include "pbcheck.h"
#include "place.h"

static void send_resync(coord_t *c, wkr_t *w) {
    if (c->send.resync(c->send.ctx, w, w->cache_seq) == 0) {
        w->resync_pending = true;
        c->st.resyncs++;
        clog_msg(CLOG_DEBUG, "worker %s: cache resync requested after seq %" PRIu64, w->id, w->cache_seq);
    }
}

void wp_worker_lost(coord_t *c, wkr_t *w, const char *why) {
    size_t n = w->n_inflight;
    if (w->alive) c->st.workers_lost++;
    w->alive = false;
    dir_drop_worker(c->dir, w->slot);
    links_forget(c->links, w->slot);
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
    c->send.register_ack(c->send.ctx, ident, len, &ack);
    c->st.rejected_workers++;
    clog_msg(CLOG_WARN, "worker %s rejected: %s", id, why);
}

void wp_on_register(coord_t *c, const uint8_t *ident, size_t ident_len, const Helium__Register *reg) {
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
            if (w->n_inflight) wp_worker_lost(c, w, "re-registered");
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
    c->send.register_ack(c->send.ctx, w->ident, w->ident_len, &ack);
    clog_msg(CLOG_INFO, "worker %s registered: model '%s', %s, %u KV blocks x %u tokens, n_ctx %u, data %s", w->id,
         w->model, w->backend, w->kv_blocks_total, w->block_size, w->n_ctx, *w->endpoint ? w->endpoint : "-");
    c->dirty = true;
}

void wp_on_cache_events(coord_t *c, wkr_t *w, const Helium__CacheEvents *ce) {
    if (ce->snapshot) {
        dir_drop_worker(c->dir, w->slot);
        for (size_t i = 0; i < ce->n_stored; i++) dir_add(c->dir, ce->stored[i], w->slot);
        w->cache_seq = ce->seq;
        w->cache_gen++;
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
    w->cache_gen++;
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

/* A result that is not used (a superseded attempt's, a failed one's) still
 * stands for prompt tokens the worker computed, and those KV blocks may serve
 * later calls through the directory: count them with the job's policy, so
 * that computed_tokens is the cluster's whole prefill work (without this a
 * run with lost workers could report fewer computed tokens than the least
 * the batch needs). Counted apart too, as lost_computed_tokens. */
static void count_lost_work(coord_t *c, const Helium__OpResult *r) {
    if (!r->computed_tokens) return;
    c->st.lost_computed_tokens += r->computed_tokens;
    job_t *j = r->job_id ? jobs_get(c->jobs, r->job_id) : NULL;
    if (j) opt_stats(c->opt, (sched_policy)j->pol)->computed_tokens += r->computed_tokens;
}

void wp_on_result(coord_t *c, wkr_t *w, const Helium__OpResult *r) {
    bool ok = !r->error || r->error->code == HELIUM__ERROR_CODE__ERROR_OK;
    if (opt_warm_result(c->opt, w, r->task_id, ok, r->computed_tokens, r->cached_tokens, r->pulled_tokens)) {
        clog_msg(CLOG_DEBUG, "worker %s: warm task %" PRIu64 " %s: %u prompt tokens, %u computed", w->id,
                 r->task_id, ok ? "done" : "failed", r->prompt_tokens, r->computed_tokens);
        c->dirty = true;
        return;
    }
    job_task *t = match_task(c, w, r->job_id, r->op_id, r->item, r->task_id, r->attempt);
    if (!t || !ok) count_lost_work(c, r);
    if (!t) {
        c->st.stale_results++;
        clog_msg(CLOG_DEBUG, "worker %s: stale result for %s/%s item %u attempt %u (task %" PRIu64 ") ignored", w->id,
             r->job_id ? r->job_id : "", r->op_id ? r->op_id : "", r->item, r->attempt, r->task_id);
        return;
    }
    place_task_release(c, w, t);
    c->dirty = true;
    /* the pair's link model learns from every pull it made */
    if (r->pull_bytes > 0 && r->pull_us > 0 && t->pull_src >= 0 && t->pull_src != w->slot)
        links_observe(c->links, t->pull_src, w->slot, r->pull_xport, (double)r->pull_bytes, (double)r->pull_us / 1e6);
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
        place_fail_task(c, t, code, full);
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

void wp_on_progress(coord_t *c, wkr_t *w, const Helium__OpProgress *p) {
    job_task *t = match_task(c, w, p->job_id, p->op_id, p->item, p->task_id, p->attempt);
    if (t && p->text && *p->text) jobs_task_progress(c->jobs, t, p->text, strlen(p->text));
}

void wp_on_frame(coord_t *c, const uint8_t *ident, size_t ident_len, const uint8_t *data, size_t len) {
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
        wp_on_register(c, ident, ident_len, m->reg);
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
        if (wkr_counter_get(w, "leaving")) { /* drained (or out of time): what it still holds goes elsewhere */
            wp_worker_lost(c, w, "left after draining");
            break;
        }
        if ((wkr_counter_get(w, "draining") != 0) != w->draining) {
            w->draining = !w->draining;
            clog_msg(CLOG_INFO, "worker %s %s", w->id,
                     w->draining ? "is draining: nothing more is placed on it" : "takes work again");
            c->dirty = true;
        }
        if (!w->resync_pending && m->heartbeat->cache_seq > w->cache_seq) {
            clog_msg(CLOG_INFO, "worker %s: heartbeat reports cache seq %" PRIu64 ", applied %" PRIu64 ": resyncing",
                 w->id, m->heartbeat->cache_seq, w->cache_seq);
            send_resync(c, w);
        }
        if (jobs_ready_count(c->jobs)) c->dirty = true;
        break;
    case HELIUM__WORKER_MSG__BODY_CACHE_EVENTS: wp_on_cache_events(c, w, m->cache_events); break;
    case HELIUM__WORKER_MSG__BODY_RESULT: wp_on_result(c, w, m->result); break;
    case HELIUM__WORKER_MSG__BODY_PROGRESS: wp_on_progress(c, w, m->progress); break;
    default: clog_msg(CLOG_DEBUG, "worker %s: message %d ignored", w->id, (int)m->body_case); break;
    }
    helium__worker_msg__free_unpacked(m, NULL);
}

void wp_check_liveness(coord_t *c) {
    int64_t now = clock_mono_ms();
    for (int i = 0; i < wkrs_cap(c->wkrs); i++) {
        wkr_t *w = wkrs_by_slot(c->wkrs, i);
        if (w && w->alive && now - w->last_seen_ms > c->cfg.worker_timeout_ms) {
            char why[64];
            snprintf(why, sizeof why, "silent for %lld ms", (long long)(now - w->last_seen_ms));
            wp_worker_lost(c, w, why);
        }
    }
}
