/* Unit tests for the coordinator's KV prefix directory (dir) and router
 * (route). The directory stress test runs random add/remove/drop operations
 * against a shadow array that predicts every holder mask and block count;
 * the router tests pin down each clause of the cost model in route.h. */
#include <criterion/criterion.h>
#include <stdlib.h>
#include <string.h>

#include "dir.h"
#include "route.h"

/* ---- helpers ---- */

static uint64_t rng_state = 0x1234567887654321ULL;
static uint64_t rnd(void) { /* xorshift64*, deterministic */
    rng_state ^= rng_state >> 12;
    rng_state ^= rng_state << 25;
    rng_state ^= rng_state >> 27;
    return rng_state * 0x2545F4914F6CDD1DULL;
}

/* A chain of n distinct fake block hashes starting from seed. */
static void chain(uint64_t seed, uint64_t *out, int n) {
    for (int i = 0; i < n; i++) out[i] = seed * 1000003ULL + (uint64_t)i * 7919ULL + 1;
}

/* ---- dir ---- */

Test(dir, new_destroy_null_safe) {
    dir_destroy(NULL);
    dir_t *d = NULL;
    dir_destroy(&d);
    d = dir_new();
    cr_assert_not_null(d);
    cr_assert_eq(dir_size(d), 0);
    dir_destroy(&d);
    cr_assert_null(d);
}

Test(dir, add_remove_holders_counts) {
    dir_t *d = dir_new();
    dir_add(d, 42, 0);
    dir_add(d, 42, 3);
    dir_add(d, 42, 3); /* duplicate: no double count */
    dir_add(d, 7, 3);
    dir_add(d, 0, 63); /* key 0 and the top slot are valid */
    cr_assert_eq(dir_holders(d, 42), (1ULL << 0) | (1ULL << 3));
    cr_assert_eq(dir_holders(d, 7), 1ULL << 3);
    cr_assert_eq(dir_holders(d, 0), 1ULL << 63);
    cr_assert_eq(dir_holders(d, 8), 0);
    cr_assert_eq(dir_size(d), 3);
    cr_assert_eq(dir_worker_blocks(d, 0), 1);
    cr_assert_eq(dir_worker_blocks(d, 3), 2);
    cr_assert_eq(dir_worker_blocks(d, 63), 1);

    /* out-of-range slots are ignored */
    dir_add(d, 99, -1);
    dir_add(d, 99, DIR_MAX_WORKERS);
    cr_assert_eq(dir_holders(d, 99), 0);
    cr_assert_eq(dir_worker_blocks(d, DIR_MAX_WORKERS), 0);
    cr_assert_eq(dir_size(d), 3);

    dir_remove(d, 42, 0);
    cr_assert_eq(dir_holders(d, 42), 1ULL << 3);
    dir_remove(d, 42, 0); /* not a holder: no-op */
    dir_remove(d, 1234, 3); /* absent: no-op */
    cr_assert_eq(dir_worker_blocks(d, 0), 0);
    cr_assert_eq(dir_worker_blocks(d, 3), 2);
    dir_remove(d, 42, 3);
    cr_assert_eq(dir_holders(d, 42), 0);
    cr_assert_eq(dir_size(d), 2);
    cr_assert_eq(dir_worker_blocks(d, 3), 1);
    dir_remove(d, 0, 63);
    cr_assert_eq(dir_size(d), 1);
    cr_assert_eq(dir_holders(d, 7), 1ULL << 3);
    dir_destroy(&d);
}

Test(dir, grow_many_hashes_then_remove_half) {
    dir_t *d = dir_new();
    enum { N = 200000 };
    for (uint64_t k = 0; k < N; k++) dir_add(d, k, (int)(k % 64));
    cr_assert_eq(dir_size(d), N);
    for (int w = 0; w < 64; w++) cr_assert_eq(dir_worker_blocks(d, w), N / 64 + (w < N % 64), "w=%d", w);
    for (uint64_t k = 0; k < N; k++) cr_assert_eq(dir_holders(d, k), 1ULL << (k % 64), "k=%lu", (unsigned long)k);
    /* remove the even keys: backward shifts across many clusters */
    for (uint64_t k = 0; k < N; k += 2) dir_remove(d, k, (int)(k % 64));
    cr_assert_eq(dir_size(d), N / 2);
    for (uint64_t k = 0; k < N; k++) {
        uint64_t want = (k & 1) ? 1ULL << (k % 64) : 0;
        cr_assert_eq(dir_holders(d, k), want, "k=%lu", (unsigned long)k);
    }
    dir_destroy(&d);
}

Test(dir, drop_worker) {
    dir_t *d = dir_new();
    enum { N = 5000 };
    for (uint64_t k = 0; k < N; k++) {
        dir_add(d, k * 0x9E3779B97F4A7C15ULL, 5);
        if (k % 3 == 0) dir_add(d, k * 0x9E3779B97F4A7C15ULL, 9);
    }
    dir_drop_worker(d, 5);
    cr_assert_eq(dir_worker_blocks(d, 5), 0);
    cr_assert_eq(dir_worker_blocks(d, 9), (N + 2) / 3);
    cr_assert_eq(dir_size(d), (N + 2) / 3);
    for (uint64_t k = 0; k < N; k++)
        cr_assert_eq(dir_holders(d, k * 0x9E3779B97F4A7C15ULL), k % 3 == 0 ? 1ULL << 9 : 0);
    dir_drop_worker(d, 9);
    dir_drop_worker(d, 9);
    dir_drop_worker(d, 70); /* ignored */
    cr_assert_eq(dir_size(d), 0);
    /* still usable after being emptied */
    dir_add(d, 1, 1);
    cr_assert_eq(dir_holders(d, 1), 2);
    dir_destroy(&d);
}

/* Random add/remove/drop against a shadow mask per key. Keys are random
 * 64-bit values plus runs of consecutive ones (long probe clusters). */
Test(dir, random_ops_match_shadow) {
    enum { K = 6000, OPS = 120000, W = 12 };
    static uint64_t keys[K], shadow[K];
    rng_state = 0xC0FFEEULL;
    for (int i = 0; i < K; i++) keys[i] = (i < K / 2) ? rnd() : (uint64_t)(i - K / 2);
    memset(shadow, 0, sizeof shadow);
    dir_t *d = dir_new();
    for (int op = 0; op < OPS; op++) {
        uint64_t r = rnd();
        int i = (int)(r % K), w = (int)((r >> 20) % W), kind = (int)((r >> 40) % 100);
        if (kind < 55) {
            dir_add(d, keys[i], w);
            shadow[i] |= 1ULL << w;
        } else if (kind < 99) {
            dir_remove(d, keys[i], w);
            shadow[i] &= ~(1ULL << w);
        } else if ((r >> 50) % 8 == 0) {
            dir_drop_worker(d, w);
            for (int j = 0; j < K; j++) shadow[j] &= ~(1ULL << w);
        }
        if (op % 10000 == 9999) {
            size_t live = 0, blocks[W] = {0};
            for (int j = 0; j < K; j++) {
                cr_assert_eq(dir_holders(d, keys[j]), shadow[j], "op %d key %d", op, j);
                live += shadow[j] != 0;
                for (int x = 0; x < W; x++) blocks[x] += (shadow[j] >> x) & 1;
            }
            cr_assert_eq(dir_size(d), live);
            for (int x = 0; x < W; x++) cr_assert_eq(dir_worker_blocks(d, x), blocks[x]);
        }
    }
    dir_destroy(&d);
}

Test(dir, match_chains_and_partial_runs) {
    dir_t *d = dir_new();
    uint64_t h[12];
    chain(1, h, 12);
    for (int i = 0; i < 10; i++) dir_add(d, h[i], 0);  /* 0..9 */
    for (int i = 0; i < 5; i++) dir_add(d, h[i], 1);   /* 0..4 */
    for (int i = 0; i < 10; i++) dir_add(d, h[i], 2);  /* 0..9 and 11 (gap at 10) */
    dir_add(d, h[11], 2);
    for (int i = 1; i < 10; i++) dir_add(d, h[i], 3);  /* misses block 0 */
    int32_t runs[DIR_MAX_WORKERS];
    memset(runs, 0x55, sizeof runs);
    cr_assert_eq(dir_match(d, h, 12, runs), 10);
    cr_assert_eq(runs[0], 10);
    cr_assert_eq(runs[1], 5);
    cr_assert_eq(runs[2], 10);
    cr_assert_eq(runs[3], 0);
    for (int w = 4; w < DIR_MAX_WORKERS; w++) cr_assert_eq(runs[w], 0, "w=%d", w);

    /* a shorter query: runs capped at n */
    cr_assert_eq(dir_match(d, h, 3, runs), 3);
    cr_assert_eq(runs[0], 3);
    cr_assert_eq(runs[1], 3);
    cr_assert_eq(runs[3], 0);

    /* removing a middle block cuts the run there */
    dir_remove(d, h[2], 0);
    cr_assert_eq(dir_match(d, h, 12, runs), 10);
    cr_assert_eq(runs[0], 2);
    cr_assert_eq(runs[2], 10);

    /* an unknown chain and an empty one */
    uint64_t other[4];
    chain(99, other, 4);
    cr_assert_eq(dir_match(d, other, 4, runs), 0);
    for (int w = 0; w < DIR_MAX_WORKERS; w++) cr_assert_eq(runs[w], 0);
    runs[0] = 7;
    cr_assert_eq(dir_match(d, h, 0, runs), 0);
    cr_assert_eq(runs[0], 0);

    /* dropping a worker removes it from matches */
    dir_drop_worker(d, 2);
    cr_assert_eq(dir_match(d, h, 12, runs), 5);
    cr_assert_eq(runs[2], 0);
    cr_assert_eq(runs[1], 5);
    dir_destroy(&d);
}

Test(dir, match_64_workers) {
    dir_t *d = dir_new();
    uint64_t h[64];
    chain(7, h, 64);
    /* worker w holds the first w+1 blocks */
    for (int w = 0; w < 64; w++)
        for (int i = 0; i <= w; i++) dir_add(d, h[i], w);
    int32_t runs[DIR_MAX_WORKERS];
    cr_assert_eq(dir_match(d, h, 64, runs), 64);
    for (int w = 0; w < 64; w++) cr_assert_eq(runs[w], w + 1, "w=%d", w);
    cr_assert_eq(dir_holders(d, h[0]), ~0ULL);
    cr_assert_eq(dir_worker_blocks(d, 63), 64);
    dir_destroy(&d);
}

/* slots past 63 (the mask's second word): matches, holds, counts and drops */
Test(dir, match_all_slots) {
    dir_t *d = dir_new();
    enum { N = DIR_MAX_WORKERS };
    static uint64_t h[N];
    chain(13, h, N);
    /* worker w holds the first w+1 blocks */
    for (int w = 0; w < N; w++)
        for (int i = 0; i <= w; i++) dir_add(d, h[i], w);
    int32_t runs[DIR_MAX_WORKERS];
    cr_assert_eq(dir_match(d, h, N, runs), N);
    for (int w = 0; w < N; w++) cr_assert_eq(runs[w], w + 1, "w=%d", w);
    cr_assert(dir_holds(d, h[0], N - 1));
    cr_assert(dir_holds(d, h[64], 64));
    cr_assert(!dir_holds(d, h[65], 64));
    cr_assert(!dir_holds(d, h[0], N)); /* out of range */
    cr_assert_eq(dir_holders(d, h[0]), ~0ULL); /* slots 0..63 only */
    cr_assert_eq(dir_holders(d, h[100]), 0);
    cr_assert_eq(dir_worker_blocks(d, N - 1), (size_t)N);
    dir_drop_worker(d, N - 1); /* h[N-1] had only this holder */
    cr_assert_eq(dir_size(d), (size_t)N - 1);
    cr_assert_eq(dir_match(d, h, N, runs), N - 1);
    cr_assert_eq(runs[N - 1], 0);
    cr_assert_eq(runs[N - 2], N - 1);
    dir_remove(d, h[70], 100);
    cr_assert_eq(dir_match(d, h, N, runs), N - 1);
    cr_assert_eq(runs[100], 70);
    cr_assert_eq(runs[64], 65);
    dir_destroy(&d);
}

Test(dir, match_long_chain_fully_held) {
    dir_t *d = dir_new();
    enum { N = 4096 };
    static uint64_t h[N];
    chain(11, h, N);
    for (int i = 0; i < N; i++) dir_add(d, h[i], 4);
    for (int i = 0; i < N / 2; i++) dir_add(d, h[i], 8);
    int32_t runs[DIR_MAX_WORKERS];
    cr_assert_eq(dir_match(d, h, N, runs), N);
    cr_assert_eq(runs[4], N);
    cr_assert_eq(runs[8], N / 2);
    dir_destroy(&d);
}

/* ---- route ---- */

/* n idle workers, slot = index, plenty of KV, default speeds. */
static void workers(route_worker *ws, int n) {
    for (int i = 0; i < n; i++)
        ws[i] = (route_worker){.slot = i, .alive = true, .kv_blocks_avail = 1000, .load_tokens = 0};
}

static route_config cfg(void) {
    route_config c;
    route_config_default(&c);
    c.page_bytes = 1 << 20;
    return c;
}

Test(route, config_defaults) {
    route_config c;
    memset(&c, 0xff, sizeof c);
    route_config_default(&c);
    cr_assert_float_eq(c.load_weight, 1.0, 1e-12);
    cr_assert_eq(c.imbalance_abs, 4096);
    cr_assert_float_eq(c.imbalance_rel, 1.5, 1e-12);
    cr_assert(c.cache_aware);
    cr_assert_float_eq(c.default_prefill_tok_s, 500.0, 1e-9);
    cr_assert_float_eq(c.default_link_bytes_s, 1e9, 1);
    cr_assert_float_eq(c.pull_latency_s, 0.002, 1e-12);
}

Test(route, prefers_the_holder) {
    route_config c = cfg();
    c.allow_pull = false;
    route_worker ws[3];
    workers(ws, 3);
    int32_t runs[DIR_MAX_WORKERS] = {0};
    runs[1] = 8;
    runs[2] = 3;
    route_decision d;
    route_pick(&c, ws, 3, runs, 160, 16, 12, &d);
    cr_assert_eq(d.worker, 1);
    cr_assert_eq(d.reuse_blocks, 8);
    cr_assert_eq(d.pull_from, -1);
    cr_assert_eq(d.pull_blocks, 0);
    cr_assert_float_eq(d.cost, 160 - 128, 1e-9);
    cr_assert(!d.imbalanced);

    /* a modest load on the holder is worth its cache: 32 + 60 < 160 - 48 */
    ws[1].load_tokens = 60;
    route_pick(&c, ws, 3, runs, 160, 16, 12, &d);
    cr_assert_eq(d.worker, 1);
    cr_assert_float_eq(d.cost, 92, 1e-9);
    /* ... a larger one is not: 32 + 200 > 160 - 48 + 0 */
    ws[1].load_tokens = 200;
    route_pick(&c, ws, 3, runs, 160, 16, 12, &d);
    cr_assert_eq(d.worker, 2);
    cr_assert_eq(d.reuse_blocks, 3);
}

Test(route, run_capped_to_leave_one_token) {
    route_config c = cfg();
    route_worker ws[2];
    workers(ws, 2);
    int32_t runs[DIR_MAX_WORKERS] = {0};
    runs[0] = 8; /* the whole 128-token prompt */
    route_decision d;
    route_pick(&c, ws, 2, runs, 128, 16, 10, &d);
    cr_assert_eq(d.worker, 0);
    cr_assert_eq(d.reuse_blocks, 7);
    cr_assert_float_eq(d.cost, 16, 1e-9);
}

Test(route, imbalance_guard_overrides) {
    route_config c = cfg();
    c.allow_pull = false;
    route_worker ws[3];
    workers(ws, 3);
    ws[0].load_tokens = 10000;
    ws[1].load_tokens = 300;
    ws[2].load_tokens = 200;
    int32_t runs[DIR_MAX_WORKERS] = {0};
    runs[0] = 60;
    route_decision d;
    route_pick(&c, ws, 3, runs, 1000, 16, 70, &d);
    cr_assert(d.imbalanced);
    cr_assert_eq(d.worker, 2);
    cr_assert_eq(d.reuse_blocks, 0);

    /* a big absolute gap that is not a big ratio is not imbalance:
     * 20000 vs 15000 (gap 5000 > 4096 but 20000 < 1.5 * 15000) */
    ws[0].load_tokens = 20000;
    ws[1].load_tokens = 15000;
    ws[2].load_tokens = 15000;
    runs[0] = 0;
    runs[1] = 62;
    route_pick(&c, ws, 3, runs, 1000, 16, 70, &d);
    cr_assert(!d.imbalanced);
    cr_assert_eq(d.worker, 1);
    cr_assert_eq(d.reuse_blocks, 62);

    /* a big ratio with a small gap is not imbalance either */
    ws[0].load_tokens = 3000;
    ws[1].load_tokens = 1000;
    ws[2].load_tokens = 100;
    route_pick(&c, ws, 3, runs, 1000, 16, 70, &d);
    cr_assert(!d.imbalanced);
    cr_assert_eq(d.worker, 1); /* 8 + 1000 < 1000 + 100 */
}

Test(route, capacity_guard_excludes) {
    route_config c = cfg();
    c.allow_pull = false;
    route_worker ws[3];
    workers(ws, 3);
    ws[1].kv_blocks_avail = 20; /* the holder can't fit 70 pages */
    ws[2].load_tokens = 50;
    int32_t runs[DIR_MAX_WORKERS] = {0};
    runs[1] = 60;
    route_decision d;
    route_pick(&c, ws, 3, runs, 1000, 16, 70, &d);
    cr_assert_eq(d.worker, 0);
    cr_assert_eq(d.reuse_blocks, 0);

    /* exactly enough is enough */
    ws[1].kv_blocks_avail = 70;
    route_pick(&c, ws, 3, runs, 1000, 16, 70, &d);
    cr_assert_eq(d.worker, 1);

    /* an overloaded worker that can't fit is not part of the imbalance test */
    ws[0].kv_blocks_avail = 0;
    ws[0].load_tokens = 100000;
    route_pick(&c, ws, 3, runs, 1000, 16, 70, &d);
    cr_assert(!d.imbalanced);
    cr_assert_eq(d.worker, 1);
}

Test(route, none_eligible) {
    route_config c = cfg();
    route_worker ws[3];
    workers(ws, 3);
    ws[0].alive = false;
    ws[1].kv_blocks_avail = 5;
    ws[2].kv_blocks_avail = 9;
    int32_t runs[DIR_MAX_WORKERS] = {0};
    runs[0] = 4;
    route_decision d;
    route_pick(&c, ws, 3, runs, 160, 16, 10, &d);
    cr_assert_eq(d.worker, -1);
    cr_assert_eq(d.pull_from, -1);
    route_pick(&c, ws, 0, runs, 160, 16, 10, &d);
    cr_assert_eq(d.worker, -1);
    /* a dead worker is never chosen even if it has room and the cache */
    ws[0].alive = false;
    ws[1].kv_blocks_avail = 1000;
    route_pick(&c, ws, 3, runs, 160, 16, 10, &d);
    cr_assert_eq(d.worker, 1);
    cr_assert_eq(d.reuse_blocks, 0);
    cr_assert_eq(d.pull_from, -1); /* a dead peer is no pull source */
}

Test(route, pull_when_link_fast_and_prefill_slow) {
    route_config c = cfg();
    route_worker ws[2];
    workers(ws, 2);
    ws[0].kv_blocks_avail = 10; /* alive holder that can't run it */
    ws[1].prefill_tok_s = 100;
    ws[1].link_bytes_s = 1e10;
    int32_t runs[DIR_MAX_WORKERS] = {0};
    runs[0] = 20;
    runs[1] = 5;
    route_decision d;
    route_pick(&c, ws, 2, runs, 400, 16, 30, &d);
    cr_assert_eq(d.worker, 1);
    cr_assert_eq(d.pull_from, 0);
    cr_assert_eq(d.reuse_blocks, 5);
    cr_assert_eq(d.pull_blocks, 15);
    double t_pull = 0.002 + 15.0 * (1 << 20) / 1e10;
    cr_assert_float_eq(d.t_pull_s, t_pull, 1e-12);
    cr_assert_float_eq(d.t_recompute_s, 15.0 * 16 / 100, 1e-12);
    cr_assert_float_eq(d.cost, (400 - 320) + t_pull * 100, 1e-9);
}

Test(route, recompute_when_link_slow) {
    route_config c = cfg();
    route_worker ws[2];
    workers(ws, 2);
    ws[0].kv_blocks_avail = 10;
    ws[1].prefill_tok_s = 100;
    ws[1].link_bytes_s = 1e6; /* 15 MiB at 1 MB/s: ~15.7 s > 2.4 s */
    int32_t runs[DIR_MAX_WORKERS] = {0};
    runs[0] = 20;
    runs[1] = 5;
    route_decision d;
    route_pick(&c, ws, 2, runs, 400, 16, 30, &d);
    cr_assert_eq(d.worker, 1);
    cr_assert_eq(d.pull_from, -1);
    cr_assert_eq(d.pull_blocks, 0);
    cr_assert_eq(d.reuse_blocks, 5);
    cr_assert_gt(d.t_pull_s, d.t_recompute_s); /* estimates kept for the logs */
    cr_assert_float_eq(d.t_recompute_s, 2.4, 1e-12);
    cr_assert_float_eq(d.cost, 400 - 80, 1e-9);

    /* pulling disabled, or an unknown page size: never a pull, no estimates */
    ws[1].link_bytes_s = 1e10;
    c.allow_pull = false;
    route_pick(&c, ws, 2, runs, 400, 16, 30, &d);
    cr_assert_eq(d.pull_from, -1);
    cr_assert_float_eq(d.t_pull_s, 0, 1e-12);
    c.allow_pull = true;
    c.page_bytes = 0;
    route_pick(&c, ws, 2, runs, 400, 16, 30, &d);
    cr_assert_eq(d.pull_from, -1);
}

Test(route, pull_beats_queueing_behind_busy_holder) {
    route_config c = cfg();
    c.page_bytes = 100000;
    route_worker ws[2];
    workers(ws, 2);
    ws[0].load_tokens = 2000; /* gap 2000 < 4096: no imbalance */
    int32_t runs[DIR_MAX_WORKERS] = {0};
    runs[0] = 60;
    route_decision d;
    route_pick(&c, ws, 2, runs, 1000, 16, 70, &d);
    cr_assert(!d.imbalanced);
    cr_assert_eq(d.worker, 1);
    cr_assert_eq(d.pull_from, 0);
    cr_assert_eq(d.pull_blocks, 60);
    cr_assert_float_eq(d.cost, 40 + (0.002 + 60 * 1e5 / 1e9) * 500, 1e-9);
    /* without pulls: recompute everything on the idle worker (1000 < 2040) ... */
    c.allow_pull = false;
    route_pick(&c, ws, 2, runs, 1000, 16, 70, &d);
    cr_assert_eq(d.worker, 1);
    cr_assert_eq(d.pull_from, -1);
    cr_assert_float_eq(d.cost, 1000, 1e-9);
    /* ... unless the holder's queue is shorter than the recompute (540 < 1000) */
    ws[0].load_tokens = 500;
    route_pick(&c, ws, 2, runs, 1000, 16, 70, &d);
    cr_assert_eq(d.worker, 0);
    cr_assert_float_eq(d.cost, 540, 1e-9);
}

Test(route, imbalanced_still_pulls_to_least_loaded) {
    route_config c = cfg();
    c.page_bytes = 100000;
    route_worker ws[2];
    workers(ws, 2);
    ws[0].load_tokens = 50000;
    int32_t runs[DIR_MAX_WORKERS] = {0};
    runs[0] = 60;
    route_decision d;
    route_pick(&c, ws, 2, runs, 1000, 16, 70, &d);
    cr_assert(d.imbalanced);
    cr_assert_eq(d.worker, 1);
    cr_assert_eq(d.pull_from, 0);
}

Test(route, cache_blind_picks_least_loaded) {
    route_config c = cfg();
    c.cache_aware = false;
    route_worker ws[3];
    workers(ws, 3);
    ws[0].load_tokens = 10;
    ws[1].load_tokens = 5;
    ws[2].load_tokens = 5;
    int32_t runs[DIR_MAX_WORKERS] = {0};
    runs[0] = 60;
    runs[2] = 4;
    route_decision d;
    route_pick(&c, ws, 3, runs, 1000, 16, 70, &d);
    cr_assert_eq(d.worker, 1);
    cr_assert_eq(d.reuse_blocks, 0);
    cr_assert_eq(d.pull_from, -1);
    cr_assert(!d.imbalanced);
    ws[1].load_tokens = 6;
    route_pick(&c, ws, 3, runs, 1000, 16, 70, &d);
    cr_assert_eq(d.worker, 2);
    cr_assert_eq(d.reuse_blocks, 4); /* reported, so the forgone reuse can be counted */
    cr_assert_float_eq(d.cost, 1000 - 64 + 5, 1e-9);
}

Test(route, deterministic_ties) {
    route_config c = cfg();
    c.allow_pull = false;
    route_worker ws[4];
    workers(ws, 4);
    int32_t runs[DIR_MAX_WORKERS] = {0};
    route_decision d;
    route_pick(&c, ws, 4, runs, 100, 16, 8, &d);
    cr_assert_eq(d.worker, 0);
    for (int k = 0; k < 3; k++) { /* same answer every time */
        route_decision e;
        route_pick(&c, ws, 4, runs, 100, 16, 8, &e);
        cr_assert_eq(e.worker, d.worker);
    }
    /* equal cost: the lower load wins (holder of 2 blocks with 32 tokens of load) */
    runs[3] = 2;
    ws[3].load_tokens = 32;
    route_pick(&c, ws, 4, runs, 100, 16, 8, &d);
    cr_assert_eq(d.worker, 0);
    /* equal cost and load: the lower slot wins, whatever the array order */
    runs[3] = 0;
    ws[3].load_tokens = 0;
    ws[0].slot = 9;
    ws[1].slot = 7;
    ws[2].slot = 3;
    ws[3].slot = 5;
    route_pick(&c, ws, 4, runs, 100, 16, 8, &d);
    cr_assert_eq(d.worker, 2);
    /* two equal holders: the pull source is the lower slot; the puller is unique */
    c.allow_pull = true;
    workers(ws, 3);
    ws[0].kv_blocks_avail = ws[1].kv_blocks_avail = 1;
    runs[0] = runs[1] = 5;
    route_pick(&c, ws, 3, runs, 100, 16, 8, &d);
    cr_assert_eq(d.worker, 2);
    cr_assert_eq(d.pull_from, 0);
}

Test(route, slots_out_of_range_count_as_no_cache) {
    route_config c = cfg();
    route_worker ws[2];
    workers(ws, 2);
    ws[0].slot = 200;
    int32_t runs[DIR_MAX_WORKERS] = {0};
    runs[1] = 3;
    route_decision d;
    route_pick(&c, ws, 2, runs, 100, 16, 8, &d);
    cr_assert_eq(d.worker, 1);
    cr_assert_eq(d.reuse_blocks, 3);
}

/* A prefix a worker is still computing (pending) counts as its own reuse but
 * can't be pulled by another: the pull plan comes from what peers really hold. */
Test(route, no_pull_from_pages_still_being_computed) {
    route_config c = cfg();
    c.page_bytes = 1024; /* pulls are cheap */
    route_worker ws[2];
    workers(ws, 2);
    ws[0].load_tokens = 2000; /* busy computing the 90-block prefix */
    int32_t runs[DIR_MAX_WORKERS] = {0}, real[DIR_MAX_WORKERS] = {0};
    runs[0] = 90; /* pending on worker 0, nowhere cached */
    route_decision d;
    /* planning on the pending run, worker 1 would "pull" it */
    route_pick(&c, ws, 2, runs, 1500, 16, 100, &d);
    cr_assert_eq(d.worker, 1);
    cr_assert_eq(d.pull_from, 0);
    /* from what is really held, worker 1 must recompute: 1500 + 0 > 60 + 2000? no: 1500 < 2060 */
    route_pick_src(&c, ws, 2, runs, real, 1500, 16, 100, &d);
    cr_assert_eq(d.worker, 1);
    cr_assert_eq(d.pull_from, -1);
    cr_assert_eq(d.reuse_blocks, 0);
    cr_assert_float_eq(d.cost, 1500, 1e-9);
    /* with a light load weight the sibling follows its prefix instead */
    c.load_weight = 0.25;
    route_pick_src(&c, ws, 2, runs, real, 1500, 16, 100, &d);
    cr_assert_eq(d.worker, 0);
    cr_assert_eq(d.reuse_blocks, 90);
    cr_assert_float_eq(d.cost, 60 + 500, 1e-9);
    /* once worker 0 has committed the pages, worker 1 may pull them */
    real[0] = 90;
    c.load_weight = 1.0;
    route_pick_src(&c, ws, 2, runs, real, 1500, 16, 100, &d);
    cr_assert_eq(d.worker, 1);
    cr_assert_eq(d.pull_from, 0);
    cr_assert_eq(d.pull_blocks, 90);
}

/* starve_tokens: a worker about to go idle takes the call even without its prefix. */
Test(route, starving_worker_is_fed) {
    route_config c = cfg();
    c.allow_pull = false;
    c.load_weight = 0.25;
    route_worker ws[2];
    workers(ws, 2);
    ws[0].load_tokens = 1000;
    ws[1].load_tokens = 100;
    int32_t runs[DIR_MAX_WORKERS] = {0};
    runs[0] = 60;
    route_decision d;
    route_pick(&c, ws, 2, runs, 1000, 16, 70, &d);
    cr_assert_eq(d.worker, 0); /* 40 + 250 < 1000 + 25 */
    c.starve_tokens = 512;
    route_pick(&c, ws, 2, runs, 1000, 16, 70, &d);
    cr_assert_eq(d.worker, 1);
    cr_assert_eq(d.reuse_blocks, 0);
    /* both busy: affinity again */
    ws[1].load_tokens = 600;
    route_pick(&c, ws, 2, runs, 1000, 16, 70, &d);
    cr_assert_eq(d.worker, 0);
}
