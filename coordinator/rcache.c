/* rcache: see rcache.h.
 *
 * Entries sit in a chained hash table (buckets: power of two, indexed by
 * key.lo) and on one doubly linked LRU list (head = most recently used).
 * Invariant: rc->bytes is the sum of entry_bytes() over the entries and never
 * exceeds rc->max_bytes after a call returns.
 */
#include "rcache.h"

#include <stdlib.h>
#include <string.h>
#define XXH_STATIC_LINKING_ONLY /* XXH3_state_t on the stack */
#include <xxhash.h>

#include "herr.h"

#define RCACHE_SEED 0x48656c69756d5243ULL /* "HeliumRC" */

typedef struct rc_entry {
    rcache_key key;
    struct rc_entry *hnext;          /* bucket chain */
    struct rc_entry *prev, *next;    /* LRU list */
    uint64_t expires_us;             /* 0 = never */
    char *text;                      /* (len + 1) */
    size_t len;
    int32_t *ids;                    /* (n_ids) */
    size_t n_ids;
    uint32_t generated_tokens, finish_reason;
    size_t bytes;                    /* charged size */
} rc_entry;

struct rcache {
    rc_entry **buckets;              /* (n_buckets) */
    size_t n_buckets;
    rc_entry *head, *tail;           /* LRU: head most recent */
    size_t max_bytes;
    rcache_counts c;
};

/* ---------------------------------------------------------------- the rule */

static bool greedy(float temperature, uint32_t top_k) { return !(temperature > 0.0f) || top_k == 1; }

bool rcache_sampling_deterministic(const wf_sampling *s) {
    return s && (greedy(s->temperature, s->top_k) || s->seed != 0);
}

bool rcache_cacheable(const rcache_call *c, bool allow_tools) {
    if (!c) return false;
    if (c->kind == RCACHE_LLM) return greedy(c->temperature, c->top_k) || c->seeded;
    if (c->kind == RCACHE_TOOL) return allow_tools && c->method && strcmp(c->method, "GET") == 0;
    return false;
}

/* -------------------------------------------------------------------- keys */

/* A buffered writer of the canonical encoding (fixed-width little-endian
 * integers, length-prefixed strings) into an XXH3-128 state. */
typedef struct {
    XXH3_state_t st;
    unsigned char buf[512];
    size_t n;
} kw;

static void kw_flush(kw *w) {
    if (w->n) XXH3_128bits_update(&w->st, w->buf, w->n);
    w->n = 0;
}

static void kw_raw(kw *w, const void *p, size_t n) {
    if (n == 0) return;
    if (n > sizeof w->buf - w->n) {
        kw_flush(w);
        if (n > sizeof w->buf) {
            XXH3_128bits_update(&w->st, p, n);
            return;
        }
    }
    memcpy(w->buf + w->n, p, n);
    w->n += n;
}

static void put_u64(kw *w, uint64_t v) {
    unsigned char b[8];
    for (int i = 0; i < 8; i++) b[i] = (unsigned char)(v >> (8 * i));
    kw_raw(w, b, 8);
}

static void put_u32(kw *w, uint32_t v) {
    unsigned char b[4];
    for (int i = 0; i < 4; i++) b[i] = (unsigned char)(v >> (8 * i));
    kw_raw(w, b, 4);
}

static void put_f32(kw *w, float f) {
    uint32_t u;
    if (f == 0.0f) f = 0.0f; /* -0 -> +0 */
    memcpy(&u, &f, 4);
    put_u32(w, u);
}

/* Length-prefixed bytes (NULL = empty). */
static void put_bytes(kw *w, const void *p, size_t n) {
    put_u64(w, n);
    if (n) kw_raw(w, p, n);
}

static void put_str(kw *w, const char *str) { put_bytes(w, str, str ? strlen(str) : 0); }

rcache_key rcache_key_of(const rcache_call *c) {
    kw w;
    w.n = 0;
    XXH3_128bits_reset_withSeed(&w.st, RCACHE_SEED);
    kw *st = &w;
    put_u32(st, (uint32_t)c->kind);
    if (c->kind == RCACHE_LLM) {
        put_u64(st, c->model_root);
        put_str(st, c->model);
        if (c->ids) {
            put_u32(st, 1);
            put_u64(st, c->n_ids);
            for (size_t i = 0; i < c->n_ids; i++) put_u32(st, (uint32_t)c->ids[i]);
        } else {
            put_u32(st, 2);
            put_bytes(st, c->text, c->text ? c->text_len : 0);
        }
        if (greedy(c->temperature, c->top_k)) {
            put_u32(st, 0);
        } else {
            put_u32(st, 1);
            put_f32(st, c->temperature);
            put_u32(st, c->top_k);
            put_f32(st, c->top_p > 0.0f && c->top_p < 1.0f ? c->top_p : 1.0f);
            put_u64(st, c->seed);
        }
        put_u32(st, c->max_tokens);
        put_u64(st, c->stop ? c->n_stop : 0);
        for (size_t i = 0; c->stop && i < c->n_stop; i++) put_str(st, c->stop[i]);
    } else {
        put_str(st, c->method);
        put_str(st, c->url);
        put_bytes(st, c->body, c->body ? c->body_len : 0);
        put_u64(st, c->headers ? c->n_headers : 0);
        for (size_t i = 0; c->headers && i < c->n_headers; i++) {
            put_str(st, c->headers[i].key);
            put_str(st, c->headers[i].value);
        }
    }
    kw_flush(st);
    XXH128_hash_t h = XXH3_128bits_digest(&st->st);
    return (rcache_key){.lo = h.low64, .hi = h.high64};
}

/* ------------------------------------------------------------------- table */

static bool key_eq(rcache_key a, rcache_key b) { return a.lo == b.lo && a.hi == b.hi; }

static rc_entry **slot_of(const rcache_t *rc, rcache_key k) {
    return &rc->buckets[k.lo & (rc->n_buckets - 1)];
}

static rc_entry *find(const rcache_t *rc, rcache_key k) {
    for (rc_entry *e = *slot_of(rc, k); e; e = e->hnext)
        if (key_eq(e->key, k)) return e;
    return NULL;
}

static void lru_unlink(rcache_t *rc, rc_entry *e) {
    if (e->prev) e->prev->next = e->next; else rc->head = e->next;
    if (e->next) e->next->prev = e->prev; else rc->tail = e->prev;
    e->prev = e->next = NULL;
}

static void lru_push_front(rcache_t *rc, rc_entry *e) {
    e->prev = NULL;
    e->next = rc->head;
    if (rc->head) rc->head->prev = e; else rc->tail = e;
    rc->head = e;
}

static void entry_free(rc_entry *e) {
    if (!e) return;
    free(e->text);
    free(e->ids);
    free(e);
}

/* Unlinks e from table and list, uncharges it and frees it. */
static void drop(rcache_t *rc, rc_entry *e) {
    for (rc_entry **pp = slot_of(rc, e->key); *pp; pp = &(*pp)->hnext)
        if (*pp == e) {
            *pp = e->hnext;
            break;
        }
    lru_unlink(rc, e);
    rc->c.bytes -= e->bytes;
    rc->c.entries--;
    entry_free(e);
}

/* Doubles the bucket array (best effort: on allocation failure the chains
 * just get longer). */
static void grow(rcache_t *rc) {
    size_t nb = rc->n_buckets * 2;
    rc_entry **b = calloc(nb, sizeof *b);
    if (!b) return;
    for (size_t i = 0; i < rc->n_buckets; i++) {
        rc_entry *e = rc->buckets[i];
        while (e) {
            rc_entry *n = e->hnext;
            rc_entry **s = &b[e->key.lo & (nb - 1)];
            e->hnext = *s;
            *s = e;
            e = n;
        }
    }
    free(rc->buckets);
    rc->buckets = b;
    rc->n_buckets = nb;
}

static bool expired(const rc_entry *e, uint64_t now_us) { return e->expires_us && now_us >= e->expires_us; }

/* ---------------------------------------------------------------- the API */

rcache_t *rcache_new(size_t max_bytes) {
    if (max_bytes == 0) return NULL;
    rcache_t *rc = calloc(1, sizeof *rc);
    if (!rc) return NULL;
    rc->n_buckets = 64;
    if (!(rc->buckets = calloc(rc->n_buckets, sizeof *rc->buckets))) {
        free(rc);
        return NULL;
    }
    rc->max_bytes = max_bytes;
    rc->c.max_bytes = max_bytes;
    return rc;
}

void rcache_clear(rcache_t *rc) {
    if (!rc) return;
    while (rc->head) drop(rc, rc->head);
}

void rcache_destroy(rcache_t **self_p) {
    if (!self_p || !*self_p) return;
    rcache_t *rc = *self_p;
    rcache_clear(rc);
    free(rc->buckets);
    free(rc);
    *self_p = NULL;
}

int rcache_get(rcache_t *rc, rcache_key key, uint64_t now_us, rcache_val *val) {
    rc->c.lookups++;
    rc_entry *e = find(rc, key);
    if (e && expired(e, now_us)) {
        drop(rc, e);
        rc->c.expired++;
        e = NULL;
    }
    if (!e) {
        rc->c.misses++;
        return 0;
    }
    rc->c.hits++;
    lru_unlink(rc, e);
    lru_push_front(rc, e);
    if (val)
        *val = (rcache_val){.text = e->text, .len = e->len, .ids = e->ids, .n_ids = e->n_ids,
                            .generated_tokens = e->generated_tokens, .finish_reason = e->finish_reason};
    return 1;
}

int rcache_remove(rcache_t *rc, rcache_key key) {
    rc_entry *e = find(rc, key);
    if (!e) return 0;
    drop(rc, e);
    return 1;
}

int rcache_put(rcache_t *rc, rcache_key key, const rcache_val *val, uint64_t ttl_us, uint64_t now_us) {
    if (!val) return he_set(HE_EINVAL, "rcache_put: no value");
    size_t len = val->text ? val->len : 0;
    size_t n_ids = val->ids ? val->n_ids : 0;
    rc_entry *old = find(rc, key);
    /* overflow-safe size: each term is checked against the bound first */
    if (len > rc->max_bytes || n_ids > rc->max_bytes / sizeof(int32_t) ||
        RCACHE_ENTRY_OVERHEAD + len + n_ids * sizeof(int32_t) > rc->max_bytes) {
        if (old) drop(rc, old);
        rc->c.rejected++;
        return he_set(HE_ELIMIT, "result of %zu bytes and %zu ids exceeds the cache size %zu", len, n_ids,
                      rc->max_bytes);
    }
    size_t bytes = RCACHE_ENTRY_OVERHEAD + len + n_ids * sizeof(int32_t);
    rc_entry *e = calloc(1, sizeof *e);
    if (!e) return he_set(HE_ENOMEM, "out of memory");
    e->text = malloc(len + 1);
    e->ids = n_ids ? malloc(n_ids * sizeof *e->ids) : NULL;
    if (!e->text || (n_ids && !e->ids)) {
        entry_free(e);
        return he_set(HE_ENOMEM, "out of memory");
    }
    if (len) memcpy(e->text, val->text, len);
    e->text[len] = 0;
    if (n_ids) memcpy(e->ids, val->ids, n_ids * sizeof *e->ids);
    e->key = key;
    e->len = len;
    e->n_ids = n_ids;
    e->generated_tokens = val->generated_tokens;
    e->finish_reason = val->finish_reason;
    e->bytes = bytes;
    e->expires_us = ttl_us ? (now_us + ttl_us < now_us ? UINT64_MAX : now_us + ttl_us) : 0;

    if (old) {
        drop(rc, old);
        rc->c.replaces++;
    } else {
        rc->c.inserts++;
    }
    /* make room: expired entries at the tail go first, counted as expired */
    while (rc->tail && rc->c.bytes + bytes > rc->max_bytes) {
        bool exp = expired(rc->tail, now_us);
        drop(rc, rc->tail);
        if (exp) rc->c.expired++; else rc->c.evictions++;
    }
    if (rc->c.entries + 1 > rc->n_buckets) grow(rc);
    rc_entry **s = slot_of(rc, key);
    e->hnext = *s;
    *s = e;
    lru_push_front(rc, e);
    rc->c.bytes += bytes;
    rc->c.entries++;
    return 0;
}

void rcache_stats(const rcache_t *rc, rcache_counts *out) {
    if (!out) return;
    if (!rc) {
        memset(out, 0, sizeof *out);
        return;
    }
    *out = rc->c;
}
