/* render: text building blocks of job execution, free of any state.
 *
 *  - sbuf: a growable byte buffer with a hard size limit. Appends past the
 *    limit fail with HE_ELIMIT (the buffer keeps what fit); the contents are
 *    always NUL-terminated.
 *  - rnd_template: renders a workflow template (common/workflow.h) by
 *    concatenating its literal text with the values of its placeholders,
 *    which a caller-supplied function appends.
 *  - rnd_split: cuts a map's list text into items (JSON array or lines).
 *  - rnd_chat: renders an llm op's chat messages (each content a template)
 *    through the model's chat template (common/chat.h), exactly as the model
 *    expects; rnd_chat_lower gives the planner the same chat as one prompt
 *    template (the placeholders kept), so prefixes shared by tasks (system
 *    message, shared context) are seen before the values are known.
 *
 * Work is linear in the bytes produced; nothing here allocates without a bound.
 */
#ifndef HELIUM_COORD_RENDER_H
#define HELIUM_COORD_RENDER_H

#include <stddef.h>
#include <stdint.h>

#include "chat.h"
#include "workflow.h"

typedef struct {
    char *p;       /* (len + 1) bytes, NUL-terminated; NULL until the first append */
    size_t len, cap;
    size_t limit;  /* most bytes it may hold */
} sbuf;

void sb_init(sbuf *b, size_t limit);
/* Appends n bytes of s. HE_ELIMIT past the limit, HE_ENOMEM. */
int sb_add(sbuf *b, const char *s, size_t n);
int sb_adds(sbuf *b, const char *s);
/* Hands the contents (never NULL, NUL-terminated) to the caller and resets b. */
char *sb_take(sbuf *b, size_t *len);
void sb_free(sbuf *b);

/* Appends the value of placeholder p (kind INPUT, OP, ITEM or PREV) to out;
 * returns 0 or a negative herr code. */
typedef int (*rnd_value_fn)(void *ctx, const wf_part *p, sbuf *out);

/* Renders t into out: TEXT parts verbatim, others through value(). Returns 0,
 * or the first error (HE_ELIMIT when out's limit is reached). */
int rnd_template(const wf_tmpl *t, rnd_value_fn value, void *ctx, sbuf *out);

/* Splits text[0..len) into items by mode:
 *   LINES: one item per line ('\n'), trimmed of spaces, tabs and '\r'; blank
 *          lines are skipped.
 *   JSON:  a JSON array (surrounding whitespace allowed); string elements
 *          as-is, other elements as compact JSON text. Anything else: HE_EFORMAT.
 *   AUTO:  JSON if the text parses as a JSON array, else LINES.
 * More than max_items items: HE_ELIMIT. On success *items is a malloc'd array
 * of *n malloc'd NUL-terminated strings (free with rnd_free_items). */
int rnd_split(const char *text, size_t len, wf_split mode, uint32_t max_items, char ***items,
              uint32_t *n);
void rnd_free_items(char **items, uint32_t n);

/* Renders op's messages: each content through value() (as rnd_template), then
 * the chat through chat with the generation prompt. *out is malloc'd, *len
 * bytes, at most limit (else HE_ELIMIT). chat NULL: HE_ENOTFOUND. */
int rnd_chat(const chat_t *chat, const wf_op *op, rnd_value_fn value, void *ctx, size_t limit, char **out,
             size_t *len);

/* Replaces the derived prompt of every llm op with messages in wf by the chat
 * as chat renders it, each placeholder kept as a placeholder (the contents are
 * rendered with a marker in place of each placeholder, and the output is cut
 * at the markers). The result is the planner's view; tasks still render with
 * rnd_chat, so a template that changes a value (trim at an edge) stays exact.
 * An op whose markers do not come through once each keeps its derived prompt.
 * Errors (the op named via he_set_op): HE_ENOTFOUND when chat is NULL and an
 * op has messages, and chat_render's (an unknown role, raise_exception). */
int rnd_chat_lower(const chat_t *chat, wf_t *wf);

/* Appends items joined by sep (sep_len bytes) to out. */
int rnd_join(char *const *items, uint32_t n, const char *sep, size_t sep_len, sbuf *out);

#endif
