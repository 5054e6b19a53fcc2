/* ptree: the templated prefix tree of a plan; see ptree.h.
 *
 * Representation: every call's static prefix is copied once into a
 * refcounted token buffer (pt_buf). A node's path from the root is
 * buf->t[0..depth) of the buffer it references (any call below it shares
 * that path), so its edge is buf->t[parent->depth .. depth) and splitting or
 * merging nodes never copies tokens. Nodes and calls hold one reference each
 * on their buffer.
 *
 * Counts: node->sharers = calls ending at or below the node, node->ready =
 * the ready ones among them; both are updated along the root path on every
 * attach/detach/readiness change. Traversals are iterative (explicit
 * stacks), so a deep tree cannot overflow the C stack. The s_* fields of a
 * node are scratch for one traversal.
 */
#include "ptree.h"

#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include "blockhash.h"
#include "herr.h"

typedef struct pt_buf {
    int32_t refs;
    int32_t n;
    int32_t t[]; /* (n) token ids */
} pt_buf;

typedef struct pt_node pt_node;
typedef struct pt_op pt_op;

struct pt_op {
    uint64_t job;
    int32_t op;
    uint32_t item;
    pt_node *node;        /* where its static prefix ends */
    pt_buf *buf;          /* its static prefix (buf->n tokens) */
    int32_t est_prompt, max_tokens;
    int64_t steps, cp;
    bool ready;
    uint64_t seq;         /* insertion order: tie-break */
    pt_op *at_prev, *at_next; /* calls ending at the same node */
    pt_op *hnext;         /* hash chain */
    size_t slot;          /* index in ptree.all */
};

struct pt_node {
    pt_node *parent;
    pt_node **kids; /* (n_kids) sorted by first edge token */
    int32_t n_kids, cap_kids;
    pt_buf *buf;    /* path = buf->t[0..depth); NULL only for the root */
    int32_t depth;
    int32_t sharers, ready;
    uint64_t uid;   /* unique while in the tree; 0 once freed (ptree_stamp_valid) */
    uint64_t ver;   /* the tree's gen at the last change at or below it, or to its edge */
    pt_op *ops;     /* calls ending here */
    int64_t m_steps; /* min steps over the calls at or below (valid unless m_dirty) */
    bool m_dirty;    /* a call at or below changed since m_steps: set on the whole path to the root */
    uint64_t *hc;    /* (hc_to - hc_from) block hashes hc_from.. of its path, cached by
                        ptree_shared_prefixes (its path never changes, so they stay right) */
    int32_t hc_from, hc_to;
    /* traversal scratch */
    int64_t s_steps, s_cp, s_rcp; /* subtree: min steps, max cp, max cp of ready calls */
    int32_t s_entry, s_nb;        /* enclosing shared-prefix entry, full blocks of the path */
};

typedef struct {
    int64_t key;
    int kind;       /* 0 call, 1 child */
    int32_t ready;
    uint64_t tie;
    pt_node *node;
    pt_op *op;
} pt_cand;

typedef struct {
    pt_node *node; /* exactly one of node/op is set */
    pt_op *op;
} pt_work;

struct ptree {
    const tok_t *tok;
    uint64_t root_hash;
    int bs;
    pt_node *root;
    uint64_t gen;    /* moves with every change to calls, readiness, steps or critical paths */
    int32_t n_nodes; /* root included */
    pt_node *pool;   /* freed nodes, chained by parent: kept until ptree_destroy so that a
                        stale stamp can still read a node's uid (at most the peak node count) */
    uint64_t uids;   /* last node uid handed out */
    pt_op **all;     /* (n_all) every call */
    size_t n_all, cap_all;
    pt_op **tab;     /* (tab_cap) hash buckets, power of two */
    size_t tab_cap;
    uint64_t seq;
    int64_t tree_tokens, prefix_tokens;
    /* traversal scratch */
    pt_node **pre;   /* (n_pre) nodes in pre-order */
    size_t n_pre, cap_pre;
    bool pre_ok;     /* pre and the subtree aggregates are collect()'s answer at gen pre_gen */
    uint64_t pre_gen;
    int sp_n, sp_min; /* ptree_shared_prefixes' last answer (ents), for min_sharers sp_min at gen sp_gen */
    uint64_t sp_gen;
    bool sp_ok;
    pt_node **stack;
    size_t cap_stack;
    pt_work *work;
    size_t cap_work;
    pt_cand *cands;
    size_t cap_cands;
    /* ptree_shared_prefixes output */
    ptree_prefix *ents;
    size_t cap_ents;
    size_t *ent_off; /* (cap_ent_off) offset of each entry's hashes in harena */
    size_t cap_ent_off;
    uint64_t *harena;
    size_t cap_harena;
    uint64_t *path_h; /* (cap_path_h) hashes of the current DFS path's full blocks */
    size_t cap_path_h;
};

/* ------------------------------------------------------------ small helpers */

static int grow(void **p, size_t *cap, size_t need, size_t elem) {
    if (need <= *cap) return 0;
    size_t c = *cap ? *cap : 16;
    while (c < need) c *= 2;
    void *q = realloc(*p, c * elem);
    if (!q) return he_set(HE_ENOMEM, "ptree: out of memory");
    *p = q;
    *cap = c;
    return 0;
}

static uint64_t key_hash(uint64_t job, int32_t op, uint32_t item) {
    uint64_t x = job * 0x9e3779b97f4a7c15ULL ^ ((uint64_t)(uint32_t)op << 32 | item);
    x ^= x >> 30;
    x *= 0xbf58476d1ce4e5b9ULL;
    x ^= x >> 27;
    x *= 0x94d049bb133111ebULL;
    return x ^ (x >> 31);
}

static pt_op *find_op(const ptree_t *pt, uint64_t job, int32_t op, uint32_t item) {
    if (!pt->tab_cap) return NULL;
    pt_op *o = pt->tab[key_hash(job, op, item) & (pt->tab_cap - 1)];
    for (; o; o = o->hnext)
        if (o->job == job && o->op == op && o->item == item) return o;
    return NULL;
}

static int tab_insert(ptree_t *pt, pt_op *o) {
    if (pt->n_all + 1 > pt->tab_cap / 2) {
        size_t nc = pt->tab_cap ? pt->tab_cap * 2 : 64;
        pt_op **nt = calloc(nc, sizeof *nt);
        if (!nt) return he_set(HE_ENOMEM, "ptree: out of memory");
        for (size_t i = 0; i < pt->tab_cap; i++)
            for (pt_op *x = pt->tab[i], *next; x; x = next) {
                next = x->hnext;
                size_t b = key_hash(x->job, x->op, x->item) & (nc - 1);
                x->hnext = nt[b];
                nt[b] = x;
            }
        free(pt->tab);
        pt->tab = nt;
        pt->tab_cap = nc;
    }
    size_t b = key_hash(o->job, o->op, o->item) & (pt->tab_cap - 1);
    o->hnext = pt->tab[b];
    pt->tab[b] = o;
    return 0;
}

static void tab_remove(ptree_t *pt, pt_op *o) {
    pt_op **pp = &pt->tab[key_hash(o->job, o->op, o->item) & (pt->tab_cap - 1)];
    while (*pp && *pp != o) pp = &(*pp)->hnext;
    if (*pp) *pp = o->hnext;
}

static pt_buf *buf_new(const int32_t *t, int n) {
    pt_buf *b = malloc(sizeof *b + (size_t)n * sizeof(int32_t));
    if (!b) return NULL;
    b->refs = 1;
    b->n = n;
    if (n) memcpy(b->t, t, (size_t)n * sizeof(int32_t));
    return b;
}

static void buf_unref(pt_buf *b) {
    if (b && --b->refs == 0) free(b);
}

/* The first index in [m, end) where a and b differ, or end. Prefixes share
 * long runs: the whole range is one memcmp when they agree to its end (a
 * pin's prefix against the tree, the common case), else 256, then 8 tokens
 * a memcmp while they agree. */
static int32_t common_run(const int32_t *a, const int32_t *b, int32_t m, int32_t end) {
    if (m < end && !memcmp(a + m, b + m, (size_t)(end - m) * sizeof *a)) return end;
    while (m + 256 <= end && !memcmp(a + m, b + m, 256 * sizeof *a)) m += 256;
    while (m + 8 <= end && !memcmp(a + m, b + m, 8 * sizeof *a)) m += 8;
    while (m < end && a[m] == b[m]) m++;
    return m;
}

/* first token of x's edge (x is not the root) */
static int32_t edge_tok(const pt_node *x) { return x->buf->t[x->parent->depth]; }

/* Index of the child whose edge starts with tk, or -(insertion point) - 1. */
static int kid_find(const pt_node *x, int32_t tk) {
    int lo = 0, hi = x->n_kids;
    while (lo < hi) {
        int mid = (lo + hi) / 2;
        int32_t m = edge_tok(x->kids[mid]);
        if (m == tk) return mid;
        if (m < tk)
            lo = mid + 1;
        else
            hi = mid;
    }
    return -lo - 1;
}

static int kid_insert(pt_node *x, int at, pt_node *k) {
    if (x->n_kids == x->cap_kids) {
        int32_t nc = x->cap_kids ? x->cap_kids * 2 : 2;
        pt_node **nk = realloc(x->kids, (size_t)nc * sizeof *nk);
        if (!nk) return he_set(HE_ENOMEM, "ptree: out of memory");
        x->kids = nk;
        x->cap_kids = nc;
    }
    memmove(x->kids + at + 1, x->kids + at, (size_t)(x->n_kids - at) * sizeof *x->kids);
    x->kids[at] = k;
    x->n_kids++;
    return 0;
}

static void kid_remove(pt_node *x, pt_node *k) {
    int i = kid_find(x, edge_tok(k));
    if (i < 0 || x->kids[i] != k) return; /* cannot happen: tree invariant */
    memmove(x->kids + i, x->kids + i + 1, (size_t)(x->n_kids - i - 1) * sizeof *x->kids);
    x->n_kids--;
}

static pt_node *node_new(ptree_t *pt, pt_node *parent, pt_buf *buf, int32_t depth) {
    pt_node *x = pt->pool;
    if (x) {
        pt->pool = x->parent;
        memset(x, 0, sizeof *x);
    } else if (!(x = calloc(1, sizeof *x))) {
        return NULL;
    }
    x->parent = parent;
    x->buf = buf;
    if (buf) buf->refs++;
    x->depth = depth;
    x->m_dirty = true;
    x->uid = ++pt->uids;
    x->ver = pt->gen;
    pt->n_nodes++;
    return x;
}

/* Into the pool: its memory stays (uid 0) until ptree_destroy. */
static void node_free(ptree_t *pt, pt_node *x) {
    buf_unref(x->buf);
    free(x->hc);
    free(x->kids);
    x->buf = NULL;
    x->hc = NULL;
    x->kids = NULL;
    x->n_kids = x->cap_kids = 0;
    x->uid = 0;
    x->parent = pt->pool;
    pt->pool = x;
    pt->n_nodes--;
}

/* ------------------------------------------------------------ attach/detach */

/* Counts change at x and above, as of the tree's current gen. */
static void add_counts(ptree_t *pt, pt_node *x, int d_sharers, int d_ready) {
    for (; x; x = x->parent) {
        x->sharers += d_sharers;
        x->ready += d_ready;
        x->m_dirty = true;
        x->ver = pt->gen;
    }
}

/* Inserts o (o->buf set, o->node NULL) into the tree. On ENOMEM the tree is
 * unchanged apart from a possible split (still a valid tree). */
static int attach(ptree_t *pt, pt_op *o) {
    pt->gen++;
    const int32_t *p = o->buf->t;
    int32_t n = o->buf->n;
    pt_node *cur = pt->root;
    while (cur->depth < n) {
        int idx = kid_find(cur, p[cur->depth]);
        if (idx < 0) { /* new leaf for the rest */
            pt_node *leaf = node_new(pt, cur, o->buf, n);
            if (!leaf) return he_set(HE_ENOMEM, "ptree: out of memory");
            if (kid_insert(cur, -idx - 1, leaf)) {
                node_free(pt, leaf);
                return HE_ENOMEM;
            }
            pt->tree_tokens += n - cur->depth;
            cur = leaf;
            break;
        }
        pt_node *k = cur->kids[idx];
        int32_t end = k->depth < n ? k->depth : n, m = cur->depth + 1;
        m = common_run(k->buf->t, p, m, end);
        if (m == k->depth) {
            cur = k;
            continue;
        }
        /* split k's edge at m */
        pt_node *mid = node_new(pt, cur, k->buf, m);
        if (!mid || !(mid->kids = malloc(2 * sizeof *mid->kids))) {
            if (mid) node_free(pt, mid);
            return he_set(HE_ENOMEM, "ptree: out of memory");
        }
        mid->cap_kids = 2;
        mid->kids[0] = k;
        mid->n_kids = 1;
        mid->sharers = k->sharers;
        mid->ready = k->ready;
        k->parent = mid;
        k->ver = pt->gen; /* a match that ended in k's edge above m now ends in mid's */
        cur->kids[idx] = mid;
        cur = mid;
    }
    o->node = cur;
    o->at_prev = NULL;
    o->at_next = cur->ops;
    if (cur->ops) cur->ops->at_prev = o;
    cur->ops = o;
    add_counts(pt, cur, 1, o->ready ? 1 : 0);
    pt->prefix_tokens += n;
    return 0;
}

/* Takes o out of the tree, pruning empty nodes and merging a node left with
 * no call and one child into that child. */
static void detach(ptree_t *pt, pt_op *o) {
    pt_node *x = o->node;
    if (!x) return;
    pt->gen++;
    if (o->at_prev)
        o->at_prev->at_next = o->at_next;
    else
        x->ops = o->at_next;
    if (o->at_next) o->at_next->at_prev = o->at_prev;
    o->at_prev = o->at_next = NULL;
    o->node = NULL;
    add_counts(pt, x, -1, o->ready ? -1 : 0);
    pt->prefix_tokens -= o->buf->n;
    while (x != pt->root && x->sharers == 0) { /* no calls at or below: no children either */
        pt_node *parent = x->parent;
        kid_remove(parent, x);
        pt->tree_tokens -= x->depth - parent->depth;
        node_free(pt, x);
        x = parent;
    }
    if (x != pt->root && !x->ops && x->n_kids == 1) {
        pt_node *k = x->kids[0], *parent = x->parent;
        int i = kid_find(parent, edge_tok(x));
        k->parent = parent;
        k->ver = pt->gen; /* its edge now starts where x's did */
        if (i >= 0) parent->kids[i] = k;
        node_free(pt, x);
    }
}

/* ------------------------------------------------------------ public: build */

ptree_t *ptree_new(const tok_t *tok, uint64_t root_hash, int block_size) {
    if (block_size <= 0) {
        he_set(HE_EINVAL, "ptree_new: block_size %d", block_size);
        return NULL;
    }
    ptree_t *pt = calloc(1, sizeof *pt);
    if (!pt) {
        he_set(HE_ENOMEM, "ptree: out of memory");
        return NULL;
    }
    pt->tok = tok;
    pt->root_hash = root_hash;
    pt->bs = block_size;
    if (!(pt->root = node_new(pt, NULL, NULL, 0))) {
        free(pt);
        he_set(HE_ENOMEM, "ptree: out of memory");
        return NULL;
    }
    return pt;
}

void ptree_destroy(ptree_t **self_p) {
    if (!self_p || !*self_p) return;
    ptree_t *pt = *self_p;
    /* free nodes iteratively */
    pt_node **st = NULL;
    size_t cap = 0, sp = 0;
    if (grow((void **)&st, &cap, (size_t)pt->n_nodes, sizeof *st) == 0) {
        st[sp++] = pt->root;
        while (sp) {
            pt_node *x = st[--sp];
            for (int32_t i = 0; i < x->n_kids; i++) st[sp++] = x->kids[i];
            node_free(pt, x);
        }
    }
    free(st);
    while (pt->pool) {
        pt_node *x = pt->pool;
        pt->pool = x->parent;
        free(x);
    }
    for (size_t i = 0; i < pt->n_all; i++) {
        buf_unref(pt->all[i]->buf);
        free(pt->all[i]);
    }
    free(pt->all);
    free(pt->tab);
    free(pt->pre);
    free(pt->stack);
    free(pt->work);
    free(pt->cands);
    free(pt->ents);
    free(pt->ent_off);
    free(pt->harena);
    free(pt->path_h);
    free(pt);
    *self_p = NULL;
}

int ptree_block_size(const ptree_t *pt) { return pt ? pt->bs : 0; }
uint64_t ptree_gen(const ptree_t *pt) { return pt ? pt->gen : 0; }
uint64_t ptree_root_hash(const ptree_t *pt) { return pt ? pt->root_hash : 0; }

int64_t ptree_llm_cost(int32_t prompt_tokens, int32_t shared_tokens, int32_t out_tokens) {
    int64_t pre = (int64_t)prompt_tokens - (shared_tokens > 0 ? shared_tokens : 0);
    if (pre < 1) pre = 1;
    int64_t out = out_tokens > 0 ? out_tokens : 0;
    return pre + out * (out + 1) / 2;
}

static int check_prefix(const int32_t *prefix, int n) {
    if (n < 0 || (n > 0 && !prefix) || n > PTREE_MAX_TOKENS)
        return he_set(HE_EINVAL, "ptree: bad static prefix (n %d)", n);
    return 0;
}

int ptree_add_op(ptree_t *pt, uint64_t job, int32_t op, uint32_t item, const int32_t *prefix, int n,
                 int est_prompt_tokens, int max_tokens) {
    if (!pt) return he_set(HE_EINVAL, "ptree_add_op: NULL tree");
    int rc = check_prefix(prefix, n);
    if (rc) return rc;
    if (find_op(pt, job, op, item))
        return he_set(HE_EINVAL, "ptree: call (job %llu, op %d, item %u) is already in the tree",
                      (unsigned long long)job, (int)op, (unsigned)item);
    if ((rc = grow((void **)&pt->all, &pt->cap_all, pt->n_all + 1, sizeof *pt->all))) return rc;
    pt_op *o = calloc(1, sizeof *o);
    if (!o || !(o->buf = buf_new(prefix, n))) {
        free(o);
        return he_set(HE_ENOMEM, "ptree: out of memory");
    }
    o->job = job;
    o->op = op;
    o->item = item;
    o->est_prompt = est_prompt_tokens > n ? est_prompt_tokens : n;
    o->max_tokens = max_tokens > 0 ? max_tokens : 0;
    o->steps = 0;
    o->cp = ptree_llm_cost(o->est_prompt, 0, o->max_tokens);
    o->seq = pt->seq++;
    if ((rc = tab_insert(pt, o)) || (rc = attach(pt, o))) {
        if (!rc) rc = HE_ENOMEM;
        tab_remove(pt, o);
        buf_unref(o->buf);
        free(o);
        return rc;
    }
    o->slot = pt->n_all;
    pt->all[pt->n_all++] = o;
    return 0;
}

int ptree_set_prefix(ptree_t *pt, uint64_t job, int32_t op, uint32_t item, const int32_t *prefix, int n) {
    if (!pt) return he_set(HE_EINVAL, "ptree_set_prefix: NULL tree");
    int rc = check_prefix(prefix, n);
    if (rc) return rc;
    pt_op *o = find_op(pt, job, op, item);
    if (!o) return he_set(HE_ENOTFOUND, "ptree: no call (job %llu, op %d, item %u)", (unsigned long long)job, (int)op, (unsigned)item);
    pt_buf *nb = buf_new(prefix, n);
    if (!nb) return he_set(HE_ENOMEM, "ptree: out of memory");
    pt_buf *old = o->buf;
    detach(pt, o);
    o->buf = nb;
    if ((rc = attach(pt, o))) { /* put it back where it was */
        o->buf = old;
        buf_unref(nb);
        if (attach(pt, o) == 0) return rc;
        /* could not even re-attach: drop the call rather than leave it half in */
        tab_remove(pt, o);
        pt->all[o->slot] = pt->all[--pt->n_all];
        pt->all[o->slot]->slot = o->slot;
        buf_unref(old);
        free(o);
        return rc;
    }
    buf_unref(old);
    if (o->est_prompt < n) o->est_prompt = n;
    return 0;
}

int ptree_set_sched(ptree_t *pt, uint64_t job, int32_t op, uint32_t item, int64_t steps, int64_t cp,
                    bool ready) {
    if (!pt) return he_set(HE_EINVAL, "ptree_set_sched: NULL tree");
    if (steps < 0 || cp < 0) return he_set(HE_EINVAL, "ptree_set_sched: negative steps or cp");
    pt_op *o = find_op(pt, job, op, item);
    if (!o) return he_set(HE_ENOTFOUND, "ptree: no call (job %llu, op %d, item %u)", (unsigned long long)job, (int)op, (unsigned)item);
    bool moved = o->ready != ready || o->steps != steps;
    if (moved || o->cp != cp) pt->gen++;
    if (moved) add_counts(pt, o->node, 0, o->ready != ready ? (ready ? 1 : -1) : 0);
    o->ready = ready;
    o->steps = steps;
    o->cp = cp;
    return 0;
}

static void remove_call(ptree_t *pt, pt_op *o) {
    detach(pt, o);
    tab_remove(pt, o);
    pt->all[o->slot] = pt->all[--pt->n_all];
    pt->all[o->slot]->slot = o->slot;
    buf_unref(o->buf);
    free(o);
}

int ptree_remove_op(ptree_t *pt, uint64_t job, int32_t op, uint32_t item) {
    if (!pt) return he_set(HE_EINVAL, "ptree_remove_op: NULL tree");
    pt_op *o = find_op(pt, job, op, item);
    if (!o) return he_set(HE_ENOTFOUND, "ptree: no call (job %llu, op %d, item %u)", (unsigned long long)job, (int)op, (unsigned)item);
    remove_call(pt, o);
    return 0;
}

int ptree_remove_job(ptree_t *pt, uint64_t job) {
    if (!pt) return he_set(HE_EINVAL, "ptree_remove_job: NULL tree");
    int n = 0;
    for (size_t i = pt->n_all; i-- > 0;)
        if (i < pt->n_all && pt->all[i]->job == job) {
            remove_call(pt, pt->all[i]); /* moves the last call into slot i: already visited */
            n++;
        }
    return n;
}

bool ptree_has_op(const ptree_t *pt, uint64_t job, int32_t op, uint32_t item) {
    return pt && find_op(pt, job, op, item) != NULL;
}

void ptree_stats(const ptree_t *pt, ptree_stats_t *out) {
    memset(out, 0, sizeof *out);
    if (!pt) return;
    out->calls = (int32_t)pt->n_all;
    out->ready = pt->root->ready;
    out->nodes = pt->n_nodes - 1;
    out->tree_tokens = pt->tree_tokens;
    out->prefix_tokens = pt->prefix_tokens;
}

/* ------------------------------------------------------------ traversals */

/* Fills pt->pre with every node in pre-order (children by first token) and
 * computes each node's subtree aggregates s_steps, s_cp, s_rcp. O(nodes +
 * calls), or nothing when the tree has not changed since the last time
 * (ptree_shared_prefixes and ptree_order both read it). */
static int collect(ptree_t *pt) {
    if (pt->pre_ok && pt->pre_gen == pt->gen) return 0;
    pt->pre_ok = false;
    size_t nn = (size_t)pt->n_nodes;
    int rc;
    if ((rc = grow((void **)&pt->pre, &pt->cap_pre, nn, sizeof *pt->pre)) ||
        (rc = grow((void **)&pt->stack, &pt->cap_stack, nn, sizeof *pt->stack)))
        return rc;
    size_t sp = 0;
    pt->n_pre = 0;
    pt->stack[sp++] = pt->root;
    while (sp) {
        pt_node *x = pt->stack[--sp];
        pt->pre[pt->n_pre++] = x;
        for (int32_t i = x->n_kids; i-- > 0;) pt->stack[sp++] = x->kids[i];
    }
    for (size_t i = pt->n_pre; i-- > 0;) {
        pt_node *x = pt->pre[i];
        int64_t st = INT64_MAX, cp = INT64_MIN, rcp = INT64_MIN;
        for (pt_op *o = x->ops; o; o = o->at_next) {
            if (o->steps < st) st = o->steps;
            if (o->cp > cp) cp = o->cp;
            if (o->ready && o->cp > rcp) rcp = o->cp;
        }
        for (int32_t k = 0; k < x->n_kids; k++) {
            pt_node *c = x->kids[k];
            if (c->s_steps < st) st = c->s_steps;
            if (c->s_cp > cp) cp = c->s_cp;
            if (c->s_rcp > rcp) rcp = c->s_rcp;
        }
        x->s_steps = st;
        x->s_cp = cp;
        x->s_rcp = rcp;
    }
    pt->pre_ok = true;
    pt->pre_gen = pt->gen;
    return 0;
}

int ptree_shared_prefixes(ptree_t *pt, int min_sharers, const ptree_prefix **out) {
    if (!pt || !out || min_sharers < 1)
        return he_set(HE_EINVAL, "ptree_shared_prefixes: bad arguments");
    *out = NULL;
    if (pt->sp_ok && pt->sp_gen == pt->gen && pt->sp_min == min_sharers) { /* nothing changed */
        *out = pt->ents;
        return pt->sp_n;
    }
    pt->sp_ok = false;
    int rc = collect(pt);
    if (rc) return rc;
    const int bs = pt->bs;
    size_t n_ents = 0, n_h = 0;
    pt->root->s_entry = -1;
    pt->root->s_nb = 0;
    for (size_t i = 1; i < pt->n_pre; i++) {
        pt_node *x = pt->pre[i], *p = x->parent;
        if (x->sharers < min_sharers) continue; /* nor anything below it */
        int32_t nb = x->depth / bs, pnb = p->s_nb;
        if ((rc = grow((void **)&pt->path_h, &pt->cap_path_h, (size_t)nb + 1, sizeof *pt->path_h)))
            return rc;
        /* blocks [0, pnb) of path_h hold p's path: nodes visited since p only wrote
         * indexes >= pnb (they are all below p) */
        if (x->hc && x->hc_from == pnb && x->hc_to == nb) {
            memcpy(pt->path_h + pnb, x->hc, (size_t)(nb - pnb) * sizeof *x->hc);
        } else {
            for (int32_t j = pnb; j < nb; j++)
                pt->path_h[j] = bh_chain(j ? pt->path_h[j - 1] : pt->root_hash, x->buf->t + (size_t)j * bs, bs);
            uint64_t *hc = nb > pnb ? realloc(x->hc, (size_t)(nb - pnb) * sizeof *hc) : NULL;
            if (hc) { /* (no room: recomputed next time) */
                memcpy(hc, pt->path_h + pnb, (size_t)(nb - pnb) * sizeof *hc);
                x->hc = hc;
                x->hc_from = pnb;
                x->hc_to = nb;
            }
        }
        x->s_nb = nb;
        int32_t enc = p->s_entry, enc_nb = enc >= 0 ? pt->ents[enc].n_blocks : 0;
        x->s_entry = enc;
        if (nb <= enc_nb) continue;
        if ((rc = grow((void **)&pt->harena, &pt->cap_harena, n_h + (size_t)nb, sizeof *pt->harena)))
            return rc;
        if ((rc = grow((void **)&pt->ents, &pt->cap_ents, n_ents + 1, sizeof *pt->ents)) ||
            (rc = grow((void **)&pt->ent_off, &pt->cap_ent_off, n_ents + 1, sizeof *pt->ent_off)))
            return rc;
        memcpy(pt->harena + n_h, pt->path_h, (size_t)nb * sizeof *pt->harena);
        ptree_prefix *e = &pt->ents[n_ents];
        memset(e, 0, sizeof *e);
        e->tokens = x->buf->t;
        e->n_tokens = nb * bs;
        e->n_blocks = nb;
        e->parent = enc;
        e->first_block = enc_nb;
        e->sharers = x->sharers;
        e->ready = x->ready;
        e->leaf = true;
        e->steps = x->s_steps;
        e->max_cp = x->s_cp;
        pt->ent_off[n_ents] = n_h;
        n_h += (size_t)nb;
        if (enc >= 0) pt->ents[enc].leaf = false;
        x->s_entry = (int32_t)n_ents++;
    }
    for (size_t i = 0; i < n_ents; i++) pt->ents[i].hashes = pt->harena + pt->ent_off[i];
    *out = pt->ents;
    pt->sp_ok = true;
    pt->sp_gen = pt->gen;
    pt->sp_min = min_sharers;
    pt->sp_n = (int)n_ents;
    return (int)n_ents;
}

static int cand_cmp(const void *a, const void *b) {
    const pt_cand *x = a, *y = b;
    if (x->key != y->key) return x->key > y->key ? -1 : 1;
    if (x->kind != y->kind) return x->kind < y->kind ? -1 : 1;
    if (x->ready != y->ready) return x->ready > y->ready ? -1 : 1;
    if (x->tie != y->tie) return x->tie < y->tie ? -1 : 1;
    return 0;
}

int ptree_order(ptree_t *pt, ptree_slot *out, int max_out) {
    if (!pt || max_out < 0 || (max_out > 0 && !out)) return he_set(HE_EINVAL, "ptree_order: bad arguments");
    int rc = collect(pt);
    if (rc) return rc;
    if (pt->root->ready == 0) return 0;
    if ((rc = grow((void **)&pt->work, &pt->cap_work, (size_t)pt->n_nodes + pt->n_all + 1, sizeof *pt->work)))
        return rc;
    size_t sp = 0;
    int count = 0;
    int32_t run_min = INT32_MAX;
    pt->work[sp++] = (pt_work){.node = pt->root};
    while (sp) {
        pt_work w = pt->work[--sp];
        if (w.op) {
            pt_op *o = w.op;
            int32_t shared = count == 0 ? 0 : (run_min < o->node->depth ? run_min : o->node->depth);
            if (count < max_out)
                out[count] = (ptree_slot){.job = o->job, .op = o->op, .item = o->item,
                                          .prefix_len = o->buf->n, .shared_prev = shared, .cp = o->cp,
                                          .cost = ptree_llm_cost(o->est_prompt, shared, o->max_tokens)};
            count++;
            run_min = INT32_MAX;
            continue;
        }
        pt_node *x = w.node;
        if (x->parent && x->parent->depth < run_min) run_min = x->parent->depth;
        size_t nc = 0;
        for (pt_op *o = x->ops; o; o = o->at_next) nc += o->ready;
        for (int32_t k = 0; k < x->n_kids; k++) nc += x->kids[k]->ready > 0;
        if ((rc = grow((void **)&pt->cands, &pt->cap_cands, nc, sizeof *pt->cands))) return rc;
        nc = 0;
        for (pt_op *o = x->ops; o; o = o->at_next)
            if (o->ready)
                pt->cands[nc++] = (pt_cand){.key = o->cp, .kind = 0, .ready = 1, .tie = o->seq, .op = o};
        for (int32_t k = 0; k < x->n_kids; k++) {
            pt_node *c = x->kids[k];
            if (c->ready > 0)
                pt->cands[nc++] = (pt_cand){.key = c->s_rcp, .kind = 1, .ready = c->ready,
                                            .tie = (uint32_t)edge_tok(c), .node = c};
        }
        qsort(pt->cands, nc, sizeof *pt->cands, cand_cmp);
        for (size_t i = nc; i-- > 0;)
            pt->work[sp++] = (pt_work){.node = pt->cands[i].node, .op = pt->cands[i].op};
    }
    return count;
}

/* Min steps over the calls at or below under: the cached m_steps, brought
 * up to date where dirty (post-order over the dirty nodes only, iterative). */
static int64_t subtree_min(pt_node *under) {
    pt_node *x = under;
    while (under->m_dirty) {
        pt_node *d = NULL;
        for (int32_t i = 0; i < x->n_kids && !d; i++)
            if (x->kids[i]->m_dirty) d = x->kids[i];
        if (d) {
            x = d;
            continue;
        }
        int64_t m = INT64_MAX;
        for (const pt_op *o = x->ops; o; o = o->at_next)
            if (o->steps < m) m = o->steps;
        for (int32_t i = 0; i < x->n_kids; i++)
            if (x->kids[i]->m_steps < m) m = x->kids[i]->m_steps;
        x->m_steps = m;
        x->m_dirty = false;
        if (x != under) x = x->parent;
    }
    return under->m_steps;
}

int ptree_match(const ptree_t *pt, const int32_t *tokens, int n, ptree_match_info *out) {
    return ptree_match_stamp(pt, tokens, n, out, NULL);
}

bool ptree_stamp_valid(const ptree_t *pt, const ptree_stamp *st) {
    const pt_node *x = st ? st->node : NULL;
    return pt && x && x->uid == st->uid && x->ver <= st->gen;
}

int ptree_match_stamp(const ptree_t *pt, const int32_t *tokens, int n, ptree_match_info *out, ptree_stamp *st) {
    if (st) *st = (ptree_stamp){0};
    if (!pt || !out || n < 0 || (n > 0 && !tokens)) return he_set(HE_EINVAL, "ptree_match: bad arguments");
    pt_node *cur = pt->root, *under = pt->root; /* under: the node whose subtree covers the match */
    int32_t matched = 0;
    while (matched < n) {
        int idx = kid_find(cur, tokens[matched]);
        if (idx < 0) break;
        pt_node *k = cur->kids[idx];
        int32_t end = k->depth < n ? k->depth : n, m = matched + 1;
        m = common_run(k->buf->t, tokens, m, end);
        matched = m;
        under = k;
        if (m < k->depth) break;
        cur = k;
    }
    out->matched = matched;
    out->sharers = under->sharers;
    out->steps = under->sharers ? subtree_min(under) : INT64_MAX;
    if (st) *st = (ptree_stamp){.node = under, .uid = under->uid, .gen = pt->gen};
    return 0;
}

/* ------------------------------------------------------------ critical paths */

/* Longest paths inside one scope (ops in topological order): lstart[i] =
 * earliest start relative to the scope's start, lcp[i] = i's effective cost
 * plus the longest path after it within the scope. Recurses into map/loop
 * bodies first (depth bounded by WF_MAX_DEPTH). *path = the scope's length. */
static int scope_paths(const wf_t *wf, const int *order, size_t n, const int64_t *cost, int64_t *eff,
                       int64_t *body, int64_t *lstart, int64_t *lcp, int64_t *down, int depth,
                       int64_t *path) {
    if (depth > WF_MAX_DEPTH + 1) return he_set(HE_EINVAL, "ptree_critical_path: scopes nested too deep");
    int64_t len = 0;
    for (size_t k = 0; k < n; k++) {
        int i = order[k];
        if (i < 0 || (size_t)i >= wf->n_ops) return he_set(HE_EINVAL, "ptree_critical_path: bad order");
        const wf_op *op = wf->ops[i];
        if (cost[i] < 0) return he_set(HE_EINVAL, "ptree_critical_path: negative cost for op '%s'", op->id);
        body[i] = 0;
        if (op->kind == WF_MAP || op->kind == WF_LOOP) {
            int rc = scope_paths(wf, op->order, op->n_order, cost, eff, body, lstart, lcp, down, depth + 1,
                                 &body[i]);
            if (rc) return rc;
        }
        int64_t rounds = op->kind == WF_LOOP ? (op->loop.max_rounds ? op->loop.max_rounds : 1) : 1;
        eff[i] = cost[i] + rounds * body[i];
        int64_t s = 0;
        for (size_t d = 0; d < op->n_deps; d++) {
            int j = op->deps[d];
            if (j < 0 || (size_t)j >= wf->n_ops) return he_set(HE_EINVAL, "ptree_critical_path: bad dep");
            if (lstart[j] + eff[j] > s) s = lstart[j] + eff[j];
        }
        lstart[i] = s;
        down[i] = 0;
        if (s + eff[i] > len) len = s + eff[i];
    }
    for (size_t k = n; k-- > 0;) {
        int i = order[k];
        const wf_op *op = wf->ops[i];
        lcp[i] = eff[i] + down[i];
        for (size_t d = 0; d < op->n_deps; d++)
            if (lcp[i] > down[op->deps[d]]) down[op->deps[d]] = lcp[i];
    }
    *path = len;
    return 0;
}

int ptree_critical_path(const wf_t *wf, const int64_t *cost, int64_t *cp, int64_t *start) {
    if (!wf || !wf->valid || !cost || !cp) return he_set(HE_EINVAL, "ptree_critical_path: bad arguments");
    size_t n = wf->n_ops;
    int64_t *tmp = calloc(5 * n + 1, sizeof *tmp);
    if (!tmp) return he_set(HE_ENOMEM, "ptree: out of memory");
    int64_t *eff = tmp, *body = tmp + n, *lstart = tmp + 2 * n, *lcp = tmp + 3 * n, *down = tmp + 4 * n;
    int64_t total;
    int rc = scope_paths(wf, wf->order, wf->n_order, cost, eff, body, lstart, lcp, down, 0, &total);
    if (rc) {
        free(tmp);
        return rc;
    }
    /* ops are in pre-order (parent index < child index): parents are global first */
    for (size_t i = 0; i < n; i++) {
        int p = wf->ops[i]->parent;
        int64_t s, c;
        if (p < 0) {
            s = lstart[i];
            c = lcp[i];
        } else {
            const wf_op *po = wf->ops[p];
            int64_t rounds = po->kind == WF_LOOP ? (po->loop.max_rounds ? po->loop.max_rounds : 1) : 1;
            s = (start ? start[p] : 0) + cost[p] + lstart[i];
            c = lcp[i] + (rounds - 1) * body[p] + (cp[p] - eff[p]);
        }
        cp[i] = c;
        if (start) start[i] = s;
    }
    free(tmp);
    return 0;
}

/* ------------------------------------------------------------ static prefixes */

/* ptree_static_text and ptree_safe_tokens are ptree_prefix.c. */
int ptree_tmpl_prefix(const ptree_t *pt, const wf_tmpl *t, ptree_value_fn value, void *ctx, int32_t **ids,
                      int *n, bool *complete) {
    if (!pt || !pt->tok || !ids || !n || !complete) return he_set(HE_EINVAL, "ptree_tmpl_prefix: bad arguments (no tokenizer?)");
    *ids = NULL;
    *n = 0;
    char *text = NULL;
    size_t len = 0;
    int rc = ptree_static_text(t, value, ctx, &text, &len, complete);
    if (rc) return rc;
    rc = ptree_safe_tokens(pt->tok, text, len, *complete, ids, n);
    free(text);
    return rc;
}
