#!/usr/bin/env python3
"""Regenerates the real-model conformance vectors (tests/conformance/real/).

Run with the llama.cpp venv (scripts/llama-venv.sh prints its python):

    gen_real.py [--out tests/conformance/real]

For each model below it fetches the file through scripts/fetch-model.sh
(SmolLM2-135M-Instruct Q4_1 as shipped, and llama.cpp's requantizations of it),
tokenizes one fixed ChatML conversation with llama.cpp (special tokens parsed),
evaluates all positions in one llama_decode (CPU, F32 KV cache, no flash
attention, 2 threads: the settings of gen_vectors.py) and stores, small enough
to commit:

  manifest.json  per model: fetch name, file sha256, n_vocab, the token ids,
                 the fixed vocabulary subset, the layout of <name>.bin, and
                 llama.cpp's own spread: per position the relative L2 change
                 of its logits when its KV cache is F16 instead of F32
                 ("noise"), and how often its argmax then stays the same;
                 check_real.py's tolerances are multiples of these
  <name>.bin     little-endian: float32 subset logits (n_pos, n_subset);
                 int32 top-K ids (n_pos, K) and float32 their logits (n_pos, K),
                 best first; float32 full logits (len(full_pos), n_vocab) at
                 full_pos.

tests/cli/conformance_real.sh checks Helium against these without llama.cpp.
"""
import argparse
import hashlib
import json
import os
import subprocess
import sys

import numpy as np

here = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, here)
from gen_vectors import L, Ref  # noqa: E402  (the same reference settings)

SRC = os.path.abspath(os.path.join(here, "..", ".."))
MODELS = ["smollm2-135m-instruct", "smollm2-135m-instruct-q4_k_m", "smollm2-135m-instruct-q5_k_m",
          "smollm2-135m-instruct-q6_k", "smollm2-135m-instruct-q4_0", "smollm2-135m-instruct-q8_0"]
CHAT = ("<|im_start|>system\nYou are a helpful assistant for a chain of grocery stores.<|im_end|>\n"
        "<|im_start|>user\nStore 12 sold 340 loaves of bread on Monday and 290 on Tuesday, while "
        "store 7 sold 410 and 380. Which store sells more bread, and by how much over the two "
        "days? Answer in one short paragraph.<|im_end|>\n<|im_start|>assistant\nStore 7 sells more "
        "bread. Over Monday and Tuesday it sold 790 loaves, against 630 for store 12, so store 7 "
        "sold 160 more loaves. The gap grew on Tuesday, when store 12 sold fifty fewer loaves than "
        "the day before.<|im_end|>\n")
N_SUBSET, TOPK, SEED = 256, 16, 15
# check_real.py's tolerances (why: README.md): Helium's per-position error
# against llama.cpp, median and max over positions, at most these multiples
# of llama.cpp's own F16-KV noise; the first position (no attention history
# for flips to build up in) within first_tol; argmax agreement at least
# llama.cpp's F16-KV agreement minus argmax_slack.
TOLERANCES = {"median_x": 1.5, "max_x": 1.5, "max_abs": 0.5, "first_tol": 0.05, "argmax_slack": 0.05}


def sha256_of(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def tokenize_special(ref, text):
    b = text.encode()
    buf = (L.llama_token * (len(b) + 8))()
    n = L.llama_tokenize(ref.vocab, b, len(b), buf, len(buf), False, True)  # parse_special
    if n < 0:
        raise RuntimeError("tokenize buffer too small")
    return list(buf[:n])


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default=os.path.join(here, "real"))
    args = ap.parse_args()
    os.makedirs(args.out, exist_ok=True)
    entries = []
    for name in MODELS:
        path = subprocess.check_output([os.path.join(SRC, "scripts", "fetch-model.sh"), name], text=True).strip()
        ref = Ref(path, n_ctx=256, n_batch=256)
        ids = tokenize_special(ref, CHAT)
        if ref.bos() >= 0:
            ids = [ref.bos()] + ids
        lg = ref.logits(ids)
        # the same with an F16 KV cache: a perturbation of about 1e-3 in K and
        # V, which quantized activations amplify (see README.md)
        L.llama_free(ref.ctx)
        cp = L.llama_context_default_params()
        cp.n_ctx, cp.n_batch, cp.n_ubatch, cp.n_seq_max = 256, 256, 256, 1
        cp.n_threads = cp.n_threads_batch = 2
        cp.type_k = cp.type_v = 1  # GGML_TYPE_F16
        cp.flash_attn_type = L.LLAMA_FLASH_ATTN_TYPE_DISABLED
        cp.offload_kqv = False
        ref.ctx = L.llama_init_from_model(ref.model, cp)
        lg16 = ref.logits(ids)
        ref.close()
        if not np.isfinite(lg).all():
            raise RuntimeError(f"{name}: non-finite reference logits")
        n_pos, n_vocab = lg.shape
        subset = sorted(np.random.default_rng(SEED).choice(n_vocab, N_SUBSET, replace=False).tolist())
        top = np.argsort(-lg, axis=1, kind="stable")[:, :TOPK].astype(np.int32)
        topv = np.take_along_axis(lg, top, axis=1).astype(np.float32)
        full_pos = [n_pos - 1]
        noise = []
        for p in range(n_pos):
            idx = sorted(set(subset) | set(top[p].tolist()))
            noise.append(float(np.linalg.norm(lg16[p, idx] - lg[p, idx]) / np.linalg.norm(lg[p, idx])))
        agree16 = float((lg16.argmax(1) == lg.argmax(1)).mean())
        binname = name + ".bin"
        with open(os.path.join(args.out, binname), "wb") as f:
            f.write(lg[:, subset].astype("<f4").tobytes())
            f.write(top.astype("<i4").tobytes())
            f.write(topv.astype("<f4").tobytes())
            f.write(lg[full_pos].astype("<f4").tobytes())
        entries.append({"name": name, "sha256": sha256_of(path), "n_vocab": n_vocab, "ids": ids,
                        "subset": subset, "topk": TOPK, "full_pos": full_pos, "file": binname,
                        "noise": [round(x, 5) for x in noise], "noise_argmax_agree": round(agree16, 4)})
        print(f"{name}: {n_pos} positions, argmax of the last {int(top[-1, 0])}, logit std {lg.std():.2f}, "
              f"F16-KV noise median {np.median(noise):.4f} max {max(noise):.3f}, argmax kept {agree16:.3f}")
    manifest = {
        "comment": "Reference logits of real models from llama.cpp (CPU, F32 KV cache, no flash attention, "
                   "2 threads, all positions in one decode). Regenerate with tests/conformance/gen_real.py "
                   "run by the llama.cpp venv (scripts/llama-venv.sh).",
        "llama_cpp_python": L.__version__,
        "models": entries,
        "defaults": TOLERANCES,
    }
    with open(os.path.join(args.out, "manifest.json"), "w") as f:
        json.dump(manifest, f, indent=1)


if __name__ == "__main__":
    main()
