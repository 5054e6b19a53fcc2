/* attention: paged KV store, GQA-shared causal attention with split-K, and
 * the split merge (hk_attn.h).
 *
 * Block = 4 warps. Pairs (tile row r, group head g) are dealt round-robin to
 * the warps, at most 4 a warp (16 a block). Per key tile of 32 positions:
 * the block stages K (rows padded by one float: lane j reads row j without
 * bank conflicts) and V as f32 in shared memory; for each of its pairs a warp
 * lets lane j score key j (a full dot product against the pair's query in
 * shared memory), updates the pair's online softmax state (max m, sum l),
 * then accumulates P V with lane owning dims lane + 32k (NPL of them). So a
 * K/V element is read from the pool once per block, whatever G is.
 */
#include <math.h>

#include "hk_attn.h"
#include "hk_common.cuh"

#define ATT_WARPS 4
#define ATT_PPW 4                      /* pairs per warp */
#define ATT_PAIRS (ATT_WARPS * ATT_PPW)
#define ATT_KT 32                      /* keys per shared-memory tile */

typedef struct {
    hk_kv_view kv;
    const float *q;
    float *out;
    const int32_t *pos, *tok_seq, *tiles;
    float scale;
    int n_split, split_len;
    float *ws;                         /* (n_tokens, n_heads, n_split, head_dim + 2) */
} att_args;

__global__ void k_kv_store(hk_kv_view kv, const float *k, const float *v, const int32_t *pos,
                           const int32_t *tok_seq, int64_t n) {
    const int kvd = kv.n_kv_heads * kv.head_dim;
    for (int64_t e = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; e < n * kvd; e += (int64_t)gridDim.x * blockDim.x) {
        int64_t i = e / kvd;
        int d = (int)(e % kvd);
        int p = pos[i];
        int64_t page = kv.bt[(int64_t)tok_seq[i] * kv.bt_stride + p / kv.block_size];
        int64_t base = page * kv.page_elems + (int64_t)(p % kv.block_size) * kvd + d;
        hk_kv_store1(kv.pool, base + kv.k_off, kv.kv_type, k[e]);
        hk_kv_store1(kv.pool, base + kv.v_off, kv.kv_type, v[e]);
    }
}

template <int NPL>
__global__ void __launch_bounds__(ATT_WARPS * 32) k_attention(att_args a) {
    extern __shared__ float smem[];
    const int D = a.kv.head_dim, G = a.kv.n_heads / a.kv.n_kv_heads;
    const int kvd = a.kv.n_kv_heads * D, qd = a.kv.n_heads * D;
    const int kvh = blockIdx.x, z = blockIdx.z;
    const int i0 = a.tiles[2 * blockIdx.y], cnt = a.tiles[2 * blockIdx.y + 1];
    const int P = cnt * G;
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
    const int seq = a.tok_seq[i0];
    const int last = a.pos[i0 + cnt - 1];
    const int k_begin = z * a.split_len;
    int k_end = last + 1;
    if (a.n_split > 1 && k_begin + a.split_len < k_end) k_end = k_begin + a.split_len;
    if (k_begin >= k_end) return; /* an empty split: its workspace entries stay cleared */

    float *Ks = smem;                        /* (KT, D + 1) */
    float *Vs = Ks + ATT_KT * (D + 1);       /* (KT, D) */
    float *Qs = Vs + ATT_KT * D;             /* (ATT_PAIRS, D) */
    const int32_t *bt = a.kv.bt + (int64_t)seq * a.kv.bt_stride;

    for (int e = threadIdx.x; e < P * D; e += blockDim.x) {
        int pi = e / D, d = e % D, r = pi / G, g = pi % G;
        Qs[e] = a.q[(int64_t)(i0 + r) * qd + (int64_t)(kvh * G + g) * D + d];
    }
    float m[ATT_PPW], l[ATT_PPW], acc[ATT_PPW][NPL];
    int qpos[ATT_PPW];
#pragma unroll
    for (int pp = 0; pp < ATT_PPW; pp++) {
        m[pp] = -INFINITY;
        l[pp] = 0.0f;
        int pi = warp + pp * ATT_WARPS;
        qpos[pp] = pi < P ? a.pos[i0 + pi / G] : -1;
#pragma unroll
        for (int k = 0; k < NPL; k++) acc[pp][k] = 0.0f;
    }

    for (int kt0 = k_begin; kt0 < k_end; kt0 += ATT_KT) {
        const int nk = min(ATT_KT, k_end - kt0);
        __syncthreads();
        for (int e = threadIdx.x; e < ATT_KT * D; e += blockDim.x) {
            int j = e / D, d = e % D;
            float kv_k = 0.0f, kv_v = 0.0f;
            if (j < nk) {
                int p = kt0 + j;
                int64_t base = (int64_t)bt[p / a.kv.block_size] * a.kv.page_elems +
                               (int64_t)(p % a.kv.block_size) * kvd + (int64_t)kvh * D + d;
                kv_k = hk_kv_load(a.kv.pool, base + a.kv.k_off, a.kv.kv_type);
                kv_v = hk_kv_load(a.kv.pool, base + a.kv.v_off, a.kv.kv_type);
            }
            Ks[j * (D + 1) + d] = kv_k;
            Vs[j * D + d] = kv_v;
        }
        __syncthreads();
#pragma unroll
        for (int pp = 0; pp < ATT_PPW; pp++) {
            const int pi = warp + pp * ATT_WARPS;
            if (pi >= P) continue;                       /* warp-uniform */
            const int nv = min(nk, qpos[pp] + 1 - kt0);  /* keys of this tile the row may see */
            if (nv <= 0) continue;                       /* warp-uniform */
            float s = -INFINITY;
            if (lane < nv) {
                const float *qv = Qs + pi * D, *kr = Ks + lane * (D + 1);
                float dot = 0.0f;
                for (int d = 0; d < D; d++) dot += qv[d] * kr[d];
                s = dot * a.scale;
            }
            const float m_new = fmaxf(m[pp], hk_warp_max(s));
            const float corr = expf(m[pp] - m_new);
            const float pj = lane < nv ? expf(s - m_new) : 0.0f;
            l[pp] = l[pp] * corr + hk_warp_sum(pj);
#pragma unroll
            for (int k = 0; k < NPL; k++) acc[pp][k] *= corr;
            for (int j = 0; j < nv; j++) {
                const float w = __shfl_sync(0xffffffffu, pj, j);
#pragma unroll
                for (int k = 0; k < NPL; k++) {
                    const int d = lane + 32 * k;
                    if (d < D) acc[pp][k] += w * Vs[j * D + d];
                }
            }
            m[pp] = m_new;
        }
    }

#pragma unroll
    for (int pp = 0; pp < ATT_PPW; pp++) {
        const int pi = warp + pp * ATT_WARPS;
        if (pi >= P) continue;
        const int i = i0 + pi / G, h = kvh * G + pi % G;
        if (a.n_split == 1) {
            const float inv = l[pp] > 0.0f ? 1.0f / l[pp] : 0.0f;
#pragma unroll
            for (int k = 0; k < NPL; k++) {
                const int d = lane + 32 * k;
                if (d < D) a.out[(int64_t)i * qd + (int64_t)h * D + d] = acc[pp][k] * inv;
            }
        } else {
            float *w = a.ws + (((int64_t)i * a.kv.n_heads + h) * a.n_split + z) * (D + 2);
#pragma unroll
            for (int k = 0; k < NPL; k++) {
                const int d = lane + 32 * k;
                if (d < D) w[d] = acc[pp][k];
            }
            if (lane == 0) {
                w[D] = m[pp];
                w[D + 1] = l[pp];
            }
        }
    }
}

/* Splits past a row's context (or whole blocks that exited early) must read
 * as empty: the split kernel skips writing them, so this kernel first marks
 * every workspace entry empty. */
__global__ void k_ws_clear(float *ws, int64_t n_entries, int D) {
    for (int64_t e = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; e < n_entries; e += (int64_t)gridDim.x * blockDim.x) {
        ws[e * (D + 2) + D] = -INFINITY;
        ws[e * (D + 2) + D + 1] = 0.0f;
    }
}

/* One warp per (token, head): out = sum_z acc_z e^(m_z - M) / sum_z l_z e^(m_z - M). */
__global__ void k_merge(const float *ws, float *out, int64_t n_rows, int n_heads, int D, int n_split) {
    int64_t r = (blockIdx.x * (int64_t)blockDim.x + threadIdx.x) / 32;
    int lane = threadIdx.x & 31;
    if (r >= n_rows * n_heads) return;
    const float *w = ws + r * n_split * (D + 2);
    float M = -INFINITY;
    for (int z = 0; z < n_split; z++) M = fmaxf(M, w[z * (D + 2) + D]);
    float L = 0.0f;
    for (int z = 0; z < n_split; z++) {
        float mz = w[z * (D + 2) + D];
        if (mz > -INFINITY) L += w[z * (D + 2) + D + 1] * expf(mz - M);
    }
    const float inv = L > 0.0f ? 1.0f / L : 0.0f;
    for (int d = lane; d < D; d += 32) {
        float s = 0.0f;
        for (int z = 0; z < n_split; z++) {
            float mz = w[z * (D + 2) + D];
            if (mz > -INFINITY) s += w[z * (D + 2) + d] * expf(mz - M);
        }
        out[r * D + d] = s * inv;
    }
}

extern "C" int hk_kv_store(const hk_kv_view *kv, const float *k, const float *v, const int32_t *pos,
                           const int32_t *tok_seq, int64_t n, cudaStream_t st) {
    if (n <= 0) return 0;
    int64_t total = n * kv->n_kv_heads * kv->head_dim;
    int64_t blocks = (total + 255) / 256;
    k_kv_store<<<(unsigned)(blocks < 4096 ? blocks : 4096), 256, 0, st>>>(*kv, k, v, pos, tok_seq, n);
    return hk_launch_status();
}

extern "C" int hk_attn_tile_rows(int G) { return G >= ATT_PAIRS ? 1 : ATT_PAIRS / G; }

extern "C" size_t hk_attn_ws_floats(const hk_kv_view *kv, int64_t n_tokens, int n_split) {
    return (size_t)n_tokens * (size_t)kv->n_heads * (size_t)n_split * (size_t)(kv->head_dim + 2);
}

template <int NPL>
static int launch(const att_args *a, dim3 grid, size_t smem, cudaStream_t st) {
    static int raised = -1; /* per template instance: the shared-memory cap was raised on this device */
    int dev = 0;
    cudaGetDevice(&dev);
    if (raised != dev) {
        cudaError_t e = cudaFuncSetAttribute(k_attention<NPL>, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                             (int)(ATT_KT * (257 + 256) + ATT_PAIRS * 256) * (int)sizeof(float));
        if (e != cudaSuccess) return (int)e;
        raised = dev;
    }
    k_attention<NPL><<<grid, ATT_WARPS * 32, smem, st>>>(*a);
    return hk_launch_status();
}

extern "C" int hk_attention(const hk_kv_view *kv, const float *q, float *out, const int32_t *pos,
                            const int32_t *tok_seq, int64_t n_tokens, const int32_t *tiles, int n_tiles, float scale,
                            int n_split, int split_len, float *ws, cudaStream_t st) {
    const int D = kv->head_dim;
    if (D <= 0 || D > 256 || kv->n_kv_heads <= 0 || kv->n_heads % kv->n_kv_heads ||
        kv->n_heads / kv->n_kv_heads > ATT_PAIRS || n_split < 1 || (n_split > 1 && (split_len <= 0 || !ws)))
        return (int)cudaErrorInvalidValue;
    if (n_tiles <= 0 || n_tokens <= 0) return 0;
    att_args a = {*kv, q, out, pos, tok_seq, tiles, scale, n_split, split_len, ws};
    const size_t smem = (size_t)(ATT_KT * (2 * D + 1) + ATT_PAIRS * D) * sizeof(float);
    dim3 grid((unsigned)kv->n_kv_heads, (unsigned)n_tiles, (unsigned)n_split);
    int rc = 0;
    if (n_split > 1) {
        int64_t entries = n_tokens * kv->n_heads * n_split;
        int64_t b = (entries + 255) / 256;
        k_ws_clear<<<(unsigned)(b < 4096 ? b : 4096), 256, 0, st>>>(ws, entries, D);
        if ((rc = hk_launch_status())) return rc;
    }
    if (D <= 32) rc = launch<1>(&a, grid, smem, st);
    else if (D <= 64) rc = launch<2>(&a, grid, smem, st);
    else if (D <= 128) rc = launch<4>(&a, grid, smem, st);
    else rc = launch<8>(&a, grid, smem, st);
    if (rc || n_split == 1) return rc;
    int64_t warps = n_tokens * kv->n_heads;
    k_merge<<<(unsigned)((warps * 32 + 255) / 256), 256, 0, st>>>(ws, out, n_tokens, kv->n_heads, D, n_split);
    return hk_launch_status();
}
