/* Unit tests for coordinator/workers.c (suite "workers") and
 * coordinator/sched.c (suite "sched"): worker table bookkeeping, measured
 * rates, and placement under the router / prefix / isolated policies with a
 * hand-filled prefix directory. No sockets. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <string.h>

#include "blockhash.h"
#include "dir.h"
#include "herr.h"
#include "sched.h"
#include "workers.h"

#define ROOT 0x1234u
#define BS 16

static wkrs_t *ws;
static dir_t *dir;
static sched_t *sc;

static void setup(void) {
    ws = wkrs_new();
    dir = dir_new();
    sc = sched_new(dir, ws);
    cr_assert(ws && dir && sc);
    sched_set_model(sc, ROOT, BS, 4096);
}

static void teardown(void) {
    sched_destroy(&sc);
    dir_destroy(&dir);
    wkrs_destroy(&ws);
}

/* Registers an alive worker "id" with the cluster's model. */
static wkr_t *add_worker(const char *id, uint32_t blocks, uint32_t n_ctx, uint64_t root) {
    wkr_t *w = NULL;
    cr_assert_eq(wkrs_add(ws, id, strlen(id), &w), 0, "%s", he_msg());
    Helium__Register reg = HELIUM__REGISTER__INIT;
    reg.model_root = root;
    reg.block_size = BS;
    reg.kv_blocks_total = blocks;
    reg.n_ctx = n_ctx;
    reg.n_layers = 2;
    reg.kv_dim = 8;
    reg.kv_dtype = "f32";
    reg.data_endpoint = "tcp://127.0.0.1:1";
    wkr_register(w, &reg, 1);
    w->alive = true;
    return w;
}

static void heartbeat(wkr_t *w, uint32_t kv_free, uint32_t kv_cached, uint64_t computed, uint64_t fwd_us) {
    Helium__Load load = HELIUM__LOAD__INIT;
    load.kv_free = kv_free;
    load.kv_cached = kv_cached;
    Helium__Heartbeat__CountersEntry e1 = HELIUM__HEARTBEAT__COUNTERS_ENTRY__INIT, e2 = e1;
    e1.key = "computed_tokens";
    e1.value = computed;
    e2.key = "forward_us";
    e2.value = fwd_us;
    Helium__Heartbeat__CountersEntry *ev[] = {&e1, &e2};
    Helium__Heartbeat hb = HELIUM__HEARTBEAT__INIT;
    hb.load = &load;
    hb.n_counters = 2;
    hb.counters = ev;
    wkr_heartbeat(w, &hb, 2);
}

static int32_t prompt[200];
static void fill_prompt(int32_t seed) {
    for (int i = 0; i < 200; i++) prompt[i] = (seed * 31 + i * 7) % 500;
}

TestSuite(workers, .init = setup, .fini = teardown);
TestSuite(sched, .init = setup, .fini = teardown);

Test(workers, register_fills_geometry_and_id) {
    wkr_t *w = add_worker("w7", 100, 512, ROOT);
    cr_assert_str_eq(w->id, "w7");
    cr_assert_eq(w->slot, 0);
    cr_assert_eq(w->page_bytes, 2u * 2 * BS * 8 * 4);
    cr_assert_eq(wkr_kv_avail(w), 100);
    cr_assert_eq(wkrs_by_ident(ws, "w7", 2), w);
    cr_assert_null(wkrs_by_ident(ws, "w8", 2));
    wkr_t *x = NULL;
    cr_assert_eq(wkrs_add(ws, "\x01\x02", 2, &x), 0);
    Helium__Register reg = HELIUM__REGISTER__INIT;
    reg.block_size = BS;
    wkr_register(x, &reg, 1);
    cr_assert_str_eq(x->id, "w1", "an unprintable routing id is shown by slot");
    cr_assert_eq(wkrs_alive(ws), 1);
}

Test(workers, heartbeat_rates_and_kv) {
    wkr_t *w = add_worker("w0", 100, 512, ROOT);
    heartbeat(w, 40, 10, 1000, 1000000);
    cr_assert_eq(wkr_kv_avail(w), 50);
    cr_assert_float_eq(w->prefill_tok_s, 0.0, 1e-9, "one sample gives no rate");
    heartbeat(w, 40, 10, 3000, 2000000); /* 2000 tokens in 1 s */
    cr_assert_float_eq(w->prefill_tok_s, 2000.0, 1e-6);
    heartbeat(w, 40, 10, 3000, 2005000); /* under 20 ms of forward time: ignored */
    cr_assert_float_eq(w->prefill_tok_s, 2000.0, 1e-6);
    heartbeat(w, 40, 10, 7000, 3000000); /* 4000 tok/s since the last sample used, smoothed */
    cr_assert_float_eq(w->prefill_tok_s, 3000.0, 1e-6);
    cr_assert_eq(wkr_counter_get(w, "computed_tokens"), 7000);
    cr_assert_eq(wkr_counter_get(w, "nope"), 0);
}

Test(workers, inflight_load_and_reservations) {
    wkr_t *w = add_worker("w0", 100, 512, ROOT);
    heartbeat(w, 100, 0, 0, 0);
    job_task a = {.load_tokens = 300, .pages = 30, .reserve_pages = 30}, b = {.load_tokens = 50, .pages = 8, .reserve_pages = 5};
    cr_assert_eq(wkr_inflight_add(w, &a), 0);
    cr_assert_eq(wkr_inflight_add(w, &b), 0);
    cr_assert_eq(w->load_tokens, 350);
    cr_assert_eq(wkr_kv_avail(w), 65);
    wkr_inflight_remove(w, &a);
    cr_assert_eq(w->load_tokens, 50);
    cr_assert_eq(w->n_inflight, 1);
    cr_assert_eq(w->inflight[0], &b);
    wkr_inflight_remove(w, &a); /* unknown now: no-op */
    cr_assert_eq(w->load_tokens, 50);
    heartbeat(w, 90, 5, 0, 0); /* a heartbeat resets the reservations */
    cr_assert_eq(wkr_kv_avail(w), 95);
}

Test(workers, dead_slot_is_reused_when_full) {
    wkr_t *w = NULL;
    char id[8];
    for (int i = 0; i < DIR_MAX_WORKERS; i++) {
        snprintf(id, sizeof id, "x%d", i);
        w = add_worker(id, 10, 64, ROOT);
    }
    cr_assert_eq(wkrs_add(ws, "new", 3, &w), HE_ELIMIT);
    wkrs_by_slot(ws, 5)->alive = false;
    cr_assert_eq(wkrs_add(ws, "new", 3, &w), 0);
    cr_assert_eq(w->slot, 5);
    cr_assert_eq(wkrs_by_ident(ws, "new", 3), w);
    cr_assert_null(wkrs_by_ident(ws, "x5", 2));
}

Test(sched, policy_names) {
    cr_assert_eq(sched_policy_from_name("router"), SCHED_ROUTER);
    cr_assert_eq(sched_policy_from_name("prefix"), SCHED_PREFIX);
    cr_assert_eq(sched_policy_from_name("isolated"), SCHED_ISOLATED);
    cr_assert_eq(sched_policy_from_name("fastest"), -1);
    cr_assert_eq(sched_policy_from_name(""), -1);
    cr_assert_str_eq(sched_policy_name(SCHED_PREFIX), "prefix");
}

Test(sched, no_worker_and_too_long) {
    sched_choice ch;
    fill_prompt(1);
    cr_assert_eq(sched_place(sc, SCHED_ROUTER, prompt, 100, 10, &ch), HE_EUNAVAIL);
    add_worker("w0", 100, 100, ROOT);
    cr_assert_eq(sched_place(sc, SCHED_ROUTER, prompt, 100, 10, &ch), HE_ECONTEXT,
                 "100 tokens + 1 do not fit a context of 100");
    cr_assert_eq(sched_place(sc, SCHED_ROUTER, prompt, 99, 10, &ch), 0);
    cr_assert_not_null(ch.worker);
    cr_assert_eq(ch.n_hashes, 99 / BS);
}

Test(sched, other_model_is_not_eligible) {
    add_worker("alien", 100, 512, ROOT + 1);
    sched_choice ch;
    fill_prompt(2);
    cr_assert_eq(sched_place(sc, SCHED_ROUTER, prompt, 50, 10, &ch), HE_EUNAVAIL);
}

Test(sched, router_follows_the_prefix) {
    wkr_t *w0 = add_worker("w0", 1000, 512, ROOT);
    wkr_t *w1 = add_worker("w1", 1000, 512, ROOT);
    fill_prompt(3);
    uint64_t h[12];
    int nb = bh_prefix(ROOT, prompt, 160, BS, h);
    cr_assert_eq(nb, 10);
    for (int i = 0; i < 6; i++) dir_add(dir, h[i], w1->slot);
    sched_choice ch;
    cr_assert_eq(sched_place(sc, SCHED_ROUTER, prompt, 160, 20, &ch), 0);
    cr_assert_eq(ch.worker, w1);
    cr_assert_eq(ch.reuse_blocks, 6);
    cr_assert_null(ch.pull_from);
    cr_assert_eq(ch.pages, (160 + 20 + BS - 1) / BS);
    cr_assert_eq(ch.load_tokens, 160 - 6 * BS + 20);
    /* the same prompt under "prefix" ignores the directory: least loaded, lower slot */
    cr_assert_eq(sched_place(sc, SCHED_PREFIX, prompt, 160, 20, &ch), 0);
    cr_assert_eq(ch.worker, w0);
    cr_assert_eq(ch.reuse_blocks, 0);
    sched_counters k;
    sched_get_counters(sc, &k);
    cr_assert_eq(k.decisions, 2);
    cr_assert_eq(k.affinity, 1);
}

Test(sched, prefix_takes_least_loaded) {
    wkr_t *w0 = add_worker("w0", 1000, 512, ROOT);
    wkr_t *w1 = add_worker("w1", 1000, 512, ROOT);
    job_task busy = {.load_tokens = 5000, .pages = 0};
    wkr_inflight_add(w0, &busy);
    fill_prompt(4);
    sched_choice ch;
    cr_assert_eq(sched_place(sc, SCHED_PREFIX, prompt, 64, 8, &ch), 0);
    cr_assert_eq(ch.worker, w1);
    wkr_inflight_remove(w0, &busy);
}

Test(sched, isolated_round_robin) {
    wkr_t *w0 = add_worker("w0", 1000, 512, ROOT);
    wkr_t *w1 = add_worker("w1", 1000, 512, ROOT);
    fill_prompt(5);
    sched_choice ch;
    wkr_t *seen[4];
    for (int i = 0; i < 4; i++) {
        cr_assert_eq(sched_place(sc, SCHED_ISOLATED, prompt, 40, 8, &ch), 0);
        seen[i] = ch.worker;
        cr_assert_null(ch.pull_from);
    }
    cr_assert_neq(seen[0], seen[1]);
    cr_assert_eq(seen[0], seen[2]);
    cr_assert_eq(seen[1], seen[3]);
    cr_assert(seen[0] == w0 || seen[0] == w1);
}

Test(sched, full_workers_make_the_task_wait) {
    wkr_t *w0 = add_worker("w0", 100, 512, ROOT);
    heartbeat(w0, 2, 0, 0, 0); /* 2 pages left; the task needs 4 */
    fill_prompt(6);
    sched_choice ch;
    cr_assert_eq(sched_place(sc, SCHED_ROUTER, prompt, 40, 16, &ch), 0);
    cr_assert_null(ch.worker);
    cr_assert_eq(sched_place(sc, SCHED_ISOLATED, prompt, 40, 16, &ch), 0);
    cr_assert_null(ch.worker);
    heartbeat(w0, 2, 10, 0, 0); /* cached pages are reclaimable */
    cr_assert_eq(sched_place(sc, SCHED_ROUTER, prompt, 40, 16, &ch), 0);
    cr_assert_eq(ch.worker, w0);
}

Test(sched, dead_worker_is_skipped) {
    wkr_t *w0 = add_worker("w0", 1000, 512, ROOT);
    wkr_t *w1 = add_worker("w1", 1000, 512, ROOT);
    fill_prompt(7);
    uint64_t h[4];
    bh_prefix(ROOT, prompt, 64, BS, h);
    for (int i = 0; i < 4; i++) dir_add(dir, h[i], w0->slot);
    w0->alive = false;
    sched_choice ch;
    cr_assert_eq(sched_place(sc, SCHED_ROUTER, prompt, 64, 8, &ch), 0);
    cr_assert_eq(ch.worker, w1);
    cr_assert_null(ch.pull_from, "a dead worker is never a pull source");
}

Test(sched, pending_blocks_attract_siblings_but_are_never_pulled) {
    wkr_t *w0 = add_worker("w0", 1000, 512, ROOT);
    wkr_t *w1 = add_worker("w1", 1000, 512, ROOT);
    fill_prompt(8);
    uint64_t h[10];
    int nb = bh_prefix(ROOT, prompt, 160, BS, h);
    /* a sibling was just dispatched to w1: its blocks are only pending */
    sched_pending_add(sc, w1->slot, h, nb);
    sched_choice ch;
    cr_assert_eq(sched_place(sc, SCHED_ROUTER, prompt, 160, 8, &ch), 0);
    cr_assert_eq(ch.worker, w1);
    cr_assert_gt(ch.reuse_blocks, 0);
    /* load w1 heavily: the task goes to w0, and no pull is planned from
     * blocks w1 does not hold yet */
    job_task busy = {.load_tokens = 100000};
    wkr_inflight_add(w1, &busy);
    cr_assert_eq(sched_place(sc, SCHED_ROUTER, prompt, 160, 8, &ch), 0);
    cr_assert_eq(ch.worker, w0);
    cr_assert_null(ch.pull_from);
    wkr_inflight_remove(w1, &busy);
    sched_pending_remove(sc, w1->slot, h, nb);
    cr_assert_eq(sched_place(sc, SCHED_ROUTER, prompt, 160, 8, &ch), 0);
    cr_assert_eq(ch.reuse_blocks, 0);
}

/* A pull's measured rate includes waiting for the busy source's step: the
 * router baseline trusts it and recomputes; helium, whose chosen worker has
 * other work to do meanwhile, judges the transfer at the nominal link rate
 * and pulls. */
/* Fills the 200-token prompt from seed and records all its full blocks
 * (h, at least 12) as held by w in the directory; returns their count. */
static int prompt_held_by(const wkr_t *w, int32_t seed, uint64_t *h) {
    fill_prompt(seed);
    int nb = bh_prefix(ROOT, prompt, 200, BS, h);
    for (int i = 0; i < nb; i++) dir_add(dir, h[i], w->slot);
    return nb;
}

Test(sched, helium_judges_a_busy_workers_pull_by_the_transfer) {
    wkr_t *w0 = add_worker("w0", 1000, 512, ROOT);
    wkr_t *w1 = add_worker("w1", 1000, 512, ROOT);
    uint64_t h[16];
    int nb = prompt_held_by(w0, 11, h);
    job_task a = {.load_tokens = 1000000}, b = {.load_tokens = 2000};
    wkr_inflight_add(w0, &a); /* the holder is swamped: the load guard picks w1 */
    wkr_inflight_add(w1, &b); /* w1 is busy too, but less */
    w1->prefill_tok_s = 1000.0; /* 192 tokens: 0.19 s to recompute */
    w1->link_bytes_s = 1e4;     /* measured: 12 pages of 4 KiB in about 5 s */
    sched_choice ch;
    cr_assert_eq(sched_place(sc, SCHED_ROUTER, prompt, 200, 8, &ch), 0);
    cr_assert_eq(ch.worker, w1);
    cr_assert_null(ch.pull_from, "router: the measured rate makes the pull look slower than recomputing");
    cr_assert_eq(sched_place(sc, SCHED_HELIUM, prompt, 200, 8, &ch), 0);
    cr_assert_eq(ch.worker, w1);
    cr_assert_eq(ch.pull_from, w0, "helium pulls");
    cr_assert_eq(ch.pull_blocks, nb, "all %d full blocks (got %d)", nb, ch.pull_blocks);
    wkr_inflight_remove(w0, &a);
    wkr_inflight_remove(w1, &b);
}

/* --baseline-pulls 0: router and kvflow route by cache but never move KV (as
 * SGLang's router, llm-d and KVFlow); helium still pulls. The holder is
 * swamped, so every policy runs the call on w1. */
Test(sched, baseline_pulls_off_leaves_only_helium_pulling) {
    wkr_t *w0 = add_worker("w0", 1000, 512, ROOT);
    wkr_t *w1 = add_worker("w1", 1000, 512, ROOT);
    uint64_t h[16];
    int nb = prompt_held_by(w0, 13, h);
    job_task a = {.load_tokens = 1000000};
    wkr_inflight_add(w0, &a);
    sched_choice ch;
    cr_assert_eq(sched_place(sc, SCHED_ROUTER, prompt, 200, 8, &ch), 0);
    cr_assert_eq(ch.worker, w1);
    cr_assert_eq(ch.pull_from, w0, "by default the router pulls");
    sched_set_baseline_pulls(sc, false);
    sched_policy pols[] = {SCHED_ROUTER, SCHED_KVFLOW};
    for (int k = 0; k < 2; k++) {
        cr_assert_eq(sched_place(sc, pols[k], prompt, 200, 8, &ch), 0);
        cr_assert_eq(ch.worker, w1);
        cr_assert_null(ch.pull_from, "%s must recompute", sched_policy_name(pols[k]));
        cr_assert_eq(ch.reuse_blocks, 0);
        cr_assert_eq(ch.load_tokens, 200 + 8, "the whole prompt is computed");
    }
    cr_assert_eq(sched_place(sc, SCHED_HELIUM, prompt, 200, 8, &ch), 0);
    cr_assert_eq(ch.worker, w1);
    cr_assert_eq(ch.pull_from, w0, "helium still pulls");
    cr_assert_eq(ch.pull_blocks, nb);
    wkr_inflight_remove(w0, &a);
}

/* Two tasks on one worker pending the same leading blocks (a warm prefix and
 * a call extending it): the first to end leaves the other's run whole. */
Test(sched, pending_blocks_are_counted_per_task) {
    wkr_t *w0 = add_worker("w0", 1000, 512, ROOT);
    (void)add_worker("w1", 1000, 512, ROOT);
    fill_prompt(8);
    uint64_t h[10];
    int nb = bh_prefix(ROOT, prompt, 160, BS, h);
    cr_assert_eq(nb, 10);
    sched_pending_add(sc, w0->slot, h, 4);  /* the warm prefix: blocks 0..3 */
    sched_pending_add(sc, w0->slot, h, nb); /* the call: blocks 0..9 */
    sched_pending_remove(sc, w0->slot, h, 4); /* the warm task ends */
    sched_choice ch;
    cr_assert_eq(sched_place(sc, SCHED_ROUTER, prompt, 160, 8, &ch), 0);
    cr_assert_eq(ch.worker, w0);
    cr_assert_eq(ch.reuse_blocks, 9, "the call's pending run is still all there (got %d)", ch.reuse_blocks);
    sched_pending_remove(sc, w0->slot, h, nb);
    cr_assert_eq(sched_place(sc, SCHED_ROUTER, prompt, 160, 8, &ch), 0);
    cr_assert_eq(ch.reuse_blocks, 0);
    sched_pending_remove(sc, w0->slot, h, nb); /* removing what is not pending is a no-op */
    sched_pending_add(sc, w0->slot, h, 2);
    sched_pending_drop(sc, w0->slot);
    cr_assert_eq(sched_place(sc, SCHED_ROUTER, prompt, 160, 8, &ch), 0);
    cr_assert_eq(ch.reuse_blocks, 0);
}

/* The free-page guard counts the leading blocks a worker's in-flight calls
 * already hold once: a sibling needs room only for its own pages, and its
 * reservation is only those. */
Test(sched, siblings_need_room_only_for_their_own_pages) {
    wkr_t *w0 = add_worker("w0", 20, 512, ROOT);
    fill_prompt(12);
    uint64_t h[12];
    int nb = bh_prefix(ROOT, prompt, 192, BS, h); /* 12 full blocks */
    cr_assert_eq(nb, 12);
    heartbeat(w0, 6, 0, 0, 0); /* the first call holds 14 pages; 6 left */
    sched_choice ch;
    /* 192 + 16 tokens: 13 pages; nothing shared yet: it does not fit */
    cr_assert_eq(sched_place(sc, SCHED_ROUTER, prompt, 192, 16, &ch), 0);
    cr_assert_null(ch.worker);
    sched_pending_add(sc, w0->slot, h, 10); /* the first call's prompt shares 10 blocks */
    cr_assert_eq(sched_place(sc, SCHED_ROUTER, prompt, 192, 16, &ch), 0);
    cr_assert_eq(ch.worker, w0);
    cr_assert_eq(ch.pages, 13);
    cr_assert_eq(ch.reserve_pages, 3, "13 pages, 10 of them shared (got %d)", ch.reserve_pages);
    /* isolated shares nothing */
    cr_assert_eq(sched_place(sc, SCHED_ISOLATED, prompt, 192, 16, &ch), 0);
    cr_assert_null(ch.worker);
    sched_pending_remove(sc, w0->slot, h, 10);
}

/* A call's load shrinks to its decode as its prompt pages are committed. */
Test(sched, load_shrinks_as_the_prefill_commits) {
    wkr_t *w0 = add_worker("w0", 1000, 512, ROOT);
    fill_prompt(14);
    uint64_t h[12];
    int nb = bh_prefix(ROOT, prompt, 200, BS, h); /* 12 full blocks, 8 tokens past them */
    job_task t = {.kind = JT_LLM, .ids = prompt, .n_ids = 200, .hashes = h, .n_hashes = nb,
                  .load_tokens = 200 + 32, .decode_tokens = 32};
    job_task tool = {.kind = JT_TOOL, .load_tokens = 50};
    cr_assert_eq(wkr_inflight_add(w0, &t), 0);
    cr_assert_eq(wkr_inflight_add(w0, &tool), 0);
    sched_prefill_progress(sc, w0);
    cr_assert_eq(w0->load_tokens, 282, "nothing committed yet");
    for (int i = 0; i < 5; i++) dir_add(dir, h[i], w0->slot);
    sched_prefill_progress(sc, w0);
    cr_assert_eq(t.load_tokens, 200 - 80 + 32);
    cr_assert_eq(w0->load_tokens, 152 + 50);
    for (int i = 5; i < nb; i++) dir_add(dir, h[i], w0->slot);
    sched_prefill_progress(sc, w0);
    cr_assert_eq(t.load_tokens, 8 + 32, "the partial last block and the decode are left");
    dir_drop_worker(dir, w0->slot);
    sched_prefill_progress(sc, w0);
    cr_assert_eq(t.load_tokens, 40, "an eviction never adds load back");
    wkr_inflight_remove(w0, &t);
    wkr_inflight_remove(w0, &tool);
    cr_assert_eq(w0->load_tokens, 0);
}

static int fit_calls;
static bool fit_only_w1(void *ctx, const wkr_t *w, const uint64_t *hashes, int32_t nb, int32_t pages) {
    (void)hashes;
    (void)pages;
    fit_calls++;
    cr_assert_eq(nb, 12);
    return strcmp(w->id, (const char *)ctx) == 0;
}

/* helium's admission hook decides which workers are eligible, for helium
 * only: the holder that its working set says is full is passed over, and
 * when no worker fits the call waits. */
Test(sched, helium_eligibility_follows_its_admission) {
    wkr_t *w0 = add_worker("w0", 1000, 512, ROOT);
    wkr_t *w1 = add_worker("w1", 1000, 512, ROOT);
    fill_prompt(13);
    uint64_t h[12];
    int nb = bh_prefix(ROOT, prompt, 200, BS, h);
    for (int i = 0; i < nb; i++) dir_add(dir, h[i], w0->slot);
    sched_set_helium_fit(sc, fit_only_w1, "w1");
    sched_choice ch;
    cr_assert_eq(sched_place(sc, SCHED_ROUTER, prompt, 200, 8, &ch), 0);
    cr_assert_eq(ch.worker, w0, "the router follows the prefix");
    cr_assert_eq(fit_calls, 0, "the hook is helium's alone");
    cr_assert_eq(sched_place(sc, SCHED_HELIUM, prompt, 200, 8, &ch), 0);
    cr_assert_eq(ch.worker, w1, "w0 is full by helium's working set");
    cr_assert_eq(ch.pull_from, w0);
    cr_assert_eq(fit_calls, 2);
    sched_set_helium_fit(sc, fit_only_w1, "none");
    cr_assert_eq(sched_place(sc, SCHED_HELIUM, prompt, 200, 8, &ch), 0);
    cr_assert_null(ch.worker);
    sched_set_helium_fit(sc, NULL, NULL);
    cr_assert_eq(sched_place(sc, SCHED_HELIUM, prompt, 200, 8, &ch), 0);
    cr_assert_eq(ch.worker, w0);
}

/* helium: siblings follow a prefix being computed (light load weight) where
 * router balances; an idle worker that would recompute half its prompt or
 * more that another worker is computing now is told to wait (hold), and once
 * the pages are committed it takes the call with a pull. */
/* Two workers and a prefix in flight: w0 (kv0 pages) and w1 (1000 pages); the
 * 200-token prompt of seed 9, whose 12 full blocks w1 is computing (pending);
 * in-flight loads a on w1 and b on w0. The fixture holds the tasks the
 * workers point to, so it lives as long as the test. */
typedef struct {
    wkr_t *w0, *w1;
    uint64_t h[16];
    int nb;
    job_task a, b;
} pend_fixture;

static void pend_setup(pend_fixture *f, uint32_t kv0, int64_t load1, int64_t load0) {
    f->w0 = add_worker("w0", kv0, 512, ROOT);
    f->w1 = add_worker("w1", 1000, 512, ROOT);
    fill_prompt(9);
    f->nb = bh_prefix(ROOT, prompt, 200, BS, f->h);
    cr_assert_eq(f->nb, 12);
    sched_pending_add(sc, f->w1->slot, f->h, f->nb);
    f->a = (job_task){.load_tokens = load1};
    f->b = (job_task){.load_tokens = load0};
    wkr_inflight_add(f->w1, &f->a);
    wkr_inflight_add(f->w0, &f->b);
}

Test(sched, helium_follows_holds_then_pulls) {
    pend_fixture f;
    pend_setup(&f, 1000, 1500, 1000);
    wkr_t *w0 = f.w0, *w1 = f.w1;
    uint64_t *h = f.h;
    int nb = f.nb;
    sched_set_helium_split(sc, false); /* (helium_splits_a_group_when_its_worker_is_the_busier) */
    sched_choice ch;
    /* router: 8 + 1500 > 200 + 1000: it recomputes on w0 */
    cr_assert_eq(sched_place(sc, SCHED_ROUTER, prompt, 200, 8, &ch), 0);
    cr_assert_eq(ch.worker, w0);
    cr_assert(!ch.hold);
    /* helium: 8 + 375 < 200 + 250: it follows the prefix to w1 */
    cr_assert_eq(sched_place(sc, SCHED_HELIUM, prompt, 200, 8, &ch), 0);
    cr_assert_eq(ch.worker, w1);
    cr_assert_eq(ch.reuse_blocks, 12);
    cr_assert(!ch.hold);
    /* w0 goes idle: the idle-worker rule picks it, but it would recompute
     * the 12 blocks w1 is computing right now: hold */
    wkr_inflight_remove(w0, &f.b);
    cr_assert_eq(sched_place(sc, SCHED_HELIUM, prompt, 200, 8, &ch), 0);
    cr_assert_eq(ch.worker, w0);
    cr_assert(ch.hold);
    /* work-conserving variant: the idle worker recomputes at once */
    sched_set_helium_hold_idle(sc, false);
    cr_assert_eq(sched_place(sc, SCHED_HELIUM, prompt, 200, 8, &ch), 0);
    cr_assert_eq(ch.worker, w0);
    cr_assert(!ch.hold);
    cr_assert_eq(ch.reuse_blocks, 0);
    sched_set_helium_hold_idle(sc, true);
    /* the pages are committed on w1: w0 takes the call and pulls them */
    for (int i = 0; i < nb; i++) dir_add(dir, h[i], w1->slot);
    cr_assert_eq(sched_place(sc, SCHED_HELIUM, prompt, 200, 8, &ch), 0);
    cr_assert_eq(ch.worker, w0);
    cr_assert(!ch.hold);
    cr_assert_eq(ch.pull_from, w1);
    cr_assert_eq(ch.pull_blocks, 12);
    cr_assert_eq(sched_real_run(sc, w1->slot, h, nb), 12);
    cr_assert_eq(sched_real_run(sc, w0->slot, h, nb), 0);
    wkr_inflight_remove(w1, &f.a);
}

/* Whole groups of siblings cannot always balance the workers (five groups on
 * two): a sibling that would follow its prefix, still being computed, to the
 * busier worker waits instead when another worker would stay the lighter one
 * even with it and the pulled prefix added; once the prefix is committed,
 * routing sends it there with a pull. */
Test(sched, helium_splits_a_group_when_its_worker_is_the_busier) {
    pend_fixture f; /* 12 blocks, 8 tokens of its own + 8 to generate */
    pend_setup(&f, 1000, 1500, 1000);
    wkr_t *w0 = f.w0, *w1 = f.w1;
    uint64_t *h = f.h;
    int nb = f.nb;
    sched_choice ch;
    cr_assert_eq(sched_place(sc, SCHED_HELIUM, prompt, 200, 8, &ch), 0);
    cr_assert_eq(ch.worker, w1, "the pick follows the prefix");
    cr_assert(ch.hold && ch.split, "1000 + 16 + the pull < 1500: wait to move to w0");
    sched_set_helium_split(sc, false);
    cr_assert_eq(sched_place(sc, SCHED_HELIUM, prompt, 200, 8, &ch), 0);
    cr_assert(!ch.hold && !ch.split);
    sched_set_helium_split(sc, true);
    /* nearly even: the move would make w0 the busier one, so it follows */
    wkr_inflight_remove(w1, &f.a);
    job_task a2 = {.load_tokens = 1010};
    wkr_inflight_add(w1, &a2);
    cr_assert_eq(sched_place(sc, SCHED_HELIUM, prompt, 200, 8, &ch), 0);
    cr_assert_eq(ch.worker, w1);
    cr_assert(!ch.hold && !ch.split);
    /* the router baseline never splits */
    wkr_inflight_remove(w1, &a2);
    wkr_inflight_add(w1, &f.a);
    cr_assert_eq(sched_place(sc, SCHED_ROUTER, prompt, 200, 8, &ch), 0);
    cr_assert(!ch.split);
    /* committed on w1: w0 takes it with a pull */
    sched_pending_remove(sc, w1->slot, h, nb);
    for (int i = 0; i < nb; i++) dir_add(dir, h[i], w1->slot);
    cr_assert_eq(sched_place(sc, SCHED_HELIUM, prompt, 200, 8, &ch), 0);
    cr_assert_eq(ch.worker, w0);
    cr_assert(!ch.hold);
    cr_assert_eq(ch.pull_from, w1);
    cr_assert_eq(ch.pull_blocks, nb);
    wkr_inflight_remove(w1, &f.a);
    wkr_inflight_remove(w0, &f.b);
}

/* A prefix of a quarter of the other worker's KV or more is not copied there
 * to split a group: under KV pressure two copies evict what both need. */
Test(sched, helium_does_not_split_a_prefix_large_against_the_kv) {
    pend_fixture f;
    pend_setup(&f, 40, 1500, 1000); /* 12 pages are 30% of w0's KV */
    sched_choice ch;
    cr_assert_eq(sched_place(sc, SCHED_HELIUM, prompt, 200, 8, &ch), 0);
    cr_assert_eq(ch.worker, f.w1);
    cr_assert(!ch.hold && !ch.split);
    wkr_inflight_remove(f.w1, &f.a);
    wkr_inflight_remove(f.w0, &f.b);
}
