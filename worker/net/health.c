/* health: see health.h. */
#include "health.h"

#include <arpa/inet.h>
#include <microhttpd.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "clock.h"
#include "herr.h"

struct health {
    struct MHD_Daemon *d;
    _Atomic int64_t last_beat_ms; /* written by the loop, read by the HTTP thread */
    _Atomic int state;            /* health_state; written by the loop */
    _Atomic unsigned long requests;
};

static enum MHD_Result reply(struct MHD_Connection *conn, unsigned code, const char *text) {
    struct MHD_Response *r = MHD_create_response_from_buffer(strlen(text), (void *)text, MHD_RESPMEM_MUST_COPY);
    if (!r) return MHD_NO;
    MHD_add_response_header(r, "Content-Type", "text/plain; charset=utf-8");
    MHD_add_response_header(r, "Cache-Control", "no-store");
    enum MHD_Result ret = MHD_queue_response(conn, code, r);
    MHD_destroy_response(r);
    return ret;
}

static enum MHD_Result handler(void *cls, struct MHD_Connection *conn, const char *url, const char *method,
                               const char *version, const char *upload_data, size_t *upload_data_size,
                               void **con_cls) {
    (void)version;
    (void)upload_data;
    (void)upload_data_size;
    health_t *h = cls;
    if (!*con_cls) { /* first call for this request: headers only */
        *con_cls = h;
        return MHD_YES;
    }
    atomic_fetch_add(&h->requests, 1);
    if (strcmp(method, "GET") != 0 && strcmp(method, "HEAD") != 0) return reply(conn, 405, "GET only\n");
    int64_t age = clock_mono_ms() - atomic_load(&h->last_beat_ms);
    int alive = age <= HEALTH_STALL_MS;
    if (!strcmp(url, "/healthz")) {
        char b[96];
        if (alive) return reply(conn, 200, "ok\n");
        snprintf(b, sizeof b, "stalled: the serve loop last turned %lld ms ago\n", (long long)age);
        return reply(conn, 503, b);
    }
    if (!strcmp(url, "/readyz")) {
        int st = atomic_load(&h->state);
        if (!alive) return reply(conn, 503, "not ready: stalled\n");
        if (st == HEALTH_READY) return reply(conn, 200, "ready\n");
        return reply(conn, 503, st == HEALTH_DRAINING ? "not ready: draining\n" : "not ready: not registered\n");
    }
    return reply(conn, 404, "not found: try /healthz or /readyz\n");
}

health_t *health_new(const char *host, int port) {
    if (port < 1 || port > 65535) {
        he_set(HE_EINVAL, "health port %d is not in 1..65535", port);
        return NULL;
    }
    struct sockaddr_in sa;
    memset(&sa, 0, sizeof sa);
    sa.sin_family = AF_INET;
    sa.sin_port = htons((uint16_t)port);
    if (inet_pton(AF_INET, host ? host : "127.0.0.1", &sa.sin_addr) != 1) {
        he_set(HE_EINVAL, "health host '%s' is not an IPv4 address", host);
        return NULL;
    }
    health_t *h = calloc(1, sizeof *h);
    if (!h) {
        he_set(HE_ENOMEM, "out of memory");
        return NULL;
    }
    atomic_store(&h->last_beat_ms, clock_mono_ms());
    atomic_store(&h->state, HEALTH_STARTING);
    h->d = MHD_start_daemon(MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_ERROR_LOG, (uint16_t)port, NULL, NULL, handler, h,
                            MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&sa, MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)10,
                            MHD_OPTION_CONNECTION_LIMIT, (unsigned)16, MHD_OPTION_END);
    if (!h->d) {
        he_set(HE_EIO, "cannot serve probes on %s:%d (port in use?)", host ? host : "127.0.0.1", port);
        free(h);
        return NULL;
    }
    return h;
}

void health_destroy(health_t **self_p) {
    if (!self_p || !*self_p) return;
    health_t *h = *self_p;
    if (h->d) MHD_stop_daemon(h->d); /* joins the HTTP thread */
    free(h);
    *self_p = NULL;
}

void health_beat(health_t *h) {
    if (h) atomic_store(&h->last_beat_ms, clock_mono_ms());
}

void health_set(health_t *h, health_state st) {
    if (h) atomic_store(&h->state, (int)st);
}

unsigned long health_requests(health_t *h) {
    return h ? atomic_load(&h->requests) : 0;
}
