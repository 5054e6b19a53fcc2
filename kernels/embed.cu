/* embed: row gather with dequantization, and weight dequantization into a
 * scratch matrix for cuBLAS (hk_embed.h). One block per row; threads over the
 * row's elements; each element decoded on its own (hk_row_elem). */
#include "hk_common.cuh"
#include "hk_embed.h"

__global__ void k_embed(const uint8_t *table, int t, size_t row_bytes, int64_t dim, const int32_t *ids,
                        float *x) {
    const uint8_t *row = table + (size_t)ids[blockIdx.x] * row_bytes;
    float *out = x + (int64_t)blockIdx.x * dim;
    for (int64_t i = threadIdx.x; i < dim; i += blockDim.x) out[i] = hk_row_elem(row, t, i);
}

__global__ void k_dequant(const uint8_t *w, int t, size_t row_bytes, int64_t in, int64_t r0, void *dst,
                          int half_t) {
    const int64_t r = blockIdx.x;
    const uint8_t *row = w + (size_t)(r0 + r) * row_bytes;
    for (int64_t i = threadIdx.x; i < in; i += blockDim.x) {
        float v = hk_row_elem(row, t, i);
        if (half_t == HK_T_F16) ((uint16_t *)dst)[r * in + i] = hk_to_f16(v);
        else if (half_t == HK_T_BF16) ((uint16_t *)dst)[r * in + i] = hk_to_bf16(v);
        else ((float *)dst)[r * in + i] = v;
    }
}

extern "C" int hk_embed(const void *table, int t, int64_t dim, const int32_t *ids, int64_t n, float *x,
                        cudaStream_t st) {
    size_t rb = hk_row_bytes(t, dim);
    if (!rb) return (int)cudaErrorInvalidValue;
    if (n <= 0) return 0;
    k_embed<<<(unsigned)n, 256, 0, st>>>((const uint8_t *)table, t, rb, dim, ids, x);
    return hk_launch_status();
}

extern "C" int hk_dequant_rows(const void *w, int t, int64_t in, int64_t r0, int64_t nr, void *dst, int half_t,
                               cudaStream_t st) {
    size_t rb = hk_row_bytes(t, in);
    if (!rb) return (int)cudaErrorInvalidValue;
    if (nr <= 0) return 0;
    k_dequant<<<(unsigned)nr, 256, 0, st>>>((const uint8_t *)w, t, rb, in, r0, dst, half_t);
    return hk_launch_status();
}
