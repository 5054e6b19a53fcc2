/* quant_kernels: the per-type dequantizers and dot kernels behind cq_dot()
 * and cq_dequant_row() (internal to worker/cpu; callers use cpu_quant.h).
 *
 * One kernel family per file: quant_legacy.c (scalar Q4_0, Q4_1, Q5_0, Q5_1,
 * Q8_0, IQ4_NL), quant_k.c (scalar Q2_K..Q6_K), quant_dot_avx2.c and
 * quant_dot_avx512.c (the same dots with AVX2 and AVX-512 VNNI, compiled with
 * target attributes so one binary runs everywhere; call them only where
 * cq_level_best() allows). Every kernel of a type gives the same bits; the
 * arithmetic contract is in cpu_quant.h. Dot signature: (weight row,
 * activation row in the type's dot format, n elements, n a multiple of the
 * block size).
 */
#ifndef HELIUM_QUANT_KERNELS_H
#define HELIUM_QUANT_KERNELS_H

#include "cpu_quant.h"

/* x-macro of the types with quantized dots: (name, ggml type) */
#define CQ_DOT_TYPES(X) \
    X(q4_0, GGML_T_Q4_0) X(q4_1, GGML_T_Q4_1) X(q5_0, GGML_T_Q5_0) X(q5_1, GGML_T_Q5_1) \
    X(q8_0, GGML_T_Q8_0) X(iq4_nl, GGML_T_IQ4_NL) X(q2_K, GGML_T_Q2_K) X(q3_K, GGML_T_Q3_K) \
    X(q4_K, GGML_T_Q4_K) X(q5_K, GGML_T_Q5_K) X(q6_K, GGML_T_Q6_K)

#define CQ_DECL(name, t)                                                        \
    void cq_dequant_##name(const void *src, float *dst, int64_t n);            \
    float cq_dot_##name##_scalar(const void *w, const void *x, int64_t n);     \
    float cq_dot_##name##_avx2(const void *w, const void *x, int64_t n);       \
    float cq_dot_##name##_avx512(const void *w, const void *x, int64_t n);
CQ_DOT_TYPES(CQ_DECL)
#undef CQ_DECL

#define CQ_TILE_TYPES(X) \
    X(q4_0, GGML_T_Q4_0) X(q4_1, GGML_T_Q4_1) X(q5_0, GGML_T_Q5_0) X(q5_1, GGML_T_Q5_1) \
    X(q8_0, GGML_T_Q8_0) X(iq4_nl, GGML_T_IQ4_NL) X(q4_K, GGML_T_Q4_K) X(q5_K, GGML_T_Q5_K) X(q6_K, GGML_T_Q6_K)
#define CQ_TILE_DECL(name, t)                                                                     \
    void cq_tile_##name##_avx2(const void *w, const void *x, size_t xs, int64_t n, float *out);   \
    void cq_tile_##name##_avx512(const void *w, const void *x, size_t xs, int64_t n, float *out);
CQ_TILE_TYPES(CQ_TILE_DECL)
#undef CQ_TILE_DECL

/* Repacked-weight kernels (quant_rp_avx512.c, quant_rp_avx2.c; see cq_rp_fn) */
#define CQ_RP_DECL(name, suf) void cq_rp_##name##_##suf(const void *grp, int64_t n, const cq_xrows *x, int nc, float *out);
CQ_RP_DECL(q4_0, avx512) CQ_RP_DECL(q4_1, avx512) CQ_RP_DECL(q5_0, avx512) CQ_RP_DECL(q5_1, avx512)
CQ_RP_DECL(q8_0, avx512) CQ_RP_DECL(q4_K, avx512) CQ_RP_DECL(q6_K, avx512)
CQ_RP_DECL(q4_0, avx2) CQ_RP_DECL(q4_1, avx2) CQ_RP_DECL(q5_0, avx2) CQ_RP_DECL(q5_1, avx2) CQ_RP_DECL(q8_0, avx2)
CQ_RP_DECL(q4_K, avx2) CQ_RP_DECL(q6_K, avx2)
#undef CQ_RP_DECL

/* The fixed reduction order of 8 f32 lanes: ((0+4)+(2+6)) + ((1+5)+(3+7)),
 * what _mm256 extract/movehl/movehdup adds give. */
static inline float cq_hsum8_ref(const float l[8]) {
    float t0 = l[0] + l[4], t1 = l[1] + l[5], t2 = l[2] + l[6], t3 = l[3] + l[7];
    float u0 = t0 + t2, u1 = t1 + t3;
    return u0 + u1;
}

/* Q4_K / Q5_K: the 6-bit scale and min of sub-block j (0..7) from the 12
 * packed scale bytes. */
static inline void cq_scale_min_k4(int j, const uint8_t *q, uint8_t *d, uint8_t *m) {
    if (j < 4) {
        *d = q[j] & 63;
        *m = q[j + 4] & 63;
    } else {
        *d = (uint8_t)((q[j + 4] & 0xF) | ((q[j - 4] >> 6) << 4));
        *m = (uint8_t)((q[j + 4] >> 4) | ((q[j] >> 6) << 4));
    }
}

/* Q3_K: the 16 signed scales (-32..31) from the 12 packed bytes. */
static inline void cq_scales_q3_K(const uint8_t *s, int8_t out[16]) {
    for (int j = 0; j < 16; j++) {
        int lo = j < 8 ? s[j] & 0xF : s[j - 8] >> 4;
        int hi = (s[8 + (j & 3)] >> (2 * (j >> 2))) & 3;
        out[j] = (int8_t)((lo | (hi << 4)) - 32);
    }
}

#endif
