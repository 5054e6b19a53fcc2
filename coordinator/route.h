/* route: where an LLM operator runs, and whether its prefix KV is pulled.
 *
 * Cost of running an operator on worker w, in token steps (the unit the
 * engine spends; lower is better):
 *
 *   cost(w) = prefill(w) + load_weight * load(w)
 *   prefill(w) = prompt_tokens - reuse(w)            tokens w must compute
 *   load(w)    = w's outstanding work in tokens (prefill still to compute +
 *                decode tokens still to generate, over its dispatched ops)
 *
 * reuse(w) is the prefix w already holds (directory run * block_size), or,
 * when pulling is allowed and a peer p holds a longer run, the peer's run if
 * moving the missing pages costs less than recomputing them:
 *   t_pull      = latency + missing_pages * page_bytes / link_bytes_per_s
 *   t_recompute = missing_tokens / prefill_tokens_per_s(w)
 * (both measured at run time; the pull's time is added to cost(w) as
 * t_pull * prefill_tokens_per_s(w) token steps). The link is the pair's:
 * when w and p share a KV transport (the same non-zero xport_group, e.g.
 * NCCL between two GPU workers) it is that transport's rate into w and its
 * fixed cost (xport_link_bytes_s, xport_latency_s), else ZeroMQ's.
 *
 * Guards: a worker is never chosen if its KV pages (free + reclaimable)
 * cannot hold prompt + max_tokens; and when the load is imbalanced
 * (max_load - min_load > imbalance_abs and max_load > imbalance_rel *
 * min_load, as in SGLang's router) the decision ignores cache affinity and
 * takes the least-loaded eligible worker, so a hot prefix can't pile all work
 * on one worker. Ties go to the lower load, then the lower slot.
 *
 * Starvation (starve_tokens > 0, used by the helium policy, which weighs load
 * lightly so siblings follow their shared prefix): while some eligible worker
 * has less than starve_tokens of work left, only such workers are candidates,
 * so no worker sits idle while another's queue holds work it could start now
 * (recomputing, or pulling, the prefix it lacks).
 */
#ifndef HELIUM_ROUTE_H
#define HELIUM_ROUTE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "dir.h"

typedef struct {
    int slot;                  /* directory slot of the worker */
    bool alive;
    int32_t kv_blocks_avail;   /* free + reclaimable pages (from heartbeats, minus pages reserved by dispatches since) */
    int64_t load_tokens;       /* outstanding work in tokens */
    double prefill_tok_s;      /* measured prefill speed; <= 0: unknown (use route_config default) */
    double link_bytes_s;       /* measured pull bandwidth into this worker; <= 0: unknown (use default) */
    uint32_t xport_group;      /* != 0: workers with the same value share a KV transport (pulls between them
                                  use it); 0: ZeroMQ only */
    double xport_link_bytes_s; /* measured transport bandwidth into this worker; <= 0: unknown (use default) */
} route_worker;

typedef struct {
    double load_weight;        /* default 1.0 */
    int64_t imbalance_abs;     /* tokens; default 4096 */
    double imbalance_rel;      /* default 1.5 */
    bool allow_pull;           /* consider KV transfer */
    bool cache_aware;          /* false: least-loaded only (baseline policy) */
    size_t page_bytes;         /* bytes of one KV page on the wire */
    double default_prefill_tok_s; /* default 500 */
    double default_link_bytes_s;  /* default 1e9 */
    double pull_latency_s;     /* default 0.002 */
    double default_xport_link_bytes_s; /* a KV transport's rate until measured; default 2e10 */
    double xport_latency_s;    /* a KV transport pull's fixed cost; default 0.005 */
    int64_t starve_tokens;     /* > 0: a worker whose load is below this is about to go idle, and the
                                  decision is made among such workers only (default 0: off) */
    /* a pair's own link model (links.h links_time): seconds for `bytes` from
     * slot src into slot dst (xport: over their shared transport), < 0 when
     * unknown; NULL: none (the per-worker rates and defaults price pulls) */
    double (*pair_time)(const void *ctx, int src, int dst, bool xport, double bytes);
    const void *pair_ctx;
} route_config;

typedef struct {
    int worker;                /* index into the workers array, or -1 if none eligible */
    int32_t reuse_blocks;      /* blocks the chosen worker already holds */
    int pull_from;             /* index of the peer to pull from, or -1 */
    int32_t pull_blocks;       /* pages to pull: blocks [reuse_blocks, reuse_blocks + pull_blocks) */
    double cost;               /* token steps */
    double t_pull_s, t_recompute_s; /* the estimates behind a pull decision (0 if none considered) */
    bool imbalanced;           /* the load guard decided */
} route_decision;

void route_config_default(route_config *c);

/* The transfer-or-recompute estimate for `missing` pages on worker w, from its
 * measured rates (or c's defaults): *t_pull = latency + pages * page_bytes /
 * link, *t_rec = tokens / prefill speed. Returns the prefill speed used. */
double route_pull_times(const route_config *c, const route_worker *w, int32_t missing, int32_t block_size,
                        double *t_pull, double *t_rec);

/* As route_pull_times, for a pull from worker p into worker w: the pair's
 * own fitted link (c->pair_time) once it has one, else over their shared
 * transport's link (rate and fixed cost) when they have one, else ZeroMQ's
 * (route_pull_times). p NULL: ZeroMQ. */
double route_pull_times_pair(const route_config *c, const route_worker *w, const route_worker *p, int32_t missing,
                             int32_t block_size, double *t_pull, double *t_rec);

/* Chooses a worker for a prompt whose block hashes' directory runs are in
 * runs[] (indexed by slot, from dir_match). n_blocks_needed = pages the
 * operator needs (prompt + max_tokens). O(n_workers^2) at most. */
void route_pick(const route_config *c, const route_worker *ws, int n_ws, const int32_t runs[DIR_MAX_WORKERS],
                int32_t prompt_tokens, int32_t block_size, int32_t n_blocks_needed, route_decision *out);

/* As route_pick, but a pull may only come from src_runs (the blocks peers
 * really hold), while runs (which may also count blocks a worker is computing
 * right now) decide what each worker reuses locally. A page another worker is
 * still computing can't be pulled yet; planning on it would silently turn into
 * a recompute. src_runs NULL: runs. */
void route_pick_src(const route_config *c, const route_worker *ws, int n_ws, const int32_t runs[DIR_MAX_WORKERS],
                    const int32_t src_runs[DIR_MAX_WORKERS], int32_t prompt_tokens, int32_t block_size,
                    int32_t n_blocks_needed, route_decision *out);

#endif
