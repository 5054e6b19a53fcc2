/* tools: see tools.h.
 *
 * curl tells us which sockets to watch (socket callback) and when to call it
 * back without activity (timer callback); both are mirrored in plain arrays
 * the loop turns into zmq_pollitem_t entries. Finished transfers are first
 * moved off the multi handle onto a done list and only then reported, so a
 * callback may abort other calls (even finished, unreported ones) safely.
 */
#include "tools.h"

#include <curl/curl.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "clock.h"
#include "herr.h"
#include "log.h"
#include "render.h"

#define TOOLS_MAX_SOCKS 256
#define TOOLS_MAX_CONNS (TOOLS_MAX_SOCKS / 4)

struct tool_call {
    CURL *easy;
    struct curl_slist *hdrs;
    sbuf resp;
    bool too_big;
    bool finished;              /* on the done list */
    CURLcode res;
    long status;
    void *user;
    char url[256];              /* for messages (truncated) */
    char errbuf[CURL_ERROR_SIZE];
    tool_call *prev, *next;     /* active or done list */
};

typedef struct {
    curl_socket_t fd;
    int what;                   /* CURL_POLL_IN / OUT / INOUT */
} sock_watch;

struct tools {
    CURLM *multi;
    char **allow;
    size_t n_allow;
    tools_done_fn done;
    void *ctx;
    tool_call *active, *fin;    /* doubly-linked lists */
    size_t n_active;
    sock_watch socks[TOOLS_MAX_SOCKS];
    int n_socks;
    int64_t deadline_ms;        /* monotonic; -1 = no timer */
};

static int g_curl_init;

static void list_remove(tool_call **head, tool_call *c) {
    if (c->prev) c->prev->next = c->next; else *head = c->next;
    if (c->next) c->next->prev = c->prev;
    c->prev = c->next = NULL;
}

static void list_push(tool_call **head, tool_call *c) {
    c->prev = NULL;
    c->next = *head;
    if (*head) (*head)->prev = c;
    *head = c;
}

static int sock_cb(CURL *easy, curl_socket_t s, int what, void *userp, void *socketp) {
    (void)easy;
    (void)socketp;
    tools_t *t = userp;
    int i = 0;
    while (i < t->n_socks && t->socks[i].fd != s) i++;
    if (what == CURL_POLL_REMOVE) {
        if (i < t->n_socks) t->socks[i] = t->socks[--t->n_socks];
        return 0;
    }
    if (i == t->n_socks) {
        if (t->n_socks == TOOLS_MAX_SOCKS) return -1; /* curl fails that transfer */
        t->n_socks++;
    }
    t->socks[i] = (sock_watch){.fd = s, .what = what};
    return 0;
}

static int timer_cb(CURLM *multi, long timeout_ms, void *userp) {
    (void)multi;
    tools_t *t = userp;
    t->deadline_ms = timeout_ms < 0 ? -1 : clock_mono_ms() + timeout_ms;
    return 0;
}

tools_t *tools_new(const char *const *allow, size_t n, tools_done_fn done, void *ctx) {
    if (!g_curl_init) {
        if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) return NULL;
        g_curl_init = 1;
    }
    tools_t *t = calloc(1, sizeof *t);
    if (!t) return NULL;
    t->done = done;
    t->ctx = ctx;
    t->deadline_ms = -1;
    t->allow = calloc(n ? n : 1, sizeof *t->allow);
    t->multi = curl_multi_init();
    if (!t->allow || !t->multi) goto fail;
    for (size_t i = 0; i < n; i++) {
        if (!(t->allow[i] = strdup(allow[i]))) goto fail;
        t->n_allow++;
    }
    /* at most TOOLS_MAX_CONNS connections at once (a connection may watch two
     * sockets while it connects): curl queues the other calls itself, so
     * sock_cb never runs out of room (its refusal aborted transfers inside
     * curl 7.88 and crashed it with 1,000+ calls in flight) */
    curl_multi_setopt(t->multi, CURLMOPT_MAX_TOTAL_CONNECTIONS, (long)TOOLS_MAX_CONNS);
    curl_multi_setopt(t->multi, CURLMOPT_SOCKETFUNCTION, sock_cb);
    curl_multi_setopt(t->multi, CURLMOPT_SOCKETDATA, t);
    curl_multi_setopt(t->multi, CURLMOPT_TIMERFUNCTION, timer_cb);
    curl_multi_setopt(t->multi, CURLMOPT_TIMERDATA, t);
    return t;
fail:
    tools_destroy(&t);
    return NULL;
}

static void call_free(tools_t *t, tool_call *c) {
    if (c->easy) {
        if (!c->finished) curl_multi_remove_handle(t->multi, c->easy);
        curl_easy_cleanup(c->easy);
    }
    curl_slist_free_all(c->hdrs);
    sb_free(&c->resp);
    free(c);
}

void tools_destroy(tools_t **self_p) {
    if (!self_p || !*self_p) return;
    tools_t *t = *self_p;
    while (t->active) {
        tool_call *c = t->active;
        list_remove(&t->active, c);
        call_free(t, c);
    }
    while (t->fin) {
        tool_call *c = t->fin;
        list_remove(&t->fin, c);
        call_free(t, c);
    }
    if (t->multi) curl_multi_cleanup(t->multi);
    for (size_t i = 0; i < t->n_allow; i++) free(t->allow[i]);
    free(t->allow);
    free(t);
    *self_p = NULL;
}

int tools_host_allowed(const char *const *allow, size_t n, const char *host, const char *port) {
    char hp[300];
    snprintf(hp, sizeof hp, "%s:%s", host, port ? port : "");
    for (size_t i = 0; i < n; i++) {
        const char *a = allow[i];
        if (!a) continue;
        if (strcasecmp(a, host) == 0 || (port && strcasecmp(a, hp) == 0)) return 1;
        /* "::1" on the list matches the bracketed host "[::1]" */
        size_t hl = strlen(host);
        if (hl > 2 && host[0] == '[' && host[hl - 1] == ']' && strlen(a) == hl - 2 &&
            strncasecmp(a, host + 1, hl - 2) == 0)
            return 1;
    }
    return 0;
}

static size_t write_cb(char *ptr, size_t size, size_t nmemb, void *userdata) {
    tool_call *c = userdata;
    size_t n = size * nmemb;
    if (sb_add(&c->resp, ptr, n)) {
        c->too_big = true;
        return 0; /* aborts the transfer with CURLE_WRITE_ERROR */
    }
    return n;
}

/* Splits url into host and port; checks scheme and the allowlists. */
static int check_url(tools_t *t, const tool_request *rq) {
    CURLU *u = curl_url();
    if (!u) return he_set(HE_ENOMEM, "out of memory");
    char *scheme = NULL, *host = NULL, *port = NULL;
    int rc = 0;
    if (curl_url_set(u, CURLUPART_URL, rq->url, 0) != CURLUE_OK ||
        curl_url_get(u, CURLUPART_SCHEME, &scheme, 0) != CURLUE_OK ||
        curl_url_get(u, CURLUPART_HOST, &host, 0) != CURLUE_OK) {
        rc = he_set(HE_EINVAL, "tool url '%.200s' is not a valid URL", rq->url);
        goto out;
    }
    if (strcasecmp(scheme, "http") != 0 && strcasecmp(scheme, "https") != 0) {
        rc = he_set(HE_EINVAL, "tool url '%.200s' is not http:// or https://", rq->url);
        goto out;
    }
    curl_url_get(u, CURLUPART_PORT, &port, CURLU_DEFAULT_PORT);
    if (!tools_host_allowed((const char *const *)t->allow, t->n_allow, host, port)) {
        rc = he_set(HE_EUNAVAIL, "tool host '%.200s' is not on the coordinator's allowlist (--allow-host)", host);
        goto out;
    }
    if (rq->n_wf_hosts && !tools_host_allowed((const char *const *)rq->wf_hosts, rq->n_wf_hosts, host, port)) {
        rc = he_set(HE_EUNAVAIL, "tool host '%.200s' is not in the workflow's allow_hosts", host);
        goto out;
    }
out:
    curl_free(scheme);
    curl_free(host);
    curl_free(port);
    curl_url_cleanup(u);
    return rc;
}

int tools_start(tools_t *t, const tool_request *rq, void *user, tool_call **handle) {
    *handle = NULL;
    if (!rq->url || !rq->method) return he_set(HE_EINVAL, "tool call without url or method");
    int rc = check_url(t, rq);
    if (rc) return rc;
    const char *m = rq->method;
    if (strcmp(m, "GET") && strcmp(m, "POST") && strcmp(m, "PUT") && strcmp(m, "PATCH") && strcmp(m, "DELETE") &&
        strcmp(m, "HEAD"))
        return he_set(HE_EINVAL, "tool method '%.16s' is not supported", m);
    tool_call *c = calloc(1, sizeof *c);
    if (!c) return he_set(HE_ENOMEM, "out of memory");
    uint32_t max = rq->max_response_bytes ? rq->max_response_bytes : WF_DEFAULT_RESPONSE_BYTES;
    uint32_t tmo = rq->timeout_ms ? rq->timeout_ms : WF_DEFAULT_TIMEOUT_MS;
    sb_init(&c->resp, max);
    c->user = user;
    snprintf(c->url, sizeof c->url, "%s", rq->url);
    if (!(c->easy = curl_easy_init())) {
        call_free(t, c);
        return he_set(HE_ENOMEM, "curl_easy_init failed");
    }
    CURL *e = c->easy;
    curl_easy_setopt(e, CURLOPT_URL, rq->url);
    curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(e, CURLOPT_FOLLOWLOCATION, 0L);
    curl_easy_setopt(e, CURLOPT_NOPROXY, "*");
    curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, (long)tmo);
    curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS, (long)tmo);
    curl_easy_setopt(e, CURLOPT_MAXFILESIZE_LARGE, (curl_off_t)max);
    curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, write_cb);
    curl_easy_setopt(e, CURLOPT_WRITEDATA, c);
    curl_easy_setopt(e, CURLOPT_ERRORBUFFER, c->errbuf);
    curl_easy_setopt(e, CURLOPT_PRIVATE, c);
    curl_easy_setopt(e, CURLOPT_USERAGENT, "helium-coordinator");
    bool has_body = rq->body && rq->body_len;
    if (!strcmp(m, "HEAD")) {
        curl_easy_setopt(e, CURLOPT_NOBODY, 1L);
    } else if (strcmp(m, "GET") != 0) {
        if (!strcmp(m, "POST")) curl_easy_setopt(e, CURLOPT_POST, 1L);
        else curl_easy_setopt(e, CURLOPT_CUSTOMREQUEST, m);
        if (has_body || !strcmp(m, "POST")) {
            curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)(has_body ? rq->body_len : 0));
            curl_easy_setopt(e, CURLOPT_COPYPOSTFIELDS, has_body ? rq->body : "");
        }
    }
    for (size_t i = 0; i < rq->n_headers; i++) {
        char line[8192];
        int k = snprintf(line, sizeof line, "%s: %s", rq->headers[i].key, rq->headers[i].value);
        if (k < 0 || (size_t)k >= sizeof line) {
            call_free(t, c);
            return he_set(HE_EINVAL, "tool header '%.64s' is too long", rq->headers[i].key);
        }
        struct curl_slist *l = curl_slist_append(c->hdrs, line);
        if (!l) {
            call_free(t, c);
            return he_set(HE_ENOMEM, "out of memory");
        }
        c->hdrs = l;
    }
    if (c->hdrs) curl_easy_setopt(e, CURLOPT_HTTPHEADER, c->hdrs);
    if (curl_multi_add_handle(t->multi, e) != CURLM_OK) {
        c->finished = true; /* never added: do not remove */
        call_free(t, c);
        return he_set(HE_ENOMEM, "curl_multi_add_handle failed");
    }
    list_push(&t->active, c);
    t->n_active++;
    *handle = c;
    clog_msg(CLOG_DEBUG, "tool: %s %s", m, c->url);
    return 0;
}

void tools_abort(tools_t *t, tool_call *c) {
    if (!c) return;
    if (c->finished) {
        list_remove(&t->fin, c);
    } else {
        list_remove(&t->active, c);
        t->n_active--;
    }
    call_free(t, c);
}

int tools_poll_items(tools_t *t, zmq_pollitem_t *items, int max) {
    int n = 0;
    for (int i = 0; i < t->n_socks && n < max; i++) {
        short ev = 0;
        if (t->socks[i].what & CURL_POLL_IN) ev |= ZMQ_POLLIN;
        if (t->socks[i].what & CURL_POLL_OUT) ev |= ZMQ_POLLOUT;
        items[n++] = (zmq_pollitem_t){.socket = NULL, .fd = t->socks[i].fd, .events = ev, .revents = 0};
    }
    return n;
}

long tools_timeout_ms(tools_t *t) {
    if (t->deadline_ms < 0) return -1;
    int64_t d = t->deadline_ms - clock_mono_ms();
    return d < 0 ? 0 : (long)d;
}

size_t tools_active(const tools_t *t) { return t->n_active; }

/* Moves every finished transfer from the multi handle to the done list. */
static void collect(tools_t *t) {
    CURLMsg *msg;
    int left;
    while ((msg = curl_multi_info_read(t->multi, &left))) {
        if (msg->msg != CURLMSG_DONE) continue;
        tool_call *c = NULL;
        curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, (char **)&c);
        if (!c) continue;
        c->res = msg->data.result;
        curl_easy_getinfo(c->easy, CURLINFO_RESPONSE_CODE, &c->status);
        curl_multi_remove_handle(t->multi, c->easy);
        c->finished = true;
        list_remove(&t->active, c);
        t->n_active--;
        list_push(&t->fin, c);
    }
}

void tools_perform(tools_t *t, const zmq_pollitem_t *items, int n) {
    int running;
    for (int i = 0; i < n; i++) {
        if (!items[i].revents) continue;
        int flags = 0;
        if (items[i].revents & ZMQ_POLLIN) flags |= CURL_CSELECT_IN;
        if (items[i].revents & ZMQ_POLLOUT) flags |= CURL_CSELECT_OUT;
        if (items[i].revents & ZMQ_POLLERR) flags |= CURL_CSELECT_ERR;
        curl_multi_socket_action(t->multi, items[i].fd, flags, &running);
    }
    if (t->deadline_ms >= 0 && clock_mono_ms() >= t->deadline_ms) {
        t->deadline_ms = -1;
        curl_multi_socket_action(t->multi, CURL_SOCKET_TIMEOUT, 0, &running);
    }
    collect(t);
    while (t->fin) {
        tool_call *c = t->fin;
        list_remove(&t->fin, c);
        char msg[600];
        Helium__ErrorCode code = HELIUM__ERROR_CODE__ERROR_OK;
        if (c->too_big) {
            snprintf(msg, sizeof msg, "tool %s: response longer than %zu bytes", c->url, c->resp.limit);
            code = HELIUM__ERROR_CODE__ERROR_TOOL;
        } else if (c->res == CURLE_FILESIZE_EXCEEDED) {
            snprintf(msg, sizeof msg, "tool %s: response longer than %zu bytes", c->url, c->resp.limit);
            code = HELIUM__ERROR_CODE__ERROR_TOOL;
        } else if (c->res != CURLE_OK) {
            snprintf(msg, sizeof msg, "tool %s: %s%s%s", c->url, curl_easy_strerror(c->res),
                     *c->errbuf ? ": " : "", c->errbuf);
            code = HELIUM__ERROR_CODE__ERROR_TOOL;
        } else if (c->status >= 400 || c->status < 100) {
            snprintf(msg, sizeof msg, "tool %s: HTTP status %ld", c->url, c->status);
            code = HELIUM__ERROR_CODE__ERROR_TOOL;
        }
        c->finished = true;
        void *user = c->user;
        if (code == HELIUM__ERROR_CODE__ERROR_OK) {
            size_t len;
            char *body = sb_take(&c->resp, &len);
            call_free(t, c);
            t->done(t->ctx, user, code, body ? body : "", body ? len : 0);
            free(body);
        } else {
            call_free(t, c);
            t->done(t->ctx, user, code, msg, strlen(msg));
        }
    }
}
