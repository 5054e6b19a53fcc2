#!/usr/bin/env python3
"""Engine benchmark: Helium (helium-worker bench) against llama.cpp on the same
GGUF files, same thread count, in the same run. Called by bench/engine.

For each model (small and medium presets, F32 and Q8_0, llama arch, seed 42):
  prefill   one forward over a 512-token prompt (llama.cpp: one llama_decode
            with n_batch = n_ubatch = 512, logits of the last token only)
  decode/1  one sequence advancing one token per forward, 64 forwards
  decode/8  8 sequences (32-token prompts) each advancing one token per forward
            (llama.cpp: a llama_batch of 8 tokens with seq ids 0..7, n_seq_max 8)
Timings are the best of --reps after one warm-up (Helium's own bench does the
same), and only the forward calls are timed. llama.cpp runs on the CPU with an
F32 KV cache and flash attention off unless told otherwise (the configuration
tests/conformance checks against).

With --models NAME,... it runs real models instead, fetched by
scripts/fetch-model.sh (e.g. smollm2-135m-instruct, its requantizations such
as smollm2-135m-instruct-q4_k_m, gemma3-270m); bench/engine-real does that.

Writes OUT/<name>.json (every figure plus the machine and settings; name is
engine, or --name) and OUT/<name>.md (a table with helium/llama.cpp ratios and
the batch-8/batch-1 decode ratio), and prints the table. Targets: >= 0.8x
llama.cpp at batch 1 for prefill and decode on generated models (1.0x on real
ones, --target); batch-8 decode >= 4x batch-1.
"""
import argparse
import ctypes
import datetime
import json
import os
import platform
import subprocess
import sys
import tempfile
import time

import numpy as np
import llama_cpp as L

SEED = 42
TARGET_RATIO = 0.8
TARGET_B8 = 4.0


@L.llama_log_callback
def _quiet_log(level, text, user_data):
    pass


def machine():
    cpu = platform.processor()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return {"cpu": cpu, "nproc": os.cpu_count(), "loadavg_start": list(os.getloadavg()),
            "python": platform.python_version(), "llama_cpp_python": L.__version__,
            "llama_cpp_system_info": L.llama_print_system_info().decode().strip()}


def rand_ids(n, vocab, seed):
    rng = np.random.default_rng(seed)
    return [int(x) for x in rng.integers(0, vocab - 8, n)]


class LlamaBench:
    """One llama.cpp model; a context per test shape (prefill: one sequence;
    decode: n_seq sequences with a per-sequence (non-unified) KV cache, which
    llama.cpp recommends for sequences without a shared prefix)."""

    def __init__(self, path, threads, kv_type, flash):
        mp = L.llama_model_default_params()
        mp.n_gpu_layers = 0
        self.model = L.llama_model_load_from_file(path.encode(), mp)
        if not self.model:
            raise RuntimeError(f"llama.cpp cannot load {path}")
        self.vocab = L.llama_vocab_n_tokens(L.llama_model_get_vocab(self.model))
        self.threads, self.kv_type, self.flash = threads, kv_type, flash
        self.ctx = None
        self.batch = L.llama_batch_init(512, 0, 1)

    def _context(self, n_seq, n_ctx):
        if self.ctx:
            L.llama_free(self.ctx)
        cp = L.llama_context_default_params()
        cp.n_ctx = n_ctx
        cp.n_batch = 512
        cp.n_ubatch = 512
        cp.n_seq_max = n_seq
        cp.kv_unified = False
        cp.n_threads = self.threads
        cp.n_threads_batch = self.threads
        cp.type_k = self.kv_type
        cp.type_v = self.kv_type
        cp.flash_attn_type = self.flash
        cp.offload_kqv = False
        cp.no_perf = True
        self.ctx = L.llama_init_from_model(self.model, cp)
        if not self.ctx:
            raise RuntimeError("llama.cpp cannot make a context")
        self.mem = L.llama_get_memory(self.ctx)

    def close(self):
        L.llama_batch_free(self.batch)
        if self.ctx:
            L.llama_free(self.ctx)
        L.llama_model_free(self.model)

    def _decode(self, toks):
        """toks: list of (token, pos, seq, want_logits). Returns seconds."""
        b = self.batch
        for i, (t, p, s, lg) in enumerate(toks):
            b.token[i] = t
            b.pos[i] = p
            b.n_seq_id[i] = 1
            b.seq_id[i][0] = s
            b.logits[i] = 1 if lg else 0
        b.n_tokens = len(toks)
        t0 = time.perf_counter()
        rc = L.llama_decode(self.ctx, b)
        L.llama_synchronize(self.ctx)
        dt = time.perf_counter() - t0
        if rc != 0:
            raise RuntimeError(f"llama_decode returned {rc}")
        return dt

    def prefill(self, n, reps):
        self._context(1, 1024)
        ids = rand_ids(n, self.vocab, 1)
        best = float("inf")
        for r in range(reps + 1):
            L.llama_memory_clear(self.mem, True)
            t = self._decode([(ids[i], i, 0, i == n - 1) for i in range(n)])
            if r > 0:
                best = min(best, t)
        return best

    def decode(self, B, ng, reps, prompt=32):
        self._context(B, 256 * B)
        best = float("inf")
        for r in range(reps + 1):
            L.llama_memory_clear(self.mem, True)
            toks = []
            for s in range(B):
                ids = rand_ids(prompt, self.vocab, 100 + s + 1000 * r)
                toks += [(ids[i], i, s, i == prompt - 1) for i in range(prompt)]
            self._decode(toks)
            nxt = rand_ids(ng * B, self.vocab, 7 + r)
            t = 0.0
            for k in range(ng):
                t += self._decode([(nxt[k * B + s], prompt + k, s, True) for s in range(B)])
            if r > 0:
                best = min(best, t)
        return best


def helium_bench(worker, path, threads, np_, ng, batches, reps):
    cmd = [worker, "bench", "--model", path, "--prompt-tokens", str(np_), "--gen-tokens", str(ng),
           "--batch", ",".join(map(str, batches)), "--threads", str(threads), "--reps", str(reps)]
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)}: exit {r.returncode}: {r.stderr.strip()}")
    out = {}
    for line in r.stdout.splitlines():
        line = line.strip()
        if not line.startswith("{"):
            continue
        j = json.loads(line)
        key = "prefill" if j["test"] == "prefill" else f"decode_b{j['batch']}"
        out[key] = j["tokens_per_second"]
    return out


def best_of(acc, new):
    """Keeps the highest tokens/s per test in acc."""
    for k, v in new.items():
        acc[k] = max(acc.get(k, 0.0), v)


def fmt(x, nd=1):
    return "-" if x is None else f"{x:.{nd}f}"


def main():
    global TARGET_RATIO
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bin", required=True, help="directory holding helium-worker and helium-mkmodel")
    ap.add_argument("--out", required=True, help="directory for engine.json and engine.md")
    ap.add_argument("--presets", default="small,medium")
    ap.add_argument("--dtypes", default="f32,q8_0")
    ap.add_argument("--arch", default="llama")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--prompt-tokens", type=int, default=512)
    ap.add_argument("--gen-tokens", type=int, default=64)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--rounds", type=int, default=1,
                    help="measure both engines this many times, alternating, and keep each one's best "
                         "(helps on a busy machine)")
    ap.add_argument("--models", default="", help="real models by scripts/fetch-model.sh name, instead of presets")
    ap.add_argument("--name", default="engine", help="result file name (OUT/NAME.json, OUT/NAME.md)")
    ap.add_argument("--target", type=float, default=0.8, help="helium/llama.cpp target at batch 1")
    ap.add_argument("--llama-kv", choices=("f32", "f16"), default="f32")
    ap.add_argument("--llama-flash-attn", choices=("off", "on", "auto"), default="off")
    a = ap.parse_args()
    if a.prompt_tokens > 512:
        ap.error("--prompt-tokens must be <= 512 (one llama.cpp ubatch)")
    L.llama_log_set(_quiet_log, ctypes.c_void_p())
    L.llama_backend_init()
    kv = {"f32": 0, "f16": 1}[a.llama_kv]
    fa = {"off": L.LLAMA_FLASH_ATTN_TYPE_DISABLED, "on": L.LLAMA_FLASH_ATTN_TYPE_ENABLED,
          "auto": L.LLAMA_FLASH_ATTN_TYPE_AUTO}[a.llama_flash_attn]
    batches = (1, 8)
    info = machine()
    rows = []
    started = time.time()
    TARGET_RATIO = a.target
    src = os.path.abspath(os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

    def models(tmp):
        """(name, path, preset, dtype, generated) for each model to run."""
        if a.models:
            for m in a.models.split(","):
                r = subprocess.run([os.path.join(src, "scripts", "fetch-model.sh"), m], capture_output=True,
                                   text=True)
                if r.returncode != 0:
                    raise SystemExit(f"bench/engine: cannot fetch {m}: {r.stderr.strip()}")
                yield m, r.stdout.strip(), "real", m.rsplit("-", 1)[-1], False
            return
        for preset in a.presets.split(","):
            for dt in a.dtypes.split(","):
                name = f"{preset}-{a.arch}-{dt}"
                path = os.path.join(tmp, name + ".gguf")
                env = dict(os.environ)
                env.pop("HELIUM_CORPUS", None)
                subprocess.run([os.path.join(a.bin, "helium-mkmodel"), "--preset", preset, "--arch", a.arch,
                                "--dtype", dt, "--seed", str(SEED), "-o", path], check=True, env=env,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                yield name, path, preset, dt, True

    with tempfile.TemporaryDirectory(prefix="helium-bench-") as tmp:
        for name, path, preset, dt, generated in models(tmp):
            he, ll = {}, {}
            skip = None
            for rnd in range(max(1, a.rounds)):
                print(f"{name}: helium (round {rnd + 1}) ...", file=sys.stderr, flush=True)
                try:
                    best_of(he, helium_bench(os.path.join(a.bin, "helium-worker"), path, a.threads,
                                             a.prompt_tokens, a.gen_tokens, batches, a.reps))
                except RuntimeError as e:
                    if generated:
                        raise
                    skip = str(e)  # e.g. an architecture this build does not run yet
                    break
                print(f"{name}: llama.cpp (round {rnd + 1}) ...", file=sys.stderr, flush=True)
                lb = LlamaBench(path, a.threads, kv, fa)
                lr = {"prefill": a.prompt_tokens / lb.prefill(a.prompt_tokens, a.reps)}
                for B in batches:
                    lr[f"decode_b{B}"] = a.gen_tokens * B / lb.decode(B, a.gen_tokens, a.reps)
                lb.close()
                best_of(ll, lr)
            if skip:
                print(f"{name}: skipped, helium failed: {skip}", file=sys.stderr, flush=True)
                info.setdefault("skipped", {})[name] = skip
                continue
            size = os.path.getsize(path)
            if generated:
                os.unlink(path)
            row = {"model": name, "preset": preset, "dtype": dt, "size_bytes": size,
                   "helium": he, "llama_cpp": ll, "ratio": {}, "b8_over_b1": {}}
            for k in ll:
                if he.get(k):
                    row["ratio"][k] = he[k] / ll[k]
            for eng, d in (("helium", he), ("llama_cpp", ll)):
                if d.get("decode_b1") and d.get("decode_b8"):
                    row["b8_over_b1"][eng] = d["decode_b8"] / d["decode_b1"]
            r = row["ratio"]
            row["targets"] = {
                "prefill_ge_target": r.get("prefill", 0) >= TARGET_RATIO,
                "decode_b1_ge_target": r.get("decode_b1", 0) >= TARGET_RATIO,
                "b8_ge_4x_b1": row["b8_over_b1"].get("helium", 0) >= TARGET_B8,
            }
            rows.append(row)
            print(f"{name}: done", file=sys.stderr, flush=True)

    info["loadavg_end"] = list(os.getloadavg())
    result = {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "machine": info,
        "settings": {"threads": a.threads, "prompt_tokens": a.prompt_tokens, "gen_tokens": a.gen_tokens,
                     "decode_prompt_tokens": 32, "batches": list(batches), "reps": a.reps, "rounds": a.rounds,
                     "timing": "best of reps after 1 warm-up, best over rounds",
                     "seed": SEED, "arch": a.arch, "llama_cpp_kv_type": a.llama_kv,
                     "llama_cpp_flash_attn": a.llama_flash_attn, "llama_cpp_n_batch": 512, "llama_cpp_n_ubatch": 512},
        "targets": {"ratio_batch1": TARGET_RATIO, "b8_over_b1": TARGET_B8},
        "wall_seconds": round(time.time() - started, 1),
        "results": rows,
    }
    os.makedirs(a.out, exist_ok=True)
    with open(os.path.join(a.out, a.name + ".json"), "w") as f:
        json.dump(result, f, indent=1)
        f.write("\n")

    md = []
    md.append("# Engine benchmark: Helium vs llama.cpp\n")
    md.append(f"{result['date']}, {info['cpu']}, {info['nproc']} CPUs, load average at start "
              f"{info['loadavg_start'][0]:.2f} (end {info['loadavg_end'][0]:.2f}). "
              f"{a.threads} threads each; llama-cpp-python {L.__version__} (CPU, KV {a.llama_kv}, "
              f"flash attention {a.llama_flash_attn}). Prefill: {a.prompt_tokens}-token prompt; decode: "
              f"{a.gen_tokens} steps after 32-token prompts. Best of {a.reps} after a warm-up"
              f"{f', best of {a.rounds} alternating rounds' if a.rounds > 1 else ''}. Tokens/s.\n")
    md.append("| model | prefill he | prefill llama | ratio | dec b1 he | dec b1 llama | ratio "
              "| dec b8 he | dec b8 llama | ratio | b8/b1 he | b8/b1 llama |")
    md.append("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for row in rows:
        he, ll, r, b = row["helium"], row["llama_cpp"], row["ratio"], row["b8_over_b1"]
        md.append(f"| {row['model']} | {fmt(he.get('prefill'))} | {fmt(ll['prefill'])} | {fmt(r.get('prefill'), 2)} "
                  f"| {fmt(he.get('decode_b1'))} | {fmt(ll['decode_b1'])} | {fmt(r.get('decode_b1'), 2)} "
                  f"| {fmt(he.get('decode_b8'))} | {fmt(ll['decode_b8'])} | {fmt(r.get('decode_b8'), 2)} "
                  f"| {fmt(b.get('helium'), 2)} | {fmt(b.get('llama_cpp'), 2)} |")
    md.append("")
    md.append(f"Targets: helium/llama.cpp >= {TARGET_RATIO} at batch 1 (prefill, decode); "
              f"Helium batch-8 decode >= {TARGET_B8}x batch 1.\n")
    md.append(f"| model | prefill >= {TARGET_RATIO}x | decode b1 >= {TARGET_RATIO}x | b8 >= 4x b1 |")
    md.append("|---|---|---|---|")
    for row in rows:
        t = row["targets"]
        yn = lambda v: "met" if v else "NOT met"
        md.append(f"| {row['model']} | {yn(t['prefill_ge_target'])} | {yn(t['decode_b1_ge_target'])} "
                  f"| {yn(t['b8_ge_4x_b1'])} |")
    md.append("")
    for name, why in info.get("skipped", {}).items():
        md.append(f"Skipped {name}: Helium failed ({why}).\n")
    text = "\n".join(md)
    with open(os.path.join(a.out, a.name + ".md"), "w") as f:
        f.write(text)
    print(text)
    L.llama_backend_free()


if __name__ == "__main__":
    sys.exit(main())
