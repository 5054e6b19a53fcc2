/* beopt: the worker's backend options, shared by every command that builds an
 * engine (generate, eval, bench, serve):
 *   --backend cpu|cuda      which backend runs the model (default cpu)
 *   --kv-dtype f16|bf16     CUDA: element type of the KV pool (default f16;
 *                           f32 for tests); the CPU pool is always f32
 *   --kv-memory N|P%        KV pool size: N MiB (both backends, as --kv-mb),
 *                           or P percent of the GPU memory left free after
 *                           weights and scratch (CUDA; default 90%)
 * beo_apply() parses one of them into an eng_config; beo_check() checks the
 * combination once all options are read.
 */
#ifndef HELIUM_BEOPT_H
#define HELIUM_BEOPT_H

#include <stdbool.h>

#include "engine.h"

/* Whether opt (without the dashes) is one of the options above. */
bool beo_is_option(const char *opt);
/* Applies --opt val to ec. 0, or HE_EINVAL with he_msg() naming the value. */
int beo_apply(eng_config *ec, const char *opt, const char *val);
/* 0, or HE_EINVAL when the options do not fit together (a CUDA-only option
 * with the CPU backend). */
int beo_check(const eng_config *ec);
/* "cpu" or "cpu, cuda": the backends this binary carries. */
const char *beo_backends(void);

#endif
