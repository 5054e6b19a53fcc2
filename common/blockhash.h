/* blockhash: deterministic chained hashes of KV blocks.
 *
 * A block's hash covers its parent block's hash and its own token ids, so equal
 * hashes mean equal whole prefixes (up to 64-bit collisions). The first block's
 * parent is a "root" derived from the model identity (so different models never
 * share entries). Hashes are xxh3-64 with a fixed seed over little-endian
 * bytes: the same on every machine, so the coordinator's directory, every
 * worker and outside indexers agree.
 */
#ifndef HELIUM_BLOCKHASH_H
#define HELIUM_BLOCKHASH_H

#include <stddef.h>
#include <stdint.h>

#define BH_SEED 0x48656c69756d4b56ULL /* "HeliumKV" */

/* Root for a model: hash of an identity string (e.g. architecture + tensor
 * shapes + a digest of the weights). */
uint64_t bh_root(const void *id, size_t len);
/* Hash of one block: parent hash followed by n token ids (int32 LE). */
uint64_t bh_chain(uint64_t parent, const int32_t *tokens, int n);
/* Hashes of every *full* block of tokens[0..n): writes n / block_size hashes to
 * out (caller sizes it) and returns that count. */
int bh_prefix(uint64_t root, const int32_t *tokens, int n, int block_size, uint64_t *out);

#endif
