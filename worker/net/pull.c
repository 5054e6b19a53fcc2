/* pull: KV pages between workers, this worker's client side, plus the
 * pages pushed to it and the exports the coordinator asks for.
 *
 * A dispatch may carry a pull hint (a peer that holds the prompt's prefix
 * blocks). pull_start asks that peer's data endpoint for the blocks this
 * worker lacks (KvPull over a DEALER kept per peer), the task waits, and each
 * KvPages answer is checked (geometry, the hash chain, the hashes asked for)
 * and imported; the task is submitted to the engine when the pull ends:
 * done, refused, stopped early by a bad page, or past its deadline (then the
 * engine recomputes what did not come). A task whose prefix another task's
 * pull is bringing waits for that pull (pull_bringing) instead of
 * recomputing it. Imported pages stay pinned until their task runs, within
 * kv_blocks/4.
 */
#include <stdlib.h>
#include <string.h>
#include <zmq.h>

#include "blockhash.h"
#include "herr.h"
#include "net.h"
#include "werr.h"

void pull_peer_close(peer_t *p) {
    if (p->sock) zmq_close(p->sock);
    free(p->ep);
    memset(p, 0, sizeof *p);
}

/* A pull on peer i ended (answered, timed out or abandoned). */
void pull_peer_release(srv_t *s, int i) {
    if (i < 0 || i >= s->n_peers) return;
    peer_t *p = &s->peers[i];
    if (p->inflight > 0) p->inflight--;
    if (p->broken && p->inflight == 0) {
        clog_msg(CLOG_DEBUG, "closing the connection to peer %s", p->ep);
        zmq_close(p->sock);
        p->sock = NULL;
        p->broken = false;
    }
}

/* DEALER for endpoint ep whose data socket has CURVE public key key ("" =
 * in the clear) (cached); index or -1. */
static int peer_get(srv_t *s, const char *ep, const char *key) {
    int slot = -1;
    if (!key) key = "";
    if (key[0] && (!zauth_key_ok(key) || !s->keys.sec[0])) {
        clog_msg(CLOG_WARN, "peer %s wants CURVE but %s", ep, s->keys.sec[0] ? "its key is bad" : "we have no key");
        return -1;
    }
    for (int i = 0; i < s->n_peers; i++) {
        if (s->peers[i].ep && !strcmp(s->peers[i].ep, ep) && !strcmp(s->peers[i].key, key)) {
            slot = i;
            if (s->peers[i].sock) return i;
            break;
        }
    }
    if (slot < 0) {
        for (int i = 0; i < s->n_peers && slot < 0; i++)
            if (!s->peers[i].ep) slot = i;
        if (slot < 0 && s->n_peers < SRV_MAX_PEERS) slot = s->n_peers++;
        for (int i = 0; i < s->n_peers && slot < 0; i++) /* evict an idle one */
            if (s->peers[i].inflight == 0) {
                pull_peer_close(&s->peers[i]);
                slot = i;
            }
        if (slot < 0) return -1;
        s->peers[slot].ep = strdup(ep);
        if (!s->peers[slot].ep) return -1;
    }
    peer_t *p = &s->peers[slot];
    p->sock = zmq_socket(s->zctx, ZMQ_DEALER);
    int zero = 0;
    int64_t maxmsg = SRV_MAX_MSG_BYTES;
    if (!p->sock) return -1;
    zmq_setsockopt(p->sock, ZMQ_LINGER, &zero, sizeof zero);
    zmq_setsockopt(p->sock, ZMQ_MAXMSGSIZE, &maxmsg, sizeof maxmsg);
    snprintf(p->key, sizeof p->key, "%s", key);
    if (key[0] && zauth_set_client(p->sock, &s->keys, key)) {
        clog_msg(CLOG_WARN, "peer %s: %s", ep, he_msg());
        pull_peer_close(p);
        return -1;
    }
    if (zmq_connect(p->sock, ep) != 0) {
        clog_msg(CLOG_WARN, "cannot connect to peer %s: %s", ep, zmq_strerror(zmq_errno()));
        pull_peer_close(p);
        return -1;
    }
    p->inflight = 0;
    p->broken = false;
    return slot;
}

/* Checks a KvPages header against our model and page geometry; *type gets
 * the pages' element type (kvwire.h: a peer's pool may hold f32, f16 or
 * bf16; pages are converted to ours on import). */
static int check_pages_header(const srv_t *s, const Helium__KvPages *kp, int *type) {
    const model_t *m = s->m;
    if (kp->protocol_version != SRV_PROTO)
        return he_set(HE_EPROTO, "KvPages protocol_version %u (want %d)", kp->protocol_version, SRV_PROTO);
    if (kp->model_root != m->root_hash) return he_set(HE_EPROTO, "KvPages from another model (root differs)");
    if (kp->n_layers != (uint32_t)m->hp.n_layers || kp->kv_dim != (uint32_t)m->hp.kv_dim ||
        kp->block_size != (uint32_t)s->bs)
        return he_set(HE_EPROTO, "KvPages geometry %u layers x %u kv_dim x %u tokens, want %d x %d x %d",
                      kp->n_layers, kp->kv_dim, kp->block_size, m->hp.n_layers, m->hp.kv_dim, s->bs);
    kvw_type t;
    if (!kp->dtype || kvw_parse(kp->dtype, &t))
        return he_set(HE_EUNSUPPORTED, "KvPages dtype '%s' (f32, f16 or bf16)", kp->dtype ? kp->dtype : "");
    *type = (int)t;
    return 0;
}

/* Checks one page of element type `type`: payload size, and the hash chain
 * when tokens are given. */
static int check_page(const srv_t *s, const Helium__KvPage *pg, int type) {
    if (!pg) return he_set(HE_EPROTO, "missing page");
    const size_t want = eng_kv_page_bytes_of(s->e, type);
    if (pg->data.len != want || !pg->data.data)
        return he_set(HE_EPROTO, "page of %zu bytes, want %zu", pg->data.len, want);
    if (pg->n_tokens) {
        if (pg->n_tokens != (size_t)s->bs) return he_set(HE_EPROTO, "page with %zu tokens", pg->n_tokens);
        if (bh_chain(pg->parent, pg->tokens, s->bs) != pg->hash)
            return he_set(HE_EPROTO, "page hash does not match its parent and tokens");
    }
    return 0;
}

/* Pins a page just imported for t until t runs (within kv_blocks/4 in all). */
void pull_pin_imported(srv_t *s, task_t *t, uint64_t hash) {
    if (t && s->n_pinned < eng_kv_blocks(s->e) / 4 && eng_pin(s->e, &hash, 1) == 1) {
        if (u64v_push(&t->pinned, hash)) s->n_pinned++;
        else eng_unpin(s->e, &hash, 1);
    }
}

/* Imports one verified page; pins it for t (if any, within budget). Returns
 * 1 stored, 0 already cached, or a negative herr code. */
static int import_page(srv_t *s, task_t *t, const Helium__KvPage *pg, int type) {
    int rc = eng_kv_import_typed(s->e, &pg->hash, 1, pg->data.data, type);
    if (rc == 1) pull_pin_imported(s, t, pg->hash);
    return rc;
}

/* Link time of t's pull: from the KvPull (or the previous chunk) to `pages`
 * pages of page_bytes imported now, less the engine steps run meanwhile.
 * Replies are read between steps, so pages that arrived mid-step waited for
 * its end: that wait is this worker's, not the link's. Adds it to pull_us and
 * the bytes to pull_bytes; *link_us (if given) gets it. */
void pull_link_time(srv_t *s, task_t *t, int32_t pages, size_t page_bytes, int64_t *link_us) {
    int64_t now = clock_mono_us(), link = (now - t->pull_mark_us) - (s->step_us - t->pull_mark_step);
    if (link < 1) link = 1;
    s->pull_us += link;
    t->pull_mark_step = s->step_us;
    s->pull_bytes += (int64_t)pages * (int64_t)page_bytes; /* wire bytes */
    t->pull_link_us += link;
    t->pull_wire_bytes += (int64_t)pages * (int64_t)page_bytes;
    t->pull_mark_us = now;
    if (link_us) *link_us = link;
}

/* The transfer of a pull in flight that brings pages of t's prompt (its
 * first wanted page is one of t's usable prompt blocks), or 0. A task that
 * arrives while a sibling's pull brings its prefix waits for that pull instead
 * of recomputing the pages (the engine's in-flight dedup only knows pages
 * being computed, not pages on the wire). */
uint64_t pull_bringing(srv_t *s, const task_t *t) {
    int32_t nuse = (t->n_prompt - 1) / s->bs;
    if (nuse <= 0 || s->o.ec.no_prefix_cache || t->rq.no_cache) return 0;
    bool any = false;
    for (const task_t *x = s->tasks; x && !any; x = x->next) any = x != t && x->pulling && x->n_want > x->n_got;
    if (!any) return 0;
    uint64_t *ph = malloc(sizeof(uint64_t) * (size_t)(t->n_prompt / s->bs + 1));
    if (!ph) return 0;
    eng_prompt_hashes(s->e, t->prompt, t->n_prompt, ph);
    uint64_t xfer = 0;
    for (const task_t *x = s->tasks; x && !xfer; x = x->next) {
        if (x == t || !x->pulling || x->n_want <= x->n_got) continue;
        uint64_t h = x->want[x->n_got];
        for (int32_t i = 0; i < nuse; i++)
            if (ph[i] == h) {
                xfer = x->xfer;
                break;
            }
    }
    free(ph);
    return xfer;
}

/* Submits every task held for a pull that is no longer in flight. */
void pull_release_waiters(srv_t *s) {
    for (;;) {
        task_t *w = NULL;
        for (task_t *t = s->tasks; t && !w; t = t->next) {
            if (!t->wait_xfer) continue;
            bool live = false;
            for (const task_t *x = s->tasks; x && !live; x = x->next) live = x->pulling && x->xfer == t->wait_xfer;
            if (!live) w = t;
        }
        if (!w) return;
        clog_msg(CLOG_DEBUG, "task %llu: pull %llu ended; submitting", (unsigned long long)w->task_id,
             (unsigned long long)w->wait_xfer);
        w->wait_xfer = 0;
        task_submit(s, w); /* may fail and free w: the scan restarts */
    }
}

/* Ends t's pull and submits it to the engine. */
void pull_finish(srv_t *s, task_t *t, const char *why) {
    xpl_task_gone(s, t); /* a transfer still in flight is abandoned (its pages released) */
    t->pulling = false;
    pull_peer_release(s, t->peer);
    clog_msg(CLOG_INFO, "task %llu pull %llu %s: %d of %d pages, %d tokens imported in %.1f ms",
         (unsigned long long)t->task_id, (unsigned long long)t->xfer, why, t->n_got, t->n_want, t->pulled_tokens,
         (double)(clock_mono_us() - t->pull_start_us) / 1e3);
    free(t->want);
    t->want = NULL;
    task_submit(s, t);
    pull_release_waiters(s);
}

/* KvPages answering one of our pulls. */
static void on_pull_pages(srv_t *s, const Helium__KvPages *kp, const char *from) {
    task_t *t = NULL;
    for (task_t *x = s->tasks; x; x = x->next)
        if (x->pulling && x->xfer == kp->transfer_id) t = x;
    if (!t) {
        clog_msg(CLOG_DEBUG, "KvPages for unknown or expired transfer %llu from %s", (unsigned long long)kp->transfer_id,
             from);
        return;
    }
    if (xpl_on_pages(s, t, kp, from)) return; /* the transport's header (or pages it does not expect) */
    int type = KVW_F32;
    if (check_pages_header(s, kp, &type)) {
        srv_bad_frame(s, from, "%s", he_msg());
        pull_finish(s, t, "rejected");
        return;
    }
    bool bad = false;
    int32_t got0 = t->n_got;
    for (size_t i = 0; i < kp->n_pages; i++) {
        const Helium__KvPage *pg = kp->pages[i];
        if (t->n_got >= t->n_want || check_page(s, pg, type) || pg->hash != t->want[t->n_got]) {
            srv_bad_frame(s, from, "page %zu of transfer %llu does not match the request", i,
                      (unsigned long long)kp->transfer_id);
            bad = true;
            break;
        }
        int rc = import_page(s, t, pg, type);
        if (rc < 0) {
            clog_msg(CLOG_WARN, "KV import failed: %s", he_msg());
            bad = true;
            break;
        }
        t->pulled_tokens += rc * s->bs;
        s->pulled_tokens += rc * s->bs;
        t->n_got++;
    }
    if (t->n_got > got0) pull_link_time(s, t, t->n_got - got0, eng_kv_page_bytes_of(s->e, type), NULL);
    csync_flush(s);
    if (bad) pull_finish(s, t, "stopped early");
    else if (kp->last || t->n_got >= t->n_want) pull_finish(s, t, "done");
}

/* Starts a pull for t if the hint is usable. Returns true if one is in flight. */
bool pull_start(srv_t *s, task_t *t, const Helium__KvPullHint *h) {
    if (!h->source_endpoint || !h->source_endpoint[0] || h->n_hashes == 0) return false;
    if (s->data_ep[0] && !strcmp(h->source_endpoint, s->data_ep)) return false;
    if (s->o.ec.no_prefix_cache) return false;
    /* usable prompt blocks: the engine always computes the last prompt token */
    int32_t nuse = (t->n_prompt - 1) / s->bs;
    if (nuse <= 0 || h->first_block >= (uint32_t)nuse) return false;
    uint64_t *ph = malloc(sizeof(uint64_t) * (size_t)(t->n_prompt / s->bs + 1));
    if (!ph) return false;
    eng_prompt_hashes(s->e, t->prompt, t->n_prompt, ph);
    /* the hint must name our prompt's blocks; keep the agreeing run */
    int32_t first = (int32_t)h->first_block, k = 0;
    while ((size_t)k < h->n_hashes && first + k < nuse && h->hashes[k] == ph[first + k]) k++;
    if ((size_t)k < h->n_hashes && first + k < nuse)
        clog_msg(CLOG_WARN, "task %llu: pull hint differs from the prompt at block %d; using %d of %zu blocks",
             (unsigned long long)t->task_id, first + k, k, h->n_hashes);
    /* ask from our first missing block to the end of the hint */
    int32_t end = first + k, lo = 0;
    while (lo < end && eng_cached(s->e, ph[lo])) lo++;
    if (lo >= end) {
        free(ph);
        return false;
    }
    int pi = peer_get(s, h->source_endpoint, h->source_key);
    if (pi < 0) {
        free(ph);
        return false;
    }
    t->n_want = end - lo;
    t->want = malloc(sizeof(uint64_t) * (size_t)t->n_want);
    if (!t->want) {
        free(ph);
        return false;
    }
    memcpy(t->want, ph + lo, sizeof(uint64_t) * (size_t)t->n_want);
    free(ph);
    t->xfer = ++s->next_xfer;
    Helium__KvPull pull = HELIUM__KV_PULL__INIT;
    pull.transfer_id = t->xfer;
    pull.n_hashes = (size_t)t->n_want;
    pull.hashes = t->want;
    pull.requester = s->id;
    uint8_t token[XP_TOKEN_MAX];
    xpl_offer(s, t, h, &pull, token); /* over the transport, if both ends have it */
    Helium__PeerMsg pm = HELIUM__PEER_MSG__INIT;
    pm.body_case = HELIUM__PEER_MSG__BODY_PULL;
    pm.pull = &pull;
    if (srv_send_peer(s, s->peers[pi].sock, NULL, 0, false, &pm, "KvPull")) {
        xpl_task_gone(s, t);
        free(t->want);
        t->want = NULL;
        return false;
    }
    s->peers[pi].inflight++;
    t->peer = pi;
    t->pulling = true;
    t->pull_deadline_ms = clock_mono_ms() + s->o.pull_timeout_ms;
    t->pull_mark_us = t->pull_start_us = clock_mono_us();
    t->pull_mark_step = s->step_us;
    clog_msg(CLOG_INFO, "task %llu: pulling blocks %d..%d from %s (%s), transfer %llu", (unsigned long long)t->task_id,
         lo, end - 1, h->source_worker ? h->source_worker : "?", h->source_endpoint, (unsigned long long)t->xfer);
    return true;
}

/* Asks t's peer again, over ZeroMQ, for the pages t still wants (the same
 * transfer id: tasks waiting for this pull keep waiting). After a failed
 * transfer over the transport (xport_pull.c). 0 or a negative herr code. */
int pull_resend(srv_t *s, task_t *t) {
    if (t->peer < 0 || t->peer >= s->n_peers || !s->peers[t->peer].sock || t->n_got >= t->n_want)
        return he_set(HE_EUNAVAIL, "no connection to resend pull %llu", (unsigned long long)t->xfer);
    Helium__KvPull pull = HELIUM__KV_PULL__INIT;
    pull.transfer_id = t->xfer;
    pull.n_hashes = (size_t)(t->n_want - t->n_got);
    pull.hashes = t->want + t->n_got;
    pull.requester = s->id;
    Helium__PeerMsg pm = HELIUM__PEER_MSG__INIT;
    pm.body_case = HELIUM__PEER_MSG__BODY_PULL;
    pm.pull = &pull;
    return srv_send_peer(s, s->peers[t->peer].sock, NULL, 0, false, &pm, "KvPull");
}

/* Exports the leading cached run of hashes[0..n) as KvPages messages of at
 * most SRV_CHUNK_BYTES each, handing each to emit (the last has last=true).
 * Returns pages exported, or a negative herr code. */
static int export_pages(srv_t *s, uint64_t xfer, const uint64_t *hashes, int32_t n, kvs_emit_fn emit, void *ud) {
    int rc = kvs_export(s->e, &s->geom, xfer, hashes, n, SRV_CHUNK_BYTES, emit, ud);
    if (rc > 0) s->exported += rc;
    return rc;
}

/* Where an export's messages go: a peer's socket (and its routing). */
typedef struct {
    srv_t *s;
    void *sock;
    const void *ident;
    size_t ident_len;
    bool delim;
} peer_dest;

static int send_to_dest(void *ud, Helium__PeerMsg *m, const char *what) {
    const peer_dest *d = ud;
    return srv_send_peer(d->s, d->sock, d->ident, d->ident_len, d->delim, m, what);
}

static int emit_to_peer(void *ud, Helium__KvPages *kp) {
    const peer_dest *d = ud;
    Helium__PeerMsg pm = HELIUM__PEER_MSG__INIT;
    pm.body_case = HELIUM__PEER_MSG__BODY_PAGES;
    pm.pages = kp;
    return srv_send_peer(d->s, d->sock, d->ident, d->ident_len, d->delim, &pm, "KvPages");
}

/* Imports pages pushed to us (KvImport from the coordinator, or PeerMsg pages
 * on the data endpoint). Their hashes cannot be checked against a prompt, so
 * only geometry (and the chain, where tokens come along) is verified. */
void pull_import_pushed(srv_t *s, const Helium__KvPages *kp, const char *from) {
    int type = KVW_F32;
    if (check_pages_header(s, kp, &type)) {
        srv_bad_frame(s, from, "%s", he_msg());
        return;
    }
    int stored = 0;
    for (size_t i = 0; i < kp->n_pages; i++) {
        if (check_page(s, kp->pages[i], type)) {
            srv_bad_frame(s, from, "page %zu: %s", i, he_msg());
            break;
        }
        int rc = import_page(s, NULL, kp->pages[i], type);
        if (rc < 0) {
            clog_msg(CLOG_WARN, "KV import from %s failed: %s", from, he_msg());
            break;
        }
        stored += rc;
    }
    clog_msg(CLOG_INFO, "imported %d of %zu pushed KV pages from %s (transfer %llu)", stored, kp->n_pages, from,
         (unsigned long long)kp->transfer_id);
    csync_flush(s);
}

typedef struct {
    srv_t *s;
    const Helium__KvExportRequest *rq;
} coord_dest;

static int emit_to_coord(void *ud, Helium__KvPages *kp) {
    /* one KvExportReply per chunk, pages inline */
    const coord_dest *d = ud;
    srv_t *s = d->s;
    const Helium__KvExportRequest *rq = d->rq;
    Helium__KvExportReply rep = HELIUM__KV_EXPORT_REPLY__INIT;
    rep.transfer_id = rq->transfer_id;
    rep.n_found = (uint32_t)kp->n_pages;
    rep.bytes = (uint64_t)kp->n_pages * s->page_bytes;
    rep.pages = kp;
    Helium__WorkerMsg w = HELIUM__WORKER_MSG__INIT;
    w.body_case = HELIUM__WORKER_MSG__BODY_KV_EXPORT_REPLY;
    w.kv_export_reply = &rep;
    return srv_send_wmsg(s, &w, "KvExportReply");
}

void pull_on_kv_export(srv_t *s, const Helium__KvExportRequest *rq) {
    int32_t max = eng_n_ctx(s->e) / s->bs + 1;
    int rc;
    if (rq->n_hashes > (size_t)max) {
        rc = he_set(HE_ELIMIT, "export of %zu blocks (at most %d)", rq->n_hashes, max);
    } else if (!rq->destination || !rq->destination[0]) {
        coord_dest d = {.s = s, .rq = rq};
        rc = export_pages(s, rq->transfer_id, rq->hashes, (int32_t)rq->n_hashes, emit_to_coord, &d);
    } else {
        int pi = peer_get(s, rq->destination, rq->destination_key);
        if (pi < 0) {
            rc = he_set(HE_EUNAVAIL, "cannot reach %s", rq->destination);
        } else {
            peer_dest d = {.s = s, .sock = s->peers[pi].sock};
            rc = export_pages(s, rq->transfer_id, rq->hashes, (int32_t)rq->n_hashes, emit_to_peer, &d);
            if (rc >= 0) {
                Helium__KvExportReply rep = HELIUM__KV_EXPORT_REPLY__INIT;
                rep.transfer_id = rq->transfer_id;
                rep.n_found = (uint32_t)rc;
                rep.bytes = (uint64_t)rc * s->page_bytes;
                Helium__WorkerMsg w = HELIUM__WORKER_MSG__INIT;
                w.body_case = HELIUM__WORKER_MSG__BODY_KV_EXPORT_REPLY;
                w.kv_export_reply = &rep;
                srv_send_wmsg(s, &w, "KvExportReply");
            }
        }
    }
    if (rc < 0) {
        Helium__Error err = HELIUM__ERROR__INIT;
        err.code = werr_code(rc);
        err.message = (char *)he_msg();
        Helium__KvExportReply rep = HELIUM__KV_EXPORT_REPLY__INIT;
        rep.transfer_id = rq->transfer_id;
        rep.error = &err;
        Helium__WorkerMsg w = HELIUM__WORKER_MSG__INIT;
        w.body_case = HELIUM__WORKER_MSG__BODY_KV_EXPORT_REPLY;
        w.kv_export_reply = &rep;
        srv_send_wmsg(s, &w, "KvExportReply");
        clog_msg(CLOG_WARN, "KV export %llu failed: %s", (unsigned long long)rq->transfer_id, he_msg());
    } else {
        clog_msg(CLOG_INFO, "KV export %llu: %d of %zu blocks", (unsigned long long)rq->transfer_id, rc, rq->n_hashes);
    }
}

/* On the data ROUTER: [identity, (empty,) payload]. */
void pull_on_data_frame(srv_t *s, const void *ident, size_t ident_len, bool delim, const void *data,
                          size_t len) {
    Helium__PeerMsg *p = helium__peer_msg__unpack(NULL, len, data);
    if (!p) {
        srv_bad_frame(s, "a peer (data endpoint)", "undecodable PeerMsg of %zu bytes", len);
        return;
    }
    if (p->protocol_version != SRV_PROTO) {
        srv_bad_frame(s, "a peer (data endpoint)", "protocol_version %u", p->protocol_version);
        helium__peer_msg__free_unpacked(p, NULL);
        return;
    }
    peer_dest d = {.s = s, .sock = s->data, .ident = ident, .ident_len = ident_len, .delim = delim};
    if (p->body_case == HELIUM__PEER_MSG__BODY_PULL && p->pull && p->pull->xport && p->pull->xport[0]) {
        s->pulls_served++;
        xpl_serve_pull(s, ident, ident_len, delim, p->pull); /* forwarded by the pull server, or inline */
    } else if (p->body_case == HELIUM__PEER_MSG__BODY_PULL && p->pull && !s->data) {
        /* the pull server thread answers pulls; it forwards only the rest */
        srv_bad_frame(s, "the pull server", "a forwarded KvPull");
    } else if (p->body_case == HELIUM__PEER_MSG__BODY_PULL && p->pull) {
        const Helium__KvPull *pl = p->pull;
        s->pulls_served++;
        int rc = kvs_answer_pull(s->e, &s->geom, pl, eng_n_ctx(s->e) / s->bs + 1, SRV_CHUNK_BYTES, send_to_dest, &d);
        if (rc > 0) s->exported += rc;
        clog_msg(CLOG_INFO, "served pull %llu for %s: %d of %zu blocks", (unsigned long long)pl->transfer_id,
             pl->requester && pl->requester[0] ? pl->requester : "?", rc, pl->n_hashes);
    } else if (p->body_case == HELIUM__PEER_MSG__BODY_PAGES && p->pages) {
        pull_import_pushed(s, p->pages, "a peer");
    } else {
        clog_msg(CLOG_DEBUG, "ignoring PeerMsg with body %d on the data endpoint", (int)p->body_case);
    }
    helium__peer_msg__free_unpacked(p, NULL);
}

/* On a pull DEALER: the answer to one of our pulls. */
void pull_on_peer_reply(srv_t *s, int pi, const void *data, size_t len) {
    const char *ep = s->peers[pi].ep ? s->peers[pi].ep : "?";
    Helium__PeerMsg *p = helium__peer_msg__unpack(NULL, len, data);
    if (!p) {
        srv_bad_frame(s, ep, "undecodable PeerMsg of %zu bytes", len);
        return;
    }
    if (p->protocol_version != SRV_PROTO) {
        srv_bad_frame(s, ep, "protocol_version %u", p->protocol_version);
    } else if (p->body_case == HELIUM__PEER_MSG__BODY_PAGES && p->pages) {
        on_pull_pages(s, p->pages, ep);
    } else if (p->body_case == HELIUM__PEER_MSG__BODY_ERROR && p->error) {
        clog_msg(CLOG_WARN, "peer %s refused a pull: %s", ep, p->error->message ? p->error->message : "");
        /* the error does not say which transfer: end every pull on this peer */
        for (task_t *t = s->tasks, *next; t; t = next) {
            next = t->next;
            if (t->pulling && t->peer == pi) pull_finish(s, t, "refused");
        }
    } else {
        clog_msg(CLOG_DEBUG, "ignoring PeerMsg with body %d from %s", (int)p->body_case, ep);
    }
    helium__peer_msg__free_unpacked(p, NULL);
}

/* Pull deadlines: a pull past its deadline ends (the task recomputes what
 * did not come) and its peer connection is marked broken. Also submits tasks
 * whose awaited pull ended without pull_finish (a canceled task). Returns
 * the earlier of next and the nearest deadline still ahead. */
int64_t pull_timers(srv_t *s, int64_t now, int64_t next) {
    next = xpl_timers(s, now, next); /* transfers over the transport: progress, completion, fallback */
    pull_release_waiters(s);
    for (task_t *t = s->tasks, *nx; t; t = nx) {
        nx = t->next;
        if (!t->pulling) continue;
        if (now >= t->pull_deadline_ms) {
            if (t->peer >= 0 && t->peer < s->n_peers) s->peers[t->peer].broken = true;
            clog_msg(CLOG_WARN, "task %llu: KV pull %llu timed out; recomputing", (unsigned long long)t->task_id,
                     (unsigned long long)t->xfer);
            pull_finish(s, t, "timed out");
        } else if (t->pull_deadline_ms < next) {
            next = t->pull_deadline_ms;
        }
    }
    return next;
}
