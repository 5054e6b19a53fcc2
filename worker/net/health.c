/* health: see health.h. */
#include "health.h"

#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "clock.h"
#include "herr.h"
#include "httpd.h"

struct health {
    httpd_t *srv;
    _Atomic int64_t last_beat_ms; /* written by the loop, read by the HTTP thread */
    _Atomic int state;            /* health_state; written by the loop */
};

static void say(httpd_answer *a, unsigned code, const char *text) {
    a->code = code;
    a->body = text;
    a->len = strlen(text);
}

/* On the HTTP thread: reads only the atomics. */
static void answer(void *ctx, const char *url, char *buf, size_t cap, httpd_answer *a) {
    health_t *h = ctx;
    int64_t age = clock_mono_ms() - atomic_load(&h->last_beat_ms);
    int alive = age <= HEALTH_STALL_MS;
    int st = atomic_load(&h->state);
    if (!strcmp(url, "/healthz") && alive) {
        say(a, 200, "ok\n");
    } else if (!strcmp(url, "/healthz")) {
        snprintf(buf, cap, "stalled: the serve loop last turned %lld ms ago\n", (long long)age);
        say(a, 503, buf);
    } else if (!strcmp(url, "/readyz") && !alive) {
        say(a, 503, "not ready: stalled\n");
    } else if (!strcmp(url, "/readyz") && st == HEALTH_READY) {
        say(a, 200, "ready\n");
    } else if (!strcmp(url, "/readyz")) {
        say(a, 503, st == HEALTH_DRAINING ? "not ready: draining\n" : "not ready: not registered\n");
    } else {
        say(a, 404, "not found: try /healthz or /readyz\n");
    }
}

health_t *health_new(const char *host, int port) {
    health_t *h = calloc(1, sizeof *h);
    if (!h) {
        he_set(HE_ENOMEM, "out of memory");
        return NULL;
    }
    atomic_store(&h->last_beat_ms, clock_mono_ms());
    atomic_store(&h->state, HEALTH_STARTING);
    h->srv = httpd_new("probes", host, port, 16, answer, h);
    if (!h->srv) {
        free(h);
        return NULL;
    }
    return h;
}

void health_destroy(health_t **self_p) {
    if (!self_p || !*self_p) return;
    health_t *h = *self_p;
    httpd_destroy(&h->srv); /* joins the HTTP thread */
    free(h);
    *self_p = NULL;
}

void health_beat(health_t *h) {
    if (h) atomic_store(&h->last_beat_ms, clock_mono_ms());
}

void health_set(health_t *h, health_state st) {
    if (h) atomic_store(&h->state, (int)st);
}

unsigned long health_requests(health_t *h) {
    return h ? httpd_requests(h->srv) : 0;
}
