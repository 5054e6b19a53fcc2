/* sim_worker: one simulated Helium worker (see sim.h).
 *
 * It mirrors what the real worker does with a Dispatch, in simulated time:
 *   - KV blocks: a pool of kv_blocks blocks of block_size tokens; a full
 *     block's KV is committed under its chained hash (blockhash.h, from the
 *     cluster root) and stays cached at ref 0 in LRU order; pinned idle
 *     blocks (Dispatch.pin under a tag, Unpin, PinSteps) go last, the one
 *     needed furthest ahead first (worker/kvcache.h's order). Every commit
 *     and eviction is a CacheEvents message, so the coordinator's directory
 *     mirrors this cache exactly as with a real worker.
 *   - The engine (worker/engine.c): admission with prefix match, the wait
 *     for a page another sequence is computing, headroom; each step takes
 *     decode rows first, then prefill chunks FIFO within batch_tokens;
 *     preemption of the youngest sequence when pages run out. A step lasts
 *     what the cost model says for its tokens, attended pairs and rows.
 *   - Pulls (Dispatch.pull): the leading hinted blocks the source holds are
 *     copied in after pull_fixed + bytes * pull_byte, then the call queues.
 *     A call whose prefix a sibling's pull in flight is bringing waits for
 *     that pull to end (worker/net/pull.c pull_bringing), then queues
 *     without a pull of its own.
 *   - Outputs: every call generates max_tokens tokens (the random-weight
 *     bench models never stop early: the real runs' generated_tokens equal
 *     the sum of max_tokens), token k being a fixed function of the prompt's
 *     ids and k (sim_out_token), decoded to text with the model's tokenizer.
 * Invariants: a block is in exactly one of free list, in use (ref > 0), LRU
 * (committed, ref 0, unpinned) or pinned-idle; the hash table holds exactly
 * the committed blocks; events are flushed before an eviction so that a
 * block stored and evicted in one batch is never reported stored last.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "blockhash.h"
#include "sim_worker_impl.h"
#include "tokenizer.h"

/* ------------------------------------------------------------- sequences */

static void seq_free(seq_t *s) {
    if (!s) return;
    free(s->job_id);
    free(s->op_id);
    free(s->toks);
    free(s->bt);
    free(s->hashes);
    free(s->pin);
    free(s->pin_tag);
    free(s->pull);
    free(s);
}

static bool caches(const seq_t *s) { return !s->no_cache; }

/* Releases s's blocks, last first (a prefix's tail is evicted before its head). */
static void seq_release(sim_worker *w, seq_t *s) {
    for (int32_t i = s->n_bt - 1; i >= 0; i--) simkv_unref(w, s->bt[i]);
    s->n_bt = s->n_hashed = 0;
    s->n_kv = 0;
}

static int32_t match_prefix(sim_worker *w, seq_t *s) {
    if (!caches(s)) return 0;
    int32_t bs = w->g.block_size, nfull = (s->n_tok - 1) / bs;
    if (nfull > s->n_phash) nfull = s->n_phash;
    if (nfull <= 0) return 0;
    int32_t k = 0;
    w->lookups += (uint64_t)nfull;
    for (; k < nfull; k++) {
        int32_t b = simkv_find(w, s->hashes[k]);
        if (b < 0) break;
        simkv_ref(w, b);
        s->bt[k] = b;
    }
    w->hits += (uint64_t)k;
    s->n_bt = s->n_hashed = k;
    s->n_kv = k * bs;
    return k * bs;
}

static bool next_page_in_flight(const sim_worker *w, const seq_t *s, int32_t k) {
    if (!caches(s) || k >= s->n_phash || (k + 1) * w->g.block_size > s->n_tok - 1) return false;
    uint64_t h = s->hashes[k];
    for (int32_t i = 0; i < w->n_run; i++) {
        const seq_t *r = w->run[i];
        if (!caches(r)) continue;
        for (int32_t j = r->n_hashed; j < r->n_phash; j++)
            if (r->hashes[j] == h) return true;
    }
    return false;
}

static void wait_push_head(sim_worker *w, seq_t *s) {
    s->next = w->wait_head;
    w->wait_head = s;
    if (!w->wait_tail) w->wait_tail = s;
}

static void wait_push(sim_worker *w, seq_t *s) {
    s->next = NULL;
    if (w->wait_tail) w->wait_tail->next = s;
    else w->wait_head = s;
    w->wait_tail = s;
}

static void admit(sim_worker *w) {
    seq_t *prev = NULL, *s = w->wait_head;
    int32_t bs = w->g.block_size;
    while (s && w->n_run < w->g.max_seqs) {
        seq_t *next = s->next;
        int32_t cached = match_prefix(w, s);
        if (next_page_in_flight(w, s, cached / bs)) {
            seq_release(w, s);
            prev = s;
            s = next;
            continue;
        }
        int32_t need = (s->n_tok + bs - 1) / bs - s->n_bt;
        if (simkv_available(w) < need + w->n_run && w->n_run > 0) {
            seq_release(w, s);
            break;
        }
        if (prev) prev->next = next;
        else w->wait_head = next;
        if (w->wait_tail == s) w->wait_tail = prev;
        s->next = NULL;
        if (!s->admitted_once) {
            s->cached = cached;
            s->admitted_once = true;
        }
        s->admit_seq = w->admit_counter++;
        w->run[w->n_run++] = s;
        s = next;
    }
}

static void run_remove_at(sim_worker *w, int32_t i) {
    memmove(w->run + i, w->run + i + 1, sizeof *w->run * (size_t)(w->n_run - i - 1));
    w->n_run--;
}

/* Pages for s up to position upto, preempting the youngest running sequence
 * not in this batch when none is left. *idx is s's run index (kept valid).
 * Returns 0, or -1 when nothing can be freed. */
static int ensure_pages(sim_worker *w, seq_t *s, int32_t upto, int32_t *idx) {
    int32_t want = (upto + w->g.block_size - 1) / w->g.block_size;
    while (s->n_bt < want) {
        int32_t b = simkv_alloc(w);
        if (b >= 0) {
            s->bt[s->n_bt++] = b;
            continue;
        }
        int32_t victim = -1;
        for (int32_t i = w->n_run - 1; i >= 0; i--) {
            seq_t *v = w->run[i];
            if (v == s || v->take > 0) continue;
            if (victim < 0 || v->admit_seq > w->run[victim]->admit_seq) victim = i;
        }
        if (victim < 0) return -1;
        seq_t *v = w->run[victim];
        seq_release(w, v);
        run_remove_at(w, victim);
        if (victim < *idx) (*idx)--;
        wait_push_head(w, v);
    }
    return 0;
}

static void send_result(sim_worker *w, seq_t *s, Helium__ErrorCode err) {
    simkv_flush(w);
    Helium__OpResult r = HELIUM__OP_RESULT__INIT;
    Helium__Error e = HELIUM__ERROR__INIT;
    Helium__Timing tm = HELIUM__TIMING__INIT;
    r.task_id = s->task_id;
    r.job_id = s->job_id;
    r.op_id = s->op_id;
    r.attempt = s->attempt;
    r.item = s->item;
    r.round = s->round;
    r.prompt_tokens = (uint32_t)s->n_prompt;
    char *text = NULL;
    if (err) {
        e.code = err;
        e.message = "the simulated worker has no room for this call";
        r.error = &e;
        r.finish_reason = HELIUM__FINISH_REASON__FINISH_ERROR;
    } else {
        int32_t n_gen = s->warm ? 0 : s->n_tok - s->n_prompt;
        text = n_gen ? tok_decode(sim_tok(w->world), s->toks + s->n_prompt, n_gen, false) : NULL;
        r.text = text ? text : "";
        r.ids = n_gen ? s->toks + s->n_prompt : NULL;
        r.n_ids = (size_t)n_gen;
        r.cached_tokens = (uint32_t)s->cached;
        r.computed_tokens = (uint32_t)(s->n_prompt - s->cached);
        r.pulled_tokens = (uint32_t)(s->pulled < s->cached ? s->pulled : s->cached);
        if (s->pull_bytes > 0) { /* the coordinator's per-pair link model learns from it */
            r.pull_us = (uint64_t)(s->pull_s * 1e6);
            r.pull_bytes = (uint64_t)s->pull_bytes;
        }
        r.generated_tokens = (uint32_t)n_gen;
        r.finish_reason = s->warm ? HELIUM__FINISH_REASON__FINISH_WARM : HELIUM__FINISH_REASON__FINISH_LENGTH;
        uint64_t now = (uint64_t)(sim_now(w->world) * 1e6);
        tm.finished_us = now;
        tm.first_token_us = now;
        r.timing = &tm;
        w->st.generated_tokens += (uint64_t)n_gen;
    }
    Helium__WorkerMsg m = HELIUM__WORKER_MSG__INIT;
    m.body_case = HELIUM__WORKER_MSG__BODY_RESULT;
    m.result = &r;
    w->st.results++;
    simkv_send(w, &m);
    free(text);
}

/* ------------------------------------------------------------------ step */

bool simw_busy(const sim_worker *w) { return w->stepping || w->n_run || w->wait_head || w->pulling || w->held; }

void simw_kick(sim_worker *w) {
    if (w->stepping) return;
    admit(w);
    if (!w->n_run) return;
    int32_t T = 0, budget = w->g.batch_tokens, n_out = 0;
    double attn = 0, attn_dec = 0;
    w->n_batch = 0;
    for (int32_t i = 0; i < w->n_run; i++) w->run[i]->take = 0;
    for (int pass = 0; pass < 2 && budget > 0; pass++) {
        for (int32_t i = 0; i < w->n_run && budget > 0; i++) {
            seq_t *s = w->run[i];
            int32_t pending = s->n_tok - s->n_kv;
            if (s->take || (pass == 0) != (pending == 1 && s->n_kv >= s->n_prompt)) continue;
            int32_t take = pending < budget ? pending : budget;
            if (ensure_pages(w, s, s->n_kv + take, &i)) {
                if (w->n_batch == 0 && w->n_run == 1) { /* alone and no room: cannot ever run */
                    run_remove_at(w, i);
                    seq_release(w, s);
                    send_result(w, s, HELIUM__ERROR_CODE__ERROR_INTERNAL);
                    seq_free(s);
                    i--;
                }
                continue;
            }
            s->take = take;
            w->batch[w->n_batch++] = s;
            if (pass == 0)
                attn_dec += (double)s->n_kv + 1.0; /* a decode row */
            else
                attn += (double)take * s->n_kv + (double)take * (take + 1) / 2.0;
            if (s->n_kv + take == s->n_tok) n_out++;
            T += take;
            budget -= take;
        }
    }
    if (!w->n_batch) return;
    const sim_cost *c = &w->cost;
    double dur = c->step + c->tok * T + c->attn * attn + (c->attn_dec >= 0 ? c->attn_dec : c->attn) * attn_dec +
                 c->seq * w->n_batch + c->out * n_out;
    bool decode_only = T == w->n_batch && n_out == w->n_batch;
    double scale = decode_only ? c->scale_dec : c->scale_mix;
    dur *= scale > 0 ? scale : 1.0;
    dur = sim_step_share(w->world, 1, dur); /* stretched as a real worker's forward_us / decode_us are */
    if (decode_only) w->st.busy_dec_s += dur;
    w->stepping = true;
    w->step_started = sim_now(w->world);
    w->st.steps++;
    w->st.batch_tokens += (uint64_t)T;
    w->st.busy_s += dur;
    sim_at(w->world, sim_now(w->world) + dur, 0, w->index, 0);
}

static void commit_full(sim_worker *w, seq_t *s) {
    if (!caches(s)) return;
    int32_t bs = w->g.block_size;
    while ((s->n_hashed + 1) * bs <= s->n_kv) {
        int32_t i = s->n_hashed;
        uint64_t parent = i ? s->hashes[i - 1] : w->g.root;
        uint64_t h = bh_chain(parent, s->toks + (size_t)i * bs, bs);
        s->bt[i] = simkv_commit(w, s->bt[i], h);
        s->hashes[i] = h;
        s->n_hashed++;
        if (s->n_hashed > s->n_phash) s->n_phash = s->n_hashed;
    }
}

static void finish(sim_worker *w, seq_t *s) {
    simkv_pin(w, s);
    seq_release(w, s);
    send_result(w, s, HELIUM__ERROR_CODE__ERROR_OK);
    seq_free(s);
}

void simw_step_end(sim_worker *w) {
    w->stepping = false;
    sim_step_share(w->world, -1, 0);
    for (int32_t j = 0; j < w->n_batch; j++) {
        seq_t *s = w->batch[j];
        if (s->n_kv < s->n_prompt) {
            int32_t upto = s->n_kv + s->take;
            int32_t got = (upto < s->n_prompt ? upto : s->n_prompt) - s->n_kv;
            w->st.computed_tokens += (uint64_t)got;
            w->st.prefill_tokens += (uint64_t)got;
        } else {
            w->st.decode_rows++;
        }
        s->n_kv += s->take;
        commit_full(w, s);
    }
    /* sample, then finish (in run order, as the engine reports results) */
    for (int32_t i = 0; i < w->n_run; i++) {
        seq_t *s = w->run[i];
        if (!s->take) continue;
        s->take = 0;
        if (s->n_kv != s->n_tok) continue;
        int32_t k = s->n_tok - s->n_prompt;
        s->toks[s->n_tok++] = sim_out_token(w->world, s->phash, k);
        if (s->n_tok - s->n_prompt >= s->max_gen || s->n_tok >= w->g.n_ctx) {
            run_remove_at(w, i--);
            finish(w, s);
        }
    }
    w->n_batch = 0;
    simkv_flush(w);
    simw_kick(w);
}

/* ----------------------------------------------------------------- pulls */

int simw_holds(const sim_worker *w, const uint64_t *hashes, int n) {
    int k = 0;
    while (k < n && simkv_find(w, hashes[k]) >= 0) k++;
    return k;
}

/* The pull in flight that brings s's prefix (its first hinted block this
 * worker lacks is one of s's usable prompt blocks), as pull_bringing: its
 * token, 0 if none. */
static uint64_t pull_bringing(const sim_worker *w, const seq_t *s) {
    int32_t nuse = (s->n_prompt - 1) / w->g.block_size;
    if (nuse > s->n_phash) nuse = s->n_phash;
    if (nuse <= 0) return 0;
    for (const seq_t *x = w->pulling; x; x = x->next) {
        int k = 0;
        while (k < x->n_pull && simkv_find(w, x->pull[k]) >= 0) k++;
        if (k >= x->n_pull) continue;
        for (int32_t i = 0; i < nuse; i++)
            if (s->hashes[i] == x->pull[k]) return x->pull_token;
    }
    return 0;
}

/* Queues the calls held for a pull that is no longer in flight. */
static void release_held(sim_worker *w) {
    for (seq_t **pp = &w->held; *pp;) {
        seq_t *s = *pp;
        bool live = false;
        for (const seq_t *x = w->pulling; x && !live; x = x->next) live = x->pull_token == s->wait_pull;
        if (live) {
            pp = &s->next;
            continue;
        }
        *pp = s->next;
        s->wait_pull = 0;
        wait_push(w, s);
    }
}

void simw_pull_end(sim_worker *w, uint64_t token) {
    seq_t *prev = NULL, *s = w->pulling;
    while (s && s->pull_token != token) {
        prev = s;
        s = s->next;
    }
    if (!s) return; /* canceled meanwhile */
    if (prev) prev->next = s->next;
    else w->pulling = s->next;
    sim_worker *src = sim_worker_at(w->world, s->pull_src);
    int n = src ? simw_holds(src, s->pull, s->n_pull) : 0;
    int32_t got = 0;
    for (int k = 0; k < n; k++) {
        if (simkv_find(w, s->pull[k]) >= 0) {
            got++;
            continue;
        }
        int32_t b = simkv_alloc(w);
        if (b < 0) break;
        int32_t g = simkv_commit(w, b, s->pull[k]);
        simkv_unref(w, g);
        got++;
    }
    simkv_flush(w);
    s->pulled = got * w->g.block_size;
    w->st.pulled_tokens += (uint64_t)s->pulled;
    wait_push(w, s);
    release_held(w);
    simw_kick(w);
}

/* ------------------------------------------------------------- messages */

static char *xstrdup(const char *s) {
    char *d = strdup(s ? s : "");
    if (!d) abort();
    return d;
}

static void on_dispatch(sim_worker *w, const Helium__Dispatch *d) {
    seq_t *s = calloc(1, sizeof *s);
    if (!s) abort();
    int32_t n = (int32_t)d->n_prompt_ids, bs = w->g.block_size;
    s->task_id = d->task_id;
    s->job_id = xstrdup(d->job_id);
    s->op_id = xstrdup(d->op_id);
    s->attempt = d->attempt;
    s->item = d->item;
    s->round = d->round;
    s->warm = d->warm;
    s->no_cache = d->no_cache;
    s->max_gen = d->warm ? 1 : (d->max_tokens ? (int32_t)d->max_tokens : 256);
    if (n + s->max_gen > w->g.n_ctx) s->max_gen = w->g.n_ctx - n > 1 ? w->g.n_ctx - n : 1;
    s->toks = malloc(sizeof(int32_t) * (size_t)(n + s->max_gen + 1));
    s->bt = malloc(sizeof(int32_t) * (size_t)w->max_pages);
    s->hashes = malloc(sizeof(uint64_t) * (size_t)w->max_pages);
    if (!s->toks || !s->bt || !s->hashes) abort();
    memcpy(s->toks, d->prompt_ids, sizeof(int32_t) * (size_t)n);
    s->n_tok = s->n_prompt = n;
    s->phash = bh_root(s->toks, sizeof(int32_t) * (size_t)n);
    if (caches(s)) {
        s->n_phash = n / bs;
        if (s->n_phash > w->max_pages) s->n_phash = w->max_pages;
        if (s->n_phash) bh_prefix(w->g.root, s->toks, s->n_phash * bs, bs, s->hashes);
    }
    if (d->n_pin && d->pin_tag && *d->pin_tag) {
        s->pin = malloc(sizeof(uint64_t) * d->n_pin);
        if (!s->pin) abort();
        memcpy(s->pin, d->pin, sizeof(uint64_t) * d->n_pin);
        s->n_pin = (int32_t)d->n_pin;
        s->pin_tag = xstrdup(d->pin_tag);
        s->pin_steps = d->pin_steps;
    }
    if (caches(s) && (s->wait_pull = pull_bringing(w, s)) != 0) {
        s->next = w->held;
        w->held = s;
        return;
    }
    int src = d->pull && d->pull->n_hashes ? sim_worker_index(d->pull->source_worker) : -1;
    if (src >= 0 && src != w->index && caches(s)) {
        s->pull = malloc(sizeof(uint64_t) * d->pull->n_hashes);
        if (!s->pull) abort();
        memcpy(s->pull, d->pull->hashes, sizeof(uint64_t) * d->pull->n_hashes);
        s->n_pull = (int32_t)d->pull->n_hashes;
        s->pull_src = src;
        s->pull_token = ++w->next_pull_token;
        sim_worker *sw = sim_worker_at(w->world, src);
        int have = sw ? simw_holds(sw, s->pull, s->n_pull) : 0;
        double bytes = (double)have * (double)w->page_bytes;
        double dur = w->cost.pull_fixed + bytes * w->cost.pull_byte;
        w->st.pulls++;
        w->st.pulled_bytes += (uint64_t)bytes;
        w->st.pull_s += dur;
        s->pull_s = dur;
        s->pull_bytes = bytes;
        s->next = w->pulling;
        w->pulling = s;
        sim_at(w->world, sim_now(w->world) + dur, 1, w->index, s->pull_token);
        return;
    }
    wait_push(w, s);
}

/* Drops task_id (0: every task of job_id) wherever it is. */
static void on_cancel(sim_worker *w, uint64_t task_id, const char *job_id) {
#define MATCH(s) ((task_id && (s)->task_id == task_id) || (!task_id && job_id && !strcmp((s)->job_id, job_id)))
    for (seq_t **pp = &w->held; *pp;) {
        seq_t *s = *pp;
        if (MATCH(s)) {
            *pp = s->next;
            seq_free(s);
        } else {
            pp = &s->next;
        }
    }
    for (seq_t **pp = &w->pulling; *pp;) {
        seq_t *s = *pp;
        if (MATCH(s)) {
            *pp = s->next;
            seq_free(s);
        } else {
            pp = &s->next;
        }
    }
    release_held(w); /* the pulls they waited for may be gone */
    seq_t *prev = NULL;
    for (seq_t *s = w->wait_head; s;) {
        seq_t *next = s->next;
        if (MATCH(s)) {
            if (prev) prev->next = next;
            else w->wait_head = next;
            if (w->wait_tail == s) w->wait_tail = prev;
            seq_free(s);
        } else {
            prev = s;
        }
        s = next;
    }
    for (int32_t i = 0; i < w->n_run; i++) {
        seq_t *s = w->run[i];
        if (!MATCH(s)) continue;
        if (s->take) { /* in the step under way: keep it out of the batch */
            for (int32_t j = 0; j < w->n_batch; j++)
                if (w->batch[j] == s) w->batch[j] = w->batch[--w->n_batch];
        }
        run_remove_at(w, i--);
        seq_release(w, s);
        seq_free(s);
    }
    simkv_flush(w);
#undef MATCH
}

static void on_resync(sim_worker *w) {
    Helium__CacheEvents ce = HELIUM__CACHE_EVENTS__INIT;
    uint64_t *all = malloc(sizeof(uint64_t) * (size_t)w->g.kv_blocks + 1);
    if (!all) abort();
    size_t n = 0;
    for (int32_t i = 0; i < w->g.kv_blocks; i++)
        if (w->b[i].committed) all[n++] = w->b[i].hash;
    w->n_stored = w->n_removed = 0;
    ce.stored = all;
    ce.n_stored = n;
    ce.snapshot = true;
    ce.seq = ++w->cache_seq;
    Helium__WorkerMsg m = HELIUM__WORKER_MSG__INIT;
    m.body_case = HELIUM__WORKER_MSG__BODY_CACHE_EVENTS;
    m.cache_events = &ce;
    simkv_send(w, &m);
    free(all);
}

void simw_on_msg(sim_worker *w, const uint8_t *buf, size_t len) {
    Helium__CoordMsg *m = helium__coord_msg__unpack(NULL, len, buf);
    if (!m) {
        fprintf(stderr, "helium-sim: worker %s: unparseable CoordMsg\n", w->id);
        return;
    }
    switch (m->body_case) {
    case HELIUM__COORD_MSG__BODY_DISPATCH: on_dispatch(w, m->dispatch); break;
    case HELIUM__COORD_MSG__BODY_CANCEL: on_cancel(w, m->cancel->task_id, m->cancel->job_id); break;
    case HELIUM__COORD_MSG__BODY_UNPIN: simkv_unpin(w, m->unpin->tag ? m->unpin->tag : ""); break;
    case HELIUM__COORD_MSG__BODY_PIN_STEPS: simkv_pin_steps(w, m->pin_steps->tag ? m->pin_steps->tag : "", m->pin_steps->steps); break;
    case HELIUM__COORD_MSG__BODY_RESYNC: on_resync(w); break;
    default: break;
    }
    helium__coord_msg__free_unpacked(m, NULL);
}

void simw_register(sim_worker *w) {
    Helium__Register r = HELIUM__REGISTER__INIT;
    char ep[32];
    snprintf(ep, sizeof ep, "sim://%s", w->id);
    r.worker_id = w->id;
    r.model = "sim";
    r.model_root = w->g.root;
    r.block_size = (uint32_t)w->g.block_size;
    r.kv_blocks_total = (uint32_t)w->g.kv_blocks;
    r.backend = "sim";
    r.n_ctx = (uint32_t)w->g.n_ctx;
    r.max_batch = (uint32_t)w->g.max_seqs;
    r.data_endpoint = ep;
    r.n_layers = w->g.n_layers;
    r.kv_dim = w->g.kv_dim;
    r.kv_dtype = "f32";
    r.version = "helium-sim";
    Helium__WorkerMsg m = HELIUM__WORKER_MSG__INIT;
    m.body_case = HELIUM__WORKER_MSG__BODY_REG;
    m.reg = &r;
    simkv_send(w, &m);
}

void simw_heartbeat(sim_worker *w) {
    int32_t queued = 0;
    for (seq_t *s = w->wait_head; s; s = s->next) queued++;
    for (seq_t *s = w->pulling; s; s = s->next) queued++;
    for (seq_t *s = w->held; s; s = s->next) queued++;
    Helium__Load ld = HELIUM__LOAD__INIT;
    ld.running = (uint32_t)w->n_run;
    ld.queued = (uint32_t)queued;
    ld.kv_free = (uint32_t)w->n_free;
    ld.kv_cached = (uint32_t)(w->n_lru + w->n_pin_idle);
    ld.kv_used = (uint32_t)(w->g.kv_blocks - w->n_free - w->n_lru - w->n_pin_idle);
    struct { const char *k; uint64_t v; } cs[] = {
        {"computed_tokens", w->st.computed_tokens}, {"generated_tokens", w->st.generated_tokens},
        {"forward_us", (uint64_t)(w->st.busy_s * 1e6)}, {"pulled_tokens", w->st.pulled_tokens},
        {"pull_us", (uint64_t)(w->st.pull_s * 1e6)}, {"lookup_tokens", w->lookups * (uint64_t)w->g.block_size},
        {"hit_tokens", w->hits * (uint64_t)w->g.block_size}, {"evictions", w->st.evictions}};
    enum { NC = sizeof cs / sizeof cs[0] };
    Helium__Heartbeat__CountersEntry ent[NC], *pe[NC];
    for (int i = 0; i < NC; i++) {
        helium__heartbeat__counters_entry__init(&ent[i]);
        ent[i].key = (char *)cs[i].k;
        ent[i].value = cs[i].v;
        pe[i] = &ent[i];
    }
    Helium__Heartbeat hb = HELIUM__HEARTBEAT__INIT;
    hb.load = &ld;
    hb.counters = pe;
    hb.n_counters = NC;
    hb.cache_seq = w->cache_seq;
    Helium__WorkerMsg m = HELIUM__WORKER_MSG__INIT;
    m.body_case = HELIUM__WORKER_MSG__BODY_HEARTBEAT;
    m.heartbeat = &hb;
    simkv_send(w, &m);
}

void simw_get_stats(const sim_worker *w, simw_stats *out) { *out = w->st; }

/* ------------------------------------------------------------- lifecycle */

sim_worker *simw_new(sim_world *world, int index, const sim_geom *g, const sim_cost *cost) {
    sim_worker *w = calloc(1, sizeof *w);
    if (!w) return NULL;
    w->world = world;
    w->index = index;
    snprintf(w->id, sizeof w->id, "s%d", index);
    w->g = *g;
    w->cost = *cost;
    w->page_bytes = (size_t)g->n_layers * 2 * (size_t)g->block_size * g->kv_dim * 4;
    w->max_pages = (g->n_ctx + g->block_size - 1) / g->block_size + 1;
    w->b = calloc((size_t)g->kv_blocks, sizeof *w->b);
    w->hcap = 64;
    while (w->hcap < (uint32_t)g->kv_blocks * 2) w->hcap <<= 1;
    w->hkey = calloc(w->hcap, sizeof *w->hkey);
    w->hval = malloc(w->hcap * sizeof *w->hval);
    w->run = calloc((size_t)g->max_seqs, sizeof *w->run);
    w->batch = calloc((size_t)g->max_seqs, sizeof *w->batch);
    if (!w->b || !w->hkey || !w->hval || !w->run || !w->batch) {
        simw_destroy(&w);
        return NULL;
    }
    for (uint32_t i = 0; i < w->hcap; i++) w->hval[i] = -1;
    w->free_head = w->lru_head = w->lru_tail = -1;
    for (int32_t i = g->kv_blocks - 1; i >= 0; i--) {
        w->b[i].prev = -1;
        w->b[i].next = w->free_head;
        w->free_head = i;
    }
    w->n_free = g->kv_blocks;
    return w;
}

void simw_destroy(sim_worker **self_p) {
    if (!self_p || !*self_p) return;
    sim_worker *w = *self_p;
    for (seq_t *s = w->wait_head, *n; s; s = n) {
        n = s->next;
        seq_free(s);
    }
    for (seq_t *s = w->pulling, *n; s; s = n) {
        n = s->next;
        seq_free(s);
    }
    for (seq_t *s = w->held, *n; s; s = n) {
        n = s->next;
        seq_free(s);
    }
    for (int32_t i = 0; w->run && i < w->n_run; i++) seq_free(w->run[i]);
    for (int32_t i = 0; i < w->n_tags; i++) {
        free(w->tags[i].tag);
        free(w->tags[i].h);
    }
    free(w->tags);
    free(w->b);
    free(w->hkey);
    free(w->hval);
    free(w->run);
    free(w->batch);
    free(w->ev_stored);
    free(w->ev_removed);
    free(w);
    *self_p = NULL;
}
