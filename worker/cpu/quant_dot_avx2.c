/* quant_dot_avx2: AVX2 dot kernels for every quantized weight type, compiled
 * with __attribute__((target("avx2,fma,f16c"))) so the binary needs no
 * -mavx2; cpu_quant.c calls them only when the CPU has those features.
 *
 * Each kernel computes exactly what its scalar twin in quant_legacy.c /
 * quant_k.c computes (contract in cpu_quant.h): for the 32-element types a
 * block's weights are unpacked to 32 bytes in element order, multiplied with
 * vpmaddubsw (unsigned weights directly; signed ones with the sign trick,
 * |w| <= 128 and |x| <= 127 so no pair saturates) and vpmaddwd into 8 int32
 * lanes of 4 elements, which is the lane split of the scalar reference; for
 * the K-quants, per-16 scales are applied with vpmaddwd and the block total
 * reduced to one exact int32.
 */
#include "quant_x86.h"

LEGACY_DOT(q4_0, GGML_T_Q4_0, cq_block_q4_0, cq_block_q8_0, lanes_s, 0, avx2, TGT)
LEGACY_DOT(q4_1, GGML_T_Q4_1, cq_block_q4_1, cq_block_q8_1, lanes_u, 1, avx2, TGT)
LEGACY_DOT(q5_0, GGML_T_Q5_0, cq_block_q5_0, cq_block_q8_0, lanes_s, 0, avx2, TGT)
LEGACY_DOT(q5_1, GGML_T_Q5_1, cq_block_q5_1, cq_block_q8_1, lanes_u, 1, avx2, TGT)
LEGACY_DOT(q8_0, GGML_T_Q8_0, cq_block_q8_0, cq_block_q8_0, lanes_s, 0, avx2, TGT)
LEGACY_DOT(iq4_nl, GGML_T_IQ4_NL, cq_block_iq4_nl, cq_block_q8_0, lanes_s, 0, avx2, TGT)

LEGACY_TILE(q4_0, GGML_T_Q4_0, cq_block_q4_0, cq_block_q8_0, lanes_s, 0, avx2, TGT)
LEGACY_TILE(q4_1, GGML_T_Q4_1, cq_block_q4_1, cq_block_q8_1, lanes_u, 1, avx2, TGT)
LEGACY_TILE(q5_0, GGML_T_Q5_0, cq_block_q5_0, cq_block_q8_0, lanes_s, 0, avx2, TGT)
LEGACY_TILE(q5_1, GGML_T_Q5_1, cq_block_q5_1, cq_block_q8_1, lanes_u, 1, avx2, TGT)
LEGACY_TILE(q8_0, GGML_T_Q8_0, cq_block_q8_0, cq_block_q8_0, lanes_s, 0, avx2, TGT)
LEGACY_TILE(iq4_nl, GGML_T_IQ4_NL, cq_block_iq4_nl, cq_block_q8_0, lanes_s, 0, avx2, TGT)

/* ------------------------------------------------------------------ K-quants */

TGT float cq_dot_q2_K_avx2(const void *vw, const void *vx, int64_t n) {
    const cq_block_q2_K *w = vw;
    const cq_block_q8_K *x = vx;
    const __m256i m3 = _mm256_set1_epi8(3);
    float acc = 0.0f, accm = 0.0f;
    for (int64_t k = 0; k < n / QK_K; k++) {
        const uint8_t *sc = w[k].scales;
        __m256i sumi = _mm256_setzero_si256();
        for (int h = 0; h < 2; h++) {
            const __m256i q = _mm256_loadu_si256((const __m256i *)(w[k].qs + 32 * h));
            for (int g = 0; g < 4; g++) {
                __m256i qg = _mm256_and_si256(_mm256_srli_epi16(q, 2 * g), m3);
                int s = 8 * h + 2 * g;
                sumi = _mm256_add_epi32(sumi, group(qg, x[k].qs + 128 * h + 32 * g, sc2(sc[s] & 0xF, sc[s + 1] & 0xF)));
            }
        }
        int32_t imin = 0;
        for (int g = 0; g < 16; g++) imin += (sc[g] >> 4) * x[k].bsums[g];
        acc = fmaf(h2f(w[k].d) * x[k].d, (float)hsum_i32(sumi), acc);
        accm = fmaf(h2f(w[k].dmin) * x[k].d, (float)imin, accm);
    }
    return acc - accm;
}

TGT float cq_dot_q3_K_avx2(const void *vw, const void *vx, int64_t n) {
    const cq_block_q3_K *w = vw;
    const cq_block_q8_K *x = vx;
    const __m256i m3 = _mm256_set1_epi8(3), m1 = _mm256_set1_epi8(1);
    float acc = 0.0f;
    int8_t sc[16];
    for (int64_t k = 0; k < n / QK_K; k++) {
        cq_scales_q3_K(w[k].scales, sc);
        const __m256i hm = _mm256_loadu_si256((const __m256i *)w[k].hmask);
        __m256i sumi = _mm256_setzero_si256();
        for (int h = 0; h < 2; h++) {
            const __m256i q = _mm256_loadu_si256((const __m256i *)(w[k].qs + 32 * h));
            for (int g = 0; g < 4; g++) {
                __m256i lo = _mm256_and_si256(_mm256_srli_epi16(q, 2 * g), m3);
                __m256i hi = _mm256_and_si256(_mm256_srli_epi16(hm, 4 * h + g), m1);
                __m256i qg = _mm256_or_si256(lo, _mm256_slli_epi16(hi, 2));
                int s = 8 * h + 2 * g;
                sumi = _mm256_add_epi32(sumi, group(qg, x[k].qs + 128 * h + 32 * g, sc2(sc[s], sc[s + 1])));
            }
        }
        int32_t off = 0;
        for (int g = 0; g < 16; g++) off += sc[g] * x[k].bsums[g];
        acc = fmaf(h2f(w[k].d) * x[k].d, (float)(hsum_i32(sumi) - 4 * off), acc);
    }
    return acc;
}

/* Q4_K / Q5_K block totals; qh NULL for Q4_K. */
static inline TGT void tot_q45_K(const uint8_t *scales, const uint8_t *qs, const uint8_t *qh,
                                 const cq_block_q8_K *x, int32_t *isum, int32_t *imin) {
    const __m256i m4 = _mm256_set1_epi8(0x0F), m1 = _mm256_set1_epi8(1);
    uint8_t sc[8], mn[8];
    for (int j = 0; j < 8; j++) cq_scale_min_k4(j, scales, &sc[j], &mn[j]);
    const __m256i hb = qh ? _mm256_loadu_si256((const __m256i *)qh) : _mm256_setzero_si256();
    __m256i sumi = _mm256_setzero_si256();
    for (int j = 0; j < 4; j++) {
        const __m256i q = _mm256_loadu_si256((const __m256i *)(qs + 32 * j));
        __m256i lo = _mm256_and_si256(q, m4), hi = _mm256_and_si256(_mm256_srli_epi16(q, 4), m4);
        if (qh) {
            lo = _mm256_or_si256(lo, _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(hb, 2 * j), m1), 4));
            hi = _mm256_or_si256(hi, _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(hb, 2 * j + 1), m1), 4));
        }
        sumi = _mm256_add_epi32(sumi, group(lo, x->qs + 64 * j, _mm256_set1_epi16(sc[2 * j])));
        sumi = _mm256_add_epi32(sumi, group(hi, x->qs + 64 * j + 32, _mm256_set1_epi16(sc[2 * j + 1])));
    }
    int32_t m = 0;
    for (int j = 0; j < 8; j++) m += mn[j] * (x->bsums[2 * j] + x->bsums[2 * j + 1]);
    *isum = hsum_i32(sumi);
    *imin = m;
}

TGT float cq_dot_q4_K_avx2(const void *vw, const void *vx, int64_t n) {
    const cq_block_q4_K *w = vw;
    const cq_block_q8_K *x = vx;
    float acc = 0.0f, accm = 0.0f;
    for (int64_t k = 0; k < n / QK_K; k++) {
        int32_t isum, imin;
        tot_q45_K(w[k].scales, w[k].qs, NULL, &x[k], &isum, &imin);
        acc = fmaf(h2f(w[k].d) * x[k].d, (float)isum, acc);
        accm = fmaf(h2f(w[k].dmin) * x[k].d, (float)imin, accm);
    }
    return acc - accm;
}

TGT float cq_dot_q5_K_avx2(const void *vw, const void *vx, int64_t n) {
    const cq_block_q5_K *w = vw;
    const cq_block_q8_K *x = vx;
    float acc = 0.0f, accm = 0.0f;
    for (int64_t k = 0; k < n / QK_K; k++) {
        int32_t isum, imin;
        tot_q45_K(w[k].scales, w[k].qs, w[k].qh, &x[k], &isum, &imin);
        acc = fmaf(h2f(w[k].d) * x[k].d, (float)isum, acc);
        accm = fmaf(h2f(w[k].dmin) * x[k].d, (float)imin, accm);
    }
    return acc - accm;
}

TGT float cq_dot_q6_K_avx2(const void *vw, const void *vx, int64_t n) {
    const cq_block_q6_K *w = vw;
    const cq_block_q8_K *x = vx;
    const __m256i m4 = _mm256_set1_epi8(0x0F), m3 = _mm256_set1_epi8(3);
    float acc = 0.0f;
    for (int64_t k = 0; k < n / QK_K; k++) {
        const int8_t *sc = w[k].scales;
        __m256i sumi = _mm256_setzero_si256();
        for (int h = 0; h < 2; h++) {
            const __m256i l0 = _mm256_loadu_si256((const __m256i *)(w[k].ql + 64 * h));
            const __m256i l1 = _mm256_loadu_si256((const __m256i *)(w[k].ql + 64 * h + 32));
            const __m256i qh = _mm256_loadu_si256((const __m256i *)(w[k].qh + 32 * h));
            for (int g = 0; g < 4; g++) {
                __m256i lo = g & 1 ? l1 : l0;
                lo = _mm256_and_si256(g >= 2 ? _mm256_srli_epi16(lo, 4) : lo, m4);
                __m256i hi = _mm256_and_si256(_mm256_srli_epi16(qh, 2 * g), m3);
                __m256i q = _mm256_or_si256(lo, _mm256_slli_epi16(hi, 4));
                int s = 8 * h + 2 * g;
                sumi = _mm256_add_epi32(sumi, group(q, x[k].qs + 128 * h + 32 * g, sc2(sc[s], sc[s + 1])));
            }
        }
        int32_t off = 0;
        for (int g = 0; g < 16; g++) off += sc[g] * x[k].bsums[g];
        acc = fmaf(h2f(w[k].d) * x[k].d, (float)(hsum_i32(sumi) - 32 * off), acc);
    }
    return acc;
}

/* ------------------------------------------------------------------ K tiles */

/* Q4_K / Q5_K: one weight row, CQ_TILE activation rows (see cq_tile_fn). */
static inline TGT void tile_q45_K(const uint8_t *wrow, size_t wbytes, bool q5, const void *vx, size_t xs,
                                  int64_t n, float *out) {
    const __m256i m4 = _mm256_set1_epi8(0x0F), m1 = _mm256_set1_epi8(1);
    float acc[CQ_TILE] = {0}, accm[CQ_TILE] = {0};
    for (int64_t k = 0; k < n / QK_K; k++) {
        const uint8_t *b = wrow + (size_t)k * wbytes;
        const uint16_t *dd = (const uint16_t *)b;
        const uint8_t *scales = b + 4, *qh = q5 ? b + 16 : NULL, *qs = q5 ? b + 48 : b + 16;
        uint8_t sc[8], mn[8];
        for (int j = 0; j < 8; j++) cq_scale_min_k4(j, scales, &sc[j], &mn[j]);
        const __m256i hb = qh ? _mm256_loadu_si256((const __m256i *)qh) : _mm256_setzero_si256();
        const cq_block_q8_K *x[CQ_TILE];
        __m256i sumi[CQ_TILE];
#pragma GCC unroll 4
        for (int c = 0; c < CQ_TILE; c++) {
            x[c] = (const cq_block_q8_K *)((const char *)vx + (size_t)c * xs) + k;
            sumi[c] = _mm256_setzero_si256();
        }
        for (int j = 0; j < 4; j++) {
            const __m256i q = _mm256_loadu_si256((const __m256i *)(qs + 32 * j));
            __m256i lo = _mm256_and_si256(q, m4), hi = _mm256_and_si256(_mm256_srli_epi16(q, 4), m4);
            if (qh) {
                lo = _mm256_or_si256(lo, _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(hb, 2 * j), m1), 4));
                hi = _mm256_or_si256(hi, _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(hb, 2 * j + 1), m1), 4));
            }
            const __m256i sl = _mm256_set1_epi16(sc[2 * j]), sh = _mm256_set1_epi16(sc[2 * j + 1]);
#pragma GCC unroll 4
            for (int c = 0; c < CQ_TILE; c++) {
                sumi[c] = _mm256_add_epi32(sumi[c], group(lo, x[c]->qs + 64 * j, sl));
                sumi[c] = _mm256_add_epi32(sumi[c], group(hi, x[c]->qs + 64 * j + 32, sh));
            }
        }
        const float d = h2f(dd[0]), dmin = h2f(dd[1]);
#pragma GCC unroll 4
        for (int c = 0; c < CQ_TILE; c++) {
            int32_t m = 0;
            for (int j = 0; j < 8; j++) m += mn[j] * (x[c]->bsums[2 * j] + x[c]->bsums[2 * j + 1]);
            acc[c] = fmaf(d * x[c]->d, (float)hsum_i32(sumi[c]), acc[c]);
            accm[c] = fmaf(dmin * x[c]->d, (float)m, accm[c]);
        }
    }
    for (int c = 0; c < CQ_TILE; c++) out[c] = acc[c] - accm[c];
}

TGT void cq_tile_q4_K_avx2(const void *w, const void *x, size_t xs, int64_t n, float *out) {
    tile_q45_K(w, sizeof(cq_block_q4_K), false, x, xs, n, out);
}
TGT void cq_tile_q5_K_avx2(const void *w, const void *x, size_t xs, int64_t n, float *out) {
    tile_q45_K(w, sizeof(cq_block_q5_K), true, x, xs, n, out);
}

TGT void cq_tile_q6_K_avx2(const void *vw, const void *vx, size_t xs, int64_t n, float *out) {
    const cq_block_q6_K *w = vw;
    const __m256i m4 = _mm256_set1_epi8(0x0F), m3 = _mm256_set1_epi8(3);
    float acc[CQ_TILE] = {0};
    for (int64_t k = 0; k < n / QK_K; k++) {
        const int8_t *sc = w[k].scales;
        const cq_block_q8_K *x[CQ_TILE];
        __m256i sumi[CQ_TILE];
#pragma GCC unroll 4
        for (int c = 0; c < CQ_TILE; c++) {
            x[c] = (const cq_block_q8_K *)((const char *)vx + (size_t)c * xs) + k;
            sumi[c] = _mm256_setzero_si256();
        }
        for (int h = 0; h < 2; h++) {
            const __m256i l0 = _mm256_loadu_si256((const __m256i *)(w[k].ql + 64 * h));
            const __m256i l1 = _mm256_loadu_si256((const __m256i *)(w[k].ql + 64 * h + 32));
            const __m256i qh = _mm256_loadu_si256((const __m256i *)(w[k].qh + 32 * h));
            for (int g = 0; g < 4; g++) {
                __m256i lo = g & 1 ? l1 : l0;
                lo = _mm256_and_si256(g >= 2 ? _mm256_srli_epi16(lo, 4) : lo, m4);
                __m256i hi = _mm256_and_si256(_mm256_srli_epi16(qh, 2 * g), m3);
                const __m256i q = _mm256_or_si256(lo, _mm256_slli_epi16(hi, 4));
                const int s = 8 * h + 2 * g;
                const __m256i scv = sc2(sc[s], sc[s + 1]);
#pragma GCC unroll 4
                for (int c = 0; c < CQ_TILE; c++)
                    sumi[c] = _mm256_add_epi32(sumi[c], group(q, x[c]->qs + 128 * h + 32 * g, scv));
            }
        }
        const float d = h2f(w[k].d);
#pragma GCC unroll 4
        for (int c = 0; c < CQ_TILE; c++) {
            int32_t off = 0;
            for (int g = 0; g < 16; g++) off += sc[g] * x[c]->bsums[g];
            acc[c] = fmaf(d * x[c]->d, (float)(hsum_i32(sumi[c]) - 32 * off), acc[c]);
        }
    }
    for (int c = 0; c < CQ_TILE; c++) out[c] = acc[c];
}
