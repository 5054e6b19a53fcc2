/* mkmap: an insertion-ordered hash map from byte strings to int32 values, for
 * helium-mkmodel (word counting and token de-duplication).
 *
 * Keys are copied into the map; they need not be NUL-terminated, but the map
 * stores a NUL after each copy so mkmap_key() can be used as a C string. Entries
 * are numbered 0..mkmap_count()-1 in insertion order and never removed, so
 * iteration order is deterministic. Pointers returned by mkmap_put/mkmap_get
 * stay valid only until the next mkmap_put.
 */
#ifndef HELIUM_MKMAP_H
#define HELIUM_MKMAP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct mkmap mkmap_t;

mkmap_t *mkmap_new(void);
void mkmap_destroy(mkmap_t **self_p);

/* Value slot of key, or NULL if absent. */
int32_t *mkmap_get(const mkmap_t *m, const char *key, size_t len);
/* Value slot of key, inserting it with value init if absent (*created tells
 * which, when non-NULL). NULL only when out of memory. */
int32_t *mkmap_put(mkmap_t *m, const char *key, size_t len, int32_t init, bool *created);

size_t mkmap_count(const mkmap_t *m);
/* Entry i (i < mkmap_count) in insertion order. */
const char *mkmap_key(const mkmap_t *m, size_t i, size_t *len);
int32_t mkmap_value(const mkmap_t *m, size_t i);

/* FNV-1a 64-bit hash (also used to derive per-tensor seeds). */
uint64_t mkmap_hash(const char *key, size_t len);

#endif
