/* hk_kvpage: KV pages between the pool and a contiguous staging buffer.
 *
 * The staging buffer holds n pages back to back in the KV wire layout
 * (n_layers, 2, block_size, kv_dim) with element type stage_type; the pool's
 * pages have the same layout in pool_type. Gather serves export and NCCL
 * sends, scatter serves import and NCCL receives; a type change converts each
 * element through f32 (to f16 / bf16: round to nearest even), in one kernel. */
#ifndef HELIUM_HK_KVPAGE_H
#define HELIUM_HK_KVPAGE_H

#include "hk_types.h"

#ifdef __cplusplus
extern "C" {
#endif

/* stage (n, page_elems) of stage_type = pool pages pages[0..n) (device ids). */
int hk_kv_gather(const void *pool, int pool_type, int64_t page_elems, const int32_t *pages, int n, void *stage,
                 int stage_type, cudaStream_t st);
/* pool pages pages[0..n) = stage (n, page_elems) of stage_type. */
int hk_kv_scatter(void *pool, int pool_type, int64_t page_elems, const int32_t *pages, int n, const void *stage,
                  int stage_type, cudaStream_t st);

#ifdef __cplusplus
}
#endif

#endif
