/* bench_kernels: the GPU kernels against their floors, measured side by side
 * in one run (bench/gpu/run.sh; needs a GPU; never run yet).
 *
 *   copy      device-to-device cudaMemcpy of 1 GiB: bytes read + written / time.
 *             This is the bandwidth ceiling the rest is compared with.
 *   gemv      decode products at the shapes of a ~1B llama (dim 2048, ffn
 *             8192): bytes of weights read / time, and that over the copy
 *             bandwidth; weights rotate over 24 copies (> the 60 MB L2).
 *   attn      batch-1 and batch-16 decode attention (32 query heads, 8 KV
 *             heads, head_dim 128, F16 pool) at contexts 1k..32k: K/V bytes
 *             read / time over the copy bandwidth (target >= 70% at 8k+).
 *   gemm      prefill products through hk_gemm (F16 weights: activation
 *             conversion + cublasGemmEx) against cublasGemmEx alone on the
 *             same shapes, TFLOP/s and the ratio.
 * Times: CUDA events, median of 30 after 5 warm-ups; inputs random. */
#include <cublas_v2.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "hk_attn.h"
#include "hk_elem.h"
#include "hk_gemm.h"
#include "hk_gemv.h"
#include "hk_types.h"

#define CK(x)                                                                                      \
    do {                                                                                           \
        int e_ = (int)(x);                                                                         \
        if (e_) {                                                                                  \
            fprintf(stderr, "FATAL: error %d in %s at %s:%d\n", e_, #x, __FILE__, __LINE__);       \
            exit(2);                                                                               \
        }                                                                                          \
    } while (0)

static int cmpf(const void *a, const void *b) {
    float x = *(const float *)a, y = *(const float *)b;
    return x < y ? -1 : x > y;
}

typedef void (*run_fn)(void *ctx, int rep);

/* Median milliseconds of fn over 30 timed reps. */
static float time_ms(run_fn fn, void *ctx) {
    cudaEvent_t a, b;
    CK(cudaEventCreate(&a));
    CK(cudaEventCreate(&b));
    for (int i = 0; i < 5; i++) fn(ctx, i);
    float t[30];
    for (int i = 0; i < 30; i++) {
        CK(cudaEventRecord(a, 0));
        fn(ctx, i);
        CK(cudaEventRecord(b, 0));
        CK(cudaEventSynchronize(b));
        CK(cudaEventElapsedTime(&t[i], a, b));
    }
    qsort(t, 30, sizeof(float), cmpf);
    cudaEventDestroy(a);
    cudaEventDestroy(b);
    return t[15];
}

static void *rand_dev(size_t bytes) {
    uint32_t *h = malloc(bytes + 4);
    uint32_t s = 12345;
    for (size_t i = 0; i < bytes / 4; i++) {
        s = s * 1664525u + 1013904223u;
        h[i] = 0x3C003C00u ^ (s & 0x03FF03FFu); /* f16 pairs in [1, 2): finite for every type read as halves */
    }
    void *d;
    CK(cudaMalloc(&d, bytes));
    CK(cudaMemcpy(d, h, bytes, cudaMemcpyHostToDevice));
    free(h);
    return d;
}

typedef struct {
    void *src, *dst;
    size_t bytes;
} copy_ctx;
static void run_copy(void *p, int rep) {
    copy_ctx *c = p;
    CK(cudaMemcpyAsync(c->dst, c->src, c->bytes, cudaMemcpyDeviceToDevice, 0));
}

typedef struct {
    void *w[24];
    int t;
    int64_t in, out;
    float *x, *y;
    int8_t *xq;
    float *xd;
} gemv_ctx;
static void run_gemv(void *p, int rep) {
    gemv_ctx *g = p;
    CK(hk_gemv(g->w[rep % 24], g->t, g->in, g->out, g->x, g->xq, g->xd, 1, g->y, g->out, 0, 0));
}

typedef struct {
    hk_kv_view kv;
    float *q, *out, *ws;
    int32_t *pos, *seq, *tiles;
    int n, n_split;
} attn_ctx;
static void run_attn(void *p, int rep) {
    attn_ctx *a = p;
    CK(hk_attention(&a->kv, a->q, a->out, a->pos, a->seq, a->n, a->tiles, a->n, 0.088f, a->n_split, 512, a->ws, 0));
}

typedef struct {
    cublasHandle_t h;
    void *w, *xh, *xs;
    float *x, *y;
    int64_t in, out, R;
    bool raw;
} gemm_ctx;
static void run_gemm(void *p, int rep) {
    gemm_ctx *g = p;
    if (g->raw) {
        const float one = 1, zero = 0;
        CK(cublasGemmEx(g->h, CUBLAS_OP_T, CUBLAS_OP_N, (int)g->out, (int)g->R, (int)g->in, &one, g->w, CUDA_R_16F,
                        (int)g->in, g->xh, CUDA_R_16F, (int)g->in, &zero, g->y, CUDA_R_32F, (int)g->out,
                        CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT));
    } else {
        CK(hk_gemm(g->h, g->w, HK_T_F16, g->in, g->out, g->x, g->R, g->y, g->out, 0, g->xs, NULL, 0, 0));
    }
}

int main(void) {
    int nd = 0;
    if (cudaGetDeviceCount(&nd) != cudaSuccess || nd == 0) {
        fprintf(stderr, "bench_kernels: no CUDA device\n");
        return 2;
    }
    struct cudaDeviceProp prop;
    CK(cudaGetDeviceProperties(&prop, 0));
    printf("device: %s, %d SMs, L2 %d MB\n", prop.name, prop.multiProcessorCount, prop.l2CacheSize >> 20);

    copy_ctx cc = {rand_dev(1u << 30), rand_dev(1u << 30), 1u << 30};
    float ms = time_ms(run_copy, &cc);
    const double bw = 2.0 * cc.bytes / (ms * 1e-3) / 1e9; /* GB/s, read + write */
    printf("copy      1 GiB D2D: %.3f ms, %.0f GB/s (the ceiling below)\n", ms, bw);
    cudaFree(cc.src), cudaFree(cc.dst);

    const int types[5] = {HK_T_F16, HK_T_BF16, HK_T_Q8_0, HK_T_Q4_K, HK_T_F32};
    const char *tn[5] = {"f16", "bf16", "q8_0", "q4_k", "f32"};
    const int64_t shapes[2][2] = {{2048, 8192}, {8192, 2048}};
    for (int s = 0; s < 2; s++)
        for (int k = 0; k < 5; k++) {
            gemv_ctx g = {.t = types[k], .in = shapes[s][0], .out = shapes[s][1]};
            size_t wb = hk_row_bytes(g.t, g.in) * g.out;
            for (int i = 0; i < 24; i++) g.w[i] = rand_dev(wb);
            g.x = rand_dev(g.in * 4), g.y = rand_dev(g.out * 4);
            CK(cudaMalloc((void **)&g.xq, g.in));
            CK(cudaMalloc((void **)&g.xd, g.in / 32 * 4 + 4));
            CK(hk_quant_q8_0(g.x, g.xq, g.xd, g.in, 0));
            ms = time_ms(run_gemv, &g);
            double gbs = wb / (ms * 1e-3) / 1e9;
            printf("gemv      %-5s %5lld -> %5lld: %.4f ms, %.0f GB/s = %.0f%% of copy\n", tn[k], (long long)g.in,
                   (long long)g.out, ms, gbs, 100 * gbs / bw);
            for (int i = 0; i < 24; i++) cudaFree(g.w[i]);
            cudaFree(g.x), cudaFree(g.y), cudaFree(g.xq), cudaFree(g.xd);
        }

    const int ctxs[6] = {1024, 2048, 4096, 8192, 16384, 32768}, batches[2] = {1, 16};
    for (int bi = 0; bi < 2; bi++)
        for (int c = 0; c < 6; c++) {
            const int B = batches[bi], ctx = ctxs[c], bs = 16, kvd = 8 * 128, pages = ctx / bs;
            attn_ctx a = {.n = B, .n_split = (ctx + 511) / 512};
            a.kv = (hk_kv_view){.kv_type = HK_KV_F16, .page_elems = 2 * bs * kvd, .k_off = 0, .v_off = bs * kvd,
                                .block_size = bs, .n_heads = 32, .n_kv_heads = 8, .head_dim = 128, .bt_stride = pages};
            size_t pool_bytes = (size_t)B * pages * a.kv.page_elems * 2;
            a.kv.pool = rand_dev(pool_bytes);
            int32_t *bt = malloc((size_t)B * pages * 4), pos[16], seq[16], tiles[32];
            for (int i = 0; i < B * pages; i++) bt[i] = i;
            for (int i = 0; i < B; i++) pos[i] = ctx - 1, seq[i] = i, tiles[2 * i] = i, tiles[2 * i + 1] = 1;
            CK(cudaMalloc((void **)&a.kv.bt, (size_t)B * pages * 4));
            CK(cudaMemcpy((void *)a.kv.bt, bt, (size_t)B * pages * 4, cudaMemcpyHostToDevice));
            CK(cudaMalloc((void **)&a.pos, 64));
            CK(cudaMalloc((void **)&a.seq, 64));
            CK(cudaMalloc((void **)&a.tiles, 128));
            CK(cudaMemcpy(a.pos, pos, B * 4, cudaMemcpyHostToDevice));
            CK(cudaMemcpy(a.seq, seq, B * 4, cudaMemcpyHostToDevice));
            CK(cudaMemcpy(a.tiles, tiles, B * 8, cudaMemcpyHostToDevice));
            a.q = rand_dev((size_t)B * 32 * 128 * 4), a.out = rand_dev((size_t)B * 32 * 128 * 4);
            a.ws = rand_dev(hk_attn_ws_floats(&a.kv, B, a.n_split) * 4);
            ms = time_ms(run_attn, &a);
            double gbs = pool_bytes / (ms * 1e-3) / 1e9;
            printf("attn      batch %2d ctx %5d: %.4f ms, %.0f GB/s = %.0f%% of copy\n", B, ctx, ms, gbs, 100 * gbs / bw);
            cudaFree(a.kv.pool), cudaFree((void *)a.kv.bt), cudaFree(a.pos), cudaFree(a.seq), cudaFree(a.tiles);
            cudaFree(a.q), cudaFree(a.out), cudaFree(a.ws);
            free(bt);
        }

    cublasHandle_t h;
    CK(cublasCreate(&h));
    const int64_t rows[3] = {128, 512, 2048};
    for (int r = 0; r < 3; r++) {
        gemm_ctx g = {.h = h, .in = 2048, .out = 8192, .R = rows[r]};
        g.w = rand_dev(g.in * g.out * 2), g.x = rand_dev(g.R * g.in * 4), g.y = rand_dev(g.R * g.out * 4);
        g.xs = rand_dev(g.R * g.in * 4), g.xh = rand_dev(g.R * g.in * 2);
        CK(hk_to_half(HK_T_F16, g.x, g.xh, g.R * g.in, 0));
        double flop = 2.0 * g.R * g.in * g.out;
        float t_hk = time_ms(run_gemm, &g);
        g.raw = true;
        float t_raw = time_ms(run_gemm, &g);
        printf("gemm      f16 %5lld x %lld -> %lld: helium %.1f TFLOP/s, cuBLAS alone %.1f TFLOP/s, ratio %.2f\n",
               (long long)g.R, (long long)g.in, (long long)g.out, flop / (t_hk * 1e-3) / 1e12,
               flop / (t_raw * 1e-3) / 1e12, t_raw / t_hk);
        cudaFree(g.w), cudaFree(g.x), cudaFree(g.y), cudaFree(g.xs), cudaFree(g.xh);
    }
    cublasDestroy(h);
    return 0;
}
