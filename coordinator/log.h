/* log: the coordinator's stderr log, one line per event: "[coord] ...".
 *
 * Levels: error < warn < info < debug; lines above the configured level are
 * dropped before formatting (clog_on() lets callers skip building arguments).
 * Single-threaded use (the loop); the metrics thread never logs.
 */
#ifndef HELIUM_COORD_LOG_H
#define HELIUM_COORD_LOG_H

#include <stdbool.h>

typedef enum { CLOG_ERROR = 0, CLOG_WARN = 1, CLOG_INFO = 2, CLOG_DEBUG = 3 } clog_level;

void clog_set_level(clog_level level);
/* "error", "warn", "info", "debug" -> level; -1 for anything else. */
int clog_level_from_name(const char *name);
bool clog_on(clog_level level);
void clog_msg(clog_level level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#endif
