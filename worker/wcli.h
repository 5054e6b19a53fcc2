/* wcli: what helium-worker's commands share (worker/main.c) and the
 * commands kept in files of their own. */
#ifndef HELIUM_WCLI_H
#define HELIUM_WCLI_H

#include <stdint.h>
#include <stdio.h>

/* The command-line usage text. */
void wcli_usage(FILE *f);
/* Prints the error code and message (herr) on stderr; returns exit code 1. */
int wcli_die(int code);
/* Parses "1,2,3" into a malloc'd array. */
int wcli_parse_ids(const char *s, int32_t **out, int32_t *n);

/* helium-worker bench (worker/cmd_bench.c) */
int cmd_bench(int argc, char **argv);

#endif
