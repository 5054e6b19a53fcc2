/* beopt: parsing of --backend, --kv-dtype, --kv-memory; see beopt.h. */
#include "beopt.h"

#include <stdlib.h>
#include <string.h>

#include "args.h"
#include "cuda/cuda_backend.h"
#include "herr.h"
#include "kvwire.h"

bool beo_is_option(const char *opt) {
    return opt && (!strcmp(opt, "backend") || !strcmp(opt, "kv-dtype") || !strcmp(opt, "kv-memory"));
}

int beo_apply(eng_config *ec, const char *opt, const char *val) {
    if (!val) return he_set(HE_EINVAL, "--%s needs a value", opt);
    if (!strcmp(opt, "backend")) {
        if (!strcmp(val, "cpu")) ec->backend = ENG_BACKEND_CPU;
        else if (!strcmp(val, "cuda")) ec->backend = ENG_BACKEND_CUDA;
        else return he_set(HE_EINVAL, "unknown backend '%s' (cpu, cuda)", val);
        return 0;
    }
    if (!strcmp(opt, "kv-dtype")) {
        kvw_type t;
        if (kvw_parse(val, &t)) return HE_EINVAL;
        ec->kv_type = t == KVW_F32 ? -1 : (int32_t)t; /* -1: F32 asked for explicitly (0 means the default) */
        return 0;
    }
    if (!strcmp(opt, "kv-memory")) {
        size_t n = strlen(val);
        int v = 0;
        if (n > 1 && val[n - 1] == '%') {
            char num[32];
            if (n - 1 >= sizeof num) return he_set(HE_EINVAL, "bad --kv-memory '%s'", val);
            memcpy(num, val, n - 1);
            num[n - 1] = 0;
            if (!args_int(num, 1, 99, &v)) return he_set(HE_EINVAL, "bad --kv-memory '%s' (1%% to 99%%)", val);
            ec->kv_mem_pct = v;
            ec->kv_mem_mb = 0;
        } else {
            if (!args_int(val, 1, 1 << 24, &v)) return he_set(HE_EINVAL, "bad --kv-memory '%s' (MiB, or a percent like 80%%)", val);
            ec->kv_mem_mb = v;
            ec->kv_mem_pct = 0;
        }
        return 0;
    }
    return he_set(HE_EINVAL, "unknown backend option --%s", opt);
}

int beo_check(const eng_config *ec) {
    if (ec->backend == ENG_BACKEND_CPU) {
        if (ec->kv_type > 0) return he_set(HE_EINVAL, "--kv-dtype %s needs --backend cuda (the CPU KV pool is f32)",
                                           kvw_name(ec->kv_type));
        if (ec->kv_mem_pct > 0) return he_set(HE_EINVAL, "--kv-memory as a percent needs --backend cuda (use MiB)");
    }
    return 0;
}

extern be_t *be_cuda_new(const model_t *m, const be_cuda_config *cfg) __attribute__((weak));

const char *beo_backends(void) { return be_cuda_new ? "cpu, cuda" : "cpu"; }
