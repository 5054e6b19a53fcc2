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
 * Invariants: after tok_new_from_gguf, every token text is non-empty and
 * unique (token map is a bijection), every id stored in the struct is either
 * -1 or < n_vocab, and the per-token piece cache holds the decoded bytes of
 * every token. The handle is immutable afterwards, so tok_encode/tok_decode
 * may run concurrently from several threads.
 */
#define _GNU_SOURCE /* memmem */
#include "tokenizer.h"

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "herr.h"
#include "unicode_tab.h"

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
};

/* ------------------------------------------------------------------ utils */

typedef struct {
    int32_t *v;
    size_t n, cap;
} ivec;

static int ivec_push(ivec *a, int32_t x) {
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
static int reserve(void **p, size_t *cap, size_t n, size_t es) {
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

static int bbuf_put(bbuf *b, const void *src, size_t n) {
    if (reserve((void **)&b->p, &b->cap, b->n + n + 1, 1)) return HE_ENOMEM;
    memcpy(b->p + b->n, src, n);
    b->n += n;
    return 0;
}

#define FNV_OFF 1469598103934665603ULL
#define FNV_PRIME 1099511628211ULL

static uint64_t fnv(uint64_t h, const char *s, size_t n) {
    for (size_t i = 0; i < n; i++) {
        h ^= (uint8_t)s[i];
        h *= FNV_PRIME;
    }
    return h;
}

static int smap_init(smap *m, size_t n, const char *blob) {
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
static size_t smap_probe(const smap *m, uint64_t h, const char *a, size_t na, const char *b,
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

static int32_t smap_get(const smap *m, const char *s, size_t n) {
    return m->slot[smap_probe(m, fnv(FNV_OFF, s, n), s, n, NULL, 0)].val;
}

/* looks up "a b" without building it */
static int32_t smap_get_pair(const smap *m, const char *a, size_t na, const char *b, size_t nb) {
    uint64_t h = fnv(fnv(fnv(FNV_OFF, a, na), " ", 1), b, nb);
    return m->slot[smap_probe(m, h, a, na, b, nb)].val;
}

/* Inserts blob[off..off+len) -> val unless present; returns the value now
 * stored (the existing one on a duplicate). */
static int32_t smap_put(smap *m, uint32_t off, uint32_t len, int32_t val) {
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
static size_t utf8_len(uint8_t c) {
    static const uint8_t lookup[16] = {1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 2, 2, 3, 4};
    return lookup[c >> 4];
}

/* Decodes one code point at s[*pos] like llama.cpp's unicode_cpt_from_utf8
 * plus its error path: a malformed or truncated sequence yields U+FFFD and
 * consumes one byte. Overlong forms and surrogates are accepted as llama.cpp
 * does; values up to 0x1FFFFF can come out. */
static uint32_t utf8_next(const uint8_t *s, size_t n, size_t *pos) {
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
static int utf8_put(uint32_t cp, uint8_t *out) {
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

/* --------------------------------------------------------- pre-tokenizer */

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

#define OOR 0xFFFFFFFFu /* code point "past the end of the fragment" */

typedef struct {
    const uint32_t *cp;
    const uint16_t *fl;
    size_t end;              /* first index outside the current piece */
    size_t prev_end;
    scratch *s;
    int err;
} splitter;

static inline uint32_t sp_cpt(const splitter *x, size_t pos) {
    return pos < x->end ? x->cp[pos] : OOR;
}
static inline uint16_t sp_flags(const splitter *x, size_t pos) {
    return pos < x->end ? x->fl[pos] : 0;
}

/* emits the piece [prev_end, end) if non-empty; returns its length */
static size_t sp_add(splitter *x, size_t end) {
    size_t len = end - x->prev_end;
    if (len > 0 && !x->err) {
        if (reserve((void **)&x->s->pb, &x->s->pb_cap, x->s->pb_n + 1, sizeof(size_t)))
            x->err = HE_ENOMEM;
        else
            x->s->pb[x->s->pb_n++] = len;
    }
    x->prev_end = end;
    return len;
}

static uint32_t ascii_lower(uint32_t c) { return c >= 'A' && c <= 'Z' ? c + 32 : c; }

#define F_WS UTAB_WHITESPACE
#define F_L UTAB_LETTER
#define F_N UTAB_NUMBER

/* llama.cpp's unicode_regex_split_custom_gpt2 over [ini, end). */
static void split_gpt2(splitter *x, size_t ini) {
    for (size_t pos = ini; pos < x->end;) {
        uint32_t cpt = x->cp[pos];
        uint16_t flags = x->fl[pos];
        if (cpt == '\'' && pos + 1 < x->end) {
            uint32_t n1 = x->cp[pos + 1];
            if (n1 == 's' || n1 == 't' || n1 == 'm' || n1 == 'd') {
                pos += sp_add(x, pos + 2);
                continue;
            }
            if (pos + 2 < x->end) {
                uint32_t n2 = x->cp[pos + 2];
                if ((n1 == 'r' && n2 == 'e') || (n1 == 'v' && n2 == 'e') || (n1 == 'l' && n2 == 'l')) {
                    pos += sp_add(x, pos + 3);
                    continue;
                }
            }
        }
        uint16_t f2 = cpt == ' ' ? sp_flags(x, pos + 1) : flags;
        if (f2 & F_L) { /* ' ?\p{L}+' */
            pos += cpt == ' ';
            while (f2 & F_L) f2 = sp_flags(x, ++pos);
            sp_add(x, pos);
            continue;
        }
        if (f2 & F_N) { /* ' ?\p{N}+' */
            pos += cpt == ' ';
            while (f2 & F_N) f2 = sp_flags(x, ++pos);
            sp_add(x, pos);
            continue;
        }
        if (!(f2 & (F_WS | F_L | F_N)) && f2) { /* ' ?[^\s\p{L}\p{N}]+' */
            pos += cpt == ' ';
            while (!(f2 & (F_WS | F_L | F_N)) && f2) f2 = sp_flags(x, ++pos);
            sp_add(x, pos);
            continue;
        }
        size_t nws = 0;
        while (sp_flags(x, pos + nws) & F_WS) nws++;
        if (nws > 1 && sp_cpt(x, pos + nws) != OOR) { /* '\s+(?!\S)' */
            pos += nws - 1;
            sp_add(x, pos);
            continue;
        }
        if (nws > 0) { /* '\s+' */
            pos += nws;
            sp_add(x, pos);
            continue;
        }
        sp_add(x, ++pos);
    }
}

/* llama.cpp's unicode_regex_split_custom_llama3 over [ini, end); max_digits 3
 * gives the Llama 3 pattern, 1 the Qwen2 one (whose std::regex result the same
 * matcher reproduces). */
static void split_llama3(splitter *x, size_t ini, size_t max_digits) {
    for (size_t pos = ini; pos < x->end;) {
        uint32_t cpt = x->cp[pos];
        uint16_t flags = x->fl[pos];
        if (cpt == '\'' && pos + 1 < x->end) { /* (?i:'s|'t|'re|'ve|'m|'ll|'d) */
            uint32_t n1 = ascii_lower(x->cp[pos + 1]);
            if (n1 == 's' || n1 == 't' || n1 == 'm' || n1 == 'd') {
                pos += sp_add(x, pos + 2);
                continue;
            }
            if (pos + 2 < x->end) {
                uint32_t n2 = ascii_lower(x->cp[pos + 2]);
                if ((n1 == 'r' && n2 == 'e') || (n1 == 'v' && n2 == 'e') || (n1 == 'l' && n2 == 'l')) {
                    pos += sp_add(x, pos + 3);
                    continue;
                }
            }
        }
        /* [^\r\n\p{L}\p{N}]?\p{L}+ */
        if (!(cpt == '\r' || cpt == '\n' || (flags & F_N))) {
            if ((flags & F_L) || (sp_flags(x, pos + 1) & F_L)) {
                pos++;
                while (sp_flags(x, pos) & F_L) pos++;
                sp_add(x, pos);
                continue;
            }
        }
        if (flags & F_N) { /* \p{N}{1,max_digits} */
            size_t start = pos;
            while (sp_flags(x, pos) & F_N) {
                if (++pos - start >= max_digits) {
                    sp_add(x, pos);
                    start = pos;
                }
            }
            sp_add(x, pos);
            continue;
        }
        /* ' ?[^\s\p{L}\p{N}]+[\r\n]*' */
        uint16_t f2 = cpt == ' ' ? sp_flags(x, pos + 1) : flags;
        if (!(f2 & (F_WS | F_L | F_N)) && flags) {
            pos += cpt == ' ';
            while (!(f2 & (F_WS | F_L | F_N)) && f2) f2 = sp_flags(x, ++pos);
            uint32_t c2 = sp_cpt(x, pos);
            while (c2 == '\r' || c2 == '\n') c2 = sp_cpt(x, ++pos);
            sp_add(x, pos);
            continue;
        }
        size_t nws = 0, last_rn = 0;
        while (sp_flags(x, pos + nws) & F_WS) {
            uint32_t c2 = x->cp[pos + nws];
            if (c2 == '\r' || c2 == '\n') last_rn = pos + nws + 1;
            nws++;
        }
        if (last_rn > 0) { /* \s*[\r\n]+ */
            pos = last_rn;
            sp_add(x, pos);
            continue;
        }
        if (nws > 1 && sp_cpt(x, pos + nws) != OOR) { /* \s+(?!\S) */
            pos += nws - 1;
            sp_add(x, pos);
            continue;
        }
        if (nws > 0) { /* \s+ */
            pos += nws;
            sp_add(x, pos);
            continue;
        }
        sp_add(x, ++pos);
    }
}

static bool is_punct_run(uint32_t cp, uint16_t fl) {
    if (fl & UTAB_WHITESPACE) return false;
    if (fl & UTAB_PUNCT) return true;
    return cp == '$' || cp == '+' || cp == '<' || cp == '=' || cp == '>' || cp == '^' ||
           cp == '~' || cp == '|';
}

static bool in_class(pass_kind k, uint32_t cp, uint16_t fl) {
    return k == PASS_PUNCT_RUN ? is_punct_run(cp, fl) : (fl & F_N) != 0;
}

/* A one-class pattern as llama.cpp's std::regex fallback applies it: matches
 * are maximal runs of class members (single members for PASS_NUM_EACH, i.e.
 * "\p{N}"), and the text between two matches becomes a piece of its own. */
static void split_class(splitter *x, size_t ini, pass_kind k) {
    size_t pos = ini;
    while (pos < x->end) {
        if (!in_class(k, x->cp[pos], x->fl[pos])) {
            pos++;
            continue;
        }
        sp_add(x, pos); /* unmatched text before the match */
        pos++;
        if (k != PASS_NUM_EACH)
            while (pos < x->end && in_class(k, x->cp[pos], x->fl[pos])) pos++;
        sp_add(x, pos);
    }
    sp_add(x, x->end);
}

/* [0-9][0-9][0-9]: leftmost non-overlapping triples of ASCII digits */
static void split_digit3(splitter *x, size_t ini) {
    size_t pos = ini;
    while (pos < x->end) {
        if (pos + 3 <= x->end && x->cp[pos] - '0' < 10 && x->cp[pos + 1] - '0' < 10 &&
            x->cp[pos + 2] - '0' < 10) {
            sp_add(x, pos);
            pos += 3;
            sp_add(x, pos);
        } else {
            pos++;
        }
    }
    sp_add(x, x->end);
}

/* Runs t's pre-tokenizer passes over s->cp[0..n); on success s->pa[0..pa_n)
 * holds the piece lengths in code points. */
static int pretokenize(const tok_t *t, scratch *s, size_t n) {
    if (reserve((void **)&s->pa, &s->pa_cap, 1, sizeof(size_t))) return HE_ENOMEM;
    s->pa[0] = n;
    s->pa_n = 1;
    for (int p = 0; p < t->n_passes; p++) {
        splitter x = {.cp = s->cp, .fl = s->fl, .s = s};
        s->pb_n = 0;
        size_t start = 0;
        for (size_t i = 0; i < s->pa_n; i++) {
            x.end = start + s->pa[i];
            x.prev_end = start;
            switch (t->passes[p]) {
            case PASS_GPT2: split_gpt2(&x, start); break;
            case PASS_LLAMA3: split_llama3(&x, start, 3); break;
            case PASS_QWEN2: split_llama3(&x, start, 1); break;
            case PASS_DIGIT3: split_digit3(&x, start); break;
            default: split_class(&x, start, t->passes[p]); break;
            }
            if (x.err) return x.err;
            start = x.end;
        }
        size_t *tp = s->pa, tc = s->pa_cap;
        s->pa = s->pb;
        s->pa_cap = s->pb_cap;
        s->pa_n = s->pb_n;
        s->pb = tp;
        s->pb_cap = tc;
    }
    return 0;
}

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
    int rc = pretokenize(t, s, n);
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
        size_t ns;
        if (make_symbols(s, &ns) || merge_symbols(t, s, ns) || emit_symbols(t, s, ns))
            return HE_ENOMEM;
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

/* ------------------------------------------------------------------ load */

void tok_destroy(tok_t **self_p) {
    if (!self_p || !*self_p) return;
    tok_t *t = *self_p;
    free(t->blob);
    free(t->off);
    free(t->len);
    free(t->score);
    free(t->attr);
    free(t->vocab.slot);
    free(t->merge_blob);
    free(t->merges.slot);
    free(t->piece_blob);
    free(t->piece_off);
    free(t->piece_len);
    free(t->special);
    free(t->eog);
    free(t);
    *self_p = NULL;
}

static int32_t find_text(const tok_t *t, const char *s) {
    return smap_get(&t->vocab, s, strlen(s));
}

/* reads an optional token-id key; ids out of range keep *id (llama.cpp warns) */
static void read_id(const gguf_t *g, const tok_t *t, const char *key, int32_t *id) {
    uint32_t v;
    if (gguf_get_u32(g, key, &v) && v < (uint32_t)t->n_vocab) *id = (int32_t)v;
}

/* If *id is unset, the lowest id whose text is in names becomes it and is
 * marked CONTROL (llama.cpp's "control-looking token" auto-detection). */
static void detect(tok_t *t, int32_t *id, const char *const *names) {
    if (*id >= 0) return;
    int32_t best = -1;
    for (int k = 0; names[k]; k++) {
        int32_t x = find_text(t, names[k]);
        if (x >= 0 && (best < 0 || x < best)) best = x;
    }
    if (best >= 0) {
        *id = best;
        t->attr[best] |= ATTR_CONTROL;
    }
}

typedef struct {
    const char *name;
    pass_kind passes[MAX_PASSES];
    int n_passes;
    bool llama3; /* ignore_merges and add_bos by default */
} pre_def;

static const pre_def PRE_DEFS[] = {
    {"default", {PASS_PUNCT_RUN, PASS_GPT2, PASS_NUM_RUN, PASS_DIGIT3}, 4, false},
    {"llama3", {PASS_LLAMA3}, 1, true},
    {"llama-v3", {PASS_LLAMA3}, 1, true},
    {"llama-bpe", {PASS_LLAMA3}, 1, true},
    {"falcon3", {PASS_LLAMA3}, 1, true},
    {"pixtral", {PASS_LLAMA3}, 1, true},
    {"dbrx", {PASS_LLAMA3}, 1, false},
    {"smaug-bpe", {PASS_LLAMA3}, 1, false},
    {"gpt-2", {PASS_GPT2}, 1, false},
    {"gpt2", {PASS_GPT2}, 1, false},
    {"phi-2", {PASS_GPT2}, 1, false},
    {"mpt", {PASS_GPT2}, 1, false},
    {"olmo", {PASS_GPT2}, 1, false},
    {"jais", {PASS_GPT2}, 1, false},
    {"qwen2", {PASS_QWEN2}, 1, false},
    {"deepseek-r1-qwen", {PASS_QWEN2}, 1, false},
    {"stablelm2", {PASS_QWEN2}, 1, false},
    {"megrez", {PASS_QWEN2}, 1, false},
    {"smollm", {PASS_NUM_EACH, PASS_GPT2}, 2, false},
    {"starcoder", {PASS_NUM_EACH, PASS_GPT2}, 2, false},
    {"refact", {PASS_NUM_EACH, PASS_GPT2}, 2, false},
    {"command-r", {PASS_NUM_EACH, PASS_GPT2}, 2, false},
    {"codeshell", {PASS_NUM_EACH, PASS_GPT2}, 2, false},
    {"exaone", {PASS_NUM_EACH, PASS_GPT2}, 2, false},
};

static const char *const EOT_NAMES[] = {"<|eot_id|>", "<|im_end|>", "<|end|>", "<end_of_turn>",
                                        "<|endoftext|>", "<|end_of_text|>", "<EOT>", "_<EOT>",
                                        "[EOT]", "<\xef\xbd\x9c" "end\xe2\x96\x81" "of\xe2\x96\x81" "sentence\xef\xbd\x9c>",
                                        "<end_of_utterance>", NULL};
static const char *const EOM_NAMES[] = {"<|eom_id|>", NULL};
static const char *const FIM_PRE_NAMES[] = {"<|fim_prefix|>", "<fim-prefix>", "<fim_prefix>",
                                            "<\xef\xbd\x9c" "fim\xe2\x96\x81" "begin\xef\xbd\x9c>",
                                            "<PRE>", "\xe2\x96\x81<PRE>", "<|code_prefix|>",
                                            "<|prefix|>", NULL};
static const char *const FIM_SUF_NAMES[] = {"<|fim_suffix|>", "<fim-suffix>", "<fim_suffix>",
                                            "<\xef\xbd\x9c" "fim\xe2\x96\x81" "hole\xef\xbd\x9c>",
                                            "<SUF>", "\xe2\x96\x81<SUF>", "<|code_suffix|>",
                                            "<|suffix|>", NULL};
static const char *const FIM_MID_NAMES[] = {"<|fim_middle|>", "<fim-middle>", "<fim_middle>",
                                            "<\xef\xbd\x9c" "fim\xe2\x96\x81" "end\xef\xbd\x9c>",
                                            "<MID>", "\xe2\x96\x81<MID>", "<|code_middle|>",
                                            "<|middle|>", NULL};
static const char *const FIM_PAD_NAMES[] = {"<|fim_pad|>", "<fim-pad>", "<fim_pad>", "<PAD>",
                                            "[PAD]", NULL};
static const char *const FIM_REP_NAMES[] = {"<|fim_repo|>", "<|repo_name|>", "<fim-repo>",
                                            "<REPO>", "<reponame>", NULL};
static const char *const FIM_SEP_NAMES[] = {"<|file_sep|>", NULL};
static const char *const EOG_NAMES[] = {
    "<|eot_id|>", "<|im_end|>", "<|end|>", "<|return|>", "<|call|>", "<|flush|>", "<|calls|>",
    "<end_of_turn>", "<|endoftext|>", "</s>", "<|eom_id|>", "<EOT>", "_<EOT>", "[EOT]", "[EOS]",
    "<|end_of_text|>", "<end_of_utterance>", "<eos>", "<turn|>", "<|tool_response>",
    "<\xef\xbd\x9c" "end\xe2\x96\x81" "of\xe2\x96\x81" "sentence\xef\xbd\x9c>", "[e~[", NULL};

static int fail(tok_t **t, int code, const char *msg, const char *key) {
    he_set(code, "tokenizer: %s%s%s", msg, key ? ": " : "", key ? key : "");
    tok_destroy(t);
    return code;
}

/* Decodes id's text into the piece blob (llama.cpp's token_to_piece with
 * special = true). */
static int build_piece(tok_t *t, int32_t id, bbuf *pb) {
    const char *s = t->blob + t->off[id];
    size_t n = t->len[id];
    uint16_t at = t->attr[id];
    t->piece_off[id] = (uint32_t)pb->n;
    if (at & (ATTR_UNKNOWN | ATTR_CONTROL | ATTR_USER_DEFINED)) {
        if (bbuf_put(pb, s, n)) return HE_ENOMEM;
    } else if (at & ATTR_NORMAL) {
        if (t->kind == TOK_KIND_SPM) {
            for (size_t i = 0; i < n;) {
                if (i + 3 <= n && memcmp(s + i, "\xe2\x96\x81", 3) == 0) {
                    if (bbuf_put(pb, " ", 1)) return HE_ENOMEM;
                    i += 3;
                } else {
                    if (bbuf_put(pb, s + i, 1)) return HE_ENOMEM;
                    i++;
                }
            }
        } else {
            for (size_t pos = 0; pos < n;) {
                uint32_t c = utf8_next((const uint8_t *)s, n, &pos);
                if (c < 0x144 && t->u2b[c] >= 0) {
                    char b = (char)t->u2b[c];
                    if (bbuf_put(pb, &b, 1)) return HE_ENOMEM;
                } else { /* llama.cpp: "[UNK_BYTE_0x<hex of the char>" + text + "]" */
                    uint8_t u[4];
                    int k = utf8_put(c, u);
                    char hex[16];
                    if (bbuf_put(pb, "[UNK_BYTE_0x", 12)) return HE_ENOMEM;
                    for (int j = 0; j < k; j++) {
                        static const char hx[] = "0123456789abcdef";
                        hex[2 * j] = hx[u[j] >> 4];
                        hex[2 * j + 1] = hx[u[j] & 15];
                    }
                    if (bbuf_put(pb, hex, (size_t)(2 * k)) || bbuf_put(pb, s, n) || bbuf_put(pb, "]", 1))
                        return HE_ENOMEM;
                }
            }
        }
    } else if (at & ATTR_BYTE) {
        if (n >= 5) {
            char hex[3] = {s[3], s[4], 0};
            char b = (char)strtol(hex, NULL, 16);
            if (bbuf_put(pb, &b, 1)) return HE_ENOMEM;
        }
    }
    size_t plen = pb->n - t->piece_off[id];
    if (pb->n > UINT32_MAX) return he_set(HE_ERANGE, "tokenizer: vocabulary too large");
    t->piece_len[id] = (uint32_t)plen;
    return 0;
}

/* Sorts special-token ids: longest text first, then lowest id (a stable,
 * deterministic order; llama.cpp uses std::sort by length). */
static void sort_special(const tok_t *t, int32_t *v, int32_t n) {
    if (n < 2) return;
    int32_t *tmp = malloc((size_t)n * sizeof *tmp);
    if (!tmp) { /* fall back to an in-place insertion sort */
        for (int32_t i = 1; i < n; i++) {
            int32_t x = v[i], j = i - 1;
            while (j >= 0 && (t->len[v[j]] < t->len[x] || (t->len[v[j]] == t->len[x] && v[j] > x))) {
                v[j + 1] = v[j];
                j--;
            }
            v[j + 1] = x;
        }
        return;
    }
    for (int32_t w = 1; w < n; w *= 2) {
        for (int32_t lo = 0; lo < n; lo += 2 * w) {
            int32_t mid = lo + w < n ? lo + w : n, hi = lo + 2 * w < n ? lo + 2 * w : n;
            int32_t i = lo, j = mid, k = lo;
            while (i < mid && j < hi) {
                int32_t a = v[i], b = v[j];
                bool take_b = t->len[b] > t->len[a] || (t->len[b] == t->len[a] && b < a);
                tmp[k++] = take_b ? v[j++] : v[i++];
            }
            while (i < mid) tmp[k++] = v[i++];
            while (j < hi) tmp[k++] = v[j++];
        }
        memcpy(v, tmp, (size_t)n * sizeof *v);
    }
    free(tmp);
}

tok_t *tok_new_from_gguf(const gguf_t *g) {
    if (!g) {
        he_set(HE_EINVAL, "tok_new_from_gguf: NULL gguf");
        return NULL;
    }
    tok_t *t = calloc(1, sizeof *t);
    if (!t) {
        he_set(HE_ENOMEM, "tokenizer: out of memory");
        return NULL;
    }
    const char *s;
    size_t sl;
    if (!gguf_get_str(g, "tokenizer.ggml.model", &s, &sl)) {
        fail(&t, HE_EFORMAT, "missing or non-string key", "tokenizer.ggml.model");
        return NULL;
    }
    if (sl == 5 && memcmp(s, "llama", 5) == 0) {
        t->kind = TOK_KIND_SPM;
    } else if (sl == 4 && memcmp(s, "gpt2", 4) == 0) {
        t->kind = TOK_KIND_BPE;
    } else {
        he_set(HE_EUNSUPPORTED, "tokenizer: unsupported tokenizer.ggml.model '%.*s' (want llama or gpt2)",
               (int)(sl > 64 ? 64 : sl), s);
        tok_destroy(&t);
        return NULL;
    }

    /* ---- vocabulary */
    gguf_vtype et;
    uint64_t n;
    const void *data;
    if (!gguf_get_arr(g, "tokenizer.ggml.tokens", &et, &n, &data) || et != GGUF_T_STRING) {
        fail(&t, HE_EFORMAT, "missing or non-string-array key", "tokenizer.ggml.tokens");
        return NULL;
    }
    if (n == 0 || n > (uint64_t)INT32_MAX / 2) {
        fail(&t, HE_EFORMAT, "bad vocabulary size in", "tokenizer.ggml.tokens");
        return NULL;
    }
    t->n_vocab = (int32_t)n;
    t->off = malloc(n * sizeof *t->off);
    t->len = malloc(n * sizeof *t->len);
    t->score = calloc(n, sizeof *t->score);
    t->attr = malloc(n * sizeof *t->attr);
    t->eog = calloc(n, 1);
    t->piece_off = malloc(n * sizeof *t->piece_off);
    t->piece_len = malloc(n * sizeof *t->piece_len);
    if (!t->off || !t->len || !t->score || !t->attr || !t->eog || !t->piece_off || !t->piece_len) {
        fail(&t, HE_ENOMEM, "out of memory", NULL);
        return NULL;
    }
    bbuf blob = {0};
    for (uint64_t i = 0; i < n; i++) {
        const char *ts;
        size_t tl;
        if (!gguf_get_arr_str(g, "tokenizer.ggml.tokens", i, &ts, &tl)) {
            free(blob.p);
            fail(&t, HE_EFORMAT, "unreadable element of", "tokenizer.ggml.tokens");
            return NULL;
        }
        char tmp[32];
        if (tl == 0) { /* llama.cpp renames empty tokens */
            tl = (size_t)snprintf(tmp, sizeof tmp, "[EMPTY_%u]", (unsigned)i);
            ts = tmp;
        }
        if (blob.n + tl > UINT32_MAX) {
            free(blob.p);
            fail(&t, HE_EFORMAT, "vocabulary text too large in", "tokenizer.ggml.tokens");
            return NULL;
        }
        t->off[i] = (uint32_t)blob.n;
        t->len[i] = (uint32_t)tl;
        if (bbuf_put(&blob, ts, tl)) {
            free(blob.p);
            fail(&t, HE_ENOMEM, "out of memory", NULL);
            return NULL;
        }
    }
    t->blob = blob.p ? blob.p : malloc(1);
    if (!t->blob || smap_init(&t->vocab, n, t->blob)) {
        fail(&t, HE_ENOMEM, "out of memory", NULL);
        return NULL;
    }
    for (uint64_t i = 0; i < n; i++) {
        int32_t prev = smap_put(&t->vocab, t->off[i], t->len[i], (int32_t)i);
        if (prev != (int32_t)i) {
            he_set(HE_EFORMAT, "tokenizer: duplicate token '%.*s' (ids %d and %u)",
                   (int)(t->len[i] > 64 ? 64 : t->len[i]), t->blob + t->off[i], (int)prev, (unsigned)i);
            tok_destroy(&t);
            return NULL;
        }
    }
    if (gguf_get_arr(g, "tokenizer.ggml.scores", &et, &n, &data)) {
        if ((et != GGUF_T_FLOAT32 && et != GGUF_T_INT32) || n < (uint64_t)t->n_vocab) {
            fail(&t, HE_EFORMAT, "bad type or length of", "tokenizer.ggml.scores");
            return NULL;
        }
        for (int32_t i = 0; i < t->n_vocab; i++) {
            if (et == GGUF_T_FLOAT32) {
                memcpy(&t->score[i], (const char *)data + 4 * (size_t)i, 4);
            } else {
                int32_t v;
                memcpy(&v, (const char *)data + 4 * (size_t)i, 4);
                t->score[i] = (float)v;
            }
        }
    }
    const void *types = NULL;
    if (gguf_get_arr(g, "tokenizer.ggml.token_type", &et, &n, &data)) {
        if (et != GGUF_T_INT32 || n < (uint64_t)t->n_vocab) {
            fail(&t, HE_EFORMAT, "bad type or length of", "tokenizer.ggml.token_type");
            return NULL;
        }
        types = data;
    }
    for (int32_t i = 0; i < t->n_vocab; i++) {
        int32_t ty = 1;
        if (types) memcpy(&ty, (const char *)types + 4 * (size_t)i, 4);
        switch (ty) {
        case 1: t->attr[i] = ATTR_NORMAL; break;
        case 2: t->attr[i] = ATTR_UNKNOWN; break;
        case 3: t->attr[i] = ATTR_CONTROL; break;
        case 4: t->attr[i] = ATTR_USER_DEFINED; break;
        case 5: t->attr[i] = ATTR_UNUSED; break;
        case 6: t->attr[i] = ATTR_BYTE; break;
        default: t->attr[i] = 0; break;
        }
    }

    /* ---- merges and pre-tokenizer (BPE) */
    if (t->kind == TOK_KIND_BPE) {
        if (!gguf_get_arr(g, "tokenizer.ggml.merges", &et, &n, &data) || et != GGUF_T_STRING) {
            fail(&t, HE_EFORMAT, "missing or non-string-array key", "tokenizer.ggml.merges");
            return NULL;
        }
        if (n > (uint64_t)INT32_MAX) {
            fail(&t, HE_EFORMAT, "too many merges in", "tokenizer.ggml.merges");
            return NULL;
        }
        bbuf mb = {0};
        uint32_t *moff = malloc((n ? n : 1) * sizeof *moff), *mlen = malloc((n ? n : 1) * sizeof *mlen);
        if (!moff || !mlen) {
            free(moff);
            free(mlen);
            fail(&t, HE_ENOMEM, "out of memory", NULL);
            return NULL;
        }
        int rc = 0;
        for (uint64_t i = 0; i < n && !rc; i++) {
            const char *ms;
            size_t ml;
            if (!gguf_get_arr_str(g, "tokenizer.ggml.merges", i, &ms, &ml))
                rc = HE_EFORMAT;
            else if (mb.n + ml > UINT32_MAX)
                rc = HE_EFORMAT;
            else {
                moff[i] = (uint32_t)mb.n;
                mlen[i] = (uint32_t)ml;
                rc = bbuf_put(&mb, ms, ml);
            }
        }
        t->merge_blob = mb.p ? mb.p : malloc(1);
        if (!rc && (!t->merge_blob || smap_init(&t->merges, n, t->merge_blob))) rc = HE_ENOMEM;
        for (uint64_t i = 0; i < n && !rc; i++) smap_put(&t->merges, moff[i], mlen[i], (int32_t)i);
        free(moff);
        free(mlen);
        if (rc) {
            fail(&t, rc, rc == HE_ENOMEM ? "out of memory" : "bad element in", "tokenizer.ggml.merges");
            return NULL;
        }
        const pre_def *pd = &PRE_DEFS[0]; /* llama.cpp: a missing pre means "default" */
        if (gguf_get_str(g, "tokenizer.ggml.pre", &s, &sl)) {
            pd = NULL;
            for (size_t k = 0; k < sizeof PRE_DEFS / sizeof PRE_DEFS[0]; k++)
                if (strlen(PRE_DEFS[k].name) == sl && memcmp(PRE_DEFS[k].name, s, sl) == 0)
                    pd = &PRE_DEFS[k];
            if (!pd) {
                he_set(HE_EUNSUPPORTED, "tokenizer: unsupported pre-tokenizer tokenizer.ggml.pre = '%.*s'",
                       (int)(sl > 64 ? 64 : sl), s);
                tok_destroy(&t);
                return NULL;
            }
        }
        memcpy(t->passes, pd->passes, sizeof t->passes);
        t->n_passes = pd->n_passes;
        t->ignore_merges = pd->llama3;
        t->add_bos = pd->llama3;
        t->add_space_prefix = false;
        t->bos = t->eos = 11; /* llama.cpp's BPE defaults */
        t->unk = -1;
    } else {
        t->add_bos = true;
        t->add_space_prefix = true;
        t->bos = 1;
        t->eos = 2;
        t->unk = 0;
    }
    bool bv;
    if (gguf_get_bool(g, "tokenizer.ggml.add_space_prefix", &bv)) t->add_space_prefix = bv;

    /* ---- special ids */
    if (t->bos >= t->n_vocab) t->bos = -1;
    if (t->eos >= t->n_vocab) t->eos = -1;
    if (t->unk >= t->n_vocab) t->unk = -1;
    int32_t eot = -1, eom = -1, fpre = -1, fsuf = -1, fmid = -1, fpad = -1, frep = -1, fsep = -1;
    read_id(g, t, "tokenizer.ggml.bos_token_id", &t->bos);
    read_id(g, t, "tokenizer.ggml.eos_token_id", &t->eos);
    read_id(g, t, "tokenizer.ggml.eot_token_id", &eot);
    read_id(g, t, "tokenizer.ggml.eom_token_id", &eom);
    read_id(g, t, "tokenizer.ggml.unknown_token_id", &t->unk);
    read_id(g, t, "tokenizer.ggml.fim_pre_token_id", &fpre);
    read_id(g, t, "tokenizer.ggml.fim_suf_token_id", &fsuf);
    read_id(g, t, "tokenizer.ggml.fim_mid_token_id", &fmid);
    read_id(g, t, "tokenizer.ggml.fim_pad_token_id", &fpad);
    read_id(g, t, "tokenizer.ggml.fim_rep_token_id", &frep);
    read_id(g, t, "tokenizer.ggml.fim_sep_token_id", &fsep);
    read_id(g, t, "tokenizer.ggml.prefix_token_id", &fpre);
    read_id(g, t, "tokenizer.ggml.suffix_token_id", &fsuf);
    read_id(g, t, "tokenizer.ggml.middle_token_id", &fmid);
    if (gguf_get_bool(g, "tokenizer.ggml.add_bos_token", &bv)) t->add_bos = bv;

    detect(t, &eot, EOT_NAMES);
    detect(t, &eom, EOM_NAMES);
    detect(t, &fpre, FIM_PRE_NAMES);
    detect(t, &fsuf, FIM_SUF_NAMES);
    detect(t, &fmid, FIM_MID_NAMES);
    detect(t, &fpad, FIM_PAD_NAMES);
    detect(t, &frep, FIM_REP_NAMES);
    detect(t, &fsep, FIM_SEP_NAMES);

    /* end-of-generation set */
    if (fpad >= 0) t->eog[fpad] = 1;
    if (frep >= 0) t->eog[frep] = 1;
    if (fsep >= 0) t->eog[fsep] = 1;
    for (int k = 0; EOG_NAMES[k]; k++) {
        int32_t id = find_text(t, EOG_NAMES[k]);
        if (id >= 0) {
            t->eog[id] = 1;
            t->attr[id] |= ATTR_CONTROL;
        }
    }
    static const char *const always_render[] = {"<|channel|>", "<|message|>", "<|start|>", "<|constrain|>", NULL};
    for (int k = 0; always_render[k]; k++) {
        int32_t id = find_text(t, always_render[k]);
        if (id >= 0) t->attr[id] = ATTR_USER_DEFINED;
    }
    if (t->eos >= 0) t->eog[t->eos] = 1;
    if (eot >= 0) t->eog[eot] = 1;
    if (eom >= 0) t->eog[eom] = 1;
    {
        /* o200k_harmony / solar-open: <|end|> is not EOG when <|return|>+<|call|>
         * or <|calls|>+<|flush|> are */
        int32_t ret = find_text(t, "<|return|>"), call = find_text(t, "<|call|>"),
                calls = find_text(t, "<|calls|>"), flush = find_text(t, "<|flush|>"),
                end = find_text(t, "<|end|>");
        bool has_call = (call >= 0 && t->eog[call]) || (calls >= 0 && t->eog[calls]);
        if (end >= 0 && t->eog[end] && has_call &&
            ((ret >= 0 && t->eog[ret]) || (flush >= 0 && t->eog[flush]))) {
            t->eog[end] = 0;
            t->attr[end] = ATTR_USER_DEFINED;
        }
        int32_t tr = find_text(t, "<|tool_response>"), es = find_text(t, "</s>");
        if (tr >= 0 && t->eog[tr] && es >= 0 && t->eog[es]) { /* gemma4 */
            t->eog[es] = 0;
            t->attr[es] = ATTR_NORMAL;
        }
    }

    /* ---- special-token cache: longest text first */
    t->special = malloc((size_t)t->n_vocab * sizeof *t->special);
    if (!t->special) {
        fail(&t, HE_ENOMEM, "out of memory", NULL);
        return NULL;
    }
    for (int32_t i = 0; i < t->n_vocab; i++)
        if (t->attr[i] & (ATTR_CONTROL | ATTR_USER_DEFINED | ATTR_UNKNOWN)) t->special[t->n_special++] = i;
    sort_special(t, t->special, t->n_special);

    /* ---- byte tables and decoded pieces */
    int nb = 0;
    for (int b = 0; b < 256; b++) {
        bool keep = (b >= 0x21 && b <= 0x7e) || (b >= 0xa1 && b <= 0xac) || (b >= 0xae);
        t->b2u[b] = (uint16_t)(keep ? b : 256 + nb++);
    }
    for (int c = 0; c < 0x144; c++) t->u2b[c] = -1;
    for (int b = 0; b < 256; b++) t->u2b[t->b2u[b]] = (int16_t)b;
    for (int c = 0; c < 128; c++) t->ascii_flags[c] = utab_flags((uint32_t)c);
    for (int b = 0; b < 256; b++) {
        char one = (char)b;
        t->byte_tok[b] = smap_get(&t->vocab, &one, 1);
        if (t->kind == TOK_KIND_SPM) {
            char hx[7];
            snprintf(hx, sizeof hx, "<0x%02X>", b);
            int32_t id = smap_get(&t->vocab, hx, 6);
            if (id >= 0) t->byte_tok[b] = id;
        }
    }
    bbuf pb = {0};
    for (int32_t i = 0; i < t->n_vocab; i++) {
        int rc = build_piece(t, i, &pb);
        if (rc) {
            free(pb.p);
            fail(&t, rc, "cannot build the piece cache", NULL);
            return NULL;
        }
    }
    t->piece_blob = pb.p ? pb.p : malloc(1);
    if (!t->piece_blob) {
        fail(&t, HE_ENOMEM, "out of memory", NULL);
        return NULL;
    }

    /* ---- per-model attributes (llama.cpp sets these by general.name) */
    if (gguf_get_str(g, "general.name", &s, &sl)) {
        char lower[256];
        size_t m = sl < sizeof lower - 1 ? sl : sizeof lower - 1;
        for (size_t i = 0; i < m; i++) lower[i] = (char)(s[i] >= 'A' && s[i] <= 'Z' ? s[i] + 32 : s[i]);
        lower[m] = 0;
        if (strstr(lower, "phi-3") || strstr(lower, "phi3")) {
            for (int32_t k = 0; k < t->n_special; k++) t->attr[t->special[k]] |= ATTR_RSTRIP;
            int32_t id = find_text(t, "</s>");
            if (id >= 0) t->attr[id] |= ATTR_RSTRIP;
            static const char *const no_strip[] = {"<unk>", "<s>", "<|endoftext|>", NULL};
            for (int k = 0; no_strip[k]; k++)
                if ((id = find_text(t, no_strip[k])) >= 0) t->attr[id] &= (uint16_t)~ATTR_RSTRIP;
        }
    }
    return t;
}
