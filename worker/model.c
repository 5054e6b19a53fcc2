/* model: loads a llama/qwen2/gemma3 GGUF and checks every tensor against the
 * hyperparameters (see model.h). After model_load succeeds, every weight has
 * the shape the backend expects, norms and biases are F32, and matrices have a
 * type the GGUF reader knows (the backend says which it can multiply). */
#include <math.h>
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

/* gemma3's extra hyperparameters, with llama.cpp's defaults (llama-model.cpp,
 * gemma3: SWA pattern 6, SWA RoPE base 10000, the 27B model (62 layers)
 * scales q by 1/sqrt(dim / n_heads) instead of 1/sqrt(head_dim)). */
static int load_gemma3(const gguf_t *g, const char *arch, model_hparams *hp) {
    char key[128];
    snprintf(key, sizeof key, "%s.rope.scaling.type", arch);
    const char *st;
    size_t stl;
    if (gguf_get_str(g, key, &st, &stl) && !(stl == 4 && !memcmp(st, "none", 4)))
        return he_set(HE_EUNSUPPORTED, "model: gemma3 RoPE scaling '%.*s' not supported", (int)stl, st);
    float factor = 0;
    get_f32(g, arch, "rope.scaling.factor", &factor, 0);
    if (factor != 0 && factor != 1)
        return he_set(HE_EUNSUPPORTED, "model: gemma3 RoPE scaling factor %g not supported", factor);
    hp->embd_scale = sqrtf((float)hp->dim);
    if (hp->n_layers == 62) hp->attn_scale = 1.0f / sqrtf((float)(hp->dim / hp->n_heads));
    get_f32(g, arch, "final_logit_softcapping", &hp->logit_softcap, 0.0f);
    get_f32(g, arch, "rope.freq_base_swa", &hp->rope_base_swa, 10000.0f);
    int rc;
    if ((rc = get_u32(g, arch, "attention.sliding_window", &hp->swa_window, false, 0)) ||
        (rc = get_u32(g, arch, "attention.sliding_window_pattern", &hp->swa_pattern, false, 6)))
        return rc;
    if (!(hp->rope_base_swa > 0) || !(hp->logit_softcap >= 0))
        return he_set(HE_ERANGE, "model: bad rope.freq_base_swa or final_logit_softcapping");
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
    } else if (!strcmp(arch, "gemma3")) {
        hp->arch = MODEL_ARCH_GEMMA3;
        hp->rope_neox = true;
    } else {
        return he_set(HE_EUNSUPPORTED, "model: architecture '%s' not supported (llama, qwen2, gemma3)", arch);
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
    if (hp->arch == MODEL_ARCH_GEMMA3) {
        int32_t vlen;
        if ((rc = get_u32(g, arch, "attention.key_length", &hp->head_dim, false, hp->head_dim)) ||
            (rc = get_u32(g, arch, "attention.value_length", &vlen, false, hp->head_dim)))
            return rc;
        if (vlen != hp->head_dim)
            return he_set(HE_EUNSUPPORTED, "model: key_length %d != value_length %d not supported", hp->head_dim, vlen);
    }
    hp->q_dim = hp->n_heads * hp->head_dim;
    hp->kv_dim = hp->n_kv_heads * hp->head_dim;
    if ((rc = get_u32(g, arch, "rope.dimension_count", &hp->rope_dim, false, hp->head_dim))) return rc;
    if (hp->rope_dim != hp->head_dim || hp->head_dim % 2)
        return he_set(HE_EUNSUPPORTED, "model: partial rope (%d of %d dims) not supported", hp->rope_dim,
                      hp->head_dim);
    get_f32(g, arch, "rope.freq_base", &hp->rope_base, 10000.0f);
    get_f32(g, arch, "attention.layer_norm_rms_epsilon", &hp->norm_eps, 1e-5f);
    if (!(hp->rope_base > 0) || !(hp->norm_eps > 0))
        return he_set(HE_ERANGE, "model: bad rope.freq_base or rms epsilon");
    hp->embd_scale = 1.0f;
    hp->attn_scale = 1.0f / sqrtf((float)hp->head_dim);
    hp->rope_base_swa = hp->rope_base;
    if (hp->arch == MODEL_ARCH_GEMMA3) return load_gemma3(g, arch, hp);
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
    bool bias = hp->arch == MODEL_ARCH_QWEN2, gemma = hp->arch == MODEL_ARCH_GEMMA3;
    for (int l = 0; l < hp->n_layers; l++) {
        model_layer *L = &m->layers[l];
        char n[96];
#define W(field, nm, a, b, mat, opt)                                   \
    snprintf(n, sizeof n, "blk.%d.%s", l, nm);                         \
    if ((rc = want(m, n, a, b, mat, opt, &L->field))) goto fail;
        W(attn_norm, "attn_norm.weight", hp->dim, 0, false, false);
        W(wq, "attn_q.weight", hp->dim, hp->q_dim, true, false);
        W(wk, "attn_k.weight", hp->dim, hp->kv_dim, true, false);
        W(wv, "attn_v.weight", hp->dim, hp->kv_dim, true, false);
        W(wo, "attn_output.weight", hp->q_dim, hp->dim, true, false);
        W(bq, "attn_q.bias", hp->q_dim, 0, false, !bias);
        W(bk, "attn_k.bias", hp->kv_dim, 0, false, !bias);
        W(bv, "attn_v.bias", hp->kv_dim, 0, false, !bias);
        W(ffn_norm, "ffn_norm.weight", hp->dim, 0, false, false);
        W(w_gate, "ffn_gate.weight", hp->dim, hp->ffn_dim, true, false);
        W(w_up, "ffn_up.weight", hp->dim, hp->ffn_dim, true, false);
        W(w_down, "ffn_down.weight", hp->ffn_dim, hp->dim, true, false);
        L->swa_window = 0;
        L->rope_base = hp->rope_base;
        if (gemma) {
            W(q_norm, "attn_q_norm.weight", hp->head_dim, 0, false, false);
            W(k_norm, "attn_k_norm.weight", hp->head_dim, 0, false, false);
            W(post_attn_norm, "post_attention_norm.weight", hp->dim, 0, false, false);
            W(post_ffn_norm, "post_ffw_norm.weight", hp->dim, 0, false, false);
            if (hp->swa_window > 0 && l % hp->swa_pattern < hp->swa_pattern - 1) {
                L->swa_window = hp->swa_window;
                L->rope_base = hp->rope_base_swa;
            }
        }
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
