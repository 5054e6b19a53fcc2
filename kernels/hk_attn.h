/* hk_attn: paged KV store and causal attention over a paged KV pool.
 *
 * The pool holds pages of (n_layers, 2 [K, V], block_size, kv_dim) elements
 * of kv_type (HK_KV_F32 / F16 / BF16), page p at pool + p * page_elems; one
 * layer's K of slot j of page p starts at p * page_elems + k_off + j *
 * kv_dim (V: v_off). Block tables are one device array bt (n_seqs,
 * bt_stride): bt[s * bt_stride + k] is the page of positions [k*bs, (k+1)*bs)
 * of sequence s.
 *
 * Attention: token i (of sequence tok_seq[i], at position pos[i]) and head h
 * get out[i, h] = softmax over positions 0..pos[i] of (q[i, h] . K[p, h/G]) *
 * scale applied to V[p, h/G], G = n_heads / n_kv_heads: what cpu_attention
 * computes. Work comes in tiles: a tile is up to hk_attn_tile_rows(G)
 * consecutive tokens of one sequence (consecutive positions); one block takes
 * one tile, one KV head and one key range (split), loads each K/V tile of 32
 * positions once into shared memory and serves every query head of the GQA
 * group and every row of the tile from it. With n_split > 1, positions
 * [z * split_len, (z+1) * split_len) go to split z, whose partial softmax
 * state lands in a workspace and a merge kernel combines the splits
 * (split-K, for decode over long contexts). Blocks of empty splits exit at
 * once, so a fixed grid serves every mix of context lengths (graph replay).
 * head_dim <= 256; G <= 16.
 */
#ifndef HELIUM_HK_ATTN_H
#define HELIUM_HK_ATTN_H

#include "hk_types.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct {
    void *pool;               /* the page pool */
    int kv_type;              /* HK_KV_* */
    int64_t page_elems;       /* elements per page (all layers) */
    int64_t k_off, v_off;     /* this layer's K and V offsets inside a page, in elements */
    int block_size;
    int n_heads, n_kv_heads, head_dim;
    const int32_t *bt;        /* (n_seqs, bt_stride) page ids */
    int bt_stride;
} hk_kv_view;

/* Writes k, v (n, n_kv_heads * head_dim) f32 of token i at position pos[i]
 * of sequence tok_seq[i] into the view's layer, converting to kv_type. */
int hk_kv_store(const hk_kv_view *kv, const float *k, const float *v, const int32_t *pos, const int32_t *tok_seq,
                int64_t n, cudaStream_t st);

/* Rows per tile for a GQA group of G query heads (16 / G, at least 1). */
int hk_attn_tile_rows(int G);

/* Workspace floats the split path needs for n_tokens rows. */
size_t hk_attn_ws_floats(const hk_kv_view *kv, int64_t n_tokens, int n_split);

/* q, out: (n_tokens, n_heads * head_dim) f32. tiles: (n_tiles, 2) int32 pairs
 * (first token, row count). ws: hk_attn_ws_floats floats when n_split > 1. */
int hk_attention(const hk_kv_view *kv, const float *q, float *out, const int32_t *pos, const int32_t *tok_seq,
                 int64_t n_tokens, const int32_t *tiles, int n_tiles, float scale, int n_split, int split_len,
                 float *ws, cudaStream_t st);

#ifdef __cplusplus
}
#endif

#endif
