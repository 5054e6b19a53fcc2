/* plan: the workflow optimizer's operator plan for one job or a batch of jobs
 * (of the same or different workflows), free of sockets and state.
 *
 * plan_build_batch() turns validated workflows plus their job inputs into one
 * list of plan nodes, each computing one or more original (job, op) pairs:
 *
 *  - Pruning: an op is computed only if something needs it: the job's output
 *    op, ops listed in plan_job.keep, tool ops with side effects (any method
 *    but GET and HEAD, unless PLAN_PRUNE_EFFECTS), and, transitively, every op
 *    a needed op references ({{op.ID}}, a map's `over`), the body op of a
 *    needed map, the output op of a needed loop, and the enclosing map/loop of
 *    a needed body op. Dependencies are recomputed from the references of the
 *    ops kept, so a pruned body op adds no edge to its loop. PLAN_KEEP_ALL
 *    keeps everything.
 *  - Common subexpressions: each kept op gets a content signature, a Merkle
 *    hash (XXH3-64) over its kind and fully resolved static content -- template
 *    text with job input values substituted (so "a{{input.x}}" with x = "b"
 *    equals the literal "ab"), model, sampling, max_tokens, stop strings, tool
 *    method/url/body/headers/limits, map split/width/over/body, loop
 *    condition/rounds/body -- with the signature of each referenced op in
 *    place of its placeholder. Op ids and descriptions are not part of it. A
 *    body op's final signature also covers its enclosing op's final signature,
 *    so body ops merge only when their maps/loops merged (a map merges only if
 *    its over-list source and its body are identical). Ops with equal final
 *    signatures become one node if they are deterministic: llm ops that are
 *    greedy or carry an explicit seed (rcache_sampling_deterministic), joins,
 *    GET tools with PLAN_MERGE_TOOL_GET, maps whose body and loops whose every
 *    kept body op is deterministic. A non-deterministic op's signature is
 *    salted with its (job, op) position, so nothing that depends on it merges.
 *    By default greedy llm ops ignore seed/top_k/top_p (the engine's argmax
 *    does, worker/sampler.c); PLAN_STRICT_SAMPLING hashes them anyway.
 *
 * Output: nodes in one topological order over all scopes: a node's deps and
 * its parent (the node of its enclosing map/loop) have lower indices; deps
 * join nodes of the same scope. Every original (job, op) maps to the node that
 * computes it, or -1 if pruned; each node lists its members, representative
 * first (the first in batch order). Signatures depend only on content (and on
 * the (job, op) position for non-deterministic ops): stable across runs and
 * machines. Equal signatures are trusted as equal content (64-bit hash).
 *
 * Work: O(total template parts + input bytes referenced + edges) with a hash
 * table of nodes; no recursion deeper than WF_MAX_DEPTH + 1.
 */
#ifndef HELIUM_COORD_PLAN_H
#define HELIUM_COORD_PLAN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "workflow.h"

/* plan_build flags */
#define PLAN_KEEP_ALL (1u << 0)        /* prune nothing: every op stays reportable */
#define PLAN_NO_CSE (1u << 1)          /* merge nothing (signatures are still computed) */
#define PLAN_MERGE_TOOL_GET (1u << 2)  /* GET tool ops may merge */
#define PLAN_STRICT_SAMPLING (1u << 3) /* greedy llm signatures include seed, top_k, top_p */
#define PLAN_PRUNE_EFFECTS (1u << 4)   /* side-effecting tools (not GET/HEAD) may be pruned too */

#define PLAN_MAX_JOBS 65536

typedef struct plan plan_t;

/* One job of a batch. */
typedef struct {
    const wf_t *wf;                  /* validated (wf_validate) */
    const char *const *input_names;  /* (n_inputs) inputs given; the rest take their defaults */
    const char *const *input_values; /* (n_inputs) */
    size_t n_inputs;
    const char *const *keep;         /* (n_keep) ids of ops to compute even if nothing needs them */
    size_t n_keep;
} plan_job;

typedef struct {
    uint64_t jobs;
    uint64_t ops_in;     /* ops of all jobs, nested ones included */
    uint64_t ops_pruned; /* not needed */
    uint64_t ops_merged; /* computed by another op's node */
    uint64_t nodes_out;  /* ops_in = ops_pruned + ops_merged + nodes_out */
    uint64_t plan_us;    /* wall time of plan_build_batch */
} plan_stats;

typedef struct {
    int job; /* index in the batch */
    int op;  /* index in that job's wf->ops */
} plan_ref;

typedef struct {
    wf_kind kind;
    uint64_t sig;            /* final signature */
    int parent;              /* node of the enclosing map/loop, -1 at top level */
    const int *deps;         /* (n_deps) nodes of the same scope it waits for, ascending */
    size_t n_deps;
    plan_ref rep;            /* representative: its wf_op describes this node */
    const plan_ref *members; /* (n_members) every (job, op) it computes, rep first */
    size_t n_members;
    bool deterministic;      /* eligible for merging and for the result cache */
} plan_node;

/* Plans a batch of n_jobs jobs (1 .. PLAN_MAX_JOBS). Errors (nothing is
 * returned, *out = NULL): HE_EINVAL for an unvalidated workflow, an input
 * given that the workflow does not declare, a required input missing, or a
 * keep id that names no op (he_msg names it and the job index); HE_ENOMEM.
 * st (may be NULL) receives the counts. */
int plan_build_batch(const plan_job *jobs, size_t n_jobs, unsigned flags, plan_t **out, plan_stats *st);
/* One job: plan_build_batch with a single plan_job without keep ids. */
int plan_build(const wf_t *wf, const char *const *input_names, const char *const *input_values,
               size_t n_inputs, unsigned flags, plan_t **out, plan_stats *st);
void plan_destroy(plan_t **self_p);

size_t plan_n_nodes(const plan_t *p);
/* Node i (0 <= i < plan_n_nodes), or NULL. Valid until plan_destroy. */
const plan_node *plan_node_at(const plan_t *p, size_t i);
/* Node computing op `op` of batch job `job`, or -1 (pruned or out of range). */
int plan_node_of(const plan_t *p, size_t job, int op);
size_t plan_n_jobs(const plan_t *p);
void plan_get_stats(const plan_t *p, plan_stats *out);
/* Final signature of op `op` of batch job `job`: its node's signature, or 0
 * if pruned. Convenience for logs and tests. */
uint64_t plan_sig_of(const plan_t *p, size_t job, int op);

#endif
