/* u64vec: a growable array of uint64_t (block hashes, mostly).
 *
 * A zeroed u64vec is empty and valid. Order is kept by u64v_push and not by
 * u64v_remove (which moves the last element into the hole). Lookups are
 * linear: meant for the short lists a worker keeps (pending cache events,
 * the hashes one pin tag or one pull holds).
 */
#ifndef HELIUM_U64VEC_H
#define HELIUM_U64VEC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct {
    uint64_t *v;   /* (n) elements, capacity cap */
    size_t n, cap;
} u64vec;

/* Appends x. false on allocation failure (the array is unchanged). */
bool u64v_push(u64vec *a, uint64_t x);
/* Removes one x if present (order not kept). O(n). */
bool u64v_remove(u64vec *a, uint64_t x);
/* O(n). */
bool u64v_has(const u64vec *a, uint64_t x);
/* Frees the storage and empties the array. */
void u64v_free(u64vec *a);

#endif
