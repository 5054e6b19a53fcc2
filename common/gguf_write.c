/* gguf_write: the in-memory GGUF writer (gguf_writer_*; see gguf.h).
 *
 * Keys are serialized into a byte buffer as they are added (a duplicate key
 * is refused), tensors copied after the same type, name and shape checks
 * the reader applies; gguf_writer_write() emits a v3 file whose tensor
 * offsets are packed in insertion order, each tensor padded to the
 * alignment (as ggml and gguf-py do), so llama.cpp and gguf-py read it. On a
 * write error the partial file is removed. Assumes a little-endian host.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <unistd.h>

#include "gguf_impl.h"

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "gguf_write.c assumes a little-endian host"
#endif

/* ---- writer --------------------------------------------------------------- */

typedef struct {
    char *name;
    ggml_type type;
    uint32_t n_dims;
    int64_t ne[GGUF_MAX_DIMS];
    void *data;             /* (nbytes) copy */
    size_t nbytes;
} wtensor;

struct gguf_writer {
    uint8_t *kv;            /* (kv_len) serialized key/value pairs */
    size_t kv_len, kv_cap;
    char **keys;            /* (n_keys) for duplicate checks */
    int64_t n_keys, keys_cap;
    wtensor *t;             /* (n_t) in file order */
    int64_t n_t, t_cap;
    uint32_t alignment;
};

gguf_writer_t *gguf_writer_new(void) {
    gguf_writer_t *w = calloc(1, sizeof *w);
    if (w) w->alignment = GGUF_DEFAULT_ALIGNMENT;
    return w;
}

void gguf_writer_destroy(gguf_writer_t **self_p) {
    if (!self_p || !*self_p) return;
    gguf_writer_t *w = *self_p;
    for (int64_t i = 0; i < w->n_keys; i++) free(w->keys[i]);
    for (int64_t i = 0; i < w->n_t; i++) {
        free(w->t[i].name);
        free(w->t[i].data);
    }
    free(w->keys);
    free(w->t);
    free(w->kv);
    free(w);
    *self_p = NULL;
}

static int wput(gguf_writer_t *w, const void *p, size_t n) {
    if (n > w->kv_cap - w->kv_len) {
        size_t cap = w->kv_cap ? w->kv_cap : 256;
        while (cap - w->kv_len < n) {
            if (cap > SIZE_MAX / 2) return he_set(HE_ENOMEM, "gguf writer: metadata too large");
            cap *= 2;
        }
        uint8_t *b = realloc(w->kv, cap);
        if (!b) return he_set(HE_ENOMEM, "gguf writer: out of memory");
        w->kv = b;
        w->kv_cap = cap;
    }
    if (n) memcpy(w->kv + w->kv_len, p, n);
    w->kv_len += n;
    return 0;
}

static int wput_u32(gguf_writer_t *w, uint32_t v) { return wput(w, &v, 4); }
static int wput_u64(gguf_writer_t *w, uint64_t v) { return wput(w, &v, 8); }

static int wput_str(gguf_writer_t *w, const char *s) {
    size_t n = strlen(s);
    int rc = wput_u64(w, n);
    return rc ? rc : wput(w, s, n);
}

/* Checks key and writes it and its type; the caller writes the value and
 * calls kv_end(), which rolls back on error. */
static int kv_begin(gguf_writer_t *w, const char *key, uint32_t type, size_t *mark) {
    if (!w) return he_set(HE_EINVAL, "gguf writer: NULL writer");
    *mark = w->kv_len;
    if (!key || !*key) return he_set(HE_EINVAL, "gguf writer: empty key");
    for (int64_t i = 0; i < w->n_keys; i++)
        if (!strcmp(w->keys[i], key)) return he_set(HE_EINVAL, "gguf writer: duplicate key '%s'", key);
    if (!strcmp(key, "general.alignment") && type != GGUF_T_UINT32)
        return he_set(HE_EINVAL, "gguf writer: general.alignment must be u32");
    int rc = wput_str(w, key);
    return rc ? rc : wput_u32(w, type);
}

static int kv_end(gguf_writer_t *w, const char *key, size_t mark, int rc) {
    if (!rc) rc = grow((void **)&w->keys, &w->keys_cap, w->n_keys, sizeof *w->keys);
    char *k = rc ? NULL : strdup(key);
    if (!rc && !k) rc = he_set(HE_ENOMEM, "gguf writer: out of memory");
    if (rc) {
        if (w) w->kv_len = mark;
        return rc;
    }
    w->keys[w->n_keys++] = k;
    return 0;
}

/* One scalar key/value of type t with n value bytes. */
static int add_scalar(gguf_writer_t *w, const char *key, uint32_t t, const void *v, size_t n) {
    size_t mark = 0;
    int rc = kv_begin(w, key, t, &mark);
    if (!rc) rc = wput(w, v, n);
    return kv_end(w, key, mark, rc);
}

int gguf_writer_add_u32(gguf_writer_t *w, const char *key, uint32_t v) {
    bool align = key && !strcmp(key, "general.alignment");
    if (align && (v == 0 || (v & (v - 1))))
        return he_set(HE_EINVAL, "gguf writer: general.alignment %u is not a power of two", v);
    int rc = add_scalar(w, key, GGUF_T_UINT32, &v, 4);
    if (!rc && align) w->alignment = v;
    return rc;
}

int gguf_writer_add_i32(gguf_writer_t *w, const char *key, int32_t v) {
    return add_scalar(w, key, GGUF_T_INT32, &v, 4);
}

int gguf_writer_add_f32(gguf_writer_t *w, const char *key, float v) {
    return add_scalar(w, key, GGUF_T_FLOAT32, &v, 4);
}

int gguf_writer_add_bool(gguf_writer_t *w, const char *key, bool v) {
    uint8_t b = v ? 1 : 0;
    return add_scalar(w, key, GGUF_T_BOOL, &b, 1);
}

int gguf_writer_add_str(gguf_writer_t *w, const char *key, const char *v) {
    size_t mark = 0;
    int rc = v ? kv_begin(w, key, GGUF_T_STRING, &mark) : he_set(HE_EINVAL, "gguf writer: NULL string");
    if (!rc) rc = wput_str(w, v);
    return v ? kv_end(w, key, mark, rc) : rc;
}

/* Array header (element type, count) plus n * es packed bytes from v. */
static int add_arr(gguf_writer_t *w, const char *key, uint32_t et, const void *v, uint64_t n, size_t es) {
    size_t mark = 0;
    if (n && !v) return he_set(HE_EINVAL, "gguf writer: NULL array for '%s'", key ? key : "");
    int rc = kv_begin(w, key, GGUF_T_ARRAY, &mark);
    if (!rc) rc = wput_u32(w, et);
    if (!rc) rc = wput_u64(w, n);
    if (!rc && n > SIZE_MAX / es) rc = he_set(HE_ENOMEM, "gguf writer: array too large");
    if (!rc) rc = wput(w, v, (size_t)n * es);
    return kv_end(w, key, mark, rc);
}

int gguf_writer_add_arr_i32(gguf_writer_t *w, const char *key, const int32_t *v, uint64_t n) {
    return add_arr(w, key, GGUF_T_INT32, v, n, 4);
}

int gguf_writer_add_arr_f32(gguf_writer_t *w, const char *key, const float *v, uint64_t n) {
    return add_arr(w, key, GGUF_T_FLOAT32, v, n, 4);
}

int gguf_writer_add_arr_str(gguf_writer_t *w, const char *key, const char *const *v, uint64_t n) {
    size_t mark = 0;
    if (n && !v) return he_set(HE_EINVAL, "gguf writer: NULL array for '%s'", key ? key : "");
    for (uint64_t i = 0; i < n; i++)
        if (!v[i]) return he_set(HE_EINVAL, "gguf writer: NULL string %" PRIu64 " in array", i);
    int rc = kv_begin(w, key, GGUF_T_ARRAY, &mark);
    if (!rc) rc = wput_u32(w, GGUF_T_STRING);
    if (!rc) rc = wput_u64(w, n);
    for (uint64_t i = 0; i < n && !rc; i++) rc = wput_str(w, v[i]);
    return kv_end(w, key, mark, rc);
}

int gguf_writer_add_tensor(gguf_writer_t *w, const char *name, ggml_type type, uint32_t n_dims,
                           const int64_t *ne, const void *data) {
    if (!w || !name || !*name || strlen(name) >= GGML_MAX_NAME)
        return he_set(HE_EINVAL, "gguf writer: tensor name must be 1..%d bytes", GGML_MAX_NAME - 1);
    for (int64_t i = 0; i < w->n_t; i++)
        if (!strcmp(w->t[i].name, name))
            return he_set(HE_EINVAL, "gguf writer: duplicate tensor '%s'", name);
    if (!type_supported(type))
        return he_set(HE_EINVAL, "gguf writer: tensor '%s' has unsupported type %s (%u)", name,
                      ggml_type_name(type), (unsigned)type);
    if (n_dims < 1 || n_dims > GGUF_MAX_DIMS || !ne)
        return he_set(HE_EINVAL, "gguf writer: tensor '%s' has %u dims (need 1..%d)", name, n_dims,
                      GGUF_MAX_DIMS);
    wtensor t = {.type = type, .n_dims = n_dims, .ne = {1, 1, 1, 1}};
    for (uint32_t d = 0; d < n_dims; d++) {
        if (ne[d] <= 0)
            return he_set(HE_EINVAL, "gguf writer: tensor '%s' dim %u is %" PRId64, name, d, ne[d]);
        t.ne[d] = ne[d];
    }
    t.nbytes = tensor_nbytes(type, t.ne);
    if (!t.nbytes)
        return he_set(HE_EINVAL, "gguf writer: tensor '%s' of type %s: ne[0]=%" PRId64
                      " not a whole number of blocks, or size overflows", name, ggml_type_name(type), ne[0]);
    if (!data) return he_set(HE_EINVAL, "gguf writer: tensor '%s' has no data", name);
    int rc = grow((void **)&w->t, &w->t_cap, w->n_t, sizeof *w->t);
    if (rc) return rc;
    t.name = strdup(name);
    t.data = malloc(t.nbytes);
    if (!t.name || !t.data) {
        free(t.name);
        free(t.data);
        return he_set(HE_ENOMEM, "gguf writer: out of memory for tensor '%s' (%zu bytes)", name, t.nbytes);
    }
    memcpy(t.data, data, t.nbytes);
    w->t[w->n_t++] = t;
    return 0;
}

/* Output file with a running byte position. */
typedef struct {
    FILE *f;
    uint64_t pos;
} wfile;

static void out(wfile *o, const void *p, size_t n) {
    if (n && fwrite(p, 1, n, o->f) != n) return; /* ferror() is checked at the end */
    o->pos += n;
}

static void out_pad(wfile *o, uint32_t align) {
    static const uint8_t zeros[256];
    while (o->pos % align) {
        size_t n = align - (size_t)(o->pos % align);
        out(o, zeros, n < sizeof zeros ? n : sizeof zeros);
        if (ferror(o->f)) return;
    }
}

static uint64_t pad_to(uint64_t n, uint32_t a) { return (n + a - 1) / a * a; }

int gguf_writer_write(gguf_writer_t *w, const char *path) {
    wfile o = {fopen(path, "wb"), 0};
    if (!o.f) return he_set(HE_EIO, "gguf writer: cannot create '%s': %s", path, strerror(errno));
    uint32_t version = 3;
    uint64_t n_t = (uint64_t)w->n_t, n_kv = (uint64_t)w->n_keys, off = 0;
    out(&o, "GGUF", 4);
    out(&o, &version, 4);
    out(&o, &n_t, 8);
    out(&o, &n_kv, 8);
    out(&o, w->kv, w->kv_len);
    for (int64_t i = 0; i < w->n_t; i++) {
        const wtensor *t = &w->t[i];
        uint64_t len = strlen(t->name), ne;
        uint32_t type = (uint32_t)t->type;
        out(&o, &len, 8);
        out(&o, t->name, len);
        out(&o, &t->n_dims, 4);
        for (uint32_t d = 0; d < t->n_dims; d++) {
            ne = (uint64_t)t->ne[d];
            out(&o, &ne, 8);
        }
        out(&o, &type, 4);
        out(&o, &off, 8);
        off += pad_to(t->nbytes, w->alignment);
    }
    out_pad(&o, w->alignment);
    for (int64_t i = 0; i < w->n_t; i++) {
        out(&o, w->t[i].data, w->t[i].nbytes);
        out_pad(&o, w->alignment);
    }
    int werr = ferror(o.f) ? errno : 0;
    if (fclose(o.f) != 0 && !werr) werr = errno ? errno : EIO;
    if (werr) {
        unlink(path);
        return he_set(HE_EIO, "gguf writer: writing '%s' failed: %s", path, strerror(werr));
    }
    return 0;
}
