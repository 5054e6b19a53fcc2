/* wf_proto: converts between common/workflow.h's wf_t and the wire message
 * Helium__Workflow of proto/helium.proto (generated helium.pb-c.h).
 *
 * The two describe the same thing field for field; the only translations are
 * proto3's zeros ("" = unset string, 0 = default number, top_p 0 = 1) and the
 * nesting (wf_t keeps all ops in one pre-order array with parent indices, the
 * proto nests map/loop bodies). wfp_from_proto re-validates everything: a
 * message from the network is never trusted.
 *
 * Messages built by wfp_to_proto are malloc'd throughout, exactly like
 * protobuf_c unpacked ones, so wfp_free (protobuf_c_message_free_unpacked)
 * frees either kind.
 *
 * Errors: an herr code with he_msg(), and he_op() naming the failing
 * operator when there is one; wire/werr.h maps the code to helium.ErrorCode.
 */
#ifndef HELIUM_WF_PROTO_H
#define HELIUM_WF_PROTO_H

#include "helium.pb-c.h"
#include "workflow.h"

/* Builds and validates a wf_t from pb. protocol_version must be 0 (embedded in
 * an envelope already checked) or PROTOCOL_CURRENT, else HE_EPROTO. On error
 * *out is NULL, he_msg() says why and he_op() names the failing operator. */
int wfp_from_proto(const Helium__Workflow *pb, wf_t **out);

/* Builds a new Helium__Workflow (protocol_version = PROTOCOL_CURRENT) from wf.
 * Operator.deps is filled when wf is validated. Free with wfp_free. */
int wfp_to_proto(const wf_t *wf, Helium__Workflow **out);

/* Frees a Workflow from wfp_to_proto or protobuf_c unpack; NULLs *pb. */
void wfp_free(Helium__Workflow **pb);

#endif
