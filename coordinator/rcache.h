/* rcache: the operator result cache, free of sockets and clocks.
 *
 * A deterministic call already computed is answered from here, across jobs:
 *   llm  key = (model root, model name, prompt token ids -- or the rendered
 *              prompt text when ids are not known --, temperature, top_k,
 *              top_p, effective seed, max_tokens, stop strings)
 *   tool key = (method, url, body, headers); entries carry a TTL.
 * The key is a 128-bit XXH3 digest of a canonical little-endian encoding of
 * those fields (rcache_key_of), so equal keys mean equal calls up to a 2^-128
 * collision; the cache stores only the digest, not the call.
 *
 * Which calls may be cached (rcache_cacheable): an llm call only if its output
 * is a function of the key -- greedy (temperature <= 0 or top_k == 1), or
 * sampled with a seed the workflow set explicitly (seed != 0 on the op; the
 * engine's sampler is seeded per request, worker/sampler.h). A sampled call
 * without a seed is treated as wanting a fresh sample and is never cached.
 * A tool call only if its method is GET and the caller allows tool caching.
 *
 * Memory: bounded by max_bytes, counting each entry's text, ids and a fixed
 * per-entry overhead (RCACHE_ENTRY_OVERHEAD). Inserting past the bound evicts
 * least-recently-used entries first; an entry larger than the whole bound is
 * refused. Expired entries are dropped when looked up or when they reach the
 * LRU tail. Lookups and inserts are O(1) expected (chained hash table that
 * doubles at load factor 1).
 *
 * Single-threaded (the coordinator's loop owns it).
 */
#ifndef HELIUM_COORD_RCACHE_H
#define HELIUM_COORD_RCACHE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "workflow.h"

#define RCACHE_ENTRY_OVERHEAD 96u /* bytes charged per entry beyond its text and ids */
#define RCACHE_MAX_STOP WF_MAX_STOP

typedef struct rcache rcache_t;

typedef struct {
    uint64_t lo, hi; /* XXH3-128 of the canonical call encoding */
} rcache_key;

typedef enum { RCACHE_LLM = 1, RCACHE_TOOL = 2 } rcache_kind;

/* A fully rendered call, as the coordinator is about to dispatch it. */
typedef struct {
    rcache_kind kind;
    /* RCACHE_LLM */
    uint64_t model_root;       /* the model's blockhash root (model_t.root_hash) */
    const char *model;         /* model name; NULL = default ("" and NULL are the same) */
    const int32_t *ids;        /* (n_ids) prompt token ids; NULL: key on text instead */
    size_t n_ids;
    const char *text;          /* (text_len) rendered prompt, used when ids == NULL */
    size_t text_len;
    float temperature;         /* <= 0 greedy */
    uint32_t top_k;            /* 0 off */
    float top_p;               /* <= 0 or >= 1: off */
    uint64_t seed;             /* effective seed of this call (op seed + map item) */
    bool seeded;               /* the workflow op set a seed explicitly (op seed != 0) */
    uint32_t max_tokens;
    const char *const *stop;   /* (n_stop) stop strings, in the op's order */
    size_t n_stop;
    /* RCACHE_TOOL */
    const char *method;        /* upper case */
    const char *url;
    const char *body;          /* (body_len); NULL/0 = none */
    size_t body_len;
    const wf_kv *headers;      /* (n_headers) in the op's order */
    size_t n_headers;
} rcache_call;

/* A cached result. In rcache_get's output the pointers borrow the cache's
 * copy: valid until the next non-const call on the cache. */
typedef struct {
    const char *text;          /* (len) output text (NUL-terminated in the cache) */
    size_t len;
    const int32_t *ids;        /* (n_ids) generated token ids; may be NULL/0 (tools) */
    size_t n_ids;
    uint32_t generated_tokens;
    uint32_t finish_reason;    /* caller's code (e.g. Helium__FinishReason), stored as is */
} rcache_val;

typedef struct {
    uint64_t lookups, hits, misses;
    uint64_t inserts;          /* new entries */
    uint64_t replaces;         /* puts onto an existing key */
    uint64_t evictions;        /* entries dropped for space */
    uint64_t expired;          /* entries dropped because their TTL ran out */
    uint64_t rejected;         /* puts refused (entry larger than max_bytes) */
    uint64_t entries, bytes, max_bytes; /* now */
} rcache_counts;

/* True if this call's result may be cached (and may be answered from the
 * cache): see the rule above. allow_tools enables GET tool calls. */
bool rcache_cacheable(const rcache_call *c, bool allow_tools);
/* True if an llm op with these sampling settings (the op's own seed, before
 * any per-item offset) is deterministic. The rule rcache_cacheable applies. */
bool rcache_sampling_deterministic(const wf_sampling *s);

/* Canonical key of a call. Greedy calls (temperature <= 0 or top_k == 1)
 * ignore seed, top_k and top_p (the sampler's argmax does); top_p outside
 * (0, 1) counts as 1. Work is linear in the call's bytes. */
rcache_key rcache_key_of(const rcache_call *c);

/* New cache holding at most max_bytes (>= 1); NULL on allocation failure. */
rcache_t *rcache_new(size_t max_bytes);
void rcache_destroy(rcache_t **self_p);

/* Looks key up at time now_us. Returns 1 and fills *val on a hit (the entry
 * becomes most recently used), 0 on a miss (absent or expired; an expired
 * entry is dropped). */
int rcache_get(rcache_t *rc, rcache_key key, uint64_t now_us, rcache_val *val);
/* Stores a copy of val under key (replacing any entry), expiring at
 * now_us + ttl_us (ttl_us 0 = never). Evicts LRU entries to stay within
 * max_bytes. Returns 0, HE_ELIMIT if the entry alone exceeds max_bytes
 * (nothing stored; an older entry under key is dropped), HE_ENOMEM. */
int rcache_put(rcache_t *rc, rcache_key key, const rcache_val *val, uint64_t ttl_us, uint64_t now_us);
/* Drops key's entry; returns 1 if there was one. */
int rcache_remove(rcache_t *rc, rcache_key key);
void rcache_clear(rcache_t *rc);
void rcache_stats(const rcache_t *rc, rcache_counts *out);

#endif
