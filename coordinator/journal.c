/* journal: the coordinator's write-ahead log; see journal.h for the format
 * and the invariants.
 *
 * A scan walks the records of a mapped file and classifies the first bad one
 * (an append is one write(2), so a crash leaves a prefix of it, or a file
 * extended with zeros when the data never reached the disk):
 *   - fewer than 12 bytes left, nothing but zero bytes left, a record whose
 *     checked length reaches past the end of the file, or a payload CRC
 *     failure in a record that ends exactly at the end: a torn tail;
 *   - a length failing its check, a payload CRC failure with more data after
 *     it, an impossible length or a payload that does not parse: corruption.
 */
#define _GNU_SOURCE
#include "journal.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "herr.h"

static const uint8_t magic[4] = {'H', 'J', 'N', 'L'};

struct jnl {
    char *dir;
    char *path;      /* DIR/journal */
    char *tmp_path;  /* DIR/journal.tmp */
    int fd;          /* open for appending */
    jnl_fsync mode;
    uint64_t size;   /* bytes in the file (all valid) */
    bool dirty;      /* appended since the last sync */
    jnl_stats st;
};

/* ------------------------------------------------------------------ CRC32C */

static uint32_t crc_table[256];

static void crc_init(void) {
    if (crc_table[1]) return;
    for (uint32_t i = 0; i < 256; i++) {
        uint32_t c = i;
        for (int k = 0; k < 8; k++) c = (c & 1) ? (c >> 1) ^ 0x82f63b78u : c >> 1;
        crc_table[i] = c;
    }
}

uint32_t jnl_crc32c(uint32_t crc, const void *data, size_t n) {
    crc_init();
    const uint8_t *p = data;
    crc = ~crc;
    for (size_t i = 0; i < n; i++) crc = crc_table[(crc ^ p[i]) & 0xff] ^ (crc >> 8);
    return ~crc;
}

static uint32_t get_u32(const uint8_t *p) {
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static void put_u32(uint8_t *p, uint32_t v) {
    p[0] = (uint8_t)v;
    p[1] = (uint8_t)(v >> 8);
    p[2] = (uint8_t)(v >> 16);
    p[3] = (uint8_t)(v >> 24);
}

/* ------------------------------------------------------------------ modes */

int jnl_fsync_parse(const char *s, jnl_fsync *out) {
    if (s && !strcmp(s, "always")) *out = JNL_FSYNC_ALWAYS;
    else if (s && !strcmp(s, "batch")) *out = JNL_FSYNC_BATCH;
    else if (s && !strcmp(s, "off")) *out = JNL_FSYNC_OFF;
    else return he_set(HE_EINVAL, "--fsync takes always, batch or off, not '%s'", s ? s : "");
    return 0;
}

const char *jnl_fsync_name(jnl_fsync mode) {
    return mode == JNL_FSYNC_ALWAYS ? "always" : mode == JNL_FSYNC_BATCH ? "batch" : "off";
}

/* ------------------------------------------------------------------ scanning */

typedef struct {
    size_t valid;     /* bytes of header + valid records */
    uint64_t records; /* valid records */
    bool torn;        /* bytes after valid form a torn tail */
} scan_result;

typedef int (*record_fn)(void *ud, const Helium__JournalRecord *r, const uint8_t *frame, size_t frame_len);

static bool all_zero(const uint8_t *p, size_t n) {
    for (size_t i = 0; i < n; i++)
        if (p[i]) return false;
    return true;
}

/* Walks the records of p[0..n) (the header already checked), calling fn for
 * each valid one. Returns 0 (res says where the valid part ends and whether
 * the rest is a torn tail), HE_EFORMAT for corruption, or fn's error. */
static int scan(const char *path, const uint8_t *p, size_t n, record_fn fn, void *ud, scan_result *res) {
    size_t off = JNL_HEADER_BYTES;
    res->records = 0;
    res->torn = false;
    while (off < n) {
        size_t left = n - off, end = n;
        const char *why = NULL;
        if (left < JNL_FRAME_BYTES) {
            res->torn = true;
            break;
        }
        uint32_t len = get_u32(p + off), len_crc = get_u32(p + off + 4), crc = get_u32(p + off + 8);
        Helium__JournalRecord *r = NULL;
        if ((jnl_crc32c(0, p + off, 4) ^ JNL_LEN_SALT) != len_crc) {
            if (all_zero(p + off, left)) { /* extended, never written */
                res->torn = true;
                break;
            }
            why = "its length fails its check";
        } else if (len > JNL_MAX_RECORD) {
            why = "impossible length";
        } else if (len > left - JNL_FRAME_BYTES) {
            res->torn = true; /* an append cut short */
            break;
        } else {
            end = off + JNL_FRAME_BYTES + len;
            if (jnl_crc32c(0, p + off + JNL_FRAME_BYTES, len) != crc) {
                if (end == n) { /* the last record's data never fully landed */
                    res->torn = true;
                    break;
                }
                why = "CRC mismatch";
            } else {
                r = helium__journal_record__unpack(NULL, len, p + off + JNL_FRAME_BYTES);
                if (!r || r->body_case == HELIUM__JOURNAL_RECORD__BODY__NOT_SET) why = "unparsable record";
            }
        }
        if (why) {
            if (r) helium__journal_record__free_unpacked(r, NULL);
            return he_set(HE_EFORMAT,
                          "journal %s: record %llu at byte %zu is corrupt (%s; %zu bytes follow it); "
                          "refusing to start (move the journal aside to start empty)",
                          path, (unsigned long long)res->records + 1, off, why, n - end);
        }
        int rc = fn ? fn(ud, r, p + off, JNL_FRAME_BYTES + len) : 0;
        helium__journal_record__free_unpacked(r, NULL);
        if (rc < 0) return rc;
        res->records++;
        off = end;
    }
    res->valid = off < n ? off : n;
    return 0;
}

/* ------------------------------------------------------------------ files */

static int write_all(int fd, const uint8_t *p, size_t n) {
    while (n) {
        ssize_t w = write(fd, p, n);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) return -1;
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

static int sync_dir(const char *dir) {
    int fd = open(dir, O_RDONLY | O_DIRECTORY);
    if (fd < 0) return he_set(HE_EIO, "journal: cannot open folder %s: %s", dir, strerror(errno));
    int rc = fsync(fd);
    int e = errno;
    close(fd);
    return rc ? he_set(HE_EIO, "journal: fsync of folder %s: %s", dir, strerror(e)) : 0;
}

static int write_header(int fd, const char *path) {
    uint8_t h[JNL_HEADER_BYTES];
    memcpy(h, magic, 4);
    put_u32(h + 4, JNL_VERSION);
    if (write_all(fd, h, sizeof h)) return he_set(HE_EIO, "journal %s: cannot write: %s", path, strerror(errno));
    return 0;
}

static char *join(const char *dir, const char *name) {
    size_t n = strlen(dir) + strlen(name) + 2;
    char *s = malloc(n);
    if (s) snprintf(s, n, "%s/%s", dir, name);
    return s;
}

typedef struct {
    jnl_replay_fn fn;
    void *ud;
} replay_ctx;

static int replay_one(void *ud, const Helium__JournalRecord *r, const uint8_t *frame, size_t frame_len) {
    replay_ctx *c = ud;
    return c->fn ? c->fn(c->ud, r) : 0;
}

/* Maps and checks j->path, replays it, truncates a torn tail. */
static int load(jnl_t *j, jnl_replay_fn fn, void *ud) {
    struct stat sb;
    if (fstat(j->fd, &sb)) return he_set(HE_EIO, "journal %s: stat: %s", j->path, strerror(errno));
    size_t n = (size_t)sb.st_size;
    if (n == 0) {
        int rc = write_header(j->fd, j->path);
        if (rc) return rc;
        if (fdatasync(j->fd)) return he_set(HE_EIO, "journal %s: fdatasync: %s", j->path, strerror(errno));
        j->size = JNL_HEADER_BYTES;
        return sync_dir(j->dir);
    }
    uint8_t *p = mmap(NULL, n, PROT_READ, MAP_PRIVATE, j->fd, 0);
    if (p == MAP_FAILED) return he_set(HE_EIO, "journal %s: mmap: %s", j->path, strerror(errno));
    int rc = 0;
    if (n < JNL_HEADER_BYTES || memcmp(p, magic, 4) || get_u32(p + 4) != JNL_VERSION) {
        rc = he_set(HE_EFORMAT, "journal %s: not a Helium journal (version %d) of %zu bytes", j->path, JNL_VERSION,
                    n);
    } else {
        replay_ctx c = {fn, ud};
        scan_result res = {0};
        rc = scan(j->path, p, n, replay_one, &c, &res);
        if (!rc) {
            j->st.replayed = res.records;
            j->size = res.valid;
            if (res.valid < n) {
                j->st.torn_bytes = n - res.valid;
                if (ftruncate(j->fd, (off_t)res.valid) || fdatasync(j->fd))
                    rc = he_set(HE_EIO, "journal %s: cannot truncate the torn tail: %s", j->path, strerror(errno));
            }
        }
    }
    munmap(p, n);
    return rc;
}

int jnl_open(const char *dir, jnl_fsync mode, jnl_replay_fn fn, void *ud, jnl_t **out) {
    *out = NULL;
    if (!dir || !*dir) return he_set(HE_EINVAL, "journal: no folder given");
    if (mkdir(dir, 0700) && errno != EEXIST)
        return he_set(HE_EIO, "journal: cannot create folder %s: %s", dir, strerror(errno));
    jnl_t *j = calloc(1, sizeof *j);
    if (!j) return he_set(HE_ENOMEM, "journal: out of memory");
    j->fd = -1;
    j->mode = mode;
    j->dir = strdup(dir);
    j->path = join(dir, "journal");
    j->tmp_path = join(dir, "journal.tmp");
    if (!j->dir || !j->path || !j->tmp_path) {
        jnl_destroy(&j);
        return he_set(HE_ENOMEM, "journal: out of memory");
    }
    (void)unlink(j->tmp_path); /* a compaction that died before its rename */
    j->fd = open(j->path, O_RDWR | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
    if (j->fd < 0) {
        int rc = he_set(HE_EIO, "journal: cannot open %s: %s", j->path, strerror(errno));
        jnl_destroy(&j);
        return rc;
    }
    int rc = load(j, fn, ud);
    if (rc) {
        jnl_destroy(&j);
        return rc;
    }
    j->st.size = j->size;
    *out = j;
    return 0;
}

void jnl_destroy(jnl_t **self_p) {
    if (!self_p || !*self_p) return;
    jnl_t *j = *self_p;
    if (j->fd >= 0) {
        if (j->dirty) (void)fdatasync(j->fd);
        close(j->fd);
    }
    free(j->dir);
    free(j->path);
    free(j->tmp_path);
    free(j);
    *self_p = NULL;
}

/* ------------------------------------------------------------------ appending */

/* Frames r into a malloc'd buffer; *n its size. NULL with len_err set (and
 * he_msg) when it is too large or memory runs out. */
static int len_err;
static uint8_t *frame(const Helium__JournalRecord *r, size_t *n) {
    size_t len = helium__journal_record__get_packed_size(r);
    if (len > JNL_MAX_RECORD) {
        len_err = he_set(HE_ELIMIT, "journal: a record of %zu bytes is over the limit (%u)", len, JNL_MAX_RECORD);
        return NULL;
    }
    uint8_t *b = malloc(JNL_FRAME_BYTES + len);
    if (!b) {
        len_err = he_set(HE_ENOMEM, "journal: out of memory");
        return NULL;
    }
    put_u32(b, (uint32_t)len);
    put_u32(b + 4, jnl_crc32c(0, b, 4) ^ JNL_LEN_SALT);
    helium__journal_record__pack(r, b + JNL_FRAME_BYTES);
    put_u32(b + 8, jnl_crc32c(0, b + JNL_FRAME_BYTES, len));
    *n = JNL_FRAME_BYTES + len;
    return b;
}

int jnl_append(jnl_t *j, const Helium__JournalRecord *r) {
    size_t n;
    uint8_t *b = frame(r, &n);
    if (!b) return len_err;
    int rc = 0;
    if (write_all(j->fd, b, n)) {
        rc = he_set(HE_EIO, "journal %s: append failed: %s", j->path, strerror(errno));
        /* a partial record would make the next append follow garbage */
        if (ftruncate(j->fd, (off_t)j->size))
            rc = he_set(HE_EIO, "journal %s: append failed and the partial record stays: %s", j->path,
                        strerror(errno));
    } else {
        j->size += n;
        j->st.appends++;
        if (j->mode == JNL_FSYNC_ALWAYS) {
            j->st.syncs++;
            if (fdatasync(j->fd)) rc = he_set(HE_EIO, "journal %s: fdatasync: %s", j->path, strerror(errno));
        } else if (j->mode == JNL_FSYNC_BATCH) {
            j->dirty = true;
        }
    }
    free(b);
    j->st.size = j->size;
    return rc;
}

int jnl_sync(jnl_t *j) {
    if (!j || !j->dirty) return 0;
    j->dirty = false;
    j->st.syncs++;
    if (fdatasync(j->fd)) return he_set(HE_EIO, "journal %s: fdatasync: %s", j->path, strerror(errno));
    return 0;
}

bool jnl_dirty(const jnl_t *j) { return j && j->dirty; }

/* ------------------------------------------------------------------ compaction */

typedef struct {
    int fd;
    jnl_keep_fn keep;
    void *ud;
    uint64_t bytes;
} compact_ctx;

static int copy_kept(void *ud, const Helium__JournalRecord *r, const uint8_t *fr, size_t fr_len) {
    compact_ctx *c = ud;
    if (c->keep && !c->keep(c->ud, r)) return 0;
    if (write_all(c->fd, fr, fr_len)) return he_set(HE_EIO, "journal: compaction write: %s", strerror(errno));
    c->bytes += fr_len;
    return 0;
}

int jnl_compact(jnl_t *j, const Helium__JournalMeta *meta, jnl_keep_fn keep, void *ud) {
    uint8_t *p = j->size ? mmap(NULL, (size_t)j->size, PROT_READ, MAP_PRIVATE, j->fd, 0) : MAP_FAILED;
    if (p == MAP_FAILED) return he_set(HE_EIO, "journal %s: mmap: %s", j->path, strerror(errno));
    int fd = open(j->tmp_path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    int rc = fd < 0 ? he_set(HE_EIO, "journal: cannot create %s: %s", j->tmp_path, strerror(errno)) : 0;
    compact_ctx c = {fd, keep, ud, JNL_HEADER_BYTES};
    if (!rc) rc = write_header(fd, j->tmp_path);
    if (!rc && meta) {
        Helium__JournalRecord r = HELIUM__JOURNAL_RECORD__INIT;
        r.body_case = HELIUM__JOURNAL_RECORD__BODY_META;
        r.meta = (Helium__JournalMeta *)meta;
        size_t n;
        uint8_t *b = frame(&r, &n);
        if (!b) rc = len_err;
        else if (write_all(fd, b, n)) rc = he_set(HE_EIO, "journal: compaction write: %s", strerror(errno));
        else c.bytes += n;
        free(b);
    }
    scan_result res;
    if (!rc) rc = scan(j->path, p, (size_t)j->size, copy_kept, &c, &res);
    munmap(p, (size_t)j->size);
    if (!rc && fdatasync(fd)) rc = he_set(HE_EIO, "journal %s: fdatasync: %s", j->tmp_path, strerror(errno));
    if (fd >= 0) close(fd);
    if (!rc && rename(j->tmp_path, j->path))
        rc = he_set(HE_EIO, "journal: rename %s -> %s: %s", j->tmp_path, j->path, strerror(errno));
    if (rc) {
        (void)unlink(j->tmp_path);
        return rc;
    }
    /* the new file is in place: from here on only the folder sync and the
     * reopen can fail, and the old descriptor points at the replaced file */
    rc = sync_dir(j->dir);
    int nfd = open(j->path, O_RDWR | O_APPEND | O_CLOEXEC);
    if (nfd < 0) return he_set(HE_EIO, "journal: cannot reopen %s: %s", j->path, strerror(errno));
    close(j->fd);
    j->fd = nfd;
    j->size = c.bytes;
    j->dirty = false;
    j->st.compactions++;
    j->st.size = j->size;
    return rc;
}

/* ------------------------------------------------------------------ accessors */

uint64_t jnl_size(const jnl_t *j) { return j->size; }
const char *jnl_path(const jnl_t *j) { return j->path; }
void jnl_get_stats(const jnl_t *j, jnl_stats *out) { *out = j->st; }
