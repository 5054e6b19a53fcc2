/* tok_load: builds a tok_t from a GGUF model's tokenizer metadata
 * (tok_new_from_gguf) and frees it (tok_destroy). Reads the vocabulary,
 * scores, token types, BPE merges and pre-tokenizer name, then the special
 * ids, with llama.cpp's auto-detection of control-looking tokens and its
 * end-of-generation set, and fills the caches tok_encode/tok_decode read:
 * the special-token list (longest text first), the byte tables and the
 * decoded piece of every token.
 *
 * Invariants: on success the struct satisfies tok_impl.h's invariants; on any
 * failure everything is freed, NULL is returned and he_msg() says which key
 * was bad. Work: linear in the vocabulary and merge list (plus a sort of the
 * special tokens).
 */
#include "tok_impl.h"

#include <limits.h>
#include <stdio.h>

#include "unicode_tab.h"

/* ------------------------------------------------------------------ load */

void tok_destroy(tok_t **self_p) {
    if (!self_p || !*self_p) return;
    tok_t *t = *self_p;
    tok_wcache_free(t);
    free(t->blob);
    free(t->off);
    free(t->len);
    free(t->score);
    free(t->attr);
    free(t->vocab.slot);
    free(t->merge_blob);
    free(t->merges.slot);
    free(t->piece_blob);
    free(t->piece_off);
    free(t->piece_len);
    free(t->special);
    free(t->eog);
    free(t);
    *self_p = NULL;
}

static int32_t find_text(const tok_t *t, const char *s) {
    return smap_get(&t->vocab, s, strlen(s));
}

/* reads an optional token-id key; ids out of range keep *id (llama.cpp warns) */
static void read_id(const gguf_t *g, const tok_t *t, const char *key, int32_t *id) {
    uint32_t v;
    if (gguf_get_u32(g, key, &v) && v < (uint32_t)t->n_vocab) *id = (int32_t)v;
}

/* If *id is unset, the lowest id whose text is in names becomes it and is
 * marked CONTROL (llama.cpp's "control-looking token" auto-detection). */
static void detect(tok_t *t, int32_t *id, const char *const *names) {
    if (*id >= 0) return;
    int32_t best = -1;
    for (int k = 0; names[k]; k++) {
        int32_t x = find_text(t, names[k]);
        if (x >= 0 && (best < 0 || x < best)) best = x;
    }
    if (best >= 0) {
        *id = best;
        t->attr[best] |= ATTR_CONTROL;
    }
}

typedef struct {
    const char *name;
    pass_kind passes[MAX_PASSES];
    int n_passes;
    bool llama3; /* ignore_merges and add_bos by default */
} pre_def;

static const pre_def PRE_DEFS[] = {
    {"default", {PASS_PUNCT_RUN, PASS_GPT2, PASS_NUM_RUN, PASS_DIGIT3}, 4, false},
    {"llama3", {PASS_LLAMA3}, 1, true},
    {"llama-v3", {PASS_LLAMA3}, 1, true},
    {"llama-bpe", {PASS_LLAMA3}, 1, true},
    {"falcon3", {PASS_LLAMA3}, 1, true},
    {"pixtral", {PASS_LLAMA3}, 1, true},
    {"dbrx", {PASS_LLAMA3}, 1, false},
    {"smaug-bpe", {PASS_LLAMA3}, 1, false},
    {"gpt-2", {PASS_GPT2}, 1, false},
    {"gpt2", {PASS_GPT2}, 1, false},
    {"phi-2", {PASS_GPT2}, 1, false},
    {"mpt", {PASS_GPT2}, 1, false},
    {"olmo", {PASS_GPT2}, 1, false},
    {"jais", {PASS_GPT2}, 1, false},
    {"qwen2", {PASS_QWEN2}, 1, false},
    {"deepseek-r1-qwen", {PASS_QWEN2}, 1, false},
    {"stablelm2", {PASS_QWEN2}, 1, false},
    {"megrez", {PASS_QWEN2}, 1, false},
    {"smollm", {PASS_NUM_EACH, PASS_GPT2}, 2, false},
    {"starcoder", {PASS_NUM_EACH, PASS_GPT2}, 2, false},
    {"refact", {PASS_NUM_EACH, PASS_GPT2}, 2, false},
    {"command-r", {PASS_NUM_EACH, PASS_GPT2}, 2, false},
    {"codeshell", {PASS_NUM_EACH, PASS_GPT2}, 2, false},
    {"exaone", {PASS_NUM_EACH, PASS_GPT2}, 2, false},
};

static const char *const EOT_NAMES[] = {"<|eot_id|>", "<|im_end|>", "<|end|>", "<end_of_turn>",
                                        "<|endoftext|>", "<|end_of_text|>", "<EOT>", "_<EOT>",
                                        "[EOT]", "<\xef\xbd\x9c" "end\xe2\x96\x81" "of\xe2\x96\x81" "sentence\xef\xbd\x9c>",
                                        "<end_of_utterance>", NULL};
static const char *const EOM_NAMES[] = {"<|eom_id|>", NULL};
static const char *const FIM_PRE_NAMES[] = {"<|fim_prefix|>", "<fim-prefix>", "<fim_prefix>",
                                            "<\xef\xbd\x9c" "fim\xe2\x96\x81" "begin\xef\xbd\x9c>",
                                            "<PRE>", "\xe2\x96\x81<PRE>", "<|code_prefix|>",
                                            "<|prefix|>", NULL};
static const char *const FIM_SUF_NAMES[] = {"<|fim_suffix|>", "<fim-suffix>", "<fim_suffix>",
                                            "<\xef\xbd\x9c" "fim\xe2\x96\x81" "hole\xef\xbd\x9c>",
                                            "<SUF>", "\xe2\x96\x81<SUF>", "<|code_suffix|>",
                                            "<|suffix|>", NULL};
static const char *const FIM_MID_NAMES[] = {"<|fim_middle|>", "<fim-middle>", "<fim_middle>",
                                            "<\xef\xbd\x9c" "fim\xe2\x96\x81" "end\xef\xbd\x9c>",
                                            "<MID>", "\xe2\x96\x81<MID>", "<|code_middle|>",
                                            "<|middle|>", NULL};
static const char *const FIM_PAD_NAMES[] = {"<|fim_pad|>", "<fim-pad>", "<fim_pad>", "<PAD>",
                                            "[PAD]", NULL};
static const char *const FIM_REP_NAMES[] = {"<|fim_repo|>", "<|repo_name|>", "<fim-repo>",
                                            "<REPO>", "<reponame>", NULL};
static const char *const FIM_SEP_NAMES[] = {"<|file_sep|>", NULL};
static const char *const EOG_NAMES[] = {
    "<|eot_id|>", "<|im_end|>", "<|end|>", "<|return|>", "<|call|>", "<|flush|>", "<|calls|>",
    "<end_of_turn>", "<|endoftext|>", "</s>", "<|eom_id|>", "<EOT>", "_<EOT>", "[EOT]", "[EOS]",
    "<|end_of_text|>", "<end_of_utterance>", "<eos>", "<turn|>", "<|tool_response>",
    "<\xef\xbd\x9c" "end\xe2\x96\x81" "of\xe2\x96\x81" "sentence\xef\xbd\x9c>", "[e~[", NULL};

/* Sets he_msg() to "tokenizer: msg: key" and returns code (the caller frees). */
static int fail(int code, const char *msg, const char *key) {
    he_set(code, "tokenizer: %s%s%s", msg, key ? ": " : "", key ? key : "");
    return code;
}

/* Decodes id's text into the piece blob (llama.cpp's token_to_piece with
 * special = true). */
static int build_piece(tok_t *t, int32_t id, bbuf *pb) {
    const char *s = t->blob + t->off[id];
    size_t n = t->len[id];
    uint16_t at = t->attr[id];
    t->piece_off[id] = (uint32_t)pb->n;
    if (at & (ATTR_UNKNOWN | ATTR_CONTROL | ATTR_USER_DEFINED)) {
        if (bbuf_put(pb, s, n)) return HE_ENOMEM;
    } else if (at & ATTR_NORMAL) {
        if (t->kind == TOK_KIND_SPM) {
            for (size_t i = 0; i < n;) {
                if (i + 3 <= n && memcmp(s + i, "\xe2\x96\x81", 3) == 0) {
                    if (bbuf_put(pb, " ", 1)) return HE_ENOMEM;
                    i += 3;
                } else {
                    if (bbuf_put(pb, s + i, 1)) return HE_ENOMEM;
                    i++;
                }
            }
        } else {
            for (size_t pos = 0; pos < n;) {
                uint32_t c = utf8_next((const uint8_t *)s, n, &pos);
                if (c < 0x144 && t->u2b[c] >= 0) {
                    char b = (char)t->u2b[c];
                    if (bbuf_put(pb, &b, 1)) return HE_ENOMEM;
                } else { /* llama.cpp: "[UNK_BYTE_0x<hex of the char>" + text + "]" */
                    uint8_t u[4];
                    int k = utf8_put(c, u);
                    char hex[16];
                    if (bbuf_put(pb, "[UNK_BYTE_0x", 12)) return HE_ENOMEM;
                    for (int j = 0; j < k; j++) {
                        static const char hx[] = "0123456789abcdef";
                        hex[2 * j] = hx[u[j] >> 4];
                        hex[2 * j + 1] = hx[u[j] & 15];
                    }
                    if (bbuf_put(pb, hex, (size_t)(2 * k)) || bbuf_put(pb, s, n) || bbuf_put(pb, "]", 1))
                        return HE_ENOMEM;
                }
            }
        }
    } else if (at & ATTR_BYTE) {
        if (n >= 5) {
            char hex[3] = {s[3], s[4], 0};
            char b = (char)strtol(hex, NULL, 16);
            if (bbuf_put(pb, &b, 1)) return HE_ENOMEM;
        }
    }
    size_t plen = pb->n - t->piece_off[id];
    if (pb->n > UINT32_MAX) return he_set(HE_ERANGE, "tokenizer: vocabulary too large");
    t->piece_len[id] = (uint32_t)plen;
    return 0;
}

/* Sorts special-token ids: longest text first, then lowest id (a stable,
 * deterministic order; llama.cpp uses std::sort by length). */
static void sort_special(const tok_t *t, int32_t *v, int32_t n) {
    if (n < 2) return;
    int32_t *tmp = malloc((size_t)n * sizeof *tmp);
    if (!tmp) { /* fall back to an in-place insertion sort */
        for (int32_t i = 1; i < n; i++) {
            int32_t x = v[i], j = i - 1;
            while (j >= 0 && (t->len[v[j]] < t->len[x] || (t->len[v[j]] == t->len[x] && v[j] > x))) {
                v[j + 1] = v[j];
                j--;
            }
            v[j + 1] = x;
        }
        return;
    }
    for (int32_t w = 1; w < n; w *= 2) {
        for (int32_t lo = 0; lo < n; lo += 2 * w) {
            int32_t mid = lo + w < n ? lo + w : n, hi = lo + 2 * w < n ? lo + 2 * w : n;
            int32_t i = lo, j = mid, k = lo;
            while (i < mid && j < hi) {
                int32_t a = v[i], b = v[j];
                bool take_b = t->len[b] > t->len[a] || (t->len[b] == t->len[a] && b < a);
                tmp[k++] = take_b ? v[j++] : v[i++];
            }
            while (i < mid) tmp[k++] = v[i++];
            while (j < hi) tmp[k++] = v[j++];
        }
        memcpy(v, tmp, (size_t)n * sizeof *v);
    }
    free(tmp);
}

/* Reads tokenizer.ggml.model into t->kind. */
static int load_kind(tok_t *t, const gguf_t *g) {
    const char *s;
    size_t sl;
    if (!gguf_get_str(g, "tokenizer.ggml.model", &s, &sl))
        return fail(HE_EFORMAT, "missing or non-string key", "tokenizer.ggml.model");
    if (sl == 5 && memcmp(s, "llama", 5) == 0) {
        t->kind = TOK_KIND_SPM;
    } else if (sl == 4 && memcmp(s, "gpt2", 4) == 0) {
        t->kind = TOK_KIND_BPE;
    } else {
        return he_set(HE_EUNSUPPORTED,
                      "tokenizer: unsupported tokenizer.ggml.model '%.*s' (want llama or gpt2)",
                      (int)(sl > 64 ? 64 : sl), s);
    }
    return 0;
}

/* Reads tokenizer.ggml.tokens: allocates the per-token arrays, copies every
 * text into t->blob and builds the text -> id map (a duplicate text is an
 * error). */
static int load_tokens(tok_t *t, const gguf_t *g) {
    gguf_vtype et;
    uint64_t n;
    const void *data;
    if (!gguf_get_arr(g, "tokenizer.ggml.tokens", &et, &n, &data) || et != GGUF_T_STRING)
        return fail(HE_EFORMAT, "missing or non-string-array key", "tokenizer.ggml.tokens");
    if (n == 0 || n > (uint64_t)INT32_MAX / 2)
        return fail(HE_EFORMAT, "bad vocabulary size in", "tokenizer.ggml.tokens");
    t->n_vocab = (int32_t)n;
    t->off = malloc(n * sizeof *t->off);
    t->len = malloc(n * sizeof *t->len);
    t->score = calloc(n, sizeof *t->score);
    t->attr = malloc(n * sizeof *t->attr);
    t->eog = calloc(n, 1);
    t->piece_off = malloc(n * sizeof *t->piece_off);
    t->piece_len = malloc(n * sizeof *t->piece_len);
    if (!t->off || !t->len || !t->score || !t->attr || !t->eog || !t->piece_off || !t->piece_len)
        return fail(HE_ENOMEM, "out of memory", NULL);
    bbuf blob = {0};
    for (uint64_t i = 0; i < n; i++) {
        const char *ts;
        size_t tl;
        if (!gguf_get_arr_str(g, "tokenizer.ggml.tokens", i, &ts, &tl)) {
            free(blob.p);
            return fail(HE_EFORMAT, "unreadable element of", "tokenizer.ggml.tokens");
        }
        char tmp[32];
        if (tl == 0) { /* llama.cpp renames empty tokens */
            tl = (size_t)snprintf(tmp, sizeof tmp, "[EMPTY_%u]", (unsigned)i);
            ts = tmp;
        }
        if (blob.n + tl > UINT32_MAX) {
            free(blob.p);
            return fail(HE_EFORMAT, "vocabulary text too large in", "tokenizer.ggml.tokens");
        }
        t->off[i] = (uint32_t)blob.n;
        t->len[i] = (uint32_t)tl;
        if (bbuf_put(&blob, ts, tl)) {
            free(blob.p);
            return fail(HE_ENOMEM, "out of memory", NULL);
        }
    }
    t->blob = blob.p ? blob.p : malloc(1);
    if (!t->blob || smap_init(&t->vocab, n, t->blob)) return fail(HE_ENOMEM, "out of memory", NULL);
    for (uint64_t i = 0; i < n; i++) {
        int32_t prev = smap_put(&t->vocab, t->off[i], t->len[i], (int32_t)i);
        if (prev != (int32_t)i)
            return he_set(HE_EFORMAT, "tokenizer: duplicate token '%.*s' (ids %d and %u)",
                          (int)(t->len[i] > 64 ? 64 : t->len[i]), t->blob + t->off[i], (int)prev,
                          (unsigned)i);
    }
    return 0;
}

/* Reads the optional tokenizer.ggml.scores and tokenizer.ggml.token_type
 * arrays into t->score and t->attr (every token NORMAL without types). */
static int load_scores_types(tok_t *t, const gguf_t *g) {
    gguf_vtype et;
    uint64_t n;
    const void *data;
    if (gguf_get_arr(g, "tokenizer.ggml.scores", &et, &n, &data)) {
        if ((et != GGUF_T_FLOAT32 && et != GGUF_T_INT32) || n < (uint64_t)t->n_vocab)
            return fail(HE_EFORMAT, "bad type or length of", "tokenizer.ggml.scores");
        for (int32_t i = 0; i < t->n_vocab; i++) {
            if (et == GGUF_T_FLOAT32) {
                memcpy(&t->score[i], (const char *)data + 4 * (size_t)i, 4);
            } else {
                int32_t v;
                memcpy(&v, (const char *)data + 4 * (size_t)i, 4);
                t->score[i] = (float)v;
            }
        }
    }
    const void *types = NULL;
    if (gguf_get_arr(g, "tokenizer.ggml.token_type", &et, &n, &data)) {
        if (et != GGUF_T_INT32 || n < (uint64_t)t->n_vocab)
            return fail(HE_EFORMAT, "bad type or length of", "tokenizer.ggml.token_type");
        types = data;
    }
    for (int32_t i = 0; i < t->n_vocab; i++) {
        int32_t ty = 1;
        if (types) memcpy(&ty, (const char *)types + 4 * (size_t)i, 4);
        switch (ty) {
        case 1: t->attr[i] = ATTR_NORMAL; break;
        case 2: t->attr[i] = ATTR_UNKNOWN; break;
        case 3: t->attr[i] = ATTR_CONTROL; break;
        case 4: t->attr[i] = ATTR_USER_DEFINED; break;
        case 5: t->attr[i] = ATTR_UNUSED; break;
        case 6: t->attr[i] = ATTR_BYTE; break;
        default: t->attr[i] = 0; break;
        }
    }
    return 0;
}

/* BPE: reads tokenizer.ggml.merges into t->merge_blob and the "a b" -> rank
 * map (first occurrence wins). */
static int load_merges(tok_t *t, const gguf_t *g) {
    gguf_vtype et;
    uint64_t n;
    const void *data;
    if (!gguf_get_arr(g, "tokenizer.ggml.merges", &et, &n, &data) || et != GGUF_T_STRING)
        return fail(HE_EFORMAT, "missing or non-string-array key", "tokenizer.ggml.merges");
    if (n > (uint64_t)INT32_MAX) return fail(HE_EFORMAT, "too many merges in", "tokenizer.ggml.merges");
    bbuf mb = {0};
    uint32_t *moff = malloc((n ? n : 1) * sizeof *moff), *mlen = malloc((n ? n : 1) * sizeof *mlen);
    if (!moff || !mlen) {
        free(moff);
        free(mlen);
        return fail(HE_ENOMEM, "out of memory", NULL);
    }
    int rc = 0;
    for (uint64_t i = 0; i < n && !rc; i++) {
        const char *ms;
        size_t ml;
        if (!gguf_get_arr_str(g, "tokenizer.ggml.merges", i, &ms, &ml))
            rc = HE_EFORMAT;
        else if (mb.n + ml > UINT32_MAX)
            rc = HE_EFORMAT;
        else {
            moff[i] = (uint32_t)mb.n;
            mlen[i] = (uint32_t)ml;
            rc = bbuf_put(&mb, ms, ml);
        }
    }
    t->merge_blob = mb.p ? mb.p : malloc(1);
    if (!rc && (!t->merge_blob || smap_init(&t->merges, n, t->merge_blob))) rc = HE_ENOMEM;
    for (uint64_t i = 0; i < n && !rc; i++) smap_put(&t->merges, moff[i], mlen[i], (int32_t)i);
    free(moff);
    free(mlen);
    if (rc) return fail(rc, rc == HE_ENOMEM ? "out of memory" : "bad element in", "tokenizer.ggml.merges");
    return 0;
}

/* Sets the per-kind defaults: for BPE the merges and the pre-tokenizer
 * passes named by tokenizer.ggml.pre, then tokenizer.ggml.add_space_prefix. */
static int load_kind_defaults(tok_t *t, const gguf_t *g) {
    if (t->kind == TOK_KIND_BPE) {
        int rc = load_merges(t, g);
        if (rc) return rc;
        const pre_def *pd = &PRE_DEFS[0]; /* llama.cpp: a missing pre means "default" */
        const char *s;
        size_t sl;
        if (gguf_get_str(g, "tokenizer.ggml.pre", &s, &sl)) {
            pd = NULL;
            for (size_t k = 0; k < sizeof PRE_DEFS / sizeof PRE_DEFS[0]; k++)
                if (strlen(PRE_DEFS[k].name) == sl && memcmp(PRE_DEFS[k].name, s, sl) == 0)
                    pd = &PRE_DEFS[k];
            if (!pd)
                return he_set(HE_EUNSUPPORTED,
                              "tokenizer: unsupported pre-tokenizer tokenizer.ggml.pre = '%.*s'",
                              (int)(sl > 64 ? 64 : sl), s);
        }
        memcpy(t->passes, pd->passes, sizeof t->passes);
        t->n_passes = pd->n_passes;
        t->ignore_merges = pd->llama3;
        t->add_bos = pd->llama3;
        t->add_space_prefix = false;
        t->bos = t->eos = 11; /* llama.cpp's BPE defaults */
        t->unk = -1;
    } else {
        t->add_bos = true;
        t->add_space_prefix = true;
        t->bos = 1;
        t->eos = 2;
        t->unk = 0;
    }
    bool bv;
    if (gguf_get_bool(g, "tokenizer.ggml.add_space_prefix", &bv)) t->add_space_prefix = bv;
    return 0;
}

/* Marks the end-of-generation set from the ids found (< 0: none) and the
 * known EOG texts, with llama.cpp's exceptions for o200k_harmony,
 * solar-open and gemma4. */
static void mark_eog(tok_t *t, int32_t eot, int32_t eom, int32_t fpad, int32_t frep, int32_t fsep) {
    if (fpad >= 0) t->eog[fpad] = 1;
    if (frep >= 0) t->eog[frep] = 1;
    if (fsep >= 0) t->eog[fsep] = 1;
    for (int k = 0; EOG_NAMES[k]; k++) {
        int32_t id = find_text(t, EOG_NAMES[k]);
        if (id >= 0) {
            t->eog[id] = 1;
            t->attr[id] |= ATTR_CONTROL;
        }
    }
    static const char *const always_render[] = {"<|channel|>", "<|message|>", "<|start|>", "<|constrain|>", NULL};
    for (int k = 0; always_render[k]; k++) {
        int32_t id = find_text(t, always_render[k]);
        if (id >= 0) t->attr[id] = ATTR_USER_DEFINED;
    }
    if (t->eos >= 0) t->eog[t->eos] = 1;
    if (eot >= 0) t->eog[eot] = 1;
    if (eom >= 0) t->eog[eom] = 1;
    /* o200k_harmony / solar-open: <|end|> is not EOG when <|return|>+<|call|>
     * or <|calls|>+<|flush|> are */
    int32_t ret = find_text(t, "<|return|>"), call = find_text(t, "<|call|>"),
            calls = find_text(t, "<|calls|>"), flush = find_text(t, "<|flush|>"),
            end = find_text(t, "<|end|>");
    bool has_call = (call >= 0 && t->eog[call]) || (calls >= 0 && t->eog[calls]);
    if (end >= 0 && t->eog[end] && has_call &&
        ((ret >= 0 && t->eog[ret]) || (flush >= 0 && t->eog[flush]))) {
        t->eog[end] = 0;
        t->attr[end] = ATTR_USER_DEFINED;
    }
    int32_t tr = find_text(t, "<|tool_response>"), es = find_text(t, "</s>");
    if (tr >= 0 && t->eog[tr] && es >= 0 && t->eog[es]) { /* gemma4 */
        t->eog[es] = 0;
        t->attr[es] = ATTR_NORMAL;
    }
}

/* Reads the special ids (BOS, EOS, EOT, EOM, UNK, FIM), add_bos_token,
 * auto-detects the unset ones by text and fills the end-of-generation set. */
static void load_special_ids(tok_t *t, const gguf_t *g) {
    if (t->bos >= t->n_vocab) t->bos = -1;
    if (t->eos >= t->n_vocab) t->eos = -1;
    if (t->unk >= t->n_vocab) t->unk = -1;
    int32_t eot = -1, eom = -1, fpre = -1, fsuf = -1, fmid = -1, fpad = -1, frep = -1, fsep = -1;
    read_id(g, t, "tokenizer.ggml.bos_token_id", &t->bos);
    read_id(g, t, "tokenizer.ggml.eos_token_id", &t->eos);
    read_id(g, t, "tokenizer.ggml.eot_token_id", &eot);
    read_id(g, t, "tokenizer.ggml.eom_token_id", &eom);
    read_id(g, t, "tokenizer.ggml.unknown_token_id", &t->unk);
    read_id(g, t, "tokenizer.ggml.fim_pre_token_id", &fpre);
    read_id(g, t, "tokenizer.ggml.fim_suf_token_id", &fsuf);
    read_id(g, t, "tokenizer.ggml.fim_mid_token_id", &fmid);
    read_id(g, t, "tokenizer.ggml.fim_pad_token_id", &fpad);
    read_id(g, t, "tokenizer.ggml.fim_rep_token_id", &frep);
    read_id(g, t, "tokenizer.ggml.fim_sep_token_id", &fsep);
    read_id(g, t, "tokenizer.ggml.prefix_token_id", &fpre);
    read_id(g, t, "tokenizer.ggml.suffix_token_id", &fsuf);
    read_id(g, t, "tokenizer.ggml.middle_token_id", &fmid);
    bool bv;
    if (gguf_get_bool(g, "tokenizer.ggml.add_bos_token", &bv)) t->add_bos = bv;

    detect(t, &eot, EOT_NAMES);
    detect(t, &eom, EOM_NAMES);
    detect(t, &fpre, FIM_PRE_NAMES);
    detect(t, &fsuf, FIM_SUF_NAMES);
    detect(t, &fmid, FIM_MID_NAMES);
    detect(t, &fpad, FIM_PAD_NAMES);
    detect(t, &frep, FIM_REP_NAMES);
    detect(t, &fsep, FIM_SEP_NAMES);
    mark_eog(t, eot, eom, fpad, frep, fsep);
}

/* Fills the caches encode/decode read: the special-token list (longest text
 * first), the GPT-2 byte <-> code point tables, the ASCII flags, the byte
 * fallback tokens and the decoded piece of every token. */
static int build_caches(tok_t *t) {
    t->special = malloc((size_t)t->n_vocab * sizeof *t->special);
    if (!t->special) return fail(HE_ENOMEM, "out of memory", NULL);
    for (int32_t i = 0; i < t->n_vocab; i++)
        if (t->attr[i] & (ATTR_CONTROL | ATTR_USER_DEFINED | ATTR_UNKNOWN)) t->special[t->n_special++] = i;
    sort_special(t, t->special, t->n_special);

    int nb = 0;
    for (int b = 0; b < 256; b++) {
        bool keep = (b >= 0x21 && b <= 0x7e) || (b >= 0xa1 && b <= 0xac) || (b >= 0xae);
        t->b2u[b] = (uint16_t)(keep ? b : 256 + nb++);
    }
    for (int c = 0; c < 0x144; c++) t->u2b[c] = -1;
    for (int b = 0; b < 256; b++) t->u2b[t->b2u[b]] = (int16_t)b;
    for (int c = 0; c < 128; c++) t->ascii_flags[c] = utab_flags((uint32_t)c);
    for (int b = 0; b < 256; b++) {
        char one = (char)b;
        t->byte_tok[b] = smap_get(&t->vocab, &one, 1);
        if (t->kind == TOK_KIND_SPM) {
            char hx[7];
            snprintf(hx, sizeof hx, "<0x%02X>", b);
            int32_t id = smap_get(&t->vocab, hx, 6);
            if (id >= 0) t->byte_tok[b] = id;
        }
    }
    bbuf pb = {0};
    for (int32_t i = 0; i < t->n_vocab; i++) {
        int rc = build_piece(t, i, &pb);
        if (rc) {
            free(pb.p);
            return fail(rc, "cannot build the piece cache", NULL);
        }
    }
    t->piece_blob = pb.p ? pb.p : malloc(1);
    if (!t->piece_blob) return fail(HE_ENOMEM, "out of memory", NULL);
    return 0;
}

/* Per-model attributes (llama.cpp sets these by general.name): Phi-3's
 * special tokens strip the spaces to their right. */
static void apply_model_quirks(tok_t *t, const gguf_t *g) {
    const char *s;
    size_t sl;
    if (!gguf_get_str(g, "general.name", &s, &sl)) return;
    char lower[256];
    size_t m = sl < sizeof lower - 1 ? sl : sizeof lower - 1;
    for (size_t i = 0; i < m; i++) lower[i] = (char)(s[i] >= 'A' && s[i] <= 'Z' ? s[i] + 32 : s[i]);
    lower[m] = 0;
    if (strstr(lower, "phi-3") || strstr(lower, "phi3")) {
        for (int32_t k = 0; k < t->n_special; k++) t->attr[t->special[k]] |= ATTR_RSTRIP;
        int32_t id = find_text(t, "</s>");
        if (id >= 0) t->attr[id] |= ATTR_RSTRIP;
        static const char *const no_strip[] = {"<unk>", "<s>", "<|endoftext|>", NULL};
        for (int k = 0; no_strip[k]; k++)
            if ((id = find_text(t, no_strip[k])) >= 0) t->attr[id] &= (uint16_t)~ATTR_RSTRIP;
    }
}

tok_t *tok_new_from_gguf(const gguf_t *g) {
    if (!g) {
        he_set(HE_EINVAL, "tok_new_from_gguf: NULL gguf");
        return NULL;
    }
    tok_t *t = calloc(1, sizeof *t);
    if (!t) {
        he_set(HE_ENOMEM, "tokenizer: out of memory");
        return NULL;
    }
    if (load_kind(t, g) || load_tokens(t, g) || load_scores_types(t, g) || load_kind_defaults(t, g)) {
        tok_destroy(&t);
        return NULL;
    }
    load_special_ids(t, g);
    if (build_caches(t)) {
        tok_destroy(&t);
        return NULL;
    }
    apply_model_quirks(t, g);
    tok_wcache_init(t);
    return t;
}
