/* zmq_tput: raw ZeroMQ throughput of 1 MiB messages on loopback TCP, in the
 * clear and over CURVE (with the ZAP handler Helium uses, common/zauth.h),
 * side by side in one run, as the KV data sockets use them: a ROUTER server
 * and a DEALER client.
 *
 *   zmq_tput [N_MESSAGES [MESSAGE_BYTES]]     (default 400 x 1 MiB)
 *
 * For each mode: one process, two threads' worth of sockets in one context
 * (the client sends N messages with a window of 16 in flight, the server
 * echoes a 1-byte ack per message); the time from the first send to the last
 * ack gives MB/s. Prints one line per mode and the ratio. Built and run by
 * bench/curve/run.
 */
#define _GNU_SOURCE
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <zmq.h>

#include "zauth.h"

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

typedef struct {
    void *router;
    int n;
} server_arg;

/* Acks every message with one byte (identity frame first). */
static void *server(void *p) {
    server_arg *a = p;
    for (int i = 0; i < a->n; i++) {
        zmq_msg_t id, body;
        zmq_msg_init(&id);
        zmq_msg_init(&body);
        if (zmq_msg_recv(&id, a->router, 0) < 0 || zmq_msg_recv(&body, a->router, 0) < 0) return NULL;
        zmq_send(a->router, zmq_msg_data(&id), zmq_msg_size(&id), ZMQ_SNDMORE);
        zmq_send(a->router, "k", 1, 0);
        zmq_msg_close(&id);
        zmq_msg_close(&body);
    }
    return NULL;
}

/* One mode; returns MB/s (1e6 bytes), or -1. */
static double run(bool curve, int n, size_t bytes) {
    void *ctx = zmq_ctx_new();
    zauth_t *za = NULL;
    zauth_keys sk, ck;
    memset(&sk, 0, sizeof sk);
    memset(&ck, 0, sizeof ck);
    char path[] = "/tmp/zmq_tput_keys.XXXXXX";
    if (curve) {
        if (zmq_curve_keypair(sk.pub, sk.sec) || zmq_curve_keypair(ck.pub, ck.sec)) return -1;
        int fd = mkstemp(path);
        if (fd < 0) return -1;
        dprintf(fd, "%s client\n", ck.pub);
        close(fd);
        if (!(za = zauth_new(ctx, "bench")) || zauth_load(za, path) != 1) return -1;
        unlink(path);
    }
    void *r = zmq_socket(ctx, ZMQ_ROUTER), *d = zmq_socket(ctx, ZMQ_DEALER);
    int hwm = 64, zero = 0;
    zmq_setsockopt(r, ZMQ_RCVHWM, &hwm, sizeof hwm);
    zmq_setsockopt(d, ZMQ_SNDHWM, &hwm, sizeof hwm);
    zmq_setsockopt(r, ZMQ_LINGER, &zero, sizeof zero);
    zmq_setsockopt(d, ZMQ_LINGER, &zero, sizeof zero);
    if (curve && (zauth_set_server(r, &sk) || zauth_set_client(d, &ck, sk.pub))) return -1;
    char ep[64];
    size_t el = sizeof ep;
    if (zmq_bind(r, "tcp://127.0.0.1:*") || zmq_getsockopt(r, ZMQ_LAST_ENDPOINT, ep, &el) || zmq_connect(d, ep)) return -1;
    /* warm the connection (handshake) before timing */
    zmq_send(d, "w", 1, 0);
    server_arg wa = {r, 1};
    server(&wa);
    char ack;
    zmq_recv(d, &ack, 1, 0);
    server_arg sa = {r, n};
    pthread_t th;
    pthread_create(&th, NULL, server, &sa);
    uint8_t *buf = malloc(bytes);
    memset(buf, 0x5a, bytes);
    double t0 = now_s();
    int sent = 0, acked = 0;
    while (acked < n) {
        while (sent < n && sent - acked < 16) {
            zmq_send(d, buf, bytes, 0);
            sent++;
        }
        if (zmq_recv(d, &ack, 1, 0) < 0) break;
        acked++;
    }
    double dt = now_s() - t0;
    pthread_join(th, NULL);
    free(buf);
    zmq_close(d);
    zmq_close(r);
    zauth_destroy(&za);
    zmq_ctx_term(ctx);
    return acked == n ? (double)n * (double)bytes / dt / 1e6 : -1;
}

int main(int argc, char **argv) {
    int n = argc > 1 ? atoi(argv[1]) : 400;
    size_t bytes = argc > 2 ? (size_t)atol(argv[2]) : (size_t)1 << 20;
    if (n <= 0 || bytes == 0) {
        fprintf(stderr, "usage: zmq_tput [N_MESSAGES [MESSAGE_BYTES]]\n");
        return 2;
    }
    double clear = run(false, n, bytes), curve = run(true, n, bytes);
    if (clear <= 0 || curve <= 0) {
        fprintf(stderr, "zmq_tput: a run failed\n");
        return 1;
    }
    printf("{\"messages\": %d, \"message_bytes\": %zu, \"clear_MBps\": %.1f, \"curve_MBps\": %.1f, "
           "\"clear_over_curve\": %.2f}\n",
           n, bytes, clear, curve, clear / curve);
    return 0;
}
