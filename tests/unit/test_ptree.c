/* Unit tests for coordinator/ptree.c: the templated prefix tree (suite "ptree").
 *
 * Tokenizer-backed tests generate tiny models with helium-mkmodel (BPE with
 * the llama-bpe and qwen2 pre-tokenizers, and SentencePiece) and check that
 *  - the static-prefix rule keeps only tokens every completion of the text
 *    starts with (empirically, over corpus slices and adversarial suffixes;
 *    the naive "drop the last token" rule is shown to fail on the same data);
 *  - shared prefixes of real workflows (examples/map_reduce.json, a fan-out,
 *    a batch of jobs) have the expected sharers, block-aligned lengths, and
 *    hashes equal to bh_prefix of the real, fully rendered prompts.
 * Pure tree tests use synthetic token runs: counts under removal, the tree
 * size against a brute-force trie, entries against brute-force block counts
 * (thousands of calls), the DFS dispatch order and critical paths.
 */
#include <criterion/criterion.h>

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "blockhash.h"
#include "gguf.h"
#include "herr.h"
#include "ptree.h"
#include "tokenizer.h"
#include "workflow.h"

#ifndef HELIUM_SOURCE_DIR
#define HELIUM_SOURCE_DIR "."
#endif
#ifndef HELIUM_BINARY_DIR
#define HELIUM_BINARY_DIR "."
#endif

#define BS 16
static const uint64_t ROOT = 0x1234abcd5678ef01ULL;

/* ------------------------------------------------------------------ helpers */

static char *read_file(const char *rel, size_t *len) {
    char path[1024];
    snprintf(path, sizeof path, "%s/%s", HELIUM_SOURCE_DIR, rel);
    FILE *f = fopen(path, "rb");
    cr_assert_not_null(f, "cannot open %s", path);
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *s = malloc((size_t)n + 1);
    cr_assert_eq(fread(s, 1, (size_t)n, f), (size_t)n);
    fclose(f);
    s[n] = 0;
    *len = (size_t)n;
    return s;
}

/* Generates a tiny model (arch, vocab type) and returns its tokenizer; skips
 * the test when helium-mkmodel is not built. */
static tok_t *tiny_tok(const char *arch, const char *vocab) {
    const char *bin = getenv("HELIUM_BIN");
    char exe[1024], path[] = "/tmp/helium_ptree_XXXXXX", cmd[2600];
    if (bin && *bin)
        snprintf(exe, sizeof exe, "%s/helium-mkmodel", bin);
    else
        snprintf(exe, sizeof exe, "%s/bin/helium-mkmodel", HELIUM_BINARY_DIR);
    if (access(exe, X_OK) != 0) cr_skip_test("helium-mkmodel not built (%s)", exe);
    int fd = mkstemp(path);
    cr_assert(fd >= 0);
    close(fd);
    snprintf(cmd, sizeof cmd, "'%s' --preset tiny --arch %s --vocab-type %s --seed 3 -o '%s' >/dev/null 2>&1", exe,
             arch, vocab, path);
    int rc = system(cmd);
    if (rc != 0) unlink(path);
    cr_assert_eq(rc, 0, "mkmodel failed: %s", cmd);
    gguf_t *g = NULL;
    cr_assert_eq(gguf_open(path, &g), 0, "%s", he_msg());
    tok_t *t = tok_new_from_gguf(g);
    gguf_destroy(&g);
    unlink(path);
    cr_assert_not_null(t, "%s", he_msg());
    return t;
}

/* Tokenizes a whole prompt as the worker does; returns a malloc'd array. */
static int32_t *encode(const tok_t *t, const char *s, size_t len, int *n) {
    int cap = (int)len + 8;
    int32_t *v = malloc((size_t)cap * sizeof *v);
    int k = tok_encode(t, s, len, tok_add_bos_default(t), false, v, cap);
    cr_assert(k >= 0 && k <= cap, "tok_encode: %d %s", k, he_msg());
    *n = k;
    return v;
}

static int lcp(const int32_t *a, int na, const int32_t *b, int nb) {
    int i = 0;
    while (i < na && i < nb && a[i] == b[i]) i++;
    return i;
}

static uint32_t rng_state = 12345;
static uint32_t rnd(void) {
    rng_state = rng_state * 1664525u + 1013904223u;
    return rng_state >> 8;
}

/* ---- placeholder values for templates */

typedef struct {
    const wf_t *wf;
    const char *const *inputs; /* (wf->n_inputs) values, NULL = use the default */
    const char *const *outs;   /* (wf->n_ops) op outputs, NULL = not known yet */
} vals;

static int value_of(void *ctx, const wf_part *p, const char **s, size_t *len) {
    const vals *v = ctx;
    if (p->kind == WF_PART_INPUT) {
        const wf_input *in = &v->wf->inputs[p->ref];
        const char *x = v->inputs && v->inputs[p->ref] ? v->inputs[p->ref] : in->def;
        if (!x) return 0;
        *s = x;
        *len = strlen(x);
        return 1;
    }
    if (p->kind == WF_PART_OP && v->outs && v->outs[p->ref]) {
        *s = v->outs[p->ref];
        *len = strlen(*s);
        return 1;
    }
    return 0;
}

/* The fully rendered prompt's tokens (every placeholder must be known). */
static int32_t *full_prompt(const tok_t *t, const wf_op *op, vals *v, int *n) {
    char *text;
    size_t len;
    bool complete;
    cr_assert_eq(ptree_static_text(&op->llm.prompt, value_of, v, &text, &len, &complete), 0, "%s", he_msg());
    cr_assert(complete, "op %s: prompt not fully known", op->id);
    int32_t *ids = encode(t, text, len, n);
    free(text);
    return ids;
}

static wf_t *parse_file(const char *rel) {
    size_t len;
    char *s = read_file(rel, &len);
    wf_t *wf = NULL;
    cr_assert_eq(wf_parse_json(s, len, &wf), 0, "%s: %s", rel, he_msg());
    free(s);
    return wf;
}

static wf_t *parse_str(const char *s) {
    wf_t *wf = NULL;
    cr_assert_eq(wf_parse_json(s, strlen(s), &wf), 0, "%s", he_msg());
    return wf;
}

/* Adds every llm op of wf (job) with its static prefix; returns how many. */
static int add_llm_ops(ptree_t *pt, uint64_t job, const wf_t *wf, vals *v) {
    int k = 0;
    for (size_t i = 0; i < wf->n_ops; i++) {
        const wf_op *op = wf->ops[i];
        if (op->kind != WF_LLM) continue;
        int32_t *ids;
        int n;
        bool complete;
        cr_assert_eq(ptree_tmpl_prefix(pt, &op->llm.prompt, value_of, v, &ids, &n, &complete), 0, "%s", he_msg());
        cr_assert_eq(ptree_add_op(pt, job, (int32_t)i, 0, ids, n, n + 100, (int)op->llm.max_tokens), 0, "%s",
                     he_msg());
        free(ids);
        k++;
    }
    return k;
}

/* The entry that equals the first n_blocks of chain, or -1. */
static void expect_blocks_match(const ptree_prefix *e, const int32_t *ids, int n) {
    cr_assert_geq(n, e->n_tokens, "prompt shorter (%d) than the shared prefix (%d)", n, e->n_tokens);
    uint64_t *h = malloc(((size_t)n / BS + 1) * sizeof *h);
    int nb = bh_prefix(ROOT, ids, n, BS, h);
    cr_assert_geq(nb, e->n_blocks);
    for (int j = 0; j < e->n_blocks; j++) cr_assert_eq(h[j], e->hashes[j], "block %d hash differs", j);
    cr_assert_eq(memcmp(ids, e->tokens, (size_t)e->n_tokens * sizeof *ids), 0);
    free(h);
}

/* ---------------------------------------------------- static-prefix rule */

static const char *SUFFIXES[] = {
    "",      " ",     "  ",   "\n",   "\n\n", "a",    "s",      "'s",   "ing",  "1",    "23",
    ".",     ":\n",   "\t",   " x",   "\xc3\xa9", "-", "!",     "?\n",  "\xe2\x80\x99", "ed the",
    "\r\n",  " 42",   "ly",   "'ll",  "  \n ", "\n- ", "...",   "ment", "\xf0\x9f\x99\x82", ",",
};

static const char *PREFIXES[] = {
    "Question: ",
    "Answer:\n",
    "Answer:\n\n",
    "The total is 12",
    "The total is 12 ",
    "It costs $3.50 per unit",
    "Plan:\n1. ",
    "word",
    "word ",
    "  ",
    "",
    "\n",
    "caf\xc3\xa9 ",
    "don'",
    "don't ",
    "Ends with tab\t",
    "Line one.\r\nLine two ",
    "x",
    "The store opens at eight, but the work starts long before the lights come on.",
    "The store opens at eight, but the work starts long before the lights come on.\n\nSummary:",
};

/* Checks the rule for one tokenizer; returns how often the naive rule failed. */
static int check_rule(const tok_t *t, const char *corpus, size_t clen, int n_slices) {
    int naive_fail = 0, cases = 0;
    long kept = 0, total = 0;
    char buf[4096];
    const int nsuf = (int)(sizeof SUFFIXES / sizeof SUFFIXES[0]);
    const int nfix = (int)(sizeof PREFIXES / sizeof PREFIXES[0]);
    for (int it = 0; it < nfix + n_slices; it++) {
        size_t L;
        if (it < nfix) {
            L = strlen(PREFIXES[it]);
            memcpy(buf, PREFIXES[it], L);
        } else {
            size_t st = rnd() % (clen - 1500);
            L = 1 + rnd() % 600;
            memcpy(buf, corpus + st, L);
        }
        int32_t *ids = NULL;
        int n = -1;
        cr_assert_eq(ptree_safe_tokens(t, buf, L, false, &ids, &n), 0, "%s", he_msg());
        int np;
        int32_t *pre = encode(t, buf, L, &np);
        cr_assert_leq(n, np);
        cr_assert_eq(n ? memcmp(ids, pre, (size_t)n * sizeof *ids) : 0, 0, "kept tokens are not a prefix of the text's own");
        kept += n;
        total += np;
        for (int s = 0; s < nsuf + 8; s++) {
            char b2[4700];
            size_t L2 = L, sl;
            memcpy(b2, buf, L);
            if (s < nsuf) {
                sl = strlen(SUFFIXES[s]);
                memcpy(b2 + L, SUFFIXES[s], sl);
            } else if (s < nsuf + 5) { /* a random piece of the corpus */
                sl = 1 + rnd() % 40;
                memcpy(b2 + L, corpus + rnd() % (clen - 64), sl);
            } else { /* random bytes from a mixed alphabet */
                static const char ALPHA[] = "aZ9 \n\t.:'-_\"?!,";
                sl = 1 + rnd() % 6;
                for (size_t k = 0; k < sl; k++) b2[L + k] = ALPHA[rnd() % (sizeof ALPHA - 1)];
            }
            L2 += sl;
            int nf;
            int32_t *full = encode(t, b2, L2, &nf);
            cases++;
            cr_assert(n <= nf && (n == 0 || memcmp(ids, full, (size_t)n * sizeof *ids) == 0),
                      "kept %d tokens of [%.*s] but [%.*s]+[%.*s] starts differently", n, (int)L, buf, (int)L, buf,
                      (int)sl, b2 + L);
            if (np > 0 && (np - 1 > nf || memcmp(pre, full, (size_t)(np - 1) * sizeof *pre) != 0)) naive_fail++;
            free(full);
        }
        /* complete: every token is kept */
        int32_t *all;
        int na;
        cr_assert_eq(ptree_safe_tokens(t, buf, L, true, &all, &na), 0);
        cr_assert_eq(na, np);
        cr_assert_eq(na ? memcmp(all, pre, (size_t)na * sizeof *all) : 0, 0);
        free(all);
        free(pre);
        free(ids);
    }
    /* the rule keeps most of a text: loses at most the last words */
    cr_assert_gt(kept * 10, total * 8, "kept only %ld of %ld tokens", kept, total);
    cr_assert_gt(cases, 1000);
    return naive_fail;
}

static void rule_for(const char *arch, const char *vocab, bool expect_naive_fail) {
    tok_t *t = tiny_tok(arch, vocab);
    size_t clen;
    char *corpus = read_file("data/corpus.txt", &clen);
    cr_assert_gt(clen, 10000);
    rng_state = 777;
    int naive = check_rule(t, corpus, clen, 400);
    if (expect_naive_fail)
        cr_assert_gt(naive, 0, "the suffix set never breaks the naive rule: it is too weak to test anything");

    /* a long prefix ending right before a placeholder keeps all but its last word */
    const char *tail = "\n\nQuestion: ";
    char *p = malloc(2100 + strlen(tail));
    memcpy(p, corpus, 2000);
    strcpy(p + 2000, tail);
    int32_t *ids;
    int n, np;
    cr_assert_eq(ptree_safe_tokens(t, p, strlen(p), false, &ids, &n), 0);
    int32_t *pre = encode(t, p, strlen(p), &np);
    cr_assert_geq(n, np - 6, "kept %d of %d", n, np);
    free(pre);
    free(ids);
    free(p);
    free(corpus);
    tok_destroy(&t);
}

Test(ptree, safe_prefix_rule_bpe_llama) { rule_for("llama", "bpe", true); }
Test(ptree, safe_prefix_rule_bpe_qwen2) { rule_for("qwen2", "bpe", true); }
Test(ptree, safe_prefix_rule_spm) { rule_for("llama", "spm", false); }

Test(ptree, safe_prefix_edge_cases) {
    tok_t *t = tiny_tok("llama", "bpe");
    int32_t *ids = (int32_t *)1;
    int n = -1;
    /* nothing safe: no letter/digit followed by whitespace */
    cr_assert_eq(ptree_safe_tokens(t, "", 0, false, &ids, &n), 0);
    cr_assert_eq(n, 0);
    cr_assert_null(ids);
    cr_assert_eq(ptree_safe_tokens(t, "hello", 5, false, &ids, &n), 0);
    cr_assert_eq(n, 0);
    cr_assert_eq(ptree_safe_tokens(t, NULL, 3, false, &ids, &n), HE_EINVAL);
    cr_assert_eq(ptree_safe_tokens(NULL, "x", 1, false, &ids, &n), HE_EINVAL);
    tok_destroy(&t);
}

/* ------------------------------------------------- shared prefixes, real plans */

static char *doc_text(const char *corpus, size_t off, size_t len) {
    char *d = malloc(len + 1);
    memcpy(d, corpus + off, len);
    d[len] = 0;
    return d;
}

Test(ptree, map_reduce_shared_prefixes_match_real_prompts) {
    tok_t *t = tiny_tok("llama", "bpe");
    size_t clen;
    char *corpus = read_file("data/corpus.txt", &clen);
    wf_t *wf = parse_file("examples/map_reduce.json");
    char *doc = doc_text(corpus, 1000, 3000);
    const char *in[2] = {NULL, doc};
    cr_assert_eq(wf->n_inputs, 2);
    cr_assert_str_eq(wf->inputs[1].name, "document");
    vals v = {.wf = wf, .inputs = in, .outs = NULL};

    ptree_t *pt = ptree_new(t, ROOT, BS);
    cr_assert_not_null(pt);
    cr_assert_eq(add_llm_ops(pt, 1, wf, &v), 5);

    /* the real prompts, once the experts have answered */
    const char *outs[8] = {0};
    const char *answers[] = {"Revenue grew 4 percent.", "No open disputes.", "Staffing is thin.", "Demand is flat."};
    int e = 0;
    for (size_t i = 0; i < wf->n_ops; i++)
        if (strcmp(wf->ops[i]->id, "reduce") != 0) outs[i] = answers[e++];
    vals full = {.wf = wf, .inputs = in, .outs = outs};
    int32_t *ids[5];
    int n[5];
    for (int i = 0; i < 5; i++) ids[i] = full_prompt(t, wf->ops[i], &full, &n[i]);
    int red = wf_find(wf, "reduce");
    cr_assert_eq(red, 4);

    /* expected: the 5 calls share the system prompt; the 4 experts (complete
     * prompts) share system + document + "Your aspect is" */
    int lcp4 = n[0], lcp5;
    for (int i = 1; i < 4; i++) {
        int l = lcp(ids[0], n[0], ids[i], n[i]);
        if (l < lcp4) lcp4 = l;
    }
    lcp5 = lcp(ids[0], n[0], ids[4], n[4]);
    cr_assert_lt(lcp5, lcp4);
    cr_assert_gt(lcp4 / BS, lcp5 / BS, "test setup: the document should add blocks");

    const ptree_prefix *sp;
    int ne = ptree_shared_prefixes(pt, 2, &sp);
    cr_assert_eq(ne, 2, "got %d entries", ne);
    cr_assert_eq(sp[0].sharers, 5);
    cr_assert_eq(sp[0].n_tokens, lcp5 / BS * BS);
    cr_assert_eq(sp[0].parent, -1);
    cr_assert_not(sp[0].leaf);
    cr_assert_eq(sp[1].sharers, 4);
    cr_assert_eq(sp[1].n_tokens, lcp4 / BS * BS);
    cr_assert_eq(sp[1].parent, 0);
    cr_assert_eq(sp[1].first_block, sp[0].n_blocks);
    cr_assert(sp[1].leaf);
    for (int i = 0; i < 5; i++) expect_blocks_match(&sp[0], ids[i], n[i]);
    for (int i = 0; i < 4; i++) expect_blocks_match(&sp[1], ids[i], n[i]);
    /* the reducer's static prefix is a prefix of its real prompt */
    ptree_match_info mi;
    cr_assert_eq(ptree_match(pt, ids[4], n[4], &mi), 0);
    cr_assert_geq(mi.matched, lcp5);
    cr_assert_eq(mi.sharers, 1); /* past the shared part only the reducer is left */

    /* with min_sharers 5 only the system prompt is left, and it is a leaf */
    ne = ptree_shared_prefixes(pt, 5, &sp);
    cr_assert_eq(ne, 1);
    cr_assert(sp[0].leaf);
    cr_assert_eq(ptree_shared_prefixes(pt, 6, &sp), 0);

    for (int i = 0; i < 5; i++) free(ids[i]);
    ptree_destroy(&pt);
    cr_assert_null(pt);
    ptree_destroy(&pt);
    wf_destroy(&wf);
    free(doc);
    free(corpus);
    tok_destroy(&t);
}

static const char *FANOUT =
    "{\"name\":\"fanout\",\"inputs\":[{\"name\":\"doc\"}],\"ops\":["
    "{\"id\":\"plan\",\"type\":\"llm\",\"prompt\":\"Read the notes below.\\n{{input.doc}}\\n\\nWrite a plan in three steps.\\nPlan:\\n\",\"max_tokens\":64},"
    "{\"id\":\"e1\",\"type\":\"llm\",\"prompt\":\"Read the notes below.\\n{{input.doc}}\\n\\nThe plan:\\n{{op.plan}}\\n\\nCarry out step 1.\\n\",\"max_tokens\":32},"
    "{\"id\":\"e2\",\"type\":\"llm\",\"prompt\":\"Read the notes below.\\n{{input.doc}}\\n\\nThe plan:\\n{{op.plan}}\\n\\nCarry out step 2.\\n\",\"max_tokens\":32},"
    "{\"id\":\"e3\",\"type\":\"llm\",\"prompt\":\"Read the notes below.\\n{{input.doc}}\\n\\nThe plan:\\n{{op.plan}}\\n\\nCarry out step 3.\\n\",\"max_tokens\":32},"
    "{\"id\":\"sum\",\"type\":\"llm\",\"prompt\":\"Summarize the work:\\n{{op.e1}}\\n{{op.e2}}\\n{{op.e3}}\\n\",\"max_tokens\":48}"
    "],\"output\":\"sum\"}";

/* Fan-out branches whose static prefix stops at an upstream placeholder: the
 * shared blocks are prefixes of every real prompt, whatever the plan says. */
Test(ptree, fanout_branches_share_static_prefix) {
    const char *vocabs[] = {"bpe", "spm"};
    for (int vk = 0; vk < 2; vk++) {
        tok_t *t = tiny_tok("llama", vocabs[vk]);
        size_t clen;
        char *corpus = read_file("data/corpus.txt", &clen);
        wf_t *wf = parse_str(FANOUT);
        char *doc = doc_text(corpus, 5000, 1500);
        const char *in[1] = {doc};
        vals v = {.wf = wf, .inputs = in};
        ptree_t *pt = ptree_new(t, ROOT, BS);
        cr_assert_eq(add_llm_ops(pt, 7, wf, &v), 5);
        ptree_stats_t st;
        ptree_stats(pt, &st);
        cr_assert_eq(st.calls, 5);
        cr_assert_eq(st.ready, 0);

        const ptree_prefix *sp;
        int ne = ptree_shared_prefixes(pt, 2, &sp);
        /* plan + e1..e3 share "Read the notes below.\n" + doc; e1..e3 have the
         * same static prefix, longer than plan's share */
        cr_assert_geq(ne, 1);
        int leaf = -1;
        for (int i = 0; i < ne; i++)
            if (sp[i].leaf) leaf = i;
        cr_assert_eq(sp[0].sharers, 4);
        cr_assert_geq(sp[0].n_tokens, 1000 / 8, "only %d shared tokens", sp[0].n_tokens);
        cr_assert_geq(leaf, 0);
        const char *plans[] = {"1. Count.\n2. Sort.\n3. Ship.", "Step one", " \n", "x"};
        for (int pl = 0; pl < 4; pl++) {
            const char *outs[5] = {plans[pl], NULL, NULL, NULL, NULL};
            vals full = {.wf = wf, .inputs = in, .outs = outs};
            int plan_n;
            int32_t *plan_ids = full_prompt(t, wf->ops[0], &(vals){.wf = wf, .inputs = in}, &plan_n);
            for (int i = 0; i < ne; i++)
                if (sp[i].sharers == 4) expect_blocks_match(&sp[i], plan_ids, plan_n);
            for (int k = 1; k <= 3; k++) {
                int nk;
                int32_t *ids = full_prompt(t, wf->ops[k], &full, &nk);
                for (int i = 0; i < ne; i++) expect_blocks_match(&sp[i], ids, nk);
                free(ids);
            }
            free(plan_ids);
        }
        /* the experts' entry (3 sharers) when present extends the 4-way one */
        for (int i = 1; i < ne; i++) {
            cr_assert_eq(sp[i].sharers, 3);
            cr_assert_eq(sp[i].parent, 0);
        }
        ptree_destroy(&pt);
        wf_destroy(&wf);
        free(doc);
        free(corpus);
        tok_destroy(&t);
    }
}

/* Entries with exactly this many sharers: how many, and the last one's index. */
static int with_sharers(const ptree_prefix *sp, int ne, int sharers, int *idx) {
    int k = 0;
    for (int i = 0; i < ne; i++)
        if (sp[i].sharers == sharers) {
            k++;
            *idx = i;
        }
    return k;
}

Test(ptree, batch_of_jobs_shares_system_prompt_then_removal) {
    tok_t *t = tiny_tok("llama", "bpe");
    size_t clen;
    char *corpus = read_file("data/corpus.txt", &clen);
    wf_t *wf = parse_file("examples/map_reduce.json");
    char *doc1 = doc_text(corpus, 20000, 2500), *doc2 = doc_text(corpus, 40000, 2000);
    const char *in1[2] = {NULL, doc1}, *in2[2] = {NULL, doc2};
    vals v1 = {.wf = wf, .inputs = in1}, v2 = {.wf = wf, .inputs = in2};
    ptree_t *pt = ptree_new(t, ROOT, BS);
    cr_assert_eq(add_llm_ops(pt, 1, wf, &v1), 5);
    cr_assert_eq(add_llm_ops(pt, 2, wf, &v2), 5);
    const ptree_prefix *sp;
    int ne = ptree_shared_prefixes(pt, 2, &sp), i10 = -1, i2 = -1, i4 = -1, i8 = -1;
    /* all 10 calls share the system prompt; each job's 4 experts its document;
     * the 2 reducers the chair's instructions; maybe the 8 experts "<document>" */
    cr_assert_eq(with_sharers(sp, ne, 10, &i10), 1);
    cr_assert_eq(i10, 0);
    cr_assert_eq(sp[0].parent, -1);
    cr_assert_not(sp[0].leaf);
    cr_assert_eq(with_sharers(sp, ne, 4, &i4), 2);
    cr_assert_eq(with_sharers(sp, ne, 2, &i2), 1);
    int n8 = with_sharers(sp, ne, 8, &i8);
    cr_assert_leq(n8, 1);
    cr_assert_eq(ne, 4 + n8, "got %d entries", ne);
    cr_assert(sp[i2].leaf);
    cr_assert_eq(sp[i2].parent, 0);
    for (int i = 1; i < ne; i++) {
        cr_assert_geq(sp[i].parent, 0);
        cr_assert_gt(sp[i].n_blocks, sp[sp[i].parent].n_blocks);
        if (sp[i].sharers == 4) {
            cr_assert(sp[i].leaf);
            cr_assert_eq(sp[i].parent, n8 ? i8 : 0);
        }
    }
    int32_t sys_tokens = sp[0].n_tokens;
    /* each job's prompts start with the right entries' blocks */
    for (int j = 0; j < 2; j++) {
        vals *v = j ? &v2 : &v1;
        int n;
        int32_t *ids = full_prompt(t, wf->ops[0], v, &n);
        expect_blocks_match(&sp[0], ids, n);
        int hits = 0;
        for (int i = 1; i < ne; i++)
            if (sp[i].sharers == 4 && sp[i].n_tokens <= n &&
                memcmp(sp[i].tokens, ids, (size_t)sp[i].n_tokens * sizeof *ids) == 0) {
                expect_blocks_match(&sp[i], ids, n);
                hits++;
            }
        cr_assert_eq(hits, 1);
        free(ids);
    }

    /* removal: job 1's experts finish one by one */
    ptree_stats_t st;
    cr_assert_eq(ptree_remove_op(pt, 1, 0, 0), 0);
    cr_assert_eq(ptree_remove_op(pt, 1, 0, 0), HE_ENOTFOUND);
    cr_assert_not(ptree_has_op(pt, 1, 0, 0));
    cr_assert(ptree_has_op(pt, 2, 0, 0));
    ne = ptree_shared_prefixes(pt, 2, &sp);
    cr_assert_eq(sp[0].sharers, 9);
    cr_assert_eq(with_sharers(sp, ne, 3, &i4), 1);
    cr_assert_eq(with_sharers(sp, ne, 4, &i4), 1);
    cr_assert_eq(ptree_remove_op(pt, 1, 1, 0), 0);
    cr_assert_eq(ptree_remove_op(pt, 1, 2, 0), 0);
    ne = ptree_shared_prefixes(pt, 2, &sp); /* job 1's document is no longer shared */
    cr_assert_eq(sp[0].sharers, 7);
    cr_assert_eq(sp[0].n_tokens, sys_tokens);
    cr_assert_eq(with_sharers(sp, ne, 4, &i4), 1);
    cr_assert_eq(with_sharers(sp, ne, 3, &i4), 0);
    cr_assert_eq(with_sharers(sp, ne, 2, &i2), 1);
    cr_assert_eq(ne, 3 + with_sharers(sp, ne, 5, &i8));
    ptree_stats(pt, &st);
    cr_assert_eq(st.calls, 7);
    cr_assert_leq(st.nodes, 2 * st.calls);
    cr_assert_eq(ptree_remove_job(pt, 2), 5);
    ne = ptree_shared_prefixes(pt, 2, &sp); /* job 1: market and reduce share the system prompt */
    cr_assert_eq(ne, 1);
    cr_assert_eq(sp[0].sharers, 2);
    cr_assert_eq(sp[0].n_tokens, sys_tokens);
    cr_assert(sp[0].leaf);
    cr_assert_eq(ptree_remove_job(pt, 1), 2);
    ptree_stats(pt, &st);
    cr_assert_eq(st.calls, 0);
    cr_assert_eq(st.nodes, 0);
    cr_assert_eq(st.tree_tokens, 0);
    cr_assert_eq(st.prefix_tokens, 0);
    cr_assert_eq(ptree_shared_prefixes(pt, 1, &sp), 0);
    ptree_destroy(&pt);
    wf_destroy(&wf);
    free(doc1);
    free(doc2);
    free(corpus);
    tok_destroy(&t);
}

/* ------------------------------------------------------- synthetic trees */

typedef struct {
    int32_t *t;
    int n;
    bool live;
} call;

static int cmp_calls(const void *a, const void *b) {
    const call *x = *(call *const *)a, *y = *(call *const *)b;
    int m = x->n < y->n ? x->n : y->n;
    for (int i = 0; i < m; i++)
        if (x->t[i] != y->t[i]) return x->t[i] < y->t[i] ? -1 : 1;
    return x->n - y->n;
}

/* tokens of the trie of the live calls, shared runs counted once */
static int64_t brute_trie_tokens(call *c, int n) {
    call **v = malloc((size_t)n * sizeof *v);
    int k = 0;
    for (int i = 0; i < n; i++)
        if (c[i].live) v[k++] = &c[i];
    qsort(v, (size_t)k, sizeof *v, cmp_calls);
    int64_t tot = 0;
    for (int i = 0; i < k; i++) tot += v[i]->n - (i ? lcp(v[i]->t, v[i]->n, v[i - 1]->t, v[i - 1]->n) : 0);
    free(v);
    return tot;
}

static int cmp_u64(const void *a, const void *b) {
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

/* How many live calls hold block hash h, from a sorted array of all blocks. */
static int count_hash(const uint64_t *all, size_t n, uint64_t h) {
    size_t lo = 0, hi = n;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        if (all[mid] < h)
            lo = mid + 1;
        else
            hi = mid;
    }
    int k = 0;
    while (lo + k < n && all[lo + k] == h) k++;
    return k;
}

/* Checks entries against brute force: each entry's hashes are bh_prefix of its
 * tokens; every block it adds is held by exactly `sharers` calls; every block
 * held by >= min calls is in some entry. */
static void check_entries(ptree_t *pt, call *c, int n, int min) {
    size_t tot = 0;
    for (int i = 0; i < n; i++)
        if (c[i].live) tot += (size_t)(c[i].n / BS);
    uint64_t *all = malloc((tot + 1) * sizeof *all);
    size_t k = 0;
    for (int i = 0; i < n; i++)
        if (c[i].live) k += (size_t)bh_prefix(ROOT, c[i].t, c[i].n, BS, all + k);
    cr_assert_eq(k, tot);
    qsort(all, tot, sizeof *all, cmp_u64);
    const ptree_prefix *sp;
    int ne = ptree_shared_prefixes(pt, min, &sp);
    cr_assert_geq(ne, 0);
    uint64_t *listed = malloc(((size_t)ne * 64 + tot + 1) * sizeof *listed);
    size_t nl = 0;
    for (int e = 0; e < ne; e++) {
        uint64_t h[4096 / BS + 1];
        cr_assert_leq(sp[e].n_tokens, 4096);
        cr_assert_eq(bh_prefix(ROOT, sp[e].tokens, sp[e].n_tokens, BS, h), sp[e].n_blocks);
        cr_assert_eq(memcmp(h, sp[e].hashes, (size_t)sp[e].n_blocks * sizeof *h), 0, "entry %d hashes", e);
        cr_assert_geq(sp[e].sharers, min);
        if (sp[e].parent >= 0) {
            cr_assert_lt(sp[e].parent, e);
            cr_assert_eq(sp[e].first_block, sp[sp[e].parent].n_blocks);
            cr_assert_not(sp[sp[e].parent].leaf);
        } else {
            cr_assert_eq(sp[e].first_block, 0);
        }
        cr_assert_gt(sp[e].n_blocks, sp[e].first_block);
        for (int j = sp[e].first_block; j < sp[e].n_blocks; j++) {
            cr_assert_eq(count_hash(all, tot, h[j]), sp[e].sharers, "entry %d block %d", e, j);
            listed[nl++] = h[j];
        }
    }
    qsort(listed, nl, sizeof *listed, cmp_u64);
    for (size_t i = 0; i < tot;) {
        size_t j = i;
        while (j < tot && all[j] == all[i]) j++;
        if ((int)(j - i) >= min)
            cr_assert_eq(count_hash(listed, nl, all[i]), 1, "a block held by %zu calls is not listed", j - i);
        i = j;
    }
    free(listed);
    free(all);
}

/* Families of prompts: a few system stems, per-family documents, per-call tails. */
static void make_calls(call *c, int n) {
    int32_t stems[4][300], docs[32][500];
    for (int s = 0; s < 4; s++)
        for (int i = 0; i < 300; i++) stems[s][i] = 1 + (int32_t)(rnd() % 50);
    for (int d = 0; d < 32; d++)
        for (int i = 0; i < 500; i++) docs[d][i] = 1 + (int32_t)(rnd() % 50);
    for (int i = 0; i < n; i++) {
        int s = (int)(rnd() % 4), d = (int)(rnd() % 32);
        int ls = (int)(rnd() % 300), ld = (int)(rnd() % 500), lt = (int)(rnd() % 40);
        if (rnd() % 8 == 0) ld = 0;
        c[i].n = 1 + ls + ld + lt;
        c[i].t = malloc((size_t)c[i].n * sizeof(int32_t));
        c[i].t[0] = 0; /* BOS */
        memcpy(c[i].t + 1, stems[s], (size_t)ls * sizeof(int32_t));
        memcpy(c[i].t + 1 + ls, docs[d], (size_t)ld * sizeof(int32_t));
        for (int k = 0; k < lt; k++) c[i].t[1 + ls + ld + k] = 1 + (int32_t)(rnd() % 50);
        c[i].live = true;
    }
}

Test(ptree, thousands_of_calls_match_brute_force) {
    enum { N = 3000 };
    rng_state = 99;
    call *c = calloc(N, sizeof *c);
    make_calls(c, N);
    ptree_t *pt = ptree_new(NULL, ROOT, BS);
    for (int i = 0; i < N; i++)
        cr_assert_eq(ptree_add_op(pt, (uint64_t)(i % 7), i, (uint32_t)(i % 3), c[i].t, c[i].n, c[i].n + 50, 64), 0,
                     "%s", he_msg());
    ptree_stats_t st;
    ptree_stats(pt, &st);
    cr_assert_eq(st.calls, N);
    cr_assert_leq(st.nodes, 2 * N);
    cr_assert_eq(st.tree_tokens, brute_trie_tokens(c, N));
    check_entries(pt, c, N, 2);
    check_entries(pt, c, N, 25);
    /* remove a random two thirds, re-prefix some, check again */
    for (int i = 0; i < N; i++)
        if (rnd() % 3) {
            cr_assert_eq(ptree_remove_op(pt, (uint64_t)(i % 7), i, (uint32_t)(i % 3)), 0);
            c[i].live = false;
        } else if (rnd() % 4 == 0 && c[i].n > 10) {
            c[i].n -= 7; /* a shorter static prefix */
            cr_assert_eq(ptree_set_prefix(pt, (uint64_t)(i % 7), i, (uint32_t)(i % 3), c[i].t, c[i].n), 0);
        }
    int live = 0;
    for (int i = 0; i < N; i++) live += c[i].live;
    ptree_stats(pt, &st);
    cr_assert_eq(st.calls, live);
    cr_assert_leq(st.nodes, 2 * live);
    cr_assert_eq(st.tree_tokens, brute_trie_tokens(c, N));
    check_entries(pt, c, N, 2);
    check_entries(pt, c, N, 2); /* unchanged tree: the kept answer, still right */
    /* a change of readiness alone moves the tree's generation: a fresh answer */
    for (int i = 0; i < N; i++)
        if (c[i].live && rnd() % 5 == 0)
            cr_assert_eq(ptree_set_sched(pt, (uint64_t)(i % 7), i, (uint32_t)(i % 3), 0, 1, true), 0);
    check_entries(pt, c, N, 2);
    /* every live call is matched in full */
    for (int i = 0; i < N; i++)
        if (c[i].live) {
            ptree_match_info mi;
            cr_assert_eq(ptree_match(pt, c[i].t, c[i].n, &mi), 0);
            cr_assert_eq(mi.matched, c[i].n);
            cr_assert_geq(mi.sharers, 1);
        }
    for (uint64_t j = 0; j < 7; j++) ptree_remove_job(pt, j);
    ptree_stats(pt, &st);
    cr_assert_eq(st.calls, 0);
    cr_assert_eq(st.nodes, 0);
    for (int i = 0; i < N; i++) free(c[i].t);
    free(c);
    ptree_destroy(&pt);
}

/* A prefix run: [base .. base + n) */
static void run(int32_t *out, int32_t base, int n) {
    for (int i = 0; i < n; i++) out[i] = base + i;
}

Test(ptree, order_groups_siblings_by_critical_path) {
    ptree_t *pt = ptree_new(NULL, ROOT, BS);
    int32_t p[200];
    /* S = [1000..1040); A = S + [2000..2030) + tail; B = S + [3000..3030) + tail;
     * C = S + [4000..4010) */
    run(p, 1000, 40);
    struct {
        int32_t op, stem, tail;
        int64_t cp;
        bool ready;
    } calls[] = {
        {1, 2000, 10, 100, true}, {11, 3000, 20, 200, true}, {2, 2000, 30, 50, true},  {20, 4000, 0, 150, true},
        {12, 3000, 40, 10, true}, {3, 2000, 50, 70, true},   {13, 3000, 60, 20, true}, {4, 2000, 70, 999, false},
    };
    int nc = (int)(sizeof calls / sizeof calls[0]);
    for (int i = 0; i < nc; i++) {
        int n = 40;
        if (calls[i].stem == 4000) {
            run(p + 40, 4000, 10);
            n = 50;
        } else {
            run(p + 40, calls[i].stem, 30);
            run(p + 70, calls[i].stem + 500 + calls[i].tail, 5);
            n = 75;
        }
        cr_assert_eq(ptree_add_op(pt, 5, calls[i].op, 0, p, n, n + 10, 8), 0);
        cr_assert_eq(ptree_set_sched(pt, 5, calls[i].op, 0, 0, calls[i].cp, calls[i].ready), 0);
    }
    ptree_slot out[16];
    int k = ptree_order(pt, out, 16);
    cr_assert_eq(k, 7);
    int32_t want[] = {11, 13, 12, 20, 1, 3, 2};
    int32_t shared[] = {0, 70, 70, 40, 40, 70, 70};
    for (int i = 0; i < 7; i++) {
        cr_assert_eq(out[i].op, want[i], "slot %d: op %d, want %d", i, out[i].op, want[i]);
        cr_assert_eq(out[i].shared_prev, shared[i], "slot %d shared %d", i, out[i].shared_prev);
        cr_assert_eq(out[i].cost, ptree_llm_cost(out[i].prefix_len + 10, shared[i], 8));
    }
    cr_assert_eq(out[0].cp, 200);
    /* the not-ready call with the longest path becomes ready: group A goes first */
    cr_assert_eq(ptree_set_sched(pt, 5, 4, 0, 0, 999, true), 0);
    k = ptree_order(pt, out, 2);
    cr_assert_eq(k, 8);
    cr_assert_eq(out[0].op, 4);
    cr_assert_eq(out[1].op, 1);
    /* calls ending at an inner node compete with its children */
    run(p, 1000, 40);
    cr_assert_eq(ptree_add_op(pt, 6, 0, 0, p, 40, 40, 8), 0);
    cr_assert_eq(ptree_set_sched(pt, 6, 0, 0, 0, 160, true), 0);
    k = ptree_order(pt, out, 16);
    cr_assert_eq(k, 9);
    int32_t want2[] = {4, 1, 3, 2, 11, 13, 12, 0, 20};
    for (int i = 0; i < 9; i++) cr_assert_eq(out[i].op, want2[i], "slot %d: op %d, want %d", i, out[i].op, want2[i]);
    cr_assert_eq(out[7].shared_prev, 40);
    cr_assert_eq(out[8].shared_prev, 40);
    cr_assert_eq(out[7].job, 6);
    /* nothing ready: empty order */
    for (int i = 0; i < nc; i++) cr_assert_eq(ptree_set_sched(pt, 5, calls[i].op, 0, 3, 1, false), 0);
    cr_assert_eq(ptree_set_sched(pt, 6, 0, 0, 0, 1, false), 0);
    cr_assert_eq(ptree_order(pt, out, 16), 0);
    ptree_destroy(&pt);
}

Test(ptree, steps_to_execution_priority) {
    ptree_t *pt = ptree_new(NULL, ROOT, BS);
    int32_t p[100];
    run(p, 1, 64);
    run(p + 64, 500, 20);
    cr_assert_eq(ptree_add_op(pt, 1, 1, 0, p, 84, 84, 4), 0);
    run(p + 64, 600, 20);
    cr_assert_eq(ptree_add_op(pt, 1, 2, 0, p, 84, 84, 4), 0);
    run(p + 48, 700, 40);
    cr_assert_eq(ptree_add_op(pt, 1, 3, 0, p, 88, 88, 4), 0);
    cr_assert_eq(ptree_set_sched(pt, 1, 1, 0, 500, 10, false), 0);
    cr_assert_eq(ptree_set_sched(pt, 1, 2, 0, 300, 10, false), 0);
    cr_assert_eq(ptree_set_sched(pt, 1, 3, 0, 900, 10, false), 0);
    const ptree_prefix *sp;
    int ne = ptree_shared_prefixes(pt, 2, &sp);
    cr_assert_eq(ne, 2);
    cr_assert_eq(sp[0].n_tokens, 48); /* [1..49) shared by 3 */
    cr_assert_eq(sp[0].sharers, 3);
    cr_assert_eq(sp[0].steps, 300);
    cr_assert_eq(sp[1].n_tokens, 64); /* [1..65) shared by calls 1 and 2 */
    cr_assert_eq(sp[1].sharers, 2);
    cr_assert_eq(sp[1].steps, 300);
    cr_assert_eq(ptree_set_sched(pt, 1, 3, 0, 0, 10, true), 0);
    ne = ptree_shared_prefixes(pt, 2, &sp);
    cr_assert_eq(sp[0].steps, 0);
    cr_assert_eq(sp[0].ready, 1);
    cr_assert_eq(sp[1].steps, 300);
    cr_assert_eq(sp[1].ready, 0);
    ptree_match_info mi;
    run(p, 1, 64);
    run(p + 64, 600, 20);
    cr_assert_eq(ptree_match(pt, p, 70, &mi), 0);
    cr_assert_eq(mi.matched, 70);
    cr_assert_eq(mi.sharers, 1);
    cr_assert_eq(mi.steps, 300);
    cr_assert_eq(ptree_match(pt, p, 60, &mi), 0);
    cr_assert_eq(mi.sharers, 2);
    cr_assert_eq(ptree_match(pt, p, 20, &mi), 0);
    cr_assert_eq(mi.sharers, 3);
    cr_assert_eq(mi.steps, 0);
    int32_t other[3] = {9999, 1, 2};
    cr_assert_eq(ptree_match(pt, other, 3, &mi), 0);
    cr_assert_eq(mi.matched, 0);
    cr_assert_eq(mi.sharers, 3);
    ptree_destroy(&pt);
}

/* ------------------------------------------------------- critical paths */

static const char *CHAINS =
    "{\"inputs\":[{\"name\":\"doc\"}],\"ops\":["
    "{\"id\":\"short\",\"type\":\"llm\",\"prompt\":\"{{input.doc}} Summarize briefly:\",\"max_tokens\":16},"
    "{\"id\":\"c1\",\"type\":\"llm\",\"prompt\":\"{{input.doc}} Step one:\",\"max_tokens\":64},"
    "{\"id\":\"c2\",\"type\":\"llm\",\"prompt\":\"Step two after {{op.c1}}\",\"max_tokens\":64},"
    "{\"id\":\"c3\",\"type\":\"llm\",\"prompt\":\"Step three after {{op.c2}}\",\"max_tokens\":64},"
    "{\"id\":\"final\",\"type\":\"join\",\"parts\":\"{{op.short}} {{op.c3}}\"}"
    "],\"output\":\"final\"}";

Test(ptree, critical_path_picks_long_chain_first) {
    wf_t *wf = parse_str(CHAINS);
    int s = wf_find(wf, "short"), c1 = wf_find(wf, "c1"), c2 = wf_find(wf, "c2"), c3 = wf_find(wf, "c3"),
        fin = wf_find(wf, "final");
    int64_t cost[5], cp[5], start[5];
    cost[s] = ptree_llm_cost(100, 0, 16);
    cost[c1] = ptree_llm_cost(100, 0, 64);
    cost[c2] = ptree_llm_cost(80, 0, 64);
    cost[c3] = ptree_llm_cost(80, 0, 64);
    cost[fin] = 0;
    cr_assert_eq(cost[c1], 100 + 64 * 65 / 2);
    cr_assert_eq(ptree_llm_cost(100, 100, 0), 1); /* the last prompt token is always computed */
    cr_assert_eq(ptree_critical_path(wf, cost, cp, start), 0, "%s", he_msg());
    cr_assert_eq(cp[c1], cost[c1] + cost[c2] + cost[c3]);
    cr_assert_eq(cp[c3], cost[c3]);
    cr_assert_eq(cp[s], cost[s]);
    cr_assert_eq(cp[fin], 0);
    cr_assert_eq(start[c3], cost[c1] + cost[c2]);
    cr_assert_eq(start[fin], cost[c1] + cost[c2] + cost[c3]);
    cr_assert_eq(start[s], 0);

    /* both roots ready, sharing the document prefix: the long chain goes first
     * even though the short call was added first */
    ptree_t *pt = ptree_new(NULL, ROOT, BS);
    int32_t p[60];
    run(p, 1, 50);
    p[50] = 900;
    cr_assert_eq(ptree_add_op(pt, 1, s, 0, p, 51, 100, 16), 0);
    p[50] = 901;
    cr_assert_eq(ptree_add_op(pt, 1, c1, 0, p, 51, 100, 64), 0);
    cr_assert_eq(ptree_set_sched(pt, 1, s, 0, start[s], cp[s], true), 0);
    cr_assert_eq(ptree_set_sched(pt, 1, c1, 0, start[c1], cp[c1], true), 0);
    ptree_slot out[2];
    cr_assert_eq(ptree_order(pt, out, 2), 2);
    cr_assert_eq(out[0].op, c1);
    cr_assert_eq(out[1].op, s);
    cr_assert_eq(out[1].shared_prev, 50);
    ptree_destroy(&pt);
    int64_t neg[5] = {1, 1, -1, 1, 1};
    cr_assert_eq(ptree_critical_path(wf, neg, cp, NULL), HE_EINVAL);
    wf_destroy(&wf);
}

Test(ptree, critical_path_through_loop_and_map) {
    wf_t *wf = parse_file("examples/refine_loop.json");
    int fd = wf_find(wf, "first_draft"), lp = wf_find(wf, "refine"), rv = wf_find(wf, "revise"),
        cq = wf_find(wf, "critique");
    cr_assert(fd >= 0 && lp >= 0 && rv >= 0 && cq >= 0);
    int64_t cost[4] = {0}, cp[4], start[4];
    cost[fd] = 1000;
    cost[lp] = 5;
    cost[rv] = 300;
    cost[cq] = 200;
    cr_assert_eq(ptree_critical_path(wf, cost, cp, start), 0, "%s", he_msg());
    int64_t body = 300 + 200, eff_loop = 5 + 3 * body;
    cr_assert_eq(cp[fd], 1000 + eff_loop);
    cr_assert_eq(cp[lp], eff_loop);
    cr_assert_eq(cp[rv], body + 2 * body);
    cr_assert_eq(cp[cq], 200 + 2 * body);
    cr_assert_eq(start[lp], 1000);
    cr_assert_eq(start[rv], 1000 + 5);
    cr_assert_eq(start[cq], 1000 + 5 + 300);
    wf_destroy(&wf);

    static const char *MAP =
        "{\"inputs\":[{\"name\":\"list\"}],\"ops\":["
        "{\"id\":\"items\",\"type\":\"llm\",\"prompt\":\"List: {{input.list}}\"},"
        "{\"id\":\"each\",\"type\":\"map\",\"over\":\"op.items\",\"body\":"
        "{\"id\":\"one\",\"type\":\"llm\",\"prompt\":\"Do {{item}}\"}},"
        "{\"id\":\"reduce\",\"type\":\"llm\",\"prompt\":\"All: {{op.each}}\"}"
        "],\"output\":\"reduce\"}";
    wf = parse_str(MAP);
    int it = wf_find(wf, "items"), ea = wf_find(wf, "each"), on = wf_find(wf, "one"), re = wf_find(wf, "reduce");
    int64_t c2[4], cp2[4], st2[4];
    c2[it] = 10;
    c2[ea] = 1;
    c2[on] = 40;
    c2[re] = 7;
    cr_assert_eq(ptree_critical_path(wf, c2, cp2, st2), 0, "%s", he_msg());
    cr_assert_eq(cp2[it], 10 + 41 + 7);
    cr_assert_eq(cp2[on], 40 + 7);
    cr_assert_eq(st2[on], 11);
    cr_assert_eq(st2[re], 51);
    wf_destroy(&wf);
}

/* ------------------------------------------------------- arguments */

Test(ptree, bad_arguments) {
    cr_assert_null(ptree_new(NULL, ROOT, 0));
    ptree_t *pt = ptree_new(NULL, ROOT, BS);
    cr_assert_eq(ptree_block_size(pt), BS);
    cr_assert_eq(ptree_root_hash(pt), ROOT);
    int32_t p[4] = {1, 2, 3, 4};
    cr_assert_eq(ptree_add_op(pt, 1, 1, 0, NULL, 3, 3, 1), HE_EINVAL);
    cr_assert_eq(ptree_add_op(pt, 1, 1, 0, p, -1, 3, 1), HE_EINVAL);
    cr_assert_eq(ptree_add_op(pt, 1, 1, 0, p, 4, 3, 1), 0);
    cr_assert_eq(ptree_add_op(pt, 1, 1, 0, p, 4, 3, 1), HE_EINVAL); /* duplicate */
    cr_assert_eq(ptree_add_op(pt, 1, 1, 1, p, 4, 3, 1), 0);         /* another item */
    cr_assert_eq(ptree_add_op(pt, 2, 0, 0, NULL, 0, 3, 1), 0);      /* empty static prefix */
    cr_assert_eq(ptree_set_sched(pt, 1, 1, 0, -1, 0, true), HE_EINVAL);
    cr_assert_eq(ptree_set_sched(pt, 9, 1, 0, 0, 0, true), HE_ENOTFOUND);
    cr_assert_eq(ptree_set_prefix(pt, 9, 1, 0, p, 2), HE_ENOTFOUND);
    cr_assert_eq(ptree_remove_op(pt, 9, 9, 9), HE_ENOTFOUND);
    const ptree_prefix *sp;
    cr_assert_eq(ptree_shared_prefixes(pt, 0, &sp), HE_EINVAL);
    cr_assert_eq(ptree_shared_prefixes(pt, 2, &sp), 0); /* 4 tokens: no full block */
    cr_assert_eq(ptree_order(pt, NULL, 1), HE_EINVAL);
    cr_assert_eq(ptree_order(pt, NULL, 0), 0);
    ptree_match_info mi;
    cr_assert_eq(ptree_match(pt, NULL, 2, &mi), HE_EINVAL);
    cr_assert_eq(ptree_match(pt, p, 4, &mi), 0);
    cr_assert_eq(mi.matched, 4);
    cr_assert_eq(mi.sharers, 2);
    int32_t *ids;
    int n;
    bool complete;
    wf_tmpl t = {0};
    cr_assert_eq(ptree_tmpl_prefix(pt, &t, NULL, NULL, &ids, &n, &complete), HE_EINVAL); /* no tokenizer */
    ptree_stats_t st;
    ptree_stats(pt, &st);
    cr_assert_eq(st.calls, 3);
    cr_assert_eq(st.prefix_tokens, 8);
    cr_assert_eq(st.tree_tokens, 4);
    ptree_destroy(&pt);
    ptree_destroy(NULL);
}

Test(ptree, static_text_stops_at_first_unknown) {
    wf_t *wf = parse_str(FANOUT);
    const char *in[1] = {"DOC"};
    vals v = {.wf = wf, .inputs = in};
    char *text;
    size_t len;
    bool complete;
    cr_assert_eq(ptree_static_text(&wf->ops[1]->llm.prompt, value_of, &v, &text, &len, &complete), 0);
    cr_assert_not(complete);
    cr_assert_str_eq(text, "Read the notes below.\nDOC\n\nThe plan:\n");
    cr_assert_eq(len, strlen(text));
    free(text);
    cr_assert_eq(ptree_static_text(&wf->ops[0]->llm.prompt, value_of, &v, &text, &len, &complete), 0);
    cr_assert(complete);
    cr_assert_str_eq(text, "Read the notes below.\nDOC\n\nWrite a plan in three steps.\nPlan:\n");
    free(text);
    /* no value function: stops at the first placeholder */
    cr_assert_eq(ptree_static_text(&wf->ops[0]->llm.prompt, NULL, NULL, &text, &len, &complete), 0);
    cr_assert_not(complete);
    cr_assert_str_eq(text, "Read the notes below.\n");
    free(text);
    wf_destroy(&wf);
}

/* ptree_match's sharers and min steps against brute force while calls come,
 * go and change steps between matches (each node caches its subtree's min
 * steps; every change must reach the caches above it). */
static void brute_match(const call *c, const int64_t *steps, int n, const int32_t *q, int matched, int32_t *sharers,
                        int64_t *min) {
    *sharers = 0;
    *min = INT64_MAX;
    for (int i = 0; i < n; i++) {
        if (!c[i].live || c[i].n < matched || memcmp(c[i].t, q, (size_t)matched * sizeof *q)) continue;
        (*sharers)++;
        if (steps[i] < *min) *min = steps[i];
    }
}

Test(ptree, match_steps_follow_changes_brute_force) {
    enum { N = 400, ROUNDS = 3000 };
    rng_state = 7;
    call *c = calloc(N, sizeof *c);
    int64_t *steps = calloc(N, sizeof *steps);
    make_calls(c, N);
    ptree_t *pt = ptree_new(NULL, ROOT, BS);
    for (int i = 0; i < N; i++) {
        if (rnd() % 2) { /* half start out of the tree */
            c[i].live = false;
            continue;
        }
        cr_assert_eq(ptree_add_op(pt, 1, i, 0, c[i].t, c[i].n, c[i].n, 8), 0);
    }
    for (int r = 0; r < ROUNDS; r++) {
        int i = (int)(rnd() % N);
        switch (rnd() % 4) {
        case 0: /* new steps */
            if (c[i].live) {
                steps[i] = (int64_t)(rnd() % 1000);
                cr_assert_eq(ptree_set_sched(pt, 1, i, 0, steps[i], 10, rnd() % 2), 0);
            }
            break;
        case 1: /* comes or goes */
            if (c[i].live) {
                cr_assert_eq(ptree_remove_op(pt, 1, i, 0), 0);
                c[i].live = false;
            } else {
                cr_assert_eq(ptree_add_op(pt, 1, i, 0, c[i].t, c[i].n, c[i].n, 8), 0);
                c[i].live = true;
                steps[i] = 0;
            }
            break;
        default: { /* a match: a call's prefix cut somewhere, sometimes with a foreign tail */
            int len = 1 + (int)(rnd() % (uint32_t)c[i].n);
            int32_t *q = malloc((size_t)(len + 4) * sizeof *q);
            memcpy(q, c[i].t, (size_t)len * sizeof *q);
            int ql = len;
            if (rnd() % 2)
                for (int k = 0; k < 4; k++) q[ql++] = 100 + (int32_t)k;
            ptree_match_info mi;
            cr_assert_eq(ptree_match(pt, q, ql, &mi), 0);
            int best = 0;
            for (int k = 0; k < N; k++)
                if (c[k].live) {
                    int l = lcp(c[k].t, c[k].n, q, ql);
                    if (l > best) best = l;
                }
            cr_assert_eq(mi.matched, best, "round %d", r);
            int32_t sh;
            int64_t mn;
            brute_match(c, steps, N, q, mi.matched, &sh, &mn);
            cr_assert_eq(mi.sharers, sh, "round %d: sharers %d, brute force %d", r, mi.sharers, sh);
            if (sh) cr_assert_eq(mi.steps, mn, "round %d: steps %lld, brute force %lld", r, (long long)mi.steps,
                                 (long long)mn);
            free(q);
        }
        }
    }
    for (int i = 0; i < N; i++) free(c[i].t);
    free(c);
    free(steps);
    ptree_destroy(&pt);
}

/* Match stamps (ptree_match_stamp / ptree_stamp_valid): random calls are
 * added, removed, re-prefixed and re-scheduled over a small alphabet (so
 * edges split and merge all the time); after every change each probe whose
 * stamp is still valid must match exactly as it did when stamped, and a probe
 * whose stamp went stale is matched again. Checks that stamps do go stale
 * and do stay valid, so the test cannot pass by never trusting one. */
Test(ptree, match_stamps_stay_valid_only_while_the_answer_holds) {
    ptree_t *pt = ptree_new(NULL, ROOT, 4);
    cr_assert_not_null(pt);
    rng_state = 777;
    enum { NP = 24, LEN = 40, NCALL = 48 };
    int32_t probe[NP][LEN];
    int plen[NP];
    ptree_match_info pm[NP];
    ptree_stamp ps[NP];
    for (int p = 0; p < NP; p++) {
        plen[p] = 4 + (int)(rnd() % (LEN - 4));
        for (int k = 0; k < plen[p]; k++) probe[p][k] = (int32_t)(rnd() % 3);
        memset(&ps[p], 0, sizeof ps[p]);
    }
    bool live[NCALL] = {false};
    long valid_hits = 0, stale = 0;
    for (int step = 0; step < 4000; step++) {
        int c = (int)(rnd() % NCALL), act = (int)(rnd() % 4);
        int32_t pre[LEN];
        int n = 1 + (int)(rnd() % (LEN - 1));
        /* calls share a probe's leading tokens now and then, so matches run deep */
        const int32_t *src = probe[rnd() % NP];
        int keep = (int)(rnd() % (n + 1));
        for (int k = 0; k < n; k++) pre[k] = k < keep && k < LEN ? src[k] : (int32_t)(rnd() % 3);
        if (!live[c] || act == 0) {
            if (live[c]) cr_assert_eq(ptree_remove_op(pt, 1, c, 0), 0);
            cr_assert_eq(ptree_add_op(pt, 1, c, 0, pre, n, n, 4), 0);
            live[c] = true;
        } else if (act == 1) {
            cr_assert_eq(ptree_remove_op(pt, 1, c, 0), 0);
            live[c] = false;
        } else if (act == 2) {
            cr_assert_eq(ptree_set_prefix(pt, 1, c, 0, pre, n), 0);
        } else {
            cr_assert_eq(ptree_set_sched(pt, 1, c, 0, (int64_t)(rnd() % 50), (int64_t)(rnd() % 100), rnd() % 2), 0);
        }
        for (int p = 0; p < NP; p++) {
            ptree_match_info now;
            cr_assert_eq(ptree_match(pt, probe[p], plen[p], &now), 0);
            if (ptree_stamp_valid(pt, &ps[p])) {
                valid_hits++;
                cr_assert_eq(now.matched, pm[p].matched, "step %d probe %d: a valid stamp, matched %d != %d", step, p,
                             now.matched, pm[p].matched);
                cr_assert_eq(now.sharers, pm[p].sharers, "step %d probe %d: a valid stamp, sharers %d != %d", step,
                             p, now.sharers, pm[p].sharers);
                cr_assert_eq(now.steps, pm[p].steps, "step %d probe %d: a valid stamp, steps differ", step, p);
            } else {
                stale++;
                cr_assert_eq(ptree_match_stamp(pt, probe[p], plen[p], &pm[p], &ps[p]), 0);
                cr_assert(ptree_stamp_valid(pt, &ps[p]), "a fresh stamp is valid");
            }
        }
    }
    cr_assert_gt(valid_hits, 1000, "stamps stayed valid %ld times", valid_hits);
    cr_assert_gt(stale, 1000, "stamps went stale %ld times", stale);
    ptree_destroy(&pt);
}

/* ptree_shared_prefixes keeps its answer while the tree's generation holds
 * (opt_warm asks again on events that change nothing in the tree) and
 * answers afresh after any change: here readiness, steps and a removal. */
Test(ptree, shared_prefixes_answer_again_only_while_nothing_changed) {
    ptree_t *pt = ptree_new(NULL, ROOT, BS);
    int32_t t[3][3 * BS];
    for (int i = 0; i < 3; i++) {
        run(t[i], 100, 2 * BS); /* two shared blocks, then one of their own */
        run(t[i] + 2 * BS, 1000 * (i + 1), BS);
        cr_assert_eq(ptree_add_op(pt, 1, i, 0, t[i], 3 * BS, 3 * BS, 8), 0);
    }
    const ptree_prefix *sp, *again;
    int n = ptree_shared_prefixes(pt, 2, &sp);
    cr_assert_eq(n, 1);
    cr_assert_eq(sp[0].n_blocks, 2);
    cr_assert_eq(sp[0].sharers, 3);
    cr_assert_eq(sp[0].ready, 0);
    cr_assert_eq(ptree_shared_prefixes(pt, 2, &again), 1);
    cr_assert_eq(again, sp, "unchanged tree: the same answer");
    cr_assert_eq(ptree_set_sched(pt, 1, 1, 0, 0, 5, true), 0);
    cr_assert_eq(ptree_shared_prefixes(pt, 2, &sp), 1);
    cr_assert_eq(sp[0].ready, 1, "readiness moved: answered afresh");
    cr_assert_eq(sp[0].steps, 0);
    cr_assert_eq(ptree_set_sched(pt, 1, 1, 0, 7, 5, false), 0);
    cr_assert_eq(ptree_shared_prefixes(pt, 2, &sp), 1);
    cr_assert_eq(sp[0].ready, 0);
    cr_assert_eq(ptree_shared_prefixes(pt, 3, &sp), 1, "another min_sharers: answered afresh");
    cr_assert_eq(ptree_remove_op(pt, 1, 2, 0), 0);
    cr_assert_eq(ptree_shared_prefixes(pt, 3, &sp), 0, "two sharers left");
    cr_assert_eq(ptree_shared_prefixes(pt, 2, &sp), 1);
    cr_assert_eq(sp[0].sharers, 2);
    ptree_destroy(&pt);
}
