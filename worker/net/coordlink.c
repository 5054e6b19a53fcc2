/* coordlink: this worker's side of the worker channel (proto/helium.proto:
 * WorkerMsg out, CoordMsg in, over the coordinator DEALER).
 *
 * Sending never blocks (ZMQ_DONTWAIT): a message that cannot be queued is
 * counted in send_errors and logged; the coordinator's liveness and resync
 * rules recover from lost heartbeats and cache events. Every CoordMsg is
 * checked (decodable, protocol_version) before its body reaches a handler.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zmq.h>

#include "herr.h"
#include "net.h"

int srv_send_bytes(srv_t *s, void *sock, const char *what, const void *ident, size_t ident_len,
                      bool delim, void *buf, size_t len) {
    if (ident && zmq_send(sock, ident, ident_len, ZMQ_SNDMORE | ZMQ_DONTWAIT) < 0) goto fail;
    if (delim && zmq_send(sock, "", 0, ZMQ_SNDMORE | ZMQ_DONTWAIT) < 0) goto fail;
    if (zmq_send(sock, buf, len, ZMQ_DONTWAIT) < 0) goto fail;
    return 0;
fail:
    s->send_errors++;
    clog_msg(CLOG_WARN, "could not send %s (%zu bytes): %s", what, len, zmq_strerror(zmq_errno()));
    return HE_EUNAVAIL;
}

int srv_send_wmsg(srv_t *s, Helium__WorkerMsg *w, const char *what) {
    w->protocol_version = SRV_PROTO;
    w->worker_id = s->id;
    size_t n = helium__worker_msg__get_packed_size(w);
    uint8_t *buf = malloc(n ? n : 1);
    if (!buf) {
        clog_msg(CLOG_ERROR, "out of memory packing %s", what);
        return HE_ENOMEM;
    }
    helium__worker_msg__pack(w, buf);
    int rc = srv_send_bytes(s, s->coord, what, NULL, 0, false, buf, n);
    free(buf);
    return rc;
}

int srv_send_peer(srv_t *s, void *sock, const void *ident, size_t ident_len, bool delim,
                     Helium__PeerMsg *p, const char *what) {
    p->protocol_version = SRV_PROTO;
    size_t n = helium__peer_msg__get_packed_size(p);
    uint8_t *buf = malloc(n ? n : 1);
    if (!buf) {
        clog_msg(CLOG_ERROR, "out of memory packing %s", what);
        return HE_ENOMEM;
    }
    helium__peer_msg__pack(p, buf);
    int rc = srv_send_bytes(s, sock, what, ident, ident_len, delim, buf, n);
    free(buf);
    return rc;
}

void srv_bad_frame(srv_t *s, const char *from, const char *fmt, ...) {
    char why[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(why, sizeof why, fmt, ap);
    va_end(ap);
    s->bad_frames++;
    /* a flood of garbage must not flood the log: the first few at warn */
    clog_msg(s->bad_frames <= 20 ? CLOG_WARN : CLOG_DEBUG, "dropped a bad frame from %s: %s (%lld so far)", from, why,
         (long long)s->bad_frames);
}

void srv_send_register(srv_t *s) {
    const model_t *m = s->m;
    Helium__Register r = HELIUM__REGISTER__INIT;
    r.worker_id = s->id;
    r.model = (char *)m->name;
    r.model_root = m->root_hash;
    r.block_size = (uint32_t)s->bs;
    r.kv_blocks_total = (uint32_t)eng_kv_blocks(s->e);
    r.backend = (char *)eng_backend_name(s->e);
    r.n_ctx = (uint32_t)eng_n_ctx(s->e);
    r.max_batch = (uint32_t)(s->o.ec.max_batch_tokens > 0 ? s->o.ec.max_batch_tokens : 512);
    r.data_endpoint = s->data_ep;
    r.data_key = s->zauth ? s->keys.pub : ""; /* peers pull over CURVE with it */
    r.n_layers = (uint32_t)m->hp.n_layers;
    r.kv_dim = (uint32_t)m->hp.kv_dim;
    r.kv_dtype = (char *)kvw_name(eng_kv_type(s->e)); /* the element type of the pages we serve */
    r.version = SRV_VERSION;
    r.kv_xport = s->xp_name;     /* "" = ZeroMQ only */
    r.xport_domain = s->xp_domain;
    Helium__WorkerMsg w = HELIUM__WORKER_MSG__INIT;
    w.body_case = HELIUM__WORKER_MSG__BODY_REG;
    w.reg = &r;
    if (srv_send_wmsg(s, &w, "Register") == 0) clog_msg(CLOG_DEBUG, "sent Register to %s", s->o.coord_ep);
}

void srv_send_heartbeat(srv_t *s) {
    eng_counters c = eng_get_counters(s->e);
    kvc_stats ks = eng_cache_stats(s->e);
    xport_stats xs = {0};
    if (s->xp) xs = xport_get_stats(s->xp);
    int queued = eng_n_waiting(s->e);
    for (task_t *t = s->tasks; t; t = t->next)
        if (!t->submitted) queued++;
    Helium__Load load = HELIUM__LOAD__INIT;
    load.running = (uint32_t)eng_n_running(s->e);
    load.queued = (uint32_t)queued;
    load.kv_used = (uint32_t)ks.blocks_used;
    load.kv_cached = (uint32_t)ks.blocks_cached;
    load.kv_free = (uint32_t)ks.blocks_free;
    struct {
        const char *k;
        int64_t v;
    } kv[] = {
        {"prompt_tokens", c.prompt_tokens},
        {"cached_tokens", c.cached_tokens},
        {"computed_tokens", c.computed_tokens},
        {"generated_tokens", c.generated_tokens},
        {"pulled_tokens", s->pulled_tokens},
        {"forward_us", (int64_t)(c.forward_seconds * 1e6)},
        {"exported_blocks", c.exported_blocks + s->exported + kvs_exported_blocks(s->kvs)},
        {"imported_blocks", c.imported_blocks},
        {"preemptions", c.preemptions},
        {"hit_tokens", c.cached_tokens},
        {"lookup_tokens", c.prompt_tokens},
        {"requests", c.requests},
        {"steps", c.steps},
        {"decode_steps", c.decode_steps},
        {"decode_rows", c.decode_rows},
        {"decode_us", (int64_t)(c.decode_seconds * 1e6)},
        {"evictions", ks.evictions},
        {"bad_frames", s->bad_frames + kvs_bad_frames(s->kvs)},
        {"send_errors", s->send_errors + kvs_send_errors(s->kvs)},
        {"pulls_served", s->pulls_served + kvs_pulls_served(s->kvs)},
        {"pull_waits", s->pull_waits},
        {"pinned_evictions", s->pinned_evictions},
        {"pin_updates", s->pin_updates},
        {"pinned_blocks", ks.blocks_pinned},
        {"pin_tags", s->n_tags},
        {"pin_refused", s->pin_refused},
        {"warm_tasks", s->warm_tasks},
        {"pull_us", s->pull_us},
        {"pull_bytes", s->pull_bytes},
        /* pulls over the KV transport (xport_pull.c); pulled_tokens and pull_us include them */
        {"xport_pulled_tokens", s->xp_pulled_tokens},
        {"xport_pull_us", s->xp_pull_us},
        {"xport_fallbacks", s->xp_fallbacks},
        {"xport_declined", s->xp_declined},
        {"xport_served", s->xp_served},
        {"xport_aborts", xs.aborts},
        {"xport_invalidated_pages", xs.invalidated_pages},
        {"draining", s->draining},  /* the coordinator places nothing more here */
        {"leaving", s->leaving},    /* ... and re-dispatches what is still here */
    };
    enum { NKV = sizeof kv / sizeof kv[0] };
    Helium__Heartbeat__CountersEntry ents[NKV], *pents[NKV];
    for (int i = 0; i < NKV; i++) {
        helium__heartbeat__counters_entry__init(&ents[i]);
        ents[i].key = (char *)kv[i].k;
        ents[i].value = kv[i].v > 0 ? (uint64_t)kv[i].v : 0;
        pents[i] = &ents[i];
    }
    Helium__Heartbeat hb = HELIUM__HEARTBEAT__INIT;
    hb.load = &load;
    hb.n_counters = NKV;
    hb.counters = pents;
    hb.cache_seq = s->cache_seq;
    Helium__WorkerMsg w = HELIUM__WORKER_MSG__INIT;
    w.body_case = HELIUM__WORKER_MSG__BODY_HEARTBEAT;
    w.heartbeat = &hb;
    srv_send_wmsg(s, &w, "Heartbeat");
}

static void on_register_ack(srv_t *s, const Helium__RegisterAck *a) {
    if (!a->accepted) {
        const char *why = a->error && a->error->message ? a->error->message : "no reason given";
        clog_msg(CLOG_ERROR, "the coordinator rejected this worker: %s", why);
        s->exit_code = 1;
        s->stop = true;
        return;
    }
    if (a->worker_id && a->worker_id[0] && strcmp(a->worker_id, s->id))
        clog_msg(CLOG_WARN, "coordinator calls this worker '%s'; keeping id '%s' (it is the routing id)", a->worker_id,
             s->id);
    bool was = s->registered;
    if (!was && s->ever_registered && s->n_tags) {
        /* the coordinator treats a re-registration as a restart: nobody
         * will unpin the tags it knew about */
        clog_msg(CLOG_INFO, "registered again: releasing %d pin tags (%lld blocks)", s->n_tags,
             (long long)s->n_tag_pinned);
        pins_drop_all(s);
    }
    s->registered = true;
    s->ever_registered = true;
    if (a->heartbeat_ms > 0) s->hb_ms = a->heartbeat_ms < 10 ? 10 : a->heartbeat_ms;
    s->next_hb_ms = clock_mono_ms();
    if (!was) clog_msg(CLOG_INFO, "registered with the coordinator at %s (heartbeat %u ms)", s->o.coord_ep, s->hb_ms);
    /* the coordinator's directory may be new: give it our whole cache */
    csync_snapshot(s);
}

void srv_on_coord_frame(srv_t *s, const void *data, size_t len) {
    Helium__CoordMsg *c = helium__coord_msg__unpack(NULL, len, data);
    if (!c) {
        srv_bad_frame(s, "the coordinator", "undecodable CoordMsg of %zu bytes", len);
        return;
    }
    if (c->protocol_version != SRV_PROTO) {
        srv_bad_frame(s, "the coordinator", "protocol_version %u (this worker speaks %d)", c->protocol_version,
                  SRV_PROTO);
        helium__coord_msg__free_unpacked(c, NULL);
        return;
    }
    switch (c->body_case) {
    case HELIUM__COORD_MSG__BODY_REGISTER_ACK:
        if (c->register_ack) on_register_ack(s, c->register_ack);
        break;
    case HELIUM__COORD_MSG__BODY_DISPATCH:
        if (c->dispatch) task_on_dispatch(s, c->dispatch);
        break;
    case HELIUM__COORD_MSG__BODY_CANCEL:
        if (c->cancel) task_on_cancel(s, c->cancel);
        break;
    case HELIUM__COORD_MSG__BODY_KV_EXPORT:
        if (c->kv_export) pull_on_kv_export(s, c->kv_export);
        break;
    case HELIUM__COORD_MSG__BODY_KV_IMPORT:
        if (c->kv_import && c->kv_import->pages) pull_import_pushed(s, c->kv_import->pages, "the coordinator");
        break;
    case HELIUM__COORD_MSG__BODY_SHUTDOWN:
        if (c->shutdown) {
            clog_msg(CLOG_INFO, "shutdown requested%s%s%s", c->shutdown->drain ? " (draining)" : "",
                 c->shutdown->reason && c->shutdown->reason[0] ? ": " : "",
                 c->shutdown->reason ? c->shutdown->reason : "");
            if (c->shutdown->drain) s->draining = true;
            else s->stop = true;
        }
        break;
    case HELIUM__COORD_MSG__BODY_UNPIN:
        if (c->unpin) pins_on_unpin(s, c->unpin);
        break;
    case HELIUM__COORD_MSG__BODY_PIN_STEPS:
        if (c->pin_steps) pins_on_steps(s, c->pin_steps);
        break;
    case HELIUM__COORD_MSG__BODY_RESYNC:
        clog_msg(CLOG_INFO, "cache resync requested (coordinator at seq %llu, we are at %llu)",
             c->resync ? (unsigned long long)c->resync->last_seq : 0ull, (unsigned long long)s->cache_seq);
        csync_snapshot(s);
        break;
    default:
        clog_msg(CLOG_DEBUG, "ignoring CoordMsg with body %d", (int)c->body_case);
        break;
    }
    helium__coord_msg__free_unpacked(c, NULL);
}
