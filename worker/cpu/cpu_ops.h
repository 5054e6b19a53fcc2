/* cpu_ops: the CPU backend's kernels (matmul per weight type, rmsnorm, rope,
 * attention over paged KV, swiglu), parallel with OpenMP.
 *
 * Each op runs its own OpenMP parallel region with the context's thread count
 * and must be called from outside any parallel region. Scratch memory lives in
 * the context (cpu_ctx_t) and grows on demand; only ops that may grow it
 * return an error code (0 or HE_ENOMEM).
 *
 * Matmul numerics follow ggml's CPU backend: the activation is first converted
 * to the weight's "dot type" (f16 / bf16 rounding, or q8_0 quantization for
 * q8_0 weights) and products are accumulated in f32 (int32 inside a q8_0
 * block). Other block types (Q4_0, Q4_1, Q5_0, Q5_1, IQ4_NL, Q2_K..Q6_K)
 * quantize each activation row to q8_0 / q8_1 / q8_K and call the cq_dot()
 * kernel of the best CPU level (scalar with cpu_ctx_set_scalar), one dot per
 * output, weights read in place (see cpu_quant.h).
 *
 * Batch invariance: by default every result row is computed by the same
 * sequence of floating-point operations whatever the batch size, the other
 * rows of the batch, the thread count or the work split (matmul: one
 * register-tiled kernel for every batch size, each output a fixed-order sum;
 * attention: key chunks of a fixed size merged in a fixed order). So a
 * token's logits are bit-identical whether it is decoded alone, in a batch,
 * or as part of a prefill chunk. The kernels read each weight tile once per
 * block of batch rows and reuse it from L1 for every row of the block.
 *
 * Opt-in (cpu_ctx_set_gemm_min): batches of at least n rows dequantize weight
 * tiles into per-thread f32 scratch and call single-threaded OpenBLAS sgemm
 * from each thread (OpenBLAS is pinned to one thread so the only thread pool
 * is OpenMP's). On the Zen 4 development machine it is no faster than the
 * default kernels at batch 512; its sums are ordered differently, so with it
 * results depend on the batch size. Kept as a reference for bench/kernels.
 */
#ifndef HELIUM_CPU_OPS_H
#define HELIUM_CPU_OPS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "gguf.h"

/* A weight matrix in ggml order: out rows of in elements of type `type`. */
typedef struct {
    ggml_type type;
    int64_t in, out;
    size_t row_bytes;
    const void *data;   /* (out, row_bytes) */
    void *rp;           /* (ceil(out / 16), in / 32, cq_rp_block_bytes) the rows
                           repacked (cpu_mat_repack, owned), or NULL */
} cpu_mat;

/* View of a GGUF tensor (ne[0] = in, ne[1] = out) as a matrix. */
cpu_mat cpu_mat_of(const gguf_tensor *t);
/* Repacks m's rows for the GEMM kernels of cpu_quant.h (cq_rp_*) when this
 * CPU has one for m's type (else leaves m as it is); the matmul then reads
 * the copy, with the same bits. 0 or HE_ENOMEM. */
int cpu_mat_repack(cpu_mat *m);
/* Frees m's repacked copy (if any). */
void cpu_mat_release(cpu_mat *m);

typedef struct cpu_ctx cpu_ctx_t;

/* n_threads >= 1. NULL with he_msg() on allocation failure. */
cpu_ctx_t *cpu_ctx_new(int n_threads);
void cpu_ctx_destroy(cpu_ctx_t **self_p);
int cpu_ctx_threads(const cpu_ctx_t *c);
/* Batches of at least n rows take the (not batch-invariant) sgemm path;
 * n <= 0 restores the default, never. */
void cpu_ctx_set_gemm_min(cpu_ctx_t *c, int64_t n);
/* Forces the portable scalar kernels (tests); they give other bits than the
 * SIMD ones. */
void cpu_ctx_set_scalar(cpu_ctx_t *c, bool on);
/* The batch size from which type t takes the sgemm path (INT64_MAX: never). */
int64_t cpu_ctx_gemm_min(const cpu_ctx_t *c, ggml_type t);

/* An activation (n, in) prepared for weights of type wtype. */
typedef struct {
    ggml_type wtype;
    int64_t n, in;
    const float *f;     /* (n, in) the values the dot product multiplies; NULL
                           for q8_0 on the small-batch path */
    const int8_t *qs;   /* (n, in) q8_0 quants (q8_0 only) */
    const float *qd;    /* (n, in / 32) q8_0 scales (q8_0 only) */
    /* q8_0 only: qb (n, in / 32) -128 * (sum of each block's quants), for
     * repacked Q8_0 weights */
    const int32_t *qb;
    /* block types with a cq_dot kernel (Q4_0, Q4_K, ...): xq (n, xq_row bytes)
     * each row quantized to the type's dot format (q8_0 / q8_1 / q8_K) */
    const uint8_t *xq;
    size_t xq_row;
    /* owned buffers, grown on demand */
    float *fbuf;
    int8_t *qsbuf;
    float *qdbuf;
    int32_t *qbbuf;
    uint8_t *xqbuf;
    size_t fcap, qscap, qdcap, qbcap, xqcap;
} cpu_act;

void cpu_act_free(cpu_act *a);
/* Prepares x (n, in) for weights of type wtype under context c. x must stay
 * alive while a is used (f32 weights multiply x itself). in % 32 == 0 for
 * q8_0. 0 or HE_ENOMEM / HE_EUNSUPPORTED. */
int cpu_act_prepare(cpu_ctx_t *c, cpu_act *a, ggml_type wtype, const float *x, int64_t n, int64_t in);

/* One output of a (possibly fused) matmul: y (n, ldy) [+]= a W^T (+ bias). */
typedef struct {
    const cpu_mat *w;       /* w->type == a->wtype, w->in == a->in */
    float *y;               /* (n, ldy); columns 0 .. w->out - 1 are written */
    int64_t ldy;
    const float *bias;      /* (w->out) or NULL */
    bool accumulate;        /* y += instead of y = */
} cpu_mm;

/* Runs the jobs, which share activation a, in one parallel region.
 * 0 or HE_ENOMEM (scratch) / HE_EINVAL (type or shape mismatch). */
int cpu_matmul(cpu_ctx_t *c, const cpu_act *a, const cpu_mm *jobs, int n_jobs);

/* y (n, dim) = x / sqrt(mean(x^2) + eps) * w (dim); y may alias x. */
void cpu_rmsnorm(cpu_ctx_t *c, const float *x, const float *w, float *y, int64_t n, int64_t dim,
                 float eps);

/* Rotary embedding, in two steps. cpu_rope_prepare() computes the cos/sin
 * table for positions pos (n) once per batch: pair i (0 <= i < rope_dim/2)
 * rotates by pos * base^(-2i/rope_dim), the angle built by repeated f32
 * multiplication as ggml does. 0 or HE_ENOMEM. */
int cpu_rope_prepare(cpu_ctx_t *c, const int32_t *pos, int64_t n, int rope_dim, float base);
/* Rotates x (n, n_heads * head_dim) in place with the prepared table (same n):
 * pairs are (2i, 2i+1) or, when neox, (i, i + rope_dim/2) within each head;
 * dims >= rope_dim are untouched. */
void cpu_rope(cpu_ctx_t *c, float *x, int64_t n, int n_heads, int head_dim, bool neox);

/* y (n, dim) = silu(g) * u; y may alias g or u. */
void cpu_swiglu(cpu_ctx_t *c, const float *g, const float *u, float *y, int64_t n, int64_t dim);

/* Paged KV of one layer: page b holds K at kv + b * page_floats + k_off and V at
 * ... + v_off, each (block_size, kv_dim). */
typedef struct {
    float *kv;
    size_t page_floats;
    size_t k_off, v_off;
    int32_t block_size;
    int32_t kv_dim;
    int32_t window;     /* > 0: token at pos attends to positions > pos - window only */
} cpu_kv_layer;

/* Writes k, v (n, kv_dim) of token i at position pos[i] of sequence tok_seq[i]
 * through tables[tok_seq[i]]. */
void cpu_kv_store(cpu_ctx_t *c, const cpu_kv_layer *L, const int32_t *const *tables,
                  const float *k, const float *v, const int32_t *pos, const int32_t *tok_seq,
                  int64_t n);

/* Causal attention: for token i (n of them) and head h, out[i, h] = softmax over
 * positions 0..pos[i] (pos[i] - L->window + 1 .. pos[i] with a window) of sequence tok_seq[i] of (q[i,h] . K[p, h/g]) * scale,
 * applied to V[p, h/g], where g = n_heads / n_kv_heads. q, out: (n, n_heads *
 * head_dim). 0 or HE_ENOMEM. */
int cpu_attention(cpu_ctx_t *c, const cpu_kv_layer *L, const int32_t *const *tables,
                  const float *q, float *out, const int32_t *pos, const int32_t *tok_seq, int64_t n,
                  int n_heads, int n_kv_heads, int head_dim, float scale);

#endif
