/* backend: the one interface through which the engine runs a model.
 *
 * A backend owns the model's compute and the KV storage: n_blocks pages of
 * block_size tokens, each holding K and V for every layer. Which page holds
 * what is decided by kvcache.h; the backend only reads and writes the pages the
 * batch's block tables name. The CPU backend (worker/cpu/) is always built; a
 * CUDA backend fills the same table (kernels/).
 *
 * A batch is a set of sequences, each contributing a contiguous run of new
 * tokens (a prefill chunk, or one decode token). For token i of sequence s at
 * absolute position p = pos[i], the backend writes its K/V to page
 * block_table[s][p / block_size], slot p % block_size, and attends causally to
 * positions 0..p of that sequence through the same block table (so positions
 * before the chunk must already be in the cache: computed earlier or shared
 * from the prefix cache).
 *
 * KV page wire format (kv_export/kv_import): shape (n_layers, 2 [K then V],
 * block_size, kv_dim), little-endian, in the backend's element type kv_type
 * (kvwire.h: F32 for the CPU backend, F16 or BF16 for the CUDA backend's
 * pool). Pages of another type are converted before kv_import
 * (eng_kv_import_typed).
 */
#ifndef HELIUM_BACKEND_H
#define HELIUM_BACKEND_H

#include <stddef.h>
#include <stdint.h>

#include "kvwire.h"
#include "model.h"

typedef struct {
    int32_t n_tokens;                   /* T */
    int32_t n_seqs;                     /* S */
    const int32_t *tokens;              /* (T) token ids */
    const int32_t *pos;                 /* (T) absolute position in its sequence */
    const int32_t *seq_start;           /* (S) index of the sequence's first token in this batch */
    const int32_t *seq_ntok;            /* (S) number of new tokens of the sequence */
    const int32_t *const *block_table;  /* (S) -> page ids covering positions 0..last */
    int32_t n_out;                      /* rows of logits wanted */
    const int32_t *out_idx;             /* (n_out) batch token indices whose logits are returned */
} be_batch;

typedef struct be be_t;

typedef struct {
    const char *name;
    /* Runs the batch; writes logits (n_out, n_vocab) row-major. 0 or herr. */
    int (*forward)(be_t *be, const be_batch *b, float *logits);
    /* Copies page `block` to/from host memory in the wire format above. */
    int (*kv_export)(be_t *be, int32_t block, void *dst);
    int (*kv_import)(be_t *be, int32_t block, const void *src);
    void (*destroy)(be_t *be);
} be_ops;

struct be {
    const be_ops *ops;
    const model_t *model;
    int32_t n_blocks;
    int32_t block_size;
    int32_t n_threads;
    int32_t kv_type;       /* kvw_type of the pages kv_export writes and kv_import reads */
    void *impl;            /* backend-private state */
};

/* Bytes of one KV page in the wire format. */
static inline size_t be_kv_page_bytes(const be_t *be) {
    return (size_t)be->model->hp.n_layers * 2 * (size_t)be->block_size *
           (size_t)be->model->hp.kv_dim * kvw_elem_bytes(be->kv_type);
}
static inline int be_forward(be_t *be, const be_batch *b, float *logits) {
    return be->ops->forward(be, b, logits);
}
static inline void be_destroy(be_t **be_p) {
    if (be_p && *be_p) {
        (*be_p)->ops->destroy(*be_p);
        *be_p = NULL;
    }
}

/* The CPU backend: OpenBLAS GEMM for prefill, its own AVX2 kernels for
 * small-batch decode, OpenMP threads. NULL with he_msg() on failure. */
be_t *be_cpu_new(const model_t *m, int32_t n_blocks, int32_t block_size, int32_t n_threads);

#endif
