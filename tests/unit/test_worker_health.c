/* Unit tests for worker/net/health: the worker's probe port answers real
 * HTTP requests (sent over a TCP socket here): /healthz 200 while the loop
 * beats, /readyz 503 until registered, 200 when ready, 503 when draining,
 * 404 elsewhere, 405 for a POST; a bad host or a taken port is an error. */
#include <arpa/inet.h>
#include <criterion/criterion.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "health.h"
#include "herr.h"

/* Sends "METHOD PATH HTTP/1.0" to 127.0.0.1:port; the status code, body in body. */
static int get(int port, const char *method, const char *path, char *body, size_t cap) {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    cr_assert(fd >= 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    inet_pton(AF_INET, "127.0.0.1", &sa.sin_addr);
    cr_assert_eq(connect(fd, (struct sockaddr *)&sa, sizeof sa), 0, "connect to %d", port);
    char rq[256];
    int n = snprintf(rq, sizeof rq, "%s %s HTTP/1.0\r\nHost: x\r\nContent-Length: 0\r\n\r\n", method, path);
    cr_assert_eq(write(fd, rq, (size_t)n), n);
    char buf[4096];
    size_t len = 0;
    ssize_t k;
    while (len + 1 < sizeof buf && (k = read(fd, buf + len, sizeof buf - 1 - len)) > 0) len += (size_t)k;
    buf[len] = 0;
    close(fd);
    int code = 0;
    cr_assert_eq(sscanf(buf, "HTTP/1.%*d %d", &code), 1, "response: %s", buf);
    const char *b = strstr(buf, "\r\n\r\n");
    snprintf(body, cap, "%s", b ? b + 4 : "");
    return code;
}

/* A port that is free now (bound then released). */
static int free_port(void) {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET};
    inet_pton(AF_INET, "127.0.0.1", &sa.sin_addr);
    cr_assert_eq(bind(fd, (struct sockaddr *)&sa, sizeof sa), 0);
    socklen_t l = sizeof sa;
    getsockname(fd, (struct sockaddr *)&sa, &l);
    close(fd);
    return ntohs(sa.sin_port);
}

Test(health, probes_follow_the_state) {
    int port = free_port();
    health_t *h = health_new("127.0.0.1", port);
    cr_assert_not_null(h, "%s", he_msg());
    char body[256];
    health_beat(h);
    cr_assert_eq(get(port, "GET", "/healthz", body, sizeof body), 200);
    cr_assert_str_eq(body, "ok\n");
    cr_assert_eq(get(port, "GET", "/readyz", body, sizeof body), 503);
    cr_assert(strstr(body, "not registered"), "%s", body);
    health_set(h, HEALTH_READY);
    cr_assert_eq(get(port, "GET", "/readyz", body, sizeof body), 200);
    health_set(h, HEALTH_DRAINING);
    cr_assert_eq(get(port, "GET", "/readyz", body, sizeof body), 503);
    cr_assert(strstr(body, "draining"), "%s", body);
    cr_assert_eq(get(port, "GET", "/healthz", body, sizeof body), 200, "draining is still alive");
    cr_assert_eq(get(port, "GET", "/metrics", body, sizeof body), 404);
    cr_assert_eq(get(port, "POST", "/readyz", body, sizeof body), 405);
    cr_assert_eq(health_requests(h), 7);
    /* a second server on the same port is refused with an error, not a crash */
    health_t *h2 = health_new("127.0.0.1", port);
    cr_assert_null(h2);
    cr_assert(strstr(he_msg(), "port in use"), "%s", he_msg());
    health_destroy(&h);
    cr_assert_null(h);
    health_destroy(&h); /* NULL is fine */
}

Test(health, bad_arguments) {
    cr_assert_null(health_new("localhost", 8080), "a host name is not an IPv4 address");
    cr_assert(strstr(he_msg(), "not an IPv4 address"), "%s", he_msg());
    cr_assert_null(health_new("127.0.0.1", 0));
    cr_assert_null(health_new("127.0.0.1", 70000));
    /* NULL handles are no-ops */
    health_beat(NULL);
    health_set(NULL, HEALTH_READY);
    cr_assert_eq(health_requests(NULL), 0);
}
