/* gemv: decode matrix-vector products (hk_gemv.h). One warp per output row,
 * 8 warps a block; lanes stride the row with 16-byte weight loads (F32, F16,
 * BF16), one Q8_0 block each (dp4a on the packed quants), or one 8-element
 * slice of a Q4_K super-block each (a warp covers one super-block a step). */
#include "hk_common.cuh"
#include "hk_gemv.h"

#define GV_WARPS 8

__device__ __forceinline__ void gv_store(float *y, int64_t ldy, int64_t o, int R, const float *acc, int acc_mode) {
    const int lane = threadIdx.x & 31;
#pragma unroll
    for (int r = 0; r < HK_GEMV_MAX_ROWS; r++) {
        if (r >= R) break;
        float s = hk_warp_sum(acc[r]);
        if (lane == 0) y[r * ldy + o] = acc_mode ? y[r * ldy + o] + s : s;
    }
}

/* F32 / F16 / BF16: 4 (f32) or 8 (half) elements per lane per step. */
template <int T>
__global__ void __launch_bounds__(GV_WARPS * 32) k_gemv_dense(const uint8_t *w, int64_t in, int64_t out, const float *x, int R,
                                                              float *y, int64_t ldy, int acc_mode) {
    const int64_t o = blockIdx.x * (int64_t)GV_WARPS + (threadIdx.x >> 5);
    const int lane = threadIdx.x & 31;
    if (o >= out) return;
    float acc[HK_GEMV_MAX_ROWS] = {0};
    constexpr int VE = T == HK_T_F32 ? 4 : 8; /* elements per 16-byte load */
    const size_t esz = T == HK_T_F32 ? 4 : 2;
    const uint8_t *row = w + (size_t)o * (size_t)in * esz;
    const int64_t nvec = (in % VE == 0) ? in / VE : 0;
    for (int64_t v = lane; v < nvec; v += 32) {
        uint4 raw = __ldg((const uint4 *)(row + (size_t)v * 16));
        float wf[VE];
        if (T == HK_T_F32) {
            wf[0] = __uint_as_float(raw.x);
            wf[1] = __uint_as_float(raw.y);
            wf[2] = __uint_as_float(raw.z);
            wf[3] = __uint_as_float(raw.w);
        } else {
            const uint32_t u[4] = {raw.x, raw.y, raw.z, raw.w};
#pragma unroll
            for (int k = 0; k < 4; k++) {
                uint16_t lo = (uint16_t)(u[k] & 0xffff), hi = (uint16_t)(u[k] >> 16);
                wf[(2 * k) % VE] = T == HK_T_F16 ? hk_f16(lo) : hk_bf16(lo);
                wf[(2 * k + 1) % VE] = T == HK_T_F16 ? hk_f16(hi) : hk_bf16(hi);
            }
        }
#pragma unroll
        for (int r = 0; r < HK_GEMV_MAX_ROWS; r++) {
            if (r >= R) break;
            const float4 *xv = (const float4 *)(x + r * in + v * VE);
#pragma unroll
            for (int q = 0; q < VE / 4; q++) {
                float4 xx = __ldg(xv + q);
                acc[r] += wf[4 * q] * xx.x + wf[4 * q + 1] * xx.y + wf[4 * q + 2] * xx.z + wf[4 * q + 3] * xx.w;
            }
        }
    }
    for (int64_t i = nvec * VE + lane; i < in; i += 32) { /* rows not a multiple of the vector width */
        float wv = T == HK_T_F32 ? ((const float *)row)[i]
                   : T == HK_T_F16 ? hk_f16(((const uint16_t *)row)[i]) : hk_bf16(((const uint16_t *)row)[i]);
#pragma unroll
        for (int r = 0; r < HK_GEMV_MAX_ROWS; r++)
            if (r < R) acc[r] += wv * x[r * in + i];
    }
    gv_store(y, ldy, o, R, acc, acc_mode);
}

/* Q8_0: lane per 34-byte block; int32 dot of the quants, times both scales. */
__global__ void __launch_bounds__(GV_WARPS * 32) k_gemv_q8_0(const uint8_t *w, int64_t in, int64_t out, const int8_t *xq,
                                                              const float *xd, int R, float *y, int64_t ldy, int acc_mode) {
    const int64_t o = blockIdx.x * (int64_t)GV_WARPS + (threadIdx.x >> 5);
    const int lane = threadIdx.x & 31;
    if (o >= out) return;
    const int64_t nb = in / 32;
    const uint8_t *row = w + (size_t)o * (size_t)nb * 34;
    float acc[HK_GEMV_MAX_ROWS] = {0};
    for (int64_t b = lane; b < nb; b += 32) {
        const uint16_t *blk = (const uint16_t *)(row + b * 34); /* 2-byte aligned */
        const float dw = hk_f16(blk[0]);
        int wq[8];
#pragma unroll
        for (int k = 0; k < 8; k++) wq[k] = (int)((uint32_t)blk[1 + 2 * k] | ((uint32_t)blk[2 + 2 * k] << 16));
#pragma unroll
        for (int r = 0; r < HK_GEMV_MAX_ROWS; r++) {
            if (r >= R) break;
            const int4 *xv = (const int4 *)(xq + r * in + b * 32);
            int4 a0 = __ldg(xv), a1 = __ldg(xv + 1);
            int s = 0;
            s = __dp4a(wq[0], a0.x, s);
            s = __dp4a(wq[1], a0.y, s);
            s = __dp4a(wq[2], a0.z, s);
            s = __dp4a(wq[3], a0.w, s);
            s = __dp4a(wq[4], a1.x, s);
            s = __dp4a(wq[5], a1.y, s);
            s = __dp4a(wq[6], a1.z, s);
            s = __dp4a(wq[7], a1.w, s);
            acc[r] += (float)s * (dw * xd[r * nb + b]);
        }
    }
    gv_store(y, ldy, o, R, acc, acc_mode);
}

/* Q4_K: lane l takes elements 8 (l % 4) .. +8 of sub-block l / 4 of each
 * 256-element super-block; f32 activations. */
__global__ void __launch_bounds__(GV_WARPS * 32) k_gemv_q4_k(const uint8_t *w, int64_t in, int64_t out, const float *x, int R,
                                                              float *y, int64_t ldy, int acc_mode) {
    const int64_t o = blockIdx.x * (int64_t)GV_WARPS + (threadIdx.x >> 5);
    const int lane = threadIdx.x & 31;
    if (o >= out) return;
    const int64_t nsb = in / 256;
    const uint8_t *row = w + (size_t)o * (size_t)nsb * 144;
    const int c = lane >> 2, off = (lane & 3) * 8;
    float acc[HK_GEMV_MAX_ROWS] = {0};
    for (int64_t sb = 0; sb < nsb; sb++) {
        const uint8_t *b = row + sb * 144;
        const float d = hk_f16(__ldg((const unsigned short *)b)), dmin = hk_f16(__ldg((const unsigned short *)(b + 2)));
        int sc, mn;
        hk_q4k_scale_min(c, b + 4, &sc, &mn);
        const uint2 raw = __ldg((const uint2 *)(b + 16 + 32 * (c >> 1) + off));
        const int shift = (c & 1) * 4;
        float q[8];
#pragma unroll
        for (int k = 0; k < 4; k++) {
            q[k] = (float)((raw.x >> (8 * k + shift)) & 0xF);
            q[4 + k] = (float)((raw.y >> (8 * k + shift)) & 0xF);
        }
        const float ds = d * (float)sc, dm = dmin * (float)mn;
#pragma unroll
        for (int r = 0; r < HK_GEMV_MAX_ROWS; r++) {
            if (r >= R) break;
            const float4 *xv = (const float4 *)(x + r * in + sb * 256 + c * 32 + off);
            float4 x0 = __ldg(xv), x1 = __ldg(xv + 1);
            float dot = q[0] * x0.x + q[1] * x0.y + q[2] * x0.z + q[3] * x0.w + q[4] * x1.x + q[5] * x1.y +
                        q[6] * x1.z + q[7] * x1.w;
            float sx = x0.x + x0.y + x0.z + x0.w + x1.x + x1.y + x1.z + x1.w;
            acc[r] += ds * dot - dm * sx;
        }
    }
    gv_store(y, ldy, o, R, acc, acc_mode);
}

extern "C" int hk_gemv(const void *w, int t, int64_t in, int64_t out, const float *x, const int8_t *xq,
                       const float *xd, int R, float *y, int64_t ldy, int accumulate, cudaStream_t st) {
    if (R < 1 || R > HK_GEMV_MAX_ROWS || in <= 0 || out <= 0 || !hk_row_bytes(t, in)) return (int)cudaErrorInvalidValue;
    const unsigned grid = (unsigned)((out + GV_WARPS - 1) / GV_WARPS);
    const uint8_t *wb = (const uint8_t *)w;
    switch (t) {
    case HK_T_F32: k_gemv_dense<HK_T_F32><<<grid, GV_WARPS * 32, 0, st>>>(wb, in, out, x, R, y, ldy, accumulate); break;
    case HK_T_F16: k_gemv_dense<HK_T_F16><<<grid, GV_WARPS * 32, 0, st>>>(wb, in, out, x, R, y, ldy, accumulate); break;
    case HK_T_BF16: k_gemv_dense<HK_T_BF16><<<grid, GV_WARPS * 32, 0, st>>>(wb, in, out, x, R, y, ldy, accumulate); break;
    case HK_T_Q8_0:
        if (!xq || !xd) return (int)cudaErrorInvalidValue;
        k_gemv_q8_0<<<grid, GV_WARPS * 32, 0, st>>>(wb, in, out, xq, xd, R, y, ldy, accumulate);
        break;
    case HK_T_Q4_K: k_gemv_q4_k<<<grid, GV_WARPS * 32, 0, st>>>(wb, in, out, x, R, y, ldy, accumulate); break;
    default: return (int)cudaErrorInvalidValue;
    }
    return hk_launch_status();
}
