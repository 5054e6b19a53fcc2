/* util: see util.h. */
#include "util.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>

static int g_pass, g_fail;
static uint64_t g_rng = 0x9E3779B97F4A7C15ull;

void gu_cuda_check(int err, const char *expr, const char *file, int line) {
    if (err == 0) return;
    fprintf(stderr, "FATAL: CUDA error %d (%s) in %s at %s:%d\n", err, cudaGetErrorString((cudaError_t)err), expr,
            file, line);
    exit(2);
}

double gu_nmse(const float *a, const float *ref, size_t n) {
    double num = 0, den = 0;
    for (size_t i = 0; i < n; i++) {
        double d = (double)a[i] - (double)ref[i];
        num += d * d;
        den += (double)ref[i] * (double)ref[i];
    }
    return den > 0 ? num / den : (num > 0 ? INFINITY : 0);
}

double gu_rel_l2(const float *a, const float *ref, size_t n) { return sqrt(gu_nmse(a, ref, n)); }

bool gu_check(const char *name, double value, double bound) {
    bool ok = value <= bound; /* NaN fails */
    printf("%-4s %-60s %.3e <= %.1e\n", ok ? "ok" : "FAIL", name, value, bound);
    fflush(stdout);
    ok ? g_pass++ : g_fail++;
    return ok;
}

bool gu_expect(const char *name, bool ok, const char *detail) {
    printf("%-4s %-60s %s\n", ok ? "ok" : "FAIL", name, detail ? detail : "");
    fflush(stdout);
    ok ? g_pass++ : g_fail++;
    return ok;
}

int gu_finish(const char *program) {
    printf("%s: %d checks passed, %d failed\n", program, g_pass, g_fail);
    return g_fail ? 1 : 0;
}

void gu_seed(uint64_t s) { g_rng = s * 0x9E3779B97F4A7C15ull + 1; }

uint32_t gu_rand_u32(void) { /* splitmix64 */
    uint64_t z = (g_rng += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return (uint32_t)((z ^ (z >> 31)) >> 32);
}

float gu_rand(void) { return (float)((double)gu_rand_u32() / 2147483648.0 - 1.0); }

void gu_fill(float *x, size_t n, float scale) {
    for (size_t i = 0; i < n; i++) x[i] = gu_rand() * scale;
}

void *gu_dev_alloc(size_t n) {
    void *d = NULL;
    GU_CUDA(cudaMalloc(&d, n ? n : 16));
    return d;
}

void *gu_to_dev(const void *src, size_t n) {
    void *d = gu_dev_alloc(n);
    GU_CUDA(cudaMemcpy(d, src, n, cudaMemcpyHostToDevice));
    return d;
}

void gu_to_host(void *dst, const void *dev, size_t n) { GU_CUDA(cudaMemcpy(dst, dev, n, cudaMemcpyDeviceToHost)); }

int gu_mkmodel(const char *preset, const char *arch, const char *dtype, int seed, const char *path) {
    const char *bin = getenv("HELIUM_BIN");
    char cmd[1024];
    snprintf(cmd, sizeof cmd, "%s/helium-mkmodel --preset %s --arch %s --dtype %s --seed %d -o %s >/dev/null 2>&1",
             bin ? bin : HELIUM_BIN_DIR, preset, arch, dtype, seed, path);
    return system(cmd) == 0 ? 0 : -1;
}
