/* jinja_impl: what jinja_parse.c and jinja_eval.c share (not a public
 * header): the arena both allocate from, the syntax tree, and values.
 *
 * Every node, string and value of a template or of one render lives in an
 * arena and is freed with it, so nothing in a tree or a value is freed alone.
 */
#ifndef HELIUM_JINJA_IMPL_H
#define HELIUM_JINJA_IMPL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "jinja.h"

typedef struct jj_blk jj_blk;
typedef struct {
    jj_blk *head;
    size_t total; /* bytes handed out */
    size_t limit; /* most bytes it may hand out */
} jj_arena;

/* Zeroed memory of n bytes, or NULL past the limit / out of memory. */
void *jj_alloc(jj_arena *a, size_t n);
char *jj_strdup(jj_arena *a, const char *s, size_t n);
void jj_arena_free(jj_arena *a);

typedef enum {
    /* statements */
    N_TEXT, N_OUT, N_IF, N_FOR, N_SET,
    /* expressions */
    E_STR, E_INT, E_FLOAT, E_BOOL, E_NONE, E_NAME, E_ATTR, E_INDEX, E_SLICE, E_CALL, E_FILTER, E_TEST,
    E_NOT, E_NEG, E_BIN, E_AND, E_OR, E_COND, E_LIST, E_DICT,
} jn_kind;

/* E_BIN operators */
enum { OP_ADD = 1, OP_SUB, OP_MUL, OP_DIV, OP_FDIV, OP_MOD, OP_CAT, OP_EQ, OP_NE, OP_LT, OP_GT, OP_LE, OP_GE, OP_IN,
       OP_NOTIN };

typedef struct jnode jnode;
struct jnode {
    jn_kind kind;
    int op;          /* E_BIN operator; E_TEST: 1 = negated */
    int line;        /* source line, for errors */
    const char *s;   /* text, name, string literal, attribute, filter/test name */
    size_t n;        /* bytes of s */
    const char *s2;  /* N_FOR: second loop name; N_SET: attribute of a namespace */
    size_t n2;
    int64_t i;       /* E_INT, E_BOOL */
    double f;        /* E_FLOAT */
    jnode *a, *b, *c, *d;  /* children (see jinja_parse.c) */
    jnode **v;          /* (nv) body / args / items / keys */
    size_t nv;
    jnode **v2;         /* (nv2) else-body / keyword-arg values / dict values */
    size_t nv2;
    const char **kw; /* (nv2) keyword-argument names of a call or filter */
    size_t *kwn;
};

struct jj_tmpl {
    jj_arena ar;
    jnode **body; /* (n) top-level statements */
    size_t n;
};

/* ---- values */
typedef enum { V_UNDEF = 0, V_NONE, V_BOOL, V_INT, V_FLOAT, V_STR, V_LIST, V_DICT, V_FUNC } jv_kind;

typedef struct jv jv;
typedef struct jlist jlist;
typedef struct jdict jdict;
struct jv {
    jv_kind k;
    union {
        bool b;
        int64_t i;
        double f;
        struct {
            const char *p;
            size_t n;
        } s;
        jlist *l;
        jdict *d;
        int fn; /* V_FUNC: global function id */
    };
};
struct jlist {
    jv *v;
    size_t n, cap;
};
struct jdict { /* insertion-ordered; namespace objects are dicts too */
    jv *keys, *vals;
    size_t n, cap;
};

#endif
