/* hk_elem: element-wise kernels of the forward pass, and the activation
 * preparation the matrix products need.
 *
 * Activations for a weight of type t are prepared as the CPU backend prepares
 * them (cpu_ops.h: the "dot type"), so that GPU and CPU products differ only in
 * summation order: F16 / BF16 weights multiply x rounded to f16 / bf16, Q8_0
 * weights multiply x quantized per block of 32 to q8_0 (d = amax/127 rounded
 * to f16, q = round-half-even(x * 127/amax)), F32 and Q4_K weights multiply x
 * itself. */
#ifndef HELIUM_HK_ELEM_H
#define HELIUM_HK_ELEM_H

#include "hk_types.h"

#ifdef __cplusplus
extern "C" {
#endif

/* y (n) = silu(g) * u; y may alias g or u. */
int hk_swiglu(const float *g, const float *u, float *y, int64_t n, cudaStream_t st);
/* y (n) += x (n). */
int hk_add(float *y, const float *x, int64_t n, cudaStream_t st);
/* y (rows, dim) += b (dim) broadcast over rows. */
int hk_add_bias(float *y, const float *b, int64_t rows, int64_t dim, cudaStream_t st);
/* y (n) = x rounded to weight type t's dot type, as f32 values (f16 / bf16
 * round trip; q8_0 quantize-dequantize per 32, n % 32 == 0; a copy for F32
 * and Q4_K). y may alias x. */
int hk_act_round(int t, const float *x, float *y, int64_t n, cudaStream_t st);
/* h (n) = x converted to f16 (t = HK_T_F16) or bf16 (HK_T_BF16), round to
 * nearest even: the A operand of a cuBLAS product. */
int hk_to_half(int t, const float *x, uint16_t *h, int64_t n, cudaStream_t st);
/* q8_0 split form of x (n, n % 32 == 0): qs (n) int8, qd (n / 32) the
 * f16-rounded scales as f32; for the Q8_0 GEMV. */
int hk_quant_q8_0(const float *x, int8_t *qs, float *qd, int64_t n, cudaStream_t st);
/* dst (n, dim) = rows idx[0..n) of src (., dim); idx on the device. */
int hk_gather_rows(const float *src, const int32_t *idx, int64_t n, int64_t dim, float *dst, cudaStream_t st);

#ifdef __cplusplus
}
#endif

#endif
