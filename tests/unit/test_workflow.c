/* Unit tests for common/workflow: the JSON workflow format, templates,
 * reference resolution, cycle detection, limits and robustness against
 * truncated or mutated input (run under ASan to catch memory errors). */
#include <criterion/criterion.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "herr.h"
#include "workflow.h"

#ifndef HELIUM_SOURCE_DIR
#define HELIUM_SOURCE_DIR "."
#endif

/* Reads an example into an exact-size (not NUL-terminated) buffer. */
static char *read_example(const char *name, size_t *len) {
    char path[512];
    snprintf(path, sizeof path, "%s/examples/%s", HELIUM_SOURCE_DIR, name);
    FILE *f = fopen(path, "rb");
    cr_assert(f, "cannot open %s", path);
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    rewind(f);
    cr_assert(n > 0);
    char *b = malloc((size_t)n);
    cr_assert(b);
    cr_assert_eq(fread(b, 1, (size_t)n, f), (size_t)n);
    fclose(f);
    *len = (size_t)n;
    return b;
}

static int parse_file(const char *name, wf_t **out) {
    size_t n;
    char *b = read_example(name, &n);
    int rc = wf_parse_json(b, n, out);
    free(b);
    return rc;
}

static int parse_str(const char *json, wf_t **out) { return wf_parse_json(json, strlen(json), out); }

static const wf_op *op_named(const wf_t *wf, const char *id) {
    int i = wf_find(wf, id);
    cr_assert(i >= 0, "no op '%s'", id);
    return wf->ops[i];
}

static bool has_dep(const wf_t *wf, const wf_op *op, const char *id) {
    for (size_t k = 0; k < op->n_deps; k++)
        if (strcmp(wf->ops[op->deps[k]]->id, id) == 0) return true;
    return false;
}

/* Position of each op in its scope's order; checks every dep comes earlier. */
static void check_orders(const wf_t *wf) {
    int *pos = malloc(wf->n_ops * sizeof *pos);
    for (size_t i = 0; i < wf->n_ops; i++) pos[i] = -1;
    size_t total = wf->n_order;
    for (size_t k = 0; k < wf->n_order; k++) pos[wf->order[k]] = (int)k;
    for (size_t i = 0; i < wf->n_ops; i++) {
        total += wf->ops[i]->n_order;
        for (size_t k = 0; k < wf->ops[i]->n_order; k++) pos[wf->ops[i]->order[k]] = (int)k;
    }
    cr_assert_eq(total, wf->n_ops, "every op appears in exactly one scope order");
    for (size_t i = 0; i < wf->n_ops; i++) {
        const wf_op *op = wf->ops[i];
        cr_assert(pos[i] >= 0);
        for (size_t k = 0; k < op->n_deps; k++) {
            int d = op->deps[k];
            cr_assert_eq(wf->ops[d]->parent, op->parent, "deps stay within a scope");
            cr_assert(pos[d] < pos[i], "'%s' ordered before its dep '%s'", op->id, wf->ops[d]->id);
        }
    }
    free(pos);
}

static const char *const good_examples[] = {
    "map_reduce.json",  "store_monitoring.json", "customer_service.json",
    "personal_shopping.json", "debate.json", "refine_loop.json",
};
#define N_GOOD (sizeof good_examples / sizeof *good_examples)

/* ------------------------------------------------------------- examples */

Test(workflow, examples_parse) {
    for (size_t e = 0; e < N_GOOD; e++) {
        wf_t *wf = NULL;
        int rc = parse_file(good_examples[e], &wf);
        cr_assert_eq(rc, 0, "%s: %s %s", good_examples[e], he_name(rc), he_msg());
        cr_assert(wf && wf->valid);
        cr_assert(wf->output >= 0 && wf->ops[wf->output]->parent == -1);
        check_orders(wf);
        cr_assert_eq(wf_validate(wf), 0, "revalidation: %s", he_msg());
        check_orders(wf);
        wf_destroy(&wf);
        cr_assert_null(wf);
    }
}

Test(workflow, map_reduce_shape) {
    wf_t *wf = NULL;
    cr_assert_eq(parse_file("map_reduce.json", &wf), 0, "%s", he_msg());
    cr_assert_eq(wf->n_ops, 5);
    cr_assert_str_eq(wf->ops[wf->output]->id, "reduce");
    const wf_op *red = op_named(wf, "reduce");
    cr_assert_eq(red->n_deps, 4);
    const char *experts[] = {"finance", "legal", "operations", "market"};
    for (int k = 0; k < 4; k++) {
        cr_assert(has_dep(wf, red, experts[k]));
        const wf_op *x = op_named(wf, experts[k]);
        cr_assert_eq(x->n_deps, 0);
        /* all four share the prefix: system input, text, document input */
        const wf_tmpl *t = &x->llm.prompt;
        cr_assert(t->n >= 4);
        cr_assert_eq(t->v[0].kind, WF_PART_INPUT);
        cr_assert_str_eq(t->v[0].s, "system");
        cr_assert_eq(t->v[1].kind, WF_PART_TEXT);
        cr_assert_str_eq(t->v[1].s, "\n\n<document>\n");
        cr_assert_eq(t->v[2].kind, WF_PART_INPUT);
        cr_assert_str_eq(t->v[2].s, "document");
        cr_assert_eq(t->v[2].ref, wf_find_input(wf, "document"));
    }
    /* already topological: declaration order is kept */
    for (size_t k = 0; k < wf->n_order; k++) cr_assert_eq(wf->order[k], (int)k);
    int sys = wf_find_input(wf, "system");
    cr_assert(sys >= 0 && wf->inputs[sys].has_default && strlen(wf->inputs[sys].def) > 800);
    cr_assert(!wf->inputs[wf_find_input(wf, "document")].has_default);
    wf_destroy(&wf);
}

Test(workflow, store_monitoring_shape) {
    wf_t *wf = NULL;
    cr_assert_eq(parse_file("store_monitoring.json", &wf), 0, "%s", he_msg());
    const wf_op *m = op_named(wf, "check_store");
    cr_assert_eq(m->kind, WF_MAP);
    cr_assert_eq(m->map.over.kind, WF_PART_INPUT);
    cr_assert_str_eq(m->map.over.s, "stores");
    cr_assert_eq(m->map.max_width, 256);
    cr_assert(m->map.body >= 0);
    const wf_op *body = wf->ops[m->map.body];
    cr_assert_str_eq(body->id, "check_store.body");
    cr_assert_eq(body->parent, wf_find(wf, "check_store"));
    bool item = false;
    for (size_t k = 0; k < body->llm.prompt.n; k++) item |= body->llm.prompt.v[k].kind == WF_PART_ITEM;
    cr_assert(item);
    cr_assert_eq(m->n_order, 1);
    const wf_op *notes = op_named(wf, "notes");
    cr_assert_str_eq(notes->join.separator, "\n\n");
    cr_assert(has_dep(wf, notes, "check_store"));
    cr_assert(has_dep(wf, op_named(wf, "region_summary"), "notes"));
    wf_destroy(&wf);
}

Test(workflow, customer_service_shape) {
    wf_t *wf = NULL;
    cr_assert_eq(parse_file("customer_service.json", &wf), 0, "%s", he_msg());
    const wf_op *t = op_named(wf, "order");
    cr_assert_eq(t->kind, WF_TOOL);
    cr_assert_str_eq(t->tool.method, "GET");
    cr_assert_eq(t->tool.url.n, 3);
    cr_assert_eq(t->tool.url.v[0].kind, WF_PART_INPUT);
    cr_assert_str_eq(t->tool.url.v[1].s, "/");
    cr_assert_eq(t->tool.url.v[2].kind, WF_PART_INPUT);
    cr_assert_eq(t->tool.n_headers, 1);
    cr_assert_str_eq(t->tool.headers[0].key, "Accept");
    cr_assert_eq(t->tool.timeout_ms, 2000);
    cr_assert_eq(wf->n_allow_hosts, 1);
    const wf_op *d = op_named(wf, "draft");
    cr_assert(has_dep(wf, d, "intent") && has_dep(wf, d, "order"));
    cr_assert_eq(op_named(wf, "intent")->llm.n_stop, 1);
    wf_destroy(&wf);
}

Test(workflow, loop_shape) {
    wf_t *wf = NULL;
    cr_assert_eq(parse_file("refine_loop.json", &wf), 0, "%s", he_msg());
    const wf_op *l = op_named(wf, "refine");
    cr_assert_eq(l->kind, WF_LOOP);
    cr_assert_eq(l->loop.max_rounds, 3);
    cr_assert_str_eq(l->loop.until_contains, "DONE");
    cr_assert_str_eq(wf->ops[l->loop.output]->id, "critique");
    cr_assert(has_dep(wf, l, "first_draft"), "body refs become deps of the loop");
    cr_assert_eq(l->n_order, 2);
    cr_assert_str_eq(wf->ops[l->order[0]]->id, "revise");
    cr_assert(has_dep(wf, op_named(wf, "critique"), "revise"));
    cr_assert_eq(op_named(wf, "revise")->n_deps, 0, "outer refs are not body deps");
    wf_destroy(&wf);
}

Test(workflow, bad_cycle_example) {
    wf_t *wf = (wf_t *)1;
    int rc = parse_file("bad_cycle.json", &wf);
    cr_assert_eq(rc, HE_ECYCLE, "%s: %s", he_name(rc), he_msg());
    cr_assert_null(wf);
    const char *m = he_msg();
    cr_assert(strstr(m, "summarize") && strstr(m, "critique"), "%s", m);
    cr_assert_null(strstr(m, "extract"), "extract is not on the cycle: %s", m);
}

Test(workflow, bad_dangling_example) {
    wf_t *wf = NULL;
    int rc = parse_file("bad_dangling.json", &wf);
    cr_assert_eq(rc, HE_EREF, "%s: %s", he_name(rc), he_msg());
    cr_assert(strstr(he_msg(), "'answer'") && strstr(he_msg(), "'retrieve'"), "%s", he_msg());
}

/* ------------------------------------------------------------ bad cases */

typedef struct {
    const char *json;
    int code;
    const char *must1, *must2; /* substrings of he_msg() */
} bad_case;

#define OPS(...) "{\"inputs\":[\"q\"],\"ops\":[" __VA_ARGS__ "]}"
#define LLM(id, prompt) "{\"id\":\"" id "\",\"type\":\"llm\",\"prompt\":\"" prompt "\"}"

static const bad_case bad_cases[] = {
    {"{", HE_EFORMAT, "invalid JSON", NULL},
    {"", HE_EFORMAT, "invalid JSON", NULL},
    {"[1,2]", HE_EFORMAT, "object", NULL},
    {OPS(LLM("a", "x")) " trailing", HE_EFORMAT, "trailing", NULL},
    {"{\"ops\":[]}", HE_EFORMAT, "no operators", NULL},
    {"{\"name\":\"x\"}", HE_EFORMAT, "'ops'", NULL},
    {"{\"ops\":[" LLM("a", "x") "],\"bogus\":1}", HE_EFORMAT, "bogus", NULL},
    {OPS("{\"id\":\"a\",\"type\":\"frobnicate\"}"), HE_EUNKNOWN, "'a'", "frobnicate"},
    {OPS("{\"type\":\"llm\",\"prompt\":\"x\"}"), HE_EFORMAT, "no 'id'", NULL},
    {OPS("{\"id\":\"a\",\"prompt\":\"x\"}"), HE_EFORMAT, "'a'", "type"},
    {OPS("{\"id\":\"bad id\",\"type\":\"llm\",\"prompt\":\"x\"}"), HE_EFORMAT, "bad id", NULL},
    {OPS(LLM("a", "x") "," LLM("a", "y")), HE_EFORMAT, "duplicate", "'a'"},
    {OPS("{\"id\":\"a\",\"type\":\"llm\",\"prompt\":\"x\",\"max_tokenz\":3}"), HE_EFORMAT, "'a'", "max_tokenz"},
    {OPS("{\"id\":\"a\",\"type\":\"llm\",\"prompt\":\"x\",\"url\":\"http://h/\"}"), HE_EFORMAT, "'a'", "url"},
    {OPS("{\"id\":\"a\",\"type\":\"llm\",\"prompt\":\"x\",\"prompt\":\"y\"}"), HE_EFORMAT, "'a'", "duplicate"},
    {OPS("{\"id\":\"a\",\"type\":\"llm\",\"prompt\":\"\"}"), HE_EFORMAT, "'a'", "prompt"},
    {OPS("{\"id\":\"a\",\"type\":\"llm\",\"prompt\":7}"), HE_EFORMAT, "'a'", "string"},
    {OPS("{\"id\":\"a\",\"type\":\"llm\",\"prompt\":\"x\",\"max_tokens\":-1}"), HE_EFORMAT, "'a'", "max_tokens"},
    {OPS("{\"id\":\"a\",\"type\":\"llm\",\"prompt\":\"x\",\"max_tokens\":1.5}"), HE_EFORMAT, "'a'", "max_tokens"},
    {OPS("{\"id\":\"a\",\"type\":\"llm\",\"prompt\":\"x\",\"max_tokens\":0}"), HE_EFORMAT, "'a'", "max_tokens"},
    {OPS("{\"id\":\"a\",\"type\":\"llm\",\"prompt\":\"x\",\"temperature\":-1}"), HE_EFORMAT, "'a'", "temperature"},
    {OPS("{\"id\":\"a\",\"type\":\"llm\",\"prompt\":\"x\",\"top_p\":0}"), HE_EFORMAT, "'a'", "top_p"},
    {OPS("{\"id\":\"a\",\"type\":\"llm\",\"prompt\":\"x\",\"seed\":\"12x\"}"), HE_EFORMAT, "'a'", "seed"},
    {OPS("{\"id\":\"a\",\"type\":\"llm\",\"prompt\":\"x\",\"stop\":[\"\"]}"), HE_EFORMAT, "'a'", "stop"},
    {OPS("{\"id\":\"a\",\"type\":\"llm\",\"prompt\":\"x\",\"stop\":[1]}"), HE_EFORMAT, "'a'", "stop"},
    {OPS(LLM("a", "{{input.nope}}")), HE_EREF, "'a'", "'nope'"},
    {OPS(LLM("a", "{{op.nope}}")), HE_EREF, "'a'", "'nope'"},
    {OPS(LLM("a", "{{op.a}}")), HE_ECYCLE, "'a'", "itself"},
    {OPS(LLM("a", "{{item}}")), HE_EREF, "'a'", "{{item}}"},
    {OPS(LLM("a", "{{prev}}")), HE_EREF, "'a'", "{{prev}}"},
    {OPS("{\"id\":\"l\",\"type\":\"loop\",\"body\":[" LLM("b", "{{item}}") "]}"), HE_EREF, "'b'", "{{item}}"},
    {OPS("{\"id\":\"m\",\"type\":\"map\",\"over\":\"input.q\",\"body\":" LLM("b", "{{prev}}") "}"), HE_EREF, "'b'", "{{prev}}"},
    {OPS(LLM("a", "{{bogus}}")), HE_EFORMAT, "'a'", "bogus"},
    {OPS(LLM("a", "hello {{input.q")), HE_EFORMAT, "'a'", "unterminated"},
    {OPS(LLM("a", "{{op.b}}") "," LLM("b", "{{op.c}}") "," LLM("c", "{{op.a}}") "," LLM("d", "{{op.a}}")),
     HE_ECYCLE, "cycle", "a -> "},
    {OPS("{\"id\":\"t\",\"type\":\"tool\",\"url\":\"ftp://x/\"}"), HE_EFORMAT, "'t'", "http"},
    {OPS("{\"id\":\"t\",\"type\":\"tool\",\"url\":\"http://x/\",\"method\":\"BREW\"}"), HE_EFORMAT, "'t'", "method"},
    {OPS("{\"id\":\"t\",\"type\":\"tool\",\"url\":\"http://x/\",\"headers\":{\"A B\":\"v\"}}"), HE_EFORMAT, "'t'", "header"},
    {OPS("{\"id\":\"t\",\"type\":\"tool\",\"url\":\"http://x/\",\"timeout_ms\":0}"), HE_EFORMAT, "'t'", "timeout_ms"},
    {OPS("{\"id\":\"m\",\"type\":\"map\",\"over\":\"input.q\"}"), HE_EFORMAT, "'m'", "no body"},
    {OPS("{\"id\":\"m\",\"type\":\"map\",\"over\":\"q\",\"body\":" LLM("b", "{{item}}") "}"), HE_EFORMAT, "'m'", "over"},
    {OPS("{\"id\":\"m\",\"type\":\"map\",\"over\":\"input.zz\",\"body\":" LLM("b", "{{item}}") "}"), HE_EREF, "'m'", "'zz'"},
    {OPS("{\"id\":\"m\",\"type\":\"map\",\"over\":\"input.q\",\"body\":{\"id\":\"b\",\"type\":\"map\",\"over\":\"input.q\",\"body\":" LLM("c", "x") "}}"),
     HE_EFORMAT, "'m'", "'b'"},
    {OPS("{\"id\":\"m\",\"type\":\"map\",\"over\":\"input.q\",\"body\":" LLM("b", "{{op.m}}") "}"), HE_ECYCLE, "'b'", "'m'"},
    {OPS("{\"id\":\"m\",\"type\":\"map\",\"over\":\"op.m.body\",\"body\":" LLM("b", "x") "}"), HE_EREF, "'m'", "m.body"},
    {OPS("{\"id\":\"j\",\"type\":\"join\",\"parts\":\"x\",\"refs\":[\"op.a\"]}"), HE_EFORMAT, "'j'", "refs"},
    {OPS("{\"id\":\"j\",\"type\":\"join\",\"refs\":[\"a\"]}"), HE_EFORMAT, "'j'", "refs"},
    {OPS("{\"id\":\"l\",\"type\":\"loop\",\"body\":[]}"), HE_EFORMAT, "'l'", "body"},
    {OPS("{\"id\":\"l\",\"type\":\"loop\",\"body\":[" LLM("b", "{{op.l}}") "]}"), HE_ECYCLE, "'b'", "{{prev}}"},
    {OPS("{\"id\":\"l\",\"type\":\"loop\",\"body\":[" LLM("b", "x") "]}," LLM("c", "{{op.b}}")), HE_EREF, "'c'", "'l'"},
    {OPS("{\"id\":\"l\",\"type\":\"loop\",\"output\":\"c\",\"body\":[" LLM("b", "x") "]}," LLM("c", "y")), HE_EREF, "'l'", "'c'"},
    {OPS("{\"id\":\"l\",\"type\":\"loop\",\"body\":[{\"id\":\"l2\",\"type\":\"loop\",\"body\":[" LLM("b", "x") "]}]}"),
     HE_EFORMAT, "'l'", "nest"},
    {OPS("{\"id\":\"loopy\",\"type\":\"loop\",\"body\":[" LLM("b", "{{op.xray}}") "]}," LLM("xray", "{{op.loopy}}")),
     HE_ECYCLE, "loopy -> xray", NULL},
    {OPS("{\"id\":\"l\",\"type\":\"loop\",\"max_rounds\":0,\"body\":[" LLM("b", "x") "]}"), HE_EFORMAT, "'l'", "max_rounds"},
    {"{\"output\":\"zz\",\"ops\":[" LLM("a", "x") "]}", HE_EREF, "'zz'", NULL},
    {"{\"inputs\":[\"q\",\"q\"],\"ops\":[" LLM("a", "x") "]}", HE_EFORMAT, "duplicate", "'q'"},
    {"{\"inputs\":[{\"default\":\"d\"}],\"ops\":[" LLM("a", "x") "]}", HE_EFORMAT, "name", NULL},
    {"{\"inputs\":[3],\"ops\":[" LLM("a", "x") "]}", HE_EFORMAT, "input", NULL},
    {"{\"allow_hosts\":[\"http://x/\"],\"ops\":[" LLM("a", "x") "]}", HE_EFORMAT, "host", NULL},
};

Test(workflow, bad_cases) {
    for (size_t k = 0; k < sizeof bad_cases / sizeof *bad_cases; k++) {
        const bad_case *c = &bad_cases[k];
        wf_t *wf = (wf_t *)1;
        he_clear();
        int rc = parse_str(c->json, &wf);
        cr_expect_eq(rc, c->code, "case %zu %s: got %s (%s)", k, c->json, he_name(rc), he_msg());
        cr_expect_null(wf, "case %zu: *out must be NULL on error", k);
        if (c->must1)
            cr_expect(strstr(he_msg(), c->must1), "case %zu: '%s' not in \"%s\"", k, c->must1, he_msg());
        if (c->must2)
            cr_expect(strstr(he_msg(), c->must2), "case %zu: '%s' not in \"%s\"", k, c->must2, he_msg());
        if (!rc) wf_destroy(&wf);
    }
}

Test(workflow, good_small_cases) {
    static const char *const ok[] = {
        OPS(LLM("a", "x") ",{\"id\":\"b\",\"type\":\"llm\",\"prompt\":\"{{op.a}}\",\"_comment\":\"ignored\"}"),
        OPS("{\"id\":\"a\",\"type\":\"llm\",\"prompt\":\"x\",\"stop\":\"\\n\",\"seed\":\"18446744073709551615\"}"),
        OPS("{\"id\":\"t\",\"type\":\"tool\",\"url\":\"http{{input.q}}\",\"method\":\"post\",\"body\":\"{\\\"a\\\":1}\"}"),
        OPS("{\"id\":\"t\",\"type\":\"tool\",\"url\":\"{{input.q}}/x\"}"),
        OPS("{\"id\":\"j\",\"type\":\"join\",\"refs\":[\"input.q\",\"op.a\"],\"separator\":\", \"}," LLM("a", "x")),
        OPS("{\"id\":\"l\",\"type\":\"loop\",\"body\":[{\"id\":\"m\",\"type\":\"map\",\"over\":\"input.q\",\"body\":"
            LLM("mb", "{{item}} {{prev}} {{op.o}}") "}]}," LLM("o", "x")),
    };
    for (size_t k = 0; k < sizeof ok / sizeof *ok; k++) {
        wf_t *wf = NULL;
        int rc = parse_str(ok[k], &wf);
        cr_assert_eq(rc, 0, "case %zu: %s (%s)", k, he_name(rc), he_msg());
        check_orders(wf);
        wf_destroy(&wf);
    }
    wf_t *wf = NULL;
    cr_assert_eq(parse_str(ok[1], &wf), 0);
    cr_assert_eq(wf->ops[0]->llm.sampling.seed, UINT64_MAX);
    cr_assert_str_eq(wf->ops[0]->llm.stop[0], "\n");
    wf_destroy(&wf);
    cr_assert_eq(parse_str(ok[2], &wf), 0);
    cr_assert_str_eq(wf->ops[0]->tool.method, "POST");
    cr_assert_str_eq(wf->ops[0]->tool.body.v[0].s, "{\"a\":1}");
    wf_destroy(&wf);
    cr_assert_eq(parse_str(ok[4], &wf), 0);
    const wf_tmpl *t = &wf->ops[0]->join.parts; /* q ", " a */
    cr_assert_eq(t->n, 3);
    cr_assert_eq(t->v[0].kind, WF_PART_INPUT);
    cr_assert_str_eq(t->v[1].s, ", ");
    cr_assert_eq(t->v[2].kind, WF_PART_OP);
    cr_assert_eq(t->v[2].ref, 1);
    cr_assert_eq(wf->order[0], 1, "join waits for a");
    wf_destroy(&wf);
    /* the map body inside a loop references a top-level op: the loop waits for it */
    cr_assert_eq(parse_str(ok[5], &wf), 0);
    cr_assert(has_dep(wf, op_named(wf, "l"), "o"));
    cr_assert_eq(op_named(wf, "m")->n_deps, 0);
    cr_assert_str_eq(wf->ops[wf->output]->id, "l", "o feeds l, so l is the only sink");
    wf_destroy(&wf);
}

/* ------------------------------------------------------------ templates */

typedef struct {
    wf_part_kind kind;
    const char *s;
} xpart;

static void expect_tmpl(const char *src, const xpart *want, size_t n) {
    wf_tmpl t = {0};
    int rc = wf_tmpl_parse(&t, src, strlen(src), "op");
    cr_assert_eq(rc, 0, "'%s': %s", src, he_msg());
    cr_assert_eq(t.n, n, "'%s': %zu parts, want %zu", src, t.n, n);
    for (size_t k = 0; k < n; k++) {
        cr_assert_eq(t.v[k].kind, want[k].kind, "'%s' part %zu", src, k);
        if (want[k].s) {
            cr_assert_str_eq(t.v[k].s, want[k].s, "'%s' part %zu", src, k);
            cr_assert_eq(t.v[k].len, strlen(want[k].s));
        } else {
            cr_assert_null(t.v[k].s);
        }
    }
    for (size_t k = 0; k < t.n; k++) free(t.v[k].s);
    free(t.v);
}

#define EXPECT(src, ...)                                              \
    do {                                                              \
        const xpart w_[] = {__VA_ARGS__};                             \
        expect_tmpl(src, w_, sizeof w_ / sizeof *w_);                 \
    } while (0)

Test(workflow, template_split) {
    EXPECT("plain text", {WF_PART_TEXT, "plain text"});
    EXPECT("a {{input.x}} b", {WF_PART_TEXT, "a "}, {WF_PART_INPUT, "x"}, {WF_PART_TEXT, " b"});
    EXPECT("{{op.y}}{{item}}{{prev}}", {WF_PART_OP, "y"}, {WF_PART_ITEM, NULL}, {WF_PART_PREV, NULL});
    EXPECT("{{ input.x }}!", {WF_PART_INPUT, "x"}, {WF_PART_TEXT, "!"});
    EXPECT("\\{{input.x}}", {WF_PART_TEXT, "{{input.x}}"});
    EXPECT("a\\{{b", {WF_PART_TEXT, "a{{b"});
    EXPECT("{{{op.a}}}", {WF_PART_TEXT, "{"}, {WF_PART_OP, "a"}, {WF_PART_TEXT, "}"});
    EXPECT("{\"k\": {\"v\": 1}}", {WF_PART_TEXT, "{\"k\": {\"v\": 1}}"});
    EXPECT("x{", {WF_PART_TEXT, "x{"});
    EXPECT("\\x {", {WF_PART_TEXT, "\\x {"});
    EXPECT("{{op.a.b-c_d}}", {WF_PART_OP, "a.b-c_d"});
    EXPECT("Store: {{op.fetch_store}}\n", {WF_PART_TEXT, "Store: "}, {WF_PART_OP, "fetch_store"},
           {WF_PART_TEXT, "\n"});

    wf_tmpl t = {0};
    cr_assert_eq(wf_tmpl_parse(&t, "", 0, "op"), 0);
    cr_assert_eq(t.n, 0);
    cr_assert_eq(wf_tmpl_parse(&t, "ab{{input.xy}}", 14, "op"), 0);
    cr_assert_eq(t.bytes, 2 + 12, "bytes counts text and canonical placeholders");
    for (size_t k = 0; k < t.n; k++) free(t.v[k].s);
    free(t.v);

    static const char *const bad[] = {"{{input.x", "{{foo}}", "{{input.}}", "{{op.a b}}", "{{",
                                      "x {{}}", "{{op.}}", "{{item }x}}", "{{ItEm}}"};
    for (size_t k = 0; k < sizeof bad / sizeof *bad; k++) {
        wf_tmpl b = {0};
        int rc = wf_tmpl_parse(&b, bad[k], strlen(bad[k]), "the_op");
        cr_expect_eq(rc, HE_EFORMAT, "'%s': %s", bad[k], he_name(rc));
        cr_expect(strstr(he_msg(), "the_op"), "'%s': %s", bad[k], he_msg());
        for (size_t q = 0; q < b.n; q++) free(b.v[q].s);
        free(b.v);
    }
}

/* ------------------------------------------------------------------ DAG */

static uint64_t rng_state;
static uint32_t rnd(void) {
    rng_state = rng_state * 6364136223846793005ULL + 1442695040888963407ULL;
    return (uint32_t)(rng_state >> 33);
}

/* A string builder for generated JSON. */
typedef struct {
    char *s;
    size_t n, cap;
} sbuf;

static void sb_add(sbuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void sb_add(sbuf *b, const char *fmt, ...) {
    va_list ap;
    for (;;) {
        va_start(ap, fmt);
        int w = vsnprintf(b->s ? b->s + b->n : NULL, b->s ? b->cap - b->n : 0, fmt, ap);
        va_end(ap);
        cr_assert(w >= 0);
        if (b->s && (size_t)w < b->cap - b->n) {
            b->n += (size_t)w;
            return;
        }
        b->cap = (b->cap + (size_t)w + 1) * 2;
        b->s = realloc(b->s, b->cap);
        cr_assert(b->s);
    }
}

Test(workflow, topo_random_dag) {
    enum { N = 300 };
    rng_state = 12345;
    int perm[N]; /* declaration position -> dag rank; deps point to lower ranks */
    for (int i = 0; i < N; i++) perm[i] = i;
    for (int i = N - 1; i > 0; i--) {
        int j = (int)(rnd() % (uint32_t)(i + 1)), t = perm[i];
        perm[i] = perm[j];
        perm[j] = t;
    }
    static bool want[N][N]; /* want[a][b]: rank a references rank b */
    memset(want, 0, sizeof want);
    sbuf b = {0};
    sb_add(&b, "{\"ops\":[");
    for (int d = 0; d < N; d++) {
        int r = perm[d];
        sb_add(&b, "%s{\"id\":\"n%d\",\"type\":\"join\",\"parts\":\"r%d", d ? "," : "", r, r);
        int nref = r ? (int)(rnd() % 4) : 0;
        for (int k = 0; k < nref; k++) {
            int t = (int)(rnd() % (uint32_t)r);
            want[r][t] = true;
            sb_add(&b, " {{op.n%d}}", t);
        }
        sb_add(&b, "\"}");
    }
    sb_add(&b, "]}");
    wf_t *wf = NULL;
    int rc = wf_parse_json(b.s, b.n, &wf);
    cr_assert_eq(rc, 0, "%s", he_msg());
    cr_assert_eq(wf->n_order, N);
    check_orders(wf);
    for (int r = 0; r < N; r++) {
        char id[16];
        snprintf(id, sizeof id, "n%d", r);
        const wf_op *op = op_named(wf, id);
        size_t nw = 0;
        for (int t = 0; t < N; t++) nw += want[r][t];
        cr_assert_eq(op->n_deps, nw, "%s: deps are the distinct references", id);
        for (size_t k = 1; k < op->n_deps; k++) cr_assert(op->deps[k - 1] < op->deps[k]);
        for (int t = 0; t < N; t++) {
            snprintf(id, sizeof id, "n%d", t);
            cr_assert_eq(has_dep(wf, op, id), want[r][t]);
        }
    }
    /* close a cycle: the lowest rank references the highest */
    wf_op *lo = wf->ops[wf_find(wf, "n0")];
    cr_assert_eq(wf_tmpl_add(&lo->join.parts, WF_PART_OP, "n299", 4), 0);
    rc = wf_validate(wf);
    if (rc == 0) { /* n299 might not reach n0: make it reference n0 directly */
        wf_op *hi = wf->ops[wf_find(wf, "n299")];
        cr_assert_eq(wf_tmpl_add(&hi->join.parts, WF_PART_OP, "n0", 2), 0);
        rc = wf_validate(wf);
    }
    cr_assert_eq(rc, HE_ECYCLE, "%s", he_msg());
    cr_assert(!wf->valid);
    wf_destroy(&wf);
    free(b.s);
}

Test(workflow, builder_and_idempotence) {
    wf_t *wf = wf_new();
    cr_assert(wf);
    cr_assert_eq(wf_add_input(wf, "ctx", "default context", NULL), 0);
    int a = wf_add_op(wf, -1, "a", WF_LLM);
    int l = wf_add_op(wf, -1, "l", WF_LOOP);
    int b = wf_add_op(wf, l, "b", WF_LLM);
    int c = wf_add_op(wf, l, "c", WF_JOIN);
    cr_assert(a == 0 && l == 1 && b == 2 && c == 3);
    cr_assert(wf_add_op(wf, 7, "x", WF_LLM) < 0, "parent must exist");
    cr_assert_eq(wf_tmpl_parse(&wf->ops[a]->llm.prompt, "{{input.ctx}}", 13, "a"), 0);
    cr_assert_eq(wf_tmpl_parse(&wf->ops[b]->llm.prompt, "{{op.c}}{{prev}}{{op.a}}", 24, "b"), 0);
    cr_assert_eq(wf_tmpl_parse(&wf->ops[c]->join.parts, "x", 1, "c"), 0);
    cr_assert_eq(wf_validate(wf), 0, "%s", he_msg());
    cr_assert_eq(wf_validate(wf), 0, "validate is idempotent: %s", he_msg());
    cr_assert_eq(wf->n_order, 2);
    cr_assert_eq(wf->order[0], a);
    cr_assert_eq(wf->ops[l]->n_order, 2);
    cr_assert_eq(wf->ops[l]->order[0], c, "b needs c");
    cr_assert_eq(wf->ops[l]->loop.output, c, "default output: the last body op");
    cr_assert_eq(wf->ops[l]->n_deps, 1);
    cr_assert_eq(wf->ops[l]->deps[0], a);
    cr_assert_eq(wf->output, l);
    cr_assert_eq(wf_find(wf, "c"), c);
    cr_assert_eq(wf_find(wf, "zz"), -1);
    /* a map parent takes one body op only */
    int m = wf_add_op(wf, -1, "m", WF_MAP);
    cr_assert(m > 0);
    cr_assert_eq(wf_add_op(wf, m, "m1", WF_LLM), m + 1);
    cr_assert_eq(wf_add_op(wf, m, "m2", WF_LLM), m + 2);
    wf->ops[m]->map.over.kind = WF_PART_INPUT;
    cr_assert_eq(wf_set_str(&wf->ops[m]->map.over.s, "ctx"), 0);
    cr_assert_eq(wf_tmpl_parse(&wf->ops[m + 1]->llm.prompt, "{{item}}", 8, "m1"), 0);
    cr_assert_eq(wf_tmpl_parse(&wf->ops[m + 2]->llm.prompt, "{{item}}", 8, "m2"), 0);
    cr_assert_eq(wf_validate(wf), HE_EFORMAT);
    cr_assert(strstr(he_msg(), "'m'"), "%s", he_msg());
    cr_assert_str_eq(wf_kind_name(WF_MAP), "map");
    cr_assert_str_eq(wf_kind_name((wf_kind)99), "?");
    cr_assert_eq(wf_kind_from_name("loop"), WF_LOOP);
    cr_assert_eq(wf_kind_from_name("Loop"), -1);
    wf_destroy(&wf);
    cr_assert_null(wf);
    wf_destroy(&wf);
    wf_destroy(NULL);
}

/* --------------------------------------------------------------- limits */

static char *many_ops(int n, size_t *len) {
    sbuf b = {0};
    sb_add(&b, "{\"ops\":[");
    for (int i = 0; i < n; i++) sb_add(&b, "%s{\"id\":\"o%d\",\"type\":\"join\",\"parts\":\"x\"}", i ? "," : "", i);
    sb_add(&b, "]}");
    *len = b.n;
    return b.s;
}

static char *big_prompt(size_t text_bytes, size_t *len) {
    const char *head = "{\"ops\":[{\"id\":\"big\",\"type\":\"llm\",\"prompt\":\"";
    const char *tail = "\"}]}";
    size_t h = strlen(head), t = strlen(tail);
    char *s = malloc(h + text_bytes + t + 1);
    memcpy(s, head, h);
    memset(s + h, 'a', text_bytes);
    memcpy(s + h + text_bytes, tail, t + 1);
    *len = h + text_bytes + t;
    return s;
}

Test(workflow, limits) {
    size_t n;
    wf_t *wf = NULL;
    char *s = many_ops(WF_MAX_OPS, &n);
    cr_assert_eq(wf_parse_json(s, n, &wf), 0, "%s", he_msg());
    cr_assert_eq(wf->n_ops, WF_MAX_OPS);
    wf_destroy(&wf);
    free(s);
    s = many_ops(WF_MAX_OPS + 1, &n);
    cr_assert_eq(wf_parse_json(s, n, &wf), HE_ELIMIT, "%s", he_msg());
    free(s);

    s = big_prompt(WF_MAX_PROMPT_BYTES, &n);
    cr_assert_eq(wf_parse_json(s, n, &wf), 0, "%s", he_msg());
    wf_destroy(&wf);
    free(s);
    s = big_prompt(WF_MAX_PROMPT_BYTES + 1, &n);
    cr_assert_eq(wf_parse_json(s, n, &wf), HE_ELIMIT);
    cr_assert(strstr(he_msg(), "'big'"), "%s", he_msg());
    free(s);

    static const struct {
        const char *json;
        int code;
    } cases[] = {
        {OPS("{\"id\":\"m\",\"type\":\"map\",\"over\":\"input.q\",\"max_width\":4096,\"body\":" LLM("b", "{{item}}") "}"), 0},
        {OPS("{\"id\":\"m\",\"type\":\"map\",\"over\":\"input.q\",\"max_width\":4097,\"body\":" LLM("b", "{{item}}") "}"), HE_ELIMIT},
        {OPS("{\"id\":\"a\",\"type\":\"llm\",\"prompt\":\"x\",\"max_tokens\":32768}"), 0},
        {OPS("{\"id\":\"a\",\"type\":\"llm\",\"prompt\":\"x\",\"max_tokens\":32769}"), HE_ELIMIT},
        {OPS("{\"id\":\"a\",\"type\":\"llm\",\"prompt\":\"x\",\"max_tokens\":1e12}"), HE_ELIMIT},
        {OPS("{\"id\":\"l\",\"type\":\"loop\",\"max_rounds\":65,\"body\":[" LLM("b", "x") "]}"), HE_ELIMIT},
        {OPS("{\"id\":\"t\",\"type\":\"tool\",\"url\":\"http://x/\",\"max_response_bytes\":16777217}"), HE_ELIMIT},
        {OPS("{\"id\":\"a\",\"type\":\"llm\",\"prompt\":\"x\",\"stop\":[\"1\",\"2\",\"3\",\"4\",\"5\",\"6\",\"7\","
             "\"8\",\"9\",\"10\",\"11\",\"12\",\"13\",\"14\",\"15\",\"16\",\"17\"]}"), HE_ELIMIT},
    };
    for (size_t k = 0; k < sizeof cases / sizeof *cases; k++) {
        int rc = parse_str(cases[k].json, &wf);
        cr_expect_eq(rc, cases[k].code, "case %zu: %s (%s)", k, he_name(rc), he_msg());
        if (rc) cr_expect(strstr(he_msg(), "'"), "case %zu names the op: %s", k, he_msg());
        wf_destroy(&wf);
    }
    /* a whole document over WF_MAX_JSON_BYTES is refused before parsing */
    size_t big = (size_t)WF_MAX_JSON_BYTES + 1;
    char *sp = malloc(big);
    memset(sp, ' ', big);
    cr_assert_eq(wf_parse_json(sp, big, &wf), HE_ELIMIT);
    free(sp);
}

/* ----------------------------------------------------------- robustness */

static void parse_must_not_crash(const char *buf, size_t n) {
    char *copy = malloc(n ? n : 1); /* exact size: ASan catches any over-read */
    memcpy(copy, buf, n);
    wf_t *wf = (wf_t *)1;
    int rc = wf_parse_json(copy, n, &wf);
    cr_assert(rc <= 0 && rc >= HE_EUNKNOWN, "rc %d", rc);
    if (rc == 0) {
        cr_assert(wf && wf->valid);
        check_orders(wf);
        cr_assert_eq(wf_validate(wf), 0);
        wf_destroy(&wf);
    } else {
        cr_assert_null(wf);
        cr_assert(he_msg()[0], "every error has a message");
    }
    free(copy);
}

Test(workflow, truncations_never_crash) {
    for (size_t e = 0; e < N_GOOD; e++) {
        size_t n;
        char *b = read_example(good_examples[e], &n);
        for (size_t cut = 0; cut < n; cut++) parse_must_not_crash(b, cut);
        free(b);
    }
}

Test(workflow, mutations_never_crash) {
    static const char alphabet[] = "{}[]\":,.\\ 0123456789-eE+tfnul{{}}abxyz_\n";
    rng_state = 99;
    const char *more[] = {"bad_cycle.json", "bad_dangling.json"};
    for (size_t e = 0; e < N_GOOD + 2; e++) {
        size_t n;
        char *b = read_example(e < N_GOOD ? good_examples[e] : more[e - N_GOOD], &n);
        char *m = malloc(n + 8);
        for (int iter = 0; iter < 400; iter++) {
            memcpy(m, b, n);
            size_t len = n;
            int edits = 1 + (int)(rnd() % 4);
            for (int k = 0; k < edits; k++) {
                size_t at = rnd() % len;
                switch (rnd() % 4) {
                case 0: m[at] = alphabet[rnd() % (sizeof alphabet - 1)]; break; /* replace */
                case 1: m[at] = (char)(rnd() & 0xff); break;                     /* any byte */
                case 2:                                                          /* delete */
                    memmove(m + at, m + at + 1, len - at - 1);
                    len--;
                    break;
                default: /* duplicate a byte */
                    if (len < n + 8) {
                        memmove(m + at + 1, m + at, len - at);
                        len++;
                    }
                    break;
                }
                if (len < 2) break;
            }
            parse_must_not_crash(m, len);
        }
        free(m);
        free(b);
    }
}

/* ------------------------------------------------------- wf_proto (wire) */

/* wire/wf_proto converts wf_t <-> Helium__Workflow (every test links the
 * wire library). */
#include "werr.h"
#include "wf_proto.h"

static void same_tmpl(const wf_tmpl *a, const wf_tmpl *b) {
    cr_assert_eq(a->n, b->n);
    cr_assert_eq(a->bytes, b->bytes);
    for (size_t k = 0; k < a->n; k++) {
        cr_assert_eq(a->v[k].kind, b->v[k].kind);
        cr_assert_eq(a->v[k].ref, b->v[k].ref);
        if (a->v[k].s) cr_assert_str_eq(a->v[k].s, b->v[k].s);
        else cr_assert_null(b->v[k].s);
    }
}

static void same_str(const char *a, const char *b) {
    if (a) cr_assert_str_eq(a, b ? b : "(null)");
    else cr_assert_null(b);
}

static void same_wf(const wf_t *a, const wf_t *b) {
    same_str(a->name, b->name);
    same_str(a->output_id, b->output_id);
    cr_assert_eq(a->n_inputs, b->n_inputs);
    for (size_t i = 0; i < a->n_inputs; i++) {
        same_str(a->inputs[i].name, b->inputs[i].name);
        cr_assert_eq(a->inputs[i].has_default, b->inputs[i].has_default);
        same_str(a->inputs[i].def, b->inputs[i].def);
        same_str(a->inputs[i].description, b->inputs[i].description);
    }
    cr_assert_eq(a->n_allow_hosts, b->n_allow_hosts);
    cr_assert_eq(a->n_ops, b->n_ops);
    cr_assert_eq(a->output, b->output);
    cr_assert_eq(a->n_order, b->n_order);
    for (size_t i = 0; i < a->n_order; i++) cr_assert_eq(a->order[i], b->order[i]);
    for (size_t i = 0; i < a->n_ops; i++) {
        const wf_op *x = a->ops[i], *y = b->ops[i];
        cr_assert_str_eq(x->id, y->id);
        cr_assert_eq(x->kind, y->kind);
        cr_assert_eq(x->parent, y->parent);
        cr_assert_eq(x->n_deps, y->n_deps);
        for (size_t k = 0; k < x->n_deps; k++) cr_assert_eq(x->deps[k], y->deps[k]);
        same_str(x->description, y->description);
        switch (x->kind) {
        case WF_LLM:
            same_tmpl(&x->llm.prompt, &y->llm.prompt);
            same_str(x->llm.model, y->llm.model);
            cr_assert_eq(x->llm.max_tokens, y->llm.max_tokens);
            cr_assert_eq(x->llm.sampling.temperature, y->llm.sampling.temperature);
            cr_assert_eq(x->llm.sampling.top_p, y->llm.sampling.top_p);
            cr_assert_eq(x->llm.sampling.top_k, y->llm.sampling.top_k);
            cr_assert_eq(x->llm.sampling.seed, y->llm.sampling.seed);
            cr_assert_eq(x->llm.n_stop, y->llm.n_stop);
            for (size_t k = 0; k < x->llm.n_stop; k++) cr_assert_str_eq(x->llm.stop[k], y->llm.stop[k]);
            break;
        case WF_TOOL:
            cr_assert_str_eq(x->tool.method, y->tool.method);
            same_tmpl(&x->tool.url, &y->tool.url);
            same_tmpl(&x->tool.body, &y->tool.body);
            cr_assert_eq(x->tool.n_headers, y->tool.n_headers);
            cr_assert_eq(x->tool.timeout_ms, y->tool.timeout_ms);
            cr_assert_eq(x->tool.max_response_bytes, y->tool.max_response_bytes);
            break;
        case WF_MAP:
            cr_assert_eq(x->map.over.kind, y->map.over.kind);
            cr_assert_str_eq(x->map.over.s, y->map.over.s);
            cr_assert_eq(x->map.over.ref, y->map.over.ref);
            cr_assert_eq(x->map.max_width, y->map.max_width);
            cr_assert_eq(x->map.split, y->map.split);
            cr_assert_eq(x->map.body, y->map.body);
            break;
        case WF_JOIN:
            same_tmpl(&x->join.parts, &y->join.parts);
            same_str(x->join.separator, y->join.separator);
            break;
        case WF_LOOP:
            same_str(x->loop.until_contains, y->loop.until_contains);
            same_str(x->loop.output_id, y->loop.output_id);
            cr_assert_eq(x->loop.max_rounds, y->loop.max_rounds);
            cr_assert_eq(x->loop.output, y->loop.output);
            break;
        default: cr_assert_fail();
        }
    }
}


Test(wf_proto, round_trip_examples) {
    for (size_t e = 0; e < N_GOOD; e++) {
        size_t n;
        char *b = read_example(good_examples[e], &n);
        wf_t *a = NULL, *c = NULL;
        cr_assert_eq(wf_parse_json(b, n, &a), 0, "%s", he_msg());
        Helium__Workflow *pb = NULL;
        cr_assert_eq(wfp_to_proto(a, &pb), 0, "%s", he_msg());
        cr_assert_eq(pb->protocol_version, HELIUM__PROTOCOL__PROTOCOL_CURRENT);
        size_t sz = helium__workflow__get_packed_size(pb);
        uint8_t *buf = malloc(sz);
        cr_assert_eq(helium__workflow__pack(pb, buf), sz);
        Helium__Workflow *un = helium__workflow__unpack(NULL, sz, buf);
        cr_assert(un);
        cr_assert_eq(wfp_from_proto(un, &c), 0, "%s: %s", good_examples[e], he_msg());
        same_wf(a, c);
        /* to_proto of the copy packs to the same bytes */
        Helium__Workflow *pb2 = NULL;
        cr_assert_eq(wfp_to_proto(c, &pb2), 0);
        size_t sz2 = helium__workflow__get_packed_size(pb2);
        uint8_t *buf2 = malloc(sz2);
        helium__workflow__pack(pb2, buf2);
        cr_assert_eq(sz, sz2);
        cr_assert_eq(memcmp(buf, buf2, sz), 0);
        /* deps travel as ids */
        if (e == 0) {
            const Helium__Operator *red = pb->ops[4];
            cr_assert_str_eq(red->id, "reduce");
            cr_assert_eq(red->n_deps, 4);
            cr_assert_str_eq(red->deps[0], "finance");
        }
        /* every truncation of the packed form either fails to unpack or converts cleanly */
        for (size_t cut = 0; cut < sz; cut += 7) {
            Helium__Workflow *t = helium__workflow__unpack(NULL, cut, buf);
            if (!t) continue;
            wf_t *w = NULL;
            int rc = wfp_from_proto(t, &w);
            cr_assert(rc <= 0);
            if (!rc) wf_destroy(&w);
            helium__workflow__free_unpacked(t, NULL);
        }
        free(b);
        free(buf);
        free(buf2);
        wfp_free(&pb);
        wfp_free(&pb2);
        cr_assert_null(pb);
        helium__workflow__free_unpacked(un, NULL);
        wf_destroy(&a);
        wf_destroy(&c);
    }
}

Test(wf_proto, zeros_mean_defaults_and_errors) {
    /* a hand-built message on the stack: one llm op, everything else unset */
    Helium__TemplatePart t = HELIUM__TEMPLATE_PART__INIT;
    t.part_case = HELIUM__TEMPLATE_PART__PART_TEXT;
    t.text = "hello";
    Helium__TemplatePart *tp[] = {&t};
    Helium__LlmOp llm = HELIUM__LLM_OP__INIT;
    llm.n_prompt = 1;
    llm.prompt = tp;
    Helium__Operator op = HELIUM__OPERATOR__INIT;
    op.id = "a";
    op.kind_case = HELIUM__OPERATOR__KIND_LLM;
    op.llm = &llm;
    Helium__Operator *ops[] = {&op};
    Helium__Workflow w = HELIUM__WORKFLOW__INIT;
    w.n_ops = 1;
    w.ops = ops;
    wf_t *wf = NULL;
    cr_assert_eq(wfp_from_proto(&w, &wf), 0, "%s", he_msg());
    cr_assert_eq(wf->ops[0]->llm.max_tokens, WF_DEFAULT_MAX_TOKENS);
    cr_assert_eq(wf->ops[0]->llm.sampling.top_p, 1.0f);
    cr_assert_null(wf->ops[0]->llm.model);
    wf_destroy(&wf);

    w.protocol_version = 2;
    cr_assert_eq(wfp_from_proto(&w, &wf), HE_EPROTO);
    cr_assert_eq(werr_code(HE_EPROTO), HELIUM__ERROR_CODE__ERROR_PROTOCOL);
    w.protocol_version = 1;

    op.kind_case = HELIUM__OPERATOR__KIND__NOT_SET;
    int rc = wfp_from_proto(&w, &wf);
    cr_assert_eq(rc, HE_EUNKNOWN);
    cr_assert(strstr(he_msg(), "'a'"), "%s", he_msg());
    cr_assert_str_eq(he_op(), "a");
    cr_assert_eq(werr_code(rc), HELIUM__ERROR_CODE__ERROR_UNKNOWN_OP);
    op.kind_case = HELIUM__OPERATOR__KIND_LLM;

    t.part_case = HELIUM__TEMPLATE_PART__PART_OP_REF;
    t.op_ref = "ghost";
    rc = wfp_from_proto(&w, &wf);
    cr_assert_eq(rc, HE_EREF);
    cr_assert_eq(werr_code(rc), HELIUM__ERROR_CODE__ERROR_DANGLING_REF);
    cr_assert(strstr(he_msg(), "ghost"));

    t.op_ref = "a";
    rc = wfp_from_proto(&w, &wf);
    cr_assert_eq(rc, HE_ECYCLE);
    cr_assert_eq(werr_code(rc), HELIUM__ERROR_CODE__ERROR_CYCLE);

    t.part_case = HELIUM__TEMPLATE_PART__PART_ITEM;
    t.item = 0;
    cr_assert_eq(wfp_from_proto(&w, &wf), HE_EFORMAT);

    /* map nested in map nested in map: too deep */
    Helium__MapOp m2 = HELIUM__MAP_OP__INIT, m1 = HELIUM__MAP_OP__INIT, m0 = HELIUM__MAP_OP__INIT;
    Helium__Operator o2 = HELIUM__OPERATOR__INIT, o1 = HELIUM__OPERATOR__INIT, o0 = HELIUM__OPERATOR__INIT;
    o0.id = "m"; o0.kind_case = HELIUM__OPERATOR__KIND_MAP; o0.map = &m0; m0.body = &o1;
    o1.kind_case = HELIUM__OPERATOR__KIND_MAP; o1.map = &m1; m1.body = &o2;
    o2.kind_case = HELIUM__OPERATOR__KIND_MAP; o2.map = &m2; m2.body = &o0; /* a loop in memory */
    ops[0] = &o0;
    rc = wfp_from_proto(&w, &wf);
    cr_assert_eq(rc, HE_EFORMAT, "%s", he_msg());
    cr_assert(strstr(he_msg(), "deep"), "%s", he_msg());
    cr_assert_null(wf);
}
