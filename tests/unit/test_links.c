/* links: the per-pair KV link model (coordinator/links.h) recovers a link's
 * fixed cost and rate from noisy pulls, keeps pairs and transports apart,
 * follows a link that changes, forgets a lost worker's pairs, and prices
 * route_pull_times_pair once a pair has a fit. */
#include <criterion/criterion.h>
#include <math.h>

#include "links.h"
#include "route.h"

static uint32_t st = 12345;
static double noise(void) { /* uniform in [-1, 1] */
    st = st * 1103515245u + 12345u;
    return (double)(st >> 8) / (double)(1u << 23) - 1.0;
}

Test(links, fits_fixed_cost_and_rate) {
    links_t *l = links_new();
    cr_assert_not_null(l);
    double a = 0.004, r = 2.5e8; /* 4 ms, 250 MB/s */
    for (int i = 0; i < 40; i++) {
        double bytes = 1e5 * (1 + i % 8) * 8;
        links_observe(l, 3, 7, false, bytes, (a + bytes / r) * (1 + 0.02 * noise()));
    }
    double fa, fr;
    uint32_t n;
    cr_assert(links_fit(l, 3, 7, false, &fa, &fr, &n));
    cr_assert_eq(n, 40);
    cr_assert(fabs(fa - a) < 0.1 * a, "fixed %g, want %g", fa, a);
    cr_assert(fabs(fr - r) < 0.05 * r, "rate %g, want %g", fr, r);
    double t = links_time(l, 3, 7, false, 4e6);
    cr_assert(fabs(t - (a + 4e6 / r)) < 0.05 * (a + 4e6 / r));
    /* other pair, other direction, other transport: unknown */
    cr_assert(!links_fit(l, 7, 3, false, &fa, &fr, NULL));
    cr_assert(!links_fit(l, 3, 7, true, &fa, &fr, NULL));
    cr_assert(links_time(l, 3, 8, false, 1e6) < 0);
    links_destroy(&l);
    cr_assert_null(l);
}

Test(links, one_size_is_a_rate_and_a_changed_link_is_followed) {
    links_t *l = links_new();
    links_observe(l, 0, 1, true, 1e6, 0.01); /* 100 MB/s, one size: through the origin */
    double fa, fr;
    cr_assert(links_fit(l, 0, 1, true, &fa, &fr, NULL));
    cr_assert_float_eq(fa, 0.0, 1e-12);
    cr_assert(fabs(fr - 1e8) < 1e3, "rate %g", fr);
    for (int i = 0; i < 40; i++) links_observe(l, 0, 1, true, 1e6, 0.001); /* now 1 GB/s */
    cr_assert(links_fit(l, 0, 1, true, &fa, &fr, NULL));
    cr_assert(fr > 0.95e9, "rate %g after the link got faster", fr);
    /* bad input is ignored */
    links_observe(l, -1, 1, true, 1e6, 0.1);
    links_observe(l, 0, 1, true, 0, 0.1);
    links_observe(l, 0, 1, true, 1e6, -1);
    links_observe(l, 0, 100000, true, 1e6, 0.1);
    uint32_t n;
    cr_assert(links_fit(l, 0, 1, true, &fa, &fr, &n));
    cr_assert_eq(n, 41);
    links_forget(l, 0);
    cr_assert(!links_fit(l, 0, 1, true, &fa, &fr, NULL));
    links_destroy(&l);
}

Test(links, route_prices_a_pair_by_its_fit) {
    links_t *l = links_new();
    route_config rc;
    route_config_default(&rc);
    rc.page_bytes = 1 << 20;
    route_worker dst = {.slot = 2, .alive = true}, src = {.slot = 5, .alive = true};
    double tp, tr, tp0;
    route_pull_times_pair(&rc, &dst, &src, 10, 16, &tp0, &tr); /* defaults: 2 ms + 10 MiB at 1 GB/s */
    cr_assert(fabs(tp0 - (0.002 + 10.0 * (1 << 20) / 1e9)) < 1e-9);
    rc.pair_time = links_time;
    rc.pair_ctx = l;
    route_pull_times_pair(&rc, &dst, &src, 10, 16, &tp, &tr);
    cr_assert_float_eq(tp, tp0, 1e-12, "no fit yet: the defaults");
    for (int i = 1; i <= 6; i++) links_observe(l, 5, 2, false, i * 1e6, 0.5 + i * 1e6 / 1e7); /* slow: 0.5 s + 10 MB/s */
    route_pull_times_pair(&rc, &dst, &src, 10, 16, &tp, &tr);
    double want = 0.5 + 10.0 * (1 << 20) / 1e7;
    cr_assert(fabs(tp - want) < 0.01 * want, "pair-priced pull %g s, want %g", tp, want);
    /* the pull's other direction has no fit: defaults */
    route_pull_times_pair(&rc, &src, &dst, 10, 16, &tp, &tr);
    cr_assert(fabs(tp - tp0) < 1e-9);
    links_destroy(&l);
}
