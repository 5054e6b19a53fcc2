#!/usr/bin/env python3
"""Checks Helium against the committed llama.cpp vectors (tests/conformance/vectors/).

Standard library only (CI has python3 but no numpy or llama.cpp). Called by
tests/cli/conformance.sh:

    check.py --bin BUILD/bin [--vectors DIR] [--threads N]

For every model in manifest.json it regenerates the GGUF with helium-mkmodel,
requires its sha256 to equal the manifest's (else the vectors are stale: the
generator changed), runs `helium-worker eval` on the manifest's ids and
compares each position's logits with llama.cpp's: relative L2 error
||ours - ref|| / ||ref|| must be <= the manifest's tolerance (1e-4 F32, 1e-3
F16, 2e-2 Q8_0). For every string in tokenize.json it runs
`helium-worker tokenize --no-bos` and requires the exact ids.

Prints one line per model with the worst position's error and the margin
(tolerance / error), and every mismatch. Exit status 0 only if all pass.
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

STALE = "model generator output changed: run make conformance to refresh vectors"


def sha256_of(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def read_f32(path):
    a = array.array("f")
    with open(path, "rb") as f:
        a.frombytes(f.read())
    if sys.byteorder != "little":
        a.byteswap()
    return a


class Checker:
    def __init__(self, bindir, vecdir, threads, tmp):
        self.mk = os.path.join(bindir, "helium-mkmodel")
        self.worker = os.path.join(bindir, "helium-worker")
        self.vec = vecdir
        self.threads = threads
        self.tmp = tmp
        self.failures = 0
        self.env = dict(os.environ)
        self.env.pop("HELIUM_CORPUS", None)

    def fail(self, msg):
        self.failures += 1
        print("FAIL: " + msg, flush=True)

    def model(self, entry):
        """Regenerates entry's model; returns its path, or None if it is missing or stale."""
        path = os.path.join(self.tmp, entry["name"] + ".gguf")
        if not os.path.exists(path):
            r = subprocess.run([self.mk] + entry["args"] + ["-o", path], env=self.env, capture_output=True, text=True)
            if r.returncode != 0:
                self.fail(f"{entry['name']}: helium-mkmodel exit {r.returncode}: {r.stderr.strip()}")
                return None
        got = sha256_of(path)
        if got != entry["sha256"] or os.path.getsize(path) != entry["size"]:
            self.fail(f"{entry['name']}: sha256 {got[:16]}.. size {os.path.getsize(path)}, manifest "
                      f"{entry['sha256'][:16]}.. size {entry['size']}: {STALE}")
            return None
        return path

    def logits(self, entry):
        name = entry["name"]
        path = self.model(entry)
        if not path:
            return
        n, V = entry["shape"]
        ids = entry["ids"]
        if len(ids) != n:
            self.fail(f"{name}: manifest has {len(ids)} ids for shape {entry['shape']}")
            return
        ref = read_f32(os.path.join(self.vec, entry["logits"]))
        if len(ref) != n * V:
            self.fail(f"{name}: {entry['logits']} holds {len(ref)} floats, want {n * V}")
            return
        out = os.path.join(self.tmp, name + ".logits")
        cmd = [self.worker, "eval", "--model", path, "--ids", ",".join(map(str, ids)), "--logits-out", out,
               "--threads", str(self.threads)]
        r = subprocess.run(cmd, capture_output=True, text=True)
        if r.returncode != 0:
            self.fail(f"{name}: helium-worker eval exit {r.returncode}: {r.stderr.strip()}")
            return
        ours = read_f32(out)
        os.unlink(out)
        if len(ours) != n * V:
            self.fail(f"{name}: helium-worker wrote {len(ours)} floats, want {n} x {V}")
            return
        tol = entry["tol"]
        worst, worst_pos, bad = 0.0, 0, []
        for p in range(n):
            num = den = 0.0
            for v in range(p * V, (p + 1) * V):
                d = ours[v] - ref[v]
                num += d * d
                den += ref[v] * ref[v]
            err = math.sqrt(num / den) if den > 0 else math.sqrt(num)
            if not math.isfinite(err):
                err = math.inf
            if err > worst:
                worst, worst_pos = err, p
            if not err <= tol:
                bad.append(p)
        margin = tol / worst if worst > 0 else math.inf
        status = "ok  " if not bad else "FAIL"
        print(f"{status} {name:18s} {n:2d} x {V:4d}  max rel L2 {worst:.3e} (pos {worst_pos:2d})  "
              f"tol {tol:.0e}  margin {margin:7.1f}x", flush=True)
        if bad:
            self.failures += 1
            print(f"     positions over tolerance: {bad}", flush=True)

    def tokenize(self, entry):
        name = entry["name"]
        path = self.model(entry)
        if not path:
            return
        nbad = 0
        for case in entry["cases"]:
            text, want = case["text"], case["ids"]
            r = subprocess.run([self.worker, "tokenize", "--model", path, "--no-bos", "--text=" + text],
                               capture_output=True)
            if r.returncode != 0:
                nbad += 1
                self.fail(f"{name}: tokenize {text!r}: exit {r.returncode}: "
                          f"{r.stderr.decode(errors='replace').strip()}")
                continue
            s = r.stdout.decode().strip()
            try:
                got = [int(x) for x in s.split(",")] if s else []
            except ValueError:
                got = None
            if got != want:
                nbad += 1
                i = 0
                while got and i < min(len(got), len(want)) and got[i] == want[i]:
                    i += 1
                self.fail(f"{name}: tokenize {text!r}: first difference at index {i}\n"
                          f"       helium    {s}\n       llama.cpp {','.join(map(str, want))}")
        n = len(entry["cases"])
        print(f"{'ok  ' if not nbad else 'FAIL'} {name:18s} tokenize: {n - nbad}/{n} strings exact", flush=True)


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bin", required=True, help="directory holding helium-mkmodel and helium-worker")
    ap.add_argument("--vectors", default=os.path.join(here, "vectors"))
    ap.add_argument("--threads", type=int, default=2)
    a = ap.parse_args()
    with open(os.path.join(a.vectors, "manifest.json"), encoding="utf-8") as f:
        manifest = json.load(f)
    with open(os.path.join(a.vectors, "tokenize.json"), encoding="utf-8") as f:
        tokv = json.load(f)
    with tempfile.TemporaryDirectory(prefix="helium-conformance-") as tmp:
        c = Checker(a.bin, a.vectors, a.threads, tmp)
        print(f"logits vs llama.cpp (llama-cpp-python {manifest.get('llama_cpp_python', '?')}), "
              f"relative L2 error per position:")
        for entry in manifest["models"]:
            c.logits(entry)
            gguf = os.path.join(tmp, entry["name"] + ".gguf")
            if os.path.exists(gguf):
                os.unlink(gguf)
        for entry in tokv["models"]:
            c.tokenize(entry)
    n = len(manifest["models"]) + len(tokv["models"])
    print(f"conformance: {n} models, {c.failures} failure(s)")
    return 1 if c.failures else 0


if __name__ == "__main__":
    sys.exit(main())
