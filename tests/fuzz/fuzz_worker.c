/* fuzz_worker: libFuzzer target for a worker's frame handlers: CoordMsg from
 * the coordinator (srv_on_coord_frame: Dispatch, Cancel, KvExportRequest,
 * KvImport with KV pages, Unpin, PinSteps, CacheResync, Shutdown) and
 * PeerMsg from peers (pull_on_data_frame: KvPull and pushed KvPages;
 * pull_on_peer_reply: the pages or error answering our pull), with the real
 * engine of the tiny model behind them (KV pages really imported).
 *
 * Input: frames [u8 channel][u16 length LE][bytes], channel % 3 picks the
 * handler (0 coordinator, 1 data endpoint, 2 reply from peer 0, once a
 * pull opened it). The worker's sockets lead nowhere (an unconnected DEALER
 * for the coordinator, an unbound data ROUTER): what it sends fails and is
 * counted (send_errors), as when a peer is gone. After each input every task is canceled and freed and
 * every pin dropped, so inputs do not leak into each other (the KV cache
 * keeps what was imported, as a running worker would).
 *
 * FUZZ_WORKER_LOG=1 keeps the worker's log (debug level) on stderr.
 * FUZZ_WORKER_SEEDS=DIR writes seeds with this model's real KV geometry
 * (valid KvImport and PeerMsg pages with chained hashes, a Dispatch with its
 * prompt ids and a pull hint) into DIR and exits.
 */
#include <string.h>

#include "blockhash.h"
#include "fuzz_util.h"
#include "herr.h"
#include "net.h"
#include <zmq.h>

static srv_t S;

static void put_seed(const char *dir, const char *name, const uint8_t *const *frames, const size_t *lens,
                     const uint8_t *chans, int n) {
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "wb");
    fz_check(f, "cannot write %s", path);
    for (int i = 0; i < n; i++) {
        uint8_t h[3] = {chans[i], (uint8_t)lens[i], (uint8_t)(lens[i] >> 8)};
        fwrite(h, 1, 3, f);
        fwrite(frames[i], 1, lens[i], f);
    }
    fclose(f);
}

static uint8_t *pack_coord(Helium__CoordMsg *m, size_t *n) {
    m->protocol_version = SRV_PROTO;
    *n = helium__coord_msg__get_packed_size(m);
    uint8_t *b = malloc(*n);
    helium__coord_msg__pack(m, b);
    return b;
}

static uint8_t *pack_peer(Helium__PeerMsg *m, size_t *n) {
    m->protocol_version = SRV_PROTO;
    *n = helium__peer_msg__get_packed_size(m);
    uint8_t *b = malloc(*n);
    helium__peer_msg__pack(m, b);
    return b;
}

static void write_seeds(const char *dir) {
    int32_t bs = S.bs, toks[2 * 64];
    fz_check(bs <= 64, "block size %d", bs);
    for (int i = 0; i < 2 * bs; i++) toks[i] = 10 + i;
    uint64_t h1 = bh_chain(S.m->root_hash, toks, bs), h2 = bh_chain(h1, toks + bs, bs);
    uint8_t *data = calloc(2, S.page_bytes);
    for (size_t i = 0; i < 2 * S.page_bytes / 4; i++) ((float *)data)[i] = (float)(i % 7) * 0.25f;
    Helium__KvPage p1 = HELIUM__KV_PAGE__INIT, p2 = HELIUM__KV_PAGE__INIT, *pp[2] = {&p1, &p2};
    p1.hash = h1;
    p1.parent = S.m->root_hash;
    p1.n_tokens = (size_t)bs;
    p1.tokens = toks;
    p1.data = (ProtobufCBinaryData){S.page_bytes, data};
    p2.hash = h2;
    p2.parent = h1;
    p2.data = (ProtobufCBinaryData){S.page_bytes, data + S.page_bytes};
    Helium__KvPages kp = HELIUM__KV_PAGES__INIT;
    kp.protocol_version = SRV_PROTO;
    kp.transfer_id = 1;
    kp.model_root = S.m->root_hash;
    kp.n_layers = S.geom.n_layers;
    kp.kv_dim = S.geom.kv_dim;
    kp.block_size = (uint32_t)bs;
    kp.dtype = "f32";
    kp.n_pages = 2;
    kp.pages = pp;
    kp.last = true;
    Helium__KvImport im = HELIUM__KV_IMPORT__INIT;
    im.transfer_id = 1;
    im.pages = &kp;
    Helium__CoordMsg cm = HELIUM__COORD_MSG__INIT;
    cm.body_case = HELIUM__COORD_MSG__BODY_KV_IMPORT;
    cm.kv_import = &im;
    size_t n[4];
    uint8_t *f[4];
    uint8_t ch[4];
    f[0] = pack_coord(&cm, &n[0]);
    ch[0] = 0;
    put_seed(dir, "kv-import", (const uint8_t *const *)f, n, ch, 1);
    Helium__PeerMsg pm = HELIUM__PEER_MSG__INIT;
    pm.body_case = HELIUM__PEER_MSG__BODY_PAGES;
    pm.pages = &kp;
    f[1] = pack_peer(&pm, &n[1]);
    ch[1] = 1;
    put_seed(dir, "peer-pages", (const uint8_t *const *)f + 1, n + 1, ch + 1, 1);
    /* pages pushed, then a pull for them and an export of them */
    uint64_t hs[2] = {h1, h2};
    Helium__KvPull pl = HELIUM__KV_PULL__INIT;
    pl.transfer_id = 2;
    pl.n_hashes = 2;
    pl.hashes = hs;
    pl.requester = "w2";
    Helium__PeerMsg pq = HELIUM__PEER_MSG__INIT;
    pq.body_case = HELIUM__PEER_MSG__BODY_PULL;
    pq.pull = &pl;
    f[2] = pack_peer(&pq, &n[2]);
    ch[2] = 1;
    Helium__KvExportRequest xr = HELIUM__KV_EXPORT_REQUEST__INIT;
    xr.transfer_id = 3;
    xr.n_hashes = 2;
    xr.hashes = hs;
    Helium__CoordMsg cx = HELIUM__COORD_MSG__INIT;
    cx.body_case = HELIUM__COORD_MSG__BODY_KV_EXPORT;
    cx.kv_export = &xr;
    f[3] = pack_coord(&cx, &n[3]);
    ch[3] = 0;
    put_seed(dir, "import-pull-export", (const uint8_t *const *)f, n, ch, 4);
    /* a dispatch of the same prompt with a pull hint from peer 0, then its pages as the reply */
    Helium__KvPullHint hint = HELIUM__KV_PULL_HINT__INIT;
    hint.source_worker = "w2";
    hint.source_endpoint = "tcp://127.0.0.1:1";
    hint.n_hashes = 2;
    hint.hashes = hs;
    Helium__Dispatch d = HELIUM__DISPATCH__INIT;
    d.task_id = 7;
    d.job_id = "job-1";
    d.op_id = "a";
    d.attempt = 1;
    d.n_prompt_ids = (size_t)(2 * bs + 3);
    int32_t prompt[2 * 64 + 3];
    memcpy(prompt, toks, sizeof(int32_t) * (size_t)(2 * bs));
    prompt[2 * bs] = 5, prompt[2 * bs + 1] = 6, prompt[2 * bs + 2] = 7;
    d.prompt_ids = prompt;
    d.max_tokens = 4;
    d.pull = &hint;
    d.n_pin = 2;
    d.pin = hs;
    d.pin_tag = "t1";
    d.stream = true;
    Helium__CoordMsg cd = HELIUM__COORD_MSG__INIT;
    cd.body_case = HELIUM__COORD_MSG__BODY_DISPATCH;
    cd.dispatch = &d;
    uint8_t *g[3];
    size_t gn[3];
    uint8_t gc[3] = {0, 2, 0};
    g[0] = pack_coord(&cd, &gn[0]);
    kp.transfer_id = 1; /* our first pull's transfer id */
    g[1] = pack_peer(&pm, &gn[1]);
    Helium__Unpin un = HELIUM__UNPIN__INIT;
    un.tag = "t1";
    Helium__CoordMsg cu = HELIUM__COORD_MSG__INIT;
    cu.body_case = HELIUM__COORD_MSG__BODY_UNPIN;
    cu.unpin = &un;
    g[2] = pack_coord(&cu, &gn[2]);
    put_seed(dir, "dispatch-pull-reply-unpin", (const uint8_t *const *)g, gn, gc, 3);
    for (int i = 0; i < 4; i++) free(f[i]);
    for (int i = 0; i < 3; i++) free(g[i]);
    free(data);
}

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    static char model[4096];
    const char *p = getenv("HELIUM_FUZZ_BPE");
    if (p && *p) snprintf(model, sizeof model, "%s", p);
    else snprintf(model, sizeof model, "%s/tiny-bpe.gguf", FUZZ_MODEL_DIR);
    clog_set_level(getenv("FUZZ_WORKER_LOG") ? CLOG_DEBUG : CLOG_ERROR); /* FUZZ_WORKER_LOG=1: see what it does */
    S.o.model_path = model;
    S.o.ec = (eng_config){.n_threads = 1, .n_ctx = 256, .n_blocks = 64};
    snprintf(S.id, sizeof S.id, "fz");
    fz_check(model_load(model, &S.m) == 0, "cannot load %s: %s", model, he_msg());
    S.e = eng_new(S.m, NULL, &S.o.ec);
    fz_check(S.e, "cannot start the engine: %s", he_msg());
    S.bs = eng_block_size(S.e);
    S.page_bytes = eng_kv_page_bytes(S.e);
    S.geom = (kvs_geom){.model_root = S.m->root_hash, .n_layers = (uint32_t)S.m->hp.n_layers,
                        .kv_dim = (uint32_t)S.m->hp.kv_dim, .block_size = (uint32_t)S.bs,
                        .page_bytes = S.page_bytes, .protocol_version = SRV_PROTO};
    eng_set_cache_events(S.e, csync_on_event, &S);
    S.peers = calloc(SRV_MAX_PEERS, sizeof *S.peers);
    /* real sockets that lead nowhere: an unconnected DEALER to the
     * coordinator and an unbound data ROUTER; sends fail as to a gone peer */
    int zero = 0;
    S.zctx = zmq_ctx_new();
    S.coord = zmq_socket(S.zctx, ZMQ_DEALER);
    S.data = zmq_socket(S.zctx, ZMQ_ROUTER);
    fz_check(S.peers && S.coord && S.data, "cannot create sockets");
    zmq_setsockopt(S.coord, ZMQ_LINGER, &zero, sizeof zero);
    zmq_setsockopt(S.data, ZMQ_LINGER, &zero, sizeof zero);
    S.registered = true;
    S.hb_ms = 200;
    const char *seeds = getenv("FUZZ_WORKER_SEEDS");
    if (seeds && *seeds) {
        write_seeds(seeds);
        exit(0);
    }
    return 0;
}

/* Cancels and frees every task, drops every pin: the next input starts clean. */
static void reset(void) {
    for (task_t *t = S.tasks; t; t = t->next)
        if (t->submitted) (void)eng_cancel(S.e, t->eng_id);
    task_drain_results(&S);
    while (S.tasks) task_free(&S, S.tasks);
    pins_drop_all(&S);
    csync_flush(&S);
    for (int i = 0; i < S.n_peers; i++) pull_peer_release(&S, i);
    S.next_xfer = 0; /* each input's first pull is transfer 1, as the seeds say */
    S.stop = S.draining = false;
    S.registered = true;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    size_t off = 0;
    int frames = 0;
    while (off + 3 <= size && frames < 32) {
        uint8_t chan = data[off];
        size_t len = (size_t)data[off + 1] | (size_t)data[off + 2] << 8;
        off += 3;
        if (len > size - off) len = size - off;
        switch (chan % 3) {
        case 0: srv_on_coord_frame(&S, data + off, len); break;
        case 1: pull_on_data_frame(&S, "\0peer", 5, chan & 4, data + off, len); break;
        default:
            if (S.n_peers > 0) pull_on_peer_reply(&S, 0, data + off, len); /* a pull started peer 0 */
            break;
        }
        off += len;
        frames++;
    }
    reset();
    fz_check(S.n_tasks == 0 && S.n_tags == 0, "%d tasks and %d tags left", S.n_tasks, S.n_tags);
    return 0;
}
