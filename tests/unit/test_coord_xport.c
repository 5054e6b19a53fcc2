/* The coordinator and KV transports (issue 16): a worker's Register names its
 * transport (kv_xport, xport_domain); two workers share one only with the
 * same transport, domain and KV type (wkr_xport_shared, which place.c puts
 * into the pull hint); heartbeats measure the transport's link rate apart
 * from ZeroMQ's; and the transfer-or-recompute choice judges a pull by the
 * pair's link: the transport's rate and fixed cost between workers that
 * share it, ZeroMQ's otherwise. The NCCL link rates here are fake numbers
 * fed through heartbeat counters, as a GPU worker would report them. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <string.h>

#include "blockhash.h"
#include "dir.h"
#include "herr.h"
#include "route.h"
#include "sched.h"
#include "workers.h"

#define ROOT 0x1234u
#define BS 16

static wkrs_t *ws;
static dir_t *dir;
static sched_t *sc;

static void setup(void) {
    ws = wkrs_new();
    dir = dir_new();
    sc = sched_new(dir, ws);
    cr_assert(ws && dir && sc);
    sched_set_model(sc, ROOT, BS, 4096);
}

static void teardown(void) {
    sched_destroy(&sc);
    dir_destroy(&dir);
    wkrs_destroy(&ws);
}

/* An alive worker; xport/domain/dtype as its Register says (NULL: unset). */
static wkr_t *add_worker(const char *id, const char *xport, const char *domain, const char *dtype) {
    wkr_t *w = NULL;
    cr_assert_eq(wkrs_add(ws, id, strlen(id), &w), 0, "%s", he_msg());
    Helium__Register reg = HELIUM__REGISTER__INIT;
    reg.model_root = ROOT;
    reg.block_size = BS;
    reg.kv_blocks_total = 1000;
    reg.n_ctx = 512;
    reg.n_layers = 2;
    reg.kv_dim = 8;
    reg.kv_dtype = (char *)(dtype ? dtype : "f16");
    reg.data_endpoint = "tcp://127.0.0.1:1";
    if (xport) reg.kv_xport = (char *)xport;
    if (domain) reg.xport_domain = (char *)domain;
    wkr_register(w, &reg, 1);
    w->alive = true;
    return w;
}

/* A heartbeat carrying only the pull counters. */
static void pull_counters(wkr_t *w, uint64_t pulled, uint64_t pull_us, uint64_t xpulled, uint64_t xpull_us) {
    Helium__Heartbeat__CountersEntry e[4];
    Helium__Heartbeat__CountersEntry *ev[4];
    const char *k[4] = {"pulled_tokens", "pull_us", "xport_pulled_tokens", "xport_pull_us"};
    uint64_t v[4] = {pulled, pull_us, xpulled, xpull_us};
    for (int i = 0; i < 4; i++) {
        helium__heartbeat__counters_entry__init(&e[i]);
        e[i].key = (char *)k[i];
        e[i].value = v[i];
        ev[i] = &e[i];
    }
    Helium__Heartbeat hb = HELIUM__HEARTBEAT__INIT;
    hb.n_counters = 4;
    hb.counters = ev;
    wkr_heartbeat(w, &hb, 2);
}

TestSuite(xport_coord, .init = setup, .fini = teardown);

Test(xport_coord, register_and_shared_transport) {
    wkr_t *a = add_worker("a", "nccl", "node1", NULL), *b = add_worker("b", "nccl", "node1", NULL);
    wkr_t *c = add_worker("c", "nccl", "node2", NULL), *d = add_worker("d", NULL, NULL, NULL);
    wkr_t *e = add_worker("e", "nccl", "node1", "bf16"), *f = add_worker("f", "zmq-ref", "node1", NULL);
    cr_assert_str_eq(a->kv_xport, "nccl");
    cr_assert_str_eq(a->xport_domain, "node1");
    cr_assert_str_eq(d->kv_xport, "", "a worker of an older build registers no transport");
    cr_assert_str_eq(wkr_xport_shared(a, b), "nccl");
    cr_assert_str_eq(wkr_xport_shared(b, a), "nccl");
    cr_assert_null(wkr_xport_shared(a, c), "another domain cannot join the link");
    cr_assert_null(wkr_xport_shared(a, d), "no transport on one end");
    cr_assert_null(wkr_xport_shared(d, d));
    cr_assert_null(wkr_xport_shared(a, e), "f16 and bf16 pools: raw pages do not fit, ZeroMQ converts");
    cr_assert_null(wkr_xport_shared(a, f), "another transport");
    cr_assert_null(wkr_xport_shared(a, a), "not with itself");
}

Test(xport_coord, heartbeat_measures_each_link_apart) {
    wkr_t *w = add_worker("w", "nccl", "n", "f32");
    const double page = (double)w->page_bytes; /* 2 layers * 2 * 16 * 8 * 4 = 2048 */
    cr_assert_eq(w->page_bytes, 2048);
    pull_counters(w, 0, 0, 0, 0);
    /* 100 pages over the transport in 1 ms, nothing over ZeroMQ */
    pull_counters(w, 1600, 1000, 1600, 1000);
    cr_assert_float_eq(w->xport_link_bytes_s, 100 * page / 1e-3, 1.0);
    cr_assert_eq(w->link_bytes_s, 0, "no ZeroMQ pull yet: its rate stays unknown (%g)", w->link_bytes_s);
    /* then 10 pages over ZeroMQ in 100 ms: the totals grow, the xport ones not */
    pull_counters(w, 1600 + 160, 1000 + 100000, 1600, 1000);
    cr_assert_float_eq(w->link_bytes_s, 10 * page / 0.1, 1e-6);
    cr_assert_float_eq(w->xport_link_bytes_s, 100 * page / 1e-3, 1.0, "unchanged without new transport pulls");
    /* a worker without a transport reports no xport counters: ZeroMQ as before */
    wkr_t *z = add_worker("z", NULL, NULL, "f32");
    pull_counters(z, 0, 0, 0, 0);
    pull_counters(z, 320, 50000, 0, 0);
    cr_assert_float_eq(z->link_bytes_s, 20 * page / 0.05, 1e-6);
    cr_assert_eq(z->xport_link_bytes_s, 0);
}

Test(xport_coord, pair_times_use_the_shared_link) {
    route_config c;
    route_config_default(&c);
    c.page_bytes = 1 << 20;
    route_worker w = {.slot = 0, .alive = true, .prefill_tok_s = 1000, .link_bytes_s = 1e6, .xport_group = 7,
                      .xport_link_bytes_s = 1e10};
    route_worker p = {.slot = 1, .alive = true, .xport_group = 7};
    route_worker q = {.slot = 2, .alive = true, .xport_group = 9};
    route_worker r = {.slot = 3, .alive = true, .xport_group = 0};
    double tp, tr, tz, tzr;
    route_pull_times(&c, &w, 10, BS, &tz, &tzr);
    cr_assert_float_eq(tz, c.pull_latency_s + 10.0 * (1 << 20) / 1e6, 1e-9, "ZeroMQ: latency + bytes / rate");
    route_pull_times_pair(&c, &w, &p, 10, BS, &tp, &tr);
    cr_assert_float_eq(tp, c.xport_latency_s + 10.0 * (1 << 20) / 1e10, 1e-12, "the shared transport's link");
    cr_assert_float_eq(tr, tzr, 1e-12, "recompute time does not depend on the link");
    route_pull_times_pair(&c, &w, &q, 10, BS, &tp, &tr);
    cr_assert_float_eq(tp, tz, 1e-12, "another group: ZeroMQ");
    route_pull_times_pair(&c, &w, &r, 10, BS, &tp, &tr);
    cr_assert_float_eq(tp, tz, 1e-12, "no transport at the source: ZeroMQ");
    route_pull_times_pair(&c, &w, NULL, 10, BS, &tp, &tr);
    cr_assert_float_eq(tp, tz, 1e-12);
    w.xport_link_bytes_s = 0; /* not measured yet: the configured default */
    route_pull_times_pair(&c, &w, &p, 10, BS, &tp, &tr);
    cr_assert_float_eq(tp, c.xport_latency_s + 10.0 * (1 << 20) / c.default_xport_link_bytes_s, 1e-12);
}

static int32_t prompt[200];

/* The 200-token prompt's full blocks, all held by w in the directory. */
static int held_by(const wkr_t *w, uint64_t *h) {
    for (int i = 0; i < 200; i++) prompt[i] = (17 * 31 + i * 7) % 500;
    int nb = bh_prefix(ROOT, prompt, 200, BS, h);
    for (int i = 0; i < nb; i++) dir_add(dir, h[i], w->slot);
    return nb;
}

/* The holder w0 is swamped, so the call runs on w1, which lacks the prefix.
 * Over ZeroMQ (measured slow) recomputing is cheaper; over the NCCL link
 * the two share (a fake measured rate, fed as heartbeat counters) the pull
 * wins. A third worker in another domain keeps judging by ZeroMQ. */
Test(xport_coord, placement_pulls_over_a_fast_shared_link) {
    wkr_t *w0 = add_worker("w0", "nccl", "n1", NULL);
    wkr_t *w1 = add_worker("w1", "nccl", "n1", NULL);
    uint64_t h[16];
    int nb = held_by(w0, h);
    job_task a = {.load_tokens = 1000000};
    wkr_inflight_add(w0, &a);
    w1->prefill_tok_s = 1000.0; /* 192 tokens: 0.19 s to recompute */
    pull_counters(w1, 0, 0, 0, 0);
    /* ZeroMQ: 12 pages in 5 s (slow); the transport: 120 pages in 10 ms */
    pull_counters(w1, 12 * BS, 5000000, 0, 0);
    pull_counters(w1, 12 * BS + 120 * BS, 5000000 + 10000, 120 * BS, 10000);
    cr_assert_gt(w1->xport_link_bytes_s, 1e6);
    cr_assert_lt(w1->link_bytes_s, 1e4);
    sched_choice ch;
    cr_assert_eq(sched_place(sc, SCHED_ROUTER, prompt, 200, 8, &ch), 0);
    cr_assert_eq(ch.worker, w1);
    cr_assert_eq(ch.pull_from, w0, "the shared NCCL link makes the pull cheaper than recomputing");
    cr_assert_eq(ch.pull_blocks, nb);
    cr_assert_lt(ch.d.t_pull_s, ch.d.t_recompute_s);
    cr_assert_str_eq(wkr_xport_shared(ch.pull_from, ch.worker), "nccl", "the hint names the transport");

    /* same links, but w1 in another domain: ZeroMQ's rate decides */
    snprintf(w1->xport_domain, sizeof w1->xport_domain, "n2");
    cr_assert_eq(sched_place(sc, SCHED_ROUTER, prompt, 200, 8, &ch), 0);
    cr_assert_eq(ch.worker, w1);
    cr_assert_null(ch.pull_from, "no shared transport: the slow ZeroMQ link loses to recomputing");
    cr_assert_null(wkr_xport_shared(w0, w1));
    wkr_inflight_remove(w0, &a);
}
