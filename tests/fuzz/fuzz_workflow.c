/* fuzz_workflow: libFuzzer target for the JSON workflow parser and validator
 * (common/workflow.c) and the workflow's wire form (wf_proto).
 *
 * Input: a JSON workflow. A parse either fails with a typed herr code and a
 * message, or yields a validated wf_t whose invariants (workflow.h) are then
 * checked: parents precede children, every dependency is an earlier-ordered
 * op of the same scope, the top-level order is a permutation of the
 * top-level ops, the output op exists. The workflow then goes through the
 * wire: wf -> proto -> bytes -> proto -> wf must succeed, keep every op id
 * and kind, and pack to the same bytes again.
 */
#include <string.h>

#include "fuzz_util.h"
#include "helium.pb-c.h"
#include "herr.h"
#include "wf_proto.h"
#include "workflow.h"

static void check_shape(const wf_t *wf) {
    fz_check(wf->n_ops >= 1 && wf->n_ops <= WF_MAX_OPS, "%zu ops", wf->n_ops);
    size_t top = 0;
    for (size_t i = 0; i < wf->n_ops; i++) {
        const wf_op *op = wf->ops[i];
        fz_check(op->parent < (int)i, "op %zu has parent %d", i, op->parent);
        fz_check(wf_find(wf, op->id) == (int)i, "op '%s' not found at %zu", op->id, i);
        if (op->parent < 0) top++;
        for (size_t d = 0; d < op->n_deps; d++) {
            int j = op->deps[d];
            fz_check(j >= 0 && (size_t)j < wf->n_ops && j != (int)i, "op '%s' dep %d", op->id, j);
            fz_check(wf->ops[j]->parent == op->parent, "op '%s' depends on '%s' in another scope", op->id,
                     wf->ops[j]->id);
            if (d) fz_check(op->deps[d - 1] < j, "op '%s' deps not ascending", op->id);
        }
    }
    fz_check(wf->n_order == top, "order has %zu of %zu top-level ops", wf->n_order, top);
    for (size_t k = 0; k < wf->n_order; k++) {
        int i = wf->order[k];
        fz_check(i >= 0 && (size_t)i < wf->n_ops && wf->ops[i]->parent < 0, "order[%zu] = %d", k, i);
        for (size_t d = 0; d < wf->ops[i]->n_deps; d++) {
            int j = wf->ops[i]->deps[d];
            bool before = false;
            for (size_t m = 0; m < k; m++) before |= wf->order[m] == j;
            fz_check(before, "op '%s' ordered before its dep '%s'", wf->ops[i]->id, wf->ops[j]->id);
        }
    }
    fz_check(wf->output >= 0 && (size_t)wf->output < wf->n_ops, "output %d", wf->output);
}

static uint8_t *pack(const wf_t *wf, size_t *len) {
    Helium__Workflow *pb = NULL;
    int rc = wfp_to_proto(wf, &pb);
    if (rc == HE_ENOMEM) return NULL;
    fz_check(rc == 0 && pb, "to_proto failed: %s", he_msg());
    *len = helium__workflow__get_packed_size(pb);
    uint8_t *buf = malloc(*len ? *len : 1);
    fz_check(buf, "oom");
    fz_check(helium__workflow__pack(pb, buf) == *len, "packed size differs");
    wfp_free(&pb);
    return buf;
}

static void check_wire(const wf_t *wf) {
    size_t len = 0;
    uint8_t *buf = pack(wf, &len);
    if (!buf) return;
    Helium__Workflow *pb = helium__workflow__unpack(NULL, len, buf);
    fz_check(pb, "our own %zu bytes do not unpack", len);
    wf_t *back = NULL;
    int rc = wfp_from_proto(pb, &back);
    fz_check(rc == 0 && back, "our own workflow is refused: %s", he_msg());
    fz_check(back->n_ops == wf->n_ops, "%zu ops came back of %zu", back->n_ops, wf->n_ops);
    for (size_t i = 0; i < wf->n_ops; i++) {
        fz_check(strcmp(back->ops[i]->id, wf->ops[i]->id) == 0, "op %zu: '%s' came back as '%s'", i, wf->ops[i]->id,
                 back->ops[i]->id);
        fz_check(back->ops[i]->kind == wf->ops[i]->kind && back->ops[i]->parent == wf->ops[i]->parent,
                 "op '%s' changed kind or parent", wf->ops[i]->id);
    }
    fz_check(back->output == wf->output, "output %d came back as %d", wf->output, back->output);
    size_t len2 = 0;
    uint8_t *buf2 = pack(back, &len2);
    if (buf2) {
        fz_check(len2 == len && memcmp(buf, buf2, len) == 0, "second packing differs (%zu vs %zu bytes)", len,
                 len2);
        free(buf2);
    }
    wf_destroy(&back);
    helium__workflow__free_unpacked(pb, NULL);
    free(buf);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    wf_t *wf = NULL;
    int rc = wf_parse_json((const char *)data, size, &wf);
    if (rc < 0) {
        fz_check(wf == NULL, "workflow returned with error %d", rc);
        fz_check(he_msg()[0], "error %d without a message", rc);
        return 0;
    }
    fz_check(wf && wf->valid, "parse returned %d without a valid workflow", rc);
    check_shape(wf);
    check_wire(wf);
    wf_destroy(&wf);
    return 0;
}
