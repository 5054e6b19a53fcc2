/* hk_rope: rotary position embedding in place, both layouts.
 * x (n, n_heads * head_dim); token i rotates by pos[i]. Pair k (0 <= k <
 * rope_dim/2) turns by pos * base^(-2k/rope_dim), the angle built by repeated
 * f32 multiplication as the CPU backend (cpu_rope_prepare) and ggml do. Pairs
 * are (2k, 2k+1) (llama: neox = 0) or (k, k + rope_dim/2) (NeoX halves, qwen2:
 * neox = 1); dims >= rope_dim are untouched. */
#ifndef HELIUM_HK_ROPE_H
#define HELIUM_HK_ROPE_H

#include "hk_types.h"

#ifdef __cplusplus
extern "C" {
#endif

int hk_rope(float *x, const int32_t *pos, int64_t n, int n_heads, int head_dim, int rope_dim, float base,
            int neox, cudaStream_t st);

#ifdef __cplusplus
}
#endif

#endif
