/* sample: argmax and top-k / top-p sampling, one block of 1024 threads per
 * row (hk_sample.h). Top-k extracts the candidates in order by k rounds of a
 * block-wide "best element after the previous one" reduction over the key
 * (value desc, id asc): O(k V / 1024) per thread, no sort and no scratch. */
#include <math.h>

#include "hk_common.cuh"
#include "hk_sample.h"

#define SM_THREADS 1024

/* (value, id) is better than (v2, i2) in the candidate order. */
__device__ __forceinline__ bool sm_better(float v, int i, float v2, int i2) {
    return v > v2 || (v == v2 && i < i2);
}

/* Block-wide best element of row (scaled by inv_t) strictly after (pv, pi) in
 * the order; result in (*bv, *bi) for every thread. */
__device__ void sm_next(const float *row, int64_t V, float temp, bool scale, float pv, int pi, float *bv, int *bi) {
    __shared__ float sv[SM_THREADS / 32];
    __shared__ int si[SM_THREADS / 32];
    float best = -INFINITY;
    int bid = INT_MAX;
    for (int64_t i = threadIdx.x; i < V; i += blockDim.x) {
        float v = scale ? row[i] / temp : row[i];
        if (sm_better(pv, pi, v, (int)i) && sm_better(v, (int)i, best, bid)) {
            best = v;
            bid = (int)i;
        }
    }
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) {
        float v2 = __shfl_xor_sync(0xffffffffu, best, o);
        int i2 = __shfl_xor_sync(0xffffffffu, bid, o);
        if (sm_better(v2, i2, best, bid)) {
            best = v2;
            bid = i2;
        }
    }
    __syncthreads();
    if ((threadIdx.x & 31) == 0) {
        sv[threadIdx.x >> 5] = best;
        si[threadIdx.x >> 5] = bid;
    }
    __syncthreads();
    if (threadIdx.x == 0) {
        for (int w = 1; w < (int)(blockDim.x >> 5); w++)
            if (sm_better(sv[w], si[w], sv[0], si[0])) {
                sv[0] = sv[w];
                si[0] = si[w];
            }
    }
    __syncthreads();
    *bv = sv[0];
    *bi = si[0];
}

__global__ void k_argmax(const float *logits, int64_t V, int32_t *ids) {
    float v;
    int i;
    sm_next(logits + blockIdx.x * V, V, 1.0f, false, INFINITY, -1, &v, &i);
    if (threadIdx.x == 0) ids[blockIdx.x] = i;
}

__global__ void k_sample(const float *logits, int64_t V, const float *temp, const int32_t *top_k, const float *top_p,
                         const double *u, int32_t *ids) {
    __shared__ float cv[HK_SAMPLE_MAX_K];
    __shared__ int ci[HK_SAMPLE_MAX_K];
    const int r = blockIdx.x;
    const float *row = logits + r * V;
    const float t = temp[r];
    int k = top_k[r];
    if (!(t > 0.0f) || k == 1) {
        float v;
        int i;
        sm_next(row, V, 1.0f, false, INFINITY, -1, &v, &i);
        if (threadIdx.x == 0) ids[r] = i;
        return;
    }
    if (k < 1 || k > HK_SAMPLE_MAX_K) {
        if (threadIdx.x == 0) ids[r] = -1;
        return;
    }
    if (k > V) k = (int)V;
    float pv = INFINITY;
    int pi = -1;
    for (int j = 0; j < k; j++) {
        sm_next(row, V, t, true, pv, pi, &pv, &pi);
        if (threadIdx.x == 0) {
            cv[j] = pv;
            ci[j] = pi;
        }
    }
    if (threadIdx.x != 0) return;
    /* thread 0: the CPU sampler's arithmetic on the k candidates */
    const double mx = cv[0];
    double sum = 0.0;
    for (int j = 0; j < k; j++) {
        cv[j] = (float)exp((double)cv[j] - mx);
        sum += cv[j];
    }
    const float tp = top_p[r];
    if (tp > 0.0f && tp < 1.0f) {
        double acc = 0.0;
        int keep = k;
        for (int j = 0; j < k; j++) {
            acc += cv[j] / sum;
            if (acc >= tp) {
                keep = j + 1;
                break;
            }
        }
        sum = 0.0;
        for (int j = 0; j < keep; j++) sum += cv[j];
        k = keep;
    }
    const double target = u[r] * sum;
    double acc = 0.0;
    for (int j = 0; j < k; j++) {
        acc += cv[j];
        if (target < acc) {
            ids[r] = ci[j];
            return;
        }
    }
    ids[r] = ci[k - 1];
}

extern "C" int hk_argmax(const float *logits, int R, int64_t V, int32_t *ids, cudaStream_t st) {
    if (R <= 0 || V <= 0) return R <= 0 ? 0 : (int)cudaErrorInvalidValue;
    k_argmax<<<(unsigned)R, SM_THREADS, 0, st>>>(logits, V, ids);
    return hk_launch_status();
}

extern "C" int hk_sample(const float *logits, int R, int64_t V, const float *temperature, const int32_t *top_k,
                         const float *top_p, const double *u, int32_t *ids, cudaStream_t st) {
    if (R <= 0 || V <= 0) return R <= 0 ? 0 : (int)cudaErrorInvalidValue;
    k_sample<<<(unsigned)R, SM_THREADS, 0, st>>>(logits, V, temperature, top_k, top_p, u, ids);
    return hk_launch_status();
}
