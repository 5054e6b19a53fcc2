/* Tokenization and chat rendering of the real models against llama.cpp
 * (suite "tok_conformance"), from tests/conformance/vectors/chat/tokenize.json
 * (written by tests/conformance/gen_chat_vectors.py from llama.cpp's
 * llama_tokenize and jinja2):
 *   - every string, with control tokens parsed (llama.cpp parse_special) and
 *     not: the same ids as llama.cpp, no tolerance;
 *   - every chat: the text the model's chat template renders (or the error
 *     it raises), and the ids Helium sends for it (tok_encode_prompt).
 * The models (SmolLM2-135M-Instruct, Gemma 3 270M) come from
 * scripts/fetch-model.sh, which downloads them once into ~/.cache/helium; a
 * model that cannot be fetched fails the test and says why.
 */
#include <criterion/criterion.h>

#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "chat.h"
#include "gguf.h"
#include "herr.h"
#include "tokenizer.h"

static char *slurp(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    cr_assert(f, "cannot open %s", path);
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    rewind(f);
    char *b = malloc((size_t)n + 1);
    cr_assert_eq(fread(b, 1, (size_t)n, f), (size_t)n);
    b[n] = 0;
    fclose(f);
    *len = (size_t)n;
    return b;
}

/* Path of a fetched model (scripts/fetch-model.sh prints it), malloc'd. */
static char *fetch(const char *name) {
    char cmd[1024], line[4096] = "";
    snprintf(cmd, sizeof cmd, "bash '%s/scripts/fetch-model.sh' '%s'", HELIUM_SOURCE_DIR, name);
    FILE *p = popen(cmd, "r");
    cr_assert(p, "cannot run %s", cmd);
    if (!fgets(line, sizeof line, p)) line[0] = 0;
    int st = pclose(p);
    line[strcspn(line, "\n")] = 0;
    cr_assert(st == 0 && line[0], "scripts/fetch-model.sh %s failed (status %d): no network, or a bad checksum; "
                                  "the message above says which", name, st);
    return strdup(line);
}

static int encode(const tok_t *t, const char *s, bool special, int32_t *out, int cap) {
    return tok_encode(t, s, strlen(s), false, special, out, cap);
}

static void same_ids(const int32_t *got, int n, const cJSON *want, const char *what, const char *text) {
    cr_assert(cJSON_IsArray(want));
    int wn = cJSON_GetArraySize(want);
    bool same = n == wn;
    for (int i = 0; same && i < n; i++) same = got[i] == cJSON_GetArrayItem(want, i)->valueint;
    if (!same) {
        char g[512] = "", *w = cJSON_PrintUnformatted(want);
        size_t k = 0;
        for (int i = 0; i < n && k + 16 < sizeof g; i++) k += (size_t)snprintf(g + k, sizeof g - k, "%s%d", i ? "," : "", got[i]);
        cr_assert_fail("%s of \"%.80s\": helium [%s], llama.cpp %.400s", what, text, g, w);
    }
}

static void check_model(const cJSON *m, const char *key) {
    const char *fetch_name = cJSON_GetObjectItem(m, "fetch")->valuestring;
    char *path = fetch(fetch_name);
    gguf_t *g = NULL;
    cr_assert_eq(gguf_open(path, &g), 0, "%s: %s", path, he_msg());
    tok_t *t = tok_new_from_gguf(g);
    cr_assert(t, "%s", he_msg());
    enum { CAP = 1 << 16 };
    int32_t *ids = malloc(sizeof *ids * CAP);
    int n_str = 0, n_chat = 0;
    const cJSON *s;
    cJSON_ArrayForEach(s, cJSON_GetObjectItem(m, "strings")) {
        const char *text = cJSON_GetObjectItem(s, "text")->valuestring;
        int n = encode(t, text, true, ids, CAP);
        same_ids(ids, n, cJSON_GetObjectItem(s, "special"), "special", text);
        n = encode(t, text, false, ids, CAP);
        same_ids(ids, n, cJSON_GetObjectItem(s, "plain"), "plain", text);
        n_str++;
    }
    /* the end-of-turn token of each family ends generation (engine: tok_is_eog) */
    const char *eot = !strcmp(key, "gemma3") ? "<end_of_turn>" : "<|im_end|>";
    cr_assert_eq(encode(t, eot, true, ids, CAP), 1, "%s is not one token", eot);
    cr_assert(tok_is_eog(t, ids[0]), "%s (id %d) does not end generation", eot, ids[0]);
    cr_assert(tok_is_eog(t, tok_eos(t)));
    chat_t *c = NULL;
    cr_assert_eq(chat_new(g, t, cJSON_GetObjectItem(m, "template")->valuestring, &c), 0, "%s", he_msg());
    const cJSON *ch;
    cJSON_ArrayForEach(ch, cJSON_GetObjectItem(m, "chats")) {
        const cJSON *msgs = cJSON_GetObjectItem(ch, "messages");
        int nm = cJSON_GetArraySize(msgs);
        chat_msg v[16];
        cr_assert_leq(nm, 16);
        for (int i = 0; i < nm; i++) {
            const cJSON *e = cJSON_GetArrayItem(msgs, i);
            v[i] = (chat_msg){cJSON_GetObjectItem(e, "role")->valuestring, cJSON_GetObjectItem(e, "content")->valuestring};
        }
        char *text = NULL;
        size_t len = 0;
        int rc = chat_render(c, v, (size_t)nm, true, &text, &len);
        if (cJSON_GetObjectItem(ch, "error")) {
            cr_assert_eq(rc, HE_EINVAL, "%s chat %d: jinja2 raised '%s', helium rc %d", key, n_chat,
                         cJSON_GetObjectItem(ch, "error")->valuestring, rc);
        } else {
            cr_assert_eq(rc, 0, "%s chat %d: %s", key, n_chat, he_msg());
            cr_assert_str_eq(text, cJSON_GetObjectItem(ch, "text")->valuestring, "%s chat %d text", key, n_chat);
            int n = tok_encode_prompt(t, text, len, true, ids, CAP);
            same_ids(ids, n, cJSON_GetObjectItem(ch, "ids"), "chat ids", text);
        }
        free(text);
        n_chat++;
    }
    cr_log_info("%s: %d strings x 2 and %d chats equal llama.cpp's", key, n_str, n_chat);
    cr_assert_geq(n_str, 150, "%s: only %d strings in the vectors", key, n_str);
    chat_destroy(&c);
    free(ids);
    tok_destroy(&t);
    gguf_destroy(&g);
    free(path);
}

Test(tok_conformance, real_models_match_llama_cpp, .timeout = 600) {
    char p[1024];
    snprintf(p, sizeof p, "%s/tests/conformance/vectors/chat/tokenize.json", HELIUM_SOURCE_DIR);
    size_t len;
    char *txt = slurp(p, &len);
    cJSON *doc = cJSON_ParseWithLength(txt, len);
    cr_assert(doc, "%s is not JSON", p);
    const cJSON *models = cJSON_GetObjectItem(doc, "models"), *m;
    int n = 0;
    cJSON_ArrayForEach(m, models) {
        check_model(m, m->string);
        n++;
    }
    cr_assert_eq(n, 2);
    cJSON_Delete(doc);
    free(txt);
}
