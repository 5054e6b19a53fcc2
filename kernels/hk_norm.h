/* hk_norm: RMSNorm rows on the GPU.
 * y (n, dim) = x / sqrt(mean(x^2) + eps) * w (dim); y may alias x. Squares in
 * f32 summed in f64, as the CPU backend (cpu_rmsnorm) does. */
#ifndef HELIUM_HK_NORM_H
#define HELIUM_HK_NORM_H

#include "hk_types.h"

#ifdef __cplusplus
extern "C" {
#endif

int hk_rmsnorm(const float *x, const float *w, float *y, int64_t n, int64_t dim, float eps, cudaStream_t st);

#ifdef __cplusplus
}
#endif

#endif
