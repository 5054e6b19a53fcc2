/* hcount: a multiset of 64-bit hashes (how many times each was added, less
 * removed). Open addressing with linear probing and backward-shift
 * deletion, so removals leave no tombstones; O(1) expected per operation.
 * The optimizer keeps the block hashes of its pins in one, so that "is this
 * prefix pinned anywhere" costs one lookup instead of a walk over the pins.
 * Single-threaded: the coordinator's loop owns it.
 */
#ifndef HELIUM_COORD_HCOUNT_H
#define HELIUM_COORD_HCOUNT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct hcount hcount_t;

hcount_t *hcount_new(void);
void hcount_destroy(hcount_t **self_p);
/* Adds one of h. Returns 0 or HE_ENOMEM (then nothing changed). */
int hcount_add(hcount_t *hc, uint64_t h);
/* Removes one of h (no-op if absent). */
void hcount_remove(hcount_t *hc, uint64_t h);
uint32_t hcount_get(const hcount_t *hc, uint64_t h);
/* Distinct hashes held. */
size_t hcount_size(const hcount_t *hc);

#endif
