/* detok: incremental detokenization with stop strings; see detok.h. */
#define _GNU_SOURCE /* memmem */
#include "detok.h"

#include <stdlib.h>
#include <string.h>

#include "herr.h"

struct dtk {
    const tok_t *tok;
    char **stops;          /* (n_stops) non-empty stop strings */
    size_t *stop_len;      /* (n_stops) */
    int n_stops;
    size_t max_stop;       /* longest stop string (0: none) */
    char *text;            /* (cap) text so far, NUL-terminated */
    size_t len, cap;
    size_t stable;         /* dtk_stable's last answer */
    bool stopped;
};

dtk_t *dtk_new(const tok_t *tok, const char *const *stops, int n_stops) {
    dtk_t *d = calloc(1, sizeof *d);
    if (!d) goto oom;
    d->tok = tok;
    d->cap = 256;
    d->text = malloc(d->cap);
    if (!d->text) goto oom;
    d->text[0] = 0;
    if (n_stops > 0) {
        d->stops = calloc((size_t)n_stops, sizeof *d->stops);
        d->stop_len = calloc((size_t)n_stops, sizeof *d->stop_len);
        if (!d->stops || !d->stop_len) goto oom;
        for (int i = 0; i < n_stops; i++) {
            size_t l = stops[i] ? strlen(stops[i]) : 0;
            if (l == 0) continue;
            if (!(d->stops[d->n_stops] = strdup(stops[i]))) goto oom;
            d->stop_len[d->n_stops++] = l;
            if (l > d->max_stop) d->max_stop = l;
        }
    }
    return d;
oom:
    dtk_destroy(&d);
    he_set(HE_ENOMEM, "detok: out of memory");
    return NULL;
}

void dtk_destroy(dtk_t **self_p) {
    if (!self_p || !*self_p) return;
    dtk_t *d = *self_p;
    for (int i = 0; i < d->n_stops; i++) free(d->stops[i]);
    free(d->stops);
    free(d->stop_len);
    free(d->text);
    free(d);
    *self_p = NULL;
}

/* Earliest stop string occurrence that starts at or after `from`, or -1. */
static long find_stop(const dtk_t *d, size_t from) {
    long best = -1;
    for (int i = 0; i < d->n_stops; i++) {
        const char *p = memmem(d->text + from, d->len - from, d->stops[i], d->stop_len[i]);
        if (p && (best < 0 || p - d->text < best)) best = p - d->text;
    }
    return best;
}

int dtk_push(dtk_t *d, int32_t id) {
    if (d->stopped) return 1;
    int k = tok_decode_piece(d->tok, id, false, NULL, 0);
    if (k < 0) return k;
    if (d->len + (size_t)k + 1 > d->cap) {
        size_t nc = d->cap * 2;
        while (nc < d->len + (size_t)k + 1) nc *= 2;
        char *nt = realloc(d->text, nc);
        if (!nt) return he_set(HE_ENOMEM, "detok: out of memory");
        d->text = nt;
        d->cap = nc;
    }
    size_t old = d->len;
    d->len += (size_t)tok_decode_piece(d->tok, id, false, d->text + old, k);
    d->text[d->len] = 0;
    if (!d->n_stops) return 0;
    /* a new occurrence ends in the new bytes, so starts at most max_stop - 1 before them */
    size_t from = old > d->max_stop - 1 ? old - (d->max_stop - 1) : 0;
    long at = find_stop(d, from);
    if (at < 0) return 0;
    d->len = (size_t)at;
    d->text[d->len] = 0;
    d->stopped = true;
    return 1;
}

const char *dtk_text(const dtk_t *d, size_t *len) {
    if (len) *len = d->len;
    return d->text;
}

bool dtk_stopped(const dtk_t *d) { return d->stopped; }

/* Largest b <= end such that text[0..b) does not end inside a UTF-8
 * character (continuation bytes are 10xxxxxx; a lead byte says how many
 * follow). */
static size_t utf8_floor(const char *text, size_t len, size_t end) {
    size_t b = end;
    /* back off to the lead byte of the character that straddles b */
    size_t i = b, back = 0;
    while (i > 0 && back < 3 && ((unsigned char)text[i - 1] & 0xC0) == 0x80) {
        i--;
        back++;
    }
    if (i == 0) return b;
    unsigned char lead = (unsigned char)text[i - 1];
    size_t need = lead >= 0xF0 ? 4 : lead >= 0xE0 ? 3 : lead >= 0xC0 ? 2 : 1;
    if (need > 1 && back + 1 < need) return i - 1; /* that character is not whole before b */
    (void)len;
    return b;
}

size_t dtk_stable(dtk_t *d, bool final) {
    size_t end;
    if (final || d->stopped) {
        end = d->len;
    } else {
        size_t hold = d->max_stop ? d->max_stop - 1 : 0;
        end = d->len > hold ? d->len - hold : 0;
        end = utf8_floor(d->text, d->len, end);
    }
    if (end > d->stable) d->stable = end;
    return d->stable;
}
