/* xport: the transport under the KV pull protocol.
 *
 * A pull moves a run of KV pages from a serving worker to a puller. The pull
 * protocol (KvPull / KvPages on the workers' ZeroMQ data sockets) is always
 * the control plane and the fallback data path. A transport may carry the
 * pages instead: NCCL between two GPU workers (worker/cuda/cuda_nccl.h), or
 * a ZeroMQ pair (xport_zmq.c: the CPU-side reference, used by the tests to
 * drive this control plane with injected faults).
 *
 * Per peer, a link goes through
 *   IDLE -> OFFERED (puller: made a rendezvous token, e.g. ncclGetUniqueId,
 *                    carried to the server inside its KvPull)
 *        -> CONNECTING (both ends joining: a 2-rank communicator made on
 *                    first use) -> READY -> transfers ...
 *   an error, or a transfer or join past its deadline -> the link is aborted
 *   at once (ops.abort: ncclCommAbort, never ncclCommDestroy, which can block
 *   forever), the receiver's pages are handed to the invalidate callback (the
 *   call recomputes them), the event is counted, and the link is IDLE again;
 *   after max_failures consecutive failures the peer is DISABLED: its pulls
 *   go over ZeroMQ only (xport_usable() false).
 *
 * Not thread-safe: the worker's main thread drives its links. Peers are
 * identified by a 64-bit id the caller chooses (its peer table index).
 */
#ifndef HELIUM_XPORT_H
#define HELIUM_XPORT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define XP_TOKEN_MAX 256
#define XP_MAX_PEERS 64

typedef enum { XP_IDLE = 0, XP_OFFERED, XP_CONNECTING, XP_READY, XP_SENDING, XP_RECEIVING, XP_DISABLED } xp_state;

/* A transport implementation; impl is its private state. Every function
 * returns 0 or a negative herr code unless said otherwise. */
typedef struct {
    const char *name;
    /* puller: a fresh rendezvous token for peer, *len <= XP_TOKEN_MAX */
    int (*offer)(void *impl, uint64_t peer, uint8_t *token, size_t *len);
    /* joins the link to peer as rank (0: the side that sends pages, 1: the
     * side that receives); may complete later (poll) */
    int (*connect)(void *impl, uint64_t peer, int rank, const uint8_t *token, size_t len);
    /* starts sending pool pages pages[0..n) / receiving into pages[0..n) */
    int (*send)(void *impl, uint64_t peer, const int32_t *pages, int n);
    int (*recv)(void *impl, uint64_t peer, const int32_t *pages, int n);
    /* progress of the pending connect or transfer: 1 done, 0 pending, < 0 herr */
    int (*poll)(void *impl, uint64_t peer);
    /* tears the link down without blocking; the next use starts over */
    void (*abort)(void *impl, uint64_t peer);
    void (*destroy)(void *impl);
} xp_ops;

/* Receives the pages of a failed receive: they hold garbage and must be
 * released, so that the call recomputes them. */
typedef void (*xp_invalidate_fn)(void *ud, uint64_t peer, const int32_t *pages, int n);

typedef struct {
    int64_t connect_ms;        /* a join must complete within this (default 5000) */
    int64_t transfer_ms;       /* a transfer must complete within this (default 2000) */
    int max_failures;          /* consecutive failures before a peer is disabled (default 3) */
    xp_invalidate_fn invalidate;
    void *ud;
} xport_config;

typedef struct {
    int64_t offers, connects;  /* links offered (puller) and joined (both sides) */
    int64_t transfers, pages;  /* completed transfers, pages they moved */
    int64_t aborts;            /* links torn down (errors + timeouts) */
    int64_t timeouts;          /* of which: a deadline passed */
    int64_t errors;            /* of which: the transport reported an error */
    int64_t invalidated_pages; /* received pages handed back for recompute */
    int64_t disabled_peers;    /* peers now on the ZeroMQ fallback for good */
} xport_stats;

typedef struct xport xport_t;

/* Takes ownership of impl (ops->destroy at xport_destroy). NULL with he_msg(). */
xport_t *xport_new(const xp_ops *ops, void *impl, const xport_config *cfg);
void xport_destroy(xport_t **self_p);
const char *xport_name(const xport_t *x);

/* Whether pulls from / to peer may use this transport (not disabled, idle or ready). */
bool xport_usable(const xport_t *x, uint64_t peer);
xp_state xport_state(const xport_t *x, uint64_t peer);

/* Puller: makes the rendezvous token to send inside the KvPull and joins as
 * rank 1 (first use; a READY link is reused and *len is set to 0). */
int xport_offer(xport_t *x, uint64_t peer, uint8_t *token, size_t *len, int64_t now_ms);
/* Server: joins the link the token names as rank 0. */
int xport_accept(xport_t *x, uint64_t peer, const uint8_t *token, size_t len, int64_t now_ms);
/* Starts moving pages: the server sends pool pages, the puller receives into
 * its (freshly allocated) pages. The link must be joined (offer / accept). */
int xport_push(xport_t *x, uint64_t peer, const int32_t *pages, int n, int64_t now_ms);
int xport_pull(xport_t *x, uint64_t peer, const int32_t *pages, int n, int64_t now_ms);

/* Drives peer's link: returns 1 when the pending transfer is complete (the
 * link is READY again), 0 while it is in progress, or a negative herr code
 * when it failed (HE_ETIMEOUT past its deadline): the link was aborted, the
 * pages invalidated (receiver) and the failure counted. */
int xport_poll(xport_t *x, uint64_t peer, int64_t now_ms);
/* Aborts peer's link now (e.g. the pull was cancelled); receiving pages are
 * invalidated. Counted as an abort. */
void xport_abort(xport_t *x, uint64_t peer);

xport_stats xport_get_stats(const xport_t *x);

/* The ZeroMQ reference transport (xport_zmq.c). Pages are read and written
 * through the page store callbacks; page_bytes per page. */
typedef struct {
    size_t page_bytes;
    int (*read_page)(void *ud, int32_t page, void *dst);
    int (*write_page)(void *ud, int32_t page, const void *src);
    void *ud;
} xp_page_store;

/* Faults the ZeroMQ transport injects (tests). */
typedef struct {
    int drop_page;        /* >= 0: the sender skips this page index of every transfer */
    bool corrupt_token;   /* the joining side mangles the token it is given */
    bool fail_send;       /* send reports an error */
    int64_t stall_ms;     /* the sender waits this long before sending (a slow link) */
} xp_zmq_faults;

/* ZeroMQ transport over zctx (a zmq context the caller owns). Tokens are the
 * receiver's bound endpoint (tcp on 127.0.0.1). NULL with he_msg(). */
void *xp_zmq_new(void *zctx, const xp_page_store *store);
extern const xp_ops xp_zmq_ops;
void xp_zmq_set_faults(void *impl, const xp_zmq_faults *f);

#endif
