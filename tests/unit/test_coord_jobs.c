/* Unit tests for coordinator/jobs.c (suite "jobs"): the job state machine,
 * op readiness, template rendering with inputs and op outputs, map expansion,
 * loops, failure, cancel, requeue and eviction. Tasks are completed by hand;
 * no sockets, no model. */
#include <criterion/criterion.h>
#include <string.h>

#include "herr.h"
#include "jobs.h"
#include "workflow.h"

static jobs_t *js;
static int n_aborted, n_ended, n_progress, n_started, n_park_freed;
static job_t *last_ended, *last_started;

static void on_abort(void *ctx, job_task *t) {
    (void)ctx;
    cr_assert(t->worker >= 0 || t->runner, "abort hook for a task that never started");
    n_aborted++;
}
static void on_end(void *ctx, job_t *j) {
    (void)ctx;
    n_ended++;
    last_ended = j;
}
static void on_progress(void *ctx, job_t *j) {
    (void)ctx;
    (void)j;
    n_progress++;
}

static void on_start(void *ctx, job_t *j) {
    (void)ctx;
    n_started++;
    last_started = j;
    cr_assert_not(j->parked);
    free(j->park);
    j->park = NULL;
}
static void on_park_free(void *ctx, job_t *j) {
    (void)ctx;
    n_park_freed++;
    free(j->park);
    j->park = NULL;
}

/* may_start: refuses while gate is false; counts its calls; the submit clock is fake_now */
static bool gate = true;
static int n_asked;
static uint64_t fake_now;
static bool on_may_start(void *ctx, const job_t *j) {
    (void)ctx;
    (void)j;
    n_asked++;
    return gate;
}
static uint64_t fake_clock(void *ctx) {
    (void)ctx;
    return fake_now;
}

static void setup_keep(size_t keep) {
    jobs_config c = {.keep_finished = keep, .submit_clock = fake_clock};
    jobs_hooks h = {.task_abort = on_abort, .job_end = on_end, .job_progress = on_progress,
                    .job_start = on_start, .park_free = on_park_free, .may_start = on_may_start};
    gate = true;
    n_asked = 0;
    fake_now = 1000;
    js = jobs_new(&c, &h);
    cr_assert_not_null(js);
    n_aborted = n_ended = n_progress = n_started = n_park_freed = 0;
    last_ended = last_started = NULL;
}
static void setup(void) { setup_keep(1000); }
static void teardown(void) { jobs_destroy(&js); }

TestSuite(jobs, .init = setup, .fini = teardown);

static job_t *submit(const char *json, const wf_kv *in, size_t n) {
    wf_t *wf = NULL;
    int rc = wf_parse_json(json, strlen(json), &wf);
    cr_assert_eq(rc, 0, "parse: %s", he_msg());
    job_t *j = NULL;
    rc = jobs_submit(js, &wf, in, n, "router", "tag", false, &j);
    cr_assert_eq(rc, 0, "submit: %s", he_msg());
    cr_assert_null(wf);
    return j;
}

/* The ready task of op `op` (and item), started on worker slot 0. */
static job_task *take(const char *op, uint32_t item) {
    for (job_task *t = jobs_ready_first(js); t; t = jobs_ready_next(t)) {
        if (strcmp(t->job->wf->ops[t->op]->id, op) == 0 && t->item == item) {
            static uint64_t next_id = 100;
            jobs_task_start(js, t, 0, "w0", ++next_id);
            return t;
        }
    }
    cr_assert_fail("no ready task for op %s item %u", op, item);
    return NULL;
}

static void finish(job_task *t, const char *text) {
    job_result r = {.text = text, .len = strlen(text), .prompt_tokens = 10, .cached_tokens = 4,
                    .generated_tokens = 2, .worker = "w0"};
    jobs_task_done(js, t, &r);
}

static const char *out_of(job_t *j, const char *op) {
    int i = wf_find(j->wf, op);
    cr_assert_geq(i, 0);
    size_t len;
    return jobs_op_output(j, i, &len);
}

static Helium__OpState state_of(job_t *j, const char *op) {
    int i = wf_find(j->wf, op);
    cr_assert_geq(i, 0);
    return j->ops[i].state;
}

static const char *CHAIN =
    "{\"name\":\"chain\",\"inputs\":[{\"name\":\"q\"},{\"name\":\"style\",\"default\":\"terse\"}],"
    "\"ops\":["
    "{\"id\":\"a\",\"type\":\"llm\",\"prompt\":\"Q: {{input.q}} ({{input.style}})\",\"max_tokens\":5},"
    "{\"id\":\"b\",\"type\":\"llm\",\"prompt\":\"A said: {{op.a}}!\",\"max_tokens\":5},"
    "{\"id\":\"c\",\"type\":\"join\",\"parts\":\"[{{op.a}}|{{op.b}}]\"}],"
    "\"output\":\"c\"}";

Test(jobs, chain_renders_and_completes) {
    wf_kv in[] = {{"q", "why?"}};
    job_t *j = submit(CHAIN, in, 1);
    cr_assert_str_eq(j->id, "job-1");
    cr_assert_eq(j->state, HELIUM__JOB_STATE__JOB_QUEUED);
    cr_assert_eq(jobs_ready_count(js), 1);
    job_task *t = take("a", 0);
    cr_assert_str_eq(t->text, "Q: why? (terse)");
    cr_assert_eq(t->attempt, 1);
    cr_assert_eq(j->state, HELIUM__JOB_STATE__JOB_RUNNING);
    cr_assert_eq(state_of(j, "b"), HELIUM__OP_STATE__OP_WAITING);
    finish(t, "42");
    cr_assert_eq(state_of(j, "a"), HELIUM__OP_STATE__OP_DONE);
    t = take("b", 0);
    cr_assert_str_eq(t->text, "A said: 42!");
    finish(t, "ok");
    cr_assert_eq(j->state, HELIUM__JOB_STATE__JOB_DONE);
    cr_assert_eq(n_ended, 1);
    cr_assert_str_eq(out_of(j, "c"), "[42|ok]");
    cr_assert_eq(j->ops[wf_find(j->wf, "a")].prompt_tokens, 10);
    cr_assert_eq(jobs_ready_count(js), 0);
    cr_assert_eq(jobs_get(js, "job-1"), j);
    jobs_counts c;
    jobs_get_counts(js, &c);
    cr_assert_eq(c.done, 1);
    cr_assert_eq(c.running + c.queued, 0);
}

Test(jobs, inputs_are_checked) {
    wf_t *wf = NULL;
    cr_assert_eq(wf_parse_json(CHAIN, strlen(CHAIN), &wf), 0);
    job_t *j = (job_t *)1;
    cr_assert_eq(jobs_submit(js, &wf, NULL, 0, "", "", false, &j), HE_EINVAL);
    cr_assert(strstr(he_msg(), "'q'"), "message names the input: %s", he_msg());
    cr_assert_null(j);
    cr_assert_null(wf);
    cr_assert_eq(wf_parse_json(CHAIN, strlen(CHAIN), &wf), 0);
    wf_kv in[] = {{"q", "x"}, {"nope", "y"}};
    cr_assert_eq(jobs_submit(js, &wf, in, 2, "", "", false, &j), HE_EINVAL);
    cr_assert(strstr(he_msg(), "nope"), "%s", he_msg());
    cr_assert_null(jobs_get(js, "job-1"));
}

Test(jobs, join_only_job_ends_at_submit) {
    job_t *j = submit("{\"inputs\":[\"x\"],\"ops\":[{\"id\":\"j\",\"type\":\"join\",\"parts\":\"<{{input.x}}>\"}]}",
                      (wf_kv[]){{"x", "v"}}, 1);
    cr_assert_eq(j->state, HELIUM__JOB_STATE__JOB_DONE);
    cr_assert_str_eq(out_of(j, "j"), "<v>");
    cr_assert_eq(n_ended, 1);
}

static const char *MAP =
    "{\"inputs\":[\"list\"],\"ops\":["
    "{\"id\":\"m\",\"type\":\"map\",\"over\":\"input.list\",\"max_width\":3,"
    " \"body\":{\"type\":\"llm\",\"prompt\":\"item={{item}}\",\"seed\":7}},"
    "{\"id\":\"j\",\"type\":\"join\",\"parts\":\"{{op.m}}\",\"separator\":\" + \"}]}";

Test(jobs, map_expands_items_and_joins) {
    job_t *j = submit(MAP, (wf_kv[]){{"list", "[\"x\", \"y\", \"z\"]"}}, 1);
    cr_assert_eq(jobs_ready_count(js), 3);
    job_task *t1 = take("m.body", 1);
    cr_assert_str_eq(t1->text, "item=y");
    cr_assert_eq(t1->map, wf_find(j->wf, "m"));
    cr_assert_eq(t1->seed, 8);
    cr_assert_eq(jobs_find_task(js, "job-1", "m.body", 1), t1);
    job_task *t0 = take("m.body", 0), *t2 = take("m.body", 2);
    finish(t2, "Z");
    finish(t0, "X");
    cr_assert_eq(state_of(j, "m"), HELIUM__OP_STATE__OP_RUNNING);
    cr_assert_eq(j->ops[wf_find(j->wf, "m")].items_done, 2);
    finish(t1, "Y");
    cr_assert_eq(j->state, HELIUM__JOB_STATE__JOB_DONE);
    cr_assert_str_eq(out_of(j, "m"), "X\nY\nZ");
    cr_assert_str_eq(out_of(j, "j"), "X + Y + Z");
    cr_assert_eq(j->ops[wf_find(j->wf, "m")].prompt_tokens, 30);
}

Test(jobs, map_width_limit_fails_job) {
    job_t *j = submit(MAP, (wf_kv[]){{"list", "a\nb\nc\nd"}}, 1);
    cr_assert_eq(j->state, HELIUM__JOB_STATE__JOB_FAILED);
    cr_assert_eq(j->err, HELIUM__ERROR_CODE__ERROR_LIMIT);
    cr_assert_str_eq(j->err_op, "m");
    cr_assert_eq(state_of(j, "j"), HELIUM__OP_STATE__OP_SKIPPED);
    cr_assert_eq(jobs_ready_count(js), 0);
}

Test(jobs, empty_map_is_done) {
    job_t *j = submit(MAP, (wf_kv[]){{"list", "  \n"}}, 1);
    cr_assert_eq(j->state, HELIUM__JOB_STATE__JOB_DONE);
    cr_assert_str_eq(out_of(j, "j"), "");
}

Test(jobs, map_over_map_uses_items) {
    job_t *j = submit("{\"ops\":["
                      "{\"id\":\"src\",\"type\":\"llm\",\"prompt\":\"list\"},"
                      "{\"id\":\"m1\",\"type\":\"map\",\"over\":\"op.src\",\"body\":{\"type\":\"join\",\"parts\":\"<{{item}}>\"}},"
                      "{\"id\":\"m2\",\"type\":\"map\",\"over\":\"op.m1\",\"body\":{\"type\":\"llm\",\"prompt\":\"{{item}}\"}}]}",
                      NULL, 0);
    finish(take("src", 0), "[\"a\\nb\", \"c\"]");
    cr_assert_str_eq(out_of(j, "m1"), "<a\nb>\n<c>");
    job_task *t = take("m2.body", 0);
    cr_assert_str_eq(t->text, "<a\nb>", "an item with a newline stays one item");
    finish(t, "1");
    finish(take("m2.body", 1), "2");
    cr_assert_eq(j->state, HELIUM__JOB_STATE__JOB_DONE);
}

Test(jobs, failure_aborts_running_tasks) {
    job_t *j = submit(MAP, (wf_kv[]){{"list", "a\nb\nc"}}, 1);
    job_task *t0 = take("m.body", 0);
    take("m.body", 1); /* running: aborted through the hook */
    /* item 2 stays queued: dropped without the hook */
    jobs_task_fail(js, t0, HELIUM__ERROR_CODE__ERROR_PROMPT_TOO_LONG, "too long");
    cr_assert_eq(j->state, HELIUM__JOB_STATE__JOB_FAILED);
    cr_assert_eq(j->err, HELIUM__ERROR_CODE__ERROR_PROMPT_TOO_LONG);
    cr_assert_str_eq(j->err_op, "m.body");
    cr_assert_eq(state_of(j, "m"), HELIUM__OP_STATE__OP_FAILED);
    cr_assert_eq(state_of(j, "j"), HELIUM__OP_STATE__OP_SKIPPED);
    cr_assert_eq(n_aborted, 1);
    cr_assert_eq(jobs_ready_count(js), 0);
    cr_assert_eq(j->live_tasks, 0);
    cr_assert_null(jobs_find_task(js, "job-1", "m.body", 1));
}

Test(jobs, cancel_settles_states) {
    job_t *j = submit(CHAIN, (wf_kv[]){{"q", "x"}}, 1);
    take("a", 0);
    jobs_cancel(js, j, "by test");
    cr_assert_eq(j->state, HELIUM__JOB_STATE__JOB_CANCELED);
    cr_assert_eq(state_of(j, "a"), HELIUM__OP_STATE__OP_CANCELED);
    cr_assert_eq(state_of(j, "b"), HELIUM__OP_STATE__OP_SKIPPED);
    cr_assert_eq(n_aborted, 1);
    cr_assert_eq(n_ended, 1);
    jobs_cancel(js, j, "again"); /* no-op on a finished job */
    cr_assert_eq(n_ended, 1);
}

Test(jobs, requeue_keeps_task_and_counts_attempts) {
    job_t *j = submit(CHAIN, (wf_kv[]){{"q", "x"}}, 1);
    job_task *t = take("a", 0);
    uint64_t first_id = t->task_id;
    jobs_task_requeue(js, t);
    cr_assert_eq(jobs_ready_count(js), 1);
    cr_assert_eq(t->worker, -1);
    cr_assert_eq(jobs_find_task(js, j->id, "a", 0), t);
    job_task *t2 = take("a", 0);
    cr_assert_eq(t2, t);
    cr_assert_eq(t->attempt, 2);
    cr_assert_neq(t->task_id, first_id);
    cr_assert_eq(j->ops[wf_find(j->wf, "a")].attempts, 2);
    finish(t, "r");
    cr_assert_eq(state_of(j, "a"), HELIUM__OP_STATE__OP_DONE);
}

static const char *LOOP =
    "{\"ops\":["
    "{\"id\":\"seed\",\"type\":\"join\",\"parts\":\"S\"},"
    "{\"id\":\"l\",\"type\":\"loop\",\"max_rounds\":3,\"until_contains\":\"DONE\",\"output\":\"crit\",\"body\":["
    " {\"id\":\"rev\",\"type\":\"llm\",\"prompt\":\"{{op.seed}}/{{prev}}\"},"
    " {\"id\":\"crit\",\"type\":\"llm\",\"prompt\":\"c:{{op.rev}}\"}]},"
    "{\"id\":\"after\",\"type\":\"join\",\"parts\":\"=>{{op.l}}\"}]}";

Test(jobs, loop_runs_rounds_until_marker) {
    job_t *j = submit(LOOP, NULL, 0);
    job_task *t = take("rev", 0);
    cr_assert_str_eq(t->text, "S/");
    cr_assert_eq(t->round, 1);
    finish(t, "r1");
    t = take("crit", 0);
    cr_assert_str_eq(t->text, "c:r1");
    finish(t, "more work");
    cr_assert_eq(j->ops[wf_find(j->wf, "l")].round, 2);
    t = take("rev", 0);
    cr_assert_str_eq(t->text, "S/more work");
    cr_assert_eq(t->round, 2);
    finish(t, "r2");
    finish(take("crit", 0), "DONE: r2");
    cr_assert_eq(j->state, HELIUM__JOB_STATE__JOB_DONE);
    cr_assert_str_eq(out_of(j, "after"), "=>DONE: r2");
    cr_assert_eq(j->ops[wf_find(j->wf, "l")].round, 2);
}

Test(jobs, loop_stops_at_max_rounds) {
    job_t *j = submit(LOOP, NULL, 0);
    for (int r = 0; r < 3; r++) {
        finish(take("rev", 0), "r");
        finish(take("crit", 0), "again");
    }
    cr_assert_eq(j->state, HELIUM__JOB_STATE__JOB_DONE);
    cr_assert_str_eq(out_of(j, "l"), "again");
}

Test(jobs, partial_chunks) {
    job_t *j = submit(CHAIN, (wf_kv[]){{"q", "x"}}, 1);
    job_task *t = take("a", 0);
    jobs_task_progress(js, t, "he", 2);
    jobs_task_progress(js, t, "ll", 2);
    finish(t, "hello");
    cr_assert_geq(n_progress, 3);
    cr_assert_eq(j->n_chunks, 3);
    cr_assert_str_eq(j->chunks[0].text, "he");
    cr_assert_str_eq(j->chunks[2].text, "o");
    cr_assert(j->chunks[2].done);
    cr_assert_lt(j->chunks[0].seq, j->chunks[1].seq);
}

Test(jobs, finished_jobs_are_evicted_oldest_first) {
    teardown();
    setup_keep(2);
    const char *J = "{\"ops\":[{\"id\":\"j\",\"type\":\"join\",\"parts\":\"x\"}]}";
    job_t *running = submit(CHAIN, (wf_kv[]){{"q", "x"}}, 1); /* job-1 stays active */
    for (int k = 0; k < 3; k++) submit(J, NULL, 0);            /* job-2..4 finish at once */
    cr_assert_eq(jobs_get(js, "job-1"), running);
    cr_assert_null(jobs_get(js, "job-2"));
    cr_assert_not_null(jobs_get(js, "job-3"));
    cr_assert_not_null(jobs_get(js, "job-4"));
    cr_assert_null(jobs_get(js, "job-5"));
    cr_assert_null(jobs_get(js, "job-01"));
    cr_assert_null(jobs_get(js, "job-"));
    cr_assert_null(jobs_get(js, "jobs-1"));
}

/* Admission: past max_active started jobs, a submitted job is accepted but
 * parked (nothing of it queued); it starts, oldest first, when a started
 * job ends or the limit grows, and a parked job can be canceled. */
Test(jobs, jobs_past_the_limit_wait_parked_oldest_first) {
    jobs_set_max_active(js, 1);
    wf_kv in[] = {{"q", "one"}};
    job_t *a = submit(CHAIN, in, 1);
    in[0].value = "two";
    job_t *b = submit(CHAIN, in, 1);
    in[0].value = "three";
    job_t *c = submit(CHAIN, in, 1);
    in[0].value = "four";
    job_t *d = submit(CHAIN, in, 1);
    cr_assert_not(a->parked);
    cr_assert(b->parked && c->parked && d->parked);
    cr_assert_eq(b->state, HELIUM__JOB_STATE__JOB_QUEUED, "accepted: queued");
    cr_assert_eq(jobs_ready_count(js), 1, "only a's first call is queued");
    jobs_counts k;
    jobs_get_counts(js, &k);
    cr_assert_eq(k.parked, 3);
    cr_assert_eq(k.queued, 4);
    c->park = malloc(8); /* the caller's plan, kept while parked */
    d->park = malloc(8);
    jobs_cancel(js, c, "test");
    cr_assert_eq(c->state, HELIUM__JOB_STATE__JOB_CANCELED);
    cr_assert_not(c->parked);
    cr_assert_eq(n_started, 0, "a canceled parked job never starts");
    finish(take("a", 0), "x");
    finish(take("b", 0), "y"); /* a's b op, not job b: */
    cr_assert_eq(a->state, HELIUM__JOB_STATE__JOB_DONE);
    cr_assert_eq(n_started, 1, "a's end starts the oldest parked job");
    cr_assert_eq(last_started, b);
    cr_assert_not(b->parked);
    cr_assert(d->parked, "d waits: b runs");
    job_task *t = take("a", 0);
    cr_assert_eq(t->job, b);
    cr_assert_str_eq(t->text, "Q: two (terse)");
    jobs_set_max_active(js, 0); /* no limit: d starts at once */
    cr_assert_not(d->parked);
    cr_assert_eq(n_started, 2);
    cr_assert_null(d->park, "its plan went to the start hook");
    jobs_get_counts(js, &k);
    cr_assert_eq(k.parked, 0);
    cr_assert_eq(n_park_freed, 1, "c's plan was freed when c ended");
}

/* The caller's second admission rule (hooks.may_start, the coordinator's
 * feed rule): a job it refuses is accepted and parked even with room in the
 * window; jobs behind it wait in line (FIFO); jobs_unpark asks again and
 * starts them oldest first once it agrees. Jobs carry the submit clock's
 * time. */
Test(jobs, may_start_holds_jobs_back_until_unparked) {
    wf_kv in[] = {{"q", "one"}};
    fake_now = 5000;
    job_t *a = submit(CHAIN, in, 1);
    cr_assert_not(a->parked);
    cr_assert_eq(a->submitted_us, 5000, "the submit clock gives submitted_us");
    gate = false;
    in[0].value = "two";
    job_t *b = submit(CHAIN, in, 1);
    cr_assert(b->parked, "refused by may_start: parked although the window has room");
    gate = true;
    in[0].value = "three";
    job_t *c = submit(CHAIN, in, 1);
    cr_assert(c->parked, "behind a parked job: parked (oldest first)");
    cr_assert_eq(jobs_ready_count(js), 1, "only a's first call is queued");
    gate = false;
    int asked = n_asked;
    jobs_unpark(js);
    cr_assert_gt(n_asked, asked, "jobs_unpark asks again");
    cr_assert(b->parked && c->parked);
    gate = true;
    jobs_unpark(js);
    cr_assert_not(b->parked);
    cr_assert_not(c->parked);
    cr_assert_eq(n_started, 2);
    cr_assert_eq(jobs_ready_count(js), 3, "each started job queued its first call");
    job_t *first = take("a", 0)->job;
    cr_assert_eq(first, a, "the ready FIFO keeps the start order: a, b, c");
}
