/* hk_embed: embedding gather and weight dequantization.
 *
 * A weight matrix on the device is kept in its GGUF type, rows of
 * hk_row_bytes(type, in) bytes (F32, F16, BF16, Q8_0 and Q4_K are read). */
#ifndef HELIUM_HK_EMBED_H
#define HELIUM_HK_EMBED_H

#include "hk_types.h"

#ifdef __cplusplus
extern "C" {
#endif

/* x (n, dim) f32 = rows ids[0..n) of table (n_rows, dim) of type t,
 * dequantized. Ids must be < n_rows (the caller checks them). */
int hk_embed(const void *table, int t, int64_t dim, const int32_t *ids, int64_t n, float *x, cudaStream_t st);

/* Dequantizes rows [r0, r0 + nr) of w (., in) of type t into dst (nr, in):
 * f32 when half_t == HK_T_F32, else f16 / bf16 (half_t = HK_T_F16 /
 * HK_T_BF16, rounded to nearest even). */
int hk_dequant_rows(const void *w, int t, int64_t in, int64_t r0, int64_t nr, void *dst, int half_t,
                    cudaStream_t st);

#ifdef __cplusplus
}
#endif

#endif
