/* xport_pull (worker/net/xport_pull.c): both ends of KV pulls over the
 * transport, driven in one process: two workers' network state (srv_t, as
 * worker/net builds it), each with its own engine on the same generated
 * model, real ZeroMQ sockets between them (B's data ROUTER, A's pull
 * DEALER, each one's coordinator DEALER connected to a ROUTER this test
 * reads), and the ZeroMQ reference transport (zmq-ref) under the pulls.
 * The test pumps both workers' sockets, timers and engine steps in turn.
 *
 * Checked: the choice (a hint that names no transport pulls over ZeroMQ; a
 * server without it declines and the pages come over ZeroMQ); a pull over
 * the transport (pages, counters, outputs equal to recomputing); a second
 * pull reusing the joined link (no new offer); fallback to ZeroMQ after a
 * dropped page (reserved pages released, same result); a task canceled
 * while its transfer runs (its reserved pages released). After each: no KV
 * page left in use on either side (held and reserved pages all returned).
 * The cluster tests (tests/cli/cluster_xport.sh) run the same code in real
 * processes. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <zmq.h>

#include "blockhash.h"
#include "herr.h"
#include "net.h"

typedef struct {
    srv_t s;
    void *coord_peer; /* the test's ROUTER the worker's coordinator DEALER talks to */
} wk;

static model_t *g_model;
static char g_path[256];
static void *g_zctx;
static wk A, B;
static int g_eps;

static void worker_init(wk *w, const char *id, const char *xport, const char *fault) {
    memset(w, 0, sizeof *w);
    srv_t *s = &w->s;
    s->o.ec = (eng_config){.n_threads = 1, .n_ctx = 256, .n_blocks = 64};
    s->o.pull_timeout_ms = 3000;
    s->o.kv_xport = xport;
    s->o.kv_xport_fault = fault;
    snprintf(s->id, sizeof s->id, "%s", id);
    s->m = g_model;
    s->e = eng_new(g_model, NULL, &s->o.ec);
    cr_assert_not_null(s->e, "%s", he_msg());
    s->bs = eng_block_size(s->e);
    s->page_bytes = eng_kv_page_bytes(s->e);
    s->geom = (kvs_geom){.model_root = g_model->root_hash, .n_layers = (uint32_t)g_model->hp.n_layers,
                         .kv_dim = (uint32_t)g_model->hp.kv_dim, .block_size = (uint32_t)s->bs,
                         .page_bytes = s->page_bytes, .protocol_version = SRV_PROTO};
    eng_set_cache_events(s->e, csync_on_event, s);
    s->peers = calloc(SRV_MAX_PEERS, sizeof *s->peers);
    s->zctx = g_zctx;
    int zero = 0;
    char ep[64];
    snprintf(ep, sizeof ep, "inproc://xpl-coord-%d", ++g_eps);
    w->coord_peer = zmq_socket(g_zctx, ZMQ_ROUTER);
    s->coord = zmq_socket(g_zctx, ZMQ_DEALER);
    s->data = zmq_socket(g_zctx, ZMQ_ROUTER);
    cr_assert(s->peers && w->coord_peer && s->coord && s->data);
    zmq_setsockopt(w->coord_peer, ZMQ_LINGER, &zero, sizeof zero);
    zmq_setsockopt(s->coord, ZMQ_LINGER, &zero, sizeof zero);
    zmq_setsockopt(s->data, ZMQ_LINGER, &zero, sizeof zero);
    cr_assert_eq(zmq_bind(w->coord_peer, ep), 0);
    cr_assert_eq(zmq_connect(s->coord, ep), 0);
    cr_assert_eq(zmq_bind(s->data, "tcp://127.0.0.1:*"), 0);
    size_t l = sizeof s->data_ep;
    zmq_getsockopt(s->data, ZMQ_LAST_ENDPOINT, s->data_ep, &l);
    s->registered = true;
    s->hb_ms = 1000;
    cr_assert_eq(xpl_setup(s), 0);
    if (xport && strcmp(xport, "off")) cr_assert_not_null(s->xp, "transport %s set up", xport);
}

static void worker_fini(wk *w) {
    srv_t *s = &w->s;
    while (s->tasks) task_free(s, s->tasks);
    xpl_teardown(s);
    for (int i = 0; i < s->n_peers; i++) pull_peer_close(&s->peers[i]);
    free(s->peers);
    zmq_close(s->coord);
    zmq_close(s->data);
    zmq_close(w->coord_peer);
    pins_drop_all(s);
    free(s->tags);
    eng_destroy(&s->e);
}

static void setup(void) {
    snprintf(g_path, sizeof g_path, "/tmp/helium-test-xport-pull-%d.gguf", (int)getpid());
    char cmd[768];
    snprintf(cmd, sizeof cmd, "%s/bin/helium-mkmodel --preset tiny --arch llama --dtype f32 --seed 9 -o %s 2>/dev/null",
             HELIUM_BINARY_DIR, g_path);
    cr_assert_eq(system(cmd), 0, "helium-mkmodel failed");
    cr_assert_eq(model_load(g_path, &g_model), 0, "%s", he_msg());
    clog_set_level(getenv("XPL_TEST_LOG") ? CLOG_DEBUG : CLOG_ERROR);
    g_zctx = zmq_ctx_new();
}

static void teardown(void) {
    worker_fini(&A);
    worker_fini(&B);
    zmq_ctx_term(g_zctx);
    model_destroy(&g_model);
    unlink(g_path);
}

/* One turn of w's loop: its data socket, its pull sockets, timers, a step. */
static void pump(wk *w) {
    srv_t *s = &w->s;
    for (int k = 0; k < 64; k++) {
        zmq_msg_t fr[3];
        int n = 0, more = 1;
        while (more && n < 3) {
            zmq_msg_init(&fr[n]);
            if (zmq_msg_recv(&fr[n], s->data, n ? 0 : ZMQ_DONTWAIT) < 0) {
                zmq_msg_close(&fr[n]);
                more = -1;
                break;
            }
            more = zmq_msg_more(&fr[n]);
            n++;
        }
        if (n == 2) pull_on_data_frame(s, zmq_msg_data(&fr[0]), zmq_msg_size(&fr[0]), false, zmq_msg_data(&fr[1]),
                                       zmq_msg_size(&fr[1]));
        for (int i = 0; i < n; i++) zmq_msg_close(&fr[i]);
        if (n == 0) break;
    }
    for (int i = 0; i < s->n_peers; i++) {
        for (int k = 0; k < 64 && s->peers[i].sock; k++) {
            zmq_msg_t m;
            zmq_msg_init(&m);
            if (zmq_msg_recv(&m, s->peers[i].sock, ZMQ_DONTWAIT) < 0) {
                zmq_msg_close(&m);
                break;
            }
            pull_on_peer_reply(s, i, zmq_msg_data(&m), zmq_msg_size(&m));
            zmq_msg_close(&m);
        }
    }
    int64_t now = clock_mono_ms();
    pull_timers(s, now, now + 100);
    if (eng_n_running(s->e) + eng_n_waiting(s->e) > 0) {
        cr_assert_geq(eng_step(s->e), 0, "%s", he_msg());
        task_after_step(s);
    }
}

/* The next OpResult w sent its coordinator (ids copied to out), pumping both
 * workers meanwhile; fails after 20 s. Returns its pulled_tokens. */
static int wait_result(wk *w, int32_t *out, int32_t *n_out) {
    for (int it = 0; it < 200000; it++) {
        zmq_msg_t id, body;
        zmq_msg_init(&id);
        zmq_msg_init(&body);
        if (zmq_msg_recv(&id, w->coord_peer, ZMQ_DONTWAIT) >= 0) {
            cr_assert(zmq_msg_more(&id));
            cr_assert_geq(zmq_msg_recv(&body, w->coord_peer, 0), 0);
            Helium__WorkerMsg *m = helium__worker_msg__unpack(NULL, zmq_msg_size(&body), zmq_msg_data(&body));
            cr_assert_not_null(m);
            int pulled = -1;
            if (m->body_case == HELIUM__WORKER_MSG__BODY_RESULT) {
                cr_assert_null(m->result->error, "the call failed: %s",
                               m->result->error && m->result->error->message ? m->result->error->message : "");
                *n_out = (int32_t)m->result->n_ids;
                memcpy(out, m->result->ids, sizeof(int32_t) * m->result->n_ids);
                pulled = (int)m->result->pulled_tokens;
            }
            helium__worker_msg__free_unpacked(m, NULL);
            zmq_msg_close(&id);
            zmq_msg_close(&body);
            if (pulled >= 0) return pulled;
            continue;
        }
        zmq_msg_close(&id);
        zmq_msg_close(&body);
        pump(&A);
        pump(&B);
        if (it % 64 == 63) usleep(200);
    }
    cr_assert_fail("no result within the time allowed");
    return -1;
}

#define NP 90 /* 5 full blocks of 16, 4 of them usable for a pull */

static void make_prompt(int32_t *p, unsigned seed) {
    for (int i = 0; i < NP; i++) {
        seed = seed * 1103515245u + 12345u;
        p[i] = (int32_t)((seed >> 8) % 200u) + 3;
    }
}

static uint64_t g_task = 100;

/* Dispatches prompt to w (with a pull hint from src naming xport, if src). */
static void dispatch(wk *w, const int32_t *prompt, int32_t n, wk *src, const char *xport) {
    Helium__Dispatch d = HELIUM__DISPATCH__INIT;
    Helium__Sampling smp = HELIUM__SAMPLING__INIT;
    Helium__KvPullHint h = HELIUM__KV_PULL_HINT__INIT;
    uint64_t hashes[16];
    d.task_id = ++g_task;
    d.job_id = "j";
    d.op_id = "o";
    d.attempt = 1;
    d.n_prompt_ids = (size_t)n;
    d.prompt_ids = (int32_t *)prompt;
    d.sampling = &smp;
    d.max_tokens = 6;
    if (src) {
        int nb = bh_prefix(g_model->root_hash, prompt, n, 16, hashes);
        h.source_worker = src->s.id;
        h.source_endpoint = src->s.data_ep;
        h.first_block = 0;
        h.n_hashes = (size_t)nb;
        h.hashes = hashes;
        h.source_xport = (char *)(xport ? xport : "");
        d.pull = &h;
    }
    task_on_dispatch(&w->s, &d);
}

/* The ids recomputing prompt from nothing gives (a fresh engine). */
static int32_t recompute(const int32_t *prompt, int32_t n, int32_t *out) {
    eng_config c = {.n_threads = 1, .n_ctx = 256, .n_blocks = 64};
    eng_t *e = eng_new(g_model, NULL, &c);
    eng_request rq = {.max_tokens = 6};
    uint64_t id;
    cr_assert_eq(eng_submit(e, prompt, n, &rq, &id), 0);
    while (eng_step(e) > 0) {}
    eng_result r;
    cr_assert(eng_next_result(e, &r));
    int32_t k = r.n_gen;
    memcpy(out, r.ids, sizeof(int32_t) * (size_t)k);
    eng_result_free(&r);
    eng_destroy(&e);
    return k;
}

/* B computes prompt P (so it holds P's blocks); then A runs P + a question
 * with a pull hint from B. Checks A's output against recomputing; returns
 * A's pulled tokens. */
static int pull_round(unsigned seed, const char *hint_xport) {
    int32_t p[NP + 8], ids[64], ref[64], n = 0;
    make_prompt(p, seed);
    dispatch(&B, p, NP, NULL, NULL);
    wait_result(&B, ids, &n);
    for (int i = 0; i < 8; i++) p[NP + i] = 40 + i; /* the question differs from B's prompt after P */
    dispatch(&A, p, NP + 8, &B, hint_xport);
    int pulled = wait_result(&A, ids, &n);
    int32_t k = recompute(p, NP + 8, ref);
    cr_assert_eq(n, k, "A generated %d tokens, recomputing %d", n, k);
    for (int i = 0; i < k; i++) cr_assert_eq(ids[i], ref[i], "token %d: pulled KV gave %d, recomputing %d", i, ids[i], ref[i]);
    for (int i = 0; i < 50; i++) pump(&B), pump(&A); /* let the server see its send complete */
    cr_assert_eq(eng_cache_stats(A.s.e).blocks_used, 0, "A: a page left in use (reserved, not released)");
    cr_assert_eq(eng_cache_stats(B.s.e).blocks_used, 0, "B: a page left in use (held, not unheld)");
    return pulled;
}

TestSuite(xport_pull, .init = setup, .fini = teardown, .timeout = 120);

Test(xport_pull, over_the_transport_then_reusing_the_link) {
    worker_init(&A, "A", "zmq-ref", NULL);
    worker_init(&B, "B", "zmq-ref", NULL);
    int pulled = pull_round(1, "zmq-ref");
    cr_assert_eq(pulled, 5 * 16, "the whole usable prefix came (%d tokens)", pulled);
    cr_assert_eq(A.s.xp_pulled_tokens, pulled, "and it came over the transport");
    cr_assert_eq(A.s.xp_fallbacks + A.s.xp_declined, 0);
    cr_assert_eq(B.s.xp_served, 1);
    cr_assert_eq(eng_get_counters(A.s.e).imported_blocks, 5);
    xport_stats xa = xport_get_stats(A.s.xp);
    cr_assert_eq(xa.offers, 1);
    cr_assert_eq(xa.transfers, 1);
    cr_assert_eq(xa.pages, 5);
    /* a second prefix: the joined link is reused (no new offer, no new join) */
    pulled = pull_round(2, "zmq-ref");
    cr_assert_eq(pulled, 5 * 16);
    xa = xport_get_stats(A.s.xp);
    cr_assert_eq(xa.offers, 1, "the link was reused");
    cr_assert_eq(xa.transfers, 2);
    cr_assert_eq(A.s.xp_pulled_tokens, 2 * 5 * 16);
    cr_assert_eq(B.s.xp_served, 2);
}

Test(xport_pull, a_hint_without_the_transport_pulls_over_zeromq) {
    worker_init(&A, "A", "zmq-ref", NULL);
    worker_init(&B, "B", "zmq-ref", NULL);
    int pulled = pull_round(3, NULL);
    cr_assert_eq(pulled, 5 * 16);
    cr_assert_eq(A.s.xp_pulled_tokens, 0, "not asked for: no transport");
    cr_assert_eq(xport_get_stats(A.s.xp).offers, 0);
    cr_assert_eq(B.s.xp_served, 0);
}

Test(xport_pull, a_server_without_it_declines) {
    worker_init(&A, "A", "zmq-ref", NULL);
    worker_init(&B, "B", "off", NULL);
    cr_assert_null(B.s.xp);
    int pulled = pull_round(4, "zmq-ref");
    cr_assert_eq(pulled, 5 * 16, "the pages came over ZeroMQ");
    cr_assert_eq(A.s.xp_declined, 1);
    cr_assert_eq(A.s.xp_pulled_tokens, 0);
    cr_assert_eq(xport_state(A.s.xp, xpl_peer_key(B.s.data_ep)), XP_IDLE, "the offered link was dropped");
}

Test(xport_pull, a_dropped_page_falls_back_to_zeromq) {
    worker_init(&A, "A", "zmq-ref", NULL);
    worker_init(&B, "B", "zmq-ref", "drop");
    int pulled = pull_round(5, "zmq-ref");
    cr_assert_eq(pulled, 5 * 16, "all pages, over ZeroMQ after the transport failed");
    cr_assert_eq(A.s.xp_fallbacks, 1);
    cr_assert_eq(A.s.xp_pulled_tokens, 0);
    xport_stats xa = xport_get_stats(A.s.xp);
    cr_assert_eq(xa.timeouts, 1, "the transfer passed its deadline");
    cr_assert_eq(xa.invalidated_pages, 5, "its reserved pages were handed back");
}

Test(xport_pull, a_task_canceled_mid_transfer_releases_its_pages) {
    worker_init(&A, "A", "zmq-ref", NULL);
    worker_init(&B, "B", "zmq-ref", "drop"); /* the transfer never completes */
    int32_t p[NP + 8], ids[64], n;
    make_prompt(p, 6);
    dispatch(&B, p, NP, NULL, NULL);
    wait_result(&B, ids, &n);
    for (int i = 0; i < 8; i++) p[NP + i] = 40 + i;
    dispatch(&A, p, NP + 8, &B, "zmq-ref");
    task_t *t = A.s.tasks;
    cr_assert_not_null(t);
    for (int i = 0; i < 20000 && !t->xp_pages; i++) {
        pump(&B);
        pump(&A);
    }
    cr_assert_not_null(t->xp_pages, "the transfer started (pages reserved)");
    cr_assert_eq(eng_cache_stats(A.s.e).blocks_used, 5, "5 pages reserved");
    Helium__Cancel c = HELIUM__CANCEL__INIT;
    c.task_id = t->task_id;
    task_on_cancel(&A.s, &c);
    for (int i = 0; i < 50; i++) pump(&B), pump(&A);
    cr_assert_eq(A.s.n_tasks, 0);
    cr_assert_eq(eng_cache_stats(A.s.e).blocks_used, 0, "the reserved pages were released");
    cr_assert_eq(eng_cache_stats(A.s.e).blocks_cached, 0, "and none was committed");
    cr_assert_eq(eng_cache_stats(B.s.e).blocks_used, 0, "B unheld its pages");
    cr_assert_eq(xport_get_stats(A.s.xp).invalidated_pages, 5);
}
