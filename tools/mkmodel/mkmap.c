/* mkmap: insertion-ordered string -> int32 hash map (see mkmap.h).
 *
 * Layout: entries[] in insertion order (key offset/length into one growing key
 * arena, hash, value) and an open-addressing index table of entry numbers + 1
 * (0 = empty slot), linear probing, kept at most half full.
 */
#include "mkmap.h"

#include <stdlib.h>
#include <string.h>

typedef struct {
    size_t off, len; /* key bytes at keys[off .. off+len), NUL at keys[off+len] */
    uint64_t hash;
    int32_t value;
} mkmap_entry;

struct mkmap {
    mkmap_entry *entries; /* (n) */
    size_t n, cap;
    char *keys; /* (keys_len) arena of NUL-terminated key copies */
    size_t keys_len, keys_cap;
    uint32_t *slots; /* (n_slots) entry index + 1, 0 = empty; n_slots a power of two */
    size_t n_slots;
};

uint64_t mkmap_hash(const char *key, size_t len) {
    uint64_t h = 1469598103934665603ULL;
    for (size_t i = 0; i < len; i++) {
        h ^= (unsigned char)key[i];
        h *= 1099511628211ULL;
    }
    return h;
}

mkmap_t *mkmap_new(void) {
    mkmap_t *m = calloc(1, sizeof *m);
    if (!m)
        return NULL;
    m->n_slots = 64;
    m->slots = calloc(m->n_slots, sizeof *m->slots);
    if (!m->slots) {
        free(m);
        return NULL;
    }
    return m;
}

void mkmap_destroy(mkmap_t **self_p) {
    if (!self_p || !*self_p)
        return;
    mkmap_t *m = *self_p;
    free(m->entries);
    free(m->keys);
    free(m->slots);
    free(m);
    *self_p = NULL;
}

/* Slot index holding key, or the empty slot where it would go. */
static size_t find_slot(const mkmap_t *m, const char *key, size_t len, uint64_t h) {
    size_t mask = m->n_slots - 1;
    size_t s = (size_t)h & mask;
    while (m->slots[s]) {
        const mkmap_entry *e = &m->entries[m->slots[s] - 1];
        if (e->hash == h && e->len == len && memcmp(m->keys + e->off, key, len) == 0)
            return s;
        s = (s + 1) & mask;
    }
    return s;
}

int32_t *mkmap_get(const mkmap_t *m, const char *key, size_t len) {
    size_t s = find_slot(m, key, len, mkmap_hash(key, len));
    return m->slots[s] ? &m->entries[m->slots[s] - 1].value : NULL;
}

static int grow_slots(mkmap_t *m) {
    size_t ns = m->n_slots * 2;
    uint32_t *slots = calloc(ns, sizeof *slots);
    if (!slots)
        return -1;
    for (size_t i = 0; i < m->n; i++) {
        size_t s = (size_t)m->entries[i].hash & (ns - 1);
        while (slots[s])
            s = (s + 1) & (ns - 1);
        slots[s] = (uint32_t)(i + 1);
    }
    free(m->slots);
    m->slots = slots;
    m->n_slots = ns;
    return 0;
}

int32_t *mkmap_put(mkmap_t *m, const char *key, size_t len, int32_t init, bool *created) {
    uint64_t h = mkmap_hash(key, len);
    size_t s = find_slot(m, key, len, h);
    if (m->slots[s]) {
        if (created)
            *created = false;
        return &m->entries[m->slots[s] - 1].value;
    }
    if (m->n >= UINT32_MAX - 1)
        return NULL;
    if ((m->n + 1) * 2 > m->n_slots) {
        if (grow_slots(m) != 0)
            return NULL;
        s = find_slot(m, key, len, h);
    }
    if (m->n == m->cap) {
        size_t nc = m->cap ? m->cap * 2 : 256;
        mkmap_entry *e = realloc(m->entries, nc * sizeof *e);
        if (!e)
            return NULL;
        m->entries = e;
        m->cap = nc;
    }
    if (m->keys_len + len + 1 > m->keys_cap) {
        size_t nc = m->keys_cap ? m->keys_cap : 4096;
        while (nc < m->keys_len + len + 1)
            nc *= 2;
        char *k = realloc(m->keys, nc);
        if (!k)
            return NULL;
        m->keys = k;
        m->keys_cap = nc;
    }
    if (len)
        memcpy(m->keys + m->keys_len, key, len);
    m->keys[m->keys_len + len] = '\0';
    mkmap_entry *e = &m->entries[m->n];
    e->off = m->keys_len;
    e->len = len;
    e->hash = h;
    e->value = init;
    m->keys_len += len + 1;
    m->slots[s] = (uint32_t)(m->n + 1);
    m->n++;
    if (created)
        *created = true;
    return &m->entries[m->n - 1].value;
}

size_t mkmap_count(const mkmap_t *m) { return m->n; }

const char *mkmap_key(const mkmap_t *m, size_t i, size_t *len) {
    if (len)
        *len = m->entries[i].len;
    return m->keys + m->entries[i].off;
}

int32_t mkmap_value(const mkmap_t *m, size_t i) { return m->entries[i].value; }
