/* cpu_ops_impl: PRIVATE to the CPU kernels (cpu_ops.c: context, activations,
 * matmul; cpu_layer_ops.c: norms, SwiGLU, RoPE, KV store, attention). Nothing
 * else includes it; the contract is cpu_ops.h.
 *
 * Holds the SIMD feature switches, struct cpu_ctx (per-thread scratch and
 * shared tables, which grow only outside a parallel region), the scratch
 * allocators and the small math helpers both files use. The helpers are
 * static inline with one definition here, so both files compute bit for bit
 * the same (madd's fused or unfused form is fixed by the target, not by
 * where it is inlined).
 */
#ifndef HELIUM_CPU_OPS_IMPL_H
#define HELIUM_CPU_OPS_IMPL_H

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "cpu_ops.h"
#include "herr.h"

#if defined(__AVX2__) && defined(__FMA__) && defined(__F16C__)
#define CPU_SIMD 1
#include <immintrin.h>
#else
#define CPU_SIMD 0
#endif
/* 256-bit VNNI (vpdpbusd): q8_0 dots without the sign trick */
#if CPU_SIMD && defined(__AVX512VNNI__) && defined(__AVX512VL__)
#define CPU_VNNI 1
#else
#define CPU_VNNI 0
#endif

struct cpu_ctx {
    int nth;
    int64_t gemm_min;          /* sgemm path from this batch size; 0: never */
    bool scalar;               /* force the portable scalar kernels */
    float **tile;              /* (nth) per-thread scratch, tile_cap floats each */
    size_t tile_cap;
    float **scores;            /* (nth) per-thread attention scores, scores_cap floats */
    size_t scores_cap;
    float *attn;               /* attention item table and partials, attn_cap floats */
    size_t attn_cap;
    float *rope;               /* (rope_n, rope_dim) cos/sin pairs */
    size_t rope_cap;
    int64_t rope_n;
    int rope_dim;
};

/* ------------------------------------------------------------------ memory */

static inline void *alloc64(size_t bytes) {
    void *p = NULL;
    if (bytes == 0) bytes = 64;
    if (posix_memalign(&p, 64, (bytes + 63) & ~(size_t)63) != 0) return NULL;
    return p;
}

/* Grows each of nth buffers to at least need elements of elem bytes. */
static inline int grow_each(void **bufs, int nth, size_t *cap, size_t need, size_t elem) {
    if (need <= *cap) return 0;
    size_t ncap = need + need / 4;
    for (int t = 0; t < nth; t++) {
        void *p = alloc64(ncap * elem);
        if (!p) return he_set(HE_ENOMEM, "cpu: cannot allocate %zu bytes of scratch", ncap * elem);
        free(bufs[t]);
        bufs[t] = p;
    }
    *cap = ncap;
    return 0;
}

static inline int grow_one(void **buf, size_t *cap, size_t need, size_t elem) {
    return grow_each(buf, 1, cap, need, elem);
}

/* ------------------------------------------------------------------ helpers */

/* a * b + c, fused where the target has FMA. Spelled out because gcc's default
 * -ffp-contract=fast fuses a * b + c in some inlined copies of a loop and not
 * in others, which would break batch invariance. */
static inline float madd(float a, float b, float c) {
#if defined(FP_FAST_FMAF)
    return fmaf(a, b, c);
#else
    return a * b + c;
#endif
}

#if CPU_SIMD
static inline float hsum8(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_extractf128_ps(v, 1), _mm256_castps256_ps128(v));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

static inline int32_t hsum_i32(__m256i v) {
    __m128i s = _mm_add_epi32(_mm256_extracti128_si256(v, 1), _mm256_castsi256_si128(v));
    s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0x4e));
    s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0xb1));
    return _mm_cvtsi128_si32(s);
}

/* e^x for 8 lanes: Cephes-style range reduction and degree-6 polynomial,
 * about 1 ulp; inputs are clamped to [-88.38, 88.38]. */
static inline __m256 exp8(__m256 x) {
    x = _mm256_min_ps(_mm256_max_ps(x, _mm256_set1_ps(-88.3762626647949f)),
                      _mm256_set1_ps(88.3762626647949f));
    __m256 fx = _mm256_round_ps(_mm256_mul_ps(x, _mm256_set1_ps(1.44269504088896341f)),
                                _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m256 r = _mm256_fnmadd_ps(fx, _mm256_set1_ps(0.693359375f), x);
    r = _mm256_fnmadd_ps(fx, _mm256_set1_ps(-2.12194440e-4f), r);
    __m256 y = _mm256_set1_ps(1.9875691500e-4f);
    y = _mm256_fmadd_ps(y, r, _mm256_set1_ps(1.3981999507e-3f));
    y = _mm256_fmadd_ps(y, r, _mm256_set1_ps(8.3334519073e-3f));
    y = _mm256_fmadd_ps(y, r, _mm256_set1_ps(4.1665795894e-2f));
    y = _mm256_fmadd_ps(y, r, _mm256_set1_ps(1.6666665459e-1f));
    y = _mm256_fmadd_ps(y, r, _mm256_set1_ps(5.0000001201e-1f));
    y = _mm256_fmadd_ps(y, _mm256_mul_ps(r, r), _mm256_add_ps(r, _mm256_set1_ps(1.0f)));
    __m256i e = _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(fx), _mm256_set1_epi32(127)), 23);
    return _mm256_mul_ps(y, _mm256_castsi256_ps(e));
}
#endif

static inline float dotf(const float *a, const float *b, int64_t n) {
    int64_t i = 0;
    float s = 0.0f;
#if CPU_SIMD
    __m256 s0 = _mm256_setzero_ps(), s1 = _mm256_setzero_ps();
    for (; i + 16 <= n; i += 16) {
        s0 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i), s0);
        s1 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i + 8), _mm256_loadu_ps(b + i + 8), s1);
    }
    for (; i + 8 <= n; i += 8) s0 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i), s0);
    s = hsum8(_mm256_add_ps(s0, s1));
#endif
    for (; i < n; i++) s = madd(a[i], b[i], s);
    return s;
}

/* y (n) += a * x (n) */
static inline void axpyf(float *y, float a, const float *x, int64_t n) {
    int64_t i = 0;
#if CPU_SIMD
    __m256 av = _mm256_set1_ps(a);
    for (; i + 8 <= n; i += 8)
        _mm256_storeu_ps(y + i, _mm256_fmadd_ps(av, _mm256_loadu_ps(x + i), _mm256_loadu_ps(y + i)));
#endif
    for (; i < n; i++) y[i] = madd(a, x[i], y[i]);
}
#endif /* HELIUM_CPU_OPS_IMPL_H */
