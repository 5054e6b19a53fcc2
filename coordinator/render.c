/* render: see render.h. */
#include "render.h"

#include <cjson/cJSON.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "herr.h"

void sb_init(sbuf *b, size_t limit) {
    b->p = NULL;
    b->len = b->cap = 0;
    b->limit = limit;
}

int sb_add(sbuf *b, const char *s, size_t n) {
    if (n > b->limit - b->len) return he_set(HE_ELIMIT, "text longer than %zu bytes", b->limit);
    if (!b->p || b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 64;
        while (cap < b->len + n + 1) cap *= 2;
        char *p = realloc(b->p, cap);
        if (!p) return he_set(HE_ENOMEM, "out of memory");
        b->p = p;
        b->cap = cap;
    }
    if (n) memcpy(b->p + b->len, s, n);
    b->len += n;
    b->p[b->len] = 0;
    return 0;
}

int sb_adds(sbuf *b, const char *s) { return sb_add(b, s, s ? strlen(s) : 0); }

char *sb_take(sbuf *b, size_t *len) {
    char *p = b->p;
    if (!p) p = calloc(1, 1);
    if (len) *len = p ? b->len : 0;
    b->p = NULL;
    b->len = b->cap = 0;
    return p;
}

void sb_free(sbuf *b) {
    free(b->p);
    b->p = NULL;
    b->len = b->cap = 0;
}

int rnd_template(const wf_tmpl *t, rnd_value_fn value, void *ctx, sbuf *out) {
    for (size_t i = 0; i < t->n; i++) {
        const wf_part *p = &t->v[i];
        int rc = p->kind == WF_PART_TEXT ? sb_add(out, p->s, p->s ? p->len : 0) : value(ctx, p, out);
        if (rc) return rc;
    }
    return 0;
}

void rnd_free_items(char **items, uint32_t n) {
    if (!items) return;
    for (uint32_t i = 0; i < n; i++) free(items[i]);
    free(items);
}

/* Appends a copy of s[0..n) to the item list; HE_ELIMIT past max. */
static int push_item(char ***items, uint32_t *n, uint32_t *cap, uint32_t max, const char *s, size_t len) {
    if (*n >= max) return he_set(HE_ELIMIT, "the list has more than %u items (max_width)", max);
    if (*n == *cap) {
        uint32_t c = *cap ? *cap * 2 : 8;
        char **v = realloc(*items, c * sizeof *v);
        if (!v) return he_set(HE_ENOMEM, "out of memory");
        *items = v;
        *cap = c;
    }
    char *s2 = malloc(len + 1);
    if (!s2) return he_set(HE_ENOMEM, "out of memory");
    memcpy(s2, s, len);
    s2[len] = 0;
    (*items)[(*n)++] = s2;
    return 0;
}

static int is_sp(char c) { return c == ' ' || c == '\t' || c == '\r' || c == '\n' || c == '\f' || c == '\v'; }

static int split_lines(const char *text, size_t len, uint32_t max, char ***items, uint32_t *n, uint32_t *cap) {
    size_t i = 0;
    while (i < len) {
        size_t e = i;
        while (e < len && text[e] != '\n') e++;
        size_t a = i, b = e;
        while (a < b && is_sp(text[a])) a++;
        while (b > a && is_sp(text[b - 1])) b--;
        if (b > a) {
            int rc = push_item(items, n, cap, max, text + a, b - a);
            if (rc) return rc;
        }
        i = e + 1;
    }
    return 0;
}

/* Parses text as a JSON array followed only by whitespace; NULL if it is not
 * one. cJSON reports where the value ended; the rest is checked here. */
static cJSON *parse_array(const char *text, size_t len) {
    size_t a = 0;
    while (a < len && is_sp(text[a])) a++;
    if (a == len || text[a] != '[') return NULL;
    const char *end = NULL;
    cJSON *j = cJSON_ParseWithLengthOpts(text + a, len - a, &end, 0);
    if (!j) return NULL;
    if (!cJSON_IsArray(j) || !end || end < text + a || end > text + len) {
        cJSON_Delete(j);
        return NULL;
    }
    for (const char *q = end; q < text + len; q++)
        if (!is_sp(*q)) {
            cJSON_Delete(j);
            return NULL;
        }
    return j;
}

static int split_json(cJSON *arr, uint32_t max, char ***items, uint32_t *n, uint32_t *cap) {
    cJSON *el;
    cJSON_ArrayForEach(el, arr) {
        int rc;
        if (cJSON_IsString(el)) {
            rc = push_item(items, n, cap, max, el->valuestring, strlen(el->valuestring));
        } else {
            char *s = cJSON_PrintUnformatted(el);
            if (!s) return he_set(HE_ENOMEM, "out of memory");
            rc = push_item(items, n, cap, max, s, strlen(s));
            cJSON_free(s);
        }
        if (rc) return rc;
    }
    return 0;
}

int rnd_split(const char *text, size_t len, wf_split mode, uint32_t max_items, char ***items, uint32_t *n) {
    *items = NULL;
    *n = 0;
    uint32_t cap = 0;
    int rc;
    if (!text) len = 0;
    if (mode == WF_SPLIT_LINES) {
        rc = split_lines(text, len, max_items, items, n, &cap);
    } else {
        cJSON *arr = len ? parse_array(text, len) : NULL;
        if (arr) {
            rc = split_json(arr, max_items, items, n, &cap);
            cJSON_Delete(arr);
        } else if (mode == WF_SPLIT_JSON) {
            rc = he_set(HE_EFORMAT, "the list is not a JSON array");
        } else {
            rc = split_lines(text, len, max_items, items, n, &cap);
        }
    }
    if (rc) {
        rnd_free_items(*items, *n);
        *items = NULL;
        *n = 0;
    }
    return rc;
}

int rnd_join(char *const *items, uint32_t n, const char *sep, size_t sep_len, sbuf *out) {
    for (uint32_t i = 0; i < n; i++) {
        int rc;
        if (i && (rc = sb_add(out, sep, sep_len))) return rc;
        if ((rc = sb_adds(out, items[i]))) return rc;
    }
    return 0;
}

/* ------------------------------------------------------------------ chats */

int rnd_chat(const chat_t *chat, const wf_op *op, rnd_value_fn value, void *ctx, size_t limit, char **out,
             size_t *len) {
    *out = NULL;
    if (!chat)
        return he_set(HE_ENOTFOUND, "op '%s': the model has no chat template (start the coordinator with "
                                    "--chat-template NAME)", op->id);
    size_t n = op->llm.n_messages;
    chat_msg *m = calloc(n ? n : 1, sizeof *m);
    if (!m) return he_set(HE_ENOMEM, "out of memory");
    int rc = 0;
    for (size_t i = 0; i < n && !rc; i++) {
        sbuf b;
        sb_init(&b, limit);
        rc = rnd_template(&op->llm.messages[i].content, value, ctx, &b);
        m[i].role = op->llm.messages[i].role;
        m[i].content = sb_take(&b, NULL);
        if (!m[i].content && !rc) rc = he_set(HE_ENOMEM, "out of memory");
        if (rc) sb_free(&b);
    }
    if (!rc) rc = chat_render(chat, m, n, true, out, len);
    if (!rc && *len > limit) {
        free(*out);
        *out = NULL;
        rc = he_set(HE_ELIMIT, "op '%s': the rendered chat is longer than %zu bytes", op->id, limit);
    }
    for (size_t i = 0; i < n; i++) free((char *)m[i].content);
    free(m);
    return rc;
}

#define MARK '\x1a' /* placeholder marker: MARK digits MARK; no template trims or changes it */

/* Cuts text at the markers into t: text between them verbatim, marker k ->
 * a copy of parts[k]. Returns 1 if every marker came through exactly once,
 * 0 if not (t then holds garbage), or a negative herr code. */
static int cut_marks(const wf_t *wf, const char *text, size_t len, const wf_part *const *parts, size_t np,
                     wf_tmpl *t) {
    unsigned char *seen = calloc(np ? np : 1, 1);
    if (!seen) return he_set(HE_ENOMEM, "out of memory");
    int ok = 1, rc = 0;
    size_t i = 0, run = 0;
    while (i < len && !rc && ok) {
        if (text[i] != MARK) {
            i++;
            continue;
        }
        if ((rc = wf_tmpl_add(t, WF_PART_TEXT, text + run, i - run))) break;
        size_t k = 0, j = i + 1;
        while (j < len && text[j] >= '0' && text[j] <= '9' && k < np) k = k * 10 + (size_t)(text[j++] - '0');
        if (j >= len || text[j] != MARK || j == i + 1 || k >= np || seen[k]) {
            ok = 0;
            break;
        }
        seen[k] = 1;
        const wf_part *p = parts[k];
        if (!(rc = wf_tmpl_add(t, p->kind, p->s, p->len))) /* resolved as wf_validate resolves the prompt */
            t->v[t->n - 1].ref = p->kind == WF_PART_INPUT ? wf_find_input(wf, p->s)
                                 : p->kind == WF_PART_OP  ? wf_find(wf, p->s)
                                                          : -1;
        i = run = j + 1;
    }
    if (!rc && ok) rc = wf_tmpl_add(t, WF_PART_TEXT, text + run, len - run);
    for (size_t k = 0; k < np && ok; k++) ok = seen[k];
    free(seen);
    return rc ? rc : ok;
}

static void tmpl_release(wf_tmpl *t) {
    for (size_t i = 0; i < t->n; i++) free(t->v[i].s);
    free(t->v);
    memset(t, 0, sizeof *t);
}

/* rnd_chat_lower for one op. */
static int lower_op(const chat_t *chat, const wf_t *wf, wf_op *op) {
    size_t n = op->llm.n_messages, np = 0;
    for (size_t i = 0; i < n; i++)
        for (size_t k = 0; k < op->llm.messages[i].content.n; k++) np += op->llm.messages[i].content.v[k].kind != WF_PART_TEXT;
    chat_msg *m = calloc(n, sizeof *m);
    const wf_part **parts = calloc(np ? np : 1, sizeof *parts);
    char *text = NULL;
    size_t tlen = 0;
    int rc = m && parts ? 0 : he_set(HE_ENOMEM, "out of memory");
    np = 0;
    bool clean = true; /* no marker byte in the static text */
    for (size_t i = 0; i < n && !rc; i++) {
        const wf_tmpl *c = &op->llm.messages[i].content;
        sbuf b;
        sb_init(&b, 2 * WF_MAX_PROMPT_BYTES);
        for (size_t k = 0; k < c->n && !rc; k++) {
            const wf_part *p = &c->v[k];
            if (p->kind == WF_PART_TEXT) {
                clean = clean && !memchr(p->s, MARK, p->len);
                rc = sb_add(&b, p->s, p->len);
            } else {
                char mk[24];
                int l = snprintf(mk, sizeof mk, "%c%zu%c", MARK, np, MARK);
                parts[np++] = p;
                rc = sb_add(&b, mk, (size_t)l);
            }
        }
        m[i].role = op->llm.messages[i].role;
        m[i].content = sb_take(&b, NULL);
        if (!m[i].content && !rc) rc = he_set(HE_ENOMEM, "out of memory");
        if (rc) sb_free(&b);
    }
    if (!rc) rc = chat_render(chat, m, n, true, &text, &tlen);
    if (!rc && clean) {
        wf_tmpl t = {0};
        int ok = cut_marks(wf, text, tlen, parts, np, &t);
        if (ok == 1 && t.bytes <= WF_MAX_PROMPT_BYTES) {
            tmpl_release(&op->llm.prompt);
            op->llm.prompt = t;
        } else {
            tmpl_release(&t);
            if (ok < 0) rc = ok;
        }
    }
    for (size_t i = 0; m && i < n; i++) free((char *)m[i].content);
    free(m);
    free(parts);
    free(text);
    return rc;
}

int rnd_chat_lower(const chat_t *chat, wf_t *wf) {
    for (size_t i = 0; i < wf->n_ops; i++) {
        wf_op *op = wf->ops[i];
        if (op->kind != WF_LLM || op->llm.n_messages == 0) continue;
        int rc = chat ? lower_op(chat, wf, op)
                      : he_set(HE_ENOTFOUND, "op '%s': the model has no chat template (start the coordinator with "
                                             "--chat-template NAME)", op->id);
        if (rc) {
            he_set_op(op->id);
            return rc;
        }
    }
    return 0;
}
