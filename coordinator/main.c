/* helium-coordinator: the cluster's scheduler process.
 *
 *   helium-coordinator --model FILE [--listen tcp://127.0.0.1:7700]
 *       [--workers tcp://127.0.0.1:7701] [--metrics-port 7702 (0 = off)]
 *       [--metrics-host 127.0.0.1] [--heartbeat-ms 500] [--worker-timeout-ms 3000]
 *       [--policy router|prefix|isolated|kvflow|helium] [--chat-template NAME] [--allow-host HOST]... [--keep-jobs 1000]
 *       [--stream] [--log-level error|warn|info|debug]
 *       [--journal DIR [--fsync always|batch|off] [--journal-compact-mb 64]]
 *       (--key FILE --authorized-keys FILE | --insecure)
 *
 * Every option may also come from the environment as HELIUM_COORD_<OPTION>
 * (--metrics-port: HELIUM_COORD_METRICS_PORT); the command line wins.
 * Parses arguments, installs SIGINT/SIGTERM handlers (they only set a flag;
 * the loop notices within 250 ms) and runs coord (coord.h). Exit status: 0
 * after a signal, 1 on a runtime failure, 2 on bad usage.
 */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "args.h"
#include "coord.h"
#include "herr.h"
#include "journal.h"
#include "log.h"

#define MAX_ALLOW 64

static volatile sig_atomic_t g_stop, g_reload;

static void on_hup(int sig) {
    (void)sig;
    g_reload = 1;
}

static void on_signal(int sig) {
    (void)sig;
    g_stop = 1;
}

static void usage(FILE *f) {
    fprintf(f,
            "usage: helium-coordinator --model FILE [options]\n"
            "  --model FILE            GGUF model whose tokenizer renders prompts (required)\n"
            "  --listen EP             client endpoint (default tcp://127.0.0.1:7700)\n"
            "  --workers EP            worker endpoint (default tcp://127.0.0.1:7701)\n"
            "  --metrics-port N        Prometheus /metrics port, 0 = off (default 7702)\n"
            "  --metrics-host ADDR     IPv4 address for /metrics (default 127.0.0.1)\n"
            "  --heartbeat-ms N        worker heartbeat period (default 500)\n"
            "  --worker-timeout-ms N   a silent worker is dead after N ms (default 3000)\n"
            "  --policy P              isolated, prefix, router, kvflow or helium (default)\n"
            "  --chat-template NAME    how `messages` ops render: model (the GGUF's own, default), chatml,\n"
            "                          smollm2, llama3, llama2, mistral, gemma or phi3\n"
            "  --allow-host HOST       tool ops may call HOST[:PORT] (repeatable; default\n"
            "                          127.0.0.1 and localhost)\n"
            "  --keep-jobs N           finished jobs kept for queries (default 1000)\n"
            "  --stream                workers stream partial text of every job\n"
            "  --journal DIR           journal accepted jobs and finished calls in DIR/journal and\n"
            "                          replay them on start (docs/journal.md; default: none, and a\n"
            "                          restart loses every job)\n"
            "  --fsync MODE            with --journal: always (sync each record), batch (default: one\n"
            "                          sync per loop turn, before acks) or off (never: a crash of the\n"
            "                          machine, not of the process, may lose acknowledged jobs)\n"
            "  --journal-compact-mb N  rewrite the journal without evicted jobs past N MiB (default 64)\n"
            "  --key FILE              own CURVE secret key (heliumctl keygen NAME writes NAME.key)\n"
            "  --authorized-keys FILE  client and worker public keys let in, one a line with a comment\n"
            "                          naming it (re-read on SIGHUP; docs/security.md)\n"
            "  --insecure              no CURVE: plain TCP, anyone who reaches a port is let in\n"
            "                          (required when --key is not given)\n"
            "  --log-level L           error, warn, info (default) or debug\n"
            "  --imbalance-abs N       load guard: tokens of outstanding work between the most and\n"
            "                          the least loaded worker before affinity is ignored (default 4096)\n"
            "  --imbalance-rel X       load guard: ... and their ratio (default 1.5)\n"
            "  --helium-load-weight X  helium policy: weight of a worker's queued work against the\n"
            "                          prefill it saves (default 0.25; router uses 1.0)\n"
            "  --helium-starve N       helium policy: a worker with under N tokens of work is fed\n"
            "                          first (default 512; 0 = off)\n"
            "  --max-active-jobs N     jobs started at once; later ones wait, accepted, oldest first\n"
            "                          (default: 8 per live worker, at least 16; 0 = no limit)\n"
            "  --helium-feed N         helium policy: a job that arrives on its own (not with a batch) starts\n"
            "                          only while fewer than N calls a live worker are ready or running\n"
            "                          (default 4; 0 = off)\n"
            "  --helium-kv-admit 0|1   helium policy: dispatch to a worker only what its KV holds alongside\n"
            "                          its in-flight calls and pinned prefixes (default 1)\n"
            "  --helium-hold-idle 0|1  helium policy: a worker about to go idle waits to pull a prefix\n"
            "                          another worker is computing (1, default: fewest tokens) or\n"
            "                          recomputes it at once (0: work-conserving)\n"
            "  --helium-split 0|1      helium policy: a sibling that would follow its prefix to the busier\n"
            "                          worker waits and pulls it to a lighter one (default 1)\n"
            "  --baseline-pulls 0|1    router and kvflow policies may pull a prefix's KV from another\n"
            "                          worker (1, default) or never move KV (0: as SGLang's router,\n"
            "                          llm-d and KVFlow, which bench/workflows.py compares against)\n");
}

/* Every option is also settable as HELIUM_COORD_<OPTION> (common/args.h;
 * the table is in docs/deploy.md). Keep in step with usage():
 * tests/deploy/lint.sh checks that every option there is here. */
static const args_env_opt ENV_OPTS[] = {
    {"model", true}, {"listen", true}, {"workers", true}, {"metrics-port", true}, {"metrics-host", true},
    {"heartbeat-ms", true}, {"worker-timeout-ms", true}, {"policy", true}, {"allow-host", true},
    {"keep-jobs", true}, {"stream", false}, {"log-level", true}, {"imbalance-abs", true},
    {"imbalance-rel", true}, {"helium-load-weight", true}, {"helium-starve", true}, {"helium-kv-admit", true}, {"max-active-jobs", true},
    {"helium-feed", true},
    {"helium-hold-idle", true}, {"helium-split", true}, {"baseline-pulls", true}, {"journal", true},
    {"fsync", true}, {"journal-compact-mb", true}, {"chat-template", true},
    {"key", true}, {"authorized-keys", true}, {"insecure", false},
};

static int run(int argc, char **argv);

int main(int argc, char **argv) {
    int ac;
    char **av, err[256];
    if (args_env_merge("HELIUM_COORD", ENV_OPTS, sizeof ENV_OPTS / sizeof ENV_OPTS[0], argc, argv, 1, &ac, &av, err,
                       sizeof err)) {
        fprintf(stderr, "helium-coordinator: %s\n", err);
        return 2;
    }
    int rc = run(ac, av);
    args_env_free(&av);
    return rc;
}

/* Option parsing: each opt_* function takes option a (argv[*i]) with its
 * value v (argv[*i + 1], NULL if none) and returns ARG_DONE (taken; *i moved
 * past a value), ARG_OTHER (not one of its options) or 2 after printing why
 * the value is bad. */
#define ARG_DONE 0
#define ARG_OTHER 1
#define NEED_VALUE()                                                                   \
    do {                                                                               \
        if (!v) {                                                                      \
            fprintf(stderr, "helium-coordinator: %s needs a value\n", a);              \
            return 2;                                                                  \
        }                                                                              \
        (*i)++;                                                                        \
    } while (0)
#define BAD_VALUE()                                                                    \
    do {                                                                               \
        fprintf(stderr, "helium-coordinator: bad value '%s' for %s\n", v, a);          \
        return 2;                                                                      \
    } while (0)

/* The process's own options: model, endpoints, timers, tools, keys, logs. */
static int opt_server(const char *a, const char *v, int *i, coord_config *cfg, const char **allow,
                      size_t *n_allow) {
    long n;
    if (!strcmp(a, "--model")) {
        NEED_VALUE();
        cfg->model_path = v;
    } else if (!strcmp(a, "--listen")) {
        NEED_VALUE();
        cfg->listen = v;
    } else if (!strcmp(a, "--workers")) {
        NEED_VALUE();
        cfg->workers = v;
    } else if (!strcmp(a, "--metrics-port")) {
        NEED_VALUE();
        if (!args_long(v, 0, 65535, &n)) BAD_VALUE();
        cfg->metrics_port = (int)n;
    } else if (!strcmp(a, "--metrics-host")) {
        NEED_VALUE();
        cfg->metrics_host = v;
    } else if (!strcmp(a, "--heartbeat-ms")) {
        NEED_VALUE();
        if (!args_long(v, 10, 60000, &n)) BAD_VALUE();
        cfg->heartbeat_ms = (int)n;
    } else if (!strcmp(a, "--worker-timeout-ms")) {
        NEED_VALUE();
        if (!args_long(v, 50, 3600000, &n)) BAD_VALUE();
        cfg->worker_timeout_ms = (int)n;
    } else if (!strcmp(a, "--chat-template")) {
        NEED_VALUE();
        cfg->chat_template = v;
    } else if (!strcmp(a, "--allow-host")) {
        NEED_VALUE();
        if (*n_allow == MAX_ALLOW) {
            fprintf(stderr, "helium-coordinator: at most %d --allow-host\n", MAX_ALLOW);
            return 2;
        }
        allow[(*n_allow)++] = v;
    } else if (!strcmp(a, "--keep-jobs")) {
        NEED_VALUE();
        if (!args_long(v, 1, 10000000, &n)) BAD_VALUE();
        cfg->keep_jobs = (size_t)n;
    } else if (!strcmp(a, "--stream")) {
        cfg->stream = 1;
    } else if (!strcmp(a, "--key")) {
        NEED_VALUE();
        cfg->key_file = v;
    } else if (!strcmp(a, "--authorized-keys")) {
        NEED_VALUE();
        cfg->authorized_keys = v;
    } else if (!strcmp(a, "--insecure")) {
        cfg->insecure = 1;
    } else if (!strcmp(a, "--log-level")) {
        NEED_VALUE();
        int l = clog_level_from_name(v);
        if (l < 0) BAD_VALUE();
        clog_set_level((clog_level)l);
    } else {
        return ARG_OTHER;
    }
    return ARG_DONE;
}

/* The scheduling policy and its knobs. */
static int opt_policy(const char *a, const char *v, int *i, coord_config *cfg) {
    long n;
    if (!strcmp(a, "--policy")) {
        NEED_VALUE();
        cfg->policy = v;
    } else if (!strcmp(a, "--imbalance-abs")) {
        NEED_VALUE();
        if (!args_long(v, 1, 1L << 40, &n)) BAD_VALUE();
        cfg->imbalance_abs = n;
    } else if (!strcmp(a, "--imbalance-rel") || !strcmp(a, "--helium-load-weight")) {
        NEED_VALUE();
        double x;
        if (!args_double(v, 0, 1e6, &x)) BAD_VALUE();
        if (!strcmp(a, "--imbalance-rel")) {
            if (x < 1.0) BAD_VALUE();
            cfg->imbalance_rel = x;
        } else {
            cfg->helium_load_weight = x;
        }
    } else if (!strcmp(a, "--max-active-jobs")) {
        NEED_VALUE();
        if (!args_long(v, 0, 1000000, &n)) BAD_VALUE();
        cfg->max_active_jobs = n;
    } else if (!strcmp(a, "--helium-feed")) {
        NEED_VALUE();
        if (!args_long(v, 0, 1000000, &n)) BAD_VALUE();
        cfg->helium_feed = n;
    } else if (!strcmp(a, "--helium-kv-admit")) {
        NEED_VALUE();
        if (!args_long(v, 0, 1, &n)) BAD_VALUE();
        cfg->helium_kv_admit = (int)n;
    } else if (!strcmp(a, "--helium-split")) {
        NEED_VALUE();
        if (!args_long(v, 0, 1, &n)) BAD_VALUE();
        cfg->helium_split = (int)n;
    } else if (!strcmp(a, "--baseline-pulls")) {
        NEED_VALUE();
        if (!args_long(v, 0, 1, &n)) BAD_VALUE();
        cfg->baseline_pulls = (int)n;
    } else if (!strcmp(a, "--helium-hold-idle")) {
        NEED_VALUE();
        if (!args_long(v, 0, 1, &n)) BAD_VALUE();
        cfg->helium_hold_idle = (int)n;
    } else if (!strcmp(a, "--helium-starve")) {
        NEED_VALUE();
        if (!args_long(v, 0, 1L << 40, &n)) BAD_VALUE();
        cfg->helium_starve_tokens = n;
    } else {
        return ARG_OTHER;
    }
    return ARG_DONE;
}

/* The journal's options. */
static int opt_journal(const char *a, const char *v, int *i, coord_config *cfg) {
    if (!strcmp(a, "--journal")) {
        NEED_VALUE();
        cfg->journal_dir = v;
    } else if (!strcmp(a, "--fsync")) {
        NEED_VALUE();
        jnl_fsync m;
        if (jnl_fsync_parse(v, &m)) BAD_VALUE();
        cfg->journal_fsync = (int)m;
    } else if (!strcmp(a, "--journal-compact-mb")) {
        NEED_VALUE();
        double x;
        if (!args_double(v, 0.001, 1e6, &x)) BAD_VALUE();
        cfg->journal_compact_bytes = (unsigned long long)(x * 1048576.0);
    } else {
        return ARG_OTHER;
    }
    return ARG_DONE;
}
#undef NEED_VALUE
#undef BAD_VALUE

/* Fills cfg and allow[0..*n_allow) from argv and checks the combination.
 * Returns -1 to go on, or the exit status (0 after --help, 2 on bad usage,
 * with the reason printed). */
static int parse_args(int argc, char **argv, coord_config *cfg, const char **allow, size_t *n_allow) {
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            usage(stdout);
            return 0;
        }
        int r = opt_server(a, v, &i, cfg, allow, n_allow);
        if (r == ARG_OTHER) r = opt_policy(a, v, &i, cfg);
        if (r == ARG_OTHER) r = opt_journal(a, v, &i, cfg);
        if (r == ARG_OTHER) {
            fprintf(stderr, "helium-coordinator: unknown argument '%s'\n", a);
            usage(stderr);
            return 2;
        }
        if (r != ARG_DONE) return r;
    }
    if (!cfg->model_path) {
        fprintf(stderr, "helium-coordinator: --model FILE is required\n");
        usage(stderr);
        return 2;
    }
    if (cfg->worker_timeout_ms <= cfg->heartbeat_ms) {
        fprintf(stderr, "helium-coordinator: --worker-timeout-ms (%d) must exceed --heartbeat-ms (%d)\n",
                cfg->worker_timeout_ms, cfg->heartbeat_ms);
        return 2;
    }
    if (cfg->insecure ? cfg->key_file || cfg->authorized_keys : !cfg->key_file || !cfg->authorized_keys) {
        fprintf(stderr, "helium-coordinator: %s\n",
                cfg->insecure ? "--insecure excludes --key and --authorized-keys"
                              : "give --key FILE and --authorized-keys FILE (CURVE), or --insecure to run without keys");
        return 2;
    }
    return -1;
}

static int run(int argc, char **argv) {
    coord_config cfg = {.metrics_port = 7702, .heartbeat_ms = 500, .worker_timeout_ms = 3000, .policy = "helium",
                        .helium_load_weight = -1, .helium_starve_tokens = -1, .helium_hold_idle = -1, .helium_split = -1,
                        .baseline_pulls = -1,
                        .helium_kv_admit = -1, .max_active_jobs = -1, .helium_feed = -1, .journal_fsync = JNL_FSYNC_BATCH};
    const char *allow[MAX_ALLOW];
    size_t n_allow = 0;
    int prc = parse_args(argc, argv, &cfg, allow, &n_allow);
    if (prc >= 0) return prc;
    cfg.reload_keys = &g_reload;
    cfg.allow_hosts = allow;
    cfg.n_allow_hosts = n_allow;

    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal; /* no SA_RESTART: zmq_poll returns EINTR */
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    sa.sa_handler = on_hup; /* re-read the authorized keys */
    sigaction(SIGHUP, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);

    coord_t *c = coord_new(&cfg);
    if (!c) {
        fprintf(stderr, "helium-coordinator: %s\n", he_msg());
        return 1;
    }
    int rc = coord_run(c, &g_stop);
    coord_destroy(&c);
    return rc ? 1 : 0;
}
