/* gemm: cuBLAS products for prefill (hk_gemm.h). Host code only: prepares
 * the activation with the elem kernels, dequantizes quantized weights slice
 * by slice with the embed kernels, and calls cublasGemmEx in column-major
 * terms: Y^T (out, R) = op_T(W as (in, out)) * X^T (in, R). */
#include "hk_elem.h"
#include "hk_embed.h"
#include "hk_gemm.h"

static int gemm_ex(cublasHandle_t h, const void *w, cudaDataType wt, const void *x, cudaDataType xt, int64_t in,
                   int64_t out, int64_t R, float *y, int64_t ldy, int accumulate) {
    const float alpha = 1.0f, beta = accumulate ? 1.0f : 0.0f;
    cublasStatus_t s = cublasGemmEx(h, CUBLAS_OP_T, CUBLAS_OP_N, (int)out, (int)R, (int)in, &alpha, w, wt, (int)in, x,
                                    xt, (int)in, &beta, y, CUDA_R_32F, (int)ldy, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT);
    return s == CUBLAS_STATUS_SUCCESS ? 0 : -(1000 + (int)s);
}

extern "C" int hk_gemm(cublasHandle_t h, const void *w, int t, int64_t in, int64_t out, const float *x, int64_t R,
                       float *y, int64_t ldy, int accumulate, void *xs, void *ws, size_t ws_bytes, cudaStream_t st) {
    if (R <= 0 || out <= 0) return 0;
    if (in <= 0 || !hk_row_bytes(t, in) || !xs) return -(int)cudaErrorInvalidValue;
    int rc;
    switch (t) {
    case HK_T_F32: return gemm_ex(h, w, CUDA_R_32F, x, CUDA_R_32F, in, out, R, y, ldy, accumulate);
    case HK_T_F16:
    case HK_T_BF16: {
        cudaDataType dt = t == HK_T_F16 ? CUDA_R_16F : CUDA_R_16BF;
        if ((rc = hk_to_half(t, x, (uint16_t *)xs, R * in, st))) return -rc;
        return gemm_ex(h, w, dt, xs, dt, in, out, R, y, ldy, accumulate);
    }
    case HK_T_Q8_0:
    case HK_T_Q4_K: {
        const float *xa = x;
        if (t == HK_T_Q8_0) {
            if ((rc = hk_act_round(t, x, (float *)xs, R * in, st))) return -rc;
            xa = (const float *)xs;
        }
        int64_t rows = (int64_t)(ws_bytes / ((size_t)in * sizeof(float)));
        if (rows <= 0 || !ws) return -(int)cudaErrorInvalidValue;
        for (int64_t r0 = 0; r0 < out; r0 += rows) {
            int64_t nr = out - r0 < rows ? out - r0 : rows;
            if ((rc = hk_dequant_rows(w, t, in, r0, nr, ws, HK_T_F32, st))) return -rc;
            if ((rc = gemm_ex(h, ws, CUDA_R_32F, xa, CUDA_R_32F, in, nr, R, y + r0, ldy, accumulate))) return rc;
        }
        return 0;
    }
    default: return -(int)cudaErrorInvalidValue;
    }
}
