/* elem: element-wise kernels and activation preparation (hk_elem.h). Grid
 * strided, 256 threads a block; the q8_0 kernels give each warp one block of
 * 32 elements. */
#include "hk_common.cuh"
#include "hk_elem.h"

static unsigned grid_for(int64_t n) {
    int64_t b = (n + 255) / 256;
    return (unsigned)(b < 4096 ? (b > 0 ? b : 1) : 4096);
}

__global__ void k_swiglu(const float *g, const float *u, float *y, int64_t n) {
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x) {
        float a = g[i];
        y[i] = a / (1.0f + expf(-a)) * u[i];
    }
}
__global__ void k_add(float *y, const float *x, int64_t n) {
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x)
        y[i] += x[i];
}
__global__ void k_add_bias(float *y, const float *b, int64_t n, int64_t dim) {
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x)
        y[i] += b[i % dim];
}
__global__ void k_round(int t, const float *x, float *y, int64_t n) {
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x) {
        float v = x[i];
        if (t == HK_T_F16) v = hk_f16(hk_to_f16(v));
        else if (t == HK_T_BF16) v = hk_bf16(hk_to_bf16(v));
        y[i] = v;
    }
}
__global__ void k_to_half(int t, const float *x, uint16_t *h, int64_t n) {
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x)
        h[i] = t == HK_T_BF16 ? hk_to_bf16(x[i]) : hk_to_f16(x[i]);
}

/* One warp per block of 32: writes the quants (qs) and f16-rounded scale (qd)
 * and, when y is set, the dequantized values. */
__global__ void k_q8_0(const float *x, int8_t *qs, float *qd, float *y, int64_t nb) {
    int64_t b = (blockIdx.x * (int64_t)blockDim.x + threadIdx.x) / 32;
    int lane = threadIdx.x & 31;
    if (b >= nb) return;
    float v = x[b * 32 + lane];
    float amax = hk_warp_max(fabsf(v));
    float id = amax != 0.0f ? 127.0f / amax : 0.0f;
    float q = rintf(v * id);
    float d = hk_f16(hk_to_f16(amax / 127.0f));
    if (qs) qs[b * 32 + lane] = (int8_t)q;
    if (qd && lane == 0) qd[b] = d;
    if (y) y[b * 32 + lane] = d * q;
}

__global__ void k_gather_rows(const float *src, const int32_t *idx, int64_t dim, float *dst) {
    const float *s = src + (int64_t)idx[blockIdx.x] * dim;
    float *d = dst + (int64_t)blockIdx.x * dim;
    for (int64_t i = threadIdx.x; i < dim; i += blockDim.x) d[i] = s[i];
}

extern "C" int hk_gather_rows(const float *src, const int32_t *idx, int64_t n, int64_t dim, float *dst,
                              cudaStream_t st) {
    if (n <= 0) return 0;
    k_gather_rows<<<(unsigned)n, 256, 0, st>>>(src, idx, dim, dst);
    return hk_launch_status();
}

extern "C" int hk_swiglu(const float *g, const float *u, float *y, int64_t n, cudaStream_t st) {
    if (n <= 0) return 0;
    k_swiglu<<<grid_for(n), 256, 0, st>>>(g, u, y, n);
    return hk_launch_status();
}
extern "C" int hk_add(float *y, const float *x, int64_t n, cudaStream_t st) {
    if (n <= 0) return 0;
    k_add<<<grid_for(n), 256, 0, st>>>(y, x, n);
    return hk_launch_status();
}
extern "C" int hk_add_bias(float *y, const float *b, int64_t rows, int64_t dim, cudaStream_t st) {
    if (rows <= 0 || dim <= 0) return 0;
    k_add_bias<<<grid_for(rows * dim), 256, 0, st>>>(y, b, rows * dim, dim);
    return hk_launch_status();
}
extern "C" int hk_act_round(int t, const float *x, float *y, int64_t n, cudaStream_t st) {
    if (n <= 0) return 0;
    if (t == HK_T_Q8_0) {
        if (n % 32) return (int)cudaErrorInvalidValue;
        k_q8_0<<<(unsigned)((n + 255) / 256), 256, 0, st>>>(x, NULL, NULL, y, n / 32);
    } else {
        k_round<<<grid_for(n), 256, 0, st>>>(t, x, y, n);
    }
    return hk_launch_status();
}
extern "C" int hk_to_half(int t, const float *x, uint16_t *h, int64_t n, cudaStream_t st) {
    if (n <= 0) return 0;
    k_to_half<<<grid_for(n), 256, 0, st>>>(t, x, h, n);
    return hk_launch_status();
}
extern "C" int hk_quant_q8_0(const float *x, int8_t *qs, float *qd, int64_t n, cudaStream_t st) {
    if (n <= 0) return 0;
    if (n % 32) return (int)cudaErrorInvalidValue;
    k_q8_0<<<(unsigned)((n + 255) / 256), 256, 0, st>>>(x, qs, qd, NULL, n / 32);
    return hk_launch_status();
}
