/* ptree: the templated prefix tree of a plan, with scheduling priorities.
 *
 * One radix tree over token ids holds the *static prefix* of every pending
 * LLM call of a plan (one job or a batch of jobs): the tokens of its prompt
 * that are known before its upstream operators run. Edges are token runs;
 * each call sits at the node where its static prefix ends. Every node knows
 * how many pending calls start with its path (sharers) and how many of those
 * are ready to run. From it come:
 *   - the shared static prefixes (>= 2 sharers), block-aligned and hashed
 *     exactly as workers and the prefix directory hash prompts
 *     (bh_prefix(root, ids, n, block_size)): what proactive caching prefills
 *     ahead and pins, with a steps-to-execution priority each (KVFlow-style:
 *     the sooner a sharer runs, the higher the block's retention priority);
 *   - a dispatch order of the ready calls: a DFS over the tree that keeps
 *     calls sharing the longest prefix consecutive and visits children by
 *     critical path (longest remaining path first), as in Helium's scheduler;
 *   - a critical-path helper over a workflow in token steps.
 *
 * Static prefixes of templates (ptree_static_text, ptree_safe_tokens): the
 * text before the first unresolved placeholder is tokenized as a prompt is
 * (BOS iff tok_add_bos_default, parse_special off), and only the tokens that
 * no continuation can change are kept. Rule: a *cut* is a byte offset c with
 * text[c] a space and text[c-1] a visible ASCII character, or text[c] other
 * ASCII whitespace (\t \n \r \v \f) and text[c-1] an ASCII letter or digit.
 * Take the last cut; keep the leading tokens whose bytes end at or before it,
 * then drop one more token as a margin. Why: in the byte-level BPE
 * pre-tokenizers (gpt2, llama-bpe, qwen2, smollm) no pre-token runs across a
 * cut (letter and digit runs stop at whitespace; punctuation runs stop at a
 * space, though llama-bpe/qwen2 let them absorb newlines), and no pre-token
 * before a cut depends on bytes after it; BPE never merges across
 * pre-tokens. In SentencePiece (no pre-tokenizer) pieces start at the space
 * marker, so no piece spans a cut and merges on each side are independent.
 * The margin covers vocabularies that break that (e.g. pieces ending in the
 * space marker). Dropping just the final token is not enough: a longer
 * continuation of the last word can re-merge several of its tokens. A fully
 * resolved template keeps all its tokens. tests/unit/test_ptree.c checks the
 * rule empirically on generated BPE and SPM vocabularies with many suffixes.
 *
 * Invariants: every non-root node has sharers >= 1; a non-root node where no
 * call ends has >= 2 children (the tree stays compressed: nodes <= 2 * calls);
 * children are sorted by their edge's first token; a call is identified by
 * (job, op, item) and sits in the tree at most once.
 *
 * Work: add/remove/set_prefix are O(prefix length + tree depth in nodes +
 * log children); ptree_match is O(matched length + tree depth in nodes), plus
 * the nodes changed since the last match below it (each node caches its
 * subtree's min steps); ptree_shared_prefixes and ptree_order are O(nodes log nodes)
 * plus, for the shared prefixes, one hash per shared block.
 * Single-threaded: the coordinator's loop owns it.
 */
#ifndef HELIUM_COORD_PTREE_H
#define HELIUM_COORD_PTREE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "tokenizer.h"
#include "workflow.h"

#define PTREE_MAX_TEXT (8u << 20)      /* bytes of one static text */
#define PTREE_MAX_TOKENS (1 << 22)     /* tokens of one static prefix */

typedef struct ptree ptree_t;

/* A shared static prefix. Pointers stay valid until the tree changes or the
 * next ptree_shared_prefixes call. */
typedef struct {
    const int32_t *tokens;  /* (n_tokens) from the root, BOS included */
    int32_t n_tokens;       /* n_blocks * block_size */
    const uint64_t *hashes; /* (n_blocks) == bh_prefix(root, tokens, n_tokens, block_size) */
    int32_t n_blocks;
    int32_t parent;         /* index of the nearest shorter shared prefix it extends, or -1 */
    int32_t first_block;    /* blocks [0, first_block) are the parent's (0 if none) */
    int32_t sharers;        /* pending calls whose static prefix starts with it */
    int32_t ready;          /* of those, ready now */
    bool leaf;              /* no longer listed prefix extends it: prefilling the leaves
                               covers every listed block */
    int64_t steps;          /* min steps to execution over its sharers (0: one is ready):
                               the lower, the higher the blocks' retention priority */
    int64_t max_cp;         /* longest critical path among its sharers */
} ptree_prefix;

/* One ready call in dispatch order. */
typedef struct {
    uint64_t job;
    int32_t op;
    uint32_t item;
    int32_t prefix_len;  /* its static prefix, tokens */
    int32_t shared_prev; /* static-prefix tokens it shares with the previous slot (0 first) */
    int64_t cp;          /* its critical path */
    int64_t cost;        /* ptree_llm_cost(est_prompt, shared_prev, max_tokens) */
} ptree_slot;

/* Longest match of a token run against the tree. */
typedef struct {
    int32_t matched;  /* leading tokens that lie on a path of the tree */
    int32_t sharers;  /* pending calls whose static prefix covers tokens[0..matched) */
    int64_t steps;    /* min steps to execution among them (INT64_MAX if none) */
} ptree_match_info;

typedef struct {
    int32_t calls, ready, nodes;
    int64_t tree_tokens;   /* tokens of all static prefixes, shared ones counted once */
    int64_t prefix_tokens; /* sum of the static prefixes' lengths */
} ptree_stats_t;

/* tok may be NULL (then ptree_tmpl_prefix is unavailable); root_hash is the
 * model's block-hash root; block_size > 0. NULL on bad arguments or OOM. */
ptree_t *ptree_new(const tok_t *tok, uint64_t root_hash, int block_size);
void ptree_destroy(ptree_t **self_p);

/* Adds a pending LLM call (job, op = index in the job's wf->ops, item = map
 * item or 0) whose static prefix is prefix[0..n) (copied). est_prompt_tokens
 * and max_tokens feed the cost model. It starts not ready, steps 0 and cp =
 * its own cost. HE_EINVAL on bad arguments or if the call is already there. */
int ptree_add_op(ptree_t *pt, uint64_t job, int32_t op, uint32_t item, const int32_t *prefix, int n,
                 int est_prompt_tokens, int max_tokens);
/* Replaces a call's static prefix (e.g. longer once a placeholder resolved). */
int ptree_set_prefix(ptree_t *pt, uint64_t job, int32_t op, uint32_t item, const int32_t *prefix, int n);
/* Sets a call's scheduling data: steps to execution (0 = can run now; e.g.
 * the earliest start from ptree_critical_path), critical path (>= 0) and
 * readiness. */
int ptree_set_sched(ptree_t *pt, uint64_t job, int32_t op, uint32_t item, int64_t steps, int64_t cp,
                    bool ready);
/* Removes a call (it was dispatched, finished or canceled). HE_ENOTFOUND. */
int ptree_remove_op(ptree_t *pt, uint64_t job, int32_t op, uint32_t item);
/* Removes every call of job; returns how many. O(calls). */
int ptree_remove_job(ptree_t *pt, uint64_t job);
bool ptree_has_op(const ptree_t *pt, uint64_t job, int32_t op, uint32_t item);

/* The static prefixes shared by >= min_sharers (>= 1) pending calls that add
 * at least one full block to the nearest listed prefix above them, in tree
 * pre-order (a parent before its extensions). *out points into the tree.
 * Returns the count or a negative herr code. */
int ptree_shared_prefixes(ptree_t *pt, int min_sharers, const ptree_prefix **out);

/* Writes up to max_out ready calls in dispatch order: DFS over the tree where
 * at each node its ready calls and its children compete by critical path
 * (a call's cp, a child's largest ready cp; longer first; ties: calls before
 * children, more ready calls first, then insertion order / first token).
 * Returns the number of ready calls (may exceed max_out) or a negative code. */
int ptree_order(ptree_t *pt, ptree_slot *out, int max_out);

/* Longest match of tokens[0..n) along the tree. */
int ptree_match(const ptree_t *pt, const int32_t *tokens, int n, ptree_match_info *out);

/* What a match read: the node it ended in, as of the tree's generation. A
 * match's answer (matched, sharers, steps) depends only on that node's
 * subtree and its edge: nodes are versioned by the last change at or below
 * them (calls added, removed, made ready, steps), or to their edge (a split
 * above a match's end, a merge), and freed nodes stay readable (uid 0) until
 * ptree_destroy. */
typedef struct {
    const void *node;
    uint64_t uid, gen;
} ptree_stamp;

/* ptree_match, and the stamp of its answer (zeroed on error). */
int ptree_match_stamp(const ptree_t *pt, const int32_t *tokens, int n, ptree_match_info *out, ptree_stamp *st);
/* True if ptree_match on the same tokens would still give the answer it gave
 * when st was taken. O(1). A zeroed stamp is never valid. */
bool ptree_stamp_valid(const ptree_t *pt, const ptree_stamp *st);

void ptree_stats(const ptree_t *pt, ptree_stats_t *out);
int ptree_block_size(const ptree_t *pt);
/* Moves with every change that can change ptree_order's or
 * ptree_shared_prefixes' answer (calls, readiness, steps, critical paths). */
uint64_t ptree_gen(const ptree_t *pt);
uint64_t ptree_root_hash(const ptree_t *pt);

/* ---- cost model and critical paths (token steps) */

/* The paper's cost of one call: prefill of the prompt after its shared
 * prefix (at least 1 token: the last one is always computed) plus decode
 * out*(out+1)/2. Callers comparing workers scale it by 1/KV capacity. */
int64_t ptree_llm_cost(int32_t prompt_tokens, int32_t shared_tokens, int32_t out_tokens);

/* Critical paths over a validated workflow. cost[i] (>= 0) is op i's own
 * cost (an llm call's ptree_llm_cost, a tool's estimate, 0 for joins, a
 * map's or loop's own overhead). A map's effective cost adds its body scope's
 * longest path once (items run in parallel), a loop's max_rounds times.
 * Writes per op (all of wf->ops):
 *   cp[i]    longest path in token steps from op i's start to the end of the
 *            plan, its own effective cost included (body ops: within the
 *            body, then the rest of the enclosing rounds and what follows the
 *            enclosing op);
 *   start[i] earliest start: longest path of work that must finish first
 *            (steps to execution); may be NULL.
 * O(ops + deps). HE_EINVAL on a bad workflow or negative cost. */
int ptree_critical_path(const wf_t *wf, const int64_t *cost, int64_t *cp, int64_t *start);

/* ---- static prefixes of templates */

/* Value of placeholder p (INPUT, OP, ITEM or PREV): return 1 with *s and *len
 * set if known now, 0 if not yet known, or a negative herr code. */
typedef int (*ptree_value_fn)(void *ctx, const wf_part *p, const char **s, size_t *len);

/* Concatenates t's parts up to the first unknown placeholder into a malloc'd
 * NUL-terminated *text (*len bytes); *complete tells whether every part was
 * known. HE_ELIMIT past PTREE_MAX_TEXT bytes. */
int ptree_static_text(const wf_tmpl *t, ptree_value_fn value, void *ctx, char **text, size_t *len,
                      bool *complete);

/* Tokenizes text[0..len) as a prompt (tok_encode_prompt with control tokens
 * parsed, as prompts are by default) and keeps the tokens no continuation can change (rule in
 * the file comment; complete: the text is the whole prompt, keep all).
 * *ids is malloc'd (NULL when *n is 0); returns 0 or a negative code. */
int ptree_safe_tokens(const tok_t *tok, const char *text, size_t len, bool complete, int32_t **ids,
                      int *n);

/* ptree_static_text then ptree_safe_tokens with the tree's tokenizer. */
int ptree_tmpl_prefix(const ptree_t *pt, const wf_tmpl *t, ptree_value_fn value, void *ctx,
                      int32_t **ids, int *n, bool *complete);

#endif
