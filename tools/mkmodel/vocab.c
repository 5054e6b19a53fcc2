/* vocab: corpus -> word counts -> BPE training -> GGUF token tables (see vocab.h).
 *
 * Both kinds count unique pre-tokenized words first (an insertion-ordered map,
 * so every step is deterministic), hand them to bpetrain as symbol sequences and
 * lay the trained symbols out in the id order vocab.h documents. The last step
 * re-checks the invariant (n tokens, all distinct) so a layout bug can never
 * reach a GGUF file.
 */
#include "vocab.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bpetrain.h"
#include "herr.h"
#include "mkmap.h"

static const char *const BPE_SPECIALS[] = {"<|begin_of_text|>", "<|end_of_text|>", "<|im_start|>", "<|im_end|>"};
#define N_BPE_SPECIALS 4
#define N_SPM_FIXED 259 /* <unk> <s> </s> + 256 byte tokens */

void vocab_destroy(vocab_t **self_p) {
    if (!self_p || !*self_p)
        return;
    vocab_t *v = *self_p;
    if (v->tokens)
        for (int32_t i = 0; i < v->n; i++)
            free(v->tokens[i]);
    free(v->tokens);
    free(v->types);
    free(v->scores);
    if (v->merges)
        for (size_t i = 0; i < v->n_merges; i++)
            free(v->merges[i]);
    free(v->merges);
    free(v);
    *self_p = NULL;
}

static vocab_t *vocab_alloc(vocab_kind kind, int32_t n) {
    vocab_t *v = calloc(1, sizeof *v);
    if (!v)
        return NULL;
    v->kind = kind;
    v->n = n;
    v->tokens = calloc((size_t)n, sizeof *v->tokens);
    v->types = calloc((size_t)n, sizeof *v->types);
    if (kind == VOCAB_SPM)
        v->scores = calloc((size_t)n, sizeof *v->scores);
    if (!v->tokens || !v->types || (kind == VOCAB_SPM && !v->scores))
        vocab_destroy(&v);
    return v;
}

static char *dup_n(const char *s, size_t n) {
    char *d = malloc(n + 1);
    if (d) {
        memcpy(d, s, n);
        d[n] = '\0';
    }
    return d;
}

/* ---- GPT-2 byte-level encoding: each byte becomes one code point; printable
 * Latin-1 bytes map to themselves, the other 68 to U+0100.. in byte order. */

static uint32_t byte_cp(uint8_t b) {
    if ((b >= 0x21 && b <= 0x7E) || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE))
        return b;
    uint32_t k = 0; /* rank of b among the unprintable bytes */
    for (uint32_t c = 0; c < b; c++)
        if (!((c >= 0x21 && c <= 0x7E) || (c >= 0xA1 && c <= 0xAC) || (c >= 0xAE)))
            k++;
    return 0x100 + k;
}

/* Byte-encodes s[0..n) into a malloc'd NUL-terminated string (<= 2 bytes per input byte). */
static char *bpe_encode(const char *s, size_t n, const uint32_t *cp_of) {
    char *out = malloc(2 * n + 1);
    if (!out)
        return NULL;
    size_t o = 0;
    for (size_t i = 0; i < n; i++) {
        uint32_t c = cp_of[(uint8_t)s[i]];
        if (c < 0x80) {
            out[o++] = (char)c;
        } else {
            out[o++] = (char)(0xC0 | (c >> 6));
            out[o++] = (char)(0x80 | (c & 0x3F));
        }
    }
    out[o] = '\0';
    return out;
}

/* ---- word counting */

static int count_piece(const char *piece, size_t n, void *ctx) {
    int32_t *c = mkmap_put((mkmap_t *)ctx, piece, n, 0, NULL);
    if (!c)
        return he_set(HE_ENOMEM, "vocab: out of memory");
    if (*c < INT32_MAX)
        (*c)++;
    return 0;
}

/* Checks that the n tokens are distinct and non-empty. */
static int check_unique(const vocab_t *v) {
    mkmap_t *seen = mkmap_new();
    if (!seen)
        return he_set(HE_ENOMEM, "vocab: out of memory");
    int rc = 0;
    for (int32_t i = 0; i < v->n && rc == 0; i++) {
        bool created;
        size_t len = v->tokens[i] ? strlen(v->tokens[i]) : 0;
        if (len == 0) {
            rc = he_set(HE_EFORMAT, "vocab: token %d is empty", (int)i);
        } else if (!mkmap_put(seen, v->tokens[i], len, i, &created)) {
            rc = he_set(HE_ENOMEM, "vocab: out of memory");
        } else if (!created) {
            rc = he_set(HE_EFORMAT, "vocab: token %d (\"%s\") is a duplicate", (int)i, v->tokens[i]);
        }
    }
    mkmap_destroy(&seen);
    return rc;
}

static int build_bpe(pretok_mode mode, const char *text, size_t len, int32_t n_vocab, vocab_t **out) {
    int32_t n_learn = n_vocab - 256 - N_BPE_SPECIALS;
    if (n_learn < 0)
        return he_set(HE_EINVAL, "vocab: a byte-level BPE vocabulary needs at least %d tokens", 256 + N_BPE_SPECIALS);
    mkmap_t *words = mkmap_new();
    bpet_t *t = bpet_new();
    vocab_t *v = vocab_alloc(VOCAB_BPE, n_vocab);
    int32_t *syms = NULL;
    int rc = 0;
    if (!words || !t || !v) {
        rc = he_set(HE_ENOMEM, "vocab: out of memory");
        goto done;
    }
    if ((rc = pretok_split(mode, text, len, count_piece, words)) != 0)
        goto done;
    for (int b = 0; b < 256; b++) {
        char c = (char)b;
        if ((rc = bpet_add_symbol(t, &c, 1)) < 0)
            goto done;
    }
    rc = 0;
    size_t max_len = 0;
    for (size_t i = 0; i < mkmap_count(words); i++) {
        size_t wl;
        mkmap_key(words, i, &wl);
        if (wl > max_len)
            max_len = wl;
    }
    syms = malloc((max_len + 1) * sizeof *syms);
    if (!syms) {
        rc = he_set(HE_ENOMEM, "vocab: out of memory");
        goto done;
    }
    for (size_t i = 0; i < mkmap_count(words); i++) {
        size_t wl;
        const char *w = mkmap_key(words, i, &wl);
        for (size_t k = 0; k < wl; k++)
            syms[k] = (uint8_t)w[k];
        if ((rc = bpet_add_word(t, syms, wl, mkmap_value(words, i))) != 0)
            goto done;
    }
    if ((rc = bpet_train(t, n_learn)) != 0)
        goto done;

    uint32_t cp_of[256];
    for (int b = 0; b < 256; b++)
        cp_of[b] = byte_cp((uint8_t)b);
    int32_t n_sym = bpet_n_symbols(t);
    if (n_sym != n_vocab - N_BPE_SPECIALS) {
        rc = he_set(HE_EFORMAT, "vocab: trainer produced %d symbols, expected %d", (int)n_sym,
                    (int)(n_vocab - N_BPE_SPECIALS));
        goto done;
    }
    for (int32_t id = 0; id < n_sym; id++) {
        size_t sl;
        const char *s = bpet_symbol(t, id, &sl);
        v->tokens[id] = bpe_encode(s, sl, cp_of);
        v->types[id] = VOCAB_T_NORMAL;
        if (!v->tokens[id]) {
            rc = he_set(HE_ENOMEM, "vocab: out of memory");
            goto done;
        }
    }
    for (int k = 0; k < N_BPE_SPECIALS; k++) {
        v->tokens[n_sym + k] = dup_n(BPE_SPECIALS[k], strlen(BPE_SPECIALS[k]));
        v->types[n_sym + k] = VOCAB_T_CONTROL;
        if (!v->tokens[n_sym + k]) {
            rc = he_set(HE_ENOMEM, "vocab: out of memory");
            goto done;
        }
    }
    v->bos = n_sym;
    v->eos = n_sym + 1;
    v->unk = -1;
    v->n_merges = bpet_n_merges(t);
    v->merges = calloc(v->n_merges ? v->n_merges : 1, sizeof *v->merges);
    if (!v->merges) {
        rc = he_set(HE_ENOMEM, "vocab: out of memory");
        goto done;
    }
    for (size_t i = 0; i < v->n_merges; i++) {
        int32_t a, b, r;
        bpet_merge(t, i, &a, &b, &r);
        size_t la = strlen(v->tokens[a]), lb = strlen(v->tokens[b]);
        char *m = malloc(la + lb + 2);
        if (!m) {
            rc = he_set(HE_ENOMEM, "vocab: out of memory");
            goto done;
        }
        memcpy(m, v->tokens[a], la);
        m[la] = ' ';
        memcpy(m + la + 1, v->tokens[b], lb + 1);
        v->merges[i] = m;
    }
    if (v->n_merges)
        v->min_merge_count = bpet_merge_count(t, v->n_merges - 1);
    rc = check_unique(v);
done:
    free(syms);
    bpet_destroy(&t);
    mkmap_destroy(&words);
    if (rc == 0)
        *out = v;
    else
        vocab_destroy(&v);
    return rc;
}

/* ---- SPM */

typedef struct {
    mkmap_t *chars; /* UTF-8 char -> index into freq */
    int64_t *freq;  /* (n) weighted count of each char */
    size_t cap;
} char_count;

typedef struct {
    uint32_t key_idx; /* entry in the chars map */
    int64_t freq;
} char_rank;

static int cmp_char_rank(const void *x, const void *y) {
    const char_rank *a = x, *b = y;
    if (a->freq != b->freq)
        return a->freq > b->freq ? -1 : 1;
    return a->key_idx < b->key_idx ? -1 : (a->key_idx > b->key_idx);
}

/* Counts every line's SentencePiece words of text[0..len) into words. */
static int spm_count_words(const char *text, size_t len, mkmap_t *words) {
    int rc;
    for (size_t b = 0; b < len;) {
        const char *nl = memchr(text + b, '\n', len - b);
        size_t e = nl ? (size_t)(nl - text) : len;
        size_t le = e;
        if (le > b && text[le - 1] == '\r')
            le--;
        if (le > b && (rc = pretok_split_spm(text + b, le - b, count_piece, words)) != 0)
            return rc;
        b = e + 1;
    }
    return 0;
}

/* Fills chars (UTF-8 char -> index) and *cfreq_p (index -> weighted count,
 * malloc'd, freed by the caller also on failure) from words. */
static int spm_count_chars(mkmap_t *words, mkmap_t *chars, int64_t **cfreq_p) {
    size_t cap = 0;
    for (size_t i = 0; i < mkmap_count(words); i++) {
        size_t wl;
        const char *w = mkmap_key(words, i, &wl);
        int64_t f = mkmap_value(words, i);
        for (size_t k = 0; k < wl;) {
            uint32_t cp;
            size_t cl = pretok_utf8(w + k, wl - k, &cp);
            int32_t *ci = mkmap_put(chars, w + k, cl, (int32_t)mkmap_count(chars), NULL);
            if (!ci)
                return he_set(HE_ENOMEM, "vocab: out of memory");
            if ((size_t)*ci >= cap) {
                size_t nc = cap ? cap * 2 : 256;
                int64_t *nf = realloc(*cfreq_p, nc * sizeof *nf);
                if (!nf)
                    return he_set(HE_ENOMEM, "vocab: out of memory");
                memset(nf + cap, 0, (nc - cap) * sizeof *nf);
                *cfreq_p = nf;
                cap = nc;
            }
            (*cfreq_p)[*ci] += f;
            k += cl;
        }
    }
    return 0;
}

/* Alphabet: the most frequent chars seen at least twice, at most half of
 * n_avail, become the trainer's first symbols. alpha_id (n_chars + 1, from
 * the caller) gets chars entry -> symbol id or -1; *n_alpha their count. */
static int spm_alphabet(mkmap_t *chars, const int64_t *cfreq, bpet_t *t, int32_t n_avail, int32_t *alpha_id,
                        int32_t *n_alpha) {
    size_t n_chars = mkmap_count(chars);
    char_rank *rank = malloc((n_chars + 1) * sizeof *rank);
    if (!rank)
        return he_set(HE_ENOMEM, "vocab: out of memory");
    for (size_t i = 0; i < n_chars; i++) {
        rank[i] = (char_rank){(uint32_t)i, cfreq[i]};
        alpha_id[i] = -1;
    }
    qsort(rank, n_chars, sizeof *rank, cmp_char_rank);
    int rc = 0;
    *n_alpha = 0;
    for (size_t i = 0; i < n_chars && *n_alpha < n_avail / 2 && rank[i].freq >= 2; i++) {
        size_t cl;
        const char *c = mkmap_key(chars, rank[i].key_idx, &cl);
        if ((rc = bpet_add_symbol(t, c, cl)) < 0)
            break;
        alpha_id[rank[i].key_idx] = rc;
        (*n_alpha)++;
        rc = 0;
    }
    free(rank);
    return rc;
}

/* Training words: the runs of alphabet chars of each word (the other chars
 * will fall back to bytes), with the word's count. */
static int spm_add_words(mkmap_t *words, mkmap_t *chars, const int32_t *alpha_id, bpet_t *t) {
    size_t max_len = 0;
    for (size_t i = 0; i < mkmap_count(words); i++) {
        size_t wl;
        mkmap_key(words, i, &wl);
        if (wl > max_len)
            max_len = wl;
    }
    int32_t *syms = malloc((max_len + 1) * sizeof *syms);
    if (!syms)
        return he_set(HE_ENOMEM, "vocab: out of memory");
    int rc = 0;
    for (size_t i = 0; i < mkmap_count(words) && !rc; i++) {
        size_t wl, n = 0;
        const char *w = mkmap_key(words, i, &wl);
        for (size_t k = 0; k <= wl;) {
            int32_t id = -1;
            size_t cl = 1;
            if (k < wl) {
                uint32_t cp;
                cl = pretok_utf8(w + k, wl - k, &cp);
                id = alpha_id[*mkmap_get(chars, w + k, cl)];
            }
            if (id >= 0) {
                syms[n++] = id;
            } else {
                if ((rc = bpet_add_word(t, syms, n, mkmap_value(words, i))) != 0)
                    break;
                n = 0;
            }
            k += cl;
        }
    }
    free(syms);
    return rc;
}

/* Lays out v: fixed tokens (<unk>, <s>, </s>, 256 byte tokens), the learned
 * pieces, then the alphabet, scored by position. */
static int spm_layout(vocab_t *v, bpet_t *t, int32_t n_alpha, int32_t n_avail, int32_t n_vocab) {
    static const char *const fixed[] = {"<unk>", "<s>", "</s>"};
    for (int k = 0; k < 3; k++) {
        v->tokens[k] = dup_n(fixed[k], strlen(fixed[k]));
        v->types[k] = k == 0 ? VOCAB_T_UNKNOWN : VOCAB_T_CONTROL;
    }
    for (int b = 0; b < 256; b++) {
        char name[8];
        snprintf(name, sizeof name, "<0x%02X>", b);
        v->tokens[3 + b] = dup_n(name, strlen(name));
        v->types[3 + b] = VOCAB_T_BYTE;
    }
    int32_t pos = N_SPM_FIXED;
    for (int32_t id = n_alpha; id < n_avail; id++, pos++) {
        size_t sl;
        const char *s = bpet_symbol(t, id, &sl);
        v->tokens[pos] = dup_n(s, sl);
        v->types[pos] = VOCAB_T_NORMAL;
        v->scores[pos] = -(float)(pos - N_SPM_FIXED);
    }
    for (int32_t id = 0; id < n_alpha; id++, pos++) {
        size_t sl;
        const char *s = bpet_symbol(t, id, &sl);
        v->tokens[pos] = dup_n(s, sl);
        v->types[pos] = VOCAB_T_NORMAL;
        v->scores[pos] = -(float)(pos - N_SPM_FIXED);
    }
    for (int32_t i = 0; i < n_vocab; i++) {
        if (!v->tokens[i])
            return he_set(HE_ENOMEM, "vocab: out of memory");
    }
    v->unk = 0;
    v->bos = 1;
    v->eos = 2;
    if (bpet_n_merges(t))
        v->min_merge_count = bpet_merge_count(t, bpet_n_merges(t) - 1);
    return 0;
}

static int build_spm(const char *text, size_t len, int32_t n_vocab, vocab_t **out) {
    int32_t n_avail = n_vocab - N_SPM_FIXED;
    if (n_avail < 2)
        return he_set(HE_EINVAL, "vocab: an SPM vocabulary needs at least %d tokens", N_SPM_FIXED + 2);
    mkmap_t *words = mkmap_new();
    mkmap_t *chars = mkmap_new();
    bpet_t *t = bpet_new();
    vocab_t *v = vocab_alloc(VOCAB_SPM, n_vocab);
    int64_t *cfreq = NULL;
    int32_t *alpha_id = NULL; /* chars map entry -> trainer symbol id, or -1 */
    int32_t n_alpha = 0;
    int rc = 0;
    if (!words || !chars || !t || !v) {
        rc = he_set(HE_ENOMEM, "vocab: out of memory");
        goto done;
    }
    if ((rc = spm_count_words(text, len, words)) != 0 || (rc = spm_count_chars(words, chars, &cfreq)) != 0)
        goto done;
    alpha_id = malloc((mkmap_count(chars) + 1) * sizeof *alpha_id);
    if (!alpha_id) {
        rc = he_set(HE_ENOMEM, "vocab: out of memory");
        goto done;
    }
    if ((rc = spm_alphabet(chars, cfreq, t, n_avail, alpha_id, &n_alpha)) != 0 ||
        (rc = spm_add_words(words, chars, alpha_id, t)) != 0 || (rc = bpet_train(t, n_avail - n_alpha)) != 0)
        goto done;
    if (bpet_n_symbols(t) != n_avail) {
        rc = he_set(HE_EFORMAT, "vocab: trainer produced %d symbols, expected %d", (int)bpet_n_symbols(t),
                    (int)n_avail);
        goto done;
    }
    if ((rc = spm_layout(v, t, n_alpha, n_avail, n_vocab)) == 0)
        rc = check_unique(v);
done:
    free(alpha_id);
    free(cfreq);
    bpet_destroy(&t);
    mkmap_destroy(&chars);
    mkmap_destroy(&words);
    if (rc == 0)
        *out = v;
    else
        vocab_destroy(&v);
    return rc;
}

int vocab_build(vocab_kind kind, pretok_mode mode, const char *text, size_t len, int32_t n_vocab,
                vocab_t **out) {
    *out = NULL;
    if (n_vocab <= 0)
        return he_set(HE_EINVAL, "vocab: bad vocabulary size %d", (int)n_vocab);
    return kind == VOCAB_SPM ? build_spm(text, len, n_vocab, out) : build_bpe(mode, text, len, n_vocab, out);
}
