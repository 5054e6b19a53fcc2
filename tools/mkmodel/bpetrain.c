/* bpetrain: incremental BPE training (see bpetrain.h).
 *
 * State:
 *  - symbols: an mkmap from symbol bytes to id; entry i of the map is symbol i.
 *  - words: all word symbol sequences packed in syms[], word w at
 *    syms[w_off[w] .. w_off[w] + w_len[w]); merging shrinks w_len in place.
 *  - pairs: one record per adjacent (left, right) pair ever seen, with its
 *    current weighted count and a list of words that contained it when it was
 *    counted (may hold stale or repeated entries; each is re-checked).
 *  - heap: a max-heap of (count, pair) entries. Invariant: every pair with a
 *    positive count has at least one entry whose count is >= its current count.
 *    A popped entry whose count differs from the pair's is dropped, and re-pushed
 *    with the current count when that is lower (a higher count was pushed when
 *    it rose). So the first entry that matches is a true maximum.
 */
#include "bpetrain.h"

#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "herr.h"
#include "mkmap.h"

typedef struct {
    int32_t a, b;     /* left, right symbol ids */
    int64_t count;    /* weighted occurrences in the current words */
    int32_t *where;   /* (n_where) words that may contain the pair */
    size_t n_where, cap_where;
    uint32_t touched; /* merge step that last changed count (dedupes heap pushes) */
} bpet_pair;

typedef struct {
    int64_t count;
    int32_t pair;
} bpet_heap_ent;

typedef struct {
    int32_t a, b, r;
    int64_t count;
} bpet_merge_rec;

struct bpet {
    mkmap_t *sym; /* symbol bytes -> id; entry i is symbol i */

    int32_t *syms;   /* (n_syms) packed word symbols */
    size_t n_syms, cap_syms;
    size_t *w_off;   /* (n_words) */
    uint32_t *w_len; /* (n_words) current length */
    int64_t *w_freq; /* (n_words) */
    uint32_t *w_seen; /* (n_words) merge step that last visited the word */
    size_t n_words, cap_words;

    bpet_pair *pairs; /* (n_pairs) */
    size_t n_pairs, cap_pairs;
    uint64_t *pm_keys; /* (pm_slots) pair map: (a << 32 | b) + 1, 0 = empty */
    int32_t *pm_vals;  /* (pm_slots) pair index */
    size_t pm_slots, pm_used;

    bpet_heap_ent *heap; /* (n_heap) */
    size_t n_heap, cap_heap;

    int32_t *touched; /* (n_touched) pairs changed in the current step */
    size_t n_touched, cap_touched;

    bpet_merge_rec *merges; /* (n_merges) */
    size_t n_merges, cap_merges;
    uint32_t step; /* current merge step, starts at 1 */
};

/* Grows *p (elements of size sz, capacity *cap) to hold need elements. */
static int grow(void **p, size_t *cap, size_t need, size_t sz) {
    if (need <= *cap)
        return 0;
    size_t nc = *cap ? *cap : 64;
    while (nc < need)
        nc *= 2;
    void *q = realloc(*p, nc * sz);
    if (!q)
        return -1;
    *p = q;
    *cap = nc;
    return 0;
}
#define GROW(arr, cap, need) grow((void **)&(arr), &(cap), (need), sizeof *(arr))

bpet_t *bpet_new(void) {
    bpet_t *t = calloc(1, sizeof *t);
    if (!t)
        return NULL;
    t->sym = mkmap_new();
    t->pm_slots = 1024;
    t->pm_keys = calloc(t->pm_slots, sizeof *t->pm_keys);
    t->pm_vals = calloc(t->pm_slots, sizeof *t->pm_vals);
    if (!t->sym || !t->pm_keys || !t->pm_vals) {
        bpet_destroy(&t);
        return NULL;
    }
    t->step = 1;
    return t;
}

void bpet_destroy(bpet_t **self_p) {
    if (!self_p || !*self_p)
        return;
    bpet_t *t = *self_p;
    mkmap_destroy(&t->sym);
    free(t->syms);
    free(t->w_off);
    free(t->w_len);
    free(t->w_freq);
    free(t->w_seen);
    for (size_t i = 0; i < t->n_pairs; i++)
        free(t->pairs[i].where);
    free(t->pairs);
    free(t->pm_keys);
    free(t->pm_vals);
    free(t->heap);
    free(t->touched);
    free(t->merges);
    free(t);
    *self_p = NULL;
}

int32_t bpet_add_symbol(bpet_t *t, const char *s, size_t len) {
    bool created;
    int32_t id = (int32_t)mkmap_count(t->sym);
    int32_t *v = mkmap_put(t->sym, s, len, id, &created);
    if (!v)
        return he_set(HE_ENOMEM, "bpetrain: out of memory");
    if (!created)
        return he_set(HE_EINVAL, "bpetrain: duplicate initial symbol");
    return id;
}

int bpet_add_word(bpet_t *t, const int32_t *syms, size_t n, int64_t freq) {
    if (n < 2)
        return 0;
    if (freq <= 0 || n > UINT32_MAX || t->n_words >= INT32_MAX)
        return he_set(HE_EINVAL, "bpetrain: bad word");
    int32_t ns = (int32_t)mkmap_count(t->sym);
    for (size_t i = 0; i < n; i++)
        if (syms[i] < 0 || syms[i] >= ns)
            return he_set(HE_EINVAL, "bpetrain: word uses unknown symbol %d", (int)syms[i]);
    if (GROW(t->syms, t->cap_syms, t->n_syms + n))
        return he_set(HE_ENOMEM, "bpetrain: out of memory");
    if (t->n_words == t->cap_words) { /* the four per-word arrays share cap_words */
        size_t cw = t->cap_words ? t->cap_words * 2 : 1024;
        size_t *wo = realloc(t->w_off, cw * sizeof *wo);
        if (wo)
            t->w_off = wo;
        uint32_t *wl = realloc(t->w_len, cw * sizeof *wl);
        if (wl)
            t->w_len = wl;
        int64_t *wf = realloc(t->w_freq, cw * sizeof *wf);
        if (wf)
            t->w_freq = wf;
        uint32_t *wsn = realloc(t->w_seen, cw * sizeof *wsn);
        if (wsn)
            t->w_seen = wsn;
        if (!wo || !wl || !wf || !wsn)
            return he_set(HE_ENOMEM, "bpetrain: out of memory");
        t->cap_words = cw;
    }
    memcpy(t->syms + t->n_syms, syms, n * sizeof *syms);
    t->w_off[t->n_words] = t->n_syms;
    t->w_len[t->n_words] = (uint32_t)n;
    t->w_freq[t->n_words] = freq;
    t->w_seen[t->n_words] = 0;
    t->n_syms += n;
    t->n_words++;
    return 0;
}

/* ---- pair map */

static uint64_t pair_key(int32_t a, int32_t b) { return ((uint64_t)(uint32_t)a << 32 | (uint32_t)b) + 1; }

static size_t pm_hash(uint64_t k) {
    k ^= k >> 33;
    k *= 0xff51afd7ed558ccdULL;
    k ^= k >> 33;
    return (size_t)k;
}

static int pm_grow(bpet_t *t) {
    size_t ns = t->pm_slots * 2;
    uint64_t *keys = calloc(ns, sizeof *keys);
    int32_t *vals = calloc(ns, sizeof *vals);
    if (!keys || !vals) {
        free(keys), free(vals);
        return -1;
    }
    for (size_t i = 0; i < t->pm_slots; i++) {
        if (!t->pm_keys[i])
            continue;
        size_t s = pm_hash(t->pm_keys[i]) & (ns - 1);
        while (keys[s])
            s = (s + 1) & (ns - 1);
        keys[s] = t->pm_keys[i];
        vals[s] = t->pm_vals[i];
    }
    free(t->pm_keys), free(t->pm_vals);
    t->pm_keys = keys, t->pm_vals = vals, t->pm_slots = ns;
    return 0;
}

/* Index of pair (a, b), created with count 0 if new; -1 when out of memory. */
static int32_t pair_get(bpet_t *t, int32_t a, int32_t b) {
    uint64_t k = pair_key(a, b);
    if ((t->pm_used + 1) * 2 > t->pm_slots && pm_grow(t) != 0)
        return -1;
    size_t s = pm_hash(k) & (t->pm_slots - 1);
    while (t->pm_keys[s]) {
        if (t->pm_keys[s] == k)
            return t->pm_vals[s];
        s = (s + 1) & (t->pm_slots - 1);
    }
    if (t->n_pairs >= INT32_MAX || GROW(t->pairs, t->cap_pairs, t->n_pairs + 1))
        return -1;
    bpet_pair *p = &t->pairs[t->n_pairs];
    memset(p, 0, sizeof *p);
    p->a = a, p->b = b;
    t->pm_keys[s] = k;
    t->pm_vals[s] = (int32_t)t->n_pairs;
    t->pm_used++;
    return (int32_t)t->n_pairs++;
}

/* ---- heap: ordered by count desc, then left id asc, then right id asc */

static bool heap_before(const bpet_t *t, const bpet_heap_ent *x, const bpet_heap_ent *y) {
    if (x->count != y->count)
        return x->count > y->count;
    const bpet_pair *p = &t->pairs[x->pair], *q = &t->pairs[y->pair];
    if (p->a != q->a)
        return p->a < q->a;
    return p->b < q->b;
}

static int heap_push(bpet_t *t, int64_t count, int32_t pair) {
    if (GROW(t->heap, t->cap_heap, t->n_heap + 1))
        return -1;
    size_t i = t->n_heap++;
    t->heap[i] = (bpet_heap_ent){count, pair};
    while (i > 0) {
        size_t up = (i - 1) / 2;
        if (!heap_before(t, &t->heap[i], &t->heap[up]))
            break;
        bpet_heap_ent tmp = t->heap[i];
        t->heap[i] = t->heap[up];
        t->heap[up] = tmp;
        i = up;
    }
    return 0;
}

static bpet_heap_ent heap_pop(bpet_t *t) {
    bpet_heap_ent top = t->heap[0];
    t->heap[0] = t->heap[--t->n_heap];
    size_t i = 0;
    for (;;) {
        size_t l = 2 * i + 1, r = l + 1, m = i;
        if (l < t->n_heap && heap_before(t, &t->heap[l], &t->heap[m]))
            m = l;
        if (r < t->n_heap && heap_before(t, &t->heap[r], &t->heap[m]))
            m = r;
        if (m == i)
            break;
        bpet_heap_ent tmp = t->heap[i];
        t->heap[i] = t->heap[m];
        t->heap[m] = tmp;
        i = m;
    }
    return top;
}

/* ---- counting */

static int touch(bpet_t *t, int32_t pi) {
    bpet_pair *p = &t->pairs[pi];
    if (p->touched == t->step)
        return 0;
    p->touched = t->step;
    if (GROW(t->touched, t->cap_touched, t->n_touched + 1))
        return -1;
    t->touched[t->n_touched++] = pi;
    return 0;
}

/* Adds delta * (occurrences in word w) to each adjacent pair of w; on a positive
 * delta also records w in the pair's word list. */
static int count_word(bpet_t *t, size_t w, int64_t delta) {
    const int32_t *s = t->syms + t->w_off[w];
    uint32_t n = t->w_len[w];
    for (uint32_t i = 0; i + 1 < n; i++) {
        int32_t pi = pair_get(t, s[i], s[i + 1]);
        if (pi < 0)
            return -1;
        bpet_pair *p = &t->pairs[pi];
        p->count += delta;
        if (delta > 0 && (p->n_where == 0 || p->where[p->n_where - 1] != (int32_t)w)) {
            if (GROW(p->where, p->cap_where, (size_t)p->n_where + 1))
                return -1;
            p->where[p->n_where++] = (int32_t)w;
        }
        if (touch(t, pi))
            return -1;
    }
    return 0;
}

/* Pushes every pair touched in this step that still occurs. */
static int flush_touched(bpet_t *t) {
    for (size_t i = 0; i < t->n_touched; i++) {
        const bpet_pair *p = &t->pairs[t->touched[i]];
        if (p->count > 0 && heap_push(t, p->count, t->touched[i]))
            return -1;
    }
    t->n_touched = 0;
    return 0;
}

/* Replaces each non-overlapping (a, b), left to right, in word w by r. Returns
 * whether anything changed. */
static bool merge_word(bpet_t *t, size_t w, int32_t a, int32_t b, int32_t r) {
    int32_t *s = t->syms + t->w_off[w];
    uint32_t n = t->w_len[w], o = 0;
    bool changed = false;
    for (uint32_t i = 0; i < n;) {
        if (i + 1 < n && s[i] == a && s[i + 1] == b) {
            s[o++] = r;
            i += 2;
            changed = true;
        } else {
            s[o++] = s[i++];
        }
    }
    t->w_len[w] = o;
    return changed;
}

static bool word_has(const bpet_t *t, size_t w, int32_t a, int32_t b) {
    const int32_t *s = t->syms + t->w_off[w];
    for (uint32_t i = 0; i + 1 < t->w_len[w]; i++)
        if (s[i] == a && s[i + 1] == b)
            return true;
    return false;
}

/* Pops the best live pair, or returns -1 when none is left. */
static int32_t best_pair(bpet_t *t, int *err) {
    while (t->n_heap > 0) {
        bpet_heap_ent e = heap_pop(t);
        int64_t cur = t->pairs[e.pair].count;
        if (cur == e.count)
            return e.pair;
        if (cur > 0 && cur < e.count && heap_push(t, cur, e.pair)) {
            *err = 1;
            return -1;
        }
    }
    return -1;
}

int bpet_train(bpet_t *t, int32_t n_new) {
    if (t->step == 1) { /* first call: count every word */
        for (size_t w = 0; w < t->n_words; w++)
            if (count_word(t, w, t->w_freq[w]))
                return he_set(HE_ENOMEM, "bpetrain: out of memory");
        if (flush_touched(t))
            return he_set(HE_ENOMEM, "bpetrain: out of memory");
        t->step++;
    }
    int32_t target = (int32_t)mkmap_count(t->sym) + n_new;
    char *buf = NULL;
    size_t cap_buf = 0;
    int rc = 0;
    while ((int32_t)mkmap_count(t->sym) < target) {
        int err = 0;
        int32_t pi = best_pair(t, &err);
        if (err) {
            rc = he_set(HE_ENOMEM, "bpetrain: out of memory");
            break;
        }
        if (pi < 0) {
            rc = he_set(HE_ERANGE, "bpetrain: ran out of pairs after %zu merges (%d symbols, wanted %d): corpus too small",
                        t->n_merges, (int)mkmap_count(t->sym), (int)target);
            break;
        }
        int32_t a = t->pairs[pi].a, b = t->pairs[pi].b;
        int64_t count = t->pairs[pi].count;
        /* the merged symbol: an existing id if the bytes are already a symbol */
        size_t la, lb;
        const char *sa = mkmap_key(t->sym, (size_t)a, &la);
        const char *sb = mkmap_key(t->sym, (size_t)b, &lb);
        if (GROW(buf, cap_buf, la + lb + 1)) {
            rc = he_set(HE_ENOMEM, "bpetrain: out of memory");
            break;
        }
        memcpy(buf, sa, la);
        memcpy(buf + la, sb, lb);
        int32_t *rv = mkmap_put(t->sym, buf, la + lb, (int32_t)mkmap_count(t->sym), NULL);
        if (!rv || GROW(t->merges, t->cap_merges, t->n_merges + 1)) {
            rc = he_set(HE_ENOMEM, "bpetrain: out of memory");
            break;
        }
        int32_t r = *rv;
        t->merges[t->n_merges++] = (bpet_merge_rec){a, b, r, count};

        /* Detach the word list: merging never recreates (a, b). */
        int32_t *where = t->pairs[pi].where;
        size_t n_where = t->pairs[pi].n_where;
        t->pairs[pi].where = NULL;
        t->pairs[pi].n_where = t->pairs[pi].cap_where = 0;
        for (size_t k = 0; k < n_where && rc == 0; k++) {
            size_t w = (size_t)where[k];
            if (t->w_seen[w] == t->step || !word_has(t, w, a, b))
                continue;
            t->w_seen[w] = t->step;
            if (count_word(t, w, -t->w_freq[w]))
                rc = he_set(HE_ENOMEM, "bpetrain: out of memory");
            merge_word(t, w, a, b, r);
            if (rc == 0 && count_word(t, w, t->w_freq[w]))
                rc = he_set(HE_ENOMEM, "bpetrain: out of memory");
        }
        free(where);
        if (rc == 0 && flush_touched(t))
            rc = he_set(HE_ENOMEM, "bpetrain: out of memory");
        t->step++;
        if (rc)
            break;
    }
    free(buf);
    return rc;
}

int32_t bpet_n_symbols(const bpet_t *t) { return (int32_t)mkmap_count(t->sym); }

const char *bpet_symbol(const bpet_t *t, int32_t id, size_t *len) { return mkmap_key(t->sym, (size_t)id, len); }

size_t bpet_n_merges(const bpet_t *t) { return t->n_merges; }

void bpet_merge(const bpet_t *t, size_t i, int32_t *left, int32_t *right, int32_t *result) {
    *left = t->merges[i].a;
    *right = t->merges[i].b;
    *result = t->merges[i].r;
}

int64_t bpet_merge_count(const bpet_t *t, size_t i) { return t->merges[i].count; }
