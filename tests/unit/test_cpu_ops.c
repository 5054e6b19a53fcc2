/* Tests for worker/cpu kernels (cpu_ops, cpu_quant): each kernel against a
 * naive scalar reference written here, with a tolerance, over all weight types,
 * odd sizes and batch sizes 1..17, through the SIMD small-batch path, the
 * forced scalar path and the sgemm path. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "cpu_ops.h"
#include "cpu_quant.h"
#include "herr.h"

static uint64_t rng_state = 0x9e3779b97f4a7c15ull;
static void rng_seed(uint64_t s) { rng_state = s * 0x9e3779b97f4a7c15ull + 1; }
static uint32_t rng_u32(void) {
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return (uint32_t)(rng_state >> 16);
}
/* uniform in [-1, 1) */
static float rng_f(void) { return (float)((double)rng_u32() / 2147483648.0 - 1.0); }
static void fill(float *x, int64_t n, float scale) {
    for (int64_t i = 0; i < n; i++) x[i] = rng_f() * scale;
}

/* ---------------------------------------------------------------- references */

static double ref_f16_to_f64(uint16_t h) {
    int s = h >> 15, e = (h >> 10) & 31, m = h & 1023;
    double v;
    if (e == 0) v = ldexp((double)m, -24);
    else if (e == 31) v = m ? NAN : INFINITY;
    else v = ldexp(1024.0 + m, e - 25);
    return s ? -v : v;
}

/* ggml's q8_0 activation quantization, naively. */
static float ref_quant_block(const float *x, int8_t *q) {
    float amax = 0;
    for (int i = 0; i < 32; i++) amax = fmaxf(amax, fabsf(x[i]));
    float d = amax / 127.f, id = amax != 0 ? 127.f / amax : 0.f;
    for (int i = 0; i < 32; i++) {
        float v = x[i] * id;
        float r = floorf(v);
        float diff = v - r;
        if (diff > 0.5f || (diff == 0.5f && fmodf(r, 2.0f) != 0.0f)) r += 1.0f;
        q[i] = (int8_t)r;
    }
    return d;
}

/* The f32 values a dot product with weights of type t multiplies x by. */
static void ref_act(ggml_type t, const float *x, float *y, int64_t n) {
    for (int64_t i = 0; i < n; i++) {
        if (t == GGML_T_F16) y[i] = (float)ref_f16_to_f64(cq_f32_to_f16(x[i]));
        else if (t == GGML_T_BF16) y[i] = cq_bf16_to_f32(cq_f32_to_bf16(x[i]));
        else y[i] = x[i];
    }
    if (t == GGML_T_Q8_0)
        for (int64_t k = 0; k < n / 32; k++) {
            int8_t q[32];
            float d = (float)ref_f16_to_f64(cq_f32_to_f16(ref_quant_block(x + k * 32, q)));
            for (int i = 0; i < 32; i++) y[k * 32 + i] = (float)q[i] * d;
        }
}

/* Builds a weight matrix (out, in) of type t from random values; returns the
 * packed data and writes the dequantized values to wf (out * in). */
static void *make_weights(ggml_type t, int64_t in, int64_t out, float *wf, size_t *row_bytes) {
    size_t rb = ggml_row_size(t, in);
    uint8_t *data = malloc(rb * (size_t)out);
    cr_assert(data);
    float *tmp = malloc(sizeof(float) * (size_t)in);
    for (int64_t r = 0; r < out; r++) {
        fill(tmp, in, 1.0f);
        uint8_t *row = data + (size_t)r * rb;
        for (int64_t k = 0; k < in; k++) {
            if (t == GGML_T_F32) memcpy(row + 4 * k, &tmp[k], 4);
            if (t == GGML_T_F16) {
                uint16_t h = cq_f32_to_f16(tmp[k]);
                memcpy(row + 2 * k, &h, 2);
            }
            if (t == GGML_T_BF16) {
                uint16_t h = cq_f32_to_bf16(tmp[k]);
                memcpy(row + 2 * k, &h, 2);
            }
        }
        if (t == GGML_T_Q8_0) cq_quantize_row_q8_0(tmp, (cq_block_q8_0 *)row, in);
        /* reference dequantization, naively */
        for (int64_t k = 0; k < in; k++) {
            float v = 0;
            if (t == GGML_T_F32) memcpy(&v, row + 4 * k, 4);
            if (t == GGML_T_F16) {
                uint16_t h;
                memcpy(&h, row + 2 * k, 2);
                v = (float)ref_f16_to_f64(h);
            }
            if (t == GGML_T_BF16) {
                uint16_t h;
                memcpy(&h, row + 2 * k, 2);
                uint32_t u = (uint32_t)h << 16;
                memcpy(&v, &u, 4);
            }
            if (t == GGML_T_Q8_0) {
                const uint8_t *blk = row + (k / 32) * 34;
                uint16_t h;
                memcpy(&h, blk, 2);
                v = (float)((int8_t)blk[2 + k % 32] * ref_f16_to_f64(h));
            }
            wf[r * in + k] = v;
        }
    }
    free(tmp);
    *row_bytes = rb;
    return data;
}

/* ---------------------------------------------------------------- conversions */

Test(cpu_ops, f16_all_values_round_trip) {
    for (uint32_t h = 0; h < 65536; h++) {
        double v = ref_f16_to_f64((uint16_t)h);
        float f = cq_f16_to_f32((uint16_t)h);
        if (isnan(v)) {
            cr_assert(isnan(f), "h=%04x", h);
            continue;
        }
        cr_assert_eq((double)f, v, "f16 %04x -> %g, want %g", h, f, v);
        cr_assert_eq(cq_f32_to_f16(f), h, "f32 %g -> %04x, want %04x", f, cq_f32_to_f16(f), h);
    }
}

Test(cpu_ops, f16_rounds_to_nearest_even) {
    /* midpoints between consecutive positive halves round to the even one */
    for (uint32_t h = 0; h < 0x7bff; h++) {
        double mid = (ref_f16_to_f64((uint16_t)h) + ref_f16_to_f64((uint16_t)(h + 1))) / 2;
        uint16_t want = (h & 1) ? (uint16_t)(h + 1) : (uint16_t)h;
        cr_assert_eq(cq_f32_to_f16((float)mid), want, "mid of %04x", h);
        cr_assert_eq(cq_f32_to_f16(-(float)mid), want | 0x8000, "mid of -%04x", h);
    }
    cr_assert_eq(cq_f32_to_f16(65520.0f), 0x7c00);   /* rounds up to inf */
    cr_assert_eq(cq_f32_to_f16(65519.0f), 0x7bff);
    cr_assert_eq(cq_f32_to_f16(1e-9f), 0);
    /* random floats: the result is a nearest half */
    rng_seed(1);
    for (int i = 0; i < 100000; i++) {
        float f = rng_f() * (float)ldexp(1.0, (int)(rng_u32() % 36) - 26);
        uint16_t h = cq_f32_to_f16(f);
        double e = fabs(ref_f16_to_f64(h) - f);
        double e1 = fabs(ref_f16_to_f64((uint16_t)(h + 1)) - f);
        double e0 = (h & 0x7fff) ? fabs(ref_f16_to_f64((uint16_t)(h - 1)) - f) : INFINITY;
        cr_assert(e <= e1 && e <= e0, "f=%g -> %04x", f, h);
    }
}

Test(cpu_ops, bf16_rounds_to_nearest_even) {
    rng_seed(2);
    for (int i = 0; i < 100000; i++) {
        float f = rng_f() * (float)ldexp(1.0, (int)(rng_u32() % 60) - 30);
        uint16_t h = cq_f32_to_bf16(f);
        uint32_t u;
        memcpy(&u, &f, 4);
        uint32_t lo = u & 0xffff, up = u >> 16;
        uint16_t want = (uint16_t)(lo > 0x8000 || (lo == 0x8000 && (up & 1)) ? up + 1 : up);
        cr_assert_eq(h, want, "f=%g u=%08x", f, u);
    }
    cr_assert(isnan(cq_bf16_to_f32(cq_f32_to_bf16(NAN))));
}

Test(cpu_ops, q8_0_quantization_matches_reference) {
    rng_seed(3);
    enum { N = 32 * 37 };
    float x[N];
    fill(x, N, 3.0f);
    memset(x + 64, 0, 32 * sizeof(float)); /* an all-zero block */
    x[100] = 1e-30f;
    int8_t qs[N];
    float qd[N / 32];
    cq_block_q8_0 blk[N / 32];
    cq_quantize_act_q8_0(x, qs, qd, N);
    cq_quantize_row_q8_0(x, blk, N);
    for (int k = 0; k < N / 32; k++) {
        int8_t q[32];
        float d = ref_quant_block(x + k * 32, q);
        cr_assert_eq(blk[k].d, cq_f32_to_f16(d), "block %d", k);
        cr_assert_eq(qd[k], (float)ref_f16_to_f64(cq_f32_to_f16(d)), "block %d", k);
        cr_assert(!memcmp(q, qs + k * 32, 32), "block %d quants", k);
        cr_assert(!memcmp(q, blk[k].qs, 32), "block %d packed quants", k);
    }
    /* dequantization round trip stays within half a step */
    float y[N];
    cq_dequant_row(GGML_T_Q8_0, blk, y, N);
    for (int i = 0; i < N; i++) {
        float d = (float)ref_f16_to_f64(blk[i / 32].d);
        /* half a step, plus the f16 rounding of d times up to 127 */
        cr_assert(fabsf(y[i] - x[i]) <= 0.5f * d + 127.f * d / 2048.f + 1e-30f, "i=%d %g vs %g", i, y[i], x[i]);
    }
}

Test(cpu_ops, dequant_rows_match_reference) {
    const ggml_type types[] = {GGML_T_F32, GGML_T_F16, GGML_T_BF16, GGML_T_Q8_0};
    rng_seed(4);
    for (int ti = 0; ti < 4; ti++) {
        int64_t in = types[ti] == GGML_T_Q8_0 ? 96 : 45;
        float wf[3 * 96], y[96];
        size_t rb;
        uint8_t *w = make_weights(types[ti], in, 3, wf, &rb);
        for (int r = 0; r < 3; r++) {
            cq_dequant_row(types[ti], w + r * rb, y, in);
            for (int64_t k = 0; k < in; k++) cr_assert_eq(y[k], wf[r * in + k], "type %d r %d k %lld", ti, r, (long long)k);
        }
        free(w);
    }
}

/* ---------------------------------------------------------------- matmul */

typedef enum { PATH_DEFAULT, PATH_SCALAR, PATH_GEMM } mm_path;

static void check_matmul(cpu_ctx_t *c, ggml_type t, int64_t in, int64_t out, int64_t n, mm_path path,
                         bool bias, bool accumulate) {
    float *wf = malloc(sizeof(float) * (size_t)(in * out));
    size_t rb;
    void *w = make_weights(t, in, out, wf, &rb);
    cpu_mat m = {.type = t, .in = in, .out = out, .row_bytes = rb, .data = w};
    float *x = malloc(sizeof(float) * (size_t)(n * in)), *xa = malloc(sizeof(float) * (size_t)(n * in));
    fill(x, n * in, 2.0f);
    for (int64_t b = 0; b < n; b++) ref_act(t, x + b * in, xa + b * in, in);
    const int64_t ldy = out + 3;
    float *y = malloc(sizeof(float) * (size_t)(n * ldy)), *y0 = malloc(sizeof(float) * (size_t)(n * ldy));
    fill(y0, n * ldy, 1.0f);
    memcpy(y, y0, sizeof(float) * (size_t)(n * ldy));
    float *bv = malloc(sizeof(float) * (size_t)out);
    fill(bv, out, 0.5f);

    cpu_ctx_set_scalar(c, path == PATH_SCALAR);
    cpu_ctx_set_gemm_min(c, path == PATH_GEMM ? 1 : path == PATH_SCALAR ? 1000000 : 0);
    cpu_act a = {0};
    cr_assert_eq(cpu_act_prepare(c, &a, t, x, n, in), 0, "%s", he_msg());
    cpu_mm job = {.w = &m, .y = y, .ldy = ldy, .bias = bias ? bv : NULL, .accumulate = accumulate};
    cr_assert_eq(cpu_matmul(c, &a, &job, 1), 0, "%s", he_msg());
    for (int64_t b = 0; b < n; b++)
        for (int64_t r = 0; r < ldy; r++) {
            float got = y[b * ldy + r];
            if (r >= out) {
                cr_assert_eq(got, y0[b * ldy + r], "column %lld past out was written", (long long)r);
                continue;
            }
            double s = 0, mag = 0;
            for (int64_t k = 0; k < in; k++) {
                s += (double)wf[r * in + k] * xa[b * in + k];
                mag += fabs((double)wf[r * in + k] * xa[b * in + k]);
            }
            if (bias) s += bv[r], mag += fabs(bv[r]);
            if (accumulate) s += y0[b * ldy + r], mag += fabs(y0[b * ldy + r]);
            double tol = 2e-6 * mag + 1e-6;
            cr_assert(fabs(got - s) <= tol, "type %d in %lld out %lld n %lld path %d: y[%lld,%lld] = %.7g, want %.7g",
                      (int)t, (long long)in, (long long)out, (long long)n, (int)path, (long long)b, (long long)r,
                      got, s);
        }
    cpu_act_free(&a);
    cpu_ctx_set_scalar(c, false);
    cpu_ctx_set_gemm_min(c, 0);
    free(wf); free(w); free(x); free(xa); free(y); free(y0); free(bv);
}

static void matmul_type(ggml_type t) {
    cpu_ctx_t *c = cpu_ctx_new(2);
    cr_assert(c);
    rng_seed(10 + (uint64_t)t);
    const int64_t ins_f[] = {1, 7, 8, 33, 100, 257};
    const int64_t ins_q[] = {32, 96, 256};
    const int64_t outs[] = {1, 5, 37};
    const bool q = t == GGML_T_Q8_0;
    const int n_in = q ? 3 : 6;
    for (int ii = 0; ii < n_in; ii++)
        for (int oi = 0; oi < 3; oi++)
            for (int64_t n = 1; n <= 17; n++)
                for (int p = 0; p < 3; p++) {
                    /* cover everything at one size, and the cheap paths widely */
                    bool full = (ii == n_in - 1 && oi == 2) || n <= 5 || n == 17;
                    if (!full && p != PATH_DEFAULT) continue;
                    check_matmul(c, t, q ? ins_q[ii] : ins_f[ii], outs[oi], n, (mm_path)p, (n + oi) % 2 == 0,
                                 (n + ii) % 3 == 0);
                }
    /* a wide matrix through every path at the batch sizes where tiles change */
    for (int p = 0; p < 3; p++)
        for (int64_t n = 1; n <= 9; n += 4) check_matmul(c, t, q ? 512 : 513, 300, n, (mm_path)p, true, true);
    cpu_ctx_destroy(&c);
    cr_assert_null(c);
}

Test(cpu_ops, matmul_f32) { matmul_type(GGML_T_F32); }
Test(cpu_ops, matmul_f16) { matmul_type(GGML_T_F16); }
Test(cpu_ops, matmul_bf16) { matmul_type(GGML_T_BF16); }
Test(cpu_ops, matmul_q8_0) { matmul_type(GGML_T_Q8_0); }

Test(cpu_ops, matmul_fused_jobs_and_threads) {
    /* three jobs of different widths in one call, at 1 and 3 threads */
    rng_seed(20);
    for (int nth = 1; nth <= 3; nth += 2) {
        cpu_ctx_t *c = cpu_ctx_new(nth);
        const int64_t in = 64, n = 6, outs[3] = {70, 16, 16};
        float *wf[3];
        void *w[3];
        cpu_mat m[3];
        float *y[3];
        for (int j = 0; j < 3; j++) {
            wf[j] = malloc(sizeof(float) * (size_t)(in * outs[j]));
            size_t rb;
            w[j] = make_weights(GGML_T_F16, in, outs[j], wf[j], &rb);
            m[j] = (cpu_mat){GGML_T_F16, in, outs[j], rb, w[j], NULL};
            y[j] = malloc(sizeof(float) * (size_t)(n * outs[j]));
        }
        float x[6 * 64], xa[6 * 64];
        fill(x, n * in, 1.0f);
        ref_act(GGML_T_F16, x, xa, n * in);
        for (int gemm = 0; gemm < 2; gemm++) {
            cpu_ctx_set_gemm_min(c, gemm ? 1 : 0);
            cpu_act a = {0};
            cr_assert_eq(cpu_act_prepare(c, &a, GGML_T_F16, x, n, in), 0);
            cpu_mm jobs[3];
            for (int j = 0; j < 3; j++) jobs[j] = (cpu_mm){&m[j], y[j], outs[j], NULL, false};
            cr_assert_eq(cpu_matmul(c, &a, jobs, 3), 0);
            for (int j = 0; j < 3; j++)
                for (int64_t b = 0; b < n; b++)
                    for (int64_t r = 0; r < outs[j]; r++) {
                        double s = 0;
                        for (int64_t k = 0; k < in; k++) s += (double)wf[j][r * in + k] * xa[b * in + k];
                        cr_assert(fabs(y[j][b * outs[j] + r] - s) <= 1e-5 * (1 + fabs(s)), "job %d", j);
                    }
            cpu_act_free(&a);
        }
        /* mismatched operand is refused */
        cpu_act a = {0};
        cr_assert_eq(cpu_act_prepare(c, &a, GGML_T_F32, x, n, in), 0);
        cpu_mm bad = {&m[0], y[0], outs[0], NULL, false};
        cr_assert_eq(cpu_matmul(c, &a, &bad, 1), HE_EINVAL);
        for (int j = 0; j < 3; j++) free(wf[j]), free(w[j]), free(y[j]);
        cpu_ctx_destroy(&c);
    }
}

/* ---------------------------------------------------------------- elementwise */

Test(cpu_ops, rmsnorm_matches_reference) {
    cpu_ctx_t *c = cpu_ctx_new(2);
    rng_seed(30);
    const int64_t dims[] = {1, 7, 64, 769};
    for (int di = 0; di < 4; di++)
        for (int64_t n = 1; n <= 17; n += 8) {
            int64_t dim = dims[di];
            float *x = malloc(sizeof(float) * (size_t)(n * dim)), *y = malloc(sizeof(float) * (size_t)(n * dim));
            float *w = malloc(sizeof(float) * (size_t)dim);
            fill(x, n * dim, 3.0f);
            fill(w, dim, 2.0f);
            cpu_rmsnorm(c, x, w, y, n, dim, 1e-5f);
            for (int64_t i = 0; i < n; i++) {
                double ss = 0;
                for (int64_t k = 0; k < dim; k++) ss += (double)x[i * dim + k] * x[i * dim + k];
                double sc = 1.0 / sqrt(ss / dim + 1e-5);
                for (int64_t k = 0; k < dim; k++) {
                    double want = x[i * dim + k] * sc * w[k];
                    cr_assert(fabs(y[i * dim + k] - want) <= 1e-5 * (fabs(want) + 1e-3), "dim %lld", (long long)dim);
                }
            }
            /* in place gives the same */
            cpu_rmsnorm(c, x, w, x, n, dim, 1e-5f);
            cr_assert(!memcmp(x, y, sizeof(float) * (size_t)(n * dim)));
            free(x); free(y); free(w);
        }
    cpu_ctx_destroy(&c);
}

Test(cpu_ops, swiglu_matches_reference) {
    cpu_ctx_t *c = cpu_ctx_new(2);
    rng_seed(31);
    const int64_t ns[] = {1, 7, 9, 100002};
    for (int i = 0; i < 4; i++) {
        int64_t n = ns[i];
        float *g = malloc(sizeof(float) * (size_t)n), *u = malloc(sizeof(float) * (size_t)n),
              *y = malloc(sizeof(float) * (size_t)n);
        fill(g, n, 12.0f);
        fill(u, n, 2.0f);
        if (n > 10) g[3] = -100.0f, g[4] = 100.0f, g[5] = 0.0f;
        cpu_swiglu(c, g, u, y, n > 100 ? n / 7 : 1, n > 100 ? 7 : n); /* odd row length */
        for (int64_t k = 0; k < n; k++) {
            double want = g[k] / (1.0 + exp(-(double)g[k])) * u[k];
            cr_assert(fabs(y[k] - want) <= 2e-6 * fabs(want) + 1e-30, "g=%g u=%g: %g vs %g", g[k], u[k], y[k], want);
        }
        free(g); free(u); free(y);
    }
    cpu_ctx_destroy(&c);
}

Test(cpu_ops, rope_matches_reference) {
    cpu_ctx_t *c = cpu_ctx_new(2);
    rng_seed(32);
    for (int neox = 0; neox < 2; neox++)
        for (int rd_case = 0; rd_case < 2; rd_case++) {
            const int n_heads = 3, head_dim = 16, rope_dim = rd_case ? 16 : 8;
            const int64_t n = 70;
            const float base = 10000.0f;
            int32_t pos[70];
            for (int i = 0; i < n; i++) pos[i] = i < 5 ? i : (int32_t)(rng_u32() % 2048);
            float *x = malloc(sizeof(float) * n * n_heads * head_dim), *x0 = malloc(sizeof(float) * n * n_heads * head_dim);
            fill(x, n * n_heads * head_dim, 1.0f);
            memcpy(x0, x, sizeof(float) * n * n_heads * head_dim);
            cr_assert_eq(cpu_rope_prepare(c, pos, n, rope_dim, base), 0);
            cpu_rope(c, x, n, n_heads, head_dim, neox);
            for (int64_t i = 0; i < n; i++)
                for (int h = 0; h < n_heads; h++) {
                    const float *a = x0 + (i * n_heads + h) * head_dim;
                    const float *b = x + (i * n_heads + h) * head_dim;
                    for (int k = 0; k < head_dim; k++) {
                        double want;
                        if (k >= rope_dim) {
                            want = a[k];
                        } else {
                            int pair = neox ? k % (rope_dim / 2) : k / 2;
                            int lo = neox ? pair : 2 * pair, hi = neox ? pair + rope_dim / 2 : 2 * pair + 1;
                            double th = pos[i] * pow(base, -2.0 * pair / rope_dim);
                            want = k == lo ? a[lo] * cos(th) - a[hi] * sin(th) : a[lo] * sin(th) + a[hi] * cos(th);
                        }
                        cr_assert(fabs(b[k] - want) <= 5e-4, "neox %d pos %d k %d: %g vs %g", neox, pos[i], k, b[k], want);
                    }
                }
            free(x); free(x0);
        }
    cpu_ctx_destroy(&c);
}

/* ---------------------------------------------------------------- attention */

/* lens: total positions per sequence; newt: new tokens (the tail) this batch */
static void check_attention_seqs(int nth, int n_heads, int n_kv_heads, int head_dim, int bs, const int *lens,
                                 const int *newt) {
    cpu_ctx_t *c = cpu_ctx_new(nth);
    const int kvd = n_kv_heads * head_dim, dim = n_heads * head_dim;
    const int S = 3;
    int max_pages = 0;
    for (int s = 0; s < S; s++) max_pages += (lens[s] + bs - 1) / bs;
    const int n_layers = 2, layer = 1;
    const size_t page_floats = (size_t)n_layers * 2 * bs * kvd;
    float *pool = calloc((size_t)max_pages * page_floats, sizeof(float));
    /* pages in scrambled order */
    int32_t *perm = malloc(sizeof(int32_t) * max_pages);
    for (int i = 0; i < max_pages; i++) perm[i] = i;
    for (int i = max_pages - 1; i > 0; i--) {
        int j = (int)(rng_u32() % (uint32_t)(i + 1));
        int32_t t = perm[i]; perm[i] = perm[j]; perm[j] = t;
    }
    int32_t *tabs[3];
    const int32_t *ctabs[3];
    int used = 0;
    for (int s = 0; s < S; s++) {
        int np = (lens[s] + bs - 1) / bs;
        tabs[s] = malloc(sizeof(int32_t) * np);
        for (int p = 0; p < np; p++) tabs[s][p] = perm[used++];
        ctabs[s] = tabs[s];
    }
    /* contiguous reference K/V per sequence: (len, kvd) */
    float *K[3], *V[3];
    int64_t T = 0;
    for (int s = 0; s < S; s++) {
        K[s] = malloc(sizeof(float) * lens[s] * kvd);
        V[s] = malloc(sizeof(float) * lens[s] * kvd);
        fill(K[s], (int64_t)lens[s] * kvd, 1.0f);
        fill(V[s], (int64_t)lens[s] * kvd, 1.0f);
        T += newt[s];
    }
    cpu_kv_layer L = {.kv = pool, .page_floats = page_floats, .k_off = (size_t)layer * 2 * bs * kvd,
                      .v_off = ((size_t)layer * 2 + 1) * bs * kvd, .block_size = bs, .kv_dim = kvd};
    /* old positions are written one at a time, new ones as a batch */
    int32_t *pos = malloc(sizeof(int32_t) * T), *seq = malloc(sizeof(int32_t) * T);
    float *kn = malloc(sizeof(float) * T * kvd), *vn = malloc(sizeof(float) * T * kvd);
    int64_t t = 0;
    for (int s = 0; s < S; s++)
        for (int p = 0; p < lens[s]; p++) {
            if (p < lens[s] - newt[s]) {
                int32_t ps = p, sq = s;
                cpu_kv_store(c, &L, ctabs, K[s] + p * kvd, V[s] + p * kvd, &ps, &sq, 1);
            } else {
                pos[t] = p;
                seq[t] = s;
                memcpy(kn + t * kvd, K[s] + p * kvd, sizeof(float) * kvd);
                memcpy(vn + t * kvd, V[s] + p * kvd, sizeof(float) * kvd);
                t++;
            }
        }
    cpu_kv_store(c, &L, ctabs, kn, vn, pos, seq, T);
    /* the other layer's slots stay zero */
    for (int pg = 0; pg < max_pages; pg++)
        for (size_t k = 0; k < (size_t)2 * bs * kvd; k++) cr_assert_eq(pool[pg * page_floats + k], 0.0f);

    float *q = malloc(sizeof(float) * T * dim), *o = malloc(sizeof(float) * T * dim);
    fill(q, T * dim, 2.0f);
    const float scale = 1.0f / sqrtf((float)head_dim);
    cr_assert_eq(cpu_attention(c, &L, ctabs, q, o, pos, seq, T, n_heads, n_kv_heads, head_dim, scale), 0);
    double *sc = malloc(sizeof(double) * 1024);
    for (int64_t i = 0; i < T; i++)
        for (int h = 0; h < n_heads; h++) {
            int s = seq[i], kh = h / (n_heads / n_kv_heads);
            double mx = -INFINITY, sum = 0;
            for (int p = 0; p <= pos[i]; p++) {
                double d = 0;
                for (int k = 0; k < head_dim; k++) d += (double)q[i * dim + h * head_dim + k] * K[s][p * kvd + kh * head_dim + k];
                sc[p] = d * scale;
                mx = fmax(mx, sc[p]);
            }
            for (int p = 0; p <= pos[i]; p++) sum += (sc[p] = exp(sc[p] - mx));
            for (int k = 0; k < head_dim; k++) {
                double want = 0;
                for (int p = 0; p <= pos[i]; p++) want += sc[p] / sum * V[s][p * kvd + kh * head_dim + k];
                float got = o[i * dim + h * head_dim + k];
                cr_assert(fabs(got - want) <= 1e-5, "bs %d token %lld head %d k %d: %g vs %g", bs, (long long)i, h, k,
                          got, want);
            }
        }
    free(sc); free(q); free(o); free(kn); free(vn); free(pos); free(seq); free(perm); free(pool);
    for (int s = 0; s < S; s++) free(K[s]), free(V[s]), free(tabs[s]);
    cpu_ctx_destroy(&c);
}

static void check_attention(int nth, int n_heads, int n_kv_heads, int head_dim, int bs) {
    const int lens[3] = {1, 23, 40}, newt[3] = {1, 5, 40};
    check_attention_seqs(nth, n_heads, n_kv_heads, head_dim, bs, lens, newt);
}

Test(cpu_ops, attention_decode_split_keys) {
    /* few tokens, long contexts: keys are split into chunks and merged */
    rng_seed(41);
    const int lens[3] = {300, 130, 7}, newt[3] = {1, 2, 1};
    check_attention_seqs(2, 4, 2, 16, 16, lens, newt);
    check_attention_seqs(3, 6, 3, 64, 5, lens, newt);
    check_attention_seqs(2, 2, 2, 12, 16, lens, newt);
    const int lens1[3] = {513, 1, 1}, newt1[3] = {1, 1, 1};
    check_attention_seqs(2, 12, 4, 64, 16, lens1, newt1);
}

Test(cpu_ops, attention_long_prefill_chunks) {
    /* many tokens past one key chunk: per-chunk partials merged */
    rng_seed(42);
    const int lens[3] = {200, 131, 3}, newt[3] = {200, 70, 3};
    check_attention_seqs(2, 4, 2, 16, 16, lens, newt);
}

/* A token's attention output is bit-identical alone and inside a batch. */
Test(cpu_ops, attention_is_batch_invariant) {
    rng_seed(43);
    const int n_heads = 4, n_kv = 2, hd = 64, kvd = n_kv * hd, bs = 16, L_pages = 24, len = 300;
    const size_t page_floats = (size_t)2 * bs * kvd;
    float *pool = calloc((size_t)L_pages * page_floats, sizeof(float));
    fill(pool, (int64_t)L_pages * (int64_t)page_floats, 1.0f);
    int32_t tab[24];
    for (int i = 0; i < L_pages; i++) tab[i] = (i * 7) % L_pages;
    const int32_t *tabs[1] = {tab};
    cpu_kv_layer L = {.kv = pool, .page_floats = page_floats, .k_off = 0, .v_off = (size_t)bs * kvd,
                      .block_size = bs, .kv_dim = kvd};
    enum { T = 40 };
    int32_t pos[T], seq[T];
    for (int i = 0; i < T; i++) pos[i] = len - T + i, seq[i] = 0;
    float *q = malloc(sizeof(float) * T * n_heads * hd), *o = malloc(sizeof(float) * T * n_heads * hd);
    float o1[4 * 64];
    fill(q, T * n_heads * hd, 1.0f);
    for (int nth = 1; nth <= 3; nth++) {
        cpu_ctx_t *c = cpu_ctx_new(nth);
        cr_assert_eq(cpu_attention(c, &L, tabs, q, o, pos, seq, T, n_heads, n_kv, hd, 0.125f), 0);
        for (int i = 0; i < T; i += 13) {
            cr_assert_eq(cpu_attention(c, &L, tabs, q + i * n_heads * hd, o1, pos + i, seq + i, 1, n_heads, n_kv, hd,
                                       0.125f), 0);
            cr_assert(!memcmp(o1, o + i * n_heads * hd, sizeof o1), "token %d differs alone (threads %d)", i, nth);
        }
        cpu_ctx_destroy(&c);
    }
    free(q); free(o); free(pool);
}

/* Row b of a matmul is bit-identical for any batch size and thread count. */
Test(cpu_ops, matmul_is_batch_invariant) {
    const ggml_type types[] = {GGML_T_F32, GGML_T_F16, GGML_T_BF16, GGML_T_Q8_0};
    rng_seed(44);
    for (int ti = 0; ti < 4; ti++) {
        const int64_t in = 2048 + (types[ti] == GGML_T_Q8_0 ? 0 : 3), out = 70, n = 140; /* > one batch block */
        float *wf = malloc(sizeof(float) * (size_t)(in * out));
        size_t rb;
        void *w = make_weights(types[ti], in, out, wf, &rb);
        cpu_mat m = {types[ti], in, out, rb, w, NULL};
        float *x = malloc(sizeof(float) * (size_t)(n * in));
        float *yall = malloc(sizeof(float) * (size_t)(n * out));
        fill(x, n * in, 1.0f);
        cpu_ctx_t *c2 = cpu_ctx_new(2), *c3 = cpu_ctx_new(3);
        cpu_act a = {0};
        cr_assert_eq(cpu_act_prepare(c2, &a, types[ti], x, n, in), 0);
        cpu_mm job = {&m, yall, out, NULL, false};
        cr_assert_eq(cpu_matmul(c2, &a, &job, 1), 0);
        for (int64_t b = 0; b < n; b += 9) {
            for (int64_t nb = 1; nb <= 5 && b + nb <= n; nb += 4) {
                float *ys = malloc(sizeof(float) * (size_t)(nb * out));
                cr_assert_eq(cpu_act_prepare(c3, &a, types[ti], x + b * in, nb, in), 0);
                job = (cpu_mm){&m, ys, out, NULL, false};
                cr_assert_eq(cpu_matmul(c3, &a, &job, 1), 0);
                cr_assert(!memcmp(ys, yall + b * out, sizeof(float) * (size_t)out), "type %d row %lld differs in a batch of %lld",
                          ti, (long long)b, (long long)nb);
                free(ys);
            }
        }
        cpu_act_free(&a);
        cpu_ctx_destroy(&c2);
        cpu_ctx_destroy(&c3);
        free(wf); free(w); free(x); free(yall);
    }
}

Test(cpu_ops, attention_paged_matches_contiguous) {
    rng_seed(40);
    check_attention(2, 4, 2, 16, 16);
    check_attention(2, 4, 4, 9, 3);
    check_attention(1, 6, 2, 64, 1);
    check_attention(3, 2, 1, 33, 7);
}
