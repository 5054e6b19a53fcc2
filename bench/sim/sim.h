/* sim: the cluster-scale simulator's shared declarations (bench/sim).
 *
 * The simulator runs the coordinator's own modules (coord_core_new: jobs,
 * directory, scheduler, optimizer, prefix trees; cp_on_frame / wp_on_frame /
 * place_dispatch_ready) against N simulated workers in simulated time. A
 * simulated worker (sim_worker.c) keeps a prefix-hashed KV block cache of the
 * real worker's geometry (blockhash.h chained hashes from the cluster root,
 * the engine's LRU + pin eviction order), admits and batches sequences the
 * way worker/engine.c does (decode rows first, then prefill chunks, FIFO,
 * within the token budget), and takes each step's duration from the cost
 * model (sim_cost; two calibration factors scale decode-only and other
 * steps to the speed the real workers showed in a cluster). Every message between the two sides is a real packed
 * protobuf (WorkerMsg / CoordMsg / Request).
 *
 * Invariants: simulated time only moves forward (the event heap, sim_main.c);
 * nothing sleeps; the coordinator is called only from the one loop thread,
 * and its CPU time is measured around every call into it.
 */
#ifndef HELIUM_SIM_H
#define HELIUM_SIM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "coord_impl.h"

/* Step cost: seconds = step + tok*T + attn*A + attn_dec*D + seq*S + out*O
 * for a batch of T tokens over S sequences, A = attended (query, key) pairs
 * of prefill rows, D = those of decode rows (one query each: the engine's
 * decode attention has its own cost per pair), O sampled rows. Pulls:
 * pull_fixed + bytes * pull_byte. Fitted by bench/sim/fit_cost.py. */
typedef struct {
    double step, tok, attn, attn_dec, seq, out; /* attn_dec < 0: as attn */
    double pull_fixed, pull_byte;
    double scale_dec, scale_mix; /* calibration: decode-only steps, other steps (0 = 1) */
} sim_cost;

/* A simulated worker's engine geometry (the real worker's Register values). */
typedef struct {
    int32_t block_size, kv_blocks, max_seqs, batch_tokens, n_ctx;
    uint32_t n_layers, kv_dim;
    uint64_t root;
} sim_geom;

typedef struct sim_world sim_world;
typedef struct sim_worker sim_worker;

/* ---- the loop's services to workers (sim_main.c) */
double sim_now(const sim_world *w);
/* Delivers a packed WorkerMsg from worker i to the coordinator now. */
void sim_deliver(sim_world *w, int i, const uint8_t *buf, size_t len);
/* Schedules worker i's step end (kind 0) or a pull's end (kind 1, token) at t. */
void sim_at(sim_world *w, double t, int kind, int i, uint64_t token);
/* A step of `dur` seconds of one core's time starts (1) or ends (-1); returns
 * its simulated length: with --cores C (0 = a core per worker) the workers
 * stepping now and --bg-load other runnable processes share C cores fairly,
 * so dur stretches by (stepping + bg) / C when that exceeds 1. */
double sim_step_share(sim_world *w, int delta, double dur);
/* Worker i's cache (for a pull's source). */
sim_worker *sim_worker_at(sim_world *w, int i);
/* Worker index of a worker id ("s<i>"), -1 if none. */
int sim_worker_index(const char *id);
/* Picks the id of generated token k of a call whose prompt hashes to h. */
int32_t sim_out_token(const sim_world *w, uint64_t h, int32_t k);
/* The tokenizer (outputs are decoded to text). */
const tok_t *sim_tok(const sim_world *w);

/* ---- a simulated worker (sim_worker.c) */
sim_worker *simw_new(sim_world *world, int index, const sim_geom *g, const sim_cost *cost);
void simw_destroy(sim_worker **self_p);
/* Sends Register (packed WorkerMsg) to the coordinator. */
void simw_register(sim_worker *w);
/* A CoordMsg from the coordinator (packed). */
void simw_on_msg(sim_worker *w, const uint8_t *buf, size_t len);
/* Starts a step if idle and there is work. */
void simw_kick(sim_worker *w);
/* The step in progress ends now. */
void simw_step_end(sim_worker *w);
/* The pull with this token ends now. */
void simw_pull_end(sim_worker *w, uint64_t token);
/* Sends a heartbeat. */
void simw_heartbeat(sim_worker *w);
/* Leading hashes[0..n) this worker holds committed (a pull's source side). */
int simw_holds(const sim_worker *w, const uint64_t *hashes, int n);
bool simw_busy(const sim_worker *w);

typedef struct {
    uint64_t steps, batch_tokens, prefill_tokens, decode_rows, computed_tokens, generated_tokens;
    uint64_t pulls, pulled_tokens, pulled_bytes, evictions, results;
    double busy_s, busy_dec_s, pull_s;
} simw_stats;
void simw_get_stats(const sim_worker *w, simw_stats *out);

#endif
