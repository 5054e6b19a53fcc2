/* quant_rp_avx512: the GEMM kernels on repacked weights (cpu_quant.h,
 * cq_rp_*), AVX-512 VNNI, compiled with target attributes like
 * quant_dot_avx512.c.
 *
 * One call: one group of 16 weight rows against nc (1..4) activation rows,
 * all blocks. Per block the group's quants become 8 vectors of 16 rows x 4
 * bytes (unsigned: the 4-bit nibbles, plus 16 where a 5-bit type's mask bit
 * is set, or Q8_0's q + 128), and each activation row's block total per
 * weight row is 8 vpdpbusd with the row's 4 quants broadcast, started from
 * the activation's -o * (block quant sum) for the offset types: exactly
 * sum (w - o) x, in int32. Lanes are rows, so the f32 chain of each output is
 * the scalar one: acc = fma(dw * dx, (float)total, acc) block after block
 * (and for Q4_1 / Q5_1 summ = fma(m, s, summ), added at the end): the bits of
 * cq_dot, whatever nc.
 */
#include <immintrin.h>
#include <string.h>

#include "quant_kernels.h"

#define TGT512 __attribute__((target("avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")))

enum { RP_Q4_0, RP_Q4_1, RP_Q5_0, RP_Q5_1, RP_Q8_0 };

/* Software prefetch distance for one activation row (decode), bytes ahead
 * of the block being read (the next group follows the current one). */
#ifndef RP_PF_BYTES
#define RP_PF_BYTES 4096
#endif

static inline TGT512 __m512i bcast4(const int8_t *p) {
    int32_t v;
    memcpy(&v, p, 4);
    return _mm512_set1_epi32(v);
}

static inline TGT512 __attribute__((always_inline)) void rp_run(const uint8_t *grp, int64_t n,
                                                               const cq_xrows *x, const int NC,
                                                               const int kind, float *out) {
    const bool has_m = kind == RP_Q4_1 || kind == RP_Q5_1;
    const bool q5 = kind == RP_Q5_0 || kind == RP_Q5_1, q8 = kind == RP_Q8_0;
    const bool has_off = kind == RP_Q4_0 || kind == RP_Q5_0 || kind == RP_Q8_0;
    const size_t gb = 32 + (has_m ? 32 : 0) + (q8 ? 512 : 256) + (q5 ? 64 : 0);
    const int64_t nb = n / 32;
    const __m512i m4 = _mm512_set1_epi8(0x0F), b16 = _mm512_set1_epi8(0x10);
    __m512 acc[4], summ[4];
    const int8_t *xq[4];
    const float *xd[4], *xs[4];
    const int32_t *xo[4];
#pragma GCC unroll 4
    for (int c = 0; c < NC; c++) {
        acc[c] = _mm512_setzero_ps();
        summ[c] = _mm512_setzero_ps();
        xq[c] = x->qs + (size_t)c * x->qs_row;
        xd[c] = (const float *)((const char *)x->d + (size_t)c * x->m_row);
        xs[c] = has_m ? (const float *)((const char *)x->s + (size_t)c * x->m_row) : NULL;
        xo[c] = has_off ? (const int32_t *)((const char *)x->off + (size_t)c * x->m_row) : NULL;
    }
    for (int64_t k = 0; k < nb; k++) {
        const uint8_t *b = grp + (size_t)k * gb;
        if (NC == 1) /* decode streams the weights once: ask for them early */
            for (size_t l = 0; l < gb; l += 64) _mm_prefetch((const char *)b + RP_PF_BYTES + l, _MM_HINT_T0);
        const __m512 dw = _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)b));
        const uint8_t *q = b + (has_m ? 64 : 32);
        __m512i v[8];
        if (q8) {
#pragma GCC unroll 8
            for (int j = 0; j < 8; j++) v[j] = _mm512_loadu_si512((const void *)(q + 64 * j));
        } else {
#pragma GCC unroll 4
            for (int j = 0; j < 4; j++) {
                const __m512i w = _mm512_loadu_si512((const void *)(q + 64 * j));
                v[j] = _mm512_and_si512(w, m4);
                v[4 + j] = _mm512_and_si512(_mm512_srli_epi16(w, 4), m4);
            }
            if (q5)
#pragma GCC unroll 8
                for (int j = 0; j < 8; j++) {
                    uint64_t mk;
                    memcpy(&mk, q + 256 + 8 * j, 8);
                    v[j] = _mm512_mask_add_epi8(v[j], _cvtu64_mask64(mk), v[j], b16);
                }
        }
#pragma GCC unroll 4
        for (int c = 0; c < NC; c++) {
            const int8_t *xb = xq[c] + (size_t)k * x->qs_blk;
            __m512i s0 = has_off ? _mm512_set1_epi32(xo[c][k]) : _mm512_setzero_si512();
            __m512i s1 = _mm512_setzero_si512();
#pragma GCC unroll 4
            for (int j = 0; j < 8; j += 2) {
                s0 = _mm512_dpbusd_epi32(s0, v[j], bcast4(xb + 4 * j));
                s1 = _mm512_dpbusd_epi32(s1, v[j + 1], bcast4(xb + 4 * j + 4));
            }
            const __m512 d = _mm512_mul_ps(dw, _mm512_set1_ps(xd[c][k]));
            acc[c] = _mm512_fmadd_ps(d, _mm512_cvtepi32_ps(_mm512_add_epi32(s0, s1)), acc[c]);
            if (has_m)
                summ[c] = _mm512_fmadd_ps(_mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(b + 32))),
                                          _mm512_set1_ps(xs[c][k]), summ[c]);
        }
    }
#pragma GCC unroll 4
    for (int c = 0; c < NC; c++)
        _mm512_storeu_ps(out + 16 * c, has_m ? _mm512_add_ps(acc[c], summ[c]) : acc[c]);
}

#define RP_KERNEL(name, KIND)                                                                     \
    TGT512 void cq_rp_##name##_avx512(const void *grp, int64_t n, const cq_xrows *x, int nc, float *out) { \
        switch (nc) {                                                                             \
        case 1: rp_run(grp, n, x, 1, KIND, out); break;                                           \
        case 2: rp_run(grp, n, x, 2, KIND, out); break;                                           \
        case 3: rp_run(grp, n, x, 3, KIND, out); break;                                           \
        default: rp_run(grp, n, x, 4, KIND, out); break;                                          \
        }                                                                                         \
    }
RP_KERNEL(q4_0, RP_Q4_0)
RP_KERNEL(q4_1, RP_Q4_1)
RP_KERNEL(q5_0, RP_Q5_0)
RP_KERNEL(q5_1, RP_Q5_1)
RP_KERNEL(q8_0, RP_Q8_0)

/* ------------------------------------------------------------------ K-quants
 * Q4_K and Q6_K groups (cpu_quant.h): per super-block, each sub-block's
 * per-row integer dot (8 or 4 vpdpbusd) is multiplied by the rows' scales
 * (vpmulld) and summed: the exact int32 total of the dot contract; the min /
 * offset totals come from vpdpwssd on the rows' scale pairs and the
 * activation's 16-element sums. Lanes are rows; f32 chains as cq_dot's. */

/* The q8_K block k of activation row c (x->qs points at row 0's first qs). */
static inline const cq_block_q8_K *xk_block(const cq_xrows *x, int c, int64_t k) {
    return (const cq_block_q8_K *)(x->qs + (size_t)c * x->qs_row - 4) + k;
}

static inline TGT512 __attribute__((always_inline)) void rp_q4_K_run(const uint8_t *grp, int64_t n,
                                                                    const cq_xrows *x, const int NC,
                                                                    float *out) {
    const size_t gb = 2368;
    const __m512i m4 = _mm512_set1_epi8(0x0F);
    __m512 acc[4], accm[4];
#pragma GCC unroll 4
    for (int c = 0; c < NC; c++) acc[c] = accm[c] = _mm512_setzero_ps();
    for (int64_t k = 0; k < n / QK_K; k++) {
        const uint8_t *b = grp + (size_t)k * gb;
        if (NC == 1)
            for (size_t l = 0; l < gb; l += 64) _mm_prefetch((const char *)b + RP_PF_BYTES + l, _MM_HINT_T0);
        const uint8_t *sc = b + 64, *mn = b + 192, *qs = b + 320;
        const cq_block_q8_K *xb[4];
        __m512i isum[4], imin[4];
#pragma GCC unroll 4
        for (int c = 0; c < NC; c++) {
            xb[c] = xk_block(x, c, k);
            isum[c] = imin[c] = _mm512_setzero_si512();
        }
        for (int j = 0; j < 8; j++) {
            const uint8_t *q = qs + 512 * (j / 2);
            __m512i v[8];
#pragma GCC unroll 8
            for (int i = 0; i < 8; i++) {
                __m512i w = _mm512_loadu_si512((const void *)(q + 64 * i));
                v[i] = _mm512_and_si512(j & 1 ? _mm512_srli_epi16(w, 4) : w, m4);
            }
            const __m512i scv = _mm512_cvtepu8_epi32(_mm_loadu_si128((const __m128i *)(sc + 16 * j)));
#pragma GCC unroll 4
            for (int c = 0; c < NC; c++) {
                const int8_t *xq = xb[c]->qs + 32 * j;
                __m512i s0 = _mm512_setzero_si512(), s1 = _mm512_setzero_si512();
#pragma GCC unroll 4
                for (int i = 0; i < 8; i += 2) {
                    s0 = _mm512_dpbusd_epi32(s0, v[i], bcast4(xq + 4 * i));
                    s1 = _mm512_dpbusd_epi32(s1, v[i + 1], bcast4(xq + 4 * i + 4));
                }
                isum[c] = _mm512_add_epi32(isum[c], _mm512_mullo_epi32(_mm512_add_epi32(s0, s1), scv));
            }
        }
        const __m512 d = _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)b));
        const __m512 dmin = _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(b + 32)));
#pragma GCC unroll 4
        for (int c = 0; c < NC; c++) {
            /* the 32-element sums of the activation as int16 pairs (2p, 2p+1) */
            const __m256i bs = _mm256_loadu_si256((const __m256i *)xb[c]->bsums);
            const __m256i s32 = _mm256_madd_epi16(bs, _mm256_set1_epi16(1));
            int16_t pr[8];
            _mm_storeu_si128((__m128i *)pr, _mm_packs_epi32(_mm256_castsi256_si128(s32), _mm256_extracti128_si256(s32, 1)));
#pragma GCC unroll 4
            for (int p = 0; p < 4; p++)
                imin[c] = _mm512_dpwssd_epi32(imin[c], _mm512_cvtepu8_epi16(_mm256_loadu_si256((const __m256i *)(mn + 32 * p))),
                                              bcast4((const int8_t *)(pr + 2 * p)));
            const __m512 xd = _mm512_set1_ps(xb[c]->d);
            acc[c] = _mm512_fmadd_ps(_mm512_mul_ps(d, xd), _mm512_cvtepi32_ps(isum[c]), acc[c]);
            accm[c] = _mm512_fmadd_ps(_mm512_mul_ps(dmin, xd), _mm512_cvtepi32_ps(imin[c]), accm[c]);
        }
    }
#pragma GCC unroll 4
    for (int c = 0; c < NC; c++) _mm512_storeu_ps(out + 16 * c, _mm512_sub_ps(acc[c], accm[c]));
}

static inline TGT512 __attribute__((always_inline)) void rp_q6_K_run(const uint8_t *grp, int64_t n,
                                                                    const cq_xrows *x, const int NC,
                                                                    float *out) {
    const size_t gb = 4640;
    __m512 acc[4];
#pragma GCC unroll 4
    for (int c = 0; c < NC; c++) acc[c] = _mm512_setzero_ps();
    for (int64_t k = 0; k < n / QK_K; k++) {
        const uint8_t *b = grp + (size_t)k * gb;
        if (NC == 1)
            for (size_t l = 0; l < gb; l += 64) _mm_prefetch((const char *)b + RP_PF_BYTES + l, _MM_HINT_T0);
        const uint8_t *sc = b + 32, *sp = b + 288, *qs = b + 544;
        const cq_block_q8_K *xb[4];
        __m512i isum[4], off[4];
#pragma GCC unroll 4
        for (int c = 0; c < NC; c++) {
            xb[c] = xk_block(x, c, k);
            isum[c] = off[c] = _mm512_setzero_si512();
        }
        for (int g = 0; g < 16; g++) {
            __m512i v[4];
#pragma GCC unroll 4
            for (int i = 0; i < 4; i++) v[i] = _mm512_loadu_si512((const void *)(qs + 256 * g + 64 * i));
            const __m512i scv = _mm512_cvtepi8_epi32(_mm_loadu_si128((const __m128i *)(sc + 16 * g)));
#pragma GCC unroll 4
            for (int c = 0; c < NC; c++) {
                const int8_t *xq = xb[c]->qs + 16 * g;
                __m512i s0 = _mm512_dpbusd_epi32(_mm512_setzero_si512(), v[0], bcast4(xq));
                __m512i s1 = _mm512_dpbusd_epi32(_mm512_setzero_si512(), v[1], bcast4(xq + 4));
                s0 = _mm512_dpbusd_epi32(s0, v[2], bcast4(xq + 8));
                s1 = _mm512_dpbusd_epi32(s1, v[3], bcast4(xq + 12));
                isum[c] = _mm512_add_epi32(isum[c], _mm512_mullo_epi32(_mm512_add_epi32(s0, s1), scv));
            }
        }
        const __m512 d = _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)b));
#pragma GCC unroll 4
        for (int c = 0; c < NC; c++) {
#pragma GCC unroll 8
            for (int p = 0; p < 8; p++)
                off[c] = _mm512_dpwssd_epi32(off[c], _mm512_cvtepi8_epi16(_mm256_loadu_si256((const __m256i *)(sp + 32 * p))),
                                             bcast4((const int8_t *)(xb[c]->bsums + 2 * p)));
            const __m512i tot = _mm512_sub_epi32(isum[c], _mm512_slli_epi32(off[c], 5));
            acc[c] = _mm512_fmadd_ps(_mm512_mul_ps(d, _mm512_set1_ps(xb[c]->d)), _mm512_cvtepi32_ps(tot), acc[c]);
        }
    }
#pragma GCC unroll 4
    for (int c = 0; c < NC; c++) _mm512_storeu_ps(out + 16 * c, acc[c]);
}

#define RP_K_KERNEL(name)                                                                         \
    TGT512 void cq_rp_##name##_avx512(const void *grp, int64_t n, const cq_xrows *x, int nc, float *out) { \
        switch (nc) {                                                                             \
        case 1: rp_##name##_run(grp, n, x, 1, out); break;                                        \
        case 2: rp_##name##_run(grp, n, x, 2, out); break;                                        \
        case 3: rp_##name##_run(grp, n, x, 3, out); break;                                        \
        default: rp_##name##_run(grp, n, x, 4, out); break;                                       \
        }                                                                                         \
    }
RP_K_KERNEL(q4_K)
RP_K_KERNEL(q6_K)
