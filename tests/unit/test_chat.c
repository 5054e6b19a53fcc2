/* Unit tests for common/jinja (suite "jinja"), common/chat (suite "chat"),
 * the `messages` form of llm ops (common/wfmsg, suite "wfmsg") and the
 * coordinator's chat rendering (coordinator/render rnd_chat, rnd_chat_lower;
 * suite "rnd_chat").
 *
 * Expected renderings were produced by Python's jinja2 3.1 with the
 * environment transformers uses (trim_blocks, lstrip_blocks) from the same
 * template text; tests/conformance checks many more against llama.cpp's
 * tokenizer on the real models.
 */
#include <criterion/criterion.h>

#include <stdlib.h>
#include <string.h>

#include "chat.h"
#include "herr.h"
#include "jinja.h"
#include "render.h"
#include "wfmsg.h"
#include "workflow.h"

static const char *SMOL =
    "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}{{ '<|im_start|>system\\nYou "
    "are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\\n' }}{% endif %}{{'<|im_start|>' + "
    "message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n'}}{% endfor %}{% if add_generation_prompt "
    "%}{{ '<|im_start|>assistant\\n' }}{% endif %}";

static char *render(const char *tmpl, const jj_msg *m, size_t n, bool gen, int *rc) {
    jj_tmpl_t *t = NULL;
    *rc = jj_parse(tmpl, strlen(tmpl), &t);
    if (*rc) return NULL;
    jj_chat_vars v = {.messages = m, .n_messages = n, .add_generation_prompt = gen, .bos_token = "<s>", .eos_token = "</s>"};
    char *out = NULL;
    size_t len = 0;
    *rc = jj_render_chat(t, &v, &out, &len);
    if (!*rc) cr_assert_eq(strlen(out), len);
    jj_destroy(&t);
    cr_assert_null(t);
    return out;
}

static void expect(const char *tmpl, const jj_msg *m, size_t n, bool gen, const char *want) {
    int rc;
    char *got = render(tmpl, m, n, gen, &rc);
    cr_assert_eq(rc, 0, "render failed: %s", he_msg());
    cr_assert_str_eq(got, want);
    free(got);
}

static const jj_msg SYS_USER[] = {{"system", "Be brief."}, {"user", "  Hi \n"}};

Test(jinja, smollm2_template_with_and_without_system) {
    expect(SMOL, SYS_USER, 2, true,
           "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\n  Hi \n<|im_end|>\n<|im_start|>assistant\n");
    expect(SMOL, SYS_USER + 1, 1, false,
           "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n"
           "<|im_start|>user\n  Hi \n<|im_end|>\n");
}

Test(jinja, whitespace_control_trim_and_lstrip_blocks) {
    const char *t = "  {% for m in messages %}\n    {{ m.role }}: {{ m.content|trim }}\n  {% endfor %}\n"
                    "{% if add_generation_prompt %}\n  GEN\n{% endif %}\n";
    expect(t, SYS_USER, 2, true, "    system: Be brief.\n    user: Hi\n  GEN\n");
    expect("a  {%- if true -%}  b  {%- endif %}\n\nc{# note #}d", NULL, 0, false, "ab\ncd");
}

Test(jinja, expressions_filters_tests_and_namespaces) {
    const char *t =
        "{% set ns = namespace(n=0) %}{% for m in messages if m.role != 'system' %}{% set ns.n = ns.n + 1 %}"
        "{{ loop.index }}/{{ loop.length }}{{ m.content[1:] }}{{ m.content[::-1] }}{{ m.content|length }}{% endfor %}"
        "{{ ns.n }}{{ messages|length > 2 }}{{ 7 // 2 }}{{ -7 % 3 }}{{ 'x' ~ 3 ~ true }}{{ [1,2,'a'] }}"
        "{{ {'a': none} }}{{ 3.0 }}{{ 1/4 }}{{ 'abc'.upper() }}{{ messages[0].role if messages else 'none' }}"
        "{{ messages|selectattr('role','equalto','user')|list|length }}{{ messages|map(attribute='role')|join(',') }}"
        "{{ 'a b  c'.split()|join('-') }}{{ 'k=v'.split('=')[1] }}{{ x is defined }}"
        "{{ (messages|last).content if messages else '' }}{{ 'y' * 3 }}{% if 'u' in 'user' and not false %}IN{% endif %}"
        "{{ range(3)|list }}{{ 'Hello'|lower|title }}{{ '  s '|trim }}{{ 2 * 1 if false else 'q' }}";
    expect(t, SYS_USER, 2, true,
           "1/1 Hi \n\n iH  61False32x3True[1, 2, 'a']{'a': None}3.00.25ABCsystem1system,usera-b-cvFalse  Hi \n"
           "yyyIN[0, 1, 2]Hellosq");
}

Test(jinja, errors_are_typed_and_name_the_line) {
    int rc;
    const jj_msg m[] = {{"user", "a"}, {"user", "b"}};
    cr_assert_null(render("{% macro f() %}x{% endmacro %}", m, 1, true, &rc));
    cr_assert_eq(rc, HE_EUNSUPPORTED);
    cr_assert_null(render("{% if x %}never closed", m, 1, true, &rc));
    cr_assert_eq(rc, HE_EFORMAT);
    cr_assert_null(render("line\n{{ 'x' | nosuchfilter }}", m, 1, true, &rc));
    cr_assert_eq(rc, HE_EUNSUPPORTED);
    cr_assert(strstr(he_msg(), "line 2") && strstr(he_msg(), "nosuchfilter"), "%s", he_msg());
    cr_assert_null(render("{{ 'unclosed }}", m, 1, true, &rc));
    cr_assert_eq(rc, HE_EFORMAT);
    cr_assert_null(render("{{ raise_exception('roles must alternate') }}", m, 2, true, &rc));
    cr_assert_eq(rc, HE_EINVAL);
    cr_assert(strstr(he_msg(), "roles must alternate"), "%s", he_msg());
    cr_assert_null(render("{{ 1 + 'a' }}", m, 1, true, &rc));
    cr_assert_eq(rc, HE_EINVAL);
    /* unbounded work is refused, not run */
    cr_assert_null(render("{% for i in range(90000) %}{% for j in range(90000) %}{% endfor %}{% endfor %}", m, 1, true, &rc));
    cr_assert_eq(rc, HE_ELIMIT);
}

Test(chat, builtins_render_their_family_format) {
    chat_t *c = NULL;
    cr_assert_eq(chat_new(NULL, NULL, "gemma", &c), 0, "%s", he_msg());
    cr_assert_str_eq(chat_name(c), "gemma");
    const chat_msg m[] = {{"system", "Be brief."}, {"user", "  Hi \n"}};
    char *out = NULL;
    size_t len = 0;
    cr_assert_eq(chat_render(c, m, 2, true, &out, &len), 0, "%s", he_msg());
    /* no tokenizer: bos_token is "" */
    cr_assert_str_eq(out, "<start_of_turn>user\nBe brief.\n\nHi<end_of_turn>\n<start_of_turn>model\n");
    free(out);
    /* gemma refuses roles that do not alternate, as its template says */
    const chat_msg bad[] = {{"user", "a"}, {"user", "b"}};
    cr_assert_eq(chat_render(c, bad, 2, true, &out, &len), HE_EINVAL);
    cr_assert(strstr(he_msg(), "alternate"), "%s", he_msg());
    chat_destroy(&c);
    cr_assert_null(c);

    cr_assert_eq(chat_new(NULL, NULL, "chatml", &c), 0);
    cr_assert_eq(chat_render(c, m, 2, false, &out, &len), 0);
    cr_assert_str_eq(out, "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\n  Hi \n<|im_end|>\n");
    free(out);
    chat_destroy(&c);
    cr_assert_eq(chat_new(NULL, NULL, "llama3", &c), 0);
    cr_assert_eq(chat_render(c, m, 2, true, &out, &len), 0);
    cr_assert_str_eq(out, "<|start_header_id|>system<|end_header_id|>\n\nBe brief.<|eot_id|><|start_header_id|>user"
                          "<|end_header_id|>\n\nHi<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n");
    free(out);
    chat_destroy(&c);
}

Test(chat, unknown_template_unknown_role_and_missing_template_are_typed) {
    chat_t *c = NULL;
    cr_assert_eq(chat_new(NULL, NULL, "vicuna-v9", &c), HE_EUNKNOWN);
    cr_assert(strstr(he_msg(), "vicuna-v9") && strstr(he_msg(), "chatml"), "%s", he_msg());
    cr_assert_null(c);
    cr_assert_eq(chat_new(NULL, NULL, NULL, &c), HE_ENOTFOUND); /* no model template, no name */
    cr_assert_eq(chat_new(NULL, NULL, "model", &c), HE_ENOTFOUND);
    cr_assert_eq(chat_new(NULL, NULL, "phi3", &c), 0);
    const chat_msg m[] = {{"wizard", "abracadabra"}};
    char *out = NULL;
    size_t len;
    cr_assert_eq(chat_render(c, m, 1, true, &out, &len), HE_EUNKNOWN);
    cr_assert(strstr(he_msg(), "wizard"), "%s", he_msg());
    cr_assert_null(out);
    chat_destroy(&c);
}

Test(chat, parse_json) {
    chat_msg *m = NULL;
    size_t n = 0;
    const char *ok = "{\"messages\": [{\"role\": \"system\", \"content\": \"s\"}, {\"role\": \"user\", \"content\": \"u\"}]}";
    cr_assert_eq(chat_parse_json(ok, strlen(ok), &m, &n), 0, "%s", he_msg());
    cr_assert_eq(n, 2);
    cr_assert_str_eq(m[1].role, "user");
    cr_assert_str_eq(m[1].content, "u");
    free(m);
    const char *arr = "[{\"role\": \"assistant\", \"content\": \"\"}]";
    cr_assert_eq(chat_parse_json(arr, strlen(arr), &m, &n), 0);
    cr_assert_eq(n, 1);
    free(m);
    const char *badrole = "[{\"role\": \"narrator\", \"content\": \"x\"}]";
    cr_assert_eq(chat_parse_json(badrole, strlen(badrole), &m, &n), HE_EUNKNOWN);
    const char *shape = "[{\"role\": \"user\"}]";
    cr_assert_eq(chat_parse_json(shape, strlen(shape), &m, &n), HE_EFORMAT);
    cr_assert_eq(chat_parse_json("nope", 4, &m, &n), HE_EFORMAT);
}

/* ------------------------------------------------------------------ workflow messages */

static const char *WF =
    "{\"name\": \"w\", \"inputs\": [{\"name\": \"store\"}], \"ops\": ["
    "{\"id\": \"a\", \"type\": \"llm\", \"prompt\": \"say {{input.store}}\"},"
    "{\"id\": \"b\", \"type\": \"llm\", \"messages\": ["
    "  {\"role\": \"system\", \"content\": \"You watch stores.\"},"
    "  {\"role\": \"user\", \"content\": \"Store {{input.store}}: {{op.a}}\"}]}]}";

Test(wfmsg, messages_parse_derive_and_depend) {
    wf_t *wf = NULL;
    cr_assert_eq(wf_parse_json(WF, strlen(WF), &wf), 0, "%s", he_msg());
    const wf_op *b = wf->ops[wf_find(wf, "b")];
    cr_assert_eq(b->llm.n_messages, 2);
    cr_assert_str_eq(b->llm.messages[0].role, "system");
    cr_assert(b->llm.prompt_derived);
    cr_assert_eq(b->n_deps, 1); /* {{op.a}} inside a message */
    cr_assert_eq(b->deps[0], wf_find(wf, "a"));
    cr_assert_eq(b->llm.messages[1].content.v[1].kind, WF_PART_INPUT); /* contents are resolved too */
    cr_assert_eq(b->llm.messages[1].content.v[1].ref, wf_find_input(wf, "store"));
    cr_assert_eq(b->llm.messages[1].content.v[3].ref, wf_find(wf, "a"));
    cr_assert_eq(wf_validate(wf), 0); /* idempotent */
    cr_assert_eq(b->llm.prompt.n, 4); /* "\x1esystem\x1fYou watch stores.\x1euser\x1fStore ", input, ": ", op */
    cr_assert_eq(b->llm.prompt.v[1].kind, WF_PART_INPUT);
    wf_destroy(&wf);
}

Test(wfmsg, bad_messages_are_typed) {
    wf_t *wf = NULL;
    const char *role = "{\"ops\": [{\"id\": \"x\", \"type\": \"llm\", \"messages\": [{\"role\": \"oracle\", \"content\": \"hi\"}]}]}";
    cr_assert_eq(wf_parse_json(role, strlen(role), &wf), HE_EUNKNOWN);
    cr_assert(strstr(he_msg(), "oracle") && strstr(he_msg(), "'x'"), "%s", he_msg());
    const char *both = "{\"ops\": [{\"id\": \"x\", \"type\": \"llm\", \"prompt\": \"p\", "
                       "\"messages\": [{\"role\": \"user\", \"content\": \"hi\"}]}]}";
    cr_assert_eq(wf_parse_json(both, strlen(both), &wf), HE_EFORMAT);
    const char *empty = "{\"ops\": [{\"id\": \"x\", \"type\": \"llm\", \"messages\": []}]}";
    cr_assert_eq(wf_parse_json(empty, strlen(empty), &wf), HE_EFORMAT);
    const char *shape = "{\"ops\": [{\"id\": \"x\", \"type\": \"llm\", \"messages\": [{\"role\": \"user\"}]}]}";
    cr_assert_eq(wf_parse_json(shape, strlen(shape), &wf), HE_EFORMAT);
    const char *sp = "{\"ops\": [{\"id\": \"x\", \"type\": \"llm\", \"prompt\": \"p\", \"special_tokens\": \"no\"}]}";
    cr_assert_eq(wf_parse_json(sp, strlen(sp), &wf), HE_EFORMAT);
    const char *sp2 = "{\"ops\": [{\"id\": \"x\", \"type\": \"llm\", \"prompt\": \"p\", \"special_tokens\": false}]}";
    cr_assert_eq(wf_parse_json(sp2, strlen(sp2), &wf), 0);
    cr_assert(wf->ops[0]->llm.no_special);
    wf_destroy(&wf);
}

/* ------------------------------------------------------------------ coordinator rendering */

typedef struct {
    const wf_t *wf;
} vals;

static int value(void *ctx, const wf_part *p, sbuf *out) {
    (void)ctx;
    if (p->kind == WF_PART_INPUT) return sb_adds(out, " Lyon \n"); /* edge whitespace: a trimming template changes it */
    if (p->kind == WF_PART_OP) return sb_adds(out, "sales up");
    return sb_adds(out, "?");
}

/* The lowered prompt, rendered with the same values, equals the exact chat
 * when the template passes contents through (SmolLM2's); with a template that
 * trims (gemma) the exact render differs, which is why tasks use rnd_chat. */
Test(rnd_chat, exact_render_and_planner_template) {
    wf_t *wf = NULL;
    cr_assert_eq(wf_parse_json(WF, strlen(WF), &wf), 0, "%s", he_msg());
    wf_op *b = wf->ops[wf_find(wf, "b")];
    const char *names[] = {"smollm2", "gemma"};
    for (int k = 0; k < 2; k++) {
        chat_t *c = NULL;
        cr_assert_eq(chat_new(NULL, NULL, names[k], &c), 0);
        char *exact = NULL;
        size_t len = 0;
        cr_assert_eq(rnd_chat(c, b, value, NULL, 1 << 20, &exact, &len), 0, "%s", he_msg());
        cr_assert_eq(wf_validate(wf), 0); /* back to the derived prompt */
        cr_assert_eq(rnd_chat_lower(c, wf), 0, "%s", he_msg());
        sbuf sb;
        sb_init(&sb, 1 << 20);
        cr_assert_eq(rnd_template(&b->llm.prompt, value, NULL, &sb), 0);
        if (k == 0) {
            cr_assert_str_eq(exact, "<|im_start|>system\nYou watch stores.<|im_end|>\n<|im_start|>user\nStore  Lyon \n"
                                    ": sales up<|im_end|>\n<|im_start|>assistant\n");
            cr_assert_str_eq(sb.p, exact);
        } else {
            cr_assert_str_eq(exact, "<start_of_turn>user\nYou watch stores.\n\nStore  Lyon \n: sales up<end_of_turn>\n"
                                    "<start_of_turn>model\n");
            cr_assert(strstr(sb.p, "<start_of_turn>user\nYou watch stores.\n\nStore "), "%s", sb.p);
        }
        /* every placeholder survived lowering with its reference resolved */
        size_t ph = 0;
        for (size_t i = 0; i < b->llm.prompt.n; i++)
            if (b->llm.prompt.v[i].kind != WF_PART_TEXT) {
                ph++;
                cr_assert_geq(b->llm.prompt.v[i].ref, 0);
            }
        cr_assert_eq(ph, 2);
        sb_free(&sb);
        free(exact);
        chat_destroy(&c);
    }
    /* no chat template: a typed error naming the op */
    cr_assert_eq(rnd_chat_lower(NULL, wf), HE_ENOTFOUND);
    cr_assert_str_eq(he_op(), "b");
    wf_destroy(&wf);
}
