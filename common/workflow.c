/* workflow: the workflow graph: building it, template splitting and graph
 * validation; wf_json.c reads the JSON format into it. See workflow.h and
 * docs/workflow-format.md.
 *
 * Invariants kept here: wf->ops[i]->parent < i; derived fields are only
 * trusted while wf->valid; every error path leaves the wf_t destroyable.
 * Nothing read from the JSON is asserted on.
 */
#define _POSIX_C_SOURCE 200809L /* strdup, strnlen, strncasecmp */
#include "workflow.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "herr.h"
#include "wfmsg.h"

/* ------------------------------------------------------------------ basics */

static char *dupn(const char *s, size_t n) {
    char *p = malloc(n + 1);
    if (!p) return NULL;
    if (n) memcpy(p, s, n);
    p[n] = 0;
    return p;
}

static int oom(void) { return he_set(HE_ENOMEM, "workflow: out of memory"); }

/* Names op id as the subject of the error rc just recorded, unless an
 * operator nested in it already is (herr.h he_op). Returns rc. */
static int op_err(const char *id, int rc) {
    if (rc && !*he_op()) he_set_op(id);
    return rc;
}

/* Grows *v (elements of size sz) so that it can hold need elements. */
static int grow(void **v, size_t *cap, size_t need, size_t sz) {
    if (need <= *cap) return 0;
    size_t nc = *cap ? *cap * 2 : 8;
    while (nc < need) nc *= 2;
    void *p = realloc(*v, nc * sz);
    if (!p) return oom();
    *v = p;
    *cap = nc;
    return 0;
}

static const char *const kind_names[WF_KIND_COUNT] = {"llm", "tool", "map", "join", "loop"};

const char *wf_kind_name(wf_kind kind) {
    return (unsigned)kind < WF_KIND_COUNT ? kind_names[kind] : "?";
}

int wf_kind_from_name(const char *s) {
    if (!s) return -1;
    for (int k = 0; k < WF_KIND_COUNT; k++)
        if (strcmp(s, kind_names[k]) == 0) return k;
    return -1;
}

static bool name_char(unsigned char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' ||
           c == '-' || c == '.';
}

static bool valid_name_n(const char *s, size_t n) {
    if (!s || n == 0 || n > WF_MAX_ID_LEN) return false;
    for (size_t i = 0; i < n; i++)
        if (!name_char((unsigned char)s[i])) return false;
    return true;
}

bool wf_valid_name(const char *s) { return s && valid_name_n(s, strnlen(s, WF_MAX_ID_LEN + 1)); }

int wf_set_str(char **dst, const char *s) {
    char *p = NULL;
    if (s && !(p = strdup(s))) return oom();
    free(*dst);
    *dst = p;
    return 0;
}

/* ------------------------------------------------------- build and destroy */

static void tmpl_free(wf_tmpl *t) {
    for (size_t i = 0; i < t->n; i++) free(t->v[i].s);
    free(t->v);
    memset(t, 0, sizeof *t);
}

static void op_free(wf_op *op) {
    if (!op) return;
    free(op->id);
    free(op->description);
    tmpl_free(&op->llm.prompt);
    wfmsg_free(op);
    free(op->llm.model);
    for (size_t i = 0; i < op->llm.n_stop; i++) free(op->llm.stop[i]);
    free(op->llm.stop);
    free(op->tool.method);
    tmpl_free(&op->tool.url);
    tmpl_free(&op->tool.body);
    for (size_t i = 0; i < op->tool.n_headers; i++) {
        free(op->tool.headers[i].key);
        free(op->tool.headers[i].value);
    }
    free(op->tool.headers);
    free(op->map.over.s);
    tmpl_free(&op->join.parts);
    free(op->join.separator);
    free(op->loop.until_contains);
    free(op->loop.output_id);
    free(op->deps);
    free(op->order);
    free(op);
}

wf_t *wf_new(void) {
    wf_t *wf = calloc(1, sizeof *wf);
    if (!wf) {
        oom();
        return NULL;
    }
    wf->output = -1;
    return wf;
}

void wf_destroy(wf_t **wf_p) {
    if (!wf_p || !*wf_p) return;
    wf_t *wf = *wf_p;
    free(wf->name);
    free(wf->description);
    for (size_t i = 0; i < wf->n_inputs; i++) {
        free(wf->inputs[i].name);
        free(wf->inputs[i].def);
        free(wf->inputs[i].description);
    }
    free(wf->inputs);
    for (size_t i = 0; i < wf->n_ops; i++) op_free(wf->ops[i]);
    free(wf->ops);
    for (size_t i = 0; i < wf->n_allow_hosts; i++) free(wf->allow_hosts[i]);
    free(wf->allow_hosts);
    free(wf->output_id);
    free(wf->order);
    free(wf->index);
    free(wf);
    *wf_p = NULL;
}

int wf_add_op(wf_t *wf, int parent, const char *id, wf_kind kind) {
    if (!wf || !id || (unsigned)kind >= WF_KIND_COUNT || parent < -1 ||
        (parent >= 0 && (size_t)parent >= wf->n_ops))
        return he_set(HE_EINVAL, "wf_add_op: bad argument");
    if (wf->n_ops >= WF_MAX_OPS)
        return he_set(HE_ELIMIT, "workflow has more than %d operators", WF_MAX_OPS);
    if (grow((void **)&wf->ops, &wf->cap_ops, wf->n_ops + 1, sizeof *wf->ops)) return HE_ENOMEM;
    wf_op *op = calloc(1, sizeof *op);
    if (!op || !(op->id = strdup(id)) || !(op->tool.method = strdup("GET"))) {
        op_free(op);
        return oom();
    }
    op->kind = kind;
    op->parent = parent;
    op->llm.max_tokens = WF_DEFAULT_MAX_TOKENS;
    op->llm.sampling.top_p = 1.0f;
    op->tool.timeout_ms = WF_DEFAULT_TIMEOUT_MS;
    op->tool.max_response_bytes = WF_DEFAULT_RESPONSE_BYTES;
    op->map.over.ref = -1;
    op->map.max_width = WF_DEFAULT_MAP_WIDTH;
    op->map.body = -1;
    op->loop.max_rounds = WF_DEFAULT_ROUNDS;
    op->loop.output = -1;
    wf->ops[wf->n_ops] = op;
    wf->valid = false;
    return (int)wf->n_ops++;
}

int wf_add_input(wf_t *wf, const char *name, const char *def, const char *description) {
    if (!wf || !name) return he_set(HE_EINVAL, "wf_add_input: bad argument");
    if (wf->n_inputs >= WF_MAX_INPUTS)
        return he_set(HE_ELIMIT, "workflow declares more than %d inputs", WF_MAX_INPUTS);
    size_t cap = wf->n_inputs; /* exact-size array: inputs are few */
    wf_input *p = realloc(wf->inputs, (cap + 1) * sizeof *p);
    if (!p) return oom();
    wf->inputs = p;
    wf_input *in = &p[wf->n_inputs];
    memset(in, 0, sizeof *in);
    if (!(in->name = strdup(name)) || (def && !(in->def = strdup(def))) ||
        (description && !(in->description = strdup(description)))) {
        free(in->name);
        free(in->def);
        return oom();
    }
    in->has_default = def != NULL;
    wf->n_inputs++;
    wf->valid = false;
    return 0;
}

/* Appends a copy of s to the string array *v (count *n, at most max). */
static int add_str(char ***v, size_t *n, size_t max, const char *s, const char *what) {
    if (*n >= max) return he_set(HE_ELIMIT, "more than %zu %s", max, what);
    char **p = realloc(*v, (*n + 1) * sizeof *p);
    if (!p) return oom();
    *v = p;
    if (!(p[*n] = strdup(s))) return oom();
    (*n)++;
    return 0;
}

int wf_add_host(wf_t *wf, const char *host) {
    if (!wf || !host) return he_set(HE_EINVAL, "wf_add_host: bad argument");
    wf->valid = false;
    return add_str(&wf->allow_hosts, &wf->n_allow_hosts, WF_MAX_HOSTS, host, "allowed hosts");
}

int wf_add_stop(wf_op *op, const char *s) {
    if (!op || !s) return he_set(HE_EINVAL, "wf_add_stop: bad argument");
    if (op->llm.n_stop >= WF_MAX_STOP)
        return he_set(HE_ELIMIT, "op '%s': more than %d stop strings", op->id, WF_MAX_STOP);
    return add_str(&op->llm.stop, &op->llm.n_stop, WF_MAX_STOP, s, "stop strings");
}

int wf_add_header(wf_op *op, const char *key, const char *value) {
    if (!op || !key || !value) return he_set(HE_EINVAL, "wf_add_header: bad argument");
    if (op->tool.n_headers >= WF_MAX_HEADERS)
        return he_set(HE_ELIMIT, "op '%s': more than %d headers", op->id, WF_MAX_HEADERS);
    wf_kv *p = realloc(op->tool.headers, (op->tool.n_headers + 1) * sizeof *p);
    if (!p) return oom();
    op->tool.headers = p;
    wf_kv *kv = &p[op->tool.n_headers];
    kv->key = strdup(key);
    kv->value = strdup(value);
    if (!kv->key || !kv->value) {
        free(kv->key);
        free(kv->value);
        return oom();
    }
    op->tool.n_headers++;
    return 0;
}

/* ---------------------------------------------------------------- templates */

/* Source size of one part in canonical template syntax. */
static size_t part_bytes(wf_part_kind kind, size_t len) {
    switch (kind) {
    case WF_PART_TEXT: return len;
    case WF_PART_INPUT: return len + 10; /* {{input.}} */
    case WF_PART_OP: return len + 7;     /* {{op.}} */
    default: return 8;                   /* {{item}} {{prev}} */
    }
}

int wf_tmpl_add(wf_tmpl *t, wf_part_kind kind, const char *s, size_t len) {
    if (!t || (unsigned)kind > WF_PART_PREV ||
        ((kind == WF_PART_TEXT || kind == WF_PART_INPUT || kind == WF_PART_OP) && !s && len))
        return he_set(HE_EINVAL, "wf_tmpl_add: bad argument");
    if (kind == WF_PART_TEXT) {
        if (len == 0) return 0;
        if (t->n && t->v[t->n - 1].kind == WF_PART_TEXT) { /* merge with the previous text */
            wf_part *p = &t->v[t->n - 1];
            char *ns = realloc(p->s, p->len + len + 1);
            if (!ns) return oom();
            memcpy(ns + p->len, s, len);
            p->len += len;
            ns[p->len] = 0;
            p->s = ns;
            t->bytes += len;
            return 0;
        }
    }
    if (grow((void **)&t->v, &t->cap, t->n + 1, sizeof *t->v)) return HE_ENOMEM;
    wf_part *p = &t->v[t->n];
    p->kind = kind;
    p->ref = -1;
    p->s = NULL;
    p->len = 0;
    if (kind == WF_PART_TEXT || kind == WF_PART_INPUT || kind == WF_PART_OP) {
        if (!(p->s = dupn(s ? s : "", len))) return oom();
        p->len = len;
    }
    t->n++;
    t->bytes += part_bytes(kind, len);
    return 0;
}

/* Longest placeholder body we look for "}}" in: "input." + a name + spaces. */
#define PH_SCAN (WF_MAX_ID_LEN + 32)

static int ph_parse(wf_tmpl *t, const char *b, size_t n, const char *oid) {
    while (n && (*b == ' ' || *b == '\t')) b++, n--;
    while (n && (b[n - 1] == ' ' || b[n - 1] == '\t')) n--;
    if (n == 4 && memcmp(b, "item", 4) == 0) return wf_tmpl_add(t, WF_PART_ITEM, NULL, 0);
    if (n == 4 && memcmp(b, "prev", 4) == 0) return wf_tmpl_add(t, WF_PART_PREV, NULL, 0);
    if (n > 6 && memcmp(b, "input.", 6) == 0 && valid_name_n(b + 6, n - 6))
        return wf_tmpl_add(t, WF_PART_INPUT, b + 6, n - 6);
    if (n > 3 && memcmp(b, "op.", 3) == 0 && valid_name_n(b + 3, n - 3))
        return wf_tmpl_add(t, WF_PART_OP, b + 3, n - 3);
    return he_set(HE_EFORMAT,
                  "op '%s': bad placeholder '{{%.*s}}' (expected {{input.NAME}}, {{op.ID}}, "
                  "{{item}} or {{prev}}; write \\{{ for a literal {{)",
                  oid, (int)(n > 60 ? 60 : n), b);
}

int wf_tmpl_parse(wf_tmpl *t, const char *src, size_t len, const char *op_id) {
    if (!t || (!src && len)) return he_set(HE_EINVAL, "wf_tmpl_parse: bad argument");
    const char *oid = op_id ? op_id : "?";
    size_t i = 0, start = 0; /* [start, i) is pending literal text */
    int rc;
    while (i < len) {
        if (src[i] == '\\' && i + 2 < len && src[i + 1] == '{' && src[i + 2] == '{') {
            if ((rc = wf_tmpl_add(t, WF_PART_TEXT, src + start, i - start)) ||
                (rc = wf_tmpl_add(t, WF_PART_TEXT, "{{", 2)))
                return rc;
            i += 3;
            start = i;
        } else if (src[i] == '{' && i + 1 < len && src[i + 1] == '{') {
            if (i + 2 < len && src[i + 2] == '{') { /* "{{{": the first '{' is literal */
                i++;
                continue;
            }
            size_t b = i + 2, j = b, end = len - 1; /* find "}}" at j, j+1 */
            if (end > b + PH_SCAN) end = b + PH_SCAN;
            while (j < end && !(src[j] == '}' && src[j + 1] == '}')) j++;
            if (j >= end)
                return he_set(HE_EFORMAT,
                              "op '%s': unterminated or overlong placeholder at byte %zu of a "
                              "template (write \\{{ for a literal {{)",
                              oid, i);
            if ((rc = wf_tmpl_add(t, WF_PART_TEXT, src + start, i - start)) ||
                (rc = ph_parse(t, src + b, j - b, oid)))
                return rc;
            i = j + 2;
            start = i;
        } else {
            i++;
        }
        if (t->bytes > WF_MAX_PROMPT_BYTES) break;
    }
    if ((rc = wf_tmpl_add(t, WF_PART_TEXT, src + start, i - start))) return rc;
    if (t->bytes > WF_MAX_PROMPT_BYTES)
        return he_set(HE_ELIMIT, "op '%s': template is longer than %u bytes", oid,
                      WF_MAX_PROMPT_BYTES);
    return 0;
}

/* --------------------------------------------------------------- validation */

static uint64_t fnv(const char *s) {
    uint64_t h = 1469598103934665603ULL;
    for (; *s; s++) h = (h ^ (unsigned char)*s) * 1099511628211ULL;
    return h;
}

/* Uses the id index while it exists (during and after validation). */
static int find_op(const wf_t *wf, const char *id) {
    if (!wf->index) {
        for (size_t i = 0; i < wf->n_ops; i++)
            if (strcmp(wf->ops[i]->id, id) == 0) return (int)i;
        return -1;
    }
    size_t mask = wf->index_cap - 1;
    for (size_t h = fnv(id) & mask;; h = (h + 1) & mask) {
        int k = wf->index[h];
        if (k < 0) return -1;
        if (strcmp(wf->ops[k]->id, id) == 0) return k;
    }
}

int wf_find(const wf_t *wf, const char *id) {
    if (!wf || !id) return -1;
    if (!wf->valid) { /* the index may be stale */
        for (size_t i = 0; i < wf->n_ops; i++)
            if (strcmp(wf->ops[i]->id, id) == 0) return (int)i;
        return -1;
    }
    return find_op(wf, id);
}

int wf_find_input(const wf_t *wf, const char *name) {
    if (!wf || !name) return -1;
    for (size_t i = 0; i < wf->n_inputs; i++)
        if (strcmp(wf->inputs[i].name, name) == 0) return (int)i;
    return -1;
}

static void clear_derived(wf_t *wf) {
    wf->valid = false;
    free(wf->order);
    wf->order = NULL;
    wf->n_order = 0;
    free(wf->index);
    wf->index = NULL;
    wf->index_cap = 0;
    wf->output = -1;
    for (size_t i = 0; i < wf->n_ops; i++) {
        wf_op *op = wf->ops[i];
        free(op->deps);
        free(op->order);
        op->deps = op->order = NULL;
        op->n_deps = op->n_order = 0;
        op->map.body = -1;
        op->map.over.ref = -1;
        op->loop.output = -1;
    }
}

/* Builds the id index; reports bad and duplicate ids. */
static int build_index(wf_t *wf) {
    size_t cap = 16;
    while (cap < 2 * wf->n_ops) cap *= 2;
    wf->index = malloc(cap * sizeof *wf->index);
    if (!wf->index) return oom();
    wf->index_cap = cap;
    for (size_t i = 0; i < cap; i++) wf->index[i] = -1;
    for (size_t i = 0; i < wf->n_ops; i++) {
        const char *id = wf->ops[i]->id;
        if (!wf_valid_name(id))
            return he_set(HE_EFORMAT, "operator id '%.*s' is not valid (want [A-Za-z0-9_.-]{1,%d})",
                          64, id ? id : "", WF_MAX_ID_LEN);
        size_t h = fnv(id) & (cap - 1);
        while (wf->index[h] >= 0) {
            if (strcmp(wf->ops[wf->index[h]]->id, id) == 0)
                return he_set(HE_EFORMAT, "duplicate operator id '%s'", id);
            h = (h + 1) & (cap - 1);
        }
        wf->index[h] = (int)i;
    }
    return 0;
}

static int check_tmpl(const wf_tmpl *t, const char *oid, const char *what, bool need) {
    if (need && t->n == 0) return he_set(HE_EFORMAT, "op '%s': %s must not be empty", oid, what);
    if (t->bytes > WF_MAX_PROMPT_BYTES)
        return he_set(HE_ELIMIT, "op '%s': %s is longer than %u bytes", oid, what,
                      WF_MAX_PROMPT_BYTES);
    for (size_t i = 0; i < t->n; i++) {
        const wf_part *p = &t->v[i];
        if ((unsigned)p->kind > WF_PART_PREV)
            return he_set(HE_EFORMAT, "op '%s': %s has a bad part", oid, what);
        if ((p->kind == WF_PART_INPUT || p->kind == WF_PART_OP) &&
            (!p->s || !valid_name_n(p->s, strlen(p->s))))
            return he_set(HE_EFORMAT, "op '%s': %s refers to a bad name '%.64s'", oid, what,
                          p->s ? p->s : "");
        if (p->kind == WF_PART_TEXT && !p->s)
            return he_set(HE_EFORMAT, "op '%s': %s has a bad part", oid, what);
    }
    return 0;
}

static bool header_token(const char *s) {
    if (!*s) return false;
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (c <= 32 || c >= 127 || strchr("()<>@,;:\\\"/[]?={}", c)) return false;
    }
    return true;
}

/* A url template must start with http:// or https://, unless it starts with a
 * placeholder (checked when rendered) or its leading text is a prefix of one. */
static bool url_scheme_ok(const wf_tmpl *t) {
    const wf_part *u = &t->v[0];
    if (u->kind != WF_PART_TEXT) return true;
    static const char *const schemes[] = {"http://", "https://"};
    for (int k = 0; k < 2; k++) {
        size_t n = strlen(schemes[k]);
        if (u->len >= n ? strncasecmp(u->s, schemes[k], n) == 0
                        : t->n > 1 && strncasecmp(u->s, schemes[k], u->len) == 0)
            return true;
    }
    return false;
}

static const char *const methods[] = {"GET", "POST", "PUT", "PATCH", "DELETE", "HEAD"};

/* Field checks of one op (no references). */
static int check_op(wf_t *wf, size_t i) {
    wf_op *op = wf->ops[i];
    const char *id = op->id;
    int rc;
    if ((unsigned)op->kind >= WF_KIND_COUNT)
        return he_set(HE_EUNKNOWN, "op '%s': unknown operator kind %d", id, (int)op->kind);
    if (op->parent >= 0) {
        if ((size_t)op->parent >= i)
            return he_set(HE_EFORMAT, "op '%s': parent must come before its body ops", id);
        wf_op *p = wf->ops[op->parent];
        if (p->kind == WF_MAP) {
            if (p->map.body >= 0)
                return he_set(HE_EFORMAT, "map '%s' has more than one body op", p->id);
            if (op->kind != WF_LLM && op->kind != WF_TOOL && op->kind != WF_JOIN)
                return he_set(HE_EFORMAT,
                              "map '%s': body op '%s' is a %s op (want llm, tool or join)", p->id,
                              id, wf_kind_name(op->kind));
            p->map.body = (int)i;
        } else if (p->kind == WF_LOOP) {
            if (op->kind == WF_LOOP)
                return he_set(HE_EFORMAT, "loop '%s': body op '%s' is a loop (loops do not nest)",
                              p->id, id);
            p->loop.output = (int)i; /* the last body op, unless output_id says otherwise */
        } else {
            return he_set(HE_EFORMAT, "op '%s': parent '%s' is a %s op, not a map or loop", id,
                          p->id, wf_kind_name(p->kind));
        }
    }
    switch (op->kind) {
    case WF_LLM: {
        const wf_sampling *s = &op->llm.sampling;
        if ((rc = wfmsg_derive(op))) return rc;
        for (size_t k = 0; k < op->llm.n_messages; k++)
            if ((rc = check_tmpl(&op->llm.messages[k].content, id, "a message's content", false))) return rc;
        if ((rc = check_tmpl(&op->llm.prompt, id, op->llm.n_messages ? "messages" : "prompt", true))) return rc;
        if (op->llm.max_tokens == 0)
            return he_set(HE_EFORMAT, "op '%s': max_tokens must be at least 1", id);
        if (op->llm.max_tokens > WF_MAX_TOKENS)
            return he_set(HE_ELIMIT, "op '%s': max_tokens %u exceeds %d", id, op->llm.max_tokens,
                          WF_MAX_TOKENS);
        if (!isfinite(s->temperature) || s->temperature < 0 || s->temperature > 100)
            return he_set(HE_EFORMAT, "op '%s': temperature must be in [0, 100]", id);
        if (!isfinite(s->top_p) || !(s->top_p > 0) || s->top_p > 1)
            return he_set(HE_EFORMAT, "op '%s': top_p must be in (0, 1]", id);
        if (op->llm.n_stop > WF_MAX_STOP)
            return he_set(HE_ELIMIT, "op '%s': more than %d stop strings", id, WF_MAX_STOP);
        for (size_t k = 0; k < op->llm.n_stop; k++) {
            size_t n = op->llm.stop[k] ? strlen(op->llm.stop[k]) : 0;
            if (n == 0) return he_set(HE_EFORMAT, "op '%s': empty stop string", id);
            if (n > WF_MAX_STOP_LEN)
                return he_set(HE_ELIMIT, "op '%s': stop string longer than %d bytes", id,
                              WF_MAX_STOP_LEN);
        }
        break;
    }
    case WF_TOOL: {
        size_t m = 0, nm = sizeof methods / sizeof *methods;
        while (m < nm && !(op->tool.method && strcmp(op->tool.method, methods[m]) == 0)) m++;
        if (m == nm)
            return he_set(HE_EFORMAT,
                          "op '%s': method '%.16s' is not GET, POST, PUT, PATCH, "
                          "DELETE or HEAD",
                          id, op->tool.method ? op->tool.method : "");
        if ((rc = check_tmpl(&op->tool.url, id, "url", true)) ||
            (rc = check_tmpl(&op->tool.body, id, "body", false)))
            return rc;
        if (!url_scheme_ok(&op->tool.url))
            return he_set(HE_EFORMAT, "op '%s': url must start with http:// or https://", id);
        if (op->tool.timeout_ms == 0)
            return he_set(HE_EFORMAT, "op '%s': timeout_ms must be at least 1", id);
        if (op->tool.timeout_ms > WF_MAX_TIMEOUT_MS)
            return he_set(HE_ELIMIT, "op '%s': timeout_ms exceeds %u", id, WF_MAX_TIMEOUT_MS);
        if (op->tool.max_response_bytes == 0)
            return he_set(HE_EFORMAT, "op '%s': max_response_bytes must be at least 1", id);
        if (op->tool.max_response_bytes > WF_MAX_RESPONSE_BYTES)
            return he_set(HE_ELIMIT, "op '%s': max_response_bytes exceeds %u", id,
                          WF_MAX_RESPONSE_BYTES);
        if (op->tool.n_headers > WF_MAX_HEADERS)
            return he_set(HE_ELIMIT, "op '%s': more than %d headers", id, WF_MAX_HEADERS);
        for (size_t k = 0; k < op->tool.n_headers; k++) {
            const wf_kv *h = &op->tool.headers[k];
            if (!h->key || !h->value || !header_token(h->key) || strpbrk(h->value, "\r\n"))
                return he_set(HE_EFORMAT, "op '%s': bad header '%.64s'", id, h->key ? h->key : "");
        }
        break;
    }
    case WF_MAP:
        if ((op->map.over.kind != WF_PART_OP && op->map.over.kind != WF_PART_INPUT) ||
            !op->map.over.s || !valid_name_n(op->map.over.s, strlen(op->map.over.s)))
            return he_set(HE_EFORMAT, "op '%s': map needs 'over' (\"op.ID\" or \"input.NAME\")",
                          id);
        if (op->map.max_width == 0)
            return he_set(HE_EFORMAT, "op '%s': max_width must be at least 1", id);
        if (op->map.max_width > WF_MAX_MAP_WIDTH)
            return he_set(HE_ELIMIT, "op '%s': max_width %u exceeds %d", id, op->map.max_width,
                          WF_MAX_MAP_WIDTH);
        if ((unsigned)op->map.split > WF_SPLIT_JSON)
            return he_set(HE_EFORMAT, "op '%s': bad split mode", id);
        break;
    case WF_JOIN:
        if ((rc = check_tmpl(&op->join.parts, id, "parts", true))) return rc;
        if (op->join.separator && strlen(op->join.separator) > WF_MAX_PROMPT_BYTES)
            return he_set(HE_ELIMIT, "op '%s': separator too long", id);
        break;
    case WF_LOOP:
        if (op->loop.max_rounds == 0)
            return he_set(HE_EFORMAT, "op '%s': max_rounds must be at least 1", id);
        if (op->loop.max_rounds > WF_MAX_ROUNDS)
            return he_set(HE_ELIMIT, "op '%s': max_rounds %u exceeds %d", id, op->loop.max_rounds,
                          WF_MAX_ROUNDS);
        if (op->loop.until_contains && strlen(op->loop.until_contains) > WF_MAX_PROMPT_BYTES)
            return he_set(HE_ELIMIT, "op '%s': until_contains too long", id);
        break;
    default: break;
    }
    return 0;
}

typedef struct {
    int to, from; /* ops[to] waits for ops[from] */
} edge;

typedef struct {
    edge *v;
    size_t n, cap;
} edges;

/* Resolves one part of a template of op i; records the dependency edge. */
static int resolve(wf_t *wf, int i, wf_part *p, edges *E) {
    const char *id = wf->ops[i]->id;
    switch (p->kind) {
    case WF_PART_INPUT:
        p->ref = wf_find_input(wf, p->s);
        if (p->ref < 0) return he_set(HE_EREF, "op '%s' references unknown input '%s'", id, p->s);
        return 0;
    case WF_PART_OP: {
        int j = find_op(wf, p->s);
        if (j < 0) return he_set(HE_EREF, "op '%s' references unknown op '%s'", id, p->s);
        if (j == i) return he_set(HE_ECYCLE, "op '%s' references itself", id);
        int tp = wf->ops[j]->parent, a = i;
        while (wf->ops[a]->parent != tp) { /* climb to the ancestor in j's scope */
            a = wf->ops[a]->parent;
            if (a < 0)
                return he_set(HE_EREF,
                              "op '%s' references '%s', which is inside %s '%s' (only ops of the "
                              "same or an enclosing scope are visible)",
                              id, p->s, wf_kind_name(wf->ops[tp]->kind), wf->ops[tp]->id);
        }
        if (a == j)
            return he_set(HE_ECYCLE, "op '%s' references its enclosing %s '%s'%s", id,
                          wf_kind_name(wf->ops[j]->kind), p->s,
                          wf->ops[j]->kind == WF_LOOP ? " (use {{prev}} for the last round)" : "");
        p->ref = j;
        if (E->n && E->v[E->n - 1].to == a && E->v[E->n - 1].from == j) return 0;
        if (grow((void **)&E->v, &E->cap, E->n + 1, sizeof *E->v)) return HE_ENOMEM;
        E->v[E->n++] = (edge){a, j};
        return 0;
    }
    case WF_PART_ITEM:
    case WF_PART_PREV: {
        wf_kind want = p->kind == WF_PART_ITEM ? WF_MAP : WF_LOOP;
        for (int a = wf->ops[i]->parent; a >= 0; a = wf->ops[a]->parent)
            if (wf->ops[a]->kind == want) return 0;
        return he_set(HE_EREF, "op '%s' uses {{%s}} outside a %s body", id,
                      p->kind == WF_PART_ITEM ? "item" : "prev", wf_kind_name(want));
    }
    default: p->ref = -1; return 0;
    }
}

static int resolve_tmpl(wf_t *wf, int i, wf_tmpl *t, edges *E) {
    for (size_t k = 0; k < t->n; k++) {
        int rc = resolve(wf, i, &t->v[k], E);
        if (rc) return rc;
    }
    return 0;
}

static int edge_cmp(const void *a, const void *b) {
    const edge *x = a, *y = b;
    if (x->to != y->to) return x->to < y->to ? -1 : 1;
    return (x->from > y->from) - (x->from < y->from);
}

/* Min-heap of op indices (ready ops, lowest index first). */
static void heap_push(int *h, size_t *n, int v) {
    size_t i = (*n)++;
    while (i && h[(i - 1) / 2] > v) {
        h[i] = h[(i - 1) / 2];
        i = (i - 1) / 2;
    }
    h[i] = v;
}

static int heap_pop(int *h, size_t *n) {
    int top = h[0], v = h[--(*n)];
    size_t i = 0;
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= *n) break;
        if (c + 1 < *n && h[c + 1] < h[c]) c++;
        if (h[c] >= v) break;
        h[i] = h[c];
        i = c;
    }
    if (*n) h[i] = v;
    return top;
}

/* Reports a cycle among the ops left with indeg > 0 after Kahn. */
static int report_cycle(const wf_t *wf, const int *indeg) {
    size_t n = wf->n_ops;
    int cur = -1;
    for (size_t i = 0; i < n && cur < 0; i++)
        if (indeg[i] > 0) cur = (int)i;
    /* Every remaining op has a remaining dep; after n steps we are on a cycle. */
    for (size_t step = 0; step < n; step++) {
        const wf_op *op = wf->ops[cur];
        for (size_t k = 0; k < op->n_deps; k++)
            if (indeg[op->deps[k]] > 0) {
                cur = op->deps[k];
                break;
            }
    }
    char path[360];
    size_t len = 0;
    int c = cur;
    do {
        int w = snprintf(path + len, sizeof path - len, "%s%s", len ? " -> " : "", wf->ops[c]->id);
        if (w < 0 || (size_t)w >= sizeof path - len) {
            len = sizeof path - 1;
            break;
        }
        len += (size_t)w;
        const wf_op *op = wf->ops[c];
        for (size_t k = 0; k < op->n_deps; k++)
            if (indeg[op->deps[k]] > 0) {
                c = op->deps[k];
                break;
            }
    } while (c != cur);
    return op_err(wf->ops[cur]->id, he_set(HE_ECYCLE, "op '%s' is on a cycle: %s -> %s (each needs the next)",
                                           wf->ops[cur]->id, path, wf->ops[cur]->id));
}

/* Kahn's algorithm over all ops (edges stay within scopes), then the order is
 * split per scope. O(ops + edges) plus heap work. */
static int topo(wf_t *wf) {
    size_t n = wf->n_ops;
    int rc = HE_ENOMEM;
    int *indeg = calloc(n, sizeof *indeg), *cnt = calloc(n + 1, sizeof *cnt);
    int *heap = malloc(n * sizeof *heap), *order = malloc(n * sizeof *order);
    int *dep_of = NULL, *nscope = calloc(n + 1, sizeof *nscope);
    size_t ne = 0;
    if (!indeg || !cnt || !heap || !order || !nscope) goto out;
    for (size_t i = 0; i < n; i++) {
        indeg[i] = (int)wf->ops[i]->n_deps;
        ne += wf->ops[i]->n_deps;
        for (size_t k = 0; k < wf->ops[i]->n_deps; k++) cnt[wf->ops[i]->deps[k] + 1]++;
    }
    /* dependents of j: dep_of[cnt[j] .. cnt[j+1]) */
    for (size_t j = 0; j < n; j++) cnt[j + 1] += cnt[j];
    if (!(dep_of = malloc((ne ? ne : 1) * sizeof *dep_of))) goto out;
    {
        int *fill = calloc(n, sizeof *fill);
        if (!fill) goto out;
        for (size_t i = 0; i < n; i++)
            for (size_t k = 0; k < wf->ops[i]->n_deps; k++) {
                int j = wf->ops[i]->deps[k];
                dep_of[cnt[j] + fill[j]++] = (int)i;
            }
        free(fill);
    }
    size_t nh = 0, no = 0;
    for (size_t i = 0; i < n; i++)
        if (!indeg[i]) heap_push(heap, &nh, (int)i);
    while (nh) {
        int j = heap_pop(heap, &nh);
        order[no++] = j;
        for (int k = cnt[j]; k < cnt[j + 1]; k++)
            if (--indeg[dep_of[k]] == 0) heap_push(heap, &nh, dep_of[k]);
    }
    if (no < n) {
        rc = report_cycle(wf, indeg);
        goto out;
    }
    /* split per scope: nscope[p+1] = ops whose parent is p */
    for (size_t i = 0; i < n; i++) nscope[wf->ops[i]->parent + 1]++;
    if (!(wf->order = malloc((nscope[0] ? nscope[0] : 1) * sizeof *wf->order))) goto out;
    for (size_t i = 0; i < n; i++) {
        wf_op *op = wf->ops[i];
        if (nscope[i + 1] && !(op->order = malloc(nscope[i + 1] * sizeof *op->order))) goto out;
    }
    for (size_t k = 0; k < n; k++) {
        int i = order[k], p = wf->ops[i]->parent;
        if (p < 0)
            wf->order[wf->n_order++] = i;
        else
            wf->ops[p]->order[wf->ops[p]->n_order++] = i;
    }
    /* the job's output: output_id, else the last top-level op nothing depends on */
    if (wf->output_id) {
        int j = find_op(wf, wf->output_id);
        if (j < 0 || wf->ops[j]->parent != -1) {
            rc = he_set(HE_EREF, "workflow output '%.64s' is not a top-level op", wf->output_id);
            goto out;
        }
        wf->output = j;
    } else {
        for (size_t i = n; i-- > 0 && wf->output < 0;)
            if (wf->ops[i]->parent == -1 && cnt[i + 1] == cnt[i]) wf->output = (int)i;
    }
    rc = 0;
out:
    if (rc == HE_ENOMEM) oom();
    free(indeg);
    free(cnt);
    free(heap);
    free(order);
    free(dep_of);
    free(nscope);
    return rc;
}

int wf_validate(wf_t *wf) {
    if (!wf) return he_set(HE_EINVAL, "wf_validate: NULL workflow");
    he_set_op(NULL); /* an error below names its operator, if any */
    clear_derived(wf);
    if (wf->n_ops == 0) return he_set(HE_EFORMAT, "workflow has no operators");
    if (wf->n_ops > WF_MAX_OPS)
        return he_set(HE_ELIMIT, "workflow has %zu operators (limit %d)", wf->n_ops, WF_MAX_OPS);
    if (wf->n_inputs > WF_MAX_INPUTS)
        return he_set(HE_ELIMIT, "workflow declares more than %d inputs", WF_MAX_INPUTS);
    for (size_t i = 0; i < wf->n_inputs; i++) {
        const wf_input *in = &wf->inputs[i];
        if (!wf_valid_name(in->name))
            return he_set(HE_EFORMAT, "input name '%.64s' is not valid (want [A-Za-z0-9_.-]{1,%d})",
                          in->name ? in->name : "", WF_MAX_ID_LEN);
        for (size_t k = 0; k < i; k++)
            if (strcmp(wf->inputs[k].name, in->name) == 0)
                return he_set(HE_EFORMAT, "duplicate input '%s'", in->name);
        if (in->has_default && !in->def)
            return he_set(HE_EFORMAT, "input '%s': has_default without a value", in->name);
        if (in->def && strlen(in->def) > WF_MAX_PROMPT_BYTES)
            return he_set(HE_ELIMIT, "input '%s': default longer than %u bytes", in->name,
                          WF_MAX_PROMPT_BYTES);
    }
    if (wf->n_allow_hosts > WF_MAX_HOSTS)
        return he_set(HE_ELIMIT, "more than %d allowed hosts", WF_MAX_HOSTS);
    for (size_t i = 0; i < wf->n_allow_hosts; i++) {
        const char *h = wf->allow_hosts[i];
        if (!h || !*h || strlen(h) > 255 || strpbrk(h, "/ \t\r\n@"))
            return he_set(HE_EFORMAT, "allowed host '%.64s' is not a host[:port]", h ? h : "");
    }
    int rc = build_index(wf);
    if (rc) return rc;
    for (size_t i = 0; i < wf->n_ops; i++)
        if ((rc = check_op(wf, i))) return op_err(wf->ops[i]->id, rc);
    for (size_t i = 0; i < wf->n_ops; i++) {
        wf_op *op = wf->ops[i];
        if (op->kind == WF_MAP && op->map.body < 0)
            return op_err(op->id, he_set(HE_EFORMAT, "map '%s' has no body op", op->id));
        if (op->kind == WF_LOOP) {
            if (op->loop.output < 0)
                return op_err(op->id, he_set(HE_EFORMAT, "loop '%s' has no body ops", op->id));
            if (op->loop.output_id) {
                int j = find_op(wf, op->loop.output_id);
                if (j < 0 || wf->ops[j]->parent != (int)i)
                    return op_err(op->id, he_set(HE_EREF, "loop '%s': output '%.64s' is not one of its body ops",
                                                 op->id, op->loop.output_id));
                op->loop.output = j;
            }
        }
    }
    /* references -> edges (to waits for from), then per-op sorted unique deps */
    edges E = {0};
    for (size_t i = 0; i < wf->n_ops && !rc; i++) {
        wf_op *op = wf->ops[i];
        switch (op->kind) {
        case WF_LLM:
            rc = resolve_tmpl(wf, (int)i, &op->llm.prompt, &E);
            for (size_t k = 0; k < op->llm.n_messages && !rc; k++) /* tasks render the messages themselves */
                rc = resolve_tmpl(wf, (int)i, &op->llm.messages[k].content, &E);
            break;
        case WF_TOOL:
            if (!(rc = resolve_tmpl(wf, (int)i, &op->tool.url, &E)))
                rc = resolve_tmpl(wf, (int)i, &op->tool.body, &E);
            break;
        case WF_MAP: rc = resolve(wf, (int)i, &op->map.over, &E); break;
        case WF_JOIN: rc = resolve_tmpl(wf, (int)i, &op->join.parts, &E); break;
        default: break;
        }
        op_err(op->id, rc);
    }
    if (!rc && E.n) {
        qsort(E.v, E.n, sizeof *E.v, edge_cmp);
        for (size_t k = 0; k < E.n && !rc;) {
            size_t e = k;
            while (e < E.n && E.v[e].to == E.v[k].to) e++;
            wf_op *op = wf->ops[E.v[k].to];
            if (!(op->deps = malloc((e - k) * sizeof *op->deps))) {
                rc = oom();
                break;
            }
            for (size_t q = k; q < e; q++)
                if (!op->n_deps || op->deps[op->n_deps - 1] != E.v[q].from)
                    op->deps[op->n_deps++] = E.v[q].from;
            k = e;
        }
    }
    free(E.v);
    if (rc || (rc = topo(wf))) return rc;
    wf->valid = true;
    return 0;
}
