/* cuda_forward: the CUDA backend's forward pass (be_ops.forward).
 *
 * A batch is checked on the host (as the CPU backend checks it), its inputs
 * (tokens, positions, each token's sequence, attention tiles, output rows,
 * block tables padded to bt_stride) written to one pinned block and copied to
 * the device in one transfer; then every layer is enqueued on the backend's
 * stream: embed, per layer RMSNorm, Q/K/V products (+ biases), RoPE, KV store
 * into the pages, paged attention, Wo (+ residual), RMSNorm, gate/up,
 * SwiGLU, down (+ residual); the output rows are gathered, normed and
 * projected to logits, which are copied back.
 *
 * Products: at most HK_GEMV_MAX_ROWS rows take the weight-streaming GEMV, up
 * to 4x that take it in slices of rows, more take cuBLAS (hk_gemm.h).
 *
 * Decode-only batches (one token per sequence, every row's logits wanted, in
 * order) depend on nothing but their size S once the inputs are in place:
 * the first such step of size S runs plainly, the second is captured as a CUDA
 * graph, and later ones replay it (stats.graph_replays). Decode attention
 * always uses the fixed split-K count (n_split), plain or replayed, so both
 * give the same numbers.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "cuda_impl.h"
#include "herr.h"
#include "hk_attn.h"
#include "hk_check.h"
#include "hk_elem.h"
#include "hk_embed.h"
#include "hk_gemm.h"
#include "hk_gemv.h"
#include "hk_norm.h"
#include "hk_rope.h"

/* Launch status of a kernel launcher (0 or cudaError_t) as a herr code. */
#define HK_TRY(expr)                                                                                            \
    do {                                                                                                        \
        int hk_r_ = (expr);                                                                                     \
        if (hk_r_)                                                                                              \
            return he_set(HE_EIO, "CUDA launch error %s in %s at %s:%d", cudaGetErrorString((cudaError_t)hk_r_), \
                          #expr, __FILE__, __LINE__);                                                           \
    } while (0)

/* y (R, ldy) [+]= x (R, in) W^T. */
static int mm(cu_be *C, const cu_mat *W, const float *x, int64_t R, float *y, int64_t ldy, bool acc) {
    if (R <= 0) return 0;
    if (R <= 4 * HK_GEMV_MAX_ROWS) {
        for (int64_t r0 = 0; r0 < R; r0 += HK_GEMV_MAX_ROWS) {
            int rows = (int)(R - r0 < HK_GEMV_MAX_ROWS ? R - r0 : HK_GEMV_MAX_ROWS);
            const float *xr = x + r0 * W->in;
            if (W->type == 8) { /* Q8_0: quantize the activation */
                HK_TRY(hk_quant_q8_0(xr, C->xq, C->xd, rows * W->in, C->st));
                HK_TRY(hk_gemv(W->d, W->type, W->in, W->out, NULL, C->xq, C->xd, rows, y + r0 * ldy, ldy, acc, C->st));
            } else {
                if (W->type == 1 || W->type == 30) { /* F16 / BF16: round the activation */
                    HK_TRY(hk_act_round(W->type, xr, C->xs, rows * W->in, C->st));
                    xr = C->xs;
                }
                HK_TRY(hk_gemv(W->d, W->type, W->in, W->out, xr, NULL, NULL, rows, y + r0 * ldy, ldy, acc, C->st));
            }
        }
        return 0;
    }
    int rc = hk_gemm(C->blas, W->d, W->type, W->in, W->out, x, R, y, ldy, acc, C->xs, C->wscratch, C->wscratch_bytes,
                     C->st);
    if (rc <= -1000)
        return he_set(HE_EIO, "cuBLAS error %s in hk_gemm (%lldx%lld, %lld rows) at %s:%d",
                      cublasGetStatusString((cublasStatus_t)(-rc - 1000)), (long long)W->out, (long long)W->in,
                      (long long)R, __FILE__, __LINE__);
    if (rc)
        return he_set(HE_EIO, "CUDA launch error %s in hk_gemm at %s:%d", cudaGetErrorString((cudaError_t)-rc),
                      __FILE__, __LINE__);
    return 0;
}

/* Enqueues the whole forward pass for T tokens (n_tiles attention tiles,
 * n_split key splits) and n_out output rows; inputs already on the device. */
static int run_layers(be_t *be, cu_be *C, int64_t T, int n_tiles, int n_split, int64_t n_out) {
    const model_hparams *hp = &be->model->hp;
    const int64_t dim = hp->dim, kvd = hp->kv_dim, ffn = hp->ffn_dim;
    const int32_t *d_tok = C->d_in + C->o_tokens, *d_pos = C->d_in + C->o_pos, *d_seq = C->d_in + C->o_seq;
    const int32_t *d_tiles = C->d_in + C->o_tiles, *d_out = C->d_in + C->o_out;
    const float scale = 1.0f / sqrtf((float)hp->head_dim);
    int rc;
    HK_TRY(hk_embed(C->embd.d, C->embd.type, dim, d_tok, T, C->x, C->st));
    for (int32_t l = 0; l < hp->n_layers; l++) {
        const cu_layer *L = &C->layers[l];
        HK_TRY(hk_rmsnorm(C->x, L->attn_norm, C->h, T, dim, hp->norm_eps, C->st));
        if ((rc = mm(C, &L->wq, C->h, T, C->q, dim, false)) || (rc = mm(C, &L->wk, C->h, T, C->k, kvd, false)) ||
            (rc = mm(C, &L->wv, C->h, T, C->v, kvd, false)))
            return rc;
        if (L->bq) HK_TRY(hk_add_bias(C->q, L->bq, T, dim, C->st));
        if (L->bk) HK_TRY(hk_add_bias(C->k, L->bk, T, kvd, C->st));
        if (L->bv) HK_TRY(hk_add_bias(C->v, L->bv, T, kvd, C->st));
        HK_TRY(hk_rope(C->q, d_pos, T, hp->n_heads, hp->head_dim, hp->rope_dim, hp->rope_base, hp->rope_neox, C->st));
        HK_TRY(hk_rope(C->k, d_pos, T, hp->n_kv_heads, hp->head_dim, hp->rope_dim, hp->rope_base, hp->rope_neox, C->st));
        hk_kv_view kv = {
            .pool = C->pool, .kv_type = C->kv_type, .page_elems = C->page_elems,
            .k_off = (int64_t)l * 2 * be->block_size * kvd, .v_off = ((int64_t)l * 2 + 1) * be->block_size * kvd,
            .block_size = be->block_size, .n_heads = hp->n_heads, .n_kv_heads = hp->n_kv_heads,
            .head_dim = hp->head_dim, .bt = C->d_in + C->o_bt, .bt_stride = C->bt_stride,
        };
        HK_TRY(hk_kv_store(&kv, C->k, C->v, d_pos, d_seq, T, C->st));
        HK_TRY(hk_attention(&kv, C->q, C->att, d_pos, d_seq, T, d_tiles, n_tiles, scale, n_split, C->split_len,
                            C->attn_ws, C->st));
        if ((rc = mm(C, &L->wo, C->att, T, C->x, dim, true))) return rc;
        HK_TRY(hk_rmsnorm(C->x, L->ffn_norm, C->h, T, dim, hp->norm_eps, C->st));
        if ((rc = mm(C, &L->wg, C->h, T, C->gate, ffn, false)) || (rc = mm(C, &L->wu, C->h, T, C->up, ffn, false)))
            return rc;
        HK_TRY(hk_swiglu(C->gate, C->up, C->gate, T * ffn, C->st));
        if ((rc = mm(C, &L->wd, C->gate, T, C->x, dim, true))) return rc;
    }
    if (n_out == 0) return 0;
    HK_TRY(hk_gather_rows(C->x, d_out, n_out, dim, C->xo, C->st));
    HK_TRY(hk_rmsnorm(C->xo, C->out_norm, C->xo, n_out, dim, hp->norm_eps, C->st));
    return mm(C, &C->out, C->xo, n_out, C->logits, hp->n_vocab, false);
}

/* Checks b against the model, the pool and the limits; writes the inputs into
 * the pinned block. *n_tiles, *decode (a decode-only batch in order). */
static int stage_batch(be_t *be, cu_be *C, const be_batch *b, int *n_tiles, bool *decode) {
    const model_hparams *hp = &be->model->hp;
    const int64_t T = b->n_tokens;
    if (T < 0 || b->n_seqs < 0 || b->n_out < 0) return he_set(HE_EINVAL, "cuda: negative batch counts");
    if (T > C->max_tokens || b->n_seqs > C->max_seqs || b->n_out > T)
        return he_set(HE_ELIMIT, "cuda: batch of %lld tokens, %d sequences, %d outputs exceeds the backend's %d tokens, "
                                 "%d sequences", (long long)T, b->n_seqs, b->n_out, C->max_tokens, C->max_seqs);
    if (T > 0 && (!b->tokens || !b->pos || !b->seq_start || !b->seq_ntok || !b->block_table))
        return he_set(HE_EINVAL, "cuda: batch arrays missing");
    if (b->n_out > 0 && !b->out_idx) return he_set(HE_EINVAL, "cuda: out_idx missing");
    int32_t *tok = C->h_in + C->o_tokens, *pos = C->h_in + C->o_pos, *seq = C->h_in + C->o_seq;
    int32_t *tiles = C->h_in + C->o_tiles, *out = C->h_in + C->o_out, *bt = C->h_in + C->o_bt;
    for (int64_t i = 0; i < T; i++) {
        if (b->tokens[i] < 0 || b->tokens[i] >= hp->n_vocab)
            return he_set(HE_EINVAL, "cuda: token id %d out of range (vocab %d)", b->tokens[i], hp->n_vocab);
        if (b->pos[i] < 0 || b->pos[i] >= C->bt_stride * be->block_size)
            return he_set(HE_EINVAL, "cuda: position %d outside the context of %d", b->pos[i],
                          C->bt_stride * be->block_size);
        tok[i] = b->tokens[i];
        pos[i] = b->pos[i];
        seq[i] = -1;
    }
    int nt = 0;
    bool dec = T == b->n_seqs && b->n_out == b->n_seqs;
    for (int32_t s = 0; s < b->n_seqs; s++) {
        const int64_t s0 = b->seq_start[s], n = b->seq_ntok[s];
        if (s0 < 0 || n < 0 || s0 + n > T)
            return he_set(HE_EINVAL, "cuda: sequence %d covers tokens %lld..%lld of %lld", s, (long long)s0,
                          (long long)(s0 + n), (long long)T);
        if (n > 0 && !b->block_table[s]) return he_set(HE_EINVAL, "cuda: sequence %d has no block table", s);
        int32_t maxp = -1;
        for (int64_t i = s0; i < s0 + n; i++) {
            if (seq[i] != -1) return he_set(HE_EINVAL, "cuda: token %lld in two sequences", (long long)i);
            if (i > s0 && pos[i] != pos[i - 1] + 1)
                return he_set(HE_EINVAL, "cuda: sequence %d's tokens are not at consecutive positions", s);
            seq[i] = s;
            if (pos[i] > maxp) maxp = pos[i];
        }
        int32_t *row = bt + (size_t)s * C->bt_stride;
        for (int32_t k = 0; k < C->bt_stride; k++) {
            if (n > 0 && k <= maxp / be->block_size) {
                int32_t id = b->block_table[s][k];
                if (id < 0 || id >= be->n_blocks)
                    return he_set(HE_EINVAL, "cuda: sequence %d block %d is page %d (pool %d)", s, k, id, be->n_blocks);
                row[k] = id;
            } else {
                row[k] = 0; /* never read: attention stops at the row's position */
            }
        }
        for (int64_t i = s0; i < s0 + n; i += C->tile_rows) {
            tiles[2 * nt] = (int32_t)i;
            tiles[2 * nt + 1] = (int32_t)(s0 + n - i < C->tile_rows ? s0 + n - i : C->tile_rows);
            nt++;
        }
        if (n != 1 || s0 != s) dec = false;
    }
    for (int64_t i = 0; i < T; i++)
        if (seq[i] < 0) return he_set(HE_EINVAL, "cuda: token %lld belongs to no sequence", (long long)i);
    for (int32_t o = 0; o < b->n_out; o++) {
        if (b->out_idx[o] < 0 || b->out_idx[o] >= T)
            return he_set(HE_EINVAL, "cuda: out_idx %d out of range (%lld tokens)", b->out_idx[o], (long long)T);
        out[o] = b->out_idx[o];
        if (out[o] != o) dec = false;
    }
    *n_tiles = nt;
    *decode = dec && T > 0;
    return 0;
}

void cu_graphs_free(cu_be *C) {
    if (!C->graphs) return;
    for (int32_t s = 0; s <= C->max_seqs; s++)
        if (C->graphs[s]) cudaGraphExecDestroy(C->graphs[s]);
    free(C->graphs);
    free(C->graph_seen);
    C->graphs = NULL;
    C->graph_seen = NULL;
}

/* Captures the decode step of S rows as a graph and instantiates it. On a
 * capture failure the step is not run; the caller runs it plainly. */
static int capture_decode(be_t *be, cu_be *C, int S) {
    cudaGraph_t g = NULL;
    CUDA_CHECK(cudaStreamBeginCapture(C->st, cudaStreamCaptureModeThreadLocal));
    int rc = run_layers(be, C, S, S, C->n_split, S);
    cudaError_t e = cudaStreamEndCapture(C->st, &g);
    if (rc) {
        if (g) cudaGraphDestroy(g);
        return rc;
    }
    if (e != cudaSuccess) return he_set(HE_EIO, "cuda: decode graph capture failed: %s", cudaGetErrorString(e));
    e = cudaGraphInstantiate(&C->graphs[S], g, 0);
    cudaGraphDestroy(g);
    if (e != cudaSuccess) {
        C->graphs[S] = NULL;
        return he_set(HE_EIO, "cuda: decode graph instantiation failed: %s", cudaGetErrorString(e));
    }
    C->stats.graph_captures++;
    return 0;
}

int cu_forward(be_t *be, const be_batch *b, float *logits) {
    cu_be *C = be->impl;
    const int64_t T = b->n_tokens;
    if (T <= 0) {
        if (b->n_out > 0) return he_set(HE_EINVAL, "cuda: logits wanted from an empty batch");
        return 0;
    }
    if (!logits && b->n_out > 0) return he_set(HE_EINVAL, "cuda: no logits buffer");
    int n_tiles = 0, rc;
    bool decode = false;
    if ((rc = stage_batch(be, C, b, &n_tiles, &decode))) return rc;
    CUDA_CHECK(cudaSetDevice(C->device));
    CUDA_CHECK(cudaMemcpyAsync(C->d_in, C->h_in, C->in_ints * sizeof(int32_t), cudaMemcpyHostToDevice, C->st));
    const int S = (int)T;
    if (decode && C->graphs_on && !C->graphs[S] && C->graph_seen[S]) {
        if (capture_decode(be, C, S)) C->graphs_on = false; /* keep serving without graphs */
    }
    if (decode && C->graphs_on && C->graphs[S]) {
        CUDA_CHECK(cudaGraphLaunch(C->graphs[S], C->st));
        C->stats.graph_replays++;
    } else {
        if ((rc = run_layers(be, C, T, n_tiles, decode ? C->n_split : 1, b->n_out))) {
            cudaStreamSynchronize(C->st);
            return rc;
        }
        if (decode) C->graph_seen[S] = 1;
    }
    const size_t lb = (size_t)b->n_out * (size_t)be->model->hp.n_vocab * sizeof(float);
    if (lb) CUDA_CHECK(cudaMemcpyAsync(logits, C->logits, lb, cudaMemcpyDeviceToHost, C->st));
    CUDA_CHECK(cudaStreamSynchronize(C->st));
    C->stats.forwards++;
    return 0;
}
