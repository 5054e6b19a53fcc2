/* kvcache: the paged KV cache's block manager (metadata only).
 *
 * The KV storage itself belongs to the compute backend (host memory for the
 * CPU backend, device memory for CUDA); this module decides which block index
 * holds what. A pool of n_blocks fixed-size blocks (block_size tokens each):
 *   - reference counts: a block with ref > 0 is in use by a sequence and is
 *     never evicted or reused;
 *   - prefix hashes: a full block whose KV is computed is "committed" under its
 *     chained hash (blockhash.h); later prompts find their cached prefix with
 *     one hash lookup per block (kvc_match);
 *   - eviction: unreferenced committed blocks stay cached in LRU order and are
 *     reclaimed only when no free block is left. Release a sequence's blocks
 *     from last to first so that the tail of a prefix is evicted before its head
 *     (evicting a middle block strands every block after it);
 *   - pinning: a pinned hash's idle block (ref 0) is kept while any unpinned
 *     block can be reclaimed instead. Each pin carries a priority, the steps
 *     until the workflow needs the block (0: now; KVFlow's "steps to
 *     execution"); when nothing else is left, kvc_alloc evicts the pinned idle
 *     block needed furthest in the future (the highest priority value; ties:
 *     the block committed last, i.e. a prefix's tail first) rather than fail,
 *     dropping all its pins (event KVC_EV_REMOVED_PINNED);
 *   - events: every commit (stored) and eviction (removed) is reported through
 *     an optional callback, so a cluster directory can mirror the cache exactly;
 *     the callback runs on the engine thread, after the call that caused it
 *     has released the lock below, and must not call back into the cache.
 * One engine thread owns it. A second thread may only read committed blocks:
 * under kvc_lock it may look a hash up (kvc_lookup) and copy that block's
 * KV out of the backend; evictions and commits (kvc_alloc, kvc_commit) take
 * the same lock, so a block found under it is neither evicted nor reused
 * until kvc_unlock, and a committed block's KV is never written again.
 */
#ifndef HELIUM_KVCACHE_H
#define HELIUM_KVCACHE_H

#include <stdbool.h>
#include <stdint.h>

typedef struct kvc kvc_t;

typedef struct {
    int64_t blocks_total;
    int64_t blocks_free;    /* never used or released unhashed */
    int64_t blocks_used;    /* ref > 0 */
    int64_t blocks_cached;  /* ref == 0, committed, reclaimable (includes pinned) */
    int64_t blocks_pinned;
    int64_t lookups;        /* blocks asked for in kvc_match */
    int64_t hits;           /* blocks found in kvc_match */
    int64_t evictions;      /* pinned evictions included */
    int64_t pinned_evictions;
    int64_t commits;
} kvc_stats;

typedef enum {
    KVC_EV_STORED = 1,
    KVC_EV_REMOVED = 2,
    KVC_EV_REMOVED_PINNED = 3 /* removed, and it was pinned: its pins are gone */
} kvc_event;
typedef void (*kvc_event_fn)(void *ud, kvc_event ev, uint64_t hash, int32_t block);

kvc_t *kvc_new(int32_t n_blocks, int32_t block_size);
void kvc_destroy(kvc_t **self_p);

int32_t kvc_block_size(const kvc_t *c);
int32_t kvc_n_blocks(const kvc_t *c);
void kvc_set_event_cb(kvc_t *c, kvc_event_fn fn, void *ud);

/* Takes a block for new KV: a free one, else evicts the least recently used
 * unpinned cached block (O(1)), else the pinned idle block needed furthest in
 * the future (O(n_blocks) scan). Returns the block (ref = 1), or HE_ENOMEM
 * (negative) when every block is in use. */
int32_t kvc_alloc(kvc_t *c);
/* Reference counting. Dropping the last ref of a committed block makes it
 * cached (most recently used); of an uncommitted block, free. */
void kvc_ref(kvc_t *c, int32_t block);
void kvc_unref(kvc_t *c, int32_t block);
int32_t kvc_refcount(const kvc_t *c, int32_t block);

/* Finds the longest run hashes[0..k) all present, takes a ref on each, writes
 * their blocks to blocks_out, and returns k (0..n). Counts lookups/hits. */
int kvc_match(kvc_t *c, const uint64_t *hashes, int n, int32_t *blocks_out);
/* Block holding hash, or -1 (no ref taken, no counters). */
int32_t kvc_lookup(const kvc_t *c, uint64_t hash);
/* Registers a full, computed block under hash. If another block already holds
 * hash, nothing changes and that block is returned; else returns block. */
int32_t kvc_commit(kvc_t *c, int32_t block, uint64_t hash);
/* Hash of a committed block (false if not committed). */
bool kvc_block_hash(const kvc_t *c, int32_t block, uint64_t *hash);

/* The lock a reading thread holds around kvc_lookup and its copy (above). */
void kvc_lock(kvc_t *c);
void kvc_unlock(kvc_t *c);

/* Pinning by hash: pinned blocks survive eviction. Counts nest. Returns
 * HE_ENOTFOUND if the hash is not cached. */
int kvc_pin(kvc_t *c, uint64_t hash);
/* As kvc_pin, with the steps until the block is needed (a block keeps the
 * lowest priority value of its pins: the most urgent need wins). kvc_pin is
 * kvc_pin_prio(..., 0). */
int kvc_pin_prio(kvc_t *c, uint64_t hash, uint32_t steps);
int kvc_unpin(kvc_t *c, uint64_t hash);
/* How many pins hold hash (0 if it is not cached or not pinned). */
int32_t kvc_pin_count(const kvc_t *c, uint64_t hash);
/* Replaces a pinned block's priority (its pins' needs changed: the caller
 * passes the lowest over the pins it still has). HE_ENOTFOUND if not cached,
 * HE_EINVAL if not pinned. */
int kvc_set_prio(kvc_t *c, uint64_t hash, uint32_t steps);

/* Free + reclaimable blocks (what kvc_alloc can still hand out). */
int32_t kvc_available(const kvc_t *c);
kvc_stats kvc_get_stats(const kvc_t *c);

#endif
