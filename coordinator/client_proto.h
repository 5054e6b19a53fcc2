/* client_proto: the coordinator's side of the client protocol.
 *
 * Every Request frame gets exactly one Reply carrying its request_id (typed
 * Error on failure; request_id 0 if the frame did not parse), except
 * SubmitJob with wait: its client gets JobAccepted with more = true at once,
 * becomes a waiter on the job and is pushed the final JobStatus (outputs
 * included) when the job ends; with stream it also gets partial JobStatus
 * replies (more = true) as text is generated, sent before the loop sleeps
 * (cp_flush_streams). Nothing is polled. A job keeps at most
 * COORD_MAX_WAITERS waiters; the waiters hang off job->user and are answered
 * and freed by the job_end hook (cp_job_end), so none outlives its job.
 */
#ifndef HELIUM_COORD_CLIENT_PROTO_H
#define HELIUM_COORD_CLIENT_PROTO_H

#include "coord_impl.h"

/* One request frame from the client with ROUTER identity ident (delim: it
 * came after an empty delimiter frame, REQ style; the reply echoes one). */
void cp_on_frame(coord_t *c, const uint8_t *ident, size_t ident_len, bool delim, const uint8_t *data, size_t len);
/* Sends pending partial output to streaming waiters (before sleep). */
void cp_flush_streams(coord_t *c);
/* jobs hooks: j ended (answer and free its waiters); j has new partial
 * output (queue it for cp_flush_streams if a waiter streams). */
void cp_job_end(coord_t *c, job_t *j);
void cp_job_progress(coord_t *c, job_t *j);
/* Frees j's waiters without answering them (shutdown). */
void cp_waiters_free(coord_t *c, job_t *j);

#endif
