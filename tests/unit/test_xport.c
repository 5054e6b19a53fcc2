/* xport tests: the KV transport's control plane (rendezvous token exchange,
 * the link state machine, deadlines, abort, invalidation of the pages a
 * failed transfer was filling, and the fallback to ZeroMQ-only after repeated
 * failures), driven through the ZeroMQ reference transport over real tcp
 * sockets with faults injected. The NCCL transport implements the same ops
 * (worker/cuda/cuda_nccl.c); it needs GPUs (tests/gpu). Time is passed in
 * explicitly, so deadlines are tested without sleeping. */
#include <criterion/criterion.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <zmq.h>

#include "herr.h"
#include "xport.h"

#define PB 1024   /* page bytes */
#define NPAGES 16

typedef struct {
    uint8_t pages[NPAGES][PB];
    int32_t invalid[NPAGES];
    int n_invalid;
} store_t;

static int rd(void *ud, int32_t p, void *dst) {
    store_t *s = ud;
    if (p < 0 || p >= NPAGES) return he_set(HE_EINVAL, "page %d", p);
    memcpy(dst, s->pages[p], PB);
    return 0;
}
static int wr(void *ud, int32_t p, const void *src) {
    store_t *s = ud;
    if (p < 0 || p >= NPAGES) return he_set(HE_EINVAL, "page %d", p);
    memcpy(s->pages[p], src, PB);
    return 0;
}
static void inval(void *ud, uint64_t peer, const int32_t *pages, int n) {
    store_t *s = ud;
    for (int i = 0; i < n; i++) s->invalid[s->n_invalid++] = pages[i];
}

static void *g_zctx;
static store_t g_srv, g_pul;
static xport_t *g_server, *g_puller;
static void *g_szx, *g_pzx; /* the transports' impls (fault injection) */

static void setup(void) {
    g_zctx = zmq_ctx_new();
    memset(&g_srv, 0, sizeof g_srv);
    memset(&g_pul, 0, sizeof g_pul);
    for (int p = 0; p < NPAGES; p++)
        for (int i = 0; i < PB; i++) g_srv.pages[p][i] = (uint8_t)(p * 31 + i * 7 + 1);
    xp_page_store ss = {PB, rd, wr, &g_srv}, ps = {PB, rd, wr, &g_pul};
    g_szx = xp_zmq_new(g_zctx, &ss);
    g_pzx = xp_zmq_new(g_zctx, &ps);
    cr_assert(g_szx && g_pzx);
    xport_config sc = {.connect_ms = 100, .transfer_ms = 100, .max_failures = 3, .invalidate = inval, .ud = &g_srv};
    xport_config pc = {.connect_ms = 100, .transfer_ms = 100, .max_failures = 3, .invalidate = inval, .ud = &g_pul};
    g_server = xport_new(&xp_zmq_ops, g_szx, &sc);
    g_puller = xport_new(&xp_zmq_ops, g_pzx, &pc);
    cr_assert(g_server && g_puller);
}
static void teardown(void) {
    xport_destroy(&g_server);
    xport_destroy(&g_puller);
    zmq_ctx_term(g_zctx);
}

/* Polls both ends until the puller's transfer ends (1 or error) or `spins`
 * rounds pass, all at time now. Returns the puller's last poll result. */
static int drive(int64_t now, int spins) {
    int rp = 0;
    for (int i = 0; i < spins; i++) {
        if (xport_state(g_server, 1) != XP_IDLE && xport_state(g_server, 1) != XP_DISABLED) xport_poll(g_server, 1, now);
        rp = xport_poll(g_puller, 7, now);
        if (rp != 0) return rp;
        struct timespec ts = {0, 1000000};
        nanosleep(&ts, NULL);
    }
    return rp;
}

/* One pull: puller (peer id 7 = the server) offers, server (peer id 1 = the
 * puller) accepts, pages src -> dst. Returns the puller's final poll. */
static int pull(const int32_t *src, const int32_t *dst, int n, int64_t now, int spins) {
    uint8_t tok[XP_TOKEN_MAX];
    size_t len = sizeof tok;
    int rc = xport_offer(g_puller, 7, tok, &len, now);
    if (rc) return rc;
    if (len > 0) cr_assert_eq(xport_accept(g_server, 1, tok, len, now), 0, "%s", he_msg());
    cr_assert_eq(xport_pull(g_puller, 7, dst, n, now), 0, "%s", he_msg());
    cr_assert_eq(xport_push(g_server, 1, src, n, now), 0, "%s", he_msg());
    return drive(now, spins);
}

TestSuite(xport, .init = setup, .fini = teardown, .timeout = 60);

Test(xport, token_exchange_and_transfer) {
    cr_assert_str_eq(xport_name(g_puller), "zmq");
    cr_assert_eq(xport_state(g_puller, 7), XP_IDLE);
    int32_t src[3] = {2, 9, 15}, dst[3] = {0, 1, 5};
    cr_assert_eq(pull(src, dst, 3, 0, 2000), 1, "%s", he_msg());
    for (int i = 0; i < 3; i++) cr_assert_eq(memcmp(g_pul.pages[dst[i]], g_srv.pages[src[i]], PB), 0);
    cr_assert_eq(xport_state(g_puller, 7), XP_READY);
    xport_stats ps = xport_get_stats(g_puller);
    cr_assert_eq(ps.offers, 1);
    cr_assert_eq(ps.connects, 1);
    cr_assert_eq(ps.transfers, 1);
    cr_assert_eq(ps.pages, 3);
    cr_assert_eq(ps.aborts, 0);
    /* the link is made on first use only: a second pull reuses it (no token) */
    uint8_t tok[XP_TOKEN_MAX];
    size_t len = sizeof tok;
    cr_assert_eq(xport_offer(g_puller, 7, tok, &len, 10), 0);
    cr_assert_eq(len, 0, "a READY link needs no new rendezvous");
    int32_t src2[2] = {4, 4}, dst2[2] = {10, 11};
    cr_assert_eq(xport_pull(g_puller, 7, dst2, 2, 10), 0);
    cr_assert_eq(xport_push(g_server, 1, src2, 2, 10), 0);
    cr_assert_eq(drive(10, 2000), 1);
    cr_assert_eq(memcmp(g_pul.pages[11], g_srv.pages[4], PB), 0);
    ps = xport_get_stats(g_puller);
    cr_assert_eq(ps.offers, 1);
    cr_assert_eq(ps.transfers, 2);
    cr_assert_eq(xport_get_stats(g_server).transfers, 2);
}

Test(xport, lost_page_times_out_aborts_and_invalidates) {
    xp_zmq_faults f = {.drop_page = 1};
    xp_zmq_set_faults(g_szx, &f);
    int32_t src[3] = {2, 3, 4}, dst[3] = {6, 7, 8};
    cr_assert_eq(pull(src, dst, 3, 0, 50), 0, "still waiting for the lost page");
    for (int i = 0; i < 2000 && xport_state(g_puller, 7) != XP_RECEIVING; i++) /* a loaded machine: wait for the join */
        cr_assert_eq(drive(0, 1), 0);
    cr_assert_eq(xport_state(g_puller, 7), XP_RECEIVING);
    int rc = xport_poll(g_puller, 7, 101); /* past the 100 ms transfer deadline */
    cr_assert_eq(rc, HE_ETIMEOUT, "%s", he_msg());
    cr_assert_eq(xport_state(g_puller, 7), XP_IDLE);
    cr_assert_eq(g_pul.n_invalid, 3, "the pages being filled are handed back for recompute");
    cr_assert_eq(g_pul.invalid[0], 6);
    cr_assert_eq(g_pul.invalid[2], 8);
    xport_stats ps = xport_get_stats(g_puller);
    cr_assert_eq(ps.timeouts, 1);
    cr_assert_eq(ps.aborts, 1);
    cr_assert_eq(ps.invalidated_pages, 3);
    cr_assert_eq(ps.transfers, 0);
    /* the next pull starts over with a new rendezvous and succeeds */
    f.drop_page = -1;
    xp_zmq_set_faults(g_szx, &f);
    cr_assert_eq(pull(src, dst, 3, 200, 2000), 1, "%s", he_msg());
    cr_assert_eq(memcmp(g_pul.pages[7], g_srv.pages[3], PB), 0);
    cr_assert_eq(xport_get_stats(g_puller).offers, 2);
}

Test(xport, bad_token_join_times_out) {
    xp_zmq_faults f = {.drop_page = -1, .corrupt_token = true};
    xp_zmq_set_faults(g_szx, &f);
    int32_t src[2] = {1, 2}, dst[2] = {3, 4};
    cr_assert_eq(pull(src, dst, 2, 0, 30), 0);
    cr_assert_eq(xport_state(g_puller, 7), XP_OFFERED, "the server's HELLO went elsewhere");
    cr_assert_eq(xport_poll(g_puller, 7, 150), HE_ETIMEOUT);
    cr_assert_eq(g_pul.n_invalid, 2, "a receive queued behind the join is invalidated too");
    cr_assert_eq(xport_get_stats(g_puller).timeouts, 1);
    /* garbage tokens are refused by the server */
    cr_assert_eq(xport_accept(g_server, 2, (const uint8_t *)"", 0, 0), HE_EPROTO);
    cr_assert_lt(xport_accept(g_server, 3, (const uint8_t *)"no-such-transport", 17, 0), 0);
    cr_assert_eq(xport_state(g_server, 3), XP_IDLE);
    cr_assert_eq(xport_get_stats(g_server).errors, 1);
}

Test(xport, repeated_failures_fall_back_to_zeromq) {
    xp_zmq_faults f = {.drop_page = -1, .fail_send = true};
    xp_zmq_set_faults(g_szx, &f);
    int32_t src[1] = {5}, dst[1] = {9};
    for (int k = 0; k < 3; k++) {
        int64_t t = k * 1000;
        cr_assert_eq(pull(src, dst, 1, t, 20), 0);
        cr_assert_eq(xport_poll(g_puller, 7, t + 500), HE_ETIMEOUT, "attempt %d", k);
    }
    cr_assert_eq(xport_state(g_puller, 7), XP_DISABLED);
    cr_assert_not(xport_usable(g_puller, 7));
    uint8_t tok[XP_TOKEN_MAX];
    size_t len = sizeof tok;
    cr_assert_eq(xport_offer(g_puller, 7, tok, &len, 5000), HE_EUNAVAIL, "pulls go over ZeroMQ now");
    xport_stats ps = xport_get_stats(g_puller), ss = xport_get_stats(g_server);
    cr_assert_eq(ps.disabled_peers, 1);
    cr_assert_eq(ps.invalidated_pages, 3);
    cr_assert_eq(ss.errors, 3, "each send failure counted on the server");
    cr_assert(xport_usable(g_puller, 8), "other peers are unaffected");
}

Test(xport, abort_mid_transfer) {
    xp_zmq_faults f = {.drop_page = 0};
    xp_zmq_set_faults(g_szx, &f);
    int32_t src[2] = {1, 2}, dst[2] = {12, 13};
    cr_assert_eq(pull(src, dst, 2, 0, 20), 0);
    xport_abort(g_puller, 7);
    cr_assert_eq(xport_state(g_puller, 7), XP_IDLE);
    cr_assert_eq(g_pul.n_invalid, 2);
    xport_stats ps = xport_get_stats(g_puller);
    cr_assert_eq(ps.aborts, 1);
    cr_assert_eq(ps.timeouts + ps.errors, 0, "a cancel is not a failure");
    cr_assert_eq(xport_poll(g_puller, 7, 1), HE_EINVAL, "no link after an abort");
    cr_assert_eq(xport_pull(g_puller, 7, dst, 2, 1), HE_EINVAL, "a transfer needs a joined link");
}
