/* wgen: seeded weights and F16 / BF16 / Q8_0 encoders (see wgen.h).
 *
 * Determinism argument: the random integers are exact; each float comes from one
 * exact int -> double conversion, one double multiply and one double -> float
 * rounding (wgen_near_one instead does exact integer math, an exact power-of-two
 * scale and one rounding). The encoders use integer bit operations, and Q8_0
 * uses one division, one multiply and roundf per value. None of these is open
 * to FMA contraction, so -march / -ffp-contract cannot change the output.
 */
#include "wgen.h"

#include <math.h>
#include <string.h>

#include "mkmap.h"

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "wgen writes tensors in host order and assumes a little-endian host"
#endif

void wgen_seed(wgen_rng *r, uint64_t seed, const char *stream) {
    rng_seed(r, seed ^ mkmap_hash(stream, strlen(stream)));
}

/* Sum of four 16-bit uniforms, centred: in [-131070, 131070], std ~ 65536/sqrt(3). */
static inline int64_t irwin_hall(wgen_rng *r) {
    uint64_t v = rng_next(r);
    int64_t s = (int64_t)(v & 0xFFFF) + (int64_t)((v >> 16) & 0xFFFF) + (int64_t)((v >> 32) & 0xFFFF) +
                (int64_t)(v >> 48);
    return s - 131070;
}

void wgen_normal(wgen_rng *r, float *x, size_t n, double std) {
    const double k = std * sqrt(3.0) / 65536.0;
    for (size_t i = 0; i < n; i++)
        x[i] = (float)((double)irwin_hall(r) * k);
}

void wgen_near_one(wgen_rng *r, float *x, size_t n) {
    /* (2^30 + 1419 * s) / 2^30: std of the noise = 1419 * 37837 / 2^30 ~ 0.05 */
    const double inv = 1.0 / 1073741824.0;
    for (size_t i = 0; i < n; i++)
        x[i] = (float)((double)(1073741824LL + 1419 * irwin_hall(r)) * inv);
}

static inline uint32_t f32_bits(float f) {
    uint32_t u;
    memcpy(&u, &f, sizeof u);
    return u;
}

uint16_t wgen_f16(float f) {
    uint32_t x = f32_bits(f);
    uint16_t sign = (uint16_t)((x >> 16) & 0x8000);
    uint32_t e = (x >> 23) & 0xFF, m = x & 0x7FFFFF;
    if (e == 0xFF) /* inf, or NaN with the quiet bit forced on */
        return (uint16_t)(sign | 0x7C00 | (m ? 0x200 | (m >> 13) : 0));
    int32_t he = (int32_t)e - 127 + 15;
    if (he >= 0x1F)
        return (uint16_t)(sign | 0x7C00);
    if (he <= 0) { /* f16 subnormal (or zero): value / 2^-24, rounded */
        if (e == 0)
            return sign; /* f32 zero or subnormal: far below f16's range */
        uint32_t mf = m | 0x800000;
        uint32_t sh = (uint32_t)(126 - (int32_t)e); /* >= 14 */
        if (sh > 24)
            return sign;
        uint32_t q = mf >> sh, rem = mf & ((1u << sh) - 1), half = 1u << (sh - 1);
        if (rem > half || (rem == half && (q & 1)))
            q++;
        return (uint16_t)(sign | q);
    }
    uint32_t q = ((uint32_t)he << 10) | (m >> 13), rem = m & 0x1FFF;
    if (rem > 0x1000 || (rem == 0x1000 && (q & 1)))
        q++; /* may carry into the exponent, up to inf: both correct */
    return (uint16_t)(sign | q);
}

uint16_t wgen_bf16(float f) {
    uint32_t x = f32_bits(f);
    if ((x & 0x7FFFFFFF) > 0x7F800000)
        return (uint16_t)((x >> 16) | 0x40);
    return (uint16_t)((x + 0x7FFF + ((x >> 16) & 1)) >> 16);
}

float wgen_f16_to_f32(uint16_t h) {
    uint32_t sign = (uint32_t)(h & 0x8000) << 16, e = (h >> 10) & 0x1F, m = h & 0x3FF, x;
    if (e == 0x1F) {
        x = sign | 0x7F800000 | (m << 13);
    } else if (e == 0) {
        if (m == 0) {
            x = sign;
        } else { /* normalize the subnormal */
            e = 113;
            while (!(m & 0x400)) {
                m <<= 1;
                e--;
            }
            x = sign | (e << 23) | ((m & 0x3FF) << 13);
        }
    } else {
        x = sign | ((e + 112) << 23) | (m << 13);
    }
    float f;
    memcpy(&f, &x, sizeof f);
    return f;
}

size_t wgen_encode(ggml_type t, const float *x, size_t n, void *out) {
    switch (t) {
    case GGML_T_F32:
        memcpy(out, x, n * sizeof *x);
        return n * sizeof *x;
    case GGML_T_F16: {
        uint16_t *o = out;
        for (size_t i = 0; i < n; i++)
            o[i] = wgen_f16(x[i]);
        return n * 2;
    }
    case GGML_T_BF16: {
        uint16_t *o = out;
        for (size_t i = 0; i < n; i++)
            o[i] = wgen_bf16(x[i]);
        return n * 2;
    }
    case GGML_T_Q8_0: {
        if (n % QK8_0)
            return 0;
        uint8_t *o = out;
        for (size_t b = 0; b < n / QK8_0; b++) {
            const float *v = x + b * QK8_0;
            float amax = 0.0f;
            for (int j = 0; j < QK8_0; j++)
                amax = fmaxf(amax, fabsf(v[j]));
            float d = amax / 127.0f;
            float id = d != 0.0f ? 1.0f / d : 0.0f;
            uint16_t dh = wgen_f16(d);
            uint8_t *blk = o + b * (2 + QK8_0);
            memcpy(blk, &dh, 2);
            for (int j = 0; j < QK8_0; j++)
                blk[2 + j] = (uint8_t)(int8_t)roundf(v[j] * id);
        }
        return n / QK8_0 * (2 + QK8_0);
    }
    default: /* other types are written by llama.cpp's quantizer from an F32 model */
        return 0;
    }
}
