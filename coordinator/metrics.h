/* metrics: the Prometheus endpoint (GET /metrics, text format 0.0.4).
 *
 * libmicrohttpd serves it from its own thread. The coordinator's loop builds
 * the whole page (met_* helpers below) and publishes it with metrics_publish;
 * the HTTP thread only copies the last published page under a mutex, so it
 * never touches loop state. Any other path is 404.
 */
#ifndef HELIUM_COORD_METRICS_H
#define HELIUM_COORD_METRICS_H

#include <stddef.h>

#include "render.h"

typedef struct metrics metrics_t;

/* Listens on host:port (host NULL = 127.0.0.1). NULL with he_msg() on failure. */
metrics_t *metrics_new(const char *host, int port);
void metrics_destroy(metrics_t **self_p);
/* Replaces the served page with a copy of text[0..len). */
void metrics_publish(metrics_t *m, const char *text, size_t len);
/* Requests served so far. */
unsigned long metrics_requests(metrics_t *m);

/* ---- page building */
/* "# HELP name help\n# TYPE name type\n" */
void met_head(sbuf *b, const char *name, const char *type, const char *help);
/* "name{labels} value\n"; labels is "" or `k="v",...` (values escaped with met_label). */
void met_value(sbuf *b, const char *name, const char *labels, double value);
/* Appends `key="value"` with value escaped (\\, \", \n) to a label buffer. */
void met_label(char *buf, size_t cap, const char *key, const char *value);

#endif
