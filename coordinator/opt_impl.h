/* opt_impl: PRIVATE to the optimizer (opt.c: planning, pins, the sweep,
 * order; opt_ws.c: KV admission's working sets; opt_warm.c: pre-warming;
 * opt_dedup.c: result-cache call identity and the dedup table). Nothing else includes it; the interface is opt.h.
 *
 * Holds struct opt and its parts. Ownership as opt.c says: pin groups, dedup
 * entries, prefix trees, the result cache and the min-prompt sets belong to
 * the opt_t; tasks are borrowed while live. Single-threaded (the
 * coordinator's loop), so no field has a lock.
 */
#ifndef HELIUM_OPT_IMPL_H
#define HELIUM_OPT_IMPL_H

#include <stdlib.h>

#include "herr.h"
#include "dir.h"
#include "hcount.h"
#include "opt.h"

#define OPT_DD_BUCKETS 16384 /* a power of two; 10,000 queued jobs keep thousands of entries */
#define OPT_TOOL_COST 256   /* token steps charged to a tool call in critical paths */
#define OPT_DYN_GUESS 64    /* tokens guessed for a prompt's unknown part */

struct opt_dd {
    rcache_key key;
    job_task *leader;       /* NULL once finished or orphaned */
    job_task **f;           /* (n_f) followers */
    size_t n_f, cap_f;
    opt_dd *next;           /* bucket chain, or the orphan list */
};

typedef struct opt_pin opt_pin;

/* A user of a pin (opt_pin.users[i]) and the pin as its user sees it
 * (job_task.pinl[j]): each holds the other's index, so a task that ends
 * leaves every pin it uses in O(1) each (opt_task_gone). */
typedef struct {
    job_task *t;
    uint32_t li;            /* its link's index in t->pinl */
} opt_user;

struct opt_plink {
    opt_pin *g;
    uint32_t ui;            /* the task's index in g->users */
};

struct opt_pin {
    char tag[OPT_TAG_LEN];
    int slot;
    sched_policy pol;
    uint64_t *hashes;       /* (n_blocks) pinned blocks, prefix order */
    int32_t n_blocks;
    int32_t *tokens;        /* (n_blocks * block size) their tokens, for ptree_match */
    opt_user *users;        /* (n_users) dispatched tasks whose prompt covers the blocks */
    size_t n_users, cap_users;
    uint64_t warm_task;     /* warm dispatch in flight (0 = none) */
    int64_t warm_load;      /* load it added to its worker */
    uint32_t steps;         /* the eviction priority the worker has (steps to execution) */
    int32_t live;           /* leading blocks a pending call still shares (as of the last sweep) */
    bool counted;           /* its blocks are in opt.pinned */
    size_t sidx;            /* its index in opt.spins[slot] */
    size_t gidx;            /* its index in opt.pins */
    size_t widx;            /* its index in opt.warming[slot] while in it */
    bool in_warming;
    int32_t ws_n[2];        /* its leading blocks counted in its worker's ws_pins[k] */
    uint64_t ws_uid;        /* ... that worker's uid (another uid: nothing counted) */
    ptree_match_info smi;   /* its last sweep's match (rc smrc), still right while sst is valid */
    ptree_stamp sst;
    int smrc;
};

/* The pins on one worker slot (opt.spins): ws_need reads only its worker's. */
typedef struct {
    opt_pin **v;            /* (n) */
    size_t n, cap;
} opt_pin_list;

/* One sweep's match of a pinned prefix against its tree (opt_sweep): groups
 * of one prefix on several workers match once. */
typedef struct {
    uint64_t gen;           /* the sweep that wrote it (o->sweeps); older: empty */
    uint64_t h;             /* the prefix's last block hash */
    int32_t nb, pol, rc;
    ptree_match_info mi;
    ptree_stamp st;
} opt_sweep_hit;

/* A prefix opt_warm could not warm, and what it waits for (opt.c). */
typedef struct {
    uint64_t h;             /* the prefix's last block hash; 0: empty entry */
    uint64_t sig;           /* room: the signature it waits to change; stored: the worker's
                               in-flight removals when it was noted */
    int slot;               /* stored: the worker computing its blocks */
    int32_t run;            /* stored: the leading blocks it waits to see cached there */
    uint8_t kind;           /* WARM_WAIT_* */
} opt_warm_memo;

typedef struct {
    uint64_t *v;            /* (cap) 0 = empty */
    size_t n, cap;
} u64set;


struct opt {
    const tok_t *tok;
    sched_t *sched;
    wkrs_t *wkrs;
    jobs_t *jobs;
    opt_io io;
    bool have_model;
    uint64_t root;
    int32_t bs;
    ptree_t *pt[2];         /* kvflow, helium */
    bool warm_dirty;        /* the helium tree changed since the last opt_warm */
    bool warm_deferred;     /* the last opt_warm deferred a prefix (pages being computed, or no room) */
    bool sweep_dirty;       /* something a group depends on changed */
    opt_pin **pins;         /* (n_pins) */
    uint64_t pins_gen;      /* moves on every change to pins that ws_need reads */
    uint64_t pins_shrink_gen; /* ... that may leave a working set smaller (pins_moved) */
    uint64_t pins_shrink_slot[DIR_MAX_WORKERS]; /* ... that worker's */
    size_t n_pins, cap_pins;
    opt_pin_list spins[DIR_MAX_WORKERS]; /* the same pins by worker slot (slots in range) */
    opt_pin_list warming[DIR_MAX_WORKERS]; /* of those, the ones being warmed (warm_task) */
    uint64_t next_pin;
    rcache_t *rc;
    opt_dd *dd[OPT_DD_BUCKETS];
    opt_dd *orphans;
    u64set prompts[SCHED_N_POLICIES], blocks[SCHED_N_POLICIES];
    opt_sweep_hit *sw;      /* (cap_sw, a power of two) opt_sweep's scratch */
    uint64_t sweeps;        /* opt_sweep runs (its entries' generation) */
    opt_warm_memo *wm[2];   /* (cap_wm[k], powers of two) warming's memo: this run's is wm[wm_cur] */
    size_t cap_wm[2];
    int wm_cur;
    hcount_t *pinned;       /* the blocks of helium's pins, counted once a pin (opt_warm's covering test) */
    size_t cap_sw;
    ptree_slot *slots;      /* (cap_slots) opt_order output */
    bool order_valid;       /* slots[0, n_order) is ptree_order's answer at tree gen order_gen */
    uint64_t order_gen;
    int n_order;
    size_t cap_slots;
    u64set ws_scratch;      /* ws_need's working set when a worker's counted sets were given up */
    uint64_t *hbuf;         /* (cap_hbuf) scratch hashes */
    size_t cap_hbuf;
    opt_counters st[SCHED_N_POLICIES];
};

/* Grows *p (elements of elem bytes) to hold need; cap doubles. */
static inline int grow(void **p, size_t *cap, size_t need, size_t elem) {
    if (need <= *cap) return 0;
    size_t c = *cap ? *cap : 16;
    while (c < need) c *= 2;
    void *q = realloc(*p, c * elem);
    if (!q) return he_set(HE_ENOMEM, "out of memory");
    *p = q;
    *cap = c;
    return 0;
}

/* ---- shared by opt.c and opt_warm.c (definitions in opt.c) */

static inline uint64_t sig_mix(uint64_t h, uint64_t x) {
    return (h ^ (x + 0x9e3779b97f4a7c15ULL + (h << 6) + (h >> 2))) * 0x100000001b3ULL;
}

static inline uint32_t steps_u32(int64_t steps) {
    if (steps < 0) return 0;
    return steps > (int64_t)UINT32_MAX ? UINT32_MAX : (uint32_t)steps;
}

/* the counters of policy pol */
opt_counters *opt_st_of(opt_t *o, int pol);
/* Adds x to s; returns 1 if it was new (or the set is full), 0 if present (opt.c). */
int opt_set_add(u64set *s, uint64_t x);
/* Brings g's counted blocks in its worker's pins' sets (wkr_t.ws_pins) and
 * its place in opt.warming to what its state says (all out when gone).
 * O(blocks that changed). (opt_ws.c) */
void opt_pin_ws_sync(opt_t *o, opt_pin *g, bool gone);
/* pin g changed (its live blocks, steps or warm task): its worker's counted
 * pins' sets follow; shrink: it may have got smaller */
void opt_pin_moved(opt_t *o, opt_pin *g, bool shrink);
/* a new pin group of nb blocks (tokens: their nb * block size ids), or NULL (out of memory) */
opt_pin *opt_pin_new(opt_t *o, const char *tag, int slot, sched_policy pol, const uint64_t *hashes, int32_t nb,
                     const int32_t *tokens);
/* unpins group i on its worker and drops it */
void opt_pin_release(opt_t *o, size_t i);
/* the pins to look at for worker slot (all of them when out of range): *n of them */
opt_pin *const *opt_pins_on(const opt_t *o, int slot, size_t *n);
/* pages w would need with the call added (opt.c, "KV admission") */
int64_t opt_ws_need(opt_t *o, const wkr_t *w, const uint64_t *hashes, int32_t nb, int32_t pages, bool all_pins,
                    int64_t limit);

#endif /* HELIUM_OPT_IMPL_H */
