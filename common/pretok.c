/* pretok: the tokenizer's pre-tokenizer (BPE models only). Splits a text
 * fragment, already decoded to code points with their Unicode class flags,
 * into pieces that BPE merges never cross, with hand-written matchers
 * equivalent to the regexes llama.cpp uses for each tokenizer.ggml.pre (one
 * pass per regex, each pass refining the pieces of the previous one; the
 * passes of a model are chosen in tok_load.c).
 *
 * Invariants: the pieces of a pass cover the fragment exactly, in order, and
 * are non-empty; work is linear in the fragment's length per pass.
 */
#include "tok_impl.h"

#include "unicode_tab.h"
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

int pretok_run(const tok_t *t, scratch *s, size_t n) {
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
