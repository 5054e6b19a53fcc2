/* rpc: heliumctl's request/reply channel to the coordinator.
 *
 * One ZeroMQ DEALER socket connected to the coordinator's client ROUTER. A
 * call packs a helium.Request (protocol_version and a fresh request_id are
 * filled in here), sends it as one frame and waits at most timeout_ms for the
 * Reply carrying the same request_id; replies to earlier, timed-out requests
 * are skipped. ZMQ_LINGER is 0, so a dead coordinator never blocks exit.
 * Replies that fail to unpack, or carry another protocol_version, are errors
 * (HE_EPROTO), never trusted.
 */
#ifndef HELIUM_CTL_RPC_H
#define HELIUM_CTL_RPC_H

#include "helium.pb-c.h"
#include "zauth.h"

typedef struct rpc rpc_t;

/* Connects to endpoint (e.g. "tcp://127.0.0.1:7700"), over CURVE with keys'
 * pair and server key (common/zauth.h) or in the clear if keys is NULL; NULL
 * with he_msg() set if the endpoint is malformed or ZeroMQ fails. */
rpc_t *rpc_new(const char *endpoint, int timeout_ms, const zauth_keys *keys);
void rpc_destroy(rpc_t **self_p);

/* Sends req and waits for its reply. On success *out is a reply to free with
 * helium__reply__free_unpacked(*out, NULL), and 0 is returned (the reply may
 * still carry an Error). On failure: HE_ETIMEOUT (no answer within the
 * timeout), HE_EPROTO (bad reply), HE_ECANCELED (a signal arrived) or
 * HE_EIO, with he_msg() set. Waits at
 * most timeout_ms in total. */
int rpc_call(rpc_t *r, Helium__Request *req, Helium__Reply **out);

/* The two halves of a call, for requests answered more than once (SubmitJob
 * with wait: Reply.more). rpc_send fills req's protocol_version and a fresh
 * request_id and queues it (HE_ETIMEOUT if it cannot within the timeout).
 * rpc_recv waits at most timeout_ms for the next reply to any request and
 * checks its protocol_version; HE_ETIMEOUT if none came, HE_ECANCELED if a
 * signal arrived, HE_EPROTO, HE_EIO. */
int rpc_send(rpc_t *r, Helium__Request *req);
int rpc_recv(rpc_t *r, int timeout_ms, Helium__Reply **out);

const char *rpc_endpoint(const rpc_t *r);
int rpc_timeout_ms(const rpc_t *r);

#endif
