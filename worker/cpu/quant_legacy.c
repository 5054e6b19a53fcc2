/* quant_legacy: scalar reference dequantizers and dots for ggml's 32-element
 * block types Q4_0, Q4_1, Q5_0, Q5_1, Q8_0 and IQ4_NL.
 *
 * Element i (0..31) of a block: 4-bit types keep elements 0..15 in the low
 * nibbles of qs[0..15] and 16..31 in the high nibbles; 5-bit types add bit i
 * of the little-endian u32 qh as bit 4. Values: Q4_0 d * (q - 8), Q4_1
 * d * q + m, Q5_0 d * (q - 16), Q5_1 d * q + m, Q8_0 d * q, IQ4_NL
 * d * table[q].
 *
 * The dots follow the block contract of cpu_quant.h exactly (each block's
 * integer total exact in int32, one f32 chain updated with fmaf), so that the
 * SIMD kernels can be compared with them bit for bit.
 */
#include <math.h>
#include <string.h>

#include "quant_kernels.h"

const int8_t cq_iq4nl_values[16] = {-127, -104, -83, -65, -49, -35, -22, -10,
                                    1,    13,   25,  38,  53,  69,  89,  113};

/* The 32 weights of a block as integers (before scale and min). */
static void q4_ints(const uint8_t *qs, int off, int32_t w[32]) {
    for (int i = 0; i < 16; i++) {
        w[i] = (qs[i] & 0xF) - off;
        w[i + 16] = (qs[i] >> 4) - off;
    }
}

static void q5_ints(const uint8_t *qh4, const uint8_t *qs, int off, int32_t w[32]) {
    uint32_t qh;
    memcpy(&qh, qh4, 4);
    for (int i = 0; i < 16; i++) {
        w[i] = ((qs[i] & 0xF) | (int)(((qh >> i) & 1) << 4)) - off;
        w[i + 16] = ((qs[i] >> 4) | (int)(((qh >> (i + 16)) & 1) << 4)) - off;
    }
}

static void iq4_ints(const uint8_t *qs, int32_t w[32]) {
    for (int i = 0; i < 16; i++) {
        w[i] = cq_iq4nl_values[qs[i] & 0xF];
        w[i + 16] = cq_iq4nl_values[qs[i] >> 4];
    }
}

void cq_dequant_q4_0(const void *src, float *dst, int64_t n) {
    const cq_block_q4_0 *b = src;
    int32_t w[32];
    for (int64_t k = 0; k < n / 32; k++) {
        float d = cq_f16_to_f32(b[k].d);
        q4_ints(b[k].qs, 8, w);
        for (int i = 0; i < 32; i++) dst[k * 32 + i] = (float)w[i] * d;
    }
}

void cq_dequant_q4_1(const void *src, float *dst, int64_t n) {
    const cq_block_q4_1 *b = src;
    int32_t w[32];
    for (int64_t k = 0; k < n / 32; k++) {
        float d = cq_f16_to_f32(b[k].d), m = cq_f16_to_f32(b[k].m);
        q4_ints(b[k].qs, 0, w);
        for (int i = 0; i < 32; i++) dst[k * 32 + i] = (float)w[i] * d + m;
    }
}

void cq_dequant_q5_0(const void *src, float *dst, int64_t n) {
    const cq_block_q5_0 *b = src;
    int32_t w[32];
    for (int64_t k = 0; k < n / 32; k++) {
        float d = cq_f16_to_f32(b[k].d);
        q5_ints(b[k].qh, b[k].qs, 16, w);
        for (int i = 0; i < 32; i++) dst[k * 32 + i] = (float)w[i] * d;
    }
}

void cq_dequant_q5_1(const void *src, float *dst, int64_t n) {
    const cq_block_q5_1 *b = src;
    int32_t w[32];
    for (int64_t k = 0; k < n / 32; k++) {
        float d = cq_f16_to_f32(b[k].d), m = cq_f16_to_f32(b[k].m);
        q5_ints(b[k].qh, b[k].qs, 0, w);
        for (int i = 0; i < 32; i++) dst[k * 32 + i] = (float)w[i] * d + m;
    }
}

void cq_dequant_q8_0(const void *src, float *dst, int64_t n) {
    const cq_block_q8_0 *b = src;
    for (int64_t k = 0; k < n / 32; k++) {
        float d = cq_f16_to_f32(b[k].d);
        for (int i = 0; i < 32; i++) dst[k * 32 + i] = (float)b[k].qs[i] * d;
    }
}

void cq_dequant_iq4_nl(const void *src, float *dst, int64_t n) {
    const cq_block_iq4_nl *b = src;
    int32_t w[32];
    for (int64_t k = 0; k < n / 32; k++) {
        float d = cq_f16_to_f32(b[k].d);
        iq4_ints(b[k].qs, w);
        for (int i = 0; i < 32; i++) dst[k * 32 + i] = (float)w[i] * d;
    }
}

/* fma(d, sum of w[i] * x[i] over the block (exact in int32), acc) */
static float block_fma(float acc, float d, const int32_t w[32], const int8_t *x) {
    int32_t s = 0;
    for (int i = 0; i < 32; i++) s += w[i] * x[i];
    return fmaf(d, (float)s, acc);
}

float cq_dot_q4_0_scalar(const void *vw, const void *vx, int64_t n) {
    const cq_block_q4_0 *w = vw;
    const cq_block_q8_0 *x = vx;
    float acc = 0.0f;
    int32_t q[32];
    for (int64_t k = 0; k < n / 32; k++) {
        q4_ints(w[k].qs, 8, q);
        acc = block_fma(acc, cq_f16_to_f32(w[k].d) * cq_f16_to_f32(x[k].d), q, x[k].qs);
    }
    return acc;
}

float cq_dot_q4_1_scalar(const void *vw, const void *vx, int64_t n) {
    const cq_block_q4_1 *w = vw;
    const cq_block_q8_1 *x = vx;
    float acc = 0.0f, summ = 0.0f;
    int32_t q[32];
    for (int64_t k = 0; k < n / 32; k++) {
        q4_ints(w[k].qs, 0, q);
        acc = block_fma(acc, cq_f16_to_f32(w[k].d) * cq_f16_to_f32(x[k].d), q, x[k].qs);
        summ = fmaf(cq_f16_to_f32(w[k].m), cq_f16_to_f32(x[k].s), summ);
    }
    return acc + summ;
}

float cq_dot_q5_0_scalar(const void *vw, const void *vx, int64_t n) {
    const cq_block_q5_0 *w = vw;
    const cq_block_q8_0 *x = vx;
    float acc = 0.0f;
    int32_t q[32];
    for (int64_t k = 0; k < n / 32; k++) {
        q5_ints(w[k].qh, w[k].qs, 16, q);
        acc = block_fma(acc, cq_f16_to_f32(w[k].d) * cq_f16_to_f32(x[k].d), q, x[k].qs);
    }
    return acc;
}

float cq_dot_q5_1_scalar(const void *vw, const void *vx, int64_t n) {
    const cq_block_q5_1 *w = vw;
    const cq_block_q8_1 *x = vx;
    float acc = 0.0f, summ = 0.0f;
    int32_t q[32];
    for (int64_t k = 0; k < n / 32; k++) {
        q5_ints(w[k].qh, w[k].qs, 0, q);
        acc = block_fma(acc, cq_f16_to_f32(w[k].d) * cq_f16_to_f32(x[k].d), q, x[k].qs);
        summ = fmaf(cq_f16_to_f32(w[k].m), cq_f16_to_f32(x[k].s), summ);
    }
    return acc + summ;
}

float cq_dot_q8_0_scalar(const void *vw, const void *vx, int64_t n) {
    const cq_block_q8_0 *w = vw;
    const cq_block_q8_0 *x = vx;
    float acc = 0.0f;
    int32_t q[32];
    for (int64_t k = 0; k < n / 32; k++) {
        for (int i = 0; i < 32; i++) q[i] = w[k].qs[i];
        acc = block_fma(acc, cq_f16_to_f32(w[k].d) * cq_f16_to_f32(x[k].d), q, x[k].qs);
    }
    return acc;
}

float cq_dot_iq4_nl_scalar(const void *vw, const void *vx, int64_t n) {
    const cq_block_iq4_nl *w = vw;
    const cq_block_q8_0 *x = vx;
    float acc = 0.0f;
    int32_t q[32];
    for (int64_t k = 0; k < n / 32; k++) {
        iq4_ints(w[k].qs, q);
        acc = block_fma(acc, cq_f16_to_f32(w[k].d) * cq_f16_to_f32(x[k].d), q, x[k].qs);
    }
    return acc;
}
