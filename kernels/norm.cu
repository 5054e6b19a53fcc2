/* norm: RMSNorm, one block of 256 threads per row (hk_norm.h). */
#include "hk_common.cuh"
#include "hk_norm.h"

__global__ void k_rmsnorm(const float *__restrict__ x, const float *__restrict__ w, float *y, int64_t dim,
                          float eps) {
    const float *xr = x + blockIdx.x * dim;
    float *yr = y + blockIdx.x * dim;
    double s = 0.0;
    for (int64_t k = threadIdx.x; k < dim; k += blockDim.x) s += (double)(xr[k] * xr[k]);
    __shared__ double part[8];
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) s += __shfl_xor_sync(0xffffffffu, s, o);
    if ((threadIdx.x & 31) == 0) part[threadIdx.x >> 5] = s;
    __syncthreads();
    if (threadIdx.x == 0) {
        double t = 0.0;
        for (int i = 0; i < (int)(blockDim.x >> 5); i++) t += part[i];
        part[0] = t;
    }
    __syncthreads();
    const float mean = (float)(part[0] / (double)dim);
    const float scale = 1.0f / sqrtf(mean + eps);
    for (int64_t k = threadIdx.x; k < dim; k += blockDim.x) yr[k] = (xr[k] * scale) * w[k];
}

extern "C" int hk_rmsnorm(const float *x, const float *w, float *y, int64_t n, int64_t dim, float eps,
                          cudaStream_t st) {
    if (n <= 0) return 0;
    k_rmsnorm<<<(unsigned)n, 256, 0, st>>>(x, w, y, dim, eps);
    return hk_launch_status();
}
