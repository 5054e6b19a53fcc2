/* metrics: see metrics.h. The HTTP server, the page-building helpers and
 * the coordinator's page (met_publish_coord), which the loop builds from its
 * own state (coord_impl.h) and publishes.
 *
 * Shared state: page/page_len guarded by mu (written by the loop's publish,
 * read by the HTTP thread (common/http/httpd.c)); requests, published_ms, ready and why
 * are guarded by mu too.
 */
#include "metrics.h"

#include <stddef.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "clock.h"
#include "coord_impl.h"
#include "dir.h"
#include "herr.h"
#include "httpd.h"

struct metrics {
    httpd_t *srv;
    pthread_mutex_t mu;
    char *page;               /* guarded by mu */
    size_t page_len;          /* guarded by mu */
    unsigned long requests;   /* guarded by mu */
    int64_t published_ms;     /* guarded by mu: clock_mono_ms() of the last publish */
    bool ready;               /* guarded by mu */
    char why[160];            /* guarded by mu: why not ready */
};

/* The probe answer for url (/healthz or /readyz) into text; its HTTP code. */
static unsigned probe(metrics_t *m, const char *url, char *text, size_t cap) {
    int64_t age = clock_mono_ms() - m->published_ms; /* caller holds mu */
    if (age > METRICS_STALL_MS) {
        snprintf(text, cap, "stalled: the loop last published %lld ms ago\n", (long long)age);
        return 503;
    }
    if (!strcmp(url, "/healthz")) {
        snprintf(text, cap, "ok\n");
        return 200;
    }
    if (m->ready) {
        snprintf(text, cap, "ready\n");
        return 200;
    }
    snprintf(text, cap, "not ready: %s\n", m->why);
    return 503;
}

/* On the HTTP thread: takes mu for what it reads. */
static void answer(void *ctx, const char *url, char *buf, size_t cap, httpd_answer *a) {
    metrics_t *m = ctx;
    pthread_mutex_lock(&m->mu);
    if (!strcmp(url, "/metrics")) {
        a->owned = malloc(m->page_len ? m->page_len : 1);
        if (a->owned) {
            if (m->page_len) memcpy(a->owned, m->page, m->page_len);
            a->code = 200;
            a->body = a->owned;
            a->len = m->page_len;
            a->content_type = "text/plain; version=0.0.4; charset=utf-8";
        } else {
            a->code = 503;
            a->body = "out of memory\n";
            a->len = strlen(a->body);
        }
        m->requests++;
    } else if (!strcmp(url, "/healthz") || !strcmp(url, "/readyz")) {
        a->code = probe(m, url, buf, cap);
        a->body = buf;
        a->len = strlen(buf);
        m->requests++;
    } else {
        a->code = 404;
        a->body = "not found: try /metrics, /healthz or /readyz\n";
        a->len = strlen(a->body);
    }
    pthread_mutex_unlock(&m->mu);
}

metrics_t *metrics_new(const char *host, int port) {
    metrics_t *m = calloc(1, sizeof *m);
    if (!m) {
        he_set(HE_ENOMEM, "out of memory");
        return NULL;
    }
    pthread_mutex_init(&m->mu, NULL);
    m->published_ms = clock_mono_ms();
    snprintf(m->why, sizeof m->why, "starting");
    m->srv = httpd_new("metrics", host, port, 64, answer, m);
    if (!m->srv) {
        pthread_mutex_destroy(&m->mu);
        free(m);
        return NULL;
    }
    return m;
}

void metrics_destroy(metrics_t **self_p) {
    if (!self_p || !*self_p) return;
    metrics_t *m = *self_p;
    httpd_destroy(&m->srv); /* joins the HTTP thread */
    pthread_mutex_destroy(&m->mu);
    free(m->page);
    free(m);
    *self_p = NULL;
}

void metrics_publish(metrics_t *m, const char *text, size_t len) {
    if (!m) return;
    char *p = malloc(len + 1);
    if (!p) return;
    memcpy(p, text, len);
    p[len] = 0;
    pthread_mutex_lock(&m->mu);
    char *old = m->page;
    m->page = p;
    m->page_len = len;
    m->published_ms = clock_mono_ms();
    pthread_mutex_unlock(&m->mu);
    free(old);
}

void metrics_set_ready(metrics_t *m, bool ready, const char *why) {
    if (!m) return;
    pthread_mutex_lock(&m->mu);
    m->ready = ready;
    snprintf(m->why, sizeof m->why, "%s", why ? why : "");
    pthread_mutex_unlock(&m->mu);
}

unsigned long metrics_requests(metrics_t *m) {
    pthread_mutex_lock(&m->mu);
    unsigned long n = m->requests;
    pthread_mutex_unlock(&m->mu);
    return n;
}

void met_head(sbuf *b, const char *name, const char *type, const char *help) {
    sb_adds(b, "# HELP ");
    sb_adds(b, name);
    sb_adds(b, " ");
    sb_adds(b, help);
    sb_adds(b, "\n# TYPE ");
    sb_adds(b, name);
    sb_adds(b, " ");
    sb_adds(b, type);
    sb_adds(b, "\n");
}

void met_value(sbuf *b, const char *name, const char *labels, double value) {
    char num[64];
    if (value == (double)(long long)value && value < 9e15 && value > -9e15)
        snprintf(num, sizeof num, "%lld", (long long)value);
    else
        snprintf(num, sizeof num, "%.6g", value);
    sb_adds(b, name);
    if (labels && *labels) {
        sb_adds(b, "{");
        sb_adds(b, labels);
        sb_adds(b, "}");
    }
    sb_adds(b, " ");
    sb_adds(b, num);
    sb_adds(b, "\n");
}

void met_histogram(sbuf *b, const char *name, const char *help, const double *bounds, const uint64_t *counts,
                   size_t n, double sum) {
    char series[128], le[64];
    uint64_t cum = 0;
    met_head(b, name, "histogram", help);
    snprintf(series, sizeof series, "%s_bucket", name);
    for (size_t i = 0; i <= n; i++) {
        cum += counts[i];
        if (i < n) snprintf(le, sizeof le, "le=\"%g\"", bounds[i]);
        else snprintf(le, sizeof le, "le=\"+Inf\"");
        met_value(b, series, le, (double)cum);
    }
    snprintf(series, sizeof series, "%s_sum", name);
    met_value(b, series, "", sum);
    snprintf(series, sizeof series, "%s_count", name);
    met_value(b, series, "", (double)cum);
}

const double met_job_bounds[MET_JOB_BUCKETS] = {0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 25, 60, 120, 300, 900};

size_t met_bucket(const double *bounds, size_t n, double v) {
    size_t i = 0;
    while (i < n && v > bounds[i]) i++;
    return i;
}

void met_label(char *buf, size_t cap, const char *key, const char *value) {
    size_t n = strlen(buf);
    if (n && n + 1 < cap) buf[n++] = ',';
    int k = snprintf(buf + n, cap > n ? cap - n : 0, "%s=\"", key);
    if (k < 0 || (size_t)k >= cap - n) return;
    n += (size_t)k;
    for (const char *p = value ? value : ""; *p && n + 3 < cap; p++) {
        if (*p == '\\' || *p == '"') buf[n++] = '\\', buf[n++] = *p;
        else if (*p == '\n') buf[n++] = '\\', buf[n++] = 'n';
        else buf[n++] = *p;
    }
    if (n + 1 < cap) buf[n++] = '"';
    buf[n < cap ? n : cap - 1] = 0;
}

/* ------------------------------------------------ the coordinator's page */

#define OF(f, kv) {#f, offsetof(opt_counters, f), kv}
const met_opt_field met_opt_fields[MET_N_OPT_FIELDS] = {
    OF(jobs, false), OF(llm_tasks, false), OF(dispatched, false), OF(prompt_tokens, true),
    OF(computed_tokens, false), OF(cached_tokens, true), OF(pulled_tokens, true), OF(generated_tokens, true),
    OF(kv_pulls, true), OF(warm_tasks, false), OF(warm_tokens, false), OF(rcache_lookups, false),
    OF(rcache_hits, false), OF(dedup_hits, false), OF(ops_pruned, false), OF(ops_merged, false),
    OF(plan_us, false), OF(pins, false), OF(unpins, false), OF(pin_updates, false), OF(held, false), OF(kv_waits, false),
    OF(min_prompt_tokens, false),
};
#undef OF

uint64_t met_opt_value(const opt_counters *oc, size_t i) {
    return *(const uint64_t *)((const char *)oc + met_opt_fields[i].off);
}

void met_opt_total(opt_t *o, opt_counters *tot) {
    memset(tot, 0, sizeof *tot);
    for (int p = 0; p < SCHED_N_POLICIES; p++) {
        const opt_counters *oc = opt_stats(o, (sched_policy)p);
        for (size_t i = 0; i < MET_N_OPT_FIELDS; i++)
            *(uint64_t *)((char *)tot + met_opt_fields[i].off) += met_opt_value(oc, i);
    }
}

/* The optimizer's counters: totals (those not already among the
 * coordinator's own) and per policy. */
static void page_opt(coord_t *c, sbuf *b) {
    opt_counters tot;
    met_opt_total(c->opt, &tot);
    char name[96];
    for (size_t i = 0; i < MET_N_OPT_FIELDS; i++) {
        if (met_opt_fields[i].in_kv) continue;
        snprintf(name, sizeof name, "helium_opt_%s_total", met_opt_fields[i].name);
        met_head(b, name, "counter", "Optimizer / policy work counter (see coordinator/opt.h), all policies.");
        met_value(b, name, "", (double)met_opt_value(&tot, i));
    }
    for (size_t i = 0; i < MET_N_OPT_FIELDS; i++) {
        snprintf(name, sizeof name, "helium_policy_%s_total", met_opt_fields[i].name);
        met_head(b, name, "counter", "Work counter of each scheduling policy (see coordinator/opt.h).");
        for (int p = 0; p < SCHED_N_POLICIES; p++) {
            char l[64] = "";
            met_label(l, sizeof l, "policy", sched_policy_name((sched_policy)p));
            met_value(b, name, l, (double)met_opt_value(opt_stats(c->opt, (sched_policy)p), i));
        }
    }
}

/* Per-worker gauges. */
static void page_workers(coord_t *c, sbuf *b) {
    met_head(b, "helium_worker_alive", "gauge", "1 if the worker is alive.");
    for (int i = 0; i < wkrs_cap(c->wkrs); i++) {
        wkr_t *w = wkrs_by_slot(c->wkrs, i);
        if (!w) continue;
        char l[160] = "";
        met_label(l, sizeof l, "worker", w->id);
        met_value(b, "helium_worker_alive", l, w->alive);
    }
    met_head(b, "helium_worker_load_tokens", "gauge", "Outstanding work dispatched to the worker, in tokens.");
    for (int i = 0; i < wkrs_cap(c->wkrs); i++) {
        wkr_t *w = wkrs_by_slot(c->wkrs, i);
        if (!w) continue;
        char l[160] = "";
        met_label(l, sizeof l, "worker", w->id);
        met_value(b, "helium_worker_load_tokens", l, (double)w->load_tokens);
    }
    met_head(b, "helium_worker_kv_blocks", "gauge", "KV blocks of the worker by state (last heartbeat).");
    for (int i = 0; i < wkrs_cap(c->wkrs); i++) {
        wkr_t *w = wkrs_by_slot(c->wkrs, i);
        if (!w) continue;
        static const char *st[] = {"used", "cached", "total"};
        double v[] = {w->kv_used, w->kv_cached, w->kv_blocks_total};
        for (int k = 0; k < 3; k++) {
            char l[200] = "";
            met_label(l, sizeof l, "worker", w->id);
            met_label(l, sizeof l, "state", st[k]);
            met_value(b, "helium_worker_kv_blocks", l, v[k]);
        }
    }
    met_head(b, "helium_worker_prefill_tokens_per_second", "gauge", "Measured forward-pass speed of the worker.");
    for (int i = 0; i < wkrs_cap(c->wkrs); i++) {
        wkr_t *w = wkrs_by_slot(c->wkrs, i);
        if (!w) continue;
        char l[160] = "";
        met_label(l, sizeof l, "worker", w->id);
        met_value(b, "helium_worker_prefill_tokens_per_second", l, w->prefill_tok_s);
    }
}

/* Each worker pair's fitted KV link (links.h), for pairs that pulled. */
static void page_links(coord_t *c, sbuf *b) {
    static const char *const names[3] = {"helium_kv_link_fixed_seconds", "helium_kv_link_bytes_per_second",
                                         "helium_kv_link_pulls"};
    static const char *const helps[3] = {
        "Fitted fixed cost of a KV pull between two workers (seconds; from, to, transport).",
        "Fitted rate of KV pulls between two workers (bytes per second).",
        "KV pulls the pair's fit has seen."};
    for (int m = 0; m < 3; m++) {
        bool head = false;
        for (int d = 0; d < wkrs_cap(c->wkrs); d++) {
            const wkr_t *wd = wkrs_by_slot(c->wkrs, d);
            if (!wd || !wd->alive) continue;
            for (int s = 0; s < wkrs_cap(c->wkrs); s++) {
                const wkr_t *ws = wkrs_by_slot(c->wkrs, s);
                if (!ws || !ws->alive || s == d) continue;
                for (int x = 0; x < 2; x++) {
                    double a, r;
                    uint32_t n;
                    if (!links_fit(c->links, s, d, x, &a, &r, &n)) continue;
                    if (!head) met_head(b, names[m], m == 2 ? "counter" : "gauge", helps[m]);
                    head = true;
                    char lab[320];
                    snprintf(lab, sizeof lab, "from=\"%s\",to=\"%s\",transport=\"%s\"", ws->id, wd->id,
                             x ? "kv_xport" : "zmq");
                    met_value(b, names[m], lab, m == 0 ? a : m == 1 ? r : (double)n);
                }
            }
        }
    }
}

void met_publish_coord(coord_t *c) {
    if (!c->metrics) return;
    sbuf b;
    sb_init(&b, 4u << 20);
    jobs_counts jc;
    jobs_get_counts(c->jobs, &jc);
    sched_counters sc;
    sched_get_counters(c->sched, &sc);
    met_head(&b, "helium_jobs", "gauge", "Jobs by state (queued/running now; done/failed/canceled since start).");
    met_value(&b, "helium_jobs", "state=\"queued\"", (double)jc.queued);
    met_value(&b, "helium_jobs", "state=\"running\"", (double)jc.running);
    met_value(&b, "helium_jobs", "state=\"done\"", (double)jc.done);
    met_value(&b, "helium_jobs", "state=\"failed\"", (double)jc.failed);
    met_value(&b, "helium_jobs", "state=\"canceled\"", (double)jc.canceled);
    met_head(&b, "helium_jobs_parked", "gauge",
             "Queued jobs not started yet: more than --max-active-jobs are running.");
    met_value(&b, "helium_jobs_parked", NULL, (double)jc.parked);
    met_head(&b, "helium_jobs_max_active", "gauge", "Jobs that may run at once (0: no limit).");
    met_value(&b, "helium_jobs_max_active", NULL, (double)jobs_max_active(c->jobs));
    struct {
        const char *name, *type, *help;
        double v;
    } g[] = {
        {"helium_jobs_submitted_total", "counter", "Jobs accepted.", (double)jc.submitted},
        {"helium_queue_depth", "gauge", "Tasks ready and not yet placed on a worker.",
         (double)jobs_ready_count(c->jobs)},
        {"helium_prompt_tokens_total", "counter", "Prompt tokens of finished LLM tasks.", (double)c->st.prompt_tokens},
        {"helium_cached_tokens_total", "counter", "Prompt tokens served from a worker's KV cache (hit rate = cached/prompt).",
         (double)c->st.cached_tokens},
        {"helium_pulled_tokens_total", "counter", "Prompt tokens whose KV was pulled from a peer.",
         (double)c->st.pulled_tokens},
        {"helium_generated_tokens_total", "counter", "Generated tokens of finished LLM tasks.",
         (double)c->st.generated_tokens},
        {"helium_kv_pulls_total", "counter", "Finished tasks that imported KV pages from a peer.", (double)c->st.kv_pulls},
        {"helium_kv_pull_bytes_total", "counter", "KV bytes pulled between workers.", (double)c->st.kv_pull_bytes},
        {"helium_route_decisions_total", "counter", "LLM tasks placed.", (double)sc.decisions},
        {"helium_route_placements_total", "counter",
         "Placements evaluated, waits and dry runs included (the scheduler's work; over decisions: attempts per task placed).",
         (double)sc.placements},
        {"helium_route_affinity_total", "counter", "Placements on a worker already holding part of the prefix.",
         (double)sc.affinity},
        {"helium_route_pulls_total", "counter", "Placements that chose a KV pull.", (double)sc.pulls},
        {"helium_route_recomputes_total", "counter", "Placements that chose recompute over a considered pull.",
         (double)sc.recomputes},
        {"helium_route_imbalance_total", "counter", "Placements decided by the load-imbalance guard.",
         (double)sc.imbalanced},
        {"helium_redispatches_total", "counter", "Tasks re-queued after losing their worker.",
         (double)c->st.redispatches},
        {"helium_stale_results_total", "counter", "Results of superseded attempts ignored.", (double)c->st.stale_results},
        {"helium_tool_calls_total", "counter", "Tool HTTP calls started.", (double)c->st.tool_calls},
        {"helium_directory_blocks", "gauge", "Distinct KV blocks in the prefix directory.", (double)dir_size(c->dir)},
        {"helium_workers_alive", "gauge", "Workers alive.", (double)wkrs_alive(c->wkrs)},
    };
    for (size_t i = 0; i < sizeof g / sizeof *g; i++) {
        met_head(&b, g[i].name, g[i].type, g[i].help);
        met_value(&b, g[i].name, "", g[i].v);
    }
    met_histogram(&b, "helium_job_seconds", "Submit to finish of ended jobs (done, failed or canceled), seconds.",
                  met_job_bounds, c->st.job_seconds, MET_JOB_BUCKETS, c->st.job_seconds_sum);
    page_opt(c, &b);
    page_links(c, &b);
    met_head(&b, "helium_bad_frames_total", "counter", "Malformed frames received, by peer kind.");
    met_value(&b, "helium_bad_frames_total", "peer=\"client\"", (double)c->st.bad_client_frames);
    met_value(&b, "helium_bad_frames_total", "peer=\"worker\"", (double)c->st.bad_worker_frames);
    if (c->zauth) { /* CURVE: refused connections by reason (common/zauth.h) */
        zauth_counts za = zauth_stats(c->zauth);
        met_head(&b, "helium_auth_refused_total", "counter", "Connections refused by CURVE authentication, by reason.");
        met_value(&b, "helium_auth_refused_total", "reason=\"unknown_key\"", (double)za.unknown_key);
        met_value(&b, "helium_auth_refused_total", "reason=\"mechanism\"", (double)za.mechanism);
        met_value(&b, "helium_auth_refused_total", "reason=\"crypto\"", (double)za.crypto);
        met_value(&b, "helium_auth_refused_total", "reason=\"protocol\"", (double)za.protocol);
        met_head(&b, "helium_auth_allowed_total", "counter", "Connections CURVE authentication let in.");
        met_value(&b, "helium_auth_allowed_total", "", (double)za.allowed);
    }
    page_workers(c, &b);
    if (b.p) metrics_publish(c->metrics, b.p, b.len);
    /* ready: some worker takes work (the journal, once there is one, adds its own condition) */
    int takers = 0;
    for (int i = 0; i < wkrs_cap(c->wkrs); i++) {
        wkr_t *w = wkrs_by_slot(c->wkrs, i);
        takers += w && w->alive && !w->draining;
    }
    metrics_set_ready(c->metrics, takers > 0, takers > 0 ? "" : "no worker registered, alive and taking work");
    sb_free(&b);
}
