/* gguf_impl: PRIVATE to gguf.c (reader, type table) and gguf_write.c
 * (writer); nothing else includes it. The checks both sides must apply the
 * same way: which tensor types a file may hold, a tensor's byte size, the
 * name limit, and the table growth helper.
 */
#ifndef HELIUM_GGUF_IMPL_H
#define HELIUM_GGUF_IMPL_H

#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "gguf.h"
#include "herr.h"

#define GGML_MAX_NAME 64       /* llama.cpp rejects tensor names of 64+ bytes */

static inline bool type_supported(uint32_t t) { return t < 64 && ggml_type_supported((ggml_type)t); }

/* Bytes of a tensor of shape ne (ne[i] > 0), or 0 on a bad row or overflow. */
static inline size_t tensor_nbytes(ggml_type t, const int64_t ne[GGUF_MAX_DIMS]) {
    size_t n = ggml_row_size(t, ne[0]);
    for (int d = 1; d < GGUF_MAX_DIMS && n; d++) {
        if ((uint64_t)ne[d] > SIZE_MAX / n) return 0;
        n *= (size_t)ne[d];
    }
    return n;
}

/* Grows *arr (of elements of size es) so that index n fits; cap doubles,
 * new elements are zeroed. */
static inline int grow(void **arr, int64_t *cap, int64_t n, size_t es) {
    if (n < *cap) return 0;
    int64_t nc = *cap ? *cap * 2 : 16;
    void *p = realloc(*arr, (size_t)nc * es);
    if (!p) return he_set(HE_ENOMEM, "gguf: out of memory");
    memset((char *)p + (size_t)*cap * es, 0, (size_t)(nc - *cap) * es);
    *arr = p;
    *cap = nc;
    return 0;
}

#endif /* HELIUM_GGUF_IMPL_H */
