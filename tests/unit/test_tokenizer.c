/* Unit tests for common/tokenizer.c (suite "tokenizer").
 *
 * Each test writes a small GGUF with the gguf writer: a byte-level BPE vocab
 * (256 byte tokens whose id is the byte value, a dozen merges and a few special
 * tokens) or a SentencePiece vocab with scores, then checks encodings derived
 * by hand in the comments, decode round trips and metadata handling. If
 * helium-mkmodel has been built, the last test also round-trips text through
 * its generated vocabulary.
 */
#include <criterion/criterion.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "gguf.h"
#include "herr.h"
#include "tok_impl.h" /* tok_wcache_free: a reference tokenizer without the word cache */
#include "tokenizer.h"

/* ------------------------------------------------------------------ helpers */

/* GPT-2 bytes_to_unicode: the UTF-8 text of the token that stands for byte b */
static void byte_text(int b, char out[4]) {
    int cp;
    if ((b >= 0x21 && b <= 0x7e) || (b >= 0xa1 && b <= 0xac) || b >= 0xae) {
        cp = b;
    } else {
        int n = 0;
        for (int x = 0; x < b; x++)
            if (!((x >= 0x21 && x <= 0x7e) || (x >= 0xa1 && x <= 0xac) || x >= 0xae)) n++;
        cp = 256 + n;
    }
    if (cp < 0x80) {
        out[0] = (char)cp;
        out[1] = 0;
    } else {
        out[0] = (char)(0xc0 | (cp >> 6));
        out[1] = (char)(0x80 | (cp & 0x3f));
        out[2] = 0;
    }
}

static tok_t *load(gguf_writer_t *w) {
    char path[] = "/tmp/helium_tok_XXXXXX";
    int fd = mkstemp(path);
    cr_assert(fd >= 0);
    close(fd);
    cr_assert_eq(gguf_writer_write(w, path), 0, "%s", he_msg());
    gguf_writer_destroy(&w);
    gguf_t *g = NULL;
    cr_assert_eq(gguf_open(path, &g), 0, "%s", he_msg());
    tok_t *t = tok_new_from_gguf(g);
    gguf_destroy(&g); /* the tokenizer must not keep pointers into the file */
    unlink(path);
    return t;
}

/* BPE ids: 0..255 bytes; then the merges' results in order, then specials */
enum {
    B_HE = 256, B_LL, B_HELL, B_HELLO, B_GW, B_OR, B_GWOR, B_GWORL, B_GWORLD, B_GG, B_EACUTE, B_12,
    B_EOT, B_IM_START, B_IM_END, B_TOOL, B_NVOCAB
};

static const char *const MERGES[] = {"h e", "l l", "he ll", "hell o", "\xc4\xa0 w", "o r", "\xc4\xa0w or",
                                     "\xc4\xa0wor l", "\xc4\xa0worl d", "\xc4\xa0 \xc4\xa0",
                                     "\xc3\x83 \xc2\xa9", "1 2"};

/* pre == NULL: no tokenizer.ggml.pre key. add_bos < 0: no add_bos key. */
static gguf_writer_t *bpe_writer(const char *pre, int add_bos) {
    static char bytes[256][4];
    const char *toks[B_NVOCAB];
    int32_t types[B_NVOCAB];
    for (int b = 0; b < 256; b++) {
        byte_text(b, bytes[b]);
        toks[b] = bytes[b];
        types[b] = 1;
    }
    static const char *const merged[] = {"he", "ll", "hell", "hello", "\xc4\xa0w", "or", "\xc4\xa0wor",
                                         "\xc4\xa0worl", "\xc4\xa0world", "\xc4\xa0\xc4\xa0",
                                         "\xc3\x83\xc2\xa9", "12"};
    for (int i = 0; i < 12; i++) {
        toks[256 + i] = merged[i];
        types[256 + i] = 1;
    }
    toks[B_EOT] = "<|endoftext|>";
    toks[B_IM_START] = "<|im_start|>";
    toks[B_IM_END] = "<|im_end|>";
    toks[B_TOOL] = "<tool>";
    types[B_EOT] = types[B_IM_START] = types[B_IM_END] = 3;
    types[B_TOOL] = 4;
    gguf_writer_t *w = gguf_writer_new();
    cr_assert_not_null(w);
    cr_assert_eq(gguf_writer_add_str(w, "general.architecture", "llama"), 0);
    cr_assert_eq(gguf_writer_add_str(w, "tokenizer.ggml.model", "gpt2"), 0);
    if (pre) cr_assert_eq(gguf_writer_add_str(w, "tokenizer.ggml.pre", pre), 0);
    cr_assert_eq(gguf_writer_add_arr_str(w, "tokenizer.ggml.tokens", toks, B_NVOCAB), 0);
    cr_assert_eq(gguf_writer_add_arr_i32(w, "tokenizer.ggml.token_type", types, B_NVOCAB), 0);
    cr_assert_eq(gguf_writer_add_arr_str(w, "tokenizer.ggml.merges", MERGES, 12), 0);
    cr_assert_eq(gguf_writer_add_u32(w, "tokenizer.ggml.bos_token_id", B_EOT), 0);
    cr_assert_eq(gguf_writer_add_u32(w, "tokenizer.ggml.eos_token_id", B_EOT), 0);
    if (add_bos >= 0) cr_assert_eq(gguf_writer_add_bool(w, "tokenizer.ggml.add_bos_token", add_bos), 0);
    return w;
}

static tok_t *bpe(const char *pre) {
    tok_t *t = load(bpe_writer(pre, -1));
    cr_assert_not_null(t, "%s", he_msg());
    return t;
}

/* encodes s and compares with want[0..n) */
static void expect(const tok_t *t, const char *s, bool add_bos, bool special, const int32_t *want, int n) {
    int32_t got[256];
    int k = tok_encode(t, s, strlen(s), add_bos, special, got, 256);
    cr_assert_eq(k, n, "'%s': %d tokens, want %d", s, k, n);
    for (int i = 0; i < n; i++) cr_assert_eq(got[i], want[i], "'%s': token %d is %d, want %d", s, i, got[i], want[i]);
}

#define EXPECT(t, s, bos, sp, ...)                                                     \
    do {                                                                               \
        const int32_t w_[] = {__VA_ARGS__};                                            \
        expect(t, s, bos, sp, w_, (int)(sizeof w_ / sizeof w_[0]));                    \
    } while (0)

/* decode(encode(s)) == prefix + s */
static void roundtrip(const tok_t *t, const char *s, size_t len, const char *prefix) {
    int n = tok_encode(t, s, len, false, false, NULL, 0);
    cr_assert_geq(n, 0, "%s", he_msg());
    int32_t *ids = malloc(sizeof *ids * (size_t)(n + 1));
    cr_assert_eq(tok_encode(t, s, len, false, false, ids, n), n);
    char *d = tok_decode(t, ids, n, false);
    cr_assert_not_null(d);
    size_t pl = strlen(prefix);
    cr_assert_eq(strlen(d), pl + len, "round trip of '%.*s' gave '%s'", (int)len, s, d);
    cr_assert(memcmp(d, prefix, pl) == 0 && memcmp(d + pl, s, len) == 0, "round trip of '%.*s' gave '%s'",
              (int)len, s, d);
    free(d);
    free(ids);
}

static const char *const SAMPLES[] = {
    "hello world", "Hello,   World!  ", "caf\xc3\xa9 na\xc3\xafve", "\xe6\x9d\xb1\xe4\xba\xac",
    "emoji \xf0\x9f\x98\x80\xf0\x9f\x8e\x89!", "  \t\n\n  leading and trailing  \n", "12345 3.14159 1212",
    "line1\r\nline2\n\n\nline3", "don't I'LL we've", "a  b   c    d", "$x+=<y>^~|`z`",
};

/* ---------------------------------------------------------------- BPE tests */

Test(tokenizer, bpe_metadata) {
    tok_t *t = bpe("gpt2");
    cr_assert_eq(tok_get_kind(t), TOK_KIND_BPE);
    cr_assert_eq(tok_n_vocab(t), B_NVOCAB);
    cr_assert_eq(tok_bos(t), B_EOT);
    cr_assert_eq(tok_eos(t), B_EOT);
    cr_assert_not(tok_add_bos_default(t)); /* gpt2-style vocabularies add no BOS by default */
    cr_assert(tok_is_eog(t, B_EOT));
    cr_assert(tok_is_eog(t, B_IM_END)); /* recognised by its text, like llama.cpp */
    cr_assert_not(tok_is_eog(t, B_HELLO));
    cr_assert_not(tok_is_eog(t, -1));
    cr_assert_not(tok_is_eog(t, B_NVOCAB));
    size_t len = 0;
    const char *s = tok_token_text(t, B_HELL, &len);
    cr_assert(s && len == 4 && memcmp(s, "hell", 4) == 0);
    cr_assert_null(tok_token_text(t, B_NVOCAB, &len));
    tok_destroy(&t);
    cr_assert_null(t);
    tok_destroy(&t); /* NULL is fine */

    tok_t *l3 = bpe("llama-bpe");
    cr_assert(tok_add_bos_default(l3)); /* llama.cpp's default for the llama3 family */
    tok_destroy(&l3);
    tok_t *nb = load(bpe_writer("llama-bpe", 0));
    cr_assert_not_null(nb);
    cr_assert_not(tok_add_bos_default(nb)); /* the metadata key wins */
    tok_destroy(&nb);
}

Test(tokenizer, bpe_merges_by_rank) {
    tok_t *t = bpe("gpt2");
    /* "hello": h e l l o -> (h e, rank 0) he l l o -> (l l, 1) he ll o -> (he ll, 2) -> (hell o, 3) */
    EXPECT(t, "hello", false, false, B_HELLO);
    /* " world": Ġ w o r l d -> Ġw (4), or (5), Ġwor (6), Ġworl (7), Ġworld (8) */
    EXPECT(t, "hello world", false, false, B_HELLO, B_GWORLD);
    EXPECT(t, "hell", false, false, B_HELL);
    /* no merge applies to "eh": byte tokens */
    EXPECT(t, "eh", false, false, 'e', 'h');
    /* "hellohello" is one \p{L}+ piece: merges apply across it */
    EXPECT(t, "hellohello", false, false, B_HELLO, B_HELLO);
    /* é = C3 A9 -> "Ã©" merged by rank 10 */
    EXPECT(t, "\xc3\xa9", false, false, B_EACUTE);
    /* add_bos */
    EXPECT(t, "hello", true, false, B_EOT, B_HELLO);
    EXPECT(t, "", true, false, B_EOT);
    cr_assert_eq(tok_encode(t, "", 0, false, false, NULL, 0), 0);
    tok_destroy(&t);
}

Test(tokenizer, bpe_whitespace) {
    tok_t *t = bpe("gpt2");
    /* "a   b" -> pieces "a", "  " (\s+(?!\S) leaves the last space), " b" */
    EXPECT(t, "a   b", false, false, 'a', B_GG, ' ', 'b');
    /* trailing run is taken whole: "a", "   " -> ĠĠ Ġ */
    EXPECT(t, "a   ", false, false, 'a', B_GG, ' ');
    /* "a\n\nb" -> "a", "\n" (\s+(?!\S) stops before the last \n), "\n" (\s+), "b" */
    EXPECT(t, "a\n\nb", false, false, 'a', '\n', '\n', 'b');
    tok_destroy(&t);
}

Test(tokenizer, bpe_pretokenizers_digits) {
    /* "1212": gpt2 keeps \p{N}+ whole; llama3 splits \p{N}{1,3}; qwen2 splits single digits;
     * smollm splits single digits too */
    tok_t *g = bpe("gpt2"), *l = bpe("llama-bpe"), *q = bpe("qwen2"), *s = bpe("smollm"), *d = bpe(NULL);
    EXPECT(g, "1212", false, false, B_12, B_12);
    EXPECT(l, "1212", false, false, B_12, '1', '2');
    EXPECT(q, "1212", false, false, '1', '2', '1', '2');
    EXPECT(s, "1212", false, false, '1', '2', '1', '2');
    /* default ("[0-9][0-9][0-9]" last): "121" "2" */
    EXPECT(d, "1212", false, false, B_12, '1', '2');
    /* llama3: "[^\r\n\p{L}\p{N}]?\p{L}+" keeps the space with the word, and contractions are
     * case-insensitive: "'LL" is one piece (no merge -> bytes) */
    EXPECT(l, "hello world", false, false, B_HELLO, B_GWORLD);
    EXPECT(l, "x'LL", false, false, 'x', '\'', 'L', 'L');
    /* llama3 "\s*[\r\n]+": "a \n b" -> "a", " \n", " b" */
    EXPECT(l, "a \n b", false, false, 'a', ' ', '\n', ' ', 'b');
    tok_destroy(&g);
    tok_destroy(&l);
    tok_destroy(&q);
    tok_destroy(&s);
    tok_destroy(&d);
}

Test(tokenizer, bpe_special_tokens) {
    tok_t *t = bpe("qwen2");
    EXPECT(t, "<|im_start|>hello<|im_end|>", false, true, B_IM_START, B_HELLO, B_IM_END);
    /* parse_special off: control tokens are plain text ("<|", "im", "_", "start", "|>", "hello") */
    int32_t ids[64];
    int n = tok_encode(t, "<|im_start|>hello", 17, false, false, ids, 64);
    cr_assert_eq(n, 13);
    cr_assert_eq(ids[0], '<');
    cr_assert_eq(ids[1], '|');
    cr_assert_eq(ids[12], B_HELLO);
    /* user-defined tokens are always split out */
    EXPECT(t, "hello<tool>hello", false, false, B_HELLO, B_TOOL, B_HELLO);
    EXPECT(t, "<tool><tool>", false, true, B_TOOL, B_TOOL);
    /* adjacent specials and BOS */
    EXPECT(t, "<|endoftext|><|im_end|>", true, true, B_EOT, B_EOT, B_IM_END);
    tok_destroy(&t);
}

Test(tokenizer, bpe_max_out) {
    tok_t *t = bpe("gpt2");
    int32_t ids[2] = {-7, -7};
    /* "eh eh" -> e h Ġ e h: 5 tokens, only the first one written */
    cr_assert_eq(tok_encode(t, "eh eh", 5, false, false, ids, 1), 5);
    cr_assert_eq(ids[0], 'e');
    cr_assert_eq(ids[1], -7);
    cr_assert_lt(tok_encode(t, "x", 1, false, false, NULL, 4), 0); /* NULL out with max_out > 0 */
    cr_assert_lt(tok_encode(NULL, "x", 1, false, false, NULL, 0), 0);
    tok_destroy(&t);
}

Test(tokenizer, bpe_decode) {
    tok_t *t = bpe("gpt2");
    char buf[64];
    cr_assert_eq(tok_decode_piece(t, B_GWORLD, false, buf, sizeof buf), 6);
    cr_assert(memcmp(buf, " world", 6) == 0);
    cr_assert_eq(tok_decode_piece(t, B_EACUTE, false, buf, sizeof buf), 2);
    cr_assert(memcmp(buf, "\xc3\xa9", 2) == 0);
    cr_assert_eq(tok_decode_piece(t, 0x0a, false, buf, sizeof buf), 1); /* byte token "Ċ" -> '\n' */
    cr_assert_eq(buf[0], '\n');
    /* control tokens only with render_special; user-defined always */
    cr_assert_eq(tok_decode_piece(t, B_IM_END, false, buf, sizeof buf), 0);
    cr_assert_eq(tok_decode_piece(t, B_IM_END, true, buf, sizeof buf), 10);
    cr_assert(memcmp(buf, "<|im_end|>", 10) == 0);
    cr_assert_eq(tok_decode_piece(t, B_TOOL, false, buf, sizeof buf), 6);
    /* truncation reports the full length */
    memset(buf, 0, sizeof buf);
    cr_assert_eq(tok_decode_piece(t, B_HELLO, false, buf, 2), 5);
    cr_assert(buf[0] == 'h' && buf[1] == 'e' && buf[2] == 0);
    cr_assert_eq(tok_decode_piece(t, B_NVOCAB, false, buf, sizeof buf), HE_ERANGE);
    cr_assert_eq(tok_decode_piece(t, -1, false, buf, sizeof buf), HE_ERANGE);
    int32_t ids[] = {B_IM_START, B_HELLO, B_GWORLD, B_IM_END};
    char *s = tok_decode(t, ids, 4, false);
    cr_assert_str_eq(s, "hello world");
    free(s);
    s = tok_decode(t, ids, 4, true);
    cr_assert_str_eq(s, "<|im_start|>hello world<|im_end|>");
    free(s);
    int32_t bad[] = {B_HELLO, 99999};
    cr_assert_null(tok_decode(t, bad, 2, false));
    tok_destroy(&t);
}

Test(tokenizer, bpe_roundtrip) {
    const char *pres[] = {"gpt2", "llama-bpe", "qwen2", "smollm", "default"};
    for (size_t p = 0; p < sizeof pres / sizeof pres[0]; p++) {
        tok_t *t = bpe(pres[p]);
        for (size_t i = 0; i < sizeof SAMPLES / sizeof SAMPLES[0]; i++)
            roundtrip(t, SAMPLES[i], strlen(SAMPLES[i]), "");
        tok_destroy(&t);
    }
}

Test(tokenizer, bpe_invalid_utf8) {
    tok_t *t = bpe("llama-bpe");
    /* llama.cpp turns each invalid byte into U+FFFD (EF BF BD) before byte-encoding */
    const char bad[] = "a\xff" "b\xc3" "\xe2\x82";
    int32_t ids[64];
    int n = tok_encode(t, bad, sizeof bad - 1, false, false, ids, 64);
    cr_assert_gt(n, 0);
    char *d = tok_decode(t, ids, n, false);
    cr_assert_str_eq(d, "a\xef\xbf\xbd" "b\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd");
    free(d);
    /* embedded NUL and a lone continuation byte */
    const char nul[] = "x\0y\x80";
    n = tok_encode(t, nul, 4, false, false, ids, 64);
    cr_assert_eq(n, 6); /* "x", "\0y", and the 3 byte tokens of U+FFFD */
    tok_destroy(&t);
}

Test(tokenizer, bpe_long_input) {
    tok_t *t = bpe("llama-bpe");
    size_t len = 100000;
    char *s = malloc(len);
    for (size_t i = 0; i < len; i++) s[i] = "hello world 12 \n\xc3\xa9"[i % 18];
    s[len - 1] = ' ';
    roundtrip(t, s, len, "");
    memset(s, 'l', len); /* one 100k-letter word: "ll" merges pairwise */
    cr_assert_eq(tok_encode(t, s, len, false, false, NULL, 0), (int)(len / 2));
    free(s);
    tok_destroy(&t);
}

/* The word cache gives the merge's ids: strings of random words (thousands
 * of distinct ones, so slots are overwritten and colliding hashes meet) are
 * encoded twice with the cache, in shuffled order, and once by a tokenizer
 * without it. The second pass must hit (it is at most as slow as the
 * first, which is not asserted: the equality is). */
Test(tokenizer, bpe_word_cache_same_ids) {
    tok_t *t = bpe("llama-bpe"), *ref = bpe("llama-bpe");
    cr_assert_not_null(t->wc, "a built BPE tokenizer has a word cache");
    tok_wcache_free(ref);
    static const char *const alpha[] = {"h", "e", "l", "o", "w", "r", "d", "1", "2", "\xc3\xa9", "ll", "or"};
    enum { N = 3000 };
    char *strs[N];
    unsigned seed = 12345;
    for (int i = 0; i < N; i++) {
        char buf[512];
        size_t n = 0;
        int words = 1 + (int)(rand_r(&seed) % 6);
        for (int k = 0; k < words; k++) {
            int len = 1 + (int)(rand_r(&seed) % 14); /* some words past the cache's 32 bytes */
            if (k) buf[n++] = rand_r(&seed) % 4 ? ' ' : '\n';
            for (int c = 0; c < len; c++) {
                const char *a = alpha[rand_r(&seed) % 12];
                memcpy(buf + n, a, strlen(a));
                n += strlen(a);
            }
        }
        buf[n] = 0;
        strs[i] = strdup(buf);
    }
    for (int pass = 0; pass < 2; pass++)
        for (int j = 0; j < N; j++) {
            int i = pass ? (int)((unsigned)j * 7919u % N) : j;
            int32_t got[512], want[512];
            int ng = tok_encode(t, strs[i], strlen(strs[i]), false, false, got, 512);
            int nw = tok_encode(ref, strs[i], strlen(strs[i]), false, false, want, 512);
            cr_assert_eq(ng, nw, "'%s': %d tokens with the cache, %d without", strs[i], ng, nw);
            for (int k = 0; k < ng; k++)
                cr_assert_eq(got[k], want[k], "'%s' pass %d: token %d is %d with the cache, %d without", strs[i],
                             pass, k, got[k], want[k]);
        }
    for (int i = 0; i < N; i++) free(strs[i]);
    tok_destroy(&t);
    tok_destroy(&ref);
}

Test(tokenizer, bad_metadata) {
    /* missing tokenizer.ggml.model */
    gguf_writer_t *w = gguf_writer_new();
    gguf_writer_add_str(w, "general.architecture", "llama");
    cr_assert_null(load(w));
    cr_assert_neq(strlen(he_msg()), 0);
    /* unknown tokenizer model */
    w = gguf_writer_new();
    gguf_writer_add_str(w, "tokenizer.ggml.model", "bert");
    const char *toks[] = {"a", "b"};
    gguf_writer_add_arr_str(w, "tokenizer.ggml.tokens", toks, 2);
    cr_assert_null(load(w));
    /* duplicate token */
    w = gguf_writer_new();
    gguf_writer_add_str(w, "tokenizer.ggml.model", "llama");
    const char *dup[] = {"a", "b", "a"};
    gguf_writer_add_arr_str(w, "tokenizer.ggml.tokens", dup, 3);
    cr_assert_null(load(w));
    /* BPE without merges */
    w = gguf_writer_new();
    gguf_writer_add_str(w, "tokenizer.ggml.model", "gpt2");
    gguf_writer_add_arr_str(w, "tokenizer.ggml.tokens", toks, 2);
    cr_assert_null(load(w));
    /* unsupported pre-tokenizer */
    w = bpe_writer("no-such-pre", -1);
    cr_assert_null(load(w));
    /* token_type array shorter than the vocabulary */
    w = gguf_writer_new();
    gguf_writer_add_str(w, "tokenizer.ggml.model", "llama");
    gguf_writer_add_arr_str(w, "tokenizer.ggml.tokens", toks, 2);
    int32_t ty[] = {1};
    gguf_writer_add_arr_i32(w, "tokenizer.ggml.token_type", ty, 1);
    cr_assert_null(load(w));
    /* tokens of the wrong type */
    w = gguf_writer_new();
    gguf_writer_add_str(w, "tokenizer.ggml.model", "llama");
    gguf_writer_add_arr_i32(w, "tokenizer.ggml.tokens", ty, 1);
    cr_assert_null(load(w));
    cr_assert_null(tok_new_from_gguf(NULL));
}

/* ---------------------------------------------------------------- SPM tests */

enum {
    S_UNK = 0, S_BOS, S_EOS, S_BYTE0, /* <0x00>.. <0xFF> at 3..258 */
    S_SP = 259, S_H, S_E, S_L, S_O, S_W, S_R, S_D, S_A,
    S_LL, S_HE, S_SPHE, S_SPHELL, S_SPHELLO, S_SPW, S_OR, S_SPWOR, S_LD, S_SPWORLD, S_AA, S_TOOL,
    S_NVOCAB
};

static tok_t *spm(int add_space_prefix) {
    static char hex[256][8];
    const char *toks[S_NVOCAB];
    float scores[S_NVOCAB];
    int32_t types[S_NVOCAB];
    toks[S_UNK] = "<unk>";
    toks[S_BOS] = "<s>";
    toks[S_EOS] = "</s>";
    types[S_UNK] = 2;
    types[S_BOS] = types[S_EOS] = 3;
    scores[0] = scores[1] = scores[2] = 0;
    for (int b = 0; b < 256; b++) {
        snprintf(hex[b], sizeof hex[b], "<0x%02X>", b);
        toks[S_BYTE0 + b] = hex[b];
        types[S_BYTE0 + b] = 6;
        scores[S_BYTE0 + b] = 0;
    }
    static const struct { const char *s; float score; } P[] = {
        {"\xe2\x96\x81", -10}, {"h", -10}, {"e", -10}, {"l", -10}, {"o", -10}, {"w", -10}, {"r", -10},
        {"d", -10}, {"a", -10}, {"ll", -1}, {"he", -2}, {"\xe2\x96\x81he", -3},
        {"\xe2\x96\x81hell", -4}, {"\xe2\x96\x81hello", -5}, {"\xe2\x96\x81w", -6}, {"or", -7},
        {"\xe2\x96\x81wor", -8}, {"ld", -9}, {"\xe2\x96\x81world", -9.5f}, {"aa", -1},
    };
    for (int i = 0; i < S_TOOL - S_SP; i++) {
        toks[S_SP + i] = P[i].s;
        scores[S_SP + i] = P[i].score;
        types[S_SP + i] = 1;
    }
    toks[S_TOOL] = "<tool>";
    types[S_TOOL] = 4;
    scores[S_TOOL] = 0;
    gguf_writer_t *w = gguf_writer_new();
    gguf_writer_add_str(w, "tokenizer.ggml.model", "llama");
    gguf_writer_add_arr_str(w, "tokenizer.ggml.tokens", toks, S_NVOCAB);
    gguf_writer_add_arr_f32(w, "tokenizer.ggml.scores", scores, S_NVOCAB);
    gguf_writer_add_arr_i32(w, "tokenizer.ggml.token_type", types, S_NVOCAB);
    gguf_writer_add_u32(w, "tokenizer.ggml.bos_token_id", S_BOS);
    gguf_writer_add_u32(w, "tokenizer.ggml.eos_token_id", S_EOS);
    if (add_space_prefix >= 0) gguf_writer_add_bool(w, "tokenizer.ggml.add_space_prefix", add_space_prefix);
    tok_t *t = load(w);
    cr_assert_not_null(t, "%s", he_msg());
    return t;
}

Test(tokenizer, spm_merges_by_score) {
    tok_t *t = spm(-1);
    cr_assert_eq(tok_get_kind(t), TOK_KIND_SPM);
    cr_assert(tok_add_bos_default(t));
    cr_assert_eq(tok_bos(t), S_BOS);
    cr_assert(tok_is_eog(t, S_EOS));
    /* "▁hello": ll (-1) first, then he (-2), ▁he (-3), ▁hell (-4), ▁hello (-5) */
    EXPECT(t, "hello", false, false, S_SPHELLO);
    /* "▁world": ▁w (-6), or (-7), ▁wor (-8), ld (-9), ▁world (-9.5) */
    EXPECT(t, "hello world", true, false, S_BOS, S_SPHELLO, S_SPWORLD);
    /* equal scores: the leftmost pair merges first: "aaa" -> aa a */
    EXPECT(t, "aaa", false, false, S_SP, S_AA, S_A);
    /* characters outside the vocabulary fall back to their bytes: é = C3 A9 */
    EXPECT(t, "\xc3\xa9", false, false, S_SP, S_BYTE0 + 0xc3, S_BYTE0 + 0xa9);
    /* a space prefix follows every special token */
    EXPECT(t, "<s>hello", false, true, S_BOS, S_SPHELLO);
    /* parse_special off: "<s>" is text; "▁<s>hello" -> ll, he, then nothing joins */
    EXPECT(t, "<s>hello", false, false, S_SP, S_BYTE0 + '<', S_BYTE0 + 's', S_BYTE0 + '>', S_HE, S_LL, S_O);
    EXPECT(t, "hello<tool>hello", false, false, S_SPHELLO, S_TOOL, S_SPHELLO);
    tok_destroy(&t);

    t = spm(0); /* add_space_prefix = false */
    EXPECT(t, "hello", false, false, S_HE, S_LL, S_O); /* no "hell" without the ▁ */
    EXPECT(t, " hello", false, false, S_SPHELLO);
    tok_destroy(&t);
}

Test(tokenizer, spm_decode_roundtrip) {
    tok_t *t = spm(-1);
    char buf[16];
    cr_assert_eq(tok_decode_piece(t, S_SPHELLO, false, buf, sizeof buf), 6);
    cr_assert(memcmp(buf, " hello", 6) == 0);
    cr_assert_eq(tok_decode_piece(t, S_BYTE0 + 0xc3, false, buf, sizeof buf), 1);
    cr_assert_eq((unsigned char)buf[0], 0xc3);
    cr_assert_eq(tok_decode_piece(t, S_BOS, false, buf, sizeof buf), 0);
    cr_assert_eq(tok_decode_piece(t, S_UNK, true, buf, sizeof buf), 5);
    /* the space prefix comes back as a leading space */
    for (size_t i = 0; i < sizeof SAMPLES / sizeof SAMPLES[0]; i++) roundtrip(t, SAMPLES[i], strlen(SAMPLES[i]), " ");
    tok_destroy(&t);
}

/* ------------------------------------------------------ generated model */

Test(tokenizer, mkmodel_vocab_roundtrip) {
    const char *bin = getenv("HELIUM_BIN");
    char exe[1024], path[] = "/tmp/helium_tok_mk_XXXXXX";
    if (!bin) {
#ifdef HELIUM_BINARY_DIR
        bin = HELIUM_BINARY_DIR "/bin";
#else
        cr_skip_test("HELIUM_BIN not set");
#endif
    }
    snprintf(exe, sizeof exe, "%s/helium-mkmodel", bin);
    if (access(exe, X_OK) != 0) cr_skip_test("helium-mkmodel not built");
    int fd = mkstemp(path);
    cr_assert(fd >= 0);
    close(fd);
    char cmd[2200];
    snprintf(cmd, sizeof cmd, "'%s' --preset tiny --arch llama -o '%s' >/dev/null 2>&1", exe, path);
    if (system(cmd) != 0) {
        unlink(path);
        cr_skip_test("helium-mkmodel failed");
    }
    gguf_t *g = NULL;
    cr_assert_eq(gguf_open(path, &g), 0, "%s", he_msg());
    tok_t *t = tok_new_from_gguf(g);
    gguf_destroy(&g);
    unlink(path);
    cr_assert_not_null(t, "%s", he_msg());
    const char *prefix = tok_get_kind(t) == TOK_KIND_SPM ? " " : "";
    for (size_t i = 0; i < sizeof SAMPLES / sizeof SAMPLES[0]; i++) roundtrip(t, SAMPLES[i], strlen(SAMPLES[i]), prefix);
    /* text like the training corpus needs fewer tokens than bytes */
    const char *text = "The store opens at eight, but the work starts long before the lights come on.";
    int n = tok_encode(t, text, strlen(text), false, false, NULL, 0);
    cr_assert_gt(n, 0);
    cr_assert_lt(n, (int)strlen(text), "%d tokens", n);
    tok_destroy(&t);
}
