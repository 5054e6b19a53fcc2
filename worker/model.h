/* model: a Llama-family model described by a GGUF file.
 *
 * model_load() opens the file (gguf.h), reads the hyperparameters of the
 * `llama` or `qwen2` architecture, finds every weight tensor, and checks each
 * tensor's shape and type against the hyperparameters, so a backend can use
 * the weights without further checks. Weights stay in the file mapping (no
 * copy). Tensor shapes below use ggml order: ne[0] is the input (row) length.
 */
#ifndef HELIUM_MODEL_H
#define HELIUM_MODEL_H

#include <stdbool.h>
#include <stdint.h>

#include "gguf.h"
#include "tokenizer.h"

typedef enum { MODEL_ARCH_LLAMA = 1, MODEL_ARCH_QWEN2 = 2 } model_arch;

typedef struct {
    model_arch arch;
    int32_t n_vocab;
    int32_t dim;          /* embedding length */
    int32_t n_layers;
    int32_t n_heads;
    int32_t n_kv_heads;
    int32_t head_dim;     /* dim / n_heads */
    int32_t kv_dim;       /* n_kv_heads * head_dim */
    int32_t ffn_dim;
    int32_t n_ctx_train;  /* context length the model was built for */
    int32_t rope_dim;     /* rotated dims per head (== head_dim for supported models) */
    float rope_base;      /* rope.freq_base */
    bool rope_neox;       /* true: rotate pairs (i, i+rope_dim/2) (qwen2); false: (2i, 2i+1) (llama) */
    float norm_eps;       /* attention.layer_norm_rms_epsilon */
} model_hparams;

typedef struct {
    const gguf_tensor *attn_norm; /* (dim) f32 */
    const gguf_tensor *wq;        /* (dim -> n_heads*head_dim): ne = {dim, dim} */
    const gguf_tensor *wk;        /* ne = {dim, kv_dim} */
    const gguf_tensor *wv;        /* ne = {dim, kv_dim} */
    const gguf_tensor *wo;        /* ne = {dim, dim} */
    const gguf_tensor *bq, *bk, *bv; /* qwen2 only: (dim), (kv_dim), (kv_dim) f32; NULL for llama */
    const gguf_tensor *ffn_norm;  /* (dim) f32 */
    const gguf_tensor *w_gate;    /* ne = {dim, ffn_dim} */
    const gguf_tensor *w_up;      /* ne = {dim, ffn_dim} */
    const gguf_tensor *w_down;    /* ne = {ffn_dim, dim} */
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
