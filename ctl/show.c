/* show: tables and JSON for coordinator replies; see show.h.
 *
 * Every string field of an unpacked proto message may be "" but never NULL
 * (protobuf-c fills defaults); submessages may be NULL and are checked.
 */
#include "show.h"

#include <inttypes.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* The name of value v in enum descriptor d with prefix cut off, or its number. */
static const char *enum_name(const ProtobufCEnumDescriptor *d, int v, const char *prefix) {
    static _Thread_local char buf[32];
    const ProtobufCEnumValue *ev = protobuf_c_enum_descriptor_get_value(d, v);
    if (!ev) {
        snprintf(buf, sizeof buf, "%d", v);
        return buf;
    }
    size_t n = strlen(prefix);
    return strncmp(ev->name, prefix, n) == 0 ? ev->name + n : ev->name;
}

const char *show_error_code(int code) { return enum_name(&helium__error_code__descriptor, code, "ERROR_"); }
const char *show_job_state(int s) { return enum_name(&helium__job_state__descriptor, s, "JOB_"); }
const char *show_op_state(int s) { return enum_name(&helium__op_state__descriptor, s, "OP_"); }

bool show_job_finished(int s) {
    return s == HELIUM__JOB_STATE__JOB_DONE || s == HELIUM__JOB_STATE__JOB_FAILED ||
           s == HELIUM__JOB_STATE__JOB_CANCELED;
}

static const char *nz(const char *s) { return s ? s : ""; }
static const char *dash(const char *s) { return s && *s ? s : "-"; }

static bool has_error(const Helium__Error *e) { return e && e->code != HELIUM__ERROR_CODE__ERROR_OK; }

/* ---- JSON */

static void add_u64(cJSON *o, const char *k, uint64_t v) { cJSON_AddNumberToObject(o, k, (double)v); }

cJSON *show_error_json(const Helium__Error *e) {
    cJSON *o = cJSON_CreateObject();
    if (!o) return NULL;
    cJSON_AddStringToObject(o, "code", show_error_code(e ? (int)e->code : 0));
    cJSON_AddStringToObject(o, "message", e ? nz(e->message) : "");
    cJSON_AddStringToObject(o, "op_id", e ? nz(e->op_id) : "");
    return o;
}

static cJSON *timing_json(const Helium__Timing *t) {
    cJSON *o = cJSON_CreateObject();
    if (!o || !t) return o;
    add_u64(o, "submitted_us", t->submitted_us);
    add_u64(o, "started_us", t->started_us);
    add_u64(o, "first_token_us", t->first_token_us);
    add_u64(o, "finished_us", t->finished_us);
    add_u64(o, "queue_dur_us", t->queue_dur_us);
    add_u64(o, "prefill_dur_us", t->prefill_dur_us);
    add_u64(o, "decode_dur_us", t->decode_dur_us);
    return o;
}

static cJSON *op_json(const Helium__OpStatus *op) {
    cJSON *o = cJSON_CreateObject();
    if (!o) return NULL;
    cJSON_AddStringToObject(o, "op_id", nz(op->op_id));
    cJSON_AddStringToObject(o, "kind", nz(op->kind));
    cJSON_AddStringToObject(o, "state", show_op_state(op->state));
    cJSON_AddStringToObject(o, "worker", nz(op->worker));
    cJSON_AddStringToObject(o, "output", nz(op->output));
    add_u64(o, "prompt_tokens", op->prompt_tokens);
    add_u64(o, "cached_tokens", op->cached_tokens);
    add_u64(o, "pulled_tokens", op->pulled_tokens);
    add_u64(o, "generated_tokens", op->generated_tokens);
    add_u64(o, "attempts", op->attempts);
    add_u64(o, "items_total", op->items_total);
    add_u64(o, "items_done", op->items_done);
    add_u64(o, "round", op->round);
    cJSON *outs = cJSON_AddArrayToObject(o, "outputs");
    for (size_t i = 0; outs && i < op->n_outputs; i++)
        cJSON_AddItemToArray(outs, cJSON_CreateString(nz(op->outputs[i])));
    if (has_error(op->error)) cJSON_AddItemToObject(o, "error", show_error_json(op->error));
    cJSON_AddItemToObject(o, "timing", timing_json(op->timing));
    return o;
}

cJSON *show_job_json(const Helium__JobStatus *j) {
    cJSON *o = cJSON_CreateObject();
    if (!o) return NULL;
    cJSON_AddStringToObject(o, "job_id", nz(j->job_id));
    cJSON_AddStringToObject(o, "state", show_job_state(j->state));
    cJSON_AddStringToObject(o, "workflow_name", nz(j->workflow_name));
    cJSON_AddStringToObject(o, "policy", nz(j->policy));
    cJSON_AddStringToObject(o, "client_tag", nz(j->client_tag));
    cJSON_AddStringToObject(o, "output", nz(j->output));
    if (has_error(j->error)) cJSON_AddItemToObject(o, "error", show_error_json(j->error));
    cJSON_AddItemToObject(o, "timing", timing_json(j->timing));
    cJSON *ops = cJSON_AddArrayToObject(o, "ops");
    for (size_t i = 0; ops && i < j->n_ops; i++) cJSON_AddItemToArray(ops, op_json(j->ops[i]));
    return o;
}

cJSON *show_jobs_json(const Helium__JobList *l) {
    cJSON *o = cJSON_CreateObject();
    cJSON *arr = o ? cJSON_AddArrayToObject(o, "jobs") : NULL;
    for (size_t i = 0; arr && i < l->n_jobs; i++) {
        const Helium__JobSummary *s = l->jobs[i];
        cJSON *x = cJSON_CreateObject();
        if (!x) break;
        cJSON_AddStringToObject(x, "job_id", nz(s->job_id));
        cJSON_AddStringToObject(x, "workflow_name", nz(s->workflow_name));
        cJSON_AddStringToObject(x, "state", show_job_state(s->state));
        add_u64(x, "n_ops", s->n_ops);
        add_u64(x, "n_done", s->n_done);
        cJSON_AddItemToObject(x, "timing", timing_json(s->timing));
        cJSON_AddItemToArray(arr, x);
    }
    return o;
}

/* A counters map (any of the generated *CountersEntry arrays) as an object. */
#define COUNTERS_JSON(o, n, c)                                                  \
    do {                                                                        \
        (o) = cJSON_CreateObject();                                             \
        for (size_t ci_ = 0; (o) && ci_ < (n); ci_++)                           \
            add_u64((o), nz((c)[ci_]->key), (c)[ci_]->value);                   \
    } while (0)

cJSON *show_cluster_json(const Helium__ClusterStatusReply *c) {
    cJSON *o = cJSON_CreateObject();
    if (!o) return NULL;
    cJSON_AddStringToObject(o, "policy", nz(c->policy));
    add_u64(o, "uptime_dur_us", c->uptime_dur_us);
    add_u64(o, "queue_depth", c->queue_depth);
    add_u64(o, "jobs_queued", c->jobs_queued);
    add_u64(o, "jobs_running", c->jobs_running);
    add_u64(o, "jobs_done", c->jobs_done);
    add_u64(o, "jobs_failed", c->jobs_failed);
    add_u64(o, "jobs_canceled", c->jobs_canceled);
    add_u64(o, "directory_blocks", c->directory_blocks);
    cJSON *cc;
    COUNTERS_JSON(cc, c->n_counters, c->counters);
    cJSON_AddItemToObject(o, "counters", cc);
    cJSON *ws = cJSON_AddArrayToObject(o, "workers");
    for (size_t i = 0; ws && i < c->n_workers; i++) {
        const Helium__WorkerInfo *w = c->workers[i];
        cJSON *x = cJSON_CreateObject();
        if (!x) break;
        cJSON_AddStringToObject(x, "id", nz(w->id));
        cJSON_AddBoolToObject(x, "alive", w->alive);
        cJSON_AddStringToObject(x, "endpoint", nz(w->endpoint));
        cJSON_AddStringToObject(x, "model", nz(w->model));
        cJSON_AddStringToObject(x, "backend", nz(w->backend));
        add_u64(x, "block_size", w->block_size);
        add_u64(x, "n_ctx", w->n_ctx);
        add_u64(x, "max_batch", w->max_batch);
        add_u64(x, "running", w->running);
        add_u64(x, "queue_depth", w->queue_depth);
        add_u64(x, "kv_blocks_total", w->kv_blocks_total);
        add_u64(x, "kv_blocks_used", w->kv_blocks_used);
        add_u64(x, "kv_blocks_cached", w->kv_blocks_cached);
        add_u64(x, "hit_tokens", w->hit_tokens);
        add_u64(x, "lookup_tokens", w->lookup_tokens);
        cJSON_AddNumberToObject(x, "hit_rate",
                                w->lookup_tokens ? (double)w->hit_tokens / (double)w->lookup_tokens : 0.0);
        add_u64(x, "last_heartbeat_us", w->last_heartbeat_us);
        char root[24];
        snprintf(root, sizeof root, "%016" PRIx64, w->model_root);
        cJSON_AddStringToObject(x, "model_root", root);
        cJSON *wc;
        COUNTERS_JSON(wc, w->n_counters, w->counters);
        cJSON_AddItemToObject(x, "counters", wc);
        cJSON_AddItemToArray(ws, x);
    }
    return o;
}

void show_print_json(FILE *f, const cJSON *o) {
    char *s = o ? cJSON_Print(o) : NULL;
    if (!s) {
        fputs("{}\n", f);
        return;
    }
    fputs(s, f);
    fputc('\n', f);
    free(s);
}

/* ---- text */

void show_error_text(FILE *f, const Helium__Error *e) {
    fprintf(f, "heliumctl: error %s: %s", show_error_code(e ? (int)e->code : 0), e ? nz(e->message) : "");
    if (e && e->op_id && *e->op_id) fprintf(f, " (op %s)", e->op_id);
    fputc('\n', f);
}

static double secs(uint64_t a, uint64_t b) { return b > a ? (double)(b - a) / 1e6 : 0.0; }

static int maxw(int w, const char *s) {
    int n = (int)strlen(nz(s));
    return n > w ? n : w;
}

void show_job_text(FILE *f, const Helium__JobStatus *j, bool outputs) {
    fprintf(f, "job %s", nz(j->job_id));
    if (j->workflow_name && *j->workflow_name) fprintf(f, " (%s)", j->workflow_name);
    fprintf(f, "  %s", show_job_state(j->state));
    if (j->policy && *j->policy) fprintf(f, "  policy %s", j->policy);
    if (j->timing && j->timing->finished_us)
        fprintf(f, "  %.2f s", secs(j->timing->submitted_us, j->timing->finished_us));
    fputc('\n', f);
    if (has_error(j->error)) {
        fprintf(f, "error %s: %s", show_error_code(j->error->code), nz(j->error->message));
        if (j->error->op_id && *j->error->op_id) fprintf(f, " (op %s)", j->error->op_id);
        fputc('\n', f);
    }
    int wid = 2, wwk = 6;
    for (size_t i = 0; i < j->n_ops; i++) {
        wid = maxw(wid, j->ops[i]->op_id);
        wwk = maxw(wwk, j->ops[i]->worker);
    }
    fprintf(f, "%-*s  %-4s  %-8s  %-*s  %6s  %6s  %6s  %5s  %5s  %7s\n", wid, "OP", "KIND", "STATE", wwk, "WORKER",
            "PROMPT", "CACHED", "PULLED", "GEN", "TRIES", "TIME");
    for (size_t i = 0; i < j->n_ops; i++) {
        const Helium__OpStatus *op = j->ops[i];
        char items[32] = "";
        if (op->items_total) snprintf(items, sizeof items, " %u/%u", op->items_done, op->items_total);
        char tm[32] = "-";
        if (op->timing && op->timing->finished_us && op->timing->started_us)
            snprintf(tm, sizeof tm, "%.2fs", secs(op->timing->started_us, op->timing->finished_us));
        fprintf(f, "%-*s  %-4s  %-8s  %-*s  %6u  %6u  %6u  %5u  %5u  %7s%s\n", wid, nz(op->op_id), dash(op->kind),
                show_op_state(op->state), wwk, dash(op->worker), op->prompt_tokens, op->cached_tokens,
                op->pulled_tokens, op->generated_tokens, op->attempts, tm, items);
        if (has_error(op->error))
            fprintf(f, "%-*s  error %s: %s\n", wid, "", show_error_code(op->error->code), nz(op->error->message));
    }
    if (!outputs) return;
    for (size_t i = 0; i < j->n_ops; i++) {
        const Helium__OpStatus *op = j->ops[i];
        if (op->state != HELIUM__OP_STATE__OP_DONE) continue;
        fprintf(f, "--- %s (%s%s%s)\n", nz(op->op_id), dash(op->kind), op->worker && *op->worker ? ", " : "",
                nz(op->worker));
        if (op->n_outputs) {
            for (size_t k = 0; k < op->n_outputs; k++) fprintf(f, "[%zu] %s\n", k, nz(op->outputs[k]));
        } else {
            fprintf(f, "%s\n", nz(op->output));
        }
    }
    if (j->state == HELIUM__JOB_STATE__JOB_DONE) fprintf(f, "=== output\n%s\n", nz(j->output));
}

void show_jobs_text(FILE *f, const Helium__JobList *l) {
    int wid = 3, wname = 8;
    for (size_t i = 0; i < l->n_jobs; i++) {
        wid = maxw(wid, l->jobs[i]->job_id);
        wname = maxw(wname, l->jobs[i]->workflow_name);
    }
    fprintf(f, "%-*s  %-*s  %-8s  %9s  %8s\n", wid, "JOB", wname, "WORKFLOW", "STATE", "OPS", "TIME");
    for (size_t i = 0; i < l->n_jobs; i++) {
        const Helium__JobSummary *s = l->jobs[i];
        char ops[24], tm[24] = "-";
        snprintf(ops, sizeof ops, "%u/%u", s->n_done, s->n_ops);
        if (s->timing && s->timing->finished_us)
            snprintf(tm, sizeof tm, "%.2fs", secs(s->timing->submitted_us, s->timing->finished_us));
        fprintf(f, "%-*s  %-*s  %-8s  %9s  %8s\n", wid, nz(s->job_id), wname, dash(s->workflow_name),
                show_job_state(s->state), ops, tm);
    }
    if (l->n_jobs == 0) fprintf(f, "(no jobs)\n");
}

void show_cluster_text(FILE *f, const Helium__ClusterStatusReply *c, const char *endpoint) {
    fprintf(f, "coordinator %s  policy %s  up %.1f s\n", endpoint, dash(c->policy), (double)c->uptime_dur_us / 1e6);
    fprintf(f,
            "queue depth %u | jobs: %u queued, %u running, %" PRIu64 " done, %" PRIu64 " failed, %" PRIu64
            " canceled | directory %" PRIu64 " blocks\n",
            c->queue_depth, c->jobs_queued, c->jobs_running, c->jobs_done, c->jobs_failed, c->jobs_canceled,
            c->directory_blocks);
    int wid = 6;
    for (size_t i = 0; i < c->n_workers; i++) wid = maxw(wid, c->workers[i]->id);
    fprintf(f, "%-*s  %-5s  %-7s  %4s  %5s  %7s  %7s  %7s  %5s  %8s\n", wid, "WORKER", "ALIVE", "BACKEND", "RUN",
            "QUEUE", "KV USED", "CACHED", "TOTAL", "KV%", "HIT RATE");
    for (size_t i = 0; i < c->n_workers; i++) {
        const Helium__WorkerInfo *w = c->workers[i];
        char hit[16] = "-";
        if (w->lookup_tokens) snprintf(hit, sizeof hit, "%.1f%%", 100.0 * (double)w->hit_tokens / (double)w->lookup_tokens);
        char kvp[16] = "-";
        if (w->kv_blocks_total)
            snprintf(kvp, sizeof kvp, "%.0f%%", 100.0 * (double)w->kv_blocks_used / (double)w->kv_blocks_total);
        fprintf(f, "%-*s  %-5s  %-7s  %4u  %5u  %7u  %7u  %7u  %5s  %8s\n", wid, nz(w->id), w->alive ? "yes" : "no",
                dash(w->backend), w->running, w->queue_depth, w->kv_blocks_used, w->kv_blocks_cached,
                w->kv_blocks_total, kvp, hit);
    }
    if (c->n_workers == 0) fprintf(f, "(no workers registered)\n");
    if (c->n_counters) {
        /* per-policy counters ("name.policy") only where non-zero: the table
         * stays readable; --json has them all */
        fprintf(f, "counters:");
        int k = 0;
        for (size_t i = 0; i < c->n_counters; i++) {
            const char *key = nz(c->counters[i]->key);
            if (strchr(key, '.') && c->counters[i]->value == 0) continue;
            fprintf(f, "%s %s=%" PRIu64, k++ ? "," : "", key, c->counters[i]->value);
        }
        fputc('\n', f);
    }
}
