/* serve: the worker's poll loop; see serve.h for the files around it.
 *
 * One thread runs one zmq_poll loop over: the coordinator DEALER (routing id =
 * worker id; WorkerMsg out, CoordMsg in), the data ROUTER (peers pull KV pages
 * from us: PeerMsg) or, when the pull server thread owns it, that thread's
 * forwarding pipe, one DEALER per peer we pull from, and a monitor pipe that
 * reports the coordinator connection coming and going. Between polls the loop
 * runs one engine step, so a dispatch that arrives mid-generation joins the
 * running batch at the next step (continuous batching across ops). The poll
 * waits 0 ms while the engine has work, else until the next timer (heartbeat,
 * registration retry, pull deadline), at most SRV_MAX_POLL_MS.
 * Policies carried by a dispatch: no_cache (neither reuse nor commit prefix
 * pages: the isolated baseline), warm (prefill only: one sampled token that
 * is not reported; the prompt's pages stay cached), pin/pin_tag (pins.c).
 * The wire format is proto/helium.proto.
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <zmq.h>

#include "herr.h"
#include "net.h"

/* signals received (SIGTERM, SIGINT): 1 = drain, 2 = exit at once */
static volatile sig_atomic_t g_signals;

static void on_signal(int sig) {
    (void)sig;
    if (g_signals < 2) g_signals++;
}

/* A data endpoint bound to every address (tcp://0.0.0.0:P or a "*" host) is
 * not an address a peer can dial: without --advertise, tell peers
 * tcp://<host name>:P instead (in a container the host name is what the
 * container network resolves; Kubernetes manifests set --advertise to the
 * pod's stable DNS name). */
static void advertise_hostname(srv_t *s) {
    const char *port = strrchr(s->data_ep, ':');
    char host[256];
    if (!port || !(strstr(s->data_ep, "//0.0.0.0:") || strstr(s->data_ep, "//*:"))) return;
    if (gethostname(host, sizeof host) != 0 || !host[0]) return;
    host[sizeof host - 1] = 0;
    char ep[sizeof s->data_ep];
    snprintf(ep, sizeof ep, "tcp://%s%s", host, port);
    snprintf(s->data_ep, sizeof s->data_ep, "%s", ep);
    clog_msg(CLOG_INFO, "data endpoint bound to every address: advertising %s (--advertise overrides)", s->data_ep);
}

/* SIGHUP: re-read the data socket's authorized keys */
static volatile sig_atomic_t g_hup;

static void on_hup(int sig) {
    (void)sig;
    g_hup = 1;
}

/* Keys (unless --insecure) and, for a CURVE data socket, its ZAP handler:
 * bound here, before any CURVE socket exists. 0 or 1 (logged). */
static int auth_setup(srv_t *s) {
    if (s->o.insecure) {
        clog_msg(CLOG_WARN, "--insecure: no CURVE on the coordinator link%s", s->o.data_ep ? " or the data socket" : "");
        return 0;
    }
    if (!s->o.key_file || !s->o.server_key_file) {
        clog_msg(CLOG_ERROR, "CURVE needs --key FILE and --server-key FILE (or --insecure)");
        return 1;
    }
    if (zauth_read_secret(s->o.key_file, &s->keys) || zauth_read_public(s->o.server_key_file, s->keys.server)) {
        clog_msg(CLOG_ERROR, "%s", he_msg());
        return 1;
    }
    if (s->o.data_ep && s->o.clear_data)
        clog_msg(CLOG_WARN, "--clear-data: KV pulls from %s travel in the clear, and anyone who reaches it may pull",
                 s->o.data_ep);
    if (!s->o.data_ep || s->o.clear_data) return 0;
    if (!s->o.authorized_keys) {
        clog_msg(CLOG_ERROR, "a CURVE data socket needs --authorized-keys FILE (the workers that may pull), "
                             "or --clear-data to serve pulls in the clear");
        return 1;
    }
    int rc = -1;
    if (!(s->zauth = zauth_new(s->zctx, "data")) || (rc = zauth_load(s->zauth, s->o.authorized_keys)) < 0) {
        clog_msg(CLOG_ERROR, "%s", he_msg());
        return 1;
    }
    clog_msg(CLOG_INFO, "CURVE on: public key %s; %d worker key(s) may pull from %s", s->keys.pub, rc,
             s->o.authorized_keys);
    return 0;
}

static void kvs_log(int level, const char *msg) { clog_msg((clog_level)level, "%s", msg); }

/* Reads one whole message from sock (non-blocking): up to 3 frames kept
 * (frames beyond are read and dropped). Returns the frame count, 0 if none
 * waiting, -1 on error. */
static int recv_msg(void *sock, zmq_msg_t fr[3], int *n_dropped) {
    int n = 0, more = 1;
    *n_dropped = 0;
    while (more) {
        zmq_msg_t m;
        zmq_msg_init(&m);
        if (zmq_msg_recv(&m, sock, n == 0 ? ZMQ_DONTWAIT : 0) < 0) {
            zmq_msg_close(&m);
            for (int i = 0; i < n; i++) zmq_msg_close(&fr[i]);
            return (n == 0 && zmq_errno() == EAGAIN) ? 0 : -1;
        }
        more = zmq_msg_more(&m);
        if (n < 3) fr[n++] = m;
        else {
            zmq_msg_close(&m);
            (*n_dropped)++;
        }
    }
    return n;
}

static void read_coord(srv_t *s) {
    for (int k = 0; k < SRV_DRAIN_MSGS && !s->stop; k++) {
        zmq_msg_t fr[3];
        int dropped, n = recv_msg(s->coord, fr, &dropped);
        if (n <= 0) return;
        /* one frame expected; tolerate a leading empty delimiter */
        if (n == 1 && !dropped) {
            srv_on_coord_frame(s, zmq_msg_data(&fr[0]), zmq_msg_size(&fr[0]));
        } else if (n == 2 && !dropped && zmq_msg_size(&fr[0]) == 0) {
            srv_on_coord_frame(s, zmq_msg_data(&fr[1]), zmq_msg_size(&fr[1]));
        } else {
            srv_bad_frame(s, "the coordinator", "message of %d frames", n + dropped);
        }
        for (int i = 0; i < n; i++) zmq_msg_close(&fr[i]);
    }
}

static void read_data(srv_t *s) {
    for (int k = 0; k < SRV_DRAIN_MSGS && !s->stop; k++) {
        zmq_msg_t fr[3];
        int dropped, n = recv_msg(s->data, fr, &dropped);
        if (n <= 0) return;
        if (n == 2 && !dropped) {
            pull_on_data_frame(s, zmq_msg_data(&fr[0]), zmq_msg_size(&fr[0]), false, zmq_msg_data(&fr[1]),
                          zmq_msg_size(&fr[1]));
        } else if (n == 3 && !dropped && zmq_msg_size(&fr[1]) == 0) {
            pull_on_data_frame(s, zmq_msg_data(&fr[0]), zmq_msg_size(&fr[0]), true, zmq_msg_data(&fr[2]),
                          zmq_msg_size(&fr[2]));
        } else {
            srv_bad_frame(s, "a peer (data endpoint)", "message of %d frames", n + dropped);
        }
        for (int i = 0; i < n; i++) zmq_msg_close(&fr[i]);
    }
}

/* From the pull server thread: [identity, delimiter flag, payload]. */
static void read_forwarded(srv_t *s) {
    void *sock = kvs_forward_socket(s->kvs);
    for (int k = 0; k < SRV_DRAIN_MSGS && !s->stop; k++) {
        zmq_msg_t fr[3];
        int dropped, n = recv_msg(sock, fr, &dropped);
        if (n <= 0) return;
        if (n == 3 && !dropped && zmq_msg_size(&fr[1]) == 1)
            pull_on_data_frame(s, zmq_msg_data(&fr[0]), zmq_msg_size(&fr[0]), *(const uint8_t *)zmq_msg_data(&fr[1]) != 0,
                          zmq_msg_data(&fr[2]), zmq_msg_size(&fr[2]));
        else srv_bad_frame(s, "the pull server", "message of %d frames", n + dropped);
        for (int i = 0; i < n; i++) zmq_msg_close(&fr[i]);
    }
}

static void read_peer(srv_t *s, int pi) {
    for (int k = 0; k < SRV_DRAIN_MSGS && !s->stop && s->peers[pi].sock; k++) {
        zmq_msg_t fr[3];
        int dropped, n = recv_msg(s->peers[pi].sock, fr, &dropped);
        if (n <= 0) return;
        if (n == 1 && !dropped) pull_on_peer_reply(s, pi, zmq_msg_data(&fr[0]), zmq_msg_size(&fr[0]));
        else if (n == 2 && !dropped && zmq_msg_size(&fr[0]) == 0)
            pull_on_peer_reply(s, pi, zmq_msg_data(&fr[1]), zmq_msg_size(&fr[1]));
        else srv_bad_frame(s, s->peers[pi].ep, "message of %d frames", n + dropped);
        for (int i = 0; i < n; i++) zmq_msg_close(&fr[i]);
    }
}

/* Monitor events of the coordinator connection: re-register after a reconnect. */
static void read_monitor(srv_t *s) {
    for (int k = 0; k < SRV_DRAIN_MSGS; k++) {
        zmq_msg_t fr[3];
        int dropped, n = recv_msg(s->mon, fr, &dropped);
        if (n <= 0) return;
        if (zmq_msg_size(&fr[0]) >= 6) {
            uint16_t ev;
            memcpy(&ev, zmq_msg_data(&fr[0]), 2);
            if (ev == ZMQ_EVENT_CONNECTED) {
                s->coord_up = true;
                clog_msg(CLOG_DEBUG, "connected to the coordinator");
                if (!s->registered) s->next_reg_ms = clock_mono_ms(); /* register now */
            } else if (ev == ZMQ_EVENT_DISCONNECTED) {
                s->coord_up = false;
                if (s->registered)
                    clog_msg(CLOG_WARN, "lost the connection to the coordinator; re-registering when it is back");
                s->registered = false;
                s->next_reg_ms = clock_mono_ms() + 5 * SRV_REG_RETRY_MS;
            }
        }
        for (int i = 0; i < n; i++) zmq_msg_close(&fr[i]);
    }
}

static int setup(srv_t *s) {
    int rc = model_load(s->o.model_path, &s->m);
    if (rc) {
        clog_msg(CLOG_ERROR, "cannot load model %s: %s: %s", s->o.model_path, he_name(rc), he_msg());
        return 1;
    }
    s->e = eng_new(s->m, NULL, &s->o.ec);
    if (!s->e) {
        clog_msg(CLOG_ERROR, "cannot start the engine: %s", he_msg());
        return 1;
    }
    s->bs = eng_block_size(s->e);
    s->page_bytes = eng_kv_page_bytes(s->e);
    s->geom = (kvs_geom){.model_root = s->m->root_hash, .n_layers = (uint32_t)s->m->hp.n_layers,
                         .kv_dim = (uint32_t)s->m->hp.kv_dim, .block_size = (uint32_t)s->bs,
                         .page_bytes = s->page_bytes, .protocol_version = SRV_PROTO};
    eng_set_cache_events(s->e, csync_on_event, s);
    s->peers = calloc(SRV_MAX_PEERS, sizeof *s->peers);
    s->zctx = zmq_ctx_new();
    if (!s->peers || !s->zctx) {
        clog_msg(CLOG_ERROR, "out of memory");
        return 1;
    }
    int zero = 0, hwm = 100000;
    int64_t maxmsg = SRV_MAX_MSG_BYTES;
    if (auth_setup(s)) return 1;
    /* coordinator DEALER */
    s->coord = zmq_socket(s->zctx, ZMQ_DEALER);
    if (!s->coord) goto zfail;
    if (s->keys.sec[0] && zauth_set_client(s->coord, &s->keys, NULL)) goto zfail;
    zmq_setsockopt(s->coord, ZMQ_ROUTING_ID, s->id, strlen(s->id));
    zmq_setsockopt(s->coord, ZMQ_LINGER, &zero, sizeof zero);
    zmq_setsockopt(s->coord, ZMQ_SNDHWM, &hwm, sizeof hwm);
    zmq_setsockopt(s->coord, ZMQ_MAXMSGSIZE, &maxmsg, sizeof maxmsg);
    char mon_ep[96];
    snprintf(mon_ep, sizeof mon_ep, "inproc://helium-serve-monitor-%d", (int)getpid());
    if (zmq_socket_monitor(s->coord, mon_ep, ZMQ_EVENT_CONNECTED | ZMQ_EVENT_DISCONNECTED) != 0) goto zfail;
    s->mon = zmq_socket(s->zctx, ZMQ_PAIR);
    if (!s->mon || zmq_connect(s->mon, mon_ep) != 0) goto zfail;
    zmq_setsockopt(s->mon, ZMQ_LINGER, &zero, sizeof zero);
    if (zmq_connect(s->coord, s->o.coord_ep) != 0) {
        clog_msg(CLOG_ERROR, "bad coordinator endpoint '%s': %s", s->o.coord_ep, zmq_strerror(zmq_errno()));
        return 1;
    }
    /* data ROUTER */
    if (s->o.data_ep) {
        s->data = zmq_socket(s->zctx, ZMQ_ROUTER);
        if (!s->data) goto zfail;
        zmq_setsockopt(s->data, ZMQ_LINGER, &zero, sizeof zero);
        zmq_setsockopt(s->data, ZMQ_SNDHWM, &hwm, sizeof hwm);
        zmq_setsockopt(s->data, ZMQ_MAXMSGSIZE, &maxmsg, sizeof maxmsg);
        if (s->zauth && (zauth_set_server(s->data, &s->keys) || zauth_watch(s->zauth, s->data))) goto zfail;
        if (zmq_bind(s->data, s->o.data_ep) != 0) {
            clog_msg(CLOG_ERROR, "cannot bind data endpoint %s: %s", s->o.data_ep, zmq_strerror(zmq_errno()));
            return 1;
        }
        size_t l = sizeof s->data_ep;
        if (s->o.advertise) snprintf(s->data_ep, sizeof s->data_ep, "%s", s->o.advertise);
        else if (zmq_getsockopt(s->data, ZMQ_LAST_ENDPOINT, s->data_ep, &l) != 0)
            snprintf(s->data_ep, sizeof s->data_ep, "%s", s->o.data_ep);
        if (!s->o.advertise) advertise_hostname(s);
        if (strstr(s->data_ep, "0.0.0.0") || strstr(s->data_ep, "//*"))
            clog_msg(CLOG_WARN, "data endpoint %s is not reachable as written; use --advertise", s->data_ep);
        if (!s->o.inline_pulls) {
            kvs_config kc = {.zctx = s->zctx, .data = s->data, .e = s->e, .geom = s->geom,
                             .max_blocks = eng_n_ctx(s->e) / s->bs + 1, .chunk_bytes = SRV_CHUNK_BYTES,
                             .log = kvs_log};
            if ((s->kvs = kvs_start(&kc))) s->data = NULL; /* the thread owns it now */
            else clog_msg(CLOG_WARN, "no pull server thread (%s): serving pulls between engine steps", he_msg());
        }
    }
    if (xpl_setup(s)) return 1; /* the KV transport under pulls, if any (xport_pull.c) */
    if (s->o.health_port > 0) {
        if (!(s->health = health_new(s->o.health_host, s->o.health_port))) {
            clog_msg(CLOG_ERROR, "%s", he_msg());
            return 1;
        }
        clog_msg(CLOG_INFO, "probes on http://%s:%d/healthz and /readyz", s->o.health_host ? s->o.health_host : "127.0.0.1",
                 s->o.health_port);
    }
    s->hb_ms = (uint32_t)s->o.heartbeat_ms;
    s->next_reg_ms = clock_mono_ms() + 250; /* sooner once the monitor reports the connection */
    kvc_stats ks = eng_cache_stats(s->e);
    clog_msg(CLOG_INFO, "model %s (%d layers, kv_dim %d, ctx %d), %lld KV blocks of %d tokens; coordinator %s, data %s",
         s->m->name, s->m->hp.n_layers, s->m->hp.kv_dim, eng_n_ctx(s->e), (long long)ks.blocks_total, s->bs,
         s->o.coord_ep, s->data_ep[0] ? s->data_ep : "(none)");
    return 0;
zfail:
    clog_msg(CLOG_ERROR, "zmq setup failed: %s", zmq_strerror(zmq_errno()));
    return 1;
}

static void teardown(srv_t *s) {
    health_destroy(&s->health);
    kvs_stop(&s->kvs); /* it closes the data socket */
    while (s->tasks) task_free(s, s->tasks);
    if (s->e) xpl_teardown(s); /* before the context ends: the transport may hold sockets */
    for (int i = 0; i < s->n_peers; i++) pull_peer_close(&s->peers[i]);
    free(s->peers);
    if (s->coord) {
        zmq_socket_monitor(s->coord, NULL, 0);
        zmq_close(s->coord);
    }
    if (s->mon) zmq_close(s->mon);
    if (s->data) zmq_close(s->data);
    zauth_destroy(&s->zauth); /* after the data socket it watches */
    if (s->zctx) zmq_ctx_term(s->zctx);
    if (s->e) pins_drop_all(s);
    free(s->tags);
    eng_destroy(&s->e);
    model_destroy(&s->m);
}

/* Timers: registration retries, heartbeats, pull deadlines. Returns ms until
 * the next one is due (capped at SRV_MAX_POLL_MS). */
static int run_timers(srv_t *s) {
    int64_t now = clock_mono_ms(), next = now + SRV_MAX_POLL_MS;
    if (g_hup) {
        g_hup = 0;
        int rc = s->zauth ? zauth_load(s->zauth, s->o.authorized_keys) : 0;
        if (rc < 0) clog_msg(CLOG_ERROR, "authorized keys not reloaded: %s", he_msg());
        else if (s->zauth) clog_msg(CLOG_INFO, "authorized keys reloaded: %d key(s)", rc);
    }
    if (!s->registered) {
        /* while the connection is down a Register would only queue up: retry
         * rarely then, and at once when the monitor reports a connection */
        if (now >= s->next_reg_ms) {
            srv_send_register(s);
            s->next_reg_ms = now + (s->coord_up ? SRV_REG_RETRY_MS : 5 * SRV_REG_RETRY_MS);
        }
        if (s->next_reg_ms < next) next = s->next_reg_ms;
    } else {
        if (now >= s->next_hb_ms) {
            srv_send_heartbeat(s);
            s->next_hb_ms = now + s->hb_ms;
        }
        if (s->next_hb_ms < next) next = s->next_hb_ms;
    }
    next = pull_timers(s, now, next);
    return next > now ? (int)(next - now) : 0;
}

/* The first signal: take nothing more, tell the coordinator at once. */
static void begin_drain(srv_t *s) {
    s->draining = s->sig_drain = true;
    s->drain_deadline_ms = clock_mono_ms() + s->o.drain_timeout_ms;
    clog_msg(CLOG_INFO, "signal received: draining (%d call(s) in flight, at most %d ms)", s->n_tasks,
             s->o.drain_timeout_ms);
    if (s->registered) srv_send_heartbeat(s);
}

/* Tells the coordinator we are gone (it hands back what we still hold) and
 * keeps the socket open long enough for that heartbeat to leave. */
static void leave(srv_t *s) {
    if (!s->registered) return;
    s->leaving = true;
    srv_send_heartbeat(s);
    int linger = 2000;
    zmq_setsockopt(s->coord, ZMQ_LINGER, &linger, sizeof linger);
}

static int serve_loop(srv_t *s) {
    zmq_pollitem_t items[3 + SRV_MAX_PEERS];
    int peer_of[3 + SRV_MAX_PEERS];
    while (!s->stop && g_signals < 2) {
        if (g_signals && !s->sig_drain) begin_drain(s);
        health_beat(s->health);
        health_set(s->health, s->draining ? HEALTH_DRAINING : s->registered ? HEALTH_READY : HEALTH_STARTING);
        int wait = run_timers(s);
        bool busy = eng_n_running(s->e) + eng_n_waiting(s->e) > 0;
        int n = 0;
        items[n++] = (zmq_pollitem_t){.socket = s->coord, .events = ZMQ_POLLIN};
        items[n++] = (zmq_pollitem_t){.socket = s->mon, .events = ZMQ_POLLIN};
        if (s->data) items[n++] = (zmq_pollitem_t){.socket = s->data, .events = ZMQ_POLLIN};
        else if (s->kvs) items[n++] = (zmq_pollitem_t){.socket = kvs_forward_socket(s->kvs), .events = ZMQ_POLLIN};
        int fixed = n;
        for (int i = 0; i < s->n_peers; i++)
            if (s->peers[i].sock) {
                peer_of[n] = i;
                items[n++] = (zmq_pollitem_t){.socket = s->peers[i].sock, .events = ZMQ_POLLIN};
            }
        int rc = zmq_poll(items, n, busy ? 0 : wait);
        if (rc < 0) {
            if (zmq_errno() == EINTR) continue;
            clog_msg(CLOG_ERROR, "zmq_poll: %s", zmq_strerror(zmq_errno()));
            return 1;
        }
        if (items[0].revents & ZMQ_POLLIN) read_coord(s);
        if (items[1].revents & ZMQ_POLLIN) read_monitor(s);
        if (fixed > 2 && (items[2].revents & ZMQ_POLLIN)) {
            if (s->data) read_data(s);
            else read_forwarded(s);
        }
        for (int i = fixed; i < n; i++)
            if (items[i].revents & ZMQ_POLLIN) read_peer(s, peer_of[i]);
        if (s->stop) break;
        if (eng_n_running(s->e) + eng_n_waiting(s->e) > 0) {
            int64_t t0 = clock_mono_us();
            int st = eng_step(s->e);
            s->step_us += clock_mono_us() - t0;
            if (st < 0) {
                clog_msg(CLOG_ERROR, "engine step failed: %s: %s", he_name(st), he_msg());
                while (s->tasks) task_fail(s, s->tasks, HELIUM__ERROR_CODE__ERROR_INTERNAL, "engine failure");
                return 1;
            }
            task_after_step(s);
        }
        if (s->draining && s->n_tasks == 0) {
            clog_msg(CLOG_INFO, "drained; exiting");
            leave(s);
            break;
        }
        if (s->sig_drain && clock_mono_ms() >= s->drain_deadline_ms) {
            clog_msg(CLOG_WARN, "drain timeout: leaving %d unfinished call(s) to the coordinator", s->n_tasks);
            leave(s);
            break;
        }
    }
    if (g_signals >= 2) clog_msg(CLOG_INFO, "second signal: exiting at once");
    return s->exit_code;
}

int srv_run(const srv_opts *o) {
    srv_t *s = calloc(1, sizeof *s);
    if (!s) return 1;
    s->o = *o;
    clog_set_level(s->o.level);
    if (s->o.id) snprintf(s->id, sizeof s->id, "%s", s->o.id);
    else snprintf(s->id, sizeof s->id, "w%d", (int)getpid());
    char name[WF_MAX_ID_LEN + 16];
    snprintf(name, sizeof name, "worker %s", s->id);
    clog_set_name(name);
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);
    sa.sa_handler = on_hup;
    sigaction(SIGHUP, &sa, NULL);
    int rc = setup(s);
    if (!rc) rc = serve_loop(s);
    teardown(s);
    clog_msg(CLOG_INFO, "stopped (exit %d)", rc);
    free(s);
    return rc;
}
