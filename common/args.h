/* args: strict parsing of numeric command-line values, shared by the
 * programs' option parsers (coordinator, worker, heliumctl).
 *
 * Each accepts only a whole, in-range number: "12x", "", " 5" and overflow
 * are refused (atoi would take them), so a mistyped option is reported
 * instead of silently becoming 0 or a prefix of what was meant.
 */
#ifndef HELIUM_ARGS_H
#define HELIUM_ARGS_H

#include <stdbool.h>
#include <stdint.h>

/* A decimal integer in [lo, hi]; false otherwise (*out untouched). */
bool args_long(const char *s, long lo, long hi, long *out);
/* The same into an int (lo and hi within int's range). */
bool args_int(const char *s, int lo, int hi, int *out);
/* A decimal unsigned 64-bit integer (no sign). */
bool args_u64(const char *s, uint64_t *out);
/* A finite decimal number in [lo, hi]. */
bool args_double(const char *s, double lo, double hi, double *out);

#endif
