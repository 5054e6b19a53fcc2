/* hcount: see hcount.h. Key 0 marks an empty slot, so a hash of 0 is stored
 * as 1 (a collision the callers' 64-bit hashes make negligible). */
#include "hcount.h"

#include <stdlib.h>

#include "herr.h"

typedef struct {
    uint64_t key; /* 0 = empty */
    uint32_t n;
} hc_slot;

struct hcount {
    hc_slot *v; /* (cap, a power of two) */
    size_t cap, n;
};

static size_t home(uint64_t k, size_t mask) { return (size_t)((k * 0x9e3779b97f4a7c15ULL) >> 17) & mask; }

hcount_t *hcount_new(void) { return calloc(1, sizeof(hcount_t)); }

void hcount_destroy(hcount_t **self_p) {
    if (!self_p || !*self_p) return;
    free((*self_p)->v);
    free(*self_p);
    *self_p = NULL;
}

static int grow(hcount_t *hc) {
    size_t nc = hc->cap ? hc->cap * 2 : 256;
    hc_slot *nv = calloc(nc, sizeof *nv);
    if (!nv) return he_set(HE_ENOMEM, "hcount: out of memory");
    for (size_t i = 0; i < hc->cap; i++) {
        if (!hc->v[i].key) continue;
        size_t j = home(hc->v[i].key, nc - 1);
        while (nv[j].key) j = (j + 1) & (nc - 1);
        nv[j] = hc->v[i];
    }
    free(hc->v);
    hc->v = nv;
    hc->cap = nc;
    return 0;
}

/* the slot holding k, or the empty slot where it would go */
static size_t find(const hcount_t *hc, uint64_t k) {
    size_t mask = hc->cap - 1, i = home(k, mask);
    while (hc->v[i].key && hc->v[i].key != k) i = (i + 1) & mask;
    return i;
}

int hcount_add(hcount_t *hc, uint64_t h) {
    uint64_t k = h ? h : 1;
    if ((hc->n + 1) * 2 > hc->cap && grow(hc)) return HE_ENOMEM;
    size_t i = find(hc, k);
    if (!hc->v[i].key) {
        hc->v[i].key = k;
        hc->n++;
    }
    hc->v[i].n++;
    return 0;
}

void hcount_remove(hcount_t *hc, uint64_t h) {
    uint64_t k = h ? h : 1;
    if (!hc->cap) return;
    size_t mask = hc->cap - 1, i = find(hc, k);
    if (!hc->v[i].key || --hc->v[i].n > 0) return;
    /* backward shift: pull later entries of the probe run into the hole
     * unless their home lies cyclically in (hole, j] */
    hc->v[i].key = 0;
    hc->n--;
    for (size_t j = (i + 1) & mask; hc->v[j].key; j = (j + 1) & mask) {
        size_t hj = home(hc->v[j].key, mask);
        bool stays = i <= j ? (i < hj && hj <= j) : (i < hj || hj <= j);
        if (stays) continue;
        hc->v[i] = hc->v[j];
        hc->v[j].key = 0;
        hc->v[j].n = 0;
        i = j;
    }
}

uint32_t hcount_get(const hcount_t *hc, uint64_t h) {
    if (!hc->cap) return 0;
    size_t i = find(hc, h ? h : 1);
    return hc->v[i].key ? hc->v[i].n : 0;
}

size_t hcount_size(const hcount_t *hc) { return hc->n; }
