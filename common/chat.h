/* chat: renders a list of chat messages into prompt text the way the model
 * expects, through its own chat template (GGUF tokenizer.chat_template,
 * Jinja, run by common/jinja.h), or a built-in one chosen by name.
 *
 * The rendered text holds the model's control tokens as text
 * ("<|im_start|>", "<start_of_turn>", ...): tokenize it with parse_special on
 * so they become those tokens, as llama.cpp's server does. Built-in templates
 * (chat_builtin_names) are the families' published Jinja templates, rendered
 * by the same interpreter: "chatml", "smollm2" (ChatML with SmolLM2's default
 * system message), "llama3", "llama2", "mistral", "gemma", "phi3". "model"
 * names the GGUF's own template.
 *
 * Errors: HE_EUNKNOWN for an unknown template name or an unknown role (roles
 * are system, user, assistant, tool), HE_ENOTFOUND for a model without a
 * template and no override, HE_EUNSUPPORTED / HE_EFORMAT for a template the
 * interpreter cannot parse, HE_EINVAL for raise_exception (e.g. roles that do
 * not alternate); the message always says which.
 */
#ifndef HELIUM_CHAT_H
#define HELIUM_CHAT_H

#include <stdbool.h>
#include <stddef.h>

#include "gguf.h"
#include "tokenizer.h"

typedef struct chat chat_t;

typedef struct {
    const char *role;    /* NUL-terminated */
    const char *content; /* NUL-terminated */
} chat_msg;

/* The chat renderer for a model: name NULL or "model" uses g's
 * tokenizer.chat_template, else the built-in template called name. tok gives
 * bos_token / eos_token. Returns 0 and *out, or a negative herr code. */
int chat_new(const gguf_t *g, const tok_t *tok, const char *name, chat_t **out);
void chat_destroy(chat_t **self_p);

/* "model" or the built-in's name. */
const char *chat_name(const chat_t *c);

/* Comma-separated names accepted by chat_new (for usage texts). */
const char *chat_builtin_names(void);

/* True for system, user, assistant and tool. */
bool chat_role_known(const char *role);

/* Renders msgs (n); add_generation_prompt appends the assistant turn's
 * opening. *out is malloc'd, NUL-terminated, *len bytes. */
int chat_render(const chat_t *c, const chat_msg *msgs, size_t n, bool add_generation_prompt, char **out,
                size_t *len);

/* Reads a chat from JSON text: an array of {"role", "content"} objects, or an
 * object with such an array under "messages". *msgs (n) and its strings are
 * one malloc'd block (free(*msgs)). HE_EFORMAT on bad shape, HE_EUNKNOWN on an
 * unknown role. */
int chat_parse_json(const char *text, size_t len, chat_msg **msgs, size_t *n);

#endif
