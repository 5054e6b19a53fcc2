/* kvserve: KV pulls served from a thread of its own; see kvserve.h.
 *
 * The thread polls two sockets: the data ROUTER (peers' PeerMsg) and its end
 * of an inproc PAIR whose other end the main thread holds. Any message from
 * the main thread stops it. Signals are blocked in the thread, so SIGTERM and
 * SIGINT reach the main thread's handler as before.
 */
#define _GNU_SOURCE
#include "kvserve.h"

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <zmq.h>

#include "herr.h"

#define KVS_DRAIN_MSGS 64 /* messages read per wake-up before polling the stop pipe again */
#define KVS_POLL_MS 200   /* the stop flag is looked at least this often */

struct kvs {
    kvs_config cfg;
    void *pair_main; /* the main thread's end (bound) */
    char pair_ep[96];
    pthread_t th;
    atomic_bool stop;
    atomic_llong pulls_served, exported_blocks, bad_frames, send_errors;
};

/* ---------------------------------------------------------------- export */

int kvs_export(eng_t *e, const kvs_geom *g, uint64_t xfer, const uint64_t *hashes, int32_t n, size_t chunk_bytes,
               kvs_emit_fn emit, void *ud) {
    if (!e || !g || !g->page_bytes || !emit || n < 0 || (n > 0 && !hashes))
        return he_set(HE_EINVAL, "kvs_export: bad arguments");
    int32_t per = (int32_t)(chunk_bytes / g->page_bytes);
    if (per < 1) per = 1;
    if (per > n && n > 0) per = n;
    char *buf = malloc(g->page_bytes * (size_t)per);
    Helium__KvPage *pg = calloc((size_t)per, sizeof *pg);
    Helium__KvPage **pp = calloc((size_t)per, sizeof *pp);
    if (!buf || !pg || !pp) {
        free(buf);
        free(pg);
        free(pp);
        return he_set(HE_ENOMEM, "out of memory exporting KV pages");
    }
    int32_t done = 0;
    int rc = 0;
    for (;;) {
        int32_t want = n - done < per ? n - done : per, got = 0;
        for (; got < want; got++) {
            int c = eng_kv_copy_out(e, hashes[done + got], buf + (size_t)got * g->page_bytes);
            if (c < 0) rc = c;
            if (c <= 0) break;
        }
        if (rc < 0) break;
        bool last = got < want || done + got >= n;
        Helium__KvPages kp = HELIUM__KV_PAGES__INIT;
        kp.protocol_version = g->protocol_version;
        kp.transfer_id = xfer;
        kp.model_root = g->model_root;
        kp.n_layers = g->n_layers;
        kp.kv_dim = g->kv_dim;
        kp.block_size = g->block_size;
        kp.dtype = (char *)kvw_name(eng_kv_type(e)); /* the pages as the pool holds them */
        for (int i = 0; i < got; i++) {
            helium__kv_page__init(&pg[i]);
            pg[i].hash = hashes[done + i];
            pg[i].parent = done + i > 0 ? hashes[done + i - 1] : 0; /* 0: not known here */
            pg[i].data.data = (uint8_t *)buf + (size_t)i * g->page_bytes;
            pg[i].data.len = g->page_bytes;
            pp[i] = &pg[i];
        }
        kp.n_pages = (size_t)got;
        kp.pages = pp;
        kp.last = last;
        done += got;
        if ((rc = emit(ud, &kp))) break;
        if (last) break;
    }
    free(buf);
    free(pg);
    free(pp);
    return rc ? rc : done;
}

typedef struct {
    kvs_send_fn send;
    void *ud;
} pages_to;

static int send_pages(void *ud, Helium__KvPages *kp) {
    const pages_to *t = ud;
    Helium__PeerMsg pm = HELIUM__PEER_MSG__INIT;
    pm.body_case = HELIUM__PEER_MSG__BODY_PAGES;
    pm.pages = kp;
    return t->send(t->ud, &pm, "KvPages");
}

int kvs_answer_pull(eng_t *e, const kvs_geom *g, const Helium__KvPull *pl, int32_t max_blocks, size_t chunk_bytes,
                    kvs_send_fn send, void *ud) {
    if (!pl || !send) return he_set(HE_EINVAL, "kvs_answer_pull: bad arguments");
    if (pl->n_hashes > (size_t)(max_blocks > 0 ? max_blocks : 0)) {
        Helium__Error err = HELIUM__ERROR__INIT;
        err.code = HELIUM__ERROR_CODE__ERROR_LIMIT;
        err.message = "too many blocks in one pull";
        Helium__PeerMsg r = HELIUM__PEER_MSG__INIT;
        r.body_case = HELIUM__PEER_MSG__BODY_ERROR;
        r.error = &err;
        int rc = send(ud, &r, "PeerMsg error");
        return rc < 0 ? rc : 0;
    }
    pages_to t = {.send = send, .ud = ud};
    return kvs_export(e, g, pl->transfer_id, pl->hashes, (int32_t)pl->n_hashes, chunk_bytes, send_pages, &t);
}

/* ---------------------------------------------------------------- the thread */

static void klog(const kvs_t *k, int level, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void klog(const kvs_t *k, int level, const char *fmt, ...) {
    if (!k->cfg.log) return;
    char line[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    k->cfg.log(level, line);
}

typedef struct {
    kvs_t *k;
    const void *ident;
    size_t ident_len;
    bool delim;
} dest;

static int send_to_peer(kvs_t *k, const dest *d, Helium__PeerMsg *p, const char *what) {
    p->protocol_version = k->cfg.geom.protocol_version;
    size_t n = helium__peer_msg__get_packed_size(p);
    uint8_t *buf = malloc(n ? n : 1);
    if (!buf) return he_set(HE_ENOMEM, "out of memory packing %s", what);
    helium__peer_msg__pack(p, buf);
    void *sock = k->cfg.data;
    int rc = 0;
    if (zmq_send(sock, d->ident, d->ident_len, ZMQ_SNDMORE | ZMQ_DONTWAIT) < 0 ||
        (d->delim && zmq_send(sock, "", 0, ZMQ_SNDMORE | ZMQ_DONTWAIT) < 0) ||
        zmq_send(sock, buf, n, ZMQ_DONTWAIT) < 0) {
        atomic_fetch_add(&k->send_errors, 1);
        klog(k, 1, "could not send %s (%zu bytes): %s", what, n, zmq_strerror(zmq_errno()));
        rc = HE_EUNAVAIL;
    }
    free(buf);
    return rc;
}

static int send_to(void *ud, Helium__PeerMsg *m, const char *what) {
    const dest *d = ud;
    return send_to_peer(d->k, d, m, what);
}

static void bad(kvs_t *k, const char *why) {
    long long n = atomic_fetch_add(&k->bad_frames, 1) + 1;
    klog(k, n <= 20 ? 1 : 3, "dropped a bad frame from a peer (data endpoint): %s (%lld so far on the pull server)",
         why, n);
}

/* Serves one pull; returns false when the message is not a pull (forward it). */
static bool serve_pull(kvs_t *k, const dest *d, const void *data, size_t len) {
    Helium__PeerMsg *p = helium__peer_msg__unpack(NULL, len, data);
    if (!p) {
        char why[96];
        snprintf(why, sizeof why, "undecodable PeerMsg of %zu bytes", len);
        bad(k, why);
        return true;
    }
    if (p->protocol_version != k->cfg.geom.protocol_version || p->body_case != HELIUM__PEER_MSG__BODY_PULL ||
        !p->pull || (p->pull->xport && p->pull->xport[0])) {
        /* a pull over a transport needs the engine thread: it holds the
         * pages while they are in flight (engine.h eng_kv_hold) */
        helium__peer_msg__free_unpacked(p, NULL);
        return false; /* the main thread judges (and counts) it */
    }
    const Helium__KvPull *pl = p->pull;
    atomic_fetch_add(&k->pulls_served, 1);
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    int rc = kvs_answer_pull(k->cfg.e, &k->cfg.geom, pl, k->cfg.max_blocks, k->cfg.chunk_bytes, send_to, (void *)d);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    if (rc > 0) atomic_fetch_add(&k->exported_blocks, rc);
    klog(k, 2, "served pull %llu for %s: %d of %zu blocks in %.1f ms", (unsigned long long)pl->transfer_id,
         pl->requester && pl->requester[0] ? pl->requester : "?", rc, pl->n_hashes,
         (double)(t1.tv_sec - t0.tv_sec) * 1e3 + (double)(t1.tv_nsec - t0.tv_nsec) / 1e6);
    helium__peer_msg__free_unpacked(p, NULL);
    return true;
}

static void forward(kvs_t *k, void *pair, const dest *d, const void *data, size_t len) {
    uint8_t flag = d->delim ? 1 : 0;
    if (zmq_send(pair, d->ident, d->ident_len, ZMQ_SNDMORE | ZMQ_DONTWAIT) < 0 ||
        zmq_send(pair, &flag, 1, ZMQ_SNDMORE | ZMQ_DONTWAIT) < 0 || zmq_send(pair, data, len, ZMQ_DONTWAIT) < 0) {
        atomic_fetch_add(&k->send_errors, 1);
        klog(k, 1, "could not forward a peer message to the main thread: %s", zmq_strerror(zmq_errno()));
    }
}

/* Reads up to KVS_DRAIN_MSGS messages from the data socket without blocking. */
static void drain(kvs_t *k, void *pair) {
    for (int m = 0; m < KVS_DRAIN_MSGS; m++) {
        zmq_msg_t fr[3];
        int n = 0, extra = 0, more = 1;
        while (more) {
            zmq_msg_t x;
            zmq_msg_init(&x);
            if (zmq_msg_recv(&x, k->cfg.data, n == 0 && extra == 0 ? ZMQ_DONTWAIT : 0) < 0) {
                zmq_msg_close(&x);
                for (int i = 0; i < n; i++) zmq_msg_close(&fr[i]);
                return; /* EAGAIN: nothing more now */
            }
            more = zmq_msg_more(&x);
            if (n < 3) fr[n++] = x;
            else {
                extra++;
                zmq_msg_close(&x);
            }
        }
        dest d = {.k = k, .ident = zmq_msg_data(&fr[0]), .ident_len = zmq_msg_size(&fr[0])};
        const void *data = NULL;
        size_t len = 0;
        if (extra == 0 && n == 2) {
            data = zmq_msg_data(&fr[1]);
            len = zmq_msg_size(&fr[1]);
        } else if (extra == 0 && n == 3 && zmq_msg_size(&fr[1]) == 0) {
            d.delim = true;
            data = zmq_msg_data(&fr[2]);
            len = zmq_msg_size(&fr[2]);
        }
        if (!data) {
            char why[64];
            snprintf(why, sizeof why, "message of %d frames", n + extra);
            bad(k, why);
        } else if (!serve_pull(k, &d, data, len)) {
            forward(k, pair, &d, data, len);
        }
        for (int i = 0; i < n; i++) zmq_msg_close(&fr[i]);
    }
}

/* Messages from the main thread: [identity][delimiter flag][payload] is a
 * reply to send to that peer (kvs_reply); anything else means stop. Returns
 * true to stop. Reads at most KVS_DRAIN_MSGS. */
static bool from_main(kvs_t *k, void *pair) {
    for (int m = 0; m < KVS_DRAIN_MSGS; m++) {
        zmq_msg_t fr[3];
        int n = 0, more = 1;
        bool bad = false;
        while (more) {
            zmq_msg_t x;
            zmq_msg_init(&x);
            if (zmq_msg_recv(&x, pair, n == 0 && !bad ? ZMQ_DONTWAIT : 0) < 0) {
                zmq_msg_close(&x);
                for (int i = 0; i < n; i++) zmq_msg_close(&fr[i]);
                return false; /* nothing more now */
            }
            more = zmq_msg_more(&x);
            if (n < 3) fr[n++] = x;
            else bad = true, zmq_msg_close(&x);
        }
        bool stop = bad || n != 3 || zmq_msg_size(&fr[1]) != 1;
        if (!stop) {
            dest d = {.k = k, .ident = zmq_msg_data(&fr[0]), .ident_len = zmq_msg_size(&fr[0]),
                      .delim = *(const uint8_t *)zmq_msg_data(&fr[1]) != 0};
            void *sock = k->cfg.data;
            if (zmq_send(sock, d.ident, d.ident_len, ZMQ_SNDMORE | ZMQ_DONTWAIT) < 0 ||
                (d.delim && zmq_send(sock, "", 0, ZMQ_SNDMORE | ZMQ_DONTWAIT) < 0) ||
                zmq_send(sock, zmq_msg_data(&fr[2]), zmq_msg_size(&fr[2]), ZMQ_DONTWAIT) < 0) {
                atomic_fetch_add(&k->send_errors, 1);
                klog(k, 1, "could not send a reply of the main thread: %s", zmq_strerror(zmq_errno()));
            }
        }
        for (int i = 0; i < n; i++) zmq_msg_close(&fr[i]);
        if (stop) return true;
    }
    return false;
}

static void *run(void *arg) {
    kvs_t *k = arg;
    void *pair = zmq_socket(k->cfg.zctx, ZMQ_PAIR);
    int zero = 0;
    if (!pair || zmq_connect(pair, k->pair_ep) != 0) {
        klog(k, 0, "pull server: cannot reach the main thread: %s", zmq_strerror(zmq_errno()));
        if (pair) zmq_close(pair);
        zmq_close(k->cfg.data);
        return NULL;
    }
    zmq_setsockopt(pair, ZMQ_LINGER, &zero, sizeof zero);
    while (!atomic_load(&k->stop)) {
        zmq_pollitem_t it[2] = {{.socket = k->cfg.data, .events = ZMQ_POLLIN}, {.socket = pair, .events = ZMQ_POLLIN}};
        if (zmq_poll(it, 2, KVS_POLL_MS) < 0) {
            if (zmq_errno() == EINTR) continue;
            klog(k, 0, "pull server: zmq_poll: %s", zmq_strerror(zmq_errno()));
            break;
        }
        if ((it[1].revents & ZMQ_POLLIN) && from_main(k, pair)) break; /* the main thread says stop */
        if (it[0].revents & ZMQ_POLLIN) drain(k, pair);
    }
    zmq_close(pair);
    zmq_close(k->cfg.data);
    return NULL;
}

kvs_t *kvs_start(const kvs_config *cfg) {
    if (!cfg || !cfg->zctx || !cfg->data || !cfg->e || !cfg->geom.page_bytes || cfg->max_blocks <= 0) {
        he_set(HE_EINVAL, "kvs_start: bad configuration");
        return NULL;
    }
    kvs_t *k = calloc(1, sizeof *k);
    if (!k) {
        he_set(HE_ENOMEM, "out of memory");
        return NULL;
    }
    k->cfg = *cfg;
    if (!k->cfg.chunk_bytes) k->cfg.chunk_bytes = (size_t)8 << 20;
    snprintf(k->pair_ep, sizeof k->pair_ep, "inproc://helium-kvserve-%p", (void *)k);
    int zero = 0;
    k->pair_main = zmq_socket(cfg->zctx, ZMQ_PAIR);
    if (!k->pair_main || zmq_bind(k->pair_main, k->pair_ep) != 0) {
        he_set(HE_EUNAVAIL, "kvs_start: inproc pair: %s", zmq_strerror(zmq_errno()));
        if (k->pair_main) zmq_close(k->pair_main);
        free(k);
        return NULL;
    }
    zmq_setsockopt(k->pair_main, ZMQ_LINGER, &zero, sizeof zero);
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_BLOCK, &all, &old);
    int rc = pthread_create(&k->th, NULL, run, k);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (rc != 0) {
        he_set(HE_EUNAVAIL, "kvs_start: cannot start the thread: %s", strerror(rc));
        zmq_close(k->pair_main);
        free(k);
        return NULL;
    }
    return k;
}

void *kvs_forward_socket(kvs_t *k) { return k ? k->pair_main : NULL; }

int kvs_reply(kvs_t *k, const void *ident, size_t ident_len, bool delim, const void *buf, size_t len) {
    uint8_t flag = delim ? 1 : 0;
    if (!k || !ident || ident_len == 0) return he_set(HE_EINVAL, "kvs_reply: no peer");
    if (zmq_send(k->pair_main, ident, ident_len, ZMQ_SNDMORE | ZMQ_DONTWAIT) < 0 ||
        zmq_send(k->pair_main, &flag, 1, ZMQ_SNDMORE | ZMQ_DONTWAIT) < 0 ||
        zmq_send(k->pair_main, buf, len, ZMQ_DONTWAIT) < 0)
        return he_set(HE_EUNAVAIL, "kvs_reply: %s", zmq_strerror(zmq_errno()));
    return 0;
}

void kvs_stop(kvs_t **self_p) {
    if (!self_p || !*self_p) return;
    kvs_t *k = *self_p;
    atomic_store(&k->stop, true);
    zmq_send(k->pair_main, "", 0, ZMQ_DONTWAIT); /* wakes it now; else it sees the flag within KVS_POLL_MS */
    pthread_join(k->th, NULL);
    zmq_close(k->pair_main);
    free(k);
    *self_p = NULL;
}

int64_t kvs_pulls_served(const kvs_t *k) { return k ? atomic_load(&((kvs_t *)k)->pulls_served) : 0; }
int64_t kvs_exported_blocks(const kvs_t *k) { return k ? atomic_load(&((kvs_t *)k)->exported_blocks) : 0; }
int64_t kvs_bad_frames(const kvs_t *k) { return k ? atomic_load(&((kvs_t *)k)->bad_frames) : 0; }
int64_t kvs_send_errors(const kvs_t *k) { return k ? atomic_load(&((kvs_t *)k)->send_errors) : 0; }
