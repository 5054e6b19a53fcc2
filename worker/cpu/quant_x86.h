/* quant_x86: x86 SIMD helpers shared by quant_dot_avx2.c and
 * quant_dot_avx512.c (internal). Every function carries the AVX2 target
 * attribute, so it inlines into AVX2 and AVX-512 callers alike and needs no
 * -mavx2 on the command line. Include only from those two files.
 */
#ifndef HELIUM_QUANT_X86_H
#define HELIUM_QUANT_X86_H

#include <immintrin.h>
#include <math.h>
#include <string.h>

#include "quant_kernels.h"

#define TGT __attribute__((target("avx2,fma,f16c")))

static inline TGT float hsum8(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_extractf128_ps(v, 1), _mm256_castps256_ps128(v));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

static inline TGT int32_t hsum_i32(__m256i v) {
    __m128i s = _mm_add_epi32(_mm256_extracti128_si256(v, 1), _mm256_castsi256_si128(v));
    s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0x4e));
    s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0xb1));
    return _mm_cvtsi128_si32(s);
}

static inline TGT float h2f(uint16_t h) { return _cvtsh_ss(h); }

/* 16 bytes of nibbles -> 32 bytes: low nibbles first, then high nibbles. */
static inline TGT __m256i nib32(const uint8_t *q) {
    __m128i t = _mm_loadu_si128((const __m128i *)q);
    __m256i v = _mm256_set_m128i(_mm_srli_epi16(t, 4), t);
    return _mm256_and_si256(v, _mm256_set1_epi8(0x0F));
}

/* Bit i of the little-endian u32 at p -> byte i: 0x10 if set, else 0. */
static inline TGT __m256i bits32_x10(const uint8_t *p) {
    uint32_t x;
    memcpy(&x, p, 4);
    const __m256i shuf = _mm256_setr_epi64x(0, 0x0101010101010101LL, 0x0202020202020202LL, 0x0303030303030303LL);
    const __m256i m = _mm256_set1_epi64x((long long)0x8040201008040201ULL);
    __m256i v = _mm256_and_si256(_mm256_shuffle_epi8(_mm256_set1_epi32((int)x), shuf), m);
    return _mm256_and_si256(_mm256_cmpeq_epi8(v, m), _mm256_set1_epi8(0x10));
}

/* 8 int32 lanes, lane l = sum of w[i] * x[i] for i in 4l..4l+3. */
static inline TGT __m256i lanes_u(__m256i w, __m256i x) {
    return _mm256_madd_epi16(_mm256_maddubs_epi16(w, x), _mm256_set1_epi16(1));
}
static inline TGT __m256i lanes_s(__m256i w, __m256i x) {
    return lanes_u(_mm256_sign_epi8(w, w), _mm256_sign_epi8(x, w));
}

static inline TGT __m256i unpack_q4_0(const cq_block_q4_0 *b) {
    return _mm256_sub_epi8(nib32(b->qs), _mm256_set1_epi8(8));
}
static inline TGT __m256i unpack_q4_1(const cq_block_q4_1 *b) { return nib32(b->qs); }
static inline TGT __m256i unpack_q5_0(const cq_block_q5_0 *b) {
    return _mm256_sub_epi8(_mm256_or_si256(nib32(b->qs), bits32_x10(b->qh)), _mm256_set1_epi8(16));
}
static inline TGT __m256i unpack_q5_1(const cq_block_q5_1 *b) {
    return _mm256_or_si256(nib32(b->qs), bits32_x10(b->qh));
}
static inline TGT __m256i unpack_q8_0(const cq_block_q8_0 *b) {
    return _mm256_loadu_si256((const __m256i *)b->qs);
}
static inline TGT __m256i unpack_iq4_nl(const cq_block_iq4_nl *b) {
    const __m128i t = _mm_loadu_si128((const __m128i *)cq_iq4nl_values);
    return _mm256_shuffle_epi8(_mm256_set_m128i(t, t), nib32(b->qs));
}

/* The q8_1 min term's operands: m of a Q4_1 / Q5_1 block, s of a q8_1 block
 * (0 for the other types, whose dots never use it). */
static inline uint16_t m_of(const void *b, ggml_type t) {
    return t == GGML_T_Q4_1 ? ((const cq_block_q4_1 *)b)->m
         : t == GGML_T_Q5_1 ? ((const cq_block_q5_1 *)b)->m : 0;
}

/* A legacy dot named cq_dot_<name>_<SUF> with target ATTR: LANES is the lane
 * product (lanes_s / lanes_u or a VNNI twin), whose 8 int32 lanes are summed
 * to the block's exact total; with HAS_M the q8_1 min term. */
#define LEGACY_DOT(name, T, WT, XT, LANES, HAS_M, SUF, ATTR)                             \
    ATTR float cq_dot_##name##_##SUF(const void *vw, const void *vx, int64_t n) {       \
        const WT *w = vw;                                                                \
        const XT *x = vx;                                                                \
        float acc = 0.0f, summ = 0.0f;                                                   \
        for (int64_t k = 0; k < n / 32; k++) {                                           \
            __m256i p = LANES(unpack_##name(&w[k]), _mm256_loadu_si256((const __m256i *)x[k].qs)); \
            acc = fmaf(h2f(w[k].d) * h2f(x[k].d), (float)hsum_i32(p), acc);              \
            if (HAS_M) summ = fmaf(h2f(m_of(&w[k], T)), h2f(((const cq_block_q8_1 *)&x[k])->s), summ); \
        }                                                                                \
        return HAS_M ? acc + summ : acc;                                                 \
    }

/* The same dot for CQ_TILE activation rows at once (x, x + xs, ...): each
 * weight block is unpacked once, and the rows' chains are independent, so
 * every out[c] has the bits of the single dot of row c. */
#define LEGACY_TILE(name, T, WT, XT, LANES, HAS_M, SUF, ATTR)                            \
    ATTR void cq_tile_##name##_##SUF(const void *vw, const void *vx, size_t xs, int64_t n, float *out) { \
        const WT *w = vw;                                                                \
        const XT *x[CQ_TILE];                                                            \
        const float *xd[CQ_TILE], *xsum[CQ_TILE];                                        \
        float acc[CQ_TILE], summ[CQ_TILE];                                               \
        _Pragma("GCC unroll 4") for (int c = 0; c < CQ_TILE; c++) {                      \
            x[c] = (const XT *)((const char *)vx + (size_t)c * xs);                      \
            xd[c] = cq_act_scales(x[c], n, sizeof(XT));                                  \
            xsum[c] = xd[c] + n / 32;                                                    \
            acc[c] = 0.0f;                                                               \
            summ[c] = 0.0f;                                                              \
        }                                                                                \
        for (int64_t k = 0; k < n / 32; k++) {                                           \
            const __m256i q = unpack_##name(&w[k]);                                      \
            const float dw = h2f(w[k].d);                                                \
            const float mw = HAS_M ? h2f(m_of(&w[k], T)) : 0.0f;                         \
            _Pragma("GCC unroll 4") for (int c = 0; c < CQ_TILE; c++) {                  \
                __m256i p = LANES(q, _mm256_loadu_si256((const __m256i *)x[c][k].qs));   \
                acc[c] = fmaf(dw * xd[c][k], (float)hsum_i32(p), acc[c]);                \
                if (HAS_M) summ[c] = fmaf(mw, xsum[c][k], summ[c]);                      \
            }                                                                            \
        }                                                                                \
        _Pragma("GCC unroll 4") for (int c = 0; c < CQ_TILE; c++)                        \
            out[c] = HAS_M ? acc[c] + summ[c] : acc[c];                                  \
    }

/* 16 int16 scales: the low 8 lanes (elements 0..15 of a 32-group) get a, the
 * high 8 get b. */
static inline TGT __m256i sc2(int a, int b) {
    return _mm256_set_m128i(_mm_set1_epi16((short)b), _mm_set1_epi16((short)a));
}

/* sum over a 32-group of q * x, each half of 16 scaled by its scale. */
static inline TGT __m256i group(__m256i q, const int8_t *x, __m256i scales) {
    return _mm256_madd_epi16(_mm256_maddubs_epi16(q, _mm256_loadu_si256((const __m256i *)x)), scales);
}

#endif
