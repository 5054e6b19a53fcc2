/* Tests for common/gguf.c: writer -> reader round trips of every value and
 * tensor type, hand-built files for the types the writer cannot emit, and
 * malformed input (truncation at every byte, bad magic/version/counts/
 * lengths/offsets/types, duplicates, random corruption) which must always
 * come back as an error code, never a crash (run under ASan+UBSan).
 * Temp files live under /tmp (mkstemp) and are removed right after opening.
 */
#include <criterion/criterion.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "gguf.h"
#include "herr.h"

/* ---- helpers ------------------------------------------------------------ */

/* Growable byte buffer used to hand-craft GGUF files. */
typedef struct {
    uint8_t *p;
    size_t n, cap;
} bb;

static void bb_put(bb *b, const void *p, size_t n) {
    if (b->n + n > b->cap) {
        b->cap = (b->n + n) * 2 + 64;
        b->p = realloc(b->p, b->cap);
        cr_assert_not_null(b->p);
    }
    memcpy(b->p + b->n, p, n);
    b->n += n;
}
static void bb_u8(bb *b, uint8_t v) { bb_put(b, &v, 1); }
static void bb_u16(bb *b, uint16_t v) { bb_put(b, &v, 2); }
static void bb_u32(bb *b, uint32_t v) { bb_put(b, &v, 4); }
static void bb_u64(bb *b, uint64_t v) { bb_put(b, &v, 8); }
static void bb_str(bb *b, const char *s) {
    bb_u64(b, strlen(s));
    bb_put(b, s, strlen(s));
}
static void bb_pad(bb *b, size_t a) {
    while (b->n % a) bb_u8(b, 0);
}
static void bb_hdr(bb *b, uint32_t version, uint64_t n_tensors, uint64_t n_kv) {
    bb_put(b, "GGUF", 4);
    bb_u32(b, version);
    bb_u64(b, n_tensors);
    bb_u64(b, n_kv);
}
static void bb_kv_u32(bb *b, const char *key, uint32_t v) {
    bb_str(b, key);
    bb_u32(b, GGUF_T_UINT32);
    bb_u32(b, v);
}
/* One tensor info with up to 4 dims. */
static void bb_ti(bb *b, const char *name, uint32_t n_dims, const uint64_t *ne, uint32_t type,
                  uint64_t off) {
    bb_str(b, name);
    bb_u32(b, n_dims);
    for (uint32_t d = 0; d < n_dims; d++) bb_u64(b, ne[d]);
    bb_u32(b, type);
    bb_u64(b, off);
}

static char *tmp_path(void) {
    char *p = strdup("/tmp/test_gguf_XXXXXX");
    int fd = mkstemp(p);
    cr_assert(fd >= 0);
    close(fd);
    return p;
}

/* Writes n bytes to a temp file, opens it with gguf_open, removes the file. */
static int open_bytes(const void *p, size_t n, gguf_t **g) {
    char *path = tmp_path();
    FILE *f = fopen(path, "wb");
    cr_assert_not_null(f);
    if (n) cr_assert_eq(fwrite(p, 1, n, f), n);
    fclose(f);
    int rc = gguf_open(path, g);
    unlink(path);
    free(path);
    if (rc) cr_assert_null(*g, "failed open must leave *out NULL");
    return rc;
}

static uint8_t *read_all(const char *path, size_t *n) {
    FILE *f = fopen(path, "rb");
    cr_assert_not_null(f);
    fseek(f, 0, SEEK_END);
    *n = (size_t)ftell(f);
    fseek(f, 0, SEEK_SET);
    uint8_t *p = malloc(*n ? *n : 1);
    cr_assert_eq(fread(p, 1, *n, f), *n);
    fclose(f);
    return p;
}

/* Reads every byte the reader hands out, so ASan sees any out-of-map pointer. */
static unsigned touch_all(const gguf_t *g) {
    unsigned sum = 0;
    for (int64_t i = 0; i < gguf_n_kv(g); i++) {
        const char *k = gguf_kv_key(g, i);
        cr_assert_eq(gguf_find_key(g, k), i);
        gguf_vtype et;
        uint64_t n;
        const void *d;
        const char *s;
        size_t len;
        if (gguf_get_str(g, k, &s, &len))
            for (size_t j = 0; j < len; j++) sum += (uint8_t)s[j];
        if (gguf_get_arr(g, k, &et, &n, &d) && et == GGUF_T_STRING) {
            for (uint64_t j = 0; j < n; j++) {
                cr_assert(gguf_get_arr_str(g, k, j, &s, &len));
                for (size_t c = 0; c < len; c++) sum += (uint8_t)s[c];
            }
        }
        uint32_t u;
        int64_t v;
        float f;
        bool b;
        sum += gguf_get_u32(g, k, &u) + gguf_get_i64(g, k, &v) + gguf_get_f32(g, k, &f) +
               gguf_get_bool(g, k, &b);
    }
    for (int64_t i = 0; i < gguf_n_tensors(g); i++) {
        const gguf_tensor *t = gguf_tensor_at(g, i);
        cr_assert_eq(gguf_find_tensor(g, t->name), t);
        for (size_t j = 0; j < t->nbytes; j++) sum += ((const uint8_t *)t->data)[j];
    }
    return sum;
}

/* A small valid file: a few keys and one tensor of each type. Every tensor's
 * size is a multiple of 32, so the file has no trailing padding and any
 * truncation must be detected. Returns the writer's bytes. */
static uint8_t *make_valid(size_t *n) {
    gguf_writer_t *w = gguf_writer_new();
    cr_assert_not_null(w);
    const char *toks[] = {"<s>", "hello", ""};
    int32_t ia[] = {1, -2, 3};
    cr_assert_eq(gguf_writer_add_str(w, "general.architecture", "llama"), 0);
    cr_assert_eq(gguf_writer_add_u32(w, "llama.block_count", 2), 0);
    cr_assert_eq(gguf_writer_add_arr_str(w, "tokenizer.ggml.tokens", toks, 3), 0);
    cr_assert_eq(gguf_writer_add_arr_i32(w, "tokenizer.ggml.token_type", ia, 3), 0);
    cr_assert_eq(gguf_writer_add_bool(w, "tokenizer.ggml.add_bos_token", true), 0);
    float f32[8];
    uint16_t h16[16];
    uint8_t q8[34 * 2 * 2] = {0};
    for (int i = 0; i < 8; i++) f32[i] = (float)i;
    for (int i = 0; i < 16; i++) h16[i] = (uint16_t)(0x3c00 + i);
    for (size_t i = 0; i < sizeof q8; i++) q8[i] = (uint8_t)i;
    cr_assert_eq(gguf_writer_add_tensor(w, "a.f32", GGML_T_F32, 2, (int64_t[]){4, 2}, f32), 0);
    cr_assert_eq(gguf_writer_add_tensor(w, "b.f16", GGML_T_F16, 1, (int64_t[]){16}, h16), 0);
    cr_assert_eq(gguf_writer_add_tensor(w, "d.bf16", GGML_T_BF16, 1, (int64_t[]){16}, h16), 0);
    /* Q8_0: 2 rows of 64 -> 136 bytes (padded in the file); the last tensor is 32 bytes */
    cr_assert_eq(gguf_writer_add_tensor(w, "c.q8", GGML_T_Q8_0, 2, (int64_t[]){64, 2}, q8), 0);
    cr_assert_eq(gguf_writer_add_tensor(w, "e.f32", GGML_T_F32, 1, (int64_t[]){8}, f32), 0);
    char *path = tmp_path();
    cr_assert_eq(gguf_writer_write(w, path), 0, "%s", he_msg());
    gguf_writer_destroy(&w);
    cr_assert_null(w);
    uint8_t *p = read_all(path, n);
    unlink(path);
    free(path);
    return p;
}

/* ---- round trips ------------------------------------------------------------ */

Test(gguf, writer_roundtrip_all_types) {
    gguf_writer_t *w = gguf_writer_new();
    const char *toks[] = {"<s>", "</s>", "", "h\xc3\xa9llo", "a b"};
    int32_t ia[] = {0, -1, INT32_MAX, INT32_MIN};
    float fa[] = {0.5f, -2.25f, 1e30f};
    cr_assert_eq(gguf_writer_add_str(w, "general.architecture", "llama"), 0);
    cr_assert_eq(gguf_writer_add_u32(w, "llama.block_count", 4000000000u), 0);
    cr_assert_eq(gguf_writer_add_i32(w, "neg", -7), 0);
    cr_assert_eq(gguf_writer_add_f32(w, "llama.rope.freq_base", 10000.5f), 0);
    cr_assert_eq(gguf_writer_add_bool(w, "flag", true), 0);
    cr_assert_eq(gguf_writer_add_bool(w, "flag0", false), 0);
    cr_assert_eq(gguf_writer_add_str(w, "empty", ""), 0);
    cr_assert_eq(gguf_writer_add_arr_str(w, "tokenizer.ggml.tokens", toks, 5), 0);
    cr_assert_eq(gguf_writer_add_arr_i32(w, "ints", ia, 4), 0);
    cr_assert_eq(gguf_writer_add_arr_f32(w, "floats", fa, 3), 0);
    cr_assert_eq(gguf_writer_add_arr_f32(w, "none", NULL, 0), 0);

    float t0[3 * 5];                  /* (5, 3) f32 */
    uint16_t t1[7];                   /* (7) f16 */
    uint8_t t2[34 * 3 * 2];           /* (2, 3, 96) q8_0: 3 blocks per row */
    uint16_t t3[2 * 3 * 4 * 2];       /* (2, 4, 3, 2) bf16 */
    for (int i = 0; i < 15; i++) t0[i] = (float)i * 0.25f;
    for (int i = 0; i < 7; i++) t1[i] = (uint16_t)(i * 1000);
    for (size_t i = 0; i < sizeof t2; i++) t2[i] = (uint8_t)(i * 7);
    for (int i = 0; i < 48; i++) t3[i] = (uint16_t)(i + 0x3f80);
    cr_assert_eq(gguf_writer_add_tensor(w, "t0", GGML_T_F32, 2, (int64_t[]){5, 3}, t0), 0);
    cr_assert_eq(gguf_writer_add_tensor(w, "blk.0.attn_q.weight", GGML_T_F16, 1, (int64_t[]){7}, t1), 0);
    cr_assert_eq(gguf_writer_add_tensor(w, "t2", GGML_T_Q8_0, 3, (int64_t[]){96, 1, 2}, t2), 0);
    cr_assert_eq(gguf_writer_add_tensor(w, "t3", GGML_T_BF16, 4, (int64_t[]){2, 3, 4, 2}, t3), 0);
    char *path = tmp_path();
    cr_assert_eq(gguf_writer_write(w, path), 0, "%s", he_msg());
    gguf_writer_destroy(&w);
    gguf_writer_destroy(&w); /* NULL is fine */

    gguf_t *g = NULL;
    cr_assert_eq(gguf_open(path, &g), 0, "%s", he_msg());
    unlink(path);
    free(path);
    cr_assert_eq(gguf_version(g), 3);
    cr_assert_eq(gguf_n_kv(g), 11);
    cr_assert_str_eq(gguf_kv_key(g, 0), "general.architecture");
    cr_assert_null(gguf_kv_key(g, 11));
    cr_assert_null(gguf_kv_key(g, -1));
    cr_assert_eq(gguf_find_key(g, "general.alignment"), -1, "default alignment is not written");
    cr_assert_eq(gguf_find_key(g, "neg"), 2);
    cr_assert_eq(gguf_find_key(g, "nope"), -1);
    cr_assert_eq(gguf_kv_type(g, 2), GGUF_T_INT32);
    cr_assert_eq(gguf_kv_type(g, 7), GGUF_T_ARRAY);

    const char *s;
    size_t len;
    cr_assert(gguf_get_str(g, "general.architecture", &s, &len));
    cr_assert_eq(len, 5);
    cr_assert_eq(memcmp(s, "llama", 5), 0);
    cr_assert(gguf_get_str(g, "empty", &s, &len));
    cr_assert_eq(len, 0);
    uint32_t u;
    int64_t i64;
    float f;
    bool b;
    cr_assert(gguf_get_u32(g, "llama.block_count", &u));
    cr_assert_eq(u, 4000000000u);
    cr_assert(gguf_get_i64(g, "llama.block_count", &i64));
    cr_assert_eq(i64, 4000000000ll);
    cr_assert_not(gguf_get_u32(g, "neg", &u), "negative does not fit u32");
    cr_assert(gguf_get_i64(g, "neg", &i64));
    cr_assert_eq(i64, -7);
    cr_assert(gguf_get_f32(g, "llama.rope.freq_base", &f));
    cr_assert_eq(f, 10000.5f);
    cr_assert_not(gguf_get_f32(g, "neg", &f));
    cr_assert_not(gguf_get_u32(g, "general.architecture", &u));
    cr_assert_not(gguf_get_str(g, "neg", &s, &len));
    cr_assert(gguf_get_bool(g, "flag", &b) && b);
    cr_assert(gguf_get_bool(g, "flag0", &b) && !b);
    cr_assert_not(gguf_get_bool(g, "neg", &b));

    gguf_vtype et;
    uint64_t n;
    const void *d;
    cr_assert(gguf_get_arr(g, "ints", &et, &n, &d));
    cr_assert_eq(et, GGUF_T_INT32);
    cr_assert_eq(n, 4);
    cr_assert_eq(memcmp(d, ia, sizeof ia), 0);
    cr_assert(gguf_get_arr(g, "floats", &et, &n, &d));
    cr_assert_eq(et, GGUF_T_FLOAT32);
    cr_assert_eq(n, 3);
    cr_assert_eq(memcmp(d, fa, sizeof fa), 0);
    cr_assert(gguf_get_arr(g, "none", &et, &n, &d));
    cr_assert_eq(n, 0);
    cr_assert(gguf_get_arr(g, "tokenizer.ggml.tokens", &et, &n, &d));
    cr_assert_eq(et, GGUF_T_STRING);
    cr_assert_eq(n, 5);
    for (uint64_t i = 0; i < 5; i++) {
        cr_assert(gguf_get_arr_str(g, "tokenizer.ggml.tokens", i, &s, &len));
        cr_assert_eq(len, strlen(toks[i]));
        cr_assert_eq(memcmp(s, toks[i], len), 0);
    }
    cr_assert_not(gguf_get_arr_str(g, "tokenizer.ggml.tokens", 5, &s, &len));
    cr_assert_not(gguf_get_arr_str(g, "ints", 0, &s, &len));
    cr_assert_not(gguf_get_arr(g, "neg", &et, &n, &d));

    cr_assert_eq(gguf_n_tensors(g), 4);
    cr_assert_null(gguf_tensor_at(g, 4));
    cr_assert_null(gguf_find_tensor(g, "missing"));
    const gguf_tensor *t = gguf_find_tensor(g, "t0");
    cr_assert_not_null(t);
    cr_assert_eq(t, gguf_tensor_at(g, 0));
    cr_assert_eq(t->n_dims, 2);
    cr_assert_eq(t->ne[0], 5);
    cr_assert_eq(t->ne[1], 3);
    cr_assert_eq(t->ne[2], 1);
    cr_assert_eq(t->ne[3], 1);
    cr_assert_eq(t->type, GGML_T_F32);
    cr_assert_eq(t->nbytes, sizeof t0);
    cr_assert_eq(memcmp(t->data, t0, sizeof t0), 0);
    t = gguf_find_tensor(g, "blk.0.attn_q.weight");
    cr_assert_eq(t->type, GGML_T_F16);
    cr_assert_eq(t->nbytes, sizeof t1);
    cr_assert_eq(memcmp(t->data, t1, sizeof t1), 0);
    t = gguf_find_tensor(g, "t2");
    cr_assert_eq(t->type, GGML_T_Q8_0);
    cr_assert_eq(t->n_dims, 3);
    cr_assert_eq(t->nbytes, sizeof t2);
    cr_assert_eq(memcmp(t->data, t2, sizeof t2), 0);
    t = gguf_find_tensor(g, "t3");
    cr_assert_eq(t->type, GGML_T_BF16);
    cr_assert_eq(t->n_dims, 4);
    cr_assert_eq(t->ne[3], 2);
    cr_assert_eq(t->nbytes, sizeof t3);
    cr_assert_eq(memcmp(t->data, t3, sizeof t3), 0);
    for (int64_t i = 0; i < 4; i++)
        cr_assert_eq((uintptr_t)gguf_tensor_at(g, i)->data % GGUF_DEFAULT_ALIGNMENT, 0);
    gguf_destroy(&g);
    cr_assert_null(g);
    gguf_destroy(&g);
}

Test(gguf, writer_custom_alignment) {
    gguf_writer_t *w = gguf_writer_new();
    float x[3] = {1, 2, 3};
    cr_assert_eq(gguf_writer_add_u32(w, "general.alignment", 48), HE_EINVAL);
    cr_assert_eq(gguf_writer_add_i32(w, "general.alignment", 64), HE_EINVAL);
    cr_assert_eq(gguf_writer_add_u32(w, "general.alignment", 256), 0);
    cr_assert_eq(gguf_writer_add_tensor(w, "x", GGML_T_F32, 1, (int64_t[]){3}, x), 0);
    cr_assert_eq(gguf_writer_add_tensor(w, "y", GGML_T_F32, 1, (int64_t[]){3}, x), 0);
    char *path = tmp_path();
    cr_assert_eq(gguf_writer_write(w, path), 0);
    gguf_writer_destroy(&w);
    gguf_t *g = NULL;
    cr_assert_eq(gguf_open(path, &g), 0, "%s", he_msg());
    unlink(path);
    free(path);
    uint32_t a;
    cr_assert(gguf_get_u32(g, "general.alignment", &a));
    cr_assert_eq(a, 256);
    const gguf_tensor *y = gguf_find_tensor(g, "y");
    cr_assert_eq(((const uint8_t *)y->data - (const uint8_t *)gguf_find_tensor(g, "x")->data), 256);
    cr_assert_eq(memcmp(y->data, x, sizeof x), 0);
    gguf_destroy(&g);
}

Test(gguf, writer_rejects_bad_input) {
    gguf_writer_t *w = gguf_writer_new();
    float x[64] = {0};
    cr_assert_eq(gguf_writer_add_u32(w, "k", 1), 0);
    cr_assert_eq(gguf_writer_add_str(w, "k", "again"), HE_EINVAL);
    cr_assert_eq(gguf_writer_add_u32(w, "", 1), HE_EINVAL);
    cr_assert_eq(gguf_writer_add_tensor(w, "t", GGML_T_F32, 1, (int64_t[]){4}, x), 0);
    cr_assert_eq(gguf_writer_add_tensor(w, "t", GGML_T_F32, 1, (int64_t[]){4}, x), HE_EINVAL);
    cr_assert_eq(gguf_writer_add_tensor(w, "q", GGML_T_Q8_0, 1, (int64_t[]){33}, x), HE_EINVAL);
    cr_assert_eq(gguf_writer_add_tensor(w, "q", (ggml_type)12, 1, (int64_t[]){32}, x), HE_EINVAL);
    cr_assert_eq(gguf_writer_add_tensor(w, "z", GGML_T_F32, 1, (int64_t[]){0}, x), HE_EINVAL);
    cr_assert_eq(gguf_writer_add_tensor(w, "z", GGML_T_F32, 5, (int64_t[]){1, 1, 1, 1, 1}, x), HE_EINVAL);
    cr_assert_eq(gguf_writer_add_tensor(w, "z", GGML_T_F32, 0, (int64_t[]){1}, x), HE_EINVAL);
    char longname[80];
    memset(longname, 'a', sizeof longname - 1);
    longname[79] = 0;
    cr_assert_eq(gguf_writer_add_tensor(w, longname, GGML_T_F32, 1, (int64_t[]){4}, x), HE_EINVAL);
    /* rejected adds left the file consistent */
    char *path = tmp_path();
    cr_assert_eq(gguf_writer_write(w, path), 0);
    gguf_writer_destroy(&w);
    gguf_t *g = NULL;
    cr_assert_eq(gguf_open(path, &g), 0, "%s", he_msg());
    cr_assert_eq(gguf_n_kv(g), 1);
    cr_assert_str_eq(gguf_kv_key(g, 0), "k");
    uint32_t u = 0;
    cr_assert(gguf_get_u32(g, "k", &u) && u == 1);
    cr_assert_eq(gguf_n_tensors(g), 1);
    cr_assert_not_null(gguf_find_tensor(g, "t"));
    cr_assert_eq(gguf_find_tensor(g, "t")->nbytes, 16);
    gguf_destroy(&g);
    w = gguf_writer_new();
    cr_assert_eq(gguf_writer_write(w, "/nonexistent-dir/x.gguf"), HE_EIO);
    gguf_writer_destroy(&w);
    unlink(path);
    free(path);
}

/* A v2 file built by hand with every scalar type, several array types and a
 * non-default alignment (the writer emits only some of these). */
Test(gguf, reader_all_value_types_v2) {
    bb b = {0};
    bb_hdr(&b, 2, 1, 18);
    bb_str(&b, "a.u8"); bb_u32(&b, GGUF_T_UINT8); bb_u8(&b, 200);
    bb_str(&b, "a.i8"); bb_u32(&b, GGUF_T_INT8); bb_u8(&b, (uint8_t)-5);
    bb_str(&b, "a.u16"); bb_u32(&b, GGUF_T_UINT16); bb_u16(&b, 60000);
    bb_str(&b, "a.i16"); bb_u32(&b, GGUF_T_INT16); bb_u16(&b, (uint16_t)-30000);
    bb_kv_u32(&b, "a.u32", 123456);
    bb_str(&b, "a.i32"); bb_u32(&b, GGUF_T_INT32); bb_u32(&b, (uint32_t)-9);
    bb_str(&b, "a.f32"); bb_u32(&b, GGUF_T_FLOAT32); { float f = 1.5f; bb_put(&b, &f, 4); }
    bb_str(&b, "a.bool"); bb_u32(&b, GGUF_T_BOOL); bb_u8(&b, 1);
    bb_str(&b, "a.str"); bb_u32(&b, GGUF_T_STRING); bb_str(&b, "xyz");
    bb_str(&b, "a.u64"); bb_u32(&b, GGUF_T_UINT64); bb_u64(&b, 1ull << 40);
    bb_str(&b, "a.u64max"); bb_u32(&b, GGUF_T_UINT64); bb_u64(&b, UINT64_MAX);
    bb_str(&b, "a.i64"); bb_u32(&b, GGUF_T_INT64); bb_u64(&b, (uint64_t)-(1ll << 40));
    bb_str(&b, "a.f64"); bb_u32(&b, GGUF_T_FLOAT64); { double d = 3.5; bb_put(&b, &d, 8); }
    bb_str(&b, "arr.u8"); bb_u32(&b, GGUF_T_ARRAY); bb_u32(&b, GGUF_T_UINT8); bb_u64(&b, 3);
    bb_u8(&b, 1); bb_u8(&b, 2); bb_u8(&b, 3);
    bb_str(&b, "arr.f64"); bb_u32(&b, GGUF_T_ARRAY); bb_u32(&b, GGUF_T_FLOAT64); bb_u64(&b, 2);
    { double d[2] = {-1.0, 2.0}; bb_put(&b, d, 16); }
    bb_str(&b, "arr.str0"); bb_u32(&b, GGUF_T_ARRAY); bb_u32(&b, GGUF_T_STRING); bb_u64(&b, 0);
    bb_str(&b, "arr.str"); bb_u32(&b, GGUF_T_ARRAY); bb_u32(&b, GGUF_T_STRING); bb_u64(&b, 2);
    bb_str(&b, "q"); bb_str(&b, "rs");
    bb_kv_u32(&b, "general.alignment", 64);
    bb_ti(&b, "w", 1, (uint64_t[]){16}, GGML_T_F32, 0);
    bb_pad(&b, 64);
    for (int i = 0; i < 16; i++) { float f = (float)i; bb_put(&b, &f, 4); }

    gguf_t *g = NULL;
    cr_assert_eq(open_bytes(b.p, b.n, &g), 0, "%s", he_msg());
    free(b.p);
    cr_assert_eq(gguf_version(g), 2);
    cr_assert_eq(gguf_n_kv(g), 18);
    uint32_t u;
    int64_t v;
    float f;
    bool bo;
    cr_assert(gguf_get_u32(g, "a.u8", &u) && u == 200);
    cr_assert(gguf_get_i64(g, "a.i8", &v) && v == -5);
    cr_assert_not(gguf_get_u32(g, "a.i8", &u));
    cr_assert(gguf_get_u32(g, "a.u16", &u) && u == 60000);
    cr_assert(gguf_get_i64(g, "a.i16", &v) && v == -30000);
    cr_assert(gguf_get_u32(g, "a.u32", &u) && u == 123456);
    cr_assert(gguf_get_i64(g, "a.i32", &v) && v == -9);
    cr_assert(gguf_get_f32(g, "a.f32", &f) && f == 1.5f);
    cr_assert(gguf_get_bool(g, "a.bool", &bo) && bo);
    cr_assert_not(gguf_get_u32(g, "a.bool", &u), "bool is not an integer");
    cr_assert_not(gguf_get_u32(g, "a.u64", &u), "2^40 does not fit u32");
    cr_assert(gguf_get_i64(g, "a.u64", &v) && v == 1ll << 40);
    cr_assert_not(gguf_get_i64(g, "a.u64max", &v), "UINT64_MAX does not fit i64");
    cr_assert(gguf_get_i64(g, "a.i64", &v) && v == -(1ll << 40));
    cr_assert(gguf_get_f32(g, "a.f64", &f) && f == 3.5f);
    cr_assert_not(gguf_get_f32(g, "a.u32", &f));
    const char *s;
    size_t len;
    cr_assert(gguf_get_str(g, "a.str", &s, &len) && len == 3 && !memcmp(s, "xyz", 3));
    gguf_vtype et;
    uint64_t n;
    const void *d;
    cr_assert(gguf_get_arr(g, "arr.u8", &et, &n, &d) && et == GGUF_T_UINT8 && n == 3);
    cr_assert_eq(((const uint8_t *)d)[2], 3);
    cr_assert(gguf_get_arr(g, "arr.f64", &et, &n, &d) && et == GGUF_T_FLOAT64 && n == 2);
    double d1;
    memcpy(&d1, (const uint8_t *)d + 8, 8);
    cr_assert_eq(d1, 2.0);
    cr_assert(gguf_get_arr(g, "arr.str0", &et, &n, &d) && et == GGUF_T_STRING && n == 0);
    cr_assert_not(gguf_get_arr_str(g, "arr.str0", 0, &s, &len));
    cr_assert(gguf_get_arr_str(g, "arr.str", 1, &s, &len) && len == 2 && !memcmp(s, "rs", 2));
    const gguf_tensor *t = gguf_find_tensor(g, "w");
    cr_assert_not_null(t);
    cr_assert_eq((uintptr_t)t->data % 64, 0);
    float last;
    memcpy(&last, (const uint8_t *)t->data + 60, 4);
    cr_assert_eq(last, 15.0f);
    gguf_destroy(&g);
}

Test(gguf, row_size_and_names) {
    cr_assert_eq(ggml_row_size(GGML_T_F32, 10), 40);
    cr_assert_eq(ggml_row_size(GGML_T_F16, 10), 20);
    cr_assert_eq(ggml_row_size(GGML_T_BF16, 10), 20);
    cr_assert_eq(ggml_row_size(GGML_T_Q8_0, 64), 68);
    cr_assert_eq(ggml_row_size(GGML_T_Q8_0, 48), 0);
    cr_assert_eq(ggml_row_size((ggml_type)12, 256), 144);
    cr_assert_eq(ggml_row_size((ggml_type)16, 256), 0); /* IQ2_XXS: not in the table */
    cr_assert_eq(ggml_row_size(GGML_T_F32, -1), 0);
    cr_assert_str_eq(ggml_type_name(GGML_T_Q8_0), "Q8_0");
    cr_assert_str_eq(ggml_type_name(GGML_T_BF16), "BF16");
    cr_assert_str_eq(ggml_type_name((ggml_type)12), "Q4_K");
    cr_assert_str_eq(ggml_type_name((ggml_type)999), "unknown");
}

/* ---- malformed input ---------------------------------------------------------- */

/* Opens b's bytes, expects code and (if given) substr in the message; frees b. */
static void expect_err(bb *b, int code, const char *substr) {
    gguf_t *g = NULL;
    int rc = open_bytes(b->p, b->n, &g);
    cr_assert_eq(rc, code, "got %s (%s), want %s", he_name(rc), he_msg(), he_name(code));
    if (substr) cr_assert_not_null(strstr(he_msg(), substr), "message '%s' lacks '%s'", he_msg(), substr);
    free(b->p);
    memset(b, 0, sizeof *b);
}

/* A file with one tensor info and data_bytes of zeros after the aligned header. */
static void one_tensor(bb *b, const char *name, uint32_t n_dims, const uint64_t *ne, uint32_t type,
                       uint64_t off, size_t data_bytes) {
    bb_hdr(b, 3, 1, 0);
    bb_ti(b, name, n_dims, ne, type, off);
    bb_pad(b, 32);
    for (size_t i = 0; i < data_bytes; i++) bb_u8(b, 0);
}

Test(gguf, bad_magic_and_tiny_files) {
    bb b = {0};
    bb_put(&b, "GGUX", 4);
    bb_u32(&b, 3); bb_u64(&b, 0); bb_u64(&b, 0);
    expect_err(&b, HE_EFORMAT, "bad magic");
    expect_err(&b, HE_EFORMAT, "bad magic"); /* empty file */
    bb_put(&b, "GG", 2);
    expect_err(&b, HE_EFORMAT, "bad magic");
    bb_put(&b, "GGUF", 4);
    expect_err(&b, HE_EFORMAT, "truncated");
}

Test(gguf, unsupported_versions) {
    bb b = {0};
    bb_hdr(&b, 1, 0, 0);
    expect_err(&b, HE_EUNSUPPORTED, "version 1");
    bb_hdr(&b, 4, 0, 0);
    expect_err(&b, HE_EUNSUPPORTED, "version 4");
    bb_hdr(&b, 0x03000000, 0, 0);
    expect_err(&b, HE_EUNSUPPORTED, "big-endian");
    bb_hdr(&b, 3, 0, 0); /* minimal valid file */
    gguf_t *g = NULL;
    cr_assert_eq(open_bytes(b.p, b.n, &g), 0, "%s", he_msg());
    cr_assert_eq(gguf_n_kv(g), 0);
    cr_assert_eq(gguf_n_tensors(g), 0);
    gguf_destroy(&g);
    free(b.p);
}

Test(gguf, missing_file_is_eio) {
    gguf_t *g = (gguf_t *)1;
    cr_assert_eq(gguf_open("/nonexistent/nothing.gguf", &g), HE_EIO);
    cr_assert_null(g);
    cr_assert_eq(gguf_open("/tmp", &g), HE_EIO);
}

Test(gguf, absurd_counts) {
    bb b = {0};
    bb_hdr(&b, 3, 0, UINT64_MAX);
    expect_err(&b, HE_EFORMAT, "absurd kv count");
    bb_hdr(&b, 3, 1ull << 40, 0);
    expect_err(&b, HE_EFORMAT, "absurd tensor count");
    bb_hdr(&b, 3, UINT64_MAX, UINT64_MAX / 13);
    expect_err(&b, HE_EFORMAT, "absurd");
    bb_hdr(&b, 3, 0, 2); /* claims 2 kvs, holds one */
    bb_kv_u32(&b, "k", 1);
    expect_err(&b, HE_EFORMAT, NULL);
    bb_hdr(&b, 3, 0, 1); /* small but plausible count, then nothing */
    for (int i = 0; i < 13; i++) bb_u8(&b, 0xff);
    expect_err(&b, HE_EFORMAT, "truncated");
}

Test(gguf, string_and_array_lengths_past_end) {
    bb b = {0};
    bb_hdr(&b, 3, 0, 1);
    bb_u64(&b, 1ull << 62); bb_put(&b, "key and more bytes", 18);
    expect_err(&b, HE_EFORMAT, "kv #0 key: string length");

    bb_hdr(&b, 3, 0, 1);
    bb_str(&b, "general.name"); bb_u32(&b, GGUF_T_STRING); bb_u64(&b, 1000); bb_put(&b, "abc", 3);
    expect_err(&b, HE_EFORMAT, "kv #0 'general.name'");

    bb_hdr(&b, 3, 0, 1);
    bb_str(&b, "arr"); bb_u32(&b, GGUF_T_ARRAY); bb_u32(&b, GGUF_T_UINT64); bb_u64(&b, 1ull << 61);
    bb_u64(&b, 0);
    expect_err(&b, HE_EFORMAT, "array of");

    bb_hdr(&b, 3, 0, 1);
    bb_str(&b, "arr"); bb_u32(&b, GGUF_T_ARRAY); bb_u32(&b, GGUF_T_STRING); bb_u64(&b, UINT64_MAX);
    bb_u64(&b, 0);
    expect_err(&b, HE_EFORMAT, "array of");

    bb_hdr(&b, 3, 0, 1);
    bb_str(&b, "tokens"); bb_u32(&b, GGUF_T_ARRAY); bb_u32(&b, GGUF_T_STRING); bb_u64(&b, 3);
    bb_str(&b, "a"); bb_u64(&b, 1ull << 40); bb_str(&b, "padding-bytes");
    expect_err(&b, HE_EFORMAT, "element 1");

    bb_hdr(&b, 3, 1, 0);
    bb_u64(&b, UINT64_MAX); bb_put(&b, "name-bytes-and-then-some-more-bytes", 35);
    expect_err(&b, HE_EFORMAT, "tensor #0 name");
}

Test(gguf, bad_value_types) {
    bb b = {0};
    bb_hdr(&b, 3, 0, 1);
    bb_str(&b, "nest"); bb_u32(&b, GGUF_T_ARRAY); bb_u32(&b, GGUF_T_ARRAY); bb_u64(&b, 1);
    bb_u32(&b, GGUF_T_UINT8); bb_u64(&b, 1); bb_u8(&b, 0);
    expect_err(&b, HE_EUNSUPPORTED, "nested");
    bb_hdr(&b, 3, 0, 1);
    bb_str(&b, "k"); bb_u32(&b, 13); bb_u64(&b, 0);
    expect_err(&b, HE_EFORMAT, "unknown value type");
    bb_hdr(&b, 3, 0, 1);
    bb_str(&b, "k"); bb_u32(&b, GGUF_T_ARRAY); bb_u32(&b, 77); bb_u64(&b, 0);
    expect_err(&b, HE_EFORMAT, "unknown element type");
    bb_hdr(&b, 3, 0, 1);
    bb_u64(&b, 3); bb_put(&b, "a\0b", 3); bb_u32(&b, GGUF_T_UINT8); bb_u8(&b, 0);
    expect_err(&b, HE_EFORMAT, "NUL");
}

Test(gguf, duplicates) {
    bb b = {0};
    bb_hdr(&b, 3, 0, 3);
    bb_kv_u32(&b, "a", 1);
    bb_kv_u32(&b, "b", 2);
    bb_kv_u32(&b, "a", 3);
    expect_err(&b, HE_EFORMAT, "duplicate key 'a'");
    bb_hdr(&b, 3, 2, 0);
    bb_ti(&b, "t", 1, (uint64_t[]){8}, GGML_T_F32, 0);
    bb_ti(&b, "t", 1, (uint64_t[]){8}, GGML_T_F32, 32);
    bb_pad(&b, 32);
    for (int i = 0; i < 64; i++) bb_u8(&b, 0);
    expect_err(&b, HE_EFORMAT, "duplicate tensor name 't'");
}

Test(gguf, alignment_key) {
    bb b = {0};
    bb_hdr(&b, 3, 0, 1);
    bb_kv_u32(&b, "general.alignment", 48);
    expect_err(&b, HE_EFORMAT, "power of two");
    bb_hdr(&b, 3, 0, 1);
    bb_kv_u32(&b, "general.alignment", 0);
    expect_err(&b, HE_EFORMAT, "power of two");
    bb_hdr(&b, 3, 0, 1);
    bb_str(&b, "general.alignment"); bb_u32(&b, GGUF_T_INT32); bb_u32(&b, 32);
    expect_err(&b, HE_EFORMAT, "expected u32");
}

Test(gguf, tensor_data_past_end) {
    bb b = {0};
    one_tensor(&b, "blk.0.attn_q.weight", 2, (uint64_t[]){8, 4}, GGML_T_F32, 0, 127);
    expect_err(&b, HE_ERANGE, "tensor 'blk.0.attn_q.weight' data [");
    one_tensor(&b, "w", 1, (uint64_t[]){8}, GGML_T_F32, 64, 64);
    expect_err(&b, HE_ERANGE, "past end of file");
    one_tensor(&b, "w", 1, (uint64_t[]){8}, GGML_T_F32, 1ull << 63, 64);
    expect_err(&b, HE_ERANGE, "past end of file");
    one_tensor(&b, "w", 1, (uint64_t[]){8}, GGML_T_F32, UINT64_MAX - 31, 64);
    expect_err(&b, HE_ERANGE, "past end of file");
    one_tensor(&b, "w", 2, (uint64_t[]){1ull << 30, 1ull << 30}, GGML_T_F32, 0, 64);
    expect_err(&b, HE_ERANGE, "past end of file");
    one_tensor(&b, "w", 1, (uint64_t[]){8}, GGML_T_F32, 16, 64);
    expect_err(&b, HE_EFORMAT, "not a multiple of the alignment");
    one_tensor(&b, "w", 1, (uint64_t[]){8}, GGML_T_F32, 32, 64); /* exactly fits */
    gguf_t *g = NULL;
    cr_assert_eq(open_bytes(b.p, b.n, &g), 0, "%s", he_msg());
    gguf_destroy(&g);
    free(b.p);
}

Test(gguf, tensor_shapes_and_types) {
    bb b = {0};
    one_tensor(&b, "w", 1, (uint64_t[]){32}, 999, 0, 128);
    expect_err(&b, HE_EUNSUPPORTED, "tensor 'w' has unknown type id 999");
    one_tensor(&b, "blk.0.ffn_up.weight", 1, (uint64_t[]){256}, 16, 0, 1024);
    expect_err(&b, HE_EUNSUPPORTED, "'blk.0.ffn_up.weight' has type IQ2_XXS");
    one_tensor(&b, "w", 1, (uint64_t[]){256}, GGML_T_Q8_K, 0, 1024);
    expect_err(&b, HE_EUNSUPPORTED, "has type Q8_K"); /* an activation format, never in files */
    one_tensor(&b, "w", 1, (uint64_t[]){40}, GGML_T_Q8_0, 0, 128);
    expect_err(&b, HE_EFORMAT, "multiple of its block size 32");
    one_tensor(&b, "w", 2, (uint64_t[]){8, 0}, GGML_T_F32, 0, 64);
    expect_err(&b, HE_EFORMAT, "bad size 0");
    one_tensor(&b, "w", 1, (uint64_t[]){1ull << 63}, GGML_T_F32, 0, 64);
    expect_err(&b, HE_EFORMAT, "bad size");
    one_tensor(&b, "w", 3, (uint64_t[]){1ull << 32, 1ull << 32, 4}, GGML_T_F32, 0, 64);
    expect_err(&b, HE_EFORMAT, "overflows");
    one_tensor(&b, "w", 2, (uint64_t[]){1ull << 62, 1}, GGML_T_F32, 0, 64);
    expect_err(&b, HE_ERANGE, "overflows");
    bb_hdr(&b, 3, 1, 0);
    bb_str(&b, "w"); bb_u32(&b, 5);
    for (int i = 0; i < 5; i++) bb_u64(&b, 1);
    bb_u32(&b, 0); bb_u64(&b, 0);
    bb_pad(&b, 32);
    for (int i = 0; i < 32; i++) bb_u8(&b, 0);
    expect_err(&b, HE_EFORMAT, "5 dims");
}

/* Cuts a valid file at every length below its size: each must fail cleanly. */
Test(gguf, truncated_at_every_byte) {
    size_t n;
    uint8_t *p = make_valid(&n);
    gguf_t *g = NULL;
    cr_assert_eq(open_bytes(p, n, &g), 0, "%s", he_msg());
    unsigned ref = touch_all(g);
    cr_assert_neq(ref, 0);
    gguf_destroy(&g);
    for (size_t cut = 0; cut < n; cut++) {
        int rc = open_bytes(p, cut, &g);
        cr_assert(rc == HE_EFORMAT || rc == HE_ERANGE, "cut at %zu of %zu: rc %d (%s)", cut, n, rc,
                  he_msg());
        cr_assert_null(g);
    }
    free(p);
}

/* Random byte corruption of a valid file: open may succeed or fail, but must
 * never crash, and whatever it hands out must be readable. */
Test(gguf, random_corruption) {
    size_t n;
    uint8_t *p = make_valid(&n);
    uint8_t *q = malloc(n);
    uint64_t x = 0x9e3779b97f4a7c15ull;
    int ok = 0;
    for (int it = 0; it < 1500; it++) {
        memcpy(q, p, n);
        int flips = 1 + it % 4;
        for (int k = 0; k < flips; k++) {
            x ^= x << 13, x ^= x >> 7, x ^= x << 17;
            size_t at = (size_t)(x % 400 < n ? x % 400 : x % n); /* bias to the header */
            q[at] = (uint8_t)(x >> 24);
        }
        gguf_t *g = NULL;
        int rc = open_bytes(q, n, &g);
        if (rc == 0) {
            touch_all(g);
            ok++;
            gguf_destroy(&g);
        } else {
            cr_assert(rc == HE_EFORMAT || rc == HE_ERANGE || rc == HE_EUNSUPPORTED, "rc %d", rc);
        }
    }
    cr_assert_lt(ok, 1500, "corruption was never detected");
    free(q);
    free(p);
}

/* Every quantized type: the byte size per block, a row that is not a whole
 * number of blocks (typed EFORMAT naming the type) and a tensor cut short
 * (ERANGE), read back through gguf_open. */
Test(gguf, quantized_types) {
    static const struct { ggml_type t; int64_t blck; size_t bytes; const char *name; } q[] = {
        {GGML_T_Q4_0, 32, 18, "Q4_0"},   {GGML_T_Q4_1, 32, 20, "Q4_1"},   {GGML_T_Q5_0, 32, 22, "Q5_0"},
        {GGML_T_Q5_1, 32, 24, "Q5_1"},   {GGML_T_Q8_0, 32, 34, "Q8_0"},   {GGML_T_IQ4_NL, 32, 18, "IQ4_NL"},
        {GGML_T_Q2_K, 256, 84, "Q2_K"},  {GGML_T_Q3_K, 256, 110, "Q3_K"}, {GGML_T_Q4_K, 256, 144, "Q4_K"},
        {GGML_T_Q5_K, 256, 176, "Q5_K"}, {GGML_T_Q6_K, 256, 210, "Q6_K"},
    };
    for (size_t i = 0; i < sizeof q / sizeof q[0]; i++) {
        cr_assert(ggml_type_supported(q[i].t));
        cr_assert_eq(ggml_blck_size(q[i].t), q[i].blck);
        cr_assert_eq(ggml_type_size(q[i].t), q[i].bytes);
        cr_assert_str_eq(ggml_type_name(q[i].t), q[i].name);
        cr_assert_eq(ggml_row_size(q[i].t, 3 * q[i].blck), 3 * q[i].bytes);
        cr_assert_eq(ggml_row_size(q[i].t, 3 * q[i].blck + 16), 0);
        size_t bytes = 2 * 2 * q[i].bytes; /* (2 blocks, 2 rows) */
        bb b = {0};
        uint64_t ne[2] = {(uint64_t)(2 * q[i].blck), 2};
        one_tensor(&b, "blk.0.ffn_down.weight", 2, ne, q[i].t, 0, bytes);
        gguf_t *g = NULL;
        cr_assert_eq(open_bytes(b.p, b.n, &g), 0, "%s: %s", q[i].name, he_msg());
        cr_assert_eq(gguf_find_tensor(g, "blk.0.ffn_down.weight")->nbytes, bytes);
        gguf_destroy(&g);
        free(b.p);
        memset(&b, 0, sizeof b);
        one_tensor(&b, "blk.0.ffn_down.weight", 2, ne, q[i].t, 0, bytes - 1);
        expect_err(&b, HE_ERANGE, "past end of file");
        ne[0] = (uint64_t)(q[i].blck + 16);
        one_tensor(&b, "blk.0.ffn_down.weight", 2, ne, q[i].t, 0, bytes);
        expect_err(&b, HE_EFORMAT, q[i].name);
    }
}
