/* coord_impl: the coordinator's state, shared by the files of its loop and
 * by nothing else (the public header is coord.h).
 *
 * The coordinator is one loop (coord.c) whose work is split by job:
 *   coord.c         the loop, lifecycle, frame sending, the jobs hooks, and
 *                   the ZeroMQ implementation of the worker send interface;
 *   client_proto.c  the client protocol: Request frames, SubmitJob (waiters
 *                   and streams), GetJob/ListJobs/Cancel/ClusterStatus;
 *   worker_proto.c  the worker protocol: Register, OpResult, OpProgress,
 *                   CacheEvents, heartbeats, liveness and worker loss;
 *   place.c         placement and dispatch of ready tasks (tokenize, result
 *                   reuse, the policy's verdict, Dispatch, tool calls); it
 *                   reaches workers only through c->send (wsend.h);
 *   metrics.c       the Prometheus page built from this state.
 * Each policy's rules live in sched.c (placement) and opt.c (everything else).
 *
 * Invariants: a task running on a worker is in that worker's in-flight set
 * (workers.h); a running tool task holds its tool_call in task->runner; both
 * are released on completion, on abort (jobs hook) and, for workers, on loss
 * (the tasks go back to the ready queue with the next attempt number).
 * Clients waiting on a job (SubmitJob.wait) hang off job->user as a list of
 * waiters, answered from the job_end hook, so every waiter is gone before its
 * job can be evicted. Single-threaded: the loop owns everything here.
 */
#ifndef HELIUM_COORD_IMPL_H
#define HELIUM_COORD_IMPL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "coord.h"
#include "dir.h"
#include "helium.pb-c.h"
#include "jobs.h"
#include "jrec.h"
#include "metrics.h"
#include "links.h"
#include "opt.h"
#include "sched.h"
#include "tokenizer.h"
#include "tools.h"
#include "workers.h"
#include "wsend.h"
#include "zauth.h"

#define COORD_MAX_MSG (64 << 20)    /* largest frame accepted from any peer */
#define COORD_MAX_DEPTH 24          /* protobuf nesting accepted from peers */
#define COORD_BATCH 512             /* messages handled per socket per loop turn */
#define COORD_MAX_WAITERS 256       /* clients waiting on one job */
#define COORD_METRICS_MS 500
#define COORD_RETRIES 3             /* attempts of a task whose worker reported an internal error */

typedef struct {
    uint64_t bad_client_frames, bad_worker_frames, unknown_worker_msgs, stale_results;
    uint64_t lost_computed_tokens; /* computed by attempts whose results were not used (worker_proto.c) */
    uint64_t redispatches, resyncs, workers_lost, rejected_workers;
    uint64_t prompt_tokens, cached_tokens, pulled_tokens, generated_tokens;
    uint64_t kv_pulls, kv_pull_bytes, tool_calls, tool_errors, requests;
    uint64_t waits;                 /* SubmitJob.wait requests answered by push (waiters added) */
    uint64_t job_seconds[MET_JOB_BUCKETS + 1]; /* ended jobs by duration bucket (met_job_bounds) */
    double job_seconds_sum;
} coord_stats;

#define PLACE_SHRUNK_LOG 4096 /* place.c's log of workers whose working set shrank */

struct coord {
    coord_config cfg;
    void *zctx, *client, *wsock;    /* NULL in a coordinator without sockets (coord_core_new) */
    wsend_i send;                   /* how placement and the worker protocol reach workers */
    tok_t *tok;
    chat_t *chat; /* renders `messages` ops; NULL if the model has no template and none was named */
    jobs_t *jobs;
    wkrs_t *wkrs;
    dir_t *dir;
    sched_t *sched;
    links_t *links;                 /* each worker pair's fitted KV link (links.h) */
    opt_t *opt;                     /* workflow optimizer and per-policy counters */
    tools_t *tools;
    metrics_t *metrics;
    int policy;                     /* default sched_policy */
    bool have_model;                /* the cluster's root and block size are set */
    uint64_t root;
    uint32_t block_size;
    size_t page_bytes;
    uint64_t next_task_id;
    jrec_t *jrec;                   /* the journal, NULL without --journal */
    zauth_t *zauth;                 /* the ZAP handler (CURVE), NULL when insecure */
    zauth_keys keys;                /* own key pair (CURVE) */
    bool dirty;                     /* the ready queue may be placeable */
    struct {                        /* placement passes (place.c): what waiting calls are remembered against */
        uint64_t passes;            /* walks of the ready queue */
        uint64_t commits;           /* dispatches (and other changes) made by placement */
        uint64_t room_sig;          /* this walk's signature of every worker's room (place.c room_sig) */
        uint64_t workers_sig;       /* ... of the set of workers and their states */
        uint64_t shrink_sig;        /* ... of what can shrink a working set (calls leaving, pins) */
        uint64_t slot_shrink[DIR_MAX_WORKERS]; /* each worker's part of it, as of the last walk */
        struct { int slot; } shrunk[PLACE_SHRUNK_LOG]; /* ring: workers whose working set may have
                                                          shrunk, in walk order (place.c) */
        uint64_t n_shrunk;          /* entries appended to it so far */
        uint64_t skipped;           /* placements skipped: nothing the call waited on had moved */
        uint64_t again[4];          /* placements of calls remembered as waiting, by why (place.c WAIT_*;
                                       [0]: not remembered) */
    } pl;
    job_t **stream_jobs;            /* (n_stream) jobs with new partial output and streaming waiters */
    size_t n_stream, cap_stream;
    size_t n_waiters;               /* clients waiting on a job now (all jobs) */
    int64_t next_liveness_ms, next_metrics_ms;
    uint64_t started_us;
    bool feed_any;                  /* a job of a policy that feeds jobs has started (the feed rule) */
    uint64_t feed_prev_us;          /* ... the last one's submit time */
    coord_stats st;
};

/* The coordinator's tables without sockets or metrics server: tokenizer,
 * jobs, workers, directory, scheduler, optimizer, tools. Workers are reached
 * through *send (copied). coord_new is this plus the sockets; a simulator can
 * drive the same modules with simulated workers. NULL with he_msg() set. */
coord_t *coord_core_new(const coord_config *cfg, const wsend_i *send);

/* ---- job admission (coord.c) */
/* The optimizer's plan of a job just accepted (jobs_submit_planned): into
 * the optimizer now (opt_arrive) if it started, kept with the job until it
 * starts if it was parked. Takes prep. */
void coord_job_arrive(coord_t *c, job_t *j, opt_prep *prep);
/* Sets how many jobs may run at once from the config and the live workers
 * (coord_config.max_active_jobs); parked jobs start when it grows. Called
 * before each placement step. */
void coord_admit(coord_t *c);

/* ---- frame sending (coord.c) */
/* Sends ident (+ an empty delimiter if delim) + data on sock without
 * blocking. Returns 0 or -1 (zmq_errno() says why). */
int coord_send_frames(void *sock, const void *ident, size_t ident_len, bool delim, const void *data, size_t len);
/* Packs and sends r to a client (dropped, logged, if it cannot be queued). */
void coord_send_reply(coord_t *c, const void *ident, size_t ident_len, bool delim, Helium__Reply *r);
void coord_reply_error(coord_t *c, const void *ident, size_t ident_len, bool delim, uint64_t request_id,
                       Helium__ErrorCode code, const char *msg, const char *op_id);

#endif
