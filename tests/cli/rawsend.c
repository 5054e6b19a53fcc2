/* rawsend: test helper for cluster_faults.sh. Sends one deliberately bad (or
 * hand-built) frame to the coordinator's client endpoint and prints the reply
 * on one line, so the shell test can check the typed error:
 *
 *   rawsend ENDPOINT MODE [TIMEOUT_MS]
 *   -> "code=PROTOCOL op= request_id=N body=0 msg=..."   (exit 0)
 *   -> "TIMEOUT"                                          (exit 3)
 *
 * MODE: garbage (256 random bytes), truncated (a valid Request cut in half),
 * badversion (protocol_version 7), empty (a zero-length frame), req (a valid
 * status Request from a REQ socket: empty delimiter frame), cycle, dangling,
 * unknownop (a proto Workflow that heliumctl would refuse to send: ops a <-> b
 * form a cycle; an op refers to an unknown op; an op has no kind), noinput (a
 * required input is not given). Built by the test with
 *   gcc rawsend.c $HELIUM_BUILD/proto/helium.pb-c.c -I$HELIUM_BUILD/proto -lprotobuf-c -lzmq
 */
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zmq.h>

#include "helium.pb-c.h"

#define REQUEST_ID 4242

static Helium__TemplatePart *part_text(const char *s) {
    Helium__TemplatePart *p = calloc(1, sizeof *p);
    helium__template_part__init(p);
    p->part_case = HELIUM__TEMPLATE_PART__PART_TEXT;
    p->text = (char *)s;
    return p;
}

static Helium__TemplatePart *part_op(const char *id) {
    Helium__TemplatePart *p = calloc(1, sizeof *p);
    helium__template_part__init(p);
    p->part_case = HELIUM__TEMPLATE_PART__PART_OP_REF;
    p->op_ref = (char *)id;
    return p;
}

static Helium__TemplatePart *part_input(const char *name) {
    Helium__TemplatePart *p = calloc(1, sizeof *p);
    helium__template_part__init(p);
    p->part_case = HELIUM__TEMPLATE_PART__PART_INPUT_REF;
    p->input_ref = (char *)name;
    return p;
}

/* An llm op "id" whose prompt is "text" followed by the given part. */
static Helium__Operator *llm_op(const char *id, Helium__TemplatePart *ref) {
    Helium__Operator *op = calloc(1, sizeof *op);
    helium__operator__init(op);
    op->id = (char *)id;
    Helium__LlmOp *l = calloc(1, sizeof *l);
    helium__llm_op__init(l);
    l->max_tokens = 4;
    l->n_prompt = ref ? 2 : 1;
    l->prompt = calloc(2, sizeof *l->prompt);
    l->prompt[0] = part_text("Say something about ");
    if (ref) l->prompt[1] = ref;
    op->kind_case = HELIUM__OPERATOR__KIND_LLM;
    op->llm = l;
    return op;
}

/* Frees an op built above (its strings are static). */
static void op_free(Helium__Operator *op) {
    if (op->llm) {
        for (size_t i = 0; i < op->llm->n_prompt; i++) free(op->llm->prompt[i]);
        free(op->llm->prompt);
        free(op->llm);
    }
    free(op);
}

/* Packs a SubmitJob request for the workflow of mode into *buf. */
static size_t pack_submit(const char *mode, uint8_t **buf) {
    Helium__Workflow wf = HELIUM__WORKFLOW__INIT;
    wf.protocol_version = HELIUM__PROTOCOL__PROTOCOL_CURRENT;
    wf.name = (char *)mode;
    Helium__Operator *ops[2];
    Helium__InputDecl in = HELIUM__INPUT_DECL__INIT, *ins[1] = {&in};
    if (!strcmp(mode, "cycle")) {
        ops[0] = llm_op("a", part_op("b"));
        ops[1] = llm_op("b", part_op("a"));
        wf.n_ops = 2;
    } else if (!strcmp(mode, "dangling")) {
        ops[0] = llm_op("a", part_op("nope"));
        wf.n_ops = 1;
    } else if (!strcmp(mode, "unknownop")) {
        ops[0] = llm_op("a", NULL);
        ops[1] = calloc(1, sizeof *ops[1]);
        helium__operator__init(ops[1]);
        ops[1]->id = "mystery"; /* kind left unset */
        wf.n_ops = 2;
    } else { /* noinput */
        in.name = "doc";
        wf.n_inputs = 1;
        wf.inputs = ins;
        ops[0] = llm_op("a", part_input("doc"));
        wf.n_ops = 1;
    }
    wf.ops = ops;
    Helium__SubmitJob sj = HELIUM__SUBMIT_JOB__INIT;
    sj.workflow = &wf;
    Helium__Request req = HELIUM__REQUEST__INIT;
    req.protocol_version = HELIUM__PROTOCOL__PROTOCOL_CURRENT;
    req.request_id = REQUEST_ID;
    req.body_case = HELIUM__REQUEST__BODY_SUBMIT;
    req.submit = &sj;
    size_t n = helium__request__get_packed_size(&req);
    *buf = malloc(n);
    helium__request__pack(&req, *buf);
    for (size_t i = 0; i < wf.n_ops; i++) op_free(ops[i]);
    return n;
}

static size_t pack_status(uint32_t version, uint8_t **buf) {
    Helium__ClusterStatus cs = HELIUM__CLUSTER_STATUS__INIT;
    Helium__Request req = HELIUM__REQUEST__INIT;
    req.protocol_version = version;
    req.request_id = REQUEST_ID;
    req.body_case = HELIUM__REQUEST__BODY_STATUS;
    req.status = &cs;
    size_t n = helium__request__get_packed_size(&req);
    *buf = malloc(n);
    helium__request__pack(&req, *buf);
    return n;
}

int main(int argc, char **argv) {
    if (argc < 3) {
        fprintf(stderr, "usage: rawsend ENDPOINT MODE [TIMEOUT_MS]\n");
        return 2;
    }
    const char *ep = argv[1], *mode = argv[2];
    int timeout = argc > 3 ? atoi(argv[3]) : 5000;
    uint8_t *buf = NULL;
    size_t n = 0;
    bool is_req = false;
    if (!strcmp(mode, "garbage")) {
        n = 256;
        buf = malloc(n);
        uint64_t x = 0x9e3779b97f4a7c15ull;
        for (size_t i = 0; i < n; i++) {
            x ^= x << 13, x ^= x >> 7, x ^= x << 17;
            buf[i] = (uint8_t)x;
        }
    } else if (!strcmp(mode, "truncated")) {
        n = pack_submit("cycle", &buf) / 2;
    } else if (!strcmp(mode, "badversion")) {
        n = pack_status(7, &buf);
    } else if (!strcmp(mode, "empty")) {
        n = 0;
        buf = malloc(1);
    } else if (!strcmp(mode, "req")) {
        n = pack_status(HELIUM__PROTOCOL__PROTOCOL_CURRENT, &buf);
        is_req = true;
    } else if (!strcmp(mode, "cycle") || !strcmp(mode, "dangling") || !strcmp(mode, "unknownop") ||
               !strcmp(mode, "noinput")) {
        n = pack_submit(mode, &buf);
    } else {
        fprintf(stderr, "rawsend: unknown mode %s\n", mode);
        return 2;
    }

    void *ctx = zmq_ctx_new();
    void *s = zmq_socket(ctx, is_req ? ZMQ_REQ : ZMQ_DEALER);
    int linger = 0;
    zmq_setsockopt(s, ZMQ_LINGER, &linger, sizeof linger);
    zmq_setsockopt(s, ZMQ_RCVTIMEO, &timeout, sizeof timeout);
    zmq_setsockopt(s, ZMQ_SNDTIMEO, &timeout, sizeof timeout);
    if (zmq_connect(s, ep) != 0 || zmq_send(s, buf, n, 0) < 0) {
        fprintf(stderr, "rawsend: %s\n", zmq_strerror(zmq_errno()));
        return 2;
    }
    free(buf);
    zmq_msg_t msg;
    zmq_msg_init(&msg);
    /* the reply's last frame is the payload */
    int rc;
    do {
        rc = zmq_msg_recv(&msg, s, 0);
    } while (rc >= 0 && zmq_msg_more(&msg));
    if (rc < 0) {
        printf("TIMEOUT\n");
        return 3;
    }
    Helium__Reply *rep = helium__reply__unpack(NULL, zmq_msg_size(&msg), zmq_msg_data(&msg));
    if (!rep) {
        printf("UNREADABLE %zu bytes\n", zmq_msg_size(&msg));
        return 4;
    }
    const ProtobufCEnumValue *ev =
        protobuf_c_enum_descriptor_get_value(&helium__error_code__descriptor, rep->error ? (int)rep->error->code : 0);
    const char *code = ev ? ev->name : "?";
    if (!strncmp(code, "ERROR_", 6)) code += 6;
    printf("code=%s op=%s request_id=%llu version=%u body=%d msg=%s\n", code,
           rep->error && rep->error->op_id ? rep->error->op_id : "", (unsigned long long)rep->request_id,
           rep->protocol_version, (int)rep->body_case,
           rep->error && rep->error->message ? rep->error->message : "");
    helium__reply__free_unpacked(rep, NULL);
    zmq_msg_close(&msg);
    zmq_close(s);
    zmq_ctx_term(ctx);
    return 0;
}
