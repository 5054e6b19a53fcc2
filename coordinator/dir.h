/* dir: the cluster-wide KV prefix directory.
 *
 * Maps a block's chained hash (common/blockhash.h) to the set of workers whose
 * KV cache holds that block, as a bitmask of worker slots (at most
 * DIR_MAX_WORKERS). It is fed only by the workers' cache events (stored /
 * removed), so it mirrors their caches exactly; a dead worker's entries are
 * dropped in one call. Because hashes are chained, "worker w holds blocks
 * 0..k-1 of a prompt" is found by walking the prompt's hashes in order.
 * Single-threaded: the coordinator's loop owns it.
 */
#ifndef HELIUM_DIR_H
#define HELIUM_DIR_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define DIR_MAX_WORKERS 128 /* a multiple of 64 (the mask's words) */

typedef struct dir dir_t;

dir_t *dir_new(void);
void dir_destroy(dir_t **self_p);

/* worker is a slot in [0, DIR_MAX_WORKERS); out-of-range slots are ignored. */
void dir_add(dir_t *d, uint64_t hash, int worker);
void dir_remove(dir_t *d, uint64_t hash, int worker);
/* Removes every entry of worker. O(entries). */
void dir_drop_worker(dir_t *d, int worker);
/* Bitmask of the workers in slots 0..63 holding hash (0 if none). O(1). */
uint64_t dir_holders(const dir_t *d, uint64_t hash);
/* True if worker holds hash. O(1). */
bool dir_holds(const dir_t *d, uint64_t hash, int worker);

/* For the chain hashes[0..n), writes into runs[w] (w < DIR_MAX_WORKERS) the
 * number of leading blocks worker w holds, and returns the largest run. Does
 * at most min(n, longest run + 1) hash lookups. */
int dir_match(const dir_t *d, const uint64_t *hashes, int n, int32_t runs[DIR_MAX_WORKERS]);

/* Distinct hashes with at least one holder. */
size_t dir_size(const dir_t *d);
/* Blocks held by worker (maintained incrementally). */
size_t dir_worker_blocks(const dir_t *d, int worker);

#endif
