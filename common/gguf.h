/* gguf: a validating, mmap-based reader of GGUF v2/v3 model files.
 *
 * gguf_open() maps the file and walks the header, every metadata key/value and
 * every tensor descriptor once, checking each count, length, offset, size and
 * type against the file size before anything else touches it. After a
 * successful open, every pointer the accessors return lies inside the mapping
 * and every tensor's data range lies inside the file, so callers may read them
 * without further checks. Strings in GGUF are not NUL-terminated: accessors
 * return (pointer, length).
 *
 * Invariant: the handle owns the mapping; pointers it returns die with it.
 */
#ifndef HELIUM_GGUF_H
#define HELIUM_GGUF_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Metadata value types (GGUF spec numbering). */
typedef enum {
    GGUF_T_UINT8 = 0, GGUF_T_INT8 = 1, GGUF_T_UINT16 = 2, GGUF_T_INT16 = 3,
    GGUF_T_UINT32 = 4, GGUF_T_INT32 = 5, GGUF_T_FLOAT32 = 6, GGUF_T_BOOL = 7,
    GGUF_T_STRING = 8, GGUF_T_ARRAY = 9, GGUF_T_UINT64 = 10, GGUF_T_INT64 = 11,
    GGUF_T_FLOAT64 = 12,
} gguf_vtype;

/* Tensor element types (ggml numbering). The reader accepts these; any other
 * ggml type id (known or not) is reported as EUNSUPPORTED with its name.
 * Block layouts (bytes per block of QK elements) follow ggml exactly; see
 * worker/cpu/cpu_quant.h for the structs. Q8_1 and Q8_K are activation
 * formats (ggml never writes them to files, but the table knows them). */
typedef enum {
    GGML_T_F32 = 0,
    GGML_T_F16 = 1,
    GGML_T_Q4_0 = 2,    /* 32: f16 d, 16 nibble bytes         = 18 bytes */
    GGML_T_Q4_1 = 3,    /* 32: f16 d, f16 m, 16 nibble bytes  = 20 */
    GGML_T_Q5_0 = 6,    /* 32: f16 d, u32 high bits, 16 bytes = 22 */
    GGML_T_Q5_1 = 7,    /* 32: f16 d, f16 m, u32, 16 bytes    = 24 */
    GGML_T_Q8_0 = 8,    /* 32: f16 d, 32 int8                 = 34 */
    GGML_T_Q8_1 = 9,    /* 32: f16 d, f16 s, 32 int8          = 36 */
    GGML_T_Q2_K = 10,   /* 256                                = 84 */
    GGML_T_Q3_K = 11,   /* 256                                = 110 */
    GGML_T_Q4_K = 12,   /* 256                                = 144 */
    GGML_T_Q5_K = 13,   /* 256                                = 176 */
    GGML_T_Q6_K = 14,   /* 256                                = 210 */
    GGML_T_Q8_K = 15,   /* 256: f32 d, 256 int8, 16 int16     = 292 */
    GGML_T_IQ4_NL = 20, /* 32: f16 d, 16 nibble bytes (table) = 18 */
    GGML_T_BF16 = 30,
} ggml_type;

#define GGUF_MAX_DIMS 4
#define GGUF_DEFAULT_ALIGNMENT 32
#define QK8_0 32 /* elements per Q8_0 block: fp16 scale + 32 int8 = 34 bytes */
#define QK_K 256  /* elements per K-quant super-block */

typedef struct {
    const char *name;              /* NUL-terminated copy owned by the gguf handle */
    uint32_t n_dims;
    int64_t ne[GGUF_MAX_DIMS];     /* ne[0] is the innermost (row) dimension; unused dims are 1 */
    ggml_type type;
    const void *data;              /* inside the mapping, aligned to general.alignment */
    size_t nbytes;
} gguf_tensor;

typedef struct gguf gguf_t;

/* Opens and validates path. On error returns a negative herr code (EIO,
 * EFORMAT, ERANGE, EUNSUPPORTED) with he_msg() naming what is wrong. */
int gguf_open(const char *path, gguf_t **out);
void gguf_destroy(gguf_t **self_p);

uint32_t gguf_version(const gguf_t *g);
size_t gguf_file_size(const gguf_t *g);

/* ---- metadata. Lookups by exact key; return false when the key is missing or
 * of an incompatible type. Integer getters accept any integer type whose value
 * fits; gguf_get_f32 accepts FLOAT32 and FLOAT64. */
int64_t gguf_n_kv(const gguf_t *g);
const char *gguf_kv_key(const gguf_t *g, int64_t i); /* NUL-terminated */
int64_t gguf_find_key(const gguf_t *g, const char *key); /* -1 if absent */
gguf_vtype gguf_kv_type(const gguf_t *g, int64_t i);
bool gguf_get_u32(const gguf_t *g, const char *key, uint32_t *out);
bool gguf_get_i64(const gguf_t *g, const char *key, int64_t *out);
bool gguf_get_f32(const gguf_t *g, const char *key, float *out);
bool gguf_get_bool(const gguf_t *g, const char *key, bool *out);
bool gguf_get_str(const gguf_t *g, const char *key, const char **s, size_t *len);

/* Arrays: element type and count. For numeric arrays *data points at the packed
 * little-endian elements inside the mapping (may be unaligned: use memcpy). */
bool gguf_get_arr(const gguf_t *g, const char *key, gguf_vtype *elem_type, uint64_t *n,
                  const void **data);
/* String arrays: element i of a STRING array (i < n). false if out of range. */
bool gguf_get_arr_str(const gguf_t *g, const char *key, uint64_t i, const char **s, size_t *len);

/* ---- tensors */
int64_t gguf_n_tensors(const gguf_t *g);
const gguf_tensor *gguf_tensor_at(const gguf_t *g, int64_t i);
const gguf_tensor *gguf_find_tensor(const gguf_t *g, const char *name); /* NULL if absent */

/* Bytes of one row of ne0 elements of type t, or 0 if t is unknown or ne0 is
 * not a multiple of the type's block size. */
size_t ggml_row_size(ggml_type t, int64_t ne0);
/* Elements per block (1 for F32/F16/BF16) and bytes per block; 0 for a type
 * the table does not know. */
int64_t ggml_blck_size(ggml_type t);
size_t ggml_type_size(ggml_type t);
/* True for the types gguf_open() accepts in a tensor. */
bool ggml_type_supported(ggml_type t);
const char *ggml_type_name(ggml_type t);

/* ---- writer (used by helium-mkmodel and tests). Builds a file in memory order:
 * add keys, add tensors (data copied), then gguf_writer_write(). */
typedef struct gguf_writer gguf_writer_t;
gguf_writer_t *gguf_writer_new(void);
void gguf_writer_destroy(gguf_writer_t **self_p);
int gguf_writer_add_u32(gguf_writer_t *w, const char *key, uint32_t v);
int gguf_writer_add_i32(gguf_writer_t *w, const char *key, int32_t v);
int gguf_writer_add_f32(gguf_writer_t *w, const char *key, float v);
int gguf_writer_add_bool(gguf_writer_t *w, const char *key, bool v);
int gguf_writer_add_str(gguf_writer_t *w, const char *key, const char *v);
int gguf_writer_add_arr_str(gguf_writer_t *w, const char *key, const char *const *v, uint64_t n);
int gguf_writer_add_arr_i32(gguf_writer_t *w, const char *key, const int32_t *v, uint64_t n);
int gguf_writer_add_arr_f32(gguf_writer_t *w, const char *key, const float *v, uint64_t n);
/* data holds ggml_row_size(type, ne[0]) * ne[1] * ne[2] * ne[3] bytes. */
int gguf_writer_add_tensor(gguf_writer_t *w, const char *name, ggml_type type, uint32_t n_dims,
                           const int64_t *ne, const void *data);
int gguf_writer_write(gguf_writer_t *w, const char *path);

#endif
