#!/usr/bin/env python3
"""ablation.py: helium with one of its mechanisms on and off, side by side.

Runs bench/workflows.py for the helium policy only, alternating the two
settings rep by rep (so both see the same machine), and prints per workload
the median makespan of each and the ratio off / on (above 1: the mechanism
helps). The two settings differ only in extra coordinator or worker
arguments, for example:

    # the group split (coordinator/sched.c split_pays)
    python3 bench/ablation.py --off-coord="--helium-split 0"
    # the pull-server thread (worker/kvserve.c) against pulls between steps
    python3 bench/ablation.py --off-worker=--inline-pulls \\
        --worker-args="--ctx 2304 --kv-blocks 180"

Every other flag is passed to workflows.py for both settings.
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))


def run(out, workloads, coord, worker, extra):
    cmd = [sys.executable, os.path.join(HERE, "workflows.py"), "--policies", "helium", "--reps", "1", "--no-plots",
           "--out", out]
    if workloads:
        cmd += ["--workloads", workloads]
    if coord.strip():
        cmd += ["--coord-args=" + coord.strip()]
    if worker.strip():
        cmd += ["--worker-args=" + worker.strip()]
    cmd += extra
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    with open(os.path.join(out, "workflows.json")) as f:
        return json.load(f)["records"]


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--workloads", default="map_reduce,parallel_chains,trading,debate")
    ap.add_argument("--reps", type=int, default=2)
    ap.add_argument("--coord-args", default="", help="coordinator arguments of both settings")
    ap.add_argument("--worker-args", default="", help="worker arguments of both settings")
    ap.add_argument("--off-coord", default="", help="coordinator arguments that turn the mechanism off")
    ap.add_argument("--off-worker", default="", help="worker arguments that turn the mechanism off")
    args, extra = ap.parse_known_args()
    if not args.off_coord and not args.off_worker:
        ap.error("say what turns the mechanism off (--off-coord or --off-worker)")
    tmp = tempfile.mkdtemp(prefix="helium-ablation-")
    ms = {}  # (workload, setting) -> makespans
    tok = {}
    for rep in range(args.reps):
        for setting in ("on", "off"):
            coord = args.coord_args + (" " + args.off_coord if setting == "off" else "")
            worker = args.worker_args + (" " + args.off_worker if setting == "off" else "")
            recs = run(os.path.join(tmp, "%s-%d" % (setting, rep)), args.workloads, coord, worker, extra)
            for r in recs:
                if r.get("error"):
                    print("%s (%s): %s" % (r["workload"], setting, r["error"]), file=sys.stderr)
                    continue
                ms.setdefault((r["workload"], setting), []).append(r["makespan_s"])
                tok.setdefault((r["workload"], setting), []).append(r["computed_tokens"] / r["min_prompt_tokens"])
            print("rep %d %s done" % (rep + 1, setting), file=sys.stderr)
    off = args.off_coord or args.off_worker
    print("helium with and without (%s), median makespan of %d runs each" % (off, args.reps))
    print("%-18s %10s %10s %12s %10s %10s" % ("workload", "on s", "off s", "off/on", "tok on", "tok off"))
    ratios = []
    for w in args.workloads.split(","):
        if (w, "on") not in ms or (w, "off") not in ms:
            continue
        on, of = statistics.median(ms[(w, "on")]), statistics.median(ms[(w, "off")])
        ratios.append(of / on)
        print("%-18s %10.2f %10.2f %11.2fx %10.2f %10.2f" % (w, on, of, of / on, statistics.median(tok[(w, "on")]),
                                                          statistics.median(tok[(w, "off")])))
    if ratios:
        print("mean off/on %.2fx over %d workloads (above 1: the mechanism helps)" % (statistics.mean(ratios),
                                                                                   len(ratios)))


if __name__ == "__main__":
    main()
