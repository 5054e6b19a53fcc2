/* place: see place.h.
 *
 * A task in flight on a worker is in that worker's in-flight set and its
 * prompt blocks are pending on it (sched_pending_add) until it ends; a tool
 * task holds its tool_call in t->runner. A helium follower of an identical
 * call in flight is "started" with no worker and t->opt pointing at the
 * dedup entry; the leader's result completes it (worker_proto.c).
 *
 * Waiting calls are remembered (t->wait): a ready call whose placement
 * waited is placed again only once something its verdict reads has moved.
 * No free pages anywhere (SCHED_WAIT): any dispatch, or any worker's state,
 * in-flight set, cache events, free KV or load, or the pins (room_sig, one
 * O(workers) signature per walk). No room in any worker's working set
 * (helium's SCHED_WAIT_KV with no worker named): only a working set that
 * shrank (a call left the worker, or a pin shrank: a dispatch only grows
 * working sets) can take it, so it is checked against those workers alone
 * (c->pl.shrunk, a log appended once per walk), and placed again when one
 * fits or the workers changed. Held (SCHED_HOLD): the pages it waits for
 * cached on their worker (the directory shows the run), a call leaving
 * that worker (the pending pages may be gone with it), or the workers
 * changing. Every PLACE_MEMO_PASSES walks a remembered call is
 * placed again anyway (link-rate and load drifts the signatures leave out).
 * Without it each walk re-placed every waiting call over every worker: at
 * 128 simulated workers, ~670 placements per dispatch.
 */
#include "place.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "clock.h"
#include "herr.h"
#include "log.h"
#include "reply.h"
#include "werr.h"
#include "worker_proto.h"

/* START_CHANGED: the task completed at once (result cache): other queued
 * tasks may have gone, the walk restarts. */
typedef enum { START_OK, START_WAIT, START_FAILED, START_CHANGED } start_rc;

/* ------------------------------------------------------- waiting calls */

enum { WAIT_NONE = 0, WAIT_ROOM, WAIT_KV, WAIT_HOLD };
#define PLACE_MEMO_PASSES 1024

static uint64_t mix(uint64_t h, uint64_t v) {
    h ^= v + 0x9e3779b97f4a7c15ULL;
    h *= 0xbf58476d1ce4e5b9ULL;
    return h ^ (h >> 31);
}

/* what a call held for w's pages waits on */
static uint64_t slot_sig(const wkr_t *w) {
    uint64_t h = mix(w->registered_us, (uint64_t)w->alive | (uint64_t)w->draining << 1);
    return mix(mix(h, w->cache_seq), w->inflight_gen);
}

/* The walk's signatures (c->pl): every worker's room, and the worker set. */
static void pass_begin(coord_t *c) {
    uint64_t room = opt_pins_gen(c->opt), set = 0;
    for (int i = 0; i < wkrs_cap(c->wkrs); i++) {
        const wkr_t *w = wkrs_by_slot(c->wkrs, i);
        if (!w) continue;
        set = mix(mix(set, (uint64_t)i), mix(w->registered_us, (uint64_t)w->alive | (uint64_t)w->draining << 1));
        if (i < DIR_MAX_WORKERS) {
            uint64_t sh = mix(w->inflight_removed, opt_pins_shrink_slot(c->opt, i));
            if (sh != c->pl.slot_shrink[i]) {
                c->pl.slot_shrink[i] = sh;
                c->pl.shrunk[c->pl.n_shrunk++ % PLACE_SHRUNK_LOG].slot = i;
            }
        }
        room = mix(room, slot_sig(w));
        room = mix(room, (uint64_t)w->kv_free << 32 ^ (uint32_t)w->reserved_pages);
        room = mix(room, (uint64_t)w->load_tokens);
    }
    c->pl.room_sig = room;
    c->pl.workers_sig = set;
}

static uint64_t room_now(const coord_t *c) { return mix(c->pl.room_sig, c->pl.commits); }

static void remember(coord_t *c, job_task *t, const sched_choice *ch, sched_verdict v, int slot, int32_t pages) {
    wkr_t *w = slot >= 0 ? wkrs_by_slot(c->wkrs, slot) : NULL;
    if (v == SCHED_HOLD && w && t->hashes && ch && ch->wait_run > 0) {
        t->wait.kind = WAIT_HOLD;
        t->wait.slot = slot;
        t->wait.pages = ch->wait_run < t->n_hashes ? ch->wait_run : t->n_hashes;
        t->wait.slot_gen = w->inflight_removed;
        t->wait.cache_gen = w->cache_gen;
        t->wait.gen = c->pl.workers_sig;
    } else if (v == SCHED_WAIT_KV && slot < 0 && t->hashes) {
        t->wait.kind = WAIT_KV;
        t->wait.slot = -1;
        t->wait.pages = pages;
        t->wait.gen = c->pl.workers_sig;
        t->wait.slot_gen = c->pl.n_shrunk; /* the log read so far */
    } else {
        t->wait.kind = WAIT_ROOM;
        t->wait.slot = -1;
        t->wait.gen = room_now(c);
    }
    t->wait.pass = c->pl.passes;
}

/* A call that fit no worker's working set: still none, if none of the
 * workers whose working set shrank since it was last checked fits it now
 * (the others only grew). Moves its read position in the log. */
static bool kv_still_waits(coord_t *c, job_task *t) {
    if (t->wait.gen != c->pl.workers_sig || c->pl.n_shrunk - t->wait.slot_gen > PLACE_SHRUNK_LOG) return false;
    for (uint64_t e = t->wait.slot_gen; e < c->pl.n_shrunk; e++) {
        const wkr_t *w = wkrs_by_slot(c->wkrs, c->pl.shrunk[e % PLACE_SHRUNK_LOG].slot);
        if (w && w->alive && opt_ws_fits(c->opt, w, t->hashes, t->n_hashes, t->wait.pages)) return false;
    }
    t->wait.slot_gen = c->pl.n_shrunk;
    return true;
}

/* True if nothing t's last wait depended on has moved (skip placing it). */
static bool still_waits(coord_t *c, job_task *t) {
    if (t->wait.kind == WAIT_NONE || c->pl.passes - t->wait.pass >= PLACE_MEMO_PASSES) return false;
    if (t->wait.kind == WAIT_ROOM) return t->wait.gen == room_now(c);
    if (t->wait.kind == WAIT_KV) return kv_still_waits(c, t);
    const wkr_t *w = wkrs_by_slot(c->wkrs, t->wait.slot);
    if (t->wait.gen != c->pl.workers_sig || !w || w->inflight_removed != t->wait.slot_gen) return false;
    if (w->cache_gen == t->wait.cache_gen) return true; /* its cache did not move: the run is as short */
    if (sched_real_run(c->sched, t->wait.slot, t->hashes, t->wait.pages) >= t->wait.pages) return false;
    t->wait.cache_gen = w->cache_gen;
    return true;
}

void place_fail_task(coord_t *c, job_task *t, Helium__ErrorCode code, const char *msg) {
    clog_msg(CLOG_INFO, "%s: op %s fails: %s", t->job->id, t->job->wf->ops[t->op]->id, msg);
    jobs_task_fail(c->jobs, t, code, msg);
}

static start_rc fail_task(coord_t *c, job_task *t, Helium__ErrorCode code, const char *msg) {
    place_fail_task(c, t, code, msg);
    return START_FAILED;
}

void place_task_release(coord_t *c, wkr_t *w, job_task *t) {
    wkr_inflight_remove(w, t);
    sched_pending_remove(c->sched, w->slot, t->hashes, t->n_hashes);
    opt_task_gone(c->opt, t);
}

static void fill_pull(Helium__KvPullHint *pull, const sched_choice *ch) {
    pull->source_worker = ch->pull_from->id;
    pull->source_endpoint = ch->pull_from->endpoint;
    pull->source_key = ch->pull_from->data_key;
    /* the puller asks for the transport only if both ends share it */
    const char *xp = wkr_xport_shared(ch->pull_from, ch->worker);
    pull->source_xport = (char *)(xp ? xp : "");
    pull->first_block = (uint32_t)ch->pull_first;
    pull->n_hashes = (size_t)ch->pull_blocks;
    pull->hashes = (uint64_t *)ch->hashes + ch->pull_first;
}

/* ------------------------------------------------ the optimizer's sending */

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
        fill_pull(&pull, ch);
        d.pull = &pull;
    }
    return c->send.dispatch(c->send.ctx, w, &d) ? -1 : 0;
}

static void io_send_pin_steps(void *ctx, wkr_t *w, const char *tag, uint32_t steps) {
    coord_t *c = ctx;
    c->send.pin_steps(c->send.ctx, w, tag, steps);
}

static void io_send_unpin(void *ctx, wkr_t *w, const char *tag) {
    coord_t *c = ctx;
    c->send.unpin(c->send.ctx, w, tag);
}

opt_io place_opt_io(coord_t *c) {
    return (opt_io){.ctx = c, .next_task_id = io_next_task_id, .send_warm = io_send_warm,
                    .send_unpin = io_send_unpin, .send_pin_steps = io_send_pin_steps};
}

/* ------------------------------------------------------------ jobs hooks */

static int tokenize(coord_t *c, job_task *t);

void place_task_abort(coord_t *c, job_task *t) {
    opt_dd_drop(c->opt, t); /* a dedup follower leaves; a leader's followers will run themselves */
    opt_task_gone(c->opt, t);
    if (t->kind == JT_TOOL && t->runner) {
        tools_abort(c->tools, t->runner);
        t->runner = NULL;
    }
    if (t->worker >= 0) {
        wkr_t *w = wkrs_by_slot(c->wkrs, t->worker);
        if (w) {
            place_task_release(c, w, t);
            if (w->alive) c->send.cancel(c->send.ctx, w, t->task_id, t->job->id);
        }
        t->worker = -1;
    }
}

void place_task_new(coord_t *c, job_task *t) {
    if (t->kind != JT_LLM || !opt_tracks((sched_policy)t->job->pol)) return;
    if (!t->ids && tokenize(c, t)) return; /* start_llm reports it */
    opt_task_new(c->opt, t);
}

/* ------------------------------------------------------------ tool calls */

void place_tool_done(void *ctx, void *user, Helium__ErrorCode code, const char *body, size_t len) {
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

/* ------------------------------------------------------------- LLM calls */

static int tokenize(coord_t *c, job_task *t) {
    int cap = (int)(t->text_len / 2 + 16);
    int32_t *ids = malloc((size_t)cap * sizeof *ids);
    if (!ids) return he_set(HE_ENOMEM, "out of memory");
    /* control-token text is parsed unless the op says its text is untrusted */
    const bool special = !t->job->wf->ops[t->op]->llm.no_special;
    int n = tok_encode_prompt(c->tok, t->text, t->text_len, special, ids, cap);
    if (n > cap) {
        int32_t *v = realloc(ids, (size_t)n * sizeof *v);
        if (!v) {
            free(ids);
            return he_set(HE_ENOMEM, "out of memory");
        }
        ids = v;
        n = tok_encode_prompt(c->tok, t->text, t->text_len, special, ids, n);
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

/* Answers t from the result cache or attaches it to an identical call in
 * flight (policies with opt_reuses). Returns START_CHANGED / START_OK if so,
 * START_WAIT if t must be dispatched (then *lead says whether it leads a new
 * dedup entry under *key). */
static start_rc try_reuse(coord_t *c, job_task *t, bool *lead, rcache_key *key) {
    *lead = false;
    rcache_call call;
    if (opt_dd_leads(t) || !c->have_model || !opt_call_of(c->opt, t, &call)) return START_WAIT;
    opt_counters *st = opt_stats(c->opt, (sched_policy)t->job->pol);
    if (!t->have_rkey) {
        rcache_key k = rcache_key_of(&call);
        t->rkey_lo = k.lo;
        t->rkey_hi = k.hi;
        t->have_rkey = true;
    }
    *key = (rcache_key){t->rkey_lo, t->rkey_hi};
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

/* The Dispatch of t on its chosen worker; pointers into t, op, ch and the
 * caller's pin tag, valid for one send. */
typedef struct {
    Helium__Sampling smp;
    Helium__KvPullHint pull;
    Helium__Dispatch d;
} dispatch_msg;

static void build_dispatch(coord_t *c, const job_task *t, const sched_choice *ch, uint64_t task_id, int32_t want,
                           char *tag, dispatch_msg *m) {
    const wf_op *op = t->job->wf->ops[t->op];
    sched_policy policy = (sched_policy)t->job->pol;
    m->smp = (Helium__Sampling)HELIUM__SAMPLING__INIT;
    m->pull = (Helium__KvPullHint)HELIUM__KV_PULL_HINT__INIT;
    m->d = (Helium__Dispatch)HELIUM__DISPATCH__INIT;
    m->smp.temperature = op->llm.sampling.temperature;
    m->smp.top_k = op->llm.sampling.top_k;
    m->smp.top_p = op->llm.sampling.top_p;
    m->smp.seed = t->seed;
    Helium__Dispatch *d = &m->d;
    d->task_id = task_id;
    d->job_id = t->job->id;
    d->op_id = op->id;
    d->attempt = t->attempt + 1;
    d->item = t->item;
    d->round = t->round;
    d->n_prompt_ids = (size_t)t->n_ids;
    d->prompt_ids = t->ids;
    d->sampling = &m->smp;
    d->max_tokens = op->llm.max_tokens;
    d->n_stop = op->llm.n_stop;
    d->stop = op->llm.stop;
    d->stream = t->job->stream || c->cfg.stream;
    d->no_cache = !sched_shares_cache(policy);
    if (want > 0) {
        d->n_pin = (size_t)want;
        d->pin = (uint64_t *)ch->hashes;
        d->pin_tag = tag;
        d->pin_steps = opt_pin_steps(c->opt, t);
    }
    if (ch->pull_from) {
        fill_pull(&m->pull, ch);
        d->pull = &m->pull;
    }
}

/* The policy's verdict on t: START_OK with *ch to dispatch, else what to
 * return (wait, or failed). */
static start_rc decide(coord_t *c, job_task *t, sched_choice *ch) {
    const wf_op *op = t->job->wf->ops[t->op];
    opt_counters *st = opt_stats(c->opt, (sched_policy)t->job->pol);
    sched_verdict v;
    int rc = sched_decide_h(c->sched, (sched_policy)t->job->pol, t->ids, t->n_ids, t->hashes, t->n_hashes,
                            op->llm.max_tokens, ch, &v);
    if (rc == HE_EUNAVAIL) {
        remember(c, t, NULL, SCHED_WAIT, -1, 0);
        return START_WAIT;
    }
    if (rc) {
        char msg[512];
        snprintf(msg, sizeof msg, "%s", he_msg());
        return fail_task(c, t, werr_code(rc), msg);
    }
    if (v != SCHED_GO) remember(c, t, ch, v, ch->wait_slot, ch->pages);
    switch (v) {
    case SCHED_GO: return START_OK;
    case SCHED_WAIT: return START_WAIT;
    case SCHED_WAIT_KV:
        if (!t->kv_held) st->kv_waits++;
        t->kv_held = true;
        return START_WAIT;
    case SCHED_HOLD:
        if (!t->held) st->held++;
        t->held = true;
        if (ch->split)
            clog_msg(CLOG_DEBUG, "%s: op %s waits to pull its prefix to a lighter worker than %s (split)",
                     t->job->id, op->id, ch->worker->id);
        return START_WAIT;
    }
    return START_WAIT;
}

/* Records a sent dispatch of t on w (the task's state, pending blocks,
 * pins, dedup lead, counters). START_WAIT if it cannot be tracked (then it
 * was taken back). */
static start_rc commit_dispatch(coord_t *c, job_task *t, wkr_t *w, const sched_choice *ch, uint64_t task_id,
                                int32_t want, const char *tag, bool lead, rcache_key key) {
    const wf_op *op = t->job->wf->ops[t->op];
    sched_policy policy = (sched_policy)t->job->pol;
    bool track = opt_tracks(policy);
    c->next_task_id = task_id;
    c->pl.commits++;
    t->load_tokens = ch->load_tokens;
    t->decode_tokens = op->llm.max_tokens;
    t->pull_src = ch->pull_from ? ch->pull_from->slot : -1;
    t->pages = ch->pages;
    t->reserve_pages = ch->reserve_pages;
    t->prog_run = 0;
    if (!t->hashes && ch->n_hashes > 0 && (t->hashes = malloc((size_t)ch->n_hashes * sizeof *t->hashes))) {
        memcpy(t->hashes, ch->hashes, (size_t)ch->n_hashes * sizeof *t->hashes);
        t->n_hashes = ch->n_hashes;
    }
    jobs_task_start(c->jobs, t, w->slot, w->id, task_id);
    if (wkr_inflight_add(w, t)) {
        /* cannot track it: take it back */
        c->send.cancel(c->send.ctx, w, t->task_id, t->job->id);
        jobs_task_requeue(c->jobs, t);
        if (track) opt_call_back(c->opt, t);
        return START_WAIT;
    }
    /* a task that shares no cache publishes no blocks: it brings the worker nothing */
    if (sched_shares_cache(policy)) sched_pending_add(c->sched, w->slot, t->hashes, t->n_hashes);
    if (track) opt_pin_commit(c->opt, t, w->slot, t->hashes, t->n_hashes, want, tag);
    if (lead) opt_dd_lead(c->opt, key, t);
    opt_count_prompt(c->opt, t);
    sched_count(c->sched, ch);
    opt_stats(c->opt, policy)->dispatched++;
    clog_msg(CLOG_DEBUG, "%s: op %s item %u attempt %u -> %s (task %" PRIu64 ", %d tokens%s%s%s)", t->job->id, op->id,
             t->item, t->attempt, w->id, task_id, t->n_ids, ch->pull_from ? ", with pull" : "",
             want > 0 ? ", pins " : "", want > 0 ? tag : "");
    return START_OK;
}

static start_rc start_llm(coord_t *c, job_task *t) {
    if (!t->ids) {
        int rc = tokenize(c, t);
        if (rc) {
            char msg[512];
            snprintf(msg, sizeof msg, "cannot tokenize the prompt: %s", he_msg());
            return fail_task(c, t, werr_code(rc), msg);
        }
    }
    /* its block hashes, once (a waiting call is placed many times) */
    if (!t->hashes && c->have_model && sched_hashes(c->sched, t->ids, t->n_ids, &t->hashes, &t->n_hashes))
        return START_WAIT;
    t->wait.kind = WAIT_NONE;
    sched_policy policy = (sched_policy)t->job->pol;
    bool lead = false;
    rcache_key key = {0, 0};
    if (opt_reuses(policy)) {
        start_rc r = try_reuse(c, t, &lead, &key);
        if (r != START_WAIT) return r;
    }
    sched_choice ch;
    start_rc r = decide(c, t, &ch);
    if (r != START_OK) return r;
    wkr_t *w = ch.worker;
    bool track = opt_tracks(policy);
    char tag[OPT_TAG_LEN] = "";
    int32_t want = 0;
    if (track) {
        opt_call_gone(c->opt, t);
        want = opt_pin_want(c->opt, t, w->slot, ch.hashes, ch.n_hashes, tag);
    }
    uint64_t task_id = c->next_task_id + 1;
    dispatch_msg m;
    build_dispatch(c, t, &ch, task_id, want, tag, &m);
    int sent = c->send.dispatch(c->send.ctx, w, &m.d);
    if (sent && track) opt_call_back(c->opt, t);
    if (sent == WSEND_GONE) { /* not connected: it is gone */
        wp_worker_lost(c, w, "disconnected");
        return START_FAILED; /* re-walk the queue: tasks came back */
    }
    if (sent) return START_WAIT; /* its queue is full */
    return commit_dispatch(c, t, w, &ch, task_id, want, tag, lead, key);
}

/* --------------------------------------------------------------- the walk */

void place_requeue_orphans(coord_t *c) {
    for (job_task *f; (f = opt_dd_pop_orphan(c->opt));) {
        jobs_task_requeue(c->jobs, f);
        opt_call_back(c->opt, f);
        c->dirty = true;
    }
}

/* Helium's ready calls in the prefix tree's order, in two passes: first each
 * group's leader (a call sharing less than half its static prefix with the
 * call before it in the tree's order), so groups of siblings spread over the
 * workers by load; then the rest, which follow their leader's prefix. Stops
 * at the first failure or completion (the FIFO walk goes on). */
static void dispatch_in_tree_order(coord_t *c) {
    const ptree_slot *sl;
    int n = opt_order(c->opt, &sl);
    if (n <= 0) return;
    ptree_slot *order = malloc((size_t)n * sizeof *order);
    if (!order) return;
    memcpy(order, sl, (size_t)n * sizeof *order);
    for (int pass = 0; pass < 2; pass++) {
        for (int k = 0; k < n; k++) {
            bool leader = k == 0 || 2 * (int64_t)order[k].shared_prev < (int64_t)order[k].prefix_len;
            if (leader != (pass == 0)) continue;
            job_task *t = jobs_task_of(c->jobs, order[k].job, order[k].op, order[k].item);
            if (!t || !t->queued || t->kind != JT_LLM) continue;
            if (still_waits(c, t)) {
                c->pl.skipped++;
                continue;
            }
            c->pl.again[t->wait.kind & 3]++;
            start_rc rc = start_llm(c, t);
            if (rc == START_FAILED || rc == START_CHANGED) {
                c->pl.commits++;
                free(order);
                return;
            }
        }
    }
    free(order);
}

void place_dispatch_ready(coord_t *c) {
    c->dirty = false;
    place_requeue_orphans(c);
    c->pl.passes++;
    pass_begin(c);
    dispatch_in_tree_order(c);
    bool again = true;
    while (again) {
        again = false;
        job_task *next;
        for (job_task *t = jobs_ready_first(c->jobs); t; t = next) {
            next = jobs_ready_next(t);
            if (t->kind == JT_LLM) {
                if (still_waits(c, t)) {
                    c->pl.skipped++;
                    continue;
                }
                c->pl.again[t->wait.kind & 3]++;
            }
            start_rc rc = t->kind == JT_TOOL ? start_tool(c, t) : start_llm(c, t);
            if (rc == START_FAILED || rc == START_CHANGED) {
                c->pl.commits++;
                pass_begin(c); /* workers may have gone: the walk starts over */
                again = true;
                break;
            }
        }
    }
}
