/* gpu_nccl: the NCCL path as far as one GPU allows (tests/gpu/run.sh).
 *
 * Two ranks of one NCCL communicator cannot share a GPU, so on a one-GPU
 * machine this checks:
 *   1. ncclGetUniqueId and a communicator setup (1 rank);
 *   2. the transfer path of the NCCL transport on that communicator: pages of
 *      a CUDA backend's pool gathered into staging with one kernel, ncclSend
 *      and ncclRecv to itself inside one group on a stream of their own, then
 *      scattered into other pages: the pages arrive bit for bit;
 *   3. the 2-rank link of the transport (xport over xp_nccl_ops) between two
 *      backends on the same GPU: NCCL refuses it (duplicate GPU) or it never
 *      joins; either way the control plane must abort the communicator
 *      (ncclCommAbort, without blocking), hand the receiving pages back for
 *      recompute and count the failure. If NCCL does let it join, the pages
 *      must arrive intact.
 * What ran is printed; a machine with two GPUs would test the real pair. */
#include <nccl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "cuda_backend.h"
#include "cuda_nccl.h"
#include "herr.h"
#include "hk_kvpage.h"
#include "model.h"
#include "util.h"
#include "xport.h"

static int64_t now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static be_t *backend(const model_t *m) {
    be_cuda_config cc = {.n_blocks = 64, .min_blocks = 1, .block_size = 16, .kv_type = KVW_F16, .max_tokens = 64,
                         .max_seqs = 4, .max_ctx = 256};
    be_t *be = be_cuda_new(m, &cc);
    if (!be) {
        fprintf(stderr, "FATAL: be_cuda_new: %s\n", he_msg());
        exit(2);
    }
    return be;
}

/* Fills pages of be with random halves; returns the bytes of page 0..n-1 in host. */
static void fill_pages(be_t *be, int n, uint8_t *host) {
    size_t pb = be_kv_page_bytes(be);
    for (int p = 0; p < n; p++) {
        uint16_t *h = (uint16_t *)(host + (size_t)p * pb);
        for (size_t i = 0; i < pb / 2; i++) h[i] = (uint16_t)(0x3000 + gu_rand_u32() % 0x1000);
        be->ops->kv_import(be, p, h);
    }
}

int main(void) {
    if (be_cuda_probe(0)) {
        fprintf(stderr, "gpu_nccl: %s\n", he_msg());
        return 2;
    }
    int nd = 0;
    cudaGetDeviceCount(&nd);
    printf("gpu_nccl: %d GPU(s); NCCL %d\n", nd, NCCL_VERSION_CODE);
    gu_seed(99);
    char path[128];
    snprintf(path, sizeof path, "/tmp/helium-gpu-nccl-%d.gguf", (int)getpid());
    model_t *m = NULL;
    if (gu_mkmodel("tiny", "llama", "f16", 5, path) || model_load(path, &m)) {
        gu_expect("model", false, he_msg());
        return gu_finish("gpu_nccl");
    }
    be_t *be = backend(m);
    const size_t pb = be_kv_page_bytes(be);
    uint8_t *src = malloc(8 * pb), *got = malloc(pb);
    fill_pages(be, 8, src);

    /* 1. id and a communicator */
    ncclUniqueId id;
    ncclComm_t comm = NULL;
    ncclResult_t r = ncclGetUniqueId(&id);
    if (r == ncclSuccess) r = ncclCommInitRank(&comm, 1, id, 0);
    gu_expect("ncclGetUniqueId + 1-rank ncclCommInitRank", r == ncclSuccess, ncclGetErrorString(r));

    /* 2. gather -> send/recv to self in one group on its own stream -> scatter */
    if (r == ncclSuccess) {
        cudaStream_t st;
        GU_CUDA(cudaStreamCreateWithFlags(&st, cudaStreamNonBlocking));
        int32_t from[3] = {1, 4, 6}, to[3] = {20, 21, 40};
        int32_t *dfrom = gu_to_dev(from, sizeof from), *dto = gu_to_dev(to, sizeof to);
        void *s0 = gu_dev_alloc(3 * pb), *s1 = gu_dev_alloc(3 * pb), *pool = NULL;
        int kvt = 0;
        int64_t pe = 0;
        if (be_cuda_pool(be, &pool, &kvt, &pe)) gu_expect("be_cuda_pool", false, he_msg());
        GU_LAUNCH(hk_kv_gather(pool, kvt, pe, dfrom, 3, s0, kvt, st));
        ncclGroupStart();
        ncclSend(s0, 3 * pb, ncclUint8, 0, comm, st);
        ncclRecv(s1, 3 * pb, ncclUint8, 0, comm, st);
        r = ncclGroupEnd();
        GU_LAUNCH(hk_kv_scatter(pool, kvt, pe, dto, 3, s1, kvt, st));
        GU_CUDA(cudaStreamSynchronize(st));
        bool ok = r == ncclSuccess;
        for (int i = 0; i < 3; i++) {
            be->ops->kv_export(be, to[i], got);
            ok &= memcmp(got, src + (size_t)from[i] * pb, pb) == 0;
        }
        gu_expect("gather -> ncclSend/ncclRecv to self in a group -> scatter: 3 pages intact", ok, ncclGetErrorString(r));
        cudaFree(dfrom), cudaFree(dto), cudaFree(s0), cudaFree(s1);
        cudaStreamDestroy(st);
        ncclCommDestroy(comm);
    }

    /* 3. the transport's 2-rank link on one GPU */
    be_t *be2 = backend(m);
    void *ns = xp_nccl_new(be), *np = xp_nccl_new(be2);
    xport_config cfg = {.connect_ms = 20000, .transfer_ms = 20000, .max_failures = 3};
    xport_t *srv = xport_new(&xp_nccl_ops, ns, &cfg), *pul = xport_new(&xp_nccl_ops, np, &cfg);
    if (!srv || !pul) {
        gu_expect("xport over NCCL", false, he_msg());
    } else {
        uint8_t tok[XP_TOKEN_MAX];
        size_t len = sizeof tok;
        int32_t pages[2] = {2, 3}, dst[2] = {30, 31};
        int64_t t0 = now_ms();
        int rc = xport_offer(pul, 1, tok, &len, t0);
        if (!rc) rc = xport_accept(srv, 2, tok, len, t0);
        if (!rc) rc = xport_pull(pul, 1, dst, 2, t0);
        if (!rc) rc = xport_push(srv, 2, pages, 2, t0);
        int rp = 0, rs = 0;
        while (!rc && rp == 0 && now_ms() - t0 < 60000) {
            if (rs == 0) rs = xport_poll(srv, 2, now_ms());
            rp = xport_poll(pul, 1, now_ms());
            usleep(1000);
        }
        xport_stats ps = xport_get_stats(pul);
        char det[256];
        snprintf(det, sizeof det, "offer/accept rc %d, puller poll %d (%s), server poll %d; aborts %lld, invalidated %lld",
                 rc, rp, rp < 0 ? he_name(rp) : "-", rs, (long long)ps.aborts, (long long)ps.invalidated_pages);
        if (rp == 1) {
            be2->ops->kv_export(be2, 30, got);
            gu_expect("2-rank NCCL link on one GPU joined; pages arrived intact",
                      memcmp(got, src + 2 * pb, pb) == 0, det);
        } else {
            gu_expect("2-rank NCCL link on one GPU refused: aborted, pages invalidated, counted",
                      (rc < 0 || rp < 0) && (rc < 0 || (ps.aborts == 1 && ps.invalidated_pages == 2)), det);
        }
    }
    xport_destroy(&srv);
    xport_destroy(&pul);
    be_destroy(&be2);
    be_destroy(&be);
    free(src), free(got);
    model_destroy(&m);
    unlink(path);
    return gu_finish("gpu_nccl");
}
