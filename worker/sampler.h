/* sampler: picks the next token from a row of logits.
 *
 * temperature <= 0 is greedy (argmax; ties go to the lowest id, so greedy runs
 * are deterministic). Otherwise logits are scaled by 1/temperature, cut to the
 * top_k best (0 = all), softmaxed, cut to the smallest set whose mass reaches
 * top_p (1 = all), and sampled with the request's own seeded generator, so a
 * (prompt, params, seed) triple always gives the same tokens.
 */
#ifndef HELIUM_SAMPLER_H
#define HELIUM_SAMPLER_H

#include <stdbool.h>
#include <stdint.h>

#include "rng.h"

typedef struct {
    float temperature;  /* 0 = greedy */
    int32_t top_k;      /* 0 = off */
    float top_p;        /* 1 = off */
    uint64_t seed;
} smp_params;


/* Returns the chosen token id. scratch must hold n_vocab (float, int32) pairs:
 * pass a buffer of n_vocab * 8 bytes. logits is not modified. */
int32_t smp_sample(const smp_params *p, rng_t *r, const float *logits, int32_t n_vocab, void *scratch);

/* Greedy argmax (lowest id on ties). */
int32_t smp_argmax(const float *logits, int32_t n_vocab);

#endif
