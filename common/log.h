/* log: a Helium process's stderr log, one line per event: "[coord] ...",
 * "[worker w1] ...".
 *
 * Levels: error < warn < info < debug; lines above the configured level are
 * dropped before formatting (clog_on() lets callers skip building arguments).
 * The level and the name are set once at start-up, before any thread starts;
 * after that every thread may log (each line is one fprintf, so lines from
 * threads and processes sharing a terminal do not interleave).
 */
#ifndef HELIUM_LOG_H
#define HELIUM_LOG_H

#include <stdbool.h>

typedef enum { CLOG_ERROR = 0, CLOG_WARN = 1, CLOG_INFO = 2, CLOG_DEBUG = 3 } clog_level;

void clog_set_level(clog_level level);
/* The name in each line's brackets ("coord" by default); at most 63 bytes kept. */
void clog_set_name(const char *name);
/* "error", "warn", "info", "debug" -> level; -1 for anything else. */
int clog_level_from_name(const char *name);
bool clog_on(clog_level level);
void clog_msg(clog_level level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#endif
