/* kvpage: page gather / scatter with element conversion (hk_kvpage.h).
 * Grid (blocks along the page, n pages); 256 threads; element-wise. */
#include "hk_common.cuh"
#include "hk_kvpage.h"

__global__ void k_gather(const void *pool, int pool_type, int64_t page_elems, const int32_t *pages, void *stage,
                         int stage_type) {
    const int64_t src0 = (int64_t)pages[blockIdx.y] * page_elems, dst0 = (int64_t)blockIdx.y * page_elems;
    for (int64_t e = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; e < page_elems; e += (int64_t)gridDim.x * blockDim.x)
        hk_kv_store1(stage, dst0 + e, stage_type, hk_kv_load(pool, src0 + e, pool_type));
}

__global__ void k_scatter(void *pool, int pool_type, int64_t page_elems, const int32_t *pages, const void *stage,
                          int stage_type) {
    const int64_t dst0 = (int64_t)pages[blockIdx.y] * page_elems, src0 = (int64_t)blockIdx.y * page_elems;
    for (int64_t e = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; e < page_elems; e += (int64_t)gridDim.x * blockDim.x)
        hk_kv_store1(pool, dst0 + e, pool_type, hk_kv_load(stage, src0 + e, stage_type));
}

static dim3 grid_of(int64_t page_elems, int n) {
    int64_t bx = (page_elems + 255) / 256;
    return dim3((unsigned)(bx < 1024 ? bx : 1024), (unsigned)n);
}

extern "C" int hk_kv_gather(const void *pool, int pool_type, int64_t page_elems, const int32_t *pages, int n,
                            void *stage, int stage_type, cudaStream_t st) {
    if (n <= 0 || page_elems <= 0) return 0;
    k_gather<<<grid_of(page_elems, n), 256, 0, st>>>(pool, pool_type, page_elems, pages, stage, stage_type);
    return hk_launch_status();
}

extern "C" int hk_kv_scatter(void *pool, int pool_type, int64_t page_elems, const int32_t *pages, int n,
                             const void *stage, int stage_type, cudaStream_t st) {
    if (n <= 0 || page_elems <= 0) return 0;
    k_scatter<<<grid_of(page_elems, n), 256, 0, st>>>(pool, pool_type, page_elems, pages, stage, stage_type);
    return hk_launch_status();
}
