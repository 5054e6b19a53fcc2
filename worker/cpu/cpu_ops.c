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
 */
#include "cpu_ops.h"

#include <cblas.h>
#include <math.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>

#include "cpu_quant.h"
#include "herr.h"

#if defined(__AVX2__) && defined(__FMA__) && defined(__F16C__)
#define CPU_SIMD 1
#include <immintrin.h>
#else
#define CPU_SIMD 0
#endif
/* 256-bit VNNI (vpdpbusd): q8_0 dots without the sign trick */
#if CPU_SIMD && defined(__AVX512VNNI__) && defined(__AVX512VL__)
#define CPU_VNNI 1
#else
#define CPU_VNNI 0
#endif

#define GEMM_TILE 128          /* weight rows per dequantized sgemm tile */
#define SMALL_CHUNK 16         /* weight rows per work item on the small path */
#define ACT_BLOCK_BYTES (256 << 10) /* activation rows per work item: about this much */
/* Weight prefetch: tiles this far ahead, into L2. (L1 prefetches, or none,
 * stream at less than half the rate on Zen 4: the L1 miss buffers fill up.) */
#define MMF_PFD 2
#define MMF_HINT _MM_HINT_T1
#define MMQ_PFD 2
#define MMQ_HINT _MM_HINT_T1

struct cpu_ctx {
    int nth;
    int64_t gemm_min;          /* sgemm path from this batch size; 0: never */
    bool scalar;               /* force the portable scalar kernels */
    float **tile;              /* (nth) per-thread scratch, tile_cap floats each */
    size_t tile_cap;
    float **scores;            /* (nth) per-thread attention scores, scores_cap floats */
    size_t scores_cap;
    float *attn;               /* attention item table and partials, attn_cap floats */
    size_t attn_cap;
    float *rope;               /* (rope_n, rope_dim) cos/sin pairs */
    size_t rope_cap;
    int64_t rope_n;
    int rope_dim;
};

/* ------------------------------------------------------------------ memory */

static void *alloc64(size_t bytes) {
    void *p = NULL;
    if (bytes == 0) bytes = 64;
    if (posix_memalign(&p, 64, (bytes + 63) & ~(size_t)63) != 0) return NULL;
    return p;
}

/* Grows each of nth buffers to at least need elements of elem bytes. */
static int grow_each(void **bufs, int nth, size_t *cap, size_t need, size_t elem) {
    if (need <= *cap) return 0;
    size_t ncap = need + need / 4;
    for (int t = 0; t < nth; t++) {
        void *p = alloc64(ncap * elem);
        if (!p) return he_set(HE_ENOMEM, "cpu: cannot allocate %zu bytes of scratch", ncap * elem);
        free(bufs[t]);
        bufs[t] = p;
    }
    *cap = ncap;
    return 0;
}

static int grow_one(void **buf, size_t *cap, size_t need, size_t elem) {
    return grow_each(buf, 1, cap, need, elem);
}

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

/* ------------------------------------------------------------------ helpers */

/* a * b + c, fused where the target has FMA. Spelled out because gcc's default
 * -ffp-contract=fast fuses a * b + c in some inlined copies of a loop and not
 * in others, which would break batch invariance. */
static inline float madd(float a, float b, float c) {
#if defined(FP_FAST_FMAF)
    return fmaf(a, b, c);
#else
    return a * b + c;
#endif
}

#if CPU_SIMD
static inline float hsum8(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_extractf128_ps(v, 1), _mm256_castps256_ps128(v));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

/* e^x for 8 lanes: Cephes-style range reduction and degree-6 polynomial,
 * about 1 ulp; inputs are clamped to [-88.38, 88.38]. */
static inline __m256 exp8(__m256 x) {
    x = _mm256_min_ps(_mm256_max_ps(x, _mm256_set1_ps(-88.3762626647949f)),
                      _mm256_set1_ps(88.3762626647949f));
    __m256 fx = _mm256_round_ps(_mm256_mul_ps(x, _mm256_set1_ps(1.44269504088896341f)),
                                _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m256 r = _mm256_fnmadd_ps(fx, _mm256_set1_ps(0.693359375f), x);
    r = _mm256_fnmadd_ps(fx, _mm256_set1_ps(-2.12194440e-4f), r);
    __m256 y = _mm256_set1_ps(1.9875691500e-4f);
    y = _mm256_fmadd_ps(y, r, _mm256_set1_ps(1.3981999507e-3f));
    y = _mm256_fmadd_ps(y, r, _mm256_set1_ps(8.3334519073e-3f));
    y = _mm256_fmadd_ps(y, r, _mm256_set1_ps(4.1665795894e-2f));
    y = _mm256_fmadd_ps(y, r, _mm256_set1_ps(1.6666665459e-1f));
    y = _mm256_fmadd_ps(y, r, _mm256_set1_ps(5.0000001201e-1f));
    y = _mm256_fmadd_ps(y, _mm256_mul_ps(r, r), _mm256_add_ps(r, _mm256_set1_ps(1.0f)));
    __m256i e = _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(fx), _mm256_set1_epi32(127)), 23);
    return _mm256_mul_ps(y, _mm256_castsi256_ps(e));
}
#endif

static inline float dotf(const float *a, const float *b, int64_t n) {
    int64_t i = 0;
    float s = 0.0f;
#if CPU_SIMD
    __m256 s0 = _mm256_setzero_ps(), s1 = _mm256_setzero_ps();
    for (; i + 16 <= n; i += 16) {
        s0 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i), s0);
        s1 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i + 8), _mm256_loadu_ps(b + i + 8), s1);
    }
    for (; i + 8 <= n; i += 8) s0 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i), s0);
    s = hsum8(_mm256_add_ps(s0, s1));
#endif
    for (; i < n; i++) s = madd(a[i], b[i], s);
    return s;
}

/* y (n) += a * x (n) */
static inline void axpyf(float *y, float a, const float *x, int64_t n) {
    int64_t i = 0;
#if CPU_SIMD
    __m256 av = _mm256_set1_ps(a);
    for (; i + 8 <= n; i += 8)
        _mm256_storeu_ps(y + i, _mm256_fmadd_ps(av, _mm256_loadu_ps(x + i), _mm256_loadu_ps(y + i)));
#endif
    for (; i < n; i++) y[i] = madd(a, x[i], y[i]);
}

/* ------------------------------------------------------------------ activations */

void cpu_act_free(cpu_act *a) {
    if (!a) return;
    free(a->fbuf);
    free(a->qsbuf);
    free(a->qdbuf);
    free(a->qcbuf);
    free(a->qd8buf);
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
    a->qc = NULL;
    a->qd8 = NULL;
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
        if (rc) return rc;
        const bool vnni = CPU_VNNI && !gemm && !c->scalar;
        if (vnni) {
            rc = grow_one((void **)&a->qcbuf, &a->qccap, nel / 4, sizeof(int32_t));
            if (!rc) rc = grow_one((void **)&a->qd8buf, &a->qd8cap, nel / 4, sizeof(float));
            if (rc) return rc;
        }
        int8_t *qs = a->qsbuf;
        float *qd = a->qdbuf, *f = gemm ? a->fbuf : NULL;
        int32_t *qc = vnni ? a->qcbuf : NULL;
        float *qd8 = vnni ? a->qd8buf : NULL;
        int64_t nb = in / QK8_0;
#pragma omp parallel for num_threads(c->nth) if (par) schedule(static)
        for (int64_t i = 0; i < n; i++) {
            cq_quantize_act_q8_0(x + i * in, qs + i * in, qd + i * nb, in);
            if (f)
                for (int64_t k = 0; k < in; k++) f[i * in + k] = (float)qs[i * in + k] * qd[i * nb + k / QK8_0];
            if (qc) {
                const int8_t *q = qs + i * in;
                for (int64_t k = 0; k < in / 4; k++) qc[i * (in / 4) + k] = -128 * (q[4 * k] + q[4 * k + 1] + q[4 * k + 2] + q[4 * k + 3]);
                for (int64_t k = 0; k < in / 4; k++) qd8[i * (in / 4) + k] = qd[i * nb + k / 8];
            }
        }
        a->qs = qs;
        a->qd = qd;
        a->qc = qc;
        a->qd8 = qd8;
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
#endif

static inline __attribute__((always_inline)) float ld1(ggml_type t, const uint8_t *w, int64_t k) {
    if (t == GGML_T_F32) return ((const float *)w)[k];
    if (t == GGML_T_F16) return cq_f16_to_f32(((const uint16_t *)w)[k]);
    return cq_bf16_to_f32(((const uint16_t *)w)[k]);
}

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

/* The q8_0 x q8_0 version: R <= 4 weight rows (4 only with B == 1), B <= 4 activation rows. */
static inline __attribute__((always_inline)) void mmq_tile(const uint8_t *w, size_t rb, const int R,
                                                           const int8_t *xq, const float *xd,
                                                           int64_t in, const int B, bool pf, float *out) {
    const int64_t nb = in / QK8_0;
    __m256 acc[4][4];
#pragma GCC unroll 4
    for (int r = 0; r < R; r++)
#pragma GCC unroll 4
        for (int b = 0; b < B; b++) acc[r][b] = _mm256_setzero_ps();
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
                acc[r][b] = _mm256_fmadd_ps(_mm256_set1_ps(dw[r] * dx), _mm256_cvtepi32_ps(s32), acc[r][b]);
            }
        }
    }
#pragma GCC unroll 4
    for (int r = 0; r < R; r++)
#pragma GCC unroll 4
        for (int b = 0; b < B; b++) out[r * B + b] = hsum8(acc[r][b]);
}

#if CPU_VNNI
/* q8_0 x q8_0 with vpdpbusd on (w + 128) and x, started from the
 * activation's correction qc (so no sign trick), and the per-block scale
 * product formed from a broadcast weight scale and the pre-broadcast
 * activation scales qd8. R <= 4 weight rows, B <= 4 activation rows. (Folding
 * four blocks' lane sums with integer horizontal adds before the float work
 * measured no faster on Zen 4.) */
static inline __attribute__((always_inline)) void mmq_tile_vnni(const uint8_t *w, size_t rb, const int R,
                                                                const int8_t *xq, const int32_t *xc,
                                                                const float *xd8, int64_t in, const int B,
                                                                bool pf, float *out) {
    const int64_t nb = in / QK8_0;
    const __m256i flip = _mm256_set1_epi8((char)0x80);
    __m256 acc[4][4];
#pragma GCC unroll 4
    for (int r = 0; r < R; r++)
#pragma GCC unroll 4
        for (int b = 0; b < B; b++) acc[r][b] = _mm256_setzero_ps();
    for (int64_t k = 0; k < nb; k++) {
        __m256i wu[4];
        __m256 dw[4];
#pragma GCC unroll 4
        for (int r = 0; r < R; r++) {
            const cq_block_q8_0 *blk = (const cq_block_q8_0 *)(w + (size_t)r * rb) + k;
            if (pf)
                _mm_prefetch((const char *)(w + (size_t)(MMQ_PFD * R + r) * rb + (size_t)k * sizeof(cq_block_q8_0)),
                             MMQ_HINT);
            wu[r] = _mm256_xor_si256(_mm256_loadu_si256((const __m256i *)blk->qs), flip);
            dw[r] = _mm256_set1_ps(_cvtsh_ss(blk->d));
        }
#pragma GCC unroll 4
        for (int b = 0; b < B; b++) {
            const __m256i xv = _mm256_load_si256((const __m256i *)(xq + b * in + k * QK8_0));
            const __m256i cv = _mm256_load_si256((const __m256i *)(xc + b * (in / 4) + k * 8));
            const __m256 dx = _mm256_load_ps(xd8 + b * (in / 4) + k * 8);
#pragma GCC unroll 4
            for (int r = 0; r < R; r++) {
                __m256i s32 = _mm256_dpbusd_epi32(cv, wu[r], xv);
                acc[r][b] = _mm256_fmadd_ps(_mm256_mul_ps(dw[r], dx), _mm256_cvtepi32_ps(s32), acc[r][b]);
            }
        }
    }
#pragma GCC unroll 4
    for (int r = 0; r < R; r++)
#pragma GCC unroll 4
        for (int b = 0; b < B; b++) out[r * B + b] = hsum8(acc[r][b]);
}
#endif
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

#if CPU_VNNI
#define MMQ_CASE(RR, BB)                                                                  \
    case (RR) * 8 + (BB):                                                                 \
        if (a->qc)                                                                        \
            mmq_tile_vnni(w, rb, RR, xq, a->qc + b * (in / 4), a->qd8 + b * (in / 4), in, BB, b == b0, out); \
        else                                                                              \
            mmq_tile(w, rb, RR, xq, xd, in, BB, b == b0, out);                            \
        break
#else
#define MMQ_CASE(RR, BB) \
    case (RR) * 8 + (BB): mmq_tile(w, rb, RR, xq, xd, in, BB, b == b0, out); break
#endif
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
                    s = madd((float)is, cq_f16_to_f32(blk[k].d) * a->qd[b * nb + k], s);
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

static void mm_rows_small(const cpu_ctx_t *c, const cpu_mm *j, const cpu_act *a, int64_t r0, int64_t r1,
                          int64_t b0, int64_t b1, float *tmp) {
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

/* ------------------------------------------------------------------ rmsnorm, swiglu */

void cpu_rmsnorm(cpu_ctx_t *c, const float *x, const float *w, float *y, int64_t n, int64_t dim, float eps) {
#pragma omp parallel for num_threads(c->nth) if (n * dim >= (1 << 15) && c->nth > 1) schedule(static)
    for (int64_t i = 0; i < n; i++) {
        const float *xi = x + i * dim;
        float *yi = y + i * dim;
        double sum = 0.0; /* as ggml: f32 squares, f64 sum */
        for (int64_t k = 0; k < dim; k++) sum += (double)(xi[k] * xi[k]);
        float mean = (float)(sum / (double)dim);
        float scale = 1.0f / sqrtf(mean + eps);
        for (int64_t k = 0; k < dim; k++) yi[k] = (xi[k] * scale) * w[k];
    }
}

void cpu_swiglu(cpu_ctx_t *c, const float *g, const float *u, float *y, int64_t n, int64_t dim) {
    /* row by row, so that which elements take the SIMD path depends only on
     * the column (batch invariance) */
#pragma omp parallel for num_threads(c->nth) if (n * dim >= (1 << 15) && c->nth > 1) schedule(static)
    for (int64_t r = 0; r < n; r++) {
        const float *gr = g + r * dim, *ur = u + r * dim;
        float *yr = y + r * dim;
        int64_t i = 0;
#if CPU_SIMD
        const __m256 one = _mm256_set1_ps(1.0f);
        for (; i + 8 <= dim; i += 8) {
            __m256 gv = _mm256_loadu_ps(gr + i);
            __m256 e = exp8(_mm256_sub_ps(_mm256_setzero_ps(), gv));
            __m256 sv = _mm256_div_ps(gv, _mm256_add_ps(one, e));
            _mm256_storeu_ps(yr + i, _mm256_mul_ps(sv, _mm256_loadu_ps(ur + i)));
        }
#endif
        for (; i < dim; i++) yr[i] = gr[i] / (1.0f + expf(-gr[i])) * ur[i];
    }
}

/* ------------------------------------------------------------------ rope */

int cpu_rope_prepare(cpu_ctx_t *c, const int32_t *pos, int64_t n, int rope_dim, float base) {
    if (rope_dim < 2 || rope_dim % 2) return he_set(HE_EINVAL, "cpu: rope_dim %d", rope_dim);
    if (grow_one((void **)&c->rope, &c->rope_cap, (size_t)n * (size_t)rope_dim, sizeof(float))) return HE_ENOMEM;
    c->rope_n = n;
    c->rope_dim = rope_dim;
    const float theta_scale = powf(base, -2.0f / (float)rope_dim);
    float *tab = c->rope;
#pragma omp parallel for num_threads(c->nth) if (n >= 64 && c->nth > 1) schedule(static)
    for (int64_t i = 0; i < n; i++) {
        float theta = (float)pos[i];
        float *t = tab + i * rope_dim;
        for (int k = 0; k < rope_dim / 2; k++) {
            t[2 * k] = cosf(theta);
            t[2 * k + 1] = sinf(theta);
            theta *= theta_scale;
        }
    }
    return 0;
}

void cpu_rope(cpu_ctx_t *c, float *x, int64_t n, int n_heads, int head_dim, bool neox) {
    const int rd = c->rope_dim, half = rd / 2;
    const float *tab = c->rope;
    if (n > c->rope_n) n = c->rope_n; /* caller's bug; stay in bounds */
#pragma omp parallel for num_threads(c->nth) if (n >= 64 && c->nth > 1) schedule(static)
    for (int64_t i = 0; i < n; i++) {
        const float *t = tab + i * rd;
        for (int h = 0; h < n_heads; h++) {
            float *v = x + (i * n_heads + h) * (int64_t)head_dim;
            for (int k = 0; k < half; k++) {
                float cs = t[2 * k], sn = t[2 * k + 1];
                int i0 = neox ? k : 2 * k, i1 = neox ? k + half : 2 * k + 1;
                float x0 = v[i0], x1 = v[i1];
                v[i0] = x0 * cs - x1 * sn;
                v[i1] = x0 * sn + x1 * cs;
            }
        }
    }
}

/* ------------------------------------------------------------------ KV and attention */

static inline float *kv_row(const cpu_kv_layer *L, const int32_t *table, int32_t p, size_t off) {
    return L->kv + (size_t)table[p / L->block_size] * L->page_floats + off +
           (size_t)(p % L->block_size) * (size_t)L->kv_dim;
}

void cpu_kv_store(cpu_ctx_t *c, const cpu_kv_layer *L, const int32_t *const *tables, const float *k,
                  const float *v, const int32_t *pos, const int32_t *tok_seq, int64_t n) {
    const size_t bytes = (size_t)L->kv_dim * sizeof(float);
#pragma omp parallel for num_threads(c->nth) if (n >= 64 && c->nth > 1) schedule(static)
    for (int64_t i = 0; i < n; i++) {
        const int32_t *tab = tables[tok_seq[i]];
        memcpy(kv_row(L, tab, pos[i], L->k_off), k + i * L->kv_dim, bytes);
        memcpy(kv_row(L, tab, pos[i], L->v_off), v + i * L->kv_dim, bytes);
    }
}

/* s (n) = exp(s - max s); returns the max in *mx and the sum (f64
 * accumulation, as ggml's soft_max). */
static float exp_shift(float *s, int64_t n, float *mx_out) {
    float mx = -INFINITY;
    int64_t j = 0;
#if CPU_SIMD
    if (n >= 8) {
        __m256 m8 = _mm256_loadu_ps(s);
        for (j = 8; j + 8 <= n; j += 8) m8 = _mm256_max_ps(m8, _mm256_loadu_ps(s + j));
        __m128 m4 = _mm_max_ps(_mm256_extractf128_ps(m8, 1), _mm256_castps256_ps128(m8));
        m4 = _mm_max_ps(m4, _mm_movehl_ps(m4, m4));
        m4 = _mm_max_ss(m4, _mm_movehdup_ps(m4));
        mx = _mm_cvtss_f32(m4);
    }
#endif
    for (; j < n; j++) mx = s[j] > mx ? s[j] : mx;
    double sum = 0.0;
    j = 0;
#if CPU_SIMD
    __m256 mv = _mm256_set1_ps(mx);
    __m256d acc = _mm256_setzero_pd();
    for (; j + 8 <= n; j += 8) {
        __m256 e = exp8(_mm256_sub_ps(_mm256_loadu_ps(s + j), mv));
        _mm256_storeu_ps(s + j, e);
        acc = _mm256_add_pd(acc, _mm256_add_pd(_mm256_cvtps_pd(_mm256_castps256_ps128(e)),
                                               _mm256_cvtps_pd(_mm256_extractf128_ps(e, 1))));
    }
    __m128d t2 = _mm_add_pd(_mm256_castpd256_pd128(acc), _mm256_extractf128_pd(acc, 1));
    sum = _mm_cvtsd_f64(_mm_add_sd(t2, _mm_unpackhi_pd(t2, t2)));
#endif
    for (; j < n; j++) {
        s[j] = expf(s[j] - mx);
        sum += s[j];
    }
    *mx_out = mx;
    return (float)sum;
}

#define ATT_CHUNK 128 /* keys per attention work item (fixed: batch invariance) */
#define ATT_PF 16     /* keys prefetched ahead when decoding */
#define ATT_HINT _MM_HINT_T1
#define ATT_PF_MAXN 64 /* batches of fewer tokens prefetch K/V rows (decode) */

#if CPU_SIMD
/* The 8 sums of a[0..7], as one vector. */
static inline __m256 hsum8x8(const __m256 *a) {
    __m256 t0 = _mm256_hadd_ps(a[0], a[1]), t1 = _mm256_hadd_ps(a[2], a[3]);
    __m256 t2 = _mm256_hadd_ps(a[4], a[5]), t3 = _mm256_hadd_ps(a[6], a[7]);
    __m256 u0 = _mm256_hadd_ps(t0, t1), u1 = _mm256_hadd_ps(t2, t3);
    return _mm256_add_ps(_mm256_permute2f128_ps(u0, u1, 0x20), _mm256_permute2f128_ps(u0, u1, 0x31));
}

/* dot(q, k[jj] + koff) for 8 rows (hd % 8 == 0). */
static inline __m256 dot_1x8(const float *q, const float *const *k, size_t koff, int hd) {
    __m256 a[8];
    for (int jj = 0; jj < 8; jj++) a[jj] = _mm256_setzero_ps();
    for (int d = 0; d < hd; d += 8) {
        __m256 qv = _mm256_loadu_ps(q + d);
#pragma GCC unroll 8
        for (int jj = 0; jj < 8; jj++) a[jj] = _mm256_fmadd_ps(qv, _mm256_loadu_ps(k[jj] + koff + d), a[jj]);
    }
    return hsum8x8(a);
}
#endif

/* o (hd) = sum_j p[j] * row_j for n rows at base + off[j] (o overwritten);
 * the output stays in registers (64 floats at a time) while the rows stream by. */
static void pv_accum(float *o, const float *p, const float *base, const size_t *off, int32_t n, int hd) {
    int d0 = 0;
#if CPU_SIMD
    for (; d0 + 64 <= hd; d0 += 64) {
        __m256 acc[8];
        for (int cc = 0; cc < 8; cc++) acc[cc] = _mm256_setzero_ps();
        for (int32_t j = 0; j < n; j++) {
            const float *v = base + off[j] + d0;
            __m256 pj = _mm256_set1_ps(p[j]);
#pragma GCC unroll 8
            for (int cc = 0; cc < 8; cc++) acc[cc] = _mm256_fmadd_ps(pj, _mm256_loadu_ps(v + 8 * cc), acc[cc]);
        }
        for (int cc = 0; cc < 8; cc++) _mm256_storeu_ps(o + d0 + 8 * cc, acc[cc]);
    }
#endif
    if (d0 < hd) {
        memset(o + d0, 0, sizeof(float) * (size_t)(hd - d0));
        for (int32_t j = 0; j < n; j++) axpyf(o + d0, p[j], base + off[j] + d0, hd - d0);
    }
}

/* Attention is split into items (token i, chunk of keys): each item reads whole
 * K/V rows (every head) of its chunk once and serves all heads from them. A
 * token with several chunks (decode, where tokens are too few to keep the
 * threads busy) leaves per-chunk partial results (max, sum, unnormalized
 * output) that a second pass merges, as flash-decoding does. */
int cpu_attention(cpu_ctx_t *c, const cpu_kv_layer *L, const int32_t *const *tables, const float *q,
                  float *out, const int32_t *pos, const int32_t *tok_seq, int64_t n, int n_heads,
                  int n_kv_heads, int head_dim, float scale) {
    if (n <= 0) return 0;
    const int g = n_heads / n_kv_heads;
    int32_t maxp = 0;
    for (int64_t i = 0; i < n; i++) maxp = pos[i] > maxp ? pos[i] : maxp;
    /* Keys per chunk: a constant, so that a token's result does not depend
     * on what else is in the batch (batch invariance); small enough that a
     * chunk's K and V rows stay in L2 for the second (V) pass. In small
     * batches (decode) few tokens share a chunk's rows: prefetch them. */
    const int32_t ck = ATT_CHUNK;
    const bool prefetch = n < ATT_PF_MAXN;
    (void)prefetch;
    const int64_t max_chunks = ((int64_t)maxp + ck) / ck;
    /* scratch: per thread, n_heads * ck scores then ck row offsets; shared,
     * the item start of each token and (if any token has several chunks) the
     * partials (n, max_chunks, n_heads, head_dim + 2) */
    size_t need = (size_t)n_heads * ck + (size_t)ck * (sizeof(size_t) / sizeof(float));
    if (grow_each((void **)c->scores, c->nth, &c->scores_cap, need, sizeof(float))) return HE_ENOMEM;
    const size_t pstride = (size_t)head_dim + 2;
    size_t shared = (size_t)(n + 1) * 2 + (max_chunks > 1 ? (size_t)n * max_chunks * n_heads * pstride : 0);
    if (grow_one((void **)&c->attn, &c->attn_cap, shared, sizeof(float))) return HE_ENOMEM;
    int64_t *istart = (int64_t *)c->attn;
    float *part = c->attn + (size_t)(n + 1) * 2;
    istart[0] = 0;
    /* a sliding window (L->window > 0) starts token i's keys at pos - window + 1,
     * in the chunk holding that position (chunks stay aligned to position 0) */
#define ATT_LO(p) (L->window > 0 && (p) >= L->window ? (p) - L->window + 1 : 0)
    for (int64_t i = 0; i < n; i++) istart[i + 1] = istart[i] + pos[i] / ck - ATT_LO(pos[i]) / ck + 1;
    const int64_t n_items = istart[n];
    const int64_t dim = (int64_t)n_heads * head_dim;
    const float *kbase = L->kv + L->k_off, *vbase = L->kv + L->v_off;
    int nth = c->nth;
    if (n_items < nth) nth = (int)n_items;
#pragma omp parallel num_threads(nth)
    {
        float *sc = c->scores[omp_get_thread_num()];
        size_t *off = (size_t *)(sc + (size_t)n_heads * ck);
        int64_t i = 0;
#pragma omp for schedule(dynamic, 1)
        for (int64_t it = 0; it < n_items; it++) {
            while (it >= istart[i + 1]) i++;
            while (it < istart[i]) i--;
            const int64_t chunk = it - istart[i], nchunks = istart[i + 1] - istart[i];
            const int32_t np = pos[i] + 1, lo = ATT_LO(pos[i]), c0 = (int32_t)((lo / ck + chunk) * ck);
            const int32_t j0 = c0 > lo ? c0 : lo;
            const int32_t m = (np < c0 + ck ? np : c0 + ck) - j0;
            const int32_t *tab = tables[tok_seq[i]];
            const float *qi = q + i * dim;
            for (int32_t j = 0; j < m; j++) {
                int32_t p = j0 + j;
                off[j] = (size_t)tab[p / L->block_size] * L->page_floats + (size_t)(p % L->block_size) * L->kv_dim;
            }
            int32_t j = 0;
#if CPU_SIMD
            if (head_dim % 8 == 0)
                for (; j + 8 <= m; j += 8) {
                    const float *kr[8];
                    for (int jj = 0; jj < 8; jj++) kr[jj] = kbase + off[j + jj];
                    if (prefetch && j + ATT_PF + 8 <= m)
                        for (int jj = 0; jj < 8; jj++) {
                            const char *pk = (const char *)(kbase + off[j + ATT_PF + jj]);
                            const char *pv = (const char *)(vbase + off[j + ATT_PF + jj]);
                            for (int cl = 0; cl < L->kv_dim * 4; cl += 64) {
                                _mm_prefetch(pk + cl, ATT_HINT);
                                _mm_prefetch(pv + cl, _MM_HINT_T1);
                            }
                        }
                    for (int h = 0; h < n_heads; h++)
                        _mm256_storeu_ps(sc + (size_t)h * ck + j,
                                         _mm256_mul_ps(dot_1x8(qi + h * head_dim, kr, (size_t)(h / g) * head_dim, head_dim),
                                                       _mm256_set1_ps(scale)));
                }
#endif
            for (; j < m; j++)
                for (int h = 0; h < n_heads; h++)
                    sc[(size_t)h * ck + j] = dotf(qi + h * head_dim, kbase + off[j] + (size_t)(h / g) * head_dim, head_dim) * scale;
            for (int h = 0; h < n_heads; h++) {
                float *s = sc + (size_t)h * ck, mx;
                float sum = exp_shift(s, m, &mx);
                const float *vb = vbase + (size_t)(h / g) * head_dim;
                if (nchunks == 1) {
                    const float inv = 1.0f / sum;
                    for (int32_t k = 0; k < m; k++) s[k] *= inv;
                    pv_accum(out + i * dim + h * head_dim, s, vb, off, m, head_dim);
                } else {
                    float *pp = part + (((size_t)i * max_chunks + chunk) * n_heads + h) * pstride;
                    pv_accum(pp, s, vb, off, m, head_dim);
                    pp[head_dim] = mx;
                    pp[head_dim + 1] = sum;
                }
            }
        }
        if (max_chunks > 1) {
#pragma omp for schedule(static)
            for (int64_t ih = 0; ih < n * n_heads; ih++) {
                const int64_t ti = ih / n_heads, h = ih % n_heads;
                const int64_t nchunks = istart[ti + 1] - istart[ti];
                if (nchunks == 1) continue;
                const float *pp = part + ((size_t)ti * max_chunks * n_heads + h) * pstride;
                const size_t cstride = (size_t)n_heads * pstride;
                float M = -INFINITY, den = 0.0f;
                for (int64_t k = 0; k < nchunks; k++) M = pp[k * cstride + head_dim] > M ? pp[k * cstride + head_dim] : M;
                float *o = out + ti * dim + h * head_dim;
                memset(o, 0, sizeof(float) * (size_t)head_dim);
                for (int64_t k = 0; k < nchunks; k++) {
                    const float w = expf(pp[k * cstride + head_dim] - M);
                    den += w * pp[k * cstride + head_dim + 1];
                    axpyf(o, w, pp + k * cstride, head_dim);
                }
                const float inv = 1.0f / den;
                for (int d = 0; d < head_dim; d++) o[d] *= inv;
            }
        }
    }
    return 0;
}
#undef ATT_LO
