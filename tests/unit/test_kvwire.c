/* kvwire tests: the KV page element types (F32, F16, BF16) convert as the
 * wire format says (narrowing rounds to nearest even, widening is exact), and
 * an engine imports pages of another element type by converting them, so a
 * CPU worker can take a GPU worker's F16 / BF16 pages. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "engine.h"
#include "herr.h"
#include "kvwire.h"

static uint16_t to16(float f, int t) {
    uint16_t h;
    cr_assert_eq(kvw_convert(&f, KVW_F32, &h, t, 1), 0);
    return h;
}
static float from16(uint16_t h, int t) {
    float f;
    cr_assert_eq(kvw_convert(&h, t, &f, KVW_F32, 1), 0);
    return f;
}

Test(kvwire, names_sizes_parse) {
    cr_assert_eq(kvw_elem_bytes(KVW_F32), 4);
    cr_assert_eq(kvw_elem_bytes(KVW_F16), 2);
    cr_assert_eq(kvw_elem_bytes(KVW_BF16), 2);
    cr_assert_eq(kvw_elem_bytes(7), 0);
    cr_assert_str_eq(kvw_name(KVW_BF16), "bf16");
    cr_assert_eq(kvw_page_bytes(KVW_F16, 1000), 2000);
    kvw_type t;
    cr_assert_eq(kvw_parse("f16", &t), 0);
    cr_assert_eq(t, KVW_F16);
    cr_assert_eq(kvw_parse("bfloat16", &t), 0);
    cr_assert_eq(t, KVW_BF16);
    cr_assert_eq(kvw_parse("f8", &t), HE_EINVAL);
    cr_assert(strstr(he_msg(), "f8"), "message names the bad type: %s", he_msg());
    float f = 1;
    cr_assert_eq(kvw_convert(&f, KVW_F32, &f, 3, 1), HE_EINVAL);
    cr_assert_eq(kvw_convert(&f, -1, &f, KVW_F32, 1), HE_EINVAL);
}

Test(kvwire, f16_rounding) {
    cr_assert_eq(to16(1.0f, KVW_F16), 0x3C00);
    cr_assert_eq(to16(-2.0f, KVW_F16), 0xC000);
    cr_assert_eq(to16(65504.0f, KVW_F16), 0x7BFF);
    cr_assert_eq(to16(1.0f + ldexpf(1, -11), KVW_F16), 0x3C00, "a tie rounds to the even neighbour");
    cr_assert_eq(to16(1.0f + 3 * ldexpf(1, -11), KVW_F16), 0x3C02, "a tie rounds to the even neighbour");
    cr_assert_eq(to16(1.0f + ldexpf(1, -11) + ldexpf(1, -20), KVW_F16), 0x3C01, "above the tie rounds up");
    cr_assert_eq(to16(70000.0f, KVW_F16), 0x7C00, "overflow gives infinity");
    cr_assert_eq(to16(ldexpf(1, -24), KVW_F16), 0x0001, "smallest subnormal");
    cr_assert_eq(from16(0x0001, KVW_F16), ldexpf(1, -24));
    cr_assert_eq(from16(0x3555, KVW_F16), 0x155 * ldexpf(1, -12) + 0.25f);
}

Test(kvwire, bf16_rounding) {
    cr_assert_eq(to16(1.0f, KVW_BF16), 0x3F80);
    cr_assert_eq(to16(1.0f + ldexpf(1, -8), KVW_BF16), 0x3F80, "a tie rounds to the even neighbour");
    cr_assert_eq(to16(1.0f + 3 * ldexpf(1, -8), KVW_BF16), 0x3F82, "a tie rounds to the even neighbour");
    cr_assert_eq(to16(-3.0e38f, KVW_BF16) & 0x8000, 0x8000);
    uint16_t n = to16(NAN, KVW_BF16);
    cr_assert((n & 0x7F80) == 0x7F80 && (n & 0x7F), "NaN stays NaN: %04x", n);
    cr_assert_eq(from16(0x4049, KVW_BF16), 3.140625f);
}

/* Every finite f16 / bf16 value survives a trip through f32 unchanged, and
 * f16 <-> bf16 equals the two steps through f32. */
Test(kvwire, round_trips) {
    static uint16_t a[65536], b[65536], c[65536];
    static float f[65536];
    size_t n = 0;
    for (uint32_t h = 0; h < 65536; h++)
        if ((h & 0x7C00) != 0x7C00) a[n++] = (uint16_t)h; /* finite f16 */
    cr_assert_eq(kvw_convert(a, KVW_F16, f, KVW_F32, n), 0);
    cr_assert_eq(kvw_convert(f, KVW_F32, b, KVW_F16, n), 0);
    cr_assert_eq(memcmp(a, b, n * 2), 0, "f16 -> f32 -> f16 is the identity");
    cr_assert_eq(kvw_convert(a, KVW_F16, b, KVW_BF16, n), 0);
    cr_assert_eq(kvw_convert(f, KVW_F32, c, KVW_BF16, n), 0);
    cr_assert_eq(memcmp(b, c, n * 2), 0, "f16 -> bf16 directly equals via f32");
    n = 0;
    for (uint32_t h = 0; h < 65536; h++)
        if ((h & 0x7F80) != 0x7F80) a[n++] = (uint16_t)h; /* finite bf16 */
    cr_assert_eq(kvw_convert(a, KVW_BF16, f, KVW_F32, n), 0);
    cr_assert_eq(kvw_convert(f, KVW_F32, b, KVW_BF16, n), 0);
    cr_assert_eq(memcmp(a, b, n * 2), 0, "bf16 -> f32 -> bf16 is the identity");
    for (size_t i = 0; i < n; i++) {
        uint32_t u = (uint32_t)a[i] << 16;
        float g;
        memcpy(&g, &u, 4);
        cr_assert_eq(f[i], g, "bf16 widening is exact at %zu", i);
    }
}

/* ---- an engine imports pages of another element type */

static model_t *g_model;
static char g_path[256];

static void setup(void) {
    snprintf(g_path, sizeof g_path, "/tmp/helium-test-kvwire-%d.gguf", (int)getpid());
    char cmd[768];
    snprintf(cmd, sizeof cmd, "%s/bin/helium-mkmodel --preset tiny --arch llama --dtype f32 --seed 3 -o %s 2>/dev/null",
             HELIUM_BINARY_DIR, g_path);
    cr_assert_eq(system(cmd), 0, "helium-mkmodel failed: %s", cmd);
    cr_assert_eq(model_load(g_path, &g_model), 0, "model_load: %s", he_msg());
}
static void teardown(void) {
    model_destroy(&g_model);
    unlink(g_path);
}

/* Prompt of 3 full pages run through e; hashes of its pages in h. */
static void fill(eng_t *e, int32_t *ids, int n, uint64_t *h) {
    for (int i = 0; i < n; i++) ids[i] = 5 + (i * 37) % 400;
    eng_request rq = {.max_tokens = 1, .ignore_eos = true};
    cr_assert_eq(eng_submit(e, ids, n, &rq, NULL), 0, "%s", he_msg());
    while (eng_step(e) > 0) {}
    eng_result r;
    while (eng_next_result(e, &r)) eng_result_free(&r);
    cr_assert_eq(eng_prompt_hashes(e, ids, n, h), n / eng_block_size(e));
}

Test(kvwire, engine_imports_f16_and_bf16_pages, .init = setup, .fini = teardown) {
    eng_config cfg = {.n_blocks = 64, .block_size = 16, .n_threads = 1};
    eng_t *src = eng_new(g_model, NULL, &cfg);
    cr_assert_not_null(src, "%s", he_msg());
    cr_assert_eq(eng_kv_type(src), KVW_F32);
    int32_t ids[49];
    uint64_t h[3];
    fill(src, ids, 49, h);
    const size_t pb = eng_kv_page_bytes(src), elems = pb / 4;
    cr_assert_eq(eng_kv_page_bytes_of(src, KVW_BF16), pb / 2);
    float *pages = malloc(3 * pb), *back = malloc(pb), *want = malloc(pb);
    cr_assert_eq(eng_kv_export(src, h, 3, pages), 3);
    const int types[2] = {KVW_F16, KVW_BF16};
    for (int k = 0; k < 2; k++) {
        eng_t *dst = eng_new(g_model, NULL, &cfg);
        cr_assert_not_null(dst);
        uint16_t *wire = malloc(3 * pb / 2);
        cr_assert_eq(kvw_convert(pages, KVW_F32, wire, types[k], 3 * elems), 0);
        cr_assert_eq(eng_kv_import_typed(dst, h, 3, wire, types[k]), 3, "%s", he_msg());
        cr_assert_eq(eng_kv_import_typed(dst, h, 3, wire, types[k]), 0, "already cached pages are skipped");
        for (int p = 0; p < 3; p++) {
            cr_assert_eq(eng_kv_copy_out(dst, h[p], back), 1);
            /* what the page must hold: the f32 values rounded to the wire type */
            cr_assert_eq(kvw_convert(wire + (size_t)p * elems, types[k], want, KVW_F32, elems), 0);
            cr_assert_eq(memcmp(back, want, pb), 0, "page %d of type %s converted on import", p, kvw_name(types[k]));
            double num = 0, den = 0;
            for (size_t i = 0; i < elems; i++) {
                double d = (double)back[i] - pages[(size_t)p * elems + i];
                num += d * d;
                den += (double)pages[(size_t)p * elems + i] * pages[(size_t)p * elems + i];
            }
            cr_assert(den > 0 && num / den < (k == 0 ? 1e-6 : 1e-4), "rounding error %g", num / den);
        }
        cr_assert_eq(eng_get_counters(dst).imported_blocks, 3);
        cr_assert_eq(eng_kv_import_typed(dst, h, 1, wire, 9), HE_EINVAL);
        free(wire);
        eng_destroy(&dst);
    }
    free(pages);
    free(back);
    free(want);
    eng_destroy(&src);
}
