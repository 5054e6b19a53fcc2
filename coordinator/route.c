/* route: the coordinator's placement decision for one LLM operator (see
 * route.h for the cost model and the guards).
 *
 * Pure function of its inputs: no state, no allocation, deterministic (ties
 * are broken by load, then slot, then array index). Runs are capped at
 * (prompt_tokens - 1) / block_size blocks because the engine always leaves at
 * least one prompt token to compute (worker/engine.c match_prefix), so a
 * longer run buys nothing and a page past that cap is never worth pulling.
 * A pull is only considered when page_bytes > 0 (the page size is known).
 */
#include "route.h"

#include <string.h>

void route_config_default(route_config *c) {
    memset(c, 0, sizeof *c);
    c->load_weight = 1.0;
    c->imbalance_abs = 4096;
    c->imbalance_rel = 1.5;
    c->allow_pull = true;
    c->cache_aware = true;
    c->page_bytes = 0; /* the coordinator sets it from the registered model */
    c->default_prefill_tok_s = 500.0;
    c->default_link_bytes_s = 1e9;
    c->pull_latency_s = 0.002;
    c->default_xport_link_bytes_s = 2e10;
    c->xport_latency_s = 0.005;
}

/* One way of running the operator on a worker. */
typedef struct {
    double cost;
    int32_t reuse;       /* blocks already held */
    int pull_from;       /* -1: none */
    int32_t pull_blocks;
    double t_pull, t_rec;
} option;

static double rate(double measured, double dflt, double fallback) {
    if (measured > 0) return measured;
    return dflt > 0 ? dflt : fallback;
}

double route_pull_times(const route_config *c, const route_worker *w, int32_t missing, int32_t block_size,
                        double *t_pull, double *t_rec) {
    double pf = rate(w->prefill_tok_s, c->default_prefill_tok_s, 500.0);
    double link = rate(w->link_bytes_s, c->default_link_bytes_s, 1e9);
    *t_pull = c->pull_latency_s + (double)missing * (double)c->page_bytes / link;
    *t_rec = (double)missing * (double)block_size / pf;
    return pf;
}

double route_pull_times_pair(const route_config *c, const route_worker *w, const route_worker *p, int32_t missing,
                             int32_t block_size, double *t_pull, double *t_rec) {
    double pf = route_pull_times(c, w, missing, block_size, t_pull, t_rec);
    bool xport = p && p != w && w->xport_group != 0 && p->xport_group == w->xport_group;
    if (xport) {
        double link = rate(w->xport_link_bytes_s, c->default_xport_link_bytes_s, 2e10);
        *t_pull = c->xport_latency_s + (double)missing * (double)c->page_bytes / link;
    }
    if (p && p != w && c->pair_time) {
        double t = c->pair_time(c->pair_ctx, p->slot, w->slot, xport, (double)missing * (double)c->page_bytes);
        if (t >= 0) *t_pull = t;
    }
    return pf;
}

static int32_t run_of(const route_worker *w, const int32_t runs[DIR_MAX_WORKERS], int32_t cap) {
    if (w->slot < 0 || w->slot >= DIR_MAX_WORKERS) return 0;
    int32_t r = runs[w->slot];
    if (r < 0) r = 0;
    return r > cap ? cap : r;
}

/* a before b in the tie order: lower load, then lower slot, then lower index. */
static bool tie_before(const route_worker *ws, int a, int b) {
    if (ws[a].load_tokens != ws[b].load_tokens) return ws[a].load_tokens < ws[b].load_tokens;
    if (ws[a].slot != ws[b].slot) return ws[a].slot < ws[b].slot;
    return a < b;
}

/* Cost of running on w, keeping what it holds or (if p >= 0 and pull_ok)
 * pulling p's longer run when that beats recomputing the missing pages. */
static option evaluate(const route_config *c, const route_worker *ws, int w, int p, bool pull_ok,
                       const int32_t runs[DIR_MAX_WORKERS], const int32_t src[DIR_MAX_WORKERS], int32_t cap,
                       int32_t prompt_tokens, int32_t block_size) {
    option o = {.pull_from = -1};
    const route_worker *x = &ws[w];
    double load = c->load_weight * (double)x->load_tokens;
    o.reuse = run_of(x, runs, cap);
    o.cost = (double)(prompt_tokens - o.reuse * block_size) + load;
    if (!pull_ok || p < 0 || p == w) return o;
    int32_t prun = run_of(&ws[p], src, cap);
    if (prun <= o.reuse) return o;
    int32_t missing = prun - o.reuse;
    double pf = route_pull_times_pair(c, x, &ws[p], missing, block_size, &o.t_pull, &o.t_rec);
    if (o.t_pull < o.t_rec) {
        double cost = (double)(prompt_tokens - prun * block_size) + o.t_pull * pf + load;
        if (cost < o.cost) {
            o.cost = cost;
            o.pull_from = p;
            o.pull_blocks = missing;
        }
    }
    return o;
}

void route_pick(const route_config *c, const route_worker *ws, int n_ws, const int32_t runs[DIR_MAX_WORKERS],
                int32_t prompt_tokens, int32_t block_size, int32_t n_blocks_needed, route_decision *out) {
    route_pick_src(c, ws, n_ws, runs, runs, prompt_tokens, block_size, n_blocks_needed, out);
}

void route_pick_src(const route_config *c, const route_worker *ws, int n_ws, const int32_t runs[DIR_MAX_WORKERS],
                    const int32_t src_runs[DIR_MAX_WORKERS], int32_t prompt_tokens, int32_t block_size,
                    int32_t n_blocks_needed, route_decision *out) {
    memset(out, 0, sizeof *out);
    if (!src_runs) src_runs = runs;
    out->worker = -1;
    out->pull_from = -1;
    if (!c || !ws || n_ws <= 0 || !runs) return;
    if (prompt_tokens < 0) prompt_tokens = 0;
    int32_t cap = (prompt_tokens > 0 && block_size > 0) ? (prompt_tokens - 1) / block_size : 0;
    if (block_size <= 0) block_size = 1; /* only used with cap == 0 from here on */

    /* Eligibility, the least-loaded eligible worker, the load spread, and the
     * best alive holder (longest run; ties by the tie order). */
    int least = -1, holder = -1;
    int64_t min_load = 0, max_load = 0;
    int32_t best_run = 0;
    for (int i = 0; i < n_ws; i++) {
        if (!ws[i].alive) continue;
        int32_t r = run_of(&ws[i], src_runs, cap);
        if (r > best_run || (r == best_run && r > 0 && tie_before(ws, i, holder))) {
            best_run = r;
            holder = i;
        }
        if (ws[i].kv_blocks_avail < n_blocks_needed) continue;
        if (least < 0) {
            min_load = max_load = ws[i].load_tokens;
        } else {
            if (ws[i].load_tokens < min_load) min_load = ws[i].load_tokens;
            if (ws[i].load_tokens > max_load) max_load = ws[i].load_tokens;
        }
        if (least < 0 || tie_before(ws, i, least)) least = i;
    }
    if (least < 0) return;

    bool pull_ok = c->cache_aware && c->allow_pull && c->page_bytes > 0;
    int pick = least;
    option best;
    if (!c->cache_aware) {
        best = evaluate(c, ws, least, -1, false, runs, src_runs, cap, prompt_tokens, block_size);
    } else if (max_load - min_load > c->imbalance_abs && (double)max_load > c->imbalance_rel * (double)min_load) {
        out->imbalanced = true;
        best = evaluate(c, ws, least, holder, pull_ok, runs, src_runs, cap, prompt_tokens, block_size);
    } else {
        /* starvation: only workers about to go idle compete (least is one of them) */
        bool starving = c->starve_tokens > 0 && ws[least].load_tokens < c->starve_tokens;
        best = evaluate(c, ws, least, holder, pull_ok, runs, src_runs, cap, prompt_tokens, block_size);
        for (int i = 0; i < n_ws; i++) {
            if (i == least || !ws[i].alive || ws[i].kv_blocks_avail < n_blocks_needed) continue;
            if (starving && ws[i].load_tokens >= c->starve_tokens) continue;
            option o = evaluate(c, ws, i, holder, pull_ok, runs, src_runs, cap, prompt_tokens, block_size);
            if (o.cost < best.cost || (o.cost == best.cost && tie_before(ws, i, pick))) {
                best = o;
                pick = i;
            }
        }
    }
    out->worker = pick;
    out->reuse_blocks = best.reuse;
    out->pull_from = best.pull_from;
    out->pull_blocks = best.pull_blocks;
    out->cost = best.cost;
    out->t_pull_s = best.t_pull;
    out->t_recompute_s = best.t_rec;
}
