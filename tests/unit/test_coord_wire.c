/* Unit tests for the coordinator's wire-facing helpers: coordinator/pbcheck.c
 * (suite "pbcheck": the protobuf nesting guard), coordinator/reply.c (suite
 * "reply": error op ids, JobStatus layout, packing) and coordinator/tools.c
 * with coordinator/metrics.c (suite "tools": host allowlist, and real HTTP
 * calls against the metrics server on loopback). */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "herr.h"
#include "jobs.h"
#include "metrics.h"
#include "pbcheck.h"
#include "reply.h"
#include "tools.h"
#include "werr.h"
#include "wf_proto.h"

/* ------------------------------------------------------------- pbcheck */

/* Writes a length-delimited field (field, payload) to out; returns bytes. */
static size_t ld_field(uint8_t *out, uint32_t field, const uint8_t *payload, size_t n) {
    size_t k = 0;
    uint64_t key = (uint64_t)field << 3 | 2;
    do {
        out[k++] = (uint8_t)((key & 0x7f) | (key > 0x7f ? 0x80 : 0));
        key >>= 7;
    } while (key);
    uint64_t len = n;
    do {
        out[k++] = (uint8_t)((len & 0x7f) | (len > 0x7f ? 0x80 : 0));
        len >>= 7;
    } while (len);
    memmove(out + k, payload, n);
    return k + n;
}

/* Operator{map: MapOp{body: Operator{map: ...}}} nested `levels` times, as
 * Workflow.ops[0]. */
static uint8_t *nested_workflow(int levels, size_t *len) {
    size_t cap = (size_t)levels * 24 + 64;
    uint8_t *a = calloc(1, cap), *b = calloc(1, cap);
    size_t n = 0;
    for (int i = 0; i < levels; i++) {
        n = ld_field(b, 3, a, n);  /* MapOp.body = Operator */
        n = ld_field(a, 12, b, n); /* Operator.map = MapOp */
    }
    n = ld_field(b, 3, a, n); /* Workflow.ops */
    free(a);
    *len = n;
    return b;
}

Test(pbcheck, deep_nesting_is_rejected) {
    size_t n;
    uint8_t *w = nested_workflow(2000, &n);
    cr_assert_not(pb_depth_ok(&helium__workflow__descriptor, w, n, 24));
    free(w);
    w = nested_workflow(3, &n);
    cr_assert(pb_depth_ok(&helium__workflow__descriptor, w, n, 24));
    Helium__Workflow *wf = helium__workflow__unpack(NULL, n, w);
    cr_assert_not_null(wf, "the shallow one is a valid message");
    helium__workflow__free_unpacked(wf, NULL);
    free(w);
}

Test(pbcheck, real_request_passes_garbage_fails) {
    Helium__GetJob gj = HELIUM__GET_JOB__INIT;
    gj.job_id = "job-1";
    Helium__Request rq = HELIUM__REQUEST__INIT;
    rq.protocol_version = 1;
    rq.request_id = 77;
    rq.body_case = HELIUM__REQUEST__BODY_GET_JOB;
    rq.get_job = &gj;
    uint8_t buf[64];
    size_t n = helium__request__pack(&rq, buf);
    cr_assert(pb_depth_ok(&helium__request__descriptor, buf, n, 24));
    cr_assert_not(pb_depth_ok(&helium__request__descriptor, buf, n - 1, 24), "truncated");
    uint8_t bad[] = {0x0b, 0x01}; /* wire type 3 (group) */
    cr_assert_not(pb_depth_ok(&helium__request__descriptor, bad, sizeof bad, 24));
    uint8_t huge_len[] = {0x5a, 0xff, 0xff, 0xff, 0x0f}; /* field 11, length past the end */
    cr_assert_not(pb_depth_ok(&helium__request__descriptor, huge_len, sizeof huge_len, 24));
    cr_assert(pb_depth_ok(&helium__request__descriptor, NULL, 0, 24), "empty is a valid (empty) message");
}

/* --------------------------------------------------------------- reply */

Test(werr, one_map) {
    /* the one herr -> wire map (wire/werr.h): a bad argument is INVALID, an
     * unknown operator type UNKNOWN_OP, everywhere */
    cr_assert_eq(werr_code(0), HELIUM__ERROR_CODE__ERROR_OK);
    cr_assert_eq(werr_code(HE_EINVAL), HELIUM__ERROR_CODE__ERROR_INVALID);
    cr_assert_eq(werr_code(HE_EUNKNOWN), HELIUM__ERROR_CODE__ERROR_UNKNOWN_OP);
    cr_assert_eq(werr_code(HE_EFORMAT), HELIUM__ERROR_CODE__ERROR_INVALID);
    cr_assert_eq(werr_code(HE_ERANGE), HELIUM__ERROR_CODE__ERROR_INVALID);
    cr_assert_eq(werr_code(HE_EEMPTY), HELIUM__ERROR_CODE__ERROR_INVALID);
    cr_assert_eq(werr_code(HE_ECYCLE), HELIUM__ERROR_CODE__ERROR_CYCLE);
    cr_assert_eq(werr_code(HE_EREF), HELIUM__ERROR_CODE__ERROR_DANGLING_REF);
    cr_assert_eq(werr_code(HE_ELIMIT), HELIUM__ERROR_CODE__ERROR_LIMIT);
    cr_assert_eq(werr_code(HE_ENOTFOUND), HELIUM__ERROR_CODE__ERROR_NOT_FOUND);
    cr_assert_eq(werr_code(HE_ECONTEXT), HELIUM__ERROR_CODE__ERROR_PROMPT_TOO_LONG);
    cr_assert_eq(werr_code(HE_EUNAVAIL), HELIUM__ERROR_CODE__ERROR_UNAVAILABLE);
    cr_assert_eq(werr_code(HE_EPROTO), HELIUM__ERROR_CODE__ERROR_PROTOCOL);
    cr_assert_eq(werr_code(HE_ENOMEM), HELIUM__ERROR_CODE__ERROR_INTERNAL);
    cr_assert_eq(werr_code(HE_EIO), HELIUM__ERROR_CODE__ERROR_INTERNAL);
    cr_assert_eq(werr_code(HE_ECANCELED), HELIUM__ERROR_CODE__ERROR_CANCELED);
    cr_assert_eq(werr_code(HE_ETIMEOUT), HELIUM__ERROR_CODE__ERROR_TIMEOUT);
}

/* The failing operator travels as a field (he_op), never parsed out of the
 * message: the innermost failing op is named, a workflow-level error names
 * none, and a later error clears it. */
Test(werr, failing_op_is_a_field) {
    static const struct {
        const char *json, *op;
        int code;
    } cases[] = {
        {"{\"ops\":[{\"id\":\"abc\",\"type\":\"llm\",\"prompt\":\"x\",\"max_tokens\":0}]}", "abc", HE_ERANGE},
        {"{\"ops\":[{\"id\":\"a\",\"type\":\"teleport\"}]}", "a", HE_EUNKNOWN},
        {"{\"ops\":[{\"id\":\"m1\",\"type\":\"map\",\"over\":\"input.x\",\"body\":"
         "{\"id\":\"in\",\"type\":\"llm\",\"prompt\":\"{{op.ghost}}\"}}],\"inputs\":[\"x\"]}", "in", HE_EREF},
        {"{\"ops\":[{\"id\":\"a\",\"type\":\"llm\",\"prompt\":\"{{op.b}}\"},"
         "{\"id\":\"b\",\"type\":\"llm\",\"prompt\":\"{{op.a}}\"}]}", NULL, HE_ECYCLE},
        {"{\"ops\": 3}", "", HE_EFORMAT},
    };
    for (size_t k = 0; k < sizeof cases / sizeof *cases; k++) {
        wf_t *wf = NULL;
        int rc = wf_parse_json(cases[k].json, strlen(cases[k].json), &wf);
        cr_assert_null(wf);
        cr_assert_lt(rc, 0, "case %zu parsed", k);
        if (cases[k].code == HE_ERANGE) cr_assert(rc == HE_ERANGE || rc == HE_EFORMAT, "case %zu: %s", k, he_name(rc));
        else cr_assert_eq(rc, cases[k].code, "case %zu: %s %s", k, he_name(rc), he_msg());
        if (cases[k].op) cr_assert_str_eq(he_op(), cases[k].op, "case %zu: %s", k, he_msg());
        else cr_assert(strcmp(he_op(), "a") == 0 || strcmp(he_op(), "b") == 0, "cycle names one of its ops: %s", he_op());
    }
    he_set(HE_EIO, "unrelated");
    cr_assert_str_eq(he_op(), "", "he_set clears the subject");
}

Test(reply, job_status_layout_and_pack) {
    jobs_t *js = jobs_new(NULL, NULL);
    const char *json = "{\"name\":\"w\",\"inputs\":[\"l\"],\"ops\":["
                       "{\"id\":\"m\",\"type\":\"map\",\"over\":\"input.l\",\"body\":{\"type\":\"join\",\"parts\":\"<{{item}}>\"}},"
                       "{\"id\":\"j\",\"type\":\"join\",\"parts\":\"{{op.m}}\"}]}";
    wf_t *wf = NULL;
    cr_assert_eq(wf_parse_json(json, strlen(json), &wf), 0, "%s", he_msg());
    job_t *j = NULL;
    wf_kv in[] = {{"l", "a\nb"}};
    cr_assert_eq(jobs_submit(js, &wf, in, 1, "router", "t", false, &j), 0);
    cr_assert_eq(j->state, HELIUM__JOB_STATE__JOB_DONE);
    rep_arena a = {0};
    Helium__Reply r = HELIUM__REPLY__INIT;
    r.request_id = 9;
    r.body_case = HELIUM__REPLY__BODY_JOB;
    r.job = rep_job_status(&a, j, true, 0);
    cr_assert_not(a.oom);
    cr_assert_eq(r.job->n_ops, 3);
    cr_assert_str_eq(r.job->ops[0]->op_id, "m");
    cr_assert_str_eq(r.job->ops[1]->op_id, "m.body", "a map's body follows it");
    cr_assert_str_eq(r.job->ops[2]->op_id, "j");
    cr_assert_eq(r.job->ops[0]->items_total, 2);
    cr_assert_eq(r.job->ops[0]->n_outputs, 2);
    cr_assert_str_eq(r.job->output, "<a>\n<b>");
    cr_assert_geq(r.job->n_partial, 2);
    uint8_t *buf;
    size_t len;
    cr_assert_eq(rep_pack(&r, &buf, &len), 0);
    rep_arena_free(&a);
    Helium__Reply *back = helium__reply__unpack(NULL, len, buf);
    cr_assert_not_null(back);
    cr_assert_eq(back->protocol_version, 1);
    cr_assert_eq(back->request_id, 9);
    cr_assert_str_eq(back->job->ops[0]->outputs[1], "<b>");
    cr_assert_str_eq(back->job->ops[1]->kind, "join");
    helium__reply__free_unpacked(back, NULL);
    free(buf);
    /* without outputs: no op texts, but the job's output stays */
    r.job = rep_job_status(&a, j, false, UINT64_MAX);
    cr_assert_str_eq(r.job->ops[2]->output, "");
    cr_assert_eq(r.job->ops[0]->n_outputs, 0);
    cr_assert_eq(r.job->n_partial, 0);
    rep_arena_free(&a);
    jobs_destroy(&js);
}

/* --------------------------------------------------------------- tools */

static int n_done;
static Helium__ErrorCode last_code;
static char last_body[256];

static void on_done(void *ctx, void *user, Helium__ErrorCode code, const char *body, size_t len) {
    (void)ctx;
    (void)user;
    n_done++;
    last_code = code;
    snprintf(last_body, sizeof last_body, "%.*s", (int)len, body);
}

/* Drives t until n_done reaches want, for at most `rounds` poll rounds. */
static void run_rounds(tools_t *t, int want, int rounds) {
    for (int round = 0; round < rounds && n_done < want; round++) {
        zmq_pollitem_t items[16];
        int n = tools_poll_items(t, items, 16);
        long tmo = tools_timeout_ms(t);
        if (tmo < 0 || tmo > 50) tmo = 50;
        zmq_poll(items, n, tmo);
        tools_perform(t, items, n);
    }
}

static void run_until(tools_t *t, int want) { run_rounds(t, want, 2000); }

static int n_ok;
static void on_done_count(void *ctx, void *user, Helium__ErrorCode code, const char *body, size_t len) {
    (void)ctx;
    (void)user;
    (void)body;
    (void)len;
    n_done++;
    if (code == HELIUM__ERROR_CODE__ERROR_OK) n_ok++;
}

Test(tools, host_allowlist) {
    const char *allow[] = {"127.0.0.1", "api.example.com:8443", "::1"};
    cr_assert(tools_host_allowed(allow, 3, "127.0.0.1", "80"));
    cr_assert(tools_host_allowed(allow, 3, "API.example.com", "8443"));
    cr_assert_not(tools_host_allowed(allow, 3, "api.example.com", "443"));
    cr_assert(tools_host_allowed(allow, 3, "[::1]", "80"));
    cr_assert_not(tools_host_allowed(allow, 3, "127.0.0.2", "80"));
    cr_assert_not(tools_host_allowed(allow, 0, "127.0.0.1", "80"));
}

Test(tools, refused_calls) {
    const char *allow[] = {"127.0.0.1"};
    tools_t *t = tools_new(allow, 1, on_done, NULL);
    cr_assert_not_null(t);
    tool_call *h;
    tool_request rq = {.method = "GET", .url = "http://example.com/x"};
    cr_assert_eq(tools_start(t, &rq, NULL, &h), HE_EUNAVAIL);
    cr_assert(strstr(he_msg(), "example.com"), "%s", he_msg());
    rq.url = "ftp://127.0.0.1/x";
    cr_assert_eq(tools_start(t, &rq, NULL, &h), HE_EINVAL);
    rq.url = "not a url";
    cr_assert_eq(tools_start(t, &rq, NULL, &h), HE_EINVAL);
    char *wf_hosts[] = {"localhost"};
    rq.url = "http://127.0.0.1:1/x";
    rq.wf_hosts = wf_hosts;
    rq.n_wf_hosts = 1;
    cr_assert_eq(tools_start(t, &rq, NULL, &h), HE_EUNAVAIL, "not in the workflow's allow_hosts");
    rq.n_wf_hosts = 0;
    rq.method = "TRACE";
    cr_assert_eq(tools_start(t, &rq, NULL, &h), HE_EINVAL);
    cr_assert_eq(tools_active(t), 0);
    tools_destroy(&t);
    cr_assert_null(t);
}

/* A metrics server (a real HTTP server of the coordinator's) on an unusual
 * free port, for tool calls to reach; salt spreads the tests' ports. */
static metrics_t *http_server(int salt, int *port) {
    metrics_t *m = NULL;
    for (int k = 0; k < 20 && !m; k++) {
        *port = 21000 + (int)((getpid() * salt + k * 131) % 20000);
        m = metrics_new("127.0.0.1", *port);
    }
    cr_assert_not_null(m, "%s", he_msg());
    return m;
}

Test(tools, http_calls_against_the_metrics_server) {
    int port = 0;
    metrics_t *m = http_server(7, &port);
    metrics_publish(m, "page-body\n", 10);
    const char *allow[] = {"127.0.0.1"};
    tools_t *t = tools_new(allow, 1, on_done, NULL);
    char url[128];
    snprintf(url, sizeof url, "http://127.0.0.1:%d/metrics", port);
    tool_request rq = {.method = "GET", .url = url, .timeout_ms = 10000};
    tool_call *h;
    n_done = 0;
    cr_assert_eq(tools_start(t, &rq, NULL, &h), 0, "%s", he_msg());
    run_until(t, 1);
    cr_assert_eq(n_done, 1);
    cr_assert_eq(last_code, HELIUM__ERROR_CODE__ERROR_OK, "%s", last_body);
    cr_assert_str_eq(last_body, "page-body\n");
    /* too long a response */
    rq.max_response_bytes = 4;
    cr_assert_eq(tools_start(t, &rq, NULL, &h), 0);
    run_until(t, 2);
    cr_assert_eq(last_code, HELIUM__ERROR_CODE__ERROR_TOOL);
    cr_assert(strstr(last_body, "longer than 4 bytes"), "%s", last_body);
    /* an HTTP error status */
    snprintf(url, sizeof url, "http://127.0.0.1:%d/nothing", port);
    rq.max_response_bytes = 0;
    cr_assert_eq(tools_start(t, &rq, NULL, &h), 0);
    run_until(t, 3);
    cr_assert_eq(last_code, HELIUM__ERROR_CODE__ERROR_TOOL);
    cr_assert(strstr(last_body, "404"), "%s", last_body);
    /* an aborted call never reports */
    cr_assert_eq(tools_start(t, &rq, NULL, &h), 0);
    tools_abort(t, h);
    cr_assert_eq(tools_active(t), 0);
    run_rounds(t, 4, 5);
    cr_assert_eq(n_done, 3);
    cr_assert_geq(metrics_requests(m), 2);
    tools_destroy(&t);
    metrics_destroy(&m);
}

/* Far more calls in flight than sockets tools can watch (a 10,000-job batch
 * starts 1,000+ tool calls at once): every one completes, none fails for
 * want of a socket, and nothing crashes (before CURLMOPT_MAX_TOTAL_CONNECTIONS,
 * curl 7.88 crashed in curl_multi_socket_action once sock_cb refused). */
Test(tools, many_calls_in_flight_queue_for_connections) {
    int port = 0;
    metrics_t *m = http_server(11, &port);
    metrics_publish(m, "ok\n", 3);
    const char *allow[] = {"127.0.0.1"};
    tools_t *t = tools_new(allow, 1, on_done_count, NULL);
    char url[128];
    snprintf(url, sizeof url, "http://127.0.0.1:%d/metrics", port);
    tool_request rq = {.method = "GET", .url = url, .timeout_ms = 60000};
    enum { N = 600 };
    n_done = n_ok = 0;
    for (int i = 0; i < N; i++) {
        tool_call *h;
        cr_assert_eq(tools_start(t, &rq, NULL, &h), 0, "%s", he_msg());
    }
    cr_assert_eq(tools_active(t), N);
    for (int round = 0; round < 20000 && n_done < N; round++) {
        zmq_pollitem_t items[256];
        int n = tools_poll_items(t, items, 256);
        long tmo = tools_timeout_ms(t);
        if (tmo < 0 || tmo > 20) tmo = 20;
        zmq_poll(items, n, tmo);
        tools_perform(t, items, n);
    }
    cr_assert_eq(n_done, N, "%d of %d calls reported", n_done, N);
    cr_assert_eq(n_ok, N, "%d of %d calls succeeded", n_ok, N);
    cr_assert_eq(tools_active(t), 0);
    tools_destroy(&t);
    metrics_destroy(&m);
}
