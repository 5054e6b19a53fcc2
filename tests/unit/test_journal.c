/* Unit tests for coordinator/journal.c: records survive a reopen in order, a
 * torn tail (cut short, zero-filled, last payload damaged) is truncated and
 * counted, a flipped byte in the middle (payload or length) is a clear
 * HE_EFORMAT that leaves the file alone, compaction keeps exactly what the
 * filter keeps behind a meta record and removes a stale temp file, and the
 * fsync modes sync as documented (one sync for a batch of appends). */
#define _GNU_SOURCE
#include <criterion/criterion.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "herr.h"
#include "journal.h"

static char dir[256];
static char path[300];

static void setup(void) {
    snprintf(dir, sizeof dir, "/tmp/test_journal.%d.XXXXXX", (int)getpid());
    cr_assert_not_null(mkdtemp(dir));
    snprintf(path, sizeof path, "%s/journal", dir);
}

static void teardown(void) {
    char cmd[400];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    cr_assert_eq(system(cmd), 0);
}

TestSuite(journal, .init = setup, .fini = teardown);

/* appends a TaskDone for job with text "out-<job>-<op>" */
static void put_task(jnl_t *j, uint64_t job, uint32_t op) {
    char text[64];
    snprintf(text, sizeof text, "out-%llu-%u", (unsigned long long)job, op);
    Helium__JournalTaskDone t = HELIUM__JOURNAL_TASK_DONE__INIT;
    t.job = job;
    t.op = op;
    t.text = text;
    t.op_id = "op";
    Helium__JournalRecord r = HELIUM__JOURNAL_RECORD__INIT;
    r.body_case = HELIUM__JOURNAL_RECORD__BODY_TASK_DONE;
    r.task_done = &t;
    cr_assert_eq(jnl_append(j, &r), 0, "%s", he_msg());
}

static void put_submit(jnl_t *j, uint64_t job) {
    Helium__SubmitJob s = HELIUM__SUBMIT_JOB__INIT;
    s.policy = "helium";
    s.client_tag = "tag";
    Helium__JournalSubmit js = HELIUM__JOURNAL_SUBMIT__INIT;
    js.job = job;
    js.submit = &s;
    js.submitted_us = 1000 + job;
    Helium__JournalRecord r = HELIUM__JOURNAL_RECORD__INIT;
    r.body_case = HELIUM__JOURNAL_RECORD__BODY_SUBMIT;
    r.submit = &js;
    cr_assert_eq(jnl_append(j, &r), 0, "%s", he_msg());
}

/* what a replay saw: "s<job>" / "t<job>.<op>:<text>" / "c<job>" / "m<last>" joined by ' ' */
typedef struct {
    char log[8192];
    int n;
} seen;

static int record(void *ud, const Helium__JournalRecord *r) {
    seen *s = ud;
    char one[128] = "";
    switch (r->body_case) {
    case HELIUM__JOURNAL_RECORD__BODY_SUBMIT:
        snprintf(one, sizeof one, "s%llu", (unsigned long long)r->submit->job);
        cr_assert_str_eq(r->submit->submit->policy, "helium");
        break;
    case HELIUM__JOURNAL_RECORD__BODY_TASK_DONE:
        snprintf(one, sizeof one, "t%llu.%u:%s", (unsigned long long)r->task_done->job, r->task_done->op,
                 r->task_done->text);
        break;
    case HELIUM__JOURNAL_RECORD__BODY_CANCEL: snprintf(one, sizeof one, "c%llu", (unsigned long long)r->cancel->job); break;
    case HELIUM__JOURNAL_RECORD__BODY_META: snprintf(one, sizeof one, "m%llu", (unsigned long long)r->meta->last_job); break;
    default: cr_assert_fail("record without a body"); break;
    }
    size_t l = strlen(s->log);
    snprintf(s->log + l, sizeof s->log - l, "%s%s", l ? " " : "", one);
    s->n++;
    return 0;
}

static off_t file_size(void) {
    struct stat sb;
    cr_assert_eq(stat(path, &sb), 0);
    return sb.st_size;
}

static void write_at(off_t off, const void *p, size_t n) {
    int fd = open(path, O_WRONLY | O_CREAT, 0600);
    cr_assert_geq(fd, 0);
    cr_assert_eq(pwrite(fd, p, n, off), (ssize_t)n);
    close(fd);
}

static void flip(off_t off) {
    int fd = open(path, O_RDWR);
    uint8_t b;
    cr_assert_eq(pread(fd, &b, 1, off), 1);
    b ^= 0x10;
    cr_assert_eq(pwrite(fd, &b, 1, off), 1);
    close(fd);
}

/* three records; returns the offsets where records 2 and 3 start */
static void three(off_t *r2, off_t *r3) {
    jnl_t *j = NULL;
    cr_assert_eq(jnl_open(dir, JNL_FSYNC_BATCH, NULL, NULL, &j), 0, "%s", he_msg());
    put_submit(j, 1);
    if (r2) *r2 = (off_t)jnl_size(j);
    put_task(j, 1, 0);
    if (r3) *r3 = (off_t)jnl_size(j);
    put_task(j, 1, 2);
    cr_assert_eq(jnl_sync(j), 0);
    jnl_destroy(&j);
    cr_assert_null(j);
}

Test(journal, records_come_back_in_order) {
    three(NULL, NULL);
    seen s = {0};
    jnl_t *j = NULL;
    cr_assert_eq(jnl_open(dir, JNL_FSYNC_BATCH, record, &s, &j), 0, "%s", he_msg());
    cr_assert_str_eq(s.log, "s1 t1.0:out-1-0 t1.2:out-1-2");
    jnl_stats st;
    jnl_get_stats(j, &st);
    cr_assert_eq(st.replayed, 3);
    cr_assert_eq(st.torn_bytes, 0);
    cr_assert_eq((off_t)st.size, file_size());
    jnl_destroy(&j);
}

Test(journal, torn_tail_cut_short_is_truncated_and_counted) {
    off_t r3;
    three(NULL, &r3);
    off_t full = file_size();
    cr_assert_eq(truncate(path, full - 3), 0);
    seen s = {0};
    jnl_t *j = NULL;
    cr_assert_eq(jnl_open(dir, JNL_FSYNC_BATCH, record, &s, &j), 0, "%s", he_msg());
    cr_assert_str_eq(s.log, "s1 t1.0:out-1-0");
    jnl_stats st;
    jnl_get_stats(j, &st);
    cr_assert_eq(st.torn_bytes, (uint64_t)(full - 3 - r3));
    cr_assert_eq(file_size(), r3, "the torn record is cut off the file");
    put_task(j, 1, 5); /* appending after a truncated tail works */
    jnl_destroy(&j);
    seen s2 = {0};
    cr_assert_eq(jnl_open(dir, JNL_FSYNC_OFF, record, &s2, &j), 0, "%s", he_msg());
    cr_assert_str_eq(s2.log, "s1 t1.0:out-1-0 t1.5:out-1-5");
    jnl_destroy(&j);
}

Test(journal, torn_tail_inside_a_frame_and_zero_extension) {
    off_t r3;
    three(NULL, &r3);
    cr_assert_eq(truncate(path, r3 + 5), 0); /* 5 bytes of a 12-byte frame */
    seen s = {0};
    jnl_t *j = NULL;
    cr_assert_eq(jnl_open(dir, JNL_FSYNC_BATCH, record, &s, &j), 0, "%s", he_msg());
    cr_assert_eq(s.n, 2);
    jnl_destroy(&j);
    cr_assert_eq(file_size(), r3);
    cr_assert_eq(truncate(path, r3 + 4096), 0); /* extended with zeros, never written */
    seen s2 = {0};
    cr_assert_eq(jnl_open(dir, JNL_FSYNC_BATCH, record, &s2, &j), 0, "%s", he_msg());
    cr_assert_eq(s2.n, 2);
    jnl_stats st;
    jnl_get_stats(j, &st);
    cr_assert_eq(st.torn_bytes, 4096);
    jnl_destroy(&j);
}

Test(journal, damaged_last_payload_is_a_torn_tail) {
    off_t r3;
    three(NULL, &r3);
    flip(file_size() - 2);
    seen s = {0};
    jnl_t *j = NULL;
    cr_assert_eq(jnl_open(dir, JNL_FSYNC_BATCH, record, &s, &j), 0, "%s", he_msg());
    cr_assert_eq(s.n, 2);
    cr_assert_eq(file_size(), r3);
    jnl_destroy(&j);
}

Test(journal, flipped_payload_byte_in_the_middle_is_an_error) {
    off_t r2, r3;
    three(&r2, &r3);
    off_t before = file_size();
    flip(r2 + JNL_FRAME_BYTES + 3);
    seen s = {0};
    jnl_t *j = NULL;
    int rc = jnl_open(dir, JNL_FSYNC_BATCH, record, &s, &j);
    cr_assert_eq(rc, HE_EFORMAT);
    cr_assert_null(j);
    cr_assert(strstr(he_msg(), "record 2"), "%s", he_msg());
    cr_assert(strstr(he_msg(), "CRC mismatch"), "%s", he_msg());
    cr_assert_eq(file_size(), before, "a corrupt journal is left as it was");
}

Test(journal, flipped_length_byte_in_the_middle_is_an_error) {
    off_t r2;
    three(&r2, NULL);
    flip(r2 + 2); /* a length that would reach past the end, if trusted */
    jnl_t *j = NULL;
    cr_assert_eq(jnl_open(dir, JNL_FSYNC_BATCH, NULL, NULL, &j), HE_EFORMAT);
    cr_assert(strstr(he_msg(), "length"), "%s", he_msg());
}

Test(journal, not_a_journal) {
    write_at(0, "NOTAJRNLxxxxxxxxxxxx", 20);
    jnl_t *j = NULL;
    cr_assert_eq(jnl_open(dir, JNL_FSYNC_BATCH, NULL, NULL, &j), HE_EFORMAT);
    cr_assert(strstr(he_msg(), "not a Helium journal"), "%s", he_msg());
}

static bool keep_even(void *ud, const Helium__JournalRecord *r) {
    uint64_t job = r->body_case == HELIUM__JOURNAL_RECORD__BODY_SUBMIT ? r->submit->job
                   : r->body_case == HELIUM__JOURNAL_RECORD__BODY_TASK_DONE ? r->task_done->job
                   : r->body_case == HELIUM__JOURNAL_RECORD__BODY_CANCEL ? r->cancel->job
                                                                           : 0;
    (*(int *)ud)++;
    return job % 2 == 0;
}

Test(journal, compaction_keeps_what_the_filter_keeps) {
    jnl_t *j = NULL;
    cr_assert_eq(jnl_open(dir, JNL_FSYNC_BATCH, NULL, NULL, &j), 0, "%s", he_msg());
    for (uint64_t job = 1; job <= 6; job++) {
        put_submit(j, job);
        put_task(j, job, 1);
    }
    Helium__JournalRecord c = HELIUM__JOURNAL_RECORD__INIT;
    Helium__JournalCancel cc = HELIUM__JOURNAL_CANCEL__INIT;
    cc.job = 4;
    c.body_case = HELIUM__JOURNAL_RECORD__BODY_CANCEL;
    c.cancel = &cc;
    cr_assert_eq(jnl_append(j, &c), 0);
    uint64_t before = jnl_size(j);
    Helium__JournalMeta meta = HELIUM__JOURNAL_META__INIT;
    meta.last_job = 6;
    int visited = 0;
    cr_assert_eq(jnl_compact(j, &meta, keep_even, &visited), 0, "%s", he_msg());
    cr_assert_eq(visited, 13);
    cr_assert_lt(jnl_size(j), before);
    cr_assert_eq((off_t)jnl_size(j), file_size());
    cr_assert_not(jnl_dirty(j), "a compacted journal is durable");
    put_task(j, 6, 7); /* appends go to the new file */
    jnl_destroy(&j);
    /* a compaction that died before its rename left its temp file */
    char tmp[320];
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    FILE *f = fopen(tmp, "w");
    fputs("half a snapshot", f);
    fclose(f);
    seen s = {0};
    cr_assert_eq(jnl_open(dir, JNL_FSYNC_BATCH, record, &s, &j), 0, "%s", he_msg());
    cr_assert_str_eq(s.log, "m6 s2 t2.1:out-2-1 s4 t4.1:out-4-1 s6 t6.1:out-6-1 c4 t6.7:out-6-7");
    cr_assert_eq(access(tmp, F_OK), -1, "the stale temp file is removed");
    jnl_destroy(&j);
}

Test(journal, fsync_modes) {
    jnl_stats st;
    jnl_t *j = NULL;
    cr_assert_eq(jnl_open(dir, JNL_FSYNC_BATCH, NULL, NULL, &j), 0, "%s", he_msg());
    for (int i = 0; i < 10; i++) put_task(j, 1, (uint32_t)i);
    jnl_get_stats(j, &st);
    cr_assert_eq(st.syncs, 0, "batch: appends wait for the group sync");
    cr_assert(jnl_dirty(j));
    cr_assert_eq(jnl_sync(j), 0);
    cr_assert_eq(jnl_sync(j), 0); /* nothing pending: no second sync */
    jnl_get_stats(j, &st);
    cr_assert_eq(st.syncs, 1, "one sync for the burst of 10");
    cr_assert_eq(st.appends, 10);
    jnl_destroy(&j);
    cr_assert_eq(jnl_open(dir, JNL_FSYNC_ALWAYS, NULL, NULL, &j), 0, "%s", he_msg());
    for (int i = 0; i < 3; i++) put_task(j, 2, (uint32_t)i);
    jnl_get_stats(j, &st);
    cr_assert_eq(st.syncs, 3, "always: one sync per append");
    cr_assert_not(jnl_dirty(j));
    jnl_destroy(&j);
    cr_assert_eq(jnl_open(dir, JNL_FSYNC_OFF, NULL, NULL, &j), 0, "%s", he_msg());
    put_task(j, 3, 0);
    cr_assert_not(jnl_dirty(j));
    jnl_get_stats(j, &st);
    cr_assert_eq(st.syncs, 0);
    cr_assert_eq(st.replayed, 13);
    jnl_destroy(&j);
    jnl_fsync m;
    cr_assert_eq(jnl_fsync_parse("always", &m), 0);
    cr_assert_eq(m, JNL_FSYNC_ALWAYS);
    cr_assert_eq(jnl_fsync_parse("off", &m), 0);
    cr_assert_eq(m, JNL_FSYNC_OFF);
    cr_assert_eq(jnl_fsync_parse("sometimes", &m), HE_EINVAL);
    cr_assert_str_eq(jnl_fsync_name(JNL_FSYNC_BATCH), "batch");
}

Test(journal, crc32c_known_value) {
    /* the standard check value of CRC-32C */
    cr_assert_eq(jnl_crc32c(0, "123456789", 9), 0xe3069283u);
    cr_assert_eq(jnl_crc32c(jnl_crc32c(0, "1234", 4), "56789", 5), 0xe3069283u);
}
