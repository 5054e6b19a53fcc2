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
