/* jrec: the coordinator's journal records and their replay; see jrec.h.
 *
 * Replay keeps three things from the file until it has read it whole: the
 * submits in order (packed SubmitJob bytes, unpacked again one at a time),
 * the calls' outcomes in a chained hash table keyed by (job, op, item,
 * round), and the canceled job numbers. Outcomes no ready call asked for
 * (a job whose workflow now plans differently, say) are dropped at the end
 * and counted. Single-threaded: the coordinator's loop owns it.
 */
#define _GNU_SOURCE
#include "jrec.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "clock.h"
#include "coord_impl.h"
#include "herr.h"
#include "log.h"
#include "wf_proto.h"

#define JREC_DEFAULT_COMPACT (64ull << 20)

typedef struct outcome {
    uint64_t job;
    uint32_t op, item, round;
    bool failed;
    Helium__ErrorCode code;
    char *text; /* output, or the error message */
    size_t len;
    uint32_t prompt_tokens, cached_tokens, pulled_tokens, generated_tokens;
    char *worker;
    struct outcome *next;
} outcome;

typedef struct {
    uint64_t job, submitted_us;
    uint8_t *sj; /* packed SubmitJob */
    size_t sj_len;
} submit_rec;

typedef struct {
    void *sock;
    uint8_t ident[256];
    size_t ident_len;
    bool delim;
    uint8_t *data;
    size_t len;
} held_reply;

struct jrec {
    jnl_t *jnl;
    jrec_config cfg;
    coord_t *c;
    bool replaying;         /* hooks record nothing */
    int failed;             /* first append error (fatal), 0 if none */
    uint64_t last_job;      /* highest job number recorded or replayed */
    uint64_t compacted_size; /* file size after the last compaction (or open) */
    /* replay state (freed when replay ends) */
    submit_rec *subs;
    size_t n_subs, cap_subs;
    outcome **tab; /* (n_tab) buckets */
    size_t n_tab, n_out;
    uint64_t *cancels;
    size_t n_cancels, cap_cancels;
    /* replies waiting for the sync */
    held_reply *held;
    size_t n_held, cap_held;
};

static bool grow(void **v, size_t *cap, size_t need, size_t sz) {
    if (need <= *cap) return true;
    size_t c = *cap ? *cap * 2 : 16;
    while (c < need) c *= 2;
    void *p = realloc(*v, c * sz);
    if (!p) return false;
    *v = p;
    *cap = c;
    return true;
}

/* ------------------------------------------------------------ outcome table */

static size_t bucket(const jrec_t *r, uint64_t job, uint32_t op, uint32_t item, uint32_t round) {
    uint64_t h = job * 0x9e3779b97f4a7c15ull ^ ((uint64_t)op << 40 | (uint64_t)round << 24 | item);
    h ^= h >> 29;
    h *= 0xbf58476d1ce4e5b9ull;
    return (size_t)(h ^ (h >> 32)) & (r->n_tab - 1);
}

static void outcome_free(outcome *o) {
    free(o->text);
    free(o->worker);
    free(o);
}

static int put_outcome(jrec_t *r, const Helium__JournalTaskDone *t) {
    if (r->n_out >= r->n_tab * 2) { /* rehash at load 2 */
        size_t n = r->n_tab ? r->n_tab * 4 : 1024;
        outcome **nt = calloc(n, sizeof *nt);
        if (!nt) return he_set(HE_ENOMEM, "journal replay: out of memory");
        outcome **old = r->tab;
        size_t old_n = r->n_tab;
        r->tab = nt;
        r->n_tab = n;
        for (size_t i = 0; i < old_n; i++)
            for (outcome *o = old[i], *next; o; o = next) {
                next = o->next;
                size_t b = bucket(r, o->job, o->op, o->item, o->round);
                o->next = nt[b];
                nt[b] = o;
            }
        free(old);
    }
    size_t b = bucket(r, t->job, t->op, t->item, t->round);
    for (outcome *o = r->tab[b]; o; o = o->next)
        if (o->job == t->job && o->op == t->op && o->item == t->item && o->round == t->round)
            return 0; /* a call finishes once; keep the first */
    outcome *o = calloc(1, sizeof *o);
    if (!o) return he_set(HE_ENOMEM, "journal replay: out of memory");
    o->job = t->job;
    o->op = t->op;
    o->item = t->item;
    o->round = t->round;
    o->failed = t->failed;
    o->code = t->error;
    o->len = t->text ? strlen(t->text) : 0;
    o->text = strndup(t->text ? t->text : "", o->len);
    o->worker = t->worker && *t->worker ? strdup(t->worker) : NULL;
    o->prompt_tokens = t->prompt_tokens;
    o->cached_tokens = t->cached_tokens;
    o->pulled_tokens = t->pulled_tokens;
    o->generated_tokens = t->generated_tokens;
    if (!o->text) {
        outcome_free(o);
        return he_set(HE_ENOMEM, "journal replay: out of memory");
    }
    o->next = r->tab[b];
    r->tab[b] = o;
    r->n_out++;
    return 0;
}

/* Removes and returns the outcome of t's call, or NULL. */
static outcome *take_outcome(jrec_t *r, const job_task *t) {
    if (!r->n_tab) return NULL;
    size_t b = bucket(r, t->job->num, (uint32_t)t->op, t->item, t->round);
    for (outcome **p = &r->tab[b]; *p; p = &(*p)->next) {
        outcome *o = *p;
        if (o->job == t->job->num && o->op == (uint32_t)t->op && o->item == t->item && o->round == t->round) {
            *p = o->next;
            r->n_out--;
            return o;
        }
    }
    return NULL;
}

static void free_replay_state(jrec_t *r) {
    for (size_t i = 0; i < r->n_subs; i++) free(r->subs[i].sj);
    free(r->subs);
    r->subs = NULL;
    r->n_subs = r->cap_subs = 0;
    for (size_t i = 0; i < r->n_tab; i++)
        for (outcome *o = r->tab[i], *next; o; o = next) {
            next = o->next;
            outcome_free(o);
        }
    free(r->tab);
    r->tab = NULL;
    r->n_tab = r->n_out = 0;
    free(r->cancels);
    r->cancels = NULL;
    r->n_cancels = r->cap_cancels = 0;
}

/* ------------------------------------------------------------ reading */

static int on_record(void *ud, const Helium__JournalRecord *rec) {
    jrec_t *r = ud;
    switch (rec->body_case) {
    case HELIUM__JOURNAL_RECORD__BODY_SUBMIT: {
        const Helium__JournalSubmit *s = rec->submit;
        if (!s->submit || !s->job) return 0; /* nothing to run */
        if (!grow((void **)&r->subs, &r->cap_subs, r->n_subs + 1, sizeof *r->subs))
            return he_set(HE_ENOMEM, "journal replay: out of memory");
        submit_rec *sr = &r->subs[r->n_subs];
        sr->job = s->job;
        sr->submitted_us = s->submitted_us;
        sr->sj_len = helium__submit_job__get_packed_size(s->submit);
        sr->sj = malloc(sr->sj_len ? sr->sj_len : 1);
        if (!sr->sj) return he_set(HE_ENOMEM, "journal replay: out of memory");
        helium__submit_job__pack(s->submit, sr->sj);
        r->n_subs++;
        if (s->job > r->last_job) r->last_job = s->job;
        return 0;
    }
    case HELIUM__JOURNAL_RECORD__BODY_TASK_DONE: return put_outcome(r, rec->task_done);
    case HELIUM__JOURNAL_RECORD__BODY_CANCEL:
        if (!grow((void **)&r->cancels, &r->cap_cancels, r->n_cancels + 1, sizeof *r->cancels))
            return he_set(HE_ENOMEM, "journal replay: out of memory");
        r->cancels[r->n_cancels++] = rec->cancel->job;
        return 0;
    case HELIUM__JOURNAL_RECORD__BODY_META:
        if (rec->meta->last_job > r->last_job) r->last_job = rec->meta->last_job;
        return 0;
    default: return 0;
    }
}

/* Submits a journaled job again under its number; 0 or an herr code. */
static int resubmit(jrec_t *r, const submit_rec *sr) {
    coord_t *c = r->c;
    Helium__SubmitJob *sj = helium__submit_job__unpack(NULL, sr->sj_len, sr->sj);
    if (!sj || !sj->workflow) {
        if (sj) helium__submit_job__free_unpacked(sj, NULL);
        return he_set(HE_EFORMAT, "job-%" PRIu64 ": its journaled submit does not parse", sr->job);
    }
    const char *pname = sj->policy && *sj->policy ? sj->policy : sched_policy_name((sched_policy)c->policy);
    int pol = sched_policy_from_name(pname);
    wf_t *wf = NULL;
    wf_kv *in = calloc(sj->n_inputs ? sj->n_inputs : 1, sizeof *in);
    int rc = pol < 0 ? he_set(HE_EINVAL, "unknown policy '%s'", pname) : !in ? HE_ENOMEM : 0;
    if (!rc) rc = jobs_skip_to(c->jobs, sr->job);
    if (!rc) rc = wfp_from_proto(sj->workflow, &wf);
    if (!rc) {
        size_t n = 0;
        for (size_t i = 0; i < sj->n_inputs; i++)
            if (sj->inputs[i])
                in[n++] = (wf_kv){sj->inputs[i]->key ? sj->inputs[i]->key : "",
                                  sj->inputs[i]->value ? sj->inputs[i]->value : ""};
        opt_prep prep;
        opt_prepare(c->opt, (sched_policy)pol, wf, in, n, &prep);
        job_t *j = NULL;
        rc = jobs_submit_planned(c->jobs, &wf, in, n, pname, sj->client_tag, sj->stream, &prep.plan, &j);
        if (rc) opt_prep_free(&prep);
        else {
            j->submitted_us = sr->submitted_us;
            opt_stats(c->opt, (sched_policy)pol)->jobs++;
            coord_job_arrive(c, j, &prep);
        }
    }
    wf_destroy(&wf);
    free(in);
    helium__submit_job__free_unpacked(sj, NULL);
    return rc;
}

/* Completes t from its journaled outcome; false if there is none. */
static bool complete(jrec_t *r, job_task *t) {
    outcome *o = take_outcome(r, t);
    if (!o) return false;
    coord_t *c = r->c;
    if (t->kind == JT_LLM && t->ids && opt_tracks((sched_policy)t->job->pol)) opt_call_gone(c->opt, t);
    if (o->failed) {
        jobs_task_fail(c->jobs, t, o->code, o->text);
    } else {
        job_result res = {.text = o->text, .len = o->len, .prompt_tokens = o->prompt_tokens,
                          .cached_tokens = o->cached_tokens, .pulled_tokens = o->pulled_tokens,
                          .generated_tokens = o->generated_tokens, .worker = o->worker};
        jobs_task_done(c->jobs, t, &res);
    }
    outcome_free(o);
    return true;
}

/* Rebuilds the jobs from what on_record collected; logs what it did. */
static int apply(jrec_t *r) {
    coord_t *c = r->c;
    size_t skipped = 0, completed = 0, canceled = 0;
    for (size_t i = 0; i < r->n_subs; i++) {
        if (jobs_by_num(c->jobs, r->subs[i].job)) continue; /* a repeated record */
        int rc = resubmit(r, &r->subs[i]);
        if (rc == HE_ENOMEM) return rc;
        if (rc) {
            skipped++;
            clog_msg(CLOG_ERROR, "journal: job-%" PRIu64 " cannot be resubmitted and is lost: %s", r->subs[i].job,
                     he_msg());
        }
    }
    /* complete recorded calls until no ready call has a record */
    for (bool again = true; again;) {
        again = false;
        for (job_task *t = jobs_ready_first(c->jobs), *next; t; t = next) {
            next = jobs_ready_next(t);
            if (complete(r, t)) {
                completed++;
                again = true;
                break; /* the queue changed */
            }
        }
    }
    for (size_t i = 0; i < r->n_cancels; i++) {
        job_t *j = jobs_by_num(c->jobs, r->cancels[i]);
        if (j && !jobs_is_final(j->state)) {
            jobs_cancel(c->jobs, j, "canceled by a client (before a restart)");
            canceled++;
        }
    }
    if (r->last_job && jobs_by_num(c->jobs, r->last_job) == NULL) {
        /* the next number follows the highest one ever handed out */
        jobs_skip_to(c->jobs, r->last_job + 1);
    }
    jobs_counts jc;
    jobs_get_counts(c->jobs, &jc);
    jnl_stats st;
    jnl_get_stats(r->jnl, &st);
    clog_msg(CLOG_INFO,
             "journal %s: replayed %" PRIu64 " records: %zu jobs (%" PRIu64 " queued or running, %" PRIu64
             " done, %" PRIu64 " failed, %" PRIu64 " canceled), %zu calls taken from it, not recomputed; "
             "%zu unused call records; %zu jobs lost; torn tail %" PRIu64 " bytes",
             jnl_path(r->jnl), st.replayed, r->n_subs - skipped, jc.queued + jc.running, jc.done, jc.failed,
             jc.canceled, completed, r->n_out, skipped, st.torn_bytes);
    if (st.torn_bytes)
        clog_msg(CLOG_WARN, "journal %s: a torn tail of %" PRIu64 " bytes (a write cut short by a crash) was truncated",
                 jnl_path(r->jnl), st.torn_bytes);
    (void)canceled;
    c->dirty = true;
    return 0;
}

int jrec_open(coord_t *c, const jrec_config *cfg, jrec_t **out) {
    *out = NULL;
    jrec_t *r = calloc(1, sizeof *r);
    if (!r) return he_set(HE_ENOMEM, "out of memory");
    r->cfg = *cfg;
    if (!r->cfg.compact_bytes) r->cfg.compact_bytes = JREC_DEFAULT_COMPACT;
    r->c = c;
    r->replaying = true;
    int rc = jnl_open(cfg->dir, cfg->mode, on_record, r, &r->jnl);
    if (!rc) rc = apply(r);
    free_replay_state(r);
    r->replaying = false;
    if (rc) {
        jrec_destroy(&r);
        return rc;
    }
    r->compacted_size = jnl_size(r->jnl);
    *out = r;
    return 0;
}

void jrec_destroy(jrec_t **self_p) {
    if (!self_p || !*self_p) return;
    jrec_t *r = *self_p;
    if (r->jnl) {
        jnl_stats st;
        jnl_get_stats(r->jnl, &st);
        clog_msg(CLOG_INFO, "journal: %" PRIu64 " records appended, %" PRIu64 " syncs, %" PRIu64 " compactions",
                 st.appends, st.syncs, st.compactions);
    }
    jnl_destroy(&r->jnl);
    free_replay_state(r);
    for (size_t i = 0; i < r->n_held; i++) free(r->held[i].data);
    free(r->held);
    free(r);
    *self_p = NULL;
}

/* ------------------------------------------------------------ recording */

static void append(jrec_t *r, const Helium__JournalRecord *rec, const char *what) {
    if (r->failed) return;
    int rc = jnl_append(r->jnl, rec);
    if (rc) {
        r->failed = rc;
        clog_msg(CLOG_ERROR, "journal: cannot record %s: %s; stopping (nothing more is acknowledged)", what,
                 he_msg());
    }
}

void jrec_job_new(jrec_t *r, const job_t *j) {
    if (!r || r->replaying) return;
    if (j->num > r->last_job) r->last_job = j->num;
    Helium__Workflow *wf = NULL;
    if (wfp_to_proto(j->wf, &wf)) {
        r->failed = HE_ENOMEM;
        clog_msg(CLOG_ERROR, "journal: cannot record %s: %s; stopping", j->id, he_msg());
        return;
    }
    size_t n = j->wf->n_inputs;
    Helium__SubmitJob__InputsEntry *e = calloc(n ? n : 1, sizeof *e);
    Helium__SubmitJob__InputsEntry **ep = calloc(n ? n : 1, sizeof *ep);
    if (!e || !ep) {
        r->failed = HE_ENOMEM;
    } else {
        for (size_t i = 0; i < n; i++) {
            helium__submit_job__inputs_entry__init(&e[i]);
            e[i].key = j->wf->inputs[i].name;
            e[i].value = j->input_vals[i];
            ep[i] = &e[i];
        }
        Helium__SubmitJob sj = HELIUM__SUBMIT_JOB__INIT;
        sj.workflow = wf;
        sj.n_inputs = n;
        sj.inputs = ep;
        sj.policy = j->policy;
        sj.client_tag = j->client_tag;
        sj.stream = j->stream;
        Helium__JournalSubmit js = HELIUM__JOURNAL_SUBMIT__INIT;
        js.job = j->num;
        js.submit = &sj;
        js.submitted_us = j->submitted_us;
        Helium__JournalRecord rec = HELIUM__JOURNAL_RECORD__INIT;
        rec.body_case = HELIUM__JOURNAL_RECORD__BODY_SUBMIT;
        rec.submit = &js;
        append(r, &rec, j->id);
    }
    free(e);
    free(ep);
    wfp_free(&wf);
}

void jrec_task_end(jrec_t *r, const job_task *t, const job_result *res, Helium__ErrorCode code, const char *msg) {
    if (!r || r->replaying) return;
    Helium__JournalTaskDone td = HELIUM__JOURNAL_TASK_DONE__INIT;
    td.job = t->job->num;
    td.op = (uint32_t)t->op;
    td.item = t->item;
    td.round = t->round;
    td.op_id = t->job->wf->ops[t->op]->id;
    char *text = NULL;
    if (res) {
        /* the text may hold any bytes up to len: the record keeps the string */
        text = strndup(res->text ? res->text : "", res->text ? res->len : 0);
        td.text = text ? text : "";
        td.prompt_tokens = res->prompt_tokens;
        td.cached_tokens = res->cached_tokens;
        td.pulled_tokens = res->pulled_tokens;
        td.generated_tokens = res->generated_tokens;
        td.worker = (char *)(res->worker ? res->worker : "");
    } else {
        td.failed = true;
        td.error = code;
        td.text = (char *)(msg ? msg : "");
    }
    Helium__JournalRecord rec = HELIUM__JOURNAL_RECORD__INIT;
    rec.body_case = HELIUM__JOURNAL_RECORD__BODY_TASK_DONE;
    rec.task_done = &td;
    append(r, &rec, "a finished call");
    free(text);
}

void jrec_job_end(jrec_t *r, const job_t *j) {
    if (!r || r->replaying || j->state != HELIUM__JOB_STATE__JOB_CANCELED) return;
    Helium__JournalCancel jc = HELIUM__JOURNAL_CANCEL__INIT;
    jc.job = j->num;
    jc.reason = j->err_msg ? j->err_msg : "";
    Helium__JournalRecord rec = HELIUM__JOURNAL_RECORD__INIT;
    rec.body_case = HELIUM__JOURNAL_RECORD__BODY_CANCEL;
    rec.cancel = &jc;
    append(r, &rec, "a cancel");
}

/* ------------------------------------------------------------ acknowledging */

bool jrec_holding(const jrec_t *r) { return r && (jnl_dirty(r->jnl) || r->failed); }

void jrec_hold_reply(jrec_t *r, void *sock, const void *ident, size_t ident_len, bool delim, const void *data,
                     size_t len) {
    if (r->failed || ident_len > sizeof r->held[0].ident) return;
    if (!grow((void **)&r->held, &r->cap_held, r->n_held + 1, sizeof *r->held)) return;
    held_reply *h = &r->held[r->n_held];
    h->data = malloc(len ? len : 1);
    if (!h->data) return;
    memcpy(h->data, data, len);
    h->len = len;
    memcpy(h->ident, ident, ident_len);
    h->ident_len = ident_len;
    h->delim = delim;
    h->sock = sock;
    r->n_held++;
}

static bool keep_live(void *ud, const Helium__JournalRecord *rec) {
    jobs_t *js = ud;
    uint64_t job = rec->body_case == HELIUM__JOURNAL_RECORD__BODY_SUBMIT      ? rec->submit->job
                   : rec->body_case == HELIUM__JOURNAL_RECORD__BODY_TASK_DONE ? rec->task_done->job
                   : rec->body_case == HELIUM__JOURNAL_RECORD__BODY_CANCEL    ? rec->cancel->job
                                                                               : 0;
    return job && jobs_by_num(js, job) != NULL; /* old meta records go: a new one leads */
}

int jrec_before_sleep(jrec_t *r, coord_t *c) {
    if (!r) return 0;
    if (!r->failed && jnl_sync(r->jnl)) {
        r->failed = HE_EIO;
        clog_msg(CLOG_ERROR, "journal: %s; stopping (nothing more is acknowledged)", he_msg());
    }
    if (r->failed) {
        for (size_t i = 0; i < r->n_held; i++) free(r->held[i].data);
        r->n_held = 0;
        return r->failed;
    }
    for (size_t i = 0; i < r->n_held; i++) {
        held_reply *h = &r->held[i];
        if (coord_send_frames(h->sock, h->ident, h->ident_len, h->delim, h->data, h->len))
            clog_msg(CLOG_DEBUG, "held reply to a client dropped");
        free(h->data);
    }
    r->n_held = 0;
    uint64_t size = jnl_size(r->jnl);
    if (size > r->cfg.compact_bytes && size > 2 * r->compacted_size) {
        Helium__JournalMeta meta = HELIUM__JOURNAL_META__INIT;
        meta.last_job = r->last_job;
        int64_t t0 = clock_mono_us();
        if (jnl_compact(r->jnl, &meta, keep_live, c->jobs)) {
            clog_msg(CLOG_WARN, "journal: compaction failed (the journal goes on growing): %s", he_msg());
            r->compacted_size = size; /* retry after it doubles again */
        } else {
            r->compacted_size = jnl_size(r->jnl);
            clog_msg(CLOG_INFO, "journal: compacted %" PRIu64 " -> %" PRIu64 " bytes in %.1f ms", size,
                     r->compacted_size, (double)(clock_mono_us() - t0) / 1e3);
        }
    }
    return 0;
}

void jrec_get_stats(const jrec_t *r, jnl_stats *out) { jnl_get_stats(r->jnl, out); }
