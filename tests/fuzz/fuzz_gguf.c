/* fuzz_gguf: libFuzzer target for the GGUF reader (common/gguf.c) and for
 * the tokenizer built from a file's metadata (tok_new_from_gguf).
 *
 * The input is a whole GGUF file. After a successful gguf_open, every key is
 * read through every typed getter, every string array element and every
 * tensor descriptor is touched, and each tensor's data range is read end to
 * end: gguf.h promises all of it lies inside the mapping, so ASan reports any
 * broken promise. If the metadata describes a tokenizer, one is built and
 * made to encode and decode a fixed text; ids it returns must be in range.
 */
#include <string.h>

#include "fuzz_util.h"
#include "gguf.h"
#include "herr.h"
#include "tokenizer.h"

static void touch_kvs(const gguf_t *g) {
    int64_t n = gguf_n_kv(g);
    for (int64_t i = 0; i < n; i++) {
        const char *key = gguf_kv_key(g, i);
        fz_check(key != NULL, "key %lld is NULL", (long long)i);
        fz_check(gguf_find_key(g, key) >= 0, "key '%s' not found by name", key);
        uint32_t u32;
        int64_t i64;
        float f;
        bool b;
        const char *s;
        size_t len;
        (void)gguf_get_u32(g, key, &u32);
        (void)gguf_get_i64(g, key, &i64);
        (void)gguf_get_f32(g, key, &f);
        (void)gguf_get_bool(g, key, &b);
        if (gguf_get_str(g, key, &s, &len) && len) {
            volatile char sink = s[0] ^ s[len - 1];
            (void)sink;
        }
        gguf_vtype et;
        uint64_t an;
        const void *ad;
        if (gguf_get_arr(g, key, &et, &an, &ad) && et == GGUF_T_STRING) {
            for (uint64_t k = 0; k < an && k < 4096; k++) {
                fz_check(gguf_get_arr_str(g, key, k, &s, &len), "string %llu of '%s' unreadable",
                         (unsigned long long)k, key);
                if (len) {
                    volatile char sink = s[0] ^ s[len - 1];
                    (void)sink;
                }
            }
            fz_check(!gguf_get_arr_str(g, key, an, &s, &len), "string past the end of '%s' readable", key);
        }
    }
}

static void touch_tensors(const gguf_t *g) {
    int64_t n = gguf_n_tensors(g);
    for (int64_t i = 0; i < n; i++) {
        const gguf_tensor *t = gguf_tensor_at(g, i);
        fz_check(t && t->name, "tensor %lld missing", (long long)i);
        fz_check(gguf_find_tensor(g, t->name) != NULL, "tensor '%s' not found by name", t->name);
        fz_check(t->n_dims <= GGUF_MAX_DIMS, "tensor '%s' has %u dims", t->name, t->n_dims);
        const uint8_t *p = t->data;
        uint8_t x = 0;
        for (size_t k = 0; k < t->nbytes; k += 4096) x ^= p[k];
        if (t->nbytes) x ^= p[t->nbytes - 1];
        volatile uint8_t sink = x;
        (void)sink;
    }
}

static void try_tokenizer(const gguf_t *g) {
    tok_t *t = tok_new_from_gguf(g);
    if (!t) return;
    static const char text[] = "Hello, world! 123 <s> \xe2\x96\x81x\n\t  the end";
    int32_t ids[256];
    int n = tok_encode(t, text, sizeof text - 1, true, true, ids, 256);
    int32_t nv = tok_n_vocab(t);
    for (int i = 0; i < n && i < 256; i++) fz_check(ids[i] >= 0 && ids[i] < nv, "id %d of %d", ids[i], nv);
    char buf[64];
    for (int32_t id = 0; id < nv && id < 2048; id++) (void)tok_decode_piece(t, id, true, buf, (int)sizeof buf);
    fz_check(tok_decode_piece(t, nv, true, buf, (int)sizeof buf) < 0, "id n_vocab decoded");
    if (n > 0) free(tok_decode(t, ids, n < 256 ? n : 256, true));
    tok_destroy(&t);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    char path[64];
    int fd = fz_memfile(data, size, path, sizeof path);
    if (fd < 0) return 0;
    gguf_t *g = NULL;
    int rc = gguf_open(path, &g);
    close(fd);
    if (rc < 0) {
        fz_check(g == NULL, "handle returned with error %d", rc);
        fz_check(he_msg() && he_msg()[0], "error %d without a message", rc);
        return 0;
    }
    fz_check(gguf_file_size(g) == size, "size %zu != %zu", gguf_file_size(g), size);
    touch_kvs(g);
    touch_tensors(g);
    try_tokenizer(g);
    gguf_destroy(&g);
    fz_check(g == NULL, "destroy left the handle");
    return 0;
}
