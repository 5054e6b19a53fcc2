/* jinja_eval: the render state and value helpers shared by jinja_eval.c (the
 * evaluator) and jinja_lib.c (filters, tests, methods, globals). Not public.
 * All functions that can fail record the first error in r->err and return a
 * harmless value (V_UNDEF) or r->err; callers check r->err.
 */
#ifndef HELIUM_JINJA_EVAL_H
#define HELIUM_JINJA_EVAL_H

#include "jinja_impl.h"

#define JR_MAX_SCOPES 64

typedef struct {
    char *p; /* (n + 1) bytes, NUL-terminated; malloc'd */
    size_t n, cap;
} sbuf_j;

typedef struct {
    jj_arena ar;                  /* every value of this render */
    jdict *scopes[JR_MAX_SCOPES]; /* scopes[0] globals, then template, loop bodies */
    size_t nscopes;
    long steps; /* evaluation steps so far (bounded by JJ_MAX_STEPS) */
    int err;    /* first error (herr code), 0 while fine */
} jr;

int jr_err(jr *r, int code, int line, const char *fmt, const char *arg);
jv jr_eval(jr *r, const jnode *e);

/* jinja_eval.c: values */
jv jv_str(jr *r, const char *p, size_t n); /* copies p */
jv jv_list(jr *r, size_t cap);
int jl_push(jr *r, jlist *l, jv v);
jv jv_dict(jr *r);
jv *jd_find(const jdict *d, const char *k, size_t n);
int jd_set(jr *r, jdict *d, jv key, jv val);
int jd_sets(jr *r, jdict *d, const char *k, jv val);
bool jv_truthy(jv v);
bool jv_eq(jv a, jv b);
bool jv_contains(jv hay, jv needle);
jv jv_item(jr *r, int line, jv obj, jv key);
int jr_put(jr *r, sbuf_j *o, const char *p, size_t n);
int jv_write(jr *r, sbuf_j *o, jv v); /* Python str(v) */
jv jv_to_str(jr *r, jv v);

/* jinja_lib.c */
jv jr_global(const char *s, size_t n); /* a global function by name, or V_UNDEF */
jv jr_call(jr *r, const jnode *e);
jv jr_filter(jr *r, const jnode *e);
jv jr_test(jr *r, const jnode *e);
jv jr_dict_keys(jr *r, jv d);
jv jr_str_chars(jr *r, jv s);

#endif
