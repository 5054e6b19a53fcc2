/* hk_types: the plain-C vocabulary shared by every kernel launcher header.
 *
 * Weight types use ggml's numbering (gguf.h) so a GGUF tensor's type passes
 * through unchanged; KV element types use the KV wire format's numbering
 * (worker/kvwire.h). Every launcher returns 0 or a cudaError_t value (the
 * launch's own error; asynchronous faults surface at the next synchronizing
 * call) and runs on the stream it is given.
 */
#ifndef HELIUM_HK_TYPES_H
#define HELIUM_HK_TYPES_H

#include <stddef.h>
#include <stdint.h>

#include <cuda_runtime_api.h>

#ifdef __cplusplus
extern "C" {
#endif

enum { HK_T_F32 = 0, HK_T_F16 = 1, HK_T_Q8_0 = 8, HK_T_Q4_K = 12, HK_T_BF16 = 30 };
enum { HK_KV_F32 = 0, HK_KV_F16 = 1, HK_KV_BF16 = 2 };

/* Bytes of a row of n elements of weight type t; 0 when t is unknown or n is
 * not a multiple of its block (32 for Q8_0, 256 for Q4_K). */
static inline size_t hk_row_bytes(int t, int64_t n) {
    switch (t) {
    case HK_T_F32: return (size_t)n * 4;
    case HK_T_F16:
    case HK_T_BF16: return (size_t)n * 2;
    case HK_T_Q8_0: return n % 32 ? 0 : (size_t)(n / 32) * 34;
    case HK_T_Q4_K: return n % 256 ? 0 : (size_t)(n / 256) * 144;
    default: return 0;
    }
}
static inline size_t hk_kv_elem_bytes(int kv_type) { return kv_type == HK_KV_F32 ? 4 : 2; }

#ifdef __cplusplus
}
#endif

#endif
