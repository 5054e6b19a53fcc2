/* args: strict parsing of numeric command-line values, shared by the
 * programs' option parsers (coordinator, worker, heliumctl).
 *
 * Each accepts only a whole, in-range number: "12x", "", " 5" and overflow
 * are refused (atoi would take them), so a mistyped option is reported
 * instead of silently becoming 0 or a prefix of what was meant.
 *
 * The environment layer (args_env_merge) lets every long option --foo-bar of
 * a program also be set as PREFIX_FOO_BAR (the prefix names the program:
 * HELIUM_COORD, HELIUM_WORKER, HELIUMCTL), the way containers are
 * configured. Precedence: command line, then environment, then the built-in
 * default. It works by building a new argv with the environment's options
 * placed before the command line's, so each program's own parser checks every
 * value the same way whichever way it came, and a later (command-line) value
 * of a single-valued option replaces the earlier (environment) one.
 */
#ifndef HELIUM_ARGS_H
#define HELIUM_ARGS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* A decimal integer in [lo, hi]; false otherwise (*out untouched). */
bool args_long(const char *s, long lo, long hi, long *out);
/* The same into an int (lo and hi within int's range). */
bool args_int(const char *s, int lo, int hi, int *out);
/* A decimal unsigned 64-bit integer (no sign). */
bool args_u64(const char *s, uint64_t *out);
/* A finite decimal number in [lo, hi]. */
bool args_double(const char *s, double lo, double hi, double *out);

/* One long option as the environment layer sees it. */
typedef struct {
    const char *name; /* without the dashes: "kv-mb" */
    bool has_value;   /* false: a switch such as --stream */
} args_env_opt;

/* The variable for option NAME: PREFIX "_" NAME upper-cased, '-' -> '_'
 * ("HELIUM_WORKER", "kv-mb" -> "HELIUM_WORKER_KV_MB"). False if it does not
 * fit in cap bytes. */
bool args_env_name(const char *prefix, const char *name, char *buf, size_t cap);

/* Builds *argv_out: argv[0 .. at-1], then "--NAME VALUE" (or "--NAME" for a
 * switch) for each option of opts[0 .. n-1] whose variable is set and not
 * empty, then argv[at .. argc-1]; *argc_out is its length. A switch's value
 * must be 1/true/yes/on (present) or 0/false/no/off (absent). Returns 0, or
 * -1 with a message in err (cap bytes) for a bad switch value or no memory.
 * Free the result with args_env_free (only the vector is allocated: the
 * strings are argv's, the environment's and opts'). */
int args_env_merge(const char *prefix, const args_env_opt *opts, size_t n, int argc, char **argv, int at,
                   int *argc_out, char ***argv_out, char *err, size_t cap);
void args_env_free(char ***argv_p);

#endif
