/* cachesync: mirrors this worker's KV cache into the coordinator's
 * directory.
 *
 * The engine reports every commit (stored) and eviction (removed) of a page
 * through csync_on_event, on the engine's thread, inside the engine call that
 * caused it (after the cache's lock is released: kvcache.h), so it stays
 * cheap: O(1) into a pending set of hashes with their latest event, bounded
 * by SRV_MAX_PENDING_EVENTS (beyond that it drops them and sends a snapshot
 * instead), and it never sends. csync_flush sends the pending lists as
 * one CacheEvents message after each step; csync_snapshot sends every cached
 * hash (on registration, on the coordinator's Resync, after an overflow).
 */
#include <stdlib.h>
#include <string.h>

#include "net.h"

static uint32_t ev_slot(uint64_t h) {
    h ^= h >> 33; /* block hashes are xxh3 already; mix anyway (cheap) */
    h *= 0xff51afd7ed558ccdULL;
    h ^= h >> 33;
    return (uint32_t)h & (SRV_EV_SLOTS - 1);
}

static void ev_clear(srv_t *s) {
    memset(s->ev_state, 0, sizeof s->ev_state);
    s->ev_n = 0;
}

/* kvcache event callback (engine thread, outside the cache's lock): records
 * the hash's latest event, so stored and removed stay disjoint. O(1)
 * expected (the set is at most half full). */
void csync_on_event(void *ud, kvc_event ev, uint64_t hash, int32_t block) {
    (void)block;
    srv_t *s = ud;
    if (ev == KVC_EV_REMOVED_PINNED) {
        pins_forget(s, hash);
        ev = KVC_EV_REMOVED;
    }
    if (!s->registered || s->ev_overflow) return; /* the next snapshot covers it */
    uint32_t i = ev_slot(hash);
    while (s->ev_state[i] && s->ev_key[i] != hash) i = (i + 1) & (SRV_EV_SLOTS - 1);
    if (!s->ev_state[i]) {
        if (s->ev_n >= SRV_MAX_PENDING_EVENTS) {
            s->ev_overflow = true;
            ev_clear(s);
            return;
        }
        s->ev_key[i] = hash;
        s->ev_n++;
    }
    s->ev_state[i] = (uint8_t)ev;
}

/* Sends every committed hash as a snapshot; clears the pending events. */
void csync_snapshot(srv_t *s) {
    u64vec all = {0};
    int32_t nb = eng_kv_blocks(s->e);
    for (int32_t b = 0; b < nb; b++) {
        uint64_t h;
        if (eng_block_hash(s->e, b, &h) && !u64v_push(&all, h)) {
            clog_msg(CLOG_ERROR, "out of memory building a cache snapshot");
            u64v_free(&all);
            return;
        }
    }
    Helium__CacheEvents ce = HELIUM__CACHE_EVENTS__INIT;
    ce.n_stored = all.n;
    ce.stored = all.v;
    ce.snapshot = true;
    ce.seq = s->cache_seq + 1;
    Helium__WorkerMsg w = HELIUM__WORKER_MSG__INIT;
    w.body_case = HELIUM__WORKER_MSG__BODY_CACHE_EVENTS;
    w.cache_events = &ce;
    if (srv_send_wmsg(s, &w, "CacheEvents snapshot") == 0) {
        s->cache_seq++;
        ev_clear(s);
        s->ev_overflow = false;
        clog_msg(CLOG_DEBUG, "sent cache snapshot seq %llu: %zu blocks", (unsigned long long)s->cache_seq, all.n);
    }
    u64v_free(&all);
}

/* Sends buffered cache events (if any). Kept for the next try if the send fails. */
void csync_flush(srv_t *s) {
    if (!s->registered) return;
    if (s->ev_overflow) {
        csync_snapshot(s);
        return;
    }
    if (s->ev_n == 0) return;
    u64vec st = {0}, rm = {0};
    for (uint32_t i = 0; i < SRV_EV_SLOTS; i++) {
        if (!s->ev_state[i]) continue;
        if (!u64v_push(s->ev_state[i] == KVC_EV_STORED ? &st : &rm, s->ev_key[i])) {
            clog_msg(CLOG_ERROR, "out of memory sending cache events");
            u64v_free(&st);
            u64v_free(&rm);
            return;
        }
    }
    Helium__CacheEvents ce = HELIUM__CACHE_EVENTS__INIT;
    ce.n_stored = st.n;
    ce.stored = st.v;
    ce.n_removed = rm.n;
    ce.removed = rm.v;
    ce.seq = s->cache_seq + 1;
    Helium__WorkerMsg w = HELIUM__WORKER_MSG__INIT;
    w.body_case = HELIUM__WORKER_MSG__BODY_CACHE_EVENTS;
    w.cache_events = &ce;
    if (srv_send_wmsg(s, &w, "CacheEvents") == 0) {
        s->cache_seq++;
        clog_msg(CLOG_DEBUG, "cache events seq %llu: %zu stored, %zu removed", (unsigned long long)s->cache_seq,
                 st.n, rm.n);
        ev_clear(s);
    }
    u64v_free(&st);
    u64v_free(&rm);
}
