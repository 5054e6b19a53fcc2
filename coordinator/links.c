/* links: see links.h. */
#include "links.h"

#include <stdlib.h>

#include "dir.h"

typedef struct {
    double w, sx, sy, sxx, sxy; /* decayed sums over pulls: weight, bytes, seconds, bytes^2, bytes*seconds */
    uint32_t n;                 /* pulls seen */
} pair_t;

struct links {
    pair_t *row[2][DIR_MAX_WORKERS]; /* [xport][dst] -> (DIR_MAX_WORKERS) by src; NULL until used */
};

links_t *links_new(void) { return calloc(1, sizeof(links_t)); }

void links_destroy(links_t **self_p) {
    if (!self_p || !*self_p) return;
    for (int x = 0; x < 2; x++)
        for (int d = 0; d < DIR_MAX_WORKERS; d++) free((*self_p)->row[x][d]);
    free(*self_p);
    *self_p = NULL;
}

static bool in_range(int slot) { return slot >= 0 && slot < DIR_MAX_WORKERS; }

static const pair_t *get(const links_t *l, int src, int dst, bool xport) {
    if (!l || !in_range(src) || !in_range(dst) || !l->row[xport][dst]) return NULL;
    return &l->row[xport][dst][src];
}

void links_observe(links_t *l, int src, int dst, bool xport, double bytes, double seconds) {
    if (!l || !in_range(src) || !in_range(dst) || !(bytes > 0) || !(seconds > 0)) return;
    pair_t **r = &l->row[xport][dst];
    if (!*r && !(*r = calloc(DIR_MAX_WORKERS, sizeof **r))) return; /* unmodelled: the defaults price it */
    pair_t *p = &(*r)[src];
    /* sums in MB, so the squares stay well inside a double's precision */
    double x = bytes / 1e6, y = seconds;
    p->w = p->w * LINKS_DECAY + 1;
    p->sx = p->sx * LINKS_DECAY + x;
    p->sy = p->sy * LINKS_DECAY + y;
    p->sxx = p->sxx * LINKS_DECAY + x * x;
    p->sxy = p->sxy * LINKS_DECAY + x * y;
    p->n++;
}

bool links_fit(const links_t *l, int src, int dst, bool xport, double *fixed_s, double *bytes_s, uint32_t *n) {
    const pair_t *p = get(l, src, dst, xport);
    if (n) *n = p ? p->n : 0;
    if (!p || p->n < LINKS_MIN_PULLS || p->sxx <= 0) return false;
    double mx = p->sx / p->w, my = p->sy / p->w, var = p->sxx / p->w - mx * mx;
    double a = 0, b = 0; /* seconds, seconds per MB */
    if (var > 1e-9 * mx * mx) {
        b = (p->sxy / p->w - mx * my) / var;
        a = my - b * mx;
    }
    if (!(var > 1e-9 * mx * mx) || a < 0 || b <= 0) { /* through the origin */
        a = 0;
        b = p->sxy / p->sxx;
    }
    if (!(b > 0)) return false;
    *fixed_s = a;
    *bytes_s = 1e6 / b;
    return true;
}

double links_time(const void *lv, int src, int dst, bool xport, double bytes) {
    double a, r;
    if (!links_fit((const links_t *)lv, src, dst, xport, &a, &r, NULL)) return -1;
    return a + bytes / r;
}

void links_forget(links_t *l, int slot) {
    if (!l || !in_range(slot)) return;
    for (int x = 0; x < 2; x++) {
        free(l->row[x][slot]);
        l->row[x][slot] = NULL;
        for (int d = 0; d < DIR_MAX_WORKERS; d++)
            if (l->row[x][d]) l->row[x][d][slot] = (pair_t){0};
    }
}
