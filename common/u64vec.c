/* u64vec: see u64vec.h. */
#include "u64vec.h"

#include <stdlib.h>
#include <string.h>

bool u64v_push(u64vec *a, uint64_t x) {
    if (a->n == a->cap) {
        size_t nc = a->cap ? a->cap * 2 : 64;
        uint64_t *nv = realloc(a->v, nc * sizeof *nv);
        if (!nv) return false;
        a->v = nv;
        a->cap = nc;
    }
    a->v[a->n++] = x;
    return true;
}

bool u64v_remove(u64vec *a, uint64_t x) {
    for (size_t i = 0; i < a->n; i++)
        if (a->v[i] == x) {
            a->v[i] = a->v[--a->n];
            return true;
        }
    return false;
}

bool u64v_has(const u64vec *a, uint64_t x) {
    for (size_t i = 0; i < a->n; i++)
        if (a->v[i] == x) return true;
    return false;
}

void u64v_free(u64vec *a) {
    free(a->v);
    memset(a, 0, sizeof *a);
}
