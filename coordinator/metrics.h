/* metrics: the Prometheus endpoint (GET /metrics, text format 0.0.4).
 *
 * libmicrohttpd serves it from its own thread. The coordinator's loop builds
 * the whole page (met_* helpers below) and publishes it with metrics_publish;
 * the HTTP thread only copies the last published page under a mutex, so it
 * never touches loop state. The same port answers the probes:
 *   GET /healthz  200 while the loop keeps publishing (it does every
 *                 COORD_METRICS_MS); 503 once it has been silent for
 *                 METRICS_STALL_MS (a stuck loop);
 *   GET /readyz   200 when the loop last said ready (metrics_set_ready: a
 *                 worker is registered and alive, and the coordinator is not
 *                 stopping), 503 with the reason otherwise.
 * Any other path is 404.
 */
#ifndef HELIUM_COORD_METRICS_H
#define HELIUM_COORD_METRICS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "opt.h"
#include "render.h"

typedef struct metrics metrics_t;

/* Listens on host:port (host NULL = 127.0.0.1). NULL with he_msg() on failure. */
metrics_t *metrics_new(const char *host, int port);
void metrics_destroy(metrics_t **self_p);
/* Replaces the served page with a copy of text[0..len). */
void metrics_publish(metrics_t *m, const char *text, size_t len);
/* Requests served so far. */
unsigned long metrics_requests(metrics_t *m);
#define METRICS_STALL_MS 15000
/* What /readyz answers from now on: ready, or not with a reason (copied). */
void metrics_set_ready(metrics_t *m, bool ready, const char *why);

/* ---- page building */
/* "# HELP name help\n# TYPE name type\n" */
void met_head(sbuf *b, const char *name, const char *type, const char *help);
/* "name{labels} value\n"; labels is "" or `k="v",...` (values escaped with met_label). */
void met_value(sbuf *b, const char *name, const char *labels, double value);
/* A histogram: name_bucket{le=...} for each bound (cumulative counts),
 * le="+Inf", name_sum and name_count. counts[i] counts observations in
 * (bounds[i-1], bounds[i]]; counts[n] those above the last bound. */
void met_histogram(sbuf *b, const char *name, const char *help, const double *bounds, const uint64_t *counts,
                   size_t n, double sum);
/* Index of the bucket of v: the first i with v <= bounds[i], n above all. */
size_t met_bucket(const double *bounds, size_t n, double v);
/* Bounds of helium_job_seconds (submit to finish of a job), seconds. */
#define MET_JOB_BUCKETS 13
extern const double met_job_bounds[MET_JOB_BUCKETS];
/* Appends `key="value"` with value escaped (\\, \", \n) to a label buffer. */
void met_label(char *buf, size_t cap, const char *key, const char *value);

/* ---- the coordinator's page */
/* The optimizer's counters by name (in_kv: the total is already among the
 * coordinator's own counters under that name). */
typedef struct {
    const char *name;
    size_t off;     /* offsetof(opt_counters, name) */
    bool in_kv;
} met_opt_field;
#define MET_N_OPT_FIELDS 23
extern const met_opt_field met_opt_fields[MET_N_OPT_FIELDS];
/* Field i of oc. */
uint64_t met_opt_value(const opt_counters *oc, size_t i);
/* Sum of the optimizer's counters over the policies. */
void met_opt_total(opt_t *o, opt_counters *tot);

typedef struct coord coord_t;
/* Builds the coordinator's whole page from its state and publishes it
 * (nothing if it serves no metrics). Called by the loop only. */
void met_publish_coord(coord_t *c);

#endif
