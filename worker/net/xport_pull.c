/* xport_pull: KV pulls over the transport (xport.h) under the pull protocol,
 * both ends, on the worker's main (engine) thread.
 *
 * Which transport: a worker has at most one besides ZeroMQ (--kv-xport:
 * "nccl" between GPU workers, "zmq-ref" the ZeroMQ reference transport for
 * CPU tests, or none), stated in its Register (kv_xport, xport_domain). The
 * coordinator names the source's transport in the pull hint only when both
 * workers registered the same one in the same domain (place.c), so a pull
 * asks for the transport only then, and only while the link to that peer is
 * usable and idle (xport_usable; one transfer per link at a time); else it
 * goes over ZeroMQ exactly as before.
 *
 * A pull over the transport (puller P, server S; a link per peer pair, keyed
 * by the peer's endpoint at P and by its worker id at S):
 *   P: KvPull{hashes, xport, xport_token (xport_offer: a new link's
 *      rendezvous token, empty when the joined link is reused)}
 *   S: holds the leading cached run of the pages (eng_kv_hold: neither
 *      evicted nor reused while in flight), joins (xport_accept), starts
 *      sending them (xport_push), and answers KvPages{xport, pages with hash
 *      and parent, no data}; the pages stay held until the send completes or
 *      fails (xpl_timers polls). S declines, answering plain KvPages over
 *      ZeroMQ, when it has no such transport, the link is busy or not
 *      joined, or a step fails.
 *   P: checks the header against what it asked for, reserves that many
 *      pool pages (eng_kv_reserve) and receives into them (xport_pull); on
 *      completion commits them under their hashes (eng_kv_commit: counted,
 *      pinned and accounted as imported pages, exactly like KvPages).
 * Fallback: any failure at P (a bad header, no pages to reserve, a transport
 * error, a join or transfer past its deadline) aborts the link, releases
 * the reserved pages (the xport invalidate callback) and asks S again for
 * the pages still wanted with a plain KvPull over ZeroMQ (the same transfer
 * id), while the pull's own deadline allows; else the call recomputes them.
 * Each such event is counted (xp_fallbacks); a declined pull too
 * (xp_declined). After max_failures consecutive failures the peer's pulls
 * use ZeroMQ only (xport.h).
 *
 * Ownership: every reserved page is released exactly once, by the
 * invalidate callback (a failed or aborted receive), by xpl_task_gone, or
 * committed; every held page is unheld exactly once when its serve ends.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <zmq.h>

#include "herr.h"
#include "net.h"

/* The NCCL transport lives in the CUDA backend library, linked only into
 * CUDA builds of the worker: weak references, NULL elsewhere (engine.c finds
 * be_cuda_new the same way). */
extern void *xp_nccl_new(be_t *be) __attribute__((weak));
extern const xp_ops xp_nccl_ops __attribute__((weak));

/* Our pages in flight to a peer over the transport. */
typedef struct xpl_serve {
    uint64_t peer;    /* link key (xpl_peer_key of the requester's id) */
    uint64_t xfer;    /* its KvPull's transfer id, for logs */
    int32_t *pages;   /* (n) held pool pages */
    int32_t n;
} xpl_serve;

uint64_t xpl_peer_key(const char *name) { /* FNV-1a, never 0 */
    uint64_t h = 1469598103934665603ull;
    for (const unsigned char *p = (const unsigned char *)(name ? name : ""); *p; p++) h = (h ^ *p) * 1099511628211ull;
    return h ? h : 1;
}

/* ------------------------------------------------------------ setup */

static int store_read(void *ud, int32_t page, void *dst) { return eng_kv_page_read(ud, page, dst); }
static int store_write(void *ud, int32_t page, const void *src) { return eng_kv_page_write(ud, page, src); }

/* A failed or aborted receive: its reserved pages hold nothing usable. */
static void on_invalidate(void *ud, uint64_t peer, const int32_t *pages, int n) {
    srv_t *s = ud;
    for (task_t *t = s->tasks; t; t = t->next)
        if (t->xp_pages && t->xp_peer == peer) {
            eng_kv_release(s->e, t->xp_pages, t->xp_n);
            free(t->xp_pages);
            t->xp_pages = NULL;
            t->xp_n = 0;
            return;
        }
    (void)pages;
    (void)n; /* not a task's (cannot happen): nothing reserved to release */
}

int xpl_setup(srv_t *s) {
    const char *want = s->o.kv_xport ? s->o.kv_xport : "auto";
    if (!strcmp(want, "off") || !s->data_ep[0]) return 0;
    bool cuda = !strcmp(eng_backend_name(s->e), "cuda");
    if (!strcmp(want, "auto")) {
        if (!cuda || !xp_nccl_new) return 0;
        want = "nccl";
    }
    void *impl = NULL;
    const xp_ops *ops = NULL;
    if (!strcmp(want, "nccl")) {
        if (!xp_nccl_new || !cuda) {
            clog_msg(CLOG_ERROR, "--kv-xport nccl needs a CUDA build and --backend cuda");
            return 1;
        }
        impl = xp_nccl_new(eng_be(s->e));
        ops = &xp_nccl_ops;
    } else if (!strcmp(want, "zmq-ref")) {
        xp_page_store st = {.page_bytes = eng_kv_page_bytes(s->e), .read_page = store_read,
                            .write_page = store_write, .ud = s->e};
        impl = xp_zmq_new(s->zctx, &st);
        ops = &xp_zmq_ops;
        if (impl && s->o.kv_xport_fault) {
            xp_zmq_faults f = {.drop_page = -1};
            if (!strcmp(s->o.kv_xport_fault, "drop")) f.drop_page = 0;
            else if (!strcmp(s->o.kv_xport_fault, "token")) f.corrupt_token = true;
            else if (!strcmp(s->o.kv_xport_fault, "send")) f.fail_send = true;
            xp_zmq_set_faults(impl, &f);
            clog_msg(CLOG_WARN, "KV transport: injecting fault '%s' (tests)", s->o.kv_xport_fault);
        }
    } else {
        clog_msg(CLOG_ERROR, "unknown --kv-xport '%s' (auto, nccl, zmq-ref, off)", want);
        return 1;
    }
    /* the transport's deadlines leave the pull's own deadline room for the
     * ZeroMQ fallback */
    int64_t budget = s->o.pull_timeout_ms / 3 > 50 ? s->o.pull_timeout_ms / 3 : 50;
    xport_config xc = {.connect_ms = budget, .transfer_ms = budget, .invalidate = on_invalidate, .ud = s};
    if (impl) s->xp = xport_new(ops, impl, &xc);
    if (!s->xp) {
        clog_msg(CLOG_WARN, "KV transport %s unavailable (%s): pulls use ZeroMQ only", want, he_msg());
        if (impl && ops) ops->destroy(impl);
        return 0;
    }
    snprintf(s->xp_name, sizeof s->xp_name, "%s", want);
    if (s->o.xport_domain) snprintf(s->xp_domain, sizeof s->xp_domain, "%s", s->o.xport_domain);
    else if (gethostname(s->xp_domain, sizeof s->xp_domain - 1) != 0) snprintf(s->xp_domain, sizeof s->xp_domain, "?");
    clog_msg(CLOG_INFO, "KV transport %s (domain %s) under pulls; ZeroMQ is the fallback", s->xp_name, s->xp_domain);
    return 0;
}

static void serve_end(srv_t *s, int i) {
    xpl_serve *v = &s->xp_serves[i];
    eng_kv_unhold(s->e, v->pages, v->n);
    free(v->pages);
    s->xp_serves[i] = s->xp_serves[--s->xp_n_serves];
}

void xpl_teardown(srv_t *s) {
    while (s->xp_n_serves > 0) {
        if (s->xp) xport_abort(s->xp, s->xp_serves[0].peer);
        serve_end(s, 0);
    }
    free(s->xp_serves);
    s->xp_serves = NULL;
    s->xp_cap_serves = 0;
    xport_destroy(&s->xp);
}

/* ------------------------------------------------------------ puller */

void xpl_offer(srv_t *s, task_t *t, const Helium__KvPullHint *h, Helium__KvPull *pull, uint8_t *token) {
    t->xp_offered = false;
    if (!s->xp || !h->source_xport || strcmp(h->source_xport, s->xp_name)) return;
    uint64_t peer = xpl_peer_key(h->source_endpoint);
    for (const task_t *x = s->tasks; x; x = x->next) /* one transfer per link */
        if (x != t && x->xp_peer == peer && (x->xp_offered || x->xp_pages)) return;
    if (!xport_usable(s->xp, peer)) return;
    size_t len = XP_TOKEN_MAX;
    if (xport_offer(s->xp, peer, token, &len, clock_mono_ms())) {
        clog_msg(CLOG_WARN, "KV transport %s: no offer to %s: %s; pulling over ZeroMQ", s->xp_name,
                 h->source_endpoint, he_msg());
        s->xp_fallbacks++;
        return;
    }
    pull->xport = s->xp_name;
    pull->xport_token.data = token;
    pull->xport_token.len = len; /* 0: reuse the joined link */
    t->xp_offered = true;
    t->xp_peer = peer;
}

/* The transfer cannot go on: over ZeroMQ if the pull has time left, else the
 * call recomputes what did not come. */
static void fall_back(srv_t *s, task_t *t, const char *why) {
    s->xp_fallbacks++;
    t->xp_offered = false;
    if (t->xp_pages) { /* reserved and not handed to the transport's invalidate */
        eng_kv_release(s->e, t->xp_pages, t->xp_n);
        free(t->xp_pages);
        t->xp_pages = NULL;
        t->xp_n = 0;
    }
    if (clock_mono_ms() < t->pull_deadline_ms && pull_resend(s, t) == 0) {
        clog_msg(CLOG_WARN, "task %llu: KV transport %s failed (%s); pulling the rest over ZeroMQ",
                 (unsigned long long)t->task_id, s->xp_name, why);
        return;
    }
    clog_msg(CLOG_WARN, "task %llu: KV transport %s failed (%s); recomputing", (unsigned long long)t->task_id,
             s->xp_name, why);
    pull_finish(s, t, "transport failed");
}

/* Checks the transport's header against what t asked for; its page count. */
static int check_header(const srv_t *s, const task_t *t, const Helium__KvPages *kp) {
    const model_t *m = s->m;
    if (strcmp(kp->xport, s->xp_name)) return he_set(HE_EPROTO, "pages over transport '%s', we asked for %s",
                                                     kp->xport, s->xp_name);
    if (kp->model_root != m->root_hash || kp->n_layers != (uint32_t)m->hp.n_layers ||
        kp->kv_dim != (uint32_t)m->hp.kv_dim || kp->block_size != (uint32_t)s->bs)
        return he_set(HE_EPROTO, "transport header of another model or geometry");
    /* the transport moves raw pool pages: both pools hold the same type */
    if (!kp->dtype || strcmp(kp->dtype, kvw_name(eng_kv_type(s->e))))
        return he_set(HE_EPROTO, "transport pages of type '%s', our pool holds %s", kp->dtype ? kp->dtype : "",
                      kvw_name(eng_kv_type(s->e)));
    if (kp->n_pages == 0 || kp->n_pages > (size_t)(t->n_want - t->n_got))
        return he_set(HE_EPROTO, "transport header of %zu pages, %d wanted", kp->n_pages, t->n_want - t->n_got);
    for (size_t i = 0; i < kp->n_pages; i++)
        if (!kp->pages[i] || kp->pages[i]->hash != t->want[t->n_got + (int32_t)i] || kp->pages[i]->data.len)
            return he_set(HE_EPROTO, "transport header page %zu does not match the request", i);
    return 0;
}

bool xpl_on_pages(srv_t *s, task_t *t, const Helium__KvPages *kp, const char *from) {
    bool header = kp->xport && kp->xport[0];
    if (t->xp_pages) { /* a transfer is running: nothing else belongs to it */
        srv_bad_frame(s, from, "KvPages for transfer %llu while its pages come over %s", (unsigned long long)t->xfer,
                      s->xp_name);
        return true;
    }
    if (!header) {
        if (t->xp_offered) { /* declined: the pages come over ZeroMQ; the server did not join */
            s->xp_declined++;
            t->xp_offered = false;
            if (s->xp) xport_abort(s->xp, t->xp_peer);
        }
        return false;
    }
    if (!t->xp_offered || !s->xp) {
        srv_bad_frame(s, from, "transport header for transfer %llu we did not ask for", (unsigned long long)t->xfer);
        return true;
    }
    if (kp->n_pages == 0 && kp->last) { /* nothing cached there: as an empty KvPages */
        t->xp_offered = false;
        return false;
    }
    t->xp_offered = false;
    int rc = check_header(s, t, kp);
    int32_t n = (int32_t)kp->n_pages;
    if (!rc) {
        t->xp_pages = malloc(sizeof(int32_t) * (size_t)n);
        rc = t->xp_pages ? eng_kv_reserve(s->e, n, t->xp_pages) : he_set(HE_ENOMEM, "out of memory");
        if (rc < 0) {
            free(t->xp_pages);
            t->xp_pages = NULL;
        } else {
            t->xp_n = n;
            rc = 0;
        }
    }
    if (rc) {
        srv_bad_frame(s, from, "%s", he_msg());
        xport_abort(s->xp, t->xp_peer);
        fall_back(s, t, he_msg());
        return true;
    }
    t->xp_start_us = clock_mono_us();
    rc = xport_pull(s->xp, t->xp_peer, t->xp_pages, n, clock_mono_ms());
    if (rc) { /* a failed start already released the pages (invalidate); else fall_back does */
        if (xport_state(s->xp, t->xp_peer) != XP_IDLE && xport_state(s->xp, t->xp_peer) != XP_DISABLED)
            xport_abort(s->xp, t->xp_peer);
        fall_back(s, t, he_msg());
    }
    return true;
}

/* t's transfer completed: its pages become cached pages of their hashes. */
static void commit(srv_t *s, task_t *t) {
    int32_t n = t->xp_n, stored = 0;
    int64_t link = 0;
    for (int32_t i = 0; i < n; i++) {
        uint64_t h = t->want[t->n_got + i];
        int rc = eng_kv_commit(s->e, &t->xp_pages[i], &h, 1);
        if (rc == 1) pull_pin_imported(s, t, h);
        stored += rc;
    }
    free(t->xp_pages);
    t->xp_pages = NULL;
    t->xp_n = 0;
    t->n_got += n;
    t->pulled_tokens += stored * s->bs;
    s->pulled_tokens += stored * s->bs;
    s->xp_pulled_tokens += stored * s->bs;
    pull_link_time(s, t, n, eng_kv_page_bytes(s->e), &link);
    s->xp_pull_us += link;
    t->pull_xported = true;
    csync_flush(s);
    pull_finish(s, t, t->n_got >= t->n_want ? "done (transport)" : "done (transport, partial)");
}

void xpl_task_gone(srv_t *s, task_t *t) {
    if (s->xp && (t->xp_offered || t->xp_pages)) xport_abort(s->xp, t->xp_peer); /* invalidate releases */
    if (t->xp_pages) { /* the link had not taken them yet */
        eng_kv_release(s->e, t->xp_pages, t->xp_n);
        free(t->xp_pages);
        t->xp_pages = NULL;
        t->xp_n = 0;
    }
    t->xp_offered = false;
}

/* ------------------------------------------------------------ server */

/* Sends one PeerMsg back to the peer ident: on the data socket when we own
 * it (inline pulls), else through the pull server thread. */
static int send_back(void *ud, Helium__PeerMsg *m, const char *what);

typedef struct {
    srv_t *s;
    const void *ident;
    size_t ident_len;
    bool delim;
} back_dest;

static int send_back(void *ud, Helium__PeerMsg *m, const char *what) {
    const back_dest *d = ud;
    srv_t *s = d->s;
    if (s->data) return srv_send_peer(s, s->data, d->ident, d->ident_len, d->delim, m, what);
    m->protocol_version = SRV_PROTO;
    size_t n = helium__peer_msg__get_packed_size(m);
    uint8_t *buf = malloc(n ? n : 1);
    if (!buf) return he_set(HE_ENOMEM, "out of memory packing %s", what);
    helium__peer_msg__pack(m, buf);
    int rc = kvs_reply(s->kvs, d->ident, d->ident_len, d->delim, buf, n);
    free(buf);
    if (rc) {
        s->send_errors++;
        clog_msg(CLOG_WARN, "could not send %s: %s", what, he_msg());
    }
    return rc;
}

/* Starts sending the held pages[0..k) to peer; 0 or a herr code. */
static int start_serve(srv_t *s, uint64_t peer, const Helium__KvPull *pl, const int32_t *pages, int32_t k) {
    int64_t now = clock_mono_ms();
    for (int i = 0; i < s->xp_n_serves; i++)
        if (s->xp_serves[i].peer == peer) return he_set(HE_EUNAVAIL, "a transfer to this peer is in flight");
    if (!xport_usable(s->xp, peer)) return he_set(HE_EUNAVAIL, "the link to this peer is not usable");
    int rc;
    if (pl->xport_token.len > 0) rc = xport_accept(s->xp, peer, pl->xport_token.data, pl->xport_token.len, now);
    else rc = xport_state(s->xp, peer) == XP_READY ? 0 : he_set(HE_EUNAVAIL, "no joined link to reuse");
    if (!rc) rc = xport_push(s->xp, peer, pages, k, now);
    return rc;
}

void xpl_serve_pull(srv_t *s, const void *ident, size_t ident_len, bool delim, const Helium__KvPull *pl) {
    back_dest d = {.s = s, .ident = ident, .ident_len = ident_len, .delim = delim};
    int32_t max = eng_n_ctx(s->e) / s->bs + 1, k = 0;
    int32_t *pages = NULL;
    uint64_t peer = xpl_peer_key(pl->requester);
    const char *why = "no such transport here";
    if (s->xp && !strcmp(pl->xport, s->xp_name) && pl->n_hashes > 0 && pl->n_hashes <= (size_t)max &&
        s->xp_n_serves < XP_MAX_PEERS) {
        pages = malloc(sizeof(int32_t) * pl->n_hashes);
        k = pages ? eng_kv_hold(s->e, pl->hashes, (int32_t)pl->n_hashes, pages) : 0;
        why = "none of the pages is cached";
        if (k > 0 && start_serve(s, peer, pl, pages, k)) {
            why = he_msg();
            eng_kv_unhold(s->e, pages, k);
            k = 0;
        }
    }
    if (k > 0) {
        Helium__KvPage *pg = calloc((size_t)k, sizeof *pg);
        Helium__KvPage **pp = calloc((size_t)k, sizeof *pp);
        xpl_serve *v = NULL;
        if (s->xp_n_serves == s->xp_cap_serves) {
            int cap = s->xp_cap_serves ? 2 * s->xp_cap_serves : 8;
            xpl_serve *nv = realloc(s->xp_serves, sizeof *nv * (size_t)cap);
            if (nv) s->xp_serves = nv, s->xp_cap_serves = cap;
        }
        if (s->xp_n_serves < s->xp_cap_serves) v = &s->xp_serves[s->xp_n_serves];
        int rc = pg && pp && v ? 0 : he_set(HE_ENOMEM, "out of memory");
        if (!rc) {
            Helium__KvPages kp = HELIUM__KV_PAGES__INIT;
            kp.protocol_version = SRV_PROTO;
            kp.transfer_id = pl->transfer_id;
            kp.model_root = s->geom.model_root;
            kp.n_layers = s->geom.n_layers;
            kp.kv_dim = s->geom.kv_dim;
            kp.block_size = s->geom.block_size;
            kp.dtype = (char *)kvw_name(eng_kv_type(s->e));
            kp.xport = s->xp_name;
            kp.last = true;
            for (int32_t i = 0; i < k; i++) {
                helium__kv_page__init(&pg[i]);
                pg[i].hash = pl->hashes[i];
                pg[i].parent = i > 0 ? pl->hashes[i - 1] : 0;
                pp[i] = &pg[i];
            }
            kp.n_pages = (size_t)k;
            kp.pages = pp;
            Helium__PeerMsg pm = HELIUM__PEER_MSG__INIT;
            pm.body_case = HELIUM__PEER_MSG__BODY_PAGES;
            pm.pages = &kp;
            rc = send_back(&d, &pm, "KvPages (transport header)");
        }
        free(pg);
        free(pp);
        if (rc) { /* the puller will not receive: stop sending */
            xport_abort(s->xp, peer);
            eng_kv_unhold(s->e, pages, k);
            free(pages);
            return;
        }
        *v = (xpl_serve){.peer = peer, .xfer = pl->transfer_id, .pages = pages, .n = k};
        s->xp_n_serves++;
        s->exported += k;
        clog_msg(CLOG_INFO, "serving pull %llu for %s: %d of %zu blocks over %s", (unsigned long long)pl->transfer_id,
                 pl->requester && pl->requester[0] ? pl->requester : "?", k, pl->n_hashes, s->xp_name);
        return;
    }
    free(pages);
    /* declined: the pages over ZeroMQ, as any pull */
    clog_msg(CLOG_INFO, "pull %llu for %s over %s declined (%s): answering over ZeroMQ",
             (unsigned long long)pl->transfer_id, pl->requester && pl->requester[0] ? pl->requester : "?", pl->xport,
             why);
    int rc = kvs_answer_pull(s->e, &s->geom, pl, max, SRV_CHUNK_BYTES, send_back, &d);
    if (rc > 0) s->exported += rc;
}

/* ------------------------------------------------------------ timers */

int64_t xpl_timers(srv_t *s, int64_t now, int64_t next) {
    if (!s->xp) return next;
    bool pending = false;
    for (int i = 0; i < s->xp_n_serves;) {
        xpl_serve *v = &s->xp_serves[i];
        int r = xport_poll(s->xp, v->peer, now);
        if (r == 0) {
            pending = true;
            i++;
            continue;
        }
        if (r > 0) s->xp_served++;
        else {
            s->xp_serve_failed++;
            clog_msg(CLOG_WARN, "sending pull %llu over %s failed: %s", (unsigned long long)v->xfer, s->xp_name,
                     he_msg());
        }
        serve_end(s, i);
    }
    for (task_t *t = s->tasks, *nx; t; t = nx) {
        nx = t->next;
        if (t->xp_offered && xport_state(s->xp, t->xp_peer) == XP_OFFERED) {
            /* joining before the header came: drive the join, watch its deadline */
            int r = xport_poll(s->xp, t->xp_peer, now);
            if (r < 0) fall_back(s, t, he_msg());
            else if (r == 0) pending = true;
            continue;
        }
        if (!t->xp_pages) continue;
        int r = xport_poll(s->xp, t->xp_peer, now);
        if (r > 0) commit(s, t); /* may free t (pull_finish -> task_submit): nx was read before */
        else if (r < 0) fall_back(s, t, he_msg());
        else pending = true;
    }
    return pending && now + 1 < next ? now + 1 : next;
}
