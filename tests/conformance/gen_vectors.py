#!/usr/bin/env python3
"""Regenerates Helium's llama.cpp conformance vectors (tests/conformance/vectors/).

Run through `make conformance` (tests/conformance/run.sh BUILD_DIR), with the
Python that has llama-cpp-python, numpy and gguf (/opt/helium-venv/bin/python):

    gen_vectors.py --bin BUILD/bin [--out tests/conformance/vectors]

What it writes (everything is deterministic for a given helium-mkmodel and
llama.cpp build):

  manifest.json   one entry per model: the helium-mkmodel arguments, the file's
                  sha256 and size, n_vocab, the token ids evaluated, the logits
                  file, its shape and the relative-L2 tolerance for its dtype.
  <name>.bin      float32 little-endian logits (n_tokens, n_vocab), row-major,
                  one row per position, computed by llama.cpp.
  tokenize.json   per tokenizer model: strings and the ids llama.cpp gives for
                  them with add_bos=False, special=False.

The reference settings: CPU only, logits for every position, F32 K and V cache,
flash attention off, 2 threads, the whole sequence in one llama_decode.
tests/cli/conformance.sh checks Helium against these files without llama.cpp.
"""
import argparse
import ctypes
import hashlib
import json
import os
import subprocess
import sys
import tempfile

import numpy as np
import llama_cpp as L

SEED = 42
PRESETS = {"tiny": 24, "small": 20}  # preset -> sequence length (tokens)
ARCHES = ("llama", "qwen2")
DTYPES = ("f32", "f16", "q8_0")
TOL = {"f32": 1e-4, "f16": 1e-3, "q8_0": 2e-2}  # max relative L2 error per position
TEXT = "The order left the depot on Tuesday; where is it now? Don't worry, I'll check."

# Tokenizer vectors: (name, extra mkmodel args).
TOK_MODELS = [
    ("small-llama-bpe", ["--preset", "small", "--arch", "llama", "--vocab-type", "bpe"]),
    ("small-qwen2-bpe", ["--preset", "small", "--arch", "qwen2", "--vocab-type", "bpe"]),
    ("small-llama-spm", ["--preset", "small", "--arch", "llama", "--vocab-type", "spm"]),
]
TOK_STRINGS = [
    "Hello world",
    "hello",
    " Hello",
    "  two leading spaces",
    "trailing space ",
    "multiple    spaces   between words",
    "tabs\tand\t\ttabs",
    "line one\nline two\n\nline four",
    "\n\n\n",
    "crlf\r\nline",
    " \t \n mixed whitespace \n\t ",
    "12345 678",
    "3.14159 and 2,718 and 1e-9",
    "0123456789012",
    "Hello, world! How are you? (fine) [ok] {yes}",
    "...!!!???---",
    "\"quoted\" and 'single' `back`",
    "don't I'll we're they've she's it'd you'RE I'M",
    "DON'T SHOUT",
    "café résumé naïve",
    "über Größe Straße",
    "東京",
    "東京は日本の首都です。",
    "Привет, мир",
    "مرحبا بالعالم",
    "emoji 😀 and 👍🏽 and 🇯🇵",
    "family: 👨‍👩‍👧",
    "mixed: Order #A-1234 shipped to 東京 on 2024-05-01 😀!",
    "<|im_start|>user not special<|im_end|>",
    "<s> and </s> as text",
    "a",
    " ",
    "x=y+z*2; if (a<=b) { return -1; }",
    "email: john.doe@example.com, url: https://example.com/path?q=1&r=2",
    "ÀÉÎÕÜ àéîõü ñ ç ß ø å",
    "zero\u200bwidth and nbsp\u00a0here",
    "   ",
    "1234567 and 1,000,000.50",
    "'s 'll 've at the start",
    "hello\n\n\nworld  \n  indented",
    "e\u0301 combining and \u3000ideographic space",
    "안녕하세요 세계",
    "नमस्ते दुनिया",
    "😀😀😀",
    "€100 or $5.99 (100%) ____ ----> ###",
    "supercalifragilisticexpialidociousness",
    "ALLCAPS and CamelCaseWords and snake_case_words",
]


def sha256_of(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def mkmodel(binDir, args, out):
    env = dict(os.environ)
    env.pop("HELIUM_CORPUS", None)
    subprocess.run([os.path.join(binDir, "helium-mkmodel")] + args + ["-o", out], check=True, env=env,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


@L.llama_log_callback
def _quiet_log(level, text, user_data):
    pass


class Ref:
    """One llama.cpp model + context set up for reference evaluation."""

    def __init__(self, path, n_ctx, n_batch):
        mp = L.llama_model_default_params()
        mp.n_gpu_layers = 0
        self.model = L.llama_model_load_from_file(path.encode(), mp)
        if not self.model:
            raise RuntimeError(f"llama.cpp cannot load {path}")
        self.vocab = L.llama_model_get_vocab(self.model)
        self.n_vocab = L.llama_vocab_n_tokens(self.vocab)
        cp = L.llama_context_default_params()
        cp.n_ctx = n_ctx
        cp.n_batch = n_batch
        cp.n_ubatch = n_batch
        cp.n_seq_max = 1
        cp.n_threads = 2
        cp.n_threads_batch = 2
        cp.type_k = 0  # GGML_TYPE_F32
        cp.type_v = 0
        cp.flash_attn_type = L.LLAMA_FLASH_ATTN_TYPE_DISABLED
        cp.offload_kqv = False
        cp.no_perf = True
        self.ctx = L.llama_init_from_model(self.model, cp)
        if not self.ctx:
            raise RuntimeError(f"llama.cpp cannot make a context for {path}")

    def bos(self):
        return L.llama_vocab_bos(self.vocab) if L.llama_vocab_get_add_bos(self.vocab) else -1

    def tokenize(self, text):
        b = text.encode()
        buf = (L.llama_token * (len(b) + 8))()
        n = L.llama_tokenize(self.vocab, b, len(b), buf, len(buf), False, False)
        if n < 0:
            raise RuntimeError("tokenize buffer too small")
        return list(buf[:n])

    def logits(self, ids):
        """(len(ids), n_vocab) float32 logits of every position, one decode."""
        n = len(ids)
        batch = L.llama_batch_init(n, 0, 1)
        try:
            for i, t in enumerate(ids):
                batch.token[i] = t
                batch.pos[i] = i
                batch.n_seq_id[i] = 1
                batch.seq_id[i][0] = 0
                batch.logits[i] = 1
            batch.n_tokens = n
            rc = L.llama_decode(self.ctx, batch)
            if rc != 0:
                raise RuntimeError(f"llama_decode returned {rc}")
            L.llama_synchronize(self.ctx)
            ptr = L.llama_get_logits(self.ctx)
            return np.ctypeslib.as_array(ptr, shape=(n, self.n_vocab)).astype(np.float32).copy()
        finally:
            L.llama_batch_free(batch)

    def close(self):
        L.llama_free(self.ctx)
        L.llama_model_free(self.model)


def sequence(ref, n, seed):
    """n token ids: BOS (if the model adds one), the tokens of TEXT, then seeded
    random ids over the whole vocabulary except the last 8 (specials)."""
    ids = []
    if ref.bos() >= 0:
        ids.append(ref.bos())
    ids += ref.tokenize(TEXT)[: n // 2]
    rng = np.random.default_rng(seed)
    while len(ids) < n:
        ids.append(int(rng.integers(0, ref.n_vocab - 8)))
    return ids[:n]


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bin", required=True, help="directory holding helium-mkmodel")
    ap.add_argument("--out", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "vectors"))
    a = ap.parse_args()
    os.makedirs(a.out, exist_ok=True)
    L.llama_log_set(_quiet_log, ctypes.c_void_p())
    L.llama_backend_init()

    models = []
    total = 0
    with tempfile.TemporaryDirectory(prefix="helium-conf-") as tmp:
        for preset, n in PRESETS.items():
            for arch in ARCHES:
                for dt in DTYPES:
                    name = f"{preset}-{arch}-{dt}"
                    args = ["--preset", preset, "--arch", arch, "--dtype", dt, "--seed", str(SEED)]
                    path = os.path.join(tmp, name + ".gguf")
                    mkmodel(a.bin, args, path)
                    ref = Ref(path, n_ctx=max(256, n), n_batch=max(32, n))
                    ids = sequence(ref, n, SEED)
                    lg = ref.logits(ids)
                    ref.close()
                    if not np.isfinite(lg).all():
                        raise RuntimeError(f"{name}: non-finite reference logits")
                    binname = name + ".bin"
                    lg.astype("<f4").tofile(os.path.join(a.out, binname))
                    total += lg.nbytes
                    models.append({
                        "name": name, "args": args, "sha256": sha256_of(path),
                        "size": os.path.getsize(path), "n_vocab": int(lg.shape[1]), "ids": ids,
                        "logits": binname, "shape": [int(lg.shape[0]), int(lg.shape[1])], "tol": TOL[dt],
                    })
                    print(f"{name}: {len(ids)} tokens x {lg.shape[1]} logits, std {lg.std():.2f}")

        toks = []
        for name, args in TOK_MODELS:
            args = args + ["--dtype", "q8_0", "--seed", str(SEED)]
            path = os.path.join(tmp, name + ".gguf")
            mkmodel(a.bin, args, path)
            mp = L.llama_model_default_params()
            mp.vocab_only = True
            model = L.llama_model_load_from_file(path.encode(), mp)
            vocab = L.llama_model_get_vocab(model)
            cases = []
            for s in TOK_STRINGS:
                b = s.encode()
                buf = (L.llama_token * (len(b) + 8))()
                k = L.llama_tokenize(vocab, b, len(b), buf, len(buf), False, False)
                if k < 0:
                    raise RuntimeError("tokenize buffer too small")
                cases.append({"text": s, "ids": list(buf[:k])})
            L.llama_model_free(model)
            toks.append({"name": name, "args": args, "sha256": sha256_of(path), "size": os.path.getsize(path),
                         "cases": cases})
            print(f"{name}: {len(cases)} strings tokenized")

    meta = {
        "comment": "Reference logits from llama.cpp (CPU, F32 KV cache, no flash attention, 2 threads, "
                   "all positions in one decode). Regenerate with `make conformance`.",
        "llama_cpp_python": L.__version__,
        "seed": SEED,
        "models": models,
    }
    with open(os.path.join(a.out, "manifest.json"), "w") as f:
        json.dump(meta, f, indent=1, ensure_ascii=False)
        f.write("\n")
    with open(os.path.join(a.out, "tokenize.json"), "w") as f:
        json.dump({"comment": "llama.cpp llama_tokenize(add_special=False, parse_special=False)",
                   "llama_cpp_python": L.__version__, "models": toks}, f, indent=1, ensure_ascii=False)
        f.write("\n")
    print(f"wrote {len(models)} logit vectors ({total / 1e6:.2f} MB) and {len(toks)} tokenizer sets to {a.out}")
    L.llama_backend_free()


if __name__ == "__main__":
    sys.exit(main())
