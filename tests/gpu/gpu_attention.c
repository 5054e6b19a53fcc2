/* gpu_attention: the paged KV store, causal attention (prefill tiles and
 * split-K decode) and page gather / scatter against the CPU backend
 * (cpu_kv_store, cpu_attention) on fresh random inputs; needs a GPU
 * (tests/gpu/run.sh).
 *
 * Each case builds one layer's pool of pages in random order, sequences with
 * a cached prefix and new tokens (so chunks start and end inside pages and on
 * their boundaries), random queries, and compares:
 *   - against the CPU on the same KV values rounded to the pool type (only
 *     summation order differs): NMSE <= 1e-6;
 *   - against the CPU on the unrounded F32 values: NMSE <= 5e-4 (the
 *     test-backend-ops bound for attention in F16 / BF16).
 * Cases: GQA groups 1, 3, 4, 8, 16; head dims 16, 48, 64, 128, 256; decode
 * batches mixing contexts 1..4097 and up to 32768 positions with 64 splits. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cpu_ops.h"
#include "herr.h"
#include "hk_attn.h"
#include "hk_kvpage.h"
#include "kvwire.h"
#include "util.h"

static cpu_ctx_t *g_cpu;

typedef struct {
    const char *name;
    int n_heads, n_kv_heads, head_dim, block_size, kv_type;
    int n_seqs;
    int ctx[8];   /* positions already cached per sequence */
    int nnew[8];  /* new tokens per sequence (1: decode) */
    int split_len; /* 0: one split */
} att_case;

static void run_case(const att_case *c) {
    const int D = c->head_dim, kvd = c->n_kv_heads * D, qd = c->n_heads * D, bs = c->block_size;
    int total_pages = 0, T = 0, max_pages = 0;
    for (int s = 0; s < c->n_seqs; s++) {
        int p = (c->ctx[s] + c->nnew[s] + bs - 1) / bs;
        total_pages += p;
        if (p > max_pages) max_pages = p;
        T += c->nnew[s];
    }
    const int n_pages = total_pages + 3;
    const size_t page_elems = (size_t)2 * bs * kvd; /* one layer: K then V */
    float *pool = malloc((size_t)n_pages * page_elems * 4), *pool_r = malloc((size_t)n_pages * page_elems * 4);
    gu_fill(pool, (size_t)n_pages * page_elems, 1.0f);
    /* pages in a random order */
    int32_t *perm = malloc(n_pages * 4);
    for (int i = 0; i < n_pages; i++) perm[i] = i;
    for (int i = n_pages - 1; i > 0; i--) {
        int j = (int)(gu_rand_u32() % (uint32_t)(i + 1)), t = perm[i];
        perm[i] = perm[j], perm[j] = t;
    }
    int32_t **tables = malloc(c->n_seqs * sizeof *tables), *bt = calloc((size_t)c->n_seqs * max_pages, 4);
    int32_t *pos = malloc(T * 4), *seq = malloc(T * 4), *tiles = malloc(2 * T * 4);
    int used = 0, t = 0, n_tiles = 0;
    const int tile_rows = hk_attn_tile_rows(c->n_heads / c->n_kv_heads);
    for (int s = 0; s < c->n_seqs; s++) {
        int p = (c->ctx[s] + c->nnew[s] + bs - 1) / bs;
        tables[s] = bt + (size_t)s * max_pages;
        for (int k = 0; k < p; k++) tables[s][k] = perm[used++];
        int t0 = t;
        for (int i = 0; i < c->nnew[s]; i++, t++) {
            pos[t] = c->ctx[s] + i;
            seq[t] = s;
        }
        for (int i = t0; i < t; i += tile_rows) {
            tiles[2 * n_tiles] = i;
            tiles[2 * n_tiles + 1] = t - i < tile_rows ? t - i : tile_rows;
            n_tiles++;
        }
    }
    float *q = malloc((size_t)T * qd * 4), *ref = malloc((size_t)T * qd * 4), *ref_r = malloc((size_t)T * qd * 4),
          *got = malloc((size_t)T * qd * 4);
    gu_fill(q, (size_t)T * qd, 1.0f);
    /* the pool as the GPU holds it, and those values widened back */
    const size_t eb = kvw_elem_bytes(c->kv_type), pool_elems = (size_t)n_pages * page_elems;
    void *wire = malloc(pool_elems * eb);
    kvw_convert(pool, KVW_F32, wire, c->kv_type, pool_elems);
    kvw_convert(wire, c->kv_type, pool_r, KVW_F32, pool_elems);
    const float scale = 1.0f / sqrtf((float)D);
    cpu_kv_layer L = {.kv = pool, .page_floats = page_elems, .k_off = 0, .v_off = (size_t)bs * kvd,
                      .block_size = bs, .kv_dim = kvd};
    int crc = cpu_attention(g_cpu, &L, (const int32_t *const *)tables, q, ref, pos, seq, T, c->n_heads,
                            c->n_kv_heads, D, scale);
    L.kv = pool_r;
    if (!crc)
        crc = cpu_attention(g_cpu, &L, (const int32_t *const *)tables, q, ref_r, pos, seq, T, c->n_heads,
                            c->n_kv_heads, D, scale);
    if (crc) {
        fprintf(stderr, "FATAL: cpu_attention: %s\n", he_msg());
        exit(2);
    }

    void *dpool = gu_to_dev(wire, pool_elems * eb);
    int32_t *dbt = gu_to_dev(bt, (size_t)c->n_seqs * max_pages * 4), *dpos = gu_to_dev(pos, T * 4),
            *dseq = gu_to_dev(seq, T * 4), *dtiles = gu_to_dev(tiles, 2 * n_tiles * 4);
    float *dq = gu_to_dev(q, (size_t)T * qd * 4), *dout = gu_dev_alloc((size_t)T * qd * 4);
    hk_kv_view kv = {.pool = dpool, .kv_type = c->kv_type, .page_elems = (int64_t)page_elems, .k_off = 0,
                     .v_off = (int64_t)bs * kvd, .block_size = bs, .n_heads = c->n_heads, .n_kv_heads = c->n_kv_heads,
                     .head_dim = D, .bt = dbt, .bt_stride = max_pages};
    int max_ctx = 0;
    for (int s = 0; s < c->n_seqs; s++)
        if (c->ctx[s] + c->nnew[s] > max_ctx) max_ctx = c->ctx[s] + c->nnew[s];
    int n_split = c->split_len ? (max_ctx + c->split_len - 1) / c->split_len : 1;
    float *ws = n_split > 1 ? gu_dev_alloc(hk_attn_ws_floats(&kv, T, n_split) * 4) : NULL;
    GU_CUDA(cudaMemset(dout, 0xFF, (size_t)T * qd * 4)); /* NaN poison: every output must be written */
    GU_LAUNCH(hk_attention(&kv, dq, dout, dpos, dseq, T, dtiles, n_tiles, scale, n_split, c->split_len, ws, 0));
    GU_CUDA(cudaDeviceSynchronize());
    gu_to_host(got, dout, (size_t)T * qd * 4);
    char name[160];
    snprintf(name, sizeof name, "attn %s %s vs CPU same KV (splits %d)", c->name, kvw_name(c->kv_type), n_split);
    gu_check(name, gu_nmse(got, ref_r, (size_t)T * qd), 1e-6);
    snprintf(name, sizeof name, "attn %s %s vs CPU f32 KV", c->name, kvw_name(c->kv_type));
    gu_check(name, gu_nmse(got, ref, (size_t)T * qd), 5e-4);

    /* the KV store: write the new tokens' K/V of random values, compare pools */
    float *k = malloc((size_t)T * kvd * 4), *v = malloc((size_t)T * kvd * 4);
    gu_fill(k, (size_t)T * kvd, 2.0f);
    gu_fill(v, (size_t)T * kvd, 2.0f);
    L.kv = pool;
    cpu_kv_store(g_cpu, &L, (const int32_t *const *)tables, k, v, pos, seq, T);
    float *dk = gu_to_dev(k, (size_t)T * kvd * 4), *dv = gu_to_dev(v, (size_t)T * kvd * 4);
    GU_LAUNCH(hk_kv_store(&kv, dk, dv, dpos, dseq, T, 0));
    void *back = malloc(pool_elems * eb);
    gu_to_host(back, dpool, pool_elems * eb);
    kvw_convert(pool, KVW_F32, wire, c->kv_type, pool_elems);
    snprintf(name, sizeof name, "kv store %s %s", c->name, kvw_name(c->kv_type));
    gu_expect(name, memcmp(back, wire, pool_elems * eb) == 0, "pool bytes equal the CPU store, rounded");

    cudaFree(dpool), cudaFree(dbt), cudaFree(dpos), cudaFree(dseq), cudaFree(dtiles), cudaFree(dq), cudaFree(dout);
    cudaFree(ws), cudaFree(dk), cudaFree(dv);
    free(pool), free(pool_r), free(perm), free(tables), free(bt), free(pos), free(seq), free(tiles), free(q);
    free(ref), free(ref_r), free(got), free(wire), free(k), free(v), free(back);
}

/* Gather pages into staging (converting to the wire type), scatter them into
 * other pages, and compare with the CPU conversion. */
static void test_pages(int pool_type, int stage_type) {
    const int n_pages = 40, n = 7;
    const size_t pe = 2 * 2 * 16 * 256; /* 2 layers, bs 16, kv_dim 256 */
    float *f = malloc(n_pages * pe * 4);
    gu_fill(f, n_pages * pe, 1.0f);
    void *pool = malloc(n_pages * pe * 4), *stage = malloc(n * pe * 4), *want = malloc(n * pe * 4);
    kvw_convert(f, KVW_F32, pool, pool_type, n_pages * pe);
    int32_t src[7] = {3, 0, 39, 17, 18, 5, 22}, dst[7] = {1, 2, 4, 30, 31, 32, 38};
    const size_t peb = pe * kvw_elem_bytes(pool_type), seb = pe * kvw_elem_bytes(stage_type);
    for (int i = 0; i < n; i++)
        kvw_convert((char *)pool + src[i] * peb, pool_type, (char *)want + i * seb, stage_type, pe);
    void *dpool = gu_to_dev(pool, n_pages * peb), *dstage = gu_dev_alloc(n * seb);
    int32_t *dsrc = gu_to_dev(src, sizeof src), *ddst = gu_to_dev(dst, sizeof dst);
    GU_LAUNCH(hk_kv_gather(dpool, pool_type, (int64_t)pe, dsrc, n, dstage, stage_type, 0));
    gu_to_host(stage, dstage, n * seb);
    char name[96];
    snprintf(name, sizeof name, "page gather %s pool -> %s staging", kvw_name(pool_type), kvw_name(stage_type));
    gu_expect(name, memcmp(stage, want, n * seb) == 0, "bytes equal kvw_convert");
    GU_LAUNCH(hk_kv_scatter(dpool, pool_type, (int64_t)pe, ddst, n, dstage, stage_type, 0));
    void *back = malloc(n_pages * peb);
    gu_to_host(back, dpool, n_pages * peb);
    bool ok = true;
    void *conv = malloc(peb);
    for (int i = 0; i < n; i++) {
        kvw_convert((char *)want + i * seb, stage_type, conv, pool_type, pe);
        ok &= memcmp((char *)back + dst[i] * peb, conv, peb) == 0;
    }
    ok &= memcmp((char *)back + 3 * peb, (char *)pool + 3 * peb, peb) == 0; /* untouched page */
    snprintf(name, sizeof name, "page scatter %s staging -> %s pool", kvw_name(stage_type), kvw_name(pool_type));
    gu_expect(name, ok, "pages written, others untouched");
    cudaFree(dpool), cudaFree(dstage), cudaFree(dsrc), cudaFree(ddst);
    free(f), free(pool), free(stage), free(want), free(back), free(conv);
}

int main(void) {
    int n_dev = 0;
    if (cudaGetDeviceCount(&n_dev) != cudaSuccess || n_dev == 0) {
        fprintf(stderr, "gpu_attention: no CUDA device\n");
        return 2;
    }
    gu_seed(4242);
    g_cpu = cpu_ctx_new(8);
    const att_case cases[] = {
        {"prefill GQA4 D64 prefix 100 + 37", 8, 2, 64, 16, KVW_F16, 1, {100}, {37}, 0},
        {"prefill MHA D48 0 + 64", 6, 6, 48, 16, KVW_F16, 1, {0}, {64}, 0},
        {"prefill 2 seqs GQA3 D64 bs32", 9, 3, 64, 32, KVW_BF16, 2, {31, 64}, {33, 5}, 0},
        {"prefill GQA8 D128 prefix 4000 + 16", 32, 4, 128, 16, KVW_F16, 1, {4000}, {16}, 0},
        {"prefill G16 D16", 16, 1, 16, 16, KVW_F32, 1, {7}, {20}, 0},
        {"decode mix GQA3 D64", 9, 3, 64, 16, KVW_F16, 7, {0, 14, 15, 16, 32, 999, 4096}, {1, 1, 1, 1, 1, 1, 1}, 512},
        {"decode mix GQA4 D128 bf16", 32, 8, 128, 16, KVW_BF16, 4, {1, 2047, 2048, 8191}, {1, 1, 1, 1}, 512},
        {"decode 32k GQA4 D128", 32, 8, 128, 16, KVW_F16, 2, {32767, 20000}, {1, 1}, 512},
        {"decode D256 G2", 8, 4, 256, 16, KVW_F16, 2, {8191, 300}, {1, 1}, 512},
        {"decode D16 G2 f32 one split", 4, 2, 16, 16, KVW_F32, 3, {0, 16, 100}, {1, 1, 1}, 0},
        {"mixed decode + prefill", 8, 2, 64, 16, KVW_F16, 3, {50, 0, 200}, {1, 40, 1}, 0},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) run_case(&cases[i]);
    const int ty[3] = {KVW_F32, KVW_F16, KVW_BF16};
    for (int a = 0; a < 3; a++)
        for (int b = 0; b < 3; b++) test_pages(ty[a], ty[b]);
    cpu_ctx_destroy(&g_cpu);
    return gu_finish("gpu_attention");
}
