/* sampler: greedy, temperature, top-k, top-p with a seeded xoshiro256**. */
#include "sampler.h"

#include <math.h>
#include <stdlib.h>

static uint64_t splitmix64(uint64_t *x) {
    uint64_t z = (*x += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

void smp_rng_seed(smp_rng *r, uint64_t seed) {
    uint64_t x = seed;
    for (int i = 0; i < 4; i++) r->s[i] = splitmix64(&x);
}

static inline uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

uint64_t smp_rng_next(smp_rng *r) {
    uint64_t *s = r->s;
    uint64_t result = rotl(s[1] * 5, 7) * 9;
    uint64_t t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 45);
    return result;
}

double smp_rng_uniform(smp_rng *r) { return (double)(smp_rng_next(r) >> 11) * 0x1.0p-53; }

int32_t smp_argmax(const float *logits, int32_t n) {
    int32_t best = 0;
    for (int32_t i = 1; i < n; i++)
        if (logits[i] > logits[best]) best = i;
    return best;
}

typedef struct {
    float p;
    int32_t id;
} cand;

static int cand_cmp(const void *a, const void *b) {
    const cand *x = a, *y = b;
    if (x->p > y->p) return -1;
    if (x->p < y->p) return 1;
    return x->id < y->id ? -1 : x->id > y->id;
}

int32_t smp_sample(const smp_params *p, smp_rng *r, const float *logits, int32_t n, void *scratch) {
    if (!(p->temperature > 0.0f) || p->top_k == 1) return smp_argmax(logits, n);
    cand *c = scratch;
    for (int32_t i = 0; i < n; i++) {
        c[i].p = logits[i] / p->temperature;
        c[i].id = i;
    }
    qsort(c, (size_t)n, sizeof *c, cand_cmp);
    int32_t k = (p->top_k > 0 && p->top_k < n) ? p->top_k : n;
    double mx = c[0].p, sum = 0;
    for (int32_t i = 0; i < k; i++) {
        c[i].p = (float)exp((double)c[i].p - mx);
        sum += c[i].p;
    }
    if (p->top_p > 0.0f && p->top_p < 1.0f) {
        double acc = 0;
        int32_t keep = k;
        for (int32_t i = 0; i < k; i++) {
            acc += c[i].p / sum;
            if (acc >= p->top_p) {
                keep = i + 1;
                break;
            }
        }
        sum = 0;
        for (int32_t i = 0; i < keep; i++) sum += c[i].p;
        k = keep;
    }
    double u = smp_rng_uniform(r) * sum, acc = 0;
    for (int32_t i = 0; i < k; i++) {
        acc += c[i].p;
        if (u < acc) return c[i].id;
    }
    return c[k - 1].id;
}
