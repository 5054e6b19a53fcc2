/* tools: HTTP calls of tool ops, run by libcurl's multi interface inside the
 * coordinator's poll loop (no threads, never blocking).
 *
 * Safety: only http:// and https:// URLs whose host (or host:port) is on the
 * coordinator's allowlist, and on the workflow's allow_hosts when it declares
 * any, are called; redirects are not followed; every call has a timeout and
 * a response-size limit (a longer body fails the call). Non-2xx/3xx statuses
 * fail the call.
 *
 * Loop integration: tools_poll_items() appends one zmq_pollitem_t per socket
 * curl watches, tools_timeout_ms() bounds the poll, tools_perform() drives
 * curl after the poll and reports finished calls through the done callback
 * (called from tools_perform only, never from tools_start/tools_abort).
 */
#ifndef HELIUM_COORD_TOOLS_H
#define HELIUM_COORD_TOOLS_H

#include <stddef.h>
#include <stdint.h>
#include <zmq.h>

#include "helium.pb-c.h"
#include "workflow.h"

typedef struct tools tools_t;
typedef struct tool_call tool_call;

/* Called once per started call that was not aborted. code is ERROR_OK with
 * the body, or ERROR_TOOL with a message in body. */
typedef void (*tools_done_fn)(void *ctx, void *user, Helium__ErrorCode code, const char *body, size_t len);

typedef struct {
    const char *method;           /* GET, POST, PUT, PATCH, DELETE, HEAD */
    const char *url;
    const char *body;             /* may be NULL or "" */
    size_t body_len;
    const wf_kv *headers;         /* (n_headers) */
    size_t n_headers;
    uint32_t timeout_ms;          /* 0 = WF_DEFAULT_TIMEOUT_MS */
    uint32_t max_response_bytes;  /* 0 = WF_DEFAULT_RESPONSE_BYTES */
    char *const *wf_hosts;        /* (n_wf_hosts) the workflow's allow_hosts; none = no extra limit */
    size_t n_wf_hosts;
} tool_request;

/* allow: n hosts ("host" or "host:port", case-insensitive). */
tools_t *tools_new(const char *const *allow, size_t n, tools_done_fn done, void *ctx);
/* Aborts every call without callbacks. */
void tools_destroy(tools_t **self_p);

/* Checks rq and starts the call; *handle identifies it for tools_abort.
 * Errors (no callback follows): HE_EINVAL bad URL or method, HE_EUNAVAIL host
 * not allowed (message names the host), HE_ENOMEM. */
int tools_start(tools_t *t, const tool_request *rq, void *user, tool_call **handle);
/* Stops a call; its callback will not run. */
void tools_abort(tools_t *t, tool_call *c);

/* Appends up to max poll items for curl's sockets; returns how many. */
int tools_poll_items(tools_t *t, zmq_pollitem_t *items, int max);
/* Milliseconds until curl needs tools_perform without socket activity; -1 = none. */
long tools_timeout_ms(tools_t *t);
/* Drives curl for the n items tools_poll_items filled (after zmq_poll) and
 * due timers; runs callbacks of finished calls. */
void tools_perform(tools_t *t, const zmq_pollitem_t *items, int n);
/* Calls in flight. */
size_t tools_active(const tools_t *t);

/* True if host (and port) pass allowlist entries allow[0..n). Exposed for tests. */
int tools_host_allowed(const char *const *allow, size_t n, const char *host, const char *port);

#endif
