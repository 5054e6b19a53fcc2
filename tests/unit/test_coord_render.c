/* Unit tests for coordinator/render.c: the bounded string buffer, template
 * rendering and map list splitting (suite "render"). No sockets, no model. */
#include <criterion/criterion.h>
#include <string.h>

#include "herr.h"
#include "render.h"
#include "workflow.h"

static char **items;
static uint32_t n_items;

static void split_ok(const char *text, wf_split mode, uint32_t max) {
    rnd_free_items(items, n_items);
    items = NULL;
    n_items = 0;
    int rc = rnd_split(text, strlen(text), mode, max, &items, &n_items);
    cr_assert_eq(rc, 0, "split of '%s' failed: %s", text, he_msg());
}

static void fini(void) {
    rnd_free_items(items, n_items);
    items = NULL;
    n_items = 0;
}

TestSuite(render, .fini = fini);

Test(render, sbuf_limit_keeps_what_fit) {
    sbuf b;
    sb_init(&b, 5);
    cr_assert_eq(sb_adds(&b, "abc"), 0);
    cr_assert_eq(sb_adds(&b, "def"), HE_ELIMIT);
    cr_assert_eq(sb_adds(&b, "de"), 0);
    size_t len;
    char *s = sb_take(&b, &len);
    cr_assert_str_eq(s, "abcde");
    cr_assert_eq(len, 5);
    free(s);
    /* an empty buffer still hands out a string */
    s = sb_take(&b, &len);
    cr_assert_str_eq(s, "");
    cr_assert_eq(len, 0);
    free(s);
}

Test(render, lines_trim_and_skip_blank) {
    split_ok("  alpha \n\n\t beta\r\n   \ngamma", WF_SPLIT_LINES, 10);
    cr_assert_eq(n_items, 3);
    cr_assert_str_eq(items[0], "alpha");
    cr_assert_str_eq(items[1], "beta");
    cr_assert_str_eq(items[2], "gamma");
}

Test(render, auto_takes_json_array) {
    split_ok(" [\"a b\", 3, {\"k\":[1,2]}, \"x\\ny\"] \n", WF_SPLIT_AUTO, 10);
    cr_assert_eq(n_items, 4);
    cr_assert_str_eq(items[0], "a b");
    cr_assert_str_eq(items[1], "3");
    cr_assert_str_eq(items[2], "{\"k\":[1,2]}");
    cr_assert_str_eq(items[3], "x\ny");
}

Test(render, auto_falls_back_to_lines) {
    /* an array followed by more text is not "a JSON array" */
    split_ok("[1, 2]\nthird line", WF_SPLIT_AUTO, 10);
    cr_assert_eq(n_items, 2);
    cr_assert_str_eq(items[0], "[1, 2]");
    cr_assert_str_eq(items[1], "third line");
    split_ok("{\"not\": \"an array\"}", WF_SPLIT_AUTO, 10);
    cr_assert_eq(n_items, 1);
}

Test(render, json_mode_rejects_non_array) {
    char **v = NULL;
    uint32_t n = 7;
    cr_assert_eq(rnd_split("a\nb", 3, WF_SPLIT_JSON, 10, &v, &n), HE_EFORMAT);
    cr_assert_null(v);
    cr_assert_eq(n, 0);
    cr_assert_eq(rnd_split("[1,", 3, WF_SPLIT_JSON, 10, &v, &n), HE_EFORMAT);
}

Test(render, width_limit) {
    char **v = NULL;
    uint32_t n = 0;
    cr_assert_eq(rnd_split("a\nb\nc", 5, WF_SPLIT_LINES, 2, &v, &n), HE_ELIMIT);
    cr_assert_null(v);
    cr_assert_eq(rnd_split("[1,2,3]", 7, WF_SPLIT_AUTO, 2, &v, &n), HE_ELIMIT);
    split_ok("a\nb", WF_SPLIT_LINES, 2);
    cr_assert_eq(n_items, 2);
}

Test(render, empty_list) {
    split_ok("", WF_SPLIT_AUTO, 4);
    cr_assert_eq(n_items, 0);
    split_ok("[]", WF_SPLIT_JSON, 4);
    cr_assert_eq(n_items, 0);
    split_ok(" \n \n", WF_SPLIT_LINES, 4);
    cr_assert_eq(n_items, 0);
}

/* Values for placeholders: inputs by name, ops as "<op:ID>", item "I", prev "P". */
static int fake_value(void *ctx, const wf_part *p, sbuf *out) {
    (void)ctx;
    switch (p->kind) {
    case WF_PART_INPUT: return sb_adds(out, "IN");
    case WF_PART_OP: sb_adds(out, "<op:"); sb_adds(out, p->s); return sb_adds(out, ">");
    case WF_PART_ITEM: return sb_adds(out, "I");
    case WF_PART_PREV: return sb_adds(out, "P");
    default: return HE_EINVAL;
    }
}

Test(render, template_parts_in_order) {
    wf_tmpl t = {0};
    const char *src = "a {{input.x}} b {{op.y}} \\{{lit}} {{item}}{{prev}}";
    cr_assert_eq(wf_tmpl_parse(&t, src, strlen(src), "t"), 0, "%s", he_msg());
    sbuf b;
    sb_init(&b, 1000);
    cr_assert_eq(rnd_template(&t, fake_value, NULL, &b), 0);
    cr_assert_str_eq(b.p, "a IN b <op:y> {{lit}} IP");
    sb_free(&b);
    /* the limit stops rendering with HE_ELIMIT */
    sb_init(&b, 6);
    cr_assert_eq(rnd_template(&t, fake_value, NULL, &b), HE_ELIMIT);
    sb_free(&b);
    for (size_t i = 0; i < t.n; i++) free(t.v[i].s);
    free(t.v);
}

Test(render, join_items) {
    char *v[] = {"x", "", "z"};
    sbuf b;
    sb_init(&b, 100);
    cr_assert_eq(rnd_join(v, 3, "--", 2, &b), 0);
    cr_assert_str_eq(b.p, "x----z");
    sb_free(&b);
}
