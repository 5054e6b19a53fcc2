/* tok_impl: PRIVATE to the tokenizer's files (tokenizer.c: encode, merge,
 * decode; pretok.c: the pre-tokenizer; tok_load.c: building a tok_t from GGUF
 * metadata). Nothing outside common/tokenizer.c, pretok.c and tok_load.c
 * includes it; everyone else sees the opaque tok_t of tokenizer.h.
 *
 * Holds struct tok (with its invariants: after tok_new_from_gguf every token
 * text is non-empty and unique, every stored id is -1 or < n_vocab, the piece
 * cache holds every token's decoded bytes, and the handle is immutable), the
 * small helpers the three files share (growable arrays, the string -> id
 * map, UTF-8 coding; static inline so each file keeps its own copy), and the
 * per-call scratch space of tok_encode.
 */
#ifndef HELIUM_TOK_IMPL_H
#define HELIUM_TOK_IMPL_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "herr.h"
#include "tokenizer.h"

/* token attributes (bit set, as llama.cpp's llama_token_attr) */
enum {
    ATTR_UNKNOWN = 1 << 0,
    ATTR_UNUSED = 1 << 1,
    ATTR_NORMAL = 1 << 2,
    ATTR_CONTROL = 1 << 3,
    ATTR_USER_DEFINED = 1 << 4,
    ATTR_BYTE = 1 << 5,
    ATTR_RSTRIP = 1 << 8,
};

/* pre-tokenizer passes; a pipeline applies them in order, each refining the
 * pieces of the previous one */
typedef enum {
    PASS_GPT2,       /* 's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+ */
    PASS_LLAMA3,     /* (?i:'s|..)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+ */
    PASS_QWEN2,      /* same with \p{N} (one digit) */
    PASS_NUM_EACH,   /* \p{N} */
    PASS_NUM_RUN,    /* \p{N}+ */
    PASS_PUNCT_RUN,  /* [\p{P}\$\+<=>\^~\|]+ */
    PASS_DIGIT3,     /* [0-9][0-9][0-9] */
} pass_kind;

#define MAX_PASSES 4

/* open-addressing string -> int32 map; keys live in a blob owned elsewhere */
typedef struct {
    uint64_t hash;
    uint32_t off, len;  /* key bytes: blob[off .. off+len) */
    int32_t val;        /* -1: empty slot */
} smap_slot;

typedef struct {
    smap_slot *slot;    /* (mask + 1), power of two >= 2 * entries */
    size_t mask;
    const char *blob;
} smap;

struct tok {
    tok_kind kind;
    int32_t n_vocab;
    char *blob;              /* all token texts back to back (not NUL-terminated) */
    uint32_t *off, *len;     /* (n_vocab) text of id i: blob[off[i] .. off[i]+len[i]) */
    float *score;            /* (n_vocab) */
    uint16_t *attr;          /* (n_vocab) ATTR_* bits */
    smap vocab;              /* text -> id */
    char *merge_blob;        /* BPE: merge strings "a b" back to back */
    smap merges;             /* "a b" -> rank (first occurrence wins) */
    char *piece_blob;        /* decoded piece of every token (special rendered) */
    uint32_t *piece_off, *piece_len; /* (n_vocab) */
    int32_t *special;        /* special-token cache, longest text first */
    int32_t n_special;
    uint8_t *eog;            /* (n_vocab) 1 if end-of-generation */
    int32_t bos, eos, unk;
    bool add_bos, add_space_prefix, ignore_merges;
    pass_kind passes[MAX_PASSES];
    int n_passes;
    int32_t byte_tok[256];   /* fallback token of one raw byte: SPM <0xXX> (else the 1-byte
                                string), BPE the 1-byte string; -1 if absent */
    uint16_t b2u[256];       /* GPT-2 bytes_to_unicode: byte -> code point (< 0x144) */
    int16_t u2b[0x144];      /* inverse, -1 where undefined */
    uint16_t ascii_flags[128];
    /* BPE word cache (tokenizer.c): the one mutable part of a built tok_t */
    pthread_mutex_t wc_mu;   /* guards wc's entries */
    struct tok_wentry *wc;   /* (TOK_WC_SLOTS) byte-encoded word -> its ids; NULL: no cache */
};

/* Creates t's word cache (none on ENOMEM: encoding works without it), and
 * frees it; tokenizer.c. */
void tok_wcache_init(tok_t *t);
void tok_wcache_free(tok_t *t);

/* ------------------------------------------------------------------ utils */

typedef struct {
    int32_t *v;
    size_t n, cap;
} ivec;

static inline int ivec_push(ivec *a, int32_t x) {
    if (a->n == a->cap) {
        size_t nc = a->cap ? a->cap * 2 : 64;
        int32_t *nv = realloc(a->v, nc * sizeof *nv);
        if (!nv) return he_set(HE_ENOMEM, "tokenizer: out of memory");
        a->v = nv;
        a->cap = nc;
    }
    a->v[a->n++] = x;
    return 0;
}

/* ensures *p (element size es) holds at least n elements */
static inline int reserve(void **p, size_t *cap, size_t n, size_t es) {
    if (n <= *cap) return 0;
    size_t nc = *cap ? *cap : 64;
    while (nc < n) nc *= 2;
    void *np = realloc(*p, nc * es);
    if (!np) return he_set(HE_ENOMEM, "tokenizer: out of memory");
    *p = np;
    *cap = nc;
    return 0;
}

typedef struct {
    char *p;
    size_t n, cap;
} bbuf;

static inline int bbuf_put(bbuf *b, const void *src, size_t n) {
    if (reserve((void **)&b->p, &b->cap, b->n + n + 1, 1)) return HE_ENOMEM;
    memcpy(b->p + b->n, src, n);
    b->n += n;
    return 0;
}

#define FNV_OFF 1469598103934665603ULL
#define FNV_PRIME 1099511628211ULL

static inline uint64_t fnv(uint64_t h, const char *s, size_t n) {
    for (size_t i = 0; i < n; i++) {
        h ^= (uint8_t)s[i];
        h *= FNV_PRIME;
    }
    return h;
}

static inline int smap_init(smap *m, size_t n, const char *blob) {
    size_t cap = 16;
    while (cap < 2 * n) cap *= 2;
    m->slot = malloc(cap * sizeof *m->slot);
    if (!m->slot) return he_set(HE_ENOMEM, "tokenizer: out of memory");
    for (size_t i = 0; i < cap; i++) m->slot[i].val = -1;
    m->mask = cap - 1;
    m->blob = blob;
    return 0;
}

/* Finds the key a[0..na) + sep + b[0..nb) (sep only when b != NULL).
 * Returns the slot index (val == -1 if absent). */
static inline size_t smap_probe(const smap *m, uint64_t h, const char *a, size_t na, const char *b,
                         size_t nb) {
    size_t klen = b ? na + 1 + nb : na;
    size_t i = (size_t)h & m->mask;
    for (;;) {
        const smap_slot *s = &m->slot[i];
        if (s->val < 0) return i;
        if (s->hash == h && s->len == klen) {
            const char *k = m->blob + s->off;
            if (memcmp(k, a, na) == 0 &&
                (!b || (k[na] == ' ' && memcmp(k + na + 1, b, nb) == 0)))
                return i;
        }
        i = (i + 1) & m->mask;
    }
}

static inline int32_t smap_get(const smap *m, const char *s, size_t n) {
    return m->slot[smap_probe(m, fnv(FNV_OFF, s, n), s, n, NULL, 0)].val;
}

/* looks up "a b" without building it */
static inline int32_t smap_get_pair(const smap *m, const char *a, size_t na, const char *b, size_t nb) {
    uint64_t h = fnv(fnv(fnv(FNV_OFF, a, na), " ", 1), b, nb);
    return m->slot[smap_probe(m, h, a, na, b, nb)].val;
}

/* Inserts blob[off..off+len) -> val unless present; returns the value now
 * stored (the existing one on a duplicate). */
static inline int32_t smap_put(smap *m, uint32_t off, uint32_t len, int32_t val) {
    const char *k = m->blob + off;
    uint64_t h = fnv(FNV_OFF, k, len);
    size_t i = smap_probe(m, h, k, len, NULL, 0);
    if (m->slot[i].val >= 0) return m->slot[i].val;
    m->slot[i] = (smap_slot){h, off, len, val};
    return val;
}

/* ------------------------------------------------------------------ UTF-8 */

/* length of a UTF-8 sequence from its first byte, as llama.cpp's
 * unicode_len_utf8 (continuation bytes count as 1) */
static inline size_t utf8_len(uint8_t c) {
    static const uint8_t lookup[16] = {1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 2, 2, 3, 4};
    return lookup[c >> 4];
}

/* Decodes one code point at s[*pos] like llama.cpp's unicode_cpt_from_utf8
 * plus its error path: a malformed or truncated sequence yields U+FFFD and
 * consumes one byte. Overlong forms and surrogates are accepted as llama.cpp
 * does; values up to 0x1FFFFF can come out. */
static inline uint32_t utf8_next(const uint8_t *s, size_t n, size_t *pos) {
    size_t i = *pos;
    uint8_t c = s[i];
    if (!(c & 0x80)) {
        *pos = i + 1;
        return c;
    }
    if ((c & 0x40) && !(c & 0x20)) {
        if (i + 1 < n && (s[i + 1] & 0xc0) == 0x80) {
            *pos = i + 2;
            return ((uint32_t)(c & 0x1f) << 6) | (s[i + 1] & 0x3f);
        }
    } else if ((c & 0x40) && !(c & 0x10)) {
        if (i + 2 < n && (s[i + 1] & 0xc0) == 0x80 && (s[i + 2] & 0xc0) == 0x80) {
            *pos = i + 3;
            return ((uint32_t)(c & 0x0f) << 12) | ((uint32_t)(s[i + 1] & 0x3f) << 6) |
                   (s[i + 2] & 0x3f);
        }
    } else if ((c & 0x40) && !(c & 0x08)) {
        if (i + 3 < n && (s[i + 1] & 0xc0) == 0x80 && (s[i + 2] & 0xc0) == 0x80 &&
            (s[i + 3] & 0xc0) == 0x80) {
            *pos = i + 4;
            return ((uint32_t)(c & 0x07) << 18) | ((uint32_t)(s[i + 1] & 0x3f) << 12) |
                   ((uint32_t)(s[i + 2] & 0x3f) << 6) | (s[i + 3] & 0x3f);
        }
    }
    *pos = i + 1;
    return 0xFFFD;
}

/* Encodes cp (values above 0x10FFFF become U+FFFD) into out[0..4); returns
 * the byte count. */
static inline int utf8_put(uint32_t cp, uint8_t *out) {
    if (cp <= 0x7f) {
        out[0] = (uint8_t)cp;
        return 1;
    }
    if (cp <= 0x7ff) {
        out[0] = (uint8_t)(0xc0 | (cp >> 6));
        out[1] = (uint8_t)(0x80 | (cp & 0x3f));
        return 2;
    }
    if (cp > 0x10ffff) cp = 0xFFFD;
    if (cp <= 0xffff) {
        out[0] = (uint8_t)(0xe0 | (cp >> 12));
        out[1] = (uint8_t)(0x80 | ((cp >> 6) & 0x3f));
        out[2] = (uint8_t)(0x80 | (cp & 0x3f));
        return 3;
    }
    out[0] = (uint8_t)(0xf0 | (cp >> 18));
    out[1] = (uint8_t)(0x80 | ((cp >> 12) & 0x3f));
    out[2] = (uint8_t)(0x80 | ((cp >> 6) & 0x3f));
    out[3] = (uint8_t)(0x80 | (cp & 0x3f));
    return 4;
}

/* ------------------------------------------------------- encode scratch */

/* Scratch space of one tok_encode call. */
typedef struct {
    uint32_t *cp;            /* code points of the current fragment */
    uint16_t *fl;            /* their flags */
    size_t cp_cap, fl_cap;
    size_t *pa, *pb;         /* piece lengths (in code points): current and next pass */
    size_t pa_n, pb_n, pa_cap, pb_cap;
    bbuf word;               /* byte-encoded piece / SPM text */
    struct sym { int32_t prev, next; uint32_t off, n; } *sym;
    size_t sym_cap;
    struct bigram { double prio; int32_t left, right; uint32_t size; } *heap;
    size_t heap_n, heap_cap;
    ivec out;
} scratch;

/* Runs t's pre-tokenizer passes over s->cp[0..n) (flags in s->fl); on
 * success s->pa[0..pa_n) holds the piece lengths in code points. Returns 0
 * or HE_ENOMEM. (pretok.c) */
int pretok_run(const tok_t *t, scratch *s, size_t n);

#endif /* HELIUM_TOK_IMPL_H */
