/* cpu_quant: element conversions for the CPU backend (f16, bf16, q8_0).
 *
 * Conversions follow ggml bit for bit where it matters for conformance:
 * f32 -> f16 rounds to nearest even (as F16C does), f32 -> bf16 rounds to
 * nearest even and quiets NaNs, and q8_0 activation quantization uses
 * d = amax / 127, q = round-half-even(x * (1/d)) with d stored as f16, like
 * ggml's AVX2 quantize_row_q8_0. A q8_0 block in a GGUF file is 34 bytes:
 * an f16 scale then 32 int8 quants, no padding.
 *
 * Activations quantized for a q8_0 x q8_0 dot are kept split for aligned SIMD
 * loads: quants qs (n, in) int8 and scales qd (n, in/32) f32 (the f16-rounded
 * scale, widened).
 */
#ifndef HELIUM_CPU_QUANT_H
#define HELIUM_CPU_QUANT_H

#include <stddef.h>
#include <stdint.h>

#include "gguf.h"

typedef struct {
    uint16_t d;        /* f16 scale */
    int8_t qs[QK8_0];  /* quants */
} __attribute__((packed)) cq_block_q8_0;

_Static_assert(sizeof(cq_block_q8_0) == 34, "q8_0 block is 34 bytes");

float cq_f16_to_f32(uint16_t h);
uint16_t cq_f32_to_f16(float f);
float cq_bf16_to_f32(uint16_t h);
uint16_t cq_f32_to_bf16(float f);

/* Dequantizes one row of n elements of type t (n a multiple of 32 for q8_0)
 * into dst (n). Unknown types leave dst untouched. */
void cq_dequant_row(ggml_type t, const void *src, float *dst, int64_t n);

/* Quantizes x (n, n % 32 == 0) to ggml q8_0 blocks (n / 32). */
void cq_quantize_row_q8_0(const float *x, cq_block_q8_0 *dst, int64_t n);

/* Quantizes x (n, n % 32 == 0) to split form: qs (n) and qd (n / 32), the same
 * numbers cq_quantize_row_q8_0 produces. */
void cq_quantize_act_q8_0(const float *x, int8_t *qs, float *qd, int64_t n);

/* y (n) = x rounded to the precision of type t (f16 or bf16 round trip; a copy
 * for f32). This is the activation a ggml f16/bf16 dot product multiplies. */
void cq_round_row(ggml_type t, const float *x, float *y, int64_t n);

#endif
