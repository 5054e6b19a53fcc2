/* opt: the workflow optimizer at run time (policies kvflow and helium), and
 * the per-policy work counters of every policy.
 *
 * What each policy adds on top of placement (sched.h):
 *   kvflow  workflow-aware eviction: the static prompt prefixes that pending
 *           LLM calls of kvflow jobs share with a call being dispatched are
 *           pinned on its worker (Dispatch.pin + pin_tag) and released
 *           (CoordMsg.unpin) once no pending call needs them and every
 *           dispatched call using them has finished;
 *   helium  kvflow's pins, plus at job arrival plan pruning and common
 *           subexpressions (plan.h), an operator result cache and in-flight
 *           dedup of deterministic LLM calls (across jobs), proactive warming
 *           of static prefixes shared by >= 2 pending calls that are not yet
 *           ready (a warm Dispatch, pinned), and a cache-aware dispatch order
 *           of ready calls (ptree_order: critical path first, siblings that
 *           share a prefix consecutive).
 *
 * State, across all live jobs: one templated prefix tree (ptree.h) per
 * optimizing policy holding the pending (not yet dispatched) LLM calls of
 * that policy's jobs -- a waiting op with its static prefix (the template up
 * to the first unknown placeholder), a queued task with its whole prompt --;
 * pin groups (a tag, a worker, the pinned block hashes, the dispatched tasks
 * using them, and the warm task that computes them if any); the dedup entries
 * of deterministic calls in flight; the result cache; and the sets behind
 * min_prompt_tokens.
 *
 * A pin group is released (one Unpin) when it has no warm task in flight, no
 * dispatched unfinished user left (a task on its worker sharing at least one
 * of its blocks), and no pending call of its policy covers at least one of
 * its blocks (ptree_match). Groups die with their worker (no Unpin; counted
 * as unpins all the same, so pins == unpins once everything settled).
 * Each pin carries the steps until its nearest pending sharer runs
 * (Dispatch.pin_steps, from the prefix tree): a worker under memory pressure
 * evicts its pinned idle blocks needed furthest ahead first (kvcache.h),
 * KVFlow's steps-to-execution priority; the priority is set when the pin is
 * made and not refreshed as the plan advances.
 *
 * min_prompt_tokens (per policy): the prompt tokens any system must compute
 * for the LLM calls rendered so far, each distinct prompt counted once: the
 * size of the prefix trie of those prompts, approximated at block
 * granularity as (distinct full-block hashes) * block_size + each distinct
 * prompt's tail after its last full block, + 1 for a block-aligned prompt
 * whose blocks were all seen (its last token is always computed). Prompts of
 * calls the optimizer pruned are never rendered and so are not counted. The
 * sets are bounded (OPT_MAX_SET entries each); past that every prompt and
 * block counts as new (an overestimate).
 *
 * Every counter is cumulative (monotonic): a benchmark diffs two readings.
 * The module never sends: the coordinator's opt_io callbacks do. Before the
 * cluster's model (root hash, block size) is known, prefix trees are off
 * (jobs then arrive unoptimized for prefixes; pruning and the caches work).
 * Single-threaded: the coordinator's loop owns it.
 */
#ifndef HELIUM_COORD_OPT_H
#define HELIUM_COORD_OPT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "jobs.h"
#include "ptree.h"
#include "rcache.h"
#include "sched.h"
#include "tokenizer.h"
#include "workers.h"

#define OPT_RCACHE_BYTES (64u << 20) /* default result cache bound */
#define OPT_MAX_SET (1u << 22)       /* entries of one min-prompt set (64 MiB of table at most) */
#define OPT_TAG_LEN 32

/* Work counters of one policy (all cumulative). */
typedef struct {
    uint64_t jobs;              /* jobs accepted */
    uint64_t llm_tasks;         /* llm calls rendered (tasks created) */
    uint64_t dispatched;        /* llm calls sent to workers (warm tasks excluded) */
    uint64_t prompt_tokens;     /* prompt tokens of finished dispatched llm calls */
    uint64_t computed_tokens;   /* OpResult.computed_tokens, warm tasks included */
    uint64_t cached_tokens, pulled_tokens, generated_tokens, kv_pulls;
    uint64_t warm_tasks, warm_tokens; /* warm dispatches finished; their computed tokens */
    uint64_t rcache_lookups, rcache_hits, dedup_hits;
    uint64_t ops_pruned, ops_merged; /* by the plan (nested ops included) */
    uint64_t plan_us;           /* planning time: plan + prefix tree upkeep */
    uint64_t pins, unpins;      /* pin groups created / released */
    uint64_t pin_updates;       /* PinSteps sent: a group's eviction priority followed the plan */
    uint64_t held;              /* placements deferred until a prefix in flight is cached */
    uint64_t kv_waits;          /* placements deferred because the worker's KV working set was full */
    uint64_t min_prompt_tokens;
} opt_counters;

/* Sending, done by the coordinator. */
typedef struct {
    void *ctx;
    /* A fresh task id. */
    uint64_t (*next_task_id)(void *ctx);
    /* Sends a warm Dispatch to w: prefill ids[0..n) (with ch's pull hint, if
     * any), pin its n blocks `hashes` under tag, `steps` before a pending
     * call needs them (the eviction priority). Returns 0 if queued. */
    int (*send_warm)(void *ctx, wkr_t *w, uint64_t task_id, const int32_t *ids, int32_t n,
                     const uint64_t *hashes, int32_t n_blocks, const char *tag, uint32_t steps,
                     const sched_choice *ch);
    /* Sends Unpin{tag} to w. */
    void (*send_unpin)(void *ctx, wkr_t *w, const char *tag);
    /* Sends PinSteps{tag, steps} to w (may be NULL: priorities stay as sent). */
    void (*send_pin_steps)(void *ctx, wkr_t *w, const char *tag, uint32_t steps);
} opt_io;

typedef struct opt opt_t;
typedef struct opt_dd opt_dd; /* an in-flight dedup entry */

/* What opt_prepare computed for a job before it starts; owned by the caller
 * until opt_arrive/opt_prep_free. */
typedef struct {
    jobs_plan plan;             /* for jobs_submit_planned */
    uint8_t *pruned;            /* (n_ops) or NULL */
    int *alias;                 /* (n_ops) or NULL */
    int64_t *cp, *start;        /* (n_ops) or NULL */
    int32_t **prefix;           /* (n_ops) static prefix of each llm op, or NULL */
    int *n_prefix;              /* (n_ops) */
    size_t n_ops;
    uint64_t t0_us;             /* when planning began (plan_us covers arrival too) */
} opt_prep;

/* tok, sched, wkrs and jobs are borrowed and must outlive it. */
opt_t *opt_new(const tok_t *tok, sched_t *sched, wkrs_t *wkrs, jobs_t *jobs, const opt_io *io,
               size_t rcache_bytes);
/* Frees everything without sending (dedup entries' tasks are not touched). */
void opt_destroy(opt_t **self_p);

/* The cluster's model; turns the prefix trees on. Later calls are ignored. */
int opt_set_model(opt_t *o, uint64_t root, int32_t block_size);

opt_counters *opt_stats(opt_t *o, sched_policy p);
/* Moves with every change to the pins that KV admission reads. */
uint64_t opt_pins_gen(const opt_t *o);
/* Moves with every pin change that may leave some worker's working set
 * smaller (a call waiting for KV room may fit then; pins that grow do not). */
uint64_t opt_pins_shrink_gen(const opt_t *o);
uint64_t opt_pins_shrink_slot(const opt_t *o, int slot);
/* True if policy p uses the prefix tree (kvflow, helium). */
bool opt_tracks(sched_policy p);
/* True if policy p answers deterministic calls from the result cache or an
 * identical call in flight (helium). */
bool opt_reuses(sched_policy p);

/* ---- job lifecycle */

/* Plans a job of policy p before it is submitted: helium prunes and merges
 * (plan_build); kvflow and helium compute each llm op's static prefix and
 * critical path. On any failure the job simply runs unplanned: *prep is
 * then left empty (plan fields NULL) and 0 is returned. */
int opt_prepare(opt_t *o, sched_policy p, const wf_t *wf, const wf_kv *inputs, size_t n, opt_prep *prep);
/* The job was accepted (jobs_submit_planned with prep->plan): its waiting llm
 * ops join the prefix tree. Frees prep's contents. j may already be final. */
void opt_arrive(opt_t *o, job_t *j, opt_prep *prep);
void opt_prep_free(opt_prep *prep);

/* Hooks from jobs: a task was queued (t->ids set if it is an llm task of a
 * tracking policy; the caller tokenizes first), op i of j is done, the job
 * ended. */
void opt_task_new(opt_t *o, job_task *t);
void opt_op_done(opt_t *o, job_t *j, int i);
void opt_job_end(opt_t *o, job_t *j);

/* The call of task t leaves (or rejoins) the pending set. */
void opt_call_gone(opt_t *o, job_task *t);
void opt_call_back(opt_t *o, job_task *t);

/* Counts t's prompt into min_prompt_tokens once (needs the model). */
void opt_count_prompt(opt_t *o, job_task *t);

/* ---- pins */

/* Blocks of hashes[0..nb) (the prompt ids[0..n) of task t, already gone from
 * the pending set) that pending calls of t's policy share and that t should
 * pin on worker slot, 0 if none; *tag receives the tag to use. No state
 * changes. */
int32_t opt_pin_want(opt_t *o, const job_task *t, int slot, const uint64_t *hashes, int32_t nb, char tag[OPT_TAG_LEN]);
/* Steps until the nearest pending call that shares t's prompt prefix runs (0:
 * one is ready now), for the pins' eviction priority. */
uint32_t opt_pin_steps(opt_t *o, const job_task *t);
/* t was dispatched to slot: it becomes a user of the groups there that
 * share at least one block with its prompt, and if want > 0 a new group
 * (tag) pins hashes[0..want). */
void opt_pin_commit(opt_t *o, job_task *t, int slot, const uint64_t *hashes, int32_t nb, int32_t want,
                    const char *tag);
/* t finished, failed, was aborted or lost its worker: it uses no group. */
void opt_task_gone(opt_t *o, job_task *t);
/* Releases groups nobody needs (Unpin). Cheap when nothing changed. */
void opt_sweep(opt_t *o);
/* w is dead or re-registered: its groups and warm tasks are forgotten. */
void opt_worker_lost(opt_t *o, int slot);

/* ---- warming (helium) */

/* Sends warm dispatches for shared static prefixes of pending helium calls
 * that none is ready for yet and no group covers. Cheap when nothing changed. */
void opt_warm(opt_t *o);
/* w reported stored blocks: the part of a warm task's load whose blocks are
 * now cached on w leaves w's queue as they are committed, not when the warm
 * result arrives (placement would see a stale queue meanwhile). */
void opt_cache_stored(opt_t *o, wkr_t *w);
/* If task_id is a warm task on worker w: accounts its result (ok, computed
 * tokens) and returns true. */
bool opt_warm_result(opt_t *o, wkr_t *w, uint64_t task_id, bool ok, uint32_t computed, uint32_t cached,
                     uint32_t pulled);

/* ---- KV admission (helium) */

/* Helium's admission under KV pressure: true if worker w's working set --
 * the distinct prompt blocks of its in-flight tasks and of its pin groups
 * that a pending call ready now (or a warm task) still needs (a shared
 * prefix counted once), plus each in-flight task's private
 * pages (its pages beyond its full prompt blocks: partial last block and
 * generated tokens) -- still fits its KV pages (kv_blocks_total) with a call
 * of `pages` pages whose prompt blocks are hashes[0..nb) added. Admitting only what
 * fits keeps the engine from evicting a prefix that an admitted call or a
 * pinned group still needs, and from preempting running calls; calls that do
 * not fit wait at the coordinator, in the prefix tree's order, instead of in
 * the worker's queue. A ready reader of a reserved prefix finds it in the
 * set and needs only its own pages. A worker with no call in flight admits
 * anything, except, while it holds prefixes that ready calls need, a call
 * that brings a prefix of its own (half its blocks or more are not in the
 * set) and does not fit: the ready readers run first, so nothing waits
 * forever. O(blocks in flight on w). */
bool opt_ws_fits(opt_t *o, const wkr_t *w, const uint64_t *hashes, int32_t nb, int32_t pages);

/* ---- dispatch order (helium) */

/* Ready helium calls in dispatch order (ptree_order); *slots valid until the
 * next call. Returns the count (0 if none or on error). */
int opt_order(opt_t *o, const ptree_slot **slots);

/* ---- result cache and in-flight dedup (helium) */

rcache_t *opt_rcache(opt_t *o);
/* The llm call of t (ids set) as a result-cache call; false if not cacheable. */
bool opt_call_of(const opt_t *o, const job_task *t, rcache_call *c);
/* The in-flight entry for key, or NULL. */
opt_dd *opt_dd_find(opt_t *o, rcache_key key);
/* t (about to be dispatched) leads a new entry for key. */
int opt_dd_lead(opt_t *o, rcache_key key, job_task *t);
/* t waits for e's leader instead of running. */
int opt_dd_follow(opt_t *o, opt_dd *e, job_task *t);
/* True if t leads an entry. */
bool opt_dd_leads(const job_task *t);
/* The leader t finished: the entry leaves the table and t (t->opt = NULL);
 * pop its followers with opt_dd_pop, then opt_dd_free. Key in *key. */
opt_dd *opt_dd_finish(opt_t *o, job_task *t, rcache_key *key);
job_task *opt_dd_pop(opt_dd *e);
void opt_dd_free(opt_dd **e);
/* t (leader or follower) is going away without a result (abort hook, or a
 * leader that failed): a follower leaves its entry; a leader's entry is
 * orphaned and its followers come back from opt_dd_pop_orphan. */
void opt_dd_drop(opt_t *o, job_task *t);
/* A follower of an orphaned entry (t->opt cleared), to requeue; NULL if none. */
job_task *opt_dd_pop_orphan(opt_t *o);

#endif
