/* quant_rp_avx2: the repacked-weight kernels (cpu_quant.h, cq_rp_*) for CPUs
 * with AVX2 but no AVX-512 VNNI, compiled with target attributes like
 * quant_dot_avx2.c. Same layout and same bits as quant_rp_avx512.c.
 *
 * A 16-row group is done as two halves of 8 rows (bytes 0..31 and 32..63 of
 * each 64-byte chunk are rows 0..7 and 8..15). Per block and activation row,
 * the 8 weight vectors (8 rows x 4 bytes, unsigned) meet the row's 4 quants
 * broadcast in vpmaddubsw; the int16 pair sums of 4 vectors are added in
 * int16 (at most 4 * 2 * 31 * 128 = 31744 for the 5-bit types, no overflow)
 * and widened with vpmaddwd: the block's exact int32 total per row, plus the
 * offset term, into the same f32 chain as the dot. Q8_0 (q + 128 would
 * saturate vpmaddubsw) takes the quants back to signed and uses the sign
 * trick and widens each vector's pair sums at once.
 */
#include "quant_x86.h"

enum { RP_Q4_0, RP_Q4_1, RP_Q5_0, RP_Q5_1, RP_Q8_0 };

static inline TGT __m256i bcast4_256(const int8_t *p) {
    int32_t v;
    memcpy(&v, p, 4);
    return _mm256_set1_epi32(v);
}

static inline TGT __attribute__((always_inline)) void rp2_run(const uint8_t *grp, int64_t n, const cq_xrows *x,
                                                             const int NC, const int kind, float *out) {
    const bool has_m = kind == RP_Q4_1 || kind == RP_Q5_1;
    const bool q5 = kind == RP_Q5_0 || kind == RP_Q5_1, q8 = kind == RP_Q8_0;
    const bool has_off = kind == RP_Q4_0 || kind == RP_Q5_0;
    const size_t gb = 32 + (has_m ? 32 : 0) + (q8 ? 512 : 256) + (q5 ? 64 : 0);
    const int64_t nb = n / 32;
    const __m256i m4 = _mm256_set1_epi8(0x0F), ones = _mm256_set1_epi16(1), flip = _mm256_set1_epi8((char)0x80);
    for (int h = 0; h < 2; h++) {
        __m256 acc[4], summ[4];
#pragma GCC unroll 4
        for (int c = 0; c < NC; c++) acc[c] = summ[c] = _mm256_setzero_ps();
        for (int64_t k = 0; k < nb; k++) {
            const uint8_t *b = grp + (size_t)k * gb;
            if (NC == 1 && h == 0) /* decode streams the weights once: ask for them early */
                for (size_t l = 0; l < gb; l += 64) _mm_prefetch((const char *)b + 4096 + l, _MM_HINT_T0);
            const __m256 dw = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(b + 16 * h)));
            const uint8_t *q = b + (has_m ? 64 : 32);
            __m256i v[8];
            if (q8) {
#pragma GCC unroll 8
                for (int j = 0; j < 8; j++)
                    v[j] = _mm256_xor_si256(_mm256_loadu_si256((const __m256i *)(q + 64 * j + 32 * h)), flip);
            } else {
#pragma GCC unroll 4
                for (int j = 0; j < 4; j++) {
                    const __m256i w = _mm256_loadu_si256((const __m256i *)(q + 64 * j + 32 * h));
                    v[j] = _mm256_and_si256(w, m4);
                    v[4 + j] = _mm256_and_si256(_mm256_srli_epi16(w, 4), m4);
                }
                if (q5)
#pragma GCC unroll 8
                    for (int j = 0; j < 8; j++) v[j] = _mm256_or_si256(v[j], bits32_x10(q + 256 + 8 * j + 4 * h));
            }
#pragma GCC unroll 4
            for (int c = 0; c < NC; c++) {
                const int8_t *xb = x->qs + (size_t)c * x->qs_row + (size_t)k * x->qs_blk;
                __m256i tot;
                if (q8) {
                    tot = _mm256_setzero_si256();
#pragma GCC unroll 8
                    for (int j = 0; j < 8; j++) {
                        const __m256i xv = bcast4_256(xb + 4 * j);
                        tot = _mm256_add_epi32(tot, _mm256_madd_epi16(_mm256_maddubs_epi16(_mm256_sign_epi8(v[j], v[j]),
                                                                                          _mm256_sign_epi8(xv, v[j])),
                                                                      ones));
                    }
                } else {
                    __m256i s16[2];
#pragma GCC unroll 2
                    for (int hh = 0; hh < 2; hh++) {
                        s16[hh] = _mm256_maddubs_epi16(v[4 * hh], bcast4_256(xb + 16 * hh));
#pragma GCC unroll 3
                        for (int j = 1; j < 4; j++)
                            s16[hh] = _mm256_add_epi16(s16[hh], _mm256_maddubs_epi16(v[4 * hh + j], bcast4_256(xb + 16 * hh + 4 * j)));
                    }
                    tot = _mm256_add_epi32(_mm256_madd_epi16(s16[0], ones), _mm256_madd_epi16(s16[1], ones));
                }
                if (has_off) {
                    const int32_t *xo = (const int32_t *)((const char *)x->off + (size_t)c * x->m_row);
                    tot = _mm256_add_epi32(tot, _mm256_set1_epi32(xo[k]));
                }
                const float *xd = (const float *)((const char *)x->d + (size_t)c * x->m_row);
                acc[c] = _mm256_fmadd_ps(_mm256_mul_ps(dw, _mm256_set1_ps(xd[k])), _mm256_cvtepi32_ps(tot), acc[c]);
                if (has_m) {
                    const float *xs = (const float *)((const char *)x->s + (size_t)c * x->m_row);
                    summ[c] = _mm256_fmadd_ps(_mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(b + 32 + 16 * h))),
                                              _mm256_set1_ps(xs[k]), summ[c]);
                }
            }
        }
#pragma GCC unroll 4
        for (int c = 0; c < NC; c++)
            _mm256_storeu_ps(out + 16 * c + 8 * h, has_m ? _mm256_add_ps(acc[c], summ[c]) : acc[c]);
    }
}

#define RP2_KERNEL(name, KIND)                                                                    \
    TGT void cq_rp_##name##_avx2(const void *grp, int64_t n, const cq_xrows *x, int nc, float *out) { \
        switch (nc) {                                                                             \
        case 1: rp2_run(grp, n, x, 1, KIND, out); break;                                          \
        case 2: rp2_run(grp, n, x, 2, KIND, out); break;                                          \
        case 3: rp2_run(grp, n, x, 3, KIND, out); break;                                          \
        default: rp2_run(grp, n, x, 4, KIND, out); break;                                         \
        }                                                                                         \
    }
RP2_KERNEL(q4_0, RP_Q4_0)
RP2_KERNEL(q4_1, RP_Q4_1)
RP2_KERNEL(q5_0, RP_Q5_0)
RP2_KERNEL(q5_1, RP_Q5_1)
RP2_KERNEL(q8_0, RP_Q8_0)

/* ------------------------------------------------------------------ K-quants
 * Q4_K and Q6_K groups (layout in quant_repack.c), 8 rows per half: each
 * sub-block's per-row integer dot from vpmaddubsw summed in int16 (Q4_K: 8
 * vectors, at most 8 * 2 * 15 * 128 = 30720; Q6_K: 2 vectors, 2 * 2 * 63 *
 * 128 = 32256) and widened, times the rows' scales (vpmulld); mins and
 * offsets with vpmaddwd on the rows' scale pairs. Same totals, same chains
 * as quant_rp_avx512.c. */

static inline const cq_block_q8_K *xk_block2(const cq_xrows *x, int c, int64_t k) {
    return (const cq_block_q8_K *)(x->qs + (size_t)c * x->qs_row - 4) + k;
}

static inline TGT __attribute__((always_inline)) void rp2_q4_K_run(const uint8_t *grp, int64_t n,
                                                                  const cq_xrows *x, const int NC, float *out) {
    const size_t gb = 2368;
    const __m256i m4 = _mm256_set1_epi8(0x0F), ones = _mm256_set1_epi16(1);
    for (int h = 0; h < 2; h++) {
        __m256 acc[4], accm[4];
#pragma GCC unroll 4
        for (int c = 0; c < NC; c++) acc[c] = accm[c] = _mm256_setzero_ps();
        for (int64_t k = 0; k < n / QK_K; k++) {
            const uint8_t *b = grp + (size_t)k * gb;
            if (NC == 1 && h == 0)
                for (size_t l = 0; l < gb; l += 64) _mm_prefetch((const char *)b + 4096 + l, _MM_HINT_T0);
            const cq_block_q8_K *xb[4];
            __m256i isum[4], imin[4];
#pragma GCC unroll 4
            for (int c = 0; c < NC; c++) {
                xb[c] = xk_block2(x, c, k);
                isum[c] = imin[c] = _mm256_setzero_si256();
            }
            for (int j = 0; j < 8; j++) {
                const uint8_t *q = b + 320 + 512 * (j / 2) + 32 * h;
                __m256i v[8];
#pragma GCC unroll 8
                for (int i = 0; i < 8; i++) {
                    __m256i w = _mm256_loadu_si256((const __m256i *)(q + 64 * i));
                    v[i] = _mm256_and_si256(j & 1 ? _mm256_srli_epi16(w, 4) : w, m4);
                }
                const __m256i scv = _mm256_cvtepu8_epi32(_mm_loadl_epi64((const __m128i *)(b + 64 + 16 * j + 8 * h)));
#pragma GCC unroll 4
                for (int c = 0; c < NC; c++) {
                    const int8_t *xq = xb[c]->qs + 32 * j;
                    __m256i s16 = _mm256_maddubs_epi16(v[0], bcast4_256(xq));
#pragma GCC unroll 7
                    for (int i = 1; i < 8; i++) s16 = _mm256_add_epi16(s16, _mm256_maddubs_epi16(v[i], bcast4_256(xq + 4 * i)));
                    isum[c] = _mm256_add_epi32(isum[c], _mm256_mullo_epi32(_mm256_madd_epi16(s16, ones), scv));
                }
            }
            const __m256 d = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(b + 16 * h)));
            const __m256 dmin = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(b + 32 + 16 * h)));
#pragma GCC unroll 4
            for (int c = 0; c < NC; c++) {
                const __m256i bs = _mm256_loadu_si256((const __m256i *)xb[c]->bsums);
                const __m256i s32 = _mm256_madd_epi16(bs, ones);
                int16_t pr[8];
                _mm_storeu_si128((__m128i *)pr, _mm_packs_epi32(_mm256_castsi256_si128(s32), _mm256_extracti128_si256(s32, 1)));
#pragma GCC unroll 4
                for (int p = 0; p < 4; p++)
                    imin[c] = _mm256_add_epi32(imin[c],
                                               _mm256_madd_epi16(_mm256_cvtepu8_epi16(_mm_loadu_si128((const __m128i *)(b + 192 + 32 * p + 16 * h))),
                                                                 bcast4_256((const int8_t *)(pr + 2 * p))));
                const __m256 xd = _mm256_set1_ps(xb[c]->d);
                acc[c] = _mm256_fmadd_ps(_mm256_mul_ps(d, xd), _mm256_cvtepi32_ps(isum[c]), acc[c]);
                accm[c] = _mm256_fmadd_ps(_mm256_mul_ps(dmin, xd), _mm256_cvtepi32_ps(imin[c]), accm[c]);
            }
        }
#pragma GCC unroll 4
        for (int c = 0; c < NC; c++) _mm256_storeu_ps(out + 16 * c + 8 * h, _mm256_sub_ps(acc[c], accm[c]));
    }
}

static inline TGT __attribute__((always_inline)) void rp2_q6_K_run(const uint8_t *grp, int64_t n,
                                                                  const cq_xrows *x, const int NC, float *out) {
    const size_t gb = 4640;
    const __m256i ones = _mm256_set1_epi16(1);
    for (int h = 0; h < 2; h++) {
        __m256 acc[4];
#pragma GCC unroll 4
        for (int c = 0; c < NC; c++) acc[c] = _mm256_setzero_ps();
        for (int64_t k = 0; k < n / QK_K; k++) {
            const uint8_t *b = grp + (size_t)k * gb;
            if (NC == 1 && h == 0)
                for (size_t l = 0; l < gb; l += 64) _mm_prefetch((const char *)b + 4096 + l, _MM_HINT_T0);
            const cq_block_q8_K *xb[4];
            __m256i isum[4], off[4];
#pragma GCC unroll 4
            for (int c = 0; c < NC; c++) {
                xb[c] = xk_block2(x, c, k);
                isum[c] = off[c] = _mm256_setzero_si256();
            }
            for (int g = 0; g < 16; g++) {
                __m256i v[4];
#pragma GCC unroll 4
                for (int i = 0; i < 4; i++) v[i] = _mm256_loadu_si256((const __m256i *)(b + 544 + 256 * g + 64 * i + 32 * h));
                const __m256i scv = _mm256_cvtepi8_epi32(_mm_loadl_epi64((const __m128i *)(b + 32 + 16 * g + 8 * h)));
#pragma GCC unroll 4
                for (int c = 0; c < NC; c++) {
                    const int8_t *xq = xb[c]->qs + 16 * g;
                    __m256i a = _mm256_add_epi16(_mm256_maddubs_epi16(v[0], bcast4_256(xq)),
                                                 _mm256_maddubs_epi16(v[1], bcast4_256(xq + 4)));
                    __m256i e = _mm256_add_epi16(_mm256_maddubs_epi16(v[2], bcast4_256(xq + 8)),
                                                 _mm256_maddubs_epi16(v[3], bcast4_256(xq + 12)));
                    __m256i s = _mm256_add_epi32(_mm256_madd_epi16(a, ones), _mm256_madd_epi16(e, ones));
                    isum[c] = _mm256_add_epi32(isum[c], _mm256_mullo_epi32(s, scv));
                }
            }
            const __m256 d = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(b + 16 * h)));
#pragma GCC unroll 4
            for (int c = 0; c < NC; c++) {
#pragma GCC unroll 8
                for (int p = 0; p < 8; p++)
                    off[c] = _mm256_add_epi32(off[c],
                                              _mm256_madd_epi16(_mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i *)(b + 288 + 32 * p + 16 * h))),
                                                                bcast4_256((const int8_t *)(xb[c]->bsums + 2 * p))));
                const __m256i tot = _mm256_sub_epi32(isum[c], _mm256_slli_epi32(off[c], 5));
                acc[c] = _mm256_fmadd_ps(_mm256_mul_ps(d, _mm256_set1_ps(xb[c]->d)), _mm256_cvtepi32_ps(tot), acc[c]);
            }
        }
#pragma GCC unroll 4
        for (int c = 0; c < NC; c++) _mm256_storeu_ps(out + 16 * c + 8 * h, acc[c]);
    }
}

#define RP2_K_KERNEL(name)                                                                        \
    TGT void cq_rp_##name##_avx2(const void *grp, int64_t n, const cq_xrows *x, int nc, float *out) { \
        switch (nc) {                                                                             \
        case 1: rp2_##name##_run(grp, n, x, 1, out); break;                                       \
        case 2: rp2_##name##_run(grp, n, x, 2, out); break;                                       \
        case 3: rp2_##name##_run(grp, n, x, 3, out); break;                                       \
        default: rp2_##name##_run(grp, n, x, 4, out); break;                                      \
        }                                                                                         \
    }
RP2_K_KERNEL(q4_K)
RP2_K_KERNEL(q6_K)
