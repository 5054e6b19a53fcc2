/* helium-worker bench: prefill and batched decode speed of the engine, in
 * the spirit of llama-bench (cmd_bench, the `bench` command of worker/main.c;
 * --decode-ctx sets the context the decode rows attend to, --prefill-ctx the
 * context already in the KV cache when the timed prefill starts). */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>

#include "args.h"
#include "beopt.h"
#include "engine.h"
#include "herr.h"
#include "model.h"
#include "rng.h"
#include "wcli.h"

/* Random ids that avoid the special tokens at the end of the vocabulary. */
static void bench_ids(int32_t *v, int n, int32_t vocab, uint64_t seed) {
    rng_t r;
    rng_seed(&r, seed);
    for (int i = 0; i < n; i++) v[i] = (int32_t)(rng_next(&r) % (uint64_t)(vocab > 300 ? vocab - 8 : vocab));
}

/* helium-worker bench: prefill and batched decode speed of the engine, in the
 * spirit of llama-bench. Prints one JSON line per measurement. */
int cmd_bench(int argc, char **argv) {
    static const struct option lo[] = {{"model", 1, 0, 'm'}, {"prompt-tokens", 1, 0, 'p'}, {"gen-tokens", 1, 0, 'g'},
                                       {"batch", 1, 0, 'b'}, {"threads", 1, 0, 't'}, {"reps", 1, 0, 'r'},
                                       {"backend", 1, 0, 'B'}, {"kv-dtype", 1, 0, 'D'}, {"kv-memory", 1, 0, 'M'},
                                       {"decode-ctx", 1, 0, 'x'}, {"prefill-ctx", 1, 0, 'P'}, {0, 0, 0, 0}};
    eng_config bo = {0}; /* backend options */
    const char *model = NULL, *batches = "1,8";
    int np = 512, ng = 64, nt = 0, reps = 3, dctx = 32, pctx = 0, c, opt_i = 0;
    optind = 2;
    while ((c = getopt_long(argc, argv, "", lo, &opt_i)) != -1) {
        bool ok = true;
        switch (c) {
        case 'm': model = optarg; break;
        case 'p': ok = args_int(optarg, 1, 1 << 20, &np); break;
        case 'g': ok = args_int(optarg, 1, 1 << 20, &ng); break;
        case 'b': batches = optarg; break;
        case 't': ok = args_int(optarg, 0, 1024, &nt); break;
        case 'r': ok = args_int(optarg, 1, 1000, &reps); break;
        case 'x': ok = args_int(optarg, 1, 1 << 16, &dctx); break;
        case 'P': ok = args_int(optarg, 0, 1 << 16, &pctx); break;
        case 'B':
        case 'D':
        case 'M': ok = beo_apply(&bo, lo[opt_i].name, optarg) == 0; break;
        default: wcli_usage(stderr); return 2;
        }
        if (!ok) {
            fprintf(stderr, "helium-worker bench: bad value '%s' for --%s\n", optarg, lo[opt_i].name);
            return 2;
        }
    }
    if (!model || np < 1 || ng < 1 || reps < 1) {
        fprintf(stderr, "helium-worker: bench needs --model (and positive sizes)\n");
        return 2;
    }
    if (pctx && pctx < np) { /* the first step takes the context, the second the timed prompt */
        fprintf(stderr, "helium-worker: bench --prefill-ctx must be at least --prompt-tokens\n");
        return 2;
    }
    if (beo_check(&bo)) {
        fprintf(stderr, "helium-worker: %s\n", he_msg());
        return 2;
    }
    int32_t *bl, nb;
    int rc = wcli_parse_ids(batches, &bl, &nb);
    if (rc) return wcli_die(rc);
    model_t *m;
    if ((rc = model_load(model, &m))) {
        free(bl);
        return wcli_die(rc);
    }
    int32_t V = m->hp.n_vocab;
    int32_t lmax = np + pctx > dctx ? np + pctx : dctx;
    /* with --prefill-ctx the step budget is the context: one step prefills it, the next the prompt */
    int32_t budget = pctx ? pctx : (lmax > 512 ? lmax : 512);
    eng_config ec = {.n_threads = nt, .max_batch_tokens = budget, .no_prefix_cache = true,
                     .n_ctx = lmax + ng + 64 < 8192 ? lmax + ng + 64 : 8192, .backend = bo.backend,
                     .kv_type = bo.kv_type, .kv_mem_mb = bo.kv_mem_mb, .kv_mem_pct = bo.kv_mem_pct};
    eng_t *e = eng_new(m, NULL, &ec);
    int32_t *ids = malloc(sizeof(int32_t) * (size_t)(lmax + 64) * 64);
    float *lg = malloc(sizeof(float) * (size_t)np * (size_t)V);
    if (!e || !ids || !lg) {
        rc = he_set(HE_ENOMEM, "out of memory");
        goto out;
    }
    /* prefill: one forward over np tokens (after pctx tokens prefilled in a
     * step not timed), best of reps (after one warm-up) */
    bench_ids(ids, pctx + np, V, 1);
    double best = 1e30;
    for (int r = 0; r <= reps; r++) {
        eng_request rq = {.max_tokens = 1, .ignore_eos = true};
        uint64_t id;
        if ((rc = eng_submit(e, ids, pctx + np, &rq, &id))) goto out;
        if (pctx && (rc = eng_step(e)) < 0) goto out;
        eng_counters c0 = eng_get_counters(e);
        while ((rc = eng_step(e)) > 0) {}
        if (rc < 0) goto out;
        eng_counters c1 = eng_get_counters(e);
        eng_result res;
        while (eng_next_result(e, &res)) eng_result_free(&res);
        double t = c1.forward_seconds - c0.forward_seconds;
        if (r > 0 && t < best) best = t;
    }
    printf("{\"model\":\"%s\",\"test\":\"prefill\",\"tokens\":%d,\"ctx\":%d,\"batch\":1,\"seconds\":%.6f,"
           "\"tokens_per_second\":%.2f}\n",
           m->name, np, pctx, best, np / best);
    fflush(stdout);
    /* decode at each batch size: B sequences with distinct prompts of dctx
     * tokens (--decode-ctx: the context each decode row attends to), then
     * time ng steps in which every sequence decodes one token */
    for (int32_t bi = 0; bi < nb; bi++) {
        int32_t B = bl[bi];
        if (B < 1 || B > 64) continue;
        double tbest = 1e30;
        for (int r = 0; r < reps; r++) {
            /* sequences prefilled first decode while the others prefill: room for those tokens */
            int32_t pre = (int32_t)(((int64_t)B * dctx + ec.max_batch_tokens - 1) / ec.max_batch_tokens);
            for (int32_t s = 0; s < B; s++) {
                bench_ids(ids + (size_t)s * dctx, dctx, V, 100 + (uint64_t)s + 1000 * (uint64_t)r);
                eng_request rq = {.max_tokens = ng + 2 + pre, .ignore_eos = true};
                uint64_t id;
                if ((rc = eng_submit(e, ids + (size_t)s * dctx, dctx, &rq, &id))) goto out;
            }
            /* prefill steps until every sequence has sampled its first token */
            for (int32_t k = 0; k <= pre; k++) {
                eng_counters cc = eng_get_counters(e);
                if ((rc = eng_step(e)) < 0) goto out;
                eng_counters cn = eng_get_counters(e);
                if (cn.decode_steps > cc.decode_steps || cn.steps == cc.steps) break; /* all decoding */
            }
            eng_counters c0 = eng_get_counters(e);
            for (int k = 0; k < ng; k++)
                if ((rc = eng_step(e)) < 0) goto out;
            eng_counters c1 = eng_get_counters(e);
            while ((rc = eng_step(e)) > 0) {}
            if (rc < 0) goto out;
            eng_result res;
            while (eng_next_result(e, &res)) eng_result_free(&res);
            double t = c1.forward_seconds - c0.forward_seconds;
            if (t < tbest) tbest = t;
        }
        printf("{\"model\":\"%s\",\"test\":\"decode\",\"tokens\":%d,\"batch\":%d,\"seconds\":%.6f,"
               "\"tokens_per_second\":%.2f}\n",
               m->name, ng * B, B, tbest, (double)ng * B / tbest);
        fflush(stdout);
    }
    rc = 0;
out:
    free(ids);
    free(lg);
    free(bl);
    eng_destroy(&e);
    model_destroy(&m);
    return rc ? wcli_die(rc) : 0;
}
