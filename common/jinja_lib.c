/* jinja_lib: the filters, tests, methods and global functions chat templates
 * call (the list is in jinja.h). Each follows Jinja2 / Python for the value
 * kinds it accepts and is an error (naming it) for others; an unknown name is
 * HE_EUNSUPPORTED, so a template that needs more is refused, never guessed.
 */
#include <ctype.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "herr.h"
#include "jinja_eval.h"

enum { F_RAISE = 1, F_RANGE, F_NAMESPACE };

static bool nm(const char *s, size_t n, const char *lit) { return n == strlen(lit) && !memcmp(s, lit, n); }

jv jr_global(const char *s, size_t n) {
    if (nm(s, n, "raise_exception")) return (jv){.k = V_FUNC, .fn = F_RAISE};
    if (nm(s, n, "range")) return (jv){.k = V_FUNC, .fn = F_RANGE};
    if (nm(s, n, "namespace")) return (jv){.k = V_FUNC, .fn = F_NAMESPACE};
    return (jv){.k = V_UNDEF};
}

jv jr_dict_keys(jr *r, jv d) {
    jv l = jv_list(r, d.d->n);
    for (size_t i = 0; !r->err && i < d.d->n; i++) jl_push(r, l.l, d.d->keys[i]);
    return l;
}

jv jr_str_chars(jr *r, jv s) {
    jv l = jv_list(r, s.s.n);
    for (size_t i = 0; !r->err && i < s.s.n; i++) jl_push(r, l.l, jv_str(r, s.s.p + i, 1));
    return l;
}

static jv dict_items(jr *r, jv d) {
    jv l = jv_list(r, d.d->n);
    for (size_t i = 0; !r->err && i < d.d->n; i++) {
        jv p = jv_list(r, 2);
        if (r->err) break;
        jl_push(r, p.l, d.d->keys[i]);
        jl_push(r, p.l, d.d->vals[i]);
        jl_push(r, l.l, p);
    }
    return l;
}

static bool ws(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v'; }

/* Python str.strip family: which = 1 left, 2 right, 3 both; chars NULL = whitespace. */
static jv strip(jv s, int which, const jv *chars) {
    const char *p = s.s.p, *e = p + s.s.n;
#define STRIP_IS(c) (chars ? memchr(chars->s.p, (c), chars->s.n) != NULL : ws(c))
    if (which & 1)
        while (p < e && STRIP_IS(*p)) p++;
    if (which & 2)
        while (e > p && STRIP_IS(e[-1])) e--;
#undef STRIP_IS
    return (jv){.k = V_STR, .s = {p, (size_t)(e - p)}};
}

/* case maps: 'u' upper, 'l' lower, 'c' capitalize, 't' title (ASCII letters) */
static jv recase(jr *r, jv s, char how) {
    jv o = jv_str(r, s.s.p, s.s.n);
    if (r->err) return o;
    char *p = (char *)o.s.p;
    bool start = true;
    for (size_t i = 0; i < o.s.n; i++) {
        unsigned char c = (unsigned char)p[i];
        bool up = how == 'u' || ((how == 'c' && i == 0) || (how == 't' && start));
        p[i] = (char)(up ? toupper(c) : tolower(c));
        start = !isalnum(c);
    }
    return o;
}

static jv replace(jr *r, jv s, jv a, jv b) {
    if (a.s.n == 0) return s;
    sbuf_j o = {0};
    for (size_t i = 0; i < s.s.n && !r->err;) {
        if (i + a.s.n <= s.s.n && !memcmp(s.s.p + i, a.s.p, a.s.n)) {
            jr_put(r, &o, b.s.p, b.s.n);
            i += a.s.n;
        } else {
            jr_put(r, &o, s.s.p + i++, 1);
        }
    }
    jv out = r->err ? (jv){0} : jv_str(r, o.p ? o.p : "", o.n);
    free(o.p);
    return out;
}

static jv split(jr *r, jv s, const jv *sep) {
    jv l = jv_list(r, 0);
    const char *p = s.s.p, *e = p + s.s.n;
    if (!sep) { /* runs of whitespace, no empty items */
        while (!r->err) {
            while (p < e && ws(*p)) p++;
            if (p == e) break;
            const char *q = p;
            while (q < e && !ws(*q)) q++;
            jl_push(r, l.l, (jv){.k = V_STR, .s = {p, (size_t)(q - p)}});
            p = q;
        }
        return l;
    }
    if (sep->s.n == 0) return jr_err(r, HE_EINVAL, 0, "%s", "split with an empty separator"), (jv){0};
    for (const char *q = p; !r->err;) {
        const char *f = NULL;
        for (const char *t = q; t + sep->s.n <= e; t++)
            if (!memcmp(t, sep->s.p, sep->s.n)) {
                f = t;
                break;
            }
        if (!f) {
            jl_push(r, l.l, (jv){.k = V_STR, .s = {q, (size_t)(e - q)}});
            break;
        }
        jl_push(r, l.l, (jv){.k = V_STR, .s = {q, (size_t)(f - q)}});
        q = f + sep->s.n;
    }
    return l;
}

/* JSON text of v (Python json.dumps defaults: ", " and ": ", ASCII escapes). */
static int put_json(jr *r, sbuf_j *o, jv v) {
    char b[16];
    switch (v.k) {
    case V_STR:
        jr_put(r, o, "\"", 1);
        for (size_t i = 0; i < v.s.n && !r->err; i++) {
            unsigned char c = (unsigned char)v.s.p[i];
            if (c == '"' || c == '\\') jr_put(r, o, "\\", 1), jr_put(r, o, (char *)&c, 1);
            else if (c == '\n') jr_put(r, o, "\\n", 2);
            else if (c == '\t') jr_put(r, o, "\\t", 2);
            else if (c == '\r') jr_put(r, o, "\\r", 2);
            else if (c < 0x20) jr_put(r, o, b, (size_t)snprintf(b, sizeof b, "\\u%04x", c));
            else jr_put(r, o, (char *)&c, 1);
        }
        return jr_put(r, o, "\"", 1);
    case V_LIST:
        jr_put(r, o, "[", 1);
        for (size_t i = 0; i < v.l->n && !r->err; i++) {
            if (i) jr_put(r, o, ", ", 2);
            put_json(r, o, v.l->v[i]);
        }
        return jr_put(r, o, "]", 1);
    case V_DICT:
        jr_put(r, o, "{", 1);
        for (size_t i = 0; i < v.d->n && !r->err; i++) {
            if (i) jr_put(r, o, ", ", 2);
            put_json(r, o, jv_to_str(r, v.d->keys[i]));
            jr_put(r, o, ": ", 2);
            put_json(r, o, v.d->vals[i]);
        }
        return jr_put(r, o, "}", 1);
    case V_BOOL: return v.b ? jr_put(r, o, "true", 4) : jr_put(r, o, "false", 5);
    case V_NONE:
    case V_UNDEF: return jr_put(r, o, "null", 4);
    default: return jv_write(r, o, v);
    }
}

static size_t length(jv v) {
    return v.k == V_STR ? v.s.n : v.k == V_LIST ? v.l->n : v.k == V_DICT ? v.d->n : 0;
}

/* evaluated positional and keyword arguments of a call, filter or test */
typedef struct {
    jv a[8];
    size_t n;
    jv kw[8];
    const char *kwn[8];
    size_t kwl[8], nkw;
} args;

static bool get_args(jr *r, const jnode *e, args *g) {
    if (e->nv > 8 || e->nv2 > 8) return jr_err(r, HE_EINVAL, e->line, "%s", "too many arguments"), false;
    g->n = e->nv;
    g->nkw = e->nv2;
    for (size_t i = 0; i < e->nv; i++) g->a[i] = jr_eval(r, e->v[i]);
    for (size_t i = 0; i < e->nv2; i++) {
        g->kw[i] = jr_eval(r, e->v2[i]);
        g->kwn[i] = e->kw[i];
        g->kwl[i] = e->kwn[i];
    }
    return !r->err;
}

static jv *kwarg(args *g, const char *name) {
    for (size_t i = 0; i < g->nkw; i++)
        if (nm(g->kwn[i], g->kwl[i], name)) return &g->kw[i];
    return NULL;
}

static jv bad(jr *r, const jnode *e, const char *what) {
    char m[96];
    snprintf(m, sizeof m, "%s '%.*s' cannot take these arguments", what, (int)(e->n > 40 ? 40 : e->n), e->s ? e->s : "");
    jr_err(r, HE_EINVAL, e->line, "%s", m);
    return (jv){0};
}

static bool attr_pass(jr *r, const jnode *e, jv item, args *g, bool select);

jv jr_filter(jr *r, const jnode *e) {
    jv x = jr_eval(r, e->a);
    args g;
    if (r->err || !get_args(r, e, &g)) return (jv){0};
    const char *f = e->s;
    size_t n = e->n;
    if (nm(f, n, "trim") && x.k == V_STR) return strip(x, 3, g.n ? &g.a[0] : NULL);
    if ((nm(f, n, "length") || nm(f, n, "count")) && (x.k == V_STR || x.k == V_LIST || x.k == V_DICT))
        return (jv){.k = V_INT, .i = (int64_t)length(x)};
    if (nm(f, n, "upper") && x.k == V_STR) return recase(r, x, 'u');
    if (nm(f, n, "lower") && x.k == V_STR) return recase(r, x, 'l');
    if (nm(f, n, "capitalize") && x.k == V_STR) return recase(r, x, 'c');
    if (nm(f, n, "title") && x.k == V_STR) return recase(r, x, 't');
    if (nm(f, n, "default") || nm(f, n, "d")) {
        bool boolean = g.n > 1 && jv_truthy(g.a[1]);
        bool use = x.k == V_UNDEF || (boolean && !jv_truthy(x));
        return use ? (g.n ? g.a[0] : jv_str(r, "", 0)) : x;
    }
    if ((nm(f, n, "first") || nm(f, n, "last")) && (x.k == V_LIST || x.k == V_STR)) {
        size_t len = length(x);
        if (!len) return (jv){.k = V_UNDEF};
        return jv_item(r, e->line, x, (jv){.k = V_INT, .i = f[0] == 'f' ? 0 : (int64_t)len - 1});
    }
    if (nm(f, n, "join") && x.k == V_LIST) {
        jv sep = g.n ? jv_to_str(r, g.a[0]) : (jv){.k = V_STR, .s = {"", 0}};
        sbuf_j o = {0};
        for (size_t i = 0; i < x.l->n && !r->err; i++) {
            if (i) jr_put(r, &o, sep.s.p, sep.s.n);
            jv_write(r, &o, x.l->v[i]);
        }
        jv out = r->err ? (jv){0} : jv_str(r, o.p ? o.p : "", o.n);
        free(o.p);
        return out;
    }
    if (nm(f, n, "tojson")) {
        sbuf_j o = {0};
        put_json(r, &o, x);
        jv out = r->err ? (jv){0} : jv_str(r, o.p ? o.p : "", o.n);
        free(o.p);
        return out;
    }
    if (nm(f, n, "string")) return jv_to_str(r, x);
    if (nm(f, n, "int")) {
        if (x.k == V_INT) return x;
        if (x.k == V_FLOAT) return (jv){.k = V_INT, .i = (int64_t)x.f};
        if (x.k == V_BOOL) return (jv){.k = V_INT, .i = x.b};
        if (x.k == V_STR) {
            char b[32];
            size_t k = x.s.n < 31 ? x.s.n : 31;
            memcpy(b, x.s.p, k);
            b[k] = 0;
            return (jv){.k = V_INT, .i = strtoll(b, NULL, 10)};
        }
        return (jv){.k = V_INT, .i = 0};
    }
    if (nm(f, n, "float") && (x.k == V_INT || x.k == V_FLOAT)) return (jv){.k = V_FLOAT, .f = x.k == V_INT ? (double)x.i : x.f};
    if (nm(f, n, "list")) return x.k == V_LIST ? x : x.k == V_DICT ? jr_dict_keys(r, x) : x.k == V_STR ? jr_str_chars(r, x) : bad(r, e, "filter");
    if (nm(f, n, "items") && x.k == V_DICT) return dict_items(r, x);
    if (nm(f, n, "replace") && x.k == V_STR && g.n == 2 && g.a[0].k == V_STR && g.a[1].k == V_STR) return replace(r, x, g.a[0], g.a[1]);
    if (nm(f, n, "reverse") && (x.k == V_LIST || x.k == V_STR)) {
        size_t len = length(x);
        if (x.k == V_STR) {
            jv o = jv_str(r, x.s.p, x.s.n);
            for (size_t i = 0; !r->err && i < len / 2; i++) {
                char *p = (char *)o.s.p, t = p[i];
                p[i] = p[len - 1 - i];
                p[len - 1 - i] = t;
            }
            return o;
        }
        jv l = jv_list(r, len);
        for (size_t i = len; !r->err && i-- > 0;) jl_push(r, l.l, x.l->v[i]);
        return l;
    }
    if ((nm(f, n, "selectattr") || nm(f, n, "rejectattr")) && x.k == V_LIST && g.n >= 1 && g.a[0].k == V_STR) {
        jv l = jv_list(r, x.l->n);
        for (size_t i = 0; !r->err && i < x.l->n; i++)
            if (attr_pass(r, e, x.l->v[i], &g, f[0] == 's')) jl_push(r, l.l, x.l->v[i]);
        return l;
    }
    if (nm(f, n, "map") && x.k == V_LIST && kwarg(&g, "attribute") && kwarg(&g, "attribute")->k == V_STR) {
        jv at = *kwarg(&g, "attribute");
        jv l = jv_list(r, x.l->n);
        for (size_t i = 0; !r->err && i < x.l->n; i++) jl_push(r, l.l, jv_item(r, e->line, x.l->v[i], at));
        return l;
    }
    static const char *const known[] = {"trim", "length", "count", "upper", "lower", "capitalize", "title", "first", "last",
                                        "join", "float", "items", "replace", "reverse", "selectattr", "rejectattr", "map"};
    for (size_t i = 0; i < sizeof known / sizeof *known; i++)
        if (nm(f, n, known[i])) return bad(r, e, "filter");
    char m[80];
    snprintf(m, sizeof m, "filter '%.*s' is not supported", (int)(n > 40 ? 40 : n), f);
    jr_err(r, HE_EUNSUPPORTED, e->line, "%s", m);
    return (jv){0};
}

/* Runs test `name` (n bytes) on x with arguments a (na); -1 if unknown. */
static int test(jr *r, const char *name, size_t n, jv x, const jv *a, size_t na) {
    if (nm(name, n, "defined")) return x.k != V_UNDEF;
    if (nm(name, n, "undefined")) return x.k == V_UNDEF;
    if (nm(name, n, "none")) return x.k == V_NONE;
    if (nm(name, n, "string")) return x.k == V_STR;
    if (nm(name, n, "number")) return x.k == V_INT || x.k == V_FLOAT;
    if (nm(name, n, "integer")) return x.k == V_INT;
    if (nm(name, n, "float")) return x.k == V_FLOAT;
    if (nm(name, n, "boolean")) return x.k == V_BOOL;
    if (nm(name, n, "true")) return x.k == V_BOOL && x.b;
    if (nm(name, n, "false")) return x.k == V_BOOL && !x.b;
    if (nm(name, n, "mapping")) return x.k == V_DICT;
    if (nm(name, n, "iterable")) return x.k == V_LIST || x.k == V_DICT || x.k == V_STR;
    if (nm(name, n, "sequence")) return x.k == V_LIST || x.k == V_DICT || x.k == V_STR;
    if (nm(name, n, "callable")) return x.k == V_FUNC;
    if (nm(name, n, "odd") || nm(name, n, "even")) {
        if (x.k != V_INT) return jr_err(r, HE_EINVAL, 0, "%s", "odd/even of a non-integer"), 0;
        return (x.i % 2 != 0) == (name[0] == 'o');
    }
    if ((nm(name, n, "eq") || nm(name, n, "equalto") || nm(name, n, "sameas")) && na == 1) return jv_eq(x, a[0]);
    if (nm(name, n, "ne") && na == 1) return !jv_eq(x, a[0]);
    if (nm(name, n, "in") && na == 1) return jv_contains(a[0], x);
    if (nm(name, n, "divisibleby") && na == 1 && x.k == V_INT && a[0].k == V_INT && a[0].i) return x.i % a[0].i == 0;
    return -1;
}

jv jr_test(jr *r, const jnode *e) {
    jv x = jr_eval(r, e->a);
    args g;
    if (r->err || !get_args(r, e, &g)) return (jv){0};
    int t = test(r, e->s, e->n, x, g.a, g.n);
    if (t < 0) {
        char m[80];
        snprintf(m, sizeof m, "test '%.*s' is not supported", (int)(e->n > 40 ? 40 : e->n), e->s);
        jr_err(r, HE_EUNSUPPORTED, e->line, "%s", m);
        return (jv){0};
    }
    return (jv){.k = V_BOOL, .b = (t != 0) != (e->op != 0)};
}

/* selectattr('a') / selectattr('a', 'test', arg) on one item */
static bool attr_pass(jr *r, const jnode *e, jv item, args *g, bool select) {
    jv v = jv_item(r, e->line, item, g->a[0]);
    bool ok;
    if (g->n >= 2 && g->a[1].k == V_STR) {
        int t = test(r, g->a[1].s.p, g->a[1].s.n, v, g->a + 2, g->n - 2);
        if (t < 0) return jr_err(r, HE_EUNSUPPORTED, e->line, "%s", "unsupported test in selectattr"), false;
        ok = t != 0;
    } else {
        ok = jv_truthy(v);
    }
    return ok == select;
}

static jv method(jr *r, const jnode *e, jv o, args *g) {
    const char *m = e->a->s;
    size_t n = e->a->n;
    if (o.k == V_STR) {
        const jv *c = g->n && g->a[0].k == V_STR ? &g->a[0] : NULL;
        if (nm(m, n, "strip")) return strip(o, 3, c);
        if (nm(m, n, "lstrip")) return strip(o, 1, c);
        if (nm(m, n, "rstrip")) return strip(o, 2, c);
        if (nm(m, n, "upper")) return recase(r, o, 'u');
        if (nm(m, n, "lower")) return recase(r, o, 'l');
        if (nm(m, n, "title")) return recase(r, o, 't');
        if (nm(m, n, "capitalize")) return recase(r, o, 'c');
        if (nm(m, n, "split")) return split(r, o, c);
        if ((nm(m, n, "startswith") || nm(m, n, "endswith")) && c) {
            if (c->s.n > o.s.n) return (jv){.k = V_BOOL, .b = false};
            const char *p = m[0] == 's' ? o.s.p : o.s.p + o.s.n - c->s.n;
            return (jv){.k = V_BOOL, .b = !memcmp(p, c->s.p, c->s.n)};
        }
        if (nm(m, n, "replace") && g->n == 2 && c && g->a[1].k == V_STR) return replace(r, o, g->a[0], g->a[1]);
    } else if (o.k == V_DICT) {
        if (nm(m, n, "items")) return dict_items(r, o);
        if (nm(m, n, "keys")) return jr_dict_keys(r, o);
        if (nm(m, n, "values")) {
            jv l = jv_list(r, o.d->n);
            for (size_t i = 0; !r->err && i < o.d->n; i++) jl_push(r, l.l, o.d->vals[i]);
            return l;
        }
        if (nm(m, n, "get") && g->n >= 1) {
            jv v = jv_item(r, e->line, o, g->a[0]);
            return v.k == V_UNDEF ? (g->n > 1 ? g->a[1] : (jv){.k = V_NONE}) : v;
        }
    }
    char msg[80];
    snprintf(msg, sizeof msg, "method '%.*s' is not supported here", (int)(n > 40 ? 40 : n), m);
    jr_err(r, HE_EUNSUPPORTED, e->line, "%s", msg);
    return (jv){0};
}

jv jr_call(jr *r, const jnode *e) {
    args g;
    if (e->a->kind == E_ATTR) {
        jv o = jr_eval(r, e->a->a);
        if (r->err || !get_args(r, e, &g)) return (jv){0};
        if (o.k == V_DICT && jd_find(o.d, e->a->s, e->a->n))
            return jr_err(r, HE_EUNSUPPORTED, e->line, "%s", "calling a dict member"), (jv){0};
        return method(r, e, o, &g);
    }
    jv f = jr_eval(r, e->a);
    if (r->err || !get_args(r, e, &g)) return (jv){0};
    if (f.k != V_FUNC) return jr_err(r, HE_EUNSUPPORTED, e->line, "%s", "call of something that is not a known function"), (jv){0};
    if (f.fn == F_RAISE) {
        jv m = g.n ? jv_to_str(r, g.a[0]) : (jv){.k = V_STR, .s = {"", 0}};
        if (!r->err)
            r->err = he_set(HE_EINVAL, "chat template: line %d: raise_exception: %.*s", e->line, (int)m.s.n, m.s.p);
        return (jv){0};
    }
    if (f.fn == F_RANGE) {
        int64_t lo = 0, hi, st = 1;
        for (size_t i = 0; i < g.n; i++)
            if (g.a[i].k != V_INT) return jr_err(r, HE_EINVAL, e->line, "%s", "range() needs integers"), (jv){0};
        if (g.n == 1) hi = g.a[0].i;
        else if (g.n >= 2) lo = g.a[0].i, hi = g.a[1].i, st = g.n > 2 ? g.a[2].i : 1;
        else return jr_err(r, HE_EINVAL, e->line, "%s", "range() needs arguments"), (jv){0};
        if (st == 0 || (hi - lo) / st > 100000) return jr_err(r, HE_EINVAL, e->line, "%s", "bad range()"), (jv){0};
        jv l = jv_list(r, 0);
        for (int64_t i = lo; !r->err && (st > 0 ? i < hi : i > hi); i += st) jl_push(r, l.l, (jv){.k = V_INT, .i = i});
        return l;
    }
    jv d = jv_dict(r); /* namespace(k=v, ...) */
    for (size_t i = 0; !r->err && i < g.nkw; i++) jd_set(r, d.d, (jv){.k = V_STR, .s = {g.kwn[i], g.kwl[i]}}, g.kw[i]);
    return d;
}
