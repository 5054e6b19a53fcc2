/* reply: builds the protobuf messages the coordinator sends to clients
 * (JobStatus, JobSummary, WorkerInfo, Error) from its own state, and packs
 * envelopes.
 *
 * Every message and string built here is allocated from an arena and freed
 * at once with rep_arena_free after packing; strings owned by jobs or workers
 * are borrowed, not copied, so a built message is valid only until the loop
 * changes that state (build, pack, free: all in one step).
 */
#ifndef HELIUM_COORD_REPLY_H
#define HELIUM_COORD_REPLY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "helium.pb-c.h"
#include "jobs.h"
#include "workers.h"

typedef struct {
    void **v;     /* (n) blocks to free */
    size_t n, cap;
    bool oom;     /* an allocation failed: the message is incomplete */
} rep_arena;

/* Zeroed memory owned by the arena (NULL and a->oom on failure). */
void *rep_alloc(rep_arena *a, size_t size);
char *rep_strdup(rep_arena *a, const char *s);
char *rep_printf(rep_arena *a, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void rep_arena_free(rep_arena *a);

/* An Error (op_id "" if none; wire/werr.h maps herr codes to code). */
Helium__Error *rep_error(rep_arena *a, Helium__ErrorCode code, const char *msg, const char *op_id);
/* outputs: include op output texts; partial chunks with seq > partial_after. */
Helium__JobStatus *rep_job_status(rep_arena *a, const job_t *j, bool outputs, uint64_t partial_after);
Helium__JobSummary *rep_job_summary(rep_arena *a, const job_t *j);
Helium__WorkerInfo *rep_worker_info(rep_arena *a, const wkr_t *w, bool counters);

/* Packs r (protocol_version set here) into a malloc'd buffer. */
int rep_pack(Helium__Reply *r, uint8_t **buf, size_t *len);

#endif
