/* blockhash: deterministic chained KV block hashes; see blockhash.h.
 *
 * Wire format hashed by bh_chain (what other machines and indexers must
 * reproduce): the parent hash as 8 little-endian bytes, then each token id as
 * 4 little-endian bytes (two's complement), fed to XXH3-64 with seed BH_SEED.
 * Bytes are encoded explicitly, so the result does not depend on host
 * endianness. The streaming XXH3 API gives the same value as the one-shot call
 * over the concatenated bytes, so no heap buffer is needed for long blocks.
 */
#define XXH_STATIC_LINKING_ONLY /* XXH3_state_t on the stack */
#include "blockhash.h"

#include <xxhash.h>

#include "herr.h"

#define BH_CHUNK_TOKENS 256

static void put_le32(unsigned char *p, uint32_t v) {
    p[0] = (unsigned char)v;
    p[1] = (unsigned char)(v >> 8);
    p[2] = (unsigned char)(v >> 16);
    p[3] = (unsigned char)(v >> 24);
}

uint64_t bh_root(const void *id, size_t len) {
    return XXH3_64bits_withSeed(len ? id : "", len, BH_SEED);
}

uint64_t bh_chain(uint64_t parent, const int32_t *tokens, int n) {
    unsigned char buf[4 * BH_CHUNK_TOKENS]; /* (chunk tokens * 4 bytes) */
    XXH3_state_t st;
    XXH3_64bits_reset_withSeed(&st, BH_SEED);
    put_le32(buf, (uint32_t)parent);
    put_le32(buf + 4, (uint32_t)(parent >> 32));
    XXH3_64bits_update(&st, buf, 8);
    for (int i = 0; i < n;) {
        int k = n - i < BH_CHUNK_TOKENS ? n - i : BH_CHUNK_TOKENS;
        for (int j = 0; j < k; j++) put_le32(buf + 4 * j, (uint32_t)tokens[i + j]);
        XXH3_64bits_update(&st, buf, (size_t)k * 4);
        i += k;
    }
    return XXH3_64bits_digest(&st);
}

int bh_prefix(uint64_t root, const int32_t *tokens, int n, int block_size, uint64_t *out) {
    if (block_size <= 0 || n < 0)
        return he_set(HE_EINVAL, "bh_prefix: bad block_size %d or n %d", block_size, n);
    int nb = n / block_size;
    if (nb > 0 && (!tokens || !out)) return he_set(HE_EINVAL, "bh_prefix: NULL tokens/out");
    uint64_t h = root;
    for (int b = 0; b < nb; b++) out[b] = h = bh_chain(h, tokens + (size_t)b * block_size, block_size);
    return nb;
}
