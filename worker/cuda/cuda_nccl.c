/* cuda_nccl: the NCCL transport; see cuda_nccl.h. One link per peer in a
 * fixed table; each link owns its communicator, stream, completion event and
 * staging buffer (grown on demand, kept across transfers). */
#include "cuda_nccl.h"

#include <nccl.h>
#include <stdlib.h>
#include <string.h>

#include "cuda_impl.h"
#include "herr.h"
#include "hk_check.h"
#include "hk_kvpage.h"

enum { PH_NONE = 0, PH_JOIN, PH_READY, PH_SEND, PH_RECV, PH_RECV_ARRIVING };

typedef struct {
    bool used;
    uint64_t peer;
    int rank;
    int phase;
    ncclComm_t comm;
    cudaStream_t st;
    cudaEvent_t done;
    void *staging;
    size_t staging_bytes;
    int32_t *d_pages;      /* (cap) device copy of the transfer's page ids */
    bool recorded;         /* the completion event is recorded behind the transfer */
    int cap, n;
} nlink;

typedef struct {
    be_t *be;
    cu_be *C;
    size_t page_bytes;
    nlink links[XP_MAX_PEERS];
} nx;

void *xp_nccl_new(be_t *be) {
    if (!be || !be->impl || be->ops != cu_ops_of()) {
        he_set(HE_EINVAL, "nccl transport: not a CUDA backend");
        return NULL;
    }
    nx *x = calloc(1, sizeof *x);
    if (!x) {
        he_set(HE_ENOMEM, "nccl transport: out of memory");
        return NULL;
    }
    x->be = be;
    x->C = be->impl;
    x->page_bytes = be_kv_page_bytes(be);
    return x;
}

static nlink *nfind(nx *x, uint64_t peer, bool create) {
    for (int i = 0; i < XP_MAX_PEERS; i++)
        if (x->links[i].used && x->links[i].peer == peer) return &x->links[i];
    if (!create) return NULL;
    for (int i = 0; i < XP_MAX_PEERS; i++)
        if (!x->links[i].used) {
            memset(&x->links[i], 0, sizeof x->links[i]);
            x->links[i].used = true;
            x->links[i].peer = peer;
            return &x->links[i];
        }
    return NULL;
}

/* Releases everything of l but the staging buffer, aborting its communicator. */
static void nreset(nlink *l) {
    if (l->comm) ncclCommAbort(l->comm);
    if (l->st) cudaStreamDestroy(l->st);
    if (l->done) cudaEventDestroy(l->done);
    l->comm = NULL;
    l->st = NULL;
    l->done = NULL;
    l->phase = PH_NONE;
    l->n = 0;
    l->recorded = false;
}

static int n_offer(void *impl, uint64_t peer, uint8_t *token, size_t *len) {
    if (*len < sizeof(ncclUniqueId)) return he_set(HE_ELIMIT, "nccl transport: token buffer too small");
    ncclUniqueId id;
    NCCL_CHECK(ncclGetUniqueId(&id));
    memcpy(token, &id, sizeof id);
    *len = sizeof id;
    return 0;
}

static int n_connect(void *impl, uint64_t peer, int rank, const uint8_t *token, size_t len) {
    nx *x = impl;
    if (len != sizeof(ncclUniqueId)) return he_set(HE_EPROTO, "nccl transport: token of %zu bytes", len);
    nlink *l = nfind(x, peer, true);
    if (!l) return he_set(HE_ELIMIT, "nccl transport: too many peers");
    nreset(l);
    CUDA_CHECK(cudaSetDevice(x->C->device));
    CUDA_CHECK(cudaStreamCreateWithFlags(&l->st, cudaStreamNonBlocking));
    CUDA_CHECK(cudaEventCreateWithFlags(&l->done, cudaEventDisableTiming));
    ncclUniqueId id;
    memcpy(&id, token, sizeof id);
    ncclConfig_t cfg = NCCL_CONFIG_INITIALIZER;
    cfg.blocking = 0; /* joins and aborts never block the worker's loop */
    NCCL_CHECK(ncclCommInitRankConfig(&l->comm, 2, id, rank, &cfg));
    l->rank = rank;
    l->phase = PH_JOIN;
    return 0;
}

/* Stages the page ids of a transfer on the device and sizes staging. */
static int prepare(nx *x, nlink *l, const int32_t *pages, int n) {
    if (l->phase != PH_READY) return he_set(HE_EINVAL, "nccl transport: link to %llu not ready", (unsigned long long)l->peer);
    size_t bytes = (size_t)n * x->page_bytes;
    if (bytes > l->staging_bytes) {
        if (l->staging) cudaFree(l->staging);
        l->staging = NULL;
        l->staging_bytes = 0;
        CUDA_CHECK(cudaMalloc(&l->staging, bytes));
        l->staging_bytes = bytes;
    }
    if (n > l->cap) {
        if (l->d_pages) cudaFree(l->d_pages);
        l->d_pages = NULL;
        l->cap = 0;
        CUDA_CHECK(cudaMalloc((void **)&l->d_pages, sizeof(int32_t) * (size_t)n));
        l->cap = n;
    }
    for (int i = 0; i < n; i++)
        if (pages[i] < 0 || pages[i] >= x->be->n_blocks)
            return he_set(HE_EINVAL, "nccl transport: page %d outside the pool", pages[i]);
    CUDA_CHECK(cudaMemcpyAsync(l->d_pages, pages, sizeof(int32_t) * (size_t)n, cudaMemcpyHostToDevice, l->st));
    l->n = n;
    return 0;
}

static int n_send(void *impl, uint64_t peer, const int32_t *pages, int n) {
    nx *x = impl;
    nlink *l = nfind(x, peer, false);
    if (!l) return he_set(HE_EINVAL, "nccl transport: no link to %llu", (unsigned long long)peer);
    int rc = prepare(x, l, pages, n);
    if (rc) return rc;
    cu_be *C = x->C;
    int k = hk_kv_gather(C->pool, C->kv_type, C->page_elems, l->d_pages, n, l->staging, C->kv_type, l->st);
    if (k) return he_set(HE_EIO, "nccl transport: gather: %s", cudaGetErrorString((cudaError_t)k));
    NCCL_CHECK(ncclGroupStart());
    NCCL_CHECK(ncclSend(l->staging, (size_t)n * x->page_bytes, ncclUint8, 1 - l->rank, l->comm, l->st));
    NCCL_CHECK(ncclGroupEnd());
    l->phase = PH_SEND;
    return 0;
}

static int n_recv(void *impl, uint64_t peer, const int32_t *pages, int n) {
    nx *x = impl;
    nlink *l = nfind(x, peer, false);
    if (!l) return he_set(HE_EINVAL, "nccl transport: no link to %llu", (unsigned long long)peer);
    int rc = prepare(x, l, pages, n);
    if (rc) return rc;
    NCCL_CHECK(ncclGroupStart());
    NCCL_CHECK(ncclRecv(l->staging, (size_t)n * x->page_bytes, ncclUint8, 1 - l->rank, l->comm, l->st));
    NCCL_CHECK(ncclGroupEnd());
    l->phase = PH_RECV;
    return 0;
}

/* The communicator's state: 1 idle and healthy, 0 still enqueuing / joining, < 0 error. */
static int comm_ok(nlink *l) {
    ncclResult_t a = ncclSuccess;
    ncclResult_t r = ncclCommGetAsyncError(l->comm, &a);
    if (r != ncclSuccess) return he_set(HE_EIO, "NCCL error %s in ncclCommGetAsyncError", ncclGetErrorString(r));
    if (a == ncclInProgress) return 0;
    if (a != ncclSuccess) return he_set(HE_EIO, "NCCL error %s on the link", ncclGetErrorString(a));
    return 1;
}

static int n_poll(void *impl, uint64_t peer) {
    nx *x = impl;
    nlink *l = nfind(x, peer, false);
    if (!l || !l->comm) return he_set(HE_EINVAL, "nccl transport: poll of no link");
    int c = comm_ok(l);
    if (c <= 0) return c; /* joining or enqueuing (0), or the communicator failed */
    if (l->phase == PH_JOIN) l->phase = PH_READY;
    if (l->phase == PH_READY) return 1;
    if (l->phase == PH_RECV) { /* the receive is enqueued: scatter behind it */
        cu_be *C = x->C;
        int k = hk_kv_scatter(C->pool, C->kv_type, C->page_elems, l->d_pages, l->n, l->staging, C->kv_type, l->st);
        if (k) return he_set(HE_EIO, "nccl transport: scatter: %s", cudaGetErrorString((cudaError_t)k));
        l->phase = PH_RECV_ARRIVING;
    }
    if (!l->recorded) { /* everything of the transfer is on the stream: mark its end */
        CUDA_CHECK(cudaEventRecord(l->done, l->st));
        l->recorded = true;
    }
    cudaError_t e = cudaEventQuery(l->done);
    if (e == cudaErrorNotReady) return 0;
    if (e != cudaSuccess) return he_set(HE_EIO, "CUDA error %s on the transfer stream", cudaGetErrorString(e));
    l->phase = PH_READY;
    l->recorded = false;
    return 1;
}

static void n_abort(void *impl, uint64_t peer) {
    nlink *l = nfind(impl, peer, false);
    if (l) nreset(l);
}

static void n_destroy(void *impl) {
    nx *x = impl;
    for (int i = 0; i < XP_MAX_PEERS; i++) {
        nlink *l = &x->links[i];
        if (!l->used) continue;
        nreset(l);
        if (l->staging) cudaFree(l->staging);
        if (l->d_pages) cudaFree(l->d_pages);
    }
    free(x);
}

const xp_ops xp_nccl_ops = {
    .name = "nccl",
    .offer = n_offer,
    .connect = n_connect,
    .send = n_send,
    .recv = n_recv,
    .poll = n_poll,
    .abort = n_abort,
    .destroy = n_destroy,
};
