/* cuda_backend: the CUDA implementation of backend.h (be_cuda_new).
 *
 * Weights are uploaded once in their GGUF types (F32, F16, BF16, Q8_0, Q4_K:
 * none is dequantized on upload; Q8_0 and Q4_K are dequantized slice by slice
 * into scratch for prefill products). The KV pool lives in device memory in
 * F16 or BF16 (kv_type; F32 for tests), pages laid out as the wire format, so
 * kv_export / kv_import are one copy each. Decode-only steps (one token per
 * sequence) are captured as CUDA graphs per batch size and replayed.
 *
 * Not run on a GPU yet: the code compiles and links in every CUDA build, and
 * tests/gpu/run.sh checks it where a GPU is present (docs/gpu.md).
 */
#ifndef HELIUM_CUDA_BACKEND_H
#define HELIUM_CUDA_BACKEND_H

#include <stdbool.h>
#include <stdint.h>

#include "backend.h"

typedef struct {
    int32_t n_blocks;      /* KV pages; 0: kv_mem_mb MiB of pages, or kv_mem_pct % of free memory */
    int32_t min_blocks;    /* fewest pages acceptable (one full context + 1) */
    int32_t block_size;    /* tokens per page */
    int32_t kv_type;       /* kvw_type: KVW_F16 or KVW_BF16 (KVW_F32: tests) */
    int32_t kv_mem_mb;
    int32_t kv_mem_pct;    /* 1..99 */
    int32_t max_tokens;    /* tokens one batch may carry */
    int32_t max_seqs;      /* sequences one batch may carry */
    int32_t max_ctx;       /* context per sequence */
    int32_t device;        /* CUDA device ordinal */
    bool no_graphs;        /* never capture decode steps (tests) */
} be_cuda_config;

typedef struct {
    int64_t forwards;
    int64_t graph_captures;    /* decode graphs instantiated */
    int64_t graph_replays;     /* decode steps run by replaying one */
    int64_t weight_bytes;      /* device bytes of weights */
    int64_t kv_bytes;          /* device bytes of the KV pool */
} be_cuda_stats;

/* 0 when device `device` can run the backend; else HE_EUNAVAIL with the CUDA
 * runtime's reason in he_msg() (no driver, no device, ...). Cheap. */
int be_cuda_probe(int device);

/* NULL with he_msg() on failure (HE_EUNAVAIL without a usable GPU,
 * HE_EUNSUPPORTED for a weight type or shape the kernels lack, HE_ENOMEM). */
be_t *be_cuda_new(const model_t *m, const be_cuda_config *cfg);

/* The device KV pool of a backend made by be_cuda_new: base pointer, element
 * type (kvw_type), elements per page (pages are contiguous). For transports
 * and tests; HE_EINVAL for any other backend. */
int be_cuda_pool(be_t *be, void **pool, int *kv_type, int64_t *page_elems);

/* Counters of a backend made by be_cuda_new (zeros for any other). */
be_cuda_stats be_cuda_get_stats(const be_t *be);

#endif
