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
