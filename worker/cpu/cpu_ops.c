/* cpu_ops: CPU kernels; see cpu_ops.h for the contract and numerics.
 *
 * SIMD code needs AVX2 + FMA + F16C (CPU_SIMD; q8_0 also uses 256-bit VNNI
 * when the target has AVX512-VNNI/VL); every kernel has a portable scalar
 * path used otherwise. Matmul tiles: R weight rows x B batch rows of vector
 * accumulators, so each weight vector loaded (and converted) once is used B
 * times and each activation vector R times. A work item is (block of batch
 * rows that fits in L2, chunk of 16 weight rows); within it each weight tile
 * is streamed from memory once and re-read from L1 for the next B rows. Every
 * output is one accumulator chain over k in order plus a fixed horizontal sum,
 * whatever R, B or the split: that is what makes results batch invariant.
 * Per-thread scratch (sgemm weight tiles, attention scores) and shared tables
 * (rope, attention items) live in cpu_ctx and grow before a parallel region.
 * The layer kernels (norms, RoPE, attention) are cpu_layer_ops.c; the context
 * struct and shared helpers are cpu_ops_impl.h.
 */
#include "cpu_ops_impl.h"

#include <cblas.h>
#include <omp.h>

#include "cpu_quant.h"

#define GEMM_TILE 128          /* weight rows per dequantized sgemm tile */
#define SMALL_CHUNK 16         /* weight rows per work item on the small path */
#define ACT_BLOCK_BYTES (256 << 10) /* activation rows per work item: about this much */
/* Weight prefetch: tiles this far ahead, into L2. (L1 prefetches, or none,
 * stream at less than half the rate on Zen 4: the L1 miss buffers fill up.) */
#define MMF_PFD 2
#define MMF_HINT _MM_HINT_T1
#define MMQ_PFD 2
#define MMQ_HINT _MM_HINT_T1

cpu_ctx_t *cpu_ctx_new(int n_threads) {
    if (n_threads < 1) n_threads = 1;
    cpu_ctx_t *c = calloc(1, sizeof *c);
    if (!c) goto fail;
    c->nth = n_threads;
    c->tile = calloc((size_t)n_threads, sizeof *c->tile);
    c->scores = calloc((size_t)n_threads, sizeof *c->scores);
    if (!c->tile || !c->scores) goto fail;
    /* OpenBLAS runs inside our OpenMP threads, one thread per call. */
    openblas_set_num_threads(1);
    return c;
fail:
    cpu_ctx_destroy(&c);
    he_set(HE_ENOMEM, "cpu: cannot allocate context");
    return NULL;
}

void cpu_ctx_destroy(cpu_ctx_t **self_p) {
    if (!self_p || !*self_p) return;
    cpu_ctx_t *c = *self_p;
    for (int t = 0; t < c->nth; t++) {
        if (c->tile) free(c->tile[t]);
        if (c->scores) free(c->scores[t]);
    }
    free(c->tile);
    free(c->scores);
    free(c->rope);
    free(c->attn);
    free(c);
    *self_p = NULL;
}

int cpu_ctx_threads(const cpu_ctx_t *c) { return c->nth; }
void cpu_ctx_set_gemm_min(cpu_ctx_t *c, int64_t n) { c->gemm_min = n > 0 ? n : 0; }
void cpu_ctx_set_scalar(cpu_ctx_t *c, bool on) { c->scalar = on; }

int64_t cpu_ctx_gemm_min(const cpu_ctx_t *c, ggml_type t) {
    (void)t;
    return c->gemm_min > 0 ? c->gemm_min : INT64_MAX; /* off unless asked for */
}

cpu_mat cpu_mat_of(const gguf_tensor *t) {
    cpu_mat m = {
        .type = t->type,
        .in = t->ne[0],
        .out = t->ne[1] * t->ne[2] * t->ne[3],
        .row_bytes = ggml_row_size(t->type, t->ne[0]),
        .data = t->data,
    };
    return m;
}

int cpu_mat_repack(cpu_mat *m) {
    if (m->rp || m->out <= 0 || m->in % ggml_blck_size(m->type) || !cq_rp_kernel(m->type, cq_level_best())) return 0;
    size_t bytes = cq_rp_bytes(m->type, m->in, m->out);
    void *p = alloc64(bytes);
    if (!p) return he_set(HE_ENOMEM, "cpu: cannot allocate %zu bytes for repacked weights", bytes);
    cq_rp_pack(m->type, m->data, m->row_bytes, m->in, m->out, p);
    m->rp = p;
    return 0;
}

void cpu_mat_release(cpu_mat *m) {
    if (!m) return;
    free(m->rp);
    m->rp = NULL;
}

/* ------------------------------------------------------------------ activations */

void cpu_act_free(cpu_act *a) {
    if (!a) return;
    free(a->fbuf);
    free(a->qsbuf);
    free(a->qdbuf);
    free(a->qbbuf);
    free(a->xqbuf);
    memset(a, 0, sizeof *a);
}

int cpu_act_prepare(cpu_ctx_t *c, cpu_act *a, ggml_type wtype, const float *x, int64_t n, int64_t in) {
    a->wtype = wtype;
    a->n = n;
    a->in = in;
    a->f = NULL;
    a->qs = NULL;
    a->qd = NULL;
    a->qb = NULL;
    a->xq = NULL;
    a->xq_row = 0;
    bool gemm = n >= cpu_ctx_gemm_min(c, wtype);
    size_t nel = (size_t)n * (size_t)in;
    bool par = nel >= (1u << 15) && c->nth > 1;
    switch (wtype) {
    case GGML_T_F32:
        a->f = x;
        return 0;
    case GGML_T_F16:
    case GGML_T_BF16: {
        int rc = grow_one((void **)&a->fbuf, &a->fcap, nel, sizeof(float));
        if (rc) return rc;
        float *f = a->fbuf;
#pragma omp parallel for num_threads(c->nth) if (par) schedule(static)
        for (int64_t i = 0; i < n; i++) cq_round_row(wtype, x + i * in, f + i * in, in);
        a->f = f;
        return 0;
    }
    case GGML_T_Q8_0: {
        if (in % QK8_0 != 0) return he_set(HE_EINVAL, "cpu: q8_0 row length %lld", (long long)in);
        int rc = grow_one((void **)&a->qsbuf, &a->qscap, nel, 1);
        if (!rc) rc = grow_one((void **)&a->qdbuf, &a->qdcap, nel / QK8_0, sizeof(float));
        if (!rc && gemm) rc = grow_one((void **)&a->fbuf, &a->fcap, nel, sizeof(float));
        if (!rc && !gemm) rc = grow_one((void **)&a->qbbuf, &a->qbcap, nel / QK8_0, sizeof(int32_t));
        if (rc) return rc;
        int8_t *qs = a->qsbuf;
        float *qd = a->qdbuf, *f = gemm ? a->fbuf : NULL;
        int32_t *qb = gemm ? NULL : a->qbbuf;
        int64_t nb = in / QK8_0;
#pragma omp parallel for num_threads(c->nth) if (par) schedule(static)
        for (int64_t i = 0; i < n; i++) {
            cq_quantize_act_q8_0(x + i * in, qs + i * in, qd + i * nb, in);
            if (f)
                for (int64_t k = 0; k < in; k++) f[i * in + k] = (float)qs[i * in + k] * qd[i * nb + k / QK8_0];
            if (qb)
                for (int64_t k = 0; k < nb; k++) {
                    int32_t bs = 0;
                    for (int e = 0; e < QK8_0; e++) bs += qs[i * in + k * QK8_0 + e];
                    qb[i * nb + k] = -128 * bs;
                }
        }
        a->qs = qs;
        a->qd = qd;
        a->qb = qb;
        a->f = f;
        return 0;
    }
    default: {
        if (!cq_type_has_dot(wtype)) return he_set(HE_EUNSUPPORTED, "cpu: weight type %s", ggml_type_name(wtype));
        int64_t blck = ggml_blck_size(wtype);
        if (in % blck)
            return he_set(HE_EINVAL, "cpu: %s row length %lld is not a multiple of %lld", ggml_type_name(wtype),
                          (long long)in, (long long)blck);
        size_t rb = cq_act_row_bytes(wtype, in);
        int rc = grow_one((void **)&a->xqbuf, &a->xqcap, (size_t)n * rb, 1);
        if (rc) return rc;
        uint8_t *xq = a->xqbuf;
#pragma omp parallel for num_threads(c->nth) if (par) schedule(static)
        for (int64_t i = 0; i < n; i++) cq_quantize_act_row(wtype, x + i * in, xq + (size_t)i * rb, in);
        a->xq = xq;
        a->xq_row = rb;
        return 0;
    }
    }
}

/* ------------------------------------------------------------------ small-batch matmul */

#if CPU_SIMD
/* 8 weights of row `w` from element k, widened to f32. */
static inline __attribute__((always_inline)) __m256 ld8(ggml_type t, const uint8_t *w, int64_t k) {
    if (t == GGML_T_F32) return _mm256_loadu_ps((const float *)w + k);
    if (t == GGML_T_F16) return _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)((const uint16_t *)w + k)));
    __m256i v = _mm256_cvtepu16_epi32(_mm_loadu_si128((const __m128i *)((const uint16_t *)w + k)));
    return _mm256_castsi256_ps(_mm256_slli_epi32(v, 16));
}

static inline __attribute__((always_inline)) float ld1(ggml_type t, const uint8_t *w, int64_t k) {
    if (t == GGML_T_F32) return ((const float *)w)[k];
    if (t == GGML_T_F16) return cq_f16_to_f32(((const uint16_t *)w)[k]);
    return cq_bf16_to_f32(((const uint16_t *)w)[k]);
}
#endif

#if CPU_SIMD
/* out[r * B + b] = dot(weight row r, x row b) for R rows at w (stride rb) and
 * B activation rows at x (stride in). R <= 4, B <= 3, compile-time constants. */
static inline __attribute__((always_inline)) void mmf_tile(ggml_type t, const uint8_t *w, size_t rb,
                                                           const int R, const float *x, int64_t in,
                                                           const int B, bool pf, float *out) {
    __m256 acc[8][3];
#pragma GCC unroll 8
    for (int r = 0; r < R; r++)
#pragma GCC unroll 3
        for (int b = 0; b < B; b++) acc[r][b] = _mm256_setzero_ps();
    int64_t k = 0;
    const size_t esz = t == GGML_T_F32 ? 4 : 2;
    for (; k + 8 <= in; k += 8) {
        __m256 wv[8];
        /* stream the next tile's rows in while this one computes (on the
         * first pass over the tile only) */
        if (pf)
#pragma GCC unroll 8
            for (int r = 0; r < R; r++) _mm_prefetch((const char *)(w + (size_t)(MMF_PFD * R + r) * rb + (size_t)k * esz), MMF_HINT);
#pragma GCC unroll 8
        for (int r = 0; r < R; r++) {
            wv[r] = ld8(t, w + (size_t)r * rb, k);
            /* keep it in a register: otherwise gcc re-loads it for every FMA */
            __asm__("" : "+x"(wv[r]));
        }
#pragma GCC unroll 3
        for (int b = 0; b < B; b++) {
            __m256 xv = _mm256_loadu_ps(x + b * in + k);
            if (R > 1) __asm__("" : "+x"(xv)); /* one load, not one per FMA */
#pragma GCC unroll 8
            for (int r = 0; r < R; r++) acc[r][b] = _mm256_fmadd_ps(wv[r], xv, acc[r][b]);
        }
    }
#pragma GCC unroll 8
    for (int r = 0; r < R; r++)
#pragma GCC unroll 3
        for (int b = 0; b < B; b++) out[r * B + b] = hsum8(acc[r][b]);
    for (; k < in; k++)
        for (int r = 0; r < R; r++) {
            float wr = ld1(t, w + (size_t)r * rb, k);
            for (int b = 0; b < B; b++) out[r * B + b] = madd(wr, x[b * in + k], out[r * B + b]);
        }
}

/* The q8_0 x q8_0 version: R <= 4 weight rows (4 only with B == 1), B <= 4
 * activation rows. Each block's integer total is exact (8 int32 lanes summed)
 * and enters one f32 chain fma(dw * dx, total, acc): the chain of the scalar
 * path and of the repacked kernels (cq_rp_*), so every CPU level gives the
 * same bits. */
static inline __attribute__((always_inline)) void mmq_tile(const uint8_t *w, size_t rb, const int R,
                                                           const int8_t *xq, const float *xd,
                                                           int64_t in, const int B, bool pf, float *out) {
    const int64_t nb = in / QK8_0;
    float acc[4][4];
#pragma GCC unroll 4
    for (int r = 0; r < R; r++)
#pragma GCC unroll 4
        for (int b = 0; b < B; b++) acc[r][b] = 0.0f;
#if !(defined(__AVX512VNNI__) && defined(__AVX512VL__))
    const __m256i ones = _mm256_set1_epi16(1);
#endif
    for (int64_t k = 0; k < nb; k++) {
        __m256i wq[4], aw[4];
        float dw[4];
        if (pf)
#pragma GCC unroll 4
            for (int r = 0; r < R; r++)
                _mm_prefetch((const char *)(w + (size_t)(MMQ_PFD * R + r) * rb + (size_t)k * sizeof(cq_block_q8_0)), MMQ_HINT);
#pragma GCC unroll 4
        for (int r = 0; r < R; r++) {
            const cq_block_q8_0 *blk = (const cq_block_q8_0 *)(w + (size_t)r * rb) + k;
            wq[r] = _mm256_loadu_si256((const __m256i *)blk->qs);
            aw[r] = _mm256_sign_epi8(wq[r], wq[r]);
            dw[r] = _cvtsh_ss(blk->d);
        }
#pragma GCC unroll 4
        for (int b = 0; b < B; b++) {
            __m256i xv = _mm256_loadu_si256((const __m256i *)(xq + b * in + k * QK8_0));
            float dx = xd[b * nb + k];
#pragma GCC unroll 4
            for (int r = 0; r < R; r++) {
                __m256i sx = _mm256_sign_epi8(xv, wq[r]);
#if defined(__AVX512VNNI__) && defined(__AVX512VL__)
                __m256i s32 = _mm256_dpbusd_epi32(_mm256_setzero_si256(), aw[r], sx);
#else
                __m256i s32 = _mm256_madd_epi16(_mm256_maddubs_epi16(aw[r], sx), ones);
#endif
                acc[r][b] = fmaf(dw[r] * dx, (float)hsum_i32(s32), acc[r][b]);
            }
        }
    }
#pragma GCC unroll 4
    for (int r = 0; r < R; r++)
#pragma GCC unroll 4
        for (int b = 0; b < B; b++) out[r * B + b] = acc[r][b];
}
#endif /* CPU_SIMD */

static inline void store_tile(const cpu_mm *j, int64_t r0, int R, int64_t b0, int B, const float *out) {
    for (int r = 0; r < R; r++) {
        float bias = j->bias ? j->bias[r0 + r] : 0.0f;
        for (int b = 0; b < B; b++) {
            float v = out[r * B + b];
            if (j->bias) v += bias;
            float *y = j->y + (b0 + b) * j->ldy + r0 + r;
            *y = j->accumulate ? *y + v : v;
        }
    }
}

#if CPU_SIMD
#define MMF_CASE(RR, BB) \
    case (RR) * 8 + (BB): mmf_tile(t, w, rb, RR, x, in, BB, b == b0, out); break
static inline __attribute__((always_inline)) void mmf_rows(ggml_type t, const cpu_mm *j, const cpu_act *a,
                                                           int64_t r0, int64_t r1, int64_t b0, int64_t b1) {
    const size_t rb = j->w->row_bytes;
    const int64_t in = a->in, n = b1 - b0;
    for (int64_t r = r0; r < r1;) {
        int R = r1 - r >= 4 ? 4 : 1;
        if (n == 1 && r1 - r >= 8) R = 8; /* batch 1: more weight rows in flight */
        const uint8_t *w = (const uint8_t *)j->w->data + (size_t)r * rb;
        for (int64_t b = b0; b < b1;) {
            int B = b1 - b >= 3 ? 3 : (int)(b1 - b);
            const float *x = a->f + b * in;
            float out[24];
            switch (R * 8 + B) {
                MMF_CASE(8, 1);
                MMF_CASE(4, 1); MMF_CASE(4, 2); MMF_CASE(4, 3);
                MMF_CASE(1, 1); MMF_CASE(1, 2); MMF_CASE(1, 3);
            }
            store_tile(j, r, R, b, B, out);
            b += B;
        }
        r += R;
    }
}
#undef MMF_CASE
static void mmf_rows_f32(const cpu_mm *j, const cpu_act *a, int64_t r0, int64_t r1, int64_t b0, int64_t b1) {
    mmf_rows(GGML_T_F32, j, a, r0, r1, b0, b1);
}
static void mmf_rows_f16(const cpu_mm *j, const cpu_act *a, int64_t r0, int64_t r1, int64_t b0, int64_t b1) {
    mmf_rows(GGML_T_F16, j, a, r0, r1, b0, b1);
}
static void mmf_rows_bf16(const cpu_mm *j, const cpu_act *a, int64_t r0, int64_t r1, int64_t b0, int64_t b1) {
    mmf_rows(GGML_T_BF16, j, a, r0, r1, b0, b1);
}

#define MMQ_CASE(RR, BB) \
    case (RR) * 8 + (BB): mmq_tile(w, rb, RR, xq, xd, in, BB, b == b0, out); break
static void mmq_rows(const cpu_mm *j, const cpu_act *a, int64_t r0, int64_t r1, int64_t b0, int64_t b1) {
    const size_t rb = j->w->row_bytes;
    const int64_t in = a->in, n = b1 - b0, nb = in / QK8_0;
    for (int64_t r = r0; r < r1;) {
        int R = r1 - r >= 2 ? 2 : 1;
        if (n == 1 && r1 - r >= 4) R = 4; /* batch 1: more weight rows in flight */
        const uint8_t *w = (const uint8_t *)j->w->data + (size_t)r * rb;
        for (int64_t b = b0; b < b1;) {
            int B = b1 - b >= 4 ? 4 : (int)(b1 - b);
            const int8_t *xq = a->qs + b * in;
            const float *xd = a->qd + b * nb;
            float out[16];
            switch (R * 8 + B) {
                MMQ_CASE(4, 1);
                MMQ_CASE(2, 1); MMQ_CASE(2, 2); MMQ_CASE(2, 3); MMQ_CASE(2, 4);
                MMQ_CASE(1, 1); MMQ_CASE(1, 2); MMQ_CASE(1, 3); MMQ_CASE(1, 4);
            }
            store_tile(j, r, R, b, B, out);
            b += B;
        }
        r += R;
    }
}
#undef MMQ_CASE
#endif /* CPU_SIMD */

/* Portable path: dequantize one weight row into tmp (in), dot with each row. */
static void mm_rows_scalar(const cpu_mm *j, const cpu_act *a, int64_t r0, int64_t r1, int64_t b0, int64_t b1,
                           float *tmp) {
    const size_t rb = j->w->row_bytes;
    const int64_t in = a->in, nb = in / QK8_0;
    for (int64_t r = r0; r < r1; r++) {
        const uint8_t *w = (const uint8_t *)j->w->data + (size_t)r * rb;
        if (j->w->type == GGML_T_Q8_0) {
            const cq_block_q8_0 *blk = (const cq_block_q8_0 *)w;
            for (int64_t b = b0; b < b1; b++) {
                float s = 0.0f;
                for (int64_t k = 0; k < nb; k++) {
                    int32_t is = 0;
                    const int8_t *xq = a->qs + b * in + k * QK8_0;
                    for (int i = 0; i < QK8_0; i++) is += (int32_t)blk[k].qs[i] * xq[i];
                    s = fmaf(cq_f16_to_f32(blk[k].d) * a->qd[b * nb + k], (float)is, s);
                }
                store_tile(j, r, 1, b, 1, &s);
            }
        } else {
            cq_dequant_row(j->w->type, w, tmp, in);
            for (int64_t b = b0; b < b1; b++) {
                float s = dotf(tmp, a->f + b * in, in);
                store_tile(j, r, 1, b, 1, &s);
            }
        }
    }
}

/* Block types: one cq_dot per output, weight row r reused (from L1) for
 * every activation row of the block. */
static void mm_rows_qdot(const cpu_ctx_t *c, const cpu_mm *j, const cpu_act *a, int64_t r0, int64_t r1,
                         int64_t b0, int64_t b1) {
    const cq_level lvl = c->scalar ? CQ_SCALAR : cq_level_best();
    const cq_dot_fn dot = cq_dot(j->w->type, lvl);
    const cq_tile_fn tile = cq_tile(j->w->type, lvl);
    const size_t rb = j->w->row_bytes;
    for (int64_t r = r0; r < r1; r++) {
        const uint8_t *w = (const uint8_t *)j->w->data + (size_t)r * rb;
        int64_t b = b0;
        if (tile)
            for (; b + CQ_TILE <= b1; b += CQ_TILE) {
                float s[CQ_TILE];
                tile(w, a->xq + (size_t)b * a->xq_row, a->xq_row, a->in, s);
                for (int t = 0; t < CQ_TILE; t++) store_tile(j, r, 1, b + t, 1, &s[t]);
            }
        for (; b < b1; b++) {
            float s = dot(w, a->xq + (size_t)b * a->xq_row, a->in);
            store_tile(j, r, 1, b, 1, &s);
        }
    }
}

/* Repacked weights: rows [r0, r1) (r0 a multiple of 16) in groups of 16,
 * each group against up to 4 activation rows at a time. */
static void mm_rows_rp(cq_rp_fn fn, const cpu_mm *j, const cpu_act *a, int64_t r0, int64_t r1, int64_t b0,
                       int64_t b1) {
    const cpu_mat *w = j->w;
    const int64_t in = a->in, nb = in / 32;
    const size_t gbytes = cq_rp_bytes(w->type, in, CQ_RP_ROWS);
    cq_xrows xr;
    if (a->xq && cq_dot_type(w->type) == GGML_T_Q8_K) {
        xr = (cq_xrows){.qs = (const int8_t *)a->xq + 4, .qs_row = a->xq_row};
    } else if (a->xq) {
        const size_t blk = ggml_row_size(cq_dot_type(w->type), 32);
        const bool q81 = cq_dot_type(w->type) == GGML_T_Q8_1;
        const float *d = cq_act_scales(a->xq, in, blk);
        xr = (cq_xrows){.qs = (const int8_t *)a->xq + (q81 ? 4 : 2), .qs_row = a->xq_row, .qs_blk = blk, .d = d,
                        .s = q81 ? d + nb : NULL, .off = q81 ? NULL : cq_act_boff(a->xq, in), .m_row = a->xq_row};
    } else {
        xr = (cq_xrows){.qs = a->qs, .qs_row = (size_t)in, .qs_blk = QK8_0, .d = a->qd, .s = NULL, .off = a->qb,
                        .m_row = (size_t)nb * sizeof(float)};
    }
    /* columns outer, groups inner: each activation row's outputs land in
     * consecutive cache lines of y, and the item's few groups stay in L1 */
    for (int64_t b = b0; b < b1;) {
        const int nc = (int)(b1 - b >= 4 ? 4 : b1 - b);
        cq_xrows xb = xr;
        xb.qs += (size_t)b * xr.qs_row;
        if (xr.d) xb.d = (const float *)((const char *)xr.d + (size_t)b * xr.m_row);
        if (xr.s) xb.s = (const float *)((const char *)xr.s + (size_t)b * xr.m_row);
        if (xr.off) xb.off = (const int32_t *)((const char *)xr.off + (size_t)b * xr.m_row);
        for (int64_t g0 = r0; g0 < r1; g0 += CQ_RP_ROWS) {
            const uint8_t *grp = (const uint8_t *)w->rp + (size_t)(g0 / CQ_RP_ROWS) * gbytes;
            const int nr = (int)(r1 - g0 < CQ_RP_ROWS ? r1 - g0 : CQ_RP_ROWS);
            float out[4 * CQ_RP_ROWS];
            fn(grp, in, &xb, nc, out);
            for (int c = 0; c < nc; c++) {
                float *y = j->y + (b + c) * j->ldy + g0;
                int r = 0;
#if CPU_SIMD
                for (; r + 8 <= nr; r += 8) {
                    __m256 v = _mm256_loadu_ps(out + c * CQ_RP_ROWS + r);
                    if (j->bias) v = _mm256_add_ps(v, _mm256_loadu_ps(j->bias + g0 + r));
                    if (j->accumulate) v = _mm256_add_ps(_mm256_loadu_ps(y + r), v);
                    _mm256_storeu_ps(y + r, v);
                }
#endif
                for (; r < nr; r++) {
                    float v = out[c * CQ_RP_ROWS + r];
                    if (j->bias) v += j->bias[g0 + r];
                    y[r] = j->accumulate ? y[r] + v : v;
                }
            }
        }
        b += nc;
    }
}

static void mm_rows_small(const cpu_ctx_t *c, const cpu_mm *j, const cpu_act *a, int64_t r0, int64_t r1,
                          int64_t b0, int64_t b1, float *tmp) {
    if (j->w->rp && !c->scalar) {
        cq_rp_fn fn = cq_rp_kernel(j->w->type, cq_level_best());
        if (fn && (a->xq || a->qb)) {
            mm_rows_rp(fn, j, a, r0, r1, b0, b1);
            return;
        }
    }
    if (a->xq) {
        mm_rows_qdot(c, j, a, r0, r1, b0, b1);
        return;
    }
#if CPU_SIMD
    if (c->scalar) {
        mm_rows_scalar(j, a, r0, r1, b0, b1, tmp);
        return;
    }
    switch (j->w->type) {
    case GGML_T_F32: mmf_rows_f32(j, a, r0, r1, b0, b1); return;
    case GGML_T_F16: mmf_rows_f16(j, a, r0, r1, b0, b1); return;
    case GGML_T_BF16: mmf_rows_bf16(j, a, r0, r1, b0, b1); return;
    case GGML_T_Q8_0: mmq_rows(j, a, r0, r1, b0, b1); return;
    default: return;
    }
#else
    (void)c;
    mm_rows_scalar(j, a, r0, r1, b0, b1, tmp);
#endif
}

/* ------------------------------------------------------------------ sgemm path */

/* y rows of tile [r0, r1) of job j via sgemm on dequantized weights. */
static void mm_rows_gemm(const cpu_mm *j, const cpu_act *a, int64_t r0, int64_t r1, float *tile) {
    const cpu_mat *w = j->w;
    const int64_t in = a->in, nr = r1 - r0;
    const float *wf;
    if (w->type == GGML_T_F32) {
        wf = (const float *)w->data + r0 * in;
    } else {
        for (int64_t r = 0; r < nr; r++)
            cq_dequant_row(w->type, (const uint8_t *)w->data + (size_t)(r0 + r) * w->row_bytes, tile + r * in, in);
        wf = tile;
    }
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)a->n, (int)nr, (int)in, 1.0f, a->f, (int)in,
                wf, (int)in, j->accumulate ? 1.0f : 0.0f, j->y + r0, (int)j->ldy);
    if (j->bias)
        for (int64_t b = 0; b < a->n; b++) {
            float *y = j->y + b * j->ldy + r0;
            for (int64_t r = 0; r < nr; r++) y[r] += j->bias[r0 + r];
        }
}

/* ------------------------------------------------------------------ matmul driver */

int cpu_matmul(cpu_ctx_t *c, const cpu_act *a, const cpu_mm *jobs, int n_jobs) {
    if (n_jobs <= 0 || a->n <= 0) return 0;
    int64_t max_in = a->in;
    for (int i = 0; i < n_jobs; i++)
        if (jobs[i].w->type != a->wtype || jobs[i].w->in != a->in)
            return he_set(HE_EINVAL, "cpu: matmul operand mismatch (type %d/%d, in %lld/%lld)",
                          (int)jobs[i].w->type, (int)a->wtype, (long long)jobs[i].w->in, (long long)a->in);
    bool gemm = a->f != NULL && a->n >= cpu_ctx_gemm_min(c, a->wtype);
    int64_t chunk, bblock = a->n;
    size_t need;
    if (gemm) {
        /* f32 weights need no scratch: use fewer, larger sgemm calls */
        if (a->wtype == GGML_T_F32) {
            int64_t tot = 0;
            for (int i = 0; i < n_jobs; i++) tot += jobs[i].w->out;
            chunk = (tot + 2 * c->nth - 1) / (2 * c->nth);
            chunk = (chunk + 15) & ~(int64_t)15;
            if (chunk < 64) chunk = 64;
            need = 0;
        } else {
            chunk = GEMM_TILE;
            need = (size_t)GEMM_TILE * (size_t)max_in;
        }
    } else {
        /* blocks of batch rows whose activations fit in L2 beside the weight
         * rows, a multiple of the tile heights (3 f32, 4 q8_0) */
        chunk = SMALL_CHUNK;
        /* repacked weights in batches: 4 groups per item (see mm_rows_rp) */
        bool rp_all = a->n >= 8 && !c->scalar;
        for (int i = 0; i < n_jobs; i++) rp_all = rp_all && jobs[i].w->rp;
        if (rp_all) chunk = 4 * CQ_RP_ROWS;
        const int64_t row_bytes = a->xq ? (int64_t)a->xq_row : a->wtype == GGML_T_Q8_0 ? 3 * a->in : 4 * a->in;
        bblock = ACT_BLOCK_BYTES / row_bytes / 12 * 12;
        if (bblock < 12) bblock = 12;
        need = (CPU_SIMD && !c->scalar) || a->xq ? 0 : (size_t)max_in;
    }
    if (need && grow_each((void **)c->tile, c->nth, &c->tile_cap, need, sizeof(float))) return HE_ENOMEM;

    int64_t n_row_items = 0, starts[n_jobs + 1];
    for (int i = 0; i < n_jobs; i++) {
        starts[i] = n_row_items;
        n_row_items += (jobs[i].w->out + chunk - 1) / chunk;
    }
    starts[n_jobs] = n_row_items;
    const int64_t n_bblocks = (a->n + bblock - 1) / bblock;
    const int64_t n_items = n_row_items * n_bblocks;
    if (n_items == 0) return 0;
    int nth = c->nth;
    if (n_items < nth) nth = (int)n_items;
#pragma omp parallel num_threads(nth)
    {
        float *tile = c->tile[omp_get_thread_num()];
#pragma omp for schedule(dynamic, 1)
        for (int64_t it = 0; it < n_items; it++) {
            /* batch block outer: threads share one block of activations at a time */
            const int64_t bi = it / n_row_items, ri = it % n_row_items;
            int ji = 0;
            while (ri >= starts[ji + 1]) ji++;
            const cpu_mm *j = &jobs[ji];
            int64_t r0 = (ri - starts[ji]) * chunk;
            int64_t r1 = r0 + chunk < j->w->out ? r0 + chunk : j->w->out;
            int64_t b0 = bi * bblock, b1 = b0 + bblock < a->n ? b0 + bblock : a->n;
            if (gemm)
                mm_rows_gemm(j, a, r0, r1, tile);
            else
                mm_rows_small(c, j, a, r0, r1, b0, b1, tile);
        }
    }
    return 0;
}
