#!/usr/bin/env python3
"""bench/sim/fit_cost.py: fits the simulator's step cost model to the real
engine on this machine and writes bench/sim/cost.json (read by helium-sim
--cost). Python 3 standard library.

Model (sim.h sim_cost), for one engine step over a batch of T tokens from S
sequences, A attended (query, key) pairs of prefill rows, D those of decode
rows and O sampled rows:
    seconds = step + tok * T + attn * A + attn_dec * D + out * O
and for a KV pull of b bytes:  pull_fixed + pull_byte * b.

Engine points: `helium-worker bench` (1 thread, the bench's generated model):
a prefill of P tokens is one step with T = P, A = P(P+1)/2, O = 1; a decode
step of B sequences at context L has T = B, D = B(L+1), O = B (L = the
--decode-ctx prompt plus half the generated tokens), at short contexts
(batches 1-32) and long ones (--decode-ctxs: the contexts a workflow's
calls decode at; decode attention costs more per pair than prefill's), and
prompts of P tokens after a cached context of C (--prefill-ctxs: a
workflow call's prompt after its shared prefix) with T = P,
A = P*C + P(P+1)/2. Non-negative least squares on relative error (each row
divided by its measured time). Pull points: the workers' pull_us /
pull_bytes counters of a real bench/workflows run (each record:
pull_us = n_pulls * pull_fixed + bytes * pull_byte), least squares.

    python3 bench/sim/fit_cost.py [--build DIR] [--workflows-json FILE] [--out bench/sim/cost.json]
"""
import argparse
import datetime
import json
import os
import platform
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
SRC = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, HERE)
sys.dont_write_bytecode = True


def lstsq(rows, ys):
    """Least squares x for rows x = ys (normal equations, Gaussian elimination)."""
    n = len(rows[0])
    m = [[sum(r[i] * r[j] for r in rows) for j in range(n)] + [sum(r[i] * y for r, y in zip(rows, ys))]
         for i in range(n)]
    for i in range(n):
        p = max(range(i, n), key=lambda k: abs(m[k][i]))
        m[i], m[p] = m[p], m[i]
        if abs(m[i][i]) < 1e-300:
            continue
        for k in range(n):
            if k != i:
                f = m[k][i] / m[i][i]
                m[k] = [a - f * b for a, b in zip(m[k], m[i])]
    return [m[i][n] / m[i][i] if abs(m[i][i]) > 1e-300 else 0.0 for i in range(n)]


def nnls(rows, ys):
    """lstsq with negative coefficients dropped (refit without them)."""
    active = list(range(len(rows[0])))
    while True:
        x = lstsq([[r[i] for i in active] for r in rows], ys)
        neg = [active[k] for k, v in enumerate(x) if v < 0]
        full = [0.0] * len(rows[0])
        for k, i in enumerate(active):
            full[i] = max(0.0, x[k])
        if not neg:
            return full
        active = [i for i in active if i not in neg]


def engine_points(exe, model, prompts, batches, gen, reps, dctxs, dbatches, pctxs=(), pprompts=()):
    pts = []
    runs = [(p, batches if p == prompts[0] else "1", 32, 0) for p in prompts]
    runs += [(32, dbatches, c, 0) for c in dctxs]  # decode at long contexts (its prefill repeats a point)
    runs += [(p, "1", 32, c) for c in pctxs for p in pprompts if p <= c]  # prompts after a cached context
    for p, bl, dctx, pctx in runs:
        out = subprocess.run([exe, "bench", "--model", model, "--threads", "1", "--prompt-tokens", str(p),
                              "--gen-tokens", str(gen), "--batch", bl, "--decode-ctx", str(dctx),
                              "--prefill-ctx", str(pctx), "--reps", str(reps)],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=900)
        for ln in out.stdout.decode().splitlines():
            try:
                d = json.loads(ln)
            except ValueError:
                continue
            if d["test"] == "prefill" and (dctx == 32 or pctx):
                P, C = d["tokens"], d.get("ctx", 0)
                pts.append({"kind": "prefill", "ctx": C, "T": P, "A": P * C + P * (P + 1) / 2, "D": 0,
                            "O": 1, "seconds": d["seconds"]})
                if pctx:
                    break  # its decode points repeat the short-context ones
            elif d["test"] == "decode":
                B = d["batch"]
                L = dctx + gen / 2
                pts.append({"kind": "decode", "B": B, "ctx": dctx, "T": B, "A": 0, "D": B * (L + 1), "O": B,
                            "seconds": d["seconds"] / gen})
    return pts


def pull_points(path):
    with open(path) as f:
        doc = json.load(f)
    pts = []
    for r in doc.get("records", []):
        wc = r.get("worker_counters") or {}
        n, us, b = r.get("kv_pulls") or 0, wc.get("pull_us") or 0, wc.get("pull_bytes") or 0
        if n and us and b:
            pts.append({"workload": r["workload"], "policy": r["policy"], "pulls": n, "bytes": b, "seconds": us / 1e6})
    return pts


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--build", default="/tmp/b-sim" if os.path.isdir("/tmp/b-sim") else os.path.join(SRC, "build"))
    ap.add_argument("--prompts", default="32,64,128,256,512,1024,2048")
    ap.add_argument("--batches", default="1,2,4,8,16,32")
    ap.add_argument("--decode-ctxs", default="512,1024,2048", help="long decode contexts measured")
    ap.add_argument("--decode-batches", default="1,4,16", help="batches measured at each long context")
    ap.add_argument("--prefill-ctxs", default="512,1024", help="contexts in the KV cache before a measured prefill "
                    "(a workflow call's prompt after its cached shared prefix)")
    ap.add_argument("--prefill-prompts", default="16,64,256", help="prompts measured after each --prefill-ctxs")
    ap.add_argument("--gen", type=int, default=32)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--workflows-json", default=os.path.join(SRC, "bench", "results", "scale_out", "workflows.json"),
                    help="a real bench/workflows run whose worker pull counters fit the pull cost")
    ap.add_argument("--out", default=os.path.join(HERE, "cost.json"))
    ap.add_argument("--refit", default=None, help="refit the engine points of this cost file (no bench run)")
    a = ap.parse_args()
    import run as R  # noqa: E402
    build = os.path.abspath(a.build)
    model = R.ensure_model(build)
    load0 = os.getloadavg()
    if a.refit:
        with open(a.refit) as f:
            old = json.load(f)
        pts = [{k: v for k, v in p.items() if k not in ("model_s", "err")} for p in old["engine_points"]]
        load0 = old["machine"]["loadavg_start"]
    else:
        pts = engine_points(os.path.join(build, "bin", "helium-worker"), model, [int(x) for x in a.prompts.split(",")],
                            a.batches, a.gen, a.reps, [int(x) for x in a.decode_ctxs.split(",") if x],
                            a.decode_batches, [int(x) for x in a.prefill_ctxs.split(",") if x],
                            [int(x) for x in a.prefill_prompts.split(",") if x])
    rows = [[1 / p["seconds"], p["T"] / p["seconds"], p["A"] / p["seconds"], p["D"] / p["seconds"],
             p["O"] / p["seconds"]] for p in pts]
    step, tok, attn, attn_dec, out = nnls(rows, [1.0] * len(rows))
    for p in pts:
        p["model_s"] = step + tok * p["T"] + attn * p["A"] + attn_dec * p["D"] + out * p["O"]
        p["err"] = round(p["model_s"] / p["seconds"] - 1, 4)
    pp = pull_points(a.workflows_json) if os.path.exists(a.workflows_json) else []
    if pp:
        pf, pb = nnls([[p["pulls"], p["bytes"]] for p in pp], [p["seconds"] for p in pp])
        for p in pp:
            p["model_s"] = pf * p["pulls"] + pb * p["bytes"]
    else:
        pf, pb = 2e-3, 1e-9
    doc = {"date": datetime.datetime.utcnow().strftime("%Y-%m-%d %H:%M UTC"),
           "machine": {"cpu": R.cpu_name(), "nproc": os.cpu_count(), "loadavg_start": [round(x, 2) for x in load0],
                       "loadavg_end": [round(x, 2) for x in os.getloadavg()], "kernel": platform.release()},
           "model": {"step_s": step, "tok_s": tok, "attn_s": attn, "attn_dec_s": attn_dec, "seq_s": 0.0, "out_s": out,
                     "pull_fixed_s": pf, "pull_byte_s": pb},
           "engine_points": pts, "pull_points": pp, "pull_source": os.path.relpath(a.workflows_json, SRC)
           if pp else None,
           "max_abs_err": max(abs(p["err"]) for p in pts) if pts else None}
    with open(a.out, "w") as f:
        json.dump(doc, f, indent=1)
        f.write("\n")
    print(json.dumps(doc["model"], indent=1))
    print(f"engine fit: {len(pts)} points, max |error| {doc['max_abs_err']:.1%}; pulls: {len(pp)} records")
    for p in pts:
        print(f"  {p['kind']:7s} T={p['T']:5d} ctx={p.get('ctx', p['T']):5d} measured {p['seconds'] * 1e3:8.3f} ms  model {p['model_s'] * 1e3:8.3f} ms"
              f"  ({p['err']:+.1%})")


if __name__ == "__main__":
    main()
