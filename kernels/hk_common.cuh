/* hk_common: device helpers shared by the kernel families (internal to
 * kernels/; never included from C).
 *
 * Element conversions follow the CPU backend (worker/cpu/cpu_quant.h): f32 to
 * f16 and to bf16 round to nearest even; bf16 widening is exact. Quantized
 * block layouts are ggml's, byte for byte (GGUF files are read as they are):
 *   Q8_0: 34 bytes per 32 elements, an f16 scale d then 32 int8 quants;
 *         x = d * q.
 *   Q4_K: 144 bytes per 256 elements: f16 d, f16 dmin, 12 bytes of packed
 *         6-bit scales and mins for 8 sub-blocks of 32, 128 bytes of 4-bit
 *         quants (sub-blocks 2p and 2p+1 share bytes 32p..32p+31, low nibble
 *         then high); x = d * sc[j] * q - dmin * mn[j].
 */
#ifndef HELIUM_HK_COMMON_CUH
#define HELIUM_HK_COMMON_CUH

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>
#include <stdint.h>

#include "hk_types.h"

#define HK_WARP 32

/* Launch check for the launchers: the launch error (bad configuration) or 0. */
static inline int hk_launch_status(void) { return (int)cudaGetLastError(); }

__device__ __forceinline__ float hk_warp_sum(float v) {
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}
__device__ __forceinline__ float hk_warp_max(float v) {
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
    return v;
}

__device__ __forceinline__ float hk_f16(uint16_t h) { return __half2float(__ushort_as_half(h)); }
__device__ __forceinline__ float hk_bf16(uint16_t h) { return __uint_as_float((uint32_t)h << 16); }
__device__ __forceinline__ uint16_t hk_to_f16(float f) { return __half_as_ushort(__float2half_rn(f)); }
__device__ __forceinline__ uint16_t hk_to_bf16(float f) {
    return __bfloat16_as_ushort(__float2bfloat16_rn(f));
}

/* A KV element of type t (HK_KV_*) at p[i]. */
__device__ __forceinline__ float hk_kv_load(const void *p, size_t i, int t) {
    if (t == HK_KV_F16) return hk_f16(((const uint16_t *)p)[i]);
    if (t == HK_KV_BF16) return hk_bf16(((const uint16_t *)p)[i]);
    return ((const float *)p)[i];
}
__device__ __forceinline__ void hk_kv_store1(void *p, size_t i, int t, float v) {
    if (t == HK_KV_F16) ((uint16_t *)p)[i] = hk_to_f16(v);
    else if (t == HK_KV_BF16) ((uint16_t *)p)[i] = hk_to_bf16(v);
    else ((float *)p)[i] = v;
}

/* Q4_K sub-block j's (scale, min) from the 12 packed bytes. */
__device__ __forceinline__ void hk_q4k_scale_min(int j, const uint8_t *q, int *sc, int *mn) {
    if (j < 4) {
        *sc = q[j] & 63;
        *mn = q[j + 4] & 63;
    } else {
        *sc = (q[j + 4] & 0xF) | ((q[j - 4] >> 6) << 4);
        *mn = (q[j + 4] >> 4) | ((q[j] >> 6) << 4);
    }
}

/* Element i of a row of ggml type t (F32, F16, BF16, Q8_0, Q4_K). */
__device__ __forceinline__ float hk_row_elem(const uint8_t *row, int t, int64_t i) {
    switch (t) {
    case HK_T_F16: return hk_f16(((const uint16_t *)row)[i]);
    case HK_T_BF16: return hk_bf16(((const uint16_t *)row)[i]);
    case HK_T_Q8_0: {
        const uint8_t *b = row + (i / 32) * 34;
        uint16_t d = (uint16_t)(b[0] | (b[1] << 8));
        return hk_f16(d) * (float)(int8_t)b[2 + i % 32];
    }
    case HK_T_Q4_K: {
        const uint8_t *b = row + (i / 256) * 144;
        int e = (int)(i % 256), j = e / 32, l = e % 32;
        float d = hk_f16(*(const uint16_t *)b), dmin = hk_f16(*(const uint16_t *)(b + 2));
        int sc, mn;
        hk_q4k_scale_min(j, b + 4, &sc, &mn);
        uint8_t q = b[16 + 32 * (j / 2) + l];
        int v = (j & 1) ? q >> 4 : q & 0xF;
        return d * (float)sc * (float)v - dmin * (float)mn;
    }
    default: return ((const float *)row)[i];
    }
}

#endif
