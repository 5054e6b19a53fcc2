/* helium-worker: the inference engine's command line.
 *
 *   generate  run one prompt, or a JSONL file of prompts through continuous
 *             batching and the shared prefix cache
 *   eval      write the logits of every position of a token sequence
 *   tokenize  print the token ids of a text
 *   bench     prefill and decode speed (worker/cmd_bench.c)
 *   serve     join a coordinator (cluster mode; the loop is worker/net/)
 *
 * Exit codes: 0 ok, 1 runtime error (typed message on stderr), 2 usage. */
#include <cjson/cJSON.h>
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "args.h"
#include "beopt.h"
#include "chat.h"
#include "engine.h"
#include "herr.h"
#include "model.h"

#include "serve.h"
#include "wcli.h"
#include "workflow.h"

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

void wcli_usage(FILE *f) {
    fprintf(f,
            "usage: helium-worker <command> [options]\n"
            "  generate --model FILE (--prompt TEXT | --prompt-ids 1,2,3 | --prompts-file FILE.jsonl)\n"
            "           [--max-tokens N] [--temperature T] [--top-k K] [--top-p P] [--seed S]\n"
            "           [--threads N] [--kv-mb MB] [--block-size N] [--batch-tokens N] [--no-prefix-cache]\n"
            "           [--ignore-eos] [--json] [--no-special] [--backend cpu|cuda] [--kv-dtype f16|bf16] [--kv-memory MB|P%%]\n"
            "  eval     --model FILE --ids 1,2,3 --logits-out FILE  (float32 LE, n_tokens x n_vocab)\n"
            "  tokenize --model FILE (--text TEXT [--no-bos] [--special] | --chat FILE.json [--chat-template NAME]\n"
            "           [--print-text])   --chat: the ids of the chat as the model's template renders it, with\n"
            "           the generation prompt, control tokens parsed (as the coordinator sends a `messages` op)\n"
            "  control tokens (<|im_start|>...) in text: generate parses them unless --no-special; tokenize --special\n"
            "  bench    --model FILE [--prompt-tokens 512] [--gen-tokens 64] [--batch 1,8] [--decode-ctx 32]\n"
            "           [--prefill-ctx 0] [--threads N] [--reps 3]   --prefill-ctx C: the prompt prefilled after C\n"
            "           tokens already in the KV cache (a workflow call after its cached shared prefix)\n"
            "           [--backend cpu|cuda] [--kv-dtype f16|bf16] [--kv-memory MB|P%%]\n"
            "  serve    --coordinator ENDPOINT --model FILE [options]   (see helium-worker serve --help)\n"
            "--backend cuda: the GPU backend (docs/gpu.md); --kv-memory P%%: percent of the GPU memory free after\n"
            "weights\n"
            "backends in this build: %s\n",
            beo_backends());
}

int wcli_die(int code) {
    fprintf(stderr, "helium-worker: error %s: %s\n", he_name(code), he_msg());
    return 1;
}

/* Parses "1,2,3" into a malloc'd array. */
int wcli_parse_ids(const char *s, int32_t **out, int32_t *n) {
    int32_t cap = 16, k = 0;
    int32_t *v = malloc(sizeof(int32_t) * (size_t)cap);
    if (!v) return he_set(HE_ENOMEM, "out of memory");
    const char *p = s;
    while (*p) {
        while (*p == ' ' || *p == ',') p++;
        if (!*p) break;
        char *end;
        errno = 0;
        long x = strtol(p, &end, 10);
        if (end == p || errno || x < 0 || x > 0x7fffffff) {
            free(v);
            return he_set(HE_EINVAL, "bad token id list near '%.16s'", p);
        }
        if (k == cap) {
            cap *= 2;
            int32_t *nv = realloc(v, sizeof(int32_t) * (size_t)cap);
            if (!nv) {
                free(v);
                return he_set(HE_ENOMEM, "out of memory");
            }
            v = nv;
        }
        v[k++] = (int32_t)x;
        p = end;
    }
    *out = v;
    *n = k;
    return 0;
}

/* Tokenizes text into a malloc'd array. */
static int tokenize(const model_t *m, const char *text, bool add_bos, bool special, int32_t **out, int32_t *n) {
    size_t len = strlen(text);
    int cap = (int)len + 8;
    int32_t *v = malloc(sizeof(int32_t) * (size_t)cap);
    if (!v) return he_set(HE_ENOMEM, "out of memory");
    int k = tok_encode(m->tok, text, len, add_bos, special, v, cap);
    if (k > cap) {
        int32_t *nv = realloc(v, sizeof(int32_t) * (size_t)k);
        if (!nv) {
            free(v);
            return he_set(HE_ENOMEM, "out of memory");
        }
        v = nv;
        k = tok_encode(m->tok, text, len, add_bos, special, v, k);
    }
    if (k < 0) {
        free(v);
        return k;
    }
    *out = v;
    *n = k;
    return 0;
}

typedef struct {
    const char *model, *prompt, *prompt_ids, *prompts_file, *ids, *logits_out, *text;
    int max_tokens;
    smp_params sp;
    eng_config ec;
    const char *chat, *chat_template;
    bool ignore_eos, json, no_bos, print_text;
    int special; /* control tokens parsed: 1 --special, 0 --no-special, -1 the command's default */
} opts;

enum { O_MODEL = 256, O_PROMPT, O_PROMPT_IDS, O_PROMPTS_FILE, O_MAXTOK, O_TEMP, O_TOPK, O_TOPP, O_SEED,
       O_THREADS, O_KVMB, O_BS, O_BATCH, O_NOPC, O_IGNEOS, O_JSON, O_IDS, O_LOGITS, O_TEXT, O_NOBOS, O_SPECIAL, O_NOSPECIAL, O_CHAT, O_CHATT, O_PTEXT,
       O_BACKEND, O_KVDTYPE, O_KVMEM, O_HELP };

static int parse_opts(int argc, char **argv, opts *o) {
    static const struct option lo[] = {
        {"model", 1, 0, O_MODEL}, {"prompt", 1, 0, O_PROMPT}, {"prompt-ids", 1, 0, O_PROMPT_IDS},
        {"prompts-file", 1, 0, O_PROMPTS_FILE}, {"max-tokens", 1, 0, O_MAXTOK}, {"temperature", 1, 0, O_TEMP},
        {"top-k", 1, 0, O_TOPK}, {"top-p", 1, 0, O_TOPP}, {"seed", 1, 0, O_SEED}, {"threads", 1, 0, O_THREADS},
        {"kv-mb", 1, 0, O_KVMB}, {"block-size", 1, 0, O_BS}, {"batch-tokens", 1, 0, O_BATCH},
        {"no-prefix-cache", 0, 0, O_NOPC}, {"ignore-eos", 0, 0, O_IGNEOS}, {"json", 0, 0, O_JSON},
        {"ids", 1, 0, O_IDS}, {"logits-out", 1, 0, O_LOGITS}, {"text", 1, 0, O_TEXT}, {"no-bos", 0, 0, O_NOBOS},
        {"special", 0, 0, O_SPECIAL}, {"no-special", 0, 0, O_NOSPECIAL}, {"chat", 1, 0, O_CHAT}, {"chat-template", 1, 0, O_CHATT},
        {"print-text", 0, 0, O_PTEXT}, {"backend", 1, 0, O_BACKEND}, {"kv-dtype", 1, 0, O_KVDTYPE},
        {"kv-memory", 1, 0, O_KVMEM}, {"help", 0, 0, O_HELP}, {0, 0, 0, 0}};
    memset(o, 0, sizeof *o);
    o->special = -1;
    o->max_tokens = 32;
    o->sp.top_p = 1.0f;
    int c, opt_i = 0;
    optind = 2;
    while ((c = getopt_long(argc, argv, "", lo, &opt_i)) != -1) {
        bool ok = true;
        double d = 0;
        switch (c) {
        case O_MODEL: o->model = optarg; break;
        case O_PROMPT: o->prompt = optarg; break;
        case O_PROMPT_IDS: o->prompt_ids = optarg; break;
        case O_PROMPTS_FILE: o->prompts_file = optarg; break;
        case O_MAXTOK: ok = args_int(optarg, 1, 1 << 20, &o->max_tokens); break;
        case O_TEMP: ok = args_double(optarg, 0, 100, &d); o->sp.temperature = (float)d; break;
        case O_TOPK: ok = args_int(optarg, 0, 1 << 30, &o->sp.top_k); break;
        case O_TOPP: ok = args_double(optarg, 1e-9, 1, &d); o->sp.top_p = (float)d; break;
        case O_SEED: ok = args_u64(optarg, &o->sp.seed); break;
        case O_THREADS: ok = args_int(optarg, 0, 1024, &o->ec.n_threads); break;
        case O_KVMB: ok = args_int(optarg, 0, 1 << 20, &o->ec.kv_mem_mb); break;
        case O_BS: ok = args_int(optarg, 0, 1024, &o->ec.block_size); break;
        case O_BATCH: ok = args_int(optarg, 0, 1 << 20, &o->ec.max_batch_tokens); break;
        case O_NOPC: o->ec.no_prefix_cache = true; break;
        case O_IGNEOS: o->ignore_eos = true; break;
        case O_JSON: o->json = true; break;
        case O_IDS: o->ids = optarg; break;
        case O_LOGITS: o->logits_out = optarg; break;
        case O_TEXT: o->text = optarg; break;
        case O_NOBOS: o->no_bos = true; break;
        case O_SPECIAL: o->special = 1; break;
        case O_NOSPECIAL: o->special = 0; break;
        case O_CHAT: o->chat = optarg; break;
        case O_CHATT: o->chat_template = optarg; break;
        case O_PTEXT: o->print_text = true; break;
        case O_BACKEND:
        case O_KVDTYPE:
        case O_KVMEM: ok = beo_apply(&o->ec, lo[opt_i].name, optarg) == 0; break;
        case O_HELP: wcli_usage(stdout); exit(0);
        default: wcli_usage(stderr); return 2;
        }
        if (!ok) {
            fprintf(stderr, "helium-worker: bad value '%s' for --%s\n", optarg, lo[opt_i].name);
            return 2;
        }
    }
    if (!o->model) {
        fprintf(stderr, "helium-worker: --model FILE is required\n");
        return 2;
    }
    if (beo_check(&o->ec)) {
        fprintf(stderr, "helium-worker: %s\n", he_msg());
        return 2;
    }
    if (o->max_tokens < 1 || o->max_tokens > 1 << 20) {
        fprintf(stderr, "helium-worker: --max-tokens must be between 1 and %d\n", 1 << 20);
        return 2;
    }
    if (o->sp.temperature < 0 || o->sp.top_k < 0 || !(o->sp.top_p > 0 && o->sp.top_p <= 1)) {
        fprintf(stderr, "helium-worker: bad sampling parameters\n");
        return 2;
    }
    if (o->ec.block_size < 0 || o->ec.block_size > 1024 || o->ec.kv_mem_mb < 0 || o->ec.n_threads < 0 ||
        o->ec.max_batch_tokens < 0) {
        fprintf(stderr, "helium-worker: bad engine options\n");
        return 2;
    }
    return 0;
}

typedef struct {
    int32_t *ids;
    int32_t n;
    int max_tokens;
    smp_params sp;
    int err;          /* herr code if the prompt was rejected */
    char errmsg[256];
    eng_result res;
    bool done;
} job;

/* Reads a JSONL prompts file into jobs. */
static int load_prompts(const model_t *m, const opts *o, job **out, int *n_out) {
    FILE *f = fopen(o->prompts_file, "rb");
    if (!f) return he_set(HE_EIO, "cannot open prompts file '%s': %s", o->prompts_file, strerror(errno));
    int cap = 16, n = 0;
    job *jobs = calloc((size_t)cap, sizeof *jobs);
    char *line = NULL;
    size_t lcap = 0;
    ssize_t len;
    int rc = 0, lineno = 0;
    while ((len = getline(&line, &lcap, f)) != -1) {
        lineno++;
        while (len > 0 && (line[len - 1] == '\n' || line[len - 1] == '\r')) line[--len] = 0;
        if (len == 0) continue;
        if (n == cap) {
            cap *= 2;
            job *nj = realloc(jobs, sizeof *jobs * (size_t)cap);
            if (!nj) { rc = he_set(HE_ENOMEM, "out of memory"); break; }
            jobs = nj;
        }
        job *j = &jobs[n++];
        memset(j, 0, sizeof *j);
        j->max_tokens = o->max_tokens;
        j->sp = o->sp;
        cJSON *obj = cJSON_ParseWithLength(line, (size_t)len);
        if (!obj || !cJSON_IsObject(obj)) {
            cJSON_Delete(obj);
            rc = he_set(HE_EFORMAT, "%s:%d: not a JSON object", o->prompts_file, lineno);
            break;
        }
        cJSON *p = cJSON_GetObjectItem(obj, "prompt"), *pi = cJSON_GetObjectItem(obj, "prompt_ids");
        cJSON *mt = cJSON_GetObjectItem(obj, "max_tokens"), *t = cJSON_GetObjectItem(obj, "temperature");
        cJSON *sd = cJSON_GetObjectItem(obj, "seed");
        if (cJSON_IsNumber(mt)) j->max_tokens = mt->valueint;
        if (cJSON_IsNumber(t)) j->sp.temperature = (float)t->valuedouble;
        if (cJSON_IsNumber(sd)) j->sp.seed = (uint64_t)sd->valuedouble;
        if (cJSON_IsString(p)) {
            int r = tokenize(m, p->valuestring, !o->no_bos && tok_add_bos_default(m->tok), o->special != 0, &j->ids,
                             &j->n);
            if (r) { j->err = r; snprintf(j->errmsg, sizeof j->errmsg, "%s", he_msg()); }
        } else if (cJSON_IsArray(pi)) {
            j->n = cJSON_GetArraySize(pi);
            j->ids = malloc(sizeof(int32_t) * (size_t)(j->n ? j->n : 1));
            for (int i = 0; i < j->n; i++) {
                cJSON *x = cJSON_GetArrayItem(pi, i);
                j->ids[i] = cJSON_IsNumber(x) ? (int32_t)x->valuedouble : -1;
            }
        } else {
            cJSON_Delete(obj);
            rc = he_set(HE_EFORMAT, "%s:%d: needs \"prompt\" (string) or \"prompt_ids\" (array)", o->prompts_file,
                        lineno);
            break;
        }
        cJSON_Delete(obj);
    }
    free(line);
    fclose(f);
    if (rc) {
        for (int i = 0; i < n; i++) free(jobs[i].ids);
        free(jobs);
        return rc;
    }
    *out = jobs;
    *n_out = n;
    return 0;
}

static const char *finish_name(eng_finish f) {
    switch (f) {
    case ENG_FINISH_STOP: return "stop";
    case ENG_FINISH_LENGTH: return "length";
    case ENG_FINISH_CONTEXT: return "context";
    default: return "error";
    }
}

/* Builds generate's jobs from o: every line of --prompts-file, or the one
 * --prompt / --prompt-ids. Returns 0 or a herr code (nothing allocated). */
static int gen_jobs(model_t *m, const opts *o, job **jobs_out, int *n_out) {
    if (o->prompts_file) return load_prompts(m, o, jobs_out, n_out);
    job *jobs = calloc(1, sizeof *jobs);
    jobs[0].max_tokens = o->max_tokens;
    jobs[0].sp = o->sp;
    int rc = o->prompt ? tokenize(m, o->prompt, !o->no_bos && tok_add_bos_default(m->tok), o->special != 0,
                                  &jobs[0].ids, &jobs[0].n)
                       : wcli_parse_ids(o->prompt_ids, &jobs[0].ids, &jobs[0].n);
    if (rc) {
        free(jobs);
        return rc;
    }
    *jobs_out = jobs;
    *n_out = 1;
    return 0;
}

/* Prints job i's outcome: its text (or a JSON line when jsonl), or its error
 * (steps_rc: eng_step's failure, if any). Returns 1 if the job failed. */
static int gen_print_job(const model_t *m, const job *j, int i, bool jsonl, int steps_rc) {
    if (j->err || !j->done || j->res.finish == ENG_FINISH_ERROR) {
        int code = j->err ? j->err : (j->done ? j->res.error : (steps_rc ? steps_rc : HE_EINVAL));
        const char *msg = j->err ? j->errmsg : (steps_rc ? he_msg() : "request failed");
        if (jsonl) {
            cJSON *obj = cJSON_CreateObject();
            cJSON_AddNumberToObject(obj, "index", i);
            cJSON_AddStringToObject(obj, "error", he_name(code));
            cJSON_AddStringToObject(obj, "message", msg);
            char *s = cJSON_PrintUnformatted(obj);
            printf("%s\n", s);
            free(s);
            cJSON_Delete(obj);
        } else {
            fprintf(stderr, "helium-worker: error %s: %s\n", he_name(code), msg);
        }
        return 1;
    }
    char *text = tok_decode(m->tok, j->res.ids, j->res.n_gen, false);
    if (jsonl) {
        cJSON *obj = cJSON_CreateObject();
        cJSON_AddNumberToObject(obj, "index", i);
        cJSON_AddStringToObject(obj, "text", text ? text : "");
        cJSON *ids = cJSON_CreateIntArray(j->res.ids, j->res.n_gen);
        cJSON_AddItemToObject(obj, "ids", ids);
        cJSON_AddNumberToObject(obj, "prompt_tokens", j->res.prompt_tokens);
        cJSON_AddNumberToObject(obj, "cached_tokens", j->res.cached_tokens);
        cJSON_AddStringToObject(obj, "finish", finish_name(j->res.finish));
        char *s = cJSON_PrintUnformatted(obj);
        printf("%s\n", s);
        free(s);
        cJSON_Delete(obj);
    } else {
        printf("%s\n", text ? text : "");
    }
    free(text);
    return 0;
}

/* Prints generate's counters: a JSON summary line when jsonl, else two
 * human lines on stderr (only if some request ran). */
static void gen_print_summary(const model_t *m, const eng_counters *cp, const kvc_stats *ks, int n_ok,
                              double wall, bool jsonl) {
    const eng_counters c = *cp;
    double fwd = c.forward_seconds > 0 ? c.forward_seconds : 1e-9;
    if (jsonl) {
        cJSON *obj = cJSON_CreateObject();
        cJSON_AddStringToObject(obj, "summary", "generate");
        cJSON_AddNumberToObject(obj, "requests", n_ok);
        cJSON_AddNumberToObject(obj, "prompt_tokens", (double)c.prompt_tokens);
        cJSON_AddNumberToObject(obj, "cached_tokens", (double)c.cached_tokens);
        cJSON_AddNumberToObject(obj, "computed_tokens", (double)c.computed_tokens);
        cJSON_AddNumberToObject(obj, "generated_tokens", (double)c.generated_tokens);
        cJSON_AddNumberToObject(obj, "steps", (double)c.steps);
        cJSON_AddNumberToObject(obj, "preemptions", (double)c.preemptions);
        cJSON_AddNumberToObject(obj, "wall_seconds", wall);
        cJSON_AddNumberToObject(obj, "tokens_per_second", (double)(c.computed_tokens + c.generated_tokens) / wall);
        cJSON_AddNumberToObject(obj, "generated_per_second", (double)c.generated_tokens / wall);
        cJSON_AddNumberToObject(obj, "kv_blocks_total", (double)ks->blocks_total);
        cJSON_AddNumberToObject(obj, "kv_blocks_cached", (double)ks->blocks_cached);
        char *s = cJSON_PrintUnformatted(obj);
        printf("%s\n", s);
        free(s);
        cJSON_Delete(obj);
    } else if (n_ok > 0) {
        fprintf(stderr,
                "--- %s | prompt %lld tokens (%lld from cache, %lld computed) | generated %lld tokens\n"
                "--- %.1f tok/s overall, forward %.3f s | KV pages: %lld total, %lld in use, %lld cached | "
                "prefix hit rate %.1f%%\n",
                m->name, (long long)c.prompt_tokens, (long long)c.cached_tokens, (long long)c.computed_tokens,
                (long long)c.generated_tokens, (double)(c.computed_tokens + c.generated_tokens) / wall, fwd,
                (long long)ks->blocks_total, (long long)ks->blocks_used, (long long)ks->blocks_cached,
                c.prompt_tokens ? 100.0 * (double)c.cached_tokens / (double)c.prompt_tokens : 0.0);
    }
}

static int cmd_generate(int argc, char **argv) {
    opts o;
    int rc = parse_opts(argc, argv, &o);
    if (rc) return rc;
    int nsrc = !!o.prompt + !!o.prompt_ids + !!o.prompts_file;
    if (nsrc != 1) {
        fprintf(stderr, "helium-worker: give exactly one of --prompt, --prompt-ids, --prompts-file\n");
        return 2;
    }
    model_t *m;
    if ((rc = model_load(o.model, &m))) return wcli_die(rc);
    job *jobs = NULL;
    int n_jobs = 0;
    if ((rc = gen_jobs(m, &o, &jobs, &n_jobs))) {
        model_destroy(&m);
        return wcli_die(rc);
    }
    eng_t *e = eng_new(m, NULL, &o.ec);
    if (!e) {
        rc = HE_ENOMEM;
        fprintf(stderr, "helium-worker: error: %s\n", he_msg());
        for (int i = 0; i < n_jobs; i++) free(jobs[i].ids);
        free(jobs);
        model_destroy(&m);
        return 1;
    }
    uint64_t *rid = calloc((size_t)n_jobs, sizeof *rid);
    int n_ok = 0;
    double t0 = now_s();
    for (int i = 0; i < n_jobs; i++) {
        job *j = &jobs[i];
        if (j->err) continue;
        eng_request rq = {.sampling = j->sp, .max_tokens = j->max_tokens, .ignore_eos = o.ignore_eos,
                          .user = (uint64_t)i};
        int r = eng_submit(e, j->ids, j->n, &rq, &rid[i]);
        if (r) {
            j->err = r;
            snprintf(j->errmsg, sizeof j->errmsg, "%s", he_msg());
        } else {
            n_ok++;
        }
    }
    int steps_rc = 0;
    while ((rc = eng_step(e)) > 0) {}
    if (rc < 0) steps_rc = rc;
    double wall = now_s() - t0;
    eng_result r;
    while (eng_next_result(e, &r)) {
        job *j = &jobs[r.user];
        j->res = r;
        j->done = true;
    }
    eng_counters c = eng_get_counters(e);
    kvc_stats ks = kvc_get_stats(eng_kvc(e));
    int exit_code = 0;
    bool jsonl = o.prompts_file || o.json;
    for (int i = 0; i < n_jobs; i++)
        if (gen_print_job(m, &jobs[i], i, jsonl, steps_rc)) exit_code = 1;
    gen_print_summary(m, &c, &ks, n_ok, wall, jsonl);
    for (int i = 0; i < n_jobs; i++) {
        free(jobs[i].ids);
        eng_result_free(&jobs[i].res);
    }
    free(jobs);
    free(rid);
    eng_destroy(&e);
    model_destroy(&m);
    if (steps_rc) return wcli_die(steps_rc);
    return exit_code;
}

static int cmd_eval(int argc, char **argv) {
    opts o;
    int rc = parse_opts(argc, argv, &o);
    if (rc) return rc;
    if (!o.ids || !o.logits_out) {
        fprintf(stderr, "helium-worker: eval needs --ids and --logits-out\n");
        return 2;
    }
    int32_t *ids, n;
    if ((rc = wcli_parse_ids(o.ids, &ids, &n))) return wcli_die(rc);
    model_t *m;
    if ((rc = model_load(o.model, &m))) {
        free(ids);
        return wcli_die(rc);
    }
    if (o.ec.n_ctx == 0) o.ec.n_ctx = m->hp.n_ctx_train < 8192 ? m->hp.n_ctx_train : 8192;
    eng_t *e = eng_new(m, NULL, &o.ec);
    float *lg = e ? malloc(sizeof(float) * (size_t)(n ? n : 1) * (size_t)m->hp.n_vocab) : NULL;
    if (!e || !lg) rc = he_set(HE_ENOMEM, "out of memory");
    else rc = eng_eval(e, ids, n, lg);
    if (!rc) {
        FILE *f = fopen(o.logits_out, "wb");
        if (!f) rc = he_set(HE_EIO, "cannot write '%s': %s", o.logits_out, strerror(errno));
        else {
            size_t cnt = (size_t)n * (size_t)m->hp.n_vocab;
            if (fwrite(lg, sizeof(float), cnt, f) != cnt) rc = he_set(HE_EIO, "short write to '%s'", o.logits_out);
            if (fclose(f)) rc = he_set(HE_EIO, "cannot close '%s'", o.logits_out);
        }
    }
    if (!rc) fprintf(stderr, "wrote %d x %d logits to %s\n", n, m->hp.n_vocab, o.logits_out);
    free(lg);
    free(ids);
    eng_destroy(&e);
    model_destroy(&m);
    return rc ? wcli_die(rc) : 0;
}

/* Renders the chat in FILE.json (chat_parse_json) through the model's
 * template (or --chat-template NAME) into *text. */
static int render_chat_file(const model_t *m, const opts *o, char **text) {
    FILE *f = fopen(o->chat, "rb");
    if (!f) return he_set(HE_EIO, "cannot open '%s': %s", o->chat, strerror(errno));
    char *buf = malloc(1u << 20);
    size_t len = buf ? fread(buf, 1, 1u << 20, f) : 0;
    bool more = buf && !feof(f);
    fclose(f);
    if (!buf) return he_set(HE_ENOMEM, "out of memory");
    int rc = more ? he_set(HE_ELIMIT, "'%s' is larger than 1 MiB", o->chat) : 0;
    chat_msg *msgs = NULL;
    size_t n = 0;
    chat_t *c = NULL;
    if (!rc) rc = chat_parse_json(buf, len, &msgs, &n);
    if (!rc) rc = chat_new(m->gguf, m->tok, o->chat_template, &c);
    size_t tl;
    if (!rc) rc = chat_render(c, msgs, n, true, text, &tl);
    chat_destroy(&c);
    free(msgs);
    free(buf);
    return rc;
}

static int cmd_tokenize(int argc, char **argv) {
    opts o;
    int rc = parse_opts(argc, argv, &o);
    if (rc) return rc;
    if (!o.text == !o.chat) {
        fprintf(stderr, "helium-worker: tokenize needs --text or --chat\n");
        return 2;
    }
    model_t *m;
    if ((rc = model_load(o.model, &m))) return wcli_die(rc);
    int32_t *ids = NULL, n = 0;
    char *chat_text = NULL;
    if (o.chat) { /* exactly what the coordinator sends for a `messages` op */
        if (!(rc = render_chat_file(m, &o, &chat_text))) {
            if (o.print_text) fprintf(stderr, "%s", chat_text);
            size_t len = strlen(chat_text);
            ids = malloc(sizeof *ids * (len + 8));
            int k = ids ? tok_encode_prompt(m->tok, chat_text, len, true, ids, (int)len + 8) : HE_ENOMEM;
            if (k < 0) rc = k;
            else n = k;
        }
        free(chat_text);
    } else {
        rc = tokenize(m, o.text, !o.no_bos && tok_add_bos_default(m->tok), o.special == 1, &ids, &n);
    }
    if (!rc) {
        for (int32_t i = 0; i < n; i++) printf(i ? ",%d" : "%d", ids[i]);
        printf("\n");
        free(ids);
    }
    model_destroy(&m);
    return rc ? wcli_die(rc) : 0;
}


/* ---------------------------------------------------------------- serve: options (the loop is worker/net/) */

/* serve's backend options (worker/beopt.h), apart from the S_* list below */
enum { S_BACKEND = 512, S_KVDTYPE, S_KVMEM };

static void serve_usage(FILE *f) {
    fprintf(f,
            "usage: helium-worker serve --coordinator ENDPOINT --model FILE [options]\n"
            "  --coordinator EP     coordinator's worker endpoint (e.g. tcp://127.0.0.1:7701)\n"
            "  --model FILE         GGUF model\n"
            "  --id ID              worker id (default w<pid>)\n"
            "  --data EP            bind this data endpoint for KV pulls (e.g. tcp://127.0.0.1:7711;\n"
            "                       tcp://127.0.0.1:* picks a free port); default: none\n"
            "  --advertise EP       data endpoint to tell peers (default: the bound one)\n"
            "  --threads N  --kv-mb MB  --block-size N  --batch-tokens N  --max-seqs N  --ctx N\n"
            "  --kv-blocks N        KV pages (overrides --kv-mb; at least ctx/block-size + 1)\n"
            "  --backend cpu|cuda  --kv-dtype f16|bf16  --kv-memory MB|P%%   the engine's backend (helium-worker --help)\n"
            "  --no-prefix-cache    compute every prompt token\n"
            "  --heartbeat-ms N     heartbeat period until the coordinator sets one (default 500)\n"
            "  --pull-timeout-ms N  give up on a KV pull after N ms and recompute (default 2000)\n"
            "  --inline-pulls       serve peers' KV pulls between engine steps (default: from a thread\n"
            "                       of their own, at once)\n"
            "  --kv-xport X         KV transport under pulls besides ZeroMQ: auto (nccl with --backend cuda),\n"
            "                       nccl, zmq-ref (the ZeroMQ reference transport, one host), off\n"
            "  --xport-domain D     workers of one domain may join transport links (default: host name)\n"
            "  --kv-xport-fault F   tests: the zmq-ref transport injects drop, token or send faults\n"
            "  --log-level L        error | warn | info | debug (default info)\n"
            "  --health-port N      serve GET /healthz and /readyz on this port (default 0: none)\n"
            "  --health-host ADDR   IPv4 address of the probe port (default 127.0.0.1)\n"
            "  --drain-timeout-ms N after SIGTERM, finish held calls for at most N ms, then leave them\n"
            "                       to the coordinator (default 60000)\n"
            "  --key FILE           own CURVE secret key (heliumctl keygen NAME writes NAME.key)\n"
            "  --server-key FILE    the coordinator's public key (its NAME.pub)\n"
            "  --authorized-keys F  worker public keys that may pull from --data (re-read on SIGHUP)\n"
            "  --clear-data         with keys: serve KV pulls in the clear (a trusted network only)\n"
            "  --insecure           no CURVE anywhere (required when --key is not given)\n"
            "Every option is also HELIUM_WORKER_<OPTION> in the environment (--kv-mb: HELIUM_WORKER_KV_MB;\n"
            "a switch takes 1/0); the command line wins. See docs/deploy.md.\n");
}

enum { S_COORD = 256, S_MODEL, S_ID, S_DATA, S_ADV, S_THREADS, S_KVMB, S_KVBLOCKS, S_BS, S_BATCH, S_SEQS, S_CTX,
       S_NOPC, S_HB, S_PULLTO, S_INLINE, S_LOG, S_HPORT, S_HHOST, S_DRAIN, S_KEY, S_SKEY, S_AKEYS, S_CLEAR,
       S_INSECURE, S_XPORT, S_XDOMAIN, S_XFAULT, S_HELP };

/* serve's options; each is also HELIUM_WORKER_<OPTION> (cmd_serve) */
static const struct option SERVE_OPTS[] = {
    {"coordinator", 1, 0, S_COORD}, {"model", 1, 0, S_MODEL}, {"id", 1, 0, S_ID}, {"data", 1, 0, S_DATA},
    {"advertise", 1, 0, S_ADV}, {"threads", 1, 0, S_THREADS}, {"kv-mb", 1, 0, S_KVMB},
    {"kv-blocks", 1, 0, S_KVBLOCKS},
    {"backend", 1, 0, S_BACKEND}, {"kv-dtype", 1, 0, S_KVDTYPE}, {"kv-memory", 1, 0, S_KVMEM},
    {"block-size", 1, 0, S_BS}, {"batch-tokens", 1, 0, S_BATCH}, {"max-seqs", 1, 0, S_SEQS},
    {"ctx", 1, 0, S_CTX}, {"no-prefix-cache", 0, 0, S_NOPC}, {"heartbeat-ms", 1, 0, S_HB},
    {"pull-timeout-ms", 1, 0, S_PULLTO}, {"inline-pulls", 0, 0, S_INLINE}, {"log-level", 1, 0, S_LOG},
    {"health-port", 1, 0, S_HPORT}, {"health-host", 1, 0, S_HHOST}, {"drain-timeout-ms", 1, 0, S_DRAIN},
    {"key", 1, 0, S_KEY}, {"server-key", 1, 0, S_SKEY}, {"authorized-keys", 1, 0, S_AKEYS},
    {"clear-data", 0, 0, S_CLEAR}, {"insecure", 0, 0, S_INSECURE},
    {"kv-xport", 1, 0, S_XPORT}, {"xport-domain", 1, 0, S_XDOMAIN}, {"kv-xport-fault", 1, 0, S_XFAULT},
    {"help", 0, 0, S_HELP}, {0, 0, 0, 0}};
#define N_SERVE_OPTS (sizeof SERVE_OPTS / sizeof SERVE_OPTS[0] - 1)

static int serve_int(const char *name, const char *v, int lo, int hi, int *out) {
    if (args_int(v, lo, hi, out)) return 0;
    fprintf(stderr, "helium-worker serve: --%s must be an integer in [%d, %d]\n", name, lo, hi);
    return 2;
}

static int serve_parse(int argc, char **argv, srv_opts *o) {
    memset(o, 0, sizeof *o);
    o->heartbeat_ms = 500;
    o->pull_timeout_ms = 2000;
    o->drain_timeout_ms = 60000;
    o->level = CLOG_INFO;
    optind = 2;
    int c, rc = 0, v;
    while ((c = getopt_long(argc, argv, "", SERVE_OPTS, NULL)) != -1) {
        switch (c) {
        case S_COORD: o->coord_ep = optarg; break;
        case S_MODEL: o->model_path = optarg; break;
        case S_ID: o->id = optarg; break;
        case S_DATA: o->data_ep = optarg; break;
        case S_ADV: o->advertise = optarg; break;
        case S_THREADS: rc = serve_int("threads", optarg, 0, 1024, &o->ec.n_threads); break;
        case S_KVMB: rc = serve_int("kv-mb", optarg, 1, 1 << 20, &o->ec.kv_mem_mb); break;
        case S_KVBLOCKS: rc = serve_int("kv-blocks", optarg, 1, 1 << 24, &o->ec.n_blocks); break;
        case S_BS: rc = serve_int("block-size", optarg, 1, 1024, &o->ec.block_size); break;
        case S_BATCH: rc = serve_int("batch-tokens", optarg, 1, 1 << 20, &o->ec.max_batch_tokens); break;
        case S_SEQS: rc = serve_int("max-seqs", optarg, 1, 4096, &o->ec.max_seqs); break;
        case S_CTX: rc = serve_int("ctx", optarg, 2, 1 << 20, &o->ec.n_ctx); break;
        case S_BACKEND:
        case S_KVDTYPE:
        case S_KVMEM: {
            const char *name = c == S_BACKEND ? "backend" : c == S_KVDTYPE ? "kv-dtype" : "kv-memory";
            if (beo_apply(&o->ec, name, optarg)) {
                fprintf(stderr, "helium-worker serve: bad value '%s' for --%s: %s\n", optarg, name, he_msg());
                rc = 2;
            }
            break;
        }
        case S_NOPC: o->ec.no_prefix_cache = true; break;
        case S_HB: rc = serve_int("heartbeat-ms", optarg, 10, 600000, &o->heartbeat_ms); break;
        case S_PULLTO: rc = serve_int("pull-timeout-ms", optarg, 1, 600000, &o->pull_timeout_ms); break;
        case S_INLINE: o->inline_pulls = true; break;
        case S_XPORT:
        case S_XFAULT: {
            const char *ok = c == S_XPORT ? ",auto,nccl,zmq-ref,off," : ",drop,token,send,";
            char pat[32];
            snprintf(pat, sizeof pat, ",%.24s,", optarg);
            if (!strstr(ok, pat) || strchr(optarg, ',')) {
                fprintf(stderr, "helium-worker serve: --%s must be one of %.*s\n", c == S_XPORT ? "kv-xport" : "kv-xport-fault",
                        (int)strlen(ok) - 2, ok + 1);
                rc = 2;
            } else if (c == S_XPORT) o->kv_xport = optarg;
            else o->kv_xport_fault = optarg;
            break;
        }
        case S_XDOMAIN: o->xport_domain = optarg; break;
        case S_HPORT: rc = serve_int("health-port", optarg, 0, 65535, &o->health_port); break;
        case S_HHOST: o->health_host = optarg; break;
        case S_KEY: o->key_file = optarg; break;
        case S_SKEY: o->server_key_file = optarg; break;
        case S_AKEYS: o->authorized_keys = optarg; break;
        case S_CLEAR: o->clear_data = true; break;
        case S_INSECURE: o->insecure = true; break;
        case S_DRAIN: rc = serve_int("drain-timeout-ms", optarg, 0, 86400000, &o->drain_timeout_ms); break;
        case S_LOG:
            v = clog_level_from_name(optarg);
            if (v < 0) {
                fprintf(stderr, "helium-worker serve: --log-level must be error, warn, info or debug\n");
                rc = 2;
            } else {
                o->level = (clog_level)v;
            }
            break;
        case S_HELP: serve_usage(stdout); exit(0);
        default: serve_usage(stderr); return 2;
        }
        if (rc) return rc;
    }
    if (optind < argc) {
        fprintf(stderr, "helium-worker serve: unexpected argument '%s'\n", argv[optind]);
        return 2;
    }
    if (beo_check(&o->ec)) {
        fprintf(stderr, "helium-worker serve: %s\n", he_msg());
        return 2;
    }
    if (!o->coord_ep || !o->model_path) {
        fprintf(stderr, "helium-worker serve: --coordinator and --model are required\n");
        serve_usage(stderr);
        return 2;
    }
    if (o->insecure ? o->key_file || o->server_key_file || o->authorized_keys
                    : !o->key_file || !o->server_key_file) {
        fprintf(stderr, "helium-worker serve: %s\n",
                o->insecure ? "--insecure excludes --key, --server-key and --authorized-keys"
                            : "give --key FILE and --server-key FILE (CURVE), or --insecure to run without keys");
        return 2;
    }
    if (o->id) {
        size_t l = strlen(o->id);
        bool ok = l >= 1 && l <= WF_MAX_ID_LEN;
        for (size_t i = 0; ok && i < l; i++) {
            char ch = o->id[i];
            ok = (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') || ch == '_' ||
                 ch == '-' || ch == '.';
        }
        if (!ok) {
            fprintf(stderr, "helium-worker serve: --id must be 1-%d characters of [A-Za-z0-9_.-]\n", WF_MAX_ID_LEN);
            return 2;
        }
    }
    return 0;
}

/* The environment's HELIUM_WORKER_<OPTION>s go before the command line's
 * options (common/args.h), so the command line wins. */
static int cmd_serve(int argc, char **argv) {
    args_env_opt env[N_SERVE_OPTS];
    size_t n = 0;
    for (size_t i = 0; i < N_SERVE_OPTS; i++)
        if (SERVE_OPTS[i].val != S_HELP) env[n++] = (args_env_opt){SERVE_OPTS[i].name, SERVE_OPTS[i].has_arg != 0};
    int ac;
    char **av, err[256];
    if (args_env_merge("HELIUM_WORKER", env, n, argc, argv, 2, &ac, &av, err, sizeof err)) {
        fprintf(stderr, "helium-worker serve: %s\n", err);
        return 2;
    }
    srv_opts o;
    int rc = serve_parse(ac, av, &o);
    if (!rc) rc = srv_run(&o);
    args_env_free(&av);
    return rc;
}

int main(int argc, char **argv) {
    if (argc < 2) {
        wcli_usage(stderr);
        return 2;
    }
    const char *cmd = argv[1];
    if (!strcmp(cmd, "generate")) return cmd_generate(argc, argv);
    if (!strcmp(cmd, "eval")) return cmd_eval(argc, argv);
    if (!strcmp(cmd, "tokenize")) return cmd_tokenize(argc, argv);
    if (!strcmp(cmd, "bench")) return cmd_bench(argc, argv);
    if (!strcmp(cmd, "serve")) return cmd_serve(argc, argv);
    if (!strcmp(cmd, "--help") || !strcmp(cmd, "-h") || !strcmp(cmd, "help")) {
        wcli_usage(stdout);
        return 0;
    }
    fprintf(stderr, "helium-worker: unknown command '%s'\n", cmd);
    wcli_usage(stderr);
    return 2;
}
