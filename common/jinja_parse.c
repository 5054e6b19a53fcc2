/* jinja_parse: template source -> syntax tree (see jinja.h for the subset).
 *
 * Two passes: lex() cuts the source into text runs and tag contents (applying
 * `-` whitespace control, trim_blocks and lstrip_blocks) and tokenizes the
 * expressions inside tags; a recursive-descent parser then builds the tree
 * with Jinja's precedence (ternary < or < and < not < comparisons/in/is <
 * ~ < + - < * / // % < unary - < postfix: . [] () | filter). Work is linear in
 * the source length; the tree lives in the template's arena.
 *
 * Tree shapes: N_IF a=cond v=then v2=else (elif is an N_IF alone in v2);
 * N_FOR s[,s2]=names a=iterable c=filter v=body v2=else; N_SET s=name
 * [s2=attribute] a=value; E_ATTR a.s; E_INDEX a[b]; E_SLICE a[b:c:d];
 * E_CALL a(v, kw=v2); E_FILTER a|s(v, kw=v2); E_TEST a is [not] s(v);
 * E_COND a if b else c; E_DICT {v: v2}.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "herr.h"
#include "jinja_impl.h"

/* ---- arena */

struct jj_blk {
    jj_blk *next;
    size_t used, cap;
    max_align_t data[];
};

void *jj_alloc(jj_arena *a, size_t n) {
    n = (n + sizeof(max_align_t) - 1) / sizeof(max_align_t) * sizeof(max_align_t);
    if (n > a->limit - a->total) return NULL;
    jj_blk *b = a->head;
    if (!b || b->cap - b->used < n) {
        size_t cap = n > 65536 ? n : 65536;
        b = malloc(sizeof *b + cap);
        if (!b) return NULL;
        b->used = 0;
        b->cap = cap;
        b->next = a->head;
        a->head = b;
    }
    void *p = (char *)b->data + b->used;
    b->used += n;
    a->total += n;
    memset(p, 0, n);
    return p;
}

char *jj_strdup(jj_arena *a, const char *s, size_t n) {
    char *p = jj_alloc(a, n + 1);
    if (p) {
        if (n) memcpy(p, s, n);
        p[n] = 0;
    }
    return p;
}

void jj_arena_free(jj_arena *a) {
    while (a->head) {
        jj_blk *n = a->head->next;
        free(a->head);
        a->head = n;
    }
    a->total = 0;
}

/* ---- lexer */

typedef enum { T_TEXT, T_OUT, T_STMT, T_END, T_NAME, T_STR, T_INT, T_FLOAT, T_OP, T_EOF } tk_kind;

typedef struct {
    tk_kind k;
    const char *s; /* T_TEXT, T_NAME, T_STR (unescaped), T_OP: the operator */
    size_t n;
    int64_t i;
    double f;
    int line;
} tok;

typedef struct {
    jj_arena *ar;
    const char *src;
    size_t len;
    tok *t;
    size_t nt, cap;
    size_t pos; /* parser cursor into t */
    int err;
} lx;

static int line_of(const char *src, const char *p) {
    int l = 1;
    for (const char *q = src; q < p; q++) l += *q == '\n';
    return l;
}

static int push(lx *x, tok t) {
    if (x->nt == x->cap) {
        size_t c = x->cap ? x->cap * 2 : 256;
        tok *v = realloc(x->t, c * sizeof *v);
        if (!v) return he_set(HE_ENOMEM, "chat template: out of memory");
        x->t = v;
        x->cap = c;
    }
    x->t[x->nt++] = t;
    return 0;
}

static bool is_ws(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v'; }
static bool is_id0(char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_'; }
static bool is_dig(char c) { return c >= '0' && c <= '9'; }

/* Unescapes a Python-style string literal body. */
static int str_lit(lx *x, const char *p, size_t n, tok *t) {
    char *o = jj_alloc(x->ar, n + 1);
    if (!o) return he_set(HE_ELIMIT, "chat template: too large");
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        char c = p[i];
        if (c == '\\' && i + 1 < n) {
            char e = p[++i];
            switch (e) {
            case 'n': c = '\n'; break;
            case 't': c = '\t'; break;
            case 'r': c = '\r'; break;
            case '\\': c = '\\'; break;
            case '\'': c = '\''; break;
            case '"': c = '"'; break;
            default: o[k++] = '\\'; c = e; break;
            }
        }
        o[k++] = c;
    }
    t->s = o;
    t->n = k;
    return 0;
}

/* Tokenizes the expression text [p, e) of a tag. */
static int lex_expr(lx *x, const char *p, const char *e) {
    static const char *const ops2[] = {"==", "!=", "<=", ">=", "//", "**"};
    while (p < e) {
        if (is_ws(*p)) {
            p++;
            continue;
        }
        tok t = {.line = line_of(x->src, p)};
        if (is_id0(*p)) {
            const char *q = p;
            while (q < e && (is_id0(*q) || is_dig(*q))) q++;
            t.k = T_NAME, t.s = p, t.n = (size_t)(q - p);
            p = q;
        } else if (is_dig(*p)) {
            const char *q = p;
            while (q < e && is_dig(*q)) q++;
            if (q + 1 < e && *q == '.' && is_dig(q[1])) {
                q++;
                while (q < e && is_dig(*q)) q++;
                t.k = T_FLOAT, t.f = strtod(p, NULL);
            } else {
                t.k = T_INT, t.i = strtoll(p, NULL, 10);
            }
            p = q;
        } else if (*p == '\'' || *p == '"') {
            const char *q = p + 1;
            while (q < e && *q != *p) q += (*q == '\\' && q + 1 < e) ? 2 : 1;
            if (q >= e) return he_set(HE_EFORMAT, "chat template: line %d: unterminated string", t.line);
            t.k = T_STR;
            int rc = str_lit(x, p + 1, (size_t)(q - p - 1), &t);
            if (rc) return rc;
            p = q + 1;
        } else {
            t.k = T_OP, t.s = p, t.n = 1;
            for (size_t k = 0; k < sizeof ops2 / sizeof *ops2; k++)
                if (p + 1 < e && p[0] == ops2[k][0] && p[1] == ops2[k][1]) t.n = 2;
            if (!strchr("()[]{}.,:|~+-*/%<>=!", *p))
                return he_set(HE_EFORMAT, "chat template: line %d: unexpected character '%c'", t.line, *p);
            p += t.n;
        }
        int rc = push(x, t);
        if (rc) return rc;
    }
    return 0;
}

/* Cuts the source into text and tags. */
static int lex(lx *x) {
    const char *s = x->src, *end = s + x->len;
    if (end > s && end[-1] == '\n') end--; /* keep_trailing_newline = False */
    const char *p = s;
    bool strip_next = false, trim_nl = false;
    while (p < end) {
        const char *o = p;
        while (o < end && !(o[0] == '{' && o + 1 < end && (o[1] == '{' || o[1] == '%' || o[1] == '#'))) o++;
        const char *ts = p, *te = o;
        if (strip_next)
            while (ts < te && is_ws(*ts)) ts++;
        else if (trim_nl && ts < te && *ts == '\n')
            ts++;
        else if (trim_nl && ts + 1 < te && ts[0] == '\r' && ts[1] == '\n')
            ts += 2;
        strip_next = trim_nl = false;
        char kind = o < end ? o[1] : 0;
        bool minus_l = o + 2 < end && o[2] == '-', plus_l = o + 2 < end && o[2] == '+';
        if (kind && minus_l) {
            while (te > ts && is_ws(te[-1])) te--;
        } else if ((kind == '%' || kind == '#') && !plus_l) {
            /* lstrip_blocks: spaces and tabs between a line start and the tag go */
            const char *l = o;
            while (l > p && l[-1] != '\n') l--;
            bool line_start = l > p || p == s || p[-1] == '\n';
            const char *q = l;
            while (q < o && (*q == ' ' || *q == '\t')) q++;
            if (line_start && q == o && l < te) te = l > ts ? l : ts;
        }
        if (te > ts) {
            int rc = push(x, (tok){.k = T_TEXT, .s = ts, .n = (size_t)(te - ts), .line = line_of(s, ts)});
            if (rc) return rc;
        }
        if (!kind) break;
        const char *cs = o + 2 + (minus_l || plus_l);
        const char *close = kind == '{' ? "}}" : kind == '%' ? "%}" : "#}";
        const char *ce = cs;
        while (ce + 1 < end && !(ce[0] == close[0] && ce[1] == close[1])) {
            if (kind != '#' && (*ce == '\'' || *ce == '"')) { /* skip strings: they may hold "}}" */
                char qc = *ce++;
                while (ce < end && *ce != qc) ce += (*ce == '\\' && ce + 1 < end) ? 2 : 1;
            }
            ce++;
        }
        if (ce + 1 >= end)
            return he_set(HE_EFORMAT, "chat template: line %d: unclosed '{%c'", line_of(s, o), kind);
        bool minus_r = ce > cs && ce[-1] == '-';
        const char *ie = minus_r ? ce - 1 : ce;
        p = ce + 2;
        strip_next = minus_r;
        trim_nl = kind != '{';
        if (kind == '#') continue;
        int rc = push(x, (tok){.k = kind == '{' ? T_OUT : T_STMT, .line = line_of(s, o)});
        if (!rc) rc = lex_expr(x, cs, ie);
        if (!rc) rc = push(x, (tok){.k = T_END, .line = line_of(s, ce)});
        if (rc) return rc;
    }
    return push(x, (tok){.k = T_EOF, .line = line_of(s, end)});
}

/* ---- parser */

static tok *peek(lx *x) { return &x->t[x->pos]; }
static tok *next(lx *x) { return x->pos + 1 < x->nt ? &x->t[x->pos++] : &x->t[x->pos]; }
static bool is_op(const tok *t, const char *op) { return t->k == T_OP && t->n == strlen(op) && !memcmp(t->s, op, t->n); }
static bool is_kw(const tok *t, const char *kw) { return t->k == T_NAME && t->n == strlen(kw) && !memcmp(t->s, kw, t->n); }

static jnode *fail(lx *x, const tok *t, const char *what) {
    if (!x->err)
        x->err = he_set(HE_EFORMAT, "chat template: line %d: %s near '%.*s'", t->line, what,
                        (int)(t->k == T_END ? 2 : t->n > 20 ? 20 : t->n), t->k == T_END ? "%}" : t->s ? t->s : "");
    return NULL;
}

static jnode *node(lx *x, jn_kind k, const tok *t) {
    jnode *n = jj_alloc(x->ar, sizeof *n);
    if (!n) {
        if (!x->err) x->err = he_set(HE_ELIMIT, "chat template: too large");
        return NULL;
    }
    n->kind = k;
    n->line = t->line;
    return n;
}

static bool expect(lx *x, const char *op) {
    if (is_op(peek(x), op)) {
        next(x);
        return true;
    }
    char m[32];
    snprintf(m, sizeof m, "expected '%s'", op);
    fail(x, peek(x), m);
    return false;
}

/* growable jnode* array in the arena */
static bool vpush(lx *x, jnode ***v, size_t *n, jnode *e) {
    if ((*n & (*n - 1)) == 0) { /* n is 0 or a power of two: grow */
        jnode **nv = jj_alloc(x->ar, sizeof(jnode *) * (*n ? *n * 2 : 4));
        if (!nv) {
            if (!x->err) x->err = he_set(HE_ELIMIT, "chat template: too large");
            return false;
        }
        if (*n) memcpy(nv, *v, sizeof(jnode *) * *n);
        *v = nv;
    }
    (*v)[(*n)++] = e;
    return true;
}

static jnode *expr(lx *x);
static jnode *expr_or(lx *x);

/* (args, kw=args) after '(' was consumed */
static bool call_args(lx *x, jnode *n) {
    while (!is_op(peek(x), ")")) {
        if (peek(x)->k == T_NAME && is_op(&x->t[x->pos + 1], "=")) {
            tok *k = next(x);
            next(x);
            jnode *v = expr(x);
            if (!v || !vpush(x, &n->v2, &n->nv2, v)) return false;
            const char **kw = jj_alloc(x->ar, sizeof *kw * n->nv2);
            size_t *kwn = jj_alloc(x->ar, sizeof *kwn * n->nv2);
            if (!kw || !kwn) return false;
            if (n->nv2 > 1) {
                memcpy(kw, n->kw, sizeof *kw * (n->nv2 - 1));
                memcpy(kwn, n->kwn, sizeof *kwn * (n->nv2 - 1));
            }
            kw[n->nv2 - 1] = k->s;
            kwn[n->nv2 - 1] = k->n;
            n->kw = kw;
            n->kwn = kwn;
        } else {
            jnode *v = expr(x);
            if (!v || !vpush(x, &n->v, &n->nv, v)) return false;
        }
        if (!is_op(peek(x), ",")) break;
        next(x);
    }
    return expect(x, ")");
}

static jnode *primary(lx *x) {
    tok *t = next(x);
    jnode *n = NULL;
    switch (t->k) {
    case T_STR:
        n = node(x, E_STR, t);
        if (n) n->s = t->s, n->n = t->n;
        while (n && peek(x)->k == T_STR) { /* adjacent literals concatenate */
            tok *u = next(x);
            char *c = jj_alloc(x->ar, n->n + u->n + 1);
            if (!c) return fail(x, u, "too large");
            memcpy(c, n->s, n->n);
            memcpy(c + n->n, u->s, u->n);
            n->s = c;
            n->n += u->n;
        }
        return n;
    case T_INT: n = node(x, E_INT, t); if (n) n->i = t->i; return n;
    case T_FLOAT: n = node(x, E_FLOAT, t); if (n) n->f = t->f; return n;
    case T_NAME:
        if (is_kw(t, "true") || is_kw(t, "True") || is_kw(t, "false") || is_kw(t, "False")) {
            n = node(x, E_BOOL, t);
            if (n) n->i = t->s[0] == 't' || t->s[0] == 'T';
        } else if (is_kw(t, "none") || is_kw(t, "None")) {
            n = node(x, E_NONE, t);
        } else {
            n = node(x, E_NAME, t);
            if (n) n->s = t->s, n->n = t->n;
        }
        return n;
    case T_OP:
        if (is_op(t, "(")) {
            n = expr(x);
            return n && expect(x, ")") ? n : NULL;
        }
        if (is_op(t, "[")) {
            n = node(x, E_LIST, t);
            while (n && !is_op(peek(x), "]")) {
                jnode *e = expr(x);
                if (!e || !vpush(x, &n->v, &n->nv, e)) return NULL;
                if (!is_op(peek(x), ",")) break;
                next(x);
            }
            return n && expect(x, "]") ? n : NULL;
        }
        if (is_op(t, "{")) {
            n = node(x, E_DICT, t);
            while (n && !is_op(peek(x), "}")) {
                jnode *k = expr(x);
                if (!k || !expect(x, ":")) return NULL;
                jnode *v = expr(x);
                if (!v || !vpush(x, &n->v, &n->nv, k) || !vpush(x, &n->v2, &n->nv2, v)) return NULL;
                if (!is_op(peek(x), ",")) break;
                next(x);
            }
            return n && expect(x, "}") ? n : NULL;
        }
        break;
    default: break;
    }
    return fail(x, t, "expected an expression");
}

static jnode *postfix(lx *x) {
    jnode *e = primary(x);
    while (e) {
        tok *t = peek(x);
        if (is_op(t, ".")) {
            next(x);
            tok *nm = next(x);
            if (nm->k != T_NAME && nm->k != T_INT) return fail(x, nm, "expected an attribute name");
            jnode *n = node(x, E_ATTR, t);
            if (!n) return NULL;
            n->a = e, n->s = nm->s, n->n = nm->n;
            if (nm->k == T_INT) { /* x.0 = x[0] */
                n->kind = E_INDEX;
                n->b = node(x, E_INT, nm);
                if (!n->b) return NULL;
                n->b->i = nm->i;
            }
            e = n;
        } else if (is_op(t, "[")) {
            next(x);
            jnode *n = node(x, E_INDEX, t);
            if (!n) return NULL;
            n->a = e;
            jnode *parts[3] = {NULL, NULL, NULL};
            int k = 0;
            bool slice = false;
            while (!is_op(peek(x), "]")) {
                if (is_op(peek(x), ":")) {
                    next(x);
                    slice = true;
                    if (++k > 2) return fail(x, peek(x), "bad slice");
                    continue;
                }
                if (!(parts[k] = expr(x))) return NULL;
            }
            next(x);
            if (slice) n->kind = E_SLICE, n->b = parts[0], n->c = parts[1], n->d = parts[2];
            else if (!(n->b = parts[0])) return fail(x, t, "empty index");
            e = n;
        } else if (is_op(t, "(")) {
            next(x);
            jnode *n = node(x, E_CALL, t);
            if (!n) return NULL;
            n->a = e;
            if (!call_args(x, n)) return NULL;
            e = n;
        } else if (is_op(t, "|")) {
            next(x);
            tok *nm = next(x);
            if (nm->k != T_NAME) return fail(x, nm, "expected a filter name");
            jnode *n = node(x, E_FILTER, t);
            if (!n) return NULL;
            n->a = e, n->s = nm->s, n->n = nm->n;
            if (is_op(peek(x), "(")) {
                next(x);
                if (!call_args(x, n)) return NULL;
            }
            e = n;
        } else {
            break;
        }
    }
    return e;
}

static jnode *unary(lx *x) {
    if (is_op(peek(x), "-")) {
        tok *t = next(x);
        jnode *n = node(x, E_NEG, t);
        if (n && !(n->a = unary(x))) return NULL;
        return n;
    }
    if (is_op(peek(x), "+")) next(x);
    return postfix(x);
}

static jnode *bin(lx *x, jnode *a, int op, jnode *(*rhs)(lx *)) {
    tok *t = peek(x);
    jnode *n = node(x, E_BIN, t);
    if (!n) return NULL;
    n->op = op;
    n->a = a;
    return (n->b = rhs(x)) ? n : NULL;
}

static jnode *mul(lx *x) {
    jnode *e = unary(x);
    while (e) {
        tok *t = peek(x);
        int op = is_op(t, "*") ? OP_MUL : is_op(t, "//") ? OP_FDIV : is_op(t, "/") ? OP_DIV : is_op(t, "%") ? OP_MOD : 0;
        if (!op) break;
        next(x);
        e = bin(x, e, op, unary);
    }
    return e;
}

static jnode *add(lx *x) {
    jnode *e = mul(x);
    while (e) {
        tok *t = peek(x);
        int op = is_op(t, "+") ? OP_ADD : is_op(t, "-") ? OP_SUB : 0;
        if (!op) break;
        next(x);
        e = bin(x, e, op, mul);
    }
    return e;
}

static jnode *cat(lx *x) {
    jnode *e = add(x);
    while (e && is_op(peek(x), "~")) {
        next(x);
        e = bin(x, e, OP_CAT, add);
    }
    return e;
}

static jnode *cmp(lx *x) {
    jnode *e = cat(x);
    while (e) {
        tok *t = peek(x);
        int op = is_op(t, "==") ? OP_EQ : is_op(t, "!=") ? OP_NE : is_op(t, "<=") ? OP_LE : is_op(t, ">=") ? OP_GE
               : is_op(t, "<") ? OP_LT : is_op(t, ">") ? OP_GT : is_kw(t, "in") ? OP_IN : 0;
        if (!op && is_kw(t, "not") && is_kw(&x->t[x->pos + 1], "in")) {
            next(x);
            op = OP_NOTIN;
        }
        if (op) {
            next(x);
            e = bin(x, e, op, cat);
            continue;
        }
        if (is_kw(t, "is")) {
            next(x);
            jnode *n = node(x, E_TEST, t);
            if (!n) return NULL;
            n->a = e;
            if (is_kw(peek(x), "not")) {
                next(x);
                n->op = 1;
            }
            tok *nm = next(x);
            if (nm->k != T_NAME) return fail(x, nm, "expected a test name");
            n->s = nm->s, n->n = nm->n;
            if (is_op(peek(x), "(")) {
                next(x);
                if (!call_args(x, n)) return NULL;
            } else if (peek(x)->k == T_STR || peek(x)->k == T_INT || peek(x)->k == T_NAME) {
                if (!is_kw(peek(x), "and") && !is_kw(peek(x), "or") && !is_kw(peek(x), "else") &&
                    !is_kw(peek(x), "if")) { /* `is divisibleby 3`, `is equalto 'x'` */
                    jnode *arg = cat(x);
                    if (!arg || !vpush(x, &n->v, &n->nv, arg)) return NULL;
                }
            }
            e = n;
            continue;
        }
        break;
    }
    return e;
}

static jnode *not_(lx *x) {
    if (is_kw(peek(x), "not")) {
        tok *t = next(x);
        jnode *n = node(x, E_NOT, t);
        if (n && !(n->a = not_(x))) return NULL;
        return n;
    }
    return cmp(x);
}

static jnode *and_(lx *x) {
    jnode *e = not_(x);
    while (e && is_kw(peek(x), "and")) {
        tok *t = next(x);
        jnode *n = node(x, E_AND, t);
        if (!n) return NULL;
        n->a = e;
        if (!(n->b = not_(x))) return NULL;
        e = n;
    }
    return e;
}

static jnode *expr_or(lx *x) {
    jnode *e = and_(x);
    while (e && is_kw(peek(x), "or")) {
        tok *t = next(x);
        jnode *n = node(x, E_OR, t);
        if (!n) return NULL;
        n->a = e;
        if (!(n->b = and_(x))) return NULL;
        e = n;
    }
    return e;
}

static jnode *expr(lx *x) {
    jnode *e = expr_or(x);
    if (e && is_kw(peek(x), "if")) {
        tok *t = next(x);
        jnode *n = node(x, E_COND, t);
        if (!n) return NULL;
        n->a = e;
        if (!(n->b = expr_or(x))) return NULL;
        if (is_kw(peek(x), "else")) {
            next(x);
            if (!(n->c = expr(x))) return NULL;
        }
        e = n;
    }
    return e;
}

static bool end_tag(lx *x) {
    if (peek(x)->k == T_END) {
        next(x);
        return true;
    }
    fail(x, peek(x), "expected the end of the tag");
    return false;
}

/* Parses statements until a {% stop %} tag whose keyword is one of stops
 * (space-separated); returns the index of the keyword that stopped it (the
 * keyword token consumed, not the rest of its tag), or -1 at EOF / error. */
static int body(lx *x, jnode ***v, size_t *n, const char *const *stops);

static jnode *stmt_if(lx *x, tok *t) {
    static const char *const stops[] = {"elif", "else", "endif", NULL};
    jnode *n = node(x, N_IF, t);
    if (!n || !(n->a = expr(x)) || !end_tag(x)) return NULL;
    int k = body(x, &n->v, &n->nv, stops);
    if (k == 0) { /* elif: a nested if in the else branch */
        jnode *e = stmt_if(x, &x->t[x->pos - 1]);
        return e && vpush(x, &n->v2, &n->nv2, e) ? n : NULL;
    }
    if (k == 1) {
        if (!end_tag(x)) return NULL;
        if (body(x, &n->v2, &n->nv2, stops + 2) != 0) return fail(x, t, "if without endif");
    }
    if (k < 0) return x->err ? NULL : fail(x, t, "if without endif");
    return end_tag(x) ? n : NULL;
}

static jnode *stmt_for(lx *x, tok *t) {
    static const char *const stops[] = {"else", "endfor", NULL};
    jnode *n = node(x, N_FOR, t);
    if (!n) return NULL;
    tok *a = next(x);
    if (a->k != T_NAME) return fail(x, a, "expected a loop variable");
    n->s = a->s, n->n = a->n;
    if (is_op(peek(x), ",")) {
        next(x);
        tok *b = next(x);
        if (b->k != T_NAME) return fail(x, b, "expected a loop variable");
        n->s2 = b->s, n->n2 = b->n;
    }
    if (!is_kw(peek(x), "in")) return fail(x, peek(x), "expected 'in'");
    next(x);
    if (!(n->a = expr_or(x))) return NULL;
    if (is_kw(peek(x), "if")) {
        next(x);
        if (!(n->c = expr_or(x))) return NULL;
    }
    if (!end_tag(x)) return NULL;
    int k = body(x, &n->v, &n->nv, stops);
    if (k == 0) {
        if (!end_tag(x)) return NULL;
        k = body(x, &n->v2, &n->nv2, stops + 1) == 0 ? 1 : -1;
    }
    if (k != 1) return x->err ? NULL : fail(x, t, "for without endfor");
    return end_tag(x) ? n : NULL;
}

static jnode *stmt_set(lx *x, tok *t) {
    jnode *n = node(x, N_SET, t);
    if (!n) return NULL;
    tok *a = next(x);
    if (a->k != T_NAME) return fail(x, a, "expected a name to set");
    n->s = a->s, n->n = a->n;
    if (is_op(peek(x), ".")) {
        next(x);
        tok *b = next(x);
        if (b->k != T_NAME) return fail(x, b, "expected an attribute name");
        n->s2 = b->s, n->n2 = b->n;
    }
    if (!is_op(peek(x), "=")) return fail(x, peek(x), "block set (without '=') is not supported");
    next(x);
    if (!(n->a = expr(x))) return NULL;
    return end_tag(x) ? n : NULL;
}

static int body(lx *x, jnode ***v, size_t *n, const char *const *stops) {
    static const char *const gen_stop[] = {"endgeneration", NULL};
    for (;;) {
        if (x->err) return -1;
        tok *t = next(x);
        if (t->k == T_EOF) return -1;
        jnode *s = NULL;
        if (t->k == T_TEXT) {
            s = node(x, N_TEXT, t);
            if (s) s->s = t->s, s->n = t->n;
        } else if (t->k == T_OUT) {
            s = node(x, N_OUT, t);
            if (s && (s->a = expr(x)) && !end_tag(x)) s = NULL;
            if (s && !s->a) s = NULL;
        } else if (t->k == T_STMT) {
            tok *kw = next(x);
            for (int i = 0; stops && stops[i]; i++)
                if (is_kw(kw, stops[i])) return i;
            if (is_kw(kw, "if")) s = stmt_if(x, kw);
            else if (is_kw(kw, "for")) s = stmt_for(x, kw);
            else if (is_kw(kw, "set")) s = stmt_set(x, kw);
            else if (is_kw(kw, "generation")) { /* transformers' assistant-mask marker: renders its body */
                if (!end_tag(x)) return -1;
                if (body(x, v, n, gen_stop) != 0) return x->err ? -1 : (fail(x, kw, "generation without endgeneration"), -1);
                if (!end_tag(x)) return -1;
                continue;
            } else if (kw->k == T_NAME) {
                x->err = he_set(HE_EUNSUPPORTED, "chat template: line %d: '{%% %.*s %%}' is not supported", kw->line,
                                (int)kw->n, kw->s);
                return -1;
            } else {
                fail(x, kw, "expected a statement");
            }
        } else {
            fail(x, t, "unexpected token");
        }
        if (!s || !vpush(x, v, n, s)) return -1;
    }
}

int jj_parse(const char *src, size_t len, jj_tmpl_t **out) {
    *out = NULL;
    if (!src) return he_set(HE_EINVAL, "chat template: no source");
    if (len > JJ_MAX_SRC) return he_set(HE_ELIMIT, "chat template: longer than %u bytes", JJ_MAX_SRC);
    jj_tmpl_t *t = calloc(1, sizeof *t);
    if (!t) return he_set(HE_ENOMEM, "chat template: out of memory");
    t->ar.limit = 64u * len + (1u << 20);
    char *copy = jj_strdup(&t->ar, src, len);
    lx x = {.ar = &t->ar, .src = copy, .len = len};
    int rc = copy ? lex(&x) : he_set(HE_ENOMEM, "chat template: out of memory");
    if (!rc) {
        if (body(&x, &t->body, &t->n, NULL) != -1 || x.err) rc = x.err ? x.err : he_set(HE_EFORMAT, "chat template: stray end tag");
        else if (peek(&x)->k != T_EOF) rc = he_set(HE_EFORMAT, "chat template: trailing input");
    }
    free(x.t);
    if (rc) {
        jj_destroy(&t);
        return rc;
    }
    *out = t;
    return 0;
}

void jj_destroy(jj_tmpl_t **self_p) {
    if (!self_p || !*self_p) return;
    jj_arena_free(&(*self_p)->ar);
    free(*self_p);
    *self_p = NULL;
}
