/* jrec: what the coordinator writes to its journal (journal.h) and how a
 * restarted coordinator rebuilds its jobs from it (docs/journal.md).
 *
 * Recorded: every accepted job (jobs hook job_new: its workflow, inputs,
 * policy, tag and stream flag as a JournalSubmit under its number), every
 * finished call (hook task_end: an llm or tool task's output, or its failure,
 * keyed by job, op, map item and loop round), and every cancel (hook job_end
 * of a CANCELED job). Joins, maps and loops are not recorded: they follow from
 * the calls' outputs.
 *
 * Replay (jrec_open): the jobs are submitted again in journal order under
 * their old numbers, then every ready call the journal has an outcome for is
 * completed from it (not recomputed) until none is left, which walks maps and
 * loops as far as the recorded calls reach; recorded cancels are applied;
 * the next job number continues after the highest one ever handed out. What
 * remains queued is dispatched as workers register, under new task ids.
 *
 * Acknowledgement: while appends wait for their sync (mode batch), replies to
 * clients are held (jrec_hold_reply) and released by jrec_before_sleep after
 * one fdatasync for the whole loop turn (group commit), so a client never
 * hears "accepted" about a job a crash could lose. A journal that cannot be
 * written or synced is fatal: held replies are dropped and jrec_before_sleep
 * returns the error (the loop stops; etcd does the same with its WAL).
 *
 * Compaction: when the file passes compact_bytes and has doubled since the
 * last compaction, it is rewritten with the records of the jobs the job table
 * still holds (evicted jobs go), behind a JournalMeta with the last number.
 */
#ifndef HELIUM_COORD_JREC_H
#define HELIUM_COORD_JREC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "jobs.h"
#include "journal.h"

typedef struct coord coord_t;
typedef struct jrec jrec_t;

typedef struct {
    const char *dir;
    jnl_fsync mode;
    uint64_t compact_bytes;    /* 0 = default (64 MiB) */
} jrec_config;

/* Opens the journal and replays it into c's jobs (c has no clients yet).
 * Returns 0 or a negative herr code (a corrupt journal: HE_EFORMAT). */
int jrec_open(coord_t *c, const jrec_config *cfg, jrec_t **out);
void jrec_destroy(jrec_t **self_p);

/* jobs hooks (no-ops while replaying). */
void jrec_job_new(jrec_t *r, const job_t *j);
void jrec_task_end(jrec_t *r, const job_task *t, const job_result *res, Helium__ErrorCode code, const char *msg);
void jrec_job_end(jrec_t *r, const job_t *j);

/* True while replies must wait for the next sync. */
bool jrec_holding(const jrec_t *r);
/* Keeps a packed reply (copied) for sock until the sync. */
void jrec_hold_reply(jrec_t *r, void *sock, const void *ident, size_t ident_len, bool delim, const void *data,
                     size_t len);
/* Before the loop sleeps: syncs, releases held replies, compacts when due.
 * Returns 0, or a negative herr code when the journal failed (fatal). */
int jrec_before_sleep(jrec_t *r, coord_t *c);

/* Counters for logs and metrics. */
void jrec_get_stats(const jrec_t *r, jnl_stats *out);

#endif
