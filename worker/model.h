/* model: a Llama-family model described by a GGUF file.
 *
 * model_load() opens the file (gguf.h), reads the hyperparameters of the
 * `llama`, `qwen2` or `gemma3` architecture, finds every weight tensor, and
 * checks each tensor's shape against the hyperparameters (and that norms and
 * biases are F32), so a backend can use the weights without further checks;
 * which matrix types it can multiply is the backend's to say. Weights stay in
 * the file mapping (no copy). Tensor shapes below use ggml order: ne[0] is the
 * input (row) length.
 *
 * gemma3 differs from llama as llama.cpp's graph does: the embedding is
 * scaled by sqrt(dim); Q and K are RMS-normed per head before RoPE (NeoX
 * pairs); Q is scaled by attn_scale before attention (whose own scale is then
 * 1); attention and FFN outputs are RMS-normed again before their residual
 * add; the FFN is GeGLU (tanh GELU); head_dim comes from attention.key_length
 * (so q_dim = n_heads * head_dim may differ from dim); layers are sliding-
 * window (swa_window tokens, rope_base_swa) except every swa_pattern-th one,
 * which is global (rope_base); logits may be soft-capped. The norm weights are
 * used as stored: llama.cpp's converter already stored Gemma's (1 + w).
 */
#ifndef HELIUM_MODEL_H
#define HELIUM_MODEL_H

#include <stdbool.h>
#include <stdint.h>

#include "gguf.h"
#include "tokenizer.h"

typedef enum { MODEL_ARCH_LLAMA = 1, MODEL_ARCH_QWEN2 = 2, MODEL_ARCH_GEMMA3 = 3 } model_arch;

typedef struct {
    model_arch arch;
    int32_t n_vocab;
    int32_t dim;          /* embedding length */
    int32_t n_layers;
    int32_t n_heads;
    int32_t n_kv_heads;
    int32_t head_dim;     /* dim / n_heads; gemma3: attention.key_length */
    int32_t q_dim;        /* n_heads * head_dim (== dim except gemma3) */
    int32_t kv_dim;       /* n_kv_heads * head_dim */
    int32_t ffn_dim;
    int32_t n_ctx_train;  /* context length the model was built for */
    int32_t rope_dim;     /* rotated dims per head (== head_dim for supported models) */
    float rope_base;      /* rope.freq_base */
    bool rope_neox;       /* true: rotate pairs (i, i+rope_dim/2) (qwen2); false: (2i, 2i+1) (llama) */
    float norm_eps;       /* attention.layer_norm_rms_epsilon */
    /* gemma3 only (neutral values otherwise) */
    float embd_scale;     /* embeddings are multiplied by this (sqrt(dim); 1 otherwise) */
    float attn_scale;     /* q scale before attention (1/sqrt(head_dim) for llama/qwen2 too) */
    float logit_softcap;  /* final_logit_softcapping; 0 = none */
    int32_t swa_window;   /* attention.sliding_window; 0 = every layer is global */
    int32_t swa_pattern;  /* layer l is global iff l % swa_pattern == swa_pattern - 1 */
    float rope_base_swa;  /* rope.freq_base_swa of sliding layers (10000 by default) */
} model_hparams;

typedef struct {
    const gguf_tensor *attn_norm; /* (dim) f32 */
    const gguf_tensor *wq;        /* (dim -> q_dim): ne = {dim, q_dim} */
    const gguf_tensor *wk;        /* ne = {dim, kv_dim} */
    const gguf_tensor *wv;        /* ne = {dim, kv_dim} */
    const gguf_tensor *wo;        /* ne = {q_dim, dim} */
    const gguf_tensor *bq, *bk, *bv; /* qwen2 only: (q_dim), (kv_dim), (kv_dim) f32; NULL otherwise */
    const gguf_tensor *ffn_norm;  /* (dim) f32 */
    const gguf_tensor *w_gate;    /* ne = {dim, ffn_dim} */
    const gguf_tensor *w_up;      /* ne = {dim, ffn_dim} */
    const gguf_tensor *w_down;    /* ne = {ffn_dim, dim} */
    /* gemma3 only, NULL otherwise */
    const gguf_tensor *q_norm, *k_norm;      /* (head_dim) f32, applied to every head */
    const gguf_tensor *post_attn_norm;       /* (dim) f32 */
    const gguf_tensor *post_ffn_norm;        /* (dim) f32 */
    int32_t swa_window;                      /* this layer's window (0: global) */
    float rope_base;                         /* this layer's RoPE base */
} model_layer;

typedef struct model {
    gguf_t *gguf;
    tok_t *tok;
    model_hparams hp;
    const gguf_tensor *tok_embd;  /* ne = {dim, n_vocab} */
    const gguf_tensor *out_norm;  /* (dim) f32 */
    const gguf_tensor *output;    /* ne = {dim, n_vocab}; == tok_embd when tied */
    model_layer *layers;          /* (n_layers) */
    uint64_t root_hash;           /* blockhash root: identity of this model */
    char name[128];               /* general.name or file basename */
} model_t;

/* Loads and validates path. Returns 0 or a negative herr code with he_msg(). */
int model_load(const char *path, model_t **out);
void model_destroy(model_t **self_p);

/* Total parameter count and weight bytes (for reports). */
int64_t model_n_params(const model_t *m);
int64_t model_weight_bytes(const model_t *m);

#endif
