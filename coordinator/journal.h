/* journal: the coordinator's write-ahead log of accepted jobs and finished
 * calls, so that a restarted coordinator (kill -9, crash, reboot) loses no
 * job it acknowledged (Redis's append-only file and etcd's WAL are the
 * models; docs/journal.md describes the whole design).
 *
 * On disk: DIR/journal = an 8-byte file header ("HJNL", u32 version 1), then
 * records, each a 12-byte frame [u32 len][u32 len_crc][u32 crc] and len bytes
 * of a protobuf JournalRecord; little-endian; CRC32C (Castagnoli): len_crc
 * over the four length bytes (xor JNL_LEN_SALT, so zeros never pass), crc
 * over the payload. The length's own check tells a corrupt length from an
 * append cut short. Records are only appended; compaction rewrites the file.
 *
 * Invariants:
 *   - after jnl_open, the file is a header followed by valid records only: a
 *     torn tail (an incomplete last frame or record, a zero-filled extension,
 *     or a last record whose payload CRC fails) is truncated and counted in
 *     torn_bytes; any other invalid record (a length failing its check, a
 *     payload CRC failing with more data after it, a payload that does not
 *     parse) is corruption: jnl_open fails with HE_EFORMAT naming the
 *     record's number and offset, and leaves the file untouched;
 *   - a failed append leaves the file as it was before it (truncated back);
 *   - durability: with JNL_FSYNC_ALWAYS every append is fdatasync'ed before
 *     it returns; with JNL_FSYNC_BATCH appends are written at once and made
 *     durable together by jnl_sync (group commit: the caller syncs once per
 *     loop turn, before it acknowledges what it appended); JNL_FSYNC_OFF
 *     never syncs (a killed process loses nothing, a power cut may);
 *   - compaction (jnl_compact) writes DIR/journal.tmp, fdatasyncs it, renames
 *     it over DIR/journal and fsyncs DIR: at every instant one complete
 *     journal is in place; a stale journal.tmp is removed by jnl_open.
 *
 * Single-threaded: the coordinator's loop owns the handle.
 */
#ifndef HELIUM_COORD_JOURNAL_H
#define HELIUM_COORD_JOURNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "helium.pb-c.h"

#define JNL_VERSION 1
#define JNL_HEADER_BYTES 8
#define JNL_FRAME_BYTES 12            /* length, its CRC, the payload's CRC */
#define JNL_LEN_SALT 0x4a4e4c31u      /* "JNL1" */
#define JNL_MAX_RECORD (64u << 20)    /* payload bytes of one record */

typedef enum { JNL_FSYNC_ALWAYS = 0, JNL_FSYNC_BATCH = 1, JNL_FSYNC_OFF = 2 } jnl_fsync;

typedef struct jnl jnl_t;

typedef struct {
    uint64_t replayed;      /* records read by jnl_open */
    uint64_t torn_bytes;    /* bytes truncated from the tail by jnl_open */
    uint64_t appends;       /* records appended since open */
    uint64_t syncs;         /* fdatasync calls for appends */
    uint64_t compactions;   /* jnl_compact runs that replaced the file */
    uint64_t size;          /* current file size in bytes */
} jnl_stats;

/* Called once per valid record, in file order; a negative return stops the
 * replay and jnl_open returns it. */
typedef int (*jnl_replay_fn)(void *ud, const Helium__JournalRecord *r);

/* Compaction filter: true keeps the record. */
typedef bool (*jnl_keep_fn)(void *ud, const Helium__JournalRecord *r);

/* "always", "batch", "off" -> mode; HE_EINVAL otherwise. */
int jnl_fsync_parse(const char *s, jnl_fsync *out);
const char *jnl_fsync_name(jnl_fsync mode);

/* Opens DIR/journal (creating DIR and the file when missing), truncates a
 * torn tail, and replays every record through fn (may be NULL). Returns 0 or
 * a negative herr code (HE_EIO, HE_EFORMAT for a corrupt journal, or fn's
 * code) with he_msg() set; *out is NULL then. */
int jnl_open(const char *dir, jnl_fsync mode, jnl_replay_fn fn, void *ud, jnl_t **out);
void jnl_destroy(jnl_t **self_p);

/* Appends one record (see the durability invariant). HE_ELIMIT when it packs
 * to more than JNL_MAX_RECORD bytes, HE_EIO when the write or sync fails. */
int jnl_append(jnl_t *j, const Helium__JournalRecord *r);

/* Makes every append so far durable (one fdatasync; none when nothing is
 * pending or the mode is OFF). */
int jnl_sync(jnl_t *j);
/* True when appends are waiting for jnl_sync (never in mode OFF). */
bool jnl_dirty(const jnl_t *j);

/* Rewrites the journal as meta (may be NULL) followed by the records keep()
 * accepts, in their order; durable on return. On failure the old journal
 * stays in use and intact. Work: one pass over the file. */
int jnl_compact(jnl_t *j, const Helium__JournalMeta *meta, jnl_keep_fn keep, void *ud);

uint64_t jnl_size(const jnl_t *j);
void jnl_get_stats(const jnl_t *j, jnl_stats *out);
const char *jnl_path(const jnl_t *j);

/* CRC32C (Castagnoli) of data[0..n), continuing from crc (0 to start). */
uint32_t jnl_crc32c(uint32_t crc, const void *data, size_t n);

#endif
