/* cpu_quant: f16 / bf16 / q8_0 conversions, activation quantizers (q8_0,
 * q8_1, q8_K) and the run-time choice of dot kernels; see cpu_quant.h.
 *
 * Scalar code is the reference; F16C and AVX2 paths (compiled in when the
 * target has them) produce the same bits. The dot kernels themselves live in
 * quant_legacy.c, quant_k.c, quant_dot_avx2.c and quant_dot_avx512.c; this
 * file only picks among them by what __builtin_cpu_supports reports (once).
 */
#include "cpu_quant.h"

#include <cpuid.h>
#include <math.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "quant_kernels.h"

#if defined(__AVX2__) || defined(__F16C__)
#include <immintrin.h>
#endif

static inline uint32_t f2u(float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    return u;
}
static inline float u2f(uint32_t u) {
    float f;
    memcpy(&f, &u, 4);
    return f;
}

float cq_f16_to_f32(uint16_t h) {
#if defined(__F16C__)
    return _cvtsh_ss(h);
#else
    uint32_t sign = (uint32_t)(h & 0x8000) << 16;
    uint32_t exp = (h >> 10) & 0x1f, mant = h & 0x3ff;
    if (exp == 0) {
        float f = (float)mant * 5.9604644775390625e-8f; /* 2^-24 */
        return sign ? -f : f;
    }
    if (exp == 31) return u2f(sign | 0x7f800000u | (mant << 13));
    return u2f(sign | ((exp + 112) << 23) | (mant << 13));
#endif
}

uint16_t cq_f32_to_f16(float f) {
#if defined(__F16C__)
    return (uint16_t)_cvtss_sh(f, 0); /* round to nearest even */
#else
    uint32_t x = f2u(f);
    uint32_t sign = (x >> 16) & 0x8000;
    uint32_t ax = x & 0x7fffffffu;
    if (ax >= 0x7f800000u) /* inf / nan (quiet) */
        return (uint16_t)(sign | 0x7c00 | (ax > 0x7f800000u ? 0x200 | ((ax >> 13) & 0x3ff) : 0));
    if (ax >= 0x477ff000u) return (uint16_t)(sign | 0x7c00); /* rounds to inf */
    if (ax < 0x38800000u) {
        /* f16 subnormal or zero: let the FPU round by adding 0.5f, whose ulp
         * (2^-24) is the f16 subnormal step. */
        float a = u2f(ax) + 0.5f;
        return (uint16_t)(sign | (f2u(a) - 0x3f000000u));
    }
    uint32_t odd = (ax >> 13) & 1;
    ax += 0xc8000fffu + odd; /* rebias exponent (-112 << 23) and round */
    return (uint16_t)(sign | (ax >> 13));
#endif
}

float cq_bf16_to_f32(uint16_t h) { return u2f((uint32_t)h << 16); }

uint16_t cq_f32_to_bf16(float f) {
    uint32_t u = f2u(f);
    if ((u & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((u >> 16) | 64); /* quiet nan */
    return (uint16_t)((u + (0x7fffu + ((u >> 16) & 1))) >> 16);
}

void cq_dequant_row(ggml_type t, const void *src, float *dst, int64_t n) {
    switch (t) {
    case GGML_T_F32:
        memcpy(dst, src, (size_t)n * sizeof(float));
        break;
    case GGML_T_F16: {
        const uint16_t *s = src;
        int64_t i = 0;
#if defined(__F16C__) && defined(__AVX__)
        for (; i + 8 <= n; i += 8)
            _mm256_storeu_ps(dst + i, _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(s + i))));
#endif
        for (; i < n; i++) dst[i] = cq_f16_to_f32(s[i]);
        break;
    }
    case GGML_T_BF16: {
        const uint16_t *s = src;
        int64_t i = 0;
#if defined(__AVX2__)
        for (; i + 8 <= n; i += 8) {
            __m256i w = _mm256_cvtepu16_epi32(_mm_loadu_si128((const __m128i *)(s + i)));
            _mm256_storeu_ps(dst + i, _mm256_castsi256_ps(_mm256_slli_epi32(w, 16)));
        }
#endif
        for (; i < n; i++) dst[i] = cq_bf16_to_f32(s[i]);
        break;
    }
    case GGML_T_Q8_0: cq_dequant_q8_0(src, dst, n); break;
    case GGML_T_Q4_0: cq_dequant_q4_0(src, dst, n); break;
    case GGML_T_Q4_1: cq_dequant_q4_1(src, dst, n); break;
    case GGML_T_Q5_0: cq_dequant_q5_0(src, dst, n); break;
    case GGML_T_Q5_1: cq_dequant_q5_1(src, dst, n); break;
    case GGML_T_IQ4_NL: cq_dequant_iq4_nl(src, dst, n); break;
    case GGML_T_Q2_K: cq_dequant_q2_K(src, dst, n); break;
    case GGML_T_Q3_K: cq_dequant_q3_K(src, dst, n); break;
    case GGML_T_Q4_K: cq_dequant_q4_K(src, dst, n); break;
    case GGML_T_Q5_K: cq_dequant_q5_K(src, dst, n); break;
    case GGML_T_Q6_K: cq_dequant_q6_K(src, dst, n); break;
    case GGML_T_Q8_1: {
        const cq_block_q8_1 *b = src;
        for (int64_t k = 0; k < n / QK8_0; k++)
            for (int j = 0; j < QK8_0; j++) dst[k * QK8_0 + j] = (float)b[k].qs[j] * cq_f16_to_f32(b[k].d);
        break;
    }
    case GGML_T_Q8_K: {
        const cq_block_q8_K *b = src;
        for (int64_t k = 0; k < n / QK_K; k++)
            for (int j = 0; j < QK_K; j++) dst[k * QK_K + j] = (float)b[k].qs[j] * b[k].d;
        break;
    }
    default:
        break;
    }
}

/* One block of 32: scale d and quants q, as ggml's AVX2 quantize_row_q8_0. */
static inline float q8_block(const float *x, int8_t *q) {
#if defined(__AVX2__)
    const __m256 sign = _mm256_set1_ps(-0.0f);
    __m256 v0 = _mm256_loadu_ps(x), v1 = _mm256_loadu_ps(x + 8);
    __m256 v2 = _mm256_loadu_ps(x + 16), v3 = _mm256_loadu_ps(x + 24);
    __m256 m = _mm256_max_ps(_mm256_max_ps(_mm256_andnot_ps(sign, v0), _mm256_andnot_ps(sign, v1)),
                             _mm256_max_ps(_mm256_andnot_ps(sign, v2), _mm256_andnot_ps(sign, v3)));
    __m128 m4 = _mm_max_ps(_mm256_extractf128_ps(m, 1), _mm256_castps256_ps128(m));
    m4 = _mm_max_ps(m4, _mm_movehl_ps(m4, m4));
    m4 = _mm_max_ss(m4, _mm_movehdup_ps(m4));
    float amax = _mm_cvtss_f32(m4);
    float d = amax / 127.f;
    __m256 id = _mm256_set1_ps(amax != 0.0f ? 127.f / amax : 0.0f);
    __m256i i0 = _mm256_cvtps_epi32(_mm256_round_ps(_mm256_mul_ps(v0, id), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
    __m256i i1 = _mm256_cvtps_epi32(_mm256_round_ps(_mm256_mul_ps(v1, id), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
    __m256i i2 = _mm256_cvtps_epi32(_mm256_round_ps(_mm256_mul_ps(v2, id), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
    __m256i i3 = _mm256_cvtps_epi32(_mm256_round_ps(_mm256_mul_ps(v3, id), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
    /* pack 32-bit -> 16-bit -> 8-bit works within 128-bit lanes; fix the order after */
    __m256i p = _mm256_packs_epi16(_mm256_packs_epi32(i0, i1), _mm256_packs_epi32(i2, i3));
    p = _mm256_permutevar8x32_epi32(p, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
    _mm256_storeu_si256((__m256i *)q, p);
    return d;
#else
    float amax = 0.0f;
    for (int j = 0; j < QK8_0; j++) {
        float a = fabsf(x[j]);
        if (a > amax) amax = a;
    }
    float d = amax / 127.f;
    float id = amax != 0.0f ? 127.f / amax : 0.0f;
    for (int j = 0; j < QK8_0; j++) q[j] = (int8_t)nearbyintf(x[j] * id); /* default mode: half-even */
    return d;
#endif
}

void cq_quantize_row_q8_0(const float *x, cq_block_q8_0 *dst, int64_t n) {
    for (int64_t k = 0; k < n / QK8_0; k++) {
        int8_t q[QK8_0];
        float d = q8_block(x + k * QK8_0, q);
        dst[k].d = cq_f32_to_f16(d);
        memcpy(dst[k].qs, q, QK8_0);
    }
}

void cq_quantize_act_q8_0(const float *x, int8_t *qs, float *qd, int64_t n) {
    for (int64_t k = 0; k < n / QK8_0; k++) {
        float d = q8_block(x + k * QK8_0, qs + k * QK8_0);
        qd[k] = cq_f16_to_f32(cq_f32_to_f16(d));
    }
}

void cq_round_row(ggml_type t, const float *x, float *y, int64_t n) {
    int64_t i = 0;
    switch (t) {
    case GGML_T_F16:
#if defined(__F16C__) && defined(__AVX__)
        for (; i + 8 <= n; i += 8)
            _mm256_storeu_ps(y + i, _mm256_cvtph_ps(_mm256_cvtps_ph(_mm256_loadu_ps(x + i), 0)));
#endif
        for (; i < n; i++) y[i] = cq_f16_to_f32(cq_f32_to_f16(x[i]));
        break;
    case GGML_T_BF16:
        for (; i < n; i++) y[i] = cq_bf16_to_f32(cq_f32_to_bf16(x[i]));
        break;
    default:
        if (y != x) memmove(y, x, (size_t)n * sizeof(float));
        break;
    }
}

/* ------------------------------------------------------------------ q8_1, q8_K */

void cq_quantize_row_q8_1(const float *x, cq_block_q8_1 *dst, int64_t n) {
    for (int64_t k = 0; k < n / QK8_0; k++) {
        int8_t q[QK8_0];
        float d = q8_block(x + k * QK8_0, q);
        int32_t sum = 0;
        for (int j = 0; j < QK8_0; j++) sum += q[j];
        dst[k].d = cq_f32_to_f16(d);
        dst[k].s = cq_f32_to_f16(d * (float)sum);
        memcpy(dst[k].qs, q, QK8_0);
    }
}

/* As ggml's quantize_row_q8_K_ref: the scale comes from the element of
 * largest magnitude with its sign, iscale = -127 / max, q = min(127,
 * round-half-even(iscale * x)), d = 1 / iscale, and the sums of each 16. */
void cq_quantize_row_q8_K(const float *x, cq_block_q8_K *dst, int64_t n) {
    for (int64_t k = 0; k < n / QK_K; k++, x += QK_K) {
        float amax = 0.0f, max = 0.0f;
#if defined(__AVX2__)
        /* the largest magnitude, then the first element that has it (what
         * the scalar loop's strict > keeps) */
        const __m256 sign = _mm256_set1_ps(-0.0f);
        __m256 m8 = _mm256_setzero_ps();
        for (int j = 0; j < QK_K; j += 8) m8 = _mm256_max_ps(m8, _mm256_andnot_ps(sign, _mm256_loadu_ps(x + j)));
        __m128 m4 = _mm_max_ps(_mm256_extractf128_ps(m8, 1), _mm256_castps256_ps128(m8));
        m4 = _mm_max_ps(m4, _mm_movehl_ps(m4, m4));
        m4 = _mm_max_ss(m4, _mm_movehdup_ps(m4));
        amax = _mm_cvtss_f32(m4);
        for (int j = 0; j < QK_K; j++)
            if (fabsf(x[j]) == amax) {
                max = x[j];
                break;
            }
        if (isnan(amax)) amax = 0.0f; /* as the scalar loop, which never takes a NaN */
#else
        for (int j = 0; j < QK_K; j++) {
            float a = fabsf(x[j]);
            if (a > amax) {
                amax = a;
                max = x[j];
            }
        }
#endif
        cq_block_q8_K *b = &dst[k];
        if (amax == 0.0f) {
            memset(b, 0, sizeof *b);
            continue;
        }
        const float iscale = -127.f / max;
#if defined(__AVX2__)
        const __m256 is = _mm256_set1_ps(iscale), lim = _mm256_set1_ps(127.f);
        for (int j = 0; j < QK_K; j += 32) {
            __m256i i4[4];
            for (int u = 0; u < 4; u++) {
                __m256 v = _mm256_round_ps(_mm256_mul_ps(is, _mm256_loadu_ps(x + j + 8 * u)),
                                           _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
                i4[u] = _mm256_cvtps_epi32(_mm256_min_ps(v, lim));
            }
            __m256i p = _mm256_packs_epi16(_mm256_packs_epi32(i4[0], i4[1]), _mm256_packs_epi32(i4[2], i4[3]));
            p = _mm256_permutevar8x32_epi32(p, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
            _mm256_storeu_si256((__m256i *)(b->qs + j), p);
        }
#else
        for (int j = 0; j < QK_K; j++) {
            float v = nearbyintf(iscale * x[j]);
            b->qs[j] = (int8_t)(v > 127.f ? 127 : v);
        }
#endif
        for (int g = 0; g < QK_K / 16; g++) {
            int s = 0;
            for (int j = 0; j < 16; j++) s += b->qs[16 * g + j];
            b->bsums[g] = (int16_t)s;
        }
        b->d = 1.0f / iscale;
    }
}

/* ------------------------------------------------------------------ dispatch */

/* F16C from CPUID.1:ECX (clang 14, which builds the fuzzers, has no
 * has_f16c()) */
static bool has_f16c(void) {
    unsigned a, b, c, d;
    return __get_cpuid(1, &a, &b, &c, &d) && (c & bit_F16C);
}

static cq_level detect_level(void) {
    __builtin_cpu_init();
    cq_level l = CQ_SCALAR;
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && has_f16c()) {
        l = CQ_AVX2;
        if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
            __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512vnni"))
            l = CQ_AVX512;
    }
    const char *cap = getenv("HELIUM_CPU_LEVEL");
    if (cap) {
        cq_level c = !strcmp(cap, "scalar") ? CQ_SCALAR : !strcmp(cap, "avx2") ? CQ_AVX2 : CQ_AVX512;
        if (c < l) l = c;
    }
    return l;
}

cq_level cq_level_best(void) {
    static int level = -1; /* benign race: every thread computes the same value */
    int l = __atomic_load_n(&level, __ATOMIC_RELAXED);
    if (l < 0) {
        l = (int)detect_level();
        __atomic_store_n(&level, l, __ATOMIC_RELAXED);
    }
    return (cq_level)l;
}

const char *cq_level_name(cq_level l) {
    switch (l) {
    case CQ_SCALAR: return "scalar";
    case CQ_AVX2: return "avx2";
    case CQ_AVX512: return "avx512-vnni";
    default: return "unknown";
    }
}

bool cq_type_has_dot(ggml_type t) { return cq_dot(t, CQ_SCALAR) != NULL && t != GGML_T_Q8_0; }

ggml_type cq_dot_type(ggml_type t) {
    switch (t) {
    case GGML_T_Q4_1:
    case GGML_T_Q5_1: return GGML_T_Q8_1;
    case GGML_T_Q2_K:
    case GGML_T_Q3_K:
    case GGML_T_Q4_K:
    case GGML_T_Q5_K:
    case GGML_T_Q6_K: return GGML_T_Q8_K;
    default: return GGML_T_Q8_0;
    }
}

cq_dot_fn cq_dot(ggml_type t, cq_level l) {
#define CQ_CASE(name, type)                                                 \
    case type: {                                                            \
        cq_dot_fn k[CQ_N_LEVELS] = {cq_dot_##name##_scalar, cq_dot_##name##_avx2, \
                                    cq_dot_##name##_avx512};                \
        return k[l < CQ_N_LEVELS ? l : CQ_N_LEVELS - 1];                    \
    }
    switch (t) {
        CQ_DOT_TYPES(CQ_CASE)
    default: return NULL;
    }
#undef CQ_CASE
}

cq_tile_fn cq_tile(ggml_type t, cq_level l) {
#define CQ_CASE(name, type)                                                                \
    case type: {                                                                           \
        cq_tile_fn k[CQ_N_LEVELS] = {NULL, cq_tile_##name##_avx2, cq_tile_##name##_avx512}; \
        return k[l < CQ_N_LEVELS ? l : CQ_N_LEVELS - 1];                                   \
    }
    switch (t) {
        CQ_TILE_TYPES(CQ_CASE)
    default: return NULL;
    }
#undef CQ_CASE
}

size_t cq_act_row_bytes(ggml_type t, int64_t n) {
    ggml_type dt = cq_dot_type(t);
    size_t b = (ggml_row_size(dt, n) + 63) & ~(size_t)63;
    if (dt == GGML_T_Q8_0) b += (size_t)(n / 32) * sizeof(float);
    if (cq_act_corr_offset(t)) b += (size_t)(n / 4 + n / 32) * sizeof(int32_t);
    if (dt == GGML_T_Q8_1) b += (size_t)(n / 32) * 2 * sizeof(float);
    return (b + 63) & ~(size_t)63;
}

void cq_quantize_act_row(ggml_type t, const float *x, void *dst, int64_t n) {
    int64_t nb = n / 32;
    switch (cq_dot_type(t)) {
    case GGML_T_Q8_1: {
        cq_block_q8_1 *b = dst;
        cq_quantize_row_q8_1(x, b, n);
        float *d = (float *)cq_act_scales(dst, n, sizeof *b), *s = d + nb;
        for (int64_t k = 0; k < nb; k++) d[k] = cq_f16_to_f32(b[k].d), s[k] = cq_f16_to_f32(b[k].s);
        break;
    }
    case GGML_T_Q8_K: cq_quantize_row_q8_K(x, dst, n); break;
    default: {
        cq_block_q8_0 *b = dst;
        cq_quantize_row_q8_0(x, b, n);
        float *d = (float *)cq_act_scales(dst, n, sizeof *b);
        for (int64_t k = 0; k < nb; k++) d[k] = cq_f16_to_f32(b[k].d);
        const int o = cq_act_corr_offset(t);
        if (o) {
            int32_t *corr = (int32_t *)(d + nb), *boff = corr + n / 4;
            for (int64_t k = 0; k < nb; k++) {
                int32_t bs = 0;
                for (int l = 0; l < 8; l++) {
                    const int8_t *q = b[k].qs + 4 * l;
                    corr[8 * k + l] = -o * (q[0] + q[1] + q[2] + q[3]);
                    bs += corr[8 * k + l];
                }
                boff[k] = bs;
            }
        }
        break;
    }
    }
}
