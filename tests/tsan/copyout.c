/* copyout: the engine's KV copy-out from a second thread, as a plain program
 * for ThreadSanitizer (Criterion's runner does not run under TSan; this is
 * the same race as test_engine's kv_copy_out_is_safe_from_a_second_thread,
 * both through tests/common/copy_race.h).
 *
 * The main thread imports pages (each eviction reuses a page under the
 * cache's lock and reports it through the cache-event callback, outside the
 * lock); a reader thread copies recently imported pages out under the lock
 * and checks each copy holds its own page's values. Exit 0 when every copy
 * was right and enough were checked; TSan makes a data race fail the run.
 *
 * usage: tsan_copyout MODEL.gguf
 */
#include <stdio.h>

#include "../common/copy_race.h"
#include "engine.h"
#include "herr.h"
#include "model.h"

enum { N = 3000 };

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
    copy_race_result r;
    if (!copy_race_run(e, N, 40, 500, &r)) return 1;
    if (r.failed_import >= 0) {
        fprintf(stderr, "tsan_copyout: import %d failed: %s\n", r.failed_import, he_msg());
        return 1;
    }
    printf("tsan_copyout: %d imports, %d copies checked, %d wrong, %d cache events\n", r.imports, r.found, r.wrong,
           events);
    eng_destroy(&e);
    model_destroy(&m);
    return r.wrong == 0 && r.found >= 500 && events >= r.imports ? 0 : 1;
}
