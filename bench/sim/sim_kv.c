/* sim_kv: a simulated worker's KV block cache (see sim_worker_impl.h and
 * sim_worker.c): blocks in exactly one of free list, in use (ref > 0), LRU
 * (committed, ref 0, unpinned) or pinned-idle; an open-addressing table from
 * chained hash to block holding exactly the committed blocks; the CacheEvents
 * that mirror every commit and eviction to the coordinator (flushed before
 * an eviction, so a block stored and evicted in one batch is never reported
 * stored last); workflow pins (worker/net/pins.c's rules: each hash once per
 * tag, at most half the blocks pinned, an evicted pinned block loses its
 * pins).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sim_worker_impl.h"

/* ------------------------------------------------------------ hash table */

static uint32_t hslot(const sim_worker *w, uint64_t h) { return (uint32_t)(h ^ (h >> 29)) & (w->hcap - 1); }

int32_t simkv_find(const sim_worker *w, uint64_t h) {
    for (uint32_t i = hslot(w, h);; i = (i + 1) & (w->hcap - 1)) {
        if (w->hval[i] < 0) return -1;
        if (w->hkey[i] == h) return w->hval[i];
    }
}

static void hput(sim_worker *w, uint64_t h, int32_t blk) {
    uint32_t i = hslot(w, h);
    while (w->hval[i] >= 0) i = (i + 1) & (w->hcap - 1);
    w->hkey[i] = h;
    w->hval[i] = blk;
}

static void hdel(sim_worker *w, uint64_t h) {
    uint32_t m = w->hcap - 1, i = hslot(w, h);
    while (w->hval[i] >= 0 && w->hkey[i] != h) i = (i + 1) & m;
    if (w->hval[i] < 0) return;
    w->hval[i] = -1;
    for (uint32_t j = (i + 1) & m; w->hval[j] >= 0; j = (j + 1) & m) { /* backward shift */
        uint32_t k = hslot(w, w->hkey[j]);
        if ((j > i && (k <= i || k > j)) || (j < i && (k <= i && k > j))) {
            w->hkey[i] = w->hkey[j];
            w->hval[i] = w->hval[j];
            w->hval[j] = -1;
            i = j;
        }
    }
}

/* ---------------------------------------------------------------- events */

static void push_u64(uint64_t **v, size_t *n, size_t *cap, uint64_t x) {
    if (*n == *cap) {
        *cap = *cap ? 2 * *cap : 64;
        uint64_t *nv = realloc(*v, *cap * sizeof **v);
        if (!nv) abort();
        *v = nv;
    }
    (*v)[(*n)++] = x;
}

void simkv_send(sim_worker *w, Helium__WorkerMsg *m) {
    m->protocol_version = HELIUM__PROTOCOL__PROTOCOL_CURRENT;
    m->worker_id = w->id;
    size_t len = helium__worker_msg__get_packed_size(m);
    uint8_t stackbuf[4096], *buf = len <= sizeof stackbuf ? stackbuf : malloc(len);
    if (!buf) abort();
    helium__worker_msg__pack(m, buf);
    sim_deliver(w->world, w->index, buf, len);
    if (buf != stackbuf) free(buf);
}

void simkv_flush(sim_worker *w) {
    if (!w->n_stored && !w->n_removed) return;
    Helium__CacheEvents ce = HELIUM__CACHE_EVENTS__INIT;
    ce.stored = w->ev_stored;
    ce.n_stored = w->n_stored;
    ce.removed = w->ev_removed;
    ce.n_removed = w->n_removed;
    ce.seq = ++w->cache_seq;
    Helium__WorkerMsg m = HELIUM__WORKER_MSG__INIT;
    m.body_case = HELIUM__WORKER_MSG__BODY_CACHE_EVENTS;
    m.cache_events = &ce;
    w->n_stored = w->n_removed = 0;
    simkv_send(w, &m);
}

/* ---------------------------------------------------------------- blocks */

static void lru_unlink(sim_worker *w, int32_t i) {
    blk_t *b = &w->b[i];
    if (b->prev >= 0) w->b[b->prev].next = b->next;
    else w->lru_head = b->next;
    if (b->next >= 0) w->b[b->next].prev = b->prev;
    else w->lru_tail = b->prev;
    b->prev = b->next = -1;
    w->n_lru--;
}

static void lru_push(sim_worker *w, int32_t i) {
    blk_t *b = &w->b[i];
    b->where = B_LRU;
    b->prev = w->lru_tail;
    b->next = -1;
    if (w->lru_tail >= 0) w->b[w->lru_tail].next = i;
    else w->lru_head = i;
    w->lru_tail = i;
    w->n_lru++;
}

/* Moves an idle (ref 0) block where its state says: LRU, pinned-idle or free. */
static void park(sim_worker *w, int32_t i) {
    blk_t *b = &w->b[i];
    if (!b->committed) {
        b->where = B_FREE;
        b->next = w->free_head;
        w->free_head = i;
        w->n_free++;
    } else if (b->pins > 0) {
        b->where = B_PIN;
        w->n_pin_idle++;
    } else {
        lru_push(w, i);
    }
}

static void take_out(sim_worker *w, int32_t i) {
    blk_t *b = &w->b[i];
    if (b->where == B_LRU) lru_unlink(w, i);
    else if (b->where == B_PIN) w->n_pin_idle--;
    b->where = B_USED;
}

static void forget_pins(sim_worker *w, uint64_t h) {
    for (int32_t t = 0; t < w->n_tags; t++)
        for (int32_t k = 0; k < w->tags[t].n; k++)
            if (w->tags[t].h[k] == h) {
                w->tags[t].h[k] = w->tags[t].h[--w->tags[t].n];
                w->n_pinned_total--;
                break;
            }
}

static void evict(sim_worker *w, int32_t i) {
    blk_t *b = &w->b[i];
    if (w->n_stored) simkv_flush(w);
    take_out(w, i);
    hdel(w, b->hash);
    push_u64(&w->ev_removed, &w->n_removed, &w->cap_removed, b->hash);
    if (b->pins) forget_pins(w, b->hash);
    b->committed = false;
    b->pins = 0;
    w->st.evictions++;
}

/* A block with ref 1, or -1 when every block is in use. */
int32_t simkv_alloc(sim_worker *w) {
    int32_t i = -1;
    if (w->free_head >= 0) {
        i = w->free_head;
        w->free_head = w->b[i].next;
        w->n_free--;
    } else if (w->lru_head >= 0) {
        i = w->lru_head;
        evict(w, i);
    } else if (w->n_pin_idle > 0) {
        for (int32_t k = 0; k < w->g.kv_blocks; k++) {
            blk_t *b = &w->b[k];
            if (b->where != B_PIN) continue;
            if (i < 0 || b->steps > w->b[i].steps || (b->steps == w->b[i].steps && b->commit_no > w->b[i].commit_no))
                i = k;
        }
        evict(w, i);
    } else {
        return -1;
    }
    w->b[i].where = B_USED;
    w->b[i].ref = 1;
    w->b[i].prev = w->b[i].next = -1;
    return i;
}

void simkv_ref(sim_worker *w, int32_t i) {
    if (w->b[i].ref++ == 0) take_out(w, i);
}

void simkv_unref(sim_worker *w, int32_t i) {
    if (--w->b[i].ref == 0) park(w, i);
}

/* Commits block i under h; returns the block that holds h now (an identical
 * block already cached is shared and i released). */
int32_t simkv_commit(sim_worker *w, int32_t i, uint64_t h) {
    int32_t g = simkv_find(w, h);
    if (g >= 0 && g != i) {
        simkv_ref(w, g);
        simkv_unref(w, i);
        return g;
    }
    if (g == i) return i;
    w->b[i].hash = h;
    w->b[i].committed = true;
    w->b[i].commit_no = ++w->commits;
    hput(w, h, i);
    push_u64(&w->ev_stored, &w->n_stored, &w->cap_stored, h);
    return i;
}

int32_t simkv_available(const sim_worker *w) { return w->n_free + w->n_lru + w->n_pin_idle; }

/* ------------------------------------------------------------------ pins */

static tag_t *tag_get(sim_worker *w, const char *tag, bool create) {
    for (int32_t i = 0; i < w->n_tags; i++)
        if (!strcmp(w->tags[i].tag, tag)) return &w->tags[i];
    if (!create) return NULL;
    if (w->n_tags == w->cap_tags) {
        w->cap_tags = w->cap_tags ? 2 * w->cap_tags : 16;
        tag_t *nt = realloc(w->tags, (size_t)w->cap_tags * sizeof *nt);
        if (!nt) abort();
        w->tags = nt;
    }
    tag_t *t = &w->tags[w->n_tags++];
    *t = (tag_t){.tag = strdup(tag)};
    if (!t->tag) abort();
    return t;
}

/* Pins s's leading run of cached hashes under its tag (simkv_pin's rule). */
void simkv_pin(sim_worker *w, const seq_t *s) {
    if (!s->pin_tag || s->n_pin <= 0) return;
    tag_t *t = tag_get(w, s->pin_tag, true);
    for (int32_t k = 0; k < s->n_pin; k++) {
        int32_t b = simkv_find(w, s->pin[k]);
        if (b < 0) break;
        bool have = false;
        for (int32_t j = 0; j < t->n && !have; j++) have = t->h[j] == s->pin[k];
        if (have) continue;
        if (w->n_pinned_total >= w->g.kv_blocks / 2) break;
        if (t->n == t->cap) {
            t->cap = t->cap ? 2 * t->cap : 16;
            uint64_t *nh = realloc(t->h, (size_t)t->cap * sizeof *nh);
            if (!nh) abort();
            t->h = nh;
        }
        t->h[t->n++] = s->pin[k];
        w->n_pinned_total++;
        blk_t *bk = &w->b[b];
        if (bk->pins++ == 0) {
            bk->steps = s->pin_steps;
            if (bk->where == B_LRU) {
                lru_unlink(w, b);
                bk->where = B_PIN;
                w->n_pin_idle++;
            }
        } else if (s->pin_steps < bk->steps) {
            bk->steps = s->pin_steps;
        }
    }
}

void simkv_unpin(sim_worker *w, const char *tag) {
    tag_t *t = tag_get(w, tag, false);
    if (!t) return;
    for (int32_t k = 0; k < t->n; k++) {
        int32_t b = simkv_find(w, t->h[k]);
        if (b < 0 || w->b[b].pins <= 0) continue;
        if (--w->b[b].pins == 0 && w->b[b].where == B_PIN) {
            w->n_pin_idle--;
            lru_push(w, b);
        }
    }
    w->n_pinned_total -= t->n;
    free(t->tag);
    free(t->h);
    *t = w->tags[--w->n_tags];
}

void simkv_pin_steps(sim_worker *w, const char *tag, uint32_t steps) {
    tag_t *t = tag_get(w, tag, false);
    if (!t) return;
    for (int32_t k = 0; k < t->n; k++) {
        int32_t b = simkv_find(w, t->h[k]);
        if (b >= 0 && w->b[b].pins > 0) w->b[b].steps = steps;
    }
}
