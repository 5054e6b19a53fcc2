/* place: placement and dispatch of the coordinator's ready tasks.
 *
 * Before each sleep the loop calls place_dispatch_ready: helium's ready calls
 * first, in the prefix tree's order (opt_order), then the ready queue in FIFO
 * order. An LLM call is tokenized (once), offered to the optimizer's reuse
 * (result cache, identical call in flight: opt_reuses), placed by the
 * scheduler under its policy's rules (sched_decide), and sent as a Dispatch
 * with its pins (opt_pin_want) and pull hint; a tool call starts an HTTP
 * request (tools.h). Workers are reached only through c->send (wsend.h); the
 * optimizer's warm-ups and pins go through place_opt_io, which uses it too.
 * Nothing here tests a policy by name: each policy's rules live in sched.c
 * and opt.c.
 */
#ifndef HELIUM_COORD_PLACE_H
#define HELIUM_COORD_PLACE_H

#include "coord_impl.h"

/* Places every ready task that can run now. A failing task may end its job
 * and remove other queued tasks, so the walk restarts after each failure. */
void place_dispatch_ready(coord_t *c);
/* Followers whose dedup leader went away (canceled, failed) run on their own. */
void place_requeue_orphans(coord_t *c);

/* Fails task t (its job ends FAILED with code and msg). */
void place_fail_task(coord_t *c, job_task *t, Helium__ErrorCode code, const char *msg);
/* Forgets a task that leaves worker w: in-flight load, reserved pages and
 * the pending blocks it was to bring. */
void place_task_release(coord_t *c, wkr_t *w, job_task *t);

/* jobs hooks: a task aborted (cancel it where it runs), a task created
 * (the optimizing policies tokenize it now, for their prefix trees). */
void place_task_abort(coord_t *c, job_task *t);
void place_task_new(coord_t *c, job_task *t);
/* tools.h's completion callback (ctx is the coordinator). */
void place_tool_done(void *ctx, void *user, Helium__ErrorCode code, const char *body, size_t len);

/* The optimizer's sending (opt_io), through c->send. */
opt_io place_opt_io(coord_t *c);

#endif
