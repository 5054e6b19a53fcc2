/* bench/route: how fast the coordinator can place operators.
 *
 * Builds a realistic cluster-wide directory: 16 workers, 200 distinct system
 * prompts of 64-256 blocks (real chained block hashes over random tokens,
 * block size 16), each worker holding the leading part of a random subset of
 * those chains and of earlier operators' prompts, plus unrelated filler
 * blocks so the table has the size of 16 real KV caches (~30k pages each).
 * Then 1,000 queued operators (a system prompt followed by a unique suffix,
 * 32-512 blocks in all) are placed over and over: dir_match + route_pick per
 * decision, with the chosen worker's load and free pages updated as if the op
 * had been dispatched, and work draining at a steady rate.
 *
 * Prints decisions per second (cache-aware and cache-blind policies), the
 * cost of route_pick alone, and the cost of one dir_match against the length
 * of a fully matched prefix. Only timing; correctness lives in the unit tests
 * (tests/unit/test_dir_route.c). Run it through the bench/route script.
 */
#define _POSIX_C_SOURCE 200809L
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "blockhash.h"
#include "dir.h"
#include "route.h"

#define N_WORKERS 16
#define N_SYS 200
#define N_OPS 1000
#define BS 16
#define FILLER_PER_WORKER 30000
#define VOCAB 32000

static uint64_t rng = 0x9E3779B97F4A7C15ULL;
static uint64_t rnd(void) { /* xorshift64* */
    rng ^= rng >> 12;
    rng ^= rng << 25;
    rng ^= rng >> 27;
    return rng * 0x2545F4914F6CDD1DULL;
}
static int rnd_in(int lo, int hi) { return lo + (int)(rnd() % (uint64_t)(hi - lo + 1)); }

static double now_s(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

typedef struct {
    int n;           /* blocks */
    int32_t tokens;  /* prompt tokens (n * BS - a partial last block) */
    int32_t max_tokens;
    uint64_t *hashes; /* (n) */
} op_t;

typedef struct {
    double decisions_s;
    double reuse_frac;   /* reused prompt tokens / prompt tokens */
    double pull_frac;    /* decisions with a pull */
    double imb_frac;     /* decisions made by the load guard */
    double blocks_looked; /* mean chain length walked by dir_match */
    double none_frac;    /* decisions with no eligible worker */
} sim_result;

/* Places ops[] round-robin for about secs seconds. */
static sim_result simulate(const dir_t *d, const op_t *ops, const route_config *c, double secs) {
    route_worker ws[N_WORKERS];
    for (int i = 0; i < N_WORKERS; i++)
        ws[i] = (route_worker){.slot = i, .alive = true, .kv_blocks_avail = 40000, .load_tokens = 0,
                               .prefill_tok_s = 4000 + 250 * (i % 4), .link_bytes_s = 5e9};
    int32_t runs[DIR_MAX_WORKERS];
    route_decision dec;
    long n = 0, pulls = 0, imb = 0, none = 0;
    double reused = 0, prompt = 0, looked = 0;
    double t0 = now_s(), t1 = t0;
    while (t1 - t0 < secs) {
        for (int k = 0; k < 4096; k++, n++) {
            /* every 16 decisions, each worker finishes ~one op's worth of work
             * (4000 tokens, 400 pages; an op averages ~4.4k prompt tokens) */
            if ((n & 15) == 15)
                for (int i = 0; i < N_WORKERS; i++) {
                    ws[i].load_tokens = ws[i].load_tokens > 4000 ? ws[i].load_tokens - 4000 : 0;
                    ws[i].kv_blocks_avail = ws[i].kv_blocks_avail + 400 > 40000 ? 40000 : ws[i].kv_blocks_avail + 400;
                }
            const op_t *op = &ops[n % N_OPS];
            int best = dir_match(d, op->hashes, op->n, runs);
            looked += best < op->n ? best + 1 : op->n;
            int32_t need = (op->tokens + op->max_tokens + BS - 1) / BS;
            route_pick(c, ws, N_WORKERS, runs, op->tokens, BS, need, &dec);
            if (dec.worker < 0) {
                none++;
                continue;
            }
            route_worker *w = &ws[dec.worker];
            int32_t reuse = (dec.reuse_blocks + dec.pull_blocks) * BS;
            w->load_tokens += op->tokens - reuse + op->max_tokens;
            w->kv_blocks_avail -= need;
            reused += reuse;
            prompt += op->tokens;
            pulls += dec.pull_from >= 0;
            imb += dec.imbalanced;
        }
        t1 = now_s();
    }
    return (sim_result){.decisions_s = (double)n / (t1 - t0),
                        .reuse_frac = prompt > 0 ? reused / prompt : 0,
                        .pull_frac = (double)pulls / (double)n,
                        .imb_frac = (double)imb / (double)n,
                        .blocks_looked = looked / (double)n,
                        .none_frac = (double)none / (double)n};
}

/* The whole run, phase after phase (build the directory, place the queue
 * under each policy, route_pick alone, dir_match by prefix length): longer
 * than a function should be, but linear, and each phase prints its own
 * figures. */
int main(void) {
    uint64_t root = bh_root("bench-route", 11);
    dir_t *d = dir_new();
    if (!d) return 1;
    double tb = now_s();

    /* system prompts: tokens and hash chains */
    static int32_t sys_tok[N_SYS][256 * BS];
    static uint64_t sys_hash[N_SYS][256];
    static int sys_len[N_SYS];
    for (int s = 0; s < N_SYS; s++) {
        sys_len[s] = rnd_in(64, 256);
        for (int t = 0; t < sys_len[s] * BS; t++) sys_tok[s][t] = (int32_t)(rnd() % VOCAB);
        bh_prefix(root, sys_tok[s], sys_len[s] * BS, BS, sys_hash[s]);
    }
    /* operators: a system prompt (whole, or cut if the op is shorter) + a unique suffix */
    static op_t ops[N_OPS];
    static int32_t tok[512 * BS];
    long total_blocks = 0;
    for (int i = 0; i < N_OPS; i++) {
        int s = (int)(rnd() % N_SYS), n = rnd_in(32, 512);
        int keep = n < sys_len[s] ? n : sys_len[s];
        memcpy(tok, sys_tok[s], sizeof(int32_t) * (size_t)keep * BS);
        for (int t = keep * BS; t < n * BS; t++) tok[t] = (int32_t)(rnd() % VOCAB);
        ops[i].n = n;
        ops[i].tokens = n * BS - rnd_in(0, BS - 1);
        ops[i].max_tokens = rnd_in(16, 256);
        ops[i].hashes = malloc(sizeof(uint64_t) * (size_t)n);
        if (!ops[i].hashes) return 1;
        bh_prefix(root, tok, n * BS, BS, ops[i].hashes);
        total_blocks += n;
    }
    /* directory: each worker holds the head of ~30% of the system prompts,
     * the head of ~5% of the operators' chains, and filler */
    for (int w = 0; w < N_WORKERS; w++) {
        for (int s = 0; s < N_SYS; s++)
            if (rnd() % 100 < 30) {
                int k = rnd_in(1, sys_len[s]);
                for (int b = 0; b < k; b++) dir_add(d, sys_hash[s][b], w);
            }
        for (int i = 0; i < N_OPS; i++)
            if (rnd() % 100 < 5) {
                int k = rnd_in(1, ops[i].n);
                for (int b = 0; b < k; b++) dir_add(d, ops[i].hashes[b], w);
            }
        for (int f = 0; f < FILLER_PER_WORKER; f++) dir_add(d, rnd(), w);
    }
    size_t wb = 0;
    for (int w = 0; w < N_WORKERS; w++) wb += dir_worker_blocks(d, w);
    printf("setup: %d workers, %d system prompts, %d ops (%.0f blocks avg), directory %zu hashes / %zu "
           "worker-blocks, built in %.2f s\n",
           N_WORKERS, N_SYS, N_OPS, (double)total_blocks / N_OPS, dir_size(d), wb, now_s() - tb);

    route_config c;
    route_config_default(&c);
    c.page_bytes = (size_t)24 * 2 * BS * 1024 * sizeof(float); /* 24 layers, kv_dim 1024, f32 */

    printf("\n%-26s %12s %9s %8s %8s %8s %12s\n", "policy", "decisions/s", "reuse", "pulls", "guard", "none",
           "blocks/match");
    printf("(reuse: prompt tokens held or pulled; guard: decided by the load-imbalance guard; none: no eligible worker)\n");
    sim_result r = simulate(d, ops, &c, 2.0);
    printf("%-26s %12.0f %8.1f%% %7.1f%% %7.1f%% %7.1f%% %12.1f\n", "cache-aware + pull", r.decisions_s,
           100 * r.reuse_frac, 100 * r.pull_frac, 100 * r.imb_frac, 100 * r.none_frac, r.blocks_looked);
    route_config nc = c;
    nc.allow_pull = false;
    r = simulate(d, ops, &nc, 1.5);
    printf("%-26s %12.0f %8.1f%% %7.1f%% %7.1f%% %7.1f%% %12.1f\n", "cache-aware, no pull", r.decisions_s,
           100 * r.reuse_frac, 100 * r.pull_frac, 100 * r.imb_frac, 100 * r.none_frac, r.blocks_looked);
    route_config gc = nc;
    gc.imbalance_abs = 32768;
    r = simulate(d, ops, &gc, 1.5);
    printf("%-26s %12.0f %8.1f%% %7.1f%% %7.1f%% %7.1f%% %12.1f\n", "  same, imbalance_abs 32k", r.decisions_s,
           100 * r.reuse_frac, 100 * r.pull_frac, 100 * r.imb_frac, 100 * r.none_frac, r.blocks_looked);
    route_config bc = c;
    bc.cache_aware = false;
    r = simulate(d, ops, &bc, 1.5);
    printf("%-26s %12.0f %8.1f%% %7.1f%% %7.1f%% %7.1f%% %12.1f\n", "cache-blind (least load)", r.decisions_s,
           100 * r.reuse_frac, 100 * r.pull_frac, 100 * r.imb_frac, 100 * r.none_frac, r.blocks_looked);

    /* route_pick alone, on fixed runs */
    {
        route_worker ws[N_WORKERS];
        int32_t runs[DIR_MAX_WORKERS] = {0};
        for (int i = 0; i < N_WORKERS; i++) {
            ws[i] = (route_worker){.slot = i, .alive = true, .kv_blocks_avail = 40000,
                                   .load_tokens = 1000 * (i % 5), .prefill_tok_s = 4000, .link_bytes_s = 5e9};
            runs[i] = (int32_t)(rnd() % 200);
        }
        route_decision dec;
        long n = 0, sink = 0;
        double t0 = now_s(), t1 = t0;
        while (t1 - t0 < 0.5) {
            for (int k = 0; k < 100000; k++, n++) {
                ws[k & 15].load_tokens += 1;
                route_pick(&c, ws, N_WORKERS, runs, 4000, BS, 300, &dec);
                sink += dec.worker;
            }
            t1 = now_s();
        }
        printf("\nroute_pick alone (16 workers): %.0f ns/decision (%ld)\n", 1e9 * (t1 - t0) / (double)n,
               sink & 1);
    }

    /* dir_match cost against the length of a fully held prefix */
    printf("\n%-14s %14s %12s\n", "prefix blocks", "ns/dir_match", "ns/block");
    static const int lens[] = {16, 64, 256, 1024, 4096};
    static int32_t ctok[4096 * BS];
    static uint64_t chain[4096];
    for (int t = 0; t < 4096 * BS; t++) ctok[t] = (int32_t)(rnd() % VOCAB);
    bh_prefix(root, ctok, 4096 * BS, BS, chain);
    for (int b = 0; b < 4096; b++) {
        dir_add(d, chain[b], 2);
        dir_add(d, chain[b], 7);
        dir_add(d, chain[b], 11);
    }
    for (size_t li = 0; li < sizeof lens / sizeof lens[0]; li++) {
        int len = lens[li];
        int32_t runs[DIR_MAX_WORKERS];
        long reps = 8000000L / len, sink = 0;
        double t0 = now_s();
        for (long k = 0; k < reps; k++) sink += dir_match(d, chain, len, runs);
        double dt = now_s() - t0;
        if (sink != reps * len) {
            fprintf(stderr, "route bench: dir_match returned %ld, want %ld\n", sink, reps * len);
            return 1;
        }
        printf("%-14d %14.0f %12.2f\n", len, 1e9 * dt / (double)reps, 1e9 * dt / (double)reps / len);
    }

    for (int i = 0; i < N_OPS; i++) free(ops[i].hashes);
    dir_destroy(&d);
    return 0;
}
