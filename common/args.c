/* args: see args.h. */
#include "args.h"

#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

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

/* ---------------------------------------------------------------- environment layer */

bool args_env_name(const char *prefix, const char *name, char *buf, size_t cap) {
    size_t lp = strlen(prefix), ln = strlen(name);
    if (lp + 1 + ln + 1 > cap) return false;
    memcpy(buf, prefix, lp);
    buf[lp] = '_';
    for (size_t i = 0; i < ln; i++) {
        char c = name[i];
        buf[lp + 1 + i] = c == '-' ? '_' : (char)toupper((unsigned char)c);
    }
    buf[lp + 1 + ln] = 0;
    return true;
}

/* 1 for a true switch value, 0 for a false one, -1 for neither. */
static int switch_value(const char *v) {
    static const char *yes[] = {"1", "true", "yes", "on"}, *no[] = {"0", "false", "no", "off"};
    for (size_t i = 0; i < 4; i++) {
        if (!strcasecmp(v, yes[i])) return 1;
        if (!strcasecmp(v, no[i])) return 0;
    }
    return -1;
}

int args_env_merge(const char *prefix, const args_env_opt *opts, size_t n, int argc, char **argv, int at,
                   int *argc_out, char ***argv_out, char *err, size_t cap) {
    *argv_out = NULL;
    *argc_out = 0;
    if (at < 0 || at > argc) at = argc;
    /* one block: the vector (at most two words per option, argv, the NULL
     * terminator), then the "--name" strings it points to */
    size_t nptr = (size_t)argc + 2 * n + 1, nchar = 0;
    for (size_t j = 0; j < n; j++) nchar += strlen(opts[j].name) + 3;
    char **v = calloc(1, nptr * sizeof *v + nchar);
    if (!v) {
        snprintf(err, cap, "out of memory");
        return -1;
    }
    char *str = (char *)(v + nptr);
    int k = 0;
    for (int i = 0; i < at; i++) v[k++] = argv[i];
    for (size_t j = 0; j < n; j++) {
        char var[128];
        if (!args_env_name(prefix, opts[j].name, var, sizeof var)) continue;
        const char *val = getenv(var);
        if (!val || !*val) continue;
        if (!opts[j].has_value) {
            int b = switch_value(val);
            if (b < 0) {
                snprintf(err, cap, "%s='%s': a switch takes 1/true/yes/on or 0/false/no/off", var, val);
                free(v);
                return -1;
            }
            if (!b) continue;
        }
        size_t l = strlen(opts[j].name);
        str[0] = str[1] = '-';
        memcpy(str + 2, opts[j].name, l + 1);
        v[k++] = str;
        str += l + 3;
        if (opts[j].has_value) v[k++] = (char *)val;
    }
    for (int i = at; i < argc; i++) v[k++] = argv[i];
    v[k] = NULL;
    *argv_out = v;
    *argc_out = k;
    return 0;
}

void args_env_free(char ***argv_p) {
    if (!argv_p || !*argv_p) return;
    free(*argv_p);
    *argv_p = NULL;
}
