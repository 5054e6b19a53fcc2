/* cpu_geglu: the GeGLU activation of gemma-family FFNs, y = gelu(g) * u with
 * the tanh approximation of GELU, computed as ggml's CPU backend computes it
 * (GGML_GELU_FP16: for -10 < g < 10 the GELU of g rounded to f16, itself
 * rounded to f16; 0 below, g above), so logits follow llama.cpp's closely.
 *
 * Element-wise, so batch invariant: row r's result depends only on row r.
 */
#ifndef HELIUM_CPU_GELU_H
#define HELIUM_CPU_GELU_H

#include <stdint.h>

#include "cpu_ops.h"

/* y (n, dim) = gelu_tanh(g) * u; y may alias g or u. */
void cpu_geglu(cpu_ctx_t *c, const float *g, const float *u, float *y, int64_t n, int64_t dim);

/* y (n) = tanh(x / cap) * cap, in place allowed (final logit soft-capping). */
void cpu_softcap(float *x, int64_t n, float cap);

#endif
