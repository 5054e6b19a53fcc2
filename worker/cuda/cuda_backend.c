/* cuda_backend: lifetime of the CUDA backend and its KV page copies (see
 * cuda_backend.h; private state in cuda_impl.h).
 *
 * Creation order: probe the device, stream and cuBLAS handle, weights
 * (cuda_weights.c), activation scratch for max_tokens rows, then the KV pool
 * from what memory is left (n_blocks, kv_mem_mb, or kv_mem_pct % of the free
 * memory). Any failure frees everything made so far.
 */
#include <stdlib.h>
#include <string.h>

#include "cuda_impl.h"
#include "herr.h"
#include "hk_attn.h"
#include "hk_check.h"
#include "hk_gemv.h"

int be_cuda_probe(int device) {
    int n = 0;
    cudaError_t e = cudaGetDeviceCount(&n);
    if (e != cudaSuccess)
        return he_set(HE_EUNAVAIL, "no usable CUDA GPU: %s (%s); run with --backend cpu", cudaGetErrorString(e),
                      cudaGetErrorName(e));
    if (n <= 0) return he_set(HE_EUNAVAIL, "no CUDA GPU on this machine; run with --backend cpu");
    if (device < 0 || device >= n) return he_set(HE_EUNAVAIL, "CUDA device %d does not exist (%d found)", device, n);
    return 0;
}

static int dalloc(void **p, size_t bytes) {
    CUDA_CHECK(cudaMalloc(p, bytes ? bytes : 16));
    return 0;
}

static void cu_destroy(be_t *be) {
    if (!be) return;
    cu_be *C = be->impl;
    if (C) {
        cudaSetDevice(C->device);
        if (C->st) cudaStreamSynchronize(C->st);
        cu_graphs_free(C);
        for (int i = 0; i < C->n_allocs; i++) cudaFree(C->allocs[i]);
        void *bufs[] = {C->pool, C->d_in, C->x, C->h, C->q, C->k, C->v, C->att, C->gate, C->up, C->xs, C->xq,
                        C->xd, C->xo, C->logits, C->attn_ws, C->wscratch, C->blas_ws};
        for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++)
            if (bufs[i]) cudaFree(bufs[i]);
        if (C->h_in) cudaFreeHost(C->h_in);
        if (C->blas) cublasDestroy(C->blas);
        if (C->st) cudaStreamDestroy(C->st);
        if (C->copy_st) cudaStreamDestroy(C->copy_st);
        free(C->allocs);
        free(C->layers);
        free(C->h_seq);
        free(C);
    }
    free(be);
}

static int cu_kv_export(be_t *be, int32_t block, void *dst) {
    cu_be *C = be->impl;
    if (block < 0 || block >= be->n_blocks || !dst)
        return he_set(HE_EINVAL, "cuda: kv_export of page %d (pool %d)", block, be->n_blocks);
    const size_t pb = be_kv_page_bytes(be);
    CUDA_CHECK(cudaSetDevice(C->device));
    CUDA_CHECK(cudaMemcpyAsync(dst, (const char *)C->pool + (size_t)block * pb, pb, cudaMemcpyDeviceToHost, C->copy_st));
    CUDA_CHECK(cudaStreamSynchronize(C->copy_st));
    return 0;
}

static int cu_kv_import(be_t *be, int32_t block, const void *src) {
    cu_be *C = be->impl;
    if (block < 0 || block >= be->n_blocks || !src)
        return he_set(HE_EINVAL, "cuda: kv_import of page %d (pool %d)", block, be->n_blocks);
    const size_t pb = be_kv_page_bytes(be);
    CUDA_CHECK(cudaSetDevice(C->device));
    CUDA_CHECK(cudaMemcpyAsync((char *)C->pool + (size_t)block * pb, src, pb, cudaMemcpyHostToDevice, C->copy_st));
    CUDA_CHECK(cudaStreamSynchronize(C->copy_st));
    return 0;
}

static const be_ops cu_ops_table = {
    .name = "cuda",
    .forward = cu_forward,
    .kv_export = cu_kv_export,
    .kv_import = cu_kv_import,
    .destroy = cu_destroy,
};

const be_ops *cu_ops_of(void) { return &cu_ops_table; }

int be_cuda_pool(be_t *be, void **pool, int *kv_type, int64_t *page_elems) {
    if (!be || be->ops != &cu_ops_table) return he_set(HE_EINVAL, "not a CUDA backend");
    const cu_be *C = be->impl;
    *pool = C->pool;
    *kv_type = C->kv_type;
    *page_elems = C->page_elems;
    return 0;
}

be_cuda_stats be_cuda_get_stats(const be_t *be) {
    be_cuda_stats z = {0};
    if (!be || be->ops != &cu_ops_table) return z;
    return ((const cu_be *)be->impl)->stats;
}

/* Activation scratch and batch inputs for the configured limits. */
static int alloc_scratch(be_t *be, cu_be *C) {
    const model_hparams *hp = &be->model->hp;
    const size_t T = (size_t)C->max_tokens, S = (size_t)C->max_seqs;
    const size_t wide = (size_t)(hp->ffn_dim > hp->dim ? hp->ffn_dim : hp->dim), f = sizeof(float);
    int rc;
    C->in_ints = 0;
    C->o_tokens = C->in_ints, C->in_ints += T;
    C->o_pos = C->in_ints, C->in_ints += T;
    C->o_seq = C->in_ints, C->in_ints += T;
    C->o_tiles = C->in_ints, C->in_ints += 2 * T;
    C->o_out = C->in_ints, C->in_ints += T;
    C->o_bt = C->in_ints, C->in_ints += S * (size_t)C->bt_stride;
    CUDA_CHECK(cudaMallocHost((void **)&C->h_in, C->in_ints * sizeof(int32_t)));
    C->h_seq = malloc(T * sizeof(int32_t));
    if (!C->h_seq) return he_set(HE_ENOMEM, "cuda: out of host memory");
    if ((rc = dalloc((void **)&C->d_in, C->in_ints * sizeof(int32_t))) || (rc = dalloc((void **)&C->x, T * hp->dim * f)) ||
        (rc = dalloc((void **)&C->h, T * hp->dim * f)) || (rc = dalloc((void **)&C->q, T * hp->dim * f)) ||
        (rc = dalloc((void **)&C->att, T * hp->dim * f)) || (rc = dalloc((void **)&C->xo, T * hp->dim * f)) ||
        (rc = dalloc((void **)&C->k, T * hp->kv_dim * f)) || (rc = dalloc((void **)&C->v, T * hp->kv_dim * f)) ||
        (rc = dalloc((void **)&C->gate, T * hp->ffn_dim * f)) || (rc = dalloc((void **)&C->up, T * hp->ffn_dim * f)) ||
        (rc = dalloc((void **)&C->xs, T * wide * f)) || (rc = dalloc((void **)&C->xq, T * wide)) ||
        (rc = dalloc((void **)&C->xd, T * (wide / 32 + 1) * f)) ||
        (rc = dalloc((void **)&C->logits, T * (size_t)hp->n_vocab * f)))
        return rc;
    /* split-K: keys of a decode row in splits of split_len; a fixed count for the context */
    C->split_len = 512;
    C->n_split = (C->bt_stride * be->block_size + C->split_len - 1) / C->split_len;
    if (C->n_split > 64) {
        C->n_split = 64;
        C->split_len = ((C->bt_stride * be->block_size + 63) / 64 + 31) / 32 * 32;
    }
    if (C->n_split < 1) C->n_split = 1;
    hk_kv_view kv = {.n_heads = hp->n_heads, .head_dim = hp->head_dim};
    if ((rc = dalloc((void **)&C->attn_ws, hk_attn_ws_floats(&kv, (int64_t)S, C->n_split) * f))) return rc;
    /* the largest quantized matrix, up to 64 MiB of f32 rows at a time */
    size_t most = 0;
    const cu_mat *mats[] = {&C->embd, &C->out};
    for (int i = 0; i < 2; i++)
        if (mats[i]->type == 8 || mats[i]->type == 12) most = (size_t)(mats[i]->out * mats[i]->in) * f;
    for (int32_t l = 0; l < hp->n_layers; l++) {
        const cu_mat *lm[] = {&C->layers[l].wq, &C->layers[l].wk, &C->layers[l].wv, &C->layers[l].wo,
                              &C->layers[l].wg, &C->layers[l].wu, &C->layers[l].wd};
        for (int i = 0; i < 7; i++)
            if ((lm[i]->type == 8 || lm[i]->type == 12) && (size_t)(lm[i]->out * lm[i]->in) * f > most)
                most = (size_t)(lm[i]->out * lm[i]->in) * f;
    }
    C->wscratch_bytes = most < ((size_t)64 << 20) ? most : ((size_t)64 << 20);
    if (C->wscratch_bytes < wide * f) C->wscratch_bytes = most ? wide * f : 0;
    if (C->wscratch_bytes && (rc = dalloc(&C->wscratch, C->wscratch_bytes))) return rc;
    C->graphs = calloc(S + 1, sizeof *C->graphs);
    C->graph_seen = calloc(S + 1, 1);
    if (!C->graphs || !C->graph_seen) return he_set(HE_ENOMEM, "cuda: out of host memory");
    return 0;
}

/* KV pool: n_blocks pages, or as many as the memory budget holds. */
static int alloc_pool(be_t *be, cu_be *C, const be_cuda_config *cfg) {
    const model_hparams *hp = &be->model->hp;
    C->page_elems = (int64_t)hp->n_layers * 2 * be->block_size * hp->kv_dim;
    const size_t pb = (size_t)C->page_elems * kvw_elem_bytes(C->kv_type);
    int64_t n = cfg->n_blocks;
    if (n <= 0) {
        size_t budget;
        if (cfg->kv_mem_mb > 0) {
            budget = (size_t)cfg->kv_mem_mb << 20;
        } else {
            size_t fr = 0, tot = 0;
            CUDA_CHECK(cudaMemGetInfo(&fr, &tot));
            int pct = cfg->kv_mem_pct > 0 && cfg->kv_mem_pct < 100 ? cfg->kv_mem_pct : 90;
            budget = fr / 100 * (size_t)pct;
        }
        n = pb ? (int64_t)(budget / pb) : 0;
        if (n > INT32_MAX / 2) n = INT32_MAX / 2;
    }
    if (n < cfg->min_blocks)
        return he_set(HE_ENOMEM, "cuda: room for %lld KV pages of %zu bytes, at least %d needed (--kv-memory)",
                      (long long)n, pb, cfg->min_blocks);
    CUDA_CHECK(cudaMalloc(&C->pool, (size_t)n * pb));
    CUDA_CHECK(cudaMemset(C->pool, 0, (size_t)n * pb));
    be->n_blocks = (int32_t)n;
    C->stats.kv_bytes = (int64_t)((size_t)n * pb);
    return 0;
}

/* Device, streams, cuBLAS handle and its fixed workspace (cuBLAS calls may be
 * captured in graphs, so it must not allocate while capturing). */
static int make_handles(cu_be *C) {
    const size_t blas_ws = (size_t)32 << 20;
    CUDA_CHECK(cudaSetDevice(C->device));
    CUDA_CHECK(cudaStreamCreateWithFlags(&C->st, cudaStreamNonBlocking));
    CUDA_CHECK(cudaStreamCreateWithFlags(&C->copy_st, cudaStreamNonBlocking));
    CUBLAS_CHECK(cublasCreate(&C->blas));
    CUBLAS_CHECK(cublasSetStream(C->blas, C->st));
    CUDA_CHECK(cudaMalloc(&C->blas_ws, blas_ws));
    CUBLAS_CHECK(cublasSetWorkspace(C->blas, C->blas_ws, blas_ws));
    return 0;
}

be_t *be_cuda_new(const model_t *m, const be_cuda_config *cfg) {
    if (!m || !cfg) {
        he_set(HE_EINVAL, "cuda: no model or configuration");
        return NULL;
    }
    if (cfg->block_size <= 0 || cfg->max_tokens <= 0 || cfg->max_seqs <= 0 || cfg->max_ctx <= 0 ||
        !kvw_valid(cfg->kv_type)) {
        he_set(HE_EINVAL, "cuda: bad configuration (block size %d, max tokens %d, max seqs %d, context %d, KV type %d)",
               cfg->block_size, cfg->max_tokens, cfg->max_seqs, cfg->max_ctx, cfg->kv_type);
        return NULL;
    }
    if (m->hp.arch == MODEL_ARCH_GEMMA3) { /* its extra norms, GeGLU and windows are in the CPU backend only */
        he_set(HE_EUNSUPPORTED, "cuda: architecture gemma3 is not supported by the CUDA backend (the CPU backend runs it)");
        return NULL;
    }
    if (be_cuda_probe(cfg->device)) return NULL;
    be_t *be = calloc(1, sizeof *be);
    cu_be *C = calloc(1, sizeof *C);
    if (!be || !C) {
        free(be);
        free(C);
        he_set(HE_ENOMEM, "cuda: cannot allocate backend");
        return NULL;
    }
    be->ops = &cu_ops_table;
    be->model = m;
    be->block_size = cfg->block_size;
    be->n_threads = 1;
    be->kv_type = cfg->kv_type;
    be->impl = C;
    C->device = cfg->device;
    C->kv_type = cfg->kv_type;
    C->max_tokens = cfg->max_tokens > cfg->max_seqs ? cfg->max_tokens : cfg->max_seqs;
    C->max_seqs = cfg->max_seqs;
    C->bt_stride = (cfg->max_ctx + cfg->block_size - 1) / cfg->block_size;
    C->graphs_on = !cfg->no_graphs;
    C->tile_rows = hk_attn_tile_rows(m->hp.n_heads / (m->hp.n_kv_heads > 0 ? m->hp.n_kv_heads : 1));
    int rc = 0;
    if ((rc = make_handles(C))) goto fail;
    if ((rc = cu_upload_weights(be, C)) || (rc = alloc_scratch(be, C)) || (rc = alloc_pool(be, C, cfg))) goto fail;
    return be;
fail:
    cu_destroy(be);
    return NULL;
}
