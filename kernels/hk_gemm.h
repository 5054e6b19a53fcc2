/* hk_gemm: prefill matrix products through cuBLAS.
 *
 * y (R, ldy) [+]= x (R, in) W^T, W (out, in) in its GGUF type. F16 / BF16
 * weights multiply x rounded to f16 / bf16 (cublasGemmEx, f32 accumulation
 * and output); F32 weights go through an f32 product (CUBLAS_COMPUTE_32F, no
 * TF32). Q8_0 and Q4_K weights are kept quantized on the device and
 * dequantized to f32 here, a slice of rows at a time into the caller's
 * scratch; Q8_0 then multiplies x quantized-dequantized to q8_0 (the CPU
 * backend's numerics), Q4_K multiplies x itself.
 *
 * xs: R * in floats of scratch for the prepared activation. ws / ws_bytes:
 * weight scratch, at least one dequantized row (in * 4 bytes) for quantized
 * types. The cuBLAS handle must be bound to stream st. */
#ifndef HELIUM_HK_GEMM_H
#define HELIUM_HK_GEMM_H

#include <cublas_v2.h>

#include "hk_types.h"

#ifdef __cplusplus
extern "C" {
#endif

/* 0, or a negative number: -(cudaError_t) for a kernel launch failure, or
 * -(1000 + cublasStatus_t) for a cuBLAS failure. */
int hk_gemm(cublasHandle_t h, const void *w, int t, int64_t in, int64_t out, const float *x, int64_t R, float *y,
            int64_t ldy, int accumulate, void *xs, void *ws, size_t ws_bytes, cudaStream_t st);

#ifdef __cplusplus
}
#endif

#endif
