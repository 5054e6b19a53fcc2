/* pins: workflow pins on a worker (Dispatch.pin + pin_tag, Unpin, PinSteps).
 *
 * A dispatch may ask that its prompt's leading blocks stay cached under a
 * workflow tag until the coordinator's Unpin{tag}: the calls that read them
 * later are known to the plan. Each pin carries the steps until a call reads
 * the blocks (KVFlow's steps-to-execution), which orders eviction among pinned
 * blocks (kvcache.h). Bounds: each hash once per tag, at most SRV_MAX_PIN_TAGS
 * tags and kv_blocks/2 pinned blocks; beyond that pins are refused and
 * counted (pin_refused).
 */
#include <stdlib.h>
#include <string.h>

#include "net.h"

/* A pinned block was evicted under memory pressure (kvcache.h): its pins are
 * gone, so no tag or task may unpin that hash later (it could be a new block
 * of the same hash by then). */
void pins_forget(srv_t *s, uint64_t hash) {
    for (int i = 0; i < s->n_tags; i++)
        if (u64v_remove(&s->tags[i].h, hash)) s->n_tag_pinned--;
    for (task_t *t = s->tasks; t; t = t->next)
        if (u64v_remove(&t->pinned, hash)) s->n_pinned--;
    s->pinned_evictions++;
}

static int find_tag(const srv_t *s, const char *tag) {
    for (int i = 0; i < s->n_tags; i++)
        if (!strcmp(s->tags[i].tag, tag)) return i;
    return -1;
}

/* Unpins every block held under tags[i] and forgets the tag. */
static void drop_tag(srv_t *s, int i) {
    pin_tag_t *g = &s->tags[i];
    if (g->h.n) eng_unpin(s->e, g->h.v, (int32_t)g->h.n);
    s->n_tag_pinned -= (int64_t)g->h.n;
    free(g->tag);
    u64v_free(&g->h);
    s->tags[i] = s->tags[--s->n_tags];
}

/* Pins t's leading run of cached hashes under its tag (once; before its
 * result goes out). Hashes the tag holds already are not pinned again; a
 * hash that is not cached ends the run; beyond SRV_MAX_PIN_TAGS tags or
 * kv_blocks/2 pinned blocks the rest is refused (counted in pin_refused).
 * O(n_pin * pins under the tag + n_tags). */
void pins_apply(srv_t *s, task_t *t) {
    if (t->pin_done || !t->pin_tag || t->n_pin <= 0) return;
    t->pin_done = true;
    int gi = find_tag(s, t->pin_tag);
    if (gi < 0) {
        if (s->n_tags >= SRV_MAX_PIN_TAGS) {
            s->pin_refused += t->n_pin;
            clog_msg(CLOG_WARN, "task %llu: %d live pin tags already; not pinning %d blocks under '%s'",
                 (unsigned long long)t->task_id, s->n_tags, t->n_pin, t->pin_tag);
            return;
        }
        if (s->n_tags == s->cap_tags) {
            int nc = s->cap_tags ? 2 * s->cap_tags : 16;
            pin_tag_t *nt = realloc(s->tags, sizeof *nt * (size_t)nc);
            if (!nt) {
                clog_msg(CLOG_ERROR, "out of memory for pin tag '%s'", t->pin_tag);
                return;
            }
            s->tags = nt;
            s->cap_tags = nc;
        }
        char *tag = strdup(t->pin_tag);
        if (!tag) {
            clog_msg(CLOG_ERROR, "out of memory for pin tag '%s'", t->pin_tag);
            return;
        }
        gi = s->n_tags++;
        s->tags[gi] = (pin_tag_t){.tag = tag, .steps = t->pin_steps};
    }
    pin_tag_t *g = &s->tags[gi];
    if (t->pin_steps < g->steps) g->steps = t->pin_steps;
    int64_t budget = eng_kv_blocks(s->e) / 2;
    int32_t pinned = 0, held = 0, refused = 0, i = 0;
    for (; i < t->n_pin; i++) {
        uint64_t h = t->pin[i];
        if (u64v_has(&g->h, h)) {
            held++;
            continue;
        }
        if (s->n_tag_pinned >= budget) {
            refused = t->n_pin - i;
            break;
        }
        if (eng_pin_prio(s->e, h, t->pin_steps) != 0) break; /* not cached: the run ends */
        if (!u64v_push(&g->h, h)) {
            eng_unpin(s->e, &h, 1);
            refused = t->n_pin - i;
            break;
        }
        s->n_tag_pinned++;
        pinned++;
    }
    if (refused) {
        s->pin_refused += refused;
        clog_msg(CLOG_WARN, "task %llu: pin budget (%lld of %d KV blocks) reached; refused %d blocks under '%s'",
             (unsigned long long)t->task_id, (long long)budget, eng_kv_blocks(s->e), refused, t->pin_tag);
    }
    clog_msg(CLOG_DEBUG, "task %llu: pinned %d blocks under '%s' (%d held already, %d not cached; tag holds %zu)",
         (unsigned long long)t->task_id, pinned, t->pin_tag, held, refused ? 0 : t->n_pin - i, g->h.n);
    if (g->h.n == 0) drop_tag(s, gi);
}

void pins_on_unpin(srv_t *s, const Helium__Unpin *u) {
    const char *tag = u->tag ? u->tag : "";
    /* tasks not yet pinned under tag pin nothing now: nobody would unpin it */
    int pending = 0;
    for (task_t *t = s->tasks; t; t = t->next)
        if (!t->pin_done && t->pin_tag && !strcmp(t->pin_tag, tag)) {
            t->pin_done = true;
            pending++;
        }
    int gi = find_tag(s, tag);
    if (gi < 0) {
        clog_msg(CLOG_DEBUG, "Unpin of unknown tag '%s' ignored (%d pending pins dropped)", tag, pending);
        return;
    }
    size_t n = s->tags[gi].h.n;
    drop_tag(s, gi);
    clog_msg(CLOG_DEBUG, "unpinned %zu blocks under '%s' (%d pending pins dropped)", n, tag, pending);
}

/* PinSteps: the tag's blocks are needed `steps` ahead now. Each block gets
 * the lowest need over the tags holding it, and 0 while any other pin (a
 * pull being served, a task about to run) holds it too. Tasks that will pin
 * under the tag later pin with the new value. O(blocks of the tag * pinned
 * blocks of all tags). */
void pins_on_steps(srv_t *s, const Helium__PinSteps *p) {
    const char *tag = p->tag ? p->tag : "";
    for (task_t *t = s->tasks; t; t = t->next)
        if (!t->pin_done && t->pin_tag && !strcmp(t->pin_tag, tag)) t->pin_steps = p->steps;
    int gi = find_tag(s, tag);
    if (gi < 0) {
        clog_msg(CLOG_DEBUG, "PinSteps for unknown tag '%s' ignored", tag);
        return;
    }
    pin_tag_t *g = &s->tags[gi];
    g->steps = p->steps;
    for (size_t k = 0; k < g->h.n; k++) {
        uint64_t h = g->h.v[k];
        uint32_t lo = p->steps;
        int32_t holders = 0;
        for (int j = 0; j < s->n_tags; j++)
            if (u64v_has(&s->tags[j].h, h)) {
                holders++;
                if (s->tags[j].steps < lo) lo = s->tags[j].steps;
            }
        if (eng_pin_count(s->e, h) > holders) lo = 0;
        eng_set_prio(s->e, h, lo); /* pinned under g: cannot fail */
    }
    s->pin_updates++;
    clog_msg(CLOG_DEBUG, "'%s': %zu blocks now needed %u steps ahead", tag, g->h.n, p->steps);
}

void pins_drop_all(srv_t *s) {
    while (s->n_tags) drop_tag(s, s->n_tags - 1);
}
