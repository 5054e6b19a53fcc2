/* tokenizer: text <-> token ids, reproducing llama.cpp's llama_tokenize.
 *
 * Pipeline of tok_encode (same order as llama.cpp's llama_vocab::tokenize):
 *   1. partition the raw text on special-token strings (longest token first;
 *      user-defined tokens always, control/unknown ones only with
 *      parse_special);
 *   2. BPE ("gpt2"): decode each text fragment to code points (an invalid UTF-8
 *      byte becomes U+FFFD, as in llama.cpp), split it with the pre-tokenizer
 *      named by tokenizer.ggml.pre (hand-written matchers equivalent to the
 *      regexes llama.cpp uses), byte-encode each piece with GPT-2's
 *      bytes_to_unicode map and merge adjacent symbols by lowest merge rank;
 *      SPM ("llama"): replace ' ' with U+2581 (prefixing one after BOS or a
 *      special token when add_space_prefix), split into UTF-8 characters and
 *      merge the adjacent pair whose concatenation is a token with the
 *      highest score; leftovers fall back to <0xXX> byte tokens.
 * Merging uses a binary heap with lazy invalidation, so a word of n symbols
 * costs O(n log n), not O(n^2).
 *
 * This file holds partition, merging, encoding and decoding; the pre-tokenizer is pretok.c, loading from GGUF is
 * tok_load.c, and struct tok with the shared helpers is tok_impl.h.
 *
 * Invariants: after tok_new_from_gguf, every token text is non-empty and
 * unique (token map is a bijection), every id stored in the struct is either
 * -1 or < n_vocab, and the per-token piece cache holds the decoded bytes of
 * every token. The handle is immutable afterwards apart from the BPE word
 * cache, which has its own mutex, so tok_encode/tok_decode may run
 * concurrently from several threads.
 *
 * Word cache: most words of a prompt were seen before (the same templates,
 * documents and instructions are tokenized again and again by the
 * coordinator), so the ids a byte-encoded pre-token merged into are kept in
 * a direct-mapped table (a slot per word hash, the last word wins). A hit
 * compares the whole word, so the output is the merge's, byte for byte.
 */
#define _GNU_SOURCE /* memmem */
#include "tok_impl.h"

#include <limits.h>
#include <stdio.h>

#include "unicode_tab.h"

/* ------------------------------------------------------------------ merge */

static bool bg_before(const struct bigram *a, const struct bigram *b) {
    return a->prio < b->prio || (a->prio == b->prio && a->left < b->left);
}

static int heap_push(scratch *s, struct bigram b) {
    if (reserve((void **)&s->heap, &s->heap_cap, s->heap_n + 1, sizeof *s->heap)) return HE_ENOMEM;
    size_t i = s->heap_n++;
    while (i > 0) {
        size_t p = (i - 1) / 2;
        if (!bg_before(&b, &s->heap[p])) break;
        s->heap[i] = s->heap[p];
        i = p;
    }
    s->heap[i] = b;
    return 0;
}

static struct bigram heap_pop(scratch *s) {
    struct bigram top = s->heap[0];
    struct bigram last = s->heap[--s->heap_n];
    size_t n = s->heap_n, i = 0;
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= n) break;
        if (c + 1 < n && bg_before(&s->heap[c + 1], &s->heap[c])) c++;
        if (!bg_before(&s->heap[c], &last)) break;
        s->heap[i] = s->heap[c];
        i = c;
    }
    if (n > 0) s->heap[i] = last;
    return top;
}

/* Splits s->word into UTF-8 character symbols; returns their count or <0. */
static int make_symbols(scratch *s, size_t *n_out) {
    const char *w = s->word.p;
    size_t wlen = s->word.n, n = 0;
    if (reserve((void **)&s->sym, &s->sym_cap, wlen, sizeof *s->sym)) return HE_ENOMEM;
    for (size_t off = 0; off < wlen;) {
        size_t cl = utf8_len((uint8_t)w[off]);
        if (cl > wlen - off) cl = wlen - off;
        s->sym[n] = (struct sym){(int32_t)n - 1, off + cl == wlen ? -1 : (int32_t)n + 1,
                                 (uint32_t)off, (uint32_t)cl};
        off += cl;
        n++;
    }
    *n_out = n;
    s->heap_n = 0;
    return 0;
}

static int bpe_add_bigram(const tok_t *t, scratch *s, int32_t l, int32_t r) {
    if (l < 0 || r < 0) return 0;
    const struct sym *a = &s->sym[l], *b = &s->sym[r];
    int32_t rank = smap_get_pair(&t->merges, s->word.p + a->off, a->n, s->word.p + b->off, b->n);
    if (rank < 0) return 0;
    return heap_push(s, (struct bigram){(double)rank, l, r, a->n + b->n});
}

static int spm_add_bigram(const tok_t *t, scratch *s, int32_t l, int32_t r) {
    if (l < 0 || r < 0) return 0;
    const struct sym *a = &s->sym[l], *b = &s->sym[r];
    int32_t id = smap_get(&t->vocab, s->word.p + a->off, a->n + b->n);
    if (id < 0) return 0;
    return heap_push(s, (struct bigram){-(double)t->score[id], l, r, a->n + b->n});
}

/* Merges the symbols of s->word (lowest BPE rank, or highest SPM score, first;
 * ties go to the leftmost pair). O(n log n) in the symbol count. */
static int merge_symbols(const tok_t *t, scratch *s, size_t n) {
    int (*add)(const tok_t *, scratch *, int32_t, int32_t) =
        t->kind == TOK_KIND_BPE ? bpe_add_bigram : spm_add_bigram;
    for (size_t i = 1; i < n; i++)
        if (add(t, s, (int32_t)i - 1, (int32_t)i)) return HE_ENOMEM;
    while (s->heap_n > 0) {
        struct bigram b = heap_pop(s);
        struct sym *l = &s->sym[b.left], *r = &s->sym[b.right];
        if (l->n == 0 || r->n == 0 || l->n + r->n != b.size) continue; /* stale */
        l->n += r->n;
        r->n = 0;
        l->next = r->next;
        if (r->next >= 0) s->sym[r->next].prev = b.left;
        if (add(t, s, l->prev, b.left) || add(t, s, b.left, l->next)) return HE_ENOMEM;
    }
    return 0;
}

/* Emits the merged symbols of s->word; a symbol that is not a token falls
 * back to per-byte tokens (bytes without one are dropped, as in llama.cpp). */
static int emit_symbols(const tok_t *t, scratch *s, size_t n) {
    if (n == 0) return 0;
    for (int32_t i = 0; i != -1; i = s->sym[i].next) {
        const struct sym *y = &s->sym[i];
        if (y->n == 0) continue;
        int32_t id = smap_get(&t->vocab, s->word.p + y->off, y->n);
        if (id >= 0) {
            if (ivec_push(&s->out, id)) return HE_ENOMEM;
            continue;
        }
        for (uint32_t j = 0; j < y->n; j++) {
            int32_t bt = t->byte_tok[(uint8_t)s->word.p[y->off + j]];
            if (bt < 0 && t->kind == TOK_KIND_SPM) bt = t->unk;
            if (bt >= 0 && ivec_push(&s->out, bt)) return HE_ENOMEM;
        }
    }
    return 0;
}

/* ------------------------------------------------------------ word cache */

#define TOK_WC_SLOTS 4096 /* a power of two */
#define TOK_WC_WMAX 32    /* longest word kept (bytes) */
#define TOK_WC_IMAX 8     /* most ids kept per word */

struct tok_wentry {
    uint64_t h;
    uint8_t len, n;       /* len 0: empty */
    char w[TOK_WC_WMAX];
    int32_t ids[TOK_WC_IMAX];
};

void tok_wcache_init(tok_t *t) {
    if (t->wc) return;
    struct tok_wentry *wc = calloc(TOK_WC_SLOTS, sizeof *wc);
    if (!wc) return;
    if (pthread_mutex_init(&t->wc_mu, NULL)) {
        free(wc);
        return;
    }
    t->wc = wc;
}

void tok_wcache_free(tok_t *t) {
    if (!t->wc) return;
    pthread_mutex_destroy(&t->wc_mu);
    free(t->wc);
    t->wc = NULL;
}

/* Appends the cached ids of word[0..n) (hash h) to out: 1 on a hit, 0 on a
 * miss, <0 on ENOMEM. */
static int wc_get(const tok_t *t, uint64_t h, const char *word, size_t n, ivec *out) {
    tok_t *mt = (tok_t *)t; /* the cache is the mutable part (its mutex) */
    int32_t ids[TOK_WC_IMAX];
    int k = 0;
    pthread_mutex_lock(&mt->wc_mu);
    const struct tok_wentry *e = &t->wc[h & (TOK_WC_SLOTS - 1)];
    if (e->len == n && e->h == h && !memcmp(e->w, word, n)) {
        k = e->n;
        memcpy(ids, e->ids, (size_t)k * sizeof *ids);
    } else {
        k = -1;
    }
    pthread_mutex_unlock(&mt->wc_mu);
    if (k < 0) return 0;
    for (int i = 0; i < k; i++)
        if (ivec_push(out, ids[i])) return HE_ENOMEM;
    return 1;
}

static void wc_put(const tok_t *t, uint64_t h, const char *word, size_t n, const int32_t *ids, size_t k) {
    tok_t *mt = (tok_t *)t;
    pthread_mutex_lock(&mt->wc_mu);
    struct tok_wentry *e = &mt->wc[h & (TOK_WC_SLOTS - 1)];
    e->h = h;
    e->len = (uint8_t)n;
    e->n = (uint8_t)k;
    memcpy(e->w, word, n);
    memcpy(e->ids, ids, k * sizeof *ids);
    pthread_mutex_unlock(&mt->wc_mu);
}

/* BPE-encodes one raw text fragment. */
static int bpe_fragment(const tok_t *t, scratch *s, const char *text, size_t len) {
    if (reserve((void **)&s->cp, &s->cp_cap, len, sizeof *s->cp) ||
        reserve((void **)&s->fl, &s->fl_cap, len, sizeof *s->fl))
        return HE_ENOMEM;
    size_t n = 0;
    for (size_t pos = 0; pos < len;) {
        uint32_t c = utf8_next((const uint8_t *)text, len, &pos);
        s->cp[n] = c;
        s->fl[n] = c < 128 ? t->ascii_flags[c] : utab_flags(c);
        n++;
    }
    int rc = pretok_run(t, s, n);
    if (rc) return rc;
    size_t start = 0;
    for (size_t p = 0; p < s->pa_n; p++) {
        size_t end = start + s->pa[p];
        s->word.n = 0;
        for (size_t i = start; i < end; i++) {
            uint8_t raw[4], enc[8];
            int nr = utf8_put(s->cp[i], raw), ne = 0;
            for (int k = 0; k < nr; k++) ne += utf8_put(t->b2u[raw[k]], enc + ne);
            if (bbuf_put(&s->word, enc, (size_t)ne)) return HE_ENOMEM;
        }
        start = end;
        if (t->ignore_merges) {
            int32_t id = smap_get(&t->vocab, s->word.p, s->word.n);
            if (id >= 0) {
                if (ivec_push(&s->out, id)) return HE_ENOMEM;
                continue;
            }
        }
        bool cacheable = t->wc && s->word.n > 0 && s->word.n <= TOK_WC_WMAX;
        uint64_t h = cacheable ? fnv(FNV_OFF, s->word.p, s->word.n) : 0;
        if (cacheable) {
            int hit = wc_get(t, h, s->word.p, s->word.n, &s->out);
            if (hit < 0) return HE_ENOMEM;
            if (hit) continue;
        }
        size_t ns, before = s->out.n;
        if (make_symbols(s, &ns) || merge_symbols(t, s, ns) || emit_symbols(t, s, ns))
            return HE_ENOMEM;
        if (cacheable && s->out.n - before <= TOK_WC_IMAX)
            wc_put(t, h, s->word.p, s->word.n, s->out.v + before, s->out.n - before);
    }
    return 0;
}

/* SPM-encodes one raw fragment, with a leading U+2581 when prefix_space. */
static int spm_fragment(const tok_t *t, scratch *s, const char *text, size_t len, bool prefix_space) {
    static const char sp[3] = {'\xe2', '\x96', '\x81'};
    s->word.n = 0;
    if (prefix_space && bbuf_put(&s->word, sp, 3)) return HE_ENOMEM;
    size_t run = 0;
    for (size_t i = 0; i <= len; i++) {
        if (i == len || text[i] == ' ') {
            if (bbuf_put(&s->word, text + run, i - run)) return HE_ENOMEM;
            if (i < len && bbuf_put(&s->word, sp, 3)) return HE_ENOMEM;
            run = i + 1;
        }
    }
    size_t ns;
    if (make_symbols(s, &ns) || merge_symbols(t, s, ns) || emit_symbols(t, s, ns)) return HE_ENOMEM;
    return 0;
}

/* -------------------------------------------------------------- partition */

typedef struct {
    size_t off, len;
    int32_t id; /* -1: raw text */
} frag;

static bool c_isspace(char c) {
    return c == ' ' || c == '\t' || c == '\n' || c == '\v' || c == '\f' || c == '\r';
}

/* Splits the raw fragments on every special token, longest token first (as
 * llama.cpp's tokenizer_st_partition). Work: O(n_special * len) byte scans. */
static int partition(const tok_t *t, const char *text, size_t len, bool parse_special, frag **fr_p,
                     size_t *n_p) {
    size_t cap = 8, n = 0, cap2 = 0, n2;
    frag *fr = malloc(cap * sizeof *fr), *fr2 = NULL;
    if (!fr) return he_set(HE_ENOMEM, "tokenizer: out of memory");
    if (len > 0) fr[n++] = (frag){0, len, -1};
    for (int32_t k = 0; k < t->n_special; k++) {
        int32_t id = t->special[k];
        uint16_t at = t->attr[id];
        if (!parse_special && (at & (ATTR_CONTROL | ATTR_UNKNOWN))) continue;
        const char *st = t->blob + t->off[id];
        size_t sl = t->len[id];
        bool any = false;
        for (size_t i = 0; i < n && !any; i++)
            any = fr[i].id < 0 && fr[i].len >= sl && memmem(text + fr[i].off, fr[i].len, st, sl);
        if (!any) continue;
        n2 = 0;
        for (size_t i = 0; i < n; i++) {
            /* each fragment adds at most 2 entries per match; grow lazily */
            if (fr[i].id >= 0) {
                if (reserve((void **)&fr2, &cap2, n2 + 1, sizeof *fr2)) goto oom;
                fr2[n2++] = fr[i];
                continue;
            }
            size_t base = fr[i].off, blen = fr[i].len;
            for (;;) {
                const char *m = blen >= sl ? memmem(text + base, blen, st, sl) : NULL;
                if (!m) {
                    if (blen > 0) {
                        if (reserve((void **)&fr2, &cap2, n2 + 1, sizeof *fr2)) goto oom;
                        fr2[n2++] = (frag){base, blen, -1};
                    }
                    break;
                }
                size_t mpos = (size_t)(m - text);
                if (reserve((void **)&fr2, &cap2, n2 + 2, sizeof *fr2)) goto oom;
                if (mpos > base) fr2[n2++] = (frag){base, mpos - base, -1};
                fr2[n2++] = (frag){mpos, sl, id};
                size_t roff = mpos + sl, rlen = base + blen - roff;
                if (at & ATTR_RSTRIP)
                    while (rlen > 0 && c_isspace(text[roff])) {
                        roff++;
                        rlen--;
                    }
                base = roff;
                blen = rlen;
            }
        }
        frag *tf = fr;
        size_t tc = cap;
        fr = fr2;
        cap = cap2;
        n = n2;
        fr2 = tf;
        cap2 = tc;
    }
    free(fr2);
    *fr_p = fr;
    *n_p = n;
    return 0;
oom:
    free(fr);
    free(fr2);
    return he_set(HE_ENOMEM, "tokenizer: out of memory");
}

/* ------------------------------------------------------------------ encode */

int tok_encode(const tok_t *t, const char *text, size_t len, bool add_bos, bool parse_special,
               int32_t *out, int max_out) {
    if (!t || (!text && len > 0) || max_out < 0 || (!out && max_out > 0))
        return he_set(HE_EINVAL, "tok_encode: bad arguments");
    scratch s;
    memset(&s, 0, sizeof s);
    frag *fr = NULL;
    size_t nf = 0;
    int rc = partition(t, text, len, parse_special, &fr, &nf);
    if (rc) return rc;
    if (add_bos && t->bos >= 0 && (rc = ivec_push(&s.out, t->bos))) goto done;
    bool prev_special = true; /* SPM: prefix a space at the start and after specials */
    for (size_t i = 0; i < nf; i++) {
        if (fr[i].id >= 0) {
            if ((rc = ivec_push(&s.out, fr[i].id))) goto done;
            prev_special = true;
            continue;
        }
        if (t->kind == TOK_KIND_BPE)
            rc = bpe_fragment(t, &s, text + fr[i].off, fr[i].len);
        else
            rc = spm_fragment(t, &s, text + fr[i].off, fr[i].len, t->add_space_prefix && prev_special);
        if (rc) goto done;
        prev_special = false;
    }
    if (s.out.n > INT_MAX) {
        rc = he_set(HE_ERANGE, "tok_encode: %zu tokens do not fit an int", s.out.n);
        goto done;
    }
    size_t ncopy = s.out.n < (size_t)max_out ? s.out.n : (size_t)max_out;
    if (ncopy) memcpy(out, s.out.v, ncopy * sizeof *out);
    rc = (int)s.out.n;
done:
    free(fr);
    free(s.cp);
    free(s.fl);
    free(s.pa);
    free(s.pb);
    free(s.word.p);
    free(s.sym);
    free(s.heap);
    free(s.out.v);
    return rc;
}

int tok_encode_prompt(const tok_t *t, const char *text, size_t len, bool special, int32_t *out, int max_out) {
    if (!t) return he_set(HE_EINVAL, "tokenizer: NULL");
    bool bos = tok_add_bos_default(t);
    if (bos && special && text) {
        size_t bl = 0;
        const char *b = tok_token_text(t, t->bos, &bl);
        if (b && bl && len >= bl && !memcmp(text, b, bl)) bos = false;
    }
    return tok_encode(t, text, len, bos, special, out, max_out);
}

/* ------------------------------------------------------------------ decode */

int tok_decode_piece(const tok_t *t, int32_t id, bool render_special, char *buf, int buflen) {
    if (!t || id < 0 || id >= t->n_vocab)
        return he_set(HE_ERANGE, "tokenizer: token id %d out of range [0, %d)", (int)id,
                      t ? (int)t->n_vocab : 0);
    if (!render_special && (t->attr[id] & (ATTR_CONTROL | ATTR_UNKNOWN))) return 0;
    uint32_t n = t->piece_len[id];
    if (buf && buflen > 0) memcpy(buf, t->piece_blob + t->piece_off[id], n < (uint32_t)buflen ? n : (uint32_t)buflen);
    return (int)n;
}

char *tok_decode(const tok_t *t, const int32_t *ids, int n, bool render_special) {
    if (!t || n < 0 || (!ids && n > 0)) {
        he_set(HE_EINVAL, "tok_decode: bad arguments");
        return NULL;
    }
    size_t total = 0;
    for (int i = 0; i < n; i++) {
        int k = tok_decode_piece(t, ids[i], render_special, NULL, 0);
        if (k < 0) return NULL;
        total += (size_t)k;
        if (total > INT_MAX) {
            he_set(HE_ERANGE, "tok_decode: output too large");
            return NULL;
        }
    }
    char *s = malloc(total + 1);
    if (!s) {
        he_set(HE_ENOMEM, "tok_decode: out of memory");
        return NULL;
    }
    size_t pos = 0;
    for (int i = 0; i < n; i++) pos += (size_t)tok_decode_piece(t, ids[i], render_special, s + pos, (int)(total - pos));
    s[pos] = 0;
    return s;
}

/* ------------------------------------------------------------------ info */

tok_kind tok_get_kind(const tok_t *t) { return t->kind; }
int32_t tok_n_vocab(const tok_t *t) { return t->n_vocab; }
int32_t tok_bos(const tok_t *t) { return t->bos; }
int32_t tok_eos(const tok_t *t) { return t->eos; }
bool tok_add_bos_default(const tok_t *t) { return t->add_bos && t->bos >= 0; }
bool tok_is_eog(const tok_t *t, int32_t id) { return id >= 0 && id < t->n_vocab && t->eog[id]; }

const char *tok_token_text(const tok_t *t, int32_t id, size_t *len) {
    if (!t || id < 0 || id >= t->n_vocab) return NULL;
    if (len) *len = t->len[id];
    return t->blob + t->off[id];
}
