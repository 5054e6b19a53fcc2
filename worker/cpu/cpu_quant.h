/* cpu_quant: element conversions and quantized dot products for the CPU
 * backend (f16, bf16, q8_0; the ggml block types Q4_0..Q5_1, IQ4_NL and the
 * K-quants Q2_K..Q6_K).
 *
 * Conversions follow ggml bit for bit where it matters for conformance:
 * f32 -> f16 rounds to nearest even (as F16C does), f32 -> bf16 rounds to
 * nearest even and quiets NaNs, and q8_0 activation quantization uses
 * d = amax / 127, q = round-half-even(x * (1/d)) with d stored as f16, like
 * ggml's AVX2 quantize_row_q8_0. A q8_0 block in a GGUF file is 34 bytes:
 * an f16 scale then 32 int8 quants, no padding.
 *
 * Activations quantized for a q8_0 x q8_0 dot are kept split for aligned SIMD
 * loads: quants qs (n, in) int8 and scales qd (n, in/32) f32 (the f16-rounded
 * scale, widened).
 *
 * Quantized weights are never expanded: a matmul quantizes each activation
 * row to the weight type's "dot type" (q8_0 for Q4_0, Q5_0, IQ4_NL; q8_1 for
 * Q4_1, Q5_1; q8_K for the K-quants, as ggml does) and cq_dot() multiplies a
 * weight row by such a row with integer dot products. Kernels exist per CPU
 * level (scalar, AVX2, AVX-512 VNNI), picked at run time (cq_level_best());
 * every level gives the same bits as the scalar one for every input:
 *   - legacy types (32-element blocks): each block's integer product total is
 *     exact in int32 and enters one f32 chain acc = fma(dw * dx, total, acc)
 *     block after block; the q8_1 min term (Q4_1, Q5_1) is a separate chain
 *     fma(m, s, summ), result acc + summ;
 *   - K-quants (256-element blocks): each block's scaled integer total (and
 *     for Q2_K, Q4_K, Q5_K the integer min total) is exact in int32 and enters
 *     one f32 chain acc = fma(d * dx, total, acc) (and accm likewise), result
 *     acc - accm.
 * Repacked weights (cq_rp_*, below) follow the same contract, so a repacked
 * matmul gives the bits of cq_dot.
 * A dot depends only on its two rows, so matmuls stay batch invariant.
 */
#ifndef HELIUM_CPU_QUANT_H
#define HELIUM_CPU_QUANT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "gguf.h"

typedef struct {
    uint16_t d;        /* f16 scale */
    int8_t qs[QK8_0];  /* quants */
} __attribute__((packed)) cq_block_q8_0;

_Static_assert(sizeof(cq_block_q8_0) == 34, "q8_0 block is 34 bytes");

/* ggml block layouts (little-endian, packed). */
typedef struct { uint16_t d; uint8_t qs[16]; } __attribute__((packed)) cq_block_q4_0;
typedef struct { uint16_t d, m; uint8_t qs[16]; } __attribute__((packed)) cq_block_q4_1;
typedef struct { uint16_t d; uint8_t qh[4]; uint8_t qs[16]; } __attribute__((packed)) cq_block_q5_0;
typedef struct { uint16_t d, m; uint8_t qh[4]; uint8_t qs[16]; } __attribute__((packed)) cq_block_q5_1;
typedef struct { uint16_t d, s; int8_t qs[32]; } __attribute__((packed)) cq_block_q8_1; /* s = d * sum(qs) */
typedef struct { uint16_t d; uint8_t qs[16]; } __attribute__((packed)) cq_block_iq4_nl;
typedef struct {
    uint8_t scales[16]; /* low nibble scale, high nibble min, per 16 */
    uint8_t qs[64];     /* 2-bit quants */
    uint16_t d, dmin;
} __attribute__((packed)) cq_block_q2_K;
typedef struct {
    uint8_t hmask[32];  /* high bit */
    uint8_t qs[64];     /* low 2 bits */
    uint8_t scales[12]; /* 16 6-bit scales */
    uint16_t d;
} __attribute__((packed)) cq_block_q3_K;
typedef struct {
    uint16_t d, dmin;
    uint8_t scales[12]; /* 8 6-bit scales and 8 6-bit mins */
    uint8_t qs[128];
} __attribute__((packed)) cq_block_q4_K;
typedef struct {
    uint16_t d, dmin;
    uint8_t scales[12];
    uint8_t qh[32];
    uint8_t qs[128];
} __attribute__((packed)) cq_block_q5_K;
typedef struct {
    uint8_t ql[128];
    uint8_t qh[64];
    int8_t scales[16];
    uint16_t d;
} __attribute__((packed)) cq_block_q6_K;
typedef struct {
    float d;
    int8_t qs[QK_K];
    int16_t bsums[QK_K / 16]; /* sums of each 16 quants */
} __attribute__((packed)) cq_block_q8_K;

_Static_assert(sizeof(cq_block_q4_0) == 18 && sizeof(cq_block_q4_1) == 20, "legacy blocks");
_Static_assert(sizeof(cq_block_q5_0) == 22 && sizeof(cq_block_q5_1) == 24, "legacy blocks");
_Static_assert(sizeof(cq_block_q8_1) == 36 && sizeof(cq_block_iq4_nl) == 18, "legacy blocks");
_Static_assert(sizeof(cq_block_q2_K) == 84 && sizeof(cq_block_q3_K) == 110, "k blocks");
_Static_assert(sizeof(cq_block_q4_K) == 144 && sizeof(cq_block_q5_K) == 176, "k blocks");
_Static_assert(sizeof(cq_block_q6_K) == 210 && sizeof(cq_block_q8_K) == 292, "k blocks");

/* The non-linear IQ4_NL code book (ggml's kvalues_iq4nl). */
extern const int8_t cq_iq4nl_values[16];

/* CPU levels with their own dot kernels, lowest first. */
typedef enum { CQ_SCALAR = 0, CQ_AVX2 = 1, CQ_AVX512 = 2, CQ_N_LEVELS = 3 } cq_level;

/* The best level this CPU runs (AVX2 needs avx2+fma+f16c; AVX512 also
 * avx512f/bw/vl/vnni), detected once with __builtin_cpu_supports.
 * HELIUM_CPU_LEVEL=scalar|avx2|avx512 in the environment caps it. */
cq_level cq_level_best(void);
const char *cq_level_name(cq_level l);

/* y (wq) = w (wrow) . x (xq) over n elements: a weight row of type t and an
 * activation row quantized with cq_quantize_act_row(t, ...). */
typedef float (*cq_dot_fn)(const void *wrow, const void *xq, int64_t n);

/* True for the block types whose matmul runs through cq_dot (Q4_0, Q4_1,
 * Q5_0, Q5_1, IQ4_NL, Q2_K..Q6_K). */
bool cq_type_has_dot(ggml_type t);
/* The activation format type t's dot consumes (Q8_0, Q8_1 or Q8_K). */
ggml_type cq_dot_type(ggml_type t);
/* The kernel for type t at level l, or at the highest level below l that
 * has one; NULL if t has no dot. */
cq_dot_fn cq_dot(ggml_type t, cq_level l);
/* Tiles: the dots of one weight row with CQ_TILE activation rows (x, x + xs,
 * x + 2 xs, ...) into out (CQ_TILE); out[c] has exactly the bits of the
 * single dot with row c. Only the SIMD levels have them (cq_tile() is NULL
 * for the scalar level and for types without one). */
#define CQ_TILE 4
typedef void (*cq_tile_fn)(const void *w, const void *x, size_t xs, int64_t n, float *out);
cq_tile_fn cq_tile(ggml_type t, cq_level l);
/* An activation row for weights of type t (cq_quantize_act_row): the dot
 * type's blocks, padded to 64 bytes; for q8_0 / q8_1 then the f32 value of
 * each block's scale d (n / 32), and for q8_1 the f32 s (n / 32), which the
 * tiles read instead of converting f16 per block (the same values); for
 * Q4_0, Q5_0 and IQ4_NL weights then corr (n / 4 int32): -o * (the sum of
 * each 4 quants), o the offset that makes the weights unsigned (8, 16, 128),
 * so a VNNI tile computes sum (w + o) x + corr = sum w x with one vpdpbusd,
 * then boff (n / 32 int32, cq_act_boff), the same per block.
 * Rows start 64-byte aligned when the buffer does. */
size_t cq_act_row_bytes(ggml_type t, int64_t n);
/* The f32 scales of an activation row of n elements of dot type Q8_0 / Q8_1
 * (s follow at + n / 32 for Q8_1; corr at + n / 32 for Q8_0). */
static inline const float *cq_act_scales(const void *row, int64_t n, size_t block_bytes) {
    size_t b = (size_t)(n / 32) * block_bytes;
    return (const float *)((const uint8_t *)row + ((b + 63) & ~(size_t)63));
}
/* The weight offset o of the corr array for type t, 0 if t has none. */
static inline int cq_act_corr_offset(ggml_type t) {
    return t == GGML_T_Q4_0 ? 8 : t == GGML_T_Q5_0 ? 16 : t == GGML_T_IQ4_NL ? 128 : 0;
}
/* The per-block offsets of an activation row for Q4_0, Q5_0 and IQ4_NL
 * weights (n / 32 int32, after corr): -o * (the sum of the block's quants). */
static inline const int32_t *cq_act_boff(const void *row, int64_t n) {
    return (const int32_t *)(cq_act_scales(row, n, sizeof(cq_block_q8_0)) + n / 32) + n / 4;
}
/* Quantizes x (n, a multiple of t's block size) to t's dot type into dst
 * (cq_act_row_bytes(t, n) bytes, 4-byte aligned). Same bits at every level. */
void cq_quantize_act_row(ggml_type t, const float *x, void *dst, int64_t n);
void cq_quantize_row_q8_1(const float *x, cq_block_q8_1 *dst, int64_t n);
void cq_quantize_row_q8_K(const float *x, cq_block_q8_K *dst, int64_t n);

/* ------------------------------------------------------------------ repacked
 * Weights repacked at load for a GEMM kernel that computes CQ_RP_ROWS (16)
 * outputs at once with one vpdpbusd per 4 elements: rows are taken in groups
 * of 16 (the last group padded with zero rows), and group g's block k
 * (cq_rp_block_bytes(t)) holds the 16 rows' f16 scales d (32 bytes), for
 * Q4_1 / Q5_1 their f16 mins m (32 bytes), then the quants in 64-byte chunks
 * of 16 rows x 4 bytes: for the 4-bit and 5-bit types chunk j holds bytes
 * qs[4j..4j+3] of each row (low nibbles: elements 4j..4j+3, high: 16+4j..),
 * for Q8_0 8 chunks, chunk j elements 4j..4j+3 stored as q + 128; the 5-bit
 * types then 8 u64 masks, mask v bit 4r+i = high bit of element 4v+i of row
 * r (vector v: 0..3 low nibbles of chunk v, 4..7 high nibbles of chunk v-4).
 * Group g starts at g * (in / 32) * cq_rp_block_bytes(t). Same total size as
 * the rows themselves (Q8_0, Q4_x, Q5_x), plus padding. */
#define CQ_RP_ROWS 16
/* Bytes of a repacked group block, 0 if t is not repacked. */
size_t cq_rp_block_bytes(ggml_type t);
/* Bytes of a repacked (out, in) matrix (out padded to 16 rows). */
size_t cq_rp_bytes(ggml_type t, int64_t in, int64_t out);
/* Repacks out rows of in elements (row r at src + r * row_bytes) into dst
 * (cq_rp_bytes, 64-byte aligned). */
void cq_rp_pack(ggml_type t, const void *src, size_t row_bytes, int64_t in, int64_t out, void *dst);
/* Activation rows as a repacked kernel reads them: the quants of block k of
 * row c at qs + c * qs_row + k * qs_blk (bytes), its f32 scale at byte
 * c * m_row of d, index k; likewise s (q8_1 rows, Q4_1 / Q5_1 weights) and
 * off (-o * the block's quant sum: 128 for Q8_0, 8 Q4_0, 16 Q5_0). For the
 * K-quants (q8_K rows) only qs and qs_row are used: qs points at row 0's
 * first block's quants. */
typedef struct {
    const int8_t *qs;
    size_t qs_row, qs_blk;
    const float *d, *s;
    const int32_t *off;
    size_t m_row;
} cq_xrows;
/* The outputs of one 16-row group with nc (1..4) activation rows:
 * out[c * 16 + r] for row r of the group and activation row c, with the bits
 * of cq_dot (the scalar q8_0 x q8_0 chain for Q8_0). n elements per row. */
typedef void (*cq_rp_fn)(const void *grp, int64_t n, const cq_xrows *x, int nc, float *out);
/* The kernel for type t at level l, NULL if none (AVX-512 VNNI and AVX2:
 * the seven types; the scalar level and other types multiply the rows in
 * place). */
cq_rp_fn cq_rp_kernel(ggml_type t, cq_level l);

float cq_f16_to_f32(uint16_t h);
uint16_t cq_f32_to_f16(float f);
float cq_bf16_to_f32(uint16_t h);
uint16_t cq_f32_to_bf16(float f);

/* Dequantizes one row of n elements of type t (n a multiple of t's block
 * size) into dst (n), as ggml's dequantize_row_* does. Unknown types leave
 * dst untouched. */
void cq_dequant_row(ggml_type t, const void *src, float *dst, int64_t n);

/* Quantizes x (n, n % 32 == 0) to ggml q8_0 blocks (n / 32). */
void cq_quantize_row_q8_0(const float *x, cq_block_q8_0 *dst, int64_t n);

/* Quantizes x (n, n % 32 == 0) to split form: qs (n) and qd (n / 32), the same
 * numbers cq_quantize_row_q8_0 produces. */
void cq_quantize_act_q8_0(const float *x, int8_t *qs, float *qd, int64_t n);

/* y (n) = x rounded to the precision of type t (f16 or bf16 round trip; a copy
 * for f32). This is the activation a ggml f16/bf16 dot product multiplies. */
void cq_round_row(ggml_type t, const float *x, float *y, int64_t n);

#endif
