/* mkseeds_wire: writes the seed corpus of the frame fuzzers: one file per
 * representative frame of each envelope (Request, WorkerMsg, CoordMsg,
 * PeerMsg), each prefixed with fuzz_wire's selector byte (envelope index).
 * Submit requests carry the example workflows (examples/NAME.json, parsed and
 * converted like heliumctl does). Run once by hand; the output is committed:
 *   mkseeds_wire SRC_DIR OUT_DIR
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "helium.pb-c.h"
#include "herr.h"
#include "wf_proto.h"
#include "workflow.h"

static const char *out_dir;

static void put(const char *name, int sel, const ProtobufCMessage *m) {
    size_t n = protobuf_c_message_get_packed_size(m);
    uint8_t *b = malloc(n + 1);
    b[0] = (uint8_t)sel;
    protobuf_c_message_pack(m, b + 1);
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", out_dir, name);
    FILE *f = fopen(path, "wb");
    if (!f || fwrite(b, 1, n + 1, f) != n + 1) {
        perror(path);
        exit(1);
    }
    fclose(f);
    free(b);
}

static void submits(const char *src) {
    static const char *ex[] = {"map_reduce", "refine_loop", "debate", "customer_service"};
    for (size_t i = 0; i < sizeof ex / sizeof *ex; i++) {
        char path[4096];
        snprintf(path, sizeof path, "%s/examples/%s.json", src, ex[i]);
        FILE *f = fopen(path, "rb");
        if (!f) continue;
        char buf[1 << 16];
        size_t n = fread(buf, 1, sizeof buf, f);
        fclose(f);
        wf_t *wf = NULL;
        Helium__Workflow *pb = NULL;
        if (wf_parse_json(buf, n, &wf) || wfp_to_proto(wf, &pb)) {
            fprintf(stderr, "%s: %s\n", path, he_msg());
            exit(1);
        }
        Helium__SubmitJob s = HELIUM__SUBMIT_JOB__INIT;
        s.workflow = pb;
        Helium__SubmitJob__InputsEntry e = HELIUM__SUBMIT_JOB__INPUTS_ENTRY__INIT, *ep = &e;
        e.key = "topic";
        e.value = "kittens";
        s.n_inputs = 1;
        s.inputs = &ep;
        s.wait = i & 1;
        s.stream = i == 3;
        s.policy = i == 2 ? "helium" : "";
        Helium__Request rq = HELIUM__REQUEST__INIT;
        rq.protocol_version = HELIUM__PROTOCOL__PROTOCOL_CURRENT;
        rq.request_id = 7;
        rq.body_case = HELIUM__REQUEST__BODY_SUBMIT;
        rq.submit = &s;
        snprintf(path, sizeof path, "req-submit-%s", ex[i]);
        put(path, 0, &rq.base);
        wfp_free(&pb);
        wf_destroy(&wf);
    }
}

static void requests(void) {
    Helium__Request rq = HELIUM__REQUEST__INIT;
    rq.protocol_version = HELIUM__PROTOCOL__PROTOCOL_CURRENT;
    rq.request_id = 9;
    Helium__GetJob g = HELIUM__GET_JOB__INIT;
    g.job_id = "job-1";
    g.outputs = 1;
    g.partial_after = 3;
    rq.body_case = HELIUM__REQUEST__BODY_GET_JOB;
    rq.get_job = &g;
    put("req-get", 0, &rq.base);
    Helium__ListJobs l = HELIUM__LIST_JOBS__INIT;
    l.limit = 5;
    l.active_only = 1;
    rq.body_case = HELIUM__REQUEST__BODY_LIST_JOBS;
    rq.list_jobs = &l;
    put("req-list", 0, &rq.base);
    Helium__CancelJob c = HELIUM__CANCEL_JOB__INIT;
    c.job_id = "job-1";
    rq.body_case = HELIUM__REQUEST__BODY_CANCEL;
    rq.cancel = &c;
    put("req-cancel", 0, &rq.base);
    Helium__ClusterStatus st = HELIUM__CLUSTER_STATUS__INIT;
    st.counters = 1;
    rq.body_case = HELIUM__REQUEST__BODY_STATUS;
    rq.status = &st;
    put("req-status", 0, &rq.base);
}

static uint64_t hashes[4] = {0x1111, 0x2222, 0x3333, 0x4444};
static int32_t ids[6] = {1, 2, 3, 4, 5, 6};

static Helium__KvPages *pages(void) {
    static uint8_t data[64];
    static Helium__KvPage pg = HELIUM__KV_PAGE__INIT, *pgp = &pg;
    static Helium__KvPages kp = HELIUM__KV_PAGES__INIT;
    pg.hash = hashes[1];
    pg.parent = hashes[0];
    pg.n_tokens = 4;
    pg.tokens = ids;
    pg.data.len = sizeof data;
    pg.data.data = data;
    kp.protocol_version = HELIUM__PROTOCOL__PROTOCOL_CURRENT;
    kp.transfer_id = 3;
    kp.model_root = hashes[0];
    kp.n_layers = 2;
    kp.kv_dim = 4;
    kp.block_size = 4;
    kp.dtype = "f32";
    kp.n_pages = 1;
    kp.pages = &pgp;
    kp.last = 1;
    return &kp;
}

static void worker_msgs(void) {
    Helium__WorkerMsg m = HELIUM__WORKER_MSG__INIT;
    m.protocol_version = HELIUM__PROTOCOL__PROTOCOL_CURRENT;
    m.worker_id = "w1";
    Helium__Register r = HELIUM__REGISTER__INIT;
    r.worker_id = "w1";
    r.model = "tiny";
    r.model_root = hashes[0];
    r.block_size = 16;
    r.kv_blocks_total = 64;
    r.backend = "cpu";
    r.n_ctx = 512;
    r.max_batch = 4;
    r.data_endpoint = "tcp://127.0.0.1:5999";
    r.n_layers = 2;
    r.kv_dim = 4;
    r.kv_dtype = "f32";
    m.body_case = HELIUM__WORKER_MSG__BODY_REG;
    m.reg = &r;
    put("wkr-register", 1, &m.base);
    Helium__Load ld = HELIUM__LOAD__INIT;
    Helium__Heartbeat hb = HELIUM__HEARTBEAT__INIT;
    Helium__Heartbeat__CountersEntry ce = HELIUM__HEARTBEAT__COUNTERS_ENTRY__INIT, *cep = &ce;
    ce.key = "hit_tokens";
    ce.value = 12;
    hb.load = &ld;
    hb.n_counters = 1;
    hb.counters = &cep;
    hb.cache_seq = 2;
    m.body_case = HELIUM__WORKER_MSG__BODY_HEARTBEAT;
    m.heartbeat = &hb;
    put("wkr-heartbeat", 1, &m.base);
    Helium__CacheEvents ev = HELIUM__CACHE_EVENTS__INIT;
    ev.n_stored = 3;
    ev.stored = hashes;
    ev.n_removed = 1;
    ev.removed = hashes + 3;
    ev.seq = 1;
    m.body_case = HELIUM__WORKER_MSG__BODY_CACHE_EVENTS;
    m.cache_events = &ev;
    put("wkr-cache-events", 1, &m.base);
    Helium__OpProgress pr = HELIUM__OP_PROGRESS__INIT;
    pr.task_id = 1;
    pr.job_id = "job-1";
    pr.op_id = "summarize";
    pr.text = "Once upon";
    pr.n_ids = 2;
    pr.ids = ids;
    pr.n_generated = 2;
    m.body_case = HELIUM__WORKER_MSG__BODY_PROGRESS;
    m.progress = &pr;
    put("wkr-progress", 1, &m.base);
    Helium__OpResult res = HELIUM__OP_RESULT__INIT;
    res.task_id = 1;
    res.job_id = "job-1";
    res.op_id = "summarize";
    res.text = "Once upon a time";
    res.n_ids = 4;
    res.ids = ids;
    res.prompt_tokens = 20;
    res.computed_tokens = 20;
    res.generated_tokens = 4;
    m.body_case = HELIUM__WORKER_MSG__BODY_RESULT;
    m.result = &res;
    put("wkr-result", 1, &m.base);
    m.body_case = HELIUM__WORKER_MSG__BODY_KV_PAGES;
    m.kv_pages = pages();
    put("wkr-kv-pages", 1, &m.base);
}

static void coord_msgs(void) {
    Helium__CoordMsg m = HELIUM__COORD_MSG__INIT;
    m.protocol_version = HELIUM__PROTOCOL__PROTOCOL_CURRENT;
    Helium__RegisterAck ack = HELIUM__REGISTER_ACK__INIT;
    ack.worker_id = "w1";
    ack.accepted = 1;
    ack.heartbeat_ms = 200;
    m.body_case = HELIUM__COORD_MSG__BODY_REGISTER_ACK;
    m.register_ack = &ack;
    put("crd-register-ack", 2, &m.base);
    Helium__Dispatch d = HELIUM__DISPATCH__INIT;
    Helium__Sampling sp = HELIUM__SAMPLING__INIT;
    Helium__KvPullHint h = HELIUM__KV_PULL_HINT__INIT;
    char *stops[1] = {"\n\n"};
    d.task_id = 1;
    d.job_id = "job-1";
    d.op_id = "summarize";
    d.n_prompt_ids = 6;
    d.prompt_ids = ids;
    d.sampling = &sp;
    d.max_tokens = 8;
    d.n_stop = 1;
    d.stop = stops;
    h.source_worker = "w2";
    h.source_endpoint = "tcp://127.0.0.1:5998";
    h.n_hashes = 2;
    h.hashes = hashes;
    d.pull = &h;
    d.n_pin = 2;
    d.pin = hashes;
    d.pin_tag = "t1";
    d.stream = 1;
    m.body_case = HELIUM__COORD_MSG__BODY_DISPATCH;
    m.dispatch = &d;
    put("crd-dispatch", 2, &m.base);
    Helium__Cancel c = HELIUM__CANCEL__INIT;
    c.job_id = "job-1";
    m.body_case = HELIUM__COORD_MSG__BODY_CANCEL;
    m.cancel = &c;
    put("crd-cancel", 2, &m.base);
    Helium__KvExportRequest x = HELIUM__KV_EXPORT_REQUEST__INIT;
    x.transfer_id = 4;
    x.n_hashes = 3;
    x.hashes = hashes;
    m.body_case = HELIUM__COORD_MSG__BODY_KV_EXPORT;
    m.kv_export = &x;
    put("crd-kv-export", 2, &m.base);
    Helium__KvImport im = HELIUM__KV_IMPORT__INIT;
    im.transfer_id = 5;
    im.pages = pages();
    m.body_case = HELIUM__COORD_MSG__BODY_KV_IMPORT;
    m.kv_import = &im;
    put("crd-kv-import", 2, &m.base);
    Helium__Unpin u = HELIUM__UNPIN__INIT;
    u.tag = "t1";
    m.body_case = HELIUM__COORD_MSG__BODY_UNPIN;
    m.unpin = &u;
    put("crd-unpin", 2, &m.base);
    Helium__PinSteps ps = HELIUM__PIN_STEPS__INIT;
    ps.tag = "t1";
    ps.steps = 3;
    m.body_case = HELIUM__COORD_MSG__BODY_PIN_STEPS;
    m.pin_steps = &ps;
    put("crd-pin-steps", 2, &m.base);
    Helium__CacheResync rs = HELIUM__CACHE_RESYNC__INIT;
    rs.last_seq = 9;
    m.body_case = HELIUM__COORD_MSG__BODY_RESYNC;
    m.resync = &rs;
    put("crd-resync", 2, &m.base);
    Helium__Shutdown sd = HELIUM__SHUTDOWN__INIT;
    sd.drain = 1;
    sd.reason = "test";
    m.body_case = HELIUM__COORD_MSG__BODY_SHUTDOWN;
    m.shutdown = &sd;
    put("crd-shutdown", 2, &m.base);
}

static void peer_msgs(void) {
    Helium__PeerMsg m = HELIUM__PEER_MSG__INIT;
    m.protocol_version = HELIUM__PROTOCOL__PROTOCOL_CURRENT;
    Helium__KvPull pl = HELIUM__KV_PULL__INIT;
    pl.transfer_id = 8;
    pl.n_hashes = 4;
    pl.hashes = hashes;
    pl.requester = "w2";
    m.body_case = HELIUM__PEER_MSG__BODY_PULL;
    m.pull = &pl;
    put("peer-pull", 3, &m.base);
    m.body_case = HELIUM__PEER_MSG__BODY_PAGES;
    m.pages = pages();
    put("peer-pages", 3, &m.base);
    Helium__Error e = HELIUM__ERROR__INIT;
    e.code = HELIUM__ERROR_CODE__ERROR_LIMIT;
    e.message = "too many blocks";
    m.body_case = HELIUM__PEER_MSG__BODY_ERROR;
    m.error = &e;
    put("peer-error", 3, &m.base);
}

int main(int argc, char **argv) {
    if (argc != 3) {
        fprintf(stderr, "usage: mkseeds_wire SRC_DIR OUT_DIR\n");
        return 2;
    }
    out_dir = argv[2];
    submits(argv[1]);
    requests();
    worker_msgs();
    coord_msgs();
    peer_msgs();
    return 0;
}
