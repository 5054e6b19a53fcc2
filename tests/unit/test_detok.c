/* detok: incremental detokenization and stop strings (worker/detok.h), on
 * the tiny generated model's byte-level BPE vocabulary. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "detok.h"
#include "herr.h"
#include "model.h"

static model_t *g_model;
static char g_path[256];

static void setup(void) {
    snprintf(g_path, sizeof g_path, "/tmp/helium-test-detok-%d.gguf", (int)getpid());
    char cmd[768];
    snprintf(cmd, sizeof cmd, "%s/bin/helium-mkmodel --preset tiny --arch llama --dtype f32 --seed 7 -o %s 2>/dev/null",
             HELIUM_BINARY_DIR, g_path);
    cr_assert_eq(system(cmd), 0, "helium-mkmodel failed: %s", cmd);
    cr_assert_eq(model_load(g_path, &g_model), 0, "model_load: %s", he_msg());
}
static void teardown(void) {
    model_destroy(&g_model);
    unlink(g_path);
}
TestSuite(detok, .init = setup, .fini = teardown, .timeout = 60);

static int encode(const char *text, int32_t *ids, int cap) {
    int n = tok_encode(g_model->tok, text, strlen(text), false, false, ids, cap);
    cr_assert_gt(n, 0, "tok_encode: %s", he_msg());
    return n;
}

/* Pushing ids one by one gives exactly tok_decode of all of them. */
Test(detok, appending_pieces_equals_decoding_all) {
    const char *text = "The store manager said: déjà vu, naïve café — 10% off! ☕ end";
    int32_t ids[256];
    int n = encode(text, ids, 256);
    dtk_t *d = dtk_new(g_model->tok, NULL, 0);
    cr_assert_not_null(d);
    size_t last_stable = 0;
    for (int i = 0; i < n; i++) {
        cr_assert_eq(dtk_push(d, ids[i]), 0);
        size_t len, st = dtk_stable(d, false);
        const char *t = dtk_text(d, &len);
        cr_assert_geq(st, last_stable, "stable went back");
        cr_assert_leq(st, len);
        /* never inside a UTF-8 character */
        if (st < len) cr_assert_neq((unsigned char)t[st] & 0xC0, 0x80, "stable %zu splits a character", st);
        last_stable = st;
    }
    char *all = tok_decode(g_model->tok, ids, n, false);
    size_t len;
    cr_assert_str_eq(dtk_text(d, &len), all);
    cr_assert_str_eq(all, text);
    cr_assert_eq(dtk_stable(d, true), strlen(text));
    free(all);
    dtk_destroy(&d);
    cr_assert_null(d);
}

/* Each stop string ends the text at its first occurrence, the moment its
 * last byte arrives: the number of tokens pushed is the first token whose
 * piece completes it, across token and UTF-8 boundaries alike. */
Test(detok, stop_strings_end_at_the_completing_token) {
    const char *text = "abc déjà vu STOP here, and café STOP again";
    const char *stops[] = {"STOP", "é", "vu S", "re, a"};
    int32_t ids[256];
    int n = encode(text, ids, 256);
    for (size_t k = 0; k < sizeof stops / sizeof *stops; k++) {
        const char *st = stops[k];
        const char *at = strstr(text, st);
        cr_assert_not_null(at);
        size_t want_len = (size_t)(at - text), end_byte = want_len + strlen(st);
        /* the token that completes the first occurrence */
        int want_tokens = -1;
        size_t pos = 0;
        for (int i = 0; i < n && want_tokens < 0; i++) {
            pos += (size_t)tok_decode_piece(g_model->tok, ids[i], false, NULL, 0);
            if (pos >= end_byte) want_tokens = i + 1;
        }
        const char *one[] = {"", st}; /* an empty stop string is ignored */
        dtk_t *d = dtk_new(g_model->tok, one, 2);
        int pushed = 0, rc = 0;
        while (pushed < n && (rc = dtk_push(d, ids[pushed])) == 0) pushed++;
        cr_assert_eq(rc, 1, "stop '%s' not found", st);
        pushed++;
        cr_assert_eq(pushed, want_tokens, "stop '%s': %d tokens, want %d", st, pushed, want_tokens);
        size_t len;
        const char *t = dtk_text(d, &len);
        cr_assert_eq(len, want_len, "stop '%s': text '%s'", st, t);
        cr_assert_eq(strncmp(t, text, want_len), 0);
        cr_assert(dtk_stopped(d));
        cr_assert_eq(dtk_push(d, ids[0]), 1, "nothing is appended after a stop");
        cr_assert_eq(dtk_text(d, NULL)[len], 0);
        dtk_destroy(&d);
    }
}

/* Before a stop, stable holds back what could still start one. */
Test(detok, stable_holds_back_a_possible_stop_start) {
    const char *stops[] = {"XYZW"};
    dtk_t *d = dtk_new(g_model->tok, stops, 1);
    int32_t ids[64];
    int n = encode("hello world XY", ids, 64);
    for (int i = 0; i < n; i++) cr_assert_eq(dtk_push(d, ids[i]), 0);
    size_t len;
    dtk_text(d, &len);
    cr_assert_eq(len, strlen("hello world XY"));
    cr_assert_leq(dtk_stable(d, false), len - 3, "the last 3 bytes could start XYZW");
    cr_assert_eq(dtk_stable(d, true), len);
    dtk_destroy(&d);
}
