/* llama_ref: the llama.cpp side of tests/conformance/gen_chat_vectors.py,
 * linked against a llama.cpp build (libllama + ggml, as scripts/llama-venv.sh
 * or any CMake build of the pinned version leaves them). Not part of Helium.
 *
 *   llama_ref tok MODEL IN OUT
 *       IN: records (u32 little-endian length, bytes); OUT: two lines per
 *       record, the ids of llama_tokenize(add_special = false) with
 *       parse_special = true, then false.
 *   llama_ref logits MODEL IDS_CSV OUT.bin
 *       float32 logits (n, n_vocab) of every position: F32 K/V, flash
 *       attention off, 2 threads, the whole sequence in one llama_decode
 *       (LREF_STEP=1: one token per decode instead).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <stdint.h>
#include "llama.h"
static void put_ids(FILE *o, const struct llama_vocab *v, const char *s, int n, int special) {
    int32_t buf[65536];
    int k = llama_tokenize(v, s, n, buf, 65536, 0, special);
    if (k < 0) { fprintf(stderr, "tokenize failed\n"); exit(1); }
    for (int i = 0; i < k; i++) fprintf(o, i ? ",%d" : "%d", buf[i]);
    fprintf(o, "\n");
}
int main(int argc, char **argv) {
    if (argc < 5) return 2;
    llama_backend_init();
    struct llama_model_params mp = llama_model_default_params();
    mp.vocab_only = !strcmp(argv[1], "tok");
    struct llama_model *m = llama_model_load_from_file(argv[2], mp);
    if (!m) return 1;
    const struct llama_vocab *v = llama_model_get_vocab(m);
    if (!strcmp(argv[1], "tok")) {
        FILE *in = fopen(argv[3], "rb"), *o = fopen(argv[4], "w");
        uint32_t len;
        while (fread(&len, 4, 1, in) == 1) {
            char *s = malloc(len + 1);
            if (fread(s, 1, len, in) != len) return 1;
            s[len] = 0;
            put_ids(o, v, s, (int)len, 1);
            put_ids(o, v, s, (int)len, 0);
            free(s);
        }
        fclose(o);
        return 0;
    }
    int32_t ids[4096]; int n = 0;
    for (char *p = argv[3]; *p && n < 4096;) { ids[n++] = (int32_t)strtol(p, &p, 10); if (*p == ',') p++; }
    struct llama_context_params cp = llama_context_default_params();
    cp.n_ctx = 1024; cp.n_batch = 1024; cp.n_ubatch = 1024; cp.n_threads = 2; cp.n_threads_batch = 2;
    cp.flash_attn_type = LLAMA_FLASH_ATTN_TYPE_DISABLED; cp.type_k = GGML_TYPE_F32; cp.type_v = GGML_TYPE_F32;
    struct llama_context *c = llama_init_from_model(m, cp);
    int V = llama_vocab_n_tokens(v);
    FILE *o = fopen(argv[4], "wb");
    if (getenv("LREF_STEP")) { /* one token per decode */
        struct llama_batch b = llama_batch_init(1, 0, 1);
        for (int i = 0; i < n; i++) {
            b.token[0] = ids[i]; b.pos[0] = i; b.n_seq_id[0] = 1; b.seq_id[0][0] = 0; b.logits[0] = 1; b.n_tokens = 1;
            if (llama_decode(c, b)) return 1;
            fwrite(llama_get_logits_ith(c, 0), 4, V, o);
        }
    } else {
        struct llama_batch b = llama_batch_init(n, 0, 1);
        for (int i = 0; i < n; i++) { b.token[i] = ids[i]; b.pos[i] = i; b.n_seq_id[i] = 1; b.seq_id[i][0] = 0; b.logits[i] = 1; }
        b.n_tokens = n;
        if (llama_decode(c, b)) return 1;
        for (int i = 0; i < n; i++) fwrite(llama_get_logits_ith(c, i), 4, V, o);
    }
    fclose(o);
    return 0;
}
