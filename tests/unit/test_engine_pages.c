/* The engine's page API for transports (engine.h: reserve / commit / release
 * on the receiving side, hold / unhold on the sending side), on the CPU
 * backend with a generated model. The data path is the one the ZeroMQ
 * reference transport runs (worker/net/xport_pull.c): pages read from the
 * source's pool by index, written into reserved pages of the destination's,
 * committed under their hashes. The continuation then gives exactly the
 * tokens and logits of recomputing, and the counters and the pool's
 * bookkeeping add up (no page leaked or lost). */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "engine.h"
#include "herr.h"

static model_t *g_model;
static char g_path[256];

static void setup(void) {
    snprintf(g_path, sizeof g_path, "/tmp/helium-test-engine-pages-%d.gguf", (int)getpid());
    char cmd[768];
    snprintf(cmd, sizeof cmd, "%s/bin/helium-mkmodel --preset tiny --arch llama --dtype f32 --seed 5 -o %s 2>/dev/null",
             HELIUM_BINARY_DIR, g_path);
    cr_assert_eq(system(cmd), 0, "helium-mkmodel failed: %s", cmd);
    cr_assert_eq(model_load(g_path, &g_model), 0, "model_load: %s", he_msg());
}
static void teardown(void) {
    model_destroy(&g_model);
    unlink(g_path);
}

static eng_t *new_engine(int32_t n_blocks) {
    eng_config c = {.n_blocks = n_blocks, .block_size = 16, .n_threads = 1, .n_ctx = 256};
    eng_t *e = eng_new(g_model, NULL, &c);
    cr_assert_not_null(e, "eng_new: %s", he_msg());
    return e;
}

#define NP 70 /* prompt tokens: 4 full blocks, 6 more */

static void fill_prompt(int32_t *p, unsigned seed) {
    for (int i = 0; i < NP; i++) {
        seed = seed * 1103515245u + 12345u;
        p[i] = (int32_t)((seed >> 8) % 200u) + 3;
    }
}

typedef struct {
    int32_t ids[16];
    int32_t n_gen, cached;
    float *logits;
} out_t;

static void run(eng_t *e, const int32_t *prompt, out_t *o) {
    eng_request rq = {.max_tokens = 6, .ignore_eos = true, .record_logits = true};
    uint64_t id;
    cr_assert_eq(eng_submit(e, prompt, NP, &rq, &id), 0, "submit: %s", he_msg());
    int rc;
    while ((rc = eng_step(e)) > 0) {}
    cr_assert_eq(rc, 0, "step: %s", he_msg());
    eng_result r;
    cr_assert(eng_next_result(e, &r));
    cr_assert_neq(r.finish, ENG_FINISH_ERROR);
    o->n_gen = r.n_gen;
    memcpy(o->ids, r.ids, sizeof(int32_t) * (size_t)r.n_gen);
    o->cached = r.cached_tokens;
    o->logits = r.logits;
    r.logits = NULL;
    eng_result_free(&r);
}

/* Moves the pages of hashes[0..n) from src to dst as a transport does;
 * returns the pages stored at dst. */
static int move_pages(eng_t *src, eng_t *dst, const uint64_t *hashes, int32_t n) {
    int32_t held[8], res[8];
    cr_assert_eq(eng_kv_hold(src, hashes, n, held), n, "the source holds the whole run");
    cr_assert_eq(eng_kv_reserve(dst, n, res), n, "reserve: %s", he_msg());
    size_t pb = eng_kv_page_bytes(src);
    cr_assert_eq(pb, eng_kv_page_bytes(dst));
    char *buf = malloc(pb);
    for (int32_t i = 0; i < n; i++) {
        cr_assert_eq(eng_kv_page_read(src, held[i], buf), 0);
        cr_assert_eq(eng_kv_page_write(dst, res[i], buf), 0);
    }
    free(buf);
    eng_kv_unhold(src, held, n);
    return eng_kv_commit(dst, res, hashes, n);
}

TestSuite(engine_pages, .init = setup, .fini = teardown, .timeout = 300);

Test(engine_pages, moved_pages_continue_as_recompute) {
    int32_t prompt[NP];
    fill_prompt(prompt, 11);
    eng_t *src = new_engine(64), *dst = new_engine(64), *ref = new_engine(64);
    uint64_t h[8];
    cr_assert_eq(eng_prompt_hashes(src, prompt, NP, h), 4);
    out_t a, b, c;
    run(src, prompt, &a); /* fills src's cache with the prompt's 4 blocks */
    run(ref, prompt, &c); /* recompute (a fresh engine) */
    cr_assert_eq(c.cached, 0);
    kvc_stats before = eng_cache_stats(dst);
    cr_assert_eq(move_pages(src, dst, h, 4), 4);
    eng_counters k = eng_get_counters(dst);
    cr_assert_eq(k.imported_blocks, 4);
    for (int i = 0; i < 4; i++) cr_assert(eng_cached(dst, h[i]), "page %d committed under its hash", i);
    kvc_stats after = eng_cache_stats(dst);
    cr_assert_eq(after.blocks_cached, before.blocks_cached + 4);
    cr_assert_eq(after.blocks_used, 0, "no reference left behind");
    run(dst, prompt, &b);
    cr_assert_eq(b.cached, 64, "the moved blocks are reused");
    cr_assert_eq(b.n_gen, c.n_gen);
    int32_t nv = g_model->hp.n_vocab;
    for (int i = 0; i < b.n_gen; i++) cr_assert_eq(b.ids[i], c.ids[i], "token %d: %d vs %d", i, b.ids[i], c.ids[i]);
    for (size_t i = 0; i < (size_t)b.n_gen * (size_t)nv; i++)
        cr_assert_eq(b.logits[i], c.logits[i], "logit %zu differs: %.9g vs %.9g", i, b.logits[i], c.logits[i]);
    kvc_stats sst = eng_cache_stats(src);
    cr_assert_eq(sst.blocks_used, 0, "the source's held pages were all unheld");
    free(a.logits);
    free(b.logits);
    free(c.logits);
    eng_destroy(&src);
    eng_destroy(&dst);
    eng_destroy(&ref);
}

Test(engine_pages, release_and_duplicates_leak_nothing) {
    eng_t *e = new_engine(16);
    kvc_stats s0 = eng_cache_stats(e);
    int32_t p[64];
    int32_t nb = eng_kv_blocks(e);
    cr_assert_lt(nb, 63);
    cr_assert_eq(eng_kv_reserve(e, 5, p), 5);
    kvc_stats s1 = eng_cache_stats(e);
    cr_assert_eq(s1.blocks_used, 5, "reserved pages are in use");
    cr_assert_eq(s1.blocks_free, s0.blocks_free - 5);
    for (int i = 0; i < 5; i++)
        for (int j = 0; j < i; j++) cr_assert_neq(p[i], p[j], "distinct pages");
    eng_kv_release(e, p, 5); /* a failed transfer */
    kvc_stats s2 = eng_cache_stats(e);
    cr_assert_eq(s2.blocks_free, s0.blocks_free);
    cr_assert_eq(s2.blocks_used, 0);
    cr_assert_eq(s2.blocks_cached, 0, "released pages are not cached under any hash");
    /* too many: nothing taken */
    cr_assert_eq(eng_kv_reserve(e, nb + 1, p), HE_ENOMEM);
    cr_assert_eq(eng_cache_stats(e).blocks_free, s0.blocks_free);
    cr_assert_eq(eng_kv_reserve(e, 0, p), HE_EINVAL);
    /* a hash committed twice: the second page is freed, the first kept */
    uint64_t hh[2] = {0xabc, 0xabc};
    cr_assert_eq(eng_kv_reserve(e, 2, p), 2);
    cr_assert_eq(eng_kv_commit(e, p, hh, 2), 1, "one stored, the duplicate dropped");
    kvc_stats s3 = eng_cache_stats(e);
    cr_assert_eq(s3.blocks_cached, 1);
    cr_assert_eq(s3.blocks_used, 0);
    cr_assert_eq(s3.blocks_free, s0.blocks_free - 1);
    cr_assert_eq(eng_get_counters(e).imported_blocks, 1);
    /* page index checks */
    char buf[8];
    cr_assert_eq(eng_kv_page_read(e, -1, buf), HE_ERANGE);
    cr_assert_eq(eng_kv_page_write(e, nb, buf), HE_ERANGE);
    eng_destroy(&e);
}

/* Held pages survive the eviction pressure of other prompts (their KV is
 * byte-identical afterwards); once unheld they are ordinary cached pages. */
Test(engine_pages, held_pages_are_not_evicted) {
    eng_t *e = new_engine(20); /* 20 pages (17 at least): a 70-token prompt + 6 tokens needs 5 */
    int32_t prompt[NP];
    fill_prompt(prompt, 21);
    uint64_t h[8];
    eng_prompt_hashes(e, prompt, NP, h);
    out_t o;
    run(e, prompt, &o);
    free(o.logits);
    int32_t held[4];
    cr_assert_eq(eng_kv_hold(e, h, 4, held), 4);
    size_t pb = eng_kv_page_bytes(e);
    char *before = malloc(4 * pb), *now = malloc(pb);
    for (int i = 0; i < 4; i++) cr_assert_eq(eng_kv_page_read(e, held[i], before + (size_t)i * pb), 0);
    /* other prompts need every page not held: the cached ones get evicted */
    for (unsigned sd = 100; sd < 106; sd++) {
        int32_t q[NP];
        fill_prompt(q, sd);
        run(e, q, &o);
        free(o.logits);
    }
    cr_assert_gt(eng_cache_stats(e).evictions, 0, "the pool was under pressure");
    for (int i = 0; i < 4; i++) {
        cr_assert(eng_cached(e, h[i]), "held page %d was evicted", i);
        cr_assert_eq(eng_kv_page_read(e, held[i], now), 0);
        cr_assert_eq(memcmp(now, before + (size_t)i * pb, pb), 0, "held page %d was overwritten", i);
    }
    /* a hold stops at the first page not cached */
    uint64_t mix[3] = {h[0], 0x1234567, h[1]};
    int32_t hp[3];
    cr_assert_eq(eng_kv_hold(e, mix, 3, hp), 1);
    eng_kv_unhold(e, hp, 1);
    eng_kv_unhold(e, held, 4);
    cr_assert_eq(eng_cache_stats(e).blocks_used, 0);
    free(before);
    free(now);
    eng_destroy(&e);
}
