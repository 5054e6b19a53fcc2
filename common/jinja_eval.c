/* jinja_eval: renders a parsed template (jinja_parse.c) with Python/Jinja2
 * semantics for the values chat templates handle: strings, integers, floats,
 * booleans, none, undefined, lists and dicts (namespaces are dicts).
 *
 * A render owns an arena for every value it creates; scopes are a stack of
 * small dicts (a for-loop body pushes one, so `set` inside a loop does not
 * leak, as in Jinja2; namespaces are how templates carry state out). Every
 * node evaluated costs one step; JJ_MAX_STEPS and JJ_MAX_OUT bound a render.
 * Filters, tests and methods live in jinja_lib.c.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "herr.h"
#include "jinja_eval.h"

int jr_err(jr *r, int code, int line, const char *fmt, const char *arg) {
    if (!r->err) {
        char m[200];
        snprintf(m, sizeof m, fmt, arg ? arg : "");
        r->err = he_set(code, "chat template: line %d: %s", line, m);
    }
    return r->err;
}

/* ---- values */

jv jv_str(jr *r, const char *p, size_t n) {
    char *c = jj_strdup(&r->ar, p, n);
    if (!c) {
        jr_err(r, HE_ELIMIT, 0, "%s", "render too large");
        return (jv){.k = V_UNDEF};
    }
    return (jv){.k = V_STR, .s = {c, n}};
}

jv jv_list(jr *r, size_t cap) {
    jlist *l = jj_alloc(&r->ar, sizeof *l);
    if (l && cap) l->v = jj_alloc(&r->ar, sizeof(jv) * cap);
    if (!l || (cap && !l->v)) {
        jr_err(r, HE_ELIMIT, 0, "%s", "render too large");
        return (jv){.k = V_UNDEF};
    }
    l->cap = cap;
    return (jv){.k = V_LIST, .l = l};
}

int jl_push(jr *r, jlist *l, jv v) {
    if (l->n == l->cap) {
        size_t c = l->cap ? l->cap * 2 : 8;
        jv *nv = jj_alloc(&r->ar, sizeof(jv) * c);
        if (!nv) return jr_err(r, HE_ELIMIT, 0, "%s", "render too large");
        if (l->n) memcpy(nv, l->v, sizeof(jv) * l->n);
        l->v = nv;
        l->cap = c;
    }
    l->v[l->n++] = v;
    return 0;
}

jv jv_dict(jr *r) {
    jdict *d = jj_alloc(&r->ar, sizeof *d);
    if (!d) jr_err(r, HE_ELIMIT, 0, "%s", "render too large");
    return d ? (jv){.k = V_DICT, .d = d} : (jv){.k = V_UNDEF};
}

static bool str_eq(jv a, const char *s, size_t n) { return a.k == V_STR && a.s.n == n && !memcmp(a.s.p, s, n); }

jv *jd_find(const jdict *d, const char *k, size_t n) {
    for (size_t i = 0; i < d->n; i++)
        if (str_eq(d->keys[i], k, n)) return &d->vals[i];
    return NULL;
}

int jd_set(jr *r, jdict *d, jv key, jv val) {
    for (size_t i = 0; i < d->n; i++)
        if (jv_eq(d->keys[i], key)) {
            d->vals[i] = val;
            return 0;
        }
    if (d->n == d->cap) {
        size_t c = d->cap ? d->cap * 2 : 8;
        jv *k = jj_alloc(&r->ar, sizeof(jv) * c), *v = jj_alloc(&r->ar, sizeof(jv) * c);
        if (!k || !v) return jr_err(r, HE_ELIMIT, 0, "%s", "render too large");
        if (d->n) {
            memcpy(k, d->keys, sizeof(jv) * d->n);
            memcpy(v, d->vals, sizeof(jv) * d->n);
        }
        d->keys = k, d->vals = v, d->cap = c;
    }
    d->keys[d->n] = key;
    d->vals[d->n++] = val;
    return 0;
}

int jd_sets(jr *r, jdict *d, const char *k, jv val) { return jd_set(r, d, (jv){.k = V_STR, .s = {k, strlen(k)}}, val); }

bool jv_truthy(jv v) {
    switch (v.k) {
    case V_BOOL: return v.b;
    case V_INT: return v.i != 0;
    case V_FLOAT: return v.f != 0;
    case V_STR: return v.s.n > 0;
    case V_LIST: return v.l->n > 0;
    case V_DICT: return v.d->n > 0;
    case V_FUNC: return true;
    default: return false;
    }
}

static bool is_num(jv v) { return v.k == V_INT || v.k == V_FLOAT || v.k == V_BOOL; }
static double num(jv v) { return v.k == V_FLOAT ? v.f : v.k == V_INT ? (double)v.i : (double)v.b; }

bool jv_eq(jv a, jv b) {
    if (is_num(a) && is_num(b)) return num(a) == num(b);
    if (a.k != b.k) return (a.k == V_UNDEF || a.k == V_NONE) && (b.k == V_UNDEF || b.k == V_NONE) && a.k == b.k;
    switch (a.k) {
    case V_STR: return a.s.n == b.s.n && !memcmp(a.s.p, b.s.p, a.s.n);
    case V_LIST:
        if (a.l->n != b.l->n) return false;
        for (size_t i = 0; i < a.l->n; i++)
            if (!jv_eq(a.l->v[i], b.l->v[i])) return false;
        return true;
    case V_DICT: return a.d == b.d;
    case V_FUNC: return a.fn == b.fn;
    default: return true;
    }
}

/* ---- output and string conversion */

int jr_put(jr *r, sbuf_j *o, const char *p, size_t n) {
    if (n > JJ_MAX_OUT - o->n) return jr_err(r, HE_ELIMIT, 0, "%s", "output longer than the render limit");
    if (o->n + n + 1 > o->cap) {
        size_t c = o->cap ? o->cap : 256;
        while (c < o->n + n + 1) c *= 2;
        char *np = realloc(o->p, c);
        if (!np) return jr_err(r, HE_ENOMEM, 0, "%s", "out of memory");
        o->p = np;
        o->cap = c;
    }
    if (n) memcpy(o->p + o->n, p, n);
    o->n += n;
    o->p[o->n] = 0;
    return 0;
}

static int put_repr(jr *r, sbuf_j *o, jv v, bool quote);

/* Python str() of v (repr for the elements of containers). */
int jv_write(jr *r, sbuf_j *o, jv v) { return put_repr(r, o, v, false); }

static int put_repr(jr *r, sbuf_j *o, jv v, bool quote) {
    char b[64];
    switch (v.k) {
    case V_UNDEF: return 0;
    case V_NONE: return jr_put(r, o, "None", 4);
    case V_BOOL: return v.b ? jr_put(r, o, "True", 4) : jr_put(r, o, "False", 5);
    case V_INT: return jr_put(r, o, b, (size_t)snprintf(b, sizeof b, "%lld", (long long)v.i));
    case V_FLOAT: {
        int n = snprintf(b, sizeof b, "%.17g", v.f);
        for (int p = 1; p < 17; p++) { /* shortest repr that reads back */
            char t[64];
            int m = snprintf(t, sizeof t, "%.*g", p, v.f);
            if (strtod(t, NULL) == v.f) {
                memcpy(b, t, (size_t)m + 1);
                n = m;
                break;
            }
        }
        if (!strpbrk(b, ".eni")) b[n++] = '.', b[n++] = '0', b[n] = 0;
        return jr_put(r, o, b, (size_t)n);
    }
    case V_STR:
        if (!quote) return jr_put(r, o, v.s.p, v.s.n);
        if (jr_put(r, o, "'", 1)) return r->err;
        for (size_t i = 0; i < v.s.n; i++) {
            char c = v.s.p[i];
            const char *e = c == '\'' ? "\\'" : c == '\\' ? "\\\\" : c == '\n' ? "\\n" : c == '\t' ? "\\t" : NULL;
            if (e ? jr_put(r, o, e, 2) : jr_put(r, o, &c, 1)) return r->err;
        }
        return jr_put(r, o, "'", 1);
    case V_LIST:
        if (jr_put(r, o, "[", 1)) return r->err;
        for (size_t i = 0; i < v.l->n; i++)
            if ((i && jr_put(r, o, ", ", 2)) || put_repr(r, o, v.l->v[i], true)) return r->err;
        return jr_put(r, o, "]", 1);
    case V_DICT:
        if (jr_put(r, o, "{", 1)) return r->err;
        for (size_t i = 0; i < v.d->n; i++)
            if ((i && jr_put(r, o, ", ", 2)) || put_repr(r, o, v.d->keys[i], true) || jr_put(r, o, ": ", 2) ||
                put_repr(r, o, v.d->vals[i], true))
                return r->err;
        return jr_put(r, o, "}", 1);
    case V_FUNC: return jr_put(r, o, "<function>", 10);
    }
    return 0;
}

jv jv_to_str(jr *r, jv v) {
    if (v.k == V_STR) return v;
    sbuf_j o = {0};
    jv out = {.k = V_UNDEF};
    if (!jv_write(r, &o, v)) out = jv_str(r, o.p ? o.p : "", o.n);
    free(o.p);
    return out;
}

/* ---- scopes */

static jv *lookup(jr *r, const char *s, size_t n) {
    for (size_t i = r->nscopes; i-- > 0;) {
        jv *v = jd_find(r->scopes[i], s, n);
        if (v) return v;
    }
    return NULL;
}

static int push_scope(jr *r) {
    if (r->nscopes == JR_MAX_SCOPES) return jr_err(r, HE_ELIMIT, 0, "%s", "loops nested too deeply");
    jv d = jv_dict(r);
    if (r->err) return r->err;
    r->scopes[r->nscopes++] = d.d;
    return 0;
}

/* ---- expressions */

static jv arith(jr *r, const jnode *e, jv a, jv b) {
    int op = e->op;
    if (op == OP_CAT) {
        jv x = jv_to_str(r, a), y = jv_to_str(r, b);
        if (r->err) return (jv){0};
        char *c = jj_alloc(&r->ar, x.s.n + y.s.n + 1);
        if (!c) return jr_err(r, HE_ELIMIT, e->line, "%s", "render too large"), (jv){0};
        memcpy(c, x.s.p, x.s.n);
        memcpy(c + x.s.n, y.s.p, y.s.n);
        return (jv){.k = V_STR, .s = {c, x.s.n + y.s.n}};
    }
    if (op == OP_ADD && a.k == V_STR && b.k == V_STR) {
        e = &(jnode){.op = OP_CAT, .line = e->line};
        return arith(r, e, a, b);
    }
    if (op == OP_ADD && a.k == V_LIST && b.k == V_LIST) {
        jv l = jv_list(r, a.l->n + b.l->n);
        for (size_t i = 0; !r->err && i < a.l->n; i++) jl_push(r, l.l, a.l->v[i]);
        for (size_t i = 0; !r->err && i < b.l->n; i++) jl_push(r, l.l, b.l->v[i]);
        return l;
    }
    if (op == OP_MUL && a.k == V_STR && b.k == V_INT) {
        sbuf_j o = {0};
        for (int64_t i = 0; i < b.i && !r->err; i++) jr_put(r, &o, a.s.p, a.s.n);
        jv s = r->err ? (jv){0} : jv_str(r, o.p ? o.p : "", o.n);
        free(o.p);
        return s;
    }
    if (!is_num(a) || !is_num(b)) {
        jr_err(r, HE_EINVAL, e->line, "%s", "unsupported operand types for an arithmetic operator");
        return (jv){0};
    }
    bool ints = a.k != V_FLOAT && b.k != V_FLOAT;
    int64_t x = a.k == V_INT ? a.i : a.b, y = b.k == V_INT ? b.i : b.b;
    double fx = num(a), fy = num(b);
    if ((op == OP_DIV || op == OP_FDIV || op == OP_MOD) && fy == 0) {
        jr_err(r, HE_EINVAL, e->line, "%s", "division by zero");
        return (jv){0};
    }
    switch (op) {
    case OP_ADD: return ints ? (jv){.k = V_INT, .i = x + y} : (jv){.k = V_FLOAT, .f = fx + fy};
    case OP_SUB: return ints ? (jv){.k = V_INT, .i = x - y} : (jv){.k = V_FLOAT, .f = fx - fy};
    case OP_MUL: return ints ? (jv){.k = V_INT, .i = x * y} : (jv){.k = V_FLOAT, .f = fx * fy};
    case OP_DIV: return (jv){.k = V_FLOAT, .f = fx / fy};
    case OP_FDIV: {
        if (!ints) return (jv){.k = V_FLOAT, .f = floor(fx / fy)};
        int64_t q = x / y;
        if ((x % y != 0) && ((x < 0) != (y < 0))) q--;
        return (jv){.k = V_INT, .i = q};
    }
    case OP_MOD: {
        if (!ints) {
            double m = fmod(fx, fy);
            if (m != 0 && ((m < 0) != (fy < 0))) m += fy;
            return (jv){.k = V_FLOAT, .f = m};
        }
        int64_t m = x % y;
        if (m != 0 && ((m < 0) != (y < 0))) m += y;
        return (jv){.k = V_INT, .i = m};
    }
    }
    return (jv){0};
}

static int cmp3(jr *r, const jnode *e, jv a, jv b) {
    if (is_num(a) && is_num(b)) return num(a) < num(b) ? -1 : num(a) > num(b);
    if (a.k == V_STR && b.k == V_STR) {
        size_t n = a.s.n < b.s.n ? a.s.n : b.s.n;
        int c = memcmp(a.s.p, b.s.p, n);
        return c ? (c < 0 ? -1 : 1) : (a.s.n < b.s.n ? -1 : a.s.n > b.s.n);
    }
    jr_err(r, HE_EINVAL, e->line, "%s", "cannot order these values");
    return 0;
}

bool jv_contains(jv hay, jv needle) {
    if (hay.k == V_STR && needle.k == V_STR) {
        if (needle.s.n == 0) return true;
        for (size_t i = 0; i + needle.s.n <= hay.s.n; i++)
            if (!memcmp(hay.s.p + i, needle.s.p, needle.s.n)) return true;
        return false;
    }
    if (hay.k == V_LIST) {
        for (size_t i = 0; i < hay.l->n; i++)
            if (jv_eq(hay.l->v[i], needle)) return true;
        return false;
    }
    if (hay.k == V_DICT) {
        for (size_t i = 0; i < hay.d->n; i++)
            if (jv_eq(hay.d->keys[i], needle)) return true;
    }
    return false;
}

static jv binop(jr *r, const jnode *e) {
    jv a = jr_eval(r, e->a), b = jr_eval(r, e->b);
    if (r->err) return (jv){0};
    switch (e->op) {
    case OP_EQ: return (jv){.k = V_BOOL, .b = jv_eq(a, b)};
    case OP_NE: return (jv){.k = V_BOOL, .b = !jv_eq(a, b)};
    case OP_LT: return (jv){.k = V_BOOL, .b = cmp3(r, e, a, b) < 0};
    case OP_GT: return (jv){.k = V_BOOL, .b = cmp3(r, e, a, b) > 0};
    case OP_LE: return (jv){.k = V_BOOL, .b = cmp3(r, e, a, b) <= 0};
    case OP_GE: return (jv){.k = V_BOOL, .b = cmp3(r, e, a, b) >= 0};
    case OP_IN:
    case OP_NOTIN:
        if (b.k != V_STR && b.k != V_LIST && b.k != V_DICT)
            return jr_err(r, HE_EINVAL, e->line, "%s", "'in' needs a string, list or dict"), (jv){0};
        return (jv){.k = V_BOOL, .b = jv_contains(b, a) == (e->op == OP_IN)};
    }
    if (a.k == V_UNDEF || b.k == V_UNDEF)
        return jr_err(r, HE_EINVAL, e->line, "%s", "undefined value in an arithmetic expression"), (jv){0};
    return arith(r, e, a, b);
}

/* Python index normalization; false if out of range. */
static bool norm_index(int64_t *i, size_t n) {
    if (*i < 0) *i += (int64_t)n;
    return *i >= 0 && *i < (int64_t)n;
}

jv jv_item(jr *r, int line, jv obj, jv key) {
    if (obj.k == V_DICT) {
        for (size_t i = 0; i < obj.d->n; i++)
            if (jv_eq(obj.d->keys[i], key)) return obj.d->vals[i];
        return (jv){.k = V_UNDEF};
    }
    if ((obj.k == V_LIST || obj.k == V_STR) && key.k == V_INT) {
        int64_t i = key.i;
        size_t n = obj.k == V_LIST ? obj.l->n : obj.s.n;
        if (!norm_index(&i, n)) return (jv){.k = V_UNDEF};
        return obj.k == V_LIST ? obj.l->v[i] : jv_str(r, obj.s.p + i, 1);
    }
    if (obj.k == V_UNDEF) return jr_err(r, HE_EINVAL, line, "%s", "indexing an undefined value"), (jv){0};
    return (jv){.k = V_UNDEF};
}

static jv slice(jr *r, const jnode *e) {
    jv o = jr_eval(r, e->a);
    jv b = e->b ? jr_eval(r, e->b) : (jv){.k = V_NONE}, c = e->c ? jr_eval(r, e->c) : (jv){.k = V_NONE};
    jv d = e->d ? jr_eval(r, e->d) : (jv){.k = V_NONE};
    if (r->err) return (jv){0};
    if (o.k != V_LIST && o.k != V_STR) return jr_err(r, HE_EINVAL, e->line, "%s", "slicing needs a list or string"), (jv){0};
    int64_t n = (int64_t)(o.k == V_LIST ? o.l->n : o.s.n);
    int64_t step = d.k == V_INT ? d.i : 1;
    if (step == 0 || (b.k != V_INT && b.k != V_NONE) || (c.k != V_INT && c.k != V_NONE))
        return jr_err(r, HE_EINVAL, e->line, "%s", "bad slice"), (jv){0};
    int64_t lo, hi;
    if (step > 0) {
        lo = b.k == V_INT ? (b.i < 0 ? b.i + n : b.i) : 0;
        hi = c.k == V_INT ? (c.i < 0 ? c.i + n : c.i) : n;
        lo = lo < 0 ? 0 : lo > n ? n : lo;
        hi = hi < 0 ? 0 : hi > n ? n : hi;
    } else {
        lo = b.k == V_INT ? (b.i < 0 ? b.i + n : b.i) : n - 1;
        hi = c.k == V_INT ? (c.i < 0 ? c.i + n : c.i) : -1;
        lo = lo < -1 ? -1 : lo > n - 1 ? n - 1 : lo;
        hi = hi < -1 ? -1 : hi > n - 1 ? n - 1 : hi;
    }
    jv out = o.k == V_LIST ? jv_list(r, 0) : (jv){0};
    sbuf_j sb = {0};
    for (int64_t i = lo; !r->err && (step > 0 ? i < hi : i > hi); i += step) {
        if (o.k == V_LIST) jl_push(r, out.l, o.l->v[i]);
        else jr_put(r, &sb, o.s.p + i, 1);
    }
    if (o.k == V_STR && !r->err) out = jv_str(r, sb.p ? sb.p : "", sb.n);
    free(sb.p);
    return out;
}

jv jr_eval(jr *r, const jnode *e) {
    if (r->err) return (jv){0};
    if (++r->steps > JJ_MAX_STEPS) return jr_err(r, HE_ELIMIT, e->line, "%s", "too many evaluation steps"), (jv){0};
    switch (e->kind) {
    case E_STR: return (jv){.k = V_STR, .s = {e->s, e->n}};
    case E_INT: return (jv){.k = V_INT, .i = e->i};
    case E_FLOAT: return (jv){.k = V_FLOAT, .f = e->f};
    case E_BOOL: return (jv){.k = V_BOOL, .b = e->i != 0};
    case E_NONE: return (jv){.k = V_NONE};
    case E_NAME: {
        jv *v = lookup(r, e->s, e->n);
        if (v) return *v;
        return jr_global(e->s, e->n);
    }
    case E_ATTR: {
        jv o = jr_eval(r, e->a);
        if (r->err) return o;
        if (o.k == V_DICT) {
            jv *v = jd_find(o.d, e->s, e->n);
            return v ? *v : (jv){.k = V_UNDEF};
        }
        if (o.k == V_UNDEF) return jr_err(r, HE_EINVAL, e->line, "%s", "attribute of an undefined value"), (jv){0};
        return (jv){.k = V_UNDEF};
    }
    case E_INDEX: {
        jv o = jr_eval(r, e->a), k = jr_eval(r, e->b);
        return r->err ? (jv){0} : jv_item(r, e->line, o, k);
    }
    case E_SLICE: return slice(r, e);
    case E_CALL: return jr_call(r, e);
    case E_FILTER: return jr_filter(r, e);
    case E_TEST: return jr_test(r, e);
    case E_NOT: return (jv){.k = V_BOOL, .b = !jv_truthy(jr_eval(r, e->a))};
    case E_NEG: {
        jv a = jr_eval(r, e->a);
        if (a.k == V_INT) return (jv){.k = V_INT, .i = -a.i};
        if (a.k == V_FLOAT) return (jv){.k = V_FLOAT, .f = -a.f};
        return jr_err(r, HE_EINVAL, e->line, "%s", "negating a non-number"), (jv){0};
    }
    case E_BIN: return binop(r, e);
    case E_AND: {
        jv a = jr_eval(r, e->a);
        return jv_truthy(a) ? jr_eval(r, e->b) : a;
    }
    case E_OR: {
        jv a = jr_eval(r, e->a);
        return jv_truthy(a) ? a : jr_eval(r, e->b);
    }
    case E_COND: return jv_truthy(jr_eval(r, e->b)) ? jr_eval(r, e->a) : e->c ? jr_eval(r, e->c) : (jv){.k = V_UNDEF};
    case E_LIST: {
        jv l = jv_list(r, e->nv);
        for (size_t i = 0; !r->err && i < e->nv; i++) jl_push(r, l.l, jr_eval(r, e->v[i]));
        return l;
    }
    case E_DICT: {
        jv d = jv_dict(r);
        for (size_t i = 0; !r->err && i < e->nv; i++) jd_set(r, d.d, jr_eval(r, e->v[i]), jr_eval(r, e->v2[i]));
        return d;
    }
    default: return jr_err(r, HE_EINVAL, e->line, "%s", "not an expression"), (jv){0};
    }
}

/* ---- statements */

static int run(jr *r, jnode *const *v, size_t n, sbuf_j *o);

/* the loop object of item i of n */
static jv loop_obj(jr *r, const jlist *items, size_t i) {
    size_t n = items->n;
    jv d = jv_dict(r);
    if (r->err) return d;
    jd_sets(r, d.d, "index", (jv){.k = V_INT, .i = (int64_t)i + 1});
    jd_sets(r, d.d, "index0", (jv){.k = V_INT, .i = (int64_t)i});
    jd_sets(r, d.d, "revindex", (jv){.k = V_INT, .i = (int64_t)(n - i)});
    jd_sets(r, d.d, "revindex0", (jv){.k = V_INT, .i = (int64_t)(n - i - 1)});
    jd_sets(r, d.d, "first", (jv){.k = V_BOOL, .b = i == 0});
    jd_sets(r, d.d, "last", (jv){.k = V_BOOL, .b = i + 1 == n});
    jd_sets(r, d.d, "length", (jv){.k = V_INT, .i = (int64_t)n});
    jd_sets(r, d.d, "previtem", i > 0 ? items->v[i - 1] : (jv){.k = V_UNDEF});
    jd_sets(r, d.d, "nextitem", i + 1 < n ? items->v[i + 1] : (jv){.k = V_UNDEF});
    return d;
}

static int bind(jr *r, const jnode *f, jv item) {
    jdict *sc = r->scopes[r->nscopes - 1];
    if (!f->s2) return jd_set(r, sc, (jv){.k = V_STR, .s = {f->s, f->n}}, item);
    if (item.k != V_LIST || item.l->n != 2) return jr_err(r, HE_EINVAL, f->line, "%s", "cannot unpack into two names");
    jd_set(r, sc, (jv){.k = V_STR, .s = {f->s, f->n}}, item.l->v[0]);
    return jd_set(r, sc, (jv){.k = V_STR, .s = {f->s2, f->n2}}, item.l->v[1]);
}

static int run_for(jr *r, const jnode *f, sbuf_j *o) {
    jv it = jr_eval(r, f->a);
    if (r->err) return r->err;
    if (it.k == V_DICT) it = jr_dict_keys(r, it);
    else if (it.k == V_STR) it = jr_str_chars(r, it);
    else if (it.k == V_UNDEF || it.k == V_NONE) it = jv_list(r, 0);
    if (r->err) return r->err;
    if (it.k != V_LIST) return jr_err(r, HE_EINVAL, f->line, "%s", "for over a value that is not iterable");
    if (push_scope(r)) return r->err;
    jlist *items = it.l;
    if (f->c) { /* `for x in y if cond`: filter first, so loop.* count the kept items */
        jv kept = jv_list(r, items->n);
        for (size_t i = 0; !r->err && i < items->n; i++) {
            bind(r, f, items->v[i]);
            if (jv_truthy(jr_eval(r, f->c))) jl_push(r, kept.l, items->v[i]);
        }
        if (r->err) return r->err;
        items = kept.l;
    }
    for (size_t i = 0; !r->err && i < items->n; i++) {
        r->scopes[r->nscopes - 1]->n = 0; /* fresh body scope each round */
        bind(r, f, items->v[i]);
        jd_sets(r, r->scopes[r->nscopes - 1], "loop", loop_obj(r, items, i));
        run(r, f->v, f->nv, o);
    }
    r->nscopes--;
    if (!r->err && items->n == 0) run(r, f->v2, f->nv2, o);
    return r->err;
}

static int run(jr *r, jnode *const *v, size_t n, sbuf_j *o) {
    for (size_t i = 0; i < n && !r->err; i++) {
        const jnode *s = v[i];
        if (++r->steps > JJ_MAX_STEPS) return jr_err(r, HE_ELIMIT, s->line, "%s", "too many evaluation steps");
        switch (s->kind) {
        case N_TEXT: jr_put(r, o, s->s, s->n); break;
        case N_OUT: {
            jv x = jr_eval(r, s->a);
            if (!r->err) jv_write(r, o, x);
            break;
        }
        case N_IF:
            if (jv_truthy(jr_eval(r, s->a))) run(r, s->v, s->nv, o);
            else if (!r->err) run(r, s->v2, s->nv2, o);
            break;
        case N_FOR: run_for(r, s, o); break;
        case N_SET: {
            jv x = jr_eval(r, s->a);
            if (r->err) break;
            if (s->s2) {
                jv *ns = lookup(r, s->s, s->n);
                if (!ns || ns->k != V_DICT) {
                    jr_err(r, HE_EINVAL, s->line, "%s", "set of an attribute of something that is not a namespace");
                    break;
                }
                jd_set(r, ns->d, (jv){.k = V_STR, .s = {s->s2, s->n2}}, x);
            } else {
                jd_set(r, r->scopes[r->nscopes - 1], (jv){.k = V_STR, .s = {s->s, s->n}}, x);
            }
            break;
        }
        default: jr_err(r, HE_EINVAL, s->line, "%s", "not a statement"); break;
        }
    }
    return r->err;
}

int jj_render_chat(const jj_tmpl_t *t, const jj_chat_vars *cv, char **out, size_t *out_len) {
    *out = NULL;
    if (out_len) *out_len = 0;
    if (!t || !cv || (cv->n_messages && !cv->messages)) return he_set(HE_EINVAL, "chat template: bad arguments");
    jr r = {.ar = {.limit = 64u << 20}};
    sbuf_j o = {0};
    if (push_scope(&r)) goto done;
    jv msgs = jv_list(&r, cv->n_messages);
    for (size_t i = 0; !r.err && i < cv->n_messages; i++) {
        const jj_msg *m = &cv->messages[i];
        if (!m->role || !m->content) {
            jr_err(&r, HE_EINVAL, 0, "%s", "a message lacks its role or content");
            break;
        }
        jv d = jv_dict(&r);
        if (r.err) break;
        jd_sets(&r, d.d, "role", (jv){.k = V_STR, .s = {m->role, strlen(m->role)}});
        jd_sets(&r, d.d, "content", (jv){.k = V_STR, .s = {m->content, strlen(m->content)}});
        jl_push(&r, msgs.l, d);
    }
    jdict *g = r.scopes[0];
    const char *bos = cv->bos_token ? cv->bos_token : "", *eos = cv->eos_token ? cv->eos_token : "";
    jd_sets(&r, g, "messages", msgs);
    jd_sets(&r, g, "add_generation_prompt", (jv){.k = V_BOOL, .b = cv->add_generation_prompt});
    jd_sets(&r, g, "bos_token", (jv){.k = V_STR, .s = {bos, strlen(bos)}});
    jd_sets(&r, g, "eos_token", (jv){.k = V_STR, .s = {eos, strlen(eos)}});
    if (!r.err && push_scope(&r) == 0) run(&r, t->body, t->n, &o);
done:
    jj_arena_free(&r.ar);
    if (r.err) {
        free(o.p);
        return r.err;
    }
    if (!o.p && !(o.p = calloc(1, 1))) return he_set(HE_ENOMEM, "chat template: out of memory");
    *out = o.p;
    if (out_len) *out_len = o.n;
    return 0;
}
