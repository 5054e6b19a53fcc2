/* Unit tests for kvcache (block manager) and blockhash (chained block hashes).
 * The stress test drives a random workload against a shadow model that
 * predicts every result, including the exact LRU victim of each eviction. */
#include <criterion/criterion.h>
#include <string.h>
#include <xxhash.h>

#include "blockhash.h"
#include "herr.h"
#include "kvcache.h"

/* ---- event recorder ---- */

typedef struct {
    int n;
    kvc_event ev[64];
    uint64_t hash[64];
    int32_t block[64];
} evlog;

static void rec_event(void *ud, kvc_event ev, uint64_t hash, int32_t block) {
    evlog *l = ud;
    if (l->n < 64) {
        l->ev[l->n] = ev;
        l->hash[l->n] = hash;
        l->block[l->n] = block;
    }
    l->n++;
}

/* Allocates a block, commits it under hash and drops the ref (-> cached). */
static int32_t cache_block(kvc_t *c, uint64_t hash) {
    int32_t b = kvc_alloc(c);
    cr_assert_geq(b, 0);
    cr_assert_eq(kvc_commit(c, b, hash), b);
    kvc_unref(c, b);
    return b;
}

Test(kvcache, new_rejects_bad_sizes) {
    cr_assert_null(kvc_new(0, 16));
    cr_assert_null(kvc_new(4, 0));
    kvc_destroy(NULL);
    kvc_t *c = kvc_new(4, 16);
    cr_assert_not_null(c);
    cr_assert_eq(kvc_block_size(c), 16);
    cr_assert_eq(kvc_n_blocks(c), 4);
    kvc_destroy(&c);
    cr_assert_null(c);
    kvc_destroy(&c);
}

Test(kvcache, alloc_until_full_then_enomem) {
    kvc_t *c = kvc_new(8, 16);
    bool seen[8] = {0};
    for (int i = 0; i < 8; i++) {
        int32_t b = kvc_alloc(c);
        cr_assert(b >= 0 && b < 8);
        cr_assert_not(seen[b], "block %d handed out twice", b);
        seen[b] = true;
        cr_assert_eq(kvc_refcount(c, b), 1);
    }
    cr_assert_eq(kvc_alloc(c), HE_ENOMEM);
    cr_assert_eq(kvc_available(c), 0);
    kvc_stats s = kvc_get_stats(c);
    cr_assert_eq(s.blocks_used, 8);
    cr_assert_eq(s.blocks_free, 0);
    kvc_destroy(&c);
}

Test(kvcache, unref_uncommitted_frees) {
    kvc_t *c = kvc_new(2, 16);
    int32_t a = kvc_alloc(c), b = kvc_alloc(c);
    kvc_ref(c, a);
    cr_assert_eq(kvc_refcount(c, a), 2);
    kvc_unref(c, a);
    cr_assert_eq(kvc_alloc(c), HE_ENOMEM);
    kvc_unref(c, a);
    kvc_stats s = kvc_get_stats(c);
    cr_assert_eq(s.blocks_free, 1);
    cr_assert_eq(s.blocks_used, 1);
    cr_assert_eq(s.blocks_cached, 0);
    cr_assert_not(kvc_block_hash(c, a, NULL));
    cr_assert_eq(kvc_alloc(c), a);
    cr_assert_eq(kvc_get_stats(c).evictions, 0);
    (void)b;
    kvc_destroy(&c);
}

Test(kvcache, commit_unref_cached_and_matched) {
    kvc_t *c = kvc_new(4, 16);
    int32_t b = cache_block(c, 0xabc);
    kvc_stats s = kvc_get_stats(c);
    cr_assert_eq(s.blocks_cached, 1);
    cr_assert_eq(s.blocks_free, 3);
    cr_assert_eq(s.commits, 1);
    cr_assert_eq(kvc_available(c), 4);
    uint64_t h = 0;
    cr_assert(kvc_block_hash(c, b, &h));
    cr_assert_eq(h, 0xabc);
    cr_assert_eq(kvc_lookup(c, 0xabc), b);
    cr_assert_eq(kvc_refcount(c, b), 0);
    int32_t out[1] = {-1};
    uint64_t q[1] = {0xabc};
    cr_assert_eq(kvc_match(c, q, 1, out), 1);
    cr_assert_eq(out[0], b);
    cr_assert_eq(kvc_refcount(c, b), 1);
    s = kvc_get_stats(c);
    cr_assert_eq(s.blocks_cached, 0);
    cr_assert_eq(s.blocks_used, 1);
    cr_assert_eq(s.lookups, 1);
    cr_assert_eq(s.hits, 1);
    kvc_destroy(&c);
}

Test(kvcache, commit_conflicts) {
    kvc_t *c = kvc_new(4, 16);
    int32_t a = kvc_alloc(c), b = kvc_alloc(c);
    cr_assert_eq(kvc_commit(c, a, 7), a);
    cr_assert_eq(kvc_commit(c, a, 7), a); /* idempotent */
    cr_assert_eq(kvc_commit(c, a, 8), HE_EINVAL);
    cr_assert_eq(kvc_commit(c, b, 7), a); /* another block holds 7 */
    cr_assert_not(kvc_block_hash(c, b, NULL));
    cr_assert_eq(kvc_get_stats(c).commits, 1);
    cr_assert_eq(kvc_commit(c, 99, 1), HE_ERANGE);
    cr_assert_eq(kvc_commit(c, -1, 1), HE_ERANGE);
    cr_assert_eq(kvc_commit(c, 3, 1), HE_EINVAL); /* free block, not referenced */
    kvc_destroy(&c);
}

Test(kvcache, out_of_range_ids_are_ignored) {
    kvc_t *c = kvc_new(2, 16);
    kvc_ref(c, 5);
    kvc_unref(c, -1);
    kvc_ref(c, 0); /* free block: refused */
    cr_assert_eq(kvc_refcount(c, 0), 0);
    cr_assert_eq(kvc_refcount(c, 2), HE_ERANGE);
    cr_assert_not(kvc_block_hash(c, 9, NULL));
    cr_assert_eq(kvc_get_stats(c).blocks_free, 2);
    cr_assert_eq(kvc_pin(c, 1), HE_ENOTFOUND);
    cr_assert_eq(kvc_unpin(c, 1), HE_ENOTFOUND);
    kvc_destroy(&c);
}

Test(kvcache, lru_evicts_oldest_release_first) {
    kvc_t *c = kvc_new(3, 16);
    int32_t b[3];
    for (int i = 0; i < 3; i++) {
        b[i] = kvc_alloc(c);
        kvc_commit(c, b[i], 100 + i);
    }
    kvc_unref(c, b[1]); /* release order: 1, 0, 2 */
    kvc_unref(c, b[0]);
    kvc_unref(c, b[2]);
    /* Touch 1 (match + unref) -> most recent; order now 0, 2, 1. */
    int32_t o[1];
    uint64_t q = 101;
    cr_assert_eq(kvc_match(c, &q, 1, o), 1);
    kvc_unref(c, o[0]);
    cr_assert_eq(kvc_alloc(c), b[0]);
    cr_assert_eq(kvc_lookup(c, 100), -1);
    cr_assert_eq(kvc_alloc(c), b[2]);
    cr_assert_eq(kvc_alloc(c), b[1]);
    cr_assert_eq(kvc_alloc(c), HE_ENOMEM);
    cr_assert_eq(kvc_get_stats(c).evictions, 3);
    kvc_destroy(&c);
}

Test(kvcache, tail_first_release_evicts_tail_first) {
    kvc_t *c = kvc_new(4, 16);
    int32_t seq[4];
    uint64_t h[4];
    bh_prefix(bh_root("m", 1), (int32_t[64]){0}, 64, 16, h);
    for (int i = 0; i < 4; i++) {
        seq[i] = kvc_alloc(c);
        cr_assert_eq(kvc_commit(c, seq[i], h[i]), seq[i]);
    }
    for (int i = 3; i >= 0; i--) kvc_unref(c, seq[i]);
    /* Two new blocks evict the last two of the prefix; the head survives. */
    cr_assert_eq(kvc_alloc(c), seq[3]);
    cr_assert_eq(kvc_alloc(c), seq[2]);
    int32_t o[4];
    cr_assert_eq(kvc_match(c, h, 4, o), 2);
    cr_assert_eq(o[0], seq[0]);
    cr_assert_eq(o[1], seq[1]);
    kvc_destroy(&c);
}

Test(kvcache, match_stops_at_first_missing) {
    kvc_t *c = kvc_new(8, 16);
    cache_block(c, 1);
    cache_block(c, 2);
    cache_block(c, 4);
    int32_t o[4] = {-1, -1, -1, -1};
    uint64_t q[4] = {1, 2, 3, 4};
    cr_assert_eq(kvc_match(c, q, 4, o), 2);
    cr_assert_eq(o[2], -1);
    cr_assert_eq(kvc_refcount(c, kvc_lookup(c, 4)), 0, "block after the gap must not be referenced");
    uint64_t q2[2] = {9, 1};
    cr_assert_eq(kvc_match(c, q2, 2, o), 0);
    cr_assert_eq(kvc_match(c, q2, 0, o), 0);
    kvc_stats s = kvc_get_stats(c);
    cr_assert_eq(s.lookups, 6);
    cr_assert_eq(s.hits, 2);
    kvc_destroy(&c);
}

Test(kvcache, eviction_never_takes_used_block) {
    kvc_t *c = kvc_new(3, 16);
    int32_t keep = kvc_alloc(c);
    kvc_commit(c, keep, 55);
    cache_block(c, 56);
    cache_block(c, 57);
    int32_t x = kvc_alloc(c), y = kvc_alloc(c);
    cr_assert_neq(x, keep);
    cr_assert_neq(y, keep);
    cr_assert_eq(kvc_alloc(c), HE_ENOMEM);
    cr_assert_eq(kvc_lookup(c, 55), keep);
    kvc_destroy(&c);
}

Test(kvcache, pin_survives_pressure_until_nothing_else_is_left) {
    kvc_t *c = kvc_new(3, 16);
    evlog log = {0};
    kvc_set_event_cb(c, rec_event, &log);
    int32_t p = cache_block(c, 77);
    cache_block(c, 78);
    cr_assert_eq(kvc_pin(c, 77), 0);
    cr_assert_eq(kvc_pin(c, 77), 0); /* nests */
    kvc_stats s = kvc_get_stats(c);
    cr_assert_eq(s.blocks_pinned, 1);
    cr_assert_eq(s.blocks_cached, 2);
    cr_assert_eq(kvc_available(c), 2); /* pinned blocks are a last resort, not available */
    int32_t a = kvc_alloc(c), b = kvc_alloc(c); /* the free block, then 78 (unpinned) */
    cr_assert(a != p && b != p);
    cr_assert_eq(kvc_lookup(c, 77), p);
    cr_assert_eq(kvc_lookup(c, 78), -1);
    /* A pinned block can still be used and released; it stays pinned. */
    int32_t o[1];
    uint64_t q = 77;
    cr_assert_eq(kvc_match(c, &q, 1, o), 1);
    cr_assert_eq(kvc_alloc(c), HE_ENOMEM); /* in use now */
    kvc_unref(c, o[0]);
    cr_assert_eq(kvc_unpin(c, 77), 0);
    cr_assert_eq(kvc_get_stats(c).blocks_pinned, 1); /* still pinned once */
    /* nothing else is left: the pinned idle block goes, with all its pins */
    cr_assert_eq(kvc_alloc(c), p);
    cr_assert_eq(kvc_lookup(c, 77), -1);
    cr_assert_eq(log.ev[log.n - 1], KVC_EV_REMOVED_PINNED);
    cr_assert_eq(log.hash[log.n - 1], 77);
    s = kvc_get_stats(c);
    cr_assert_eq(s.blocks_pinned, 0);
    cr_assert_eq(s.pinned_evictions, 1);
    cr_assert_eq(kvc_unpin(c, 77), HE_ENOTFOUND);
    cr_assert_eq(kvc_alloc(c), HE_ENOMEM); /* every block in use */
    cr_assert_eq(kvc_pin(c, 77), HE_ENOTFOUND);
    kvc_destroy(&c);
}

/* Workflow-aware eviction: pinned idle blocks go in order of how far ahead
 * they are needed (highest steps first; ties: the block committed last). */
Test(kvcache, pinned_eviction_follows_steps_to_execution) {
    kvc_t *c = kvc_new(4, 16);
    int32_t b10 = cache_block(c, 10), b11 = cache_block(c, 11), b12 = cache_block(c, 12);
    cr_assert_eq(kvc_pin_prio(c, 10, 5), 0);
    cr_assert_eq(kvc_pin_prio(c, 11, 1), 0);
    cr_assert_eq(kvc_pin_prio(c, 12, 5), 0);
    int32_t f = kvc_alloc(c); /* the free block first */
    cr_assert(f != b10 && f != b11 && f != b12);
    cr_assert_eq(kvc_alloc(c), b12); /* steps 5, committed after 10 */
    /* a more urgent pin lowers a block's steps: 10 is now needed next */
    cr_assert_eq(kvc_pin_prio(c, 10, 0), 0);
    cr_assert_eq(kvc_alloc(c), b11);
    cr_assert_eq(kvc_alloc(c), b10);
    cr_assert_eq(kvc_get_stats(c).pinned_evictions, 3);
    cr_assert_eq(kvc_alloc(c), HE_ENOMEM);
    kvc_destroy(&c);
}

Test(kvcache, set_prio_reorders_pinned_evictions) {
    kvc_t *c = kvc_new(3, 16);
    int32_t b10 = cache_block(c, 10), b11 = cache_block(c, 11), b12 = cache_block(c, 12);
    cr_assert_eq(kvc_set_prio(c, 10, 1), HE_EINVAL, "not pinned");
    cr_assert_eq(kvc_set_prio(c, 99, 1), HE_ENOTFOUND);
    cr_assert_eq(kvc_pin_count(c, 99), 0);
    cr_assert_eq(kvc_pin_prio(c, 10, 9), 0);
    cr_assert_eq(kvc_pin_prio(c, 11, 1), 0);
    cr_assert_eq(kvc_pin_prio(c, 11, 4), 0);
    cr_assert_eq(kvc_pin_prio(c, 12, 5), 0);
    cr_assert_eq(kvc_pin_count(c, 11), 2);
    /* the plan advanced: 10 is needed now, 11 much later */
    cr_assert_eq(kvc_set_prio(c, 10, 0), 0);
    cr_assert_eq(kvc_set_prio(c, 11, 30), 0);
    cr_assert_eq(kvc_alloc(c), b11);
    cr_assert_eq(kvc_alloc(c), b12);
    cr_assert_eq(kvc_alloc(c), b10);
    cr_assert_eq(kvc_pin_count(c, 11), 0, "evicted: its pins are gone");
    kvc_destroy(&c);
}

Test(kvcache, event_sequence) {
    kvc_t *c = kvc_new(2, 16);
    evlog log = {0};
    kvc_set_event_cb(c, rec_event, &log);
    int32_t a = cache_block(c, 11);
    int32_t b = cache_block(c, 12);
    int32_t n = kvc_alloc(c); /* evicts 11 */
    cr_assert_eq(n, a);
    cr_assert_eq(kvc_commit(c, n, 13), n);
    int32_t m = kvc_alloc(c); /* evicts 12 */
    cr_assert_eq(m, b);
    cr_assert_eq(kvc_commit(c, m, 13), n); /* duplicate: no event */
    struct { kvc_event ev; uint64_t h; int32_t b; } want[] = {
        {KVC_EV_STORED, 11, a}, {KVC_EV_STORED, 12, b}, {KVC_EV_REMOVED, 11, a},
        {KVC_EV_STORED, 13, a}, {KVC_EV_REMOVED, 12, b},
    };
    cr_assert_eq(log.n, 5);
    for (int i = 0; i < 5; i++) {
        cr_assert_eq(log.ev[i], want[i].ev, "event %d", i);
        cr_assert_eq(log.hash[i], want[i].h, "event %d", i);
        cr_assert_eq(log.block[i], want[i].b, "event %d", i);
    }
    kvc_destroy(&c);
}

/* ---- randomized workload against a shadow model ---- */

#define SN 24   /* blocks */
#define SH 64   /* hash space 1..SH: small, so duplicates and misses happen */
#define SOPS 20000

typedef struct {
    int ref, pin;
    uint32_t prio; /* while pinned: lowest steps of its pins */
    long cseq;     /* commit order */
    uint64_t hash; /* 0 = uncommitted */
    long ts;       /* when it last became evictable */
} mblock;

typedef struct {
    mblock b[SN];
    int32_t map[SH + 1]; /* hash -> block, -1 */
    int32_t holders[4096]; /* one entry per held reference */
    int nh;
    long clock, commits;
    int stored, removed, removed_pinned;
    uint64_t last_stored; /* hash of the last STORED event */
} model;

static uint64_t rng_state = 0x9e3779b97f4a7c15ULL;
static uint32_t rnd(uint32_t n) {
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return (uint32_t)(rng_state % n);
}

static void model_event(void *ud, kvc_event ev, uint64_t hash, int32_t block) {
    model *m = ud;
    cr_assert(block >= 0 && block < SN);
    if (ev == KVC_EV_STORED) { /* fired inside kvc_commit, before the model updates */
        cr_assert_eq(m->b[block].hash, 0, "STORED on committed block %d", block);
        m->last_stored = hash;
        m->stored++;
    } else {
        cr_assert(ev == KVC_EV_REMOVED || ev == KVC_EV_REMOVED_PINNED);
        cr_assert_eq(ev == KVC_EV_REMOVED_PINNED, m->b[block].pin > 0, "pinned flag of block %d", block);
        cr_assert_eq(m->b[block].hash, hash, "REMOVED hash mismatch for block %d", block);
        m->removed++;
        m->removed_pinned += ev == KVC_EV_REMOVED_PINNED;
    }
}

static bool evictable(const mblock *b) { return b->ref == 0 && b->hash && b->pin == 0; }

static void model_ref(model *m, int32_t x) {
    m->b[x].ref++;
    m->holders[m->nh++] = x;
}

static void check_invariants(kvc_t *c, const model *m) {
    int64_t nf = 0, nu = 0, nc = 0, np = 0, ne = 0;
    for (int32_t i = 0; i < SN; i++) {
        const mblock *b = &m->b[i];
        cr_assert_eq(kvc_refcount(c, i), b->ref, "block %d", i);
        uint64_t h = 0;
        cr_assert_eq(kvc_block_hash(c, i, &h), b->hash != 0, "block %d", i);
        if (b->hash) {
            cr_assert_eq(h, b->hash);
            cr_assert_eq(kvc_lookup(c, h), i);
        }
        /* exactly one state per block */
        int states = (b->ref > 0) + (b->ref == 0 && !b->hash) + (b->ref == 0 && b->hash);
        cr_assert_eq(states, 1);
        nu += b->ref > 0;
        nf += b->ref == 0 && !b->hash;
        nc += b->ref == 0 && b->hash;
        np += b->pin > 0;
        ne += evictable(b);
    }
    for (uint64_t h = 1; h <= SH; h++)
        cr_assert_eq(kvc_lookup(c, h), m->map[h], "hash %llu", (unsigned long long)h);
    kvc_stats s = kvc_get_stats(c);
    cr_assert_eq(s.blocks_free, nf);
    cr_assert_eq(s.blocks_used, nu);
    cr_assert_eq(s.blocks_cached, nc);
    cr_assert_eq(s.blocks_pinned, np);
    cr_assert_eq(s.blocks_free + s.blocks_used + s.blocks_cached, s.blocks_total);
    cr_assert_eq(kvc_available(c), nf + ne);
    cr_assert_eq(s.commits, m->stored);
    cr_assert_eq(s.evictions, m->removed);
    cr_assert_eq(s.pinned_evictions, m->removed_pinned);
}

static void op_alloc(kvc_t *c, model *m) {
    int32_t want_free = 0, victim = -1, pinned = -1;
    for (int32_t i = 0; i < SN; i++) {
        const mblock *b = &m->b[i];
        want_free += b->ref == 0 && !b->hash;
        if (evictable(b) && (victim < 0 || b->ts < m->b[victim].ts)) victim = i;
        if (b->ref == 0 && b->hash && b->pin > 0 &&
            (pinned < 0 || b->prio > m->b[pinned].prio ||
             (b->prio == m->b[pinned].prio && b->cseq > m->b[pinned].cseq)))
            pinned = i;
    }
    if (victim < 0) victim = pinned; /* workflow-aware last resort */
    int32_t x = kvc_alloc(c);
    if (want_free) {
        cr_assert(x >= 0 && m->b[x].ref == 0 && !m->b[x].hash, "alloc returned non-free %d", x);
    } else if (victim >= 0) {
        cr_assert_eq(x, victim, "eviction victim");
        m->map[m->b[x].hash] = -1;
        m->b[x].hash = 0;
        m->b[x].pin = 0;
    } else {
        cr_assert_eq(x, HE_ENOMEM);
        return;
    }
    model_ref(m, x);
}

static void op_unref(kvc_t *c, model *m) {
    if (!m->nh) return;
    int i = (int)rnd((uint32_t)m->nh);
    int32_t x = m->holders[i];
    m->holders[i] = m->holders[--m->nh];
    kvc_unref(c, x);
    if (--m->b[x].ref == 0 && m->b[x].hash) m->b[x].ts = m->clock++;
}

static void op_commit(kvc_t *c, model *m) {
    if (!m->nh) return;
    int32_t x = m->holders[rnd((uint32_t)m->nh)];
    uint64_t h = 1 + rnd(SH);
    int32_t r = kvc_commit(c, x, h);
    mblock *b = &m->b[x];
    if (b->hash) {
        cr_assert_eq(r, b->hash == h ? x : HE_EINVAL);
    } else if (m->map[h] >= 0) {
        cr_assert_eq(r, m->map[h]);
    } else {
        cr_assert_eq(r, x);
        cr_assert_eq(m->last_stored, h);
        b->hash = h;
        b->cseq = ++m->commits;
        m->map[h] = x;
    }
}

static void op_match(kvc_t *c, model *m) {
    uint64_t q[4];
    int32_t o[4];
    int n = 1 + (int)rnd(4), k = 0;
    for (int i = 0; i < n; i++) q[i] = 1 + rnd(SH);
    while (k < n && m->map[q[k]] >= 0) k++;
    cr_assert_eq(kvc_match(c, q, n, o), k);
    for (int i = 0; i < k; i++) {
        cr_assert_eq(o[i], m->map[q[i]]);
        model_ref(m, o[i]);
    }
}

static void op_pin(kvc_t *c, model *m, bool pin) {
    uint64_t h = 1 + rnd(SH);
    int32_t x = m->map[h];
    uint32_t steps = rnd(4);
    int r = pin ? kvc_pin_prio(c, h, steps) : kvc_unpin(c, h);
    if (x < 0) {
        cr_assert_eq(r, HE_ENOTFOUND);
    } else if (!pin && m->b[x].pin == 0) {
        cr_assert_eq(r, HE_EINVAL);
    } else {
        cr_assert_eq(r, 0);
        if (pin) m->b[x].prio = m->b[x].pin == 0 || steps < m->b[x].prio ? steps : m->b[x].prio;
        m->b[x].pin += pin ? 1 : -1;
        if (evictable(&m->b[x])) m->b[x].ts = m->clock++;
    }
}

Test(kvcache, random_workload_matches_shadow_model) {
    static model m;
    memset(&m, 0, sizeof m);
    for (int i = 0; i <= SH; i++) m.map[i] = -1;
    kvc_t *c = kvc_new(SN, 16);
    kvc_set_event_cb(c, model_event, &m);
    for (int op = 0; op < SOPS; op++) {
        uint32_t r = rnd(100);
        if (r < 30) op_alloc(c, &m);
        else if (r < 62) op_unref(c, &m);
        else if (r < 77) op_commit(c, &m);
        else if (r < 87) op_match(c, &m);
        else if (r < 92) {
            if (m.nh && m.nh < 4000) { /* plain extra ref on a held block */
                int32_t x = m.holders[rnd((uint32_t)m.nh)];
                kvc_ref(c, x);
                model_ref(&m, x);
            }
        } else op_pin(c, &m, r < 96);
        if (m.nh > 3000) /* keep the pool from saturating for good */
            while (m.nh > 100) op_unref(c, &m);
        check_invariants(c, &m);
    }
    cr_assert_gt(m.removed, 100, "workload should evict (got %d)", m.removed);
    cr_assert_gt(kvc_get_stats(c).hits, 100);
    kvc_destroy(&c);
}

/* ---- blockhash ---- */

Test(blockhash, known_values) {
    /* Fixed values: any change breaks cross-machine/cluster agreement. */
    uint64_t root = bh_root("helium-test", 11);
    int32_t toks[4] = {1, 2, 3, -1};
    cr_assert_eq(root, 0xce2e7f58d6e2bae2ULL, "root %016llx", (unsigned long long)root);
    uint64_t h = bh_chain(root, toks, 4);
    cr_assert_eq(h, 0xf2be1a6993059b27ULL, "chain %016llx", (unsigned long long)h);
    cr_assert_eq(bh_root(NULL, 0), 0xe079ae01c5b2a878ULL, "empty root %016llx", (unsigned long long)bh_root(NULL, 0));
}

Test(blockhash, matches_one_shot_xxh3_over_le_bytes) {
    /* Long enough to cross the internal chunking. */
    enum { N = 700 };
    static int32_t toks[N];
    static unsigned char buf[8 + 4 * N];
    uint64_t parent = 0x0123456789abcdefULL;
    for (int i = 0; i < N; i++) toks[i] = (int32_t)(i * 2654435761u);
    for (int i = 0; i < 8; i++) buf[i] = (unsigned char)(parent >> (8 * i));
    for (int i = 0; i < N; i++)
        for (int j = 0; j < 4; j++) buf[8 + 4 * i + j] = (unsigned char)((uint32_t)toks[i] >> (8 * j));
    cr_assert_eq(bh_chain(parent, toks, N), XXH3_64bits_withSeed(buf, sizeof buf, BH_SEED));
    cr_assert_eq(bh_chain(parent, toks, 5), XXH3_64bits_withSeed(buf, 8 + 20, BH_SEED));
    cr_assert_eq(bh_root("abc", 3), XXH3_64bits_withSeed("abc", 3, BH_SEED));
}

Test(blockhash, chaining_and_determinism) {
    int32_t t[4] = {10, 20, 30, 40};
    uint64_t r1 = bh_root("a", 1), r2 = bh_root("b", 1);
    cr_assert_neq(r1, r2);
    cr_assert_eq(bh_chain(r1, t, 4), bh_chain(r1, t, 4));
    cr_assert_neq(bh_chain(r1, t, 4), bh_chain(r2, t, 4), "same tokens, other parent");
    int32_t u[4] = {10, 20, 30, 41};
    cr_assert_neq(bh_chain(r1, t, 4), bh_chain(r1, u, 4));
    cr_assert_neq(bh_chain(r1, t, 4), bh_chain(r1, t, 3));
}

Test(blockhash, prefix_counts_full_blocks_only) {
    int32_t t[11];
    for (int i = 0; i < 11; i++) t[i] = 100 + i;
    uint64_t root = bh_root("m", 1), out[4] = {0, 0, 0, 0};
    cr_assert_eq(bh_prefix(root, t, 11, 4, out), 2);
    cr_assert_eq(out[0], bh_chain(root, t, 4));
    cr_assert_eq(out[1], bh_chain(out[0], t + 4, 4));
    cr_assert_eq(out[2], 0, "partial block must not be written");
    cr_assert_eq(bh_prefix(root, t, 3, 4, out), 0);
    cr_assert_eq(bh_prefix(root, t, 8, 4, out), 2);
    cr_assert_eq(bh_prefix(root, t, 8, 0, out), HE_EINVAL);
    cr_assert_eq(bh_prefix(root, t, -1, 4, out), HE_EINVAL);
    /* a prompt extending another shares its block hashes */
    uint64_t o2[4];
    cr_assert_eq(bh_prefix(root, t, 4, 4, o2), 1);
    cr_assert_eq(o2[0], out[0]);
}
