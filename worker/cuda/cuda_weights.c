/* cuda_weights: checks the model against what the CUDA kernels support and
 * uploads every weight once, in its GGUF type (nothing is dequantized on
 * upload). Norms and biases are F32 (model.h guarantees it). */
#include <stdlib.h>
#include <string.h>

#include "cuda_impl.h"
#include "herr.h"
#include "hk_attn.h"
#include "hk_check.h"
#include "hk_types.h"

static bool type_ok(int t) {
    return t == HK_T_F32 || t == HK_T_F16 || t == HK_T_BF16 || t == HK_T_Q8_0 || t == HK_T_Q4_K;
}

static int track(cu_be *C, void *p) {
    if (C->n_allocs == C->cap_allocs) {
        int cap = C->cap_allocs ? 2 * C->cap_allocs : 64;
        void **na = realloc(C->allocs, sizeof(void *) * (size_t)cap);
        if (!na) return he_set(HE_ENOMEM, "cuda: out of host memory");
        C->allocs = na;
        C->cap_allocs = cap;
    }
    C->allocs[C->n_allocs++] = p;
    return 0;
}

/* Device copy of n bytes at src. */
static int upload(cu_be *C, const void *src, size_t n, void **out) {
    void *d = NULL;
    CUDA_CHECK(cudaMalloc(&d, n ? n : 16));
    int rc = track(C, d);
    if (rc) {
        cudaFree(d);
        return rc;
    }
    CUDA_CHECK(cudaMemcpy(d, src, n, cudaMemcpyHostToDevice));
    C->stats.weight_bytes += (int64_t)n;
    *out = d;
    return 0;
}

static int up_mat(cu_be *C, const gguf_tensor *t, int64_t in, int64_t out, cu_mat *m) {
    if (!t) return he_set(HE_EINVAL, "cuda: missing weight tensor");
    if (!type_ok((int)t->type))
        return he_set(HE_EUNSUPPORTED, "cuda: tensor %s has type %s, which the CUDA kernels do not read", t->name,
                      ggml_type_name(t->type));
    size_t rb = hk_row_bytes((int)t->type, in);
    if (!rb || t->ne[0] != in || (size_t)out * rb > t->nbytes)
        return he_set(HE_EINVAL, "cuda: tensor %s has shape %lldx%lld, want %lldx%lld", t->name,
                      (long long)t->ne[0], (long long)t->ne[1], (long long)in, (long long)out);
    m->type = (int)t->type;
    m->in = in;
    m->out = out;
    m->row_bytes = rb;
    return upload(C, t->data, (size_t)out * rb, &m->d);
}

static int up_vec(cu_be *C, const gguf_tensor *t, float **out) {
    *out = NULL;
    if (!t) return 0;
    if (t->type != GGML_T_F32) return he_set(HE_EUNSUPPORTED, "cuda: %s must be f32", t->name);
    return upload(C, t->data, t->nbytes, (void **)out);
}

int cu_upload_weights(be_t *be, cu_be *C) {
    const model_t *m = be->model;
    const model_hparams *hp = &m->hp;
    if (hp->head_dim > 256 || hp->n_kv_heads <= 0 || hp->n_heads % hp->n_kv_heads ||
        hp->n_heads / hp->n_kv_heads > 16 || hp->rope_dim < 2 || hp->rope_dim % 2 || hp->rope_dim > hp->head_dim)
        return he_set(HE_EUNSUPPORTED, "cuda: head_dim %d with %d heads over %d KV heads is outside the kernels' "
                                       "range (head_dim <= 256, at most 16 query heads per KV head)",
                      hp->head_dim, hp->n_heads, hp->n_kv_heads);
    C->layers = calloc((size_t)(hp->n_layers > 0 ? hp->n_layers : 1), sizeof *C->layers);
    if (!C->layers) return he_set(HE_ENOMEM, "cuda: out of host memory");
    int rc;
    if ((rc = up_mat(C, m->tok_embd, hp->dim, hp->n_vocab, &C->embd))) return rc;
    if (m->output == m->tok_embd) C->out = C->embd;
    else if ((rc = up_mat(C, m->output, hp->dim, hp->n_vocab, &C->out))) return rc;
    if ((rc = up_vec(C, m->out_norm, &C->out_norm))) return rc;
    for (int32_t l = 0; l < hp->n_layers; l++) {
        const model_layer *L = &m->layers[l];
        cu_layer *D = &C->layers[l];
        if ((rc = up_mat(C, L->wq, hp->dim, hp->dim, &D->wq)) || (rc = up_mat(C, L->wk, hp->dim, hp->kv_dim, &D->wk)) ||
            (rc = up_mat(C, L->wv, hp->dim, hp->kv_dim, &D->wv)) || (rc = up_mat(C, L->wo, hp->dim, hp->dim, &D->wo)) ||
            (rc = up_mat(C, L->w_gate, hp->dim, hp->ffn_dim, &D->wg)) ||
            (rc = up_mat(C, L->w_up, hp->dim, hp->ffn_dim, &D->wu)) ||
            (rc = up_mat(C, L->w_down, hp->ffn_dim, hp->dim, &D->wd)) || (rc = up_vec(C, L->attn_norm, &D->attn_norm)) ||
            (rc = up_vec(C, L->ffn_norm, &D->ffn_norm)) || (rc = up_vec(C, L->bq, &D->bq)) ||
            (rc = up_vec(C, L->bk, &D->bk)) || (rc = up_vec(C, L->bv, &D->bv)))
            return rc;
    }
    return 0;
}
