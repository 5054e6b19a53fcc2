/* cpu_geglu: see cpu_geglu.h. The f16 GELU table (65536 entries, 128 KiB) is
 * built once, on first use, under pthread_once. */
#include "cpu_geglu.h"

#include <math.h>
#include <pthread.h>

#include "cpu_quant.h"

static uint16_t gelu_tab[1 << 16]; /* f16 bits x -> f16 bits of gelu(x); written once */
static pthread_once_t gelu_once = PTHREAD_ONCE_INIT;

static float gelu_f32(float x) {
    const float a = 0.044715f, s = 0.79788456080286535587989211986876f; /* sqrt(2/pi) */
    return 0.5f * x * (1.0f + tanhf(s * x * (1.0f + a * x * x)));
}

static void gelu_init(void) {
    for (uint32_t i = 0; i < (1u << 16); i++) gelu_tab[i] = cq_f32_to_f16(gelu_f32(cq_f16_to_f32((uint16_t)i)));
}

void cpu_geglu(cpu_ctx_t *c, const float *g, const float *u, float *y, int64_t n, int64_t dim) {
    pthread_once(&gelu_once, gelu_init);
    const int nth = cpu_ctx_threads(c);
    const int64_t total = n * dim;
#pragma omp parallel for num_threads(nth) if (total >= (1 << 15) && nth > 1) schedule(static)
    for (int64_t i = 0; i < total; i++) {
        float x = g[i];
        float r;
        if (x <= -10.0f)
            r = 0.0f;
        else if (x >= 10.0f)
            r = x * u[i];
        else
            r = cq_f16_to_f32(gelu_tab[cq_f32_to_f16(x)]) * u[i];
        y[i] = r;
    }
}

void cpu_softcap(float *x, int64_t n, float cap) {
    const float inv = 1.0f / cap;
    for (int64_t i = 0; i < n; i++) x[i] = tanhf(x[i] * inv) * cap;
}
