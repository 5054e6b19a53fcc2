/* loadgen: the client side of bench/load: many concurrent clients submit jobs
 * to a coordinator, with malformed frames and cancels mixed in, and follow
 * every job to its final state.
 *
 *   loadgen ENDPOINT JOBS CLIENTS [CANCEL_EVERY [BAD_EVERY [MAX_TOKENS]]]
 *   (CURVE: HELIUMCTL_KEY and HELIUMCTL_SERVER_KEY name the key files, as for
 *   heliumctl; without them it talks in the clear)
 *
 * Job i (0-based) goes to client i % CLIENTS; each client is a thread with a
 * DEALER socket of its own and at most one request outstanding. A job is a
 * one-op llm workflow whose prompt names i (so no two are the same call).
 * Job i with i % CANCEL_EVERY == CANCEL_EVERY - 1 is a loop of 64 sequential
 * calls, canceled right after its acknowledgement (and must end CANCELED); before job i with
 * i % BAD_EVERY == 0 the client sends a malformed frame (garbage bytes, an
 * empty frame, or a truncated Request) and expects a typed Error reply.
 *
 * Submit latency: from a SubmitJob's send to its JobAccepted. Job latency:
 * from that send until a GetJob first shows a final state (each client polls
 * its unfinished jobs once all its submits are acknowledged, 20 ms between
 * rounds: so it includes the client's own later submits). Prints one JSON
 * document: percentiles, the count of every final state, and each job's id,
 * whether it was canceled, and its state ("LOST" if the coordinator no longer
 * knows it, "TIMEOUT" if it did not end within the deadline).
 * Exit status 0 if every request got its reply, 1 otherwise.
 */
#define _GNU_SOURCE
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <zmq.h>

#include "helium.pb-c.h"
#include "zauth.h"

#define REPLY_TIMEOUT_MS 30000
#define JOB_DEADLINE_S 600
#define LOOP_ROUNDS 64 /* rounds of a job that will be canceled */

typedef struct {
    char id[64];
    bool cancel;
    int state;             /* Helium__JobState, or -1 lost, -2 timeout, 0 not yet */
    uint64_t submit_us;    /* send -> accepted */
    uint64_t t_send, t_end;
} job_rec;

static const char *g_ep;
static int g_jobs, g_clients, g_cancel_every, g_bad_every, g_max_tokens;
static job_rec *g_rec;
static zauth_keys g_keys;
static bool g_curve;
static atomic_long g_bad_sent, g_bad_answered, g_errors, g_cancel_sent;

static uint64_t now_us(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

static uint8_t *pack_req(Helium__Request *rq, size_t *n) {
    rq->protocol_version = HELIUM__PROTOCOL__PROTOCOL_CURRENT;
    *n = helium__request__get_packed_size(rq);
    uint8_t *b = malloc(*n ? *n : 1);
    if (b) helium__request__pack(rq, b);
    return b;
}

/* Sends one packed request and waits for the reply with request_id id
 * (replies to other ids are dropped). NULL on timeout. */
static Helium__Reply *call(void *s, Helium__Request *rq) {
    size_t n;
    uint8_t *b = pack_req(rq, &n);
    if (!b || zmq_send(s, b, n, 0) < 0) {
        free(b);
        return NULL;
    }
    free(b);
    for (;;) {
        zmq_msg_t m;
        zmq_msg_init(&m);
        if (zmq_msg_recv(&m, s, 0) < 0) return NULL;
        Helium__Reply *r = helium__reply__unpack(NULL, zmq_msg_size(&m), zmq_msg_data(&m));
        zmq_msg_close(&m);
        if (r && r->request_id == rq->request_id) return r;
        if (r) helium__reply__free_unpacked(r, NULL);
    }
}

/* A malformed frame of kind k; expects an Error reply with request_id 0. */
static void send_bad(void *s, unsigned k, unsigned seed) {
    uint8_t junk[96];
    size_t n = 1 + seed % sizeof junk;
    for (size_t i = 0; i < n; i++) junk[i] = (uint8_t)(seed * 2654435761u >> (i % 24));
    switch (k % 3) {
    case 0: zmq_send(s, junk, n, 0); break;            /* garbage bytes */
    case 1: zmq_send(s, "", 0, 0); break;              /* an empty frame */
    default: {                                          /* a Request cut short */
        Helium__Request rq = HELIUM__REQUEST__INIT;
        Helium__ClusterStatus cs = HELIUM__CLUSTER_STATUS__INIT;
        rq.request_id = 7;
        rq.body_case = HELIUM__REQUEST__BODY_STATUS;
        rq.status = &cs;
        size_t len;
        uint8_t *b = pack_req(&rq, &len);
        if (b) zmq_send(s, b, len > 3 ? len - 3 : len, 0);
        free(b);
    }
    }
    atomic_fetch_add(&g_bad_sent, 1);
    zmq_msg_t m;
    zmq_msg_init(&m);
    if (zmq_msg_recv(&m, s, 0) >= 0) {
        Helium__Reply *r = helium__reply__unpack(NULL, zmq_msg_size(&m), zmq_msg_data(&m));
        if (r) atomic_fetch_add(&g_bad_answered, 1); /* a typed Error, or (a cut Request that still parses) its answer */
        if (r) helium__reply__free_unpacked(r, NULL);
    }
    zmq_msg_close(&m);
}

static void submit(void *s, int i, uint64_t rid) {
    job_rec *j = &g_rec[i];
    char prompt[96];
    snprintf(prompt, sizeof prompt, "Load test job %d: write one line about the number %d.", i, i * 7919 % 1000);
    Helium__TemplatePart tp = HELIUM__TEMPLATE_PART__INIT, *tpp = &tp;
    tp.part_case = HELIUM__TEMPLATE_PART__PART_TEXT;
    tp.text = prompt;
    Helium__LlmOp llm = HELIUM__LLM_OP__INIT;
    llm.n_prompt = 1;
    llm.prompt = &tpp;
    llm.max_tokens = (uint32_t)g_max_tokens;
    Helium__Operator op = HELIUM__OPERATOR__INIT, *opp = &op;
    op.id = "a";
    op.kind_case = HELIUM__OPERATOR__KIND_LLM;
    op.llm = &llm;
    /* a job to cancel is a loop of LOOP_ROUNDS calls, each reading the round
     * before ({{prev}}): sequential, so it is still running when the cancel
     * comes, however long the acknowledgement took (an fsync per submit) */
    Helium__TemplatePart parts[2] = {HELIUM__TEMPLATE_PART__INIT, HELIUM__TEMPLATE_PART__INIT};
    Helium__TemplatePart *pparts[2] = {&parts[0], &parts[1]};
    Helium__LoopOp loop = HELIUM__LOOP_OP__INIT;
    Helium__Operator body = HELIUM__OPERATOR__INIT, *pbody = &body;
    if (j->cancel) {
        parts[0].part_case = HELIUM__TEMPLATE_PART__PART_TEXT;
        parts[0].text = prompt;
        parts[1].part_case = HELIUM__TEMPLATE_PART__PART_PREV;
        parts[1].prev = 1;
        llm.n_prompt = 2;
        llm.prompt = pparts;
        llm.max_tokens = (uint32_t)g_max_tokens;
        body.id = "step";
        body.kind_case = HELIUM__OPERATOR__KIND_LLM;
        body.llm = &llm;
        loop.n_body = 1;
        loop.body = &pbody;
        loop.max_rounds = LOOP_ROUNDS;
        op.kind_case = HELIUM__OPERATOR__KIND_LOOP;
        op.loop = &loop;
    }
    Helium__Workflow wf = HELIUM__WORKFLOW__INIT;
    wf.protocol_version = HELIUM__PROTOCOL__PROTOCOL_CURRENT;
    wf.name = "load";
    wf.n_ops = 1;
    wf.ops = &opp;
    wf.output = "a";
    Helium__SubmitJob sj = HELIUM__SUBMIT_JOB__INIT;
    sj.workflow = &wf;
    Helium__Request rq = HELIUM__REQUEST__INIT;
    rq.request_id = rid;
    rq.body_case = HELIUM__REQUEST__BODY_SUBMIT;
    rq.submit = &sj;
    j->t_send = now_us();
    Helium__Reply *r = call(s, &rq);
    if (!r || r->body_case != HELIUM__REPLY__BODY_ACCEPTED || !r->accepted->job_id) {
        atomic_fetch_add(&g_errors, 1);
        j->state = -1;
        if (r) helium__reply__free_unpacked(r, NULL);
        return;
    }
    j->submit_us = now_us() - j->t_send;
    snprintf(j->id, sizeof j->id, "%s", r->accepted->job_id);
    helium__reply__free_unpacked(r, NULL);
    if (j->cancel) {
        Helium__CancelJob cj = HELIUM__CANCEL_JOB__INIT;
        cj.job_id = j->id;
        Helium__Request cr = HELIUM__REQUEST__INIT;
        cr.request_id = rid | (1ull << 62);
        cr.body_case = HELIUM__REQUEST__BODY_CANCEL;
        cr.cancel = &cj;
        Helium__Reply *c = call(s, &cr);
        atomic_fetch_add(&g_cancel_sent, 1);
        if (!c) atomic_fetch_add(&g_errors, 1);
        else helium__reply__free_unpacked(c, NULL);
    }
}

/* GetJob for job i; sets its state if final. */
static void poll_job(void *s, int i, uint64_t rid) {
    job_rec *j = &g_rec[i];
    Helium__GetJob gj = HELIUM__GET_JOB__INIT;
    gj.job_id = j->id;
    Helium__Request rq = HELIUM__REQUEST__INIT;
    rq.request_id = rid;
    rq.body_case = HELIUM__REQUEST__BODY_GET_JOB;
    rq.get_job = &gj;
    Helium__Reply *r = call(s, &rq);
    if (!r) {
        atomic_fetch_add(&g_errors, 1);
        return;
    }
    if (r->body_case == HELIUM__REPLY__BODY_JOB && r->job) {
        int st = r->job->state;
        if (st == HELIUM__JOB_STATE__JOB_DONE || st == HELIUM__JOB_STATE__JOB_FAILED ||
            st == HELIUM__JOB_STATE__JOB_CANCELED) {
            j->state = st;
            j->t_end = now_us();
        }
    } else {
        j->state = -1; /* the coordinator does not know it */
        j->t_end = now_us();
    }
    helium__reply__free_unpacked(r, NULL);
}

static void *client(void *arg) {
    int c = (int)(intptr_t)arg;
    void *ctx = zmq_ctx_new(), *s = zmq_socket(ctx, ZMQ_DEALER);
    int zero = 0, tmo = REPLY_TIMEOUT_MS;
    zmq_setsockopt(s, ZMQ_LINGER, &zero, sizeof zero);
    zmq_setsockopt(s, ZMQ_RCVTIMEO, &tmo, sizeof tmo);
    if ((g_curve && zauth_set_client(s, &g_keys, NULL)) || zmq_connect(s, g_ep)) {
        atomic_fetch_add(&g_errors, 1);
        return NULL;
    }
    uint64_t rid = ((uint64_t)(c + 1) << 40);
    for (int i = c; i < g_jobs; i += g_clients) {
        if (g_bad_every > 0 && i % g_bad_every == 0) send_bad(s, (unsigned)(i / g_bad_every), (unsigned)i + 1);
        submit(s, i, ++rid);
    }
    uint64_t deadline = now_us() + (uint64_t)JOB_DEADLINE_S * 1000000u;
    for (;;) {
        int open = 0;
        for (int i = c; i < g_jobs; i += g_clients)
            if (g_rec[i].state == 0) {
                poll_job(s, i, ++rid);
                open += g_rec[i].state == 0;
            }
        if (!open) break;
        if (now_us() > deadline) {
            for (int i = c; i < g_jobs; i += g_clients)
                if (g_rec[i].state == 0) g_rec[i].state = -2;
            break;
        }
        usleep(20000);
    }
    zmq_close(s);
    zmq_ctx_term(ctx);
    return NULL;
}

static int cmp_u64(const void *a, const void *b) {
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

/* "name": {"p50": .., "p99": .., "mean": .., "max": ..} of v[0..n) / div. */
static void print_pct(const char *name, uint64_t *v, int n, double div) {
    if (n == 0) {
        printf("\"%s\": null", name);
        return;
    }
    qsort(v, (size_t)n, sizeof *v, cmp_u64);
    double mean = 0;
    for (int i = 0; i < n; i++) mean += (double)v[i];
    int p99 = (int)((long)n * 99 / 100);
    printf("\"%s\": {\"n\": %d, \"p50\": %.3f, \"p99\": %.3f, \"mean\": %.3f, \"max\": %.3f}", name, n,
           (double)v[n / 2] / div, (double)v[p99 < n ? p99 : n - 1] / div, mean / n / div, (double)v[n - 1] / div);
}

static const char *state_name(int st) {
    switch (st) {
    case HELIUM__JOB_STATE__JOB_DONE: return "DONE";
    case HELIUM__JOB_STATE__JOB_FAILED: return "FAILED";
    case HELIUM__JOB_STATE__JOB_CANCELED: return "CANCELED";
    case -1: return "LOST";
    case -2: return "TIMEOUT";
    default: return "UNKNOWN";
    }
}

int main(int argc, char **argv) {
    if (argc < 4) {
        fprintf(stderr, "usage: loadgen ENDPOINT JOBS CLIENTS [CANCEL_EVERY [BAD_EVERY [MAX_TOKENS]]]\n");
        return 2;
    }
    g_ep = argv[1];
    g_jobs = atoi(argv[2]);
    g_clients = atoi(argv[3]);
    g_cancel_every = argc > 4 ? atoi(argv[4]) : 0;
    g_bad_every = argc > 5 ? atoi(argv[5]) : 0;
    g_max_tokens = argc > 6 ? atoi(argv[6]) : 8;
    if (g_jobs < 1 || g_clients < 1 || g_clients > 1000 || g_max_tokens < 1) {
        fprintf(stderr, "loadgen: bad JOBS/CLIENTS/MAX_TOKENS\n");
        return 2;
    }
    const char *kf = getenv("HELIUMCTL_KEY"), *sf = getenv("HELIUMCTL_SERVER_KEY");
    if (kf && *kf && sf && *sf) {
        if (zauth_read_secret(kf, &g_keys) || zauth_read_public(sf, g_keys.server)) {
            fprintf(stderr, "loadgen: cannot read the keys\n");
            return 1;
        }
        g_curve = true;
    }
    g_rec = calloc((size_t)g_jobs, sizeof *g_rec);
    for (int i = 0; i < g_jobs; i++) g_rec[i].cancel = g_cancel_every > 0 && i % g_cancel_every == g_cancel_every - 1;
    pthread_t *th = calloc((size_t)g_clients, sizeof *th);
    uint64_t t0 = now_us();
    for (int c = 0; c < g_clients; c++) pthread_create(&th[c], NULL, client, (void *)(intptr_t)c);
    for (int c = 0; c < g_clients; c++) pthread_join(th[c], NULL);
    double wall = (double)(now_us() - t0) / 1e6;

    uint64_t *sub = calloc((size_t)g_jobs, sizeof *sub), *lat = calloc((size_t)g_jobs, sizeof *lat);
    int ns = 0, nl = 0, counts[8] = {0}, cancel_wrong = 0, n_cancel = 0;
    for (int i = 0; i < g_jobs; i++) {
        job_rec *j = &g_rec[i];
        if (j->submit_us) sub[ns++] = j->submit_us;
        if (j->state == HELIUM__JOB_STATE__JOB_DONE && !j->cancel) lat[nl++] = j->t_end - j->t_send;
        counts[j->state + 2 >= 0 && j->state + 2 < 8 ? j->state + 2 : 2]++;
        n_cancel += j->cancel;
        if (j->cancel && j->state != HELIUM__JOB_STATE__JOB_CANCELED) cancel_wrong++;
    }
    printf("{\"jobs\": %d, \"clients\": %d, \"curve\": %s, \"wall_s\": %.3f, ", g_jobs, g_clients,
           g_curve ? "true" : "false", wall);
    print_pct("submit_ms", sub, ns, 1000.0);
    printf(", ");
    print_pct("job_ms", lat, nl, 1000.0);
    printf(", \"states\": {\"DONE\": %d, \"FAILED\": %d, \"CANCELED\": %d, \"LOST\": %d, \"TIMEOUT\": %d}",
           counts[HELIUM__JOB_STATE__JOB_DONE + 2], counts[HELIUM__JOB_STATE__JOB_FAILED + 2],
           counts[HELIUM__JOB_STATE__JOB_CANCELED + 2], counts[1], counts[0]);
    printf(", \"cancels\": %d, \"cancel_not_canceled\": %d, \"malformed_sent\": %ld, \"malformed_answered\": %ld, "
           "\"request_errors\": %ld, \"job_list\": [",
           n_cancel, cancel_wrong, atomic_load(&g_bad_sent), atomic_load(&g_bad_answered), atomic_load(&g_errors));
    for (int i = 0; i < g_jobs; i++)
        printf("%s{\"i\": %d, \"id\": \"%s\", \"cancel\": %s, \"state\": \"%s\"}", i ? ", " : "", i, g_rec[i].id,
               g_rec[i].cancel ? "true" : "false", state_name(g_rec[i].state));
    printf("]}\n");
    free(sub);
    free(lat);
    free(th);
    free(g_rec);
    return atomic_load(&g_errors) ? 1 : 0;
}
