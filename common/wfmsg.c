/* wfmsg: see wfmsg.h. The derived prompt is unambiguous: each message opens
 * with "\x1e" ROLE "\x1f" (bytes that no role contains), so two different
 * chats never derive the same prompt. */
#define _POSIX_C_SOURCE 200809L /* strdup */
#include "wfmsg.h"

#include <stdlib.h>
#include <string.h>

#include "chat.h"
#include "herr.h"

static void tmpl_clear(wf_tmpl *t) {
    for (size_t i = 0; i < t->n; i++) free(t->v[i].s);
    free(t->v);
    memset(t, 0, sizeof *t);
}

int wfmsg_add(wf_op *op, const char *role, const char *src, size_t len) {
    const char *oid = op->id ? op->id : "?";
    if (op->kind != WF_LLM) return he_set(HE_EFORMAT, "op '%s': only llm ops have messages", oid);
    if (!chat_role_known(role))
        return he_set(HE_EUNKNOWN, "op '%s': message %zu has unknown role '%.40s' (system, user, assistant, tool)",
                      oid, op->llm.n_messages, role ? role : "");
    if (op->llm.n_messages >= WF_MAX_MESSAGES)
        return he_set(HE_ELIMIT, "op '%s': more than %d messages", oid, WF_MAX_MESSAGES);
    wf_msg *v = realloc(op->llm.messages, (op->llm.n_messages + 1) * sizeof *v);
    if (!v) return he_set(HE_ENOMEM, "out of memory");
    op->llm.messages = v;
    wf_msg *m = &v[op->llm.n_messages];
    memset(m, 0, sizeof *m);
    m->role = strdup(role);
    if (!m->role) return he_set(HE_ENOMEM, "out of memory");
    op->llm.n_messages++;
    return wf_tmpl_parse(&m->content, src ? src : "", src ? len : 0, oid);
}

void wfmsg_free(wf_op *op) {
    for (size_t i = 0; i < op->llm.n_messages; i++) {
        free(op->llm.messages[i].role);
        tmpl_clear(&op->llm.messages[i].content);
    }
    free(op->llm.messages);
    op->llm.messages = NULL;
    op->llm.n_messages = 0;
}

int wfmsg_derive(wf_op *op) {
    if (op->kind != WF_LLM || op->llm.n_messages == 0) return 0;
    const char *oid = op->id ? op->id : "?";
    if (op->llm.prompt.n && !op->llm.prompt_derived)
        return he_set(HE_EFORMAT, "op '%s': give either prompt or messages, not both", oid);
    tmpl_clear(&op->llm.prompt);
    op->llm.prompt_derived = true;
    int rc = 0;
    for (size_t i = 0; i < op->llm.n_messages && !rc; i++) {
        const wf_msg *m = &op->llm.messages[i];
        if (!chat_role_known(m->role))
            return he_set(HE_EUNKNOWN, "op '%s': message %zu has unknown role '%.40s' (system, user, assistant, tool)",
                          oid, i, m->role ? m->role : "");
        size_t rl = strlen(m->role);
        char *hdr = malloc(rl + 3);
        if (!hdr) return he_set(HE_ENOMEM, "out of memory");
        hdr[0] = '\x1e';
        memcpy(hdr + 1, m->role, rl);
        hdr[rl + 1] = '\x1f';
        hdr[rl + 2] = 0;
        rc = wf_tmpl_add(&op->llm.prompt, WF_PART_TEXT, hdr, rl + 2);
        free(hdr);
        for (size_t k = 0; k < m->content.n && !rc; k++) {
            const wf_part *p = &m->content.v[k];
            rc = wf_tmpl_add(&op->llm.prompt, p->kind, p->s, p->len);
        }
    }
    return rc;
}
