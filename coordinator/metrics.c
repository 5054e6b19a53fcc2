/* metrics: see metrics.h.
 *
 * Shared state: page/page_len guarded by mu (written by the loop's publish,
 * read by the MHD thread's handler); requests is guarded by mu too.
 */
#include "metrics.h"

#include <arpa/inet.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "herr.h"

struct metrics {
    struct MHD_Daemon *d;
    pthread_mutex_t mu;
    char *page;               /* guarded by mu */
    size_t page_len;          /* guarded by mu */
    unsigned long requests;   /* guarded by mu */
};

static enum MHD_Result handler(void *cls, struct MHD_Connection *conn, const char *url, const char *method,
                               const char *version, const char *upload_data, size_t *upload_data_size,
                               void **con_cls) {
    (void)version;
    (void)upload_data;
    (void)con_cls;
    metrics_t *m = cls;
    if (*upload_data_size) { /* no request bodies */
        *upload_data_size = 0;
        return MHD_YES;
    }
    struct MHD_Response *r;
    unsigned code;
    if (strcmp(method, "GET") == 0 && strcmp(url, "/metrics") == 0) {
        pthread_mutex_lock(&m->mu);
        r = MHD_create_response_from_buffer(m->page_len, m->page ? m->page : (char *)"", MHD_RESPMEM_MUST_COPY);
        m->requests++;
        pthread_mutex_unlock(&m->mu);
        if (r) MHD_add_response_header(r, "Content-Type", "text/plain; version=0.0.4; charset=utf-8");
        code = MHD_HTTP_OK;
    } else {
        static char nf[] = "not found: try /metrics\n";
        r = MHD_create_response_from_buffer(sizeof nf - 1, nf, MHD_RESPMEM_PERSISTENT);
        code = MHD_HTTP_NOT_FOUND;
    }
    if (!r) return MHD_NO;
    enum MHD_Result ret = MHD_queue_response(conn, code, r);
    MHD_destroy_response(r);
    return ret;
}

metrics_t *metrics_new(const char *host, int port) {
    if (port <= 0 || port > 65535) {
        he_set(HE_EINVAL, "metrics port %d is not in 1..65535", port);
        return NULL;
    }
    struct sockaddr_in sa;
    memset(&sa, 0, sizeof sa);
    sa.sin_family = AF_INET;
    sa.sin_port = htons((uint16_t)port);
    if (inet_pton(AF_INET, host ? host : "127.0.0.1", &sa.sin_addr) != 1) {
        he_set(HE_EINVAL, "metrics host '%s' is not an IPv4 address", host);
        return NULL;
    }
    metrics_t *m = calloc(1, sizeof *m);
    if (!m) {
        he_set(HE_ENOMEM, "out of memory");
        return NULL;
    }
    pthread_mutex_init(&m->mu, NULL);
    m->d = MHD_start_daemon(MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_ERROR_LOG, (uint16_t)port, NULL, NULL,
                            handler, m, MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&sa,
                            MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)10, MHD_OPTION_CONNECTION_LIMIT, (unsigned)64,
                            MHD_OPTION_END);
    if (!m->d) {
        he_set(HE_EIO, "cannot serve metrics on %s:%d (port in use?)", host ? host : "127.0.0.1", port);
        pthread_mutex_destroy(&m->mu);
        free(m);
        return NULL;
    }
    return m;
}

void metrics_destroy(metrics_t **self_p) {
    if (!self_p || !*self_p) return;
    metrics_t *m = *self_p;
    if (m->d) MHD_stop_daemon(m->d); /* joins the HTTP thread */
    pthread_mutex_destroy(&m->mu);
    free(m->page);
    free(m);
    *self_p = NULL;
}

void metrics_publish(metrics_t *m, const char *text, size_t len) {
    if (!m) return;
    char *p = malloc(len + 1);
    if (!p) return;
    memcpy(p, text, len);
    p[len] = 0;
    pthread_mutex_lock(&m->mu);
    char *old = m->page;
    m->page = p;
    m->page_len = len;
    pthread_mutex_unlock(&m->mu);
    free(old);
}

unsigned long metrics_requests(metrics_t *m) {
    pthread_mutex_lock(&m->mu);
    unsigned long n = m->requests;
    pthread_mutex_unlock(&m->mu);
    return n;
}

void met_head(sbuf *b, const char *name, const char *type, const char *help) {
    sb_adds(b, "# HELP ");
    sb_adds(b, name);
    sb_adds(b, " ");
    sb_adds(b, help);
    sb_adds(b, "\n# TYPE ");
    sb_adds(b, name);
    sb_adds(b, " ");
    sb_adds(b, type);
    sb_adds(b, "\n");
}

void met_value(sbuf *b, const char *name, const char *labels, double value) {
    char num[64];
    if (value == (double)(long long)value && value < 9e15 && value > -9e15)
        snprintf(num, sizeof num, "%lld", (long long)value);
    else
        snprintf(num, sizeof num, "%.6g", value);
    sb_adds(b, name);
    if (labels && *labels) {
        sb_adds(b, "{");
        sb_adds(b, labels);
        sb_adds(b, "}");
    }
    sb_adds(b, " ");
    sb_adds(b, num);
    sb_adds(b, "\n");
}

void met_label(char *buf, size_t cap, const char *key, const char *value) {
    size_t n = strlen(buf);
    if (n && n + 1 < cap) buf[n++] = ',';
    int k = snprintf(buf + n, cap > n ? cap - n : 0, "%s=\"", key);
    if (k < 0 || (size_t)k >= cap - n) return;
    n += (size_t)k;
    for (const char *p = value ? value : ""; *p && n + 3 < cap; p++) {
        if (*p == '\\' || *p == '"') buf[n++] = '\\', buf[n++] = *p;
        else if (*p == '\n') buf[n++] = '\\', buf[n++] = 'n';
        else buf[n++] = *p;
    }
    if (n + 1 < cap) buf[n++] = '"';
    buf[n < cap ? n : cap - 1] = 0;
}
