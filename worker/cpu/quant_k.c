/* quant_k: scalar reference dequantizers and dots for ggml's K-quants
 * (Q2_K, Q3_K, Q4_K, Q5_K, Q6_K: 256-element super-blocks) against q8_K
 * activations.
 *
 * Element e (0..255) of a super-block, as ggml lays it out:
 *   Q2_K  2 bits at qs[32*(e/128) + e%32] >> 2*((e%128)/32); scale/min
 *         nibbles scales[e/16]; value d*sc*q - dmin*m.
 *   Q3_K  the same 2 low bits, bit e/32 of hmask[e%32] as bit 2, minus 4;
 *         6-bit signed scale e/16; value d*sc*q.
 *   Q4_K  nibble of qs[32*(e/64) + e%32] (low when (e%64) < 32); 6-bit
 *         scale/min of sub-block e/32; value d*sc*q - dmin*m.
 *   Q5_K  Q4_K plus bit e/32 of qh[e%32] as bit 4.
 *   Q6_K  nibble of ql[64*(e/128) + 32*((e%128)/32 & 1) + e%32] (high for
 *         (e%128) >= 64), 2 bits of qh[32*(e/128) + e%32] >> 2*((e%128)/32) as
 *         bits 4-5, minus 32; int8 scale e/16; value d*sc*q.
 *
 * Dots (contract in cpu_quant.h): per super-block the scaled integer total
 * (offsets folded in through the q8_K block sums) and the integer min total
 * are exact int32; they enter f32 chains with fmaf.
 */
#include <math.h>
#include <string.h>

#include "quant_kernels.h"

/* The 256 unsigned quants (before offsets) of a block, element order. */
static void q2_ints(const cq_block_q2_K *b, int32_t q[QK_K]) {
    for (int e = 0; e < QK_K; e++) q[e] = (b->qs[32 * (e / 128) + e % 32] >> (2 * ((e % 128) / 32))) & 3;
}

static void q3_ints(const cq_block_q3_K *b, int32_t q[QK_K]) {
    for (int e = 0; e < QK_K; e++) {
        int lo = (b->qs[32 * (e / 128) + e % 32] >> (2 * ((e % 128) / 32))) & 3;
        int hi = (b->hmask[e % 32] >> (e / 32)) & 1;
        q[e] = lo | (hi << 2); /* 0..7; the value is q - 4 */
    }
}

static void q4k_ints(const uint8_t *qs, const uint8_t *qh, int32_t q[QK_K]) {
    for (int e = 0; e < QK_K; e++) {
        uint8_t byte = qs[32 * (e / 64) + e % 32];
        q[e] = (e % 64) < 32 ? byte & 0xF : byte >> 4;
        if (qh) q[e] |= ((qh[e % 32] >> (e / 32)) & 1) << 4;
    }
}

static void q6_ints(const cq_block_q6_K *b, int32_t q[QK_K]) {
    for (int e = 0; e < QK_K; e++) {
        int h = e / 128, p = e % 128, g = p / 32, l = p % 32;
        uint8_t lb = b->ql[64 * h + 32 * (g & 1) + l];
        int lo = g >= 2 ? lb >> 4 : lb & 0xF;
        int hi = (b->qh[32 * h + l] >> (2 * g)) & 3;
        q[e] = lo | (hi << 4); /* 0..63; the value is q - 32 */
    }
}

void cq_dequant_q2_K(const void *src, float *dst, int64_t n) {
    const cq_block_q2_K *b = src;
    int32_t q[QK_K];
    for (int64_t k = 0; k < n / QK_K; k++, dst += QK_K) {
        float d = cq_f16_to_f32(b[k].d), dmin = cq_f16_to_f32(b[k].dmin);
        q2_ints(&b[k], q);
        for (int e = 0; e < QK_K; e++) {
            uint8_t sc = b[k].scales[e / 16];
            float dl = d * (float)(sc & 0xF), ml = dmin * (float)(sc >> 4);
            dst[e] = dl * (float)q[e] - ml;
        }
    }
}

void cq_dequant_q3_K(const void *src, float *dst, int64_t n) {
    const cq_block_q3_K *b = src;
    int32_t q[QK_K];
    int8_t sc[16];
    for (int64_t k = 0; k < n / QK_K; k++, dst += QK_K) {
        float d = cq_f16_to_f32(b[k].d);
        q3_ints(&b[k], q);
        cq_scales_q3_K(b[k].scales, sc);
        for (int e = 0; e < QK_K; e++) dst[e] = d * (float)sc[e / 16] * (float)(q[e] - 4);
    }
}

static void dequant_q45_K(const uint8_t *scales, uint16_t hd, uint16_t hdmin, const uint8_t *qs,
                          const uint8_t *qh, float *dst) {
    int32_t q[QK_K];
    float d = cq_f16_to_f32(hd), dmin = cq_f16_to_f32(hdmin);
    q4k_ints(qs, qh, q);
    for (int j = 0; j < 8; j++) {
        uint8_t sc, m;
        cq_scale_min_k4(j, scales, &sc, &m);
        float d1 = d * (float)sc, m1 = dmin * (float)m;
        for (int i = 0; i < 32; i++) dst[32 * j + i] = d1 * (float)q[32 * j + i] - m1;
    }
}

void cq_dequant_q4_K(const void *src, float *dst, int64_t n) {
    const cq_block_q4_K *b = src;
    for (int64_t k = 0; k < n / QK_K; k++)
        dequant_q45_K(b[k].scales, b[k].d, b[k].dmin, b[k].qs, NULL, dst + k * QK_K);
}

void cq_dequant_q5_K(const void *src, float *dst, int64_t n) {
    const cq_block_q5_K *b = src;
    for (int64_t k = 0; k < n / QK_K; k++)
        dequant_q45_K(b[k].scales, b[k].d, b[k].dmin, b[k].qs, b[k].qh, dst + k * QK_K);
}

void cq_dequant_q6_K(const void *src, float *dst, int64_t n) {
    const cq_block_q6_K *b = src;
    int32_t q[QK_K];
    for (int64_t k = 0; k < n / QK_K; k++, dst += QK_K) {
        float d = cq_f16_to_f32(b[k].d);
        q6_ints(&b[k], q);
        for (int e = 0; e < QK_K; e++) dst[e] = d * (float)b[k].scales[e / 16] * (float)(q[e] - 32);
    }
}

/* Sum of q[e] * x[e] over the 16 elements of group g. */
static int32_t dot16(const int32_t *q, const int8_t *x, int g) {
    int32_t s = 0;
    for (int i = 16 * g; i < 16 * g + 16; i++) s += q[i] * x[i];
    return s;
}

float cq_dot_q2_K_scalar(const void *vw, const void *vx, int64_t n) {
    const cq_block_q2_K *w = vw;
    const cq_block_q8_K *x = vx;
    float acc = 0.0f, accm = 0.0f;
    int32_t q[QK_K];
    for (int64_t k = 0; k < n / QK_K; k++) {
        q2_ints(&w[k], q);
        int32_t isum = 0, imin = 0;
        for (int g = 0; g < 16; g++) {
            isum += (w[k].scales[g] & 0xF) * dot16(q, x[k].qs, g);
            imin += (w[k].scales[g] >> 4) * x[k].bsums[g];
        }
        acc = fmaf(cq_f16_to_f32(w[k].d) * x[k].d, (float)isum, acc);
        accm = fmaf(cq_f16_to_f32(w[k].dmin) * x[k].d, (float)imin, accm);
    }
    return acc - accm;
}

float cq_dot_q3_K_scalar(const void *vw, const void *vx, int64_t n) {
    const cq_block_q3_K *w = vw;
    const cq_block_q8_K *x = vx;
    float acc = 0.0f;
    int32_t q[QK_K];
    int8_t sc[16];
    for (int64_t k = 0; k < n / QK_K; k++) {
        q3_ints(&w[k], q);
        cq_scales_q3_K(w[k].scales, sc);
        int32_t isum = 0;
        for (int g = 0; g < 16; g++) isum += sc[g] * (dot16(q, x[k].qs, g) - 4 * x[k].bsums[g]);
        acc = fmaf(cq_f16_to_f32(w[k].d) * x[k].d, (float)isum, acc);
    }
    return acc;
}

/* Integer totals of one Q4_K / Q5_K block against x. */
static void tot_q45_K(const uint8_t *scales, const int32_t *q, const cq_block_q8_K *x, int32_t *isum,
                      int32_t *imin) {
    *isum = 0;
    *imin = 0;
    for (int j = 0; j < 8; j++) {
        uint8_t sc, m;
        cq_scale_min_k4(j, scales, &sc, &m);
        *isum += sc * (dot16(q, x->qs, 2 * j) + dot16(q, x->qs, 2 * j + 1));
        *imin += m * (x->bsums[2 * j] + x->bsums[2 * j + 1]);
    }
}

float cq_dot_q4_K_scalar(const void *vw, const void *vx, int64_t n) {
    const cq_block_q4_K *w = vw;
    const cq_block_q8_K *x = vx;
    float acc = 0.0f, accm = 0.0f;
    int32_t q[QK_K], isum, imin;
    for (int64_t k = 0; k < n / QK_K; k++) {
        q4k_ints(w[k].qs, NULL, q);
        tot_q45_K(w[k].scales, q, &x[k], &isum, &imin);
        acc = fmaf(cq_f16_to_f32(w[k].d) * x[k].d, (float)isum, acc);
        accm = fmaf(cq_f16_to_f32(w[k].dmin) * x[k].d, (float)imin, accm);
    }
    return acc - accm;
}

float cq_dot_q5_K_scalar(const void *vw, const void *vx, int64_t n) {
    const cq_block_q5_K *w = vw;
    const cq_block_q8_K *x = vx;
    float acc = 0.0f, accm = 0.0f;
    int32_t q[QK_K], isum, imin;
    for (int64_t k = 0; k < n / QK_K; k++) {
        q4k_ints(w[k].qs, w[k].qh, q);
        tot_q45_K(w[k].scales, q, &x[k], &isum, &imin);
        acc = fmaf(cq_f16_to_f32(w[k].d) * x[k].d, (float)isum, acc);
        accm = fmaf(cq_f16_to_f32(w[k].dmin) * x[k].d, (float)imin, accm);
    }
    return acc - accm;
}

float cq_dot_q6_K_scalar(const void *vw, const void *vx, int64_t n) {
    const cq_block_q6_K *w = vw;
    const cq_block_q8_K *x = vx;
    float acc = 0.0f;
    int32_t q[QK_K];
    for (int64_t k = 0; k < n / QK_K; k++) {
        q6_ints(&w[k], q);
        int32_t isum = 0;
        for (int g = 0; g < 16; g++) isum += w[k].scales[g] * (dot16(q, x[k].qs, g) - 32 * x[k].bsums[g]);
        acc = fmaf(cq_f16_to_f32(w[k].d) * x[k].d, (float)isum, acc);
    }
    return acc;
}
