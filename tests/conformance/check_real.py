#!/usr/bin/env python3
"""Checks Helium against llama.cpp's logits on real models (tests/conformance/real/).

Standard library only. Called by tests/cli/conformance_real.sh:

    check_real.py --bin BUILD/bin [--vectors DIR] [--threads N] [--models a,b]

For every model in manifest.json: fetches the file with scripts/fetch-model.sh
(cached; a failure to fetch is a failure, with the reason), requires its
sha256 to equal the manifest's, runs `helium-worker eval` on the manifest's
token ids and compares every position with llama.cpp's:

  err    relative L2 error ||ours - ref|| / ||ref|| over the fixed vocabulary
         subset plus llama.cpp's top-K ids of that position (and over the
         whole vocabulary at the full_pos positions). Quantized activations
         make these models chaotic (README.md), so err is judged against
         llama.cpp's own spread, "noise" (its change with an F16 KV cache):
         median(err) <= median_x * median(noise), max(err) <= max_x *
         max(noise) and <= max_abs, and err at position 0 <= first_tol;
  argmax ours equals llama.cpp's at a share of positions at least llama.cpp's
         own F16-KV share minus argmax_slack;
  levels Helium's logits for the first LEVEL_TOKENS positions are the same
         bytes with HELIUM_CPU_LEVEL=scalar, avx2 and avx512 (capped at what
         the CPU has): the kernels of every level compute the same bits; and
         the same bytes as those rows of the whole sequence's batch.

Prints one line per model (error median and max against their limits,
argmax agreement, CPU levels) and every failure. Exit 0 only if all pass.
"""
import argparse
import array
import hashlib
import json
import math
import os
import subprocess
import sys
import tempfile

LEVEL_TOKENS = 12

def sha256_of(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def read(f, code, n):
    a = array.array(code)
    a.frombytes(f.read(n * a.itemsize))
    if len(a) != n:
        raise ValueError("vector file truncated")
    if sys.byteorder != "little":
        a.byteswap()
    return a


def median(xs):
    s = sorted(xs)
    n = len(s)
    return s[n // 2] if n % 2 else 0.5 * (s[n // 2 - 1] + s[n // 2])


def rel_l2(ours, ref):
    num = sum((o - r) ** 2 for o, r in zip(ours, ref))
    den = sum(r * r for r in ref)
    return math.sqrt(num / den) if den > 0 else math.sqrt(num)


def check_model(m, args, defaults, tmp):
    name = m["name"]
    fetch = os.path.join(args.src, "scripts", "fetch-model.sh")
    r = subprocess.run([fetch, name], capture_output=True, text=True)
    if r.returncode != 0:
        return [f"{name}: cannot fetch the model (scripts/fetch-model.sh {name} exit {r.returncode}): "
                f"{r.stderr.strip().splitlines()[-1] if r.stderr.strip() else 'no message'}"]
    path = r.stdout.strip()
    if sha256_of(path) != m["sha256"]:
        return [f"{name}: {path} is not the file the vectors were made from (sha256 differs): "
                "regenerate with tests/conformance/gen_real.py"]
    ids, V, K = m["ids"], m["n_vocab"], m["topk"]
    P, S, full_pos = len(ids), m["subset"], m["full_pos"]
    tol = dict(defaults, **m.get("tol", {}))
    with open(os.path.join(args.vectors, m["file"]), "rb") as f:
        sub = read(f, "f", P * len(S))
        top = read(f, "i", P * K)
        topv = read(f, "f", P * K)
        full = read(f, "f", len(full_pos) * V)
    out = os.path.join(tmp, name + ".f32")
    cmd = [os.path.join(args.bin, "helium-worker"), "eval", "--model", path, "--ids", ",".join(map(str, ids)),
           "--logits-out", out, "--threads", str(args.threads)]
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode != 0:
        return [f"{name}: helium-worker eval exit {r.returncode}: {r.stderr.strip()}"]
    with open(out, "rb") as f:
        h = read(f, "f", P * V)
    os.unlink(out)
    fails, errs, agree = [], [], 0
    for p in range(P):
        row = h[p * V:(p + 1) * V]
        idx = list(S) + [i for i in top[p * K:(p + 1) * K] if i not in S]
        refv = {S[i]: sub[p * len(S) + i] for i in range(len(S))}
        for k in range(K):
            refv[top[p * K + k]] = topv[p * K + k]
        e = rel_l2([row[i] for i in idx], [refv[i] for i in idx])
        if p in full_pos:
            j = full_pos.index(p)
            e = max(e, rel_l2(row, full[j * V:(j + 1) * V]))
        errs.append(e if math.isfinite(e) else float("inf"))
        best = max(range(V), key=row.__getitem__)
        agree += best == top[p * K]
    noise = m["noise"]
    med, mx, nmed, nmx = median(errs), max(errs), median(noise), max(noise)
    lim_med, lim_max = tol["median_x"] * nmed, min(tol["max_x"] * nmx, tol["max_abs"])
    share, lim_share = agree / P, m["noise_argmax_agree"] - tol["argmax_slack"]
    if not med <= lim_med:
        fails.append(f"{name}: median relative L2 error {med:.4f} > {lim_med:.4f} ({tol['median_x']}x llama.cpp's own)")
    if not mx <= lim_max:
        fails.append(f"{name}: worst relative L2 error {mx:.4f} (position {errs.index(mx)}) > {lim_max:.4f}")
    if not errs[0] <= tol["first_tol"]:
        fails.append(f"{name}: position 0 relative L2 error {errs[0]:.3g} > {tol['first_tol']}")
    if share < lim_share:
        fails.append(f"{name}: argmax equal at {agree}/{P} positions, below {lim_share:.3f}")
    # the CPU levels (scalar, AVX2, AVX-512 VNNI, as many as this CPU has) give
    # the same bits on the first LEVEL_TOKENS positions
    lv = {}
    for level in ("scalar", "avx2", "avx512"):
        env = dict(os.environ, HELIUM_CPU_LEVEL=level)
        cmd = [os.path.join(args.bin, "helium-worker"), "eval", "--model", path, "--ids",
               ",".join(map(str, ids[:LEVEL_TOKENS])), "--logits-out", out, "--threads", str(args.threads)]
        r = subprocess.run(cmd, capture_output=True, text=True, env=env)
        if r.returncode != 0:
            fails.append(f"{name}: eval at level {level}: exit {r.returncode}: {r.stderr.strip()}")
            continue
        lv[level] = sha256_of(out)
        os.unlink(out)
    if len(set(lv.values())) > 1:
        fails.append(f"{name}: logits differ between CPU levels: {lv}")
    # and a 12-token batch gives the bytes of the same rows of the 152-token one
    head = hashlib.sha256(h[:LEVEL_TOKENS * V].tobytes()).hexdigest()
    if lv and head not in lv.values():
        fails.append(f"{name}: the first {LEVEL_TOKENS} positions differ between a {LEVEL_TOKENS}-token and a "
                     f"{P}-token batch (batch invariance)")
    print(f"{'ok  ' if not fails else 'FAIL'} {name}: {P} positions, relative L2 median {med:.4f} (limit "
          f"{lim_med:.4f}), max {mx:.3f} (limit {lim_max:.3f}), position 0 {errs[0]:.2g}; argmax equal at "
          f"{agree}/{P} (limit {lim_share:.3f}); llama.cpp F16-KV noise median {nmed:.4f} max {nmx:.3f}; "
          f"CPU levels {'identical' if len(set(lv.values())) == 1 else 'DIFFER'}")
    return fails


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bin", required=True)
    ap.add_argument("--vectors", default=os.path.join(here, "real"))
    ap.add_argument("--src", default=os.path.abspath(os.path.join(here, "..", "..")))
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--models", default="", help="comma-separated subset of the manifest's models")
    args = ap.parse_args()
    with open(os.path.join(args.vectors, "manifest.json")) as f:
        man = json.load(f)
    want = set(filter(None, args.models.split(",")))
    fails = []
    with tempfile.TemporaryDirectory(prefix="helium-conf-") as tmp:
        for m in man["models"]:
            if want and m["name"] not in want:
                continue
            fails += check_model(m, args, man["defaults"], tmp)
    for f in fails[:50]:
        print("FAIL: " + f)
    if len(fails) > 50:
        print(f"... and {len(fails) - 50} more")
    return 1 if fails else 0


if __name__ == "__main__":
    sys.exit(main())
