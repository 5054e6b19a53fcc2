/* cuda_nccl: the NCCL transport (xport.h) between two GPU workers' KV pools.
 *
 * For each peer, a 2-rank communicator made on first use: the puller's offer
 * is ncclGetUniqueId (the token, NCCL_UNIQUE_ID_BYTES, carried in the pull
 * request); both sides join with ncclCommInitRankConfig in non-blocking mode
 * (rank 0 sends, rank 1 receives) and the join completes when
 * ncclCommGetAsyncError stops saying ncclInProgress. A send gathers the pages
 * into a device staging buffer with one kernel (hk_kv_gather) and issues
 * ncclSend inside a group on the link's own stream; a receive issues ncclRecv
 * into staging, then scatters on arrival (hk_kv_scatter). Completion is an
 * event on that stream. abort is ncclCommAbort (never ncclCommDestroy, which
 * can block forever on a dead peer). Pages travel in the pool's element type;
 * both workers' pools must have the same type and geometry (the pull protocol
 * checks; a mismatch goes over ZeroMQ with conversion on import).
 *
 * Not run yet: there is no GPU where this was written (docs/gpu.md);
 * tests/gpu/gpu_nccl.c exercises it on one GPU as far as one GPU allows.
 */
#ifndef HELIUM_CUDA_NCCL_H
#define HELIUM_CUDA_NCCL_H

#include "backend.h"
#include "xport.h"

/* The NCCL transport over the pool of a CUDA backend (be from be_cuda_new).
 * NULL with he_msg() otherwise. */
void *xp_nccl_new(be_t *be);
extern const xp_ops xp_nccl_ops;

#endif
