/* Tests for the CPU backend's forward pass (worker/cpu/cpu_backend.c) on tiny
 * models written by helium-mkmodel: prefill in one batch equals token-by-token
 * decoding (KV paging), sequences batched together equal each alone (both bit
 * for bit: the backend is batch invariant), KV pages survive export/import, logits match a naive reference forward written here
 * (f32 weights, contiguous KV, double accumulation), and malformed batches are
 * refused. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "backend.h"
#include "cpu_quant.h"
#include "herr.h"
#include "model.h"

/* ---------------------------------------------------------------- fixtures */

static char tmpdir[256];

static void make_tmpdir(void) {
    if (tmpdir[0]) return;
    snprintf(tmpdir, sizeof tmpdir, "/tmp/helium-cpufwd-XXXXXX");
    cr_assert_not_null(mkdtemp(tmpdir));
}

static void rm_tmpdir(void) {
    if (!tmpdir[0]) return;
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpdir);
    if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", tmpdir);
    tmpdir[0] = 0;
}

static const char *mkmodel_path(void) {
    static char p[1024];
    const char *bin = getenv("HELIUM_BIN");
    if (bin && *bin) snprintf(p, sizeof p, "%s/helium-mkmodel", bin);
    else snprintf(p, sizeof p, "%s/bin/helium-mkmodel", HELIUM_BINARY_DIR);
    return p;
}

/* Writes a tiny model and loads it. */
static model_t *load_tiny(const char *arch, const char *dtype) {
    make_tmpdir();
    char path[512], cmd[2048];
    snprintf(path, sizeof path, "%s/tiny-%s-%s.gguf", tmpdir, arch, dtype);
    if (access(path, R_OK) != 0) {
        snprintf(cmd, sizeof cmd, "'%s' --preset tiny --arch %s --dtype %s --seed 7 -o '%s' >/dev/null 2>&1", mkmodel_path(),
                 arch, dtype, path);
        cr_assert_eq(system(cmd), 0, "mkmodel failed: %s", cmd);
    }
    model_t *m = NULL;
    cr_assert_eq(model_load(path, &m), 0, "model_load: %s", he_msg());
    return m;
}

static double rel_l2(const float *a, const float *b, int64_t n) {
    double num = 0, den = 0;
    for (int64_t i = 0; i < n; i++) {
        num += ((double)a[i] - b[i]) * ((double)a[i] - b[i]);
        den += (double)b[i] * b[i];
    }
    return sqrt(num / (den + 1e-30));
}

/* A single-sequence batch of tokens [p0, p0 + n) of prompt, all logits wanted
 * when all_out, else only the last. */
typedef struct {
    int32_t tok[256], pos[256], start[8], ntok[8], out[256];
    const int32_t *tabs[8];
    be_batch b;
} batch_buf;

static be_batch *one_seq(batch_buf *bb, const int32_t *prompt, int32_t p0, int32_t n, const int32_t *table, bool all_out) {
    for (int32_t i = 0; i < n; i++) {
        bb->tok[i] = prompt[p0 + i];
        bb->pos[i] = p0 + i;
        bb->out[i] = i;
    }
    bb->start[0] = 0;
    bb->ntok[0] = n;
    bb->tabs[0] = table;
    bb->b = (be_batch){.n_tokens = n, .n_seqs = 1, .tokens = bb->tok, .pos = bb->pos, .seq_start = bb->start,
                       .seq_ntok = bb->ntok, .block_table = bb->tabs, .n_out = all_out ? n : 1,
                       .out_idx = all_out ? bb->out : &bb->out[n - 1]};
    return &bb->b;
}

/* The backend is batch invariant (cpu_ops.h): the same token gives the same
 * logits bit for bit however it is batched or chunked. */
static void assert_same_logits(const float *got, const float *want, int n, const char *what) {
    for (int i = 0; i < n; i++)
        cr_assert(got[i] == want[i], "%s: logit %d differs: %.9g vs %.9g", what, i, got[i], want[i]);
}

static void make_prompt(int32_t *p, int n, int vocab, int salt) {
    for (int i = 0; i < n; i++) p[i] = (int32_t)((i * 131 + salt * 17 + 5) % vocab);
}

/* ---------------------------------------------------------------- naive reference */

typedef struct {
    ggml_type t;
    int64_t in, out;
    float *w; /* (out, in) */
} ref_mat;

static ref_mat ref_mat_of(const gguf_tensor *t) {
    ref_mat m = {t->type, t->ne[0], t->ne[1], malloc(sizeof(float) * (size_t)(t->ne[0] * t->ne[1]))};
    size_t rb = ggml_row_size(t->type, t->ne[0]);
    for (int64_t r = 0; r < m.out; r++) cq_dequant_row(t->type, (const uint8_t *)t->data + r * rb, m.w + r * m.in, m.in);
    return m;
}

/* y (out) = x (in) . W^T, the activation rounded as the weight type's dot does */
static void ref_mv(const ref_mat *m, const float *x, float *y) {
    float *xa = malloc(sizeof(float) * (size_t)m->in);
    if (m->t == GGML_T_Q8_0) {
        cq_block_q8_0 *blk = malloc(sizeof(cq_block_q8_0) * (size_t)(m->in / 32));
        cq_quantize_row_q8_0(x, blk, m->in);
        cq_dequant_row(GGML_T_Q8_0, blk, xa, m->in);
        free(blk);
    } else {
        cq_round_row(m->t, x, xa, m->in);
    }
    for (int64_t r = 0; r < m->out; r++) {
        double s = 0;
        for (int64_t k = 0; k < m->in; k++) s += (double)m->w[r * m->in + k] * xa[k];
        y[r] = (float)s;
    }
    free(xa);
}

static void ref_rmsnorm(const float *x, const float *w, float *y, int64_t n, float eps) {
    double ss = 0;
    for (int64_t i = 0; i < n; i++) ss += (double)x[i] * x[i];
    double sc = 1.0 / sqrt(ss / n + eps);
    for (int64_t i = 0; i < n; i++) y[i] = (float)(x[i] * sc * w[i]);
}

static void ref_rope(float *v, int pos, const model_hparams *hp, double base) {
    int half = hp->rope_dim / 2;
    for (int i = 0; i < half; i++) {
        double th = pos * pow(base, -2.0 * i / hp->rope_dim);
        int a = hp->rope_neox ? i : 2 * i, b = hp->rope_neox ? i + half : 2 * i + 1;
        double x0 = v[a], x1 = v[b];
        v[a] = (float)(x0 * cos(th) - x1 * sin(th));
        v[b] = (float)(x0 * sin(th) + x1 * cos(th));
    }
}

/* Logits (n, vocab) for every position of prompt (n) in one sequence. */
static float *ref_forward(const model_t *m, const int32_t *prompt, int n) {
    const model_hparams *hp = &m->hp;
    const int dim = hp->dim, kvd = hp->kv_dim, hd = hp->head_dim, ffn = hp->ffn_dim, V = hp->n_vocab;
    float *K = malloc(sizeof(float) * (size_t)(hp->n_layers * n * kvd));
    float *Vc = malloc(sizeof(float) * (size_t)(hp->n_layers * n * kvd));
    float *logits = malloc(sizeof(float) * (size_t)n * V);
    const int qd = hp->q_dim;
    const bool gemma = hp->arch == MODEL_ARCH_GEMMA3;
    float *x = malloc(sizeof(float) * dim), *h = malloc(sizeof(float) * dim), *q = malloc(sizeof(float) * qd);
    float *att = malloc(sizeof(float) * qd), *o = malloc(sizeof(float) * dim);
    float *g = malloc(sizeof(float) * ffn), *u = malloc(sizeof(float) * ffn);
    double *sc = malloc(sizeof(double) * (size_t)n);
    ref_mat emb = ref_mat_of(m->tok_embd), outm = ref_mat_of(m->output);
    ref_mat *W = malloc(sizeof(ref_mat) * 7 * (size_t)hp->n_layers);
    for (int l = 0; l < hp->n_layers; l++) {
        const model_layer *L = &m->layers[l];
        W[l * 7 + 0] = ref_mat_of(L->wq);
        W[l * 7 + 1] = ref_mat_of(L->wk);
        W[l * 7 + 2] = ref_mat_of(L->wv);
        W[l * 7 + 3] = ref_mat_of(L->wo);
        W[l * 7 + 4] = ref_mat_of(L->w_gate);
        W[l * 7 + 5] = ref_mat_of(L->w_up);
        W[l * 7 + 6] = ref_mat_of(L->w_down);
    }
    for (int t = 0; t < n; t++) {
        memcpy(x, emb.w + (size_t)prompt[t] * dim, sizeof(float) * dim);
        for (int i = 0; i < dim; i++) x[i] *= hp->embd_scale; /* gemma3: sqrt(dim) */
        for (int l = 0; l < hp->n_layers; l++) {
            const model_layer *L = &m->layers[l];
            float *kt = K + ((size_t)l * n + t) * kvd, *vt = Vc + ((size_t)l * n + t) * kvd;
            ref_rmsnorm(x, L->attn_norm->data, h, dim, hp->norm_eps);
            ref_mv(&W[l * 7 + 0], h, q);
            ref_mv(&W[l * 7 + 1], h, kt);
            ref_mv(&W[l * 7 + 2], h, vt);
            if (L->bq) {
                for (int i = 0; i < qd; i++) q[i] += ((const float *)L->bq->data)[i];
                for (int i = 0; i < kvd; i++) kt[i] += ((const float *)L->bk->data)[i];
                for (int i = 0; i < kvd; i++) vt[i] += ((const float *)L->bv->data)[i];
            }
            if (L->q_norm) { /* gemma3: RMS norm per head before RoPE */
                for (int hh = 0; hh < hp->n_heads; hh++) ref_rmsnorm(q + hh * hd, L->q_norm->data, q + hh * hd, hd, hp->norm_eps);
                for (int hh = 0; hh < hp->n_kv_heads; hh++) ref_rmsnorm(kt + hh * hd, L->k_norm->data, kt + hh * hd, hd, hp->norm_eps);
            }
            for (int hh = 0; hh < hp->n_heads; hh++) ref_rope(q + hh * hd, t, hp, L->rope_base);
            for (int hh = 0; hh < hp->n_kv_heads; hh++) ref_rope(kt + hh * hd, t, hp, L->rope_base);
            const int p0 = L->swa_window > 0 && t >= L->swa_window ? t - L->swa_window + 1 : 0; /* sliding window */
            for (int hh = 0; hh < hp->n_heads; hh++) {
                int kh = hh / (hp->n_heads / hp->n_kv_heads);
                double mx = -INFINITY, sum = 0;
                for (int p = p0; p <= t; p++) {
                    const float *kp = K + ((size_t)l * n + p) * kvd + kh * hd;
                    double d = 0;
                    for (int i = 0; i < hd; i++) d += (double)q[hh * hd + i] * kp[i];
                    sc[p] = d * hp->attn_scale;
                    mx = fmax(mx, sc[p]);
                }
                for (int p = p0; p <= t; p++) sum += (sc[p] = exp(sc[p] - mx));
                for (int i = 0; i < hd; i++) {
                    double a = 0;
                    for (int p = p0; p <= t; p++) a += sc[p] / sum * Vc[((size_t)l * n + p) * kvd + kh * hd + i];
                    att[hh * hd + i] = (float)a;
                }
            }
            ref_mv(&W[l * 7 + 3], att, o);
            if (L->post_attn_norm) ref_rmsnorm(o, L->post_attn_norm->data, o, dim, hp->norm_eps);
            for (int i = 0; i < dim; i++) x[i] += o[i];
            ref_rmsnorm(x, L->ffn_norm->data, h, dim, hp->norm_eps);
            ref_mv(&W[l * 7 + 4], h, g);
            ref_mv(&W[l * 7 + 5], h, u);
            for (int i = 0; i < ffn; i++) {
                double a = g[i]; /* gemma3: GELU (tanh form) gate; else SiLU */
                double act = gemma ? 0.5 * a * (1.0 + tanh(0.7978845608028654 * (a + 0.044715 * a * a * a)))
                                   : a / (1.0 + exp(-a));
                g[i] = (float)(act * u[i]);
            }
            ref_mv(&W[l * 7 + 6], g, o);
            if (L->post_ffn_norm) ref_rmsnorm(o, L->post_ffn_norm->data, o, dim, hp->norm_eps);
            for (int i = 0; i < dim; i++) x[i] += o[i];
        }
        ref_rmsnorm(x, m->out_norm->data, h, dim, hp->norm_eps);
        ref_mv(&outm, h, logits + (size_t)t * V);
        if (hp->logit_softcap > 0)
            for (int i = 0; i < V; i++) {
                float *y = logits + (size_t)t * V + i;
                *y = (float)(tanh(*y / (double)hp->logit_softcap) * hp->logit_softcap);
            }
    }
    for (int i = 0; i < 7 * hp->n_layers; i++) free(W[i].w);
    free(W); free(emb.w); free(outm.w); free(K); free(Vc); free(x); free(h); free(q); free(att); free(o);
    free(g); free(u); free(sc);
    return logits;
}

/* ---------------------------------------------------------------- tests */

/* (a) prefill as one batch == token by token, every position, pages scrambled */
static void prefill_vs_steps(const char *arch, const char *dtype, int block_size, int nth) {
    model_t *m = load_tiny(arch, dtype);
    const int V = m->hp.n_vocab, n = 37;
    be_t *a = be_cpu_new(m, 32, block_size, nth), *b = be_cpu_new(m, 32, block_size, nth);
    cr_assert(a && b, "%s", he_msg());
    int32_t prompt[64], table[32];
    make_prompt(prompt, n, V, 1);
    for (int i = 0; i < 32; i++) table[i] = (i * 11 + 3) % 32;
    float *full = malloc(sizeof(float) * (size_t)n * V), *step = malloc(sizeof(float) * V);
    batch_buf bb;
    cr_assert_eq(be_forward(a, one_seq(&bb, prompt, 0, n, table, true), full), 0, "%s", he_msg());
    for (int t = 0; t < n; t++) {
        cr_assert_eq(be_forward(b, one_seq(&bb, prompt, t, 1, table, false), step), 0, "%s", he_msg());
        char what[128];
        snprintf(what, sizeof what, "%s %s bs %d position %d, prefill vs step", arch, dtype, block_size, t);
        assert_same_logits(step, full + (size_t)t * V, V, what);
    }
    /* chunked prefill: 3 chunks of 13, 13, 11 after the first */
    be_t *c = be_cpu_new(m, 32, block_size, nth);
    for (int p0 = 0; p0 < n; p0 += 13) {
        int len = n - p0 < 13 ? n - p0 : 13;
        cr_assert_eq(be_forward(c, one_seq(&bb, prompt, p0, len, table, false), step), 0, "%s", he_msg());
    }
    assert_same_logits(step, full + (size_t)(n - 1) * V, V, "chunked prefill");
    free(full); free(step);
    be_destroy(&a); be_destroy(&b); be_destroy(&c);
    cr_assert_null(a);
    model_destroy(&m);
}

Test(cpu_forward, prefill_equals_token_by_token, .fini = rm_tmpdir) {
    prefill_vs_steps("llama", "f32", 16, 2);
    prefill_vs_steps("llama", "f32", 5, 1);
    prefill_vs_steps("qwen2", "f32", 8, 3);
    prefill_vs_steps("llama", "q8_0", 7, 2);
    prefill_vs_steps("qwen2", "bf16", 16, 2);
    prefill_vs_steps("gemma3", "f32", 4, 2); /* 37 tokens: the window of 8 slides over several pages */
}

/* (b) two sequences in one batch == each alone */
Test(cpu_forward, batched_sequences_equal_alone, .fini = rm_tmpdir) {
    const char *dtypes[] = {"f32", "f16"};
    for (int di = 0; di < 2; di++) {
        model_t *m = load_tiny(di ? "qwen2" : "llama", dtypes[di]);
        const int V = m->hp.n_vocab, bs = 8;
        be_t *be = be_cpu_new(m, 64, bs, 2);
        cr_assert(be);
        int32_t pa[64], pb[64], ta[8] = {0, 1, 2, 3, 4, 5, 6, 7}, tb[8] = {20, 9, 31, 12, 40, 41, 42, 43};
        int32_t ta2[8] = {50, 51, 52, 53, 54, 55, 56, 57}, tb2[8] = {60, 61, 62, 13, 14, 15, 16, 17};
        make_prompt(pa, 40, V, 2);
        make_prompt(pb, 40, V, 3);
        const int na = 20, nb = 13;
        float *alone = malloc(sizeof(float) * 4 * V), *both = malloc(sizeof(float) * 4 * V);
        batch_buf bb;
        /* alone: A prefill then decode; B prefill then decode (pages ta, tb) */
        cr_assert_eq(be_forward(be, one_seq(&bb, pa, 0, na, ta, false), alone), 0);
        cr_assert_eq(be_forward(be, one_seq(&bb, pb, 0, nb, tb, false), alone + V), 0);
        cr_assert_eq(be_forward(be, one_seq(&bb, pa, na, 1, ta, false), alone + 2 * V), 0);
        cr_assert_eq(be_forward(be, one_seq(&bb, pb, nb, 3, tb, false), alone + 3 * V), 0);
        /* together (pages ta2, tb2): both prefills in one batch, B first in the batch */
        int32_t tok[64], pos[64], st[2], nt[2], out[2];
        const int32_t *tabs[2] = {ta2, tb2};
        int T = 0;
        st[1] = T;
        for (int i = 0; i < nb; i++, T++) tok[T] = pb[i], pos[T] = i;
        nt[1] = nb;
        st[0] = T;
        for (int i = 0; i < na; i++, T++) tok[T] = pa[i], pos[T] = i;
        nt[0] = na;
        out[0] = st[0] + na - 1;
        out[1] = nb - 1;
        be_batch b = {T, 2, tok, pos, st, nt, tabs, 2, out};
        cr_assert_eq(be_forward(be, &b, both), 0, "%s", he_msg());
        assert_same_logits(both, alone, V, "A prefill in a batch");
        assert_same_logits(both + V, alone + V, V, "B prefill in a batch");
        /* mixed step: A decodes one token, B a chunk of 3 */
        T = 0;
        st[0] = 0;
        tok[T] = pa[na], pos[T++] = na;
        nt[0] = 1;
        st[1] = T;
        for (int i = 0; i < 3; i++, T++) tok[T] = pb[nb + i], pos[T] = nb + i;
        nt[1] = 3;
        out[0] = 0;
        out[1] = T - 1;
        b = (be_batch){T, 2, tok, pos, st, nt, tabs, 2, out};
        cr_assert_eq(be_forward(be, &b, both), 0, "%s", he_msg());
        assert_same_logits(both, alone + 2 * V, V, "A decode in a mixed batch");
        assert_same_logits(both + V, alone + 3 * V, V, "B chunk in a mixed batch");
        free(alone); free(both);
        be_destroy(&be);
        model_destroy(&m);
    }
}

/* (c) pages exported from one backend and imported into another at other ids
 * continue the sequence identically; export of an import is byte-identical */
Test(cpu_forward, kv_export_import_round_trip, .fini = rm_tmpdir) {
    model_t *m = load_tiny("llama", "q8_0");
    const int V = m->hp.n_vocab, bs = 4, n = 14;
    be_t *a = be_cpu_new(m, 16, bs, 2), *b = be_cpu_new(m, 16, bs, 1);
    cr_assert(a && b);
    cr_assert_eq(be_kv_page_bytes(a), (size_t)m->hp.n_layers * 2 * bs * m->hp.kv_dim * sizeof(float));
    int32_t prompt[32], ta[4] = {3, 7, 1, 12}, tb[4] = {15, 0, 4, 9};
    make_prompt(prompt, n + 1, V, 4);
    float *la = malloc(sizeof(float) * V), *lb = malloc(sizeof(float) * V);
    batch_buf bb;
    cr_assert_eq(be_forward(a, one_seq(&bb, prompt, 0, n, ta, false), la), 0);
    size_t pbytes = be_kv_page_bytes(a);
    uint8_t *page = malloc(pbytes), *again = malloc(pbytes);
    for (int i = 0; i < (n + bs - 1) / bs; i++) {
        cr_assert_eq(a->ops->kv_export(a, ta[i], page), 0);
        cr_assert_eq(b->ops->kv_import(b, tb[i], page), 0);
        cr_assert_eq(b->ops->kv_export(b, tb[i], again), 0);
        cr_assert(!memcmp(page, again, pbytes), "page %d changed in transit", i);
    }
    /* position n continues from the imported pages */
    cr_assert_eq(be_forward(a, one_seq(&bb, prompt, n, 1, ta, false), la), 0);
    cr_assert_eq(be_forward(b, one_seq(&bb, prompt, n, 1, tb, false), lb), 0);
    assert_same_logits(lb, la, V, "decode after import");
    /* a page never written exports as zeros; bad page ids are refused */
    cr_assert_eq(a->ops->kv_export(a, 5, page), 0);
    for (size_t i = 0; i < pbytes; i++) cr_assert_eq(page[i], 0);
    cr_assert_eq(a->ops->kv_export(a, 16, page), HE_EINVAL);
    cr_assert_eq(a->ops->kv_import(a, -1, page), HE_EINVAL);
    free(la); free(lb); free(page); free(again);
    be_destroy(&a); be_destroy(&b);
    model_destroy(&m);
}

/* (d) logits of every position match the naive reference forward */
static void vs_reference(const char *arch, const char *dtype, double tol) {
    model_t *m = load_tiny(arch, dtype);
    const int V = m->hp.n_vocab, n = 30, n1 = 26;
    int32_t prompt[32], table[8] = {2, 0, 1, 5, 4, 3, 7, 6};
    make_prompt(prompt, n, V, 5);
    float *ref = ref_forward(m, prompt, n);
    float *got = malloc(sizeof(float) * (size_t)n * V);
    be_t *be = be_cpu_new(m, 8, 4, 2);
    cr_assert(be);
    batch_buf bb;
    /* two chunks: a long one (sgemm path) and a short one (small-batch kernels) */
    cr_assert_eq(be_forward(be, one_seq(&bb, prompt, 0, n1, table, true), got), 0, "%s", he_msg());
    cr_assert_eq(be_forward(be, one_seq(&bb, prompt, n1, n - n1, table, true), got + (size_t)n1 * V), 0, "%s",
                 he_msg());
    for (int t = 0; t < n; t++) {
        double e = rel_l2(got + (size_t)t * V, ref + (size_t)t * V, V);
        if (getenv("CPUFWD_VERBOSE")) fprintf(stderr, "%s %s pos %d rel L2 %g\n", arch, dtype, t, e);
        cr_assert(e <= tol, "%s %s position %d: rel L2 %g > %g", arch, dtype, t, e, tol);
    }
    free(ref); free(got);
    be_destroy(&be);
    model_destroy(&m);
}

Test(cpu_forward, matches_naive_reference, .fini = rm_tmpdir) {
    vs_reference("llama", "f32", 1e-4);
    vs_reference("qwen2", "f32", 1e-4);
    /* the reference sums in f64, so now and then an activation lands on the
     * other side of an f16/bf16 rounding or q8_0 quantization step; such flips
     * accumulate over the layers (bf16 steps are 8x f16's) */
    vs_reference("llama", "f16", 1e-2);
    vs_reference("llama", "bf16", 1e-2);
    vs_reference("qwen2", "q8_0", 1e-2);
    /* gemma3 (head_dim 2x dim/heads, QK and post norms, sliding window 8 over
     * 30 tokens, global layer 1, soft-cap): the kernel's GELU reads an f16
     * table as ggml's does (inputs and outputs rounded to f16), the reference
     * computes it exactly */
    vs_reference("gemma3", "f32", 5e-4);
    vs_reference("gemma3", "q8_0", 2e-2);
}

/* (e) malformed batches are refused, not crashed on */
Test(cpu_forward, rejects_malformed_batches, .fini = rm_tmpdir) {
    model_t *m = load_tiny("llama", "f32");
    const int V = m->hp.n_vocab;
    be_t *be = be_cpu_new(m, 4, 4, 2);
    cr_assert(be);
    int32_t prompt[8] = {1, 2, 3, 4, 5, 6, 7, 8}, table[4] = {0, 1, 2, 3}, bad_table[4] = {0, 4, 1, 1};
    float *l = malloc(sizeof(float) * 8 * V);
    batch_buf bb;
    be_batch *b = one_seq(&bb, prompt, 0, 8, table, false);
    cr_assert_eq(be_forward(be, b, l), 0, "%s", he_msg());
    bb.tok[3] = V;
    cr_assert_eq(be_forward(be, b, l), HE_EINVAL);
    bb.tok[3] = -1;
    cr_assert_eq(be_forward(be, b, l), HE_EINVAL);
    b = one_seq(&bb, prompt, 0, 8, table, false);
    bb.out[7] = 8;
    cr_assert_eq(be_forward(be, b, l), HE_EINVAL);
    b = one_seq(&bb, prompt, 0, 8, bad_table, false);
    cr_assert_eq(be_forward(be, b, l), HE_EINVAL, "page id past the pool");
    b = one_seq(&bb, prompt, 0, 8, table, false);
    bb.ntok[0] = 9;
    cr_assert_eq(be_forward(be, b, l), HE_EINVAL, "sequence past the batch");
    b = one_seq(&bb, prompt, 0, 8, table, false);
    bb.ntok[0] = 7; /* token 7 in no sequence */
    cr_assert_eq(be_forward(be, b, l), HE_EINVAL);
    b = one_seq(&bb, prompt, 0, 8, table, false);
    bb.pos[2] = -3;
    cr_assert_eq(be_forward(be, b, l), HE_EINVAL);
    /* an empty batch is a no-op */
    be_batch empty = {0};
    cr_assert_eq(be_forward(be, &empty, l), 0);
    /* still works after the refusals */
    cr_assert_eq(be_forward(be, one_seq(&bb, prompt, 0, 8, table, false), l), 0);
    free(l);
    be_destroy(&be);
    cr_assert(be_cpu_new(m, 0, 4, 1) == NULL);
    model_destroy(&m);
}
