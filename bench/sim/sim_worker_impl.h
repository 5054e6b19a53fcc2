/* sim_worker_impl: the simulated worker's state, shared by its two files
 * and nothing else: sim_kv.c (the KV block cache, its hash table, cache
 * events and pins) and sim_worker.c (the engine's admission and steps,
 * pulls, messages, lifecycle). See sim_worker.c for the model and its
 * invariants.
 */
#ifndef HELIUM_SIM_WORKER_IMPL_H
#define HELIUM_SIM_WORKER_IMPL_H

#include <stdbool.h>
#include <stdint.h>

#include "sim.h"

enum { B_FREE, B_USED, B_LRU, B_PIN };

typedef struct {
    uint64_t hash;
    int32_t ref, prev, next;     /* prev/next: LRU list links (-1 = none); next: free list too */
    int32_t pins;                /* tags pinning this hash */
    uint32_t steps;              /* pin priority: steps until needed (higher evicted first) */
    uint64_t commit_no;
    uint8_t where;
    bool committed;
} blk_t;

typedef struct seq {
    uint64_t task_id;
    char *job_id, *op_id;
    uint32_t attempt, item, round;
    int32_t *toks;               /* (n_prompt + max_gen) prompt then generated */
    int32_t n_tok, n_prompt, n_kv, max_gen;
    int32_t *bt;                 /* (max_pages) blocks */
    int32_t n_bt;
    uint64_t *hashes;            /* (max_pages) */
    int32_t n_hashed, n_phash;
    int32_t cached, pulled, take;
    double pull_s, pull_bytes; /* its pull's simulated link time and bytes (OpResult.pull_us/bytes) */
    bool admitted_once, warm, no_cache;
    int64_t admit_seq;
    uint64_t phash;              /* digest of the prompt ids (outputs) */
    uint64_t *pin;               /* (n_pin) */
    int32_t n_pin;
    char *pin_tag;
    uint32_t pin_steps;
    uint64_t *pull;              /* (n_pull) hinted hashes */
    int32_t n_pull, pull_src;
    uint64_t pull_token;
    uint64_t wait_pull;          /* held: the token of the sibling's pull that brings its prefix */
    struct seq *next;
} seq_t;

typedef struct {
    char *tag;
    uint64_t *h;
    int32_t n, cap;
} tag_t;

struct sim_worker {
    sim_world *world;
    int index;
    char id[16];
    sim_geom g;
    sim_cost cost;
    size_t page_bytes;
    int32_t max_pages;
    blk_t *b;                    /* (kv_blocks) */
    int32_t free_head, lru_head, lru_tail, n_free, n_lru, n_pin_idle, n_pinned_total;
    uint64_t commits;
    uint64_t *hkey;              /* hash table (hcap): key, hval = block, -1 empty */
    int32_t *hval;
    uint32_t hcap;
    seq_t *wait_head, *wait_tail, *pulling;
    seq_t *held;                 /* calls waiting for a sibling's pull (worker/net/pull.c pull_bringing) */
    seq_t **run;                 /* (max_seqs) */
    int32_t n_run;
    seq_t **batch;               /* (max_seqs) this step's sequences */
    int32_t n_batch;
    int64_t admit_counter;
    bool stepping;
    double step_started;
    uint64_t next_pull_token;
    tag_t *tags;
    int32_t n_tags, cap_tags;
    uint64_t *ev_stored, *ev_removed;
    size_t n_stored, n_removed, cap_stored, cap_removed;
    uint64_t cache_seq;
    uint64_t lookups, hits;
    simw_stats st;
};

/* ---- sim_kv.c: blocks, hash table, events, pins (one worker, one thread) */
/* Block holding committed hash h, or -1. */
int32_t simkv_find(const sim_worker *w, uint64_t h);
/* Packs m as this worker's and delivers it to the coordinator. */
void simkv_send(sim_worker *w, Helium__WorkerMsg *m);
/* Sends the pending stored/removed hashes as one CacheEvents (if any). */
void simkv_flush(sim_worker *w);
/* A block with ref 1 (free, else the LRU idle one, else the pinned idle one
 * needed furthest ahead), or -1 when every block is in use. */
int32_t simkv_alloc(sim_worker *w);
void simkv_ref(sim_worker *w, int32_t i);
void simkv_unref(sim_worker *w, int32_t i);
/* Commits block i under h; returns the block holding h now (an identical
 * cached block is shared and i released). */
int32_t simkv_commit(sim_worker *w, int32_t i, uint64_t h);
/* Blocks that can be taken: free + idle cached (pinned included). */
int32_t simkv_available(const sim_worker *w);
/* Pins s's leading run of cached hashes under its tag (pins_apply's rule). */
void simkv_pin(sim_worker *w, const seq_t *s);
void simkv_unpin(sim_worker *w, const char *tag);
void simkv_pin_steps(sim_worker *w, const char *tag, uint32_t steps);

#endif
