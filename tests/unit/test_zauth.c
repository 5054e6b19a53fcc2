/* test_zauth: common/zauth over real ZeroMQ sockets: key files (keygen's
 * modes and refusal to overwrite, bad lines named by number, comments), and
 * the ZAP handler (a listed key gets through, an unlisted one, a NULL
 * client and a client with the wrong server key are refused and counted by
 * reason; a reload lets a new key in; a bad file keeps the old set).
 */
#define _GNU_SOURCE
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zmq.h>

#include "herr.h"
#include "zauth.h"

static char g_dir[64];

static void setup(void) {
    snprintf(g_dir, sizeof g_dir, "/tmp/test_zauth.XXXXXX");
    cr_assert_not_null(mkdtemp(g_dir));
}

static void teardown(void) {
    char cmd[96];
    snprintf(cmd, sizeof cmd, "rm -rf %s", g_dir);
    cr_assert_eq(system(cmd), 0);
}

static void path(char *out, size_t cap, const char *name) { snprintf(out, cap, "%s/%s", g_dir, name); }

static void write_file(const char *name, const char *text) {
    char p[128];
    path(p, sizeof p, name);
    FILE *f = fopen(p, "w");
    cr_assert_not_null(f);
    fputs(text, f);
    fclose(f);
}

TestSuite(zauth, .init = setup, .fini = teardown);

Test(zauth, keygen_writes_a_pair_and_never_overwrites) {
    char base[128], key[140], pub[140];
    path(base, sizeof base, "alice");
    cr_assert_eq(zauth_keygen(base), 0, "%s", he_msg());
    snprintf(key, sizeof key, "%s.key", base);
    snprintf(pub, sizeof pub, "%s.pub", base);
    struct stat st;
    cr_assert_eq(stat(key, &st), 0);
    cr_assert_eq(st.st_mode & 0777, 0600);
    zauth_keys k;
    memset(&k, 0, sizeof k);
    cr_assert_eq(zauth_read_secret(key, &k), 0, "%s", he_msg());
    char p[ZAUTH_KEY_LEN + 1];
    cr_assert_eq(zauth_read_public(pub, p), 0, "%s", he_msg());
    cr_assert_str_eq(p, k.pub); /* the .pub file holds the secret's public half */
    FILE *f = fopen(pub, "r");
    char line[128];
    cr_assert_not_null(fgets(line, sizeof line, f));
    fclose(f);
    cr_assert(strstr(line, " alice\n"), "the .pub line names its key: %s", line);
    cr_assert_eq(zauth_keygen(base), HE_EINVAL); /* exists */
}

Test(zauth, key_files_are_checked) {
    char p[128], out[ZAUTH_KEY_LEN + 1];
    write_file("short.pub", "abc name\n");
    path(p, sizeof p, "short.pub");
    cr_assert_eq(zauth_read_public(p, out), HE_EFORMAT);
    write_file("empty.pub", "# nothing\n\n");
    path(p, sizeof p, "empty.pub");
    cr_assert_eq(zauth_read_public(p, out), HE_EFORMAT);
    path(p, sizeof p, "missing.pub");
    cr_assert_eq(zauth_read_public(p, out), HE_EIO);
    cr_assert(!zauth_key_ok("not a key"));
    cr_assert(!zauth_key_ok(NULL));
}

/* A CURVE server in ctx with its handler; returns the bound endpoint. */
typedef struct {
    void *ctx, *srv;
    zauth_t *za;
    zauth_keys sk;
    char ep[64];
} server_t;

static void server_up(server_t *s, const char *authorized) {
    memset(s, 0, sizeof *s);
    s->ctx = zmq_ctx_new();
    cr_assert_eq(zmq_curve_keypair(s->sk.pub, s->sk.sec), 0);
    s->za = zauth_new(s->ctx, "test");
    cr_assert_not_null(s->za, "%s", he_msg());
    char p[128];
    path(p, sizeof p, "authorized");
    write_file("authorized", authorized);
    cr_assert_geq(zauth_load(s->za, p), 0, "%s", he_msg());
    s->srv = zmq_socket(s->ctx, ZMQ_ROUTER);
    int zero = 0;
    zmq_setsockopt(s->srv, ZMQ_LINGER, &zero, sizeof zero);
    cr_assert_eq(zauth_set_server(s->srv, &s->sk), 0);
    cr_assert_eq(zauth_watch(s->za, s->srv), 0);
    cr_assert_eq(zmq_bind(s->srv, "tcp://127.0.0.1:*"), 0);
    size_t l = sizeof s->ep;
    zmq_getsockopt(s->srv, ZMQ_LAST_ENDPOINT, s->ep, &l);
}

static void server_down(server_t *s) {
    zmq_close(s->srv);
    zauth_destroy(&s->za);
    cr_assert_null(s->za);
    zmq_ctx_term(s->ctx);
}

/* A DEALER with keys ck (NULL: the NULL mechanism) sends "ping" to s; true
 * if the server received it within 1.5 s. */
static bool gets_through(server_t *s, const zauth_keys *ck, const char *server_pub) {
    void *c = zmq_socket(s->ctx, ZMQ_DEALER);
    int zero = 0, tmo = 1500;
    zmq_setsockopt(c, ZMQ_LINGER, &zero, sizeof zero);
    if (ck) cr_assert_eq(zauth_set_client(c, ck, server_pub), 0);
    cr_assert_eq(zmq_connect(c, s->ep), 0);
    zmq_send(c, "ping", 4, ZMQ_DONTWAIT);
    zmq_setsockopt(s->srv, ZMQ_RCVTIMEO, &tmo, sizeof tmo);
    char id[64], body[8];
    bool ok = zmq_recv(s->srv, id, sizeof id, 0) >= 0 && zmq_recv(s->srv, body, sizeof body, 0) == 4;
    zmq_close(c);
    return ok;
}

/* Waits (monitor events arrive asynchronously) until pick(stats) >= want. */
static uint64_t wait_count(zauth_t *za, int which, uint64_t want) {
    uint64_t v = 0;
    for (int i = 0; i < 100; i++) {
        zauth_counts c = zauth_stats(za);
        uint64_t f[] = {c.allowed, c.unknown_key, c.mechanism, c.crypto, c.protocol};
        v = f[which];
        if (v >= want) break;
        usleep(20000);
    }
    return v;
}

Test(zauth, zap_lets_listed_keys_in_and_counts_refusals) {
    zauth_keys alice, bob;
    memset(&alice, 0, sizeof alice);
    memset(&bob, 0, sizeof bob);
    cr_assert_eq(zmq_curve_keypair(alice.pub, alice.sec), 0);
    cr_assert_eq(zmq_curve_keypair(bob.pub, bob.sec), 0);
    char listed[256];
    snprintf(listed, sizeof listed, "# clients\n\n%s alice\n", alice.pub);
    server_t s;
    server_up(&s, listed);
    cr_assert_eq(zauth_n_keys(s.za), 1);

    cr_assert(gets_through(&s, &alice, s.sk.pub), "a listed key is let in");
    cr_assert_eq(wait_count(s.za, 0, 1), 1);
    cr_assert(!gets_through(&s, &bob, s.sk.pub), "an unlisted key is refused");
    cr_assert_geq(wait_count(s.za, 1, 1), 1);
    cr_assert(!gets_through(&s, NULL, NULL), "a NULL-mechanism client is refused");
    cr_assert_geq(wait_count(s.za, 2, 1), 1);
    cr_assert(!gets_through(&s, &alice, bob.pub), "a client with the wrong server key is refused");
    cr_assert_geq(wait_count(s.za, 3, 1), 1);

    /* reload: bob is let in; a bad file keeps the set */
    char both[256], p[128];
    snprintf(both, sizeof both, "%s alice\n%s bob\n", alice.pub, bob.pub);
    write_file("authorized", both);
    path(p, sizeof p, "authorized");
    cr_assert_eq(zauth_load(s.za, p), 2);
    cr_assert(gets_through(&s, &bob, s.sk.pub), "a key added by a reload is let in");
    write_file("authorized", "garbage line\n");
    cr_assert_eq(zauth_load(s.za, p), HE_EFORMAT);
    cr_assert(strstr(he_msg(), ":1:"), "the bad line is named: %s", he_msg());
    cr_assert_eq(zauth_n_keys(s.za), 2);
    server_down(&s);
}
