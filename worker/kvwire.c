/* kvwire: KV page element types and their conversions; see kvwire.h. The
 * scalar conversions are cpu_quant's (ggml's rounding). */
#include "kvwire.h"

#include <string.h>

#include "cpu_quant.h"
#include "herr.h"

bool kvw_valid(int t) { return t == KVW_F32 || t == KVW_F16 || t == KVW_BF16; }

size_t kvw_elem_bytes(int t) { return t == KVW_F32 ? 4 : (t == KVW_F16 || t == KVW_BF16) ? 2 : 0; }

const char *kvw_name(int t) { return t == KVW_F32 ? "f32" : t == KVW_F16 ? "f16" : t == KVW_BF16 ? "bf16" : "?"; }

int kvw_parse(const char *s, kvw_type *out) {
    if (!s) return he_set(HE_EINVAL, "no KV element type given");
    if (!strcmp(s, "f32") || !strcmp(s, "float32")) *out = KVW_F32;
    else if (!strcmp(s, "f16") || !strcmp(s, "float16")) *out = KVW_F16;
    else if (!strcmp(s, "bf16") || !strcmp(s, "bfloat16")) *out = KVW_BF16;
    else return he_set(HE_EINVAL, "unknown KV element type '%s' (f32, f16, bf16)", s);
    return 0;
}

size_t kvw_page_bytes(int t, size_t n_elems) { return kvw_elem_bytes(t) * n_elems; }

static inline float load_f(const void *src, int t, size_t i) {
    uint16_t h;
    switch (t) {
    case KVW_F16: memcpy(&h, (const uint8_t *)src + 2 * i, 2); return cq_f16_to_f32(h);
    case KVW_BF16: memcpy(&h, (const uint8_t *)src + 2 * i, 2); return cq_bf16_to_f32(h);
    default: {
        float f;
        memcpy(&f, (const uint8_t *)src + 4 * i, 4);
        return f;
    }
    }
}

int kvw_convert(const void *src, int st, void *dst, int dt, size_t n) {
    if (!kvw_valid(st) || !kvw_valid(dt))
        return he_set(HE_EINVAL, "KV conversion from type %d to type %d", st, dt);
    if (st == dt) {
        if (src != dst) memmove(dst, src, n * kvw_elem_bytes(st));
        return 0;
    }
    uint8_t *d = dst;
    for (size_t i = 0; i < n; i++) {
        float f = load_f(src, st, i);
        if (dt == KVW_F32) {
            memcpy(d + 4 * i, &f, 4);
        } else {
            uint16_t h = dt == KVW_F16 ? cq_f32_to_f16(f) : cq_f32_to_bf16(f);
            memcpy(d + 2 * i, &h, 2);
        }
    }
    return 0;
}
