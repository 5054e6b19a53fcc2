/* cpu_backend: the CPU implementation of backend.h (be_cpu_new).
 *
 * Runs the Llama-family forward pass over a batch with cpu_ops kernels. KV
 * lives in one host buffer of n_blocks pages, each laid out exactly as the
 * wire format (n_layers, 2, block_size, kv_dim) f32, so kv_export/kv_import
 * are one memcpy (pages sit a cache line apart, see page_stride); the buffer
 * comes from calloc, so pages never written cost no memory. Activation
 * scratch is sized for the largest batch seen and kept.
 *
 * Per layer: K/V of every batch token are written to their pages before any
 * attention reads, so a prefill chunk attends to itself through the pages.
 * In the last layer only the rows whose logits are wanted go through
 * attention, Wo and the FFN (llama.cpp does the same from Wo on).
 *
 * gemma3 (model.h) adds the embedding scale, per-head Q/K norms, a norm on
 * the attention and FFN outputs before each residual add, GeGLU, sliding-
 * window layers with their own RoPE base, and the logit soft-cap; the order
 * of operations follows llama.cpp's gemma3 graph.
 *
 * Results are batch invariant (cpu_ops.h): a token's logits do not depend on
 * the rest of the batch, on chunking or on the thread count.
 */
#include <math.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>

#include "backend.h"
#include "cpu_geglu.h"
#include "cpu_ops.h"
#include "cpu_quant.h"
#include "herr.h"

enum { M_Q, M_K, M_V, M_O, M_GATE, M_UP, M_DOWN, M_N };

typedef struct {
    cpu_ctx_t *ctx;
    float *kv;            /* (n_blocks, page_stride): page b at kv + b * page_stride */
    size_t page_floats;   /* n_layers * 2 * block_size * kv_dim: one page, wire layout */
    size_t page_stride;   /* page_floats + one cache line, so that the same row of
                             successive pages does not map to the same cache set */
    cpu_mat *mats;        /* (n_layers, M_N) */
    cpu_mat out;          /* (n_vocab rows of dim) */
    cpu_act act;
    /* scratch for cap_t tokens */
    int64_t cap_t;
    float *x, *h, *q, *k, *v, *att; /* (T, dim) except q, att: (T, q_dim), k, v: (T, kv_dim) */
    float *gate, *up;               /* (T, ffn_dim) */
    int32_t *tok_seq;               /* (T) sequence index of each token */
    int64_t cap_o;
    float *xo, *qo, *atto;          /* (n_out, dim), qo and atto (n_out, q_dim): last-layer rows */
    int32_t *pos_o, *seq_o;         /* (n_out) */
} cpu_be;

static bool type_ok(ggml_type t) {
    return t == GGML_T_F32 || t == GGML_T_F16 || t == GGML_T_BF16 || t == GGML_T_Q8_0 || cq_type_has_dot(t);
}

static int check_mat(const gguf_tensor *t, int64_t in, int64_t out, const char *what) {
    if (!t) return he_set(HE_EINVAL, "cpu: missing tensor %s", what);
    if (!type_ok(t->type))
        return he_set(HE_EUNSUPPORTED, "cpu: tensor %s has unsupported type %s", t->name,
                      ggml_type_name(t->type));
    if (t->ne[0] != in || t->ne[1] * t->ne[2] * t->ne[3] != out)
        return he_set(HE_EINVAL, "cpu: tensor %s has shape %lldx%lld, want %lldx%lld", t->name,
                      (long long)t->ne[0], (long long)t->ne[1], (long long)in, (long long)out);
    if (in % ggml_blck_size(t->type))
        return he_set(HE_EINVAL, "cpu: %s tensor %s row %lld is not a whole number of blocks",
                      ggml_type_name(t->type), t->name, (long long)in);
    return 0;
}

static int check_vec(const gguf_tensor *t, int64_t n, const char *what) {
    if (!t) return 0;
    if (t->type != GGML_T_F32 || t->ne[0] != n)
        return he_set(HE_EUNSUPPORTED, "cpu: %s must be f32 of %lld", what, (long long)n);
    return 0;
}

static void *xrealloc(void *p, size_t bytes, int *rc) {
    if (*rc) return p;
    void *q = NULL;
    if (posix_memalign(&q, 64, bytes ? bytes : 64) != 0) {
        *rc = he_set(HE_ENOMEM, "cpu: cannot allocate %zu bytes", bytes);
        return p;
    }
    free(p);
    return q;
}

static int reserve_tokens(cpu_be *B, const model_hparams *hp, int64_t T) {
    if (T <= B->cap_t) return 0;
    int64_t cap = T + T / 4 + 8;
    size_t fd = sizeof(float) * (size_t)cap;
    int rc = 0;
    B->x = xrealloc(B->x, fd * hp->dim, &rc);
    B->h = xrealloc(B->h, fd * hp->dim, &rc);
    B->q = xrealloc(B->q, fd * hp->q_dim, &rc);
    B->att = xrealloc(B->att, fd * hp->q_dim, &rc);
    B->k = xrealloc(B->k, fd * hp->kv_dim, &rc);
    B->v = xrealloc(B->v, fd * hp->kv_dim, &rc);
    B->gate = xrealloc(B->gate, fd * hp->ffn_dim, &rc);
    B->up = xrealloc(B->up, fd * hp->ffn_dim, &rc);
    B->tok_seq = xrealloc(B->tok_seq, sizeof(int32_t) * (size_t)cap, &rc);
    if (!rc) B->cap_t = cap;
    return rc;
}

static int reserve_out(cpu_be *B, const model_hparams *hp, int64_t n) {
    if (n <= B->cap_o) return 0;
    int64_t cap = n + 8;
    int rc = 0;
    B->xo = xrealloc(B->xo, sizeof(float) * (size_t)cap * hp->dim, &rc);
    B->atto = xrealloc(B->atto, sizeof(float) * (size_t)cap * hp->q_dim, &rc);
    B->qo = xrealloc(B->qo, sizeof(float) * (size_t)cap * hp->q_dim, &rc);
    B->pos_o = xrealloc(B->pos_o, sizeof(int32_t) * (size_t)cap, &rc);
    B->seq_o = xrealloc(B->seq_o, sizeof(int32_t) * (size_t)cap, &rc);
    if (!rc) B->cap_o = cap;
    return rc;
}

/* Runs jobs on activation x (n, in), preparing x once per weight type. */
static int run_mm(cpu_be *B, const float *x, int64_t n, int64_t in, const cpu_mm *jobs, int nj) {
    bool done[8] = {false};
    for (int i = 0; i < nj; i++) {
        if (done[i]) continue;
        cpu_mm grp[8];
        int ng = 0;
        for (int k = i; k < nj; k++)
            if (!done[k] && jobs[k].w->type == jobs[i].w->type) {
                grp[ng++] = jobs[k];
                done[k] = true;
            }
        int rc = cpu_act_prepare(B->ctx, &B->act, jobs[i].w->type, x, n, in);
        if (!rc) rc = cpu_matmul(B->ctx, &B->act, grp, ng);
        if (rc) return rc;
    }
    return 0;
}

static const float *f32_data(const gguf_tensor *t) { return t ? (const float *)t->data : NULL; }

/* Checks the batch against the model and the pool; fills tok_seq. */
static int check_batch(be_t *be, cpu_be *B, const be_batch *b) {
    const model_hparams *hp = &be->model->hp;
    const int64_t T = b->n_tokens;
    if (T < 0 || b->n_seqs < 0 || b->n_out < 0) return he_set(HE_EINVAL, "cpu: negative batch counts");
    if (T > 0 && (!b->tokens || !b->pos || !b->seq_start || !b->seq_ntok || !b->block_table))
        return he_set(HE_EINVAL, "cpu: batch arrays missing");
    if (b->n_out > 0 && !b->out_idx) return he_set(HE_EINVAL, "cpu: out_idx missing");
    for (int64_t i = 0; i < T; i++) {
        if (b->tokens[i] < 0 || b->tokens[i] >= hp->n_vocab)
            return he_set(HE_EINVAL, "cpu: token id %d out of range (vocab %d)", b->tokens[i], hp->n_vocab);
        if (b->pos[i] < 0) return he_set(HE_EINVAL, "cpu: negative position %d", b->pos[i]);
        B->tok_seq[i] = -1;
    }
    for (int32_t s = 0; s < b->n_seqs; s++) {
        int64_t s0 = b->seq_start[s], n = b->seq_ntok[s];
        if (s0 < 0 || n < 0 || s0 + n > T)
            return he_set(HE_EINVAL, "cpu: sequence %d covers tokens %lld..%lld of %lld", s, (long long)s0,
                          (long long)(s0 + n), (long long)T);
        if (n > 0 && !b->block_table[s]) return he_set(HE_EINVAL, "cpu: sequence %d has no block table", s);
        int32_t maxp = -1;
        for (int64_t i = s0; i < s0 + n; i++) {
            if (B->tok_seq[i] != -1) return he_set(HE_EINVAL, "cpu: token %lld in two sequences", (long long)i);
            B->tok_seq[i] = s;
            if (b->pos[i] > maxp) maxp = b->pos[i];
        }
        for (int32_t blk = 0; n > 0 && blk <= maxp / be->block_size; blk++) {
            int32_t id = b->block_table[s][blk];
            if (id < 0 || id >= be->n_blocks)
                return he_set(HE_EINVAL, "cpu: sequence %d block %d is page %d (pool %d)", s, blk, id, be->n_blocks);
        }
    }
    for (int64_t i = 0; i < T; i++)
        if (B->tok_seq[i] < 0) return he_set(HE_EINVAL, "cpu: token %lld belongs to no sequence", (long long)i);
    for (int32_t o = 0; o < b->n_out; o++)
        if (b->out_idx[o] < 0 || b->out_idx[o] >= T)
            return he_set(HE_EINVAL, "cpu: out_idx %d out of range (%lld tokens)", b->out_idx[o], (long long)T);
    return 0;
}

/* Q, K, V of the batch's T tokens for layer l from x: Q/K norms (gemma3),
 * RoPE with the layer's base (the table is rebuilt only when the base
 * changes), q scaled by attn_scale (gemma3 scales q, not the scores), and K/V
 * written to their pages. */
static int layer_qkv(be_t *be, cpu_be *B, const be_batch *b, int32_t l, const cpu_kv_layer *L, float *rope_base) {
    const model_t *m = be->model;
    const model_hparams *hp = &m->hp;
    const model_layer *ly = &m->layers[l];
    const cpu_mat *W = B->mats + (size_t)l * M_N;
    const int64_t T = b->n_tokens, dim = hp->dim;
    cpu_rmsnorm(B->ctx, B->x, f32_data(ly->attn_norm), B->h, T, dim, hp->norm_eps);
    cpu_mm qkv[3] = {
        {&W[M_Q], B->q, hp->q_dim, f32_data(ly->bq), false},
        {&W[M_K], B->k, hp->kv_dim, f32_data(ly->bk), false},
        {&W[M_V], B->v, hp->kv_dim, f32_data(ly->bv), false},
    };
    int rc = run_mm(B, B->h, T, dim, qkv, 3);
    if (rc) return rc;
    if (ly->q_norm) {
        cpu_rmsnorm(B->ctx, B->q, f32_data(ly->q_norm), B->q, T * hp->n_heads, hp->head_dim, hp->norm_eps);
        cpu_rmsnorm(B->ctx, B->k, f32_data(ly->k_norm), B->k, T * hp->n_kv_heads, hp->head_dim, hp->norm_eps);
    }
    if (ly->rope_base != *rope_base) {
        if ((rc = cpu_rope_prepare(B->ctx, b->pos, T, hp->rope_dim, ly->rope_base))) return rc;
        *rope_base = ly->rope_base;
    }
    cpu_rope(B->ctx, B->q, T, hp->n_heads, hp->head_dim, hp->rope_neox);
    cpu_rope(B->ctx, B->k, T, hp->n_kv_heads, hp->head_dim, hp->rope_neox);
    if (hp->arch == MODEL_ARCH_GEMMA3) {
        const int64_t nq = T * hp->q_dim;
        for (int64_t i = 0; i < nq; i++) B->q[i] *= hp->attn_scale;
    }
    cpu_kv_store(B->ctx, L, b->block_table, B->k, B->v, b->pos, B->tok_seq, T);
    return 0;
}

/* x (n, dim) += the layer's output projection of att (n, q_dim) and its FFN.
 * With post norms (gemma3) each branch is normed into h before its add. */
static int layer_tail(const model_t *m, cpu_be *B, int32_t l, float *x, const float *att, int64_t n) {
    const model_hparams *hp = &m->hp;
    const model_layer *ly = &m->layers[l];
    const cpu_mat *W = B->mats + (size_t)l * M_N;
    const int64_t dim = hp->dim, ffn = hp->ffn_dim;
    const bool post = ly->post_attn_norm != NULL;
    int rc;
    cpu_mm o = {&W[M_O], post ? B->h : x, dim, NULL, !post};
    if ((rc = run_mm(B, att, n, hp->q_dim, &o, 1))) return rc;
    if (post) {
        cpu_rmsnorm(B->ctx, B->h, f32_data(ly->post_attn_norm), B->h, n, dim, hp->norm_eps);
        for (int64_t i = 0; i < n * dim; i++) x[i] = B->h[i] + x[i];
    }
    cpu_rmsnorm(B->ctx, x, f32_data(ly->ffn_norm), B->h, n, dim, hp->norm_eps);
    cpu_mm gu[2] = {
        {&W[M_GATE], B->gate, ffn, NULL, false},
        {&W[M_UP], B->up, ffn, NULL, false},
    };
    if ((rc = run_mm(B, B->h, n, dim, gu, 2))) return rc;
    if (hp->arch == MODEL_ARCH_GEMMA3)
        cpu_geglu(B->ctx, B->gate, B->up, B->gate, n, ffn);
    else
        cpu_swiglu(B->ctx, B->gate, B->up, B->gate, n, ffn);
    cpu_mm d = {&W[M_DOWN], post ? B->h : x, dim, NULL, !post};
    if ((rc = run_mm(B, B->gate, n, ffn, &d, 1))) return rc;
    if (post) {
        cpu_rmsnorm(B->ctx, B->h, f32_data(ly->post_ffn_norm), B->h, n, dim, hp->norm_eps);
        for (int64_t i = 0; i < n * dim; i++) x[i] = B->h[i] + x[i];
    }
    return 0;
}

static int cpu_forward(be_t *be, const be_batch *b, float *logits) {
    cpu_be *B = be->impl;
    const model_t *m = be->model;
    const model_hparams *hp = &m->hp;
    const int64_t T = b->n_tokens, dim = hp->dim, kvd = hp->kv_dim, qd = hp->q_dim;
    if (T <= 0) {
        if (b->n_out > 0) return he_set(HE_EINVAL, "cpu: logits wanted from an empty batch");
        return 0;
    }
    if (!logits && b->n_out > 0) return he_set(HE_EINVAL, "cpu: no logits buffer");
    int rc = reserve_tokens(B, hp, T > b->n_out ? T : b->n_out);
    if (!rc) rc = reserve_out(B, hp, b->n_out);
    if (rc) return rc;
    if ((rc = check_batch(be, B, b))) return rc;

    /* embeddings (gemma3: times sqrt(dim)) */
    const gguf_tensor *emb = m->tok_embd;
    const size_t erb = ggml_row_size(emb->type, dim);
    for (int64_t i = 0; i < T; i++) {
        float *xi = B->x + i * dim;
        cq_dequant_row(emb->type, (const uint8_t *)emb->data + (size_t)b->tokens[i] * erb, xi, dim);
        if (hp->embd_scale != 1.0f)
            for (int64_t k = 0; k < dim; k++) xi[k] *= hp->embd_scale;
    }

    float rope_base = 0; /* base of the prepared RoPE table; none yet */
    /* gemma3 scales q itself and attends with scale 1, as llama.cpp does */
    const float scale = hp->arch == MODEL_ARCH_GEMMA3 ? 1.0f : hp->attn_scale;
    const int64_t n_out = b->n_out;

    for (int32_t l = 0; l < hp->n_layers; l++) {
        const bool last = l == hp->n_layers - 1;
        cpu_kv_layer L = {
            .kv = B->kv,
            .page_floats = B->page_stride,
            .k_off = (size_t)l * 2 * be->block_size * kvd,
            .v_off = ((size_t)l * 2 + 1) * be->block_size * kvd,
            .block_size = be->block_size,
            .kv_dim = hp->kv_dim,
            .window = m->layers[l].swa_window,
        };
        if ((rc = layer_qkv(be, B, b, l, &L, &rope_base))) return rc;

        /* rows that continue past attention: all, or in the last layer only the output rows */
        float *x = B->x, *att = B->att;
        int64_t n = T;
        if (last) {
            if (n_out == 0) break;
            for (int64_t o = 0; o < n_out; o++) {
                int32_t i = b->out_idx[o];
                memcpy(B->xo + o * dim, B->x + (int64_t)i * dim, sizeof(float) * dim);
                memcpy(B->qo + o * qd, B->q + (int64_t)i * qd, sizeof(float) * qd);
                B->pos_o[o] = b->pos[i];
                B->seq_o[o] = B->tok_seq[i];
            }
            x = B->xo;
            att = B->atto;
            n = n_out;
            rc = cpu_attention(B->ctx, &L, b->block_table, B->qo, att, B->pos_o, B->seq_o, n, hp->n_heads,
                               hp->n_kv_heads, hp->head_dim, scale);
        } else {
            rc = cpu_attention(B->ctx, &L, b->block_table, B->q, att, b->pos, B->tok_seq, n, hp->n_heads,
                               hp->n_kv_heads, hp->head_dim, scale);
        }
        if (rc || (rc = layer_tail(m, B, l, x, att, n))) return rc;
    }
    if (n_out == 0) return 0;
    if (hp->n_layers == 0)
        for (int64_t o = 0; o < n_out; o++)
            memcpy(B->xo + o * dim, B->x + (int64_t)b->out_idx[o] * dim, sizeof(float) * dim);
    cpu_rmsnorm(B->ctx, B->xo, f32_data(m->out_norm), B->xo, n_out, dim, hp->norm_eps);
    cpu_mm lo = {&B->out, logits, hp->n_vocab, NULL, false};
    if ((rc = run_mm(B, B->xo, n_out, dim, &lo, 1))) return rc;
    if (hp->logit_softcap > 0) cpu_softcap(logits, n_out * (int64_t)hp->n_vocab, hp->logit_softcap);
    return 0;
}

static int cpu_kv_export(be_t *be, int32_t block, void *dst) {
    cpu_be *B = be->impl;
    if (block < 0 || block >= be->n_blocks || !dst)
        return he_set(HE_EINVAL, "cpu: kv_export of page %d (pool %d)", block, be->n_blocks);
    memcpy(dst, B->kv + (size_t)block * B->page_stride, B->page_floats * sizeof(float));
    return 0;
}

static int cpu_kv_import(be_t *be, int32_t block, const void *src) {
    cpu_be *B = be->impl;
    if (block < 0 || block >= be->n_blocks || !src)
        return he_set(HE_EINVAL, "cpu: kv_import of page %d (pool %d)", block, be->n_blocks);
    memcpy(B->kv + (size_t)block * B->page_stride, src, B->page_floats * sizeof(float));
    return 0;
}

static void cpu_destroy(be_t *be) {
    if (!be) return;
    cpu_be *B = be->impl;
    if (B) {
        cpu_ctx_destroy(&B->ctx);
        cpu_act_free(&B->act);
        free(B->kv);
        if (B->mats)
            for (int64_t i = 0; i < (int64_t)(be->model->hp.n_layers > 0 ? be->model->hp.n_layers : 1) * M_N; i++)
                cpu_mat_release(&B->mats[i]);
        cpu_mat_release(&B->out);
        free(B->mats);
        free(B->x);
        free(B->h);
        free(B->q);
        free(B->k);
        free(B->v);
        free(B->att);
        free(B->gate);
        free(B->up);
        free(B->tok_seq);
        free(B->xo);
        free(B->atto);
        free(B->qo);
        free(B->pos_o);
        free(B->seq_o);
        free(B);
    }
    free(be);
}

static const be_ops cpu_ops_table = {
    .name = "cpu",
    .forward = cpu_forward,
    .kv_export = cpu_kv_export,
    .kv_import = cpu_kv_import,
    .destroy = cpu_destroy,
};

static int check_model(const model_t *m) {
    const model_hparams *hp = &m->hp;
    if (hp->dim <= 0 || hp->n_layers < 0 || hp->n_heads <= 0 || hp->n_kv_heads <= 0 || hp->head_dim <= 0 ||
        hp->ffn_dim <= 0 || hp->n_vocab <= 0 || hp->n_heads % hp->n_kv_heads ||
        hp->n_heads * hp->head_dim != hp->q_dim || hp->n_kv_heads * hp->head_dim != hp->kv_dim ||
        hp->rope_dim < 2 || hp->rope_dim % 2 || hp->rope_dim > hp->head_dim)
        return he_set(HE_EINVAL, "cpu: inconsistent hyperparameters");
    int rc;
    if ((rc = check_mat(m->tok_embd, hp->dim, hp->n_vocab, "token_embd"))) return rc;
    if ((rc = check_mat(m->output, hp->dim, hp->n_vocab, "output"))) return rc;
    if (!m->out_norm) return he_set(HE_EINVAL, "cpu: missing output_norm");
    if ((rc = check_vec(m->out_norm, hp->dim, "output_norm"))) return rc;
    for (int32_t l = 0; l < hp->n_layers; l++) {
        const model_layer *L = &m->layers[l];
        if (!L->attn_norm || !L->ffn_norm) return he_set(HE_EINVAL, "cpu: layer %d lacks a norm", l);
        if ((rc = check_vec(L->attn_norm, hp->dim, "attn_norm")) || (rc = check_vec(L->ffn_norm, hp->dim, "ffn_norm")) ||
            (rc = check_vec(L->bq, hp->q_dim, "bq")) || (rc = check_vec(L->bk, hp->kv_dim, "bk")) ||
            (rc = check_vec(L->bv, hp->kv_dim, "bv")) || (rc = check_mat(L->wq, hp->dim, hp->q_dim, "wq")) ||
            (rc = check_mat(L->wk, hp->dim, hp->kv_dim, "wk")) || (rc = check_mat(L->wv, hp->dim, hp->kv_dim, "wv")) ||
            (rc = check_mat(L->wo, hp->q_dim, hp->dim, "wo")) || (rc = check_mat(L->w_gate, hp->dim, hp->ffn_dim, "w_gate")) ||
            (rc = check_mat(L->w_up, hp->dim, hp->ffn_dim, "w_up")) ||
            (rc = check_mat(L->w_down, hp->ffn_dim, hp->dim, "w_down")) ||
            (rc = check_vec(L->q_norm, hp->head_dim, "attn_q_norm")) ||
            (rc = check_vec(L->k_norm, hp->head_dim, "attn_k_norm")) ||
            (rc = check_vec(L->post_attn_norm, hp->dim, "post_attention_norm")) ||
            (rc = check_vec(L->post_ffn_norm, hp->dim, "post_ffw_norm")))
            return rc;
        if ((L->q_norm == NULL) != (L->k_norm == NULL) || (L->post_attn_norm == NULL) != (L->post_ffn_norm == NULL))
            return he_set(HE_EINVAL, "cpu: layer %d has only some of the gemma3 norms", l);
    }
    return 0;
}

be_t *be_cpu_new(const model_t *m, int32_t n_blocks, int32_t block_size, int32_t n_threads) {
    if (!m) {
        he_set(HE_EINVAL, "cpu: no model");
        return NULL;
    }
    if (n_blocks <= 0 || block_size <= 0) {
        he_set(HE_EINVAL, "cpu: pool of %d pages of %d tokens", n_blocks, block_size);
        return NULL;
    }
    if (check_model(m)) return NULL;
    if (n_threads <= 0) n_threads = omp_get_num_procs();
    const model_hparams *hp = &m->hp;
    be_t *be = calloc(1, sizeof *be);
    cpu_be *B = calloc(1, sizeof *B);
    if (!be || !B) {
        free(be);
        free(B);
        he_set(HE_ENOMEM, "cpu: cannot allocate backend");
        return NULL;
    }
    be->ops = &cpu_ops_table;
    be->model = m;
    be->n_blocks = n_blocks;
    be->block_size = block_size;
    be->n_threads = n_threads;
    be->impl = B;
    B->page_floats = (size_t)hp->n_layers * 2 * (size_t)block_size * (size_t)hp->kv_dim;
    B->page_stride = B->page_floats + 16;
    if ((size_t)n_blocks > SIZE_MAX / sizeof(float) / B->page_stride) {
        he_set(HE_ENOMEM, "cpu: KV pool of %d pages overflows", n_blocks);
        goto fail;
    }
    B->kv = calloc((size_t)n_blocks * B->page_stride, sizeof(float));
    B->mats = calloc((size_t)(hp->n_layers > 0 ? hp->n_layers : 1) * M_N, sizeof *B->mats);
    B->ctx = cpu_ctx_new(n_threads);
    if (!B->kv || !B->mats || !B->ctx) {
        he_set(HE_ENOMEM, "cpu: cannot allocate a KV pool of %d pages (%zu bytes each)", n_blocks,
               B->page_floats * sizeof(float));
        goto fail;
    }
    for (int32_t l = 0; l < hp->n_layers; l++) {
        const model_layer *L = &m->layers[l];
        cpu_mat *W = B->mats + (size_t)l * M_N;
        W[M_Q] = cpu_mat_of(L->wq);
        W[M_K] = cpu_mat_of(L->wk);
        W[M_V] = cpu_mat_of(L->wv);
        W[M_O] = cpu_mat_of(L->wo);
        W[M_GATE] = cpu_mat_of(L->w_gate);
        W[M_UP] = cpu_mat_of(L->w_up);
        W[M_DOWN] = cpu_mat_of(L->w_down);
        for (int i = 0; i < M_N; i++)
            if (cpu_mat_repack(&W[i])) goto fail;
    }
    B->out = cpu_mat_of(m->output);
    if (cpu_mat_repack(&B->out)) goto fail;
    return be;
fail:
    cpu_destroy(be);
    return NULL;
}
