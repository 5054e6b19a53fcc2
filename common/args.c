/* args: see args.h. */
#include "args.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>

bool args_long(const char *s, long lo, long hi, long *out) {
    if (!s || !*s || *s == ' ' || *s == '\t') return false;
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || *end || v < lo || v > hi) return false;
    *out = v;
    return true;
}

bool args_int(const char *s, int lo, int hi, int *out) {
    long v;
    if (!args_long(s, lo, hi, &v)) return false;
    *out = (int)v;
    return true;
}

bool args_u64(const char *s, uint64_t *out) {
    if (!s || *s < '0' || *s > '9') return false;
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno || *end) return false;
    *out = (uint64_t)v;
    return true;
}

bool args_double(const char *s, double lo, double hi, double *out) {
    if (!s || !*s || *s == ' ' || *s == '\t') return false;
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (errno || *end || !isfinite(v) || v < lo || v > hi) return false;
    *out = v;
    return true;
}
