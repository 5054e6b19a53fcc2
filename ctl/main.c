/* heliumctl: command-line client of the Helium coordinator.
 *
 *   heliumctl [--coordinator EP] [--timeout-ms N] [--json] COMMAND ...
 *     submit FILE.json [--input k=v]... [--input-file k=PATH]... [--policy P] [--tag T] [--wait] [--quiet]
 *     status | jobs [--limit N] [--active] | result JOB_ID | cancel JOB_ID
 *
 * Every request waits at most --timeout-ms for its reply, so heliumctl never
 * hangs on a dead coordinator. `submit --wait` follows the job by the
 * coordinator's push path (SubmitJob.wait, and stream unless --quiet): it
 * sends no request while replies keep coming, and after --timeout-ms of
 * silence one GetJob probe; a probe left unanswered is an error. The workflow file is parsed and validated here
 * (common/workflow.c) before it is sent, so a bad file is reported without a
 * round trip; the coordinator re-validates everything it receives.
 * Output: tables for people, or one JSON document on stdout with --json
 * (progress and errors always go to stderr). Exit codes: 0 ok, 1 error
 * (including a job that FAILED or was CANCELED), 2 usage.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <inttypes.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "helium.pb-c.h"
#include "args.h"
#include "herr.h"
#include "rpc.h"
#include "show.h"
#include "werr.h"
#include "wf_proto.h"
#include "workflow.h"

#define CTL_DEFAULT_ENDPOINT "tcp://127.0.0.1:7700"
#define CTL_DEFAULT_TIMEOUT_MS 5000
#define CTL_MAX_INPUTS WF_MAX_INPUTS

enum { EXIT_OK = 0, EXIT_ERR = 1, EXIT_USAGE = 2 };

typedef struct {
    const char *endpoint;
    int timeout_ms;
    bool json;
    const char *key_file, *server_key_file; /* CURVE (docs/security.md) */
    bool insecure;                          /* plain TCP instead */
} ctl_opts;

static void usage(FILE *f) {
    fprintf(f,
            "usage: heliumctl [--coordinator ENDPOINT] [--timeout-ms N] [--json] COMMAND [ARGS]\n"
            "commands:\n"
            "  submit FILE.json [--input NAME=VALUE]... [--input-file NAME=PATH]... [--policy P]\n"
            "                   [--tag TEXT] [--wait] [--quiet]\n"
            "      send a workflow; prints the job id, or with --wait follows the job (progress on\n"
            "      stderr) and prints every op's output and the job's output\n"
            "  status           workers, KV cache use, hit rates, queue depth, job counts\n"
            "  jobs [--limit N] [--active]\n"
            "  result JOB_ID    a job's state, per-op figures and outputs\n"
            "  cancel JOB_ID\n"
            "  keygen NAME      write a CURVE key pair: NAME.key (secret, mode 0600) and NAME.pub\n"
            "options:\n"
            "  --coordinator ENDPOINT  default $HELIUM_COORDINATOR or " CTL_DEFAULT_ENDPOINT "\n"
            "  --timeout-ms N          how long to wait for each reply (default %d)\n"
            "  --json                  print one JSON document on stdout\n"
            "  --key FILE              own CURVE secret key (default $HELIUMCTL_KEY)\n"
            "  --server-key FILE       the coordinator's public key (default $HELIUMCTL_SERVER_KEY)\n"
            "  --insecure              talk plain TCP (no keys; also HELIUMCTL_INSECURE=1); one of\n"
            "                          --insecure and the two keys is required\n"
            "exit status: 0 ok, 1 error (or the job failed), 2 usage\n",
            CTL_DEFAULT_TIMEOUT_MS);
}

static int usage_error(const char *fmt, const char *arg) {
    fprintf(stderr, "heliumctl: ");
    fprintf(stderr, fmt, arg);
    fprintf(stderr, "\n(heliumctl --help for usage)\n");
    return EXIT_USAGE;
}

/* Reads a whole file of at most max bytes into a NUL-terminated buffer. */
static char *read_file(const char *path, size_t max, size_t *len_out) {
    FILE *f = fopen(path, "rb");
    if (!f) {
        he_set(HE_EIO, "cannot open %s: %s", path, strerror(errno));
        return NULL;
    }
    size_t cap = 4096, len = 0;
    char *buf = malloc(cap);
    while (buf) {
        if (len + 1 >= cap) {
            if (cap > max + 1) break;
            char *nb = realloc(buf, cap * 2);
            if (!nb) {
                free(buf);
                buf = NULL;
                break;
            }
            buf = nb;
            cap *= 2;
        }
        size_t n = fread(buf + len, 1, cap - 1 - len, f);
        len += n;
        if (n == 0) break;
    }
    bool err = ferror(f);
    fclose(f);
    if (!buf) {
        he_set(HE_ENOMEM, "out of memory reading %s", path);
        return NULL;
    }
    if (err) {
        free(buf);
        he_set(HE_EIO, "cannot read %s", path);
        return NULL;
    }
    if (len > max) {
        free(buf);
        he_set(HE_ELIMIT, "%s is larger than %zu bytes", path, max);
        return NULL;
    }
    buf[len] = 0;
    *len_out = len;
    return buf;
}

/* With --json, an error also goes to stdout as {"error": {code, message, op_id}}. */
static void json_error(const ctl_opts *o, const char *code, const char *msg, const char *op_id) {
    if (!o->json) return;
    cJSON *j = cJSON_CreateObject();
    cJSON *e = cJSON_AddObjectToObject(j, "error");
    cJSON_AddStringToObject(e, "code", code);
    cJSON_AddStringToObject(e, "message", msg);
    cJSON_AddStringToObject(e, "op_id", op_id ? op_id : "");
    show_print_json(stdout, j);
    cJSON_Delete(j);
}

/* ---- RPC helpers */

/* Prints a transport failure (rc from rpc.h) as text and, with --json, JSON;
 * returns EXIT_ERR. */
static int transport_error(const ctl_opts *o, int rc) {
    fprintf(stderr, "heliumctl: %s\n", he_msg());
    /* no answer in time means the coordinator is unavailable */
    json_error(o, rc == HE_ETIMEOUT ? "UNAVAILABLE" : show_error_code(werr_code(rc)), he_msg(), "");
    return EXIT_ERR;
}

/* If the reply carries a typed error: prints it (text, and JSON with
 * --json), frees the reply, NULLs *rep and returns EXIT_ERR; else 0. */
static int reply_error(const ctl_opts *o, Helium__Reply **rep) {
    const Helium__Error *e = (*rep)->error;
    if (!e || e->code == HELIUM__ERROR_CODE__ERROR_OK) return 0;
    show_error_text(stderr, e);
    if (o->json) {
        cJSON *j = cJSON_CreateObject();
        cJSON_AddItemToObject(j, "error", show_error_json(e));
        show_print_json(stdout, j);
        cJSON_Delete(j);
    }
    helium__reply__free_unpacked(*rep, NULL);
    *rep = NULL;
    return EXIT_ERR;
}

/* Runs one call. Prints transport failures and the reply's typed error (as
 * text or JSON) and returns EXIT_ERR for them; else 0 with *out set. */
static int call(const ctl_opts *o, rpc_t *r, Helium__Request *req, Helium__Reply **out) {
    int rc = rpc_call(r, req, out);
    if (rc < 0) return transport_error(o, rc);
    return reply_error(o, out);
}

static int bad_body(Helium__Reply **rep) {
    fprintf(stderr, "heliumctl: the coordinator sent an unexpected reply (body %d)\n", (int)(*rep)->body_case);
    helium__reply__free_unpacked(*rep, NULL);
    *rep = NULL;
    return EXIT_ERR;
}

static int get_job(const ctl_opts *o, rpc_t *r, const char *job_id, bool outputs, uint64_t partial_after,
                   Helium__Reply **out) {
    Helium__GetJob gj = HELIUM__GET_JOB__INIT;
    gj.job_id = (char *)job_id;
    gj.outputs = outputs;
    gj.partial_after = partial_after;
    Helium__Request req = HELIUM__REQUEST__INIT;
    req.body_case = HELIUM__REQUEST__BODY_GET_JOB;
    req.get_job = &gj;
    int rc = call(o, r, &req, out);
    if (rc) return rc;
    if ((*out)->body_case != HELIUM__REPLY__BODY_JOB || !(*out)->job) return bad_body(out);
    return 0;
}

/* Prints a finished (or current) job and returns the exit code it implies. */
static int print_job(const ctl_opts *o, const Helium__JobStatus *j) {
    if (o->json) {
        cJSON *x = show_job_json(j);
        show_print_json(stdout, x);
        cJSON_Delete(x);
    } else {
        show_job_text(stdout, j, true);
    }
    if (j->state == HELIUM__JOB_STATE__JOB_FAILED || j->state == HELIUM__JOB_STATE__JOB_CANCELED) {
        if (j->error && j->error->code != HELIUM__ERROR_CODE__ERROR_OK)
            show_error_text(stderr, j->error);
        else
            fprintf(stderr, "heliumctl: job %s %s\n", j->job_id, show_job_state(j->state));
        return EXIT_ERR;
    }
    return EXIT_OK;
}

/* ---- submit */

static volatile sig_atomic_t g_stop;
static void on_signal(int sig) {
    (void)sig;
    g_stop = 1;
}

static double mono_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* What follow_job has shown of a job so far. */
typedef struct {
    double t0;
    uint64_t seq;                          /* last streamed chunk printed */
    char last_line[512];                   /* last progress line printed */
    char cur_src[WF_MAX_ID_LEN + 32];      /* op[item] whose streamed text is being printed */
    bool mid_text;                         /* a streamed text line is open */
} progress;

/* Prints a pushed JobStatus to stderr: its new streamed text, and a progress
 * line when the picture changed. */
static void show_progress(progress *pg, const Helium__JobStatus *j) {
    for (size_t i = 0; i < j->n_partial; i++) {
        Helium__PartialOutput *p = j->partial[i];
        if (p->seq <= pg->seq) continue;
        pg->seq = p->seq;
        char src[sizeof pg->cur_src];
        snprintf(src, sizeof src, "%.*s[%u]", WF_MAX_ID_LEN, p->op_id ? p->op_id : "", p->item);
        if (strcmp(src, pg->cur_src) != 0) {
            fprintf(stderr, "%s  %s> ", pg->mid_text ? "\n" : "", src);
            snprintf(pg->cur_src, sizeof pg->cur_src, "%s", src);
        }
        fputs(p->text ? p->text : "", stderr);
        pg->mid_text = true;
        if (p->done) {
            fputc('\n', stderr);
            pg->mid_text = false;
            pg->cur_src[0] = 0;
        }
    }
    size_t done = 0;
    char running[256] = "";
    size_t rl = 0;
    for (size_t i = 0; i < j->n_ops; i++) {
        Helium__OpStatus *op = j->ops[i];
        if (op->state == HELIUM__OP_STATE__OP_DONE) done++;
        if (op->state == HELIUM__OP_STATE__OP_RUNNING && rl < sizeof running - 1) {
            int n;
            if (op->items_total)
                n = snprintf(running + rl, sizeof running - rl, "%s%s %u/%u", rl ? ", " : "", op->op_id,
                             op->items_done, op->items_total);
            else
                n = snprintf(running + rl, sizeof running - rl, "%s%s@%s", rl ? ", " : "", op->op_id,
                             *op->worker ? op->worker : "?");
            rl = n > 0 ? rl + (size_t)n : rl;
            if (rl >= sizeof running) rl = sizeof running - 1;
        }
    }
    char line[512];
    snprintf(line, sizeof line, "%s  ops %zu/%zu done%s%s", show_job_state(j->state), done, j->n_ops,
             rl ? "  running: " : "", running);
    if (strcmp(line, pg->last_line) != 0) {
        fprintf(stderr, "%s[%6.1fs] %s\n", pg->mid_text ? "\n" : "", mono_s() - pg->t0, line);
        pg->mid_text = false;
        pg->cur_src[0] = 0;
        snprintf(pg->last_line, sizeof pg->last_line, "%s", line);
    }
}

/* Sends a liveness probe for job_id (GetJob without outputs or chunks).
 * Returns its request_id, 0 on failure (he_msg() says why). */
static uint64_t send_probe(rpc_t *r, const char *job_id) {
    Helium__GetJob gj = HELIUM__GET_JOB__INIT;
    gj.job_id = (char *)job_id;
    gj.partial_after = UINT64_MAX;
    Helium__Request req = HELIUM__REQUEST__INIT;
    req.body_case = HELIUM__REQUEST__BODY_GET_JOB;
    req.get_job = &gj;
    return rpc_send(r, &req) ? 0 : req.request_id;
}

/* Submits req (a SubmitJob with wait) and follows the job by the
 * coordinator's push path: JobAccepted (more) at once, partial JobStatus
 * replies as text streams (unless quiet), the final JobStatus when it ends;
 * nothing is polled. Only after --timeout-ms of silence does one GetJob
 * probe ask whether the coordinator is still there (a second silence is an
 * error). Prints the final job like `result` and returns its exit code. */
static int follow_job(const ctl_opts *o, rpc_t *r, Helium__Request *req, bool quiet) {
    int rc = rpc_send(r, req);
    if (rc) return transport_error(o, rc);
    uint64_t wait_id = req->request_id, probe_id = 0;
    char job_id[WF_MAX_ID_LEN + 64] = "";
    progress pg = {.t0 = mono_s()};
    for (;;) {
        Helium__Reply *rep = NULL;
        rc = g_stop ? HE_ECANCELED : rpc_recv(r, rpc_timeout_ms(r), &rep);
        if (rc == HE_ECANCELED || g_stop) {
            if (rep) helium__reply__free_unpacked(rep, NULL);
            if (pg.mid_text) fputc('\n', stderr);
            if (*job_id)
                fprintf(stderr, "heliumctl: interrupted; job %s keeps running (heliumctl cancel %s)\n", job_id, job_id);
            else
                fprintf(stderr, "heliumctl: interrupted; the job may keep running (heliumctl jobs --active)\n");
            return EXIT_ERR;
        }
        if (rc == HE_ETIMEOUT && *job_id && !probe_id) { /* silence: is the coordinator still there? */
            if (!(probe_id = send_probe(r, job_id))) return transport_error(o, HE_ETIMEOUT);
            continue;
        }
        if (rc) return transport_error(o, rc);
        if (rep->request_id == probe_id) { /* alive (or the job is gone: NOT_FOUND) */
            probe_id = 0;
            if (reply_error(o, &rep)) return EXIT_ERR;
            helium__reply__free_unpacked(rep, NULL);
            continue;
        }
        if (rep->request_id != wait_id) { /* an abandoned call's */
            helium__reply__free_unpacked(rep, NULL);
            continue;
        }
        if (reply_error(o, &rep)) return EXIT_ERR;
        bool final = !rep->more;
        if (rep->body_case == HELIUM__REPLY__BODY_ACCEPTED && rep->accepted) {
            snprintf(job_id, sizeof job_id, "%s", rep->accepted->job_id ? rep->accepted->job_id : "");
            if (!quiet) fprintf(stderr, "job %s submitted (%u ops)\n", job_id, rep->accepted->n_ops);
            helium__reply__free_unpacked(rep, NULL);
            if (final) {
                fprintf(stderr, "heliumctl: the coordinator accepted job %s but will not follow it\n", job_id);
                return EXIT_ERR;
            }
            continue;
        }
        if (rep->body_case != HELIUM__REPLY__BODY_JOB || !rep->job) return bad_body(&rep);
        if (!*job_id && rep->job->job_id) snprintf(job_id, sizeof job_id, "%s", rep->job->job_id);
        if (!quiet) show_progress(&pg, rep->job);
        if (final) {
            if (pg.mid_text) fputc('\n', stderr);
            rc = print_job(o, rep->job);
            helium__reply__free_unpacked(rep, NULL);
            return rc;
        }
        helium__reply__free_unpacked(rep, NULL);
    }
}

typedef struct {
    Helium__SubmitJob__InputsEntry *v; /* (n) */
    Helium__SubmitJob__InputsEntry **pv;
    char **owned;                      /* (n) file contents to free, or NULL */
    size_t n;
} inputs;

static void inputs_free(inputs *in) {
    for (size_t i = 0; i < in->n; i++) free(in->owned[i]);
    free(in->v);
    free(in->pv);
    free(in->owned);
}

/* Adds "k=v" (from_file: v is a path whose contents are the value). Later
 * values of the same name replace earlier ones. Returns 0, EXIT_USAGE or
 * EXIT_ERR. */
static int inputs_add(inputs *in, char *kv, bool from_file) {
    char *eq = strchr(kv, '=');
    if (!eq || eq == kv) return usage_error("input '%s' is not NAME=VALUE", kv);
    *eq = 0;
    const char *name = kv, *val = eq + 1;
    char *owned = NULL;
    if (from_file) {
        size_t len;
        owned = read_file(val, WF_MAX_PROMPT_BYTES, &len);
        if (!owned) {
            fprintf(stderr, "heliumctl: input '%s': %s\n", name, he_msg());
            return EXIT_ERR;
        }
        if (strlen(owned) != len) {
            free(owned);
            fprintf(stderr, "heliumctl: input '%s': %s contains NUL bytes\n", name, val);
            return EXIT_ERR;
        }
        val = owned;
    }
    for (size_t i = 0; i < in->n; i++)
        if (strcmp(in->v[i].key, name) == 0) {
            free(in->owned[i]);
            in->owned[i] = owned;
            in->v[i].value = (char *)val;
            return 0;
        }
    if (in->n >= CTL_MAX_INPUTS) {
        free(owned);
        return usage_error("too many inputs (at most %s)", "256");
    }
    if (!in->v) {
        in->v = calloc(CTL_MAX_INPUTS, sizeof *in->v);
        in->pv = calloc(CTL_MAX_INPUTS, sizeof *in->pv);
        in->owned = calloc(CTL_MAX_INPUTS, sizeof *in->owned);
        if (!in->v || !in->pv || !in->owned) {
            free(owned);
            fprintf(stderr, "heliumctl: out of memory\n");
            return EXIT_ERR;
        }
    }
    Helium__SubmitJob__InputsEntry e = HELIUM__SUBMIT_JOB__INPUTS_ENTRY__INIT;
    e.key = (char *)name;
    e.value = (char *)val;
    in->v[in->n] = e;
    in->owned[in->n] = owned;
    in->n++;
    return 0;
}

static int cmd_submit(const ctl_opts *o, rpc_t **rp, int argc, char **argv) {
    const char *file = NULL, *policy = NULL, *tag = NULL;
    bool wait = false, quiet = false;
    inputs in = {0};
    int rc = 0;
    for (int i = 0; i < argc && !rc; i++) {
        const char *a = argv[i];
        bool has_val = i + 1 < argc;
        if (!strcmp(a, "--wait")) wait = true;
        else if (!strcmp(a, "--quiet") || !strcmp(a, "-q")) quiet = true;
        else if (!strcmp(a, "--input") && has_val) rc = inputs_add(&in, argv[++i], false);
        else if (!strcmp(a, "--input-file") && has_val) rc = inputs_add(&in, argv[++i], true);
        else if (!strcmp(a, "--policy") && has_val) policy = argv[++i];
        else if (!strcmp(a, "--tag") && has_val) tag = argv[++i];
        else if (a[0] == '-' && a[1]) rc = usage_error("submit: unknown option or missing value: %s", a);
        else if (!file) file = a;
        else rc = usage_error("submit: unexpected argument '%s'", a);
    }
    if (!rc && !file) rc = usage_error("%s", "submit: give a workflow FILE.json");
    if (rc) {
        inputs_free(&in);
        return rc;
    }

    size_t len = 0;
    char *text = read_file(file, WF_MAX_JSON_BYTES, &len);
    if (!text) {
        fprintf(stderr, "heliumctl: %s\n", he_msg());
        inputs_free(&in);
        return EXIT_ERR;
    }
    wf_t *wf = NULL;
    int prc = wf_parse_json(text, len, &wf);
    free(text);
    if (prc < 0) {
        fprintf(stderr, "heliumctl: error %s: %s: %s\n", show_error_code(werr_code(prc)), file, he_msg());
        json_error(o, show_error_code(werr_code(prc)), he_msg(), he_op());
        inputs_free(&in);
        return EXIT_ERR;
    }
    Helium__Workflow *pw = NULL;
    prc = wfp_to_proto(wf, &pw);
    wf_destroy(&wf);
    if (prc < 0) {
        fprintf(stderr, "heliumctl: %s: %s\n", file, he_msg());
        inputs_free(&in);
        return EXIT_ERR;
    }

    Helium__SubmitJob sj = HELIUM__SUBMIT_JOB__INIT;
    sj.workflow = pw;
    for (size_t i = 0; i < in.n; i++) in.pv[i] = &in.v[i];
    sj.n_inputs = in.n;
    sj.inputs = in.pv;
    sj.policy = (char *)(policy ? policy : "");
    sj.client_tag = (char *)(tag ? tag : "");
    sj.wait = wait;
    sj.stream = wait && !quiet; /* quiet: no streamed text wanted, so ask for none */
    Helium__Request req = HELIUM__REQUEST__INIT;
    req.body_case = HELIUM__REQUEST__BODY_SUBMIT;
    req.submit = &sj;
    if (wait) {
        rc = follow_job(o, *rp, &req, quiet);
        wfp_free(&pw);
        inputs_free(&in);
        return rc;
    }
    Helium__Reply *rep = NULL;
    rc = call(o, *rp, &req, &rep);
    wfp_free(&pw);
    inputs_free(&in);
    if (rc) return rc;
    if (rep->body_case != HELIUM__REPLY__BODY_ACCEPTED || !rep->accepted) return bad_body(&rep);
    if (o->json) {
        cJSON *x = cJSON_CreateObject();
        cJSON_AddStringToObject(x, "job_id", rep->accepted->job_id ? rep->accepted->job_id : "");
        cJSON_AddNumberToObject(x, "n_ops", rep->accepted->n_ops);
        show_print_json(stdout, x);
        cJSON_Delete(x);
    } else {
        printf("%s\n", rep->accepted->job_id ? rep->accepted->job_id : "");
    }
    helium__reply__free_unpacked(rep, NULL);
    return EXIT_OK;
}

/* ---- the other commands */

static int cmd_status(const ctl_opts *o, rpc_t **rp, int argc, char **argv) {
    if (argc) return usage_error("status: unexpected argument '%s'", argv[0]);
    Helium__ClusterStatus cs = HELIUM__CLUSTER_STATUS__INIT;
    cs.counters = true;
    Helium__Request req = HELIUM__REQUEST__INIT;
    req.body_case = HELIUM__REQUEST__BODY_STATUS;
    req.status = &cs;
    Helium__Reply *rep = NULL;
    int rc = call(o, *rp, &req, &rep);
    if (rc) return rc;
    if (rep->body_case != HELIUM__REPLY__BODY_CLUSTER || !rep->cluster) return bad_body(&rep);
    if (o->json) {
        cJSON *x = show_cluster_json(rep->cluster);
        show_print_json(stdout, x);
        cJSON_Delete(x);
    } else {
        show_cluster_text(stdout, rep->cluster, rpc_endpoint(*rp));
    }
    helium__reply__free_unpacked(rep, NULL);
    return EXIT_OK;
}

static int cmd_jobs(const ctl_opts *o, rpc_t **rp, int argc, char **argv) {
    Helium__ListJobs lj = HELIUM__LIST_JOBS__INIT;
    for (int i = 0; i < argc; i++) {
        long v;
        if (!strcmp(argv[i], "--active")) {
            lj.active_only = true;
        } else if (!strcmp(argv[i], "--limit") && i + 1 < argc) {
            if (!args_long(argv[++i], 1, 1000000, &v)) return usage_error("jobs: bad --limit '%s'", argv[i]);
            lj.limit = (uint32_t)v;
        } else {
            return usage_error("jobs: unexpected argument '%s'", argv[i]);
        }
    }
    Helium__Request req = HELIUM__REQUEST__INIT;
    req.body_case = HELIUM__REQUEST__BODY_LIST_JOBS;
    req.list_jobs = &lj;
    Helium__Reply *rep = NULL;
    int rc = call(o, *rp, &req, &rep);
    if (rc) return rc;
    if (rep->body_case != HELIUM__REPLY__BODY_JOBS || !rep->jobs) return bad_body(&rep);
    if (o->json) {
        cJSON *x = show_jobs_json(rep->jobs);
        show_print_json(stdout, x);
        cJSON_Delete(x);
    } else {
        show_jobs_text(stdout, rep->jobs);
    }
    helium__reply__free_unpacked(rep, NULL);
    return EXIT_OK;
}

static int cmd_result(const ctl_opts *o, rpc_t **rp, int argc, char **argv) {
    if (argc != 1 || argv[0][0] == '-') return usage_error("%s", "result: give exactly one JOB_ID");
    Helium__Reply *rep = NULL;
    int rc = get_job(o, *rp, argv[0], true, UINT64_MAX, &rep);
    if (rc) return rc;
    rc = print_job(o, rep->job);
    helium__reply__free_unpacked(rep, NULL);
    return rc;
}

static int cmd_cancel(const ctl_opts *o, rpc_t **rp, int argc, char **argv) {
    if (argc != 1 || argv[0][0] == '-') return usage_error("%s", "cancel: give exactly one JOB_ID");
    Helium__CancelJob cj = HELIUM__CANCEL_JOB__INIT;
    cj.job_id = argv[0];
    Helium__Request req = HELIUM__REQUEST__INIT;
    req.body_case = HELIUM__REQUEST__BODY_CANCEL;
    req.cancel = &cj;
    Helium__Reply *rep = NULL;
    int rc = call(o, *rp, &req, &rep);
    if (rc) return rc;
    if (rep->body_case == HELIUM__REPLY__BODY_JOB && rep->job) {
        if (o->json) {
            cJSON *x = show_job_json(rep->job);
            show_print_json(stdout, x);
            cJSON_Delete(x);
        } else {
            printf("job %s %s\n", rep->job->job_id, show_job_state(rep->job->state));
        }
    } else if (o->json) {
        cJSON *x = cJSON_CreateObject();
        cJSON_AddStringToObject(x, "job_id", argv[0]);
        show_print_json(stdout, x);
        cJSON_Delete(x);
    } else {
        printf("job %s cancel requested\n", argv[0]);
    }
    helium__reply__free_unpacked(rep, NULL);
    return EXIT_OK;
}

/* ---- main */

/* The CURVE keys from --key/--server-key (or HELIUMCTL_KEY/_SERVER_KEY), or
 * --insecure (or HELIUMCTL_INSECURE=1): exactly one of the two. Returns 0 or
 * an exit status. */
static int ctl_keys(ctl_opts *o, zauth_keys *k) {
    const char *ek = getenv("HELIUMCTL_KEY"), *es = getenv("HELIUMCTL_SERVER_KEY"), *ei = getenv("HELIUMCTL_INSECURE");
    if (!o->insecure) { /* the environment fills in what the command line left out */
        if (!o->key_file && ek && *ek) o->key_file = ek;
        if (!o->server_key_file && es && *es) o->server_key_file = es;
        if (!o->key_file && ei && (!strcmp(ei, "1") || !strcmp(ei, "true") || !strcmp(ei, "yes"))) o->insecure = true;
    }
    if (o->insecure) {
        if (!o->key_file && !o->server_key_file) return EXIT_OK;
        return usage_error("%s", "--insecure excludes --key and --server-key");
    }
    if (!o->key_file || !o->server_key_file)
        return usage_error("%s", "give --key FILE and --server-key FILE (CURVE), or --insecure to talk without keys");
    if (zauth_read_secret(o->key_file, k) || zauth_read_public(o->server_key_file, k->server)) {
        fprintf(stderr, "heliumctl: %s\n", he_msg());
        return EXIT_ERR;
    }
    return EXIT_OK;
}

static int ctl_main(int argc, char **argv);

/* The global options may also come from the environment as
 * HELIUMCTL_<OPTION> (HELIUMCTL_COORDINATOR, HELIUMCTL_TIMEOUT_MS,
 * HELIUMCTL_JSON=1); the command line wins (common/args.h). */
static const args_env_opt ENV_OPTS[] = {{"coordinator", true}, {"timeout-ms", true}, {"json", false}};

int main(int argc, char **argv) {
    int ac;
    char **av, err[256];
    if (args_env_merge("HELIUMCTL", ENV_OPTS, sizeof ENV_OPTS / sizeof ENV_OPTS[0], argc, argv, 1, &ac, &av, err,
                       sizeof err))
        return usage_error("%s", err);
    int rc = ctl_main(ac, av);
    args_env_free(&av);
    return rc;
}

static int ctl_main(int argc, char **argv) {
    ctl_opts o = {.endpoint = NULL, .timeout_ms = CTL_DEFAULT_TIMEOUT_MS, .json = false};
    const char *env = getenv("HELIUM_COORDINATOR");
    o.endpoint = env && *env ? env : CTL_DEFAULT_ENDPOINT;

    /* global options may appear anywhere; everything else is the command line */
    char **rest = calloc((size_t)argc + 1, sizeof *rest);
    if (!rest) return EXIT_ERR;
    int nrest = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        long v;
        if (!strcmp(a, "--help") || !strcmp(a, "-h") || (nrest == 0 && !strcmp(a, "help"))) {
            usage(stdout);
            free(rest);
            return EXIT_OK;
        } else if (!strcmp(a, "--json")) {
            o.json = true;
        } else if (!strcmp(a, "--insecure")) {
            o.insecure = true;
        } else if (!strcmp(a, "--key") || !strcmp(a, "--server-key")) {
            if (i + 1 >= argc || !*argv[i + 1]) {
                free(rest);
                return usage_error("%s needs a FILE", a);
            }
            *(a[2] == 'k' ? &o.key_file : &o.server_key_file) = argv[++i];
        } else if (!strcmp(a, "--coordinator") || !strncmp(a, "--coordinator=", 14)) {
            const char *val = a[13] == '=' ? a + 14 : (i + 1 < argc ? argv[++i] : NULL);
            if (!val || !*val) {
                free(rest);
                return usage_error("%s", "--coordinator needs an ENDPOINT");
            }
            o.endpoint = val;
        } else if (!strcmp(a, "--timeout-ms") || !strncmp(a, "--timeout-ms=", 13)) {
            const char *val = a[12] == '=' ? a + 13 : (i + 1 < argc ? argv[++i] : NULL);
            if (!args_long(val, 1, 3600000, &v)) {
                free(rest);
                return usage_error("--timeout-ms needs a number of milliseconds in [1, 3600000], not '%s'",
                                   val ? val : "");
            }
            o.timeout_ms = (int)v;
        } else {
            rest[nrest++] = argv[i];
        }
    }
    if (nrest == 0) {
        usage(stderr);
        free(rest);
        return EXIT_USAGE;
    }
    if (!strcmp(rest[0], "keygen")) {
        int rc = nrest == 2 ? zauth_keygen(rest[1]) : he_set(HE_EINVAL, "usage: heliumctl keygen NAME");
        if (rc) fprintf(stderr, "heliumctl: %s\n", he_msg());
        else printf("wrote %s.key (secret) and %s.pub\n", rest[1], rest[1]);
        free(rest);
        return rc ? (rc == HE_EINVAL ? EXIT_USAGE : EXIT_ERR) : EXIT_OK;
    }
    static const struct {
        const char *name;
        int (*fn)(const ctl_opts *, rpc_t **, int, char **);
    } cmds[] = {{"submit", cmd_submit}, {"status", cmd_status}, {"jobs", cmd_jobs},
                {"result", cmd_result}, {"cancel", cmd_cancel}};
    int which = -1;
    for (size_t k = 0; k < sizeof cmds / sizeof cmds[0]; k++)
        if (!strcmp(rest[0], cmds[k].name)) which = (int)k;
    if (which < 0) {
        int rc = usage_error("unknown command '%s'", rest[0]);
        free(rest);
        return rc;
    }
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);

    zauth_keys keys;
    memset(&keys, 0, sizeof keys);
    int krc = ctl_keys(&o, &keys);
    if (krc) {
        free(rest);
        return krc;
    }
    rpc_t *r = rpc_new(o.endpoint, o.timeout_ms, o.insecure ? NULL : &keys);
    memset(&keys, 0, sizeof keys);
    if (!r) {
        fprintf(stderr, "heliumctl: %s\n", he_msg());
        free(rest);
        return EXIT_ERR;
    }
    int rc = cmds[which].fn(&o, &r, nrest - 1, rest + 1);
    rpc_destroy(&r);
    free(rest);
    return rc;
}
