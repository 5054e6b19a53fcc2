/* log: see log.h. Lines are written with one fprintf so concurrent
 * processes sharing a terminal do not interleave within a line. */
#include "log.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

static clog_level g_level = CLOG_INFO;
static char g_name[64] = "coord";

void clog_set_level(clog_level level) { g_level = level; }

void clog_set_name(const char *name) { snprintf(g_name, sizeof g_name, "%s", name ? name : ""); }

int clog_level_from_name(const char *name) {
    static const char *names[] = {"error", "warn", "info", "debug"};
    for (int i = 0; name && i < 4; i++)
        if (strcmp(name, names[i]) == 0) return i;
    return -1;
}

bool clog_on(clog_level level) { return level <= g_level; }

void clog_msg(clog_level level, const char *fmt, ...) {
    if (level > g_level) return;
    static const char *tag[] = {"error: ", "warning: ", "", "debug: "};
    char msg[2048];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    if (g_level >= CLOG_DEBUG) { /* debug logs carry a monotonic clock (s) to read timelines */
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        fprintf(stderr, "[%s %ld.%03ld] %s%s\n", g_name, (long)ts.tv_sec, ts.tv_nsec / 1000000L, tag[level], msg);
        return;
    }
    fprintf(stderr, "[%s] %s%s\n", g_name, tag[level], msg);
}
