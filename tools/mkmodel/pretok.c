/* pretok: hand-written matchers for the llama-bpe / qwen2 pre-tokenizer regexes
 * and the SentencePiece-style word split (see pretok.h).
 *
 * The regex alternatives are tried in order at each position, exactly as the
 * regex engine would; each matcher returns the end of its match or 0 (no match
 * here). Positions index a decoded code-point array, so each step is O(1)
 * amortized and the whole split is linear.
 */
#include "pretok.h"

#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "herr.h"

size_t pretok_utf8(const char *s, size_t len, uint32_t *cp) {
    const unsigned char *u = (const unsigned char *)s;
    unsigned char c = u[0];
    size_t n;
    uint32_t v, min;
    if (c < 0x80) {
        *cp = c;
        return 1;
    } else if ((c & 0xE0) == 0xC0) {
        n = 2, v = c & 0x1F, min = 0x80;
    } else if ((c & 0xF0) == 0xE0) {
        n = 3, v = c & 0x0F, min = 0x800;
    } else if ((c & 0xF8) == 0xF0) {
        n = 4, v = c & 0x07, min = 0x10000;
    } else {
        *cp = c | 0x110000;
        return 1;
    }
    if (n > len) {
        *cp = c | 0x110000;
        return 1;
    }
    for (size_t i = 1; i < n; i++) {
        if ((u[i] & 0xC0) != 0x80) {
            *cp = c | 0x110000;
            return 1;
        }
        v = (v << 6) | (u[i] & 0x3F);
    }
    if (v < min || v > 0x10FFFF || (v >= 0xD800 && v <= 0xDFFF)) {
        *cp = c | 0x110000;
        return 1;
    }
    *cp = v;
    return n;
}

pretok_class pretok_classify(uint32_t cp) {
    if (cp < 0x80) {
        if ((cp >= 'a' && cp <= 'z') || (cp >= 'A' && cp <= 'Z'))
            return PRETOK_C_LETTER;
        if (cp >= '0' && cp <= '9')
            return PRETOK_C_NUMBER;
        if (cp == ' ' || (cp >= 0x09 && cp <= 0x0D))
            return PRETOK_C_SPACE;
        return PRETOK_C_OTHER;
    }
    if (cp > 0x10FFFF)
        return PRETOK_C_LETTER; /* invalid byte: treat as a letter */
    if (cp == 0x85 || cp == 0xA0 || cp == 0x1680 || (cp >= 0x2000 && cp <= 0x200A) || cp == 0x2028 ||
        cp == 0x2029 || cp == 0x202F || cp == 0x205F || cp == 0x3000)
        return PRETOK_C_SPACE;
    if (cp < 0x100) {
        if (cp == 0xAA || cp == 0xB5 || cp == 0xBA)
            return PRETOK_C_LETTER;
        if (cp == 0xB2 || cp == 0xB3 || cp == 0xB9 || (cp >= 0xBC && cp <= 0xBE))
            return PRETOK_C_NUMBER;
        if (cp < 0xC0 || cp == 0xD7 || cp == 0xF7)
            return PRETOK_C_OTHER;
        return PRETOK_C_LETTER;
    }
    if ((cp >= 0x300 && cp <= 0x36F) ||   /* combining marks (\p{M}) */
        (cp >= 0x2000 && cp <= 0x2BFF) || /* punctuation, symbols, arrows, dingbats */
        (cp >= 0x3000 && cp <= 0x303F) || /* CJK punctuation */
        (cp >= 0xE000 && cp <= 0xF8FF) || /* private use */
        (cp >= 0xFE30 && cp <= 0xFE4F) || (cp >= 0xFF00 && cp <= 0xFF0F) ||
        (cp >= 0x1F000 && cp <= 0x1FAFF)) /* emoji and pictographs */
        return PRETOK_C_OTHER;
    if ((cp >= 0x660 && cp <= 0x669) || (cp >= 0x6F0 && cp <= 0x6F9) || (cp >= 0x966 && cp <= 0x96F) ||
        (cp >= 0xFF10 && cp <= 0xFF19))
        return PRETOK_C_NUMBER;
    return PRETOK_C_LETTER;
}

typedef struct {
    const uint32_t *cp;  /* (n) code points */
    const uint8_t *cls;  /* (n) pretok_class of each */
    size_t n;
} cps;

static bool is_crlf(uint32_t c) { return c == '\r' || c == '\n'; }
static uint32_t lower_ascii(uint32_t c) { return (c >= 'A' && c <= 'Z') ? c + 32 : c; }

/* '(?:[sS]|[tT]|[rR][eE]|[vV][eE]|[mM]|[lL][lL]|[dD]) */
static size_t m_contraction(const cps *t, size_t i) {
    if (t->cp[i] != '\'' || i + 1 >= t->n)
        return 0;
    uint32_t a = lower_ascii(t->cp[i + 1]);
    if (a == 's' || a == 't' || a == 'm' || a == 'd')
        return i + 2;
    if (i + 2 < t->n) {
        uint32_t b = lower_ascii(t->cp[i + 2]);
        if ((a == 'r' && b == 'e') || (a == 'v' && b == 'e') || (a == 'l' && b == 'l'))
            return i + 3;
    }
    return 0;
}

/* [^\r\n\p{L}\p{N}]?\p{L}+ */
static size_t m_word(const cps *t, size_t i) {
    size_t j = i;
    if (t->cls[j] != PRETOK_C_LETTER && t->cls[j] != PRETOK_C_NUMBER && !is_crlf(t->cp[j]))
        j++;
    if (j >= t->n || t->cls[j] != PRETOK_C_LETTER)
        return 0; /* without the optional char, cp[i] would have to be a letter: it is not */
    while (j < t->n && t->cls[j] == PRETOK_C_LETTER)
        j++;
    return j;
}

/* \p{N}{1,max} */
static size_t m_number(const cps *t, size_t i, size_t max) {
    size_t j = i;
    while (j < t->n && j - i < max && t->cls[j] == PRETOK_C_NUMBER)
        j++;
    return j > i ? j : 0;
}

/* ' ?[^\s\p{L}\p{N}]+[\r\n]*' */
static size_t m_punct(const cps *t, size_t i) {
    size_t j = i;
    if (t->cp[j] == ' ')
        j++;
    size_t k = j;
    while (k < t->n && t->cls[k] == PRETOK_C_OTHER)
        k++;
    if (k == j)
        return 0;
    while (k < t->n && is_crlf(t->cp[k]))
        k++;
    return k;
}

/* \s*[\r\n]+ | \s+(?!\S) | \s+ */
static size_t m_space(const cps *t, size_t i) {
    size_t e = i;
    while (e < t->n && t->cls[e] == PRETOK_C_SPACE)
        e++;
    if (e == i)
        return 0;
    for (size_t p = e; p > i; p--) /* last CR/LF of the run ends the first alternative */
        if (is_crlf(t->cp[p - 1]))
            return p;
    if (e == t->n)
        return e;
    if (e - 1 > i)
        return e - 1;
    return e;
}

int pretok_split(pretok_mode mode, const char *text, size_t len,
                 int (*emit)(const char *piece, size_t n, void *ctx), void *ctx) {
    /* Decode once: code points, classes and byte offsets (n+1). */
    uint32_t *cp = malloc((len + 1) * sizeof *cp);
    uint8_t *cls = malloc(len + 1);
    size_t *off = malloc((len + 1) * sizeof *off);
    if (!cp || !cls || !off) {
        free(cp), free(cls), free(off);
        return he_set(HE_ENOMEM, "pretok: out of memory");
    }
    size_t n = 0;
    for (size_t b = 0; b < len;) {
        off[n] = b;
        b += pretok_utf8(text + b, len - b, &cp[n]);
        cls[n] = (uint8_t)pretok_classify(cp[n]);
        n++;
    }
    off[n] = len;
    cps t = {cp, cls, n};
    size_t max_digits = mode == PRETOK_QWEN2 ? 1 : 3;
    int rc = 0;
    for (size_t i = 0; i < n && rc == 0;) {
        size_t e = m_contraction(&t, i);
        if (!e)
            e = m_word(&t, i);
        if (!e)
            e = m_number(&t, i, max_digits);
        if (!e)
            e = m_punct(&t, i);
        if (!e)
            e = m_space(&t, i);
        if (!e)
            e = i + 1; /* unreachable: every class is covered above */
        rc = emit(text + off[i], off[e] - off[i], ctx);
        i = e;
    }
    free(cp), free(cls), free(off);
    return rc;
}

static const char SPM_SPACE[] = "\xE2\x96\x81"; /* U+2581 */

int pretok_split_spm(const char *line, size_t len,
                     int (*emit)(const char *piece, size_t n, void *ctx), void *ctx) {
    /* Worst case every byte is a space: 3 bytes each, plus the leading one. */
    char *buf = malloc(3 * len + 4);
    if (!buf)
        return he_set(HE_ENOMEM, "pretok: out of memory");
    int rc = 0;
    size_t n = 0;              /* bytes in the current piece */
    int prev = -1;             /* class of the previous char in the piece, -1 after a lone U+2581 */
    memcpy(buf, SPM_SPACE, 3); /* the leading U+2581 every line gets */
    n = 3;
    for (size_t b = 0; b < len && rc == 0;) {
        uint32_t c;
        size_t cl = pretok_utf8(line + b, len - b, &c);
        if (c == ' ' || c == 0x2581) {
            if (n)
                rc = emit(buf, n, ctx);
            memcpy(buf, SPM_SPACE, 3);
            n = 3;
            prev = -1;
        } else {
            int k = (int)pretok_classify(c);
            if (k == PRETOK_C_SPACE)
                k = PRETOK_C_OTHER; /* tabs etc.: kept as ordinary characters */
            if (n && prev != -1 && k != prev) {
                rc = emit(buf, n, ctx);
                n = 0;
            }
            if (rc == 0) {
                memcpy(buf + n, line + b, cl);
                n += cl;
                prev = k;
            }
        }
        b += cl;
    }
    if (rc == 0 && n)
        rc = emit(buf, n, ctx);
    free(buf);
    return rc;
}
