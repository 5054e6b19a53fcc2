/* render: see render.h. */
#include "render.h"

#include <cjson/cJSON.h>
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
