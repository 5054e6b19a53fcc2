/* jobs: the coordinator's job table and workflow execution, free of sockets.
 *
 * A job runs one validated workflow (common/workflow.h) with its input
 * values. Ops start when their deps (same-scope ops) are done:
 *   llm  -> render the prompt -> one task (placed by the scheduler on a worker)
 *   tool -> render url and body -> one task (run by the tool runner)
 *   join -> render now; done at once
 *   map  -> split its list into items; one task per item (or an immediate
 *           render for a join body); output = the items' outputs joined "\n"
 *   loop -> runs its body scope round after round ({{prev}} = the previous
 *           round's output) until the round's output contains until_contains
 *           or max_rounds rounds ran; output = the last round's output.
 * The job is DONE when every top-level op is done; its output is the
 * workflow's output op. The first failing op fails the job (FAILED, with that
 * op's error); cancel makes it CANCELED. Either way every started task is
 * handed to hooks.task_abort (stop it remotely) and freed, running ops become
 * CANCELED and waiting ones SKIPPED.
 *
 * Tasks: a ready task sits in one FIFO (jobs_ready_*) until the caller starts
 * it (jobs_task_start: worker, task_id, attempt+1). A task is finished by
 * exactly one of jobs_task_done / jobs_task_fail, or requeued (its worker was
 * lost). Results are matched to the live task by (job, op, item) plus the
 * task_id; anything else is stale and ignored by the caller.
 *
 * Plans (jobs_submit_planned, from the workflow optimizer): a pruned op never
 * runs (it becomes SKIPPED and counts as settled for its scope); an aliased
 * top-level op waits for the op it aliases (an identical computation) and
 * copies its output instead of running. cp/start are per-op scheduling
 * priorities the caller may read back.
 *
 * Memory: jobs keep their outputs until evicted; at most keep_finished
 * finished jobs are kept (oldest evicted first); running jobs never are.
 * Job ids are "job-N", N = 1, 2, ...; lookups are O(1).
 *
 * Single-threaded: the coordinator's loop owns it. Hooks run synchronously
 * inside the call that caused them and must not call back into jobs_* except
 * the read-only accessors.
 */
#ifndef HELIUM_COORD_JOBS_H
#define HELIUM_COORD_JOBS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "chat.h"
#include "helium.pb-c.h"
#include "workflow.h"

#define JOBS_MAX_TEXT (8u << 20)       /* bytes of one rendered prompt, url, body or output */
#define JOBS_MAX_INPUT (16u << 20)     /* bytes of one job input value */
#define JOBS_MAX_CHUNKS 1024           /* partial-output chunks kept per job (oldest dropped) */
#define JOBS_MAX_CHUNK_BYTES (1u << 20) /* bytes of partial text kept per job */
#define JOBS_ID_LEN 32

typedef struct job job_t;
typedef struct job_task job_task;
typedef struct jobs jobs_t;
typedef struct job_result job_result;

typedef enum { JT_LLM = 1, JT_TOOL = 2 } job_task_kind;

/* One unit of remote work: an llm call or a tool call, for an op or a map item. */
struct job_task {
    job_t *job;
    int op;                 /* index in wf->ops of the op to run (a map's body op for items) */
    int map;                /* index of the enclosing map op, or -1 */
    uint32_t item;          /* map item index (0 outside maps) */
    uint32_t round;         /* round of the innermost enclosing loop (1-based; 0 outside loops) */
    job_task_kind kind;
    char *text;             /* LLM: rendered prompt; TOOL: rendered body ("" = none) */
    size_t text_len;
    char *url;              /* TOOL: rendered URL */
    uint64_t seed;          /* LLM sampling seed: the op's seed + item */

    /* set by the caller (scheduler) */
    int32_t *ids;           /* (n_ids) tokenized prompt, kept across attempts; freed with the task */
    int32_t n_ids;
    uint64_t *hashes;       /* (n_hashes) the prompt's block hashes; freed with the task */
    int32_t n_hashes;
    uint64_t task_id;       /* of the current attempt; 0 = never started */
    uint32_t attempt;       /* 1 on the first start */
    int worker;             /* worker slot of the running attempt, -1 if none */
    int64_t load_tokens;    /* load this attempt added to its worker */
    int32_t pages;          /* KV pages this attempt may need (prompt + max_tokens) */
    int32_t decode_tokens;  /* max_tokens of this attempt (part of load_tokens) */
    int32_t reserve_pages;  /* of those, pages not shared with the worker's other in-flight calls */
    void *runner;           /* caller's handle while running (e.g. the tool transfer) */
    void *opt;              /* caller's optimizer link (e.g. an in-flight dedup entry); a task
                               killed with opt set goes through hooks.task_abort even if queued */
    bool counted;           /* caller's flag: its prompt was counted once (e.g. min prompt tokens) */
    bool held;              /* caller's flag: its placement was deferred at least once */
    bool kv_held;           /* caller's flag: deferred at least once for lack of KV room */
    bool looked;            /* caller's flag: looked up in a result cache once */
    int pull_src;           /* caller's: slot of the worker this attempt pulls from, -1 none */
    struct opt_plink *pinl; /* caller's (opt): the pins that list it as a user (n_pinl), each with its
                               place in that pin's user list; freed with the task */
    uint32_t n_pinl, cap_pinl;
    int32_t prog_run;       /* caller's (sched_prefill_progress): its leading blocks seen cached on its worker */
    bool have_rkey;         /* caller's flag: rkey_lo/hi hold its result-cache key */
    uint64_t rkey_lo, rkey_hi;
    struct {                /* caller's: why its last placement waited (place.c); cleared on requeue */
        uint8_t kind;       /* 0: nothing remembered */
        int slot;           /* the worker it waits on, or -1 */
        int32_t pages;      /* KV pages it needs (a wait for room); blocks it waits for (a hold) */
        uint64_t gen, slot_gen, pass;
        uint64_t cache_gen; /* a hold: the worker's cache_gen when its run was last seen short */
    } wait;

    /* jobs-private */
    bool queued;
    uint64_t ready_us;
    size_t streamed;        /* partial-output bytes received for this attempt */
    job_task *qprev, *qnext;
};

/* Execution state of one op of a job. */
typedef struct {
    Helium__OpState state;
    char *out;              /* output text (NULL until done) */
    size_t out_len;
    /* map */
    char **items;           /* (n_items) input items */
    char **item_out;        /* (n_items) outputs, NULL until each is done */
    job_task **tasks;       /* (n_items) live item tasks, NULL if none */
    uint32_t n_items, items_done;
    /* llm / tool outside maps */
    job_task *task;         /* live task or NULL */
    /* loop */
    uint32_t round;         /* current (1-based) round */
    char *prev;             /* previous round's output ("" in round 1) */
    /* accounting (summed over items and rounds) */
    uint32_t prompt_tokens, cached_tokens, generated_tokens, pulled_tokens, attempts;
    char worker[64];        /* worker of the last attempt */
    Helium__ErrorCode err;  /* ERROR_OK unless FAILED */
    char *err_msg;
    uint64_t ready_us, started_us, first_token_us, finished_us;
    uint64_t queue_dur_us;
} job_op;

typedef struct {
    uint64_t seq;           /* job-wide, strictly increasing */
    int op;                 /* index in wf->ops */
    uint32_t item;
    char *text;
    size_t len;
    bool done;              /* the op (item) finished */
} job_chunk;

struct job {
    char id[JOBS_ID_LEN];   /* "job-N" */
    uint64_t num;           /* N */
    wf_t *wf;               /* validated; owned */
    char **input_vals;      /* (wf->n_inputs) values in effect, owned */
    char *policy;           /* scheduling policy name */
    char *client_tag;
    bool stream;            /* dispatch with streaming on */
    Helium__JobState state;
    job_op *ops;            /* (wf->n_ops) */
    Helium__ErrorCode err;  /* why it failed (ERROR_OK otherwise) */
    char *err_msg;
    char *err_op;           /* op id of the failure, or NULL */
    uint64_t submitted_us, started_us, finished_us;
    size_t live_tasks;      /* tasks queued or running */
    job_chunk *chunks;      /* (n_chunks) partial outputs, oldest first */
    size_t n_chunks, cap_chunks, chunk_bytes;
    uint64_t chunk_seq;     /* last seq handed out */
    void *user;             /* caller's per-job data (e.g. waiting clients) */
    jobs_t *owner;
    /* plan (jobs_submit_planned); NULL arrays = none */
    int pol;                /* caller's policy code */
    uint8_t *pruned;        /* (wf->n_ops) 1 = never runs */
    int *alias;             /* (wf->n_ops) op whose output this op copies, or -1 */
    int64_t *cp;            /* (wf->n_ops) critical path in token steps */
    int64_t *start;         /* (wf->n_ops) earliest start in token steps */
    /* admission (jobs_set_max_active) */
    bool parked;            /* accepted, not started: waits for room among the active jobs */
    bool started;           /* counted among the started jobs (jobs_t.n_started) */
    job_t *park_next;       /* the parked FIFO */
    void *park;             /* caller's: what it keeps for a parked job until it starts (hooks.job_start
                               takes it; hooks.park_free frees what is left) */
};

typedef struct {
    void *ctx;
    /* A started task (worker >= 0 or runner != NULL), or any task with opt
     * set (even queued), is no longer wanted: the caller stops it (Cancel to
     * the worker, abort the transfer) and drops its own references. The task
     * is freed right after the hook returns. */
    void (*task_abort)(void *ctx, job_task *t);
    /* The job reached DONE, FAILED or CANCELED. */
    void (*job_end)(void *ctx, job_t *j);
    /* New partial output was appended to the job. */
    void (*job_progress)(void *ctx, job_t *j);
    /* A new task was queued (an op or a map item became ready). May be NULL. */
    void (*task_new)(void *ctx, job_task *t);
    /* Op i of j became DONE (its output is readable). May be NULL. */
    void (*op_done)(void *ctx, job_t *j, int i);
    /* j was accepted (numbered, its inputs set, nothing run yet). May be NULL. */
    void (*job_new)(void *ctx, job_t *j);
    /* t finishes: r is its result (jobs_task_done), or r is NULL and code/msg
     * its failure (jobs_task_fail); t is still intact. May be NULL. */
    void (*task_end)(void *ctx, const job_task *t, const job_result *r, Helium__ErrorCode code, const char *msg);
    /* A parked job started (its first ops were just queued; it may even have
     * ended). May be NULL. */
    void (*job_start)(void *ctx, job_t *j);
    /* j ends or is freed with j->park set (canceled while parked, or jobs_destroy). May be NULL. */
    void (*park_free)(void *ctx, job_t *j);
    /* Whether j, next in line, may start now that the window has room: the
     * caller's second admission rule (the coordinator's feed rule). NULL:
     * always. A job it holds back waits parked (jobs_unpark tries again). */
    bool (*may_start)(void *ctx, const job_t *j);
} jobs_hooks;

/* A plan for one job: what the optimizer decided before it starts. Every
 * array is (wf->n_ops) or NULL, copied by jobs_submit_planned. alias[i] is
 * honoured only for a top-level llm/tool/join op i aliasing another such op;
 * anything else is ignored (the op runs). */
typedef struct {
    int pol;
    const uint8_t *pruned;
    const int *alias;
    const int64_t *cp, *start;
} jobs_plan;

typedef struct {
    size_t keep_finished;   /* finished jobs kept (default 1000; at least 1) */
    const chat_t *chat;     /* renders llm ops given as messages (render.h rnd_chat); may be NULL */
    uint64_t (*submit_clock)(void *ctx); /* a job's submitted_us (a simulator's time); NULL: the wall clock */
    void *submit_clock_ctx;
} jobs_config;

typedef struct {
    uint64_t submitted;     /* jobs accepted */
    uint64_t queued, running; /* now */
    uint64_t parked;        /* now: of the queued, those waiting for room among the started jobs */
    uint64_t done, failed, canceled; /* ever */
} jobs_counts;

/* A finished task's outcome (llm or tool). */
struct job_result {
    const char *text;
    size_t len;
    uint32_t prompt_tokens, cached_tokens, pulled_tokens, generated_tokens;
    const char *worker;     /* id of the worker that ran it (NULL for tools) */
    uint64_t first_token_us; /* 0 if unknown */
};

jobs_t *jobs_new(const jobs_config *cfg, const jobs_hooks *hooks);
/* Aborts nothing remotely: hooks are not called. Frees every job and task. */
void jobs_destroy(jobs_t **self_p);

/* Starts a job for *wf_p (validated; ownership taken in every case). inputs:
 * n pairs of name/value; every declared input without a default must be
 * given, and every given name must be declared (HE_EINVAL naming it). The job
 * may end inside this call (e.g. only join ops, or an op that fails to
 * render): check (*out)->state. */
int jobs_submit(jobs_t *js, wf_t **wf_p, const wf_kv *inputs, size_t n, const char *policy,
                const char *client_tag, bool stream, job_t **out);

/* jobs_submit with a plan (NULL = none). */
int jobs_submit_planned(jobs_t *js, wf_t **wf_p, const wf_kv *inputs, size_t n, const char *policy,
                        const char *client_tag, bool stream, const jobs_plan *plan, job_t **out);

/* Admission: at most n jobs started at once (0: no limit). A job submitted
 * past it is accepted (numbered, QUEUED, its hooks.job_new run) but parked:
 * nothing of it runs, and it starts, oldest first, when a started job ends
 * or the limit grows (then hooks.job_start). Raising the limit starts
 * parked jobs at once; lowering it stops nothing. */
void jobs_set_max_active(jobs_t *js, size_t n);
size_t jobs_max_active(const jobs_t *js);
/* Starts parked jobs, oldest first, while the window has room and
 * hooks.may_start agrees (call it when what may_start reads has changed). */
void jobs_unpark(jobs_t *js);

/* The job with this id, or NULL (unknown, malformed or evicted). */
job_t *jobs_get(jobs_t *js, const char *job_id);
/* Cancels a queued or running job (hooks run); no-op for finished ones. */
void jobs_cancel(jobs_t *js, job_t *j, const char *why);
/* Newest first: calls fn for up to limit jobs (active_only: QUEUED/RUNNING). */
void jobs_each_newest(jobs_t *js, size_t limit, bool active_only, void (*fn)(void *u, job_t *j), void *u);
void jobs_get_counts(const jobs_t *js, jobs_counts *out);
bool jobs_is_final(Helium__JobState s);

/* ---- the ready queue and task lifecycle */
job_task *jobs_ready_first(jobs_t *js);
job_task *jobs_ready_next(job_task *t);
size_t jobs_ready_count(const jobs_t *js);
/* Dequeues t and marks it running on worker (slot, -1 for tools) under task_id. */
void jobs_task_start(jobs_t *js, job_task *t, int worker, const char *worker_id, uint64_t task_id);
/* Puts a running task back at the head of the queue (its worker was lost). */
void jobs_task_requeue(jobs_t *js, job_task *t);
/* Appends streamed text of the running attempt. */
void jobs_task_progress(jobs_t *js, job_task *t, const char *text, size_t len);
/* Finishes t successfully (t is freed; the job may advance or end). */
void jobs_task_done(jobs_t *js, job_task *t, const job_result *r);
/* Fails t (t is freed) and with it its job: code/msg become the job's error. */
void jobs_task_fail(jobs_t *js, job_task *t, Helium__ErrorCode code, const char *msg);
/* The live task of (job_id, op_id, item), or NULL. */
job_task *jobs_find_task(jobs_t *js, const char *job_id, const char *op_id, uint32_t item);
/* The same by job number N ("job-N") and op index; NULL if none. */
job_task *jobs_task_of(jobs_t *js, uint64_t num, int op, uint32_t item);
/* The job with number N, or NULL. */
job_t *jobs_by_num(jobs_t *js, uint64_t num);
/* The next job submitted gets number num (> every number handed out so far;
 * HE_EINVAL otherwise): a restarted coordinator keeps its jobs' ids. */
int jobs_skip_to(jobs_t *js, uint64_t num);

/* Op i's output text (a map's items joined with "\n"); "" (len 0) for an op
 * without output yet. Valid until the job changes. */
const char *jobs_op_output(const job_t *j, int i, size_t *len);

#endif
