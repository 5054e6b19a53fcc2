/* rope: rotary embedding (hk_rope.h). One block per token; threads over
 * (head, pair). The angle of pair k is pos * scale^k by k multiplications, so
 * its rounding matches the CPU table bit for bit. */
#include "hk_common.cuh"
#include "hk_rope.h"

__global__ void k_rope(float *x, const int32_t *__restrict__ pos, int n_heads, int head_dim, int rope_dim,
                       float theta_scale, int neox) {
    const int half = rope_dim / 2;
    float *row = x + (int64_t)blockIdx.x * n_heads * head_dim;
    const float p = (float)pos[blockIdx.x];
    for (int e = threadIdx.x; e < n_heads * half; e += blockDim.x) {
        int h = e / half, k = e % half;
        float theta = p;
        for (int j = 0; j < k; j++) theta *= theta_scale;
        float cs = cosf(theta), sn = sinf(theta);
        float *v = row + (int64_t)h * head_dim;
        int i0 = neox ? k : 2 * k, i1 = neox ? k + half : 2 * k + 1;
        float x0 = v[i0], x1 = v[i1];
        v[i0] = x0 * cs - x1 * sn;
        v[i1] = x0 * sn + x1 * cs;
    }
}

extern "C" int hk_rope(float *x, const int32_t *pos, int64_t n, int n_heads, int head_dim, int rope_dim,
                       float base, int neox, cudaStream_t st) {
    if (n <= 0) return 0;
    if (rope_dim < 2 || rope_dim % 2 || rope_dim > head_dim) return (int)cudaErrorInvalidValue;
    const float theta_scale = powf(base, -2.0f / (float)rope_dim);
    k_rope<<<(unsigned)n, 128, 0, st>>>(x, pos, n_heads, head_dim, rope_dim, theta_scale, neox);
    return hk_launch_status();
}
