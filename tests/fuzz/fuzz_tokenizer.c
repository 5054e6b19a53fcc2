/* fuzz_tokenizer: libFuzzer target for tok_encode / tok_decode
 * (common/tokenizer.c) on the two tiny models helium-mkmodel generates once
 * per fuzz build (a byte-level BPE one and a SentencePiece one).
 *
 * Input: one flag byte, then the text. Flag bit 0 picks the model (0 BPE,
 * 1 SPM), bit 1 add_bos, bit 2 parse_special. Invariants checked:
 *   - every id is in [0, n_vocab), and a second call with the exact count
 *     returns the same ids (the size query agrees with the real encode);
 *   - BPE without parse_special on valid UTF-8 without NUL: decoding the ids (BOS left
 *     out) gives back the text byte for byte (byte-level BPE loses nothing).
 * The models' paths come from HELIUM_FUZZ_BPE / HELIUM_FUZZ_SPM, else the
 * defaults the build compiled in (FUZZ_MODEL_DIR).
 */
#include <string.h>

#include "fuzz_util.h"
#include "gguf.h"
#include "herr.h"
#include "tokenizer.h"

static tok_t *models[2];

static tok_t *load(const char *env, const char *name) {
    char path[4096];
    const char *p = getenv(env);
    if (!p || !*p) {
        snprintf(path, sizeof path, "%s/%s", FUZZ_MODEL_DIR, name);
        p = path;
    }
    gguf_t *g = NULL;
    if (gguf_open(p, &g) < 0) {
        fprintf(stderr, "fuzz_tokenizer: cannot open %s: %s (set %s)\n", p, he_msg(), env);
        exit(1);
    }
    tok_t *t = tok_new_from_gguf(g);
    gguf_destroy(&g);
    if (!t) {
        fprintf(stderr, "fuzz_tokenizer: no tokenizer in %s: %s\n", p, he_msg());
        exit(1);
    }
    return t;
}

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    models[0] = load("HELIUM_FUZZ_BPE", "tiny-bpe.gguf");
    models[1] = load("HELIUM_FUZZ_SPM", "tiny-spm.gguf");
    fz_check(tok_get_kind(models[0]) == TOK_KIND_BPE, "first model is not BPE");
    fz_check(tok_get_kind(models[1]) == TOK_KIND_SPM, "second model is not SPM");
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 1) return 0;
    uint8_t flags = data[0];
    const char *text = (const char *)data + 1;
    size_t len = size - 1;
    const tok_t *t = models[flags & 1];
    bool add_bos = flags & 2, special = flags & 4;
    int32_t nv = tok_n_vocab(t);

    int32_t small[8];
    int n = tok_encode(t, text, len, add_bos, special, small, 8);
    if (n < 0) {
        fz_check(he_msg()[0], "error %d without a message", n);
        return 0;
    }
    int32_t *ids = malloc(sizeof *ids * (size_t)(n ? n : 1));
    if (!ids) return 0;
    int n2 = tok_encode(t, text, len, add_bos, special, ids, n);
    fz_check(n2 == n, "count %d then %d", n, n2);
    for (int i = 0; i < n && i < 8; i++) fz_check(ids[i] == small[i], "id %d: %d then %d", i, small[i], ids[i]);
    for (int i = 0; i < n; i++) fz_check(ids[i] >= 0 && ids[i] < nv, "id %d = %d of %d", i, ids[i], nv);

    char *out = tok_decode(t, ids, n, special);
    if ((flags & 1) == 0 && !special && !memchr(text, 0, len) && fz_utf8_ok((const uint8_t *)text, len)) {
        int skip = (add_bos && n > 0 && ids[0] == tok_bos(t)) ? 1 : 0;
        char *plain = tok_decode(t, ids + skip, n - skip, false);
        fz_check(plain, "decode failed");
        fz_check(strlen(plain) == len && memcmp(plain, text, len) == 0, "round trip of %zu bytes gave %zu bytes",
                 len, strlen(plain));
        free(plain);
    }
    free(out);
    free(ids);
    return 0;
}
