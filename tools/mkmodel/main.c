/* helium-mkmodel: writes small random-weight GGUF models (llama, qwen2 or
 * gemma3 architecture) that llama.cpp and Helium can load, for tests and
 * benchmarks.
 *
 *   helium-mkmodel [--preset tiny|small|medium] [--arch llama|qwen2|gemma3]
 *                  [--dtype f32|f16|bf16|q8_0] [--seed N] [--vocab-type bpe|spm]
 *                  [--corpus FILE] -o FILE
 *
 * The tokenizer is trained with BPE on a corpus (default: --corpus, else
 * $HELIUM_CORPUS, else <source dir>/data/corpus.txt) and the weights come from
 * a seeded generator, so the same arguments always give byte-identical files.
 * Weights are scaled so activations stay O(1) and the final logits have a std of
 * about LOGIT_STD, which makes next-token distributions peaked rather than flat.
 *
 * Tensor layout follows llama.cpp's names and shapes (ne[0] is the input / row
 * dimension): token_embd {dim, vocab}, blk.N.attn_{q,output} {dim, dim},
 * attn_{k,v} {dim, kv_dim}, ffn_{gate,up} {dim, ffn}, ffn_down {ffn, dim},
 * output {dim, vocab}; norms (and qwen2's q/k/v biases) are always F32.
 *
 * gemma3 models exercise what sets that architecture apart: head_dim is twice
 * dim / n_heads (attention.key_length, so attn_q is {dim, 2 dim} and
 * attn_output {2 dim, dim}), per-head attn_{q,k}_norm {head_dim}, post-
 * attention and post-FFN norms, a tied output embedding, a sliding window of
 * GEMMA_WINDOW tokens on every layer but each GEMMA_PATTERN-th, and a final
 * logit soft-cap of GEMMA_SOFTCAP.
 */
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "gguf.h"
#include "herr.h"
#include "vocab.h"
#include "wgen.h"

#define LOGIT_STD 6.0 /* target std of the final logits (see file comment) */
#define GEMMA_WINDOW 8      /* gemma3 sliding window (tokens): short, so tests cross it */
#define GEMMA_PATTERN 2     /* gemma3: layers 1, 3, ... are global */
#define GEMMA_SOFTCAP 30.0f /* gemma3 final_logit_softcapping */

typedef struct {
    const char *name;
    int64_t dim, n_layers, n_heads, n_kv_heads, ffn, vocab, ctx;
} preset;

static const preset PRESETS[] = {
    {"tiny", 64, 2, 4, 2, 128, 512, 2048},
    {"small", 288, 6, 6, 2, 768, 4096, 8192},
    {"medium", 768, 12, 12, 4, 2048, 8192, 8192},
};

typedef struct {
    const char *name;
    ggml_type type;
    uint32_t file_type; /* general.file_type (llama_ftype) */
} dtype_info;

static const dtype_info DTYPES[] = {
    {"f32", GGML_T_F32, 0},
    {"f16", GGML_T_F16, 1},
    {"bf16", GGML_T_BF16, 32},
    {"q8_0", GGML_T_Q8_0, 7},
};

typedef enum { ARCH_LLAMA = 0, ARCH_QWEN2, ARCH_GEMMA3 } arch_kind;
static const char *const ARCH_NAMES[] = {"llama", "qwen2", "gemma3"};

typedef struct {
    const preset *p;
    arch_kind arch;
    const dtype_info *dt;
    uint64_t seed;
    vocab_kind vk;
    const char *corpus;
    const char *out;
} options;

/* Buffers reused for every tensor, sized for the largest one. */
typedef struct {
    gguf_writer_t *w;
    uint64_t seed;
    float *f;      /* (max elements) values before encoding */
    uint8_t *enc;  /* (max bytes) encoded values */
    int64_t n_params;
} tensor_sink;

static const char *prog = "helium-mkmodel";

static void usage(FILE *f) {
    fprintf(f,
            "usage: %s [--preset tiny|small|medium] [--arch llama|qwen2|gemma3] [--dtype f32|f16|bf16|q8_0]\n"
            "       [--seed N] [--vocab-type bpe|spm] [--corpus FILE] -o FILE\n"
            "Writes a random-weight GGUF model with a BPE-trained tokenizer.\n"
            "Defaults: --preset tiny --arch llama --dtype f32 --seed 0 --vocab-type bpe;\n"
            "corpus: --corpus, else $HELIUM_CORPUS, else <source>/data/corpus.txt.\n",
            prog);
}

static int fail_usage(const char *fmt, const char *arg) {
    fprintf(stderr, "%s: error: ", prog);
    fprintf(stderr, fmt, arg);
    fprintf(stderr, "\n");
    usage(stderr);
    return 2;
}

/* The compiled-in source directory: HELIUM_SOURCE_DIR if the build defines it,
 * else derived from this file's (absolute, CMake-given) path. */
static const char *default_corpus(char *buf, size_t cap) {
#ifdef HELIUM_SOURCE_DIR
    snprintf(buf, cap, "%s/data/corpus.txt", HELIUM_SOURCE_DIR);
    return buf;
#else
    static const char suffix[] = "/tools/mkmodel/main.c";
    const char *f = __FILE__;
    size_t lf = strlen(f), ls = strlen(suffix);
    if (lf > ls && f[0] == '/' && strcmp(f + lf - ls, suffix) == 0) {
        snprintf(buf, cap, "%.*s/data/corpus.txt", (int)(lf - ls), f);
        return buf;
    }
    snprintf(buf, cap, "data/corpus.txt");
    return buf;
#endif
}

static int parse_args(int argc, char **argv, options *o) {
    *o = (options){&PRESETS[0], ARCH_LLAMA, &DTYPES[0], 0, VOCAB_BPE, NULL, NULL};
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            usage(stdout);
            exit(0);
        }
        bool has_val = i + 1 < argc;
        const char *v = has_val ? argv[i + 1] : NULL;
        if (!strcmp(a, "--preset") || !strcmp(a, "--arch") || !strcmp(a, "--dtype") || !strcmp(a, "--seed") ||
            !strcmp(a, "--vocab-type") || !strcmp(a, "--corpus") || !strcmp(a, "-o")) {
            if (!has_val)
                return fail_usage("option %s needs a value", a);
            i++;
        } else {
            return fail_usage("unknown argument '%s'", a);
        }
        if (!strcmp(a, "--preset")) {
            o->p = NULL;
            for (size_t k = 0; k < sizeof PRESETS / sizeof *PRESETS; k++)
                if (!strcmp(v, PRESETS[k].name))
                    o->p = &PRESETS[k];
            if (!o->p)
                return fail_usage("unknown preset '%s' (tiny, small, medium)", v);
        } else if (!strcmp(a, "--arch")) {
            if (!strcmp(v, "llama"))
                o->arch = ARCH_LLAMA;
            else if (!strcmp(v, "qwen2"))
                o->arch = ARCH_QWEN2;
            else if (!strcmp(v, "gemma3"))
                o->arch = ARCH_GEMMA3;
            else
                return fail_usage("unknown arch '%s' (llama, qwen2, gemma3)", v);
        } else if (!strcmp(a, "--dtype")) {
            o->dt = NULL;
            for (size_t k = 0; k < sizeof DTYPES / sizeof *DTYPES; k++)
                if (!strcmp(v, DTYPES[k].name))
                    o->dt = &DTYPES[k];
            if (!o->dt)
                return fail_usage("unknown dtype '%s' (f32, f16, bf16, q8_0)", v);
        } else if (!strcmp(a, "--seed")) {
            char *end;
            errno = 0;
            unsigned long long s = strtoull(v, &end, 0);
            if (!*v || *v == '-' || *v == '+' || *end || errno)
                return fail_usage("bad seed '%s' (want an unsigned 64-bit integer)", v);
            o->seed = s;
        } else if (!strcmp(a, "--vocab-type")) {
            if (!strcmp(v, "bpe"))
                o->vk = VOCAB_BPE;
            else if (!strcmp(v, "spm"))
                o->vk = VOCAB_SPM;
            else
                return fail_usage("unknown vocab type '%s' (bpe, spm)", v);
        } else if (!strcmp(a, "--corpus")) {
            o->corpus = v;
        } else {
            o->out = v;
        }
    }
    if (!o->out || !*o->out)
        return fail_usage("%s", "missing -o FILE");
    return 0;
}

static int read_file(const char *path, char **data, size_t *len) {
    FILE *f = fopen(path, "rb");
    if (!f)
        return he_set(HE_EIO, "cannot open corpus '%s': %s", path, strerror(errno));
    size_t cap = 1 << 16, n = 0;
    char *buf = malloc(cap);
    while (buf) {
        n += fread(buf + n, 1, cap - n, f);
        if (n < cap)
            break;
        char *nb = realloc(buf, cap * 2);
        if (!nb) {
            free(buf);
            buf = NULL;
            break;
        }
        buf = nb;
        cap *= 2;
    }
    int err = ferror(f);
    fclose(f);
    if (!buf)
        return he_set(HE_ENOMEM, "out of memory reading '%s'", path);
    if (err) {
        free(buf);
        return he_set(HE_EIO, "error reading corpus '%s'", path);
    }
    *data = buf;
    *len = n;
    return 0;
}

/* Generates, encodes and adds one tensor. kind: 'w' weight (normal, std), 'n'
 * norm (1 + noise, F32), 'b' bias (normal, std, F32). ne1 = 1 for vectors. */
static int add_tensor(tensor_sink *s, const char *name, char kind, ggml_type type, int64_t ne0, int64_t ne1,
                      double std) {
    wgen_rng r;
    wgen_seed(&r, s->seed, name);
    size_t n = (size_t)(ne0 * ne1);
    if (kind == 'n')
        wgen_near_one(&r, s->f, n);
    else
        wgen_normal(&r, s->f, n, std);
    if (kind != 'w')
        type = GGML_T_F32;
    size_t row = ggml_row_size(type, ne0);
    if (row == 0)
        return he_set(HE_EINVAL, "tensor %s: row of %" PRId64 " elements does not fit type %s", name, ne0,
                      ggml_type_name(type));
    for (int64_t i = 0; i < ne1; i++)
        if (wgen_encode(type, s->f + i * ne0, (size_t)ne0, s->enc + i * row) != row)
            return he_set(HE_EINVAL, "tensor %s: cannot encode as %s", name, ggml_type_name(type));
    int64_t ne[2] = {ne0, ne1};
    int rc = gguf_writer_add_tensor(s->w, name, type, ne1 == 1 ? 1 : 2, ne, s->enc);
    if (rc < 0)
        return rc;
    s->n_params += ne0 * ne1;
    return 0;
}

/* Returns from the enclosing function (which declares int rc) on a negative result. */
#define TRY(expr)                                                                                                      \
    do {                                                                                                               \
        if ((rc = (expr)) < 0)                                                                                         \
            return rc;                                                                                                 \
    } while (0)

static int add_metadata(gguf_writer_t *w, const options *o, const vocab_t *v, const char *model_name) {
    const preset *p = o->p;
    const char *arch = ARCH_NAMES[o->arch];
    const bool qwen2 = o->arch == ARCH_QWEN2, gemma = o->arch == ARCH_GEMMA3;
    int64_t head_dim = p->dim / p->n_heads * (gemma ? 2 : 1);
    char key[128];
    int rc = 0;
#define KEY(suffix) (snprintf(key, sizeof key, "%s.%s", arch, suffix), key)
    TRY(gguf_writer_add_str(w, "general.architecture", arch));
    TRY(gguf_writer_add_str(w, "general.name", model_name));
    TRY(gguf_writer_add_u32(w, "general.file_type", o->dt->file_type));
    TRY(gguf_writer_add_u32(w, "general.quantization_version", 2));
    TRY(gguf_writer_add_u32(w, KEY("context_length"), (uint32_t)p->ctx));
    TRY(gguf_writer_add_u32(w, KEY("embedding_length"), (uint32_t)p->dim));
    TRY(gguf_writer_add_u32(w, KEY("block_count"), (uint32_t)p->n_layers));
    TRY(gguf_writer_add_u32(w, KEY("feed_forward_length"), (uint32_t)p->ffn));
    TRY(gguf_writer_add_u32(w, KEY("attention.head_count"), (uint32_t)p->n_heads));
    TRY(gguf_writer_add_u32(w, KEY("attention.head_count_kv"), (uint32_t)p->n_kv_heads));
    TRY(gguf_writer_add_f32(w, KEY("attention.layer_norm_rms_epsilon"), 1e-5f));
    TRY(gguf_writer_add_f32(w, KEY("rope.freq_base"), qwen2 || gemma ? 1000000.0f : 10000.0f));
    TRY(gguf_writer_add_u32(w, KEY("rope.dimension_count"), (uint32_t)head_dim));
    if (!qwen2)
        TRY(gguf_writer_add_u32(w, KEY("vocab_size"), (uint32_t)p->vocab));
    if (gemma) {
        TRY(gguf_writer_add_u32(w, KEY("attention.key_length"), (uint32_t)head_dim));
        TRY(gguf_writer_add_u32(w, KEY("attention.value_length"), (uint32_t)head_dim));
        TRY(gguf_writer_add_u32(w, KEY("attention.sliding_window"), GEMMA_WINDOW));
        TRY(gguf_writer_add_u32(w, KEY("attention.sliding_window_pattern"), GEMMA_PATTERN));
        TRY(gguf_writer_add_f32(w, KEY("final_logit_softcapping"), GEMMA_SOFTCAP));
    }
#undef KEY

    if (v->kind == VOCAB_BPE) {
        TRY(gguf_writer_add_str(w, "tokenizer.ggml.model", "gpt2"));
        TRY(gguf_writer_add_str(w, "tokenizer.ggml.pre", qwen2 ? "qwen2" : "llama-bpe"));
    } else {
        TRY(gguf_writer_add_str(w, "tokenizer.ggml.model", "llama"));
    }
    TRY(gguf_writer_add_arr_str(w, "tokenizer.ggml.tokens", (const char *const *)v->tokens, (uint64_t)v->n));
    if (v->scores)
        TRY(gguf_writer_add_arr_f32(w, "tokenizer.ggml.scores", v->scores, (uint64_t)v->n));
    TRY(gguf_writer_add_arr_i32(w, "tokenizer.ggml.token_type", v->types, (uint64_t)v->n));
    if (v->merges)
        TRY(gguf_writer_add_arr_str(w, "tokenizer.ggml.merges", (const char *const *)v->merges, v->n_merges));
    TRY(gguf_writer_add_u32(w, "tokenizer.ggml.bos_token_id", (uint32_t)v->bos));
    TRY(gguf_writer_add_u32(w, "tokenizer.ggml.eos_token_id", (uint32_t)v->eos));
    if (v->unk >= 0)
        TRY(gguf_writer_add_u32(w, "tokenizer.ggml.unknown_token_id", (uint32_t)v->unk));
    TRY(gguf_writer_add_bool(w, "tokenizer.ggml.add_bos_token", v->kind == VOCAB_SPM || !qwen2));
    TRY(gguf_writer_add_bool(w, "tokenizer.ggml.add_eos_token", false));
    if (v->kind == VOCAB_SPM)
        TRY(gguf_writer_add_bool(w, "tokenizer.ggml.add_space_prefix", true));
    return 0;
}

static int add_tensors(tensor_sink *s, const options *o) {
    const preset *p = o->p;
    ggml_type t = o->dt->type;
    const bool qwen2 = o->arch == ARCH_QWEN2, gemma = o->arch == ARCH_GEMMA3;
    int64_t head_dim = p->dim / p->n_heads * (gemma ? 2 : 1);
    int64_t dim = p->dim, q_dim = head_dim * p->n_heads, kv_dim = head_dim * p->n_kv_heads, ffn = p->ffn;
    double s_dim = 1.0 / sqrt((double)dim), s_ffn = 1.0 / sqrt((double)ffn), s_q = 1.0 / sqrt((double)q_dim);
    char name[96];
    int rc;
    /* gemma3 scales embeddings by sqrt(dim) and ties the output: std LOGIT_STD/sqrt(dim) keeps both O(1) */
    TRY(add_tensor(s, "token_embd.weight", 'w', t, dim, p->vocab, gemma ? LOGIT_STD * s_dim : 1.0));
    for (int64_t l = 0; l < p->n_layers; l++) {
#define NAME(suffix) (snprintf(name, sizeof name, "blk.%" PRId64 ".%s", l, suffix), name)
        TRY(add_tensor(s, NAME("attn_norm.weight"), 'n', t, dim, 1, 0));
        TRY(add_tensor(s, NAME("attn_q.weight"), 'w', t, dim, q_dim, s_dim));
        TRY(add_tensor(s, NAME("attn_k.weight"), 'w', t, dim, kv_dim, s_dim));
        TRY(add_tensor(s, NAME("attn_v.weight"), 'w', t, dim, kv_dim, s_dim));
        if (gemma) {
            TRY(add_tensor(s, NAME("attn_q_norm.weight"), 'n', t, head_dim, 1, 0));
            TRY(add_tensor(s, NAME("attn_k_norm.weight"), 'n', t, head_dim, 1, 0));
            TRY(add_tensor(s, NAME("post_attention_norm.weight"), 'n', t, dim, 1, 0));
            TRY(add_tensor(s, NAME("post_ffw_norm.weight"), 'n', t, dim, 1, 0));
        }
        if (qwen2) {
            TRY(add_tensor(s, NAME("attn_q.bias"), 'b', t, dim, 1, 0.02));
            TRY(add_tensor(s, NAME("attn_k.bias"), 'b', t, kv_dim, 1, 0.02));
            TRY(add_tensor(s, NAME("attn_v.bias"), 'b', t, kv_dim, 1, 0.02));
        }
        TRY(add_tensor(s, NAME("attn_output.weight"), 'w', t, q_dim, dim, s_q));
        TRY(add_tensor(s, NAME("ffn_norm.weight"), 'n', t, dim, 1, 0));
        TRY(add_tensor(s, NAME("ffn_gate.weight"), 'w', t, dim, ffn, s_dim));
        TRY(add_tensor(s, NAME("ffn_up.weight"), 'w', t, dim, ffn, s_dim));
        TRY(add_tensor(s, NAME("ffn_down.weight"), 'w', t, ffn, dim, s_ffn));
#undef NAME
    }
    TRY(add_tensor(s, "output_norm.weight", 'n', t, dim, 1, 0));
    /* final hidden state is RMS-normalized (norm ~ sqrt(dim)), so this gives logits of std ~ LOGIT_STD;
       gemma3 ties the output to token_embd, as the real models do */
    if (!gemma)
        TRY(add_tensor(s, "output.weight", 'w', t, dim, p->vocab, LOGIT_STD * s_dim));
    return 0;
}
#undef TRY

static int run(const options *o) {
    char def[4096];
    const char *corpus = o->corpus;
    if (!corpus || !*corpus)
        corpus = getenv("HELIUM_CORPUS");
    if (!corpus || !*corpus)
        corpus = default_corpus(def, sizeof def);
    const preset *p = o->p;
    char model_name[64];
    snprintf(model_name, sizeof model_name, "helium-%s-%s-%s", p->name, ARCH_NAMES[o->arch], o->dt->name);

    char *text = NULL;
    size_t text_len = 0;
    vocab_t *v = NULL;
    gguf_writer_t *w = NULL;
    tensor_sink s = {0};
    char *tmp = NULL;
    int rc = read_file(corpus, &text, &text_len);
    if (rc < 0)
        goto done;
    rc = vocab_build(o->vk, o->arch == ARCH_QWEN2 ? PRETOK_QWEN2 : PRETOK_LLAMA3, text, text_len, (int32_t)p->vocab, &v);
    if (rc < 0) {
        char msg[512];
        snprintf(msg, sizeof msg, "%s", he_msg());
        he_set(rc, "corpus '%s': %s", corpus, msg);
        goto done;
    }
    w = gguf_writer_new();
    int64_t max_n = p->vocab * p->dim;
    if (p->ffn * p->dim > max_n)
        max_n = p->ffn * p->dim;
    if (4 * p->dim * p->dim > max_n) /* gemma3's attn_q / attn_output: dim x 2 dim */
        max_n = 4 * p->dim * p->dim;
    s.w = w;
    s.seed = o->seed;
    s.f = malloc((size_t)max_n * sizeof *s.f);
    s.enc = malloc((size_t)max_n * sizeof(float));
    if (!w || !s.f || !s.enc) {
        rc = he_set(HE_ENOMEM, "out of memory");
        goto done;
    }
    if ((rc = add_metadata(w, o, v, model_name)) < 0 || (rc = add_tensors(&s, o)) < 0)
        goto done;
    /* write next to the target and rename, so a failed run leaves no partial file */
    size_t lt = strlen(o->out) + 32;
    tmp = malloc(lt);
    if (!tmp) {
        rc = he_set(HE_ENOMEM, "out of memory");
        goto done;
    }
    snprintf(tmp, lt, "%s.tmp%ld", o->out, (long)getpid());
    if ((rc = gguf_writer_write(w, tmp)) < 0) {
        unlink(tmp);
        goto done;
    }
    if (rename(tmp, o->out) != 0) {
        rc = he_set(HE_EIO, "cannot rename '%s' to '%s': %s", tmp, o->out, strerror(errno));
        unlink(tmp);
        goto done;
    }
    struct stat st;
    long long bytes = stat(o->out, &st) == 0 ? (long long)st.st_size : -1;
    char tok_info[96];
    if (v->kind == VOCAB_BPE)
        snprintf(tok_info, sizeof tok_info, "bpe, %zu merges", v->n_merges);
    else
        snprintf(tok_info, sizeof tok_info, "spm");
    fprintf(stderr,
            "%s: wrote %s: %s, %.2fM params (%" PRId64 "), %lld bytes, vocab %d (%s, last merge count %" PRId64
            "), seed %" PRIu64 "\n",
            prog, o->out, model_name, (double)s.n_params / 1e6, s.n_params, bytes, (int)v->n, tok_info,
            v->min_merge_count, o->seed);
done:
    free(tmp);
    free(s.f);
    free(s.enc);
    gguf_writer_destroy(&w);
    vocab_destroy(&v);
    free(text);
    return rc;
}

int main(int argc, char **argv) {
    options o;
    int rc = parse_args(argc, argv, &o);
    if (rc)
        return rc;
    rc = run(&o);
    if (rc < 0) {
        fprintf(stderr, "%s: error: %s (%s)\n", prog, he_msg()[0] ? he_msg() : "failed", he_name(rc));
        return 1;
    }
    return 0;
}
