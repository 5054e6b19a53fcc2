/* copy_race: the engine's KV copy-out racing its own evictions, shared by
 * test_engine (kv_copy_out_is_safe_from_a_second_thread, under Criterion and
 * ASan) and tests/tsan/copyout.c (the same race under ThreadSanitizer).
 *
 * The caller's thread imports page i filled with the value (i mod n) under
 * hash H(i mod n) into a small cache, so page slots are reused all the time
 * and a hash comes back long after its eviction; a reader thread copies
 * recently imported hashes out (eng_kv_copy_out, as the pull server does)
 * and checks each copy holds its own page's values. A copy that is torn, or
 * a page found under the lock but reused before the copy ends, is counted
 * as wrong. Header-only (static functions): two test programs include it.
 */
#ifndef HELIUM_TESTS_COPY_RACE_H
#define HELIUM_TESTS_COPY_RACE_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>

#include "engine.h"

typedef struct {
    eng_t *e;
    const uint64_t *h;
    int n;           /* distinct hashes (pages cycle through them) */
    atomic_int head; /* pages imported so far */
    atomic_bool done;
    atomic_int found; /* copies the reader checked */
    int wrong;        /* reader's own */
} copy_race;

typedef struct {
    int imports, found, wrong;
    int failed_import; /* index of an import that failed, or -1 */
} copy_race_result;

static void *copy_race_reader(void *arg) {
    copy_race *r = arg;
    size_t pb = eng_kv_page_bytes(r->e), nf = pb / sizeof(float);
    float *buf = malloc(pb);
    uint32_t seed = 7;
    while (buf && !atomic_load(&r->done)) {
        int head = atomic_load(&r->head);
        seed = seed * 1664525u + 1013904223u;
        int i = head - 1 - (int)((seed >> 16) % 24u);
        if (i < 0) continue;
        int slot = i % r->n;
        if (eng_kv_copy_out(r->e, r->h[slot], buf) != 1) continue;
        atomic_fetch_add(&r->found, 1);
        for (size_t k = 0; k < nf; k++)
            if (buf[k] != (float)slot) {
                r->wrong++;
                break;
            }
    }
    free(buf);
    return NULL;
}

/* H(i): the hash page i is imported under. */
static inline uint64_t copy_race_hash(int i) {
    return 0x9e3779b97f4a7c15ULL * (uint64_t)(i + 1) ^ 0x5bd1e995u;
}

/* Imports pages into e (cycling over n hashes) until the reader has checked
 * want copies (at least n imports, at most rounds x n); false if a thread or
 * a buffer could not be made. */
static bool copy_race_run(eng_t *e, int n, int rounds, int want, copy_race_result *out) {
    uint64_t *h = malloc((size_t)n * sizeof *h);
    size_t pb = eng_kv_page_bytes(e), nf = pb / sizeof(float);
    float *page = malloc(pb);
    *out = (copy_race_result){.failed_import = -1};
    if (!h || !page) {
        free(h);
        free(page);
        return false;
    }
    for (int i = 0; i < n; i++) h[i] = copy_race_hash(i);
    copy_race r = {.e = e, .h = h, .n = n};
    pthread_t th;
    if (pthread_create(&th, NULL, copy_race_reader, &r)) {
        free(h);
        free(page);
        return false;
    }
    int i = 0;
    for (; i < rounds * n && (i < n || atomic_load(&r.found) < want); i++) {
        int slot = i % n;
        for (size_t k = 0; k < nf; k++) page[k] = (float)slot;
        if (eng_kv_import(e, &h[slot], 1, page) != 1) {
            out->failed_import = i;
            break;
        }
        atomic_store(&r.head, i + 1);
    }
    atomic_store(&r.done, true);
    pthread_join(th, NULL);
    out->imports = i;
    out->found = atomic_load(&r.found);
    out->wrong = r.wrong;
    free(page);
    free(h);
    return true;
}

#endif
