/* cuda_weights: checks the model against what the CUDA kernels support and
 * uploads every weight once. Matrices the kernels read (F32, F16, BF16,
 * Q8_0, Q4_K) keep their GGUF type on the device. The other types the CPU
 * backend reads (Q4_0, Q4_1, Q5_0, Q5_1, IQ4_NL, Q2_K, Q3_K, Q5_K, Q6_K: the
 * mixes of Q4_K_M files, SmolLM2's Q4_1) are dequantized on upload to F32
 * with the CPU backend's own dequantizer (cpu_quant.h cq_dequant_row), so the
 * device holds exactly the values the CPU backend multiplies by, at 4 bytes a
 * weight, read by the F32 GEMV and cuBLAS paths. Norms and biases are F32
 * (model.h guarantees it). */
#include <stdlib.h>
#include <string.h>

#include "cpu_quant.h"
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

/* Types dequantized to F32 on upload (above). */
static bool dequant_ok(ggml_type t) {
    switch (t) {
    case GGML_T_Q4_0: case GGML_T_Q4_1: case GGML_T_Q5_0: case GGML_T_Q5_1: case GGML_T_IQ4_NL:
    case GGML_T_Q2_K: case GGML_T_Q3_K: case GGML_T_Q5_K: case GGML_T_Q6_K: return true;
    default: return false;
    }
}

/* Uploads t (out rows of in elements) dequantized to F32, a few MiB of rows
 * at a time through a host buffer. */
static int up_dequant(cu_be *C, const gguf_tensor *t, int64_t in, int64_t out, cu_mat *m) {
    size_t srb = ggml_row_size(t->type, in);
    if (!srb || in % ggml_blck_size(t->type) || t->ne[0] != in || (size_t)out * srb > t->nbytes)
        return he_set(HE_EINVAL, "cuda: tensor %s has shape %lldx%lld, want %lldx%lld", t->name,
                      (long long)t->ne[0], (long long)t->ne[1], (long long)in, (long long)out);
    size_t drb = (size_t)in * sizeof(float);
    int64_t chunk = (int64_t)(((size_t)16 << 20) / drb);
    if (chunk < 1) chunk = 1;
    if (chunk > out) chunk = out;
    float *host = malloc(drb * (size_t)chunk);
    if (!host) return he_set(HE_ENOMEM, "cuda: out of host memory dequantizing %s", t->name);
    void *d = NULL;
    cudaError_t ce = cudaMalloc(&d, drb * (size_t)out);
    if (ce != cudaSuccess) {
        free(host);
        return he_set(ce == cudaErrorMemoryAllocation ? HE_ENOMEM : HE_EIO, "CUDA error %s in cudaMalloc for %s (%zu bytes)",
                      cudaGetErrorString(ce), t->name, drb * (size_t)out);
    }
    int rc = track(C, d);
    for (int64_t r0 = 0; !rc && r0 < out; r0 += chunk) {
        int64_t nr = out - r0 < chunk ? out - r0 : chunk;
        for (int64_t r = 0; r < nr; r++)
            cq_dequant_row(t->type, (const char *)t->data + (size_t)(r0 + r) * srb, host + (size_t)r * (size_t)in, in);
        ce = cudaMemcpy((char *)d + (size_t)r0 * drb, host, drb * (size_t)nr, cudaMemcpyHostToDevice);
        if (ce != cudaSuccess)
            rc = he_set(HE_EIO, "CUDA error %s in cudaMemcpy for %s", cudaGetErrorString(ce), t->name);
    }
    free(host);
    if (rc) {
        if (C->n_allocs > 0 && C->allocs[C->n_allocs - 1] == d) C->n_allocs--; /* not tracked: free it here */
        cudaFree(d);
        return rc;
    }
    C->stats.weight_bytes += (int64_t)(drb * (size_t)out);
    m->type = HK_T_F32;
    m->in = in;
    m->out = out;
    m->row_bytes = drb;
    m->d = d;
    return 0;
}

static int up_mat(cu_be *C, const gguf_tensor *t, int64_t in, int64_t out, cu_mat *m) {
    if (!t) return he_set(HE_EINVAL, "cuda: missing weight tensor");
    if (!type_ok((int)t->type) && dequant_ok(t->type)) return up_dequant(C, t, in, out, m);
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
