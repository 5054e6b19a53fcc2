/* kvcache: paged KV block manager (metadata only); see kvcache.h.
 *
 * Every block is in exactly one state:
 *   FREE    ref == 0, uncommitted: on the free stack;
 *   USED    ref > 0 (committed or not): on no list;
 *   CACHED  ref == 0, committed: on the LRU list if unpinned, else on no list
 *           (pinned idle blocks are evicted only when the LRU list is empty,
 *           by a scan for the highest pin priority value).
 * A committed block's hash is in the map (hash -> block) until the block is
 * evicted; pins nest per block and only committed blocks can be pinned.
 * The LRU list is intrusive and circular around a sentinel node n_blocks:
 * sentinel.next is the least recently used block, sentinel.prev the most.
 * The map uses open addressing with linear probing, at most half full, and
 * backward-shift deletion (no tombstones), so all operations are O(1) expected.
 *
 * Threads and locking (memcached's style: kvc_alloc() takes the lock and
 * calls do_kvc_alloc(), which assumes it is held):
 *   - the engine thread owns the cache: it alone writes any field, and it
 *     reads every field without the lock (its own writes cannot race it);
 *   - one other thread (the worker's pull server) may read the map and copy
 *     a committed block's KV, under mu only (kvc_lock, kvc_lookup,
 *     kvc_unlock); so the engine thread takes mu for the two writes that
 *     change what such a reader sees: a map entry (map_put in commit,
 *     map_del in eviction) and the reuse of a block (alloc);
 *   - event callbacks run on the engine thread AFTER mu is released (the
 *     event is recorded under the lock and emitted once it is dropped), so a
 *     slow callback never holds up a reader; they must not call back into
 *     this cache.
 * Each field below says which of these applies.
 */
#include "kvcache.h"

#include <assert.h>
#include <pthread.h>
#include <stdlib.h>

#include "herr.h"

typedef struct {
    int32_t ref;
    int32_t pin;       /* pin nesting count; > 0 only when committed */
    int32_t prev, next; /* LRU links, -1 when not on the list */
    bool committed;
    uint32_t prio;     /* while pinned: steps until needed (lowest of its pins) */
    uint64_t hash;     /* valid when committed */
    uint64_t seq;      /* commit order (tie-break of pinned evictions: tails first) */
} kvc_block;

struct kvc {
    int32_t n_blocks, block_size; /* immutable after kvc_new */
    kvc_block *b;       /* (n_blocks + 1): last entry is the LRU sentinel. Engine thread only, except that
                           a block's KV is reused (alloc) under mu */
    int32_t *free_stk;  /* (n_blocks) engine thread only */
    int32_t n_free;     /* engine thread only */
    uint64_t *mkey;     /* (mcap) map keys: written under mu (engine thread); read by the engine thread
                           freely, by the other thread under mu */
    int32_t *mval;      /* (mcap) map values: block, or -1 for an empty slot; as mkey */
    uint32_t mmask;     /* mcap - 1, mcap a power of two >= 2 * n_blocks; immutable */
    int64_t n_used, n_lru, n_cached, n_pinned; /* engine thread only; n_cached: ref 0 and committed */
    int64_t lookups, hits, evictions, commits, pinned_evictions; /* engine thread only */
    kvc_event_fn ev_fn; /* set before any other thread starts; called on the engine thread, outside mu */
    void *ev_ud;
    pthread_mutex_t mu; /* guards map writes and block reuse against the reading thread */
    bool mu_init;
    /* the event a locked call recorded, emitted after unlocking (engine thread only) */
    kvc_event pend_ev;  /* 0: none */
    uint64_t pend_hash;
    int32_t pend_block;
};

/* ---- hash map: uint64 hash -> block ---- */

static uint32_t map_slot(const kvc_t *c, uint64_t key) {
    key ^= key >> 33; /* murmur3 fmix64: callers' keys need not be random */
    key *= 0xff51afd7ed558ccdULL;
    key ^= key >> 33;
    key *= 0xc4ceb9fe1a85ec53ULL;
    key ^= key >> 33;
    return (uint32_t)key & c->mmask;
}

static int32_t map_get(const kvc_t *c, uint64_t key) {
    for (uint32_t i = map_slot(c, key);; i = (i + 1) & c->mmask) {
        if (c->mval[i] < 0) return -1;
        if (c->mkey[i] == key) return c->mval[i];
    }
}

static void map_put(kvc_t *c, uint64_t key, int32_t block) { /* key absent */
    uint32_t i = map_slot(c, key);
    while (c->mval[i] >= 0) i = (i + 1) & c->mmask;
    c->mkey[i] = key;
    c->mval[i] = block;
}

static void map_del(kvc_t *c, uint64_t key) {
    uint32_t i = map_slot(c, key);
    while (c->mval[i] >= 0 && c->mkey[i] != key) i = (i + 1) & c->mmask;
    if (c->mval[i] < 0) return;
    /* Backward shift: pull later entries of the probe run into the hole when
     * their home slot does not lie cyclically in (hole, j]. */
    for (uint32_t j = (i + 1) & c->mmask; c->mval[j] >= 0; j = (j + 1) & c->mmask) {
        uint32_t home = map_slot(c, c->mkey[j]);
        if (((j - home) & c->mmask) >= ((j - i) & c->mmask)) {
            c->mkey[i] = c->mkey[j];
            c->mval[i] = c->mval[j];
            i = j;
        }
    }
    c->mval[i] = -1;
}

/* ---- LRU list ---- */

static void lru_push_tail(kvc_t *c, int32_t x) {
    int32_t s = c->n_blocks, t = c->b[s].prev;
    c->b[x].prev = t;
    c->b[x].next = s;
    c->b[t].next = x;
    c->b[s].prev = x;
    c->n_lru++;
}

static void lru_remove(kvc_t *c, int32_t x) {
    kvc_block *k = &c->b[x];
    c->b[k->prev].next = k->next;
    c->b[k->next].prev = k->prev;
    k->prev = k->next = -1;
    c->n_lru--;
}

/* Records an event under mu; emit_pending() delivers it after unlocking.
 * Each locked call records at most one. */
static void emit(kvc_t *c, kvc_event ev, uint64_t hash, int32_t block) {
    c->pend_ev = ev;
    c->pend_hash = hash;
    c->pend_block = block;
}

static void emit_pending(kvc_t *c) {
    kvc_event ev = c->pend_ev;
    if (!ev) return;
    c->pend_ev = 0;
    if (c->ev_fn) c->ev_fn(c->ev_ud, ev, c->pend_hash, c->pend_block);
}

static bool bad_block(const kvc_t *c, int32_t block, const char *fn) {
    if (block >= 0 && block < c->n_blocks) return false;
    he_set(HE_ERANGE, "%s: block %d out of range [0, %d)", fn, block, c->n_blocks);
    return true;
}

/* ---- lifecycle ---- */

kvc_t *kvc_new(int32_t n_blocks, int32_t block_size) {
    if (n_blocks <= 0 || n_blocks > (1 << 29) || block_size <= 0) {
        he_set(HE_EINVAL, "kvc_new: bad n_blocks %d / block_size %d", n_blocks, block_size);
        return NULL;
    }
    uint32_t mcap = 16;
    while (mcap < 2u * (uint32_t)n_blocks) mcap <<= 1;
    kvc_t *c = calloc(1, sizeof *c);
    if (c) {
        c->b = calloc((size_t)n_blocks + 1, sizeof *c->b);
        c->free_stk = malloc((size_t)n_blocks * sizeof *c->free_stk);
        c->mkey = malloc((size_t)mcap * sizeof *c->mkey);
        c->mval = malloc((size_t)mcap * sizeof *c->mval);
    }
    if (!c || !c->b || !c->free_stk || !c->mkey || !c->mval) {
        kvc_destroy(&c);
        he_set(HE_ENOMEM, "kvc_new: out of memory for %d blocks", n_blocks);
        return NULL;
    }
    c->n_blocks = n_blocks;
    c->block_size = block_size;
    c->mmask = mcap - 1;
    for (uint32_t i = 0; i < mcap; i++) c->mval[i] = -1;
    for (int32_t i = 0; i < n_blocks; i++) {
        c->b[i].prev = c->b[i].next = -1;
        c->free_stk[i] = n_blocks - 1 - i; /* block 0 is handed out first */
    }
    c->n_free = n_blocks;
    c->b[n_blocks].prev = c->b[n_blocks].next = n_blocks; /* empty LRU */
    if (pthread_mutex_init(&c->mu, NULL) != 0) {
        kvc_destroy(&c);
        he_set(HE_ENOMEM, "kvc_new: cannot create its mutex");
        return NULL;
    }
    c->mu_init = true;
    return c;
}

void kvc_destroy(kvc_t **self_p) {
    if (!self_p || !*self_p) return;
    kvc_t *c = *self_p;
    if (c->mu_init) pthread_mutex_destroy(&c->mu);
    free(c->b);
    free(c->free_stk);
    free(c->mkey);
    free(c->mval);
    free(c);
    *self_p = NULL;
}

int32_t kvc_block_size(const kvc_t *c) { return c->block_size; }
int32_t kvc_n_blocks(const kvc_t *c) { return c->n_blocks; }

void kvc_set_event_cb(kvc_t *c, kvc_event_fn fn, void *ud) {
    c->ev_fn = fn;
    c->ev_ud = ud;
}

/* ---- allocation and reference counting ---- */

void kvc_lock(kvc_t *c) { pthread_mutex_lock(&c->mu); }
void kvc_unlock(kvc_t *c) { pthread_mutex_unlock(&c->mu); }

static int32_t do_kvc_alloc(kvc_t *c) {
    int32_t x;
    if (c->n_free > 0) {
        x = c->free_stk[--c->n_free];
    } else if (c->n_lru > 0) {
        x = c->b[c->n_blocks].next; /* least recently used */
        kvc_block *k = &c->b[x];
        lru_remove(c, x);
        c->n_cached--;
        map_del(c, k->hash);
        k->committed = false;
        c->evictions++;
        emit(c, KVC_EV_REMOVED, k->hash, x);
        k->hash = 0;
    } else {
        /* workflow-aware: the pinned idle block needed furthest in the future */
        x = -1;
        for (int32_t i = 0; i < c->n_blocks; i++) {
            const kvc_block *k = &c->b[i];
            if (k->ref != 0 || !k->committed || k->pin == 0) continue;
            if (x < 0 || k->prio > c->b[x].prio || (k->prio == c->b[x].prio && k->seq > c->b[x].seq)) x = i;
        }
        if (x < 0) return he_set(HE_ENOMEM, "kv cache: all %d blocks in use", c->n_blocks);
        kvc_block *k = &c->b[x];
        k->pin = 0;
        c->n_pinned--;
        c->n_cached--;
        map_del(c, k->hash);
        k->committed = false;
        c->evictions++;
        c->pinned_evictions++;
        emit(c, KVC_EV_REMOVED_PINNED, k->hash, x);
        k->hash = 0;
    }
    c->b[x].ref = 1;
    c->n_used++;
    return x;
}

int32_t kvc_alloc(kvc_t *c) {
    pthread_mutex_lock(&c->mu);
    int32_t x = do_kvc_alloc(c);
    pthread_mutex_unlock(&c->mu);
    emit_pending(c);
    return x;
}

void kvc_ref(kvc_t *c, int32_t block) {
    if (bad_block(c, block, "kvc_ref")) return;
    kvc_block *k = &c->b[block];
    if (k->ref == 0) {
        if (!k->committed) { /* on the free stack: nothing to share */
            he_set(HE_EINVAL, "kvc_ref: block %d is free", block);
            return;
        }
        if (k->pin == 0) lru_remove(c, block);
        c->n_cached--;
        c->n_used++;
    }
    k->ref++;
}

void kvc_unref(kvc_t *c, int32_t block) {
    if (bad_block(c, block, "kvc_unref")) return;
    kvc_block *k = &c->b[block];
    assert(k->ref > 0 && "kvc_unref below zero");
    if (k->ref <= 0) return;
    if (--k->ref > 0) return;
    c->n_used--;
    if (!k->committed) {
        c->free_stk[c->n_free++] = block;
    } else {
        c->n_cached++;
        if (k->pin == 0) lru_push_tail(c, block);
    }
}

int32_t kvc_refcount(const kvc_t *c, int32_t block) {
    if (block < 0 || block >= c->n_blocks)
        return he_set(HE_ERANGE, "kvc_refcount: block %d out of range", block);
    return c->b[block].ref;
}

/* ---- prefix hashes ---- */

int kvc_match(kvc_t *c, const uint64_t *hashes, int n, int32_t *blocks_out) {
    int k = 0;
    if (n <= 0) return 0;
    if (!hashes || !blocks_out) return he_set(HE_EINVAL, "kvc_match: NULL hashes/blocks_out");
    c->lookups += n;
    for (; k < n; k++) {
        int32_t x = map_get(c, hashes[k]);
        if (x < 0) break;
        kvc_ref(c, x);
        blocks_out[k] = x;
    }
    c->hits += k;
    return k;
}

int32_t kvc_lookup(const kvc_t *c, uint64_t hash) { return map_get(c, hash); }

static int32_t do_kvc_commit(kvc_t *c, int32_t block, uint64_t hash) {
    if (bad_block(c, block, "kvc_commit")) return HE_ERANGE;
    kvc_block *k = &c->b[block];
    if (k->ref <= 0) return he_set(HE_EINVAL, "kvc_commit: block %d is not referenced", block);
    if (k->committed) {
        if (k->hash == hash) return block;
        return he_set(HE_EINVAL, "kvc_commit: block %d already holds hash %016llx", block,
                      (unsigned long long)k->hash);
    }
    int32_t other = map_get(c, hash);
    if (other >= 0) return other;
    map_put(c, hash, block);
    k->committed = true;
    k->hash = hash;
    k->seq = (uint64_t)++c->commits;
    emit(c, KVC_EV_STORED, hash, block);
    return block;
}

int32_t kvc_commit(kvc_t *c, int32_t block, uint64_t hash) {
    pthread_mutex_lock(&c->mu);
    int32_t r = do_kvc_commit(c, block, hash);
    pthread_mutex_unlock(&c->mu);
    emit_pending(c);
    return r;
}

bool kvc_block_hash(const kvc_t *c, int32_t block, uint64_t *hash) {
    if (block < 0 || block >= c->n_blocks || !c->b[block].committed) return false;
    if (hash) *hash = c->b[block].hash;
    return true;
}

/* ---- pinning ---- */

int kvc_pin(kvc_t *c, uint64_t hash) { return kvc_pin_prio(c, hash, 0); }

int kvc_pin_prio(kvc_t *c, uint64_t hash, uint32_t steps) {
    int32_t x = map_get(c, hash);
    if (x < 0) return he_set(HE_ENOTFOUND, "kvc_pin: hash %016llx not cached", (unsigned long long)hash);
    kvc_block *k = &c->b[x];
    if (k->pin++ == 0) {
        c->n_pinned++;
        k->prio = steps;
        if (k->ref == 0) lru_remove(c, x);
    } else if (steps < k->prio) {
        k->prio = steps;
    }
    return HE_OK;
}

int kvc_unpin(kvc_t *c, uint64_t hash) {
    int32_t x = map_get(c, hash);
    if (x < 0) return he_set(HE_ENOTFOUND, "kvc_unpin: hash %016llx not cached", (unsigned long long)hash);
    kvc_block *k = &c->b[x];
    if (k->pin == 0) return he_set(HE_EINVAL, "kvc_unpin: hash %016llx is not pinned", (unsigned long long)hash);
    if (--k->pin == 0) {
        c->n_pinned--;
        if (k->ref == 0) lru_push_tail(c, x);
    }
    return HE_OK;
}

int32_t kvc_pin_count(const kvc_t *c, uint64_t hash) {
    int32_t x = map_get(c, hash);
    return x < 0 ? 0 : (int32_t)c->b[x].pin;
}

int kvc_set_prio(kvc_t *c, uint64_t hash, uint32_t steps) {
    int32_t x = map_get(c, hash);
    if (x < 0) return he_set(HE_ENOTFOUND, "kvc_set_prio: hash %016llx not cached", (unsigned long long)hash);
    kvc_block *k = &c->b[x];
    if (k->pin == 0) return he_set(HE_EINVAL, "kvc_set_prio: hash %016llx is not pinned", (unsigned long long)hash);
    k->prio = steps;
    return HE_OK;
}

/* ---- accounting ---- */

int32_t kvc_available(const kvc_t *c) { return (int32_t)(c->n_free + c->n_lru); }

kvc_stats kvc_get_stats(const kvc_t *c) {
    kvc_stats s = {
        .blocks_total = c->n_blocks,
        .blocks_free = c->n_free,
        .blocks_used = c->n_used,
        .blocks_cached = c->n_cached,
        .blocks_pinned = c->n_pinned,
        .lookups = c->lookups,
        .hits = c->hits,
        .evictions = c->evictions,
        .pinned_evictions = c->pinned_evictions,
        .commits = c->commits,
    };
    return s;
}
