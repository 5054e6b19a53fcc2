/* kvwire: element types of the KV page wire format, and conversions between them.
 *
 * A KV page on the wire (and in kv_export / kv_import, backend.h) has the
 * shape (n_layers, 2 [K then V], block_size, kv_dim), little-endian, in one
 * element type: F32 (the CPU backend's pool), F16 or BF16 (a CUDA backend's
 * pool, --kv-dtype). A worker that pulls pages of another type converts them
 * on import. Conversions: widening (f16 / bf16 -> f32) is exact; narrowing
 * rounds to nearest even (bf16 quiets NaNs), as cpu_quant.h does; f16 <-> bf16
 * goes through f32. Numbering is the wire's (KvPages.elem_type) and kernels/'s
 * (HK_KV_*): keep them equal.
 */
#ifndef HELIUM_KVWIRE_H
#define HELIUM_KVWIRE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef enum { KVW_F32 = 0, KVW_F16 = 1, KVW_BF16 = 2 } kvw_type;

bool kvw_valid(int t);
/* Bytes per element (4 or 2); 0 for an invalid type. */
size_t kvw_elem_bytes(int t);
/* "f32", "f16", "bf16"; "?" for an invalid type. */
const char *kvw_name(int t);
/* Parses "f32" / "f16" / "bf16" (also "float32", "float16", "bfloat16").
 * 0, or HE_EINVAL with he_msg(). */
int kvw_parse(const char *s, kvw_type *out);
/* Bytes of one page of n_elems elements of type t. */
size_t kvw_page_bytes(int t, size_t n_elems);

/* dst (n, type dt) = src (n, type st) converted. src and dst must not
 * overlap unless st == dt and src == dst. 0, or HE_EINVAL for a bad type. */
int kvw_convert(const void *src, int st, void *dst, int dt, size_t n);

#endif
