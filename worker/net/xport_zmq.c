/* xport_zmq: the ZeroMQ reference transport (xport.h). One PAIR socket pair
 * per peer link: the receiving side (rank 1, the puller) binds a fresh tcp
 * endpoint on 127.0.0.1 and hands it out as the rendezvous token; the sending
 * side (rank 0) connects and says HELLO, which completes the join. A page
 * travels as one frame: its index in the transfer (u32 LE) then page_bytes
 * bytes. Faults (xp_zmq_faults) are injected on the sending and joining side.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <zmq.h>

#include "herr.h"
#include "xport.h"

typedef struct {
    bool used;
    uint64_t peer;
    void *sock;
    int rank;
    bool joined;
    bool receiving;
    int32_t *pages;     /* (n) receive targets */
    uint8_t *seen;      /* (n) pages arrived */
    int n, got;
} zlink;

typedef struct {
    void *zctx;
    xp_page_store store;
    xp_zmq_faults faults;
    uint8_t *buf;       /* 4 + page_bytes */
    zlink links[XP_MAX_PEERS];
} zx;

void *xp_zmq_new(void *zctx, const xp_page_store *store) {
    if (!zctx || !store || !store->page_bytes || !store->read_page || !store->write_page) {
        he_set(HE_EINVAL, "xport zmq: no context or page store");
        return NULL;
    }
    zx *z = calloc(1, sizeof *z);
    if (z) z->buf = malloc(4 + store->page_bytes);
    if (!z || !z->buf) {
        if (z) free(z);
        he_set(HE_ENOMEM, "xport zmq: out of memory");
        return NULL;
    }
    z->zctx = zctx;
    z->store = *store;
    z->faults.drop_page = -1;
    return z;
}

void xp_zmq_set_faults(void *impl, const xp_zmq_faults *f) { ((zx *)impl)->faults = *f; }

static zlink *zfind(zx *z, uint64_t peer, bool create) {
    for (int i = 0; i < XP_MAX_PEERS; i++)
        if (z->links[i].used && z->links[i].peer == peer) return &z->links[i];
    if (!create) return NULL;
    for (int i = 0; i < XP_MAX_PEERS; i++)
        if (!z->links[i].used) {
            memset(&z->links[i], 0, sizeof z->links[i]);
            z->links[i].used = true;
            z->links[i].peer = peer;
            return &z->links[i];
        }
    return NULL;
}

static void zclose(zlink *l) {
    if (l->sock) zmq_close(l->sock);
    free(l->pages);
    free(l->seen);
    memset(l, 0, sizeof *l);
}

static void *zsock(zx *z) {
    void *s = zmq_socket(z->zctx, ZMQ_PAIR);
    if (s) {
        int zero = 0;
        zmq_setsockopt(s, ZMQ_LINGER, &zero, sizeof zero);
    }
    return s;
}

static int z_offer(void *impl, uint64_t peer, uint8_t *token, size_t *len) {
    zx *z = impl;
    zlink *l = zfind(z, peer, true);
    if (!l) return he_set(HE_ELIMIT, "xport zmq: too many peers");
    if (l->sock) zclose(l), l = zfind(z, peer, true);
    l->sock = zsock(z);
    char ep[256];
    size_t el = sizeof ep;
    if (!l->sock || zmq_bind(l->sock, "tcp://127.0.0.1:*") != 0 || zmq_getsockopt(l->sock, ZMQ_LAST_ENDPOINT, ep, &el))
        return he_set(HE_EIO, "xport zmq: cannot bind a link endpoint: %s", zmq_strerror(zmq_errno()));
    size_t n = strlen(ep);
    if (n > *len) return he_set(HE_ELIMIT, "xport zmq: endpoint longer than the token");
    memcpy(token, ep, n);
    *len = n;
    l->rank = 1;
    return 0;
}

static int z_connect(void *impl, uint64_t peer, int rank, const uint8_t *token, size_t len) {
    zx *z = impl;
    if (rank == 1) { /* the offering side: already bound, waits for HELLO */
        zlink *l = zfind(z, peer, false);
        return l && l->sock ? 0 : he_set(HE_EINVAL, "xport zmq: join before offer");
    }
    zlink *l = zfind(z, peer, true);
    if (!l) return he_set(HE_ELIMIT, "xport zmq: too many peers");
    if (l->sock) zclose(l), l = zfind(z, peer, true);
    char ep[XP_TOKEN_MAX + 1];
    memcpy(ep, token, len);
    ep[len] = 0;
    if (z->faults.corrupt_token && len > 0) ep[len - 1] = ep[len - 1] == '1' ? '2' : '1'; /* another port */
    l->sock = zsock(z);
    l->rank = 0;
    if (!l->sock || zmq_connect(l->sock, ep) != 0)
        return he_set(HE_EPROTO, "xport zmq: cannot connect to '%s': %s", ep, zmq_strerror(zmq_errno()));
    if (zmq_send(l->sock, "HELLO", 5, ZMQ_DONTWAIT) != 5)
        return he_set(HE_EIO, "xport zmq: hello: %s", zmq_strerror(zmq_errno()));
    l->joined = true;
    return 0;
}

static int z_send(void *impl, uint64_t peer, const int32_t *pages, int n) {
    zx *z = impl;
    zlink *l = zfind(z, peer, false);
    if (!l || !l->sock || !l->joined) return he_set(HE_EINVAL, "xport zmq: send on a link not joined");
    if (z->faults.fail_send) return he_set(HE_EIO, "xport zmq: injected send failure");
    if (z->faults.stall_ms > 0) {
        struct timespec ts = {z->faults.stall_ms / 1000, (z->faults.stall_ms % 1000) * 1000000};
        nanosleep(&ts, NULL);
    }
    for (int i = 0; i < n; i++) {
        if (i == z->faults.drop_page) continue;
        uint32_t idx = (uint32_t)i;
        memcpy(z->buf, &idx, 4);
        int rc = z->store.read_page(z->store.ud, pages[i], z->buf + 4);
        if (rc) return rc;
        if (zmq_send(l->sock, z->buf, 4 + z->store.page_bytes, ZMQ_DONTWAIT) < 0)
            return he_set(HE_EIO, "xport zmq: send: %s", zmq_strerror(zmq_errno()));
    }
    return 0;
}

static int z_recv(void *impl, uint64_t peer, const int32_t *pages, int n) {
    zx *z = impl;
    zlink *l = zfind(z, peer, false);
    if (!l || !l->sock || !l->joined) return he_set(HE_EINVAL, "xport zmq: receive on a link not joined");
    free(l->pages);
    free(l->seen);
    l->pages = malloc(sizeof(int32_t) * (size_t)n);
    l->seen = calloc((size_t)n, 1);
    if (!l->pages || !l->seen) return he_set(HE_ENOMEM, "xport zmq: out of memory");
    memcpy(l->pages, pages, sizeof(int32_t) * (size_t)n);
    l->n = n;
    l->got = 0;
    l->receiving = true;
    return 0;
}

/* Drains what has arrived: HELLO while joining, pages while receiving. */
static int z_poll(void *impl, uint64_t peer) {
    zx *z = impl;
    zlink *l = zfind(z, peer, false);
    if (!l || !l->sock) return he_set(HE_EINVAL, "xport zmq: poll of no link");
    if (l->rank == 0) return 1; /* sends complete once queued */
    for (int k = 0; k < 4096; k++) {
        int got = zmq_recv(l->sock, z->buf, 4 + z->store.page_bytes, ZMQ_DONTWAIT);
        if (got < 0) break;
        if (!l->joined) {
            if (got != 5 || memcmp(z->buf, "HELLO", 5)) return he_set(HE_EPROTO, "xport zmq: bad hello");
            l->joined = true;
            if (!l->receiving) return 1;
            continue;
        }
        uint32_t idx;
        memcpy(&idx, z->buf, 4);
        if ((size_t)got != 4 + z->store.page_bytes || !l->receiving || idx >= (uint32_t)l->n)
            return he_set(HE_EPROTO, "xport zmq: bad page frame (%d bytes, index %u)", got, idx);
        int rc = z->store.write_page(z->store.ud, l->pages[idx], z->buf + 4);
        if (rc) return rc;
        if (!l->seen[idx]) l->seen[idx] = 1, l->got++;
    }
    if (!l->joined) return 0;
    if (!l->receiving) return 1;
    if (l->got == l->n) {
        l->receiving = false;
        return 1;
    }
    return 0;
}

static void z_abort(void *impl, uint64_t peer) {
    zlink *l = zfind(impl, peer, false);
    if (l) zclose(l);
}

static void z_destroy(void *impl) {
    zx *z = impl;
    for (int i = 0; i < XP_MAX_PEERS; i++)
        if (z->links[i].used) zclose(&z->links[i]);
    free(z->buf);
    free(z);
}

const xp_ops xp_zmq_ops = {
    .name = "zmq",
    .offer = z_offer,
    .connect = z_connect,
    .send = z_send,
    .recv = z_recv,
    .poll = z_poll,
    .abort = z_abort,
    .destroy = z_destroy,
};
