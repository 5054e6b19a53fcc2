/* coord: the Helium coordinator process state and its one event loop.
 *
 * One thread polls (zmq_poll) the client ROUTER, the worker ROUTER and the
 * sockets of running tool calls, with timers for worker liveness and the
 * metrics page, in the style of Redis's ae loop: handle ready sockets, then a
 * before-sleep step that places ready tasks on workers and streams progress
 * to waiting clients. The only other thread is libmicrohttpd's (metrics.h),
 * which reads a published page and nothing else.
 *
 * Wire behaviour is the runtime contract (proto/helium.proto and the cluster
 * contract): every client request gets a Reply with its request_id (typed
 * Error on failure, request_id 0 if the frame did not parse); malformed
 * worker frames are dropped, logged and counted; nothing a peer sends can
 * stop the loop.
 */
#ifndef HELIUM_COORD_COORD_H
#define HELIUM_COORD_COORD_H

#include <signal.h>
#include <stddef.h>
#include <stdint.h>

typedef struct coord coord_t;

typedef struct {
    const char *model_path;      /* GGUF whose tokenizer renders prompts (required) */
    const char *listen;          /* client endpoint (default tcp://127.0.0.1:7700) */
    const char *workers;         /* worker endpoint (default tcp://127.0.0.1:7701) */
    int metrics_port;            /* 0 = no metrics endpoint */
    const char *metrics_host;    /* IPv4 address to serve metrics on (default 127.0.0.1) */
    int heartbeat_ms;            /* told to workers (default 500) */
    int worker_timeout_ms;       /* silence after which a worker is dead (default 3000) */
    const char *policy;          /* default scheduling policy (default "helium") */
    const char *chat_template;   /* chat template for `messages` ops: NULL = the model's own
                                    (common/chat.h names the built-in ones) */
    const char *const *allow_hosts; /* tool hosts (n_allow_hosts; none = 127.0.0.1, localhost) */
    size_t n_allow_hosts;
    size_t keep_jobs;            /* finished jobs kept (default 1000) */
    long max_active_jobs;        /* jobs started at once; the rest wait, accepted, oldest first
                                    (< 0: default, COORD_ACTIVE_PER_WORKER per live worker, at least
                                    COORD_ACTIVE_MIN; 0: no limit) */
    uint64_t (*submit_clock)(void *ctx); /* jobs' submit times (a simulator's clock); NULL: wall clock */
    void *submit_clock_ctx;
    long helium_feed;            /* helium policy: a job that arrives on its own (not with a batch) starts
                                    only while fewer than this many calls a live worker are ready or
                                    running (< 0: default, COORD_FEED_PER_WORKER; 0: off); coord.c */
    int stream;                  /* ask workers to stream partial text for every job */
    /* routing knobs (route.h); a negative value / 0 keeps the default */
    long imbalance_abs;          /* tokens (default 4096) */
    double imbalance_rel;        /* (default 1.5) */
    double helium_load_weight;   /* the helium policy's load weight (default 0.25) */
    long helium_starve_tokens;   /* the helium policy's idle threshold, tokens (default 512) */
    int helium_split;            /* 0: helium never splits a group of siblings to balance the workers (< 0: default 1) */
    int baseline_pulls;          /* 0: router and kvflow never pull KV between workers (< 0: default 1) */
    int helium_hold_idle;        /* 0: an idle worker recomputes instead of waiting to pull (< 0: default 1) */
    int helium_kv_admit;         /* 0: helium dispatches without its KV working-set admission (< 0: default 1) */
    /* journal (jrec.h, docs/journal.md): NULL dir = none */
    const char *journal_dir;     /* folder of the journal file */
    int journal_fsync;           /* jnl_fsync: 0 always, 1 batch, 2 off */
    unsigned long long journal_compact_bytes; /* compact past this size (0 = 64 MiB) */
    /* CURVE (common/zauth.h, docs/security.md): both sockets are CURVE servers
       with key_file's secret key and admit only the keys of authorized_keys;
       insecure = neither (plain TCP, anyone admitted) */
    const char *key_file;        /* own secret key (NAME.key) */
    const char *authorized_keys; /* client and worker public keys, one a line */
    int insecure;
    volatile sig_atomic_t *reload_keys; /* set (SIGHUP): re-read authorized_keys; may be NULL */
} coord_config;

#define COORD_ACTIVE_PER_WORKER 8
#define COORD_ACTIVE_MIN 16
#define COORD_FEED_PER_WORKER 4
#define COORD_BATCH_GAP_US 250000u /* jobs submitted this close together are one batch (the feed rule) */

/* Loads the tokenizer, binds both endpoints and starts the metrics server.
 * NULL with he_msg() set on failure. */
coord_t *coord_new(const coord_config *cfg);
/* Runs the loop until *stop becomes non-zero (checked at least every 250 ms).
 * Returns 0, or a negative herr code if the loop could not continue. */
int coord_run(coord_t *c, volatile sig_atomic_t *stop);
void coord_destroy(coord_t **self_p);

#endif
