#!/usr/bin/env python3
"""KV-size sweep: helium against the baselines as each worker's KV shrinks.

Runs bench/workflows.py once per KV size (worker flag --kv-blocks N, with the
context at 2,304 tokens so that N can go as low as 145 pages of 16 tokens),
the same workloads and policies each time, side by side in one run, and
prints for every size and workload helium's throughput over the best baseline
and the prompt tokens each policy computed over the minimum. The per-size
reports stay in OUT/kvN/ (workflows.json, workflows.md); the summary goes to
OUT/kv_sweep.md and OUT/kv_sweep.json.

    python3 bench/kv_sweep.py [--kv 145,180,240,360,0] [--workloads map_reduce,trading]
                              [--policies router,kvflow,helium] [--reps 2] [--out bench/results/kv_sweep]

--kv 0 means the worker's default KV size (no --ctx/--kv-blocks). Python 3
standard library only; bench/workflows.py does the measuring.
"""
import argparse
import datetime
import json
import os
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))


def run_size(a, kv):
    out = os.path.join(a.out, "kv%d" % kv if kv else "kv-default")
    cmd = [sys.executable, os.path.join(HERE, "workflows.py"), "--workloads", a.workloads, "--policies", a.policies,
           "--reps", str(a.reps), "--out", out, "--no-plots", "--build", a.build]
    if kv:
        cmd += ["--worker-args", "--ctx %d --kv-blocks %d" % (a.ctx, kv)]
    print("== KV %s: %s" % (kv or "default", " ".join(cmd)), flush=True)
    rc = subprocess.run(cmd).returncode
    if rc:
        print("kv_sweep: workflows.py failed for KV %s (exit %d)" % (kv or "default", rc), file=sys.stderr)
        return None
    with open(os.path.join(out, "workflows.json")) as f:
        return json.load(f)


def summarize(kv, rep, pols):
    """Per workload: helium / best baseline, and computed / minimum per policy."""
    rows = {}
    for r in rep["records"]:
        w = rows.setdefault(r["workload"], {"tok": {}})
        mn = r.get("min_prompt_tokens")
        if r.get("computed_tokens") is not None and mn:
            w["tok"][r["policy"]] = r["computed_tokens"] / mn
    for w, ratios in rep.get("ratios", {}).items():
        rows.setdefault(w, {"tok": {}})["ratio"] = ratios.get("best_baseline")
    avg = rep.get("ratio_avg", {}).get("best_baseline", {})
    return {"kv_blocks": kv, "workloads": rows, "mean": avg.get("mean"), "geomean": avg.get("geomean")}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--kv", default="145,180,240,360,0", help="comma list of --kv-blocks values (0: default KV)")
    ap.add_argument("--ctx", type=int, default=2304)
    ap.add_argument("--workloads", default="map_reduce,trading,reflection")
    ap.add_argument("--policies", default="router,kvflow,helium")
    ap.add_argument("--reps", type=int, default=2)
    ap.add_argument("--build", default="build")
    ap.add_argument("--out", default=os.path.join(HERE, "results", "kv_sweep"))
    a = ap.parse_args()
    sizes = [int(x) for x in a.kv.split(",") if x.strip()]
    os.makedirs(a.out, exist_ok=True)
    t0 = datetime.datetime.now(datetime.timezone.utc)
    pols = a.policies.split(",")
    res = []
    for kv in sizes:
        rep = run_size(a, kv)
        if rep:
            res.append(summarize(kv, rep, pols))
    if not res:
        return 1
    wls = a.workloads.split(",")
    lines = ["# KV-size sweep (bench/kv_sweep.py)", "",
             "Run %s; workloads %s; policies %s; %d runs each (median makespan); workers `--ctx %d --kv-blocks N` "
             "(N pages of 16 tokens each; \"default\" = the worker's default KV, no --ctx). Per size, the full report "
             "is in kvN/workflows.md." % (t0.isoformat(timespec="seconds"), a.workloads, a.policies, a.reps, a.ctx), "",
             "helium throughput / best baseline, and prompt tokens computed / minimum (helium; best of the baselines "
             "in brackets):", "",
             "| KV pages per worker | " + " | ".join(wls) + " | mean |",
             "|---" * (len(wls) + 2) + "|"]
    for r in res:
        cells = []
        for w in wls:
            x = r["workloads"].get(w, {})
            tok = x.get("tok", {})
            base = [v for p, v in tok.items() if p != "helium"]
            cells.append("%s (tok %s [%s])" % ("%.2fx" % x["ratio"] if x.get("ratio") else "n/a",
                                               "%.2f" % tok["helium"] if "helium" in tok else "n/a",
                                               "%.2f" % min(base) if base else "n/a"))
        lines.append("| %s | %s | %s |" % (r["kv_blocks"] or "default", " | ".join(cells),
                                           "%.2fx" % r["mean"] if r.get("mean") else "n/a"))
    text = "\n".join(lines) + "\n"
    with open(os.path.join(a.out, "kv_sweep.md"), "w") as f:
        f.write(text)
    with open(os.path.join(a.out, "kv_sweep.json"), "w") as f:
        json.dump({"date": t0.isoformat(), "settings": vars(a), "sizes": res}, f, indent=1)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
