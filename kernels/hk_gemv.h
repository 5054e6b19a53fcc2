/* hk_gemv: weight-streaming matrix-vector products for decode.
 *
 * y (R, ldy) [+]= x (R, in) W^T for W (out, in) in its GGUF type (F32, F16,
 * BF16, Q8_0, Q4_K), 1 <= R <= HK_GEMV_MAX_ROWS: every weight byte is read
 * once for all R rows. x must be prepared for the weight type (hk_elem.h):
 * rounded to f16 / bf16 for F16 / BF16 weights; for Q8_0 weights pass the
 * q8_0 split form (xq (R, in) int8, xd (R, in / 32)) and x may be NULL; F32
 * and Q4_K multiply x as it is. Products accumulate in f32 (int32 inside a
 * Q8_0 block, as the CPU backend). */
#ifndef HELIUM_HK_GEMV_H
#define HELIUM_HK_GEMV_H

#include "hk_types.h"

#define HK_GEMV_MAX_ROWS 8

#ifdef __cplusplus
extern "C" {
#endif

int hk_gemv(const void *w, int t, int64_t in, int64_t out, const float *x, const int8_t *xq, const float *xd, int R,
            float *y, int64_t ldy, int accumulate, cudaStream_t st);

#ifdef __cplusplus
}
#endif

#endif
