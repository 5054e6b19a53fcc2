/* copyout: the engine's KV copy-out from a second thread, as a plain program
 * for ThreadSanitizer (Criterion's runner does not run under TSan; this is
 * the same race as test_engine's kv_copy_out_is_safe_from_a_second_thread).
 *
 * The main thread imports pages (each eviction reuses a page under the
 * cache's lock and reports it through the cache-event callback, outside the
 * lock); a reader thread copies recently imported pages out under the lock
 * and checks each copy holds its own page's values. Exit 0 when every copy
 * was right and enough were checked; TSan makes a data race fail the run.
 *
 * usage: tsan_copyout MODEL.gguf
 */
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>

#include "engine.h"
#include "herr.h"
#include "model.h"

enum { N = 3000 };

typedef struct {
    eng_t *e;
    const uint64_t *h;
    atomic_int head; /* pages imported so far */
    atomic_bool done;
    atomic_int found;
    int wrong;
} copy_race;

static void *reader(void *arg) {
    copy_race *r = arg;
    size_t pb = eng_kv_page_bytes(r->e), nf = pb / sizeof(float);
    float *buf = malloc(pb);
    uint32_t seed = 7;
    while (buf && !atomic_load(&r->done)) {
        int head = atomic_load(&r->head);
        seed = seed * 1664525u + 1013904223u;
        int i = head - 1 - (int)((seed >> 16) % 24u);
        if (i < 0) continue;
        int slot = i % N;
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

static int events;
static void on_event(void *ud, kvc_event ev, uint64_t hash, int32_t block) {
    (void)ud, (void)ev, (void)hash, (void)block;
    events++; /* the engine thread's own state: no lock needed (kvcache.h) */
}

int main(int argc, char **argv) {
    if (argc != 2) {
        fprintf(stderr, "usage: tsan_copyout MODEL.gguf\n");
        return 2;
    }
    model_t *m = NULL;
    if (model_load(argv[1], &m)) {
        fprintf(stderr, "tsan_copyout: %s\n", he_msg());
        return 1;
    }
    eng_config cc = {.n_threads = 1, .n_blocks = 16};
    eng_t *e = eng_new(m, NULL, &cc);
    if (!e) return 1;
    eng_set_cache_events(e, on_event, NULL);
    uint64_t *h = malloc(N * sizeof *h);
    size_t pb = eng_kv_page_bytes(e), nf = pb / sizeof(float);
    float *page = malloc(pb);
    if (!h || !page) return 1;
    for (int i = 0; i < N; i++) h[i] = 0x9e3779b97f4a7c15ULL * (uint64_t)(i + 1) ^ 0x5bd1e995u;
    copy_race r = {.e = e, .h = h};
    pthread_t th;
    if (pthread_create(&th, NULL, reader, &r)) return 1;
    int i = 0;
    for (; i < 40 * N && (i < N || atomic_load(&r.found) < 500); i++) {
        int slot = i % N;
        for (size_t k = 0; k < nf; k++) page[k] = (float)slot;
        if (eng_kv_import(e, &h[slot], 1, page) != 1) {
            fprintf(stderr, "tsan_copyout: import %d failed: %s\n", i, he_msg());
            return 1;
        }
        atomic_store(&r.head, i + 1);
    }
    atomic_store(&r.done, true);
    pthread_join(th, NULL);
    int found = atomic_load(&r.found);
    printf("tsan_copyout: %d imports, %d copies checked, %d wrong, %d cache events\n", i, found, r.wrong, events);
    free(page);
    free(h);
    eng_destroy(&e);
    model_destroy(&m);
    return r.wrong == 0 && found >= 500 && events >= i ? 0 : 1;
}
