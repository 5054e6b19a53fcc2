/* quant_dot_avx512: AVX-512 dot kernels, compiled with target attributes
 * (avx512f/bw/vl/vnni) so the binary needs no -mavx512*; cpu_quant.c calls
 * them only when the CPU has all four.
 *
 * Same arithmetic as the scalar references (cpu_quant.h), so the same bits:
 *   - 32-element types: the 8 int32 lanes of a block come from one 256-bit
 *     vpdpbusd (VNNI) instead of vpmaddubsw + vpmaddwd; lane l is still the
 *     sum over elements 4l..4l+3, and the f32 lane updates are unchanged.
 *     (256 bits wide on purpose: 512-bit lanes would change the f32 lane
 *     split and with it the bits.)
 *   - Q4_K, Q5_K, Q6_K: two 32-element groups per 512-bit vpmaddubsw /
 *     vpmaddwd; the block total is an exact int32 whatever the width.
 *   - Q4_0, Q5_0, IQ4_NL tiles take the weights unsigned (w + o) and start
 *     vpdpbusd from the activation row's corr = -o * (sum of 4 quants).
 *   - Q2_K, Q3_K: the AVX2 kernels (rare in files; not worth a copy).
 */
#include "quant_x86.h"

#define TGT512 __attribute__((target("avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")))

static inline TGT512 __m256i lanes_u_vnni(__m256i w, __m256i x) {
    return _mm256_dpbusd_epi32(_mm256_setzero_si256(), w, x);
}
static inline TGT512 __m256i lanes_s_vnni(__m256i w, __m256i x) {
    return lanes_u_vnni(_mm256_sign_epi8(w, w), _mm256_sign_epi8(x, w));
}

LEGACY_DOT(q4_0, GGML_T_Q4_0, cq_block_q4_0, cq_block_q8_0, lanes_s_vnni, 0, avx512, TGT512)
LEGACY_DOT(q4_1, GGML_T_Q4_1, cq_block_q4_1, cq_block_q8_1, lanes_u_vnni, 1, avx512, TGT512)
LEGACY_DOT(q5_0, GGML_T_Q5_0, cq_block_q5_0, cq_block_q8_0, lanes_s_vnni, 0, avx512, TGT512)
LEGACY_DOT(q5_1, GGML_T_Q5_1, cq_block_q5_1, cq_block_q8_1, lanes_u_vnni, 1, avx512, TGT512)
LEGACY_DOT(q8_0, GGML_T_Q8_0, cq_block_q8_0, cq_block_q8_0, lanes_s_vnni, 0, avx512, TGT512)
LEGACY_DOT(iq4_nl, GGML_T_IQ4_NL, cq_block_iq4_nl, cq_block_q8_0, lanes_s_vnni, 0, avx512, TGT512)

/* Q4_0, Q5_0, IQ4_NL tiles: unsigned weights (w + o) and the activation's
 * corr as the vpdpbusd start value, so no sign trick per block and column;
 * the int32 lanes are the same integers. */
static inline TGT512 __m256i unpack_u_q4_0(const cq_block_q4_0 *b) { return nib32(b->qs); }
static inline TGT512 __m256i unpack_u_q5_0(const cq_block_q5_0 *b) {
    return _mm256_or_si256(nib32(b->qs), bits32_x10(b->qh));
}
static inline TGT512 __m256i unpack_u_iq4_nl(const cq_block_iq4_nl *b) {
    const __m128i t = _mm_xor_si128(_mm_loadu_si128((const __m128i *)cq_iq4nl_values), _mm_set1_epi8((char)0x80));
    return _mm256_shuffle_epi8(_mm256_set_m128i(t, t), nib32(b->qs));
}
#define CORR_TILE(name, WT)                                                                        \
    TGT512 void cq_tile_##name##_avx512(const void *vw, const void *vx, size_t xs, int64_t n, float *out) { \
        const WT *w = vw;                                                                          \
        const cq_block_q8_0 *x[CQ_TILE];                                                           \
        const float *xd[CQ_TILE];                                                                  \
        const int32_t *xc[CQ_TILE];                                                                \
        float acc[CQ_TILE];                                                                        \
        _Pragma("GCC unroll 4") for (int c = 0; c < CQ_TILE; c++) {                                \
            x[c] = (const cq_block_q8_0 *)((const char *)vx + (size_t)c * xs);                     \
            xd[c] = cq_act_scales(x[c], n, sizeof(cq_block_q8_0));                                 \
            xc[c] = (const int32_t *)(xd[c] + n / 32);                                             \
            acc[c] = 0.0f;                                                                         \
        }                                                                                          \
        for (int64_t k = 0; k < n / 32; k++) {                                                     \
            const __m256i q = unpack_u_##name(&w[k]);                                              \
            const float dw = h2f(w[k].d);                                                          \
            _Pragma("GCC unroll 4") for (int c = 0; c < CQ_TILE; c++) {                            \
                __m256i p = _mm256_dpbusd_epi32(_mm256_loadu_si256((const __m256i *)(xc[c] + 8 * k)), q, \
                                                _mm256_loadu_si256((const __m256i *)x[c][k].qs)); \
                acc[c] = fmaf(dw * xd[c][k], (float)hsum_i32(p), acc[c]);                         \
            }                                                                                      \
        }                                                                                          \
        _Pragma("GCC unroll 4") for (int c = 0; c < CQ_TILE; c++) out[c] = acc[c];                \
    }
CORR_TILE(q4_0, cq_block_q4_0)
CORR_TILE(q5_0, cq_block_q5_0)
CORR_TILE(iq4_nl, cq_block_iq4_nl)
LEGACY_TILE(q4_1, GGML_T_Q4_1, cq_block_q4_1, cq_block_q8_1, lanes_u_vnni, 1, avx512, TGT512)
LEGACY_TILE(q5_1, GGML_T_Q5_1, cq_block_q5_1, cq_block_q8_1, lanes_u_vnni, 1, avx512, TGT512)
LEGACY_TILE(q8_0, GGML_T_Q8_0, cq_block_q8_0, cq_block_q8_0, lanes_s_vnni, 0, avx512, TGT512)

/* K tiles: the AVX2 ones (same bits; the 512-bit single dots serve decode) */
void cq_tile_q4_K_avx512(const void *w, const void *x, size_t xs, int64_t n, float *out) {
    cq_tile_q4_K_avx2(w, x, xs, n, out);
}
void cq_tile_q5_K_avx512(const void *w, const void *x, size_t xs, int64_t n, float *out) {
    cq_tile_q5_K_avx2(w, x, xs, n, out);
}
void cq_tile_q6_K_avx512(const void *w, const void *x, size_t xs, int64_t n, float *out) {
    cq_tile_q6_K_avx2(w, x, xs, n, out);
}

float cq_dot_q2_K_avx512(const void *w, const void *x, int64_t n) { return cq_dot_q2_K_avx2(w, x, n); }
float cq_dot_q3_K_avx512(const void *w, const void *x, int64_t n) { return cq_dot_q3_K_avx2(w, x, n); }

/* Two 256-bit halves into one 512-bit vector (lo first). */
static inline TGT512 __m512i cat(__m256i lo, __m256i hi) {
    return _mm512_inserti64x4(_mm512_castsi256_si512(lo), hi, 1);
}
static inline TGT512 __m512i ld2(const int8_t *a, const int8_t *b) {
    return cat(_mm256_loadu_si256((const __m256i *)a), _mm256_loadu_si256((const __m256i *)b));
}
/* int16 scales: 16-element quarters get a, b, c, d in order */
static inline TGT512 __m512i sc4(int a, int b, int c, int d) {
    return cat(_mm256_set_m128i(_mm_set1_epi16((short)b), _mm_set1_epi16((short)a)),
               _mm256_set_m128i(_mm_set1_epi16((short)d), _mm_set1_epi16((short)c)));
}
static inline TGT512 __m512i group2(__m512i q, __m512i x, __m512i scales) {
    return _mm512_madd_epi16(_mm512_maddubs_epi16(q, x), scales);
}

/* Q4_K / Q5_K block totals, 64 elements per step; qh NULL for Q4_K. */
static inline TGT512 void tot_q45_K_512(const uint8_t *scales, const uint8_t *qs, const uint8_t *qh,
                                        const cq_block_q8_K *x, int32_t *isum, int32_t *imin) {
    const __m512i m4 = _mm512_set1_epi8(0x0F), m1 = _mm512_set1_epi8(1);
    uint8_t sc[8], mn[8];
    for (int j = 0; j < 8; j++) cq_scale_min_k4(j, scales, &sc[j], &mn[j]);
    __m512i hb = _mm512_setzero_si512();
    if (qh) {
        __m256i h = _mm256_loadu_si256((const __m256i *)qh);
        hb = cat(h, h);
    }
    __m512i sumi = _mm512_setzero_si512();
    for (int jj = 0; jj < 2; jj++) {
        /* bytes 0..31: groups 4jj (low) and 4jj+1 (high); 32..63: 4jj+2, 4jj+3 */
        const __m512i q = _mm512_loadu_si512((const void *)(qs + 64 * jj));
        __m512i lo = _mm512_and_si512(q, m4), hi = _mm512_and_si512(_mm512_srli_epi16(q, 4), m4);
        if (qh) {
            /* group s takes bit s of qh: low half of lo is group 4jj, high half 4jj+2 */
            __m512i sl = cat(_mm256_set1_epi64x(4 * jj), _mm256_set1_epi64x(4 * jj + 2));
            __m512i sh = cat(_mm256_set1_epi64x(4 * jj + 1), _mm256_set1_epi64x(4 * jj + 3));
            __m512i bl = _mm512_and_si512(_mm512_srlv_epi64(hb, sl), m1);
            __m512i bh = _mm512_and_si512(_mm512_srlv_epi64(hb, sh), m1);
            lo = _mm512_or_si512(lo, _mm512_slli_epi16(bl, 4));
            hi = _mm512_or_si512(hi, _mm512_slli_epi16(bh, 4));
        }
        const int8_t *xq = x->qs + 128 * jj;
        int a = 4 * jj;
        sumi = _mm512_add_epi32(sumi, group2(lo, ld2(xq, xq + 64), sc4(sc[a], sc[a], sc[a + 2], sc[a + 2])));
        sumi = _mm512_add_epi32(sumi, group2(hi, ld2(xq + 32, xq + 96), sc4(sc[a + 1], sc[a + 1], sc[a + 3], sc[a + 3])));
    }
    int32_t m = 0;
    for (int j = 0; j < 8; j++) m += mn[j] * (x->bsums[2 * j] + x->bsums[2 * j + 1]);
    *isum = _mm512_reduce_add_epi32(sumi);
    *imin = m;
}

TGT512 float cq_dot_q4_K_avx512(const void *vw, const void *vx, int64_t n) {
    const cq_block_q4_K *w = vw;
    const cq_block_q8_K *x = vx;
    float acc = 0.0f, accm = 0.0f;
    for (int64_t k = 0; k < n / QK_K; k++) {
        int32_t isum, imin;
        tot_q45_K_512(w[k].scales, w[k].qs, NULL, &x[k], &isum, &imin);
        acc = fmaf(h2f(w[k].d) * x[k].d, (float)isum, acc);
        accm = fmaf(h2f(w[k].dmin) * x[k].d, (float)imin, accm);
    }
    return acc - accm;
}

TGT512 float cq_dot_q5_K_avx512(const void *vw, const void *vx, int64_t n) {
    const cq_block_q5_K *w = vw;
    const cq_block_q8_K *x = vx;
    float acc = 0.0f, accm = 0.0f;
    for (int64_t k = 0; k < n / QK_K; k++) {
        int32_t isum, imin;
        tot_q45_K_512(w[k].scales, w[k].qs, w[k].qh, &x[k], &isum, &imin);
        acc = fmaf(h2f(w[k].d) * x[k].d, (float)isum, acc);
        accm = fmaf(h2f(w[k].dmin) * x[k].d, (float)imin, accm);
    }
    return acc - accm;
}

TGT512 float cq_dot_q6_K_avx512(const void *vw, const void *vx, int64_t n) {
    const cq_block_q6_K *w = vw;
    const cq_block_q8_K *x = vx;
    const __m512i m4 = _mm512_set1_epi8(0x0F), m3 = _mm512_set1_epi8(3);
    float acc = 0.0f;
    for (int64_t k = 0; k < n / QK_K; k++) {
        const int8_t *sc = w[k].scales;
        __m512i sumi = _mm512_setzero_si512();
        for (int h = 0; h < 2; h++) {
            /* ql bytes 0..63: low nibbles are groups 0, 1; high nibbles 2, 3 */
            const __m512i l = _mm512_loadu_si512((const void *)(w[k].ql + 64 * h));
            const __m256i qh256 = _mm256_loadu_si256((const __m256i *)(w[k].qh + 32 * h));
            const __m512i qh = cat(qh256, _mm256_srli_epi16(qh256, 2)); /* groups 0, 1 */
            const int8_t *xq = x[k].qs + 128 * h;
            const int s = 8 * h;
            __m512i q01 = _mm512_or_si512(_mm512_and_si512(l, m4),
                                          _mm512_slli_epi16(_mm512_and_si512(qh, m3), 4));
            __m512i q23 = _mm512_or_si512(_mm512_and_si512(_mm512_srli_epi16(l, 4), m4),
                                          _mm512_slli_epi16(_mm512_and_si512(_mm512_srli_epi16(qh, 4), m3), 4));
            sumi = _mm512_add_epi32(sumi, group2(q01, ld2(xq, xq + 32), sc4(sc[s], sc[s + 1], sc[s + 2], sc[s + 3])));
            sumi = _mm512_add_epi32(sumi, group2(q23, ld2(xq + 64, xq + 96), sc4(sc[s + 4], sc[s + 5], sc[s + 6], sc[s + 7])));
        }
        int32_t off = 0;
        for (int g = 0; g < 16; g++) off += sc[g] * x[k].bsums[g];
        acc = fmaf(h2f(w[k].d) * x[k].d, (float)(_mm512_reduce_add_epi32(sumi) - 32 * off), acc);
    }
    return acc;
}
