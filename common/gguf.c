/* gguf: validating mmap reader for GGUF v2/v3 files, and the ggml type table.
 *
 * Reader: gguf_open() maps the file read-only and walks it once with a
 * bounds-checked cursor; no byte is read before its range has been checked
 * against the file size, and every length/count multiplication is checked for
 * overflow. Tables grow as entries actually parse (plus hard caps on n_kv and
 * n_tensors), so a lying header cannot make us allocate more than a small
 * multiple of the file size. Keys and tensor names are copied NUL-terminated
 * and indexed in open-addressing hash tables; every STRING array gets a table
 * of element pointers, so element access is O(1).
 *
 * Invariants after gguf_open() succeeds: every kv_t.val / kv_t.strs[i] pointer
 * and every tensor's [data, data + nbytes) lies inside the mapping; tensor
 * types are ones ggml_type_supported() accepts (F32, F16, BF16, the legacy
 * quants Q4_0..Q8_0, the K-quants Q2_K..Q6_K, IQ4_NL), each row a whole
 * number of blocks, and nbytes matches the shape.
 *
 * The writer (gguf_writer_*) is gguf_write.c; the checks and helpers both
 * share are in the private gguf_impl.h. Assumes a little-endian host.
 */
#include "gguf.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "gguf_impl.h"
#include "herr.h"

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "gguf.c assumes a little-endian host"
#endif

#define GGUF_MIN_KV_BYTES 13   /* key length u64, type u32, smallest value (1 byte) */
#define GGUF_MIN_TI_BYTES 24   /* name length u64, n_dims u32, type u32, offset u64 */
#define GGUF_MAX_KV (1 << 20)  /* far above any real model (~100 keys) */
#define GGUF_MAX_TENSORS (1 << 20)

/* ---- ggml tensor types ------------------------------------------------ */

/* Names of every ggml type id in use (gaps are retired ids). */
static const char *const ggml_names[] = {
    [0] = "F32",      [1] = "F16",     [2] = "Q4_0",    [3] = "Q4_1",     [6] = "Q5_0",
    [7] = "Q5_1",     [8] = "Q8_0",    [9] = "Q8_1",    [10] = "Q2_K",    [11] = "Q3_K",
    [12] = "Q4_K",    [13] = "Q5_K",   [14] = "Q6_K",   [15] = "Q8_K",    [16] = "IQ2_XXS",
    [17] = "IQ2_XS",  [18] = "IQ3_XXS", [19] = "IQ1_S", [20] = "IQ4_NL",  [21] = "IQ3_S",
    [22] = "IQ2_S",   [23] = "IQ4_XS", [24] = "I8",     [25] = "I16",     [26] = "I32",
    [27] = "I64",     [28] = "F64",    [29] = "IQ1_M",  [30] = "BF16",    [34] = "TQ1_0",
    [35] = "TQ2_0",   [39] = "MXFP4",
};

const char *ggml_type_name(ggml_type t) {
    unsigned u = (unsigned)t;
    if (u < sizeof ggml_names / sizeof ggml_names[0] && ggml_names[u]) return ggml_names[u];
    return "unknown";
}

/* Block size (elements) and block bytes per type id; {0, 0} for ids the
 * reader does not accept. */
static const struct {
    int64_t blck;
    size_t bytes;
} ggml_traits[] = {
    [GGML_T_F32] = {1, 4},      [GGML_T_F16] = {1, 2},      [GGML_T_BF16] = {1, 2},
    [GGML_T_Q4_0] = {32, 18},   [GGML_T_Q4_1] = {32, 20},   [GGML_T_Q5_0] = {32, 22},
    [GGML_T_Q5_1] = {32, 24},   [GGML_T_Q8_0] = {32, 34},   [GGML_T_Q8_1] = {32, 36},
    [GGML_T_Q2_K] = {256, 84},  [GGML_T_Q3_K] = {256, 110}, [GGML_T_Q4_K] = {256, 144},
    [GGML_T_Q5_K] = {256, 176}, [GGML_T_Q6_K] = {256, 210}, [GGML_T_Q8_K] = {256, 292},
    [GGML_T_IQ4_NL] = {32, 18},
};

int64_t ggml_blck_size(ggml_type t) {
    unsigned u = (unsigned)t;
    return u < sizeof ggml_traits / sizeof ggml_traits[0] ? ggml_traits[u].blck : 0;
}

size_t ggml_type_size(ggml_type t) {
    unsigned u = (unsigned)t;
    return u < sizeof ggml_traits / sizeof ggml_traits[0] ? ggml_traits[u].bytes : 0;
}

/* Activation-only formats (Q8_1, Q8_K) are known to the table but never
 * accepted in a file: llama.cpp does not write them. */
bool ggml_type_supported(ggml_type t) {
    return ggml_blck_size(t) > 0 && t != GGML_T_Q8_1 && t != GGML_T_Q8_K;
}

size_t ggml_row_size(ggml_type t, int64_t ne0) {
    if (ne0 <= 0) return 0;
    uint64_t n = (uint64_t)ne0;
    int64_t blck = ggml_blck_size(t);
    size_t bytes = ggml_type_size(t);
    if (blck <= 0 || n % (uint64_t)blck) return 0;
    n /= (uint64_t)blck;
    return n <= SIZE_MAX / bytes ? (size_t)n * bytes : 0;
}

/* ---- metadata value types --------------------------------------------- */

/* Size of a fixed-size value type, 0 for STRING, ARRAY and unknown ids. */
static size_t vtype_size(uint32_t t) {
    switch (t) {
    case GGUF_T_UINT8: case GGUF_T_INT8: case GGUF_T_BOOL: return 1;
    case GGUF_T_UINT16: case GGUF_T_INT16: return 2;
    case GGUF_T_UINT32: case GGUF_T_INT32: case GGUF_T_FLOAT32: return 4;
    case GGUF_T_UINT64: case GGUF_T_INT64: case GGUF_T_FLOAT64: return 8;
    default: return 0;
    }
}

/* ---- reader state ------------------------------------------------------ */

typedef struct {
    char *key;              /* NUL-terminated copy */
    gguf_vtype type;
    gguf_vtype elem;        /* ARRAY: element type */
    uint64_t n;             /* STRING: byte length; ARRAY: element count */
    const uint8_t *val;     /* scalar bytes, string bytes, or first array element (in map) */
    const uint8_t **strs;   /* STRING arrays: (n) pointers at each element's u64 length */
} kv_t;

typedef struct {
    const char *name;       /* NULL: empty slot */
    int64_t idx;
} hslot;

typedef struct {
    hslot *slot;            /* (mask + 1), a power of two >= 2 * entries */
    size_t mask;
} hindex;

struct gguf {
    const uint8_t *map;     /* (size) read-only mapping of the whole file */
    size_t size;
    uint32_t version;
    uint32_t alignment;     /* general.alignment, a power of two */
    size_t data_start;      /* aligned end of the header; tensor offsets are relative to it */
    int64_t n_kv, n_tensors;
    kv_t *kv;               /* (n_kv) */
    gguf_tensor *t;         /* (n_tensors) */
    hindex kidx, tidx;      /* key -> kv index, name -> tensor index */
};

/* FNV-1a, 64-bit. */
static uint64_t hash_str(const char *s) {
    uint64_t h = 1469598103934665603ull;
    for (; *s; s++) h = (h ^ (uint8_t)*s) * 1099511628211ull;
    return h;
}

static int hindex_init(hindex *h, int64_t n) {
    size_t cap = 16;
    while (cap < (size_t)n * 2) cap <<= 1;
    h->slot = calloc(cap, sizeof *h->slot);
    h->mask = cap - 1;
    return h->slot ? 0 : he_set(HE_ENOMEM, "gguf: out of memory (index of %" PRId64 ")", n);
}

/* Adds name -> idx. Returns -1, or the index already stored under name. */
static int64_t hindex_put(hindex *h, const char *name, int64_t idx) {
    size_t i = hash_str(name) & h->mask;
    for (; h->slot[i].name; i = (i + 1) & h->mask)
        if (!strcmp(h->slot[i].name, name)) return h->slot[i].idx;
    h->slot[i].name = name;
    h->slot[i].idx = idx;
    return -1;
}

/* Index stored under name, or -1. Visits at most one cluster (table <= half full). */
static int64_t hindex_get(const hindex *h, const char *name) {
    if (!h->slot || !name) return -1;
    for (size_t i = hash_str(name) & h->mask; h->slot[i].name; i = (i + 1) & h->mask)
        if (!strcmp(h->slot[i].name, name)) return h->slot[i].idx;
    return -1;
}

/* Bounds-checked cursor over the mapping. */
typedef struct {
    const uint8_t *p;
    size_t size, pos;
} cursor;

static const uint8_t *take(cursor *c, uint64_t n) {
    if (n > c->size - c->pos) return NULL;
    const uint8_t *r = c->p + c->pos;
    c->pos += (size_t)n;
    return r;
}

static bool rd_u32(cursor *c, uint32_t *v) {
    const uint8_t *p = take(c, 4);
    if (p) memcpy(v, p, 4);
    return p != NULL;
}

static bool rd_u64(cursor *c, uint64_t *v) {
    const uint8_t *p = take(c, 8);
    if (p) memcpy(v, p, 8);
    return p != NULL;
}

/* Reads a GGUF string (u64 length, bytes). On failure *len holds the length
 * read (or 0 if the length itself was cut). */
static bool rd_str(cursor *c, const uint8_t **s, uint64_t *len) {
    *len = 0;
    if (!rd_u64(c, len)) return false;
    *s = take(c, *len);
    return *s != NULL;
}

static int trunc_err(const char *what) {
    return he_set(HE_EFORMAT, "gguf: file truncated in header (%s)", what);
}

static int str_err(const cursor *c, const char *what, uint64_t len) {
    if (len == 0) return trunc_err(what);
    return he_set(HE_EFORMAT,
                  "gguf: file truncated in header (%s: string length %" PRIu64
                  " past end of file at offset %zu, size %zu)", what, len, c->pos, c->size);
}

/* Copies a length-delimited name to a NUL-terminated heap string. */
static int dup_name(const uint8_t *s, uint64_t len, const char *what, char **out) {
    if (memchr(s, 0, (size_t)len)) return he_set(HE_EFORMAT, "gguf: %s contains a NUL byte", what);
    *out = malloc((size_t)len + 1);
    if (!*out) return he_set(HE_ENOMEM, "gguf: out of memory (%s)", what);
    memcpy(*out, s, (size_t)len);
    (*out)[len] = 0;
    return 0;
}

/* Parses the type and value of kv (whose key is already read). */
static int parse_value(cursor *c, kv_t *kv, const char *what) {
    uint32_t t;
    if (!rd_u32(c, &t)) return trunc_err(what);
    kv->type = (gguf_vtype)t;
    size_t es = vtype_size(t);
    if (es) return (kv->val = take(c, es)) ? 0 : trunc_err(what);
    if (t == GGUF_T_STRING)
        return rd_str(c, &kv->val, &kv->n) ? 0 : str_err(c, what, kv->n);
    if (t != GGUF_T_ARRAY) return he_set(HE_EFORMAT, "gguf: %s has unknown value type %u", what, t);

    uint32_t et;
    uint64_t n;
    if (!rd_u32(c, &et) || !rd_u64(c, &n)) return trunc_err(what);
    kv->elem = (gguf_vtype)et;
    kv->n = n;
    if (et == GGUF_T_ARRAY)
        return he_set(HE_EUNSUPPORTED, "gguf: %s is a nested array (not supported)", what);
    size_t left = c->size - c->pos;
    es = vtype_size(et);
    if (es) {
        if (n > left / es)
            return he_set(HE_EFORMAT, "gguf: file truncated in header (%s: array of %" PRIu64
                          " elements of %zu bytes past end of file, size %zu)", what, n, es, c->size);
        kv->val = take(c, n * es);
        return 0;
    }
    if (et != GGUF_T_STRING)
        return he_set(HE_EFORMAT, "gguf: %s is an array of unknown element type %u", what, et);
    if (n > left / 8) /* every element needs at least its u64 length */
        return he_set(HE_EFORMAT, "gguf: file truncated in header (%s: array of %" PRIu64
                      " strings past end of file, size %zu)", what, n, c->size);
    kv->val = c->p + c->pos;
    kv->strs = malloc(n ? (size_t)n * sizeof *kv->strs : 1);
    if (!kv->strs) return he_set(HE_ENOMEM, "gguf: out of memory (%s)", what);
    for (uint64_t i = 0; i < n; i++) {
        const uint8_t *s;
        uint64_t len;
        kv->strs[i] = c->p + c->pos;
        if (!rd_str(c, &s, &len)) {
            char w2[256];
            snprintf(w2, sizeof w2, "%s element %" PRIu64, what, i);
            return str_err(c, w2, len);
        }
    }
    return 0;
}

static int parse_kvs(gguf_t *g, cursor *c, uint64_t n_kv) {
    int64_t cap = 0;
    char what[160];
    for (uint64_t i = 0; i < n_kv; i++) {
        int rc = grow((void **)&g->kv, &cap, g->n_kv, sizeof *g->kv);
        if (rc) return rc;
        kv_t *kv = &g->kv[g->n_kv];
        const uint8_t *s;
        uint64_t len;
        snprintf(what, sizeof what, "kv #%" PRIu64 " key", i);
        if (!rd_str(c, &s, &len)) return str_err(c, what, len);
        if ((rc = dup_name(s, len, what, &kv->key))) return rc;
        g->n_kv++;
        snprintf(what, sizeof what, "kv #%" PRIu64 " '%.100s'", i, kv->key);
        if ((rc = parse_value(c, kv, what))) return rc;
    }
    if (hindex_init(&g->kidx, g->n_kv)) return HE_ENOMEM;
    for (int64_t i = 0; i < g->n_kv; i++)
        if (hindex_put(&g->kidx, g->kv[i].key, i) >= 0)
            return he_set(HE_EFORMAT, "gguf: duplicate key '%.100s' (kv #%" PRId64 ")", g->kv[i].key, i);
    return 0;
}

/* Reads general.alignment (u32, power of two; default 32). */
static int parse_alignment(gguf_t *g) {
    g->alignment = GGUF_DEFAULT_ALIGNMENT;
    int64_t i = hindex_get(&g->kidx, "general.alignment");
    if (i < 0) return 0;
    if (g->kv[i].type != GGUF_T_UINT32)
        return he_set(HE_EFORMAT, "gguf: general.alignment has type %u, expected u32", g->kv[i].type);
    uint32_t a;
    memcpy(&a, g->kv[i].val, 4);
    if (a == 0 || (a & (a - 1)))
        return he_set(HE_EFORMAT, "gguf: general.alignment %u is not a power of two", a);
    g->alignment = a;
    return 0;
}

/* Parses tensor infos; offsets (relative to the data section) go to offs. */
static int parse_tensor_infos(gguf_t *g, cursor *c, uint64_t n_tensors, uint64_t **offs) {
    int64_t cap = 0, ocap = 0;
    char what[160];
    for (uint64_t i = 0; i < n_tensors; i++) {
        int rc = grow((void **)&g->t, &cap, g->n_tensors, sizeof *g->t);
        if (!rc) rc = grow((void **)offs, &ocap, g->n_tensors, sizeof **offs);
        if (rc) return rc;
        gguf_tensor *t = &g->t[g->n_tensors];
        const uint8_t *s;
        uint64_t len;
        char *name;
        snprintf(what, sizeof what, "tensor #%" PRIu64 " name", i);
        if (!rd_str(c, &s, &len)) return str_err(c, what, len);
        if ((rc = dup_name(s, len, what, &name))) return rc;
        t->name = name;
        g->n_tensors++;
        snprintf(what, sizeof what, "tensor #%" PRIu64 " '%.100s'", i, name);

        uint32_t n_dims, type;
        if (!rd_u32(c, &n_dims)) return trunc_err(what);
        if (n_dims > GGUF_MAX_DIMS)
            return he_set(HE_EFORMAT, "gguf: %s has %u dims (max %d)", what, n_dims, GGUF_MAX_DIMS);
        t->n_dims = n_dims;
        uint64_t nel = 1;
        for (int d = 0; d < GGUF_MAX_DIMS; d++) {
            uint64_t ne = 1;
            if ((uint32_t)d < n_dims && !rd_u64(c, &ne)) return trunc_err(what);
            if (ne == 0 || ne > INT64_MAX)
                return he_set(HE_EFORMAT, "gguf: %s has bad size %" PRIu64 " in dim %d", what, ne, d);
            if (ne > (uint64_t)INT64_MAX / nel)
                return he_set(HE_EFORMAT, "gguf: %s element count overflows", what);
            nel *= ne;
            t->ne[d] = (int64_t)ne;
        }
        if (!rd_u32(c, &type) || !rd_u64(c, &(*offs)[i])) return trunc_err(what);
        t->type = (ggml_type)type;
        if (!type_supported(type)) {
            if (!strcmp(ggml_type_name(t->type), "unknown"))
                return he_set(HE_EUNSUPPORTED, "gguf: tensor '%.100s' has unknown type id %u", name, type);
            return he_set(HE_EUNSUPPORTED,
                          "gguf: tensor '%.100s' has type %s (%u), not supported (F32, F16, BF16, "
                          "Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q2_K..Q6_K, IQ4_NL)",
                          name, ggml_type_name(t->type), type);
        }
        if (t->ne[0] % ggml_blck_size(t->type))
            return he_set(HE_EFORMAT, "gguf: tensor '%.100s' is %s but ne[0]=%" PRId64
                          " is not a multiple of its block size %" PRId64, name,
                          ggml_type_name(t->type), t->ne[0], ggml_blck_size(t->type));
        t->nbytes = tensor_nbytes(t->type, t->ne);
        if (!t->nbytes)
            return he_set(HE_ERANGE, "gguf: tensor '%.100s' byte size overflows", name);
    }
    if (hindex_init(&g->tidx, g->n_tensors)) return HE_ENOMEM;
    for (int64_t i = 0; i < g->n_tensors; i++)
        if (hindex_put(&g->tidx, g->t[i].name, i) >= 0)
            return he_set(HE_EFORMAT, "gguf: duplicate tensor name '%.100s' (tensor #%" PRId64 ")",
                          g->t[i].name, i);
    return 0;
}

static uint64_t sat_add(uint64_t a, uint64_t b) { return a > UINT64_MAX - b ? UINT64_MAX : a + b; }

/* Places every tensor's data after the aligned end of the header (c->pos). */
static int place_tensors(gguf_t *g, const cursor *c, const uint64_t *offs) {
    uint64_t a = g->alignment;
    uint64_t start = ((uint64_t)c->pos + a - 1) / a * a;
    g->data_start = start > g->size ? g->size : (size_t)start;
    for (int64_t i = 0; i < g->n_tensors; i++) {
        gguf_tensor *t = &g->t[i];
        uint64_t off = offs[i];
        if (off % a)
            return he_set(HE_EFORMAT, "gguf: tensor '%.100s' offset %" PRIu64
                          " is not a multiple of the alignment %" PRIu64, t->name, off, a);
        uint64_t lo = sat_add(start, off), hi = sat_add(lo, t->nbytes);
        if (start > g->size || off > g->size - start || t->nbytes > g->size - start - off)
            return he_set(HE_ERANGE, "gguf: tensor '%.100s' data [%" PRIu64 ", %" PRIu64
                          ") past end of file (size %zu)", t->name, lo, hi, g->size);
        t->data = g->map + lo;
    }
    return 0;
}

static int parse(gguf_t *g) {
    cursor c = {g->map, g->size, 0};
    if (g->size < 4 || memcmp(g->map, "GGUF", 4))
        return he_set(HE_EFORMAT, "gguf: bad magic (not a GGUF file)");
    c.pos = 4;
    uint64_t n_tensors, n_kv;
    if (!rd_u32(&c, &g->version)) return trunc_err("version");
    if (g->version == 1)
        return he_set(HE_EUNSUPPORTED, "gguf: version 1 is not supported (need 2 or 3)");
    if ((g->version & 0xffff) == 0 && g->version)
        return he_set(HE_EUNSUPPORTED, "gguf: big-endian GGUF files are not supported");
    if (g->version != 2 && g->version != 3)
        return he_set(HE_EUNSUPPORTED, "gguf: version %u is not supported (need 2 or 3)", g->version);
    if (!rd_u64(&c, &n_tensors) || !rd_u64(&c, &n_kv)) return trunc_err("counts");
    size_t left = g->size - c.pos;
    if (n_kv > GGUF_MAX_KV || n_kv > left / GGUF_MIN_KV_BYTES)
        return he_set(HE_EFORMAT, "gguf: absurd kv count %" PRIu64 " for a file of %zu bytes",
                      n_kv, g->size);
    if (n_tensors > GGUF_MAX_TENSORS || n_tensors > left / GGUF_MIN_TI_BYTES ||
        n_kv * GGUF_MIN_KV_BYTES + n_tensors * GGUF_MIN_TI_BYTES > left)
        return he_set(HE_EFORMAT, "gguf: absurd tensor count %" PRIu64 " (with %" PRIu64
                      " kvs) for a file of %zu bytes", n_tensors, n_kv, g->size);
    int rc = parse_kvs(g, &c, n_kv);
    if (!rc) rc = parse_alignment(g);
    uint64_t *offs = NULL;
    if (!rc) rc = parse_tensor_infos(g, &c, n_tensors, &offs);
    if (!rc) rc = place_tensors(g, &c, offs);
    free(offs);
    return rc;
}

int gguf_open(const char *path, gguf_t **out) {
    *out = NULL;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return he_set(HE_EIO, "gguf: cannot open '%s': %s", path, strerror(errno));
    struct stat st;
    if (fstat(fd, &st) < 0) {
        int e = errno;
        close(fd);
        return he_set(HE_EIO, "gguf: cannot stat '%s': %s", path, strerror(e));
    }
    if (!S_ISREG(st.st_mode)) {
        close(fd);
        return he_set(HE_EIO, "gguf: '%s' is not a regular file", path);
    }
    if (st.st_size < 4) {
        close(fd);
        return he_set(HE_EFORMAT, "gguf: bad magic (not a GGUF file): '%s' has only %lld bytes", path,
                      (long long)st.st_size);
    }
    gguf_t *g = calloc(1, sizeof *g);
    if (!g) {
        close(fd);
        return he_set(HE_ENOMEM, "gguf: out of memory");
    }
    g->size = (size_t)st.st_size;
    void *m = mmap(NULL, g->size, PROT_READ, MAP_PRIVATE, fd, 0);
    int e = errno;
    close(fd);
    if (m == MAP_FAILED) {
        free(g);
        return he_set(HE_EIO, "gguf: cannot mmap '%s': %s", path, strerror(e));
    }
    g->map = m;
    int rc = parse(g);
    if (rc) {
        gguf_destroy(&g);
        return rc;
    }
    *out = g;
    return 0;
}

void gguf_destroy(gguf_t **self_p) {
    if (!self_p || !*self_p) return;
    gguf_t *g = *self_p;
    for (int64_t i = 0; i < g->n_kv; i++) {
        free(g->kv[i].key);
        free(g->kv[i].strs);
    }
    for (int64_t i = 0; i < g->n_tensors; i++) free((char *)g->t[i].name);
    free(g->kv);
    free(g->t);
    free(g->kidx.slot);
    free(g->tidx.slot);
    if (g->map) munmap((void *)g->map, g->size);
    free(g);
    *self_p = NULL;
}

/* ---- reader accessors --------------------------------------------------- */

uint32_t gguf_version(const gguf_t *g) { return g->version; }
size_t gguf_file_size(const gguf_t *g) { return g->size; }
int64_t gguf_n_kv(const gguf_t *g) { return g->n_kv; }
int64_t gguf_n_tensors(const gguf_t *g) { return g->n_tensors; }

const char *gguf_kv_key(const gguf_t *g, int64_t i) {
    return i >= 0 && i < g->n_kv ? g->kv[i].key : NULL;
}

int64_t gguf_find_key(const gguf_t *g, const char *key) { return hindex_get(&g->kidx, key); }

gguf_vtype gguf_kv_type(const gguf_t *g, int64_t i) {
    return i >= 0 && i < g->n_kv ? g->kv[i].type : (gguf_vtype)-1;
}

static const kv_t *find_kv(const gguf_t *g, const char *key) {
    int64_t i = hindex_get(&g->kidx, key);
    return i >= 0 ? &g->kv[i] : NULL;
}

/* Integer value of kv: when *neg, the value is *s (< 0), else *u. */
static bool kv_int(const kv_t *kv, bool *neg, int64_t *s, uint64_t *u) {
    const uint8_t *p = kv->val;
    *neg = false;
    *s = 0;
    *u = 0;
    switch (kv->type) {
    case GGUF_T_UINT8: *u = p[0]; return true;
    case GGUF_T_UINT16: { uint16_t v; memcpy(&v, p, 2); *u = v; return true; }
    case GGUF_T_UINT32: { uint32_t v; memcpy(&v, p, 4); *u = v; return true; }
    case GGUF_T_UINT64: memcpy(u, p, 8); return true;
    case GGUF_T_INT8: *s = (int8_t)p[0]; break;
    case GGUF_T_INT16: { int16_t v; memcpy(&v, p, 2); *s = v; break; }
    case GGUF_T_INT32: { int32_t v; memcpy(&v, p, 4); *s = v; break; }
    case GGUF_T_INT64: memcpy(s, p, 8); break;
    default: return false;
    }
    *neg = *s < 0;
    if (!*neg) *u = (uint64_t)*s;
    return true;
}

bool gguf_get_u32(const gguf_t *g, const char *key, uint32_t *out) {
    const kv_t *kv = find_kv(g, key);
    bool neg;
    int64_t s;
    uint64_t u;
    if (!kv || !kv_int(kv, &neg, &s, &u) || neg || u > UINT32_MAX) return false;
    *out = (uint32_t)u;
    return true;
}

bool gguf_get_i64(const gguf_t *g, const char *key, int64_t *out) {
    const kv_t *kv = find_kv(g, key);
    bool neg;
    int64_t s;
    uint64_t u;
    if (!kv || !kv_int(kv, &neg, &s, &u) || (!neg && u > INT64_MAX)) return false;
    *out = neg ? s : (int64_t)u;
    return true;
}

bool gguf_get_f32(const gguf_t *g, const char *key, float *out) {
    const kv_t *kv = find_kv(g, key);
    if (kv && kv->type == GGUF_T_FLOAT32) {
        memcpy(out, kv->val, 4);
        return true;
    }
    if (kv && kv->type == GGUF_T_FLOAT64) {
        double d;
        memcpy(&d, kv->val, 8);
        *out = (float)d;
        return true;
    }
    return false;
}

bool gguf_get_bool(const gguf_t *g, const char *key, bool *out) {
    const kv_t *kv = find_kv(g, key);
    if (!kv || kv->type != GGUF_T_BOOL) return false;
    *out = kv->val[0] != 0;
    return true;
}

bool gguf_get_str(const gguf_t *g, const char *key, const char **s, size_t *len) {
    const kv_t *kv = find_kv(g, key);
    if (!kv || kv->type != GGUF_T_STRING) return false;
    *s = (const char *)kv->val;
    *len = (size_t)kv->n;
    return true;
}

bool gguf_get_arr(const gguf_t *g, const char *key, gguf_vtype *elem_type, uint64_t *n,
                  const void **data) {
    const kv_t *kv = find_kv(g, key);
    if (!kv || kv->type != GGUF_T_ARRAY) return false;
    *elem_type = kv->elem;
    *n = kv->n;
    *data = kv->val;
    return true;
}

bool gguf_get_arr_str(const gguf_t *g, const char *key, uint64_t i, const char **s, size_t *len) {
    const kv_t *kv = find_kv(g, key);
    if (!kv || kv->type != GGUF_T_ARRAY || kv->elem != GGUF_T_STRING || i >= kv->n) return false;
    uint64_t l;
    memcpy(&l, kv->strs[i], 8);
    *s = (const char *)kv->strs[i] + 8;
    *len = (size_t)l;
    return true;
}

const gguf_tensor *gguf_tensor_at(const gguf_t *g, int64_t i) {
    return i >= 0 && i < g->n_tensors ? &g->t[i] : NULL;
}

const gguf_tensor *gguf_find_tensor(const gguf_t *g, const char *name) {
    int64_t i = hindex_get(&g->tidx, name);
    return i >= 0 ? &g->t[i] : NULL;
}
