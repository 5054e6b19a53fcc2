/* cuda_impl: the CUDA backend's private state, shared by its .c files
 * (cuda_backend.c: lifetime and KV copies; cuda_weights.c: upload;
 * cuda_forward.c: the forward pass and decode graphs; cuda_kv.c: the pool
 * as the NCCL transport sees it). Not a public header: nothing outside
 * worker/cuda/ includes it.
 *
 * Invariants: every device buffer is allocated at creation with the limits of
 * be_cuda_config and never moves (captured graphs hold their addresses); one
 * thread (the engine's) enqueues on st; kv_export may run from the pull
 * server's thread, on copy_st, reading only committed pages no batch writes.
 */
#ifndef HELIUM_CUDA_IMPL_H
#define HELIUM_CUDA_IMPL_H

#include <cublas_v2.h>
#include <cuda_runtime_api.h>
#include <stdbool.h>
#include <stdint.h>

#include "backend.h"
#include "cuda_backend.h"

typedef struct {
    int type;              /* HK_T_* (ggml numbering) */
    int64_t in, out;
    size_t row_bytes;
    void *d;               /* (out, row_bytes) on the device */
} cu_mat;

typedef struct {
    cu_mat wq, wk, wv, wo, wg, wu, wd;
    float *attn_norm, *ffn_norm;   /* (dim) */
    float *bq, *bk, *bv;           /* (dim), (kv_dim), (kv_dim) or NULL */
} cu_layer;

typedef struct cu_be {
    int device;
    cudaStream_t st, copy_st;
    cublasHandle_t blas;
    void *blas_ws;                 /* cuBLAS workspace (fixed: graph capture) */
    cu_layer *layers;              /* (n_layers) */
    cu_mat embd, out;              /* out.d == embd.d when tied */
    float *out_norm;               /* (dim) */
    void **allocs;                 /* every weight allocation, freed at destroy */
    int n_allocs, cap_allocs;

    void *pool;                    /* (n_blocks, page_elems) of kv_type */
    int kv_type;
    int64_t page_elems;            /* n_layers * 2 * block_size * kv_dim */

    int32_t max_tokens, max_seqs, bt_stride;   /* bt_stride: pages per sequence */
    /* batch inputs: one pinned host block and its device twin, same layout */
    int32_t *h_in, *d_in;
    size_t in_ints;
    size_t o_tokens, o_pos, o_seq, o_tiles, o_out, o_bt;   /* offsets in ints */
    int32_t *h_seq;                /* (max_tokens) host copy of tok_seq, for checks */

    /* activations, max_tokens rows */
    float *x, *h, *q, *k, *v, *att;    /* (T, dim) except k, v (T, kv_dim) */
    float *gate, *up;                  /* (T, ffn_dim) */
    float *xs;                         /* (T, max(dim, ffn)) prepared activation */
    int8_t *xq;                        /* (T, max(dim, ffn)) q8_0 quants */
    float *xd;                         /* (T, max(dim, ffn) / 32) q8_0 scales */
    float *xo;                         /* (T, dim) output rows */
    float *logits;                     /* (T, n_vocab) */
    float *attn_ws;                    /* split-K workspace for max_seqs decode rows */
    void *wscratch;                    /* dequantized weight slices */
    size_t wscratch_bytes;
    int n_split, split_len;            /* decode split-K */
    int tile_rows;

    bool graphs_on;
    cudaGraphExec_t *graphs;           /* (max_seqs + 1) decode graph per batch size */
    uint8_t *graph_seen;               /* (max_seqs + 1) a plain step of this size ran */
    be_cuda_stats stats;
} cu_be;

/* cuda_weights.c: uploads every weight; 0 or herr. */
int cu_upload_weights(be_t *be, cu_be *C);
/* cuda_forward.c */
int cu_forward(be_t *be, const be_batch *b, float *logits);
void cu_graphs_free(cu_be *C);
/* cuda_backend.c: the CUDA backend's ops table (to recognize its be_t). */
const be_ops *cu_ops_of(void);

#endif
