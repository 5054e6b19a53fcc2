/* show: heliumctl's renderings of coordinator replies, as tables for people
 * and as JSON (cJSON) for scripts.
 *
 * Enum values are shown by their proto names without the type prefix
 * ("DONE", "PROMPT_TOO_LONG"); unknown values print as their number. JSON
 * objects mirror the proto messages field for field (snake_case names), with
 * enums as those strings; times are microseconds as in the proto. Nothing
 * here talks to the network.
 */
#ifndef HELIUM_CTL_SHOW_H
#define HELIUM_CTL_SHOW_H

#include <stdbool.h>
#include <stdio.h>

#include <cjson/cJSON.h>

#include "helium.pb-c.h"

/* "CYCLE", "DONE", "RUNNING", ... (static or per-thread buffer; do not free). */
const char *show_error_code(int code);
const char *show_job_state(int state);
const char *show_op_state(int state);
/* True for DONE, FAILED and CANCELED. */
bool show_job_finished(int state);

/* JSON builders; the caller owns the returned object (NULL only on OOM). */
cJSON *show_error_json(const Helium__Error *e);
cJSON *show_job_json(const Helium__JobStatus *j);
cJSON *show_jobs_json(const Helium__JobList *l);
cJSON *show_cluster_json(const Helium__ClusterStatusReply *c);
/* Prints o (indented) and a newline to f. */
void show_print_json(FILE *f, const cJSON *o);

/* Tables. show_job_text prints the op table and, if outputs, every op's
 * output text followed by the job's output. */
void show_job_text(FILE *f, const Helium__JobStatus *j, bool outputs);
void show_jobs_text(FILE *f, const Helium__JobList *l);
void show_cluster_text(FILE *f, const Helium__ClusterStatusReply *c, const char *endpoint);
/* "heliumctl: error CODE: message (op OPID)" */
void show_error_text(FILE *f, const Helium__Error *e);

#endif
