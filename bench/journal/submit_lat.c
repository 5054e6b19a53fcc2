/* submit_lat: measures how long a coordinator takes to acknowledge SubmitJob
 * requests (the journal's cost sits in that acknowledgement).
 *
 *   submit_lat ENDPOINT N BURST
 *
 * Sends N submits of a one-op workflow over one DEALER socket, BURST at a
 * time (all BURST sent, then all BURST replies awaited), and prints one line:
 *   n=N burst=B p50_us=.. p99_us=.. mean_us=.. total_s=.. errors=E
 * A submit's latency is from its send to its reply. Built by bench/journal/run.
 */
#define _GNU_SOURCE
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <zmq.h>

#include "helium.pb-c.h"

static uint64_t now_us(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

static int cmp_u64(const void *a, const void *b) {
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

/* A Request{submit} of a one-llm-op workflow, request_id id, packed. */
static uint8_t *pack_submit(uint64_t id, size_t *n) {
    Helium__TemplatePart tp = HELIUM__TEMPLATE_PART__INIT, *tpp = &tp;
    tp.part_case = HELIUM__TEMPLATE_PART__PART_TEXT;
    tp.text = "Once upon a time";
    Helium__LlmOp llm = HELIUM__LLM_OP__INIT;
    llm.n_prompt = 1;
    llm.prompt = &tpp;
    llm.max_tokens = 4;
    Helium__Operator op = HELIUM__OPERATOR__INIT, *opp = &op;
    op.id = "a";
    op.kind_case = HELIUM__OPERATOR__KIND_LLM;
    op.llm = &llm;
    Helium__Workflow wf = HELIUM__WORKFLOW__INIT;
    wf.protocol_version = HELIUM__PROTOCOL__PROTOCOL_CURRENT;
    wf.name = "bench_submit";
    wf.n_ops = 1;
    wf.ops = &opp;
    Helium__SubmitJob s = HELIUM__SUBMIT_JOB__INIT;
    s.workflow = &wf;
    Helium__Request rq = HELIUM__REQUEST__INIT;
    rq.protocol_version = HELIUM__PROTOCOL__PROTOCOL_CURRENT;
    rq.request_id = id;
    rq.body_case = HELIUM__REQUEST__BODY_SUBMIT;
    rq.submit = &s;
    *n = helium__request__get_packed_size(&rq);
    uint8_t *b = malloc(*n);
    if (b) helium__request__pack(&rq, b);
    return b;
}

int main(int argc, char **argv) {
    if (argc != 4) {
        fprintf(stderr, "usage: submit_lat ENDPOINT N BURST\n");
        return 2;
    }
    long n = atol(argv[2]), burst = atol(argv[3]);
    if (n < 1 || burst < 1 || burst > n) {
        fprintf(stderr, "submit_lat: want 1 <= BURST <= N\n");
        return 2;
    }
    void *ctx = zmq_ctx_new(), *s = zmq_socket(ctx, ZMQ_DEALER);
    int linger = 0, tmo = 30000;
    zmq_setsockopt(s, ZMQ_LINGER, &linger, sizeof linger);
    zmq_setsockopt(s, ZMQ_RCVTIMEO, &tmo, sizeof tmo);
    if (zmq_connect(s, argv[1])) {
        fprintf(stderr, "submit_lat: connect %s: %s\n", argv[1], zmq_strerror(zmq_errno()));
        return 1;
    }
    uint64_t *lat = calloc((size_t)n, sizeof *lat), *sent = calloc((size_t)burst, sizeof *sent);
    long errors = 0, done = 0;
    uint64_t t0 = now_us();
    while (done < n) {
        long k = n - done < burst ? n - done : burst;
        for (long i = 0; i < k; i++) {
            size_t len;
            uint8_t *b = pack_submit((uint64_t)(done + i + 1), &len);
            sent[i] = now_us();
            if (!b || zmq_send(s, b, len, 0) < 0) errors++;
            free(b);
        }
        for (long i = 0; i < k; i++) {
            zmq_msg_t m;
            zmq_msg_init(&m);
            if (zmq_msg_recv(&m, s, 0) < 0) {
                fprintf(stderr, "submit_lat: no reply: %s\n", zmq_strerror(zmq_errno()));
                return 1;
            }
            Helium__Reply *r = helium__reply__unpack(NULL, zmq_msg_size(&m), zmq_msg_data(&m));
            zmq_msg_close(&m);
            uint64_t id = r ? r->request_id : 0;
            if (!r || r->body_case != HELIUM__REPLY__BODY_ACCEPTED || id <= (uint64_t)done ||
                id > (uint64_t)(done + k))
                errors++;
            else
                lat[id - 1] = now_us() - sent[id - 1 - (uint64_t)done];
            if (r) helium__reply__free_unpacked(r, NULL);
        }
        done += k;
    }
    double total = (double)(now_us() - t0) / 1e6;
    qsort(lat, (size_t)n, sizeof *lat, cmp_u64);
    double mean = 0;
    for (long i = 0; i < n; i++) mean += (double)lat[i];
    printf("n=%ld burst=%ld p50_us=%llu p99_us=%llu mean_us=%.0f total_s=%.3f errors=%ld\n", n, burst,
           (unsigned long long)lat[n / 2], (unsigned long long)lat[(n * 99) / 100 < n ? (n * 99) / 100 : n - 1],
           mean / (double)n, total, errors);
    zmq_close(s);
    zmq_ctx_term(ctx);
    free(lat);
    free(sent);
    return errors ? 1 : 0;
}
