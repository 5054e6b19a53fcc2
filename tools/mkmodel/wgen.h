/* wgen: deterministic random weights and ggml tensor encodings for helium-mkmodel.
 *
 * Random streams are xoshiro256** seeded through splitmix64 from (seed, stream
 * name), so each tensor's values depend only on the seed and its name. Values
 * are produced with integer arithmetic and a single floating-point multiply per
 * element (no additions that a compiler could fuse into an FMA), so the same
 * seed gives bit-identical files on every IEEE-754 machine and build flags.
 *
 * Encodings (little-endian, as ggml stores them):
 *  - F16: IEEE binary16, round to nearest even (subnormals, inf, NaN handled).
 *  - BF16: top 16 bits of the f32 with round to nearest even; NaN stays NaN.
 *  - Q8_0: blocks of 32 values: f16 scale d = max|x| / 127, then 32 int8
 *    q = round(x / d) (as round(x * (1/d)), like ggml's reference quantizer).
 */
#ifndef HELIUM_WGEN_H
#define HELIUM_WGEN_H

#include <stddef.h>
#include <stdint.h>

#include "gguf.h"
#include "rng.h"

typedef rng_t wgen_rng; /* common/rng.h: xoshiro256** */

/* Seeds r from seed and a stream name (e.g. the tensor name). */
void wgen_seed(wgen_rng *r, uint64_t seed, const char *stream);

/* x[0..n) ~ approximately N(0, std^2) (Irwin-Hall sum of four 16-bit uniforms,
 * bounded by +-2*sqrt(3)*std). */
void wgen_normal(wgen_rng *r, float *x, size_t n, double std);
/* x[0..n) = 1 + approximately N(0, 0.05^2), for norm weights. */
void wgen_near_one(wgen_rng *r, float *x, size_t n);

uint16_t wgen_f16(float f);
uint16_t wgen_bf16(float f);
float wgen_f16_to_f32(uint16_t h);

/* Encodes x[0..n) as type t into out (ggml_row_size(t, n) bytes; for Q8_0, n
 * must be a multiple of 32). Returns the bytes written, or 0 for an
 * unsupported type or bad n. */
size_t wgen_encode(ggml_type t, const float *x, size_t n, void *out);

#endif
