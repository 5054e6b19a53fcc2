/* fuzz_wire: libFuzzer target for the decoding every network frame goes
 * through before a handler sees it: the nesting guard (coordinator/pbcheck.c),
 * protobuf-c's unpacker for each of the four envelopes (Request from
 * clients, WorkerMsg from workers, CoordMsg from the coordinator, PeerMsg
 * with KV pulls and pages between workers) and, for a submitted workflow,
 * the converter that re-validates it (wfp_from_proto).
 *
 * Input: one selector byte (envelope = byte % 4), then the frame. Invariants:
 * a frame the guard accepts never overflows the unpacker's stack (ASan would
 * report it), and a frame that unpacks packs again to bytes that unpack and
 * pack to the same bytes (what we forward or journal is stable).
 */
#include <string.h>

#include "fuzz_util.h"
#include "helium.pb-c.h"
#include "herr.h"
#include "pbcheck.h"
#include "werr.h"
#include "wf_proto.h"
#include "workflow.h"

#define MAX_DEPTH 24 /* the coordinator's COORD_MAX_DEPTH */

static const ProtobufCMessageDescriptor *const envelopes[4] = {
    &helium__request__descriptor,
    &helium__worker_msg__descriptor,
    &helium__coord_msg__descriptor,
    &helium__peer_msg__descriptor,
};

static void check_repack(const ProtobufCMessageDescriptor *d, const ProtobufCMessage *m) {
    size_t n1 = protobuf_c_message_get_packed_size(m);
    uint8_t *b1 = malloc(n1 ? n1 : 1);
    if (!b1) return;
    fz_check(protobuf_c_message_pack(m, b1) == n1, "%s: packed size differs", d->name);
    ProtobufCMessage *m2 = protobuf_c_message_unpack(d, NULL, n1, b1);
    fz_check(m2, "%s: our own %zu packed bytes do not unpack", d->name, n1);
    size_t n2 = protobuf_c_message_get_packed_size(m2);
    uint8_t *b2 = malloc(n2 ? n2 : 1);
    fz_check(b2, "oom");
    fz_check(protobuf_c_message_pack(m2, b2) == n2, "%s: packed size differs", d->name);
    fz_check(n1 == n2 && memcmp(b1, b2, n1) == 0, "%s: repacking is not stable (%zu vs %zu bytes)", d->name, n1,
             n2);
    protobuf_c_message_free_unpacked(m2, NULL);
    free(b1);
    free(b2);
}

static void check_submit(const Helium__Request *rq) {
    if (rq->body_case != HELIUM__REQUEST__BODY_SUBMIT || !rq->submit || !rq->submit->workflow) return;
    wf_t *wf = NULL;
    int rc = wfp_from_proto(rq->submit->workflow, &wf);
    if (rc < 0) {
        fz_check(!wf, "workflow returned with error %d", rc);
        fz_check(he_msg()[0], "error %d without a message", rc);
        (void)werr_code(rc);
        return;
    }
    fz_check(wf && wf->valid, "accepted workflow is not valid");
    wf_destroy(&wf);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 1) return 0;
    const ProtobufCMessageDescriptor *d = envelopes[data[0] % 4];
    data++;
    size--;
    if (!pb_depth_ok(d, data, size, MAX_DEPTH)) return 0;
    ProtobufCMessage *m = protobuf_c_message_unpack(d, NULL, size, data);
    if (!m) return 0;
    if (d == &helium__request__descriptor) check_submit((const Helium__Request *)m);
    check_repack(d, m);
    protobuf_c_message_free_unpacked(m, NULL);
    return 0;
}
