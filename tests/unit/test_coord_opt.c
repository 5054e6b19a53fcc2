/* Unit tests for job plans in coordinator/jobs.c (suite "jobs_plan": pruned
 * and aliased ops, the task_new/op_done hooks, aborting optimizer-linked
 * tasks) and for coordinator/opt.c (suite "opt": in-flight dedup entries,
 * min_prompt_tokens accounting, pin groups and their release, warming,
 * dispatch order). Prompts are "tokenized" one byte per token; no sockets,
 * no model. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "blockhash.h"
#include "dir.h"
#include "herr.h"
#include "jobs.h"
#include "opt.h"
#include "sched.h"
#include "workers.h"
#include "workflow.h"

#define ROOT 0x77u
#define BS 4

static jobs_t *js;
static wkrs_t *ws;
static dir_t *dir;
static sched_t *sc;
static opt_t *op;
static int n_aborted, n_new, n_done;

/* sent by the optimizer */
static int n_warm, n_unpin, n_pin_steps;
static char last_unpin[OPT_TAG_LEN], last_warm_tag[OPT_TAG_LEN], last_steps_tag[OPT_TAG_LEN];
static uint32_t last_steps;
static int32_t last_warm_n;
static uint64_t task_ids = 1000;

static uint64_t io_id(void *ctx) {
    (void)ctx;
    return ++task_ids;
}
static int io_warm(void *ctx, wkr_t *w, uint64_t id, const int32_t *ids, int32_t n, const uint64_t *h, int32_t nb,
                   const char *tag, uint32_t steps, const sched_choice *ch) {
    (void)steps;
    (void)ctx, (void)w, (void)id, (void)ids, (void)h, (void)ch;
    cr_assert_eq(n, nb * BS, "a warm prompt is whole blocks");
    n_warm++;
    last_warm_n = n;
    snprintf(last_warm_tag, sizeof last_warm_tag, "%s", tag);
    return 0;
}
static void io_unpin(void *ctx, wkr_t *w, const char *tag) {
    (void)ctx, (void)w;
    n_unpin++;
    snprintf(last_unpin, sizeof last_unpin, "%s", tag);
}

static void io_pin_steps(void *ctx, wkr_t *w, const char *tag, uint32_t steps) {
    (void)ctx, (void)w;
    n_pin_steps++;
    last_steps = steps;
    snprintf(last_steps_tag, sizeof last_steps_tag, "%s", tag);
}

/* one token per byte */
static void fake_tokenize(job_task *t) {
    if (t->ids || t->kind != JT_LLM) return;
    t->ids = malloc((t->text_len ? t->text_len : 1) * sizeof *t->ids);
    for (size_t i = 0; i < t->text_len; i++) t->ids[i] = (unsigned char)t->text[i];
    t->n_ids = (int32_t)t->text_len;
}

static bool wire_opt; /* hooks feed the optimizer */
static void on_abort(void *ctx, job_task *t) {
    (void)ctx;
    n_aborted++;
    if (wire_opt) {
        opt_dd_drop(op, t);
        opt_task_gone(op, t);
    }
}
static void on_end(void *ctx, job_t *j) {
    (void)ctx;
    if (wire_opt) opt_job_end(op, j);
}
static void on_new(void *ctx, job_task *t) {
    (void)ctx;
    n_new++;
    if (wire_opt) {
        fake_tokenize(t);
        opt_task_new(op, t);
    }
}
static void on_op_done(void *ctx, job_t *j, int i) {
    (void)ctx;
    n_done++;
    if (wire_opt) opt_op_done(op, j, i);
}

static void setup(void) {
    jobs_hooks h = {.task_abort = on_abort, .job_end = on_end, .task_new = on_new, .op_done = on_op_done};
    js = jobs_new(NULL, &h);
    ws = wkrs_new();
    dir = dir_new();
    sc = sched_new(dir, ws);
    cr_assert(js && ws && dir && sc);
    sched_set_model(sc, ROOT, BS, 4096);
    opt_io io = {.ctx = NULL, .next_task_id = io_id, .send_warm = io_warm, .send_unpin = io_unpin,
                 .send_pin_steps = io_pin_steps};
    op = opt_new(NULL, sc, ws, js, &io, 1 << 20);
    cr_assert_not_null(op);
    n_aborted = n_new = n_done = n_warm = n_unpin = n_pin_steps = 0;
    wire_opt = false;
}

static void teardown(void) {
    jobs_destroy(&js);
    opt_destroy(&op);
    sched_destroy(&sc);
    dir_destroy(&dir);
    wkrs_destroy(&ws);
}

TestSuite(jobs_plan, .init = setup, .fini = teardown);
TestSuite(opt, .init = setup, .fini = teardown);

static wf_t *parse(const char *json) {
    wf_t *wf = NULL;
    cr_assert_eq(wf_parse_json(json, strlen(json), &wf), 0, "parse: %s", he_msg());
    return wf;
}

static job_t *submit_planned(const char *json, const jobs_plan *plan) {
    wf_t *wf = parse(json);
    job_t *j = NULL;
    cr_assert_eq(jobs_submit_planned(js, &wf, NULL, 0, "helium", "", false, plan, &j), 0, "%s", he_msg());
    return j;
}

static job_task *ready_of(const char *opid) {
    for (job_task *t = jobs_ready_first(js); t; t = jobs_ready_next(t))
        if (strcmp(t->job->wf->ops[t->op]->id, opid) == 0) return t;
    return NULL;
}

static void finish(job_task *t, const char *text) {
    job_result r = {.text = text, .len = strlen(text)};
    jobs_task_done(js, t, &r);
}

static Helium__OpState state_of(job_t *j, const char *opid) { return j->ops[wf_find(j->wf, opid)].state; }

static const char *FAN =
    "{\"name\":\"fan\",\"ops\":["
    "{\"id\":\"a\",\"type\":\"llm\",\"prompt\":\"alpha\"},"
    "{\"id\":\"a2\",\"type\":\"llm\",\"prompt\":\"alpha\"},"
    "{\"id\":\"b\",\"type\":\"llm\",\"prompt\":\"unused\"},"
    "{\"id\":\"c\",\"type\":\"llm\",\"prompt\":\"{{op.a}}+{{op.a2}}\"}],"
    "\"output\":\"c\"}";

Test(jobs_plan, pruned_op_never_runs_and_job_completes) {
    uint8_t pruned[4] = {0, 0, 1, 0};
    jobs_plan p = {.pol = SCHED_HELIUM, .pruned = pruned};
    job_t *j = submit_planned(FAN, &p);
    cr_assert_eq(j->pol, SCHED_HELIUM);
    cr_assert_null(ready_of("b"), "a pruned op was queued");
    cr_assert_eq(state_of(j, "b"), HELIUM__OP_STATE__OP_SKIPPED);
    finish(ready_of("a"), "A");
    finish(ready_of("a2"), "B");
    job_task *c = ready_of("c");
    cr_assert_not_null(c);
    cr_assert_str_eq(c->text, "A+B");
    finish(c, "C");
    cr_assert_eq(j->state, HELIUM__JOB_STATE__JOB_DONE);
    cr_assert_eq(state_of(j, "b"), HELIUM__OP_STATE__OP_SKIPPED);
}

Test(jobs_plan, output_op_is_never_pruned) {
    uint8_t pruned[4] = {0, 0, 0, 1};
    jobs_plan p = {.pruned = pruned};
    job_t *j = submit_planned(FAN, &p);
    cr_assert_eq(j->pruned[3], 0);
}

Test(jobs_plan, aliased_op_copies_its_twin) {
    int alias[4] = {-1, 0, -1, -1};
    jobs_plan p = {.pol = SCHED_HELIUM, .alias = alias};
    job_t *j = submit_planned(FAN, &p);
    cr_assert_null(ready_of("a2"), "an aliased op was queued");
    cr_assert_eq(state_of(j, "a2"), HELIUM__OP_STATE__OP_WAITING);
    int done_before = n_done;
    finish(ready_of("a"), "A");
    cr_assert_eq(state_of(j, "a2"), HELIUM__OP_STATE__OP_DONE);
    size_t len;
    cr_assert_str_eq(jobs_op_output(j, wf_find(j->wf, "a2"), &len), "A");
    cr_assert_geq(n_done - done_before, 2, "op_done ran for a and a2");
    finish(ready_of("b"), "x");
    job_task *c = ready_of("c");
    cr_assert_not_null(c);
    cr_assert_str_eq(c->text, "A+A");
    finish(c, "C");
    cr_assert_eq(j->state, HELIUM__JOB_STATE__JOB_DONE);
}

Test(jobs_plan, bad_aliases_are_ignored) {
    int alias[4] = {0, 7, 1, -1}; /* self, out of range, chain target aliased... */
    jobs_plan p = {.alias = alias};
    job_t *j = submit_planned(FAN, &p);
    cr_assert_eq(j->alias[0], -1);
    cr_assert_eq(j->alias[1], -1);
    cr_assert_eq(j->alias[2], 1);
    cr_assert_not_null(ready_of("a"));
    cr_assert_not_null(ready_of("a2"));
    cr_assert_null(ready_of("b"));
}

Test(jobs_plan, hooks_and_opt_linked_abort) {
    job_t *j = submit_planned(FAN, NULL);
    cr_assert_eq(n_new, 3, "task_new for a, a2, b");
    job_task *a = ready_of("a");
    int dummy;
    a->opt = &dummy; /* e.g. a dedup leader put back in the queue */
    jobs_cancel(js, j, "test");
    cr_assert_eq(n_aborted, 1, "the queued opt-linked task went through task_abort");
}

Test(jobs_plan, task_of_finds_live_tasks) {
    job_t *j = submit_planned(FAN, NULL);
    job_task *t = jobs_task_of(js, j->num, 0, 0);
    cr_assert_not_null(t);
    cr_assert_eq(t, ready_of("a"));
    cr_assert_null(jobs_task_of(js, j->num, 3, 0));
    cr_assert_null(jobs_task_of(js, j->num + 1, 0, 0));
    cr_assert_eq(jobs_by_num(js, j->num), j);
}

/* ------------------------------------------------------------------ opt */

Test(opt, dedup_lead_follow_finish) {
    job_t *j = submit_planned(FAN, NULL);
    job_task *a = ready_of("a"), *a2 = ready_of("a2"), *b = ready_of("b");
    rcache_key k = {1, 2}, k2 = {3, 4};
    cr_assert_null(opt_dd_find(op, k));
    cr_assert_eq(opt_dd_lead(op, k, a), 0);
    cr_assert(opt_dd_leads(a));
    opt_dd *e = opt_dd_find(op, k);
    cr_assert_not_null(e);
    cr_assert_null(opt_dd_find(op, k2));
    cr_assert_eq(opt_dd_follow(op, e, a2), 0);
    cr_assert_eq(opt_dd_follow(op, e, b), 0);
    cr_assert_not(opt_dd_leads(a2));
    opt_dd_drop(op, b); /* b's job went away */
    cr_assert_null(b->opt);
    rcache_key got;
    opt_dd *f = opt_dd_finish(op, a, &got);
    cr_assert_eq(f, e);
    cr_assert(got.lo == 1 && got.hi == 2);
    cr_assert_null(a->opt);
    cr_assert_null(opt_dd_find(op, k), "a finished entry is not found");
    cr_assert_eq(opt_dd_pop(f), a2);
    cr_assert_null(a2->opt);
    cr_assert_null(opt_dd_pop(f));
    opt_dd_free(&f);
    cr_assert_null(f);
    (void)j;
}

Test(opt, dedup_orphans_come_back) {
    submit_planned(FAN, NULL);
    job_task *a = ready_of("a"), *a2 = ready_of("a2"), *b = ready_of("b");
    rcache_key k = {9, 9};
    opt_dd_lead(op, k, a);
    opt_dd *e = opt_dd_find(op, k);
    opt_dd_follow(op, e, a2);
    opt_dd_follow(op, e, b);
    opt_dd_drop(op, a); /* the leader failed */
    cr_assert_null(opt_dd_find(op, k));
    opt_dd_drop(op, b); /* a follower leaves its orphaned entry */
    cr_assert_eq(opt_dd_pop_orphan(op), a2);
    cr_assert_null(opt_dd_pop_orphan(op));
    /* a leader without followers leaves nothing behind */
    opt_dd_lead(op, k, a);
    opt_dd_drop(op, a);
    cr_assert_null(opt_dd_pop_orphan(op));
}

/* A fake task of policy pol with prompt ids[0..n). */
static job_task *fake_task(job_t *j, const int32_t *ids, int n) {
    job_task *t = calloc(1, sizeof *t);
    t->job = j;
    t->kind = JT_LLM;
    t->ids = malloc((size_t)n * sizeof *t->ids);
    memcpy(t->ids, ids, (size_t)n * sizeof *ids);
    t->n_ids = n;
    return t;
}
static void fake_free(job_task *t) {
    free(t->ids);
    free(t);
}

Test(opt, min_prompt_counts_distinct_blocks_and_tails) {
    job_t j = {.pol = SCHED_ROUTER};
    job_task *t;
    int32_t p1[10] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10};
    t = fake_task(&j, p1, 10);
    opt_count_prompt(op, t); /* no model yet: not counted */
    cr_assert_eq(opt_stats(op, SCHED_ROUTER)->min_prompt_tokens, 0);
    cr_assert_not(t->counted);
    cr_assert_eq(opt_set_model(op, ROOT, BS), 0);
    opt_count_prompt(op, t);
    cr_assert_eq(opt_stats(op, SCHED_ROUTER)->min_prompt_tokens, 10, "2 new blocks + 2 tail tokens");
    opt_count_prompt(op, t); /* a task counts once */
    cr_assert_eq(opt_stats(op, SCHED_ROUTER)->min_prompt_tokens, 10);
    fake_free(t);
    t = fake_task(&j, p1, 10); /* the same prompt again */
    opt_count_prompt(op, t);
    cr_assert_eq(opt_stats(op, SCHED_ROUTER)->min_prompt_tokens, 10);
    fake_free(t);
    int32_t p2[9] = {1, 2, 3, 4, 50, 60, 70, 80, 90}; /* shares block 0 */
    t = fake_task(&j, p2, 9);
    opt_count_prompt(op, t);
    cr_assert_eq(opt_stats(op, SCHED_ROUTER)->min_prompt_tokens, 10 + 4 + 1);
    fake_free(t);
    t = fake_task(&j, p1, 8); /* block-aligned, every block seen: its last token still counts */
    opt_count_prompt(op, t);
    cr_assert_eq(opt_stats(op, SCHED_ROUTER)->min_prompt_tokens, 16);
    fake_free(t);
    cr_assert_eq(opt_stats(op, SCHED_ROUTER)->llm_tasks, 4);
    cr_assert_eq(opt_stats(op, SCHED_HELIUM)->min_prompt_tokens, 0, "counters are per policy");
}

static wkr_t *add_worker(const char *id) {
    wkr_t *w = NULL;
    cr_assert_eq(wkrs_add(ws, id, strlen(id), &w), 0, "%s", he_msg());
    Helium__Register reg = HELIUM__REGISTER__INIT;
    reg.model_root = ROOT;
    reg.block_size = BS;
    reg.kv_blocks_total = 1000;
    reg.n_ctx = 4096;
    reg.n_layers = 2;
    reg.kv_dim = 8;
    reg.kv_dtype = "f32";
    wkr_register(w, &reg, 1);
    w->alive = true;
    return w;
}

/* Two ready kvflow calls share "shared:" (7 bytes = 1 full block + 3). */
static const char *PAIR =
    "{\"name\":\"pair\",\"ops\":["
    "{\"id\":\"x\",\"type\":\"llm\",\"prompt\":\"shared: number one\"},"
    "{\"id\":\"y\",\"type\":\"llm\",\"prompt\":\"shared: number two\"},"
    "{\"id\":\"z\",\"type\":\"llm\",\"prompt\":\"{{op.x}} {{op.y}}\"}],"
    "\"output\":\"z\"}";

Test(opt, pins_follow_pending_sharers_and_users) {
    wkr_t *w = add_worker("w1");
    cr_assert_eq(opt_set_model(op, ROOT, BS), 0);
    wire_opt = true;
    jobs_plan p = {.pol = SCHED_KVFLOW};
    job_t *j = submit_planned(PAIR, &p);
    job_task *x = ready_of("x"), *y = ready_of("y");
    cr_assert(x && y && x->ids && y->ids);
    /* x is dispatched: it leaves the pending set and pins what y shares */
    uint64_t hx[8];
    int nb = bh_prefix(ROOT, x->ids, x->n_ids, BS, hx);
    opt_call_gone(op, x);
    char tag[OPT_TAG_LEN];
    int32_t want = opt_pin_want(op, x, w->slot, hx, nb, tag);
    cr_assert_eq(want, 3, "y shares \"shared: number \" (15 tokens: 3 full blocks), got %d", want);
    cr_assert_str_eq(tag, "pin-1");
    jobs_task_start(js, x, w->slot, "w1", 1);
    opt_pin_commit(op, x, w->slot, hx, nb, want, tag);
    cr_assert_eq(opt_stats(op, SCHED_KVFLOW)->pins, 1);
    /* the same prefix on the same worker is not pinned twice */
    cr_assert_eq(opt_pin_want(op, x, w->slot, hx, nb, tag), 0);
    opt_sweep(op);
    cr_assert_eq(n_unpin, 0, "y still needs the blocks");
    /* y is dispatched too (a user of the group), then x finishes */
    uint64_t hy[8];
    int nby = bh_prefix(ROOT, y->ids, y->n_ids, BS, hy);
    opt_call_gone(op, y);
    cr_assert_eq(opt_pin_want(op, y, w->slot, hy, nby, tag), 0, "nothing pending shares y's prompt");
    jobs_task_start(js, y, w->slot, "w1", 2);
    opt_pin_commit(op, y, w->slot, hy, nby, 0, "");
    opt_task_gone(op, x);
    finish(x, "X");
    opt_sweep(op);
    cr_assert_eq(n_unpin, 0, "y, a user, has not finished");
    opt_task_gone(op, y);
    finish(y, "Y");
    opt_sweep(op);
    cr_assert_eq(n_unpin, 1);
    cr_assert_str_eq(last_unpin, "pin-1");
    cr_assert_eq(opt_stats(op, SCHED_KVFLOW)->unpins, 1);
    finish(ready_of("z"), "Z");
    cr_assert_eq(j->state, HELIUM__JOB_STATE__JOB_DONE);
}

Test(opt, groups_die_with_their_worker) {
    wkr_t *w = add_worker("w1");
    cr_assert_eq(opt_set_model(op, ROOT, BS), 0);
    wire_opt = true;
    jobs_plan p = {.pol = SCHED_KVFLOW};
    submit_planned(PAIR, &p);
    job_task *x = ready_of("x");
    uint64_t hx[8];
    int nb = bh_prefix(ROOT, x->ids, x->n_ids, BS, hx);
    opt_call_gone(op, x);
    char tag[OPT_TAG_LEN];
    int32_t want = opt_pin_want(op, x, w->slot, hx, nb, tag);
    cr_assert_gt(want, 0);
    opt_pin_commit(op, x, w->slot, hx, nb, want, tag);
    opt_worker_lost(op, w->slot);
    opt_task_gone(op, x);
    opt_sweep(op);
    cr_assert_eq(n_unpin, 0, "no Unpin to a lost worker");
    cr_assert_eq(opt_stats(op, SCHED_KVFLOW)->unpins, 1, "the group is gone all the same");
}

/* Helium's KV admission (opt_ws_fits): what a worker's in-flight calls and
 * live pinned prefixes need, a shared block counted once. rebuild: the
 * worker's counted sets are given up (as on out of memory), so ws_need
 * rebuilds the working set from the in-flight list and the pins: both ways
 * must give the same verdicts. */
static void kv_admission(bool rebuild) {
    wkr_t *w = add_worker("w1");
    w->ws_bad = w->ws_pins_bad = rebuild;
    cr_assert_eq(opt_set_model(op, ROOT, BS), 0);
    wire_opt = true;
    jobs_plan p = {.pol = SCHED_HELIUM};
    submit_planned(PAIR, &p);
    job_task *x = ready_of("x"), *y = ready_of("y");
    cr_assert(x && y && x->ids && y->ids);
    uint64_t hx[8], hy[8];
    int nbx = bh_prefix(ROOT, x->ids, x->n_ids, BS, hx), nby = bh_prefix(ROOT, y->ids, y->n_ids, BS, hy);
    cr_assert_eq(nbx, 4, "18 tokens: 4 full blocks");
    cr_assert_eq(nby, 4);
    w->kv_blocks_total = 5;
    cr_assert(opt_ws_fits(op, w, hx, nbx, 100), "an idle worker admits even a call larger than its KV");

    /* x runs on w (4 blocks + 2 private pages) and pins the 3 blocks y shares */
    opt_call_gone(op, x);
    char tag[OPT_TAG_LEN];
    int32_t want = opt_pin_want(op, x, w->slot, hx, nbx, tag);
    cr_assert_eq(want, 3);
    jobs_task_start(js, x, w->slot, "w1", 1);
    x->hashes = malloc(sizeof hx);
    memcpy(x->hashes, hx, sizeof hx);
    x->n_hashes = nbx;
    x->pages = 6;
    cr_assert_eq(wkr_inflight_add(w, x), 0);
    opt_pin_commit(op, x, w->slot, hx, nbx, want, tag);
    opt_sweep(op);
    w->kv_blocks_total = 8;
    cr_assert_not(opt_ws_fits(op, w, hy, nby, 6), "x: 4 + 2, y: 1 new block + 2 = 9 pages > 8");
    w->kv_blocks_total = 9;
    cr_assert(opt_ws_fits(op, w, hy, nby, 6), "the 3 blocks x and y share count once");

    /* another call z runs; x finishes: its pinned blocks still count while y is pending */
    int32_t zi[8] = {90, 91, 92, 93, 94, 95, 96, 97};
    job_task *z = fake_task(x->job, zi, 8);
    uint64_t hz[2] = {0xabc, 0xdef};
    z->hashes = hz;
    z->n_hashes = 2;
    z->pages = 5;
    cr_assert_eq(wkr_inflight_add(w, z), 0);
    wkr_inflight_remove(w, x);
    opt_task_gone(op, x);
    finish(x, "X");
    opt_sweep(op);
    cr_assert_eq(n_unpin, 0);
    uint64_t hq[2] = {0x123, 0x456};
    w->kv_blocks_total = 10;
    cr_assert_not(opt_ws_fits(op, w, hq, 2, 3), "pin 3 + z 2 + 3 private + q 2 + 1 = 11 pages > 10");
    /* w idle, still holding the prefix that the ready y needs: it takes y
     * whatever y needs, but not a call bringing a prefix of its own that does
     * not fit beside y's */
    wkr_inflight_remove(w, z);
    w->kv_blocks_total = 4;
    cr_assert(opt_ws_fits(op, w, hy, nby, 6), "y reads the pinned prefix: an idle worker takes it (3 + 1 + 2 > 4)");
    cr_assert_not(opt_ws_fits(op, w, hq, 2, 3), "q brings its own blocks: pin 3 + q 2 + 1 = 6 pages > 4");
    w->kv_blocks_total = 6;
    cr_assert(opt_ws_fits(op, w, hq, 2, 3), "pin 3 + q 2 + 1 = 6 pages");
    w->kv_blocks_total = 10;
    cr_assert_eq(wkr_inflight_add(w, z), 0);
    /* y goes (to another worker): nothing pending shares the group, which is released */
    opt_call_gone(op, y);
    opt_sweep(op);
    cr_assert_eq(n_unpin, 1);
    cr_assert(opt_ws_fits(op, w, hq, 2, 3), "z 2 + 3 + q 2 + 1 = 8 pages");
    wkr_inflight_remove(w, z);
    z->hashes = NULL;
    fake_free(z);
    if (!rebuild) {
        cr_assert_eq(w->ws_both[0], 0, "nothing in flight: no block counted twice");
        cr_assert_eq(w->ws_blocks ? hcount_size(w->ws_blocks) : 0, 0);
        cr_assert_eq(w->ws_pins[0] ? hcount_size(w->ws_pins[0]) : 0, 0, "the released pin took its blocks");
    }
}

Test(opt, kv_admission_counts_the_working_set) { kv_admission(false); }
Test(opt, kv_admission_rebuilt_gives_the_same_verdicts) { kv_admission(true); }

/* Two helium calls waiting on `src` share a long static prefix. */
static const char *WAITERS =
    "{\"name\":\"waiters\",\"ops\":["
    "{\"id\":\"src\",\"type\":\"llm\",\"prompt\":\"source\"},"
    "{\"id\":\"u\",\"type\":\"llm\",\"prompt\":\"a long shared system text! first {{op.src}}\"},"
    "{\"id\":\"v\",\"type\":\"llm\",\"prompt\":\"a long shared system text! second {{op.src}}\"},"
    "{\"id\":\"out\",\"type\":\"join\",\"parts\":\"{{op.u}}{{op.v}}\"}],"
    "\"output\":\"out\"}";

Test(opt, warm_prefills_shared_prefix_of_waiting_calls) {
    wkr_t *w = add_worker("w1");
    cr_assert_eq(opt_set_model(op, ROOT, BS), 0);
    wire_opt = true;
    jobs_plan p = {.pol = SCHED_HELIUM};
    job_t *j = submit_planned(WAITERS, &p);
    /* the static prefixes, as opt_prepare would compute them with a tokenizer */
    opt_prep prep = {0};
    prep.n_ops = j->wf->n_ops;
    prep.prefix = calloc(prep.n_ops, sizeof *prep.prefix);
    prep.n_prefix = calloc(prep.n_ops, sizeof *prep.n_prefix);
    const char *st[] = {NULL, "a long shared system text! first ", "a long shared system text! second ", NULL};
    for (size_t i = 0; i < prep.n_ops; i++) {
        if (!st[i]) continue;
        size_t n = strlen(st[i]);
        prep.prefix[i] = malloc(n * sizeof(int32_t));
        for (size_t k = 0; k < n; k++) prep.prefix[i][k] = (unsigned char)st[i][k];
        prep.n_prefix[i] = (int)n;
    }
    opt_arrive(op, j, &prep);
    cr_assert_null(prep.prefix, "opt_arrive frees the prep");
    opt_warm(op);
    cr_assert_eq(n_warm, 1);
    cr_assert_eq(last_warm_n, 24, "u and v share \"a long shared system text! \" (27 tokens: 6 full blocks)");
    cr_assert_gt(w->load_tokens, 0, "the warm task loads its worker");
    opt_warm(op);
    cr_assert_eq(n_warm, 1, "nothing changed: no second warm");
    /* the warm result arrives */
    cr_assert_not(opt_warm_result(op, w, 999999, true, 28, 0, 0), "unknown task ids are not warm tasks");
    cr_assert(opt_warm_result(op, w, task_ids, true, 24, 0, 0));
    cr_assert_eq(w->load_tokens, 0);
    cr_assert_eq(opt_stats(op, SCHED_HELIUM)->warm_tasks, 1);
    cr_assert_eq(opt_stats(op, SCHED_HELIUM)->warm_tokens, 24);
    cr_assert_eq(opt_stats(op, SCHED_HELIUM)->computed_tokens, 24);
    opt_sweep(op);
    cr_assert_eq(n_unpin, 0, "u and v still wait");
    cr_assert_eq(n_pin_steps, 0, "their need has not moved");
    /* src finishes: u and v can run now, so the pinned prefix is needed at
     * once and its eviction priority follows (PinSteps 0) */
    job_task *src = ready_of("src");
    cr_assert_not_null(src);
    finish(src, "S");
    cr_assert(ready_of("u") && ready_of("v"));
    opt_sweep(op);
    cr_assert_eq(n_pin_steps, 1);
    cr_assert_eq(last_steps, 0);
    cr_assert_str_eq(last_steps_tag, last_warm_tag);
    cr_assert_eq(opt_stats(op, SCHED_HELIUM)->pin_updates, 1);
    opt_sweep(op);
    cr_assert_eq(n_pin_steps, 1, "unchanged: nothing sent again");
    /* the job is canceled: nothing needs the prefix any more */
    jobs_cancel(js, j, "test");
    opt_sweep(op);
    cr_assert_eq(n_unpin, 1);
    cr_assert_str_eq(last_unpin, last_warm_tag);
}

Test(opt, order_lists_ready_helium_calls) {
    add_worker("w1");
    cr_assert_eq(opt_set_model(op, ROOT, BS), 0);
    wire_opt = true;
    jobs_plan p = {.pol = SCHED_HELIUM};
    job_t *j = submit_planned(PAIR, &p);
    const ptree_slot *sl;
    int n = opt_order(op, &sl);
    cr_assert_eq(n, 2);
    for (int k = 0; k < n; k++) {
        cr_assert_eq(sl[k].job, j->num);
        cr_assert_not_null(jobs_task_of(js, sl[k].job, sl[k].op, sl[k].item));
    }
    cr_assert_eq(sl[1].shared_prev, 15, "siblings share \"shared: number \"");
    opt_call_gone(op, ready_of("x"));
    cr_assert_eq(opt_order(op, &sl), 1);
}

Test(opt, prepare_prunes_and_merges_for_helium_only) {
    wf_t *wf = parse(FAN);
    opt_prep prep;
    cr_assert_eq(opt_prepare(op, SCHED_ROUTER, wf, NULL, 0, &prep), 0);
    cr_assert_null(prep.plan.pruned);
    opt_prep_free(&prep);
    cr_assert_eq(opt_prepare(op, SCHED_HELIUM, wf, NULL, 0, &prep), 0);
    cr_assert_not_null(prep.plan.pruned);
    cr_assert_eq(prep.pruned[2], 1, "b is pruned");
    cr_assert_eq(prep.pruned[0] + prep.pruned[1] + prep.pruned[3], 0);
    cr_assert_eq(prep.alias[1], 0, "a2 merges into a");
    job_t *j = NULL;
    cr_assert_eq(jobs_submit_planned(js, &wf, NULL, 0, "helium", "", false, &prep.plan, &j), 0);
    opt_stats(op, SCHED_HELIUM)->jobs++;
    opt_arrive(op, j, &prep);
    cr_assert_eq(opt_stats(op, SCHED_HELIUM)->ops_pruned, 1);
    cr_assert_eq(opt_stats(op, SCHED_HELIUM)->ops_merged, 1);
    cr_assert_null(ready_of("b"));
    cr_assert_null(ready_of("a2"));
}
