/* Engine tests: continuous batching and the prefix cache give exactly the
 * plain path's tokens and logits, and the counters show the work saved. */
#include <criterion/criterion.h>
#include <pthread.h>
#include <stdatomic.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "engine.h"
#include "../common/copy_race.h"
#include "herr.h"

static model_t *g_model;
static char g_path[256];

static void load_tiny(const char *arch) {
    snprintf(g_path, sizeof g_path, "/tmp/helium-test-engine-%s-%d.gguf", arch, (int)getpid());
    char cmd[768];
    snprintf(cmd, sizeof cmd, "%s/bin/helium-mkmodel --preset tiny --arch %s --dtype f32 --seed 7 -o %s 2>/dev/null",
             HELIUM_BINARY_DIR, arch, g_path);
    cr_assert_eq(system(cmd), 0, "helium-mkmodel failed: %s", cmd);
    int rc = model_load(g_path, &g_model);
    cr_assert_eq(rc, 0, "model_load: %s", he_msg());
}
static void setup_llama(void) { load_tiny("llama"); }
static void teardown(void) {
    model_destroy(&g_model);
    unlink(g_path);
}

static void rand_ids(int32_t *v, int n, int vocab, unsigned seed) {
    for (int i = 0; i < n; i++) {
        seed = seed * 1103515245u + 12345u;
        v[i] = (int32_t)((seed >> 8) % (unsigned)(vocab - 8));
    }
}

typedef struct {
    int32_t ids[256];
    int32_t n_gen;
    int32_t cached;
    float *logits;
} out_t;

/* Runs each prompt through e (all submitted at once), greedy, fixed length. */
static void run_all(eng_t *e, int n, int32_t *const *prompts, const int32_t *lens, int max_tokens, out_t *out) {
    uint64_t ids[64];
    for (int i = 0; i < n; i++) {
        eng_request rq = {.max_tokens = max_tokens, .ignore_eos = true, .record_logits = true, .user = (uint64_t)i};
        cr_assert_eq(eng_submit(e, prompts[i], lens[i], &rq, &ids[i]), 0, "submit: %s", he_msg());
    }
    int rc;
    while ((rc = eng_step(e)) > 0) {}
    cr_assert_eq(rc, 0, "step failed: %s", he_msg());
    eng_result r;
    int got = 0;
    while (eng_next_result(e, &r)) {
        cr_assert_neq(r.finish, ENG_FINISH_ERROR, "request failed: %s", he_name(r.error));
        out_t *o = &out[r.user];
        o->n_gen = r.n_gen;
        memcpy(o->ids, r.ids, sizeof(int32_t) * (size_t)r.n_gen);
        o->cached = r.cached_tokens;
        o->logits = r.logits;
        r.logits = NULL;
        eng_result_free(&r);
        got++;
    }
    cr_assert_eq(got, n);
}

static void assert_same(const out_t *a, const out_t *b, int vocab) {
    cr_assert_eq(a->n_gen, b->n_gen);
    for (int i = 0; i < a->n_gen; i++) cr_assert_eq(a->ids[i], b->ids[i], "token %d differs: %d vs %d", i, a->ids[i], b->ids[i]);
    for (size_t i = 0; i < (size_t)a->n_gen * (size_t)vocab; i++)
        cr_assert_eq(a->logits[i], b->logits[i], "logit %zu differs: %.9g vs %.9g", i, a->logits[i], b->logits[i]);
}

TestSuite(engine, .init = setup_llama, .fini = teardown, .timeout = 300);

Test(engine, prefix_cache_same_tokens_and_logits_less_work) {
    int V = g_model->hp.n_vocab;
    int32_t a[120], b[120];
    rand_ids(a, 120, V, 1);
    memcpy(b, a, sizeof(int32_t) * 83); /* shared prefix: 83 tokens = 5 full pages + 3 */
    rand_ids(b + 83, 37, V, 2);
    /* reference: b alone on an engine without a prefix cache */
    eng_config plain = {.n_threads = 2, .no_prefix_cache = true, .n_blocks = 64};
    eng_t *e0 = eng_new(g_model, NULL, &plain);
    cr_assert_not_null(e0, "%s", he_msg());
    int32_t *pb[1] = {b};
    int32_t lb[1] = {120};
    out_t ref = {0};
    run_all(e0, 1, pb, lb, 12, &ref);
    eng_counters c0 = eng_get_counters(e0);
    cr_assert_eq(c0.cached_tokens, 0);
    cr_assert_eq(c0.computed_tokens, 120);
    eng_destroy(&e0);
    /* cached: a first, then b reuses a's first 5 pages */
    eng_config cc = {.n_threads = 2, .n_blocks = 64};
    eng_t *e = eng_new(g_model, NULL, &cc);
    int32_t *pa[1] = {a};
    out_t oa = {0}, ob = {0};
    run_all(e, 1, pa, lb, 12, &oa);
    eng_counters c1 = eng_get_counters(e);
    run_all(e, 1, pb, lb, 12, &ob);
    eng_counters c2 = eng_get_counters(e);
    cr_assert_eq(ob.cached, 80, "cached tokens %d, want 80", ob.cached);
    cr_assert_eq(c2.cached_tokens - c1.cached_tokens, 80);
    cr_assert_eq(c2.computed_tokens - c1.computed_tokens, 40, "computed %lld, want 40",
                 (long long)(c2.computed_tokens - c1.computed_tokens));
    assert_same(&ob, &ref, V);
    free(ref.logits);
    free(oa.logits);
    free(ob.logits);
    eng_destroy(&e);
}

Test(engine, full_prompt_hit_recomputes_only_last_page) {
    int V = g_model->hp.n_vocab;
    int32_t a[64];
    rand_ids(a, 64, V, 3); /* exactly 4 pages */
    eng_config cc = {.n_threads = 2, .n_blocks = 64};
    eng_t *e = eng_new(g_model, NULL, &cc);
    int32_t *pa[1] = {a};
    int32_t la[1] = {64};
    out_t o1 = {0}, o2 = {0};
    run_all(e, 1, pa, la, 8, &o1);
    run_all(e, 1, pa, la, 8, &o2);
    cr_assert_eq(o1.cached, 0);
    cr_assert_eq(o2.cached, 48, "a repeated prompt reuses all but its last page (got %d)", o2.cached);
    assert_same(&o1, &o2, V);
    free(o1.logits);
    free(o2.logits);
    eng_destroy(&e);
}

Test(engine, continuous_batching_equals_alone) {
    int V = g_model->hp.n_vocab;
    enum { N = 6 };
    int32_t buf[N][200];
    int32_t *p[N];
    int32_t len[N] = {5, 17, 33, 64, 100, 150};
    for (int i = 0; i < N; i++) {
        rand_ids(buf[i], len[i], V, 100 + (unsigned)i);
        p[i] = buf[i];
    }
    eng_config cc = {.n_threads = 2, .n_blocks = 128, .max_batch_tokens = 48, .no_prefix_cache = true};
    out_t together[N] = {0}, alone[N] = {0};
    eng_t *e = eng_new(g_model, NULL, &cc);
    run_all(e, N, p, len, 10, together);
    /* decode-only steps batch several sequences; each is one row per step */
    eng_counters ct = eng_get_counters(e);
    cr_assert_gt(ct.decode_steps, 0);
    cr_assert_gt(ct.decode_rows, ct.decode_steps, "rows %lld steps %lld", (long long)ct.decode_rows,
                 (long long)ct.decode_steps);
    cr_assert_leq(ct.decode_rows, ct.generated_tokens);
    cr_assert_leq(ct.decode_seconds, ct.forward_seconds);
    eng_destroy(&e);
    for (int i = 0; i < N; i++) {
        e = eng_new(g_model, NULL, &cc);
        run_all(e, 1, &p[i], &len[i], 10, &alone[i]);
        eng_counters ca = eng_get_counters(e);
        cr_assert_eq(ca.decode_rows, ca.decode_steps);
        cr_assert_lt(ca.decode_steps, ca.steps);
        eng_destroy(&e);
        assert_same(&together[i], &alone[i], V);
        free(together[i].logits);
        free(alone[i].logits);
    }
}

Test(engine, shared_system_prompt_batch_is_computed_once) {
    int V = g_model->hp.n_vocab;
    enum { N = 8 };
    int32_t buf[N][140];
    int32_t *p[N];
    int32_t len[N];
    int32_t sys[96];
    rand_ids(sys, 96, V, 9);
    for (int i = 0; i < N; i++) {
        memcpy(buf[i], sys, sizeof sys);
        rand_ids(buf[i] + 96, 20 + i, V, 200 + (unsigned)i);
        p[i] = buf[i];
        len[i] = 116 + i;
    }
    eng_config cc = {.n_threads = 2, .n_blocks = 128};
    eng_t *e = eng_new(g_model, NULL, &cc);
    out_t o[N] = {0};
    run_all(e, N, p, len, 6, o);
    eng_counters c = eng_get_counters(e);
    /* the 6 shared pages are computed by the first request only */
    cr_assert_eq(c.cached_tokens, (N - 1) * 96, "cached %lld", (long long)c.cached_tokens);
    cr_assert_eq(c.computed_tokens, c.prompt_tokens - (N - 1) * 96);
    eng_destroy(&e);
    for (int i = 0; i < N; i++) {
        eng_config pc = {.n_threads = 2, .n_blocks = 128, .no_prefix_cache = true};
        out_t alone = {0};
        e = eng_new(g_model, NULL, &pc);
        run_all(e, 1, &p[i], &len[i], 6, &alone);
        eng_destroy(&e);
        assert_same(&o[i], &alone, V);
        free(alone.logits);
        free(o[i].logits);
    }
}

Test(engine, memory_pressure_preempts_but_loses_nothing) {
    int V = g_model->hp.n_vocab;
    enum { N = 10 };
    int32_t buf[N][100];
    int32_t *p[N];
    int32_t len[N];
    for (int i = 0; i < N; i++) {
        len[i] = 60 + 3 * i;
        rand_ids(buf[i], len[i], V, 300 + (unsigned)i);
        p[i] = buf[i];
    }
    /* 2048-token context needs 129 pages minimum; give just that, far less than 10 x ~6 pages... */
    eng_config tight = {.n_threads = 2, .n_blocks = 1, .n_ctx = 160};
    eng_t *e = eng_new(g_model, NULL, &tight);
    cr_assert_not_null(e);
    out_t o[N] = {0};
    run_all(e, N, p, len, 40, o);
    kvc_stats ks = kvc_get_stats(eng_kvc(e));
    cr_assert_eq(ks.blocks_used, 0, "every page released at the end");
    eng_counters c = eng_get_counters(e);
    cr_assert_gt(c.preemptions, 0, "the test must exercise preemption");
    eng_destroy(&e);
    for (int i = 0; i < N; i++) {
        eng_config pc = {.n_threads = 2, .n_blocks = 64, .no_prefix_cache = true};
        out_t alone = {0};
        e = eng_new(g_model, NULL, &pc);
        run_all(e, 1, &p[i], &len[i], 40, &alone);
        eng_destroy(&e);
        cr_assert_eq(alone.n_gen, o[i].n_gen);
        for (int k = 0; k < alone.n_gen; k++) cr_assert_eq(alone.ids[k], o[i].ids[k], "prompt %d token %d", i, k);
        free(alone.logits);
        free(o[i].logits);
    }
}

Test(engine, eval_matches_generation_logits) {
    int V = g_model->hp.n_vocab;
    int32_t a[50];
    rand_ids(a, 50, V, 11);
    eng_config cc = {.n_threads = 2, .n_blocks = 64};
    eng_t *e = eng_new(g_model, NULL, &cc);
    float *lg = malloc(sizeof(float) * 50 * (size_t)V);
    cr_assert_eq(eng_eval(e, a, 50, lg), 0, "%s", he_msg());
    int32_t *pa[1] = {a};
    int32_t la[1] = {50};
    out_t o = {0};
    run_all(e, 1, pa, la, 1, &o);
    for (int i = 0; i < V; i++) cr_assert_eq(o.logits[i], lg[49 * V + i]);
    cr_assert_eq(o.ids[0], smp_argmax(lg + 49 * V, V));
    free(lg);
    free(o.logits);
    eng_destroy(&e);
}

Test(engine, bad_requests_get_typed_errors) {
    eng_config cc = {.n_threads = 1, .n_blocks = 32, .n_ctx = 64};
    eng_t *e = eng_new(g_model, NULL, &cc);
    eng_request rq = {.max_tokens = 4};
    int32_t ids[100] = {0};
    uint64_t id;
    cr_assert_eq(eng_submit(e, ids, 0, &rq, &id), HE_EEMPTY);
    cr_assert_eq(eng_submit(e, ids, 64, &rq, &id), HE_ECONTEXT);
    cr_assert(strstr(he_msg(), "context") != NULL);
    ids[3] = g_model->hp.n_vocab;
    cr_assert_eq(eng_submit(e, ids, 10, &rq, &id), HE_ERANGE);
    ids[3] = -1;
    cr_assert_eq(eng_submit(e, ids, 10, &rq, &id), HE_ERANGE);
    ids[3] = 0;
    rq.max_tokens = 0;
    cr_assert_eq(eng_submit(e, ids, 10, &rq, &id), HE_EINVAL);
    /* generation stops at the context limit */
    rq.max_tokens = 1000;
    rq.ignore_eos = true;
    cr_assert_eq(eng_submit(e, ids, 60, &rq, &id), 0);
    while (eng_step(e) > 0) {}
    eng_result r;
    cr_assert(eng_next_result(e, &r));
    cr_assert_eq(r.finish, ENG_FINISH_CONTEXT);
    cr_assert_eq(r.n_gen, 4);
    eng_result_free(&r);
    eng_destroy(&e);
}

Test(engine, cancel_and_kv_export_import) {
    int V = g_model->hp.n_vocab;
    int32_t a[70];
    rand_ids(a, 70, V, 21);
    eng_config cc = {.n_threads = 2, .n_blocks = 64};
    eng_t *src = eng_new(g_model, NULL, &cc), *dst = eng_new(g_model, NULL, &cc), *ref = eng_new(g_model, NULL, &cc);
    int32_t *pa[1] = {a};
    int32_t la[1] = {70};
    out_t o1 = {0}, o2 = {0}, o3 = {0};
    run_all(src, 1, pa, la, 5, &o1);
    uint64_t h[8];
    int nh = eng_prompt_hashes(src, a, 70, h);
    cr_assert_eq(nh, 4);
    size_t pb = eng_kv_page_bytes(src);
    void *pages = malloc(pb * 4);
    cr_assert_eq(eng_kv_export(src, h, 4, pages), 4);
    cr_assert_eq(eng_kv_import(dst, h, 4, pages), 4);
    eng_counters c0 = eng_get_counters(dst);
    run_all(dst, 1, pa, la, 5, &o2);
    eng_counters c1 = eng_get_counters(dst);
    cr_assert_eq(o2.cached, 64);
    cr_assert_eq(c1.computed_tokens - c0.computed_tokens, 6);
    run_all(ref, 1, pa, la, 5, &o3);
    assert_same(&o2, &o3, V);
    /* cancel a queued request */
    eng_request rq = {.max_tokens = 4};
    uint64_t id;
    cr_assert_eq(eng_submit(ref, a, 10, &rq, &id), 0);
    cr_assert_eq(eng_cancel(ref, id), 0);
    cr_assert_eq(eng_cancel(ref, id), HE_ENOTFOUND);
    eng_result r;
    cr_assert(eng_next_result(ref, &r));
    cr_assert_eq(r.error, HE_ECANCELED);
    eng_result_free(&r);
    free(pages);
    free(o1.logits);
    free(o2.logits);
    free(o3.logits);
    eng_destroy(&src);
    eng_destroy(&dst);
    eng_destroy(&ref);
}

/* The pull server's copy (eng_kv_copy_out) runs on its own thread while the
 * engine's thread keeps evicting and reusing pages: every page it finds
 * under a hash must hold exactly that hash's KV, never another's. The owner
 * imports page i filled with the value i under hash H(i) into a 16-page
 * cache, so page slots are reused all the time; the reader copies recent
 * hashes out and checks the value. Fails if a copy is torn or a page found
 * under the lock is reused before the copy ends. */
Test(engine, kv_copy_out_is_safe_from_a_second_thread) {
    eng_config cc = {.n_threads = 1, .n_blocks = 16};
    eng_t *e = eng_new(g_model, NULL, &cc);
    cr_assert_not_null(e);
    enum { N = 6000 };
    copy_race_result r;
    cr_assert(copy_race_run(e, N, 50, 2000, &r));
    cr_assert_eq(r.failed_import, -1, "import %d failed: %s", r.failed_import, he_msg());
    cr_assert_eq(r.wrong, 0, "%d of %d copies held another page's KV", r.wrong, r.found);
    cr_assert_geq(r.found, 2000, "the reader checked %d copies in %d imports", r.found, r.imports);
    float *page = malloc(eng_kv_page_bytes(e));
    int last = (r.imports - 1) % N;
    cr_assert_eq(eng_kv_copy_out(e, copy_race_hash(last), page), 1, "the newest page is cached");
    cr_assert_eq(page[0], (float)last);
    cr_assert_eq(eng_kv_copy_out(e, copy_race_hash((last + N / 2) % N), page), 0, "an old one was evicted long ago");
    free(page);
    eng_destroy(&e);
}

/* Workflow-aware eviction inside the engine: with a pinned prefix taking most
 * of a tiny cache, a request that needs more pages than the unpinned ones
 * still runs (same tokens as alone): the pinned pages go, the prefix's tail
 * first (the head survives), counted as pinned evictions. */
Test(engine, pinned_pages_give_way_tail_first_when_nothing_else_is_left) {
    int V = g_model->hp.n_vocab;
    int32_t a[96], b[120];
    rand_ids(a, 96, V, 901);
    rand_ids(b, 120, V, 902);
    eng_config tight = {.n_threads = 2, .n_blocks = 11, .n_ctx = 160, .block_size = 16};
    eng_t *e = eng_new(g_model, NULL, &tight);
    cr_assert_not_null(e);
    cr_assert_eq(kvc_n_blocks(eng_kvc(e)), 11);
    int32_t *pa = a, la = 96, *pb = b, lb = 120;
    out_t oa = {0}, ob = {0}, alone = {0};
    run_all(e, 1, &pa, &la, 1, &oa);
    uint64_t ha[8];
    int na = eng_prompt_hashes(e, a, 96, ha);
    cr_assert_eq(na, 6);
    for (int i = 0; i < na; i++) cr_assert_eq(kvc_pin_prio(eng_kvc(e), ha[i], 2), 0, "block %d not cached", i);
    /* b needs 10 pages (120 + 30 tokens); 5 are not pinned */
    run_all(e, 1, &pb, &lb, 30, &ob);
    kvc_stats ks = kvc_get_stats(eng_kvc(e));
    cr_assert_eq(ks.pinned_evictions, 5);
    cr_assert_eq(ks.blocks_pinned, 1);
    cr_assert_geq(kvc_lookup(eng_kvc(e), ha[0]), 0, "the prefix's head survives");
    for (int i = 1; i < na; i++) cr_assert_eq(kvc_lookup(eng_kvc(e), ha[i]), -1, "block %d evicted (tail first)", i);
    eng_destroy(&e);
    eng_config pc = {.n_threads = 2, .n_blocks = 64, .no_prefix_cache = true};
    e = eng_new(g_model, NULL, &pc);
    run_all(e, 1, &pb, &lb, 30, &alone);
    eng_destroy(&e);
    assert_same(&alone, &ob, V);
    free(oa.logits);
    free(ob.logits);
    free(alone.logits);
}

/* A stop string ends the engine request as soon as the text contains it: the
 * request generates only up to the token that completes it (counted), its
 * text is cut before it, and its tokens are the plain run's prefix. */
Test(engine, stop_string_ends_generation) {
    eng_config cfg = {.n_threads = 1, .kv_mem_mb = 16};
    eng_t *e = eng_new(g_model, NULL, &cfg);
    cr_assert_not_null(e);
    int32_t prompt[24];
    rand_ids(prompt, 24, g_model->hp.n_vocab, 11);
    const int max_tokens = 48;
    eng_request rq = {.max_tokens = max_tokens, .ignore_eos = true, .keep_text = true};
    uint64_t id;
    cr_assert_eq(eng_submit(e, prompt, 24, &rq, &id), 0);
    while (eng_step(e) > 0) {}
    eng_result plain;
    cr_assert(eng_next_result(e, &plain));
    cr_assert_eq(plain.n_gen, max_tokens);
    cr_assert_not_null(plain.text);
    /* a stop string spanning the boundary of the pieces of tokens 9 and 10 */
    size_t ends[64], pos = 0;
    for (int i = 0; i < plain.n_gen; i++) {
        pos += (size_t)tok_decode_piece(g_model->tok, plain.ids[i], false, NULL, 0);
        ends[i] = pos;
    }
    cr_assert_eq(pos, plain.text_len);
    int k = 9;
    while (k < plain.n_gen - 2 && (ends[k] == ends[k - 1] || ends[k + 1] == ends[k])) k++;
    size_t a = ends[k] - 1, b = ends[k] + 1; /* last byte of token k, first of token k+1 */
    char stop[8] = {0};
    memcpy(stop, plain.text + a, b - a);
    const char *first = NULL; /* its first occurrence (the text may hold NUL bytes: no strstr) */
    for (size_t i = 0; !first && i + (b - a) <= plain.text_len; i++)
        if (!memcmp(plain.text + i, stop, b - a)) first = plain.text + i;
    size_t want_len = (size_t)(first - plain.text);
    int want_gen = 0;
    while (ends[want_gen] < want_len + strlen(stop)) want_gen++;
    want_gen++;
    eng_counters before = eng_get_counters(e);
    const char *stops[] = {stop};
    eng_request rs = {.max_tokens = max_tokens, .ignore_eos = true, .stops = stops, .n_stops = 1};
    cr_assert_eq(eng_submit(e, prompt, 24, &rs, &id), 0);
    while (eng_step(e) > 0) {}
    eng_result r;
    cr_assert(eng_next_result(e, &r));
    eng_counters after = eng_get_counters(e);
    cr_assert_eq(r.finish, ENG_FINISH_STOP);
    cr_assert_eq(r.n_gen, want_gen, "generated %d tokens, want %d (stop '%s')", r.n_gen, want_gen, stop);
    cr_assert_lt(r.n_gen, max_tokens, "the stop string saved no work");
    cr_assert_eq(after.generated_tokens - before.generated_tokens, want_gen, "the engine decoded past the stop");
    for (int i = 0; i < r.n_gen; i++) cr_assert_eq(r.ids[i], plain.ids[i]);
    cr_assert_eq(r.text_len, want_len);
    cr_assert_eq(strncmp(r.text, plain.text, want_len), 0);
    eng_result_free(&r);
    eng_result_free(&plain);
    eng_destroy(&e);
}
