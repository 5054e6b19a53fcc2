/* xport: the transport control plane; see xport.h for the state machine.
 *
 * One entry per peer in a fixed table (XP_MAX_PEERS). A transfer asked for
 * while the link is still joining is queued (pages copied) and started by the
 * poll that sees the join complete: NCCL's non-blocking communicators take no
 * operation before their initialization is done. Deadlines: a join has
 * connect_ms from the offer / accept, a transfer transfer_ms from its start.
 */
#include "xport.h"

#include <stdlib.h>
#include <string.h>

#include "herr.h"

enum { DIR_NONE = 0, DIR_SEND, DIR_RECV };

typedef struct {
    bool used;
    uint64_t peer;
    xp_state st;
    int rank;
    int64_t deadline;
    int dir;              /* pending or running transfer */
    int32_t *pages;       /* (n) its pages */
    int n, cap;
    int failures;         /* consecutive */
} xp_link;

struct xport {
    const xp_ops *ops;
    void *impl;
    xport_config cfg;
    xp_link links[XP_MAX_PEERS];
    xport_stats st;
};

xport_t *xport_new(const xp_ops *ops, void *impl, const xport_config *cfg) {
    if (!ops || !impl) {
        he_set(HE_EINVAL, "xport: no transport");
        return NULL;
    }
    xport_t *x = calloc(1, sizeof *x);
    if (!x) {
        he_set(HE_ENOMEM, "xport: out of memory");
        return NULL;
    }
    x->ops = ops;
    x->impl = impl;
    if (cfg) x->cfg = *cfg;
    if (x->cfg.connect_ms <= 0) x->cfg.connect_ms = 5000;
    if (x->cfg.transfer_ms <= 0) x->cfg.transfer_ms = 2000;
    if (x->cfg.max_failures <= 0) x->cfg.max_failures = 3;
    return x;
}

void xport_destroy(xport_t **self_p) {
    if (!self_p || !*self_p) return;
    xport_t *x = *self_p;
    for (int i = 0; i < XP_MAX_PEERS; i++) {
        xp_link *l = &x->links[i];
        if (l->used && l->st != XP_IDLE && l->st != XP_DISABLED) x->ops->abort(x->impl, l->peer);
        free(l->pages);
    }
    if (x->ops->destroy) x->ops->destroy(x->impl);
    free(x);
    *self_p = NULL;
}

const char *xport_name(const xport_t *x) { return x->ops->name; }

static xp_link *find(const xport_t *x, uint64_t peer) {
    for (int i = 0; i < XP_MAX_PEERS; i++)
        if (x->links[i].used && x->links[i].peer == peer) return (xp_link *)&x->links[i];
    return NULL;
}

static xp_link *get(xport_t *x, uint64_t peer) {
    xp_link *l = find(x, peer);
    if (l) return l;
    for (int i = 0; i < XP_MAX_PEERS; i++)
        if (!x->links[i].used) {
            l = &x->links[i];
            memset(l, 0, sizeof *l);
            l->used = true;
            l->peer = peer;
            return l;
        }
    he_set(HE_ELIMIT, "xport: more than %d peers", XP_MAX_PEERS);
    return NULL;
}

xp_state xport_state(const xport_t *x, uint64_t peer) {
    const xp_link *l = find(x, peer);
    return l ? l->st : XP_IDLE;
}

bool xport_usable(const xport_t *x, uint64_t peer) {
    xp_state s = xport_state(x, peer);
    return s == XP_IDLE || s == XP_READY;
}

/* Tears l down after a failure (or an abort): pages of a receive go to the
 * invalidate callback; the peer is disabled after max_failures. */
static void teardown(xport_t *x, xp_link *l, bool count_failure) {
    x->ops->abort(x->impl, l->peer);
    x->st.aborts++;
    if (l->dir == DIR_RECV && l->n > 0) {
        if (x->cfg.invalidate) x->cfg.invalidate(x->cfg.ud, l->peer, l->pages, l->n);
        x->st.invalidated_pages += l->n;
    }
    l->dir = DIR_NONE;
    l->n = 0;
    l->st = XP_IDLE;
    if (count_failure && ++l->failures >= x->cfg.max_failures) {
        l->st = XP_DISABLED;
        x->st.disabled_peers++;
    }
}

static int fail(xport_t *x, xp_link *l, int rc, bool timeout) {
    if (timeout) {
        x->st.timeouts++;
        rc = he_set(HE_ETIMEOUT, "xport %s: peer %llu: %s past its deadline", x->ops->name,
                    (unsigned long long)l->peer, l->st == XP_SENDING || l->st == XP_RECEIVING ? "transfer" : "join");
    } else {
        x->st.errors++;
    }
    teardown(x, l, true);
    return rc;
}

static int join(xport_t *x, xp_link *l, int rank, const uint8_t *token, size_t len, int64_t now) {
    int rc = x->ops->connect(x->impl, l->peer, rank, token, len);
    if (rc) return fail(x, l, rc, false);
    l->rank = rank;
    l->st = rank ? XP_OFFERED : XP_CONNECTING;
    l->deadline = now + x->cfg.connect_ms;
    return 0;
}

int xport_offer(xport_t *x, uint64_t peer, uint8_t *token, size_t *len, int64_t now_ms) {
    xp_link *l = get(x, peer);
    if (!l) return HE_ELIMIT;
    if (l->st == XP_DISABLED) return he_set(HE_EUNAVAIL, "xport %s: peer %llu uses ZeroMQ only", x->ops->name,
                                            (unsigned long long)peer);
    if (l->st == XP_READY && l->rank == 1) {
        *len = 0;
        return 0;
    }
    if (l->st != XP_IDLE) return he_set(HE_EINVAL, "xport: link to peer %llu is busy", (unsigned long long)peer);
    size_t cap = *len;
    int rc = x->ops->offer(x->impl, peer, token, len);
    if (rc || *len == 0 || *len > cap || *len > XP_TOKEN_MAX) return fail(x, l, rc ? rc : he_set(HE_EINVAL, "xport: bad token"), false);
    x->st.offers++;
    return join(x, l, 1, token, *len, now_ms);
}

int xport_accept(xport_t *x, uint64_t peer, const uint8_t *token, size_t len, int64_t now_ms) {
    xp_link *l = get(x, peer);
    if (!l) return HE_ELIMIT;
    if (l->st == XP_DISABLED) return he_set(HE_EUNAVAIL, "xport %s: peer %llu uses ZeroMQ only", x->ops->name,
                                            (unsigned long long)peer);
    if (!token || len == 0 || len > XP_TOKEN_MAX) return he_set(HE_EPROTO, "xport: bad rendezvous token of %zu bytes", len);
    if (l->st != XP_IDLE) teardown(x, l, false); /* the puller started over: so do we */
    return join(x, l, 0, token, len, now_ms);
}

static int start(xport_t *x, xp_link *l, int64_t now) {
    int rc = l->dir == DIR_SEND ? x->ops->send(x->impl, l->peer, l->pages, l->n)
                                : x->ops->recv(x->impl, l->peer, l->pages, l->n);
    if (rc) return fail(x, l, rc, false);
    l->st = l->dir == DIR_SEND ? XP_SENDING : XP_RECEIVING;
    l->deadline = now + x->cfg.transfer_ms;
    return 0;
}

static int queue(xport_t *x, uint64_t peer, int dir, const int32_t *pages, int n, int64_t now) {
    xp_link *l = find(x, peer);
    if (!l || (l->st != XP_OFFERED && l->st != XP_CONNECTING && l->st != XP_READY) || l->dir != DIR_NONE)
        return he_set(HE_EINVAL, "xport: no joined, idle link to peer %llu", (unsigned long long)peer);
    if (n <= 0 || !pages) return he_set(HE_EINVAL, "xport: empty transfer");
    if (n > l->cap) {
        int32_t *np = realloc(l->pages, sizeof(int32_t) * (size_t)n);
        if (!np) return he_set(HE_ENOMEM, "xport: out of memory");
        l->pages = np;
        l->cap = n;
    }
    memcpy(l->pages, pages, sizeof(int32_t) * (size_t)n);
    l->n = n;
    l->dir = dir;
    return l->st == XP_READY ? start(x, l, now) : 0;
}

int xport_push(xport_t *x, uint64_t peer, const int32_t *pages, int n, int64_t now_ms) {
    return queue(x, peer, DIR_SEND, pages, n, now_ms);
}
int xport_pull(xport_t *x, uint64_t peer, const int32_t *pages, int n, int64_t now_ms) {
    return queue(x, peer, DIR_RECV, pages, n, now_ms);
}

int xport_poll(xport_t *x, uint64_t peer, int64_t now_ms) {
    xp_link *l = find(x, peer);
    if (!l || l->st == XP_IDLE) return he_set(HE_EINVAL, "xport: no link to peer %llu", (unsigned long long)peer);
    if (l->st == XP_DISABLED) return he_set(HE_EUNAVAIL, "xport: peer %llu uses ZeroMQ only", (unsigned long long)peer);
    if (l->st == XP_READY) return l->dir == DIR_NONE ? 1 : 0;
    int r = x->ops->poll(x->impl, peer);
    if (r < 0) return fail(x, l, r, false);
    if (r == 0) return now_ms > l->deadline ? fail(x, l, HE_ETIMEOUT, true) : 0;
    if (l->st == XP_OFFERED || l->st == XP_CONNECTING) { /* joined */
        x->st.connects++;
        l->st = XP_READY;
        if (l->dir == DIR_NONE) return 1;
        int rc = start(x, l, now_ms);
        return rc ? rc : 0;
    }
    x->st.transfers++;
    x->st.pages += l->n;
    l->failures = 0;
    l->dir = DIR_NONE;
    l->n = 0;
    l->st = XP_READY;
    return 1;
}

void xport_abort(xport_t *x, uint64_t peer) {
    xp_link *l = find(x, peer);
    if (l && l->st != XP_IDLE && l->st != XP_DISABLED) teardown(x, l, false);
}

xport_stats xport_get_stats(const xport_t *x) { return x->st; }
