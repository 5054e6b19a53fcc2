/* engine: continuous batching over the paged prefix cache; see engine.h.
 *
 * Every sequence keeps its tokens (prompt, then generated) and n_kv, the count
 * of leading tokens whose K/V is in its pages. Tokens [n_kv, n_tok) are
 * pending: a prompt being read, or the one token just sampled. A step feeds
 * each sequence a chunk of its pending tokens (decode sequences first, then
 * prefill chunks, FIFO, within the token budget); a sequence whose chunk ends
 * at n_tok gets logits and samples its next token. So prefill, chunked
 * prefill, decode and resumption after preemption are one code path.
 *
 * Invariants: bt[0..n_bt) are the sequence's pages, each holding one ref;
 * pages [0, n_hashed) are committed under hashes[0..n_hashed); n_hashed * bs
 * <= n_kv <= n_tok <= n_ctx.
 */
#include "engine.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "blockhash.h"
#include "cuda/cuda_backend.h"
#include "detok.h"
#include "herr.h"

typedef struct seq {
    uint64_t id;
    eng_request rq;
    int32_t *stop;          /* (rq.n_stop) */
    int32_t *toks;          /* (n_ctx) prompt then generated */
    int32_t n_tok, n_prompt, n_kv;
    int32_t *bt;            /* (max_pages) page ids */
    int32_t n_bt;
    uint64_t *hashes;       /* (max_pages) hashes of committed pages */
    int32_t n_hashed;
    int32_t n_phash;        /* hashes[0..n_phash) are known: the prompt's full pages (at submit), then any committed */
    int32_t cached_tokens;  /* from the prefix cache at first admission */
    bool admitted_once;
    int64_t admit_seq;      /* admission order, for preemption (youngest first) */
    rng_t rng;
    float *logits;          /* (n_gen, n_vocab) when record_logits */
    dtk_t *dt;              /* generated text (keep_text or stops), else NULL */
    struct seq *next;       /* waiting list link */
} seq_t;

typedef struct res_node {
    eng_result r;
    struct res_node *next;
} res_node;

struct eng {
    const model_t *m;
    be_t *be;
    bool own_be;
    kvc_t *kvc;
    eng_config cfg;
    int32_t n_vocab, max_pages;
    uint64_t next_id;
    int64_t admit_counter;
    seq_t *wait_head, *wait_tail;  /* FIFO; preempted sequences go to the head */
    seq_t **run;                   /* (max_seqs) running, in admission order */
    int32_t n_run;
    res_node *res_head, *res_tail;
    eng_counters ctr;
    /* step scratch */
    int32_t *b_tokens, *b_pos, *b_start, *b_ntok, *b_out;
    const int32_t **b_bt;
    seq_t **b_seq;                 /* (max_seqs) sequence of each batch entry */
    float *logits;                 /* (max_seqs, n_vocab) */
    void *smp_scratch;             /* n_vocab * 8 bytes */
};

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* The CUDA backend is linked into the binaries that want it (helium-worker,
 * tests/gpu), not into every user of the engine: a weak reference, NULL in a
 * binary without it, so CPU-only programs never load cuBLAS or NCCL. */
extern be_t *be_cuda_new(const model_t *m, const be_cuda_config *cfg) __attribute__((weak));

/* The KV element type of the backend c asks for (kvw_type). */
static int cfg_kv_type(const eng_config *c) {
    if (c->backend != ENG_BACKEND_CUDA) return KVW_F32;
    return c->kv_type > 0 ? c->kv_type : c->kv_type < 0 ? KVW_F32 : KVW_F16;
}

/* The backend cfg asks for (be_cpu_new or be_cuda_new). NULL with he_msg(). */
static be_t *eng_backend_new(const model_t *m, const eng_config *c, int32_t max_pages) {
    if (c->backend == ENG_BACKEND_CPU) return be_cpu_new(m, c->n_blocks, c->block_size, c->n_threads);
    if (c->backend == ENG_BACKEND_CUDA) {
        if (!be_cuda_new) {
            he_set(HE_EUNSUPPORTED, "this program was built without the CUDA backend (HELIUM_CUDA=OFF or no CUDA "
                                    "toolkit at build time): use --backend cpu");
            return NULL;
        }
        be_cuda_config cc = {
            .n_blocks = c->n_blocks, .min_blocks = max_pages + 1, .block_size = c->block_size,
            .kv_type = cfg_kv_type(c), .kv_mem_mb = c->kv_mem_mb,
            .kv_mem_pct = c->kv_mem_pct > 0 ? c->kv_mem_pct : 90, .max_tokens = c->max_batch_tokens,
            .max_seqs = c->max_seqs, .max_ctx = c->n_ctx,
        };
        return be_cuda_new(m, &cc);
    }
    he_set(HE_EINVAL, "engine: unknown backend %d", (int)c->backend);
    return NULL;
}

eng_t *eng_new(const model_t *m, be_t *be, const eng_config *cfg_in) {
    eng_t *e = calloc(1, sizeof *e);
    if (!e) return NULL;
    e->m = m;
    eng_config c = cfg_in ? *cfg_in : (eng_config){0};
    if (c.block_size <= 0) c.block_size = 16;
    if (c.n_threads <= 0) c.n_threads = (int32_t)sysconf(_SC_NPROCESSORS_ONLN);
    if (c.n_threads <= 0) c.n_threads = 1;
    if (c.max_batch_tokens <= 0) c.max_batch_tokens = 512;
    if (c.max_seqs <= 0) c.max_seqs = 64;
    if (c.n_ctx <= 0) c.n_ctx = m->hp.n_ctx_train < 8192 ? m->hp.n_ctx_train : 8192;
    if (c.n_ctx > m->hp.n_ctx_train) c.n_ctx = m->hp.n_ctx_train;
    if (c.max_batch_tokens < c.max_seqs) c.max_batch_tokens = c.max_seqs;
    e->max_pages = (c.n_ctx + c.block_size - 1) / c.block_size;
    const int kvt = be ? be->kv_type : cfg_kv_type(&c);
    size_t page = (size_t)m->hp.n_layers * 2 * (size_t)c.block_size * (size_t)m->hp.kv_dim * kvw_elem_bytes(kvt);
    /* a CUDA pool without an explicit size is sized by the backend from free device memory */
    const bool gpu_sized = !be && c.backend == ENG_BACKEND_CUDA && c.n_blocks <= 0 && c.kv_mem_mb <= 0;
    if (c.n_blocks <= 0 && !gpu_sized) {
        size_t mb = c.kv_mem_mb > 0 ? (size_t)c.kv_mem_mb : 512;
        c.n_blocks = (int32_t)((mb << 20) / page);
    }
    if (c.n_blocks < e->max_pages + 1 && !gpu_sized) c.n_blocks = e->max_pages + 1;
    e->cfg = c;
    e->n_vocab = m->hp.n_vocab;
    e->next_id = 1;
    if (be) {
        e->be = be;
    } else {
        e->be = eng_backend_new(m, &c, e->max_pages);
        e->own_be = true;
        if (!e->be) goto fail;
        if (gpu_sized) c.n_blocks = e->cfg.n_blocks = e->be->n_blocks;
    }
    if (e->be->n_blocks < c.n_blocks || e->be->block_size != c.block_size) {
        he_set(HE_EINVAL, "engine: backend has %d pages of %d tokens, engine wants %d of %d",
               e->be->n_blocks, e->be->block_size, c.n_blocks, c.block_size);
        goto fail;
    }
    e->kvc = kvc_new(c.n_blocks, c.block_size);
    int32_t T = c.max_batch_tokens, S = c.max_seqs;
    e->run = calloc((size_t)S, sizeof *e->run);
    e->b_tokens = malloc(sizeof(int32_t) * (size_t)T);
    e->b_pos = malloc(sizeof(int32_t) * (size_t)T);
    e->b_start = malloc(sizeof(int32_t) * (size_t)S);
    e->b_ntok = malloc(sizeof(int32_t) * (size_t)S);
    e->b_out = malloc(sizeof(int32_t) * (size_t)(T > S ? T : S));
    e->b_bt = malloc(sizeof(*e->b_bt) * (size_t)S);
    e->b_seq = malloc(sizeof(*e->b_seq) * (size_t)S);
    e->logits = malloc(sizeof(float) * (size_t)S * (size_t)e->n_vocab);
    e->smp_scratch = malloc((size_t)e->n_vocab * 8);
    if (!e->kvc || !e->run || !e->b_tokens || !e->b_pos || !e->b_start || !e->b_ntok || !e->b_out ||
        !e->b_bt || !e->b_seq || !e->logits || !e->smp_scratch) {
        he_set(HE_ENOMEM, "engine: out of memory");
        goto fail;
    }
    return e;
fail:
    eng_destroy(&e);
    return NULL;
}

static void seq_free(seq_t *s) {
    if (!s) return;
    free(s->stop);
    free(s->toks);
    free(s->bt);
    free(s->hashes);
    free(s->logits);
    dtk_destroy(&s->dt);
    free(s);
}

void eng_destroy(eng_t **self_p) {
    if (!self_p || !*self_p) return;
    eng_t *e = *self_p;
    for (seq_t *s = e->wait_head, *n; s; s = n) {
        n = s->next;
        seq_free(s);
    }
    for (int32_t i = 0; i < e->n_run; i++) seq_free(e->run[i]);
    for (res_node *r = e->res_head, *n; r; r = n) {
        n = r->next;
        eng_result_free(&r->r);
        free(r);
    }
    kvc_destroy(&e->kvc);
    if (e->own_be) be_destroy(&e->be);
    free(e->run);
    free(e->b_tokens);
    free(e->b_pos);
    free(e->b_start);
    free(e->b_ntok);
    free(e->b_out);
    free(e->b_bt);
    free(e->b_seq);
    free(e->logits);
    free(e->smp_scratch);
    free(e);
    *self_p = NULL;
}

int eng_submit(eng_t *e, const int32_t *prompt, int32_t n, const eng_request *rq, uint64_t *id_out) {
    if (n <= 0) return he_set(HE_EEMPTY, "empty prompt: at least one token is needed");
    if (n >= e->cfg.n_ctx)
        return he_set(HE_ECONTEXT, "prompt of %d tokens does not fit the context of %d tokens", n,
                      e->cfg.n_ctx);
    if (!rq || rq->max_tokens <= 0) return he_set(HE_EINVAL, "max_tokens must be at least 1");
    if (rq->n_stop < 0 || (rq->n_stop > 0 && !rq->stop_ids)) return he_set(HE_EINVAL, "bad stop list");
    if (rq->n_stops < 0 || (rq->n_stops > 0 && !rq->stops)) return he_set(HE_EINVAL, "bad stop string list");
    for (int32_t i = 0; i < n; i++)
        if (prompt[i] < 0 || prompt[i] >= e->n_vocab)
            return he_set(HE_ERANGE, "token id %d at position %d outside the vocabulary (%d)", prompt[i], i,
                          e->n_vocab);
    seq_t *s = calloc(1, sizeof *s);
    if (!s) return he_set(HE_ENOMEM, "engine: out of memory");
    s->toks = malloc(sizeof(int32_t) * (size_t)e->cfg.n_ctx);
    s->bt = malloc(sizeof(int32_t) * (size_t)e->max_pages);
    s->hashes = malloc(sizeof(uint64_t) * (size_t)e->max_pages);
    s->stop = rq->n_stop ? malloc(sizeof(int32_t) * (size_t)rq->n_stop) : NULL;
    if (!s->toks || !s->bt || !s->hashes || (rq->n_stop && !s->stop)) {
        seq_free(s);
        return he_set(HE_ENOMEM, "engine: out of memory");
    }
    s->rq = *rq;
    if (rq->n_stop) memcpy(s->stop, rq->stop_ids, sizeof(int32_t) * (size_t)rq->n_stop);
    s->rq.stop_ids = s->stop;
    s->rq.stops = NULL; /* copied into the detokenizer */
    if (rq->keep_text || rq->n_stops > 0) {
        s->dt = dtk_new(e->m->tok, rq->stops, rq->n_stops > 0 ? rq->n_stops : 0);
        if (!s->dt) {
            seq_free(s);
            return he_set(HE_ENOMEM, "engine: out of memory");
        }
    }
    memcpy(s->toks, prompt, sizeof(int32_t) * (size_t)n);
    s->n_tok = s->n_prompt = n;
    s->n_phash = bh_prefix(e->m->root_hash, s->toks, n, e->cfg.block_size, s->hashes);
    s->id = e->next_id++;
    rng_seed(&s->rng, rq->sampling.seed);
    if (e->wait_tail) e->wait_tail->next = s;
    else e->wait_head = s;
    e->wait_tail = s;
    e->ctr.requests++;
    e->ctr.prompt_tokens += n;
    if (id_out) *id_out = s->id;
    return 0;
}

/* Releases a sequence's pages, last first (tail of a prefix is evicted before its head). */
static void seq_release(eng_t *e, seq_t *s) {
    for (int32_t i = s->n_bt - 1; i >= 0; i--) kvc_unref(e->kvc, s->bt[i]);
    s->n_bt = 0;
    s->n_hashed = 0;
    s->n_kv = 0;
}

static void push_result(eng_t *e, seq_t *s, eng_finish fin, int err) {
    res_node *rn = calloc(1, sizeof *rn);
    if (rn) {
        eng_result *r = &rn->r;
        r->id = s->id;
        r->user = s->rq.user;
        r->n_gen = s->n_tok - s->n_prompt;
        r->ids = malloc(sizeof(int32_t) * (size_t)(r->n_gen ? r->n_gen : 1));
        if (r->ids) memcpy(r->ids, s->toks + s->n_prompt, sizeof(int32_t) * (size_t)r->n_gen);
        r->prompt_tokens = s->n_prompt;
        r->cached_tokens = s->cached_tokens;
        r->finish = fin;
        r->error = err;
        r->logits = s->logits;
        s->logits = NULL;
        if (s->dt) {
            const char *txt = dtk_text(s->dt, &r->text_len);
            r->text = malloc(r->text_len + 1);
            if (r->text) memcpy(r->text, txt, r->text_len + 1);
            else r->text_len = 0;
        }
        if (e->res_tail) e->res_tail->next = rn;
        else e->res_head = rn;
        e->res_tail = rn;
    }
    seq_release(e, s);
    seq_free(s);
}

bool eng_next_result(eng_t *e, eng_result *out) {
    res_node *rn = e->res_head;
    if (!rn) return false;
    e->res_head = rn->next;
    if (!e->res_head) e->res_tail = NULL;
    *out = rn->r;
    free(rn);
    return true;
}

void eng_result_free(eng_result *r) {
    if (!r) return;
    free(r->ids);
    free(r->logits);
    free(r->text);
    r->ids = NULL;
    r->logits = NULL;
    r->text = NULL;
}

static void run_remove(eng_t *e, int32_t i) {
    memmove(e->run + i, e->run + i + 1, sizeof(*e->run) * (size_t)(e->n_run - i - 1));
    e->n_run--;
}

int eng_cancel(eng_t *e, uint64_t id) {
    for (seq_t **pp = &e->wait_head, *prev = NULL; *pp; prev = *pp, pp = &(*pp)->next) {
        if ((*pp)->id == id) {
            seq_t *s = *pp;
            *pp = s->next;
            if (e->wait_tail == s) e->wait_tail = prev;
            push_result(e, s, ENG_FINISH_ERROR, HE_ECANCELED);
            return 0;
        }
    }
    for (int32_t i = 0; i < e->n_run; i++) {
        if (e->run[i]->id == id) {
            seq_t *s = e->run[i];
            run_remove(e, i);
            push_result(e, s, ENG_FINISH_ERROR, HE_ECANCELED);
            return 0;
        }
    }
    return he_set(HE_ENOTFOUND, "request %llu not found", (unsigned long long)id);
}

/* Moves running sequence i back to the head of the waiting queue. Its
 * committed pages stay cached, so resuming usually recomputes little. */
static void preempt(eng_t *e, int32_t i) {
    seq_t *s = e->run[i];
    run_remove(e, i);
    seq_release(e, s);
    s->next = e->wait_head;
    e->wait_head = s;
    if (!e->wait_tail) e->wait_tail = s;
    e->ctr.preemptions++;
}

/* Shares the longest cached run of s's full pages, leaving at least one token
 * to compute. Returns the number of tokens served from cache. The prompt's
 * hashes were computed at submit; generated tokens' hashes by commit_full. */
static bool seq_caches(const eng_t *e, const seq_t *s) { return !e->cfg.no_prefix_cache && !s->rq.no_cache; }

static int32_t match_prefix(eng_t *e, seq_t *s) {
    if (!seq_caches(e, s)) return 0;
    int32_t bs = e->cfg.block_size;
    int32_t nfull = (s->n_tok - 1) / bs; /* keep >= 1 token to compute */
    int32_t known = s->n_phash;
    if (nfull > known) nfull = known;
    if (nfull <= 0) return 0;
    int32_t k = kvc_match(e->kvc, s->hashes, nfull, s->bt);
    s->n_bt = s->n_hashed = k;
    s->n_kv = k * bs;
    return k * bs;
}

/* True if the page after s's cached run is being computed right now by a
 * running sequence: admitting s now would compute it twice. */
static bool next_page_in_flight(const eng_t *e, const seq_t *s, int32_t k) {
    if (!seq_caches(e, s) || k >= s->n_phash || (k + 1) * e->cfg.block_size > s->n_tok - 1)
        return false;
    uint64_t h = s->hashes[k];
    for (int32_t i = 0; i < e->n_run; i++) {
        const seq_t *r = e->run[i];
        if (!seq_caches(e, r)) continue;
        for (int32_t j = r->n_hashed; j < r->n_phash; j++)
            if (r->hashes[j] == h) return true;
    }
    return false;
}

/* Moves waiting sequences into the running set while pages and seats allow.
 * A sequence whose next uncached page another sequence is computing waits one
 * more step (then it finds that page cached), letting later ones pass. */
static void admit(eng_t *e) {
    seq_t *prev = NULL, *s = e->wait_head;
    while (s && e->n_run < e->cfg.max_seqs) {
        seq_t *next = s->next;
        int32_t cached = match_prefix(e, s);
        if (next_page_in_flight(e, s, cached / e->cfg.block_size)) {
            seq_release(e, s);
            prev = s;
            s = next;
            continue;
        }
        int32_t need = (s->n_tok + e->cfg.block_size - 1) / e->cfg.block_size - s->n_bt;
        /* keep a little headroom for the running sequences' decode pages */
        int32_t headroom = e->n_run;
        if (kvc_available(e->kvc) < need + headroom && e->n_run > 0) {
            seq_release(e, s);
            break;
        }
        if (prev) prev->next = next;
        else e->wait_head = next;
        if (e->wait_tail == s) e->wait_tail = prev;
        s->next = NULL;
        if (!s->admitted_once) {
            s->cached_tokens = cached;
            e->ctr.cached_tokens += cached;
            s->admitted_once = true;
        }
        s->admit_seq = e->admit_counter++;
        e->run[e->n_run++] = s;
        s = next;
    }
}

/* Makes sure s has pages for positions [0, upto). Preempts younger sequences
 * not yet in this step's batch when pages run out. Returns 0, or HE_ENOMEM if
 * nothing more can be freed. */
static int ensure_pages(eng_t *e, seq_t *s, int32_t upto, int32_t n_in_batch) {
    int32_t want = (upto + e->cfg.block_size - 1) / e->cfg.block_size;
    while (s->n_bt < want) {
        int32_t b = kvc_alloc(e->kvc);
        if (b >= 0) {
            s->bt[s->n_bt++] = b;
            continue;
        }
        /* preempt the youngest running sequence that is neither s nor in the batch */
        int32_t victim = -1;
        for (int32_t i = e->n_run - 1; i >= 0; i--) {
            seq_t *v = e->run[i];
            if (v == s) continue;
            bool in_batch = false;
            for (int32_t j = 0; j < n_in_batch; j++)
                if (e->b_seq[j] == v) in_batch = true;
            if (in_batch) continue;
            if (victim < 0 || v->admit_seq > e->run[victim]->admit_seq) victim = i;
        }
        if (victim < 0) return HE_ENOMEM;
        preempt(e, victim);
    }
    return 0;
}

/* Commits every page of s that became full; dedups against identical pages. */
static void commit_full(eng_t *e, seq_t *s) {
    if (!seq_caches(e, s)) return;
    int32_t bs = e->cfg.block_size;
    while ((s->n_hashed + 1) * bs <= s->n_kv) {
        int32_t i = s->n_hashed;
        uint64_t parent = i ? s->hashes[i - 1] : e->m->root_hash;
        uint64_t h = bh_chain(parent, s->toks + (size_t)i * bs, bs);
        int32_t got = kvc_commit(e->kvc, s->bt[i], h);
        if (got >= 0 && got != s->bt[i]) { /* same content already cached elsewhere: share it */
            kvc_ref(e->kvc, got);
            kvc_unref(e->kvc, s->bt[i]);
            s->bt[i] = got;
        }
        s->hashes[i] = h;
        s->n_hashed++;
        if (s->n_hashed > s->n_phash) s->n_phash = s->n_hashed;
    }
}

static bool is_stop(const eng_t *e, const seq_t *s, int32_t tok) {
    if (!s->rq.ignore_eos && tok_is_eog(e->m->tok, tok)) return true;
    for (int32_t i = 0; i < s->rq.n_stop; i++)
        if (s->stop[i] == tok) return true;
    return false;
}

int eng_step(eng_t *e) {
    admit(e);
    if (e->n_run == 0) return e->wait_head ? 1 : 0;
    int32_t T = 0, S = 0, budget = e->cfg.max_batch_tokens;
    /* pass 0: decode sequences (one pending token); pass 1: prefill chunks */
    for (int pass = 0; pass < 2 && budget > 0; pass++) {
        for (int32_t i = 0; i < e->n_run && budget > 0; i++) {
            seq_t *s = e->run[i];
            int32_t pending = s->n_tok - s->n_kv;
            if ((pass == 0) != (pending == 1 && s->n_kv >= s->n_prompt)) continue;
            int32_t take = pending < budget ? pending : budget;
            int rc = ensure_pages(e, s, s->n_kv + take, S);
            if (rc) {
                if (S == 0 && e->n_run == 1) { /* alone and still no room: cannot ever run */
                    run_remove(e, i);
                    push_result(e, s, ENG_FINISH_ERROR, HE_ENOMEM);
                    i--;
                }
                continue;
            }
            /* ensure_pages may have preempted sequences after i: re-find s */
            e->b_seq[S] = s;
            e->b_start[S] = T;
            e->b_ntok[S] = take;
            e->b_bt[S] = s->bt;
            for (int32_t t = 0; t < take; t++) {
                e->b_tokens[T + t] = s->toks[s->n_kv + t];
                e->b_pos[T + t] = s->n_kv + t;
            }
            T += take;
            budget -= take;
            S++;
        }
    }
    if (S == 0) return e->n_run + (e->wait_head != NULL);
    int32_t n_out = 0;
    for (int32_t j = 0; j < S; j++) {
        seq_t *s = e->b_seq[j];
        if (s->n_kv + e->b_ntok[j] == s->n_tok) e->b_out[n_out++] = e->b_start[j] + e->b_ntok[j] - 1;
    }
    be_batch b = {.n_tokens = T, .n_seqs = S, .tokens = e->b_tokens, .pos = e->b_pos,
                  .seq_start = e->b_start, .seq_ntok = e->b_ntok, .block_table = e->b_bt,
                  .n_out = n_out, .out_idx = e->b_out};
    double t0 = now_s();
    int rc = be_forward(e->be, &b, e->logits);
    double dt = now_s() - t0;
    e->ctr.forward_seconds += dt;
    if (rc) return rc;
    if (T == S && n_out == S) { /* one pending token each and all sampled: decode only */
        e->ctr.decode_steps++;
        e->ctr.decode_rows += S;
        e->ctr.decode_seconds += dt;
    }
    e->ctr.steps++;
    e->ctr.batch_tokens += T;
    int32_t o = 0;
    for (int32_t j = 0; j < S; j++) {
        seq_t *s = e->b_seq[j];
        if (s->n_kv < s->n_prompt) {
            int32_t upto = s->n_kv + e->b_ntok[j];
            e->ctr.computed_tokens += (upto < s->n_prompt ? upto : s->n_prompt) - s->n_kv;
        }
        s->n_kv += e->b_ntok[j];
        commit_full(e, s);
        if (s->n_kv != s->n_tok) continue;
        const float *lg = e->logits + (size_t)o * (size_t)e->n_vocab;
        o++;
        int32_t tok = smp_sample(&s->rq.sampling, &s->rng, lg, e->n_vocab, e->smp_scratch);
        int32_t n_gen = s->n_tok - s->n_prompt;
        if (s->rq.record_logits) {
            float *nl = realloc(s->logits, sizeof(float) * (size_t)(n_gen + 1) * (size_t)e->n_vocab);
            if (nl) {
                s->logits = nl;
                memcpy(nl + (size_t)n_gen * (size_t)e->n_vocab, lg, sizeof(float) * (size_t)e->n_vocab);
            }
        }
        eng_finish fin = 0;
        if (is_stop(e, s, tok)) {
            fin = ENG_FINISH_STOP;
        } else {
            s->toks[s->n_tok++] = tok;
            e->ctr.generated_tokens++;
            int dr = s->dt ? dtk_push(s->dt, tok) : 0;
            if (dr < 0) {
                for (int32_t i = 0; i < e->n_run; i++)
                    if (e->run[i] == s) {
                        run_remove(e, i);
                        break;
                    }
                push_result(e, s, ENG_FINISH_ERROR, dr);
                continue;
            }
            if (dr == 1) fin = ENG_FINISH_STOP; /* the text reached a stop string */
            else if (s->n_tok - s->n_prompt >= s->rq.max_tokens) fin = ENG_FINISH_LENGTH;
            else if (s->n_tok >= e->cfg.n_ctx) fin = ENG_FINISH_CONTEXT;
        }
        if (fin) {
            for (int32_t i = 0; i < e->n_run; i++)
                if (e->run[i] == s) {
                    run_remove(e, i);
                    break;
                }
            push_result(e, s, fin, 0);
        }
    }
    return e->n_run + (e->wait_head ? 1 : 0);
}

const int32_t *eng_peek_tokens(eng_t *e, uint64_t id, int32_t *n_gen) {
    for (int32_t i = 0; i < e->n_run; i++) {
        seq_t *s = e->run[i];
        if (s->id == id) {
            *n_gen = s->n_tok - s->n_prompt;
            return s->toks + s->n_prompt;
        }
    }
    return NULL;
}

int eng_eval(eng_t *e, const int32_t *ids, int32_t n, float *logits) {
    if (n <= 0) return he_set(HE_EEMPTY, "empty input: at least one token is needed");
    if (n > e->cfg.n_ctx)
        return he_set(HE_ECONTEXT, "input of %d tokens is longer than the context of %d", n, e->cfg.n_ctx);
    for (int32_t i = 0; i < n; i++)
        if (ids[i] < 0 || ids[i] >= e->n_vocab)
            return he_set(HE_ERANGE, "token id %d at position %d outside the vocabulary (%d)", ids[i], i,
                          e->n_vocab);
    int32_t bs = e->cfg.block_size, npages = (n + bs - 1) / bs;
    int32_t *bt = malloc(sizeof(int32_t) * (size_t)npages);
    int32_t *pos = malloc(sizeof(int32_t) * (size_t)n);
    int32_t *out = malloc(sizeof(int32_t) * (size_t)n);
    int rc = 0, got = 0;
    if (!bt || !pos || !out) {
        rc = he_set(HE_ENOMEM, "engine: out of memory");
        goto done;
    }
    for (; got < npages; got++) {
        int32_t b = kvc_alloc(e->kvc);
        if (b < 0) {
            rc = he_set(HE_ENOMEM, "engine: not enough free KV pages for %d tokens", n);
            goto done;
        }
        bt[got] = b;
    }
    for (int32_t i = 0; i < n; i++) pos[i] = out[i] = i;
    int32_t chunk = e->cfg.max_batch_tokens;
    for (int32_t s0 = 0; s0 < n; s0 += chunk) {
        int32_t m = n - s0 < chunk ? n - s0 : chunk;
        int32_t start = 0;
        const int32_t *btp = bt;
        for (int32_t i = 0; i < m; i++) out[i] = i;
        be_batch b = {.n_tokens = m, .n_seqs = 1, .tokens = ids + s0, .pos = pos + s0, .seq_start = &start,
                      .seq_ntok = &m, .block_table = &btp, .n_out = m, .out_idx = out};
        if ((rc = be_forward(e->be, &b, logits + (size_t)s0 * (size_t)e->n_vocab))) goto done;
    }
done:
    for (int32_t i = got - 1; i >= 0; i--) kvc_unref(e->kvc, bt[i]);
    free(bt);
    free(pos);
    free(out);
    return rc;
}

size_t eng_kv_page_bytes(const eng_t *e) { return be_kv_page_bytes(e->be); }
int eng_kv_type(const eng_t *e) { return e->be->kv_type; }
const char *eng_backend_name(const eng_t *e) { return e->be->ops->name; }
size_t eng_kv_page_bytes_of(const eng_t *e, int t) {
    return be_kv_page_bytes(e->be) / kvw_elem_bytes(e->be->kv_type) * kvw_elem_bytes(t);
}

int eng_kv_import_typed(eng_t *e, const uint64_t *hashes, int32_t n, const void *buf, int src_type) {
    if (!kvw_valid(src_type)) return he_set(HE_EINVAL, "engine: KV pages of unknown element type %d", src_type);
    if (src_type == e->be->kv_type) return eng_kv_import(e, hashes, n, buf);
    const size_t pb = be_kv_page_bytes(e->be), elems = pb / kvw_elem_bytes(e->be->kv_type);
    const size_t spb = elems * kvw_elem_bytes(src_type);
    void *page = malloc(pb);
    if (!page) return he_set(HE_ENOMEM, "engine: out of memory");
    int32_t stored = 0;
    for (int32_t i = 0; i < n; i++) { /* one page at a time: convert, then import as the backend's type */
        int rc = kvw_convert((const char *)buf + (size_t)i * spb, src_type, page, e->be->kv_type, elems);
        if (!rc) rc = eng_kv_import(e, hashes + i, 1, page);
        if (rc < 0) {
            free(page);
            return stored ? stored : rc;
        }
        stored += rc;
    }
    free(page);
    return stored;
}

int eng_kv_copy_out(eng_t *e, uint64_t hash, void *buf) {
    kvc_lock(e->kvc);
    int32_t b = kvc_lookup(e->kvc, hash);
    int rc = b < 0 ? 0 : e->be->ops->kv_export(e->be, b, buf);
    kvc_unlock(e->kvc);
    return rc < 0 ? rc : b >= 0;
}

int eng_kv_export(eng_t *e, const uint64_t *hashes, int32_t n, void *buf) {
    size_t pb = be_kv_page_bytes(e->be);
    int32_t i = 0;
    for (; i < n; i++) {
        int rc = eng_kv_copy_out(e, hashes[i], (char *)buf + (size_t)i * pb);
        if (rc < 0) return rc;
        if (rc == 0) break;
    }
    e->ctr.exported_blocks += i;
    return i;
}

int eng_kv_import(eng_t *e, const uint64_t *hashes, int32_t n, const void *buf) {
    size_t pb = be_kv_page_bytes(e->be);
    int32_t stored = 0;
    for (int32_t i = 0; i < n; i++) {
        if (kvc_lookup(e->kvc, hashes[i]) >= 0) continue;
        int32_t b = kvc_alloc(e->kvc);
        if (b < 0) return stored ? stored : he_set(HE_ENOMEM, "engine: no free KV page for import");
        int rc = e->be->ops->kv_import(e->be, b, (const char *)buf + (size_t)i * pb);
        if (rc) {
            kvc_unref(e->kvc, b);
            return rc;
        }
        kvc_commit(e->kvc, b, hashes[i]);
        kvc_unref(e->kvc, b);
        stored++;
    }
    e->ctr.imported_blocks += stored;
    return stored;
}

/* ---- pages moved by a transport (engine.h): reserve / commit / release on
 * the receiving side, hold / unhold on the sending side. A reserved page is
 * an allocated, uncommitted block (ref 1) that no sequence's block table
 * names; a held page is a committed block with one extra ref. */

int eng_kv_reserve(eng_t *e, int32_t n, int32_t *pages) {
    if (n <= 0 || !pages) return he_set(HE_EINVAL, "engine: reserve of %d pages", n);
    if (n > kvc_available(e->kvc))
        return he_set(HE_ENOMEM, "engine: %d KV pages asked for a transfer, %d available", n,
                      kvc_available(e->kvc));
    for (int32_t i = 0; i < n; i++) {
        int32_t b = kvc_alloc(e->kvc);
        if (b < 0) { /* cannot happen after the check above; stay safe */
            eng_kv_release(e, pages, i);
            return he_set(HE_ENOMEM, "engine: no free KV page for a transfer");
        }
        pages[i] = b;
    }
    return n;
}

int eng_kv_commit(eng_t *e, const int32_t *pages, const uint64_t *hashes, int32_t n) {
    int32_t stored = 0;
    for (int32_t i = 0; i < n; i++) {
        /* a hash cached meanwhile (computed or imported) keeps its page; ours
         * stays uncommitted and the unref frees it */
        if (kvc_lookup(e->kvc, hashes[i]) < 0 && kvc_commit(e->kvc, pages[i], hashes[i]) == pages[i]) stored++;
        kvc_unref(e->kvc, pages[i]);
    }
    e->ctr.imported_blocks += stored;
    return stored;
}

void eng_kv_release(eng_t *e, const int32_t *pages, int32_t n) {
    for (int32_t i = n - 1; i >= 0; i--) kvc_unref(e->kvc, pages[i]);
}

int eng_kv_hold(eng_t *e, const uint64_t *hashes, int32_t n, int32_t *pages) {
    int32_t k = 0;
    for (; k < n; k++) {
        int32_t b = kvc_lookup(e->kvc, hashes[k]);
        if (b < 0) break;
        kvc_ref(e->kvc, b);
        pages[k] = b;
    }
    return k;
}

void eng_kv_unhold(eng_t *e, const int32_t *pages, int32_t n) {
    for (int32_t i = n - 1; i >= 0; i--) kvc_unref(e->kvc, pages[i]); /* tail first: see kvcache.h */
}

int eng_kv_page_read(eng_t *e, int32_t page, void *dst) {
    if (page < 0 || page >= kvc_n_blocks(e->kvc)) return he_set(HE_ERANGE, "engine: KV page %d outside the pool", page);
    return e->be->ops->kv_export(e->be, page, dst);
}

int eng_kv_page_write(eng_t *e, int32_t page, const void *src) {
    if (page < 0 || page >= kvc_n_blocks(e->kvc)) return he_set(HE_ERANGE, "engine: KV page %d outside the pool", page);
    return e->be->ops->kv_import(e->be, page, src);
}

be_t *eng_be(eng_t *e) { return e->be; }

int eng_pin(eng_t *e, const uint64_t *hashes, int32_t n) {
    int32_t k = 0;
    for (; k < n; k++)
        if (kvc_pin(e->kvc, hashes[k]) != 0) break;
    return k;
}

int eng_unpin(eng_t *e, const uint64_t *hashes, int32_t n) {
    int32_t k = 0;
    for (int32_t i = 0; i < n; i++)
        if (kvc_unpin(e->kvc, hashes[i]) == 0) k++;
    return k;
}

int eng_prompt_hashes(const eng_t *e, const int32_t *ids, int32_t n, uint64_t *out) {
    return bh_prefix(e->m->root_hash, ids, n, e->cfg.block_size, out);
}

const char *eng_peek_text(eng_t *e, uint64_t id, size_t *len, size_t *stable) {
    for (int32_t i = 0; i < e->n_run; i++) {
        seq_t *s = e->run[i];
        if (s->id != id) continue;
        if (!s->dt) return NULL;
        *stable = dtk_stable(s->dt, false);
        return dtk_text(s->dt, len);
    }
    return NULL;
}

kvc_t *eng_kvc(eng_t *e) { return e->kvc; }
int32_t eng_kv_blocks(const eng_t *e) { return kvc_n_blocks(e->kvc); }
kvc_stats eng_cache_stats(const eng_t *e) { return kvc_get_stats(e->kvc); }
bool eng_cached(const eng_t *e, uint64_t hash) { return kvc_lookup(e->kvc, hash) >= 0; }
bool eng_block_hash(const eng_t *e, int32_t block, uint64_t *hash) { return kvc_block_hash(e->kvc, block, hash); }
int eng_pin_prio(eng_t *e, uint64_t hash, uint32_t steps) { return kvc_pin_prio(e->kvc, hash, steps); }
int32_t eng_pin_count(const eng_t *e, uint64_t hash) { return kvc_pin_count(e->kvc, hash); }
int eng_set_prio(eng_t *e, uint64_t hash, uint32_t steps) { return kvc_set_prio(e->kvc, hash, steps); }
void eng_set_cache_events(eng_t *e, kvc_event_fn fn, void *ud) { kvc_set_event_cb(e->kvc, fn, ud); }
const model_t *eng_model(const eng_t *e) { return e->m; }
int32_t eng_n_ctx(const eng_t *e) { return e->cfg.n_ctx; }
int32_t eng_block_size(const eng_t *e) { return e->cfg.block_size; }
int32_t eng_n_running(const eng_t *e) { return e->n_run; }
int32_t eng_n_waiting(const eng_t *e) {
    int32_t n = 0;
    for (seq_t *s = e->wait_head; s; s = s->next) n++;
    return n;
}
eng_counters eng_get_counters(const eng_t *e) { return e->ctr; }
