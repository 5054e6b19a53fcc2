/* kernels: harness for the CPU backend's matmul kernels (worker/cpu).
 *
 * For each weight type and each matrix shape of the medium model (in x out:
 * 768x768, 768x2048, 2048x768, 768x8192) and batch sizes 1, 8 and 512: build
 * random weights, run the kernel once and validate a sample of outputs against
 * a naive double-precision reference (same activation rounding/quantization as
 * the kernel's dot type), then time activation preparation + matmul and report
 * GFLOP/s and weight GB/s (weights bytes / time: each call streams the weights
 * once; weights are cycled through > 128 MiB of copies so they come from DRAM,
 * unless KERNELS_IN_CACHE is set). Not a test: run it by hand through
 * bench/kernels.sh.
 *
 * usage: kernels [n_threads] [min_seconds_per_case] [type|all] [n|0]
 * (n: one batch size instead of 1, 8, 512; KERNELS_GEMM_MIN=n moves the
 * small-batch/sgemm crossover)
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/mman.h>
#include <time.h>

#include "cpu_ops.h"
#include "cpu_quant.h"
#include "herr.h"

static uint64_t rs = 88172645463325252ull;
static float frand(void) {
    rs ^= rs << 13;
    rs ^= rs >> 7;
    rs ^= rs << 17;
    return (float)((double)(rs >> 11) / 9007199254740992.0 * 2.0 - 1.0);
}

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

/* Packs w (out, in) f32 into type t; returns the data and its row size. */
static void *pack(ggml_type t, const float *w, int64_t in, int64_t out, size_t *rb) {
    *rb = ggml_row_size(t, in);
    uint8_t *d = malloc(*rb * (size_t)out);
    if (!d) return NULL;
    for (int64_t r = 0; r < out; r++) {
        uint8_t *row = d + (size_t)r * *rb;
        const float *src = w + r * in;
        for (int64_t k = 0; k < in; k++) {
            if (t == GGML_T_F32) memcpy(row + 4 * k, src + k, 4);
            if (t == GGML_T_F16 || t == GGML_T_BF16) {
                uint16_t h = t == GGML_T_F16 ? cq_f32_to_f16(src[k]) : cq_f32_to_bf16(src[k]);
                memcpy(row + 2 * k, &h, 2);
            }
        }
        if (t == GGML_T_Q8_0) cq_quantize_row_q8_0(src, (cq_block_q8_0 *)row, in);
    }
    return d;
}

/* Validates a sample of y (n, out) against a double reference. Returns the
 * worst error relative to sum |w x|. */
static double validate(ggml_type t, const void *w, size_t rb, const float *x, const float *y, int64_t n, int64_t in,
                       int64_t out) {
    float *wr = malloc(sizeof(float) * (size_t)in), *xr = malloc(sizeof(float) * (size_t)in);
    double worst = 0;
    for (int s = 0; s < 64; s++) {
        int64_t b = (int64_t)(rs % (uint64_t)n), r;
        frand();
        r = (int64_t)(rs % (uint64_t)out);
        frand();
        cq_dequant_row(t, (const uint8_t *)w + (size_t)r * rb, wr, in);
        if (t == GGML_T_Q8_0) {
            cq_block_q8_0 *blk = malloc(sizeof(cq_block_q8_0) * (size_t)(in / QK8_0));
            cq_quantize_row_q8_0(x + b * in, blk, in);
            cq_dequant_row(t, blk, xr, in);
            free(blk);
        } else {
            cq_round_row(t, x + b * in, xr, in);
        }
        double ref = 0, mag = 0;
        for (int64_t k = 0; k < in; k++) {
            ref += (double)wr[k] * xr[k];
            mag += fabs((double)wr[k] * xr[k]);
        }
        double e = fabs(y[b * out + r] - ref) / (mag + 1e-30);
        if (e > worst) worst = e;
    }
    free(wr);
    free(xr);
    return worst;
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

int main(int argc, char **argv) {
    int nth = argc > 1 ? atoi(argv[1]) : 2;
    double min_s = argc > 2 ? atof(argv[2]) : 0.3;
    const char *only_type = argc > 3 && strcmp(argv[3], "all") ? argv[3] : NULL;
    int64_t only_n = argc > 4 ? atoll(argv[4]) : 0;
    int64_t ns[] = {1, 8, 512};
    int n_ns = 3;
    if (only_n > 0 && only_n <= 512) {
        ns[0] = only_n;
        n_ns = 1;
    }
    const ggml_type types[] = {GGML_T_F32, GGML_T_F16, GGML_T_BF16, GGML_T_Q8_0};
    const int64_t shapes[][2] = {{768, 768}, {768, 2048}, {2048, 768}, {768, 8192}};
    cpu_ctx_t *c = cpu_ctx_new(nth);
    if (!c) {
        fprintf(stderr, "kernels: %s\n", he_msg());
        return 1;
    }
    if (getenv("KERNELS_GEMM_MIN")) cpu_ctx_set_gemm_min(c, atoll(getenv("KERNELS_GEMM_MIN")));
    printf("threads %d; gemm path from n >= %lld (f32)\n", nth, (long long)cpu_ctx_gemm_min(c, GGML_T_F32));
    printf("%-5s %5s %5s %4s %10s %9s %8s %9s\n", "type", "in", "out", "n", "us/call", "GFLOP/s", "GB/s", "max_err");
    int bad = 0;
    for (size_t si = 0; si < sizeof shapes / sizeof shapes[0]; si++) {
        const int64_t in = shapes[si][0], out = shapes[si][1];
        float *wf = malloc(sizeof(float) * (size_t)(in * out));
        for (int64_t i = 0; i < in * out; i++) wf[i] = frand();
        float *x = malloc(sizeof(float) * (size_t)(512 * in)), *y = malloc(sizeof(float) * (size_t)(512 * out));
        for (int64_t i = 0; i < 512 * in; i++) x[i] = frand();
        for (size_t ti = 0; ti < sizeof types / sizeof types[0]; ti++) {
            ggml_type t = types[ti];
            if (only_type && strcasecmp(only_type, ggml_type_name(t))) continue;
            size_t rb;
            void *w = pack(t, wf, in, out, &rb);
            /* copies of the weights, > 128 MiB in all, cycled through so that
             * timed calls stream weights from DRAM as a real model does */
            const size_t wbytes = rb * (size_t)out;
            int n_copies = getenv("KERNELS_IN_CACHE") ? 1 : (int)((128u << 20) / wbytes) + 1;
            void **copies = malloc(sizeof(void *) * (size_t)n_copies);
            copies[0] = w;
            for (int ci = 1; ci < n_copies; ci++) {
                if (getenv("KERNELS_HUGE")) {
                    size_t hb = (wbytes + (2u << 20) - 1) & ~(size_t)((2u << 20) - 1);
                    copies[ci] = aligned_alloc(2u << 20, hb);
                    madvise(copies[ci], hb, MADV_HUGEPAGE);
                } else {
                    copies[ci] = malloc(wbytes);
                }
                memcpy(copies[ci], w, wbytes);
            }
            /* each copy repacked as the CPU backend does (cpu_mat_repack) where
             * this CPU has a repacked kernel for t */
            cpu_mat *mats = malloc(sizeof(cpu_mat) * (size_t)n_copies);
            for (int ci = 0; ci < n_copies; ci++) {
                mats[ci] = (cpu_mat){.type = t, .in = in, .out = out, .row_bytes = rb, .data = copies[ci]};
                if (cpu_mat_repack(&mats[ci])) {
                    fprintf(stderr, "kernels: %s\n", he_msg());
                    return 1;
                }
            }
            for (int ni = 0; ni < n_ns; ni++) {
                const int64_t n = ns[ni];
                cpu_act a = {0};
                cpu_mm job = {.w = &mats[0], .y = y, .ldy = out, .bias = NULL, .accumulate = false};
                if (cpu_act_prepare(c, &a, t, x, n, in) || cpu_matmul(c, &a, &job, 1)) {
                    fprintf(stderr, "kernels: %s\n", he_msg());
                    return 1;
                }
                double err = validate(t, w, rb, x, y, n, in, out);
                if (err > 1e-5) bad++;
                /* median of the timed calls: robust to a noisy shared machine */
                int reps = 0, cap = 64;
                double *ts = malloc(sizeof(double) * (size_t)cap), t0 = now();
                while (reps < 5 || now() - t0 < min_s) {
                    job.w = &mats[reps % n_copies];
                    double s = now();
                    cpu_act_prepare(c, &a, t, x, n, in);
                    cpu_matmul(c, &a, &job, 1);
                    if (reps == cap) ts = realloc(ts, sizeof(double) * (size_t)(cap *= 2));
                    ts[reps++] = now() - s;
                }
                qsort(ts, (size_t)reps, sizeof(double), cmp_double);
                double med = ts[reps / 2];
                free(ts);
                printf("%-5s %5lld %5lld %4lld %10.1f %9.1f %8.1f %9.1e%s%s\n", ggml_type_name(t), (long long)in,
                       (long long)out, (long long)n, med * 1e6, 2.0 * n * in * out / med * 1e-9,
                       (double)rb * out / med * 1e-9, err, mats[0].rp ? "  repacked" : "",
                       err > 1e-5 ? "  INVALID" : "");
                fflush(stdout);
                cpu_act_free(&a);
            }
            for (int ci = 0; ci < n_copies; ci++) {
                cpu_mat_release(&mats[ci]);
                free(copies[ci]);
            }
            free(mats);
            free(copies);
        }
        free(wf);
        free(x);
        free(y);
    }
    cpu_ctx_destroy(&c);
    if (bad) printf("%d case(s) failed validation\n", bad);
    return bad ? 1 : 0;
}
