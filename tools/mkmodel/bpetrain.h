/* bpetrain: a deterministic BPE trainer over a table of unique words with
 * frequencies (helium-mkmodel).
 *
 * Symbols are byte strings numbered in creation order: first the initial
 * alphabet added with bpet_add_symbol(), then one per merge whose concatenation
 * is new. Each merge step picks the adjacent symbol pair with the highest
 * weighted count (ties: smaller left id, then smaller right id), records it, and
 * rewrites every word containing it. A merge whose concatenation already exists
 * as a symbol reuses that id (it is still recorded as a merge), so symbols stay
 * unique strings.
 *
 * Work per merge is proportional to the words that contain the merged pair
 * (pair -> word index lists, incremental pair counts, lazy max-heap), not to
 * the corpus.
 */
#ifndef HELIUM_BPETRAIN_H
#define HELIUM_BPETRAIN_H

#include <stddef.h>
#include <stdint.h>

typedef struct bpet bpet_t;

bpet_t *bpet_new(void);
void bpet_destroy(bpet_t **self_p);

/* Adds an initial symbol; returns its id (>= 0) or a negative herr code
 * (EINVAL if the string is already a symbol, ENOMEM). Only before training. */
int32_t bpet_add_symbol(bpet_t *t, const char *s, size_t len);
/* Adds a word as a sequence of n >= 1 symbol ids, with weight freq > 0. Words
 * of one symbol are accepted and ignored. Only before training. */
int bpet_add_word(bpet_t *t, const int32_t *syms, size_t n, int64_t freq);

/* Merges until n_new new symbols exist. Returns 0, or HE_ERANGE (message set)
 * if no pair is left before that (the corpus is too small), or HE_ENOMEM. */
int bpet_train(bpet_t *t, int32_t n_new);

int32_t bpet_n_symbols(const bpet_t *t);
/* Bytes of symbol id (valid until the trainer is destroyed or trains again). */
const char *bpet_symbol(const bpet_t *t, int32_t id, size_t *len);
size_t bpet_n_merges(const bpet_t *t);
/* Merge i in rank order: left + right -> result. */
void bpet_merge(const bpet_t *t, size_t i, int32_t *left, int32_t *right, int32_t *result);
/* Weighted count the pair had when merge i was chosen. */
int64_t bpet_merge_count(const bpet_t *t, size_t i);

#endif
