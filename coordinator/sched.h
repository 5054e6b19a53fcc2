/* sched: placement of LLM tasks on workers under a scheduling policy.
 *
 * Policies (placement only; what else each policy does is the coordinator's
 * and the optimizer's, opt.h):
 *   "router"   cache-aware: the prompt's block hashes are matched against the
 *              prefix directory (dir.h) and route_pick (route.h) weighs reuse,
 *              KV pulls from peers and load;
 *   "kvflow"   places exactly as "router";
 *   "helium"   cache-aware like "router" with its own weights (a lighter load
 *              weight, a starving-worker rule), pulls always allowed, and
 *              rules of its own (sched_decide): it holds a call whose prefix
 *              another worker is computing (pull it once committed, or split
 *              a group of siblings to a lighter worker), and with its KV
 *              admission on (sched_set_helium_fit) admits a call only where
 *              the working set has room and keeps a large own prefix on the
 *              worker holding it;
 *   "prefix"   least-loaded only (no affinity, no pull); workers still reuse
 *              whatever their own caches hold;
 *   "isolated" round robin over eligible workers, no pull.
 * A worker is eligible when it is alive, uses the cluster's model root and
 * block size, and its context holds the prompt plus one generated token.
 *
 * Pending blocks: a task placed on a worker will soon make that worker hold
 * its prompt's blocks, before any cache event says so. The scheduler keeps
 * them in a second directory (sched_pending_*), added at dispatch and removed
 * when the task ends (by then the worker's cache events have arrived: they
 * travel ahead of the result on the same socket; a block several tasks on one
 * worker count stays pending until the last of them ends), and counts them as held for
 * reuse, so siblings dispatched in one burst follow each other. A pull is only
 * ever planned from blocks the real directory shows.
 *
 * sched_place never blocks and keeps counters of its decisions (decisions,
 * affinity hits, pulls chosen, recomputes chosen over a considered pull,
 * imbalance overrides). Single-threaded: the loop owns it.
 */
#ifndef HELIUM_COORD_SCHED_H
#define HELIUM_COORD_SCHED_H

#include <stdbool.h>
#include <stdint.h>

#include "dir.h"
#include "route.h"
#include "workers.h"

typedef enum {
    SCHED_ROUTER = 0,
    SCHED_PREFIX = 1,
    SCHED_ISOLATED = 2,
    SCHED_KVFLOW = 3,
    SCHED_HELIUM = 4,
    SCHED_N_POLICIES = 5
} sched_policy;

/* The names of every policy, for messages: "router, prefix, isolated, kvflow or helium". */
#define SCHED_POLICY_NAMES "isolated, prefix, router, kvflow or helium"

/* True if p places by cache affinity (router, kvflow, helium). */
bool sched_cache_aware(sched_policy p);

/* The policy named s ("" or NULL: -1 too), or -1 if unknown. */
int sched_policy_from_name(const char *s);
const char *sched_policy_name(sched_policy p);

typedef struct {
    uint64_t decisions, affinity, pulls, recomputes, imbalanced, pull_blocks;
    uint64_t placements;    /* placements evaluated (dry runs and waits included): the scheduler's work */
} sched_counters;

typedef struct {
    wkr_t *worker;          /* chosen worker; NULL: none eligible has room now (try later) */
    wkr_t *pull_from;       /* peer to pull from, or NULL */
    int32_t pull_first;     /* prompt block index of the first page to pull */
    int32_t pull_blocks;
    const uint64_t *hashes; /* (n_hashes) the prompt's full-block hashes; valid until the next call */
    int32_t n_hashes;
    int32_t reuse_blocks;   /* blocks the chosen worker already holds (or will: pending) */
    int32_t real_blocks;    /* of those, blocks the real directory shows it holding now */
    int32_t planned_blocks; /* reuse + pull the route assumed; more than real_blocks +
                               pull_blocks when it counted on blocks still being computed
                               (pending) on the worker or on a pull source */
    int32_t pages;          /* KV pages the task may need (prompt + max_tokens, capped) */
    int wait_slot;          /* hold: the worker whose pages it waits for; a helium wait for room
                               on the worker holding its prefix: that worker (slot; -1 otherwise) */
    int32_t wait_run;       /* hold: the leading prompt blocks it waits for there to be cached */
    int32_t reserve_pages;  /* of those, pages the chosen worker must find room for: its leading
                               prompt blocks that calls in flight there already hold are not counted twice */
    int64_t load_tokens;    /* work it adds: prompt tokens to compute + max_tokens */
    int holder_slot;        /* cache-aware: the other eligible worker holding the longest run of the
                               prompt's blocks (cached or pending), -1 if none holds any */
    int32_t holder_run;     /* its run, blocks */
    bool hold;              /* helium: the worker would recompute >= SCHED_HOLD_MIN_BLOCKS prefix pages,
                               half of what it would compute or more, that another worker is computing now, and
                               pulling them once committed is
                               cheaper: place the call again later (when they are cached) */
    bool split;             /* helium: hold was set by the split rule (sched_set_helium_split) */
    route_decision d;
} sched_choice;

#define SCHED_HOLD_MIN_BLOCKS 4

typedef struct sched sched_t;

/* dir and workers are borrowed and must outlive the scheduler. */
sched_t *sched_new(dir_t *dir, wkrs_t *workers);
void sched_destroy(sched_t **self_p);

/* The cluster's model identity (from the first accepted registration). */
void sched_set_model(sched_t *s, uint64_t root, uint32_t block_size, size_t page_bytes);
/* Leading blocks of hashes[0..n) that the directory shows cached on slot. */
int32_t sched_real_run(sched_t *s, int slot, const uint64_t *hashes, int32_t n);

/* The helium policy's own weights (defaults 0.25 and 512): it follows a
 * shared prefix more than the router baseline does (load_weight 1.0), and
 * feeds a worker about to go idle (route.h, starve_tokens). */
void sched_set_helium_weights(sched_t *s, double load_weight, int64_t starve_tokens);
/* The helium policy's idle threshold (tokens of outstanding work). */
int64_t sched_helium_starve_tokens(const sched_t *s);
/* Whether helium also holds a call whose chosen worker is about to go idle
 * (default true: fewest tokens computed; false: work-conserving, the idle
 * worker recomputes the prefix at once, which is faster where one prefix is
 * shared by every job and costs that prefix once more per worker). */
void sched_set_helium_hold_idle(sched_t *s, bool on);
/* Helium: hold a call that would follow its prefix to the busier worker when
 * another worker, pulling that prefix once committed, would still be the
 * lighter one (default on; sched_choice.split says it happened). */
void sched_set_helium_split(sched_t *s, bool on);
/* Whether the router and kvflow policies may pull a prefix's KV from another
 * worker instead of recomputing it (default true, the cluster's behaviour).
 * false makes them the systems they stand for in bench/workflows.py: SGLang's
 * router, llm-d's prefix scorer and KVFlow route by cache but never move KV
 * between workers. Helium always may. */
void sched_set_baseline_pulls(sched_t *s, bool on);
route_config *sched_route_config(sched_t *s);
/* The helium policy's KV admission: fit(ctx, w, hashes, nb, pages) says
 * whether worker w can take a call of `pages` pages whose prompt blocks are
 * hashes[0..nb) (the coordinator's working-set model, opt.h opt_ws_fits).
 * When set, it replaces the free-page guard for helium: only workers it
 * admits are eligible. NULL: helium uses the guard like the baselines. */
typedef bool (*sched_fit_fn)(void *ctx, const wkr_t *w, const uint64_t *hashes, int32_t nb, int32_t pages);
void sched_set_helium_fit(sched_t *s, sched_fit_fn fit, void *ctx);

/* A call's queued work shrinks as its prompt pages are committed: each LLM
 * task in flight on w is left with the prompt past its committed run plus
 * its decode (t->decode_tokens), so a worker whose calls have finished their
 * prefill does not look busier than it is (w->load_tokens, what the routers
 * balance on). Call after the worker's stored-block events. */
void sched_prefill_progress(sched_t *s, wkr_t *w);

/* Places a prompt of n ids that generates up to max_tokens tokens.
 * Returns 0 (out->worker may be NULL: wait), HE_EUNAVAIL when no worker is
 * alive, or HE_ECONTEXT when no alive worker's context holds the prompt plus
 * one token (the message gives the sizes). */
int sched_place(sched_t *s, sched_policy policy, const int32_t *ids, int32_t n, uint32_t max_tokens,
                sched_choice *out);
/* sched_place without counting the decision (SCHED_DRY); sched_count counts
 * it once the caller acts on it. */
#define SCHED_DRY 1u
int sched_place_ex(sched_t *s, sched_policy policy, const int32_t *ids, int32_t n, uint32_t max_tokens,
                   unsigned flags, sched_choice *out);
void sched_count(sched_t *s, const sched_choice *ch);
/* sched_place_ex among one worker only (directory slot). */
int sched_place_on(sched_t *s, sched_policy policy, const int32_t *ids, int32_t n, uint32_t max_tokens, int slot,
                   unsigned flags, sched_choice *out);

/* What a policy's rules make of a placement (sched_decide). */
typedef enum {
    SCHED_GO = 0,  /* dispatch on out->worker */
    SCHED_WAIT,    /* no eligible worker can take it now: place it again later */
    SCHED_WAIT_KV, /* helium: wait for room in a worker's KV working set */
    SCHED_HOLD     /* helium: its prefix is being computed elsewhere; place it again once those
                      pages are cached, to pull them (out->hold; out->split: the split rule) */
} sched_verdict;

/* Places a call (dry: sched_count counts it once the caller dispatches it)
 * and applies its policy's rules, so that the caller only acts on *v. Every
 * policy-specific placement rule lives here; the caller never tests the
 * policy. Returns what sched_place_ex returns (then *v is SCHED_WAIT). */
int sched_decide(sched_t *s, sched_policy policy, const int32_t *ids, int32_t n, uint32_t max_tokens,
                 sched_choice *out, sched_verdict *v);
/* sched_decide with the prompt's block hashes already computed
 * (sched_hashes; a caller that places one call many times hashes it once).
 * hashes NULL, or nb other than n / block size: computed here. */
int sched_decide_h(sched_t *s, sched_policy policy, const int32_t *ids, int32_t n, const uint64_t *hashes,
                   int32_t nb, uint32_t max_tokens, sched_choice *out, sched_verdict *v);
/* The full-block hashes of a prompt as placement computes them
 * (bh_prefix(root, ids, n, block size)): *out malloc'd (NULL with *nb 0 when
 * the model is not known yet or the prompt is shorter than a block). */
int sched_hashes(const sched_t *s, const int32_t *ids, int32_t n, uint64_t **out, int32_t *nb);

/* True if tasks of policy p share the workers' KV caches: false for
 * "isolated" (its dispatches carry no_cache and publish no pending blocks). */
bool sched_shares_cache(sched_policy p);
/* True if policy p starts a job that arrives on its own only while the
 * workers have room (coord.c's feed rule, coord_config.helium_feed): helium.
 * The others start every job the window allows, as a server starts every
 * request it is sent. */
bool sched_feeds_jobs(sched_policy p);

void sched_get_counters(const sched_t *s, sched_counters *out);

/* Pending blocks of dispatched tasks (see above); slot is the worker's. */
void sched_pending_add(sched_t *s, int slot, const uint64_t *hashes, int32_t n);
void sched_pending_remove(sched_t *s, int slot, const uint64_t *hashes, int32_t n);
void sched_pending_drop(sched_t *s, int slot);

#endif
