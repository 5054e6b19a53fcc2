/* helium-sim: the cluster-scale simulator's loop (bench/sim, see sim.h and
 * bench/README.md "Simulator").
 *
 *   helium-sim --model FILE --scenario JOBS.json --workers N --policy P
 *              [--cost COST.json] [--kv-blocks N ...] [--out RESULT.json]
 *              [--outputs DIGESTS.txt]
 *
 * JOBS.json (written by bench/sim/run.py from bench/workloads):
 *   {"workflows": [workflow, ...],
 *    "jobs": [{"wf": index, "inputs": {name: value}, "t": arrival_s, "tag": "..."}]}
 * Each job is submitted at its arrival time as a packed helium.Request
 * (SubmitJob) through cp_on_frame; workers talk through wp_on_frame and the
 * coordinator reaches them through a wsend_i whose messages are packed
 * CoordMsgs queued to the simulated workers. Messages travel in zero
 * simulated time; a tool call (customer_service) is a real HTTP call made by
 * the coordinator's tools module while simulated time stands still.
 *
 * The coordinator's CPU time is measured (CLOCK_THREAD_CPUTIME_ID) around
 * every call into it; a "decision" is one Dispatch it sends. Job latency is
 * simulated submit to the simulated time of the turn in which the job ended.
 */
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cjson/cJSON.h>

#include "args.h"
#include "blockhash.h"
#include "client_proto.h"
#include "clock.h"
#include "herr.h"
#include "log.h"
#include "place.h"
#include "sim.h"
#include "tokenizer.h"
#include "wf_proto.h"
#include "worker_proto.h"

/* ---------------------------------------------------------------- types */

typedef struct {
    double t;
    uint64_t seq, token;
    int kind, i; /* kind: 0 step end, 1 pull end, 2 heartbeat, 3 arrival, 4 coordinator turn ends */
} event;

typedef struct {
    int to;          /* worker index (inbox) or source worker (outbox) */
    uint8_t *buf;
    size_t len;
} msg;

typedef struct {
    msg *v;
    size_t head, n, cap;
} msgq;

typedef struct {
    int wf;
    double t, end;
    char *tag;
    cJSON *inputs;   /* borrowed from the scenario */
    char job_id[JOBS_ID_LEN];
    bool submitted, ended, ok;
    uint64_t digest;
} sim_job;

struct sim_world {
    double now;
    event *heap;
    size_t n_ev, cap_ev;
    uint64_t ev_seq;
    coord_t *c;
    sim_worker **w;
    int n_workers;
    bool *touched;
    msgq inbox, outbox;
    tok_t *tok;
    int32_t *usable;  /* (n_usable) token ids outputs are drawn from */
    int32_t n_usable;
    /* scenario */
    cJSON *scen;
    Helium__Workflow **wfs;
    int n_wfs;
    sim_job *jobs;
    int n_jobs, n_ended;
    int *active;      /* (n_active) submitted, not ended */
    int n_active;
    const char *policy;
    int cores, n_stepping;       /* --cores (0 = one per worker); workers in a step now */
    double bg_load;              /* --bg-load: other runnable processes sharing those cores */
    /* measurements */
    double coord_cpu_s;
    double coord_place_cpu_s; /* of which the before-sleep step: placement, warming, pin sweep */
    uint64_t decisions, warm_decisions, coord_calls;
    uint64_t passes; /* place_dispatch_ready calls */
    /* --coord-time: the coordinator's own CPU time in the loop (0: it is instant) */
    double coord_time;           /* simulated seconds per second of its CPU */
    bool turn_pending;           /* a turn's outputs wait to be delivered at turn_end */
    double turn_end;             /* when the coordinator is free again */
    double coord_busy_s;         /* simulated time it spent in turns */
    uint64_t turns;              /* its turns (timed mode) */
    uint64_t turn_msgs;          /* messages it took in those turns */
};

static double cpu_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

/* ---------------------------------------------------------------- heap */

static bool ev_less(const event *a, const event *b) { return a->t < b->t || (a->t == b->t && a->seq < b->seq); }

void sim_at(sim_world *w, double t, int kind, int i, uint64_t token) {
    if (w->n_ev == w->cap_ev) {
        w->cap_ev = w->cap_ev ? 2 * w->cap_ev : 1024;
        event *nh = realloc(w->heap, w->cap_ev * sizeof *nh);
        if (!nh) abort();
        w->heap = nh;
    }
    size_t k = w->n_ev++;
    w->heap[k] = (event){.t = t, .seq = ++w->ev_seq, .token = token, .kind = kind, .i = i};
    while (k && ev_less(&w->heap[k], &w->heap[(k - 1) / 2])) {
        event x = w->heap[k];
        w->heap[k] = w->heap[(k - 1) / 2];
        w->heap[(k - 1) / 2] = x;
        k = (k - 1) / 2;
    }
}

static event ev_pop(sim_world *w) {
    event top = w->heap[0];
    w->heap[0] = w->heap[--w->n_ev];
    size_t k = 0;
    for (;;) {
        size_t l = 2 * k + 1, r = l + 1, m = k;
        if (l < w->n_ev && ev_less(&w->heap[l], &w->heap[m])) m = l;
        if (r < w->n_ev && ev_less(&w->heap[r], &w->heap[m])) m = r;
        if (m == k) break;
        event x = w->heap[k];
        w->heap[k] = w->heap[m];
        w->heap[m] = x;
        k = m;
    }
    return top;
}

/* ---------------------------------------------------------------- queues */

static void q_push(msgq *q, int to, const uint8_t *buf, size_t len) {
    if (q->head + q->n == q->cap) {
        if (q->head) {
            memmove(q->v, q->v + q->head, q->n * sizeof *q->v);
            q->head = 0;
        }
        if (q->n == q->cap) {
            q->cap = q->cap ? 2 * q->cap : 256;
            msg *nv = realloc(q->v, q->cap * sizeof *nv);
            if (!nv) abort();
            q->v = nv;
        }
    }
    uint8_t *copy = malloc(len ? len : 1);
    if (!copy) abort();
    memcpy(copy, buf, len);
    q->v[q->head + q->n++] = (msg){.to = to, .buf = copy, .len = len};
}

static bool q_pop(msgq *q, msg *out) {
    if (!q->n) return false;
    *out = q->v[q->head++];
    if (--q->n == 0) q->head = 0;
    return true;
}

/* ------------------------------------------------ services to the workers */

double sim_now(const sim_world *w) { return w->now; }

/* jobs' submit times in simulated microseconds (coord_config.submit_clock) */
static uint64_t sim_clock_us(void *ctx) { return (uint64_t)llround(((sim_world *)ctx)->now * 1e6); }

void sim_deliver(sim_world *w, int i, const uint8_t *buf, size_t len) { q_push(&w->outbox, i, buf, len); }
double sim_step_share(sim_world *w, int delta, double dur) {
    w->n_stepping += delta;
    if (delta < 0 || w->cores <= 0) return dur;
    double share = ((double)w->n_stepping + w->bg_load) / (double)w->cores; /* fair share of the cores */
    return share > 1.0 ? dur * share : dur;
}

sim_worker *sim_worker_at(sim_world *w, int i) { return i >= 0 && i < w->n_workers ? w->w[i] : NULL; }
const tok_t *sim_tok(const sim_world *w) { return w->tok; }

int sim_worker_index(const char *id) {
    if (!id || id[0] != 's' || !id[1]) return -1;
    char *end;
    long v = strtol(id + 1, &end, 10);
    return *end || v < 0 || v > 100000 ? -1 : (int)v;
}

int32_t sim_out_token(const sim_world *w, uint64_t h, int32_t k) {
    uint64_t x = h + 0x9e3779b97f4a7c15ull * (uint64_t)(k + 1);
    x ^= x >> 30;
    x *= 0xbf58476d1ce4e5b9ull;
    x ^= x >> 27;
    x *= 0x94d049bb133111ebull;
    x ^= x >> 31;
    return w->usable[x % (uint64_t)w->n_usable];
}

/* --------------------------------------------------- wsend_i: to workers */

static int ident_worker(const wkr_t *wk) {
    char id[16];
    size_t n = wk->ident_len < sizeof id - 1 ? wk->ident_len : sizeof id - 1;
    memcpy(id, wk->ident, n);
    id[n] = 0;
    return sim_worker_index(id);
}

static void to_worker(sim_world *w, const wkr_t *wk, Helium__CoordMsg *m) {
    int i = ident_worker(wk);
    if (i < 0 || i >= w->n_workers) return;
    m->protocol_version = HELIUM__PROTOCOL__PROTOCOL_CURRENT;
    size_t len = helium__coord_msg__get_packed_size(m);
    uint8_t *buf = malloc(len ? len : 1);
    if (!buf) abort();
    helium__coord_msg__pack(m, buf);
    q_push(&w->inbox, i, buf, len);
    free(buf);
}

static int ws_dispatch(void *ctx, wkr_t *wk, const Helium__Dispatch *d) {
    sim_world *w = ctx;
    Helium__CoordMsg m = HELIUM__COORD_MSG__INIT;
    m.body_case = HELIUM__COORD_MSG__BODY_DISPATCH;
    m.dispatch = (Helium__Dispatch *)d;
    to_worker(w, wk, &m);
    if (d->warm) w->warm_decisions++;
    else w->decisions++;
    return 0;
}

static void ws_cancel(void *ctx, wkr_t *wk, uint64_t task_id, const char *job_id) {
    Helium__Cancel cm = HELIUM__CANCEL__INIT;
    cm.task_id = task_id;
    cm.job_id = (char *)job_id;
    Helium__CoordMsg m = HELIUM__COORD_MSG__INIT;
    m.body_case = HELIUM__COORD_MSG__BODY_CANCEL;
    m.cancel = &cm;
    to_worker(ctx, wk, &m);
}

static void ws_pin_steps(void *ctx, wkr_t *wk, const char *tag, uint32_t steps) {
    Helium__PinSteps p = HELIUM__PIN_STEPS__INIT;
    p.tag = (char *)tag;
    p.steps = steps;
    Helium__CoordMsg m = HELIUM__COORD_MSG__INIT;
    m.body_case = HELIUM__COORD_MSG__BODY_PIN_STEPS;
    m.pin_steps = &p;
    to_worker(ctx, wk, &m);
}

static void ws_unpin(void *ctx, wkr_t *wk, const char *tag) {
    Helium__Unpin u = HELIUM__UNPIN__INIT;
    u.tag = (char *)tag;
    Helium__CoordMsg m = HELIUM__COORD_MSG__INIT;
    m.body_case = HELIUM__COORD_MSG__BODY_UNPIN;
    m.unpin = &u;
    to_worker(ctx, wk, &m);
}

static int ws_resync(void *ctx, wkr_t *wk, uint64_t last_seq) {
    Helium__CacheResync r = HELIUM__CACHE_RESYNC__INIT;
    r.last_seq = last_seq;
    Helium__CoordMsg m = HELIUM__COORD_MSG__INIT;
    m.body_case = HELIUM__COORD_MSG__BODY_RESYNC;
    m.resync = &r;
    to_worker(ctx, wk, &m);
    return 0;
}

static void ws_register_ack(void *ctx, const uint8_t *ident, size_t ident_len, const Helium__RegisterAck *ack) {
    if (!ack->accepted)
        fprintf(stderr, "helium-sim: worker %.*s rejected: %s\n", (int)ident_len, (const char *)ident,
                ack->error && ack->error->message ? ack->error->message : "?");
}

/* ------------------------------------------------ driving the coordinator */

/* Hands every queued worker message to the coordinator; returns how many
 * (their CPU time is the caller's to count). */
static size_t coord_take_msgs(sim_world *w) {
    size_t n = 0;
    msg m;
    while (q_pop(&w->outbox, &m)) {
        char id[16];
        snprintf(id, sizeof id, "s%d", m.to);
        wp_on_frame(w->c, (const uint8_t *)id, strlen(id), m.buf, m.len);
        w->coord_calls++;
        free(m.buf);
        n++;
    }
    return n;
}

/* The coordinator loop's before-sleep step: placement, warming, the pin
 * sweep. Returns its CPU seconds (also counted in coord_cpu_s and
 * coord_place_cpu_s). */
static double coord_place_step(sim_world *w) {
    double t0 = cpu_now();
    coord_admit(w->c);
    place_requeue_orphans(w->c);
    opt_warm(w->c->opt);
    opt_sweep(w->c->opt);
    if (w->c->dirty && jobs_ready_count(w->c->jobs)) {
        w->passes++;
        place_dispatch_ready(w->c);
    }
    double dt = cpu_now() - t0;
    w->coord_cpu_s += dt;
    w->coord_place_cpu_s += dt;
    return dt;
}

/* Runs every tool call in flight to its end. Tool calls run in wall time
 * while simulated time stands still: every one in flight finishes before
 * anything else moves, so the order of events does not depend on how fast
 * the service answers. Returns whether there were any. */
static bool coord_finish_tools(sim_world *w) {
    if (!w->c->tools || !tools_active(w->c->tools)) return false;
    while (tools_active(w->c->tools)) {
        zmq_pollitem_t it[256];
        int n = tools_poll_items(w->c->tools, it, 256);
        long to = tools_timeout_ms(w->c->tools);
        zmq_poll(it, n, to < 0 || to > 50 ? 50 : to);
        double t1 = cpu_now();
        tools_perform(w->c->tools, it, n);
        w->coord_cpu_s += cpu_now() - t1;
    }
    return true;
}

/* Delivers the coordinator's queued messages to their workers and lets the
 * workers that got one start a step. Returns whether there were any. */
static bool deliver_to_workers(sim_world *w) {
    bool moved = false;
    msg m;
    while (q_pop(&w->inbox, &m)) {
        simw_on_msg(w->w[m.to], m.buf, m.len);
        w->touched[m.to] = true;
        free(m.buf);
        moved = true;
    }
    for (int i = 0; i < w->n_workers; i++)
        if (w->touched[i]) {
            w->touched[i] = false;
            simw_kick(w->w[i]);
        }
    return moved;
}

/* Delivers queued messages both ways and runs the loop's before-sleep step
 * until nothing is left to deliver. */
static void settle(sim_world *w) {
    for (;;) {
        double t0 = cpu_now();
        bool moved = coord_take_msgs(w) > 0;
        w->coord_cpu_s += cpu_now() - t0;
        coord_place_step(w);
        if (deliver_to_workers(w)) moved = true;
        if (coord_finish_tools(w)) moved = true;
        if (!moved && !w->outbox.n) return;
    }
}

/* --coord-time: the coordinator as a server with its own time. A turn takes
 * every message the workers sent so far, then runs the before-sleep step
 * (placement, warming, the pin sweep); it lasts its measured CPU time times
 * coord_time, in simulated time, and what it sent reaches the workers when
 * it ends. Messages that arrive meanwhile wait for the next turn, as they
 * wait in a real coordinator's socket while it computes: a slow
 * coordinator shows in the makespan and the job latencies. */
static void timed_turn(sim_world *w) {
    double t0 = cpu_now();
    w->turn_msgs += coord_take_msgs(w);
    double intake = cpu_now() - t0;
    w->coord_cpu_s += intake;
    double busy = (intake + coord_place_step(w)) * w->coord_time;
    coord_finish_tools(w); /* as settle: tools finish in no simulated time */
    w->turns++;
    w->coord_busy_s += busy;
    w->turn_pending = true;
    w->turn_end = w->now + busy;
    sim_at(w, w->turn_end, 4, 0, 0);
}

/* A turn ended: its messages reach the workers; the next turn starts at once
 * if anything waits for it. */
static void turn_done(sim_world *w) {
    w->turn_pending = false;
    deliver_to_workers(w);
}

static bool coord_has_work(sim_world *w) {
    return w->outbox.n || w->inbox.n || (w->c->dirty && jobs_ready_count(w->c->jobs)) ||
           (w->c->tools && tools_active(w->c->tools));
}

static uint64_t fnv(uint64_t h, const char *s, size_t n) {
    for (size_t i = 0; i < n; i++) h = (h ^ (uint8_t)s[i]) * 0x100000001b3ull;
    return h;
}

/* Marks jobs that ended (the coordinator's counts say how many to find). */
static void check_ended(sim_world *w) {
    jobs_counts jc;
    jobs_get_counts(w->c->jobs, &jc);
    int want = (int)(jc.done + jc.failed + jc.canceled) - w->n_ended;
    for (int k = 0; k < w->n_active && want > 0; k++) {
        sim_job *j = &w->jobs[w->active[k]];
        job_t *cj = jobs_get(w->c->jobs, j->job_id);
        if (cj && !jobs_is_final(cj->state)) continue;
        j->ended = true;
        j->end = w->now;
        j->ok = cj && cj->state == HELIUM__JOB_STATE__JOB_DONE;
        uint64_t h = 0xcbf29ce484222325ull;
        for (size_t i = 0; cj && i < cj->wf->n_ops; i++) {
            h = fnv(h, cj->wf->ops[i]->id, strlen(cj->wf->ops[i]->id));
            if (cj->ops[i].out) h = fnv(h, cj->ops[i].out, cj->ops[i].out_len);
            h = fnv(h, "\x1f", 1);
        }
        j->digest = h;
        if (!j->ok)
            fprintf(stderr, "helium-sim: %s (%s) ended %s: %s\n", j->job_id, j->tag, cj ? "not DONE" : "evicted",
                    cj && cj->err_msg ? cj->err_msg : "");
        w->active[k--] = w->active[--w->n_active];
        w->n_ended++;
        want--;
    }
}

static int submit(sim_world *w, int ji) {
    sim_job *j = &w->jobs[ji];
    size_t n = (size_t)cJSON_GetArraySize(j->inputs);
    Helium__SubmitJob__InputsEntry *ent = calloc(n + 1, sizeof *ent);
    Helium__SubmitJob__InputsEntry **pe = calloc(n + 1, sizeof *pe);
    if (!ent || !pe) abort();
    size_t k = 0;
    for (cJSON *it = j->inputs ? j->inputs->child : NULL; it; it = it->next, k++) {
        helium__submit_job__inputs_entry__init(&ent[k]);
        ent[k].key = it->string;
        ent[k].value = cJSON_IsString(it) ? it->valuestring : "";
        pe[k] = &ent[k];
    }
    Helium__SubmitJob sj = HELIUM__SUBMIT_JOB__INIT;
    sj.workflow = w->wfs[j->wf];
    sj.inputs = pe;
    sj.n_inputs = k;
    sj.policy = (char *)w->policy;
    sj.client_tag = j->tag;
    Helium__Request rq = HELIUM__REQUEST__INIT;
    rq.protocol_version = HELIUM__PROTOCOL__PROTOCOL_CURRENT;
    rq.request_id = (uint64_t)ji + 1;
    rq.body_case = HELIUM__REQUEST__BODY_SUBMIT;
    rq.submit = &sj;
    size_t len = helium__request__get_packed_size(&rq);
    uint8_t *buf = malloc(len);
    if (!buf) abort();
    helium__request__pack(&rq, buf);
    jobs_counts before;
    jobs_get_counts(w->c->jobs, &before);
    double t0 = cpu_now();
    cp_on_frame(w->c, (const uint8_t *)"client", 6, false, buf, len);
    w->coord_cpu_s += cpu_now() - t0;
    w->coord_calls++;
    free(buf);
    free(ent);
    free(pe);
    snprintf(j->job_id, sizeof j->job_id, "job-%" PRIu64, before.submitted + 1);
    job_t *cj = jobs_get(w->c->jobs, j->job_id);
    if (!cj || !cj->client_tag || strcmp(cj->client_tag, j->tag)) {
        fprintf(stderr, "helium-sim: job %s was not accepted: %s\n", j->tag, he_msg());
        return -1;
    }
    j->submitted = true;
    w->active[w->n_active++] = ji;
    return 0;
}

/* ---------------------------------------------------------------- scenario */

static char *slurp(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *b = n >= 0 ? malloc((size_t)n + 1) : NULL;
    if (b && fread(b, 1, (size_t)n, f) != (size_t)n) {
        free(b);
        b = NULL;
    }
    fclose(f);
    if (b) {
        b[n] = 0;
        *len = (size_t)n;
    }
    return b;
}

static int load_scenario(sim_world *w, const char *path) {
    size_t len;
    char *text = slurp(path, &len);
    if (!text) return he_set(HE_EIO, "cannot read %s", path);
    w->scen = cJSON_ParseWithLength(text, len);
    free(text);
    cJSON *wfs = cJSON_GetObjectItem(w->scen, "workflows"), *jobs = cJSON_GetObjectItem(w->scen, "jobs");
    if (!cJSON_IsArray(wfs) || !cJSON_IsArray(jobs)) return he_set(HE_EFORMAT, "%s: want workflows and jobs", path);
    w->n_wfs = cJSON_GetArraySize(wfs);
    w->wfs = calloc((size_t)w->n_wfs + 1, sizeof *w->wfs);
    int i = 0;
    for (cJSON *it = wfs->child; it; it = it->next, i++) {
        char *s = cJSON_PrintUnformatted(it);
        wf_t *wf = NULL;
        int rc = s ? wf_parse_json(s, strlen(s), &wf) : HE_ENOMEM;
        free(s);
        if (rc < 0) return he_set(rc, "%s: workflow %d: %s", path, i, he_msg());
        rc = wfp_to_proto(wf, &w->wfs[i]);
        wf_destroy(&wf);
        if (rc < 0) return rc;
    }
    w->n_jobs = cJSON_GetArraySize(jobs);
    w->jobs = calloc((size_t)w->n_jobs + 1, sizeof *w->jobs);
    w->active = calloc((size_t)w->n_jobs + 1, sizeof *w->active);
    i = 0;
    for (cJSON *it = jobs->child; it; it = it->next, i++) {
        sim_job *j = &w->jobs[i];
        cJSON *wf = cJSON_GetObjectItem(it, "wf"), *t = cJSON_GetObjectItem(it, "t");
        cJSON *tag = cJSON_GetObjectItem(it, "tag");
        j->wf = cJSON_IsNumber(wf) ? wf->valueint : -1;
        if (j->wf < 0 || j->wf >= w->n_wfs) return he_set(HE_EFORMAT, "%s: job %d: bad wf", path, i);
        j->t = cJSON_IsNumber(t) ? t->valuedouble : 0;
        j->inputs = cJSON_GetObjectItem(it, "inputs");
        char buf[64];
        snprintf(buf, sizeof buf, "j%d", i);
        j->tag = strdup(cJSON_IsString(tag) ? tag->valuestring : buf);
    }
    return 0;
}

static int load_cost(const char *path, sim_cost *c) {
    size_t len;
    char *text = slurp(path, &len);
    if (!text) return he_set(HE_EIO, "cannot read %s", path);
    cJSON *j = cJSON_ParseWithLength(text, len);
    free(text);
    if (!j) return he_set(HE_EFORMAT, "%s: not JSON", path);
    cJSON *m = cJSON_GetObjectItem(j, "model");
    if (!m) m = j;
    c->attn_dec = -1; /* absent: decode rows are priced as prefill pairs (attn_s) */
    struct { const char *k; double *v; } f[] = {{"step_s", &c->step}, {"tok_s", &c->tok}, {"attn_s", &c->attn},
                                                 {"attn_dec_s", &c->attn_dec},
                                                 {"seq_s", &c->seq}, {"out_s", &c->out},
                                                 {"pull_fixed_s", &c->pull_fixed}, {"pull_byte_s", &c->pull_byte},
                                                 {"scale_decode", &c->scale_dec}, {"scale_mixed", &c->scale_mix}};
    for (size_t i = 0; i < sizeof f / sizeof f[0]; i++) {
        cJSON *x = cJSON_GetObjectItem(m, f[i].k);
        if (cJSON_IsNumber(x)) *f[i].v = x->valuedouble;
    }
    cJSON_Delete(j);
    return 0;
}

/* ---------------------------------------------------------------- report */

static int cmp_d(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static double pct(const double *s, int n, double q) {
    int k = (int)(q / 100.0 * n + 0.999999);
    if (k < 1) k = 1;
    if (k > n) k = n;
    return s[k - 1];
}

static void report(sim_world *w, FILE *f, double wall_s, const sim_geom *g) {
    double *lat = malloc(sizeof(double) * (size_t)(w->n_jobs + 1));
    int n = 0, failed = 0;
    double first = 1e300, last = 0;
    for (int i = 0; i < w->n_jobs; i++) {
        sim_job *j = &w->jobs[i];
        if (j->t < first) first = j->t;
        if (!j->ended || !j->ok) {
            failed++;
            continue;
        }
        lat[n++] = j->end - j->t;
        if (j->end > last) last = j->end;
    }
    qsort(lat, (size_t)n, sizeof *lat, cmp_d);
    double mk = n ? last - first : 0;
    sched_policy pol = (sched_policy)sched_policy_from_name(w->policy);
    const opt_counters *oc = opt_stats(w->c->opt, pol);
    simw_stats tot = {0};
    for (int i = 0; i < w->n_workers; i++) {
        simw_stats s;
        simw_get_stats(w->w[i], &s);
        tot.steps += s.steps;
        tot.busy_s += s.busy_s;
        tot.busy_dec_s += s.busy_dec_s;
        tot.batch_tokens += s.batch_tokens;
        tot.pulls += s.pulls;
        tot.pulled_bytes += s.pulled_bytes;
        tot.evictions += s.evictions;
        tot.decode_rows += s.decode_rows;
        tot.prefill_tokens += s.prefill_tokens;
    }
    double step_ms = tot.steps ? tot.busy_s / (double)tot.steps * 1e3 : 0;
    uint64_t dec = w->decisions + w->warm_decisions;
    double per_dec_us = dec ? w->coord_cpu_s / (double)dec * 1e6 : 0;
    fprintf(f, "{\"policy\":\"%s\",\"workers\":%d,\"n_jobs\":%d,\"jobs_done\":%d,\"jobs_failed\":%d,", w->policy,
            w->n_workers, w->n_jobs, n, failed);
    fprintf(f, "\"makespan_s\":%.4f,\"throughput_wpm\":%.3f,\"latency_p50_s\":%.4f,\"latency_p99_s\":%.4f,", mk,
            mk > 0 ? n / mk * 60.0 : 0, n ? pct(lat, n, 50) : 0, n ? pct(lat, n, 99) : 0);
    double sum = 0;
    for (int i = 0; i < n; i++) sum += lat[i];
    fprintf(f, "\"latency_mean_s\":%.4f,", n ? sum / n : 0);
    fprintf(f,
            "\"prompt_tokens\":%" PRIu64 ",\"computed_tokens\":%" PRIu64 ",\"cached_tokens\":%" PRIu64
            ",\"pulled_tokens\":%" PRIu64 ",\"generated_tokens\":%" PRIu64 ",\"min_prompt_tokens\":%" PRIu64 ",",
            oc->prompt_tokens, oc->computed_tokens, oc->cached_tokens, oc->pulled_tokens, oc->generated_tokens,
            oc->min_prompt_tokens);
    fprintf(f, "\"hit_rate\":%.4f,\"over_min\":%.4f,", oc->prompt_tokens ? (double)oc->cached_tokens / oc->prompt_tokens : 0,
            oc->min_prompt_tokens ? (double)oc->computed_tokens / oc->min_prompt_tokens : 0);
    fprintf(f, "\"kv_pulls\":%" PRIu64 ",\"kv_pull_bytes\":%" PRIu64 ",\"worker_pulls\":%" PRIu64
               ",\"worker_pull_bytes\":%" PRIu64 ",",
            w->c->st.kv_pulls, w->c->st.kv_pull_bytes, tot.pulls, tot.pulled_bytes);
    fprintf(f, "\"warm_tasks\":%" PRIu64 ",\"rcache_hits\":%" PRIu64 ",\"dedup_hits\":%" PRIu64 ",\"held\":%" PRIu64
               ",\"kv_waits\":%" PRIu64 ",\"evictions\":%" PRIu64 ",",
            oc->warm_tasks, oc->rcache_hits, oc->dedup_hits, oc->held, oc->kv_waits, tot.evictions);
    fprintf(f, "\"steps\":%" PRIu64 ",\"mean_step_ms\":%.4f,\"busy_s\":%.4f,\"busy_decode_s\":%.4f,\"utilization\":%.4f,",
            tot.steps, step_ms, tot.busy_s, tot.busy_dec_s, mk > 0 ? tot.busy_s / (mk * w->n_workers) : 0);
    fprintf(f, "\"decisions\":%" PRIu64 ",\"warm_decisions\":%" PRIu64 ",\"coord_cpu_s\":%.4f,\"coord_cpu_per_decision_us\":%.2f,",
            w->decisions, w->warm_decisions, w->coord_cpu_s, per_dec_us);
    sched_counters sc;
    sched_get_counters(w->c->sched, &sc);
    fprintf(f, "\"placements\":%" PRIu64 ",\"passes\":%" PRIu64 ",\"placements_skipped\":%" PRIu64 ",",
            sc.placements, w->passes, w->c->pl.skipped);
    fprintf(f, "\"placed_again\":{\"new\":%" PRIu64 ",\"room\":%" PRIu64 ",\"kv\":%" PRIu64 ",\"hold\":%" PRIu64 "},",
            w->c->pl.again[0], w->c->pl.again[1], w->c->pl.again[2], w->c->pl.again[3]);
    double place_us = dec ? w->coord_place_cpu_s / (double)dec * 1e6 : 0;
    fprintf(f, "\"coord_place_cpu_s\":%.4f,\"place_cpu_per_decision_us\":%.2f,\"place_over_step\":%.5f,",
            w->coord_place_cpu_s, place_us, step_ms > 0 ? place_us / 1e3 / step_ms : 0);
    fprintf(f, "\"decision_over_step\":%.5f,\"coord_cpu_over_makespan\":%.5f,",
            step_ms > 0 ? per_dec_us / 1e3 / step_ms : 0, mk > 0 ? w->coord_cpu_s / mk : 0);
    fprintf(f, "\"coord_time\":%.3f,\"turns\":%" PRIu64 ",\"turn_msgs\":%" PRIu64 ",\"coord_busy_s\":%.4f,"
               "\"coord_busy_over_makespan\":%.5f,\"turn_mean_ms\":%.4f,",
            w->coord_time, w->turns, w->turn_msgs, w->coord_busy_s, mk > 0 ? w->coord_busy_s / mk : 0,
            w->turns ? w->coord_busy_s / (double)w->turns * 1e3 : 0);
    fprintf(f, "\"geometry\":{\"block_size\":%d,\"kv_blocks\":%d,\"max_seqs\":%d,\"batch_tokens\":%d,\"n_ctx\":%d},",
            g->block_size, g->kv_blocks, g->max_seqs, g->batch_tokens, g->n_ctx);
    fprintf(f, "\"sim_wall_s\":%.3f}\n", wall_s);
    free(lat);
}

/* ---------------------------------------------------------------- main */

static void usage(FILE *f) {
    fprintf(f, "usage: helium-sim --model FILE --scenario JOBS.json [--workers N] [--policy P] [--cost COST.json]\n"
               "       [--kv-blocks N] [--block-size N] [--max-seqs N] [--batch-tokens N] [--ctx N]\n"
               "       [--n-layers N] [--kv-dim N] [--baseline-pulls 0|1] [--heartbeat-ms N]\n"
               "       [--cores N [--bg-load X]] [--coord-time X] [--max-active-jobs N] [--helium-feed N]\n"
               "       [--out RESULT.json] [--outputs DIGESTS.txt] [--quiet]\n");
}

static int build_usable(sim_world *w) {
    int32_t V = tok_n_vocab(w->tok);
    w->usable = malloc(sizeof(int32_t) * (size_t)V);
    if (!w->usable) return HE_ENOMEM;
    char piece[64];
    for (int32_t i = 0; i < V; i++) {
        if (tok_is_eog(w->tok, i) || i == tok_bos(w->tok)) continue;
        int n = tok_decode_piece(w->tok, i, false, piece, sizeof piece);
        if (n <= 0 || memchr(piece, 0, (size_t)n)) continue;
        w->usable[w->n_usable++] = i;
    }
    return w->n_usable ? 0 : he_set(HE_EINVAL, "the tokenizer has no usable output tokens");
}

int main(int argc, char **argv) {
    const char *model = NULL, *scen = NULL, *cost_path = NULL, *out_path = NULL, *digest_path = NULL;
    const char *policy = "helium";
    int n_workers = 2, baseline_pulls = 0, hb_ms = 500, cores = 0;
    long max_active = -1; /* the coordinator's default (coord.h) */
    long helium_feed = -1;  /* the coordinator's default (coord.h) */
    double bg_load = 0, coord_time = 0;
    bool quiet = false;
    sim_geom g = {.block_size = 16, .kv_blocks = 2048, .max_seqs = 64, .batch_tokens = 512, .n_ctx = 2048,
                  .n_layers = 4, .kv_dim = 128};
    sim_cost cost = {.step = 2e-3, .tok = 1.5e-4, .attn = 1e-8, .attn_dec = -1, .pull_fixed = 1e-3, .pull_byte = 1e-9};
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        bool ok = true;
        if (!strcmp(a, "--quiet")) {
            quiet = true;
            continue;
        }
        if (!strcmp(a, "--help")) {
            usage(stdout);
            return 0;
        }
        if (!v) {
            usage(stderr);
            return 2;
        }
        if (!strcmp(a, "--model")) model = v;
        else if (!strcmp(a, "--scenario")) scen = v;
        else if (!strcmp(a, "--cost")) cost_path = v;
        else if (!strcmp(a, "--out")) out_path = v;
        else if (!strcmp(a, "--outputs")) digest_path = v;
        else if (!strcmp(a, "--policy")) policy = v;
        else if (!strcmp(a, "--workers")) ok = args_int(v, 1, DIR_MAX_WORKERS, &n_workers);
        else if (!strcmp(a, "--kv-blocks")) ok = args_int(v, 8, 1 << 24, &g.kv_blocks);
        else if (!strcmp(a, "--block-size")) ok = args_int(v, 1, 1024, &g.block_size);
        else if (!strcmp(a, "--max-seqs")) ok = args_int(v, 1, 4096, &g.max_seqs);
        else if (!strcmp(a, "--batch-tokens")) ok = args_int(v, 1, 1 << 20, &g.batch_tokens);
        else if (!strcmp(a, "--ctx")) ok = args_int(v, 16, 1 << 20, &g.n_ctx);
        else if (!strcmp(a, "--n-layers")) ok = args_int(v, 1, 1024, (int *)&g.n_layers);
        else if (!strcmp(a, "--kv-dim")) ok = args_int(v, 1, 1 << 16, (int *)&g.kv_dim);
        else if (!strcmp(a, "--baseline-pulls")) ok = args_int(v, 0, 1, &baseline_pulls);
        else if (!strcmp(a, "--heartbeat-ms")) ok = args_int(v, 10, 60000, &hb_ms);
        else if (!strcmp(a, "--cores")) ok = args_int(v, 0, 1 << 20, &cores);
        else if (!strcmp(a, "--bg-load")) ok = args_double(v, 0, 1e6, &bg_load);
        else if (!strcmp(a, "--coord-time")) ok = args_double(v, 0, 1e6, &coord_time);
        else if (!strcmp(a, "--max-active-jobs")) ok = args_long(v, 0, 1000000, &max_active);
        else if (!strcmp(a, "--helium-feed")) ok = args_long(v, 0, 1000000, &helium_feed);
        else {
            fprintf(stderr, "helium-sim: unknown option %s\n", a);
            usage(stderr);
            return 2;
        }
        if (!ok) {
            fprintf(stderr, "helium-sim: bad value '%s' for %s\n", v, a);
            return 2;
        }
        i++;
    }
    if (!model || !scen) {
        usage(stderr);
        return 2;
    }
    if (sched_policy_from_name(policy) < 0) {
        fprintf(stderr, "helium-sim: unknown policy '%s' (want " SCHED_POLICY_NAMES ")\n", policy);
        return 2;
    }
    if (cost_path && load_cost(cost_path, &cost)) {
        fprintf(stderr, "helium-sim: %s\n", he_msg());
        return 1;
    }
    clog_set_level(quiet ? CLOG_ERROR : getenv("HELIUM_SIM_DEBUG") ? CLOG_DEBUG : CLOG_WARN);
    double wall0 = (double)clock_mono_us() / 1e6;
    sim_world *w = calloc(1, sizeof *w);
    w->policy = policy;
    w->cores = cores;
    w->bg_load = bg_load;
    w->coord_time = coord_time;
    if (load_scenario(w, scen)) {
        fprintf(stderr, "helium-sim: %s\n", he_msg());
        return 1;
    }
    static const char *const hosts[] = {"127.0.0.1", "localhost"};
    coord_config cfg = {.model_path = model, .keep_jobs = (size_t)w->n_jobs + 16, .heartbeat_ms = hb_ms,
                        .worker_timeout_ms = 1 << 30, .policy = policy, .helium_load_weight = -1,
                        .helium_starve_tokens = -1, .helium_hold_idle = -1, .helium_split = -1,
                        .baseline_pulls = baseline_pulls, .helium_kv_admit = -1, .max_active_jobs = max_active,
                        .helium_feed = helium_feed, .submit_clock = sim_clock_us, .submit_clock_ctx = w,
                        .allow_hosts = hosts,
                        .n_allow_hosts = 2};
    wsend_i ws = {.ctx = w, .dispatch = ws_dispatch, .cancel = ws_cancel, .pin_steps = ws_pin_steps,
                  .unpin = ws_unpin, .resync = ws_resync, .register_ack = ws_register_ack};
    w->c = coord_core_new(&cfg, &ws);
    if (!w->c) {
        fprintf(stderr, "helium-sim: %s\n", he_msg());
        return 1;
    }
    w->tok = w->c->tok;
    if (build_usable(w)) {
        fprintf(stderr, "helium-sim: %s\n", he_msg());
        return 1;
    }
    g.root = bh_root("helium-sim", 10);
    w->n_workers = n_workers;
    w->w = calloc((size_t)n_workers, sizeof *w->w);
    w->touched = calloc((size_t)n_workers, sizeof *w->touched);
    for (int i = 0; i < n_workers; i++) {
        w->w[i] = simw_new(w, i, &g, &cost);
        if (!w->w[i]) {
            fprintf(stderr, "helium-sim: out of memory\n");
            return 1;
        }
        simw_register(w->w[i]);
        sim_at(w, (double)hb_ms / 1e3 * (i + 1) / n_workers, 2, i, 0);
    }
    settle(w);
    for (int i = 0; i < w->n_jobs; i++) sim_at(w, w->jobs[i].t, 3, i, 0);
    int rc = 0;
    while (w->n_ev && w->n_ended < w->n_jobs) {
        event e = ev_pop(w);
        w->now = e.t;
        switch (e.kind) {
        case 0: simw_step_end(w->w[e.i]); break;
        case 1: simw_pull_end(w->w[e.i], e.token); break;
        case 2:
            simw_heartbeat(w->w[e.i]);
            sim_at(w, w->now + hb_ms / 1e3, 2, e.i, 0);
            break;
        case 3:
            if (submit(w, e.i)) rc = 1;
            break;
        case 4: turn_done(w); break;
        }
        if (w->n_ev && w->heap[0].t <= w->now) continue; /* same instant: settle once */
        if (w->coord_time > 0) {
            if (!w->turn_pending && coord_has_work(w)) timed_turn(w);
        } else {
            settle(w);
        }
        check_ended(w);
        if (rc) break;
    }
    if (w->n_ended < w->n_jobs) {
        fprintf(stderr, "helium-sim: %d of %d jobs never ended (simulated time %.1f s)\n", w->n_jobs - w->n_ended,
                w->n_jobs, w->now);
        rc = 1;
    }
    double wall = (double)clock_mono_us() / 1e6 - wall0;
    FILE *f = out_path ? fopen(out_path, "w") : stdout;
    if (f) {
        report(w, f, wall, &g);
        if (f != stdout) fclose(f);
    }
    if (digest_path) {
        FILE *d = fopen(digest_path, "w");
        for (int i = 0; d && i < w->n_jobs; i++)
            fprintf(d, "%s %016" PRIx64 " %s\n", w->jobs[i].tag, w->jobs[i].digest, w->jobs[i].ok ? "DONE" : "FAILED");
        if (d) fclose(d);
    }
    for (int i = 0; i < w->n_jobs; i++) {
        if (w->jobs[i].ended && !w->jobs[i].ok) rc = 1;
        free(w->jobs[i].tag);
    }
    for (int i = 0; i < n_workers; i++) simw_destroy(&w->w[i]);
    coord_destroy(&w->c);
    for (int i = 0; i < w->n_wfs; i++) wfp_free(&w->wfs[i]);
    msg m;
    while (q_pop(&w->inbox, &m)) free(m.buf);
    while (q_pop(&w->outbox, &m)) free(m.buf);
    free(w->inbox.v);
    free(w->outbox.v);
    cJSON_Delete(w->scen);
    free(w->wfs);
    free(w->jobs);
    free(w->active);
    free(w->heap);
    free(w->usable);
    free(w->w);
    free(w->touched);
    free(w);
    return rc;
}
