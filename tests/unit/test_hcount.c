/* hcount: the multiset of hashes against a brute-force reference, with
 * keys chosen to collide in their home slots (backward-shift deletion must
 * keep every probe run reachable). */
#include <criterion/criterion.h>
#include <stdint.h>
#include <stdlib.h>

#include "hcount.h"

static uint64_t st = 0x243f6a8885a308d3ULL;
static uint64_t rnd(void) {
    st ^= st << 13;
    st ^= st >> 7;
    st ^= st << 17;
    return st;
}

Test(hcount, random_adds_and_removes_match_reference) {
    enum { KEYS = 3000, ROUNDS = 200000 };
    uint64_t *key = malloc(KEYS * sizeof *key);
    uint32_t *ref = calloc(KEYS, sizeof *ref);
    /* a third of the keys share their low bits with others (clustered runs) */
    for (int i = 0; i < KEYS; i++) key[i] = i % 3 ? rnd() : (rnd() << 20) | (uint64_t)(i % 97);
    key[0] = 0; /* the empty marker's value is a legal key too */
    hcount_t *hc = hcount_new();
    cr_assert_not_null(hc);
    size_t distinct = 0;
    for (int r = 0; r < ROUNDS; r++) {
        int i = (int)(rnd() % KEYS);
        if (rnd() % 5 < 3) {
            cr_assert_eq(hcount_add(hc, key[i]), 0);
            if (ref[i]++ == 0) distinct++;
        } else {
            hcount_remove(hc, key[i]);
            if (ref[i] > 0 && --ref[i] == 0) distinct--;
        }
        if (r % 1000 == 0)
            for (int k = 0; k < KEYS; k++) cr_assert_eq(hcount_get(hc, key[k]), ref[k], "round %d key %d", r, k);
        cr_assert_eq(hcount_size(hc), distinct);
    }
    for (int i = 0; i < KEYS; i++)
        while (ref[i]) {
            hcount_remove(hc, key[i]);
            ref[i]--;
        }
    cr_assert_eq(hcount_size(hc), 0);
    for (int i = 0; i < KEYS; i++) cr_assert_eq(hcount_get(hc, key[i]), 0);
    hcount_remove(hc, 12345); /* absent: nothing happens */
    hcount_destroy(&hc);
    cr_assert_null(hc);
    free(key);
    free(ref);
}
