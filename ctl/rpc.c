/* rpc: heliumctl's DEALER channel to the coordinator; see rpc.h.
 *
 * rpc_call: at most one call is outstanding, so any reply whose request_id
 * is not the current call's belongs to an abandoned (timed-out) call and is
 * dropped. rpc_send/rpc_recv leave the matching to the caller (a followed
 * job's pushed replies and a liveness probe's reply share the socket).
 */
#define _GNU_SOURCE
#include "rpc.h"

#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <zmq.h>

#include "herr.h"

struct rpc {
    void *ctx;
    void *sock;           /* DEALER */
    char *endpoint;
    int timeout_ms;
    uint64_t next_id;     /* request_id of the next call */
};

static int64_t now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

rpc_t *rpc_new(const char *endpoint, int timeout_ms, const zauth_keys *keys) {
    rpc_t *r = calloc(1, sizeof *r);
    if (!r) {
        he_set(HE_ENOMEM, "out of memory");
        return NULL;
    }
    r->timeout_ms = timeout_ms > 0 ? timeout_ms : 1;
    r->endpoint = strdup(endpoint);
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    /* distinct per process, so replies meant for another client can't match */
    r->next_id = ((uint64_t)getpid() << 32) ^ ((uint64_t)ts.tv_nsec << 8) ^ (uint64_t)ts.tv_sec;
    if (r->next_id == 0) r->next_id = 1;
    r->ctx = zmq_ctx_new();
    if (!r->endpoint || !r->ctx) {
        he_set(HE_EIO, "cannot create a ZeroMQ context");
        rpc_destroy(&r);
        return NULL;
    }
    r->sock = zmq_socket(r->ctx, ZMQ_DEALER);
    int linger = 0;
    if (!r->sock || zmq_setsockopt(r->sock, ZMQ_LINGER, &linger, sizeof linger) != 0) {
        he_set(HE_EIO, "cannot create a ZeroMQ socket: %s", zmq_strerror(zmq_errno()));
        rpc_destroy(&r);
        return NULL;
    }
    if (keys && zauth_set_client(r->sock, keys, NULL)) {
        rpc_destroy(&r);
        return NULL;
    }
    if (zmq_connect(r->sock, endpoint) != 0) {
        he_set(HE_EINVAL, "cannot connect to '%s': %s", endpoint, zmq_strerror(zmq_errno()));
        rpc_destroy(&r);
        return NULL;
    }
    return r;
}

void rpc_destroy(rpc_t **self_p) {
    if (!self_p || !*self_p) return;
    rpc_t *r = *self_p;
    if (r->sock) zmq_close(r->sock);
    if (r->ctx) zmq_ctx_term(r->ctx);
    free(r->endpoint);
    free(r);
    *self_p = NULL;
}

const char *rpc_endpoint(const rpc_t *r) { return r->endpoint; }
int rpc_timeout_ms(const rpc_t *r) { return r->timeout_ms; }

/* Receives one whole message (all frames) and keeps its last non-empty frame
 * in *msg (empty delimiter frames, as a REQ-style peer would send, are
 * skipped). Returns 0, or HE_EIO. */
static int recv_last_frame(void *sock, zmq_msg_t *msg) {
    bool have = false;
    for (;;) {
        zmq_msg_t part;
        zmq_msg_init(&part);
        if (zmq_msg_recv(&part, sock, ZMQ_DONTWAIT) < 0) {
            zmq_msg_close(&part);
            if (have) zmq_msg_close(msg);
            return he_set(HE_EIO, "receive failed: %s", zmq_strerror(zmq_errno()));
        }
        int more = zmq_msg_more(&part);
        if (zmq_msg_size(&part) > 0 || !have) {
            if (have) zmq_msg_close(msg);
            zmq_msg_init(msg);
            zmq_msg_move(msg, &part);
            have = true;
        }
        zmq_msg_close(&part);
        if (!more) return 0;
    }
}

int rpc_send(rpc_t *r, Helium__Request *req) {
    req->protocol_version = HELIUM__PROTOCOL__PROTOCOL_CURRENT;
    req->request_id = r->next_id++;
    size_t n = helium__request__get_packed_size(req);
    uint8_t *buf = malloc(n ? n : 1);
    if (!buf) return he_set(HE_ENOMEM, "out of memory");
    helium__request__pack(req, buf);
    /* the send may block on a DEALER with no connected peer: bound it too */
    int sndtimeo = r->timeout_ms;
    zmq_setsockopt(r->sock, ZMQ_SNDTIMEO, &sndtimeo, sizeof sndtimeo);
    int rc = zmq_send(r->sock, buf, n, 0);
    free(buf);
    if (rc < 0) {
        if (zmq_errno() == EAGAIN)
            return he_set(HE_ETIMEOUT, "coordinator at %s did not answer within %d ms", r->endpoint,
                          r->timeout_ms);
        return he_set(HE_EIO, "send to %s failed: %s", r->endpoint, zmq_strerror(zmq_errno()));
    }
    return 0;
}

int rpc_recv(rpc_t *r, int timeout_ms, Helium__Reply **out) {
    *out = NULL;
    zmq_pollitem_t it = {.socket = r->sock, .events = ZMQ_POLLIN};
    int pr = zmq_poll(&it, 1, timeout_ms);
    if (pr < 0) {
        if (zmq_errno() == EINTR) return he_set(HE_ECANCELED, "interrupted");
        return he_set(HE_EIO, "poll failed: %s", zmq_strerror(zmq_errno()));
    }
    if (pr == 0) return he_set(HE_ETIMEOUT, "coordinator at %s did not answer within %d ms", r->endpoint, timeout_ms);
    zmq_msg_t msg;
    if (recv_last_frame(r->sock, &msg) < 0) return HE_EIO;
    Helium__Reply *rep = helium__reply__unpack(NULL, zmq_msg_size(&msg), (const uint8_t *)zmq_msg_data(&msg));
    size_t sz = zmq_msg_size(&msg);
    zmq_msg_close(&msg);
    if (!rep) return he_set(HE_EPROTO, "coordinator sent an unreadable reply (%zu bytes)", sz);
    if (rep->protocol_version != HELIUM__PROTOCOL__PROTOCOL_CURRENT) {
        uint32_t v = rep->protocol_version;
        helium__reply__free_unpacked(rep, NULL);
        return he_set(HE_EPROTO, "coordinator speaks protocol version %u, heliumctl speaks %d", v,
                      HELIUM__PROTOCOL__PROTOCOL_CURRENT);
    }
    *out = rep;
    return 0;
}

int rpc_call(rpc_t *r, Helium__Request *req, Helium__Reply **out) {
    *out = NULL;
    int64_t deadline = now_ms() + r->timeout_ms;
    int rc = rpc_send(r, req);
    if (rc) return rc;
    for (;;) {
        int64_t left = deadline - now_ms();
        if (left <= 0) break;
        Helium__Reply *rep;
        rc = rpc_recv(r, (int)left, &rep);
        if (rc == HE_ETIMEOUT) break;
        if (rc) return rc;
        if (rep->request_id != req->request_id) { /* a reply to an abandoned call */
            helium__reply__free_unpacked(rep, NULL);
            continue;
        }
        *out = rep;
        return 0;
    }
    return he_set(HE_ETIMEOUT, "coordinator at %s did not answer within %d ms", r->endpoint, r->timeout_ms);
}
