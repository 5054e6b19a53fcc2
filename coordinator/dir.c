/* dir: the cluster-wide KV prefix directory (see dir.h).
 *
 * An open-addressing hash table (linear probing) from a block hash to the
 * bitmask of worker slots holding that block (DIR_WORDS 64-bit words). A
 * slot is empty iff its mask is all 0: an entry whose last holder goes away is deleted at once by backward-shift
 * deletion, so there are no tombstones and every probe sequence ends at the
 * first empty slot. Any 64-bit key is valid (0 included).
 *
 * Invariants: cap is a power of two >= DIR_MIN_CAP; count (entries with a
 * non-zero mask) <= cap * 7/10 after every successful insert (the table
 * doubles before passing it), so at least one slot is always empty;
 * blocks[w] == number of entries whose mask has bit w (word w / 64, bit w % 64).
 * The table never shrinks: its size follows the peak of the workers' caches.
 */
#include "dir.h"

#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#define DIR_MIN_CAP 1024
#define DIR_WORDS (DIR_MAX_WORKERS / 64)

typedef struct {
    uint64_t key;
    uint64_t mask[DIR_WORDS]; /* holders; all 0 = empty slot */
} dir_entry;

static inline bool used(const dir_entry *e) {
    uint64_t any = 0;
    for (int k = 0; k < DIR_WORDS; k++) any |= e->mask[k];
    return any != 0;
}

struct dir {
    dir_entry *tab; /* (cap) */
    size_t cap;     /* power of two */
    int bits;       /* log2(cap) */
    size_t count;   /* live entries */
    size_t blocks[DIR_MAX_WORKERS];
};

/* Home slot of key. Block hashes are already uniform, but tests and tools use
 * small sequential keys, so mix with a Fibonacci multiply and keep the top bits. */
static inline size_t home(const dir_t *d, uint64_t key) {
    return (size_t)((key * 0x9E3779B97F4A7C15ULL) >> (64 - d->bits));
}

static dir_entry *tab_alloc(size_t cap) { return calloc(cap, sizeof(dir_entry)); }

dir_t *dir_new(void) {
    dir_t *d = calloc(1, sizeof *d);
    if (!d) return NULL;
    d->cap = DIR_MIN_CAP;
    d->bits = 10;
    d->tab = tab_alloc(d->cap);
    if (!d->tab) {
        free(d);
        return NULL;
    }
    return d;
}

void dir_destroy(dir_t **self_p) {
    if (!self_p || !*self_p) return;
    free((*self_p)->tab);
    free(*self_p);
    *self_p = NULL;
}

/* Index of key's slot, or of the empty slot ending its probe sequence. */
static size_t find(const dir_t *d, uint64_t key) {
    size_t m = d->cap - 1, i = home(d, key);
    while (used(&d->tab[i]) && d->tab[i].key != key) i = (i + 1) & m;
    return i;
}

/* Doubles the table. Returns false (table unchanged) if memory is short. */
static bool grow(dir_t *d) {
    size_t ncap = d->cap * 2;
    dir_entry *nt = tab_alloc(ncap);
    if (!nt) return false;
    dir_entry *old = d->tab;
    size_t ocap = d->cap;
    d->tab = nt;
    d->cap = ncap;
    d->bits++;
    size_t m = ncap - 1;
    for (size_t j = 0; j < ocap; j++) {
        if (!used(&old[j])) continue;
        size_t i = home(d, old[j].key);
        while (used(&d->tab[i])) i = (i + 1) & m;
        d->tab[i] = old[j];
    }
    free(old);
    return true;
}

/* Empties slot i and shifts later entries of its cluster back so that no
 * probe sequence crosses a hole. Visits at most the rest of the cluster. */
static void delete_at(dir_t *d, size_t i) {
    size_t m = d->cap - 1, j = i;
    for (;;) {
        j = (j + 1) & m;
        if (!used(&d->tab[j])) break;
        size_t h = home(d, d->tab[j].key);
        /* The entry at j may fill the hole at i iff its home is not in the
         * cyclic range (i, j]: moving it earlier would otherwise put it
         * before its home. */
        bool in_range = (i <= j) ? (i < h && h <= j) : (i < h || h <= j);
        if (in_range) continue;
        d->tab[i] = d->tab[j];
        i = j;
    }
    memset(d->tab[i].mask, 0, sizeof d->tab[i].mask);
    d->tab[i].key = 0;
    d->count--;
}

void dir_add(dir_t *d, uint64_t hash, int worker) {
    if (!d || worker < 0 || worker >= DIR_MAX_WORKERS) return;
    uint64_t bit = 1ULL << (worker % 64);
    int wd = worker / 64;
    size_t i = find(d, hash);
    if (used(&d->tab[i])) {
        if (!(d->tab[i].mask[wd] & bit)) {
            d->tab[i].mask[wd] |= bit;
            d->blocks[worker]++;
        }
        return;
    }
    /* New entry: keep the load at or below 0.7. If growing fails, still
     * insert while one empty slot would remain; beyond that the add is
     * dropped (the directory is a routing hint: a missing entry only costs
     * a recompute). */
    if ((d->count + 1) * 10 > d->cap * 7) {
        if (grow(d))
            i = find(d, hash);
        else if (d->count + 2 > d->cap)
            return;
    }
    d->tab[i].key = hash;
    memset(d->tab[i].mask, 0, sizeof d->tab[i].mask);
    d->tab[i].mask[wd] = bit;
    d->count++;
    d->blocks[worker]++;
}

void dir_remove(dir_t *d, uint64_t hash, int worker) {
    if (!d || worker < 0 || worker >= DIR_MAX_WORKERS) return;
    uint64_t bit = 1ULL << (worker % 64);
    int wd = worker / 64;
    size_t i = find(d, hash);
    if (!(d->tab[i].mask[wd] & bit)) return;
    d->tab[i].mask[wd] &= ~bit;
    d->blocks[worker]--;
    if (!used(&d->tab[i])) delete_at(d, i);
}

/* Walks the table once. After a deletion at i, the slot may hold an entry
 * shifted back from later in its cluster, so i is examined again; entries
 * shifted across the wrap-around were visited already (their bit is clear,
 * so revisiting them is a no-op). */
void dir_drop_worker(dir_t *d, int worker) {
    if (!d || worker < 0 || worker >= DIR_MAX_WORKERS) return;
    uint64_t bit = 1ULL << (worker % 64);
    int wd = worker / 64;
    size_t i = 0;
    while (i < d->cap && d->blocks[worker]) {
        dir_entry *e = &d->tab[i];
        if (e->mask[wd] & bit) {
            e->mask[wd] &= ~bit;
            d->blocks[worker]--;
            if (!used(e)) {
                delete_at(d, i);
                continue;
            }
        }
        i++;
    }
}

uint64_t dir_holders(const dir_t *d, uint64_t hash) {
    if (!d) return 0;
    return d->tab[find(d, hash)].mask[0];
}

bool dir_holds(const dir_t *d, uint64_t hash, int worker) {
    if (!d || worker < 0 || worker >= DIR_MAX_WORKERS) return false;
    return (d->tab[find(d, hash)].mask[worker / 64] >> (worker % 64)) & 1;
}

int dir_match(const dir_t *d, const uint64_t *hashes, int n, int32_t runs[DIR_MAX_WORKERS]) {
    memset(runs, 0, sizeof(int32_t) * DIR_MAX_WORKERS);
    if (!d || !hashes || n <= 0) return 0;
    uint64_t still[DIR_WORDS]; /* workers holding every block so far */
    for (int k = 0; k < DIR_WORDS; k++) still[k] = ~0ULL;
    for (int i = 0; i < n; i++) {
        const dir_entry *e = &d->tab[find(d, hashes[i])];
        uint64_t any = 0;
        for (int k = 0; k < DIR_WORDS; k++) {
            uint64_t now = still[k] & e->mask[k];
            uint64_t gone = still[k] & ~now;
            if (i > 0) { /* at i == 0, "gone" is everyone who never started: run 0 */
                while (gone) {
                    runs[64 * k + __builtin_ctzll(gone)] = i;
                    gone &= gone - 1;
                }
            }
            still[k] = now;
            any |= now;
        }
        if (!any) return i;
    }
    for (int k = 0; k < DIR_WORDS; k++)
        while (still[k]) {
            runs[64 * k + __builtin_ctzll(still[k])] = n;
            still[k] &= still[k] - 1;
        }
    return n;
}

size_t dir_size(const dir_t *d) { return d ? d->count : 0; }

size_t dir_worker_blocks(const dir_t *d, int worker) {
    if (!d || worker < 0 || worker >= DIR_MAX_WORKERS) return 0;
    return d->blocks[worker];
}
