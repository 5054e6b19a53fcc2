/* fuzz_coord: libFuzzer target for the coordinator's frame handlers: the
 * client protocol (cp_on_frame: Request -> SubmitJob, GetJob, ListJobs,
 * Cancel, ClusterStatus) and the worker protocol (wp_on_frame: Register,
 * Heartbeat, CacheEvents, OpProgress, OpResult, ...), followed each time by
 * placement of whatever became ready (place_dispatch_ready).
 *
 * Each input is a sequence of frames [u8 channel][u16 length LE][bytes]:
 * channel bit 0 picks the endpoint (0 client, 1 worker), bits 1-2 one of four
 * peer identities. A fresh coordinator without sockets (coord_core_new) runs
 * every input, its workers reached through a wsend_i that accepts every
 * message and sends nothing (the code under test decides; nothing is
 * mocked in it). Invariants: no crash, no leak, no sanitizer report; every
 * malformed frame is counted, and the coordinator keeps answering: a final
 * ClusterStatus must still be handled.
 */
#include <string.h>

#include "client_proto.h"
#include "coord_impl.h"
#include "fuzz_util.h"
#include "herr.h"
#include "place.h"
#include "worker_proto.h"

static int ws_dispatch(void *ctx, wkr_t *w, const Helium__Dispatch *d) { return 0; }
static void ws_cancel(void *ctx, wkr_t *w, uint64_t task_id, const char *job_id) {}
static void ws_pin_steps(void *ctx, wkr_t *w, const char *tag, uint32_t steps) {}
static void ws_unpin(void *ctx, wkr_t *w, const char *tag) {}
static int ws_resync(void *ctx, wkr_t *w, uint64_t last_seq) { return 0; }
static void ws_register_ack(void *ctx, const uint8_t *ident, size_t ident_len, const Helium__RegisterAck *ack) {}

static char model[4096];

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    const char *p = getenv("HELIUM_FUZZ_BPE");
    if (p && *p) snprintf(model, sizeof model, "%s", p);
    else snprintf(model, sizeof model, "%s/tiny-bpe.gguf", FUZZ_MODEL_DIR);
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    static const char *const policies[] = {"router", "helium", "kvflow", "prefix"};
    coord_config cfg = {.model_path = model, .keep_jobs = 8, .heartbeat_ms = 200, .worker_timeout_ms = 1000,
                        .policy = policies[size % 4], .helium_load_weight = -1, .helium_starve_tokens = -1,
                        .helium_hold_idle = -1, .helium_split = -1, .baseline_pulls = -1, .helium_kv_admit = -1};
    wsend_i ws = {.dispatch = ws_dispatch, .cancel = ws_cancel, .pin_steps = ws_pin_steps, .unpin = ws_unpin,
                  .resync = ws_resync, .register_ack = ws_register_ack};
    coord_t *c = coord_core_new(&cfg, &ws);
    if (!c) {
        fprintf(stderr, "fuzz_coord: %s\n", he_msg());
        abort();
    }
    size_t off = 0;
    int frames = 0;
    while (off + 3 <= size && frames < 64) {
        uint8_t chan = data[off];
        size_t len = (size_t)data[off + 1] | (size_t)data[off + 2] << 8;
        off += 3;
        if (len > size - off) len = size - off;
        uint8_t ident[5] = {0, 'p', 'e', 'e', (uint8_t)('0' + ((chan >> 1) & 3))};
        if (chan & 1) wp_on_frame(c, ident, sizeof ident, data + off, len);
        else cp_on_frame(c, ident, sizeof ident, (chan >> 3) & 1, data + off, len);
        if (c->dirty && jobs_ready_count(c->jobs)) place_dispatch_ready(c);
        off += len;
        frames++;
    }
    /* it still serves */
    uint64_t before = c->st.requests;
    Helium__ClusterStatus cs = HELIUM__CLUSTER_STATUS__INIT;
    Helium__Request rq = HELIUM__REQUEST__INIT;
    rq.protocol_version = HELIUM__PROTOCOL__PROTOCOL_CURRENT;
    rq.body_case = HELIUM__REQUEST__BODY_STATUS;
    rq.status = &cs;
    uint8_t buf[64];
    size_t n = helium__request__pack(&rq, buf);
    cp_on_frame(c, (const uint8_t *)"\0zz", 3, false, buf, n);
    fz_check(c->st.requests == before + 1, "the status request was not handled");
    coord_destroy(&c);
    return 0;
}
