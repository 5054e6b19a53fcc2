/* fake_coord: a scripted stand-in for the coordinator, to test
 * `helium-worker serve` on its own (tests/cli/worker_serve.sh).
 *
 *   fake_coord ENDPOINT N_WORKERS PROMPT_A PROMPT_B EXPECT_A EXPECT_B MAX_TOKENS main|rejoin|policy
 *
 * PROMPT_* and EXPECT_* are comma-separated token ids (EXPECT_* are the ids
 * `helium-worker generate --prompt-ids PROMPT_* --max-tokens MAX_TOKENS` gives).
 * It binds a ROUTER at ENDPOINT, waits for N_WORKERS (1 or 2) registrations
 * (ids w1, w2), acks them, and then checks, printing "ok ..." per step and
 * "FAIL ..." (exit 1) on the first mismatch:
 *   1. w1 runs A: ids == EXPECT_A;
 *   2. w1 runs B (shares a prefix with A): ids == EXPECT_B, cached_tokens > 0,
 *      computed_tokens == prompt_tokens - cached_tokens;
 *   3. (2 workers) w2 runs A with a pull hint naming w1's data endpoint:
 *      ids == EXPECT_A, pulled_tokens > 0; w2's next heartbeat reports
 *      pull_us > 0 and pull_bytes > 0;
 *   4. w1 gets malformed frames (garbage, a wrong protocol_version, two
 *      frames, an unknown field, an empty frame) and still runs A streamed:
 *      ids == EXPECT_A, cached_tokens > 0, the OpProgress chunks
 *      concatenate to the result's text and ids; its heartbeat counts the
 *      bad frames;
 *   5. cache events: seq has no gaps, and the directory built from them holds
 *      every full block of A (hashes from the registered model root);
 *      a CacheResync is answered by a snapshot holding them too;
 *   6. a dispatch followed at once by Cancel ends with exactly one OpResult
 *      (canceled, or finished if it was quicker);
 *   7. several dispatches at once (continuous batching) all match;
 * then it exits with the workers still running ("main" mode). Run again on
 * the same endpoint in "rejoin" mode, it plays a restarted coordinator: the
 * workers must register again with a snapshot holding A's blocks; then it
 * sends Shutdown (the script checks that every worker exits 0).
 * "policy" mode (1 worker, w1, started with --block-size 8 --ctx 256
 * --kv-blocks 64) checks the dispatch policies of the workflow optimizer:
 *   - no_cache: A again reports cached_tokens == 0 and EXPECT_A; a prompt
 *     run no_cache and then normally is not cached the second time (nothing
 *     was committed) and both give the same ids;
 *   - warm: a 32-token prompt W answers with no ids/text, finish_reason
 *     "warm", computed 32; then W + 12 tokens reports cached_tokens == 32 and
 *     the same ids as a no_cache run of it;
 *   - pin: P (4 blocks) warmed and pinned under tag "t1" stays cached while
 *     prompts of 4 x 25 pages (more than the 64 KV blocks) flood the cache;
 *     after Unpin{t1} the same flood evicts it (cached_tokens drops to 0);
 *   - pin budget: pinning 2 x 24 blocks under one tag stops at 32 (half the
 *     KV blocks) and counts 16 in pin_refused; an Unpin that arrives while
 *     its warm task is still queued leaves nothing pinned;
 *   - heartbeat counters pinned_blocks, pin_tags, warm_tasks, pin_refused.
 * Prompts beyond A are token sequences drawn (by a fixed generator) from A's
 * tokens; their first blocks all differ.
 * Built by the test with
 *   gcc fake_coord.c $HELIUM_SRC/common/blockhash.c $HELIUM_BUILD/proto/helium.pb-c.c
 *       -I$HELIUM_BUILD/proto -I$HELIUM_SRC/common -lprotobuf-c -lzmq -lxxhash
 */
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <zmq.h>

#include "blockhash.h"
#include "helium.pb-c.h"

#define PV HELIUM__PROTOCOL__PROTOCOL_CURRENT
#define MAXW 2
#define WAIT_MS 60000

/* The wire's FinishReason as the word the checks below compare. */
static const char *finish_name(Helium__FinishReason f) {
    switch (f) {
    case HELIUM__FINISH_REASON__FINISH_STOP: return "stop";
    case HELIUM__FINISH_REASON__FINISH_LENGTH: return "length";
    case HELIUM__FINISH_REASON__FINISH_CONTEXT: return "context";
    case HELIUM__FINISH_REASON__FINISH_ERROR: return "error";
    case HELIUM__FINISH_REASON__FINISH_WARM: return "warm";
    default: return "";
    }
}

typedef struct {
    char id[16];
    bool registered;
    uint64_t root;
    uint32_t bs;
    char data_ep[256];
    uint64_t last_seq;
    uint64_t *dir; /* block hashes the worker holds, per its events */
    size_t n_dir, cap_dir;
    int heartbeats, snapshots;
    uint64_t bad_frames; /* from its last heartbeat */
    bool snapshot_seen_since_mark;
    char ckey[64][48];   /* counters of its last heartbeat */
    uint64_t cval[64];
    int n_counters;
} worker;

typedef struct {
    int32_t v[4096];
    int n;
} ids;

static void *g_router;
static worker g_w[MAXW];
static int g_nw;

static void fail(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    fprintf(stdout, "FAIL ");
    vfprintf(stdout, fmt, ap);
    fprintf(stdout, "\n");
    va_end(ap);
    fflush(stdout);
    exit(1);
}

static int64_t now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void parse_ids(const char *s, ids *out) {
    out->n = 0;
    while (*s && out->n < 4096) {
        char *end;
        long x = strtol(s, &end, 10);
        if (end == s) break;
        out->v[out->n++] = (int32_t)x;
        s = *end == ',' ? end + 1 : end;
    }
}

static worker *find_worker(const char *id, size_t len) {
    for (int i = 0; i < g_nw; i++)
        if (strlen(g_w[i].id) == len && !memcmp(g_w[i].id, id, len)) return &g_w[i];
    return NULL;
}

static void dir_add(worker *w, uint64_t h) {
    for (size_t i = 0; i < w->n_dir; i++)
        if (w->dir[i] == h) return;
    if (w->n_dir == w->cap_dir) {
        w->cap_dir = w->cap_dir ? 2 * w->cap_dir : 256;
        w->dir = realloc(w->dir, w->cap_dir * sizeof *w->dir);
    }
    w->dir[w->n_dir++] = h;
}

static void dir_del(worker *w, uint64_t h) {
    for (size_t i = 0; i < w->n_dir; i++)
        if (w->dir[i] == h) {
            w->dir[i] = w->dir[--w->n_dir];
            return;
        }
}

static bool dir_has(const worker *w, uint64_t h) {
    for (size_t i = 0; i < w->n_dir; i++)
        if (w->dir[i] == h) return true;
    return false;
}

static void send_raw(const worker *w, const void *data, size_t len, bool extra_frame) {
    zmq_send(g_router, w->id, strlen(w->id), ZMQ_SNDMORE);
    if (extra_frame) zmq_send(g_router, "xx", 2, ZMQ_SNDMORE);
    zmq_send(g_router, data, len, 0);
}

static void send_cmsg(const worker *w, Helium__CoordMsg *c) {
    if (!c->protocol_version) c->protocol_version = PV;
    size_t n = helium__coord_msg__get_packed_size(c);
    uint8_t *buf = malloc(n ? n : 1);
    helium__coord_msg__pack(c, buf);
    send_raw(w, buf, n, false);
    free(buf);
}

/* Receives one WorkerMsg (or NULL on timeout); keeps registration, heartbeat
 * and cache-event bookkeeping; *from is the sender. */
static Helium__WorkerMsg *recv_wmsg(int timeout_ms, worker **from) {
    zmq_pollitem_t it = {.socket = g_router, .events = ZMQ_POLLIN};
    if (zmq_poll(&it, 1, timeout_ms) <= 0) return NULL;
    zmq_msg_t id, body;
    zmq_msg_init(&id);
    zmq_msg_init(&body);
    zmq_msg_recv(&id, g_router, 0);
    if (!zmq_msg_more(&id)) fail("worker message without a body frame");
    zmq_msg_recv(&body, g_router, 0);
    if (zmq_msg_more(&body)) fail("worker message with more than one body frame");
    Helium__WorkerMsg *m = helium__worker_msg__unpack(NULL, zmq_msg_size(&body), zmq_msg_data(&body));
    if (!m) fail("undecodable WorkerMsg");
    if (m->protocol_version != PV) fail("WorkerMsg protocol_version %u", m->protocol_version);
    worker *w = find_worker(zmq_msg_data(&id), zmq_msg_size(&id));
    if (!w) fail("message from unknown routing id '%.*s'", (int)zmq_msg_size(&id), (char *)zmq_msg_data(&id));
    if (strcmp(m->worker_id, w->id)) fail("worker_id '%s' differs from routing id '%s'", m->worker_id, w->id);
    zmq_msg_close(&id);
    zmq_msg_close(&body);
    *from = w;
    switch (m->body_case) {
    case HELIUM__WORKER_MSG__BODY_REG: {
        Helium__Register *r = m->reg;
        if (!r->model_root || r->block_size == 0 || r->n_layers == 0 || r->kv_dim == 0 || r->kv_blocks_total == 0 ||
            r->n_ctx == 0 || strcmp(r->kv_dtype, "f32") || strcmp(r->backend, "cpu") || strcmp(r->worker_id, w->id))
            fail("bad Register from %s", w->id);
        w->root = r->model_root;
        w->bs = r->block_size;
        snprintf(w->data_ep, sizeof w->data_ep, "%s", r->data_endpoint);
        Helium__RegisterAck ack = HELIUM__REGISTER_ACK__INIT;
        ack.worker_id = w->id;
        ack.accepted = true;
        ack.heartbeat_ms = 200;
        Helium__CoordMsg c = HELIUM__COORD_MSG__INIT;
        c.body_case = HELIUM__COORD_MSG__BODY_REGISTER_ACK;
        c.register_ack = &ack;
        send_cmsg(w, &c);
        w->registered = true;
        break;
    }
    case HELIUM__WORKER_MSG__BODY_HEARTBEAT:
        w->heartbeats++;
        if (!m->heartbeat->load) fail("heartbeat without load");
        w->n_counters = 0;
        for (size_t i = 0; i < m->heartbeat->n_counters; i++) {
            const Helium__Heartbeat__CountersEntry *e = m->heartbeat->counters[i];
            if (!strcmp(e->key, "bad_frames")) w->bad_frames = e->value;
            if (w->n_counters < 64) {
                snprintf(w->ckey[w->n_counters], sizeof w->ckey[0], "%s", e->key);
                w->cval[w->n_counters++] = e->value;
            }
        }
        break;
    case HELIUM__WORKER_MSG__BODY_CACHE_EVENTS: {
        Helium__CacheEvents *ce = m->cache_events;
        if (ce->seq != w->last_seq + 1 && !ce->snapshot) /* a snapshot restarts the count */
            fail("%s: cache events seq %llu after %llu", w->id, (unsigned long long)ce->seq,
                 (unsigned long long)w->last_seq);
        w->last_seq = ce->seq;
        if (ce->snapshot) {
            w->n_dir = 0;
            w->snapshots++;
            w->snapshot_seen_since_mark = true;
        }
        for (size_t i = 0; i < ce->n_stored; i++) dir_add(w, ce->stored[i]);
        for (size_t i = 0; i < ce->n_removed; i++) dir_del(w, ce->removed[i]);
        break;
    }
    default: break;
    }
    return m;
}

/* Pumps messages until every worker registered. */
static void wait_registered(int n) {
    int64_t end = now_ms() + WAIT_MS;
    for (;;) {
        int k = 0;
        for (int i = 0; i < n; i++) k += g_w[i].registered && g_w[i].snapshots > 0;
        if (k == n) return;
        if (now_ms() > end) fail("workers did not register within %d ms", WAIT_MS);
        worker *w;
        Helium__WorkerMsg *m = recv_wmsg(200, &w);
        if (m) helium__worker_msg__free_unpacked(m, NULL);
    }
}

typedef struct {
    ids out;
    char text[65536];
    char finish[32];
    uint32_t prompt, cached, computed, pulled, generated;
    int err;          /* ErrorCode, 0 = none */
    char stream_text[65536];
    ids stream_ids;
    int n_progress;
} result;

static char *g_stop; /* stop string for the next dispatch (NULL: none) */
/* policies for the next dispatch */
static bool g_no_cache, g_warm;
static char *g_pin_tag;
static uint32_t g_pin_steps;
static uint64_t *g_pin;
static size_t g_n_pin;

/* The next dispatches are warm tasks that pin n hashes under tag, needed
 * `steps` ahead; no_pins() goes back to plain dispatches. */
static void warm_pins(char *tag, uint64_t *hashes, int n, uint32_t steps) {
    g_warm = true;
    g_pin_tag = tag;
    g_pin = hashes;
    g_n_pin = (size_t)n;
    g_pin_steps = steps;
}

static void no_pins(void) {
    g_warm = false;
    g_pin_tag = NULL;
    g_pin = NULL;
    g_n_pin = 0;
    g_pin_steps = 0;
}

static void dispatch(const worker *w, uint64_t task, const ids *prompt, int max_tokens, bool stream,
                     Helium__KvPullHint *pull) {
    Helium__Dispatch d = HELIUM__DISPATCH__INIT;
    d.no_cache = g_no_cache;
    d.warm = g_warm;
    d.pin_tag = g_pin_tag ? g_pin_tag : "";
    d.pin_steps = g_pin_steps;
    d.n_pin = g_n_pin;
    d.pin = g_pin;
    d.task_id = task;
    d.job_id = "job1";
    d.op_id = "op";
    d.attempt = 1;
    d.n_prompt_ids = (size_t)prompt->n;
    d.prompt_ids = (int32_t *)prompt->v;
    d.max_tokens = (uint32_t)max_tokens;
    d.stream = stream;
    d.pull = pull;
    if (g_stop) {
        d.n_stop = 1;
        d.stop = &g_stop;
    }
    Helium__CoordMsg c = HELIUM__COORD_MSG__INIT;
    c.body_case = HELIUM__COORD_MSG__BODY_DISPATCH;
    c.dispatch = &d;
    send_cmsg(w, &c);
}

#define MAXTASK 64
static result g_res[MAXTASK];
static bool g_done[MAXTASK];

/* Waits for task's OpResult; results and progress of other tasks (< MAXTASK)
 * are kept for their own wait_result. */
static void wait_result(uint64_t task, result *out) {
    if (task >= MAXTASK) fail("task id %llu too large for the test", (unsigned long long)task);
    int64_t end = now_ms() + WAIT_MS;
    while (!g_done[task] && now_ms() < end) {
        worker *w;
        Helium__WorkerMsg *m = recv_wmsg(200, &w);
        if (!m) continue;
        uint64_t tid = m->body_case == HELIUM__WORKER_MSG__BODY_PROGRESS ? m->progress->task_id
                       : m->body_case == HELIUM__WORKER_MSG__BODY_RESULT ? m->result->task_id
                                                                          : MAXTASK;
        if ((m->body_case == HELIUM__WORKER_MSG__BODY_PROGRESS || m->body_case == HELIUM__WORKER_MSG__BODY_RESULT) &&
            (tid >= MAXTASK || g_done[tid]))
            fail("unexpected progress/result for task %llu", (unsigned long long)tid);
        result *r = tid < MAXTASK ? &g_res[tid] : NULL;
        if (m->body_case == HELIUM__WORKER_MSG__BODY_PROGRESS) {
            Helium__OpProgress *p = m->progress;
            strncat(r->stream_text, p->text, sizeof r->stream_text - strlen(r->stream_text) - 1);
            for (size_t i = 0; i < p->n_ids && r->stream_ids.n < 4096; i++) r->stream_ids.v[r->stream_ids.n++] = p->ids[i];
            if (p->n_generated != (uint32_t)r->stream_ids.n)
                fail("task %llu: progress n_generated %u but %d ids streamed", (unsigned long long)tid,
                     p->n_generated, r->stream_ids.n);
            r->n_progress++;
        }
        if (m->body_case == HELIUM__WORKER_MSG__BODY_RESULT) {
            Helium__OpResult *o = m->result;
            if (strcmp(o->job_id, "job1") || strcmp(o->op_id, "op") || o->attempt != 1)
                fail("task %llu: result header not echoed", (unsigned long long)tid);
            for (size_t i = 0; i < o->n_ids && r->out.n < 4096; i++) r->out.v[r->out.n++] = o->ids[i];
            snprintf(r->text, sizeof r->text, "%s", o->text);
            r->prompt = o->prompt_tokens;
            r->cached = o->cached_tokens;
            r->computed = o->computed_tokens;
            r->pulled = o->pulled_tokens;
            r->generated = o->generated_tokens;
            snprintf(r->finish, sizeof r->finish, "%s", finish_name(o->finish_reason));
            r->err = o->error ? (int)o->error->code : 0;
            g_done[tid] = true;
        }
        helium__worker_msg__free_unpacked(m, NULL);
    }
    if (!g_done[task]) fail("no result for task %llu within %d ms", (unsigned long long)task, WAIT_MS);
    *out = g_res[task];
}

static void expect_ids(const char *what, const result *r, const ids *want) {
    if (r->err) fail("%s: error code %d", what, r->err);
    bool eq = r->out.n == want->n && !memcmp(r->out.v, want->v, sizeof(int32_t) * (size_t)want->n);
    if (!eq) {
        fprintf(stdout, "%s: got", what);
        for (int i = 0; i < r->out.n; i++) fprintf(stdout, " %d", r->out.v[i]);
        fprintf(stdout, "\n%s: want", what);
        for (int i = 0; i < want->n; i++) fprintf(stdout, " %d", want->v[i]);
        fprintf(stdout, "\n");
        fail("%s: generated ids differ from helium-worker generate", what);
    }
    if (r->generated != (uint32_t)want->n) fail("%s: generated_tokens %u", what, r->generated);
    if (r->computed != r->prompt - r->cached) fail("%s: computed_tokens %u != %u - %u", what, r->computed, r->prompt, r->cached);
}

/* Pumps messages for ms milliseconds (heartbeats, events). */
static void pump(int ms) {
    int64_t end = now_ms() + ms;
    while (now_ms() < end) {
        worker *w;
        Helium__WorkerMsg *m = recv_wmsg(50, &w);
        if (m) helium__worker_msg__free_unpacked(m, NULL);
    }
}

/* Pumps messages until w sent n more heartbeats (they reflect everything it
 * sent before them). */
static void wait_hb(worker *w, int n) {
    int want = w->heartbeats + n;
    int64_t end = now_ms() + WAIT_MS;
    while (w->heartbeats < want) {
        if (now_ms() > end) fail("%s sent no heartbeat within %d ms", w->id, WAIT_MS);
        worker *f;
        Helium__WorkerMsg *m = recv_wmsg(50, &f);
        if (m) helium__worker_msg__free_unpacked(m, NULL);
    }
}

/* Counter key of w's last heartbeat; fails if it is missing. */
static uint64_t counter(const worker *w, const char *key) {
    for (int i = 0; i < w->n_counters; i++)
        if (!strcmp(w->ckey[i], key)) return w->cval[i];
    fail("%s's heartbeat lacks counter '%s'", w->id, key);
    return 0;
}

static void expect_counter(const worker *w, const char *key, uint64_t want) {
    uint64_t v = counter(w, key);
    if (v != want) fail("%s: heartbeat counter %s = %llu, want %llu", w->id, key, (unsigned long long)v,
                        (unsigned long long)want);
}

/* A prompt of n tokens: A's first token, then tokens of A picked by a fixed
 * generator seeded by k. */
static void gen_prompt(const ids *A, unsigned k, int n, ids *out) {
    uint64_t x = 0x9E3779B97F4A7C15ull * (k + 1);
    out->n = 0;
    out->v[out->n++] = A->v[0];
    while (out->n < n) {
        x = x * 6364136223846793005ull + 1442695040888963407ull;
        out->v[out->n++] = A->v[1 + (int)((x >> 33) % (uint64_t)(A->n - 1))];
    }
}

static void append(ids *a, const ids *b, int from) {
    for (int i = from; i < b->n && a->n < 4096; i++) a->v[a->n++] = b->v[i];
}

static bool same_ids(const result *a, const result *b) {
    return a->out.n == b->out.n && !memcmp(a->out.v, b->out.v, sizeof(int32_t) * (size_t)a->out.n);
}

static void send_unpin(const worker *w, const char *tag) {
    Helium__Unpin u = HELIUM__UNPIN__INIT;
    u.tag = (char *)tag;
    Helium__CoordMsg c = HELIUM__COORD_MSG__INIT;
    c.body_case = HELIUM__COORD_MSG__BODY_UNPIN;
    c.unpin = &u;
    send_cmsg(w, &c);
}

static void send_pin_steps(const worker *w, const char *tag, uint32_t steps) {
    Helium__PinSteps p = HELIUM__PIN_STEPS__INIT;
    p.tag = (char *)tag;
    p.steps = steps;
    Helium__CoordMsg c = HELIUM__COORD_MSG__INIT;
    c.body_case = HELIUM__COORD_MSG__BODY_PIN_STEPS;
    c.pin_steps = &p;
    send_cmsg(w, &c);
}

/* Runs n_prompts warm prompts of 192 tokens (25 KV pages each with the
 * sampled token) one after another, generator seeds seed, seed+1, ... */
static void flood(worker *w, const ids *A, uint64_t *task, unsigned seed, int n_prompts) {
    static ids F;
    for (int k = 0; k < n_prompts; k++) {
        result r;
        gen_prompt(A, seed + (unsigned)k, 192, &F);
        g_warm = true;
        dispatch(w, *task, &F, 1, false, NULL);
        g_warm = false;
        wait_result(*task, &r);
        if (r.err || r.prompt != 192) fail("flood task %llu: error %d, %u prompt tokens", (unsigned long long)*task,
                                           r.err, r.prompt);
        (*task)++;
    }
}

/* Dispatches p with the current policy flags as task and waits for it. */
static void run(worker *w, uint64_t task, const ids *p, int max_tokens, result *r) {
    dispatch(w, task, p, max_tokens, false, NULL);
    wait_result(task, r);
    if (r->err) fail("task %llu: error code %d", (unsigned long long)task, r->err);
    if (r->prompt != (uint32_t)p->n) fail("task %llu: prompt_tokens %u, want %d", (unsigned long long)task,
                                          r->prompt, p->n);
    if (r->computed != r->prompt - r->cached)
        fail("task %llu: computed_tokens %u != %u - %u", (unsigned long long)task, r->computed, r->prompt, r->cached);
}

/* The dispatch policies (see the top of the file). */
static void run_policy(worker *w, const ids *A, const ids *EA, int max_tokens) {
    static ids E, W, Q, P, P2, T, G1, G2, H;
    static result r, r2;
    static uint64_t hp[1024], hg1[1024], hg2[1024], hh[1024];
    if (w->bs != 8) fail("policy mode wants --block-size 8 (got %u)", w->bs);

    /* no_cache */
    run(w, 1, A, max_tokens, &r);
    expect_ids("policy task 1 (A)", &r, EA);
    g_no_cache = true;
    run(w, 2, A, max_tokens, &r);
    g_no_cache = false;
    expect_ids("policy task 2 (A, no_cache)", &r, EA);
    if (r.cached) fail("policy task 2: no_cache dispatch of a cached prompt reports %u cached tokens", r.cached);
    gen_prompt(A, 2, 40, &E);
    g_no_cache = true;
    run(w, 3, &E, max_tokens, &r);
    g_no_cache = false;
    run(w, 4, &E, max_tokens, &r2);
    if (r.cached || r2.cached)
        fail("policy tasks 3/4: cached %u then %u: a no_cache run must neither use nor leave cached pages", r.cached,
             r2.cached);
    if (!same_ids(&r, &r2) || r.out.n == 0) fail("policy tasks 3/4: no_cache and normal runs differ");
    printf("ok policy no_cache: cached prompt not reused (0 cached), nothing committed, same ids\n");

    /* warm */
    gen_prompt(A, 3, 32, &W);
    g_warm = true;
    run(w, 5, &W, max_tokens, &r);
    g_warm = false;
    if (r.out.n || r.text[0] || r.generated || strcmp(r.finish, "warm") || r.cached || r.computed != 32)
        fail("policy task 5 (warm): %d ids, text '%s', %u generated, finish '%s', %u cached, %u computed", r.out.n,
             r.text, r.generated, r.finish, r.cached, r.computed);
    Q = W;
    gen_prompt(A, 4, 13, &T);
    append(&Q, &T, 1);
    run(w, 6, &Q, max_tokens, &r);
    if (r.cached != 32) fail("policy task 6: %u cached tokens after warming its 4-block prefix, want 32", r.cached);
    g_no_cache = true;
    run(w, 7, &Q, max_tokens, &r2);
    g_no_cache = false;
    if (!same_ids(&r, &r2) || r.out.n == 0) fail("policy tasks 6/7: warm-prefixed and isolated runs differ");
    wait_hb(w, 1);
    expect_counter(w, "warm_tasks", 1);
    printf("ok policy warm: prefill only, then 32 of %d tokens cached, same ids as isolated\n", Q.n);

    /* pin, flood, still cached; unpin, flood, evicted */
    gen_prompt(A, 5, 32, &P);
    int np = bh_prefix(w->root, P.v, P.n, (int)w->bs, hp);
    if (np != 4) fail("P has %d blocks", np);
    warm_pins("t1", hp, np, 0);
    run(w, 8, &P, max_tokens, &r);
    no_pins();
    wait_hb(w, 1);
    expect_counter(w, "pinned_blocks", 4);
    expect_counter(w, "pin_tags", 1);
    uint64_t ev0 = counter(w, "evictions");
    uint64_t task = 9;
    flood(w, A, &task, 100, 4);
    P2 = P;
    gen_prompt(A, 6, 11, &T);
    append(&P2, &T, 1);
    run(w, task++, &P2, max_tokens, &r);
    wait_hb(w, 1);
    if (counter(w, "evictions") < ev0 + 40) fail("the flood evicted only %llu blocks",
                                                 (unsigned long long)(counter(w, "evictions") - ev0));
    if (r.cached != 32) fail("policy: pinned prefix not cached after a flood (%u cached tokens, want 32)", r.cached);
    printf("ok policy pin: 4 pinned blocks survived a flood (%llu evictions), 32 tokens cached\n",
           (unsigned long long)(counter(w, "evictions") - ev0));
    send_unpin(w, "t1");
    send_unpin(w, "no-such-tag");
    flood(w, A, &task, 200, 4);
    run(w, task++, &P2, max_tokens, &r2);
    if (r2.cached != 0) fail("policy: %u tokens still cached after Unpin and a flood", r2.cached);
    if (!same_ids(&r, &r2)) fail("policy: P2 cached and recomputed give different ids");
    wait_hb(w, 1);
    expect_counter(w, "pinned_blocks", 0);
    expect_counter(w, "pin_tags", 0);
    printf("ok policy unpin: after Unpin the flood evicted the prefix (0 cached)\n");

    /* pin budget: half of 64 blocks */
    gen_prompt(A, 7, 192, &G1);
    gen_prompt(A, 8, 192, &G2);
    int n1 = bh_prefix(w->root, G1.v, G1.n, (int)w->bs, hg1), n2 = bh_prefix(w->root, G2.v, G2.n, (int)w->bs, hg2);
    if (n1 != 24 || n2 != 24) fail("G1/G2 have %d/%d blocks", n1, n2);
    uint64_t refused0 = counter(w, "pin_refused");
    warm_pins("big", hg1, n1, 0);
    run(w, task++, &G1, 1, &r);
    warm_pins("big", hg2, n2, 0);
    run(w, task++, &G2, 1, &r);
    no_pins();
    wait_hb(w, 1);
    expect_counter(w, "pinned_blocks", 32);
    expect_counter(w, "pin_tags", 1);
    if (counter(w, "pin_refused") != refused0 + 16)
        fail("pin_refused went from %llu to %llu, want +16", (unsigned long long)refused0,
             (unsigned long long)counter(w, "pin_refused"));
    send_unpin(w, "big");
    /* an Unpin that overtakes its warm task: nothing stays pinned */
    gen_prompt(A, 9, 32, &H);
    int nh = bh_prefix(w->root, H.v, H.n, (int)w->bs, hh);
    warm_pins("t2", hh, nh, 0);
    uint64_t th = task++;
    dispatch(w, th, &H, 1, false, NULL);
    no_pins();
    send_unpin(w, "t2");
    wait_result(th, &r);
    if (r.err) fail("policy task %llu: error %d", (unsigned long long)th, r.err);
    wait_hb(w, 1);
    expect_counter(w, "pinned_blocks", 0);
    expect_counter(w, "pin_tags", 0);
    expect_counter(w, "warm_tasks", 2 + 8 + 2 + 1);
    printf("ok policy pin budget: 32 of 48 blocks pinned (half the KV), 16 refused; Unpin released all\n");
}

/* Workflow-aware eviction end to end (a worker with --kv-blocks 40, block
 * size 8, context 256): 12 blocks pinned under "far" (needed in 9 steps) and
 * 8 under "near" (1 step); then the plan advances: PinSteps says "near" is
 * needed 30 steps ahead now (and one for an unknown tag is ignored). A
 * 250-token prompt then needs 32 pages while only 20 are not pinned, so the
 * worker evicts 12 pinned pages: all 8 of "near" (now the furthest) and the
 * last 4 of "far" (tail first), so far's first 8 blocks stay. Checks the
 * counters, which prefix is still cached, the same ids when the prompt is
 * recomputed, and that Unpin of the emptied tag is clean. */
static void run_evict(worker *w, const ids *A) {
    static ids F1, F2, X;
    static result r, r2;
    static uint64_t h1[64], h2[64];
    if (w->bs != 8) fail("evict mode wants --block-size 8 (got %u)", w->bs);
    gen_prompt(A, 21, 96, &F1);
    gen_prompt(A, 22, 64, &F2);
    gen_prompt(A, 23, 250, &X);
    int n1 = bh_prefix(w->root, F1.v, F1.n, (int)w->bs, h1), n2 = bh_prefix(w->root, F2.v, F2.n, (int)w->bs, h2);
    if (n1 != 12 || n2 != 8) fail("F1/F2 have %d/%d blocks", n1, n2);
    uint64_t task = 1;
    warm_pins("far", h1, n1, 9);
    run(w, task++, &F1, 1, &r);
    warm_pins("near", h2, n2, 1);
    run(w, task++, &F2, 1, &r);
    no_pins();
    wait_hb(w, 1);
    expect_counter(w, "pinned_blocks", 20);
    expect_counter(w, "pinned_evictions", 0);
    send_pin_steps(w, "near", 30);
    send_pin_steps(w, "nope", 0);
    wait_hb(w, 1);
    expect_counter(w, "pin_updates", 1);
    run(w, task++, &X, 4, &r);
    wait_hb(w, 1);
    expect_counter(w, "pinned_evictions", 12);
    expect_counter(w, "pinned_blocks", 8);
    printf("ok evict: a 32-page prompt with 20 unpinned pages evicted the 12 pages pinned furthest ahead\n");
    /* far's first 8 blocks are still cached, "near" is gone */
    run(w, task++, &F1, 1, &r2);
    if (r2.cached != 64) fail("evict: far prefix: %u cached tokens, want 64 (its first 8 of 12 blocks)", r2.cached);
    run(w, task++, &F2, 1, &r2);
    if (r2.cached != 0) fail("evict: near prefix (now 30 steps ahead) still has %u cached tokens", r2.cached);
    /* the same ids when X is recomputed from scratch */
    g_no_cache = true;
    run(w, task++, &X, 4, &r2);
    g_no_cache = false;
    if (!same_ids(&r, &r2) || r.out.n == 0) fail("evict: X after evicting pinned pages and X recomputed differ");
    send_unpin(w, "far");
    send_unpin(w, "near");
    wait_hb(w, 1);
    expect_counter(w, "pin_tags", 0);
    printf("ok evict: after PinSteps the near tag went first, far kept its head (64 tokens cached), same ids, "
           "tags released\n");
}

int main(int argc, char **argv) {
    if (argc != 9 || (strcmp(argv[8], "main") && strcmp(argv[8], "rejoin") && strcmp(argv[8], "policy") &&
                      strcmp(argv[8], "evict"))) {
        fprintf(stderr, "usage: fake_coord ENDPOINT N_WORKERS PROMPT_A PROMPT_B EXPECT_A EXPECT_B MAX_TOKENS "
                        "main|rejoin|policy|evict\n");
        return 2;
    }
    bool rejoin = !strcmp(argv[8], "rejoin"), policy = !strcmp(argv[8], "policy");
    static ids A, B, EA, EB;
    g_nw = atoi(argv[2]);
    if (g_nw < 1 || g_nw > MAXW) return 2;
    parse_ids(argv[3], &A);
    parse_ids(argv[4], &B);
    parse_ids(argv[5], &EA);
    parse_ids(argv[6], &EB);
    int max_tokens = atoi(argv[7]);
    for (int i = 0; i < g_nw; i++) snprintf(g_w[i].id, sizeof g_w[i].id, "w%d", i + 1);
    void *ctx = zmq_ctx_new();
    g_router = zmq_socket(ctx, ZMQ_ROUTER);
    int zero = 0;
    zmq_setsockopt(g_router, ZMQ_LINGER, &zero, sizeof zero);
    if (zmq_bind(g_router, argv[1]) != 0) fail("bind %s: %s", argv[1], zmq_strerror(zmq_errno()));
    printf("listening\n");
    fflush(stdout);

    wait_registered(g_nw);
    worker *w1 = &g_w[0];
    printf("ok registered %d worker(s), block size %u\n", g_nw, w1->bs);
    if (g_nw == 2 && g_w[1].root != w1->root) fail("workers disagree on the model root");
    uint64_t hashes[1024];
    int nh = bh_prefix(w1->root, A.v, A.n, (int)w1->bs, hashes);
    if (rejoin) {
        /* a restarted coordinator: the workers registered again and their
         * snapshots rebuild the directory */
        for (int i = 0; i < nh; i++)
            if (!dir_has(w1, hashes[i])) fail("w1's snapshot after re-registering lacks block %d of A", i);
        printf("ok re-registered; w1's snapshot holds %zu blocks\n", w1->n_dir);
        goto shutdown;
    }
    if (policy) {
        run_policy(w1, &A, &EA, max_tokens);
        goto shutdown;
    }
    if (!strcmp(argv[8], "evict")) {
        run_evict(w1, &A);
        goto shutdown;
    }

    result r;
    dispatch(w1, 1, &A, max_tokens, false, NULL);
    wait_result(1, &r);
    expect_ids("task 1 (A on w1)", &r, &EA);
    if (r.prompt != (uint32_t)A.n || r.pulled) fail("task 1: prompt_tokens %u pulled %u", r.prompt, r.pulled);
    printf("ok task 1: %u prompt tokens, %u cached, text '%s'\n", r.prompt, r.cached, r.text);

    dispatch(w1, 2, &B, max_tokens, false, NULL);
    wait_result(2, &r);
    expect_ids("task 2 (B on w1)", &r, &EB);
    if (r.cached == 0) fail("task 2: cached_tokens == 0 although B shares a prefix with A");
    printf("ok task 2: %u prompt tokens, %u cached, %u computed\n", r.prompt, r.cached, r.computed);

    /* the directory built from w1's events holds A's full blocks */
    pump(300);
    for (int i = 0; i < nh; i++)
        if (!dir_has(w1, hashes[i])) fail("w1's cache events lack block %d of A", i);
    printf("ok cache events: %zu blocks in w1's directory, seq %llu\n", w1->n_dir, (unsigned long long)w1->last_seq);

    if (g_nw == 2) {
        worker *w2 = &g_w[1];
        if (!w1->data_ep[0]) fail("w1 registered no data endpoint");
        Helium__KvPullHint hint = HELIUM__KV_PULL_HINT__INIT;
        hint.source_worker = w1->id;
        hint.source_endpoint = w1->data_ep;
        hint.first_block = 0;
        hint.n_hashes = (size_t)nh;
        hint.hashes = hashes;
        dispatch(w2, 3, &A, max_tokens, false, &hint);
        wait_result(3, &r);
        expect_ids("task 3 (A on w2, pulled from w1)", &r, &EA);
        if (r.pulled == 0 || r.cached < r.pulled)
            fail("task 3: pulled_tokens %u cached_tokens %u", r.pulled, r.cached);
        printf("ok task 3: %u prompt tokens, %u pulled from w1, %u cached\n", r.prompt, r.pulled, r.cached);
        wait_hb(w2, 1);
        uint64_t pus = counter(w2, "pull_us"), pby = counter(w2, "pull_bytes");
        if (pus == 0 || pby == 0) fail("w2's heartbeat after its pull: pull_us %llu pull_bytes %llu",
                                       (unsigned long long)pus, (unsigned long long)pby);
        printf("ok w2 heartbeat: pull_us %llu, pull_bytes %llu\n", (unsigned long long)pus, (unsigned long long)pby);
    }
    /* the policy counters are in every heartbeat */
    wait_hb(w1, 1);
    static const char *keys[] = {"pinned_blocks", "pin_tags", "pin_refused", "warm_tasks", "pull_us", "pull_bytes"};
    for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++) (void)counter(w1, keys[i]);

    /* malformed frames to w1 */
    send_raw(w1, "\xff\xff\xff\xff garbage \x01\x02", 16, false);
    Helium__CoordMsg badv = HELIUM__COORD_MSG__INIT;
    badv.protocol_version = 7;
    badv.body_case = HELIUM__COORD_MSG__BODY_RESYNC;
    Helium__CacheResync rs0 = HELIUM__CACHE_RESYNC__INIT;
    badv.resync = &rs0;
    send_cmsg(w1, &badv);
    send_raw(w1, "\x08\x01", 2, true);                        /* two frames */
    send_raw(w1, "\x08\x01\xf8\x06\x05", 5, false);           /* version 1 + unknown field 111 */
    send_raw(w1, "", 0, false);                               /* empty: version 0 */
    Helium__Dispatch trunc = HELIUM__DISPATCH__INIT;          /* truncated dispatch */
    trunc.task_id = 99;
    trunc.n_prompt_ids = (size_t)A.n;
    trunc.prompt_ids = A.v;
    Helium__CoordMsg tc = HELIUM__COORD_MSG__INIT;
    tc.protocol_version = PV;
    tc.body_case = HELIUM__COORD_MSG__BODY_DISPATCH;
    tc.dispatch = &trunc;
    size_t tn = helium__coord_msg__get_packed_size(&tc);
    uint8_t *tb = malloc(tn);
    helium__coord_msg__pack(&tc, tb);
    send_raw(w1, tb, tn / 2, false);
    free(tb);

    /* and to its data endpoint: garbage, a wrong version, an oversized pull */
    if (w1->data_ep[0]) {
        void *dd = zmq_socket(ctx, ZMQ_DEALER);
        zmq_setsockopt(dd, ZMQ_LINGER, &zero, sizeof zero);
        int to = 5000;
        zmq_setsockopt(dd, ZMQ_RCVTIMEO, &to, sizeof to);
        if (zmq_connect(dd, w1->data_ep) != 0) fail("cannot connect to %s", w1->data_ep);
        zmq_send(dd, "\x0a\xff\xff", 3, 0);
        Helium__PeerMsg pv = HELIUM__PEER_MSG__INIT;
        pv.protocol_version = 3;
        uint8_t pb[64];
        zmq_send(dd, pb, helium__peer_msg__pack(&pv, pb), 0);
        static uint64_t many[100000];
        Helium__KvPull big = HELIUM__KV_PULL__INIT;
        big.transfer_id = 77;
        big.n_hashes = 100000;
        big.hashes = many;
        Helium__PeerMsg pm = HELIUM__PEER_MSG__INIT;
        pm.protocol_version = PV;
        pm.body_case = HELIUM__PEER_MSG__BODY_PULL;
        pm.pull = &big;
        size_t bn = helium__peer_msg__get_packed_size(&pm);
        uint8_t *bb = malloc(bn);
        helium__peer_msg__pack(&pm, bb);
        zmq_send(dd, bb, bn, 0);
        free(bb);
        char rep[4096];
        int rn = zmq_recv(dd, rep, sizeof rep, 0);
        if (rn < 0) fail("no answer to an oversized pull");
        Helium__PeerMsg *pr = helium__peer_msg__unpack(NULL, (size_t)rn, (uint8_t *)rep);
        if (!pr || pr->body_case != HELIUM__PEER_MSG__BODY_ERROR) fail("oversized pull not answered with an error");
        helium__peer_msg__free_unpacked(pr, NULL);
        zmq_close(dd);
    }

    dispatch(w1, 4, &A, max_tokens, true, NULL);
    wait_result(4, &r);
    expect_ids("task 4 (A on w1, streamed, after bad frames)", &r, &EA);
    if (r.cached == 0) fail("task 4: cached_tokens == 0 for a repeated prompt");
    if (r.n_progress == 0) fail("task 4: no OpProgress although stream was set");
    if (strcmp(r.stream_text, r.text)) fail("task 4: streamed text '%s' != result text '%s'", r.stream_text, r.text);
    if (r.stream_ids.n != r.out.n || memcmp(r.stream_ids.v, r.out.v, sizeof(int32_t) * (size_t)r.out.n))
        fail("task 4: streamed ids differ from the result ids");
    printf("ok task 4: survived bad frames; %d progress messages\n", r.n_progress);
    pump(600); /* a heartbeat or two */
    if (w1->bad_frames < 7) fail("w1 counted %llu bad frames, expected >= 7", (unsigned long long)w1->bad_frames);
    printf("ok w1 counted %llu bad frames, %d heartbeats\n", (unsigned long long)w1->bad_frames, w1->heartbeats);

    /* resync -> snapshot holding A's blocks */
    w1->snapshot_seen_since_mark = false;
    Helium__CacheResync rs = HELIUM__CACHE_RESYNC__INIT;
    rs.last_seq = 1;
    Helium__CoordMsg cr = HELIUM__COORD_MSG__INIT;
    cr.body_case = HELIUM__COORD_MSG__BODY_RESYNC;
    cr.resync = &rs;
    send_cmsg(w1, &cr);
    int64_t end = now_ms() + WAIT_MS;
    while (!w1->snapshot_seen_since_mark && now_ms() < end) pump(50);
    if (!w1->snapshot_seen_since_mark) fail("no snapshot after CacheResync");
    for (int i = 0; i < nh; i++)
        if (!dir_has(w1, hashes[i])) fail("w1's snapshot lacks block %d of A", i);
    printf("ok resync snapshot: %zu blocks\n", w1->n_dir);

    /* cancel */
    worker *wc = &g_w[g_nw - 1];
    dispatch(wc, 5, &B, 400, false, NULL);
    Helium__Cancel cc = HELIUM__CANCEL__INIT;
    cc.task_id = 5;
    Helium__CoordMsg cm = HELIUM__COORD_MSG__INIT;
    cm.body_case = HELIUM__COORD_MSG__BODY_CANCEL;
    cm.cancel = &cc;
    send_cmsg(wc, &cm);
    wait_result(5, &r);
    if (r.err && r.err != HELIUM__ERROR_CODE__ERROR_CANCELED) fail("task 5: error code %d", r.err);
    printf("ok task 5: %s\n", r.err ? "canceled" : "finished before the cancel");
    pump(300);

    /* a prompt longer than the context gets a typed error */
    static ids L;
    L.n = 4096;
    for (int i = 0; i < L.n; i++) L.v[i] = A.v[i % A.n];
    dispatch(w1, 6, &L, 4, false, NULL);
    wait_result(6, &r);
    if (r.err != HELIUM__ERROR_CODE__ERROR_PROMPT_TOO_LONG) fail("task 6: error code %d, want PROMPT_TOO_LONG", r.err);
    printf("ok task 6: prompt too long -> PROMPT_TOO_LONG\n");

    /* continuous batching: three dispatches at once, answers in any order */
    worker *wb = &g_w[g_nw - 1];
    dispatch(wb, 7, &A, max_tokens, true, NULL);
    dispatch(wb, 8, &B, max_tokens, false, NULL);
    dispatch(w1, 9, &B, max_tokens, true, NULL);
    dispatch(wb, 10, &B, max_tokens, false, NULL);
    wait_result(10, &r);
    expect_ids("task 10 (B, concurrent)", &r, &EB);
    wait_result(8, &r);
    expect_ids("task 8 (B, concurrent)", &r, &EB);
    wait_result(7, &r);
    expect_ids("task 7 (A, concurrent)", &r, &EA);
    if (strcmp(r.stream_text, r.text)) fail("task 7: streamed text differs from the result text");
    wait_result(9, &r);
    expect_ids("task 9 (B on w1, concurrent)", &r, &EB);
    printf("ok tasks 7-10: concurrent dispatches match\n");

    /* a stop string ends generation and cuts the text, streamed chunks included */
    wait_result(1, &r);
    size_t tl = strlen(r.text);
    if (tl >= 6) {
        char full[65536], stop[8];
        snprintf(full, sizeof full, "%s", r.text);
        memcpy(stop, full + tl / 2, 3);
        stop[3] = 0;
        g_stop = stop;
        dispatch(w1, 11, &A, max_tokens, true, NULL);
        g_stop = NULL;
        wait_result(11, &r);
        /* generation ends at the token that completes the stop string: the ids
         * are a prefix of the plain run's, and fewer when the stop comes early */
        size_t cut = (size_t)(strstr(full, stop) - full);
        if (r.err) fail("task 11: error code %d", r.err);
        if (r.out.n < 1 || r.out.n > EA.n || memcmp(r.out.v, EA.v, sizeof(int32_t) * (size_t)r.out.n))
            fail("task 11: ids are not a prefix of the plain run's (%d of %d)", r.out.n, EA.n);
        if (r.generated != (uint32_t)r.out.n) fail("task 11: generated_tokens %u for %d ids", r.generated, r.out.n);
        if (strcmp(r.finish, "stop")) fail("task 11: finish '%s', want stop", r.finish);
        if (cut + strlen(stop) < tl / 2 + 3 && r.out.n >= EA.n)
            fail("task 11: the stop string at byte %zu of %zu did not end generation", cut, tl);
        if (strlen(r.text) != cut || memcmp(r.text, full, cut))
            fail("task 11: text not cut at the stop string ('%s' -> '%s')", full, r.text);
        if (strcmp(r.stream_text, r.text)) fail("task 11: streamed text '%s' != cut text '%s'", r.stream_text, r.text);
        printf("ok task 11: text cut at the stop string (%zu of %zu bytes), %d of %d tokens generated\n", cut, tl,
               r.out.n, EA.n);
    } else {
        printf("ok task 11 skipped: text of task 1 too short for a stop string\n");
    }

    /* a pull from a peer that is not there: times out, recomputes */
    static ids D;
    D.n = A.n;
    D.v[0] = A.v[0];
    for (int i = 1; i < A.n; i++) D.v[i] = A.v[A.n - i];
    uint64_t dh[1024];
    Helium__KvPullHint dead = HELIUM__KV_PULL_HINT__INIT;
    dead.source_worker = "ghost";
    dead.source_endpoint = "tcp://127.0.0.1:9";
    dead.n_hashes = (size_t)bh_prefix(wb->root, D.v, D.n, (int)wb->bs, dh);
    dead.hashes = dh;
    dispatch(wb, 12, &D, 4, false, &dead);
    wait_result(12, &r);
    if (r.err || r.pulled || r.out.n == 0) fail("task 12: error %d pulled %u generated %d", r.err, r.pulled, r.out.n);
    printf("ok task 12: dead pull source -> recomputed %u tokens\n", r.computed);
    pump(300);
    zmq_close(g_router);
    zmq_ctx_term(ctx);
    for (int i = 0; i < g_nw; i++) free(g_w[i].dir);
    printf("PASS main\n");
    return 0;

shutdown:;
    Helium__Shutdown sd = HELIUM__SHUTDOWN__INIT;
    sd.reason = "test done";
    Helium__CoordMsg sm = HELIUM__COORD_MSG__INIT;
    sm.body_case = HELIUM__COORD_MSG__BODY_SHUTDOWN;
    sm.shutdown = &sd;
    for (int i = 0; i < g_nw; i++) send_cmsg(&g_w[i], &sm);
    pump(200);
    printf("PASS\n");
    zmq_close(g_router);
    zmq_ctx_term(ctx);
    for (int i = 0; i < g_nw; i++) free(g_w[i].dir);
    return 0;
}
