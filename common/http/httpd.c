/* httpd: see httpd.h. */
#include "httpd.h"

#include <arpa/inet.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "herr.h"

struct httpd {
    struct MHD_Daemon *d;
    httpd_fn fn;
    void *ctx;
    _Atomic unsigned long requests; /* written by the HTTP thread */
};

static enum MHD_Result queue(struct MHD_Connection *conn, unsigned code, const char *body, size_t len,
                             const char *ctype) {
    struct MHD_Response *r = MHD_create_response_from_buffer(len, (void *)body, MHD_RESPMEM_MUST_COPY);
    if (!r) return MHD_NO;
    MHD_add_response_header(r, "Content-Type", ctype ? ctype : "text/plain; charset=utf-8");
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
    httpd_t *h = cls;
    if (!*con_cls) { /* first call of a request: headers only */
        *con_cls = h;
        return MHD_YES;
    }
    if (*upload_data_size) { /* no request bodies: drop them */
        *upload_data_size = 0;
        return MHD_YES;
    }
    atomic_fetch_add(&h->requests, 1);
    if (strcmp(method, "GET") != 0 && strcmp(method, "HEAD") != 0)
        return queue(conn, MHD_HTTP_METHOD_NOT_ALLOWED, "GET only\n", 9, NULL);
    char buf[512];
    httpd_answer a = {.code = MHD_HTTP_NOT_FOUND, .body = "not found\n", .len = 10};
    h->fn(h->ctx, url, buf, sizeof buf, &a);
    enum MHD_Result ret = queue(conn, a.code, a.body ? a.body : "", a.body ? a.len : 0, a.content_type);
    free(a.owned);
    return ret;
}

httpd_t *httpd_new(const char *what, const char *host, int port, unsigned max_conns, httpd_fn fn, void *ctx) {
    const char *addr = host ? host : "127.0.0.1";
    if (port < 1 || port > 65535) {
        he_set(HE_EINVAL, "%s port %d is not in 1..65535", what, port);
        return NULL;
    }
    struct sockaddr_in sa;
    memset(&sa, 0, sizeof sa);
    sa.sin_family = AF_INET;
    sa.sin_port = htons((uint16_t)port);
    if (inet_pton(AF_INET, addr, &sa.sin_addr) != 1) {
        he_set(HE_EINVAL, "%s host '%s' is not an IPv4 address", what, addr);
        return NULL;
    }
    httpd_t *h = calloc(1, sizeof *h);
    if (!h) {
        he_set(HE_ENOMEM, "out of memory");
        return NULL;
    }
    h->fn = fn;
    h->ctx = ctx;
    h->d = MHD_start_daemon(MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_ERROR_LOG, (uint16_t)port, NULL, NULL, handler, h,
                            MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&sa, MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)10,
                            MHD_OPTION_CONNECTION_LIMIT, max_conns, MHD_OPTION_END);
    if (!h->d) {
        he_set(HE_EIO, "cannot serve %s on %s:%d (port in use?)", what, addr, port);
        free(h);
        return NULL;
    }
    return h;
}

void httpd_destroy(httpd_t **self_p) {
    if (!self_p || !*self_p) return;
    httpd_t *h = *self_p;
    if (h->d) MHD_stop_daemon(h->d); /* joins the HTTP thread */
    free(h);
    *self_p = NULL;
}

unsigned long httpd_requests(httpd_t *h) {
    return h ? atomic_load(&h->requests) : 0;
}
