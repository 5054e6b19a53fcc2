/* Unit tests for coordinator/plan (pruning, common subexpressions within a
 * job and across a batch, signatures, maps and loops) and coordinator/rcache
 * (LRU by bytes, TTL, the cacheable rule, keys and counters). */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "herr.h"
#include "plan.h"
#include "rcache.h"
#include "workflow.h"

/* ------------------------------------------------------------ helpers */

static wf_t *wf_of(const char *json) {
    wf_t *wf = NULL;
    int rc = wf_parse_json(json, strlen(json), &wf);
    cr_assert_eq(rc, 0, "parse: %s", he_msg());
    return wf;
}

static int op_ix(const wf_t *wf, const char *id) {
    int i = wf_find(wf, id);
    cr_assert(i >= 0, "no op '%s'", id);
    return i;
}

/* Node of op `id` in batch job `job` (-1 if pruned). */
static int nd(const plan_t *p, const wf_t *wf, size_t job, const char *id) {
    return plan_node_of(p, job, op_ix(wf, id));
}

static bool has_dep(const plan_t *p, int node, int dep) {
    const plan_node *n = plan_node_at(p, (size_t)node);
    for (size_t k = 0; k < n->n_deps; k++)
        if (n->deps[k] == dep) return true;
    return false;
}

/* Structural invariants every plan must satisfy. */
static void check_plan(const plan_t *p) {
    plan_stats st;
    plan_get_stats(p, &st);
    cr_assert_eq(st.ops_in, st.ops_pruned + st.ops_merged + st.nodes_out, "ops accounted for");
    cr_assert_eq(st.nodes_out, plan_n_nodes(p));
    size_t members = 0;
    for (size_t i = 0; i < plan_n_nodes(p); i++) {
        const plan_node *n = plan_node_at(p, i);
        cr_assert(n->parent < (int)i, "parent before child");
        for (size_t k = 0; k < n->n_deps; k++) {
            cr_assert(n->deps[k] >= 0 && n->deps[k] < (int)i, "deps before node %zu", i);
            if (k) cr_assert(n->deps[k - 1] < n->deps[k], "deps ascending, unique");
            cr_assert_eq(plan_node_at(p, (size_t)n->deps[k])->parent, n->parent, "deps in one scope");
        }
        cr_assert(n->n_members >= 1);
        cr_assert_eq(n->members[0].job, n->rep.job);
        cr_assert_eq(n->members[0].op, n->rep.op);
        for (size_t m = 0; m < n->n_members; m++)
            cr_assert_eq(plan_node_of(p, (size_t)n->members[m].job, n->members[m].op), (int)i);
        members += n->n_members;
    }
    cr_assert_eq(members, st.ops_in - st.ops_pruned);
}

static plan_t *plan1(const wf_t *wf, const char *name, const char *value, unsigned flags) {
    const char *names[1] = {name}, *vals[1] = {value};
    plan_t *p = NULL;
    plan_stats st;
    int rc = plan_build(wf, names, vals, name ? 1 : 0, flags, &p, &st);
    cr_assert_eq(rc, 0, "plan: %s", he_msg());
    check_plan(p);
    return p;
}

/* ------------------------------------------------------------- pruning */

static const char *PRUNE_WF =
    "{\"inputs\":[\"x\"],\"ops\":["
    "{\"id\":\"a\",\"type\":\"llm\",\"prompt\":\"A {{input.x}}\"},"
    "{\"id\":\"b\",\"type\":\"llm\",\"prompt\":\"B {{input.x}}\"},"
    "{\"id\":\"c\",\"type\":\"llm\",\"prompt\":\"C\"},"
    "{\"id\":\"d\",\"type\":\"llm\",\"prompt\":\"D {{op.c}}\"},"
    "{\"id\":\"out\",\"type\":\"llm\",\"prompt\":\"O {{op.a}}\"},"
    "{\"id\":\"late\",\"type\":\"join\",\"parts\":\"{{op.d}} {{op.b}}\"}"
    "],\"output\":\"out\"}";

Test(plan, prune_dead_ops_keep_output_deps) {
    wf_t *wf = wf_of(PRUNE_WF);
    plan_t *p = plan1(wf, "x", "v", 0);
    plan_stats st;
    plan_get_stats(p, &st);
    cr_expect_eq(st.ops_in, 6);
    cr_expect_eq(st.ops_pruned, 4);
    cr_expect_eq(st.nodes_out, 2);
    cr_expect_eq(nd(p, wf, 0, "b"), -1);
    cr_expect_eq(nd(p, wf, 0, "c"), -1);
    cr_expect_eq(nd(p, wf, 0, "d"), -1);
    cr_expect_eq(nd(p, wf, 0, "late"), -1);
    int a = nd(p, wf, 0, "a"), out = nd(p, wf, 0, "out");
    cr_assert(a >= 0 && out >= 0 && a < out);
    cr_expect(has_dep(p, out, a));
    cr_expect_eq(plan_sig_of(p, 0, op_ix(wf, "b")), 0);
    plan_destroy(&p);
    cr_expect_null(p);
    plan_destroy(&p); /* NULL is fine */
    wf_destroy(&wf);
}

Test(plan, keep_all_and_keep_ids) {
    wf_t *wf = wf_of(PRUNE_WF);
    plan_t *p = plan1(wf, "x", "v", PLAN_KEEP_ALL);
    cr_expect_eq(plan_n_nodes(p), 6);
    int late = nd(p, wf, 0, "late");
    cr_expect(has_dep(p, late, nd(p, wf, 0, "d")));
    cr_expect(has_dep(p, late, nd(p, wf, 0, "b")));
    plan_destroy(&p);

    const char *names[] = {"x"}, *vals[] = {"v"}, *keep[] = {"d"};
    plan_job j = {.wf = wf, .input_names = names, .input_values = vals, .n_inputs = 1, .keep = keep, .n_keep = 1};
    cr_assert_eq(plan_build_batch(&j, 1, 0, &p, NULL), 0, "%s", he_msg());
    check_plan(p);
    cr_expect_eq(plan_n_nodes(p), 4, "a, out, d and what d needs (c)");
    cr_expect(nd(p, wf, 0, "c") >= 0);
    cr_expect_eq(nd(p, wf, 0, "b"), -1);
    plan_destroy(&p);

    const char *bad[] = {"nope"};
    j.keep = bad;
    cr_expect_eq(plan_build_batch(&j, 1, 0, &p, NULL), HE_EINVAL);
    cr_expect_null(p);
    wf_destroy(&wf);
}

Test(plan, side_effect_tools_kept_unless_asked) {
    wf_t *wf = wf_of("{\"ops\":["
                     "{\"id\":\"post\",\"type\":\"tool\",\"method\":\"POST\",\"url\":\"http://h/t\",\"body\":\"x\"},"
                     "{\"id\":\"get\",\"type\":\"tool\",\"method\":\"GET\",\"url\":\"http://h/g\"},"
                     "{\"id\":\"out\",\"type\":\"llm\",\"prompt\":\"hi\"}],\"output\":\"out\"}");
    plan_t *p = plan1(wf, NULL, NULL, 0);
    cr_expect(nd(p, wf, 0, "post") >= 0, "a POST nobody reads still runs");
    cr_expect_eq(nd(p, wf, 0, "get"), -1, "a GET nobody reads is pruned");
    plan_destroy(&p);
    p = plan1(wf, NULL, NULL, PLAN_PRUNE_EFFECTS);
    cr_expect_eq(nd(p, wf, 0, "post"), -1);
    cr_expect_eq(plan_n_nodes(p), 1);
    plan_destroy(&p);
    wf_destroy(&wf);
}

Test(plan, errors) {
    wf_t *wf = wf_of(PRUNE_WF);
    plan_t *p = NULL;
    cr_expect_eq(plan_build(wf, NULL, NULL, 0, 0, &p, NULL), HE_EINVAL, "required input missing");
    cr_expect(strstr(he_msg(), "'x'"));
    const char *names[] = {"x", "y"}, *vals[] = {"1", "2"};
    cr_expect_eq(plan_build(wf, names, vals, 2, 0, &p, NULL), HE_EINVAL, "undeclared input");
    cr_expect(strstr(he_msg(), "'y'"));
    cr_expect_null(p);
    cr_expect_eq(plan_build_batch(NULL, 0, 0, &p, NULL), HE_EINVAL);
    wf_t *raw = wf_new();
    cr_expect_eq(plan_build(raw, NULL, NULL, 0, 0, &p, NULL), HE_EINVAL, "not validated");
    wf_destroy(&raw);
    wf_destroy(&wf);
}

/* -------------------------------------------------- CSE within a job */

/* Two llm ops a1/a2 with the given extra fields, each read by b1/b2, joined. */
static wf_t *pair_wf(const char *f1, const char *f2, const char *p1, const char *p2) {
    char buf[2048];
    snprintf(buf, sizeof buf,
             "{\"inputs\":[\"x\",{\"name\":\"y\",\"default\":\"Y\"}],\"ops\":["
             "{\"id\":\"a1\",\"type\":\"llm\",\"prompt\":\"%s\"%s},"
             "{\"id\":\"a2\",\"type\":\"llm\",\"prompt\":\"%s\"%s},"
             "{\"id\":\"b1\",\"type\":\"llm\",\"prompt\":\"Q {{op.a1}}\"},"
             "{\"id\":\"b2\",\"type\":\"llm\",\"prompt\":\"Q {{op.a2}}\"},"
             "{\"id\":\"c2\",\"type\":\"llm\",\"prompt\":\"R {{op.a2}}\"},"
             "{\"id\":\"out\",\"type\":\"join\",\"parts\":\"{{op.b1}}|{{op.b2}}|{{op.c2}}\"}"
             "],\"output\":\"out\"}",
             p1, f1, p2, f2);
    return wf_of(buf);
}

Test(plan, cse_identical_greedy_ops_merge) {
    wf_t *wf = pair_wf(",\"max_tokens\":32", ",\"max_tokens\":32", "P {{input.x}}", "P {{input.x}}");
    plan_t *p = plan1(wf, "x", "doc", 0);
    int a1 = nd(p, wf, 0, "a1"), a2 = nd(p, wf, 0, "a2");
    int b1 = nd(p, wf, 0, "b1"), b2 = nd(p, wf, 0, "b2"), c2 = nd(p, wf, 0, "c2");
    cr_expect_eq(a1, a2, "identical greedy ops share a node");
    cr_expect_eq(b1, b2, "and so do their identical consumers (Merkle)");
    cr_expect_neq(c2, b1);
    cr_expect(has_dep(p, c2, a1), "a merged op's dependents wait for the representative");
    const plan_node *n = plan_node_at(p, (size_t)a1);
    cr_expect_eq(n->n_members, 2);
    cr_expect_eq(n->rep.op, op_ix(wf, "a1"));
    cr_expect(n->deterministic);
    int out = nd(p, wf, 0, "out");
    cr_expect_eq(plan_node_at(p, (size_t)out)->n_deps, 2, "out waits for b and c2 once each");
    plan_stats st;
    plan_get_stats(p, &st);
    cr_expect_eq(st.ops_merged, 2);
    cr_expect_eq(st.nodes_out, 4);
    plan_destroy(&p);

    p = plan1(wf, "x", "doc", PLAN_NO_CSE);
    cr_expect_neq(nd(p, wf, 0, "a1"), nd(p, wf, 0, "a2"));
    cr_expect_eq(plan_n_nodes(p), 6);
    plan_destroy(&p);
    wf_destroy(&wf);
}

Test(plan, cse_differences_keep_ops_apart) {
    struct {
        const char *f1, *f2, *p1, *p2, *why;
        bool merged;
    } cases[] = {
        {",\"temperature\":0.7,\"seed\":7", ",\"temperature\":0.7,\"seed\":8", "P", "P", "seed differs", false},
        {",\"temperature\":0.7,\"seed\":7", ",\"temperature\":0.7,\"seed\":7", "P", "P", "same seed", true},
        {",\"temperature\":0.7,\"seed\":7", ",\"temperature\":0.8,\"seed\":7", "P", "P", "temperature", false},
        {"", ",\"temperature\":0.7,\"seed\":7", "P", "P", "greedy vs sampled", false},
        {",\"temperature\":0.7", ",\"temperature\":0.7", "P", "P", "sampled without seed", false},
        {"", "", "P {{input.x}}", "P {{input.y}}", "different input", false},
        {"", "", "P {{input.y}}", "P Y", "input value equals literal", true},
        {"", "", "P", "P ", "text", false},
        {",\"max_tokens\":8", ",\"max_tokens\":9", "P", "P", "max_tokens", false},
        {",\"stop\":[\"a\"]", ",\"stop\":[\"b\"]", "P", "P", "stop", false},
        {",\"model\":\"m1\"", ",\"model\":\"m2\"", "P", "P", "model", false},
        {",\"seed\":3", ",\"seed\":4", "P", "P", "greedy ignores the seed", true},
        {",\"top_k\":1,\"temperature\":0.9", "", "P", "P", "top_k 1 is greedy", true},
    };
    for (size_t k = 0; k < sizeof cases / sizeof *cases; k++) {
        wf_t *wf = pair_wf(cases[k].f1, cases[k].f2, cases[k].p1, cases[k].p2);
        plan_t *p = plan1(wf, "x", "X", 0);
        bool m = nd(p, wf, 0, "a1") == nd(p, wf, 0, "a2");
        cr_expect_eq(m, cases[k].merged, "case %zu (%s)", k, cases[k].why);
        cr_expect_eq(nd(p, wf, 0, "b1") == nd(p, wf, 0, "b2"), m, "case %zu: consumers follow", k);
        plan_destroy(&p);
        wf_destroy(&wf);
    }
    /* strict sampling: greedy ops differing only in seed stay apart */
    wf_t *wf = pair_wf(",\"seed\":3", ",\"seed\":4", "P", "P");
    plan_t *p = plan1(wf, "x", "X", PLAN_STRICT_SAMPLING);
    cr_expect_neq(nd(p, wf, 0, "a1"), nd(p, wf, 0, "a2"));
    plan_destroy(&p);
    wf_destroy(&wf);
}

Test(plan, nondeterministic_ops_not_merged_nor_marked) {
    wf_t *wf = pair_wf(",\"temperature\":1", ",\"temperature\":1", "P", "P");
    plan_t *p = plan1(wf, "x", "X", 0);
    int a1 = nd(p, wf, 0, "a1");
    cr_expect_not(plan_node_at(p, (size_t)a1)->deterministic);
    cr_expect(plan_node_at(p, (size_t)nd(p, wf, 0, "b1"))->deterministic);
    cr_expect_neq(plan_sig_of(p, 0, op_ix(wf, "a1")), plan_sig_of(p, 0, op_ix(wf, "a2")));
    plan_destroy(&p);
    wf_destroy(&wf);
}

Test(plan, tools_merge_only_get_with_flag) {
    wf_t *wf = wf_of("{\"ops\":["
                     "{\"id\":\"g1\",\"type\":\"tool\",\"url\":\"http://h/a\"},"
                     "{\"id\":\"g2\",\"type\":\"tool\",\"method\":\"get\",\"url\":\"http://h/a\"},"
                     "{\"id\":\"p1\",\"type\":\"tool\",\"method\":\"POST\",\"url\":\"http://h/a\"},"
                     "{\"id\":\"p2\",\"type\":\"tool\",\"method\":\"POST\",\"url\":\"http://h/a\"},"
                     "{\"id\":\"out\",\"type\":\"join\",\"parts\":\"{{op.g1}}{{op.g2}}{{op.p1}}{{op.p2}}\"}"
                     "],\"output\":\"out\"}");
    plan_t *p = plan1(wf, NULL, NULL, 0);
    cr_expect_neq(nd(p, wf, 0, "g1"), nd(p, wf, 0, "g2"), "tools never merge by default");
    plan_destroy(&p);
    p = plan1(wf, NULL, NULL, PLAN_MERGE_TOOL_GET);
    cr_expect_eq(nd(p, wf, 0, "g1"), nd(p, wf, 0, "g2"));
    cr_expect_neq(nd(p, wf, 0, "p1"), nd(p, wf, 0, "p2"), "POST never merges");
    plan_destroy(&p);
    wf_destroy(&wf);
}

/* ------------------------------------------------------------- batches */

static const char *CHAIN_WF =
    "{\"inputs\":[\"doc\"],\"ops\":["
    "{\"id\":\"s\",\"type\":\"llm\",\"prompt\":\"static instructions\"},"
    "{\"id\":\"e\",\"type\":\"llm\",\"prompt\":\"expand {{op.s}}\"},"
    "{\"id\":\"d\",\"type\":\"llm\",\"prompt\":\"read {{input.doc}}\"},"
    "{\"id\":\"out\",\"type\":\"llm\",\"prompt\":\"{{op.e}} + {{op.d}}\"}"
    "],\"output\":\"out\"}";

Test(plan, batch_same_inputs_fully_merged) {
    wf_t *wf = wf_of(CHAIN_WF);
    enum { N = 5 };
    const char *names[] = {"doc"}, *vals[] = {"the same"};
    plan_job jobs[N];
    for (int j = 0; j < N; j++)
        jobs[j] = (plan_job){.wf = wf, .input_names = names, .input_values = vals, .n_inputs = 1};
    plan_t *p = NULL;
    plan_stats st;
    cr_assert_eq(plan_build_batch(jobs, N, 0, &p, &st), 0, "%s", he_msg());
    check_plan(p);
    cr_expect_eq(st.jobs, N);
    cr_expect_eq(st.nodes_out, 4);
    cr_expect_eq(st.ops_merged, 4 * (N - 1));
    for (int j = 1; j < N; j++) cr_expect_eq(nd(p, wf, j, "out"), nd(p, wf, 0, "out"));
    cr_expect_eq(plan_node_at(p, (size_t)nd(p, wf, 0, "out"))->n_members, N);
    plan_destroy(&p);
    wf_destroy(&wf);
}

Test(plan, batch_different_inputs_share_input_free_parts) {
    wf_t *wf = wf_of(CHAIN_WF);
    enum { N = 4 };
    const char *names[] = {"doc"};
    const char *v[N][1] = {{"d0"}, {"d1"}, {"d2"}, {"d1"}};
    plan_job jobs[N];
    for (int j = 0; j < N; j++)
        jobs[j] = (plan_job){.wf = wf, .input_names = names, .input_values = v[j], .n_inputs = 1};
    plan_t *p = NULL;
    plan_stats st;
    cr_assert_eq(plan_build_batch(jobs, N, 0, &p, &st), 0, "%s", he_msg());
    check_plan(p);
    for (int j = 1; j < N; j++) {
        cr_expect_eq(nd(p, wf, j, "s"), nd(p, wf, 0, "s"));
        cr_expect_eq(nd(p, wf, j, "e"), nd(p, wf, 0, "e"));
    }
    cr_expect_neq(nd(p, wf, 1, "d"), nd(p, wf, 0, "d"));
    cr_expect_neq(nd(p, wf, 2, "d"), nd(p, wf, 1, "d"));
    cr_expect_eq(nd(p, wf, 3, "d"), nd(p, wf, 1, "d"), "jobs 1 and 3 have the same doc");
    cr_expect_eq(nd(p, wf, 3, "out"), nd(p, wf, 1, "out"));
    cr_expect_eq(st.nodes_out, 2 + 3 * 2, "s, e shared; d and out per distinct doc");
    cr_expect(has_dep(p, nd(p, wf, 2, "out"), nd(p, wf, 0, "e")), "job 2 reads the shared e");
    plan_destroy(&p);
    wf_destroy(&wf);
}

Test(plan, batch_of_different_workflows) {
    wf_t *w1 = wf_of(CHAIN_WF);
    wf_t *w2 = wf_of("{\"ops\":[{\"id\":\"other_name\",\"type\":\"llm\",\"prompt\":\"static instructions\","
                     "\"description\":\"ids and descriptions do not matter\"},"
                     "{\"id\":\"z\",\"type\":\"llm\",\"prompt\":\"Z {{op.other_name}}\"}]}");
    const char *names[] = {"doc"}, *vals[] = {"d"};
    plan_job jobs[2] = {{.wf = w1, .input_names = names, .input_values = vals, .n_inputs = 1}, {.wf = w2}};
    plan_t *p = NULL;
    cr_assert_eq(plan_build_batch(jobs, 2, 0, &p, NULL), 0, "%s", he_msg());
    check_plan(p);
    cr_expect_eq(nd(p, w2, 1, "other_name"), nd(p, w1, 0, "s"));
    cr_expect_neq(nd(p, w2, 1, "z"), nd(p, w1, 0, "e"));
    cr_expect_eq(plan_n_nodes(p), 5);
    plan_destroy(&p);
    wf_destroy(&w1);
    wf_destroy(&w2);
}

/* ------------------------------------------------------------- signatures */

Test(plan, signatures_stable) {
    wf_t *wf = wf_of("{\"inputs\":[\"x\"],\"ops\":[{\"id\":\"a\",\"type\":\"llm\",\"prompt\":\"Hello {{input.x}}\","
                     "\"max_tokens\":16}]}");
    plan_t *p = plan1(wf, "x", "world", 0);
    uint64_t s1 = plan_sig_of(p, 0, 0);
    plan_destroy(&p);
    p = plan1(wf, "x", "world", 0);
    cr_expect_eq(plan_sig_of(p, 0, 0), s1);
    /* the value fixed by the encoding in plan.c; a change here breaks every
     * signature recorded elsewhere (logs, caches keyed by it) */
    cr_expect_eq(s1, 0xa0c76ece0c6e6e69ULL, "signature is %#018llx", (unsigned long long)s1);
    plan_destroy(&p);
    p = plan1(wf, "x", "World", 0);
    cr_expect_neq(plan_sig_of(p, 0, 0), s1);
    plan_destroy(&p);
    wf_destroy(&wf);
}

/* ----------------------------------------------------------- map and loop */

static const char *MAPS_WF =
    "{\"inputs\":[\"list\",\"list2\"],\"ops\":["
    "{\"id\":\"src1\",\"type\":\"llm\",\"prompt\":\"list things\"},"
    "{\"id\":\"src2\",\"type\":\"llm\",\"prompt\":\"list things\"},"
    "{\"id\":\"ctx\",\"type\":\"llm\",\"prompt\":\"context\"},"
    "{\"id\":\"m1\",\"type\":\"map\",\"over\":\"input.list\",\"body\":{\"type\":\"llm\",\"prompt\":\"do {{item}} {{op.ctx}}\"}},"
    "{\"id\":\"m2\",\"type\":\"map\",\"over\":\"input.list\",\"body\":{\"type\":\"llm\",\"prompt\":\"do {{item}} {{op.ctx}}\"}},"
    "{\"id\":\"m3\",\"type\":\"map\",\"over\":\"input.list2\",\"body\":{\"type\":\"llm\",\"prompt\":\"do {{item}} {{op.ctx}}\"}},"
    "{\"id\":\"m4\",\"type\":\"map\",\"over\":\"input.list\",\"body\":{\"type\":\"llm\",\"prompt\":\"did {{item}} {{op.ctx}}\"}},"
    "{\"id\":\"m5\",\"type\":\"map\",\"over\":\"op.src1\",\"body\":{\"type\":\"llm\",\"prompt\":\"do {{item}}\"}},"
    "{\"id\":\"m6\",\"type\":\"map\",\"over\":\"op.src2\",\"body\":{\"type\":\"llm\",\"prompt\":\"do {{item}}\"}},"
    "{\"id\":\"m7\",\"type\":\"map\",\"over\":\"input.list\",\"max_width\":9,\"body\":{\"type\":\"llm\",\"prompt\":\"do {{item}} {{op.ctx}}\"}},"
    "{\"id\":\"out\",\"type\":\"join\",\"parts\":\"{{op.m1}}{{op.m2}}{{op.m3}}{{op.m4}}{{op.m5}}{{op.m6}}{{op.m7}}\"}"
    "],\"output\":\"out\"}";

Test(plan, maps_merge_only_with_same_source_and_body) {
    wf_t *wf = wf_of(MAPS_WF);
    const char *names[] = {"list", "list2"}, *vals[] = {"a\nb", "c\nd"};
    plan_t *p = NULL;
    cr_assert_eq(plan_build(wf, names, vals, 2, 0, &p, NULL), 0, "%s", he_msg());
    check_plan(p);
    int m1 = nd(p, wf, 0, "m1");
    cr_expect_eq(nd(p, wf, 0, "m2"), m1, "same list, same body");
    cr_expect_eq(nd(p, wf, 0, "m2.body"), nd(p, wf, 0, "m1.body"));
    cr_expect_eq(plan_node_at(p, (size_t)nd(p, wf, 0, "m1.body"))->parent, m1);
    cr_expect_neq(nd(p, wf, 0, "m3"), m1, "other list");
    cr_expect_neq(nd(p, wf, 0, "m3.body"), nd(p, wf, 0, "m1.body"), "bodies merge only with their maps");
    cr_expect_neq(nd(p, wf, 0, "m4"), m1, "other body");
    cr_expect_neq(nd(p, wf, 0, "m7"), m1, "other width");
    cr_expect_eq(nd(p, wf, 0, "m5"), nd(p, wf, 0, "m6"), "sources merged, so the maps merge");
    cr_expect(has_dep(p, m1, nd(p, wf, 0, "ctx")), "outer refs of the body are the map's deps");
    plan_destroy(&p);

    const char *same[] = {"a\nb", "a\nb"};
    cr_assert_eq(plan_build(wf, names, same, 2, 0, &p, NULL), 0, "%s", he_msg());
    cr_expect_eq(nd(p, wf, 0, "m3"), nd(p, wf, 0, "m1"), "lists with equal values are the same source");
    plan_destroy(&p);
    wf_destroy(&wf);
}

Test(plan, map_with_sampled_body_not_merged) {
    wf_t *wf = wf_of("{\"inputs\":[\"l\"],\"ops\":["
                     "{\"id\":\"m1\",\"type\":\"map\",\"over\":\"input.l\",\"body\":{\"type\":\"llm\",\"prompt\":\"{{item}}\",\"temperature\":1}},"
                     "{\"id\":\"m2\",\"type\":\"map\",\"over\":\"input.l\",\"body\":{\"type\":\"llm\",\"prompt\":\"{{item}}\",\"temperature\":1}},"
                     "{\"id\":\"out\",\"type\":\"join\",\"parts\":\"{{op.m1}}{{op.m2}}\"}],\"output\":\"out\"}");
    plan_t *p = plan1(wf, "l", "a\nb", 0);
    cr_expect_neq(nd(p, wf, 0, "m1"), nd(p, wf, 0, "m2"));
    cr_expect_not(plan_node_at(p, (size_t)nd(p, wf, 0, "m1"))->deterministic);
    cr_expect_eq(plan_n_nodes(p), 5);
    plan_destroy(&p);
    wf_destroy(&wf);
}

static wf_t *loops_wf(const char *l2_extra, const char *l2_prompt) {
    char buf[4096];
    snprintf(buf, sizeof buf,
             "{\"inputs\":[\"t\"],\"ops\":["
             "{\"id\":\"draft\",\"type\":\"llm\",\"prompt\":\"draft {{input.t}}\"},"
             "{\"id\":\"l1\",\"type\":\"loop\",\"max_rounds\":3,\"until_contains\":\"DONE\",\"output\":\"c1\",\"body\":["
             "{\"id\":\"r1\",\"type\":\"llm\",\"prompt\":\"revise {{op.draft}} {{prev}}\"},"
             "{\"id\":\"dead1\",\"type\":\"llm\",\"prompt\":\"unused {{op.r1}}\"},"
             "{\"id\":\"c1\",\"type\":\"llm\",\"prompt\":\"critique {{op.r1}}\"}]},"
             "{\"id\":\"l2\",\"type\":\"loop\",\"until_contains\":\"DONE\",\"output\":\"c2\"%s,\"body\":["
             "{\"id\":\"r2\",\"type\":\"llm\",\"prompt\":\"%s\"},"
             "{\"id\":\"c2\",\"type\":\"llm\",\"prompt\":\"critique {{op.r2}}\"}]},"
             "{\"id\":\"out\",\"type\":\"join\",\"parts\":\"{{op.l1}}/{{op.l2}}\"}],\"output\":\"out\"}",
             l2_extra, l2_prompt);
    return wf_of(buf);
}

Test(plan, loops) {
    wf_t *wf = loops_wf(",\"max_rounds\":3", "revise {{op.draft}} {{prev}}");
    plan_t *p = plan1(wf, "t", "x", 0);
    cr_expect_eq(nd(p, wf, 0, "dead1"), -1, "a body op the loop output does not need is pruned");
    int l1 = nd(p, wf, 0, "l1");
    cr_expect_eq(nd(p, wf, 0, "l2"), l1, "identical loops merge");
    cr_expect_eq(nd(p, wf, 0, "c2"), nd(p, wf, 0, "c1"));
    cr_expect_eq(plan_node_at(p, (size_t)nd(p, wf, 0, "r1"))->parent, l1);
    cr_expect(has_dep(p, nd(p, wf, 0, "c1"), nd(p, wf, 0, "r1")));
    cr_expect(has_dep(p, l1, nd(p, wf, 0, "draft")));
    plan_destroy(&p);

    p = plan1(wf, "t", "x", PLAN_KEEP_ALL);
    cr_expect(nd(p, wf, 0, "dead1") >= 0);
    cr_expect_neq(nd(p, wf, 0, "l2"), nd(p, wf, 0, "l1"), "kept body ops are part of the loop");
    plan_destroy(&p);
    wf_destroy(&wf);

    wf = loops_wf(",\"max_rounds\":4", "revise {{op.draft}} {{prev}}");
    p = plan1(wf, "t", "x", 0);
    cr_expect_neq(nd(p, wf, 0, "l2"), nd(p, wf, 0, "l1"), "rounds differ");
    cr_expect_neq(nd(p, wf, 0, "c2"), nd(p, wf, 0, "c1"), "so do their bodies");
    plan_destroy(&p);
    wf_destroy(&wf);

    wf = loops_wf(",\"max_rounds\":3", "revise {{op.draft}}");
    p = plan1(wf, "t", "x", 0);
    cr_expect_neq(nd(p, wf, 0, "l2"), nd(p, wf, 0, "l1"), "{{prev}} matters");
    plan_destroy(&p);
    wf_destroy(&wf);
}

/* --------------------------------------------------------- a large batch */

/* A ~100-op workflow: 9 experts x 10-step chains over a shared system prompt
 * and a per-job document, a map, a join per chain, a loop and a reducer. */
static wf_t *big_wf(void) {
    size_t cap = 1 << 16, len = 0;
    char *b = malloc(cap);
#define ADD(...) len += (size_t)snprintf(b + len, cap - len, __VA_ARGS__)
    ADD("{\"inputs\":[\"doc\",{\"name\":\"sys\",\"default\":\"You are careful.\"}],\"ops\":[");
    for (int e = 0; e < 9; e++)
        for (int s = 0; s < 10; s++) {
            if (s == 0) ADD("{\"id\":\"e%d_0\",\"type\":\"llm\",\"prompt\":\"{{input.sys}} expert %d on {{input.doc}}\"},", e, e);
            else ADD("{\"id\":\"e%d_%d\",\"type\":\"llm\",\"prompt\":\"{{input.sys}} step %d {{op.e%d_%d}}\"},", e, s, s, e, s - 1);
        }
    for (int e = 0; e < 9; e++) ADD("{\"id\":\"j%d\",\"type\":\"join\",\"parts\":\"{{op.e%d_9}}\"},", e, e);
    ADD("{\"id\":\"topics\",\"type\":\"llm\",\"prompt\":\"{{input.sys}} list topics\"},");
    ADD("{\"id\":\"m\",\"type\":\"map\",\"over\":\"op.topics\",\"body\":{\"type\":\"llm\",\"prompt\":\"{{input.sys}} {{item}}\"}},");
    ADD("{\"id\":\"lp\",\"type\":\"loop\",\"max_rounds\":2,\"body\":[{\"id\":\"lr\",\"type\":\"llm\",\"prompt\":\"{{op.j0}} {{prev}}\"}]},");
    ADD("{\"id\":\"red\",\"type\":\"llm\",\"prompt\":\"reduce");
    for (int e = 0; e < 9; e++) ADD(" {{op.j%d}}", e);
    ADD(" {{op.m}} {{op.lp}}\"}],\"output\":\"red\"}");
#undef ADD
    cr_assert(len < cap);
    wf_t *wf = wf_of(b);
    free(b);
    return wf;
}

Test(plan, large_batch) {
    wf_t *wf = big_wf();
    cr_assert_geq(wf->n_ops, 100);
    enum { N = 50 };
    static char docs[N][64];
    const char *names[] = {"doc"};
    const char *vals[N][1];
    plan_job jobs[N];
    for (int j = 0; j < N; j++) {
        snprintf(docs[j], sizeof docs[j], "document number %d", j % 10); /* 10 distinct docs */
        vals[j][0] = docs[j];
        jobs[j] = (plan_job){.wf = wf, .input_names = names, .input_values = vals[j], .n_inputs = 1};
    }
    plan_t *p = NULL;
    plan_stats st;
    cr_assert_eq(plan_build_batch(jobs, N, 0, &p, &st), 0, "%s", he_msg());
    check_plan(p);
    size_t n = wf->n_ops;
    cr_expect_eq(st.ops_in, (uint64_t)N * n);
    cr_expect_eq(st.ops_pruned, 0);
    /* doc-independent: topics, the map and its body (3); per distinct doc the rest */
    cr_expect_eq(st.nodes_out, 3 + 10 * (n - 3), "nodes %llu", (unsigned long long)st.nodes_out);
    cr_expect_eq(nd(p, wf, 49, "e3_4"), nd(p, wf, 9, "e3_4"));
    cr_expect_neq(nd(p, wf, 48, "e3_4"), nd(p, wf, 9, "e3_4"));
    fprintf(stderr, "plan: %llu ops in, %llu nodes, %llu us\n", (unsigned long long)st.ops_in,
            (unsigned long long)st.nodes_out, (unsigned long long)st.plan_us);
    plan_destroy(&p);
    wf_destroy(&wf);
}

/* ================================================================ rcache */

static rcache_key key_n(uint64_t n) {
    int32_t ids[2] = {(int32_t)n, 7};
    rcache_call c = {.kind = RCACHE_LLM, .model_root = 1, .ids = ids, .n_ids = 2, .max_tokens = 4};
    return rcache_key_of(&c);
}

static rcache_val val_of(const char *s) {
    return (rcache_val){.text = s, .len = strlen(s), .generated_tokens = 3};
}

Test(rcache, put_get_counters) {
    rcache_t *rc = rcache_new(1 << 20);
    cr_assert(rc);
    rcache_val v;
    cr_expect_eq(rcache_get(rc, key_n(1), 0, &v), 0);
    int32_t ids[] = {5, 6, 7};
    rcache_val in = {.text = "hello", .len = 5, .ids = ids, .n_ids = 3, .generated_tokens = 3, .finish_reason = 2};
    cr_assert_eq(rcache_put(rc, key_n(1), &in, 0, 0), 0);
    cr_assert_eq(rcache_get(rc, key_n(1), 123, &v), 1);
    cr_expect_eq(v.len, 5);
    cr_expect_str_eq(v.text, "hello");
    cr_expect_eq(v.n_ids, 3);
    cr_expect_eq(v.ids[2], 7);
    cr_expect_eq(v.generated_tokens, 3);
    cr_expect_eq(v.finish_reason, 2);
    cr_expect_eq(rcache_get(rc, key_n(2), 0, &v), 0);
    rcache_val in2 = val_of("bye");
    cr_assert_eq(rcache_put(rc, key_n(1), &in2, 0, 0), 0); /* replace */
    cr_assert_eq(rcache_get(rc, key_n(1), 0, &v), 1);
    cr_expect_str_eq(v.text, "bye");
    cr_expect_eq(v.n_ids, 0);
    rcache_counts c;
    rcache_stats(rc, &c);
    cr_expect_eq(c.lookups, 4);
    cr_expect_eq(c.hits, 2);
    cr_expect_eq(c.misses, 2);
    cr_expect_eq(c.inserts, 1);
    cr_expect_eq(c.replaces, 1);
    cr_expect_eq(c.entries, 1);
    cr_expect_eq(c.bytes, RCACHE_ENTRY_OVERHEAD + 3);
    cr_expect_eq(rcache_remove(rc, key_n(1)), 1);
    cr_expect_eq(rcache_remove(rc, key_n(1)), 0);
    rcache_stats(rc, &c);
    cr_expect_eq(c.bytes, 0);
    cr_expect_eq(c.entries, 0);
    rcache_destroy(&rc);
    cr_expect_null(rc);
    rcache_destroy(&rc);
    cr_expect_null(rcache_new(0));
}

Test(rcache, lru_by_bytes) {
    char text[101];
    memset(text, 'x', 100);
    text[100] = 0;
    size_t per = RCACHE_ENTRY_OVERHEAD + 100;
    rcache_t *rc = rcache_new(per * 4); /* room for exactly 4 */
    rcache_val v = val_of(text);
    for (uint64_t k = 0; k < 4; k++) cr_assert_eq(rcache_put(rc, key_n(k), &v, 0, 0), 0);
    cr_expect_eq(rcache_get(rc, key_n(0), 0, NULL), 1); /* 0 becomes most recent; LRU order 1,2,3,0 */
    cr_assert_eq(rcache_put(rc, key_n(4), &v, 0, 0), 0);
    cr_expect_eq(rcache_get(rc, key_n(1), 0, NULL), 0, "least recently used went first");
    cr_expect_eq(rcache_get(rc, key_n(0), 0, NULL), 1);
    /* a bigger entry pushes out as many as needed */
    char big[301];
    memset(big, 'y', 300);
    big[300] = 0;
    rcache_val vb = val_of(big);
    cr_assert_eq(rcache_put(rc, key_n(9), &vb, 0, 0), 0);
    rcache_counts c;
    rcache_stats(rc, &c);
    cr_expect_leq(c.bytes, c.max_bytes);
    cr_expect_eq(c.entries, 2, "the 300-byte entry needs 3 slots' worth of text");
    cr_expect_eq(c.evictions, 4);
    cr_expect_eq(rcache_get(rc, key_n(0), 0, NULL), 1, "most recent survives");
    /* larger than the whole cache: refused */
    char *huge = malloc(per * 4);
    memset(huge, 'z', per * 4 - 1);
    huge[per * 4 - 1] = 0;
    rcache_val vh = val_of(huge);
    cr_expect_eq(rcache_put(rc, key_n(10), &vh, 0, 0), HE_ELIMIT);
    rcache_stats(rc, &c);
    cr_expect_eq(c.rejected, 1);
    cr_expect_eq(c.entries, 2);
    free(huge);
    /* many entries: the table grows and lookups still work */
    rcache_t *r2 = rcache_new(1 << 24);
    for (uint64_t k = 0; k < 5000; k++) cr_assert_eq(rcache_put(r2, key_n(k), &v, 0, 0), 0);
    for (uint64_t k = 0; k < 5000; k += 7) cr_assert_eq(rcache_get(r2, key_n(k), 0, NULL), 1);
    rcache_destroy(&r2);
    rcache_destroy(&rc);
}

Test(rcache, ttl_expiry) {
    rcache_t *rc = rcache_new(1 << 16);
    rcache_val v = val_of("page");
    cr_assert_eq(rcache_put(rc, key_n(1), &v, 100, 1000), 0);
    cr_assert_eq(rcache_put(rc, key_n(2), &v, 0, 1000), 0);
    cr_expect_eq(rcache_get(rc, key_n(1), 1099, NULL), 1);
    cr_expect_eq(rcache_get(rc, key_n(1), 1100, NULL), 0, "expires at put time + ttl");
    cr_expect_eq(rcache_get(rc, key_n(1), 1000, NULL), 0, "and is gone");
    cr_expect_eq(rcache_get(rc, key_n(2), UINT64_MAX, NULL), 1, "ttl 0 never expires");
    rcache_counts c;
    rcache_stats(rc, &c);
    cr_expect_eq(c.expired, 1);
    cr_expect_eq(c.entries, 1);
    cr_expect_eq(c.misses, 2);
    rcache_destroy(&rc);
}

Test(rcache, cacheable_rule) {
    rcache_call c = {.kind = RCACHE_LLM, .temperature = 0};
    cr_expect(rcache_cacheable(&c, false), "greedy");
    c.temperature = 0.8f;
    cr_expect_not(rcache_cacheable(&c, true), "sampled without a seed");
    c.seed = 5; /* effective seed of a map item, but the op set none */
    cr_expect_not(rcache_cacheable(&c, true));
    c.seeded = true;
    cr_expect(rcache_cacheable(&c, false), "sampled with an explicit seed");
    c.seeded = false;
    c.top_k = 1;
    cr_expect(rcache_cacheable(&c, false), "top_k 1 is greedy");
    rcache_call t = {.kind = RCACHE_TOOL, .method = "GET", .url = "http://h/x"};
    cr_expect_not(rcache_cacheable(&t, false), "tools need the option");
    cr_expect(rcache_cacheable(&t, true));
    t.method = "POST";
    cr_expect_not(rcache_cacheable(&t, true));
    wf_sampling s = {.temperature = 1.0f, .top_p = 1.0f};
    cr_expect_not(rcache_sampling_deterministic(&s));
    s.seed = 9;
    cr_expect(rcache_sampling_deterministic(&s));
    s = (wf_sampling){.temperature = 0, .top_p = 1.0f};
    cr_expect(rcache_sampling_deterministic(&s));
}

Test(rcache, keys) {
    int32_t ids[] = {1, 2, 3};
    const char *stop[] = {"\n"};
    rcache_call a = {.kind = RCACHE_LLM, .model_root = 42, .ids = ids, .n_ids = 3, .temperature = 0.5f,
                     .top_p = 1.0f, .seed = 7, .seeded = true, .max_tokens = 16, .stop = stop, .n_stop = 1};
    rcache_key k = rcache_key_of(&a);
    rcache_call b = a;
    cr_expect_eq(rcache_key_of(&b).lo, k.lo);
    cr_expect_eq(rcache_key_of(&b).hi, k.hi);
    b.top_p = 0; /* 0 and 1 both mean off */
    cr_expect_eq(rcache_key_of(&b).lo, k.lo);
#define DIFFERS(field, value)                                                                      \
    do {                                                                                           \
        rcache_call x = a;                                                                         \
        x.field = value;                                                                           \
        cr_expect_neq(rcache_key_of(&x).lo, k.lo, #field);                                        \
    } while (0)
    DIFFERS(model_root, 43);
    DIFFERS(model, "other");
    DIFFERS(n_ids, 2);
    DIFFERS(seed, 8);
    DIFFERS(temperature, 0.6f);
    DIFFERS(top_k, 5);
    DIFFERS(max_tokens, 17);
    DIFFERS(n_stop, 0);
#undef DIFFERS
    /* greedy calls ignore the seed */
    rcache_call g1 = a, g2 = a;
    g1.temperature = g2.temperature = 0;
    g2.seed = 99;
    cr_expect_eq(rcache_key_of(&g1).lo, rcache_key_of(&g2).lo);
    /* ids and text are different key spaces; text keys work */
    rcache_call t1 = a;
    t1.ids = NULL;
    t1.text = "abc";
    t1.text_len = 3;
    rcache_call t2 = t1;
    t2.text = "abd";
    cr_expect_neq(rcache_key_of(&t1).lo, rcache_key_of(&t2).lo);
    cr_expect_neq(rcache_key_of(&t1).lo, k.lo);
    /* tools */
    wf_kv h[] = {{"Accept", "json"}};
    rcache_call u1 = {.kind = RCACHE_TOOL, .method = "GET", .url = "http://h/a", .headers = h, .n_headers = 1};
    rcache_call u2 = u1;
    u2.url = "http://h/b";
    rcache_call u3 = u1;
    u3.n_headers = 0;
    cr_expect_neq(rcache_key_of(&u1).lo, rcache_key_of(&u2).lo);
    cr_expect_neq(rcache_key_of(&u1).lo, rcache_key_of(&u3).lo);
    /* stable across runs and machines */
    rcache_call s = {.kind = RCACHE_LLM, .model_root = 1, .ids = ids, .n_ids = 3, .max_tokens = 8};
    rcache_key ks = rcache_key_of(&s);
    cr_expect(ks.lo == 0xdf271bb63ba461dfULL && ks.hi == 0xba8ef826ae47188bULL, "key lo %#018llx hi %#018llx", (unsigned long long)ks.lo,
                 (unsigned long long)ks.hi);
}
