/* quant_repack: repacks Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q4_K and Q6_K weight rows, 16 at a
 * time, into the interleaved layout of cpu_quant.h (cq_rp_*) and picks the
 * kernels that read it (quant_rp_avx512.c, quant_rp_avx2.c).
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
    case GGML_T_Q4_K: return 64 + 128 + 128 + 2048;
    case GGML_T_Q6_K: return 32 + 256 + 256 + 4096;
    default: return 0;
    }
}

static int64_t rp_blck(ggml_type t) { return t == GGML_T_Q4_K || t == GGML_T_Q6_K ? QK_K : 32; }

size_t cq_rp_bytes(ggml_type t, int64_t in, int64_t out) {
    size_t groups = (size_t)((out + CQ_RP_ROWS - 1) / CQ_RP_ROWS);
    return groups * (size_t)(in / rp_blck(t)) * cq_rp_block_bytes(t);
}

/* Q4_K group block: d (32), dmin (32), scales sc[j][r] (8 x 16), mins as
 * pairs mn[p][2r + h] = min 2p + h of row r (4 x 32), then for each pair p
 * of sub-blocks 8 chunks of 16 rows x 4 bytes, chunk i = qs[32p + 4i ..]
 * (low nibbles: sub-block 2p, high: 2p + 1). */
static void pack_q4_K(const cq_block_q4_K *b, int r, uint8_t *o) {
    memcpy(o + 2 * r, &b->d, 2);
    memcpy(o + 32 + 2 * r, &b->dmin, 2);
    for (int j = 0; j < 8; j++) {
        uint8_t sc, mn;
        cq_scale_min_k4(j, b->scales, &sc, &mn);
        o[64 + 16 * j + r] = sc;
        o[192 + 32 * (j / 2) + 2 * r + (j & 1)] = mn;
    }
    for (int p = 0; p < 4; p++)
        for (int i = 0; i < 8; i++) memcpy(o + 320 + 512 * p + 64 * i + 4 * r, b->qs + 32 * p + 4 * i, 4);
}

/* Q6_K group block: d (32), scales sc[g][r] (16 x 16, int8), scale pairs
 * sp[p][2r + h] = scale 2p + h of row r (8 x 32), then the 6-bit quants
 * unpacked to bytes (0..63): for each 16-element sub-block g 4 chunks of 16
 * rows x 4 bytes, chunk i = elements 16g + 4i .. 16g + 4i + 3. */
static void pack_q6_K(const cq_block_q6_K *b, int r, uint8_t *o) {
    memcpy(o + 2 * r, &b->d, 2);
    for (int g = 0; g < 16; g++) {
        o[32 + 16 * g + r] = (uint8_t)b->scales[g];
        o[288 + 32 * (g / 2) + 2 * r + (g & 1)] = (uint8_t)b->scales[g];
    }
    for (int e = 0; e < QK_K; e++) {
        int h = e / 128, p = e % 128, g = p / 32, l = p % 32;
        uint8_t lb = b->ql[64 * h + 32 * (g & 1) + l];
        int lo = g >= 2 ? lb >> 4 : lb & 0xF;
        int hi = (b->qh[32 * h + l] >> (2 * g)) & 3;
        o[544 + 256 * (e / 16) + 64 * ((e % 16) / 4) + 4 * r + e % 4] = (uint8_t)(lo | (hi << 4));
    }
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
    const size_t gb = cq_rp_block_bytes(t), sb = ggml_row_size(t, rp_blck(t));
    const int64_t nb = in / rp_blck(t), groups = (out + CQ_RP_ROWS - 1) / CQ_RP_ROWS;
    memset(dst, 0, cq_rp_bytes(t, in, out)); /* padding rows: d = 0, quants 0 */
    for (int64_t g = 0; g < groups; g++)
        for (int64_t k = 0; k < nb; k++) {
            uint8_t *o = (uint8_t *)dst + (size_t)(g * nb + k) * gb;
            for (int r = 0; r < CQ_RP_ROWS && g * CQ_RP_ROWS + r < out; r++) {
                const uint8_t *b = (const uint8_t *)src + (size_t)(g * CQ_RP_ROWS + r) * row_bytes + (size_t)k * sb;
                if (t == GGML_T_Q4_K) pack_q4_K((const cq_block_q4_K *)b, r, o);
                else if (t == GGML_T_Q6_K) pack_q6_K((const cq_block_q6_K *)b, r, o);
                else pack_block(t, b, r, o);
            }
        }
}

cq_rp_fn cq_rp_kernel(ggml_type t, cq_level l) {
    if (l < CQ_AVX2) return NULL;
    if (l == CQ_AVX2) switch (t) {
        case GGML_T_Q4_0: return cq_rp_q4_0_avx2;
        case GGML_T_Q4_1: return cq_rp_q4_1_avx2;
        case GGML_T_Q5_0: return cq_rp_q5_0_avx2;
        case GGML_T_Q5_1: return cq_rp_q5_1_avx2;
        case GGML_T_Q8_0: return cq_rp_q8_0_avx2;
        case GGML_T_Q4_K: return cq_rp_q4_K_avx2;
        case GGML_T_Q6_K: return cq_rp_q6_K_avx2;
        default: return NULL;
        }
    switch (t) {
    case GGML_T_Q4_0: return cq_rp_q4_0_avx512;
    case GGML_T_Q4_1: return cq_rp_q4_1_avx512;
    case GGML_T_Q5_0: return cq_rp_q5_0_avx512;
    case GGML_T_Q5_1: return cq_rp_q5_1_avx512;
    case GGML_T_Q8_0: return cq_rp_q8_0_avx512;
    case GGML_T_Q4_K: return cq_rp_q4_K_avx512;
    case GGML_T_Q6_K: return cq_rp_q6_K_avx512;
    default: return NULL;
    }
}
