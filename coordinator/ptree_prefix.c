/* ptree_prefix: the static prefix of a prompt template, the part of a call's
 * prompt known before its inputs are: ptree_static_text renders the template
 * up to its first value not yet known (ptree_value_fn), and ptree_safe_tokens
 * tokenizes that text and keeps only the tokens that cannot change when more
 * text follows (cut at a safe byte boundary, one token of margin; see
 * ptree.h). The prefix tree (ptree.c) indexes calls by these tokens.
 *
 * Invariants: the ids kept are a prefix of the tokens the whole prompt will
 * have, whatever text follows; text longer than PTREE_MAX_TEXT is refused.
 * Work: one tokenization of the text plus one decode per token.
 */
#include <stdlib.h>
#include <string.h>

#include "herr.h"
#include "ptree.h"

/* Grows the byte buffer *p to hold need bytes; cap doubles from 16. */
static int grow_text(char **p, size_t *cap, size_t need) {
    if (need <= *cap) return 0;
    size_t c = *cap ? *cap : 16;
    while (c < need) c *= 2;
    char *q = realloc(*p, c);
    if (!q) return he_set(HE_ENOMEM, "ptree: out of memory");
    *p = q;
    *cap = c;
    return 0;
}

int ptree_static_text(const wf_tmpl *t, ptree_value_fn value, void *ctx, char **text, size_t *len,
                      bool *complete) {
    if (!t || !text || !len || !complete) return he_set(HE_EINVAL, "ptree_static_text: bad arguments");
    *text = NULL;
    *len = 0;
    *complete = true;
    char *buf = NULL;
    size_t n = 0, cap = 0;
    int rc = 0;
    for (size_t i = 0; i < t->n; i++) {
        const wf_part *p = &t->v[i];
        const char *s = NULL;
        size_t sl = 0;
        if (p->kind == WF_PART_TEXT) {
            s = p->s;
            sl = p->len;
        } else {
            int known = value ? value(ctx, p, &s, &sl) : 0;
            if (known < 0) {
                rc = known;
                goto fail;
            }
            if (!known) {
                *complete = false;
                break;
            }
        }
        if (sl > PTREE_MAX_TEXT - n) {
            rc = he_set(HE_ELIMIT, "ptree: static prompt text longer than %u bytes", PTREE_MAX_TEXT);
            goto fail;
        }
        if ((rc = grow_text(&buf, &cap, n + sl + 1))) goto fail;
        if (sl) memcpy(buf + n, s, sl);
        n += sl;
    }
    if ((rc = grow_text(&buf, &cap, n + 1))) goto fail;
    buf[n] = 0;
    *text = buf;
    *len = n;
    return 0;
fail:
    free(buf);
    *complete = false;
    return rc;
}

static bool is_alnum(unsigned char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
}

/* A safe cut between bytes a and b (see ptree.h): a space after any visible
 * ASCII character (punctuation runs end at a space in every pre-tokenizer),
 * or ASCII whitespace after a letter or digit (punctuation may absorb a
 * following newline in llama-bpe/qwen2, letters and digits never do). */
static bool cut_at(unsigned char a, unsigned char b) {
    if (b == ' ') return a > 0x20 && a < 0x7f;
    return (b == '\t' || b == '\n' || b == '\r' || b == '\v' || b == '\f') && is_alnum(a);
}

int ptree_safe_tokens(const tok_t *tok, const char *text, size_t len, bool complete, int32_t **ids, int *n) {
    if (!tok || !ids || !n || (len && !text)) return he_set(HE_EINVAL, "ptree_safe_tokens: bad arguments");
    *ids = NULL;
    *n = 0;
    if (len > PTREE_MAX_TEXT) return he_set(HE_ELIMIT, "ptree: static prompt text longer than %u bytes", PTREE_MAX_TEXT);
    int cap = (int)len + 8;
    int32_t *v = malloc((size_t)cap * sizeof *v);
    if (!v) return he_set(HE_ENOMEM, "ptree: out of memory");
    int nt = tok_encode_prompt(tok, text ? text : "", len, true, v, cap); /* as coordinator/place.c */
    if (nt > cap) {
        int32_t *w = realloc(v, (size_t)nt * sizeof *v);
        if (!w) {
            free(v);
            return he_set(HE_ENOMEM, "ptree: out of memory");
        }
        v = w;
        cap = nt;
        nt = tok_encode_prompt(tok, text, len, true, v, cap);
    }
    if (nt < 0 || nt > cap) {
        free(v);
        return nt < 0 ? nt : he_set(HE_EINVAL, "ptree: tokenizer disagrees with itself");
    }
    int keep = nt;
    if (!complete) {
        /* c: the last cut (see cut_at) */
        size_t c = 0;
        bool have_c = false;
        for (size_t i = len; i-- > 1;)
            if (cut_at((unsigned char)text[i - 1], (unsigned char)text[i])) {
                c = i;
                have_c = true;
                break;
            }
        keep = 0;
        if (have_c) {
            /* Map tokens to byte offsets by their decoded pieces; the pieces
             * concatenate to shift spaces (SPM's space prefix) + text. */
            char piece[256];
            int64_t total = 0;
            for (int i = 0; i < nt; i++) {
                int k = tok_decode_piece(tok, v[i], false, piece, sizeof piece);
                total += k > 0 ? k : 0;
            }
            int64_t shift = total - (int64_t)len, pos = 0;
            int good = 0; /* tokens whose bytes match and end at or before c */
            for (int i = 0; i < nt && shift >= 0; i++) {
                int k = tok_decode_piece(tok, v[i], false, piece, sizeof piece);
                if (k < 0 || k > (int)sizeof piece) break; /* unusual piece: stop here */
                bool ok = true;
                for (int b = 0; b < k && ok; b++) {
                    int64_t q = pos + b;
                    char want = q < shift ? ' ' : text[q - shift];
                    ok = piece[b] == want;
                }
                if (!ok) break;
                pos += k;
                if (pos - shift > (int64_t)c) break;
                good = i + 1;
            }
            keep = good > 0 ? good - 1 : 0; /* one token of margin */
        }
    }
    if (keep == 0) {
        free(v);
        return 0;
    }
    *ids = v;
    *n = keep;
    return 0;
}
