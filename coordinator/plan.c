/* plan: see plan.h.
 *
 * Per job, four passes over its workflow:
 *   1. inputs: the values in effect (given, else default), with their lengths;
 *   2. liveness: a worklist from the roots (output, keep ids, side-effecting
 *      tools) over references, parents, map bodies and loop outputs;
 *   3. content signatures (csig), scope by scope in topological order, a
 *      map/loop's body scope before the map/loop itself;
 *   4. emission, in the same order but a map/loop before its body: final
 *      signature (csig, mixed with the parent's final signature for body
 *      ops), lookup in the node table, new node or merge.
 * Encoding hashed for a template: each maximal run of text parts and input
 * values is one literal (tag, total length, bytes; empty runs vanish), a
 * {{op.ID}} is (tag, csig of ID), {{item}} and {{prev}} are tags. All
 * integers are fixed-width little-endian, strings length-prefixed.
 *
 * Invariants: node deps and parents point to lower node indices; a node is in
 * the table only if deterministic (and CSE is on); members are recorded in
 * emission order, so the first member of a node is its representative.
 */
#include "plan.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>
#define XXH_STATIC_LINKING_ONLY /* XXH3_state_t on the stack */
#include <xxhash.h>

#include "herr.h"
#include "rcache.h"

#define PLAN_SEED 0x48656c69756d504cULL /* "HeliumPL" */

enum {
    T_LLM = 1, T_TOOL, T_MAP, T_JOIN, T_LOOP, /* op kinds */
    T_LIT = 16, T_OP, T_ITEM, T_PREV, T_END,  /* template parts */
    T_SALT = 32, T_NONE, T_SOME,
};

typedef struct {
    int node, job, op;
} member;

typedef struct {
    int to, from; /* op `to` waits for op `from` (same scope) */
} edge;

struct plan {
    plan_node *nodes;   /* (n_nodes) */
    size_t n_nodes, cap_nodes;
    size_t *dep_off;    /* (cap_nodes) node i's deps start at dep_pool[dep_off[i]] */
    int *dep_pool;      /* (n_dep) */
    size_t n_dep, cap_dep;
    plan_ref *members;  /* (n_mem) grouped by node, representative first */
    member *mem;        /* (n_mem) emission order; freed after finishing */
    size_t n_mem, cap_mem;
    int **node_of;      /* (n_jobs) x (n_ops[job]) node or -1 */
    size_t *n_ops;      /* (n_jobs) */
    size_t n_jobs;
    uint64_t *tkey;     /* (tcap) open-addressing table: final signature -> node */
    int *tval;          /* (tcap) node, -1 empty */
    size_t tcap;
    plan_stats st;
};

/* Scratch of the job being planned, sized to the largest workflow. */
typedef struct {
    plan_t *p;
    unsigned flags;
    int job;
    const wf_t *wf;
    const char **vals;  /* (wf->n_inputs) */
    size_t *lens;       /* (wf->n_inputs) */
    unsigned char *live, *det; /* (n_ops) */
    uint64_t *csig, *fsig;     /* (n_ops) */
    int *stack;         /* (n_ops) */
    edge *E;            /* (n_E) */
    size_t n_E, cap_E;
    size_t *estart;     /* (n_ops + 1) edges of op i: E[estart[i] .. estart[i+1]) after sorting */
} jobctx;

/* --------------------------------------------------------------- hashing */

typedef struct {
    XXH3_state_t st;
    unsigned char buf[512];
    size_t n;
} hw;

static void hw_init(hw *w) {
    w->n = 0;
    XXH3_64bits_reset_withSeed(&w->st, PLAN_SEED);
}

static void hw_flush(hw *w) {
    if (w->n) XXH3_64bits_update(&w->st, w->buf, w->n);
    w->n = 0;
}

static void hw_raw(hw *w, const void *p, size_t n) {
    if (n == 0) return;
    if (n > sizeof w->buf - w->n) {
        hw_flush(w);
        if (n > sizeof w->buf) {
            XXH3_64bits_update(&w->st, p, n);
            return;
        }
    }
    memcpy(w->buf + w->n, p, n);
    w->n += n;
}

static uint64_t hw_digest(hw *w) {
    hw_flush(w);
    return XXH3_64bits_digest(&w->st);
}

static void h_u8(hw *w, unsigned v) {
    unsigned char b = (unsigned char)v;
    hw_raw(w, &b, 1);
}

static void h_u32(hw *w, uint32_t v) {
    unsigned char b[4];
    for (int i = 0; i < 4; i++) b[i] = (unsigned char)(v >> (8 * i));
    hw_raw(w, b, 4);
}

static void h_u64(hw *w, uint64_t v) {
    unsigned char b[8];
    for (int i = 0; i < 8; i++) b[i] = (unsigned char)(v >> (8 * i));
    hw_raw(w, b, 8);
}

static void h_f32(hw *w, float f) {
    uint32_t u;
    if (f == 0.0f) f = 0.0f; /* -0 -> +0 */
    memcpy(&u, &f, 4);
    h_u32(w, u);
}

static void h_str(hw *w, const char *s) {
    size_t n = s ? strlen(s) : 0;
    h_u64(w, n);
    if (n) hw_raw(w, s, n);
}

/* A template as literal runs and placeholders (see the file comment). */
static void h_tmpl(hw *w, const jobctx *c, const wf_tmpl *t) {
    for (size_t k = 0; k < t->n;) {
        const wf_part *p = &t->v[k];
        if (p->kind == WF_PART_TEXT || p->kind == WF_PART_INPUT) {
            size_t e = k, total = 0;
            for (; e < t->n && (t->v[e].kind == WF_PART_TEXT || t->v[e].kind == WF_PART_INPUT); e++)
                total += t->v[e].kind == WF_PART_TEXT ? t->v[e].len : c->lens[t->v[e].ref];
            if (total) {
                h_u8(w, T_LIT);
                h_u64(w, total);
                for (size_t q = k; q < e; q++) {
                    const wf_part *x = &t->v[q];
                    if (x->kind == WF_PART_TEXT) hw_raw(w, x->s, x->len);
                    else hw_raw(w, c->vals[x->ref], c->lens[x->ref]);
                }
            }
            k = e;
            continue;
        }
        if (p->kind == WF_PART_OP) {
            h_u8(w, T_OP);
            h_u64(w, c->csig[p->ref]);
        } else {
            h_u8(w, p->kind == WF_PART_ITEM ? T_ITEM : T_PREV);
        }
        k++;
    }
    h_u8(w, T_END);
}

static bool is_greedy(const wf_sampling *s) { return !(s->temperature > 0.0f) || s->top_k == 1; }

static bool has_effects(const wf_op *op) {
    const char *m = op->tool.method;
    return op->kind == WF_TOOL && m && strcmp(m, "GET") != 0 && strcmp(m, "HEAD") != 0;
}

/* Content signature of live op i (its body's csigs are known); sets det[i]. */
static uint64_t sign_op(jobctx *c, int i) {
    const wf_op *op = c->wf->ops[i];
    bool det = false;
    hw w;
    hw_init(&w);
    switch (op->kind) {
    case WF_LLM: {
        const wf_sampling *s = &op->llm.sampling;
        det = rcache_sampling_deterministic(s);
        h_u8(&w, T_LLM);
        h_str(&w, op->llm.model);
        if (is_greedy(s) && !(c->flags & PLAN_STRICT_SAMPLING)) {
            h_u8(&w, T_NONE);
        } else {
            h_u8(&w, T_SOME);
            h_f32(&w, s->temperature > 0.0f ? s->temperature : 0.0f);
            h_u32(&w, s->top_k);
            h_f32(&w, s->top_p > 0.0f && s->top_p < 1.0f ? s->top_p : 1.0f);
            h_u64(&w, s->seed);
        }
        h_u32(&w, op->llm.max_tokens);
        h_u64(&w, op->llm.n_stop);
        for (size_t k = 0; k < op->llm.n_stop; k++) h_str(&w, op->llm.stop[k]);
        h_tmpl(&w, c, &op->llm.prompt);
        break;
    }
    case WF_TOOL:
        det = (c->flags & PLAN_MERGE_TOOL_GET) && (!op->tool.method || strcmp(op->tool.method, "GET") == 0);
        h_u8(&w, T_TOOL);
        h_str(&w, op->tool.method ? op->tool.method : "GET");
        h_tmpl(&w, c, &op->tool.url);
        h_tmpl(&w, c, &op->tool.body);
        h_u64(&w, op->tool.n_headers);
        for (size_t k = 0; k < op->tool.n_headers; k++) {
            h_str(&w, op->tool.headers[k].key);
            h_str(&w, op->tool.headers[k].value);
        }
        h_u32(&w, op->tool.timeout_ms);
        h_u32(&w, op->tool.max_response_bytes);
        break;
    case WF_JOIN:
        det = true;
        h_u8(&w, T_JOIN);
        h_str(&w, op->join.separator ? op->join.separator : "\n");
        h_tmpl(&w, c, &op->join.parts);
        break;
    case WF_MAP: {
        const wf_part *ov = &op->map.over;
        int body = op->map.body;
        det = body >= 0 && c->det[body];
        h_u8(&w, T_MAP);
        h_u32(&w, (uint32_t)op->map.split);
        h_u32(&w, op->map.max_width);
        if (ov->kind == WF_PART_INPUT) {
            h_u8(&w, T_LIT);
            h_u64(&w, c->lens[ov->ref]);
            hw_raw(&w, c->vals[ov->ref], c->lens[ov->ref]);
        } else {
            h_u8(&w, T_OP);
            h_u64(&w, c->csig[ov->ref]);
        }
        h_u64(&w, body >= 0 ? c->csig[body] : 0);
        break;
    }
    case WF_LOOP: {
        det = true;
        h_u8(&w, T_LOOP);
        if (op->loop.until_contains) {
            h_u8(&w, T_SOME);
            h_str(&w, op->loop.until_contains);
        } else {
            h_u8(&w, T_NONE);
        }
        h_u32(&w, op->loop.max_rounds);
        uint32_t pos = 0, out_pos = UINT32_MAX;
        for (size_t k = 0; k < op->n_order; k++) {
            int b = op->order[k];
            if (!c->live[b]) continue;
            det = det && c->det[b];
            if (b == op->loop.output) out_pos = pos;
            h_u64(&w, c->csig[b]);
            pos++;
        }
        h_u8(&w, T_END);
        h_u32(&w, out_pos);
        break;
    }
    default: break;
    }
    if (!det) { /* unique: nothing equals it, nothing built on it merges */
        h_u8(&w, T_SALT);
        h_u64(&w, (uint64_t)c->job);
        h_u64(&w, (uint64_t)i);
    }
    c->det[i] = det;
    return hw_digest(&w);
}

static uint64_t mix_parent(uint64_t csig, uint64_t parent_fsig) {
    unsigned char b[16];
    for (int i = 0; i < 8; i++) {
        b[i] = (unsigned char)(csig >> (8 * i));
        b[8 + i] = (unsigned char)(parent_fsig >> (8 * i));
    }
    return XXH3_64bits_withSeed(b, sizeof b, PLAN_SEED);
}

/* ------------------------------------------------------------- per job */

static const int *scope_order(const wf_t *wf, int parent, size_t *n) {
    if (parent < 0) {
        *n = wf->n_order;
        return wf->order;
    }
    *n = wf->ops[parent]->n_order;
    return wf->ops[parent]->order;
}

static int resolve_inputs(jobctx *c, const plan_job *pj) {
    const wf_t *wf = c->wf;
    for (size_t k = 0; k < wf->n_inputs; k++)
        c->vals[k] = wf->inputs[k].has_default ? wf->inputs[k].def : NULL;
    for (size_t g = 0; g < pj->n_inputs; g++) {
        const char *name = pj->input_names ? pj->input_names[g] : NULL;
        int k = name ? wf_find_input(wf, name) : -1;
        if (k < 0)
            return he_set(HE_EINVAL, "job %d: input '%.128s' is not declared by the workflow", c->job,
                          name ? name : "(null)");
        c->vals[k] = pj->input_values && pj->input_values[g] ? pj->input_values[g] : "";
    }
    for (size_t k = 0; k < wf->n_inputs; k++) {
        if (!c->vals[k])
            return he_set(HE_EINVAL, "job %d: required input '%s' is missing", c->job, wf->inputs[k].name);
        c->lens[k] = strlen(c->vals[k]);
    }
    return 0;
}

static void mark(jobctx *c, size_t *sp, int i) {
    if (i < 0 || c->live[i]) return;
    c->live[i] = 1;
    c->stack[(*sp)++] = i;
}

static void mark_tmpl(jobctx *c, size_t *sp, const wf_tmpl *t) {
    for (size_t k = 0; k < t->n; k++)
        if (t->v[k].kind == WF_PART_OP) mark(c, sp, t->v[k].ref);
}

static int liveness(jobctx *c, const plan_job *pj) {
    const wf_t *wf = c->wf;
    size_t n = wf->n_ops, sp = 0;
    if (c->flags & PLAN_KEEP_ALL) {
        memset(c->live, 1, n);
        return 0;
    }
    memset(c->live, 0, n);
    mark(c, &sp, wf->output);
    for (size_t k = 0; k < pj->n_keep; k++) {
        int i = pj->keep[k] ? wf_find(wf, pj->keep[k]) : -1;
        if (i < 0)
            return he_set(HE_EINVAL, "job %d: keep names no op '%.128s'", c->job,
                          pj->keep[k] ? pj->keep[k] : "(null)");
        mark(c, &sp, i);
    }
    if (!(c->flags & PLAN_PRUNE_EFFECTS))
        for (size_t i = 0; i < n; i++)
            if (has_effects(wf->ops[i])) mark(c, &sp, (int)i);
    while (sp) {
        const wf_op *op = wf->ops[c->stack[--sp]];
        mark(c, &sp, op->parent);
        switch (op->kind) {
        case WF_LLM: mark_tmpl(c, &sp, &op->llm.prompt); break;
        case WF_TOOL:
            mark_tmpl(c, &sp, &op->tool.url);
            mark_tmpl(c, &sp, &op->tool.body);
            break;
        case WF_JOIN: mark_tmpl(c, &sp, &op->join.parts); break;
        case WF_MAP:
            if (op->map.over.kind == WF_PART_OP) mark(c, &sp, op->map.over.ref);
            mark(c, &sp, op->map.body);
            break;
        case WF_LOOP: mark(c, &sp, op->loop.output); break;
        default: break;
        }
    }
    return 0;
}

/* Records the edge implied by live op x referencing op j. */
static int add_ref_edge(jobctx *c, int x, int j) {
    const wf_t *wf = c->wf;
    if (j < 0 || (size_t)j >= wf->n_ops) return 0;
    int a = x, tp = wf->ops[j]->parent;
    while (a >= 0 && wf->ops[a]->parent != tp) a = wf->ops[a]->parent;
    if (a < 0 || a == j) return 0; /* impossible in a validated workflow */
    if (c->n_E == c->cap_E) {
        size_t cap = c->cap_E ? c->cap_E * 2 : 64;
        edge *v = realloc(c->E, cap * sizeof *v);
        if (!v) return he_set(HE_ENOMEM, "out of memory");
        c->E = v;
        c->cap_E = cap;
    }
    c->E[c->n_E++] = (edge){a, j};
    return 0;
}

static int edges_tmpl(jobctx *c, int x, const wf_tmpl *t) {
    for (size_t k = 0; k < t->n; k++)
        if (t->v[k].kind == WF_PART_OP) {
            int rc = add_ref_edge(c, x, t->v[k].ref);
            if (rc) return rc;
        }
    return 0;
}

/* Dependencies among live ops from their references, grouped by `to`
 * (counting sort into estart). */
static int edges(jobctx *c) {
    const wf_t *wf = c->wf;
    size_t n = wf->n_ops;
    int rc = 0;
    c->n_E = 0;
    for (size_t x = 0; x < n && !rc; x++) {
        if (!c->live[x]) continue;
        const wf_op *op = wf->ops[x];
        switch (op->kind) {
        case WF_LLM: rc = edges_tmpl(c, (int)x, &op->llm.prompt); break;
        case WF_TOOL:
            if (!(rc = edges_tmpl(c, (int)x, &op->tool.url))) rc = edges_tmpl(c, (int)x, &op->tool.body);
            break;
        case WF_JOIN: rc = edges_tmpl(c, (int)x, &op->join.parts); break;
        case WF_MAP:
            if (op->map.over.kind == WF_PART_OP) rc = add_ref_edge(c, (int)x, op->map.over.ref);
            break;
        default: break;
        }
    }
    if (rc) return rc;
    memset(c->estart, 0, (n + 1) * sizeof *c->estart);
    for (size_t k = 0; k < c->n_E; k++) c->estart[c->E[k].to + 1]++;
    for (size_t i = 0; i < n; i++) c->estart[i + 1] += c->estart[i];
    edge *sorted = malloc((c->n_E ? c->n_E : 1) * sizeof *sorted);
    size_t *fill = malloc((n + 1) * sizeof *fill);
    if (!sorted || !fill) {
        free(sorted);
        free(fill);
        return he_set(HE_ENOMEM, "out of memory");
    }
    memcpy(fill, c->estart, (n + 1) * sizeof *fill);
    for (size_t k = 0; k < c->n_E; k++) sorted[fill[c->E[k].to]++] = c->E[k];
    if (c->n_E) memcpy(c->E, sorted, c->n_E * sizeof *sorted);
    free(sorted);
    free(fill);
    return 0;
}

static void sign_scope(jobctx *c, int parent) {
    size_t n;
    const int *order = scope_order(c->wf, parent, &n);
    for (size_t k = 0; k < n; k++) {
        int i = order[k];
        if (!c->live[i]) continue;
        wf_kind kd = c->wf->ops[i]->kind;
        if (kd == WF_MAP || kd == WF_LOOP) sign_scope(c, i);
        c->csig[i] = sign_op(c, i);
    }
}

/* ----------------------------------------------------------- plan storage */

static int tab_find(const plan_t *p, uint64_t key) {
    for (size_t h = key & (p->tcap - 1);; h = (h + 1) & (p->tcap - 1)) {
        if (p->tval[h] < 0) return -1;
        if (p->tkey[h] == key) return p->tval[h];
    }
}

/* The table holds at most nodes_out <= ops_in < tcap / 2 entries. */
static void tab_put(plan_t *p, uint64_t key, int node) {
    size_t h = key & (p->tcap - 1);
    while (p->tval[h] >= 0) h = (h + 1) & (p->tcap - 1);
    p->tkey[h] = key;
    p->tval[h] = node;
}

static int grow_arr(void **v, size_t *cap, size_t need, size_t elem) {
    if (need <= *cap) return 0;
    size_t c = *cap ? *cap : 64;
    while (c < need) c *= 2;
    void *n = realloc(*v, c * elem);
    if (!n) return he_set(HE_ENOMEM, "out of memory");
    *v = n;
    *cap = c;
    return 0;
}

static int add_member(plan_t *p, int node, int job, int op) {
    int rc = grow_arr((void **)&p->mem, &p->cap_mem, p->n_mem + 1, sizeof *p->mem);
    if (rc) return rc;
    p->mem[p->n_mem++] = (member){node, job, op};
    return 0;
}

/* New node for live op i of the current job; its deps from the edges. */
static int new_node(jobctx *c, int i, int pnode, int *out) {
    plan_t *p = c->p;
    size_t cap = p->cap_nodes;
    int rc = grow_arr((void **)&p->nodes, &p->cap_nodes, p->n_nodes + 1, sizeof *p->nodes);
    if (!rc && p->cap_nodes != cap) {
        size_t *d = realloc(p->dep_off, p->cap_nodes * sizeof *d);
        if (!d) rc = he_set(HE_ENOMEM, "out of memory");
        else p->dep_off = d;
    }
    size_t e0 = c->estart[i], e1 = c->estart[i + 1];
    if (!rc) rc = grow_arr((void **)&p->dep_pool, &p->cap_dep, p->n_dep + (e1 - e0), sizeof *p->dep_pool);
    if (rc) return rc;
    int id = (int)p->n_nodes++;
    plan_node *nd = &p->nodes[id];
    memset(nd, 0, sizeof *nd);
    nd->kind = c->wf->ops[i]->kind;
    nd->sig = c->fsig[i];
    nd->parent = pnode;
    nd->rep = (plan_ref){c->job, i};
    nd->deterministic = c->det[i];
    p->dep_off[id] = p->n_dep;
    int *d = p->dep_pool + p->n_dep;
    size_t nd_n = 0;
    for (size_t e = e0; e < e1; e++) {
        int v = p->node_of[c->job][c->E[e].from];
        if (v < 0) continue; /* cannot happen: refs of live ops are live and emitted first */
        size_t q = nd_n; /* insertion into the sorted, unique list */
        while (q > 0 && d[q - 1] > v) q--;
        if (q > 0 && d[q - 1] == v) continue;
        memmove(d + q + 1, d + q, (nd_n - q) * sizeof *d);
        d[q] = v;
        nd_n++;
    }
    nd->n_deps = nd_n;
    p->n_dep += nd_n;
    *out = id;
    return 0;
}

static int emit_scope(jobctx *c, int parent) {
    plan_t *p = c->p;
    size_t n;
    const int *order = scope_order(c->wf, parent, &n);
    int *node_of = p->node_of[c->job];
    int pnode = parent < 0 ? -1 : node_of[parent];
    for (size_t k = 0; k < n; k++) {
        int i = order[k], rc;
        if (!c->live[i]) continue;
        const wf_op *op = c->wf->ops[i];
        c->fsig[i] = parent < 0 ? c->csig[i] : mix_parent(c->csig[i], c->fsig[parent]);
        bool cse = c->det[i] && !(c->flags & PLAN_NO_CSE);
        int nd = cse ? tab_find(p, c->fsig[i]) : -1;
        if (nd >= 0 && (p->nodes[nd].kind != op->kind || p->nodes[nd].parent != pnode)) {
            nd = -1; /* a 64-bit collision: keep it apart */
            cse = false;
        }
        if (nd >= 0) {
            p->st.ops_merged++;
        } else {
            if ((rc = new_node(c, i, pnode, &nd))) return rc;
            if (cse) tab_put(p, c->fsig[i], nd);
        }
        node_of[i] = nd;
        if ((rc = add_member(p, nd, c->job, i))) return rc;
        if ((op->kind == WF_MAP || op->kind == WF_LOOP) && (rc = emit_scope(c, i))) return rc;
    }
    return 0;
}

static int plan_one(jobctx *c, const plan_job *pj) {
    int rc;
    size_t n = c->wf->n_ops;
    if ((rc = resolve_inputs(c, pj)) || (rc = liveness(c, pj)) || (rc = edges(c))) return rc;
    memset(c->det, 0, n);
    for (size_t i = 0; i < n; i++) {
        c->csig[i] = c->fsig[i] = 0;
        c->p->node_of[c->job][i] = -1;
        if (!c->live[i]) c->p->st.ops_pruned++;
    }
    sign_scope(c, -1);
    return emit_scope(c, -1);
}

/* Groups the members by node (stable: representative first) and points the
 * nodes at their deps and members. */
static int finish(plan_t *p) {
    p->members = malloc((p->n_mem ? p->n_mem : 1) * sizeof *p->members);
    size_t *start = calloc(p->n_nodes + 1, sizeof *start);
    if (!p->members || !start) {
        free(start);
        return he_set(HE_ENOMEM, "out of memory");
    }
    for (size_t k = 0; k < p->n_mem; k++) start[p->mem[k].node + 1]++;
    for (size_t i = 0; i < p->n_nodes; i++) start[i + 1] += start[i];
    for (size_t i = 0; i < p->n_nodes; i++) {
        p->nodes[i].members = p->members + start[i];
        p->nodes[i].n_members = 0;
        p->nodes[i].deps = p->dep_pool ? p->dep_pool + p->dep_off[i] : NULL;
    }
    for (size_t k = 0; k < p->n_mem; k++) {
        plan_node *nd = &p->nodes[p->mem[k].node];
        p->members[start[p->mem[k].node] + nd->n_members++] = (plan_ref){p->mem[k].job, p->mem[k].op};
    }
    free(start);
    free(p->mem);
    p->mem = NULL;
    free(p->tkey);
    free(p->tval);
    p->tkey = NULL;
    p->tval = NULL;
    return 0;
}

static uint64_t mono_us(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

/* ------------------------------------------------------------------ API */

void plan_destroy(plan_t **self_p) {
    if (!self_p || !*self_p) return;
    plan_t *p = *self_p;
    for (size_t j = 0; p->node_of && j < p->n_jobs; j++) free(p->node_of[j]);
    free(p->node_of);
    free(p->n_ops);
    free(p->nodes);
    free(p->dep_off);
    free(p->dep_pool);
    free(p->members);
    free(p->mem);
    free(p->tkey);
    free(p->tval);
    free(p);
    *self_p = NULL;
}

int plan_build_batch(const plan_job *jobs, size_t n_jobs, unsigned flags, plan_t **out, plan_stats *st) {
    uint64_t t0 = mono_us();
    if (!out) return he_set(HE_EINVAL, "plan_build_batch: no output");
    *out = NULL;
    if (!jobs || n_jobs == 0 || n_jobs > PLAN_MAX_JOBS)
        return he_set(HE_EINVAL, "plan_build_batch: %zu jobs (want 1 .. %d)", n_jobs, PLAN_MAX_JOBS);
    size_t max_ops = 0, max_in = 0, total = 0;
    for (size_t j = 0; j < n_jobs; j++) {
        const wf_t *wf = jobs[j].wf;
        if (!wf || !wf->valid) return he_set(HE_EINVAL, "job %zu: workflow is not validated", j);
        if (jobs[j].n_inputs && (!jobs[j].input_names || !jobs[j].input_values))
            return he_set(HE_EINVAL, "job %zu: inputs without names or values", j);
        if (jobs[j].n_keep && !jobs[j].keep) return he_set(HE_EINVAL, "job %zu: keep without ids", j);
        if (wf->n_ops > max_ops) max_ops = wf->n_ops;
        if (wf->n_inputs > max_in) max_in = wf->n_inputs;
        total += wf->n_ops;
    }
    int rc = HE_ENOMEM;
    plan_t *p = calloc(1, sizeof *p);
    jobctx c = {.p = p, .flags = flags};
    if (!p) return he_set(HE_ENOMEM, "out of memory");
    p->n_jobs = n_jobs;
    p->tcap = 16;
    while (p->tcap < 2 * total + 2) p->tcap *= 2;
    p->node_of = calloc(n_jobs, sizeof *p->node_of);
    p->n_ops = calloc(n_jobs, sizeof *p->n_ops);
    p->tkey = malloc(p->tcap * sizeof *p->tkey);
    p->tval = malloc(p->tcap * sizeof *p->tval);
    c.vals = malloc((max_in ? max_in : 1) * sizeof *c.vals);
    c.lens = malloc((max_in ? max_in : 1) * sizeof *c.lens);
    c.live = malloc(max_ops ? max_ops : 1);
    c.det = malloc(max_ops ? max_ops : 1);
    c.csig = malloc((max_ops ? max_ops : 1) * sizeof *c.csig);
    c.fsig = malloc((max_ops ? max_ops : 1) * sizeof *c.fsig);
    c.stack = malloc((max_ops ? max_ops : 1) * sizeof *c.stack);
    c.estart = malloc((max_ops + 1) * sizeof *c.estart);
    if (!p->node_of || !p->n_ops || !p->tkey || !p->tval || !c.vals || !c.lens || !c.live || !c.det ||
        !c.csig || !c.fsig || !c.stack || !c.estart) {
        he_set(HE_ENOMEM, "out of memory");
        goto out;
    }
    for (size_t h = 0; h < p->tcap; h++) p->tval[h] = -1;
    for (size_t j = 0; j < n_jobs; j++) {
        c.job = (int)j;
        c.wf = jobs[j].wf;
        p->n_ops[j] = c.wf->n_ops;
        if (!(p->node_of[j] = malloc((c.wf->n_ops ? c.wf->n_ops : 1) * sizeof **p->node_of))) {
            he_set(HE_ENOMEM, "out of memory");
            goto out;
        }
        if ((rc = plan_one(&c, &jobs[j]))) goto out;
    }
    if ((rc = finish(p))) goto out;
    p->st.jobs = n_jobs;
    p->st.ops_in = total;
    p->st.nodes_out = p->n_nodes;
    p->st.plan_us = mono_us() - t0;
    rc = 0;
out:
    free(c.vals);
    free(c.lens);
    free(c.live);
    free(c.det);
    free(c.csig);
    free(c.fsig);
    free(c.stack);
    free(c.estart);
    free(c.E);
    if (rc) {
        plan_destroy(&p);
        return rc;
    }
    if (st) *st = p->st;
    *out = p;
    return 0;
}

int plan_build(const wf_t *wf, const char *const *input_names, const char *const *input_values,
               size_t n_inputs, unsigned flags, plan_t **out, plan_stats *st) {
    plan_job j = {.wf = wf, .input_names = input_names, .input_values = input_values, .n_inputs = n_inputs};
    return plan_build_batch(&j, 1, flags, out, st);
}

size_t plan_n_nodes(const plan_t *p) { return p ? p->n_nodes : 0; }

const plan_node *plan_node_at(const plan_t *p, size_t i) {
    return p && i < p->n_nodes ? &p->nodes[i] : NULL;
}

int plan_node_of(const plan_t *p, size_t job, int op) {
    if (!p || job >= p->n_jobs || op < 0 || (size_t)op >= p->n_ops[job]) return -1;
    return p->node_of[job][op];
}

size_t plan_n_jobs(const plan_t *p) { return p ? p->n_jobs : 0; }

void plan_get_stats(const plan_t *p, plan_stats *out) {
    if (!out) return;
    if (!p) memset(out, 0, sizeof *out);
    else *out = p->st;
}

uint64_t plan_sig_of(const plan_t *p, size_t job, int op) {
    int n = plan_node_of(p, job, op);
    return n < 0 ? 0 : p->nodes[n].sig;
}
