/* cpu_layer_ops: the CPU kernels of a layer other than matmul: RMSNorm,
 * SwiGLU, RoPE (table built once per batch by cpu_rope_prepare, applied per
 * head), the paged KV store and attention (causal, optional sliding window,
 * over KV pages named by per-sequence block tables); see cpu_ops.h for the
 * contract and numerics.
 *
 * Invariants: as cpu_ops.c, every output is computed by one fixed sequence of
 * operations whatever the batch size or thread count (attention splits keys
 * into fixed ATT_CHUNK items and merges the partials in order), so results
 * are batch invariant; scratch grows only before a parallel region.
 */
#include "cpu_ops_impl.h"

#include <omp.h>

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
