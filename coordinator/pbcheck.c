/* pbcheck: see pbcheck.h. Wire types: 0 varint, 1 fixed64, 2 length-
 * delimited, 5 fixed32; groups (3, 4) are rejected (proto3 has none). */
#include "pbcheck.h"

static bool varint(const uint8_t *p, size_t len, size_t *off, uint64_t *v) {
    uint64_t x = 0;
    for (int shift = 0; shift < 64; shift += 7) {
        if (*off >= len) return false;
        uint8_t b = p[(*off)++];
        x |= (uint64_t)(b & 0x7f) << shift;
        if (!(b & 0x80)) {
            *v = x;
            return true;
        }
    }
    return false;
}

static bool walk(const ProtobufCMessageDescriptor *d, const uint8_t *p, size_t len, int depth) {
    if (depth < 0) return false;
    size_t off = 0;
    while (off < len) {
        uint64_t key, v;
        if (!varint(p, len, &off, &key)) return false;
        uint32_t field = (uint32_t)(key >> 3);
        /* field numbers are 1 .. 2^29-1; protobuf-c accepts 0 when the key is
         * an overlong varint (found by tests/fuzz/fuzz_wire) */
        if (field == 0 || key >> 32) return false;
        switch (key & 7) {
        case 0:
            if (!varint(p, len, &off, &v)) return false;
            break;
        case 1:
            if (len - off < 8) return false;
            off += 8;
            break;
        case 5:
            if (len - off < 4) return false;
            off += 4;
            break;
        case 2: {
            if (!varint(p, len, &off, &v) || v > len - off) return false;
            const ProtobufCFieldDescriptor *f = d ? protobuf_c_message_descriptor_get_field(d, field) : NULL;
            if (f && f->type == PROTOBUF_C_TYPE_MESSAGE &&
                !walk((const ProtobufCMessageDescriptor *)f->descriptor, p + off, (size_t)v, depth - 1))
                return false;
            off += (size_t)v;
            break;
        }
        default: return false;
        }
    }
    return true;
}

bool pb_depth_ok(const ProtobufCMessageDescriptor *desc, const uint8_t *data, size_t len, int max_depth) {
    if (!data && len) return false;
    return walk(desc, data, len, max_depth);
}
