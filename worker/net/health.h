/* health: a worker's HTTP probe port (helium-worker serve --health-port N).
 *
 *   GET /healthz  200 "ok" while the serve loop keeps turning: the loop calls
 *                 health_beat() every turn (at least every 250 ms), and a loop
 *                 silent for HEALTH_STALL_MS answers 503 "stalled";
 *   GET /readyz   200 "ready" only when the worker is registered with the
 *                 coordinator and not draining; 503 with the state otherwise.
 *
 * Invariant: the HTTP thread (libmicrohttpd's own) only reads two atomics that
 * the loop writes; nothing else is shared, so a probe never waits on the loop
 * and the loop never waits on a probe. Every function takes NULL (no port). */
#ifndef HELIUM_WORKER_HEALTH_H
#define HELIUM_WORKER_HEALTH_H

#define HEALTH_STALL_MS 10000

typedef enum { HEALTH_STARTING = 0, HEALTH_READY, HEALTH_DRAINING } health_state;

typedef struct health health_t;

/* Serves the probes on host:port (an IPv4 address; NULL = 127.0.0.1).
 * NULL with he_msg() set if the port cannot be bound. */
health_t *health_new(const char *host, int port);
void health_destroy(health_t **self_p);
/* The loop is alive now. */
void health_beat(health_t *h);
void health_set(health_t *h, health_state st);
/* Probes answered so far (for tests and logs). */
unsigned long health_requests(health_t *h);

#endif
