/* jobs_impl: PRIVATE to jobs (jobs.c: the table, admission, task events,
 * ending; jobs_flow.c: the workflow interpreter). Nothing else includes it;
 * the interface is jobs.h. Single-threaded (the coordinator's loop), so no
 * field has a lock.
 */
#ifndef HELIUM_COORD_JOBS_IMPL_H
#define HELIUM_COORD_JOBS_IMPL_H

#include "jobs.h"

struct jobs {
    jobs_config cfg;
    jobs_hooks hooks;
    job_t **by_num;         /* (cap_num) by_num[N-1] = job N, NULL once evicted */
    size_t cap_num;
    uint64_t last_num;      /* last job number handed out */
    size_t n_live;          /* non-NULL entries of by_num */
    uint64_t *fin;          /* (cfg.keep_finished) ring of finished job numbers, oldest at fin_head */
    size_t fin_head, fin_len;
    job_task *qhead, *qtail;
    size_t qlen;
    jobs_counts counts;
    size_t max_active;      /* jobs_set_max_active (0: no limit) */
    size_t n_started;       /* active jobs started (not parked) */
    job_t *park_head, *park_tail; /* parked jobs, oldest first */
    bool unparking;         /* inside unpark (a job ending there does not recurse) */
};

/* ---- defined in jobs.c */
char *jobs_dup_n(const char *s, size_t n);
/* QUEUED or RUNNING */
bool jobs_active(const job_t *j);
/* the wire code of a herr code */
Helium__ErrorCode jobs_code_of(int he);
/* the nearest op of kind k enclosing op i, or -1 */
int jobs_enclosing(const wf_t *wf, int i, wf_kind k);
/* op i lies (at any depth) in the body of op anc */
bool jobs_is_descendant(const wf_t *wf, int i, int anc);
/* queues t (at the front: a requeue) */
void jobs_q_push(jobs_t *js, job_task *t, bool front);
/* appends partial (or final: done) output of op (item) to j's chunks */
void jobs_emit(job_t *j, int op, uint32_t item, const char *text, size_t len, bool done);
void jobs_task_free(job_task *t);
void jobs_free_op_state(job_op *o);
/* ends an active job in state st (jobs.c says what it does) */
void jobs_finish(job_t *j, Helium__JobState st);
/* fails op i (and the map/loop ops enclosing it) and the job */
void jobs_fail_op(job_t *j, int i, Helium__ErrorCode code, const char *msg);

/* ---- defined in jobs_flow.c */
/* op i is DONE with output text (taken) */
void jobs_op_done(job_t *j, int i, char *text, size_t len);
/* every item of map m is done: its output is their join */
void jobs_map_finish(job_t *j, int m);
/* advances job j as far as it goes now; ends it when every top-level op is done */
void jobs_pump(job_t *j);

#endif /* HELIUM_COORD_JOBS_IMPL_H */
