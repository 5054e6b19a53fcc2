/* sampler: greedy, temperature, top-k, top-p with a seeded xoshiro256**. */
#include "sampler.h"

#include <math.h>
#include <stdlib.h>

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

int32_t smp_sample(const smp_params *p, rng_t *r, const float *logits, int32_t n, void *scratch) {
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
    double u = rng_uniform(r) * sum, acc = 0;
    for (int32_t i = 0; i < k; i++) {
        acc += c[i].p;
        if (u < acc) return c[i].id;
    }
    return c[k - 1].id;
}
