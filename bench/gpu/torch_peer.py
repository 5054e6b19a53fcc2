#!/usr/bin/env python3
"""torch_peer: the PyTorch eager peer for bench/gpu/decode.sh (never run yet).

Loads the same GGUF file Helium runs (F32 / F16 / BF16 / Q8_0 weights,
dequantized to the compute dtype on load; llama or qwen2 layout), then runs
a plain eager forward in PyTorch: batch-1 prefill of --prompt-tokens random
tokens, then --gen-tokens greedy decode steps with a contiguous KV cache,
timed with CUDA synchronization. Prints one JSON line like helium-worker
bench's, plus the device-to-device copy bandwidth measured by torch in the
same process. This is the "PyTorch eager" side of the comparison, written
for it: no fused kernels, no CUDA graphs, no torch.compile.
"""
import argparse
import json
import struct
import time

import numpy as np
import torch

GGUF_TYPES = {0: "u8", 1: "i8", 2: "u16", 3: "i16", 4: "u32", 5: "i32", 6: "f32", 7: "bool", 8: "str", 9: "arr",
              10: "u64", 11: "i64", 12: "f64"}
SCALAR = {0: "<B", 1: "<b", 2: "<H", 3: "<h", 4: "<I", 5: "<i", 6: "<f", 7: "<?", 10: "<Q", 11: "<q", 12: "<d"}


class Reader:
    def __init__(self, buf):
        self.b, self.o = buf, 0

    def take(self, fmt):
        v = struct.unpack_from(fmt, self.b, self.o)[0]
        self.o += struct.calcsize(fmt)
        return v

    def string(self):
        n = self.take("<Q")
        s = bytes(self.b[self.o:self.o + n]).decode("utf-8", "replace")
        self.o += n
        return s

    def value(self, t):
        if t == 8:
            return self.string()
        if t == 9:
            et, n = self.take("<I"), self.take("<Q")
            if et == 8:
                return [self.string() for _ in range(n)]
            size = struct.calcsize(SCALAR[et])
            self.o += size * n  # numeric arrays are not needed here
            return None
        return self.take(SCALAR[t])


def load_gguf(path):
    with open(path, "rb") as f:
        buf = memoryview(f.read())
    r = Reader(buf)
    assert bytes(buf[:4]) == b"GGUF", "not a GGUF file"
    r.o = 4
    r.take("<I")
    n_t, n_kv = r.take("<Q"), r.take("<Q")
    kv = {}
    for _ in range(n_kv):
        k = r.string()
        kv[k] = r.value(r.take("<I"))
    infos = []
    for _ in range(n_t):
        name = r.string()
        nd = r.take("<I")
        dims = [r.take("<Q") for _ in range(nd)]
        infos.append((name, dims, r.take("<I"), r.take("<Q")))
    align = kv.get("general.alignment", 32)
    base = (r.o + align - 1) // align * align
    tensors = {}
    for name, dims, typ, off in infos:
        n = int(np.prod(dims))
        p = base + off
        if typ == 0:
            a = np.frombuffer(buf, np.float32, n, p).astype(np.float32)
        elif typ == 1:
            a = np.frombuffer(buf, np.float16, n, p).astype(np.float32)
        elif typ == 30:
            a = (np.frombuffer(buf, np.uint16, n, p).astype(np.uint32) << 16).view(np.float32)
        elif typ == 8:
            blk = np.frombuffer(buf, np.uint8, n // 32 * 34, p).reshape(-1, 34)
            d = blk[:, :2].copy().view(np.float16).astype(np.float32)
            q = blk[:, 2:].copy().view(np.int8).astype(np.float32)
            a = (d * q).reshape(-1)
        else:
            raise SystemExit(f"torch_peer: tensor {name} has GGUF type {typ}, not handled here")
        tensors[name] = a.reshape(list(reversed(dims)))
    return kv, tensors


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", required=True)
    ap.add_argument("--prompt-tokens", type=int, default=128)
    ap.add_argument("--gen-tokens", type=int, default=128)
    ap.add_argument("--dtype", default="float16")
    a = ap.parse_args()
    kv, T = load_gguf(a.model)
    arch = kv["general.architecture"]
    g = lambda k, d=None: kv.get(f"{arch}.{k}", d)
    dim, L, H = g("embedding_length"), g("block_count"), g("attention.head_count")
    HK = g("attention.head_count_kv", H)
    hd, eps, base = dim // H, g("attention.layer_norm_rms_epsilon", 1e-5), g("rope.freq_base", 10000.0)
    neox = arch == "qwen2"
    dev, dt = "cuda", getattr(torch, a.dtype)
    W = {k: torch.tensor(v, device=dev, dtype=dt) for k, v in T.items()}
    out_w = W.get("output.weight", W["token_embd.weight"])
    n_ctx = a.prompt_tokens + a.gen_tokens + 1
    kc = torch.zeros(L, n_ctx, HK, hd, device=dev, dtype=dt)
    vc = torch.zeros_like(kc)
    inv = base ** (-torch.arange(0, hd, 2, device=dev, dtype=torch.float32) / hd)

    def rope(x, pos):  # x (T, heads, hd)
        ang = pos[:, None].float() * inv[None, :]
        c, s = ang.cos()[:, None, :].to(dt), ang.sin()[:, None, :].to(dt)
        if neox:
            x0, x1 = x[..., : hd // 2], x[..., hd // 2:]
            return torch.cat([x0 * c - x1 * s, x0 * s + x1 * c], -1)
        x0, x1 = x[..., 0::2], x[..., 1::2]
        return torch.stack([x0 * c - x1 * s, x0 * s + x1 * c], -1).flatten(-2)

    def rms(x, w):
        return (x.float() * torch.rsqrt(x.float().pow(2).mean(-1, keepdim=True) + eps)).to(dt) * w

    def forward(ids, p0):
        n = ids.shape[0]
        pos = torch.arange(p0, p0 + n, device=dev)
        x = W["token_embd.weight"][ids]
        for l in range(L):
            P = f"blk.{l}."
            h = rms(x, W[P + "attn_norm.weight"])
            q, k, v = h @ W[P + "attn_q.weight"].T, h @ W[P + "attn_k.weight"].T, h @ W[P + "attn_v.weight"].T
            if P + "attn_q.bias" in W:
                q, k, v = q + W[P + "attn_q.bias"], k + W[P + "attn_k.bias"], v + W[P + "attn_v.bias"]
            q, k = rope(q.view(n, H, hd), pos), rope(k.view(n, HK, hd), pos)
            kc[l, p0:p0 + n], vc[l, p0:p0 + n] = k, v.view(n, HK, hd)
            K = kc[l, : p0 + n].repeat_interleave(H // HK, 1).transpose(0, 1)
            V = vc[l, : p0 + n].repeat_interleave(H // HK, 1).transpose(0, 1)
            o = torch.nn.functional.scaled_dot_product_attention(q.transpose(0, 1), K, V, is_causal=(n > 1 and p0 == 0))
            x = x + o.transpose(0, 1).reshape(n, dim) @ W[P + "attn_output.weight"].T
            h = rms(x, W[P + "ffn_norm.weight"])
            x = x + (torch.nn.functional.silu(h @ W[P + "ffn_gate.weight"].T) * (h @ W[P + "ffn_up.weight"].T)) @ W[P + "ffn_down.weight"].T
        return rms(x[-1:], W["output_norm.weight"]) @ out_w.T

    torch.manual_seed(0)
    ids = torch.randint(10, out_w.shape[0] - 10, (a.prompt_tokens,), device=dev)
    with torch.no_grad():
        for rep in range(2):  # the first pass warms up
            tok = forward(ids, 0).argmax(-1)
            torch.cuda.synchronize()
            t0 = time.perf_counter()
            for i in range(a.gen_tokens):
                tok = forward(tok.view(1), a.prompt_tokens + i).argmax(-1)
            torch.cuda.synchronize()
            dt_s = time.perf_counter() - t0
        src = torch.empty(1 << 28, dtype=torch.float32, device=dev)
        dst = torch.empty_like(src)
        for _ in range(3):
            dst.copy_(src)
        torch.cuda.synchronize()
        t0 = time.perf_counter()
        for _ in range(10):
            dst.copy_(src)
        torch.cuda.synchronize()
        bw = 10 * 2 * src.numel() * 4 / (time.perf_counter() - t0)
    print(json.dumps({"peer": "pytorch-eager", "torch": torch.__version__, "dtype": a.dtype, "test": "decode",
                      "batch": 1, "tokens": a.gen_tokens, "seconds": dt_s, "tokens_per_second": a.gen_tokens / dt_s,
                      "copy_bandwidth_GBps": bw / 1e9}))


if __name__ == "__main__":
    main()
