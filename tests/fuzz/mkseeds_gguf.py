#!/usr/bin/env python3
"""Writes the GGUF seed corpus of fuzz_gguf (tests/fuzz/corpus/gguf/; the
files have no .gguf suffix, which .gitignore keeps out of the repo).

Seeds are small whole files: every metadata value type, arrays, tensors of
each supported type (F32, F16, Q8_0, BF16) with alignment padding, a v2
header, and the tokenizer metadata (vocab, merges or scores, token types,
special ids) of the tiny BPE and SPM models helium-mkmodel generates, with
their tensors left out. Usage: mkseeds_gguf.py TINY_BPE.gguf TINY_SPM.gguf OUTDIR
"""
import struct
import sys

T_U8, T_I8, T_U16, T_I16, T_U32, T_I32, T_F32, T_BOOL, T_STR, T_ARR, T_U64, T_I64, T_F64 = range(13)
SCALAR = {T_U8: "<B", T_I8: "<b", T_U16: "<H", T_I16: "<h", T_U32: "<I", T_I32: "<i", T_F32: "<f",
          T_BOOL: "<?", T_U64: "<Q", T_I64: "<q", T_F64: "<d"}


def read_kvs(path):
    """The metadata of a GGUF v2/v3 file as [(key, type, value)]."""
    b = open(path, "rb").read()
    off = 4

    def take(fmt):
        nonlocal off
        v = struct.unpack_from(fmt, b, off)[0]
        off += struct.calcsize(fmt)
        return v

    def string():
        nonlocal off
        n = take("<Q")
        s = b[off:off + n]
        off += n
        return s

    def value(t):
        if t == T_STR:
            return string()
        if t == T_ARR:
            et, n = take("<I"), take("<Q")
            return (et, [value(et) for _ in range(n)])
        return take(SCALAR[t])

    take("<I")  # version
    take("<Q")  # n_tensors
    n_kv = take("<Q")
    kvs = []
    for _ in range(n_kv):
        k = string()
        t = take("<I")
        kvs.append((k, t, value(t)))
    return kvs


def enc_value(t, v):
    if t == T_STR:
        return struct.pack("<Q", len(v)) + v
    if t == T_ARR:
        et, items = v
        return struct.pack("<IQ", et, len(items)) + b"".join(enc_value(et, x) for x in items)
    return struct.pack(SCALAR[t], v)


def write(path, kvs, tensors=(), version=3, align=32):
    """tensors: [(name, ggml_type, dims, data bytes)]."""
    out = b"GGUF" + struct.pack("<IQQ", version, len(tensors), len(kvs))
    for k, t, v in kvs:
        out += struct.pack("<Q", len(k)) + k + struct.pack("<I", t) + enc_value(t, v)
    off = 0
    blobs = b""
    for name, gt, dims, data in tensors:
        out += struct.pack("<Q", len(name)) + name + struct.pack("<I", len(dims))
        out += b"".join(struct.pack("<Q", d) for d in dims) + struct.pack("<IQ", gt, off)
        pad = (-len(data)) % align
        blobs += data + b"\0" * pad
        off += len(data) + pad
    out += b"\0" * ((-len(out)) % align) + blobs
    open(path, "wb").write(out)


def main():
    bpe, spm, outdir = sys.argv[1:4]
    every_type = [
        (b"general.architecture", T_STR, b"llama"),
        (b"general.alignment", T_U32, 32),
        (b"t.u8", T_U8, 7), (b"t.i8", T_I8, -7), (b"t.u16", T_U16, 700), (b"t.i16", T_I16, -700),
        (b"t.i32", T_I32, -70000), (b"t.f32", T_F32, 1.5), (b"t.bool", T_BOOL, True),
        (b"t.u64", T_U64, 1 << 40), (b"t.i64", T_I64, -(1 << 40)), (b"t.f64", T_F64, 2.25),
        (b"t.arr_i32", T_ARR, (T_I32, [1, 2, 3])),
        (b"t.arr_str", T_ARR, (T_STR, [b"a", b"bc", b""])),
        (b"t.arr_arr", T_ARR, (T_ARR, [(T_U8, [1, 2])])),
    ]
    f16 = struct.pack("<8e", *[0.5 * i for i in range(8)])
    q8 = struct.pack("<e", 0.25) + bytes(range(32))
    tensors = [
        (b"a.f32", 0, [4, 2], struct.pack("<8f", *range(8))),
        (b"b.f16", 1, [8], f16),
        (b"c.q8_0", 8, [32], q8),
        (b"d.bf16", 30, [2, 1, 1, 2], struct.pack("<4H", 0x3f80, 0x4000, 0x4040, 0x4080)),
    ]
    write(f"{outdir}/every-type-v3", every_type, tensors)
    write(f"{outdir}/every-type-v2", every_type, tensors[:2], version=2)
    write(f"{outdir}/empty", [])
    for name, src in (("tok-bpe", bpe), ("tok-spm", spm)):
        kvs = [kv for kv in read_kvs(src) if kv[0].startswith(b"tokenizer.") or kv[0] == b"general.architecture"]
        write(f"{outdir}/{name}", kvs)


if __name__ == "__main__":
    main()
