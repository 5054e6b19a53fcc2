/* gpu_kernels: every CUDA kernel family against the CPU backend's kernels on
 * fresh random inputs (tests/gpu/run.sh runs it; needs a GPU).
 *
 * Bounds, as llama.cpp's test-backend-ops measures (NMSE): 1e-7 for
 * element-wise F32 ops (norm, rope, swiglu, add, embedding gather), 5e-4 for
 * matrix products (GEMV for 1..8 rows, cuBLAS beyond) in every weight type.
 * Sampling must pick the CPU sampler's token given the same random draw.
 * Attention and KV pages: gpu_attention.c. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cpu_ops.h"
#include "cpu_quant.h"
#include "herr.h"
#include "hk_attn.h"
#include "hk_elem.h"
#include "hk_embed.h"
#include "hk_gemm.h"
#include "hk_gemv.h"
#include "hk_kvpage.h"
#include "hk_norm.h"
#include "hk_rope.h"
#include "hk_sample.h"
#include "kvwire.h"
#include "rng.h"
#include "sampler.h"
#include "util.h"

static cpu_ctx_t *g_cpu;

static void test_rmsnorm(int64_t n, int64_t dim) {
    float *x = malloc(n * dim * 4), *w = malloc(dim * 4), *ref = malloc(n * dim * 4), *got = malloc(n * dim * 4);
    gu_fill(x, n * dim, 3.0f);
    gu_fill(w, dim, 1.0f);
    cpu_rmsnorm(g_cpu, x, w, ref, n, dim, 1e-5f);
    float *dx = gu_to_dev(x, n * dim * 4), *dw = gu_to_dev(w, dim * 4);
    GU_LAUNCH(hk_rmsnorm(dx, dw, dx, n, dim, 1e-5f, 0));
    gu_to_host(got, dx, n * dim * 4);
    char name[96];
    snprintf(name, sizeof name, "rmsnorm %lldx%lld (in place)", (long long)n, (long long)dim);
    gu_check(name, gu_nmse(got, ref, n * dim), 1e-7);
    cudaFree(dx), cudaFree(dw), free(x), free(w), free(ref), free(got);
}

static void test_rope(int64_t n, int n_heads, int head_dim, int neox, int maxpos) {
    size_t sz = (size_t)n * n_heads * head_dim;
    float *x = malloc(sz * 4), *got = malloc(sz * 4);
    int32_t *pos = malloc(n * 4);
    gu_fill(x, sz, 2.0f);
    for (int64_t i = 0; i < n; i++) pos[i] = (int32_t)(gu_rand_u32() % (uint32_t)maxpos);
    float *dx = gu_to_dev(x, sz * 4);
    int32_t *dp = gu_to_dev(pos, n * 4);
    cpu_rope_prepare(g_cpu, pos, n, head_dim, 10000.0f);
    cpu_rope(g_cpu, x, n, n_heads, head_dim, neox);
    GU_LAUNCH(hk_rope(dx, dp, n, n_heads, head_dim, head_dim, 10000.0f, neox, 0));
    gu_to_host(got, dx, sz * 4);
    char name[96];
    snprintf(name, sizeof name, "rope %s %lld tok %dx%d pos<%d", neox ? "neox" : "llama", (long long)n, n_heads,
             head_dim, maxpos);
    gu_check(name, gu_nmse(got, x, sz), 1e-7);
    cudaFree(dx), cudaFree(dp), free(x), free(got), free(pos);
}

static void test_swiglu(int64_t n) {
    float *g = malloc(n * 4), *u = malloc(n * 4), *ref = malloc(n * 4), *got = malloc(n * 4);
    gu_fill(g, n, 6.0f);
    gu_fill(u, n, 2.0f);
    cpu_swiglu(g_cpu, g, u, ref, 1, n);
    float *dg = gu_to_dev(g, n * 4), *du = gu_to_dev(u, n * 4);
    GU_LAUNCH(hk_swiglu(dg, du, dg, n, 0));
    gu_to_host(got, dg, n * 4);
    gu_check("swiglu", gu_nmse(got, ref, n), 1e-7);
    float *dr = gu_to_dev(ref, n * 4);
    GU_LAUNCH(hk_add(dr, du, n, 0));
    gu_to_host(got, dr, n * 4);
    for (int64_t i = 0; i < n; i++) ref[i] += u[i];
    gu_check("add (residual)", gu_nmse(got, ref, n), 1e-7);
    cudaFree(dg), cudaFree(du), cudaFree(dr), free(g), free(u), free(ref), free(got);
}

/* Q4_K rows built from random bytes, with the reference dequantization
 * written from the format (hk_common.cuh's comment). */
static float h2f(uint16_t h) { return cq_f16_to_f32(h); }
static void q4k_make(uint8_t *row, int64_t in) {
    for (int64_t b = 0; b < in / 256; b++) {
        uint8_t *blk = row + b * 144;
        for (int i = 0; i < 144; i++) blk[i] = (uint8_t)gu_rand_u32();
        uint16_t d = cq_f32_to_f16(0.002f + 0.01f * fabsf(gu_rand())), dm = cq_f32_to_f16(0.01f * fabsf(gu_rand()));
        memcpy(blk, &d, 2);
        memcpy(blk + 2, &dm, 2);
    }
}
static void q4k_ref(const uint8_t *row, int64_t in, float *out) {
    for (int64_t b = 0; b < in / 256; b++) {
        const uint8_t *blk = row + b * 144, *sc = blk + 4, *qs = blk + 16;
        uint16_t d16, m16;
        memcpy(&d16, blk, 2);
        memcpy(&m16, blk + 2, 2);
        for (int j = 0; j < 8; j++) {
            int s, m;
            if (j < 4) {
                s = sc[j] & 63;
                m = sc[j + 4] & 63;
            } else {
                s = (sc[j + 4] & 0xF) | ((sc[j - 4] >> 6) << 4);
                m = (sc[j + 4] >> 4) | ((sc[j] >> 6) << 4);
            }
            for (int l = 0; l < 32; l++) {
                uint8_t q = qs[32 * (j / 2) + l];
                int v = (j & 1) ? q >> 4 : q & 0xF;
                out[b * 256 + j * 32 + l] = h2f(d16) * (float)s * (float)v - h2f(m16) * (float)m;
            }
        }
    }
}

/* A random (out, in) matrix of type t. */
static uint8_t *make_mat(int t, int64_t in, int64_t out) {
    size_t rb = hk_row_bytes(t, in);
    uint8_t *w = malloc(rb * out);
    float *tmp = malloc(in * 4);
    for (int64_t r = 0; r < out; r++) {
        uint8_t *row = w + r * rb;
        gu_fill(tmp, in, 0.1f);
        if (t == HK_T_F32) memcpy(row, tmp, in * 4);
        else if (t == HK_T_F16)
            for (int64_t i = 0; i < in; i++) ((uint16_t *)row)[i] = cq_f32_to_f16(tmp[i]);
        else if (t == HK_T_BF16)
            for (int64_t i = 0; i < in; i++) ((uint16_t *)row)[i] = cq_f32_to_bf16(tmp[i]);
        else if (t == HK_T_Q8_0) cq_quantize_row_q8_0(tmp, (cq_block_q8_0 *)row, in);
        else q4k_make(row, in);
    }
    free(tmp);
    return w;
}

/* Reference y (R, out): the CPU backend's matmul, or f64 over the reference
 * dequantization for Q4_K (the CPU backend has no Q4_K product here). */
static void mm_ref(int t, const uint8_t *w, int64_t in, int64_t out, const float *x, int64_t R, float *y) {
    if (t == HK_T_Q4_K) {
        float *row = malloc(in * 4);
        for (int64_t o = 0; o < out; o++) {
            q4k_ref(w + o * hk_row_bytes(t, in), in, row);
            for (int64_t r = 0; r < R; r++) {
                double s = 0;
                for (int64_t i = 0; i < in; i++) s += (double)row[i] * x[r * in + i];
                y[r * out + o] = (float)s;
            }
        }
        free(row);
        return;
    }
    cpu_mat m = {.type = (ggml_type)t, .in = in, .out = out, .row_bytes = hk_row_bytes(t, in), .data = w};
    cpu_act a = {0};
    cpu_mm job = {&m, y, out, NULL, false};
    if (cpu_act_prepare(g_cpu, &a, (ggml_type)t, x, R, in) || cpu_matmul(g_cpu, &a, &job, 1)) {
        fprintf(stderr, "FATAL: CPU matmul failed: %s\n", he_msg());
        exit(2);
    }
    cpu_act_free(&a);
}

static const char *tname(int t) {
    return t == HK_T_F32 ? "f32" : t == HK_T_F16 ? "f16" : t == HK_T_BF16 ? "bf16" : t == HK_T_Q8_0 ? "q8_0" : "q4_k";
}

static void test_matmul(cublasHandle_t blas, int t, int64_t in, int64_t out, int64_t R) {
    uint8_t *w = make_mat(t, in, out);
    float *x = malloc(R * in * 4), *ref = malloc(R * out * 4), *got = malloc(R * out * 4);
    gu_fill(x, R * in, 1.0f);
    mm_ref(t, w, in, out, x, R, ref);
    void *dw = gu_to_dev(w, hk_row_bytes(t, in) * out);
    float *dx = gu_to_dev(x, R * in * 4), *dy = gu_dev_alloc(R * out * 4), *xs = gu_dev_alloc(R * in * 4);
    int8_t *xq = gu_dev_alloc(R * in);
    float *xd = gu_dev_alloc(R * in / 32 * 4 + 4);
    size_t wsb = (size_t)in * 4 * 64;
    void *ws = gu_dev_alloc(wsb);
    char name[96];
    if (R <= HK_GEMV_MAX_ROWS) {
        const float *xa = dx;
        if (t == HK_T_F16 || t == HK_T_BF16) {
            GU_LAUNCH(hk_act_round(t, dx, xs, R * in, 0));
            xa = xs;
        }
        if (t == HK_T_Q8_0) GU_LAUNCH(hk_quant_q8_0(dx, xq, xd, R * in, 0));
        GU_LAUNCH(hk_gemv(dw, t, in, out, t == HK_T_Q8_0 ? NULL : xa, xq, xd, (int)R, dy, out, 0, 0));
        snprintf(name, sizeof name, "gemv %s %lldx%lld rows %lld", tname(t), (long long)out, (long long)in, (long long)R);
    } else {
        int rc = hk_gemm(blas, dw, t, in, out, dx, R, dy, out, 0, xs, ws, wsb, 0);
        if (rc) {
            fprintf(stderr, "FATAL: hk_gemm returned %d\n", rc);
            exit(2);
        }
        snprintf(name, sizeof name, "gemm (cuBLAS) %s %lldx%lld rows %lld", tname(t), (long long)out, (long long)in,
                 (long long)R);
    }
    GU_CUDA(cudaDeviceSynchronize());
    gu_to_host(got, dy, R * out * 4);
    gu_check(name, gu_nmse(got, ref, R * out), 5e-4);
    cudaFree(dw), cudaFree(dx), cudaFree(dy), cudaFree(xs), cudaFree(xq), cudaFree(xd), cudaFree(ws);
    free(w), free(x), free(ref), free(got);
}

static void test_embed(int t, int64_t dim, int64_t vocab) {
    uint8_t *w = make_mat(t, dim, vocab);
    const int n = 33;
    int32_t ids[33];
    for (int i = 0; i < n; i++) ids[i] = (int32_t)(gu_rand_u32() % (uint32_t)vocab);
    ids[0] = 0, ids[1] = (int32_t)vocab - 1;
    float *ref = malloc(n * dim * 4), *got = malloc(n * dim * 4);
    size_t rb = hk_row_bytes(t, dim);
    for (int i = 0; i < n; i++) {
        if (t == HK_T_Q4_K) q4k_ref(w + ids[i] * rb, dim, ref + i * dim);
        else cq_dequant_row((ggml_type)t, w + ids[i] * rb, ref + i * dim, dim);
    }
    void *dw = gu_to_dev(w, rb * vocab);
    int32_t *di = gu_to_dev(ids, sizeof ids);
    float *dx = gu_dev_alloc(n * dim * 4);
    GU_LAUNCH(hk_embed(dw, t, dim, di, n, dx, 0));
    gu_to_host(got, dx, n * dim * 4);
    char name[96];
    snprintf(name, sizeof name, "embed gather %s dim %lld", tname(t), (long long)dim);
    gu_check(name, gu_nmse(got, ref, n * dim), 1e-7);
    cudaFree(dw), cudaFree(di), cudaFree(dx), free(w), free(ref), free(got);
}

/* Activation preparation (rounding, q8_0 split form), bias, row gather and
 * weight dequantization: exact against the CPU's conversions. */
static void test_prep(void) {
    const int64_t n = 4096;
    float *x = malloc(n * 4), *ref = malloc(n * 4), *got = malloc(n * 4), *qd_ref = malloc(n / 32 * 4),
          *qd = malloc(n / 32 * 4);
    int8_t *qs_ref = malloc(n), *qs = malloc(n);
    gu_fill(x, n, 5.0f);
    float *dx = gu_to_dev(x, n * 4), *dy = gu_dev_alloc(n * 4), *dqd = gu_dev_alloc(n / 32 * 4);
    int8_t *dqs = gu_dev_alloc(n);
    const int rt[2] = {HK_T_F16, HK_T_BF16};
    for (int k = 0; k < 2; k++) {
        cq_round_row((ggml_type)rt[k], x, ref, n);
        GU_LAUNCH(hk_act_round(rt[k], dx, dy, n, 0));
        gu_to_host(got, dy, n * 4);
        gu_expect(k ? "act_round bf16 == CPU bit for bit" : "act_round f16 == CPU bit for bit",
                  !memcmp(got, ref, n * 4), NULL);
    }
    cq_quantize_act_q8_0(x, qs_ref, qd_ref, n);
    GU_LAUNCH(hk_quant_q8_0(dx, dqs, dqd, n, 0));
    gu_to_host(qs, dqs, n);
    gu_to_host(qd, dqd, n / 32 * 4);
    gu_expect("quant_q8_0 quants and scales == CPU", !memcmp(qs, qs_ref, n) && !memcmp(qd, qd_ref, n / 32 * 4), NULL);
    /* bias over rows, and a row gather */
    const int64_t rows = 8, dim = n / rows;
    float *b = malloc(dim * 4);
    gu_fill(b, dim, 1.0f);
    float *db = gu_to_dev(b, dim * 4);
    GU_CUDA(cudaMemcpy(dy, dx, n * 4, cudaMemcpyDeviceToDevice));
    GU_LAUNCH(hk_add_bias(dy, db, rows, dim, 0));
    gu_to_host(got, dy, n * 4);
    for (int64_t i = 0; i < n; i++) ref[i] = x[i] + b[i % dim];
    gu_check("add_bias", gu_nmse(got, ref, n), 1e-7);
    int32_t idx[3] = {5, 0, 7};
    int32_t *didx = gu_to_dev(idx, sizeof idx);
    GU_LAUNCH(hk_gather_rows(dx, didx, 3, dim, dy, 0));
    gu_to_host(got, dy, 3 * dim * 4);
    bool ok = true;
    for (int r = 0; r < 3; r++) ok &= !memcmp(got + r * dim, x + idx[r] * dim, dim * 4);
    gu_expect("gather_rows", ok, NULL);
    /* dequantization of weight rows into f32 and f16 scratch */
    const int wt[3] = {HK_T_Q8_0, HK_T_F16, HK_T_BF16};
    for (int k = 0; k < 3; k++) {
        uint8_t *w = make_mat(wt[k], 512, 20);
        void *dw = gu_to_dev(w, hk_row_bytes(wt[k], 512) * 20);
        GU_LAUNCH(hk_dequant_rows(dw, wt[k], 512, 3, 10, dy, HK_T_F32, 0));
        gu_to_host(got, dy, 10 * 512 * 4);
        for (int r = 0; r < 10; r++) cq_dequant_row((ggml_type)wt[k], w + (3 + r) * hk_row_bytes(wt[k], 512), ref + r * 512, 512);
        char name[64];
        snprintf(name, sizeof name, "dequant_rows %s -> f32 == CPU", tname(wt[k]));
        gu_expect(name, !memcmp(got, ref, 10 * 512 * 4), NULL);
        cudaFree(dw);
        free(w);
    }
    cudaFree(dx), cudaFree(dy), cudaFree(dqd), cudaFree(dqs), cudaFree(db), cudaFree(didx);
    free(x), free(ref), free(got), free(qd_ref), free(qd), free(qs_ref), free(qs), free(b);
}

static void test_sampling(int64_t V) {
    const int R = 6;
    float *lg = malloc(R * V * 4);
    gu_fill(lg, R * V, 8.0f);
    lg[2 * V + 5] = lg[2 * V + 9] = 100.0f; /* a tie: lowest id wins */
    float temp[6] = {0, 0.7f, 0.0f, 1.0f, 1.3f, 0.9f};
    int32_t topk[6] = {0, 40, 0, 1, 1000, 5};
    float topp[6] = {1, 0.9f, 1, 1, 0.95f, 0.5f};
    double u[6];
    int32_t want[6], got[6];
    void *scratch = malloc(V * 8);
    for (int r = 0; r < R; r++) {
        smp_params p = {.temperature = temp[r], .top_k = topk[r], .top_p = topp[r]};
        rng_t a, b;
        rng_seed(&a, 1000 + r);
        b = a;
        u[r] = rng_uniform(&b); /* the draw smp_sample will make from a */
        want[r] = smp_sample(&p, &a, lg + r * V, (int32_t)V, scratch);
    }
    float *dl = gu_to_dev(lg, R * V * 4), *dt = gu_to_dev(temp, sizeof temp), *dp = gu_to_dev(topp, sizeof topp);
    int32_t *dk = gu_to_dev(topk, sizeof topk), *di = gu_dev_alloc(sizeof got);
    double *du = gu_to_dev(u, sizeof u);
    GU_LAUNCH(hk_sample(dl, R, V, dt, dk, dp, du, di, 0));
    gu_to_host(got, di, sizeof got);
    bool same = true;
    char detail[256] = "";
    for (int r = 0; r < R; r++) {
        same &= got[r] == want[r];
        snprintf(detail + strlen(detail), sizeof detail - strlen(detail), "%d/%d ", got[r], want[r]);
    }
    gu_expect("sample (argmax, top-k, top-p) == CPU sampler, same draw", same, detail);
    GU_LAUNCH(hk_argmax(dl, R, V, di, 0));
    gu_to_host(got, di, sizeof got);
    same = true;
    for (int r = 0; r < R; r++) same &= got[r] == smp_argmax(lg + r * V, (int32_t)V);
    gu_expect("argmax == CPU (ties to the lowest id)", same && got[2] == 5, NULL);
    cudaFree(dl), cudaFree(dt), cudaFree(dp), cudaFree(dk), cudaFree(di), cudaFree(du);
    free(lg), free(scratch);
}

int main(void) {
    int n_dev = 0;
    if (cudaGetDeviceCount(&n_dev) != cudaSuccess || n_dev == 0) {
        fprintf(stderr, "gpu_kernels: no CUDA device\n");
        return 2;
    }
    gu_seed(20261204);
    g_cpu = cpu_ctx_new(8);
    cublasHandle_t blas;
    if (cublasCreate(&blas) != CUBLAS_STATUS_SUCCESS) return 2;
    test_rmsnorm(7, 576);
    test_rmsnorm(3, 4096);
    test_rope(50, 9, 64, 0, 32768);
    test_rope(50, 14, 64, 1, 32768);
    test_rope(17, 4, 16, 1, 100);
    test_swiglu(100003);
    test_prep();
    const int types[5] = {HK_T_F32, HK_T_F16, HK_T_BF16, HK_T_Q8_0, HK_T_Q4_K};
    for (int i = 0; i < 5; i++) {
        test_embed(types[i], 512, 1000);
        test_matmul(blas, types[i], 2048, 1000, 1);
        test_matmul(blas, types[i], 4096, 515, 3);
        test_matmul(blas, types[i], 768, 2048, 8);
        test_matmul(blas, types[i], 1024, 700, 77);
    }
    test_matmul(blas, HK_T_F32, 100, 33, 2);  /* rows not a multiple of the vector width */
    test_matmul(blas, HK_T_F16, 52, 33, 5);
    test_sampling(50000);
    cublasDestroy(blas);
    cpu_ctx_destroy(&g_cpu);
    return gu_finish("gpu_kernels");
}
