/* wfmsg: the `messages` form of an llm operator (workflow.h): adding messages,
 * freeing them, and deriving the op's prompt from them.
 *
 * Roles are checked here (system, user, assistant, tool; anything else is
 * HE_EUNKNOWN naming the op); contents are templates with the same syntax and
 * limits as a prompt.
 */
#ifndef HELIUM_WFMSG_H
#define HELIUM_WFMSG_H

#include <stddef.h>

#include "workflow.h"

#define WF_MAX_MESSAGES 256 /* messages per llm op */

/* Appends a message whose content is template source src (len bytes). */
int wfmsg_add(wf_op *op, const char *role, const char *src, size_t len);
/* Frees op's messages. */
void wfmsg_free(wf_op *op);
/* If op has messages: checks them and rebuilds op->llm.prompt from them
 * (sets prompt_derived). A prompt given as well is HE_EFORMAT. Idempotent. */
int wfmsg_derive(wf_op *op);

#endif
