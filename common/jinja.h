/* jinja: an interpreter of the Jinja subset that model chat templates
 * (tokenizer.chat_template) use, so a chat renders exactly as transformers'
 * apply_chat_template and llama.cpp's `--jinja` render it.
 *
 * Environment as transformers sets it: trim_blocks and lstrip_blocks on,
 * keep_trailing_newline off. Supported: {{ }}, {% %}, {# #} with `-`
 * whitespace control; if/elif/else, for (loop.index, index0, first, last,
 * length, revindex, revindex0, previtem, nextitem; `for a, b in`, `else`,
 * an `if` filter), set (names and namespace attributes), `generation` markers;
 * literals, lists, dicts, attribute/index/slice access, calls, ternaries,
 * and/or/not, comparisons, in, is-tests, + - * / // % ~; filters trim,
 * length, count, upper, lower, capitalize, title, default, first, last,
 * join, tojson, string, int, float, list, replace, items, reverse,
 * selectattr, rejectattr, map(attribute=); string and dict methods; the
 * globals raise_exception, range and namespace. Anything else (macros,
 * includes, raw, unknown filters) is an error naming it: a template is never
 * half rendered.
 *
 * Work and memory are bounded: a render stops with HE_ELIMIT after
 * JJ_MAX_STEPS evaluation steps or JJ_MAX_OUT output bytes.
 */
#ifndef HELIUM_JINJA_H
#define HELIUM_JINJA_H

#include <stdbool.h>
#include <stddef.h>

#define JJ_MAX_STEPS 2000000
#define JJ_MAX_OUT (4u << 20)
#define JJ_MAX_SRC (1u << 20) /* template source bytes */

typedef struct jj_tmpl jj_tmpl_t;

/* Parses src[0..len). 0 and *out, or HE_EFORMAT / HE_EUNSUPPORTED / HE_ELIMIT
 * with he_msg() naming the line. */
int jj_parse(const char *src, size_t len, jj_tmpl_t **out);
void jj_destroy(jj_tmpl_t **self_p);

/* One chat message: role and content, NUL-terminated UTF-8. */
typedef struct {
    const char *role;
    const char *content;
} jj_msg;

typedef struct {
    const jj_msg *messages; /* (n_messages) */
    size_t n_messages;
    bool add_generation_prompt;
    const char *bos_token; /* "" if the model has none */
    const char *eos_token;
} jj_chat_vars;

/* Renders t with the variables transformers passes to a chat template
 * (messages, add_generation_prompt, bos_token, eos_token). On success *out is
 * a malloc'd NUL-terminated string of *out_len bytes. Errors: HE_EINVAL for
 * raise_exception (its message in he_msg()) and type errors, HE_ELIMIT,
 * HE_ENOMEM. */
int jj_render_chat(const jj_tmpl_t *t, const jj_chat_vars *v, char **out, size_t *out_len);

#endif
