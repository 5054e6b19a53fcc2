/* httpd: the small HTTP endpoint the coordinator's /metrics and the worker's
 * /healthz and /readyz share (libmicrohttpd, one internal polling thread).
 *
 * A server is started on an IPv4 address given as text (127.0.0.1 by
 * default: never every interface unless asked for), answers GET and HEAD
 * only, and hands each request to a callback that returns (code, text). The
 * callback runs on the HTTP thread: whatever it reads of its context must be
 * atomic or locked by the caller's own lock. Errors are returned through
 * herr, never asserted.
 *
 * Kept out of the common/ glob (it is its own library, helium_httpd) so that the
 * tools and fuzzers that link helium_common need no libmicrohttpd.
 */
#ifndef HELIUM_HTTPD_H
#define HELIUM_HTTPD_H

#include <stddef.h>

typedef struct httpd httpd_t;

/* What a request gets: code (200, 404, 503, ...), body, its Content-Type. */
typedef struct {
    unsigned code;
    const char *body;         /* copied before the callback's frame ends */
    size_t len;               /* bytes of body */
    const char *content_type; /* NULL: text/plain; charset=utf-8 */
    char *owned;              /* if set, body was malloc'd here: freed once answered */
} httpd_answer;

/* Called for each GET/HEAD request on the HTTP thread; fills *a. body may
 * point into buf (cap bytes, owned by the caller of the callback). */
typedef void (*httpd_fn)(void *ctx, const char *url, char *buf, size_t cap, httpd_answer *a);

/* Serves on host:port (host NULL: 127.0.0.1) with up to max_conns
 * connections; what names it in errors ("metrics", "probes"). NULL and
 * herr set (HE_EINVAL: a bad port or address; HE_EIO: cannot bind). */
httpd_t *httpd_new(const char *what, const char *host, int port, unsigned max_conns, httpd_fn fn, void *ctx);
/* Stops the server (joins its thread) and frees it; *self_p becomes NULL. */
void httpd_destroy(httpd_t **self_p);
/* Requests answered so far (any URL). */
unsigned long httpd_requests(httpd_t *h);

#endif
