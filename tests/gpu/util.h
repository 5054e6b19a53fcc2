/* util: shared helpers of the GPU test programs (tests/gpu/gpu_*.c).
 *
 * Measures follow llama.cpp's test-backend-ops: NMSE = sum (a - b)^2 / sum
 * b^2 against the CPU result b. Every check prints one line "ok|FAIL name
 * measure <= bound" and counts; gu_finish() prints the totals and gives the
 * exit code. Device helpers abort the program on a CUDA error (a test
 * program, not the worker), printing expression, file and line.
 */
#ifndef HELIUM_GPU_UTIL_H
#define HELIUM_GPU_UTIL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <cuda_runtime_api.h>

#define GU_CUDA(expr) gu_cuda_check((int)(expr), #expr, __FILE__, __LINE__)
#define GU_LAUNCH(expr) gu_cuda_check((int)(expr), #expr, __FILE__, __LINE__)

void gu_cuda_check(int err, const char *expr, const char *file, int line);

double gu_nmse(const float *a, const float *ref, size_t n);
/* Relative L2 ||a - ref|| / ||ref||. */
double gu_rel_l2(const float *a, const float *ref, size_t n);

/* One check: passes when value <= bound (and is not NaN). Returns pass. */
bool gu_check(const char *name, double value, double bound);
/* A boolean check. */
bool gu_expect(const char *name, bool ok, const char *detail);
/* Prints the totals; 0 when everything passed, else 1. */
int gu_finish(const char *program);

/* Uniform in [-1, 1), from a private generator (seeded by gu_seed). */
void gu_seed(uint64_t s);
float gu_rand(void);
void gu_fill(float *x, size_t n, float scale);
uint32_t gu_rand_u32(void);

/* Device copies: returns a device pointer holding n bytes of src. */
void *gu_to_dev(const void *src, size_t n);
void gu_to_host(void *dst, const void *dev, size_t n);
void *gu_dev_alloc(size_t n);

/* Writes a generated model with helium-mkmodel ($HELIUM_BIN or the build's
 * bin/) to path. 0 or -1. */
int gu_mkmodel(const char *preset, const char *arch, const char *dtype, int seed, const char *path);

#endif
