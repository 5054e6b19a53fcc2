/* engine: continuous batching over a paged, prefix-hashed KV cache.
 *
 * Requests (a prompt of token ids + sampling parameters) are submitted at any
 * time; each eng_step() builds one batch from every running sequence: one
 * decode token per sequence in its decode phase, then prefill chunks of
 * sequences still reading their prompt, up to max_batch_tokens; runs it
 * through the backend; samples; retires finished sequences. Sequences join
 * and leave between steps.
 *
 * Prefix cache: a new request's prompt is cut into full blocks whose chained
 * hashes (blockhash.h) are looked up in the block manager (kvcache.h); the
 * longest cached run is shared (ref-counted), and only the remaining tokens
 * are computed. At least the last prompt token is always computed (its logits
 * start generation). Every block that becomes full is committed under its
 * hash, prompt and generated tokens alike, so later requests (or later turns)
 * reuse it. When KV pages run out, the most recently admitted sequence is
 * preempted: its pages are released (committed ones stay cached) and it is
 * re-queued to resume later, so no accepted request is lost.
 *
 * Not thread-safe: one thread drives an engine.
 */
#ifndef HELIUM_ENGINE_H
#define HELIUM_ENGINE_H

#include <stdbool.h>
#include <stdint.h>

#include "backend.h"
#include "kvcache.h"
#include "model.h"
#include "sampler.h"

typedef struct eng eng_t;

typedef enum { ENG_BACKEND_CPU = 0, ENG_BACKEND_CUDA = 1 } eng_backend;

typedef struct {
    int32_t n_blocks;          /* KV pages (0: derive from kv_mem_mb) */
    int32_t kv_mem_mb;         /* KV budget in MiB when n_blocks == 0 (default 512) */
    int32_t block_size;        /* tokens per page (default 16) */
    int32_t n_threads;         /* compute threads (default: online CPUs) */
    int32_t max_batch_tokens;  /* token budget of one step (default 512) */
    int32_t max_seqs;          /* running sequences at most (default 64) */
    int32_t n_ctx;             /* context per sequence (default: model's, capped at 8192) */
    bool no_prefix_cache;      /* compute every prompt token (baseline) */
    /* backend, when eng_new is given none (be == NULL) */
    eng_backend backend;       /* ENG_BACKEND_CPU (default) or ENG_BACKEND_CUDA */
    int32_t kv_type;           /* CUDA: KV pool element type: 0 F16 (default), KVW_BF16, or -1 F32 */
    int32_t kv_mem_pct;        /* CUDA, n_blocks == 0 and kv_mem_mb == 0: percent of the device memory
                                  free after weights and scratch given to KV pages (default 90) */
} eng_config;

typedef struct {
    smp_params sampling;
    int32_t max_tokens;        /* generated tokens at most (>= 1) */
    const int32_t *stop_ids;   /* extra stop tokens (copied) */
    int32_t n_stop;
    const char *const *stops;  /* (n_stops) stop strings (copied): generation ends as soon as the text
                                  contains one, and the text is cut before it (detok.h) */
    int32_t n_stops;
    bool keep_text;            /* detokenize as tokens come (eng_peek_text, eng_result.text); implied by stops */
    bool ignore_eos;
    bool record_logits;        /* keep the logits of every sampled position (tests) */
    bool no_cache;             /* neither reuse nor commit prefix pages (isolated baseline) */
    uint64_t user;             /* caller's tag, returned in the result */
} eng_request;

typedef enum { ENG_FINISH_STOP = 1, ENG_FINISH_LENGTH = 2, ENG_FINISH_CONTEXT = 3, ENG_FINISH_ERROR = 4 } eng_finish;

typedef struct {
    uint64_t id;               /* as returned by eng_submit */
    uint64_t user;
    int32_t *ids;              /* generated token ids (n_gen); owned by the result */
    int32_t n_gen;
    int32_t prompt_tokens;
    int32_t cached_tokens;     /* prompt tokens served from the prefix cache */
    eng_finish finish;
    int32_t error;             /* herr code when finish == ENG_FINISH_ERROR */
    float *logits;             /* (n_gen, n_vocab) if record_logits, else NULL; owned */
    char *text;                /* (text_len + 1) the generated text, cut before a stop string, if keep_text
                                  or stops; else NULL; owned */
    size_t text_len;
} eng_result;

typedef struct {
    int64_t requests;
    int64_t prompt_tokens;       /* all prompt tokens submitted */
    int64_t cached_tokens;       /* prompt tokens served from the prefix cache */
    int64_t computed_tokens;     /* prompt tokens run through prefill (incl. recompute after preemption) */
    int64_t generated_tokens;
    int64_t steps;
    int64_t batch_tokens;        /* tokens over all forward passes */
    int64_t preemptions;
    int64_t imported_blocks;     /* KV pages imported from a peer */
    int64_t exported_blocks;
    double forward_seconds;      /* wall time inside the backend */
    int64_t decode_steps;        /* steps that carried no prompt token (decode only) */
    int64_t decode_rows;         /* sequences over those steps (mean decode batch = rows / steps) */
    double decode_seconds;       /* backend time of those steps */
} eng_counters;

/* Takes neither model nor backend ownership; both must outlive the engine.
 * be == NULL: the engine creates a CPU backend (and owns it). */
eng_t *eng_new(const model_t *m, be_t *be, const eng_config *cfg);
void eng_destroy(eng_t **self_p);

/* Queues a request. Errors: HE_EEMPTY (no tokens), HE_ECONTEXT (prompt does
 * not fit the context), HE_ERANGE (token id outside the vocabulary),
 * HE_EINVAL (bad parameters). The prompt is copied. */
int eng_submit(eng_t *e, const int32_t *prompt, int32_t n, const eng_request *rq, uint64_t *id_out);
/* Cancels a queued or running request; its result reports ENG_FINISH_ERROR
 * with HE_ECANCELED. HE_ENOTFOUND if unknown or already finished. */
int eng_cancel(eng_t *e, uint64_t id);

/* Runs one batch. Returns the number of unfinished requests after the step
 * (0: idle), or a negative herr code on a backend failure. */
int eng_step(eng_t *e);
/* Pops one finished result (oldest first). false if none. */
bool eng_next_result(eng_t *e, eng_result *out);
void eng_result_free(eng_result *r);
/* Tokens generated by a running request so far (for streaming); NULL if not
 * running. The pointer is valid until the next eng_step. */
const int32_t *eng_peek_tokens(eng_t *e, uint64_t id, int32_t *n_gen);
/* Text of a running request with keep_text or stops (NULL otherwise): the
 * whole text so far in *len, and in *stable the bytes that may be shown now
 * (never past a possible stop string start nor inside a UTF-8 character;
 * never decreasing). Valid until the next eng_step. */
const char *eng_peek_text(eng_t *e, uint64_t id, size_t *len, size_t *stable);

/* Runs ids through the model alone (no cache reuse) and writes the logits of
 * every position: (n, n_vocab). For `helium-worker eval` and tests. */
int eng_eval(eng_t *e, const int32_t *ids, int32_t n, float *logits);

/* KV transfer, page by page in the backend's wire format (backend.h).
 * export: for the longest cached run of hashes[0..n), copies each page to
 * buf + i * page_bytes; returns how many. import: stores n pages under their
 * hashes (skipping ones already cached) as reclaimable cached blocks; returns
 * how many were stored, or HE_ENOMEM. */
int eng_kv_export(eng_t *e, const uint64_t *hashes, int32_t n, void *buf);
/* export's one-page step, safe from a second thread while the engine steps
 * (kvcache.h: under the cache's lock): copies the page cached under hash to
 * buf. Returns 1, 0 when it is not cached, or a negative herr code. Counts
 * nothing (the caller does). */
int eng_kv_copy_out(eng_t *e, uint64_t hash, void *buf);
int eng_kv_import(eng_t *e, const uint64_t *hashes, int32_t n, const void *buf);
/* import of pages whose elements are of type src_type (kvwire.h), converted
 * to the backend's type first: buf holds n pages of eng_kv_page_bytes_of(e,
 * src_type) bytes. Same returns as eng_kv_import; HE_EINVAL for a bad type. */
int eng_kv_import_typed(eng_t *e, const uint64_t *hashes, int32_t n, const void *buf, int src_type);
/* Pages moved by a transport (worker/net/xport.h) straight into and out of
 * the backend's pool, by pool page index. All engine-thread only.
 *
 * Destination (the puller): reserve takes n free pages (evicting cached ones
 * as kvc_alloc does) that belong to no sequence and no hash: nothing reads
 * them, nothing evicts them, nothing else writes them. The transport fills
 * them; then commit registers page i under hashes[i] (a hash already cached
 * meanwhile keeps its page and the reserved one is freed) and they become
 * ordinary reclaimable cached pages, or release frees them unread (a failed
 * or abandoned transfer: the call recomputes them). Every reserved page is
 * committed or released exactly once.
 * reserve: n, or HE_ENOMEM (nothing taken) / HE_EINVAL. commit: pages stored
 * (counted as imported_blocks). */
int eng_kv_reserve(eng_t *e, int32_t n, int32_t *pages);
int eng_kv_commit(eng_t *e, const int32_t *pages, const uint64_t *hashes, int32_t n);
void eng_kv_release(eng_t *e, const int32_t *pages, int32_t n);
/* Source (the server): hold takes a reference on the pages of the leading
 * cached run of hashes[0..n) and writes their indices to pages; a held page
 * is neither evicted nor reused (its KV is committed, so never written) until
 * unhold. Returns the run's length k (0..n); the caller unholds those k
 * pages exactly once. Counts nothing (the caller counts what it sends). */
int eng_kv_hold(eng_t *e, const uint64_t *hashes, int32_t n, int32_t *pages);
void eng_kv_unhold(eng_t *e, const int32_t *pages, int32_t n);
/* One pool page in the backend's wire format (eng_kv_page_bytes): read a
 * held page, write a reserved one. HE_ERANGE for a page outside the pool. */
int eng_kv_page_read(eng_t *e, int32_t page, void *dst);
int eng_kv_page_write(eng_t *e, int32_t page, const void *src);
/* The backend the engine runs on (a transport over its pool needs it). */
be_t *eng_be(eng_t *e);
size_t eng_kv_page_bytes(const eng_t *e);
/* The backend's KV element type (kvw_type) and a page's bytes in type t. */
int eng_kv_type(const eng_t *e);
size_t eng_kv_page_bytes_of(const eng_t *e, int t);
/* The backend's name ("cpu", "cuda"), as Register reports it. */
const char *eng_backend_name(const eng_t *e);

/* Pinning of cached prefixes by hash (workflow-aware caching). */
int eng_pin(eng_t *e, const uint64_t *hashes, int32_t n);
int eng_unpin(eng_t *e, const uint64_t *hashes, int32_t n);

/* The KV cache's block manager, for tests and the engine's own backends.
 * Serving code uses the calls below instead. */
kvc_t *eng_kvc(eng_t *e);
/* Cache queries and pin priorities (kvcache.h has the semantics). */
int32_t eng_kv_blocks(const eng_t *e);                   /* pages in the pool */
kvc_stats eng_cache_stats(const eng_t *e);
bool eng_cached(const eng_t *e, uint64_t hash);           /* committed and cached now */
bool eng_block_hash(const eng_t *e, int32_t block, uint64_t *hash);
int eng_pin_prio(eng_t *e, uint64_t hash, uint32_t steps);
int32_t eng_pin_count(const eng_t *e, uint64_t hash);
int eng_set_prio(eng_t *e, uint64_t hash, uint32_t steps);
/* Every commit and eviction of a cache page, reported from inside the
 * engine's calls on its own thread (see kvcache.h for what runs under which
 * lock). */
void eng_set_cache_events(eng_t *e, kvc_event_fn fn, void *ud);
const model_t *eng_model(const eng_t *e);
int32_t eng_n_ctx(const eng_t *e);
int32_t eng_block_size(const eng_t *e);
int32_t eng_n_running(const eng_t *e);
int32_t eng_n_waiting(const eng_t *e);
eng_counters eng_get_counters(const eng_t *e);
/* Hashes of the full blocks of a prompt under this engine's model. */
int eng_prompt_hashes(const eng_t *e, const int32_t *ids, int32_t n, uint64_t *out);

#endif
