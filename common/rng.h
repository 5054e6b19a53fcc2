/* rng: xoshiro256** seeded through splitmix64. Deterministic on every
 * machine: the model generator's weights and the samplers' draws depend on it,
 * so its output sequence must never change. A plain value type (no handle). */
#ifndef HELIUM_RNG_H
#define HELIUM_RNG_H

#include <stdint.h>

typedef struct {
    uint64_t s[4]; /* xoshiro256** state */
} rng_t;

void rng_seed(rng_t *r, uint64_t seed);
uint64_t rng_next(rng_t *r);
/* Uniform in [0, 1). */
double rng_uniform(rng_t *r);

#endif
