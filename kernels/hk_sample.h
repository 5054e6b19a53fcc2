/* hk_sample: token choice on the GPU, the CPU sampler's rules (sampler.h).
 *
 * hk_argmax: ids[r] = argmax of logits row r (V wide), lowest id on ties.
 * hk_sample: per row r, greedy when temperature[r] <= 0 or top_k[r] == 1;
 * else the top_k[r] best of logits / temperature (ordered by value, then id),
 * softmaxed in f64 as the CPU does, cut to the smallest prefix whose mass
 * reaches top_p[r], and the token where the running mass first exceeds
 * u[r] * (kept mass). Given the same u (the request's rng_uniform draw), the
 * result is the CPU sampler's. top_k must be 1..HK_SAMPLE_MAX_K (a row outside
 * gives id -1: sample it on the host). */
#ifndef HELIUM_HK_SAMPLE_H
#define HELIUM_HK_SAMPLE_H

#include "hk_types.h"

#define HK_SAMPLE_MAX_K 1024

#ifdef __cplusplus
extern "C" {
#endif

int hk_argmax(const float *logits, int R, int64_t V, int32_t *ids, cudaStream_t st);
int hk_sample(const float *logits, int R, int64_t V, const float *temperature, const int32_t *top_k,
              const float *top_p, const double *u, int32_t *ids, cudaStream_t st);

#ifdef __cplusplus
}
#endif

#endif
