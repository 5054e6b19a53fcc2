/* model: loads a llama/qwen2 GGUF and checks every tensor against the
 * hyperparameters (see model.h). After model_load succeeds, every weight has
 * the shape and a supported type the backend expects. */
#include "model.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "blockhash.h"
#include "herr.h"

static int get_u32(const gguf_t *g, const char *arch, const char *suffix, int32_t *out,
                   bool required, int32_t def) {
    char key[128];
    snprintf(key, sizeof key, "%s.%s", arch, suffix);
    uint32_t v;
    if (!gguf_get_u32(g, key, &v)) {
        if (required) return he_set(HE_EFORMAT, "model: missing metadata key '%s'", key);
        *out = def;
        return 0;
    }
    if (v == 0 || v > (1u << 24)) return he_set(HE_ERANGE, "model: '%s' = %u out of range", key, v);
    *out = (int32_t)v;
    return 0;
}

static void get_f32(const gguf_t *g, const char *arch, const char *suffix, float *out, float def) {
    char key[128];
    snprintf(key, sizeof key, "%s.%s", arch, suffix);
    if (!gguf_get_f32(g, key, out)) *out = def;
}

/* Finds tensor `name`, checks dims (ne0, ne1; ne1 = 0 means 1-D) and type. */
static int want(const model_t *m, const char *name, int64_t ne0, int64_t ne1, bool matrix,
                bool optional, const gguf_tensor **out) {
    const gguf_tensor *t = gguf_find_tensor(m->gguf, name);
    *out = t;
    if (!t) {
        if (optional) return 0;
        return he_set(HE_EFORMAT, "model: tensor '%s' missing", name);
    }
    int64_t e1 = ne1 ? ne1 : 1;
    if (t->ne[0] != ne0 || t->ne[1] != e1 || t->ne[2] != 1 || t->ne[3] != 1)
        return he_set(HE_EFORMAT,
                      "model: tensor '%s' has shape [%lld, %lld, %lld, %lld], expected [%lld, %lld]",
                      name, (long long)t->ne[0], (long long)t->ne[1], (long long)t->ne[2],
                      (long long)t->ne[3], (long long)ne0, (long long)e1);
    /* matrices: any type the reader accepts; the backend says which it computes */
    bool ok = t->type == GGML_T_F32 || (matrix && ggml_type_supported(t->type));
    if (!ok)
        return he_set(HE_EUNSUPPORTED, "model: tensor '%s' has unsupported type %s%s", name,
                      ggml_type_name(t->type), matrix ? "" : " (norms and biases must be F32)");
    return 0;
}

static int load_hparams(model_t *m) {
    const gguf_t *g = m->gguf;
    const char *a;
    size_t alen;
    if (!gguf_get_str(g, "general.architecture", &a, &alen))
        return he_set(HE_EFORMAT, "model: missing general.architecture");
    char arch[32];
    if (alen >= sizeof arch) alen = sizeof arch - 1;
    memcpy(arch, a, alen);
    arch[alen] = 0;
    model_hparams *hp = &m->hp;
    if (!strcmp(arch, "llama")) {
        hp->arch = MODEL_ARCH_LLAMA;
        hp->rope_neox = false;
    } else if (!strcmp(arch, "qwen2")) {
        hp->arch = MODEL_ARCH_QWEN2;
        hp->rope_neox = true;
    } else {
        return he_set(HE_EUNSUPPORTED, "model: architecture '%s' not supported (llama, qwen2)", arch);
    }
    int rc;
    if ((rc = get_u32(g, arch, "embedding_length", &hp->dim, true, 0)) ||
        (rc = get_u32(g, arch, "block_count", &hp->n_layers, true, 0)) ||
        (rc = get_u32(g, arch, "feed_forward_length", &hp->ffn_dim, true, 0)) ||
        (rc = get_u32(g, arch, "attention.head_count", &hp->n_heads, true, 0)) ||
        (rc = get_u32(g, arch, "context_length", &hp->n_ctx_train, true, 0)))
        return rc;
    if ((rc = get_u32(g, arch, "attention.head_count_kv", &hp->n_kv_heads, false, hp->n_heads)))
        return rc;
    if (hp->dim % hp->n_heads) return he_set(HE_EFORMAT, "model: dim %d not divisible by heads %d", hp->dim, hp->n_heads);
    if (hp->n_heads % hp->n_kv_heads)
        return he_set(HE_EFORMAT, "model: heads %d not divisible by kv heads %d", hp->n_heads, hp->n_kv_heads);
    hp->head_dim = hp->dim / hp->n_heads;
    hp->kv_dim = hp->n_kv_heads * hp->head_dim;
    if ((rc = get_u32(g, arch, "rope.dimension_count", &hp->rope_dim, false, hp->head_dim))) return rc;
    if (hp->rope_dim != hp->head_dim || hp->head_dim % 2)
        return he_set(HE_EUNSUPPORTED, "model: partial rope (%d of %d dims) not supported", hp->rope_dim,
                      hp->head_dim);
    get_f32(g, arch, "rope.freq_base", &hp->rope_base, 10000.0f);
    get_f32(g, arch, "attention.layer_norm_rms_epsilon", &hp->norm_eps, 1e-5f);
    if (!(hp->rope_base > 0) || !(hp->norm_eps > 0))
        return he_set(HE_ERANGE, "model: bad rope.freq_base or rms epsilon");
    return 0;
}

int model_load(const char *path, model_t **out) {
    *out = NULL;
    model_t *m = calloc(1, sizeof *m);
    if (!m) return he_set(HE_ENOMEM, "model: out of memory");
    int rc = gguf_open(path, &m->gguf);
    if (rc) goto fail;
    if ((rc = load_hparams(m))) goto fail;
    model_hparams *hp = &m->hp;
    m->tok = tok_new_from_gguf(m->gguf);
    if (!m->tok) {
        rc = HE_EFORMAT;
        goto fail;
    }
    hp->n_vocab = tok_n_vocab(m->tok);
    if ((rc = want(m, "token_embd.weight", hp->dim, hp->n_vocab, true, false, &m->tok_embd))) goto fail;
    if ((rc = want(m, "output_norm.weight", hp->dim, 0, false, false, &m->out_norm))) goto fail;
    if ((rc = want(m, "output.weight", hp->dim, hp->n_vocab, true, true, &m->output))) goto fail;
    if (!m->output) m->output = m->tok_embd; /* tied embeddings */
    m->layers = calloc((size_t)hp->n_layers, sizeof *m->layers);
    if (!m->layers) {
        rc = he_set(HE_ENOMEM, "model: out of memory");
        goto fail;
    }
    bool bias = hp->arch == MODEL_ARCH_QWEN2;
    for (int l = 0; l < hp->n_layers; l++) {
        model_layer *L = &m->layers[l];
        char n[96];
#define W(field, nm, a, b, mat, opt)                                   \
    snprintf(n, sizeof n, "blk.%d.%s", l, nm);                         \
    if ((rc = want(m, n, a, b, mat, opt, &L->field))) goto fail;
        W(attn_norm, "attn_norm.weight", hp->dim, 0, false, false);
        W(wq, "attn_q.weight", hp->dim, hp->dim, true, false);
        W(wk, "attn_k.weight", hp->dim, hp->kv_dim, true, false);
        W(wv, "attn_v.weight", hp->dim, hp->kv_dim, true, false);
        W(wo, "attn_output.weight", hp->dim, hp->dim, true, false);
        W(bq, "attn_q.bias", hp->dim, 0, false, !bias);
        W(bk, "attn_k.bias", hp->kv_dim, 0, false, !bias);
        W(bv, "attn_v.bias", hp->kv_dim, 0, false, !bias);
        W(ffn_norm, "ffn_norm.weight", hp->dim, 0, false, false);
        W(w_gate, "ffn_gate.weight", hp->dim, hp->ffn_dim, true, false);
        W(w_up, "ffn_up.weight", hp->dim, hp->ffn_dim, true, false);
        W(w_down, "ffn_down.weight", hp->ffn_dim, hp->dim, true, false);
#undef W
    }
    const char *nm;
    size_t nlen;
    if (gguf_get_str(m->gguf, "general.name", &nm, &nlen)) {
        if (nlen >= sizeof m->name) nlen = sizeof m->name - 1;
        memcpy(m->name, nm, nlen);
        m->name[nlen] = 0;
    } else {
        const char *b = strrchr(path, '/');
        snprintf(m->name, sizeof m->name, "%s", b ? b + 1 : path);
    }
    /* Model identity for block hashes: architecture, shapes, and a sample of
     * the weights (first bytes of a few tensors), so two different random
     * models never share cache entries. */
    char id[512];
    int n = snprintf(id, sizeof id, "%d/%d/%d/%d/%d/%d/%d/%zu", hp->arch, hp->n_vocab, hp->dim,
                     hp->n_layers, hp->n_heads, hp->n_kv_heads, hp->ffn_dim, gguf_file_size(m->gguf));
    uint64_t h = bh_root(id, (size_t)n);
    const gguf_tensor *probe[3] = {m->tok_embd, m->layers[0].wq, m->output};
    for (int i = 0; i < 3; i++) {
        size_t nb = probe[i]->nbytes < 4096 ? probe[i]->nbytes : 4096;
        uint64_t hh = bh_root(probe[i]->data, nb);
        h = bh_chain(h, (const int32_t *)&hh, 2);
    }
    m->root_hash = h;
    *out = m;
    return 0;
fail:
    model_destroy(&m);
    return rc;
}

void model_destroy(model_t **self_p) {
    if (!self_p || !*self_p) return;
    model_t *m = *self_p;
    tok_destroy(&m->tok);
    gguf_destroy(&m->gguf);
    free(m->layers);
    free(m);
    *self_p = NULL;
}

int64_t model_n_params(const model_t *m) {
    int64_t n = 0;
    for (int64_t i = 0; i < gguf_n_tensors(m->gguf); i++) {
        const gguf_tensor *t = gguf_tensor_at(m->gguf, i);
        n += t->ne[0] * t->ne[1] * t->ne[2] * t->ne[3];
    }
    return n;
}

int64_t model_weight_bytes(const model_t *m) {
    int64_t n = 0;
    for (int64_t i = 0; i < gguf_n_tensors(m->gguf); i++) n += (int64_t)gguf_tensor_at(m->gguf, i)->nbytes;
    return n;
}
