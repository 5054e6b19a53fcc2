/* Tests for the quantized block types of worker/cpu (cpu_quant, quant_*):
 *  - dequantization of every type against a second, loop-style decoder
 *    written here after ggml's dequantize_row_* (exact);
 *  - each type's scalar dot against the f64 sum of dequantized weights times
 *    dequantized activations (tolerance: f32 accumulation only);
 *  - every SIMD level this CPU has (AVX2, AVX-512 VNNI) against the scalar
 *    kernel, bit for bit, on random blocks including extreme quants;
 *  - q8_1 / q8_K activation quantization against their definitions;
 *  - cpu_matmul on block types: equal to the dots, and batch invariant;
 *  - repacked weights (cq_rp_*, where this CPU has the kernels): the same
 *    bits as the dots (Q8_0: as the scalar path), every batch size.
 */
#include <criterion/criterion.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "cpu_ops.h"
#include "cpu_quant.h"
#include "herr.h"

static uint64_t rng_state = 1;
static void rng_seed(uint64_t s) { rng_state = s * 0x9e3779b97f4a7c15ull + 1; }
static uint32_t rng_u32(void) {
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return (uint32_t)(rng_state >> 16);
}
static float rng_f(void) { return (float)((double)rng_u32() / 2147483648.0 - 1.0); }

static const ggml_type qtypes[] = {GGML_T_Q4_0, GGML_T_Q4_1, GGML_T_Q5_0, GGML_T_Q5_1, GGML_T_Q8_0, GGML_T_IQ4_NL,
                                   GGML_T_Q2_K, GGML_T_Q3_K, GGML_T_Q4_K, GGML_T_Q5_K, GGML_T_Q6_K};
#define N_QTYPES (sizeof qtypes / sizeof qtypes[0])

static float h2f(uint16_t h) { return cq_f16_to_f32(h); }
static uint16_t f2h(float f) { return cq_f32_to_f16(f); }

/* Random blocks of type t for a row of n: random quant bytes, small positive
 * scales (f16 fields), sensible int8 scales for Q6_K. */
static void rand_row(ggml_type t, void *dst, int64_t n) {
    size_t bytes = ggml_row_size(t, n);
    uint8_t *p = dst;
    for (size_t i = 0; i < bytes; i++) p[i] = (uint8_t)rng_u32();
    int64_t nb = n / ggml_blck_size(t);
    for (int64_t k = 0; k < nb; k++) {
        float d = 0.001f + 0.02f * fabsf(rng_f()), m = 0.02f * rng_f();
        switch (t) {
        case GGML_T_Q4_0: ((cq_block_q4_0 *)dst)[k].d = f2h(d); break;
        case GGML_T_IQ4_NL: ((cq_block_iq4_nl *)dst)[k].d = f2h(d); break;
        case GGML_T_Q5_0: ((cq_block_q5_0 *)dst)[k].d = f2h(d); break;
        case GGML_T_Q4_1: ((cq_block_q4_1 *)dst)[k].d = f2h(d), ((cq_block_q4_1 *)dst)[k].m = f2h(m); break;
        case GGML_T_Q5_1: ((cq_block_q5_1 *)dst)[k].d = f2h(d), ((cq_block_q5_1 *)dst)[k].m = f2h(m); break;
        case GGML_T_Q8_0: {
            cq_block_q8_0 *b = &((cq_block_q8_0 *)dst)[k];
            b->d = f2h(d);
            if (k == 0) b->qs[0] = -128; /* the one value ggml never writes, still exact */
            break;
        }
        case GGML_T_Q2_K: ((cq_block_q2_K *)dst)[k].d = f2h(d), ((cq_block_q2_K *)dst)[k].dmin = f2h(fabsf(m)); break;
        case GGML_T_Q3_K: ((cq_block_q3_K *)dst)[k].d = f2h(d); break;
        case GGML_T_Q4_K: ((cq_block_q4_K *)dst)[k].d = f2h(d), ((cq_block_q4_K *)dst)[k].dmin = f2h(fabsf(m)); break;
        case GGML_T_Q5_K: ((cq_block_q5_K *)dst)[k].d = f2h(d), ((cq_block_q5_K *)dst)[k].dmin = f2h(fabsf(m)); break;
        case GGML_T_Q6_K: ((cq_block_q6_K *)dst)[k].d = f2h(d); break;
        default: break;
        }
    }
}

/* ---- a second decoder, in the loop shape of ggml's dequantize_row_* */

static void ref_dequant(ggml_type t, const void *src, float *y, int64_t n) {
    static const int8_t nl[16] = {-127, -104, -83, -65, -49, -35, -22, -10, 1, 13, 25, 38, 53, 69, 89, 113};
    for (int64_t k = 0; k < n / ggml_blck_size(t); k++) {
        switch (t) {
        case GGML_T_Q4_0: case GGML_T_Q4_1: case GGML_T_IQ4_NL: case GGML_T_Q5_0: case GGML_T_Q5_1: {
            const uint8_t *b = (const uint8_t *)src + k * ggml_type_size(t);
            float d = h2f((uint16_t)(b[0] | b[1] << 8)), m = 0;
            const uint8_t *qs = b + 2;
            uint32_t qh = 0;
            if (t == GGML_T_Q4_1 || t == GGML_T_Q5_1) m = h2f((uint16_t)(b[2] | b[3] << 8)), qs += 2;
            if (t == GGML_T_Q5_0 || t == GGML_T_Q5_1) memcpy(&qh, qs, 4), qs += 4;
            for (int j = 0; j < 16; j++) {
                int x0 = qs[j] & 0xF, x1 = qs[j] >> 4;
                if (t == GGML_T_Q5_0 || t == GGML_T_Q5_1) {
                    x0 |= ((qh >> j) << 4) & 0x10;
                    x1 |= ((qh >> (j + 12))) & 0x10;
                }
                float *o = y + k * 32;
                switch (t) {
                case GGML_T_Q4_0: o[j] = (x0 - 8) * d, o[j + 16] = (x1 - 8) * d; break;
                case GGML_T_Q5_0: o[j] = (x0 - 16) * d, o[j + 16] = (x1 - 16) * d; break;
                case GGML_T_IQ4_NL: o[j] = d * nl[x0], o[j + 16] = d * nl[x1]; break;
                default: o[j] = x0 * d + m, o[j + 16] = x1 * d + m; break;
                }
            }
            break;
        }
        case GGML_T_Q8_0: {
            const cq_block_q8_0 *b = (const cq_block_q8_0 *)src + k;
            for (int j = 0; j < 32; j++) y[k * 32 + j] = b->qs[j] * h2f(b->d);
            break;
        }
        case GGML_T_Q2_K: {
            const cq_block_q2_K *b = (const cq_block_q2_K *)src + k;
            float d = h2f(b->d), mn = h2f(b->dmin), *o = y + k * 256;
            const uint8_t *q = b->qs;
            int is = 0;
            for (int nn = 0; nn < 256; nn += 128, q += 32)
                for (int shift = 0; shift < 8; shift += 2)
                    for (int half = 0; half < 2; half++) {
                        uint8_t sc = b->scales[is++];
                        float dl = d * (sc & 0xF), ml = mn * (sc >> 4);
                        for (int l = 0; l < 16; l++) *o++ = dl * ((q[l + 16 * half] >> shift) & 3) - ml;
                    }
            break;
        }
        case GGML_T_Q3_K: {
            const cq_block_q3_K *b = (const cq_block_q3_K *)src + k;
            uint32_t aux[4], tmp;
            memcpy(aux, b->scales, 12);
            tmp = aux[2];
            aux[2] = ((aux[0] >> 4) & 0x0f0f0f0f) | (((tmp >> 4) & 0x03030303) << 4);
            aux[3] = ((aux[1] >> 4) & 0x0f0f0f0f) | (((tmp >> 6) & 0x03030303) << 4);
            aux[0] = (aux[0] & 0x0f0f0f0f) | (((tmp >> 0) & 0x03030303) << 4);
            aux[1] = (aux[1] & 0x0f0f0f0f) | (((tmp >> 2) & 0x03030303) << 4);
            const int8_t *sc = (const int8_t *)aux;
            float d = h2f(b->d), *o = y + k * 256;
            const uint8_t *q = b->qs;
            uint8_t mbit = 1;
            int is = 0;
            for (int nn = 0; nn < 256; nn += 128, q += 32)
                for (int shift = 0; shift < 8; shift += 2, mbit <<= 1)
                    for (int half = 0; half < 2; half++) {
                        float dl = d * (sc[is++] - 32);
                        for (int l = 16 * half; l < 16 * half + 16; l++)
                            *o++ = dl * (((q[l] >> shift) & 3) - ((b->hmask[l] & mbit) ? 0 : 4));
                    }
            break;
        }
        case GGML_T_Q4_K: case GGML_T_Q5_K: {
            const uint8_t *base = (const uint8_t *)src + k * ggml_type_size(t);
            const uint8_t *scales = base + 4, *qh = base + 16;
            const uint8_t *q = t == GGML_T_Q4_K ? base + 16 : base + 48;
            float d = h2f((uint16_t)(base[0] | base[1] << 8)), mn = h2f((uint16_t)(base[2] | base[3] << 8));
            float *o = y + k * 256;
            uint8_t u1 = 1, u2 = 2;
            for (int j = 0, is = 0; j < 256; j += 64, q += 32, is += 2, u1 <<= 2, u2 <<= 2) {
                int sc[2], m[2];
                for (int h = 0; h < 2; h++) {
                    int jj = is + h;
                    if (jj < 4) sc[h] = scales[jj] & 63, m[h] = scales[jj + 4] & 63;
                    else sc[h] = (scales[jj + 4] & 0xF) | ((scales[jj - 4] >> 6) << 4),
                    m[h] = (scales[jj + 4] >> 4) | ((scales[jj] >> 6) << 4);
                }
                int h5 = t == GGML_T_Q5_K;
                for (int l = 0; l < 32; l++) *o++ = d * sc[0] * ((q[l] & 0xF) + (h5 && (qh[l] & u1) ? 16 : 0)) - mn * m[0];
                for (int l = 0; l < 32; l++) *o++ = d * sc[1] * ((q[l] >> 4) + (h5 && (qh[l] & u2) ? 16 : 0)) - mn * m[1];
            }
            break;
        }
        case GGML_T_Q6_K: {
            const cq_block_q6_K *b = (const cq_block_q6_K *)src + k;
            float d = h2f(b->d), *o = y + k * 256;
            const uint8_t *ql = b->ql, *qh = b->qh;
            const int8_t *sc = b->scales;
            for (int nn = 0; nn < 256; nn += 128, o += 128, ql += 64, qh += 32, sc += 8)
                for (int l = 0; l < 32; l++) {
                    int is = l / 16;
                    o[l] = d * sc[is] * (((ql[l] & 0xF) | ((qh[l] & 3) << 4)) - 32);
                    o[l + 32] = d * sc[is + 2] * (((ql[l + 32] & 0xF) | (((qh[l] >> 2) & 3) << 4)) - 32);
                    o[l + 64] = d * sc[is + 4] * (((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) - 32);
                    o[l + 96] = d * sc[is + 6] * (((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) - 32);
                }
            break;
        }
        default: cr_assert_fail("type %d", t);
        }
    }
}

#define N 1024 /* 4 super-blocks, 32 small blocks */

Test(quant, dequant_matches_loop_decoder) {
    rng_seed(1);
    static uint8_t w[N * 2];
    static float a[N], b[N];
    for (size_t i = 0; i < N_QTYPES; i++)
        for (int rep = 0; rep < 4; rep++) {
            rand_row(qtypes[i], w, N);
            cq_dequant_row(qtypes[i], w, a, N);
            ref_dequant(qtypes[i], w, b, N);
            for (int e = 0; e < N; e++)
                cr_assert(fabsf(a[e] - b[e]) <= 1e-6f * fabsf(b[e]), "%s element %d: %g vs %g",
                          ggml_type_name(qtypes[i]), e, a[e], b[e]);
        }
}

Test(quant, q8_1_and_q8_K_follow_their_definitions) {
    rng_seed(2);
    float x[N];
    for (int i = 0; i < N; i++) x[i] = rng_f() * (i % 7 ? 1.0f : 5.0f);
    cq_block_q8_1 b1[N / 32];
    cq_block_q8_0 b0[N / 32];
    cq_quantize_row_q8_1(x, b1, N);
    cq_quantize_row_q8_0(x, b0, N);
    for (int k = 0; k < N / 32; k++) {
        cr_assert_eq(b1[k].d, b0[k].d);
        cr_assert_eq(memcmp(b1[k].qs, b0[k].qs, 32), 0);
        int s = 0;
        float amax = 0;
        for (int j = 0; j < 32; j++) s += b1[k].qs[j], amax = fmaxf(amax, fabsf(x[32 * k + j]));
        cr_assert_eq(b1[k].s, f2h(amax / 127.f * (float)s), "block %d", k);
    }
    /* block 1: its largest magnitude twice, negative first (the first one
     * sets the scale's sign); block 2: all zero */
    x[256 + 40] = -7.5f, x[256 + 200] = 7.5f;
    for (int j = 512; j < 768; j++) x[j] = 0.0f;
    cq_block_q8_K bk[N / 256];
    cq_quantize_row_q8_K(x, bk, N);
    cr_assert(bk[1].d > 0.0f && bk[1].qs[40] == -127 && bk[1].qs[200] == 127, "d %g", bk[1].d);
    cr_assert(bk[2].d == 0.0f && bk[2].qs[0] == 0 && bk[2].bsums[15] == 0);
    for (int k = 0; k < N / 256; k++) {
        const float *xb = x + k * 256;
        float amax = 0, max = 0;
        for (int j = 0; j < 256; j++)
            if (fabsf(xb[j]) > amax) amax = fabsf(xb[j]), max = xb[j];
        if (amax == 0.0f) continue;
        float iscale = -127.f / max;
        cr_assert_eq(bk[k].d, 1.0f / iscale);
        for (int j = 0; j < 256; j++) {
            float v = nearbyintf(iscale * xb[j]);
            cr_assert_eq(bk[k].qs[j], (int8_t)(v > 127 ? 127 : v), "block %d elem %d", k, j);
            cr_assert(bk[k].qs[j] >= -127 && bk[k].qs[j] <= 127);
        }
        for (int g = 0; g < 16; g++) {
            int s = 0;
            for (int j = 0; j < 16; j++) s += bk[k].qs[16 * g + j];
            cr_assert_eq(bk[k].bsums[g], s);
        }
    }
}

/* Activation x (n) in type t's dot format. */
static void *quant_act(ggml_type t, const float *x, int64_t n) {
    void *q = malloc(cq_act_row_bytes(t, n));
    cq_quantize_act_row(t, x, q, n);
    return q;
}

Test(quant, scalar_dot_equals_dequantized_sum) {
    rng_seed(3);
    static uint8_t w[N * 2];
    float x[N], wd[N], xd[N];
    for (size_t i = 0; i < N_QTYPES; i++) {
        ggml_type t = qtypes[i];
        for (int rep = 0; rep < 8; rep++) {
            rand_row(t, w, N);
            for (int e = 0; e < N; e++) x[e] = rng_f();
            void *xq = quant_act(t, x, N);
            cq_dequant_row(t, w, wd, N);
            cq_dequant_row(cq_dot_type(t), xq, xd, N);
            double ref = 0, mag = 0;
            for (int e = 0; e < N; e++) ref += (double)wd[e] * xd[e], mag += fabs((double)wd[e] * xd[e]);
            float got = cq_dot(t, CQ_SCALAR)(w, xq, N);
            /* only the f32 scale products and the f32 chains differ from f64,
             * plus q8_1's f16 s and q8_K's d = 1/iscale */
            cr_assert(fabs(got - ref) <= 2e-3 * mag + 1e-6, "%s rep %d: %g vs %g (mag %g)", ggml_type_name(t), rep,
                      got, ref, mag);
            free(xq);
        }
    }
}

Test(quant, every_simd_level_matches_scalar_bit_for_bit) {
    rng_seed(4);
    cq_level best = cq_level_best();
    cr_log_info("cpu level: %s", cq_level_name(best));
    static uint8_t w[N * 2];
    float x[N];
    for (size_t i = 0; i < N_QTYPES; i++) {
        ggml_type t = qtypes[i];
        for (int rep = 0; rep < 50; rep++) {
            int64_t n = rep % 2 ? N : ggml_blck_size(t) * (1 + rep % 4);
            rand_row(t, w, n);
            float big = rep % 3 == 0 ? 1000.0f : 1.0f;
            for (int e = 0; e < n; e++) x[e] = rng_f() * (e % 13 ? 1.0f : big);
            if (rep == 7) memset(x, 0, sizeof x); /* zero activations: zero scales */
            void *xq = quant_act(t, x, n);
            float ref = cq_dot(t, CQ_SCALAR)(w, xq, n);
            for (int l = CQ_AVX2; l <= (int)best; l++) {
                float got = cq_dot(t, (cq_level)l)(w, xq, n);
                cr_assert_eq(memcmp(&got, &ref, 4), 0, "%s at %s, n %lld: %a vs scalar %a", ggml_type_name(t),
                             cq_level_name((cq_level)l), (long long)n, got, ref);
            }
            free(xq);
            /* tiles: CQ_TILE rows at once, each with its single dot's bits */
            size_t xs = cq_act_row_bytes(t, n);
            uint8_t *xt = malloc(xs * CQ_TILE);
            float want[CQ_TILE];
            for (int c = 0; c < CQ_TILE; c++) {
                for (int e = 0; e < n; e++) x[e] = rng_f() * (c == 2 && e % 5 == 0 ? big : 1.0f);
                cq_quantize_act_row(t, x, xt + c * xs, n);
                want[c] = cq_dot(t, CQ_SCALAR)(w, xt + c * xs, n);
            }
            for (int l = CQ_AVX2; l <= (int)best; l++) {
                cq_tile_fn tile = cq_tile(t, (cq_level)l);
                if (!tile) continue;
                float got[CQ_TILE];
                tile(w, xt, xs, n, got);
                cr_assert_eq(memcmp(got, want, sizeof got), 0, "%s tile at %s", ggml_type_name(t),
                             cq_level_name((cq_level)l));
            }
            free(xt);
        }
    }
}

/* cpu_matmul on each block type: every output equals the dot of its row and
 * column, whatever the batch size, threads or forced scalar path. */
Test(quant, matmul_is_the_dot_and_batch_invariant) {
    rng_seed(5);
    const int64_t in = 512, out = 37, nb = 13;
    uint8_t *w = malloc(ggml_row_size(GGML_T_Q4_0, in) * 4 * out);
    float *x = malloc(sizeof(float) * in * nb), *y = malloc(sizeof(float) * out * nb);
    float *y1 = malloc(sizeof(float) * out);
    for (int64_t e = 0; e < in * nb; e++) x[e] = rng_f();
    for (size_t i = 0; i < N_QTYPES; i++) {
        ggml_type t = qtypes[i];
        if (t == GGML_T_Q8_0) continue; /* has its own kernels (test_cpu_ops) */
        size_t rb = ggml_row_size(t, in);
        for (int64_t r = 0; r < out; r++) rand_row(t, w + r * rb, in);
        cpu_mat m = {.type = t, .in = in, .out = out, .row_bytes = rb, .data = w};
        for (int nth = 1; nth <= 2; nth++)
            for (int scalar = 0; scalar <= 1; scalar++) {
                cpu_ctx_t *c = cpu_ctx_new(nth);
                cpu_ctx_set_scalar(c, scalar);
                cpu_act a = {0};
                cr_assert_eq(cpu_act_prepare(c, &a, t, x, nb, in), 0, "%s", he_msg());
                cpu_mm job = {.w = &m, .y = y, .ldy = out};
                cr_assert_eq(cpu_matmul(c, &a, &job, 1), 0);
                for (int64_t b = 0; b < nb; b++) {
                    void *xq = quant_act(t, x + b * in, in);
                    for (int64_t r = 0; r < out; r++) {
                        float want = cq_dot(t, scalar ? CQ_SCALAR : cq_level_best())(w + r * rb, xq, in);
                        cr_assert_eq(memcmp(&y[b * out + r], &want, 4), 0, "%s b %lld r %lld", ggml_type_name(t),
                                     (long long)b, (long long)r);
                    }
                    free(xq);
                    /* the same row alone */
                    cpu_act a1 = {0};
                    cr_assert_eq(cpu_act_prepare(c, &a1, t, x + b * in, 1, in), 0);
                    cpu_mm j1 = {.w = &m, .y = y1, .ldy = out};
                    cr_assert_eq(cpu_matmul(c, &a1, &j1, 1), 0);
                    cr_assert_eq(memcmp(y1, y + b * out, sizeof(float) * out), 0, "%s row %lld alone",
                                 ggml_type_name(t), (long long)b);
                    cpu_act_free(&a1);
                }
                cpu_act_free(&a);
                cpu_ctx_destroy(&c);
            }
    }
    free(w), free(x), free(y), free(y1);
}

/* Repacked weights: cpu_matmul over rows repacked 16 at a time (out not a
 * multiple of 16: a padded last group) gives, for every batch size and
 * thread count, the bits of the dot of each row and column (for Q8_0: of the
 * scalar path, whose chain the kernel follows), with bias and accumulate. */
Test(quant, repacked_matmul_has_the_dot_bits) {
    rng_seed(6);
    const ggml_type rtypes[] = {GGML_T_Q4_0, GGML_T_Q4_1, GGML_T_Q5_0, GGML_T_Q5_1, GGML_T_Q8_0, GGML_T_Q4_K, GGML_T_Q6_K};
    const int64_t in = 512, out = 45, nbmax = 11;
    uint8_t *w = malloc(ggml_row_size(GGML_T_Q8_0, in) * out);
    float *x = malloc(sizeof(float) * in * nbmax), *bias = malloc(sizeof(float) * out);
    float *y = malloc(sizeof(float) * out * nbmax), *want = malloc(sizeof(float) * out * nbmax);
    for (int64_t e = 0; e < in * nbmax; e++) x[e] = rng_f() * (e % 7 ? 1.0f : 50.0f);
    for (int64_t r = 0; r < out; r++) bias[r] = rng_f();
    if (!cq_rp_kernel(GGML_T_Q5_0, cq_level_best())) cr_log_info("no repacked kernels at %s: checks the fallback", cq_level_name(cq_level_best()));
    for (size_t i = 0; i < sizeof rtypes / sizeof rtypes[0]; i++) {
        ggml_type t = rtypes[i];
        size_t rb = ggml_row_size(t, in);
        for (int64_t r = 0; r < out; r++) rand_row(t, w + r * rb, in);
        cpu_mat plain = {.type = t, .in = in, .out = out, .row_bytes = rb, .data = w};
        cpu_mat m = plain;
        cr_assert_eq(cpu_mat_repack(&m), 0);
        cr_assert_eq(m.rp != NULL, cq_rp_kernel(t, cq_level_best()) != NULL, "%s", ggml_type_name(t));
        for (int64_t nb = 1; nb <= nbmax; nb += 3)
            for (int nth = 1; nth <= 2; nth++) {
                cpu_ctx_t *ref = cpu_ctx_new(1), *c = cpu_ctx_new(nth);
                if (t == GGML_T_Q8_0) cpu_ctx_set_scalar(ref, true);
                cpu_act a = {0}, ar = {0};
                cr_assert_eq(cpu_act_prepare(ref, &ar, t, x, nb, in), 0);
                cr_assert_eq(cpu_act_prepare(c, &a, t, x, nb, in), 0);
                for (int64_t e = 0; e < out * nb; e++) want[e] = y[e] = (float)e;
                cpu_mm jr = {.w = &plain, .y = want, .ldy = out, .bias = bias, .accumulate = true};
                cpu_mm j = {.w = &m, .y = y, .ldy = out, .bias = bias, .accumulate = true};
                cr_assert_eq(cpu_matmul(ref, &ar, &jr, 1), 0);
                cr_assert_eq(cpu_matmul(c, &a, &j, 1), 0);
                for (int64_t e = 0; e < out * nb; e++)
                    cr_assert_eq(memcmp(&y[e], &want[e], 4), 0, "%s batch %lld threads %d: row %lld col %lld: %a vs %a",
                                 ggml_type_name(t), (long long)nb, nth, (long long)(e % out), (long long)(e / out),
                                 y[e], want[e]);
                cpu_act_free(&a);
                cpu_act_free(&ar);
                cpu_ctx_destroy(&ref);
                cpu_ctx_destroy(&c);
            }
        cpu_mat_release(&m);
        cr_assert_null(m.rp);
    }
    free(w), free(x), free(bias), free(y), free(want);
}

Test(quant, bad_row_length_is_refused) {
    cpu_ctx_t *c = cpu_ctx_new(1);
    cpu_act a = {0};
    float x[300] = {0};
    cr_assert_eq(cpu_act_prepare(c, &a, GGML_T_Q4_K, x, 1, 288), HE_EINVAL);
    cr_assert(strstr(he_msg(), "Q4_K"), "%s", he_msg());
    cr_assert_eq(cpu_act_prepare(c, &a, GGML_T_Q4_0, x, 1, 48), HE_EINVAL);
    cr_assert_eq(ggml_row_size(GGML_T_Q6_K, 300), 0);
    cr_assert_eq(ggml_row_size(GGML_T_Q6_K, 512), 420);
    cpu_act_free(&a);
    cpu_ctx_destroy(&c);
}
