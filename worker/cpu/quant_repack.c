/* quant_repack: repacks Q4_0, Q4_1, Q5_0, Q5_1 and Q8_0 weight rows, 16 at a
 * time, into the interleaved layout of cpu_quant.h (cq_rp_*) and picks the
 * kernels that read it (quant_rp_avx512.c).
 *
 * The layout puts the same 4 elements of 16 rows side by side, so that one
 * 512-bit vpdpbusd with the activation's 4 quants broadcast yields 16
 * outputs' partial sums (lane = row): a block's exact integer total per row
 * costs 8 instructions for 16 rows, and the f32 work per block (one scale
 * product, one conversion, one fma) is shared by 16 outputs. Repacking keeps
 * every bit of the weights (only the 5-bit types' high bits move into masks,
 * Q8_0's quants gain +128), so results are the dot contract's.
 */
#include <string.h>

#include "quant_kernels.h"

size_t cq_rp_block_bytes(ggml_type t) {
    switch (t) {
    case GGML_T_Q4_0: return 32 + 256;
    case GGML_T_Q4_1: return 64 + 256;
    case GGML_T_Q5_0: return 32 + 256 + 64;
    case GGML_T_Q5_1: return 64 + 256 + 64;
    case GGML_T_Q8_0: return 32 + 512;
    default: return 0;
    }
}

size_t cq_rp_bytes(ggml_type t, int64_t in, int64_t out) {
    size_t groups = (size_t)((out + CQ_RP_ROWS - 1) / CQ_RP_ROWS);
    return groups * (size_t)(in / 32) * cq_rp_block_bytes(t);
}

/* One source block of row r (its d at offset 0, m at 2 for Q4_1 / Q5_1) into
 * group block o. */
static void pack_block(ggml_type t, const uint8_t *b, int r, uint8_t *o) {
    const bool has_m = t == GGML_T_Q4_1 || t == GGML_T_Q5_1;
    memcpy(o + 2 * r, b, 2); /* d */
    if (has_m) memcpy(o + 32 + 2 * r, b + 2, 2);
    uint8_t *q = o + (has_m ? 64 : 32);
    if (t == GGML_T_Q8_0) {
        const int8_t *qs = (const int8_t *)(b + 2);
        for (int j = 0; j < 8; j++)
            for (int i = 0; i < 4; i++) q[64 * j + 4 * r + i] = (uint8_t)(qs[4 * j + i] + 128);
        return;
    }
    const bool q5 = t == GGML_T_Q5_0 || t == GGML_T_Q5_1;
    const uint8_t *qs = b + (has_m ? 4 : 2) + (q5 ? 4 : 0);
    for (int j = 0; j < 4; j++) memcpy(q + 64 * j + 4 * r, qs + 4 * j, 4);
    if (q5) {
        uint32_t qh;
        memcpy(&qh, b + (has_m ? 4 : 2), 4);
        for (int v = 0; v < 8; v++) {
            uint64_t m;
            memcpy(&m, q + 256 + 8 * v, 8);
            m |= (uint64_t)((qh >> (4 * v)) & 0xF) << (4 * r);
            memcpy(q + 256 + 8 * v, &m, 8);
        }
    }
}

void cq_rp_pack(ggml_type t, const void *src, size_t row_bytes, int64_t in, int64_t out, void *dst) {
    const size_t gb = cq_rp_block_bytes(t), sb = ggml_row_size(t, 32);
    const int64_t nb = in / 32, groups = (out + CQ_RP_ROWS - 1) / CQ_RP_ROWS;
    memset(dst, 0, cq_rp_bytes(t, in, out)); /* padding rows: d = 0, quants 0 */
    for (int64_t g = 0; g < groups; g++)
        for (int64_t k = 0; k < nb; k++) {
            uint8_t *o = (uint8_t *)dst + (size_t)(g * nb + k) * gb;
            for (int r = 0; r < CQ_RP_ROWS && g * CQ_RP_ROWS + r < out; r++) {
                const uint8_t *b = (const uint8_t *)src + (size_t)(g * CQ_RP_ROWS + r) * row_bytes + (size_t)k * sb;
                pack_block(t, b, r, o);
            }
        }
}

cq_rp_fn cq_rp_kernel(ggml_type t, cq_level l) {
    if (l < CQ_AVX512) return NULL;
    switch (t) {
    case GGML_T_Q4_0: return cq_rp_q4_0_avx512;
    case GGML_T_Q4_1: return cq_rp_q4_1_avx512;
    case GGML_T_Q5_0: return cq_rp_q5_0_avx512;
    case GGML_T_Q5_1: return cq_rp_q5_1_avx512;
    case GGML_T_Q8_0: return cq_rp_q8_0_avx512;
    default: return NULL;
    }
}
