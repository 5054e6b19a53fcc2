#!/usr/bin/env python3
"""bench/sim/run.py: one command for each use of the cluster-scale simulator
(bench/sim, helium-sim). Python 3 standard library (matplotlib optional, for
the PNGs: the venv ~/.cache/helium/venv-plot has it).

  run.py once     --workers N --policy P --jobs N [--arrival batch|poisson:RATE]
                  one simulated run of a mix of every workload; prints the JSON
  run.py validate [--workers 2,4] [--workloads ...] [--batch B]
                  the real cluster (bench/workflows.py) and the simulator on the
                  same batches, back to back: results/sim/validation.{json,md}
  run.py scale    [--workers 8,32,128] [--jobs 1000] [--arrivals batch,poisson:auto]
                  every policy at each size: results/sim/scale.{json,md} + PNGs
  run.py check    --workers N --jobs N     (the ctest): every job ends DONE under
                  every policy, computed >= the minimum, identical job outputs

Scenarios are the bench workloads (bench/workloads/workloads.py, scale small)
at seeds 1, 2, ... mixed round-robin; a Poisson arrival draws exponential gaps
(seeded). The simulator's worker geometry is probed once from a real
helium-worker (scripts/cluster.sh with one worker, `heliumctl status`), its
cost model read from bench/sim/cost.json (bench/sim/fit_cost.py).
"""
import atexit
import argparse
import json
import shlex
import math
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
BENCH = os.path.dirname(HERE)
SRC = os.path.dirname(BENCH)
sys.path.insert(0, os.path.join(BENCH, "workloads"))
sys.path.insert(0, BENCH)
sys.dont_write_bytecode = True
import workloads as W  # noqa: E402

POLICIES = ["isolated", "prefix", "router", "kvflow", "helium"]
CACHE = os.path.expanduser("~/.cache/helium/sim")


def log(m):
    print(m, flush=True)


def cpu_name():
    try:
        with open("/proc/cpuinfo") as f:
            for ln in f:
                if ln.startswith("model name"):
                    return ln.split(":", 1)[1].strip()
    except OSError:
        pass
    return "?"


def sh(cmd, timeout=600, env=None):
    p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=timeout, env=env)
    if p.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd[:4])} ... exited {p.returncode}: {p.stderr.decode()[-800:]}")
    return p.stdout.decode()


def ensure_model(build, preset="small"):
    os.makedirs(CACHE, exist_ok=True)
    path = os.path.join(CACHE, f"model-{preset}.gguf")
    if not os.path.exists(path):
        sh([os.path.join(build, "bin", "helium-mkmodel"), "--preset", preset, "--arch", "llama", "--dtype", "f32",
            "--seed", "1", "-o", path], timeout=300)
    return path


def ensure_sim(build):
    exe = os.path.join(build, "bench", "helium-sim")
    try:
        sh(["cmake", "--build", build, "--target", "helium-sim", "-j2"], timeout=900)
    except RuntimeError as e:
        if not os.access(exe, os.X_OK):
            raise
        log(f"bench/sim: rebuilding helium-sim failed, running the one built before: {str(e)[-300:]}")
    return exe


def probe_geometry(build, model, worker_args=""):
    """Register values of one real worker with the bench's settings (cached)."""
    key = os.path.join(CACHE, f"geometry-{os.path.basename(model)}-{abs(hash(worker_args)) % 10**8}.json")
    if os.path.exists(key):
        with open(key) as f:
            return json.load(f)
    d = tempfile.mkdtemp(prefix="helium-sim-probe-")
    env = dict(os.environ, HELIUM_BIN=os.path.join(build, "bin"), HELIUM_MODEL=model,
               HELIUM_PORT=str(random.randrange(30000, 50000, 20)), HELIUM_THREADS="1",
               HELIUM_WORKER_ARGS=worker_args, HELIUMCTL_INSECURE="1", HELIUM_WATCH_PID=str(os.getpid()))
    try:
        sh(["bash", os.path.join(SRC, "scripts", "cluster.sh"), "up", d, "1"], env=env, timeout=120)
        st = json.loads(sh([os.path.join(build, "bin", "heliumctl"), "--coordinator",
                            f"tcp://127.0.0.1:{env['HELIUM_PORT']}", "--json", "status"], env=env))
    finally:
        subprocess.run(["bash", os.path.join(SRC, "scripts", "cluster.sh"), "down", d], env=env,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        shutil.rmtree(d, ignore_errors=True)
    w = st["workers"][0]
    g = {k: w.get(k) for k in ("block_size", "kv_blocks_total", "n_ctx", "max_batch")}
    with open(key, "w") as f:
        json.dump(g, f)
    return g


# ---------------------------------------------------------------- scenarios

def scenario(names, n_jobs=None, seed=1, batch=None, arrival="batch", service_port=None, scale="small"):
    """{"workflows": [...], "jobs": [...]}: n_jobs mixed round-robin over names,
    each workload's inputs from seeds seed, seed+1, ... as needed (None: one
    batch of each named workload at seed)."""
    wfs, index = [], {}

    def wf_index(wf):
        key = json.dumps(wf, sort_keys=True)
        if key not in index:
            index[key] = len(wfs)
            wfs.append(wf)
        return index[key]

    queues = {n: [] for n in names}
    next_seed = {n: seed for n in names}

    def refill(name):
        wl = W.build(name, scale, next_seed[name], batch)
        k = wf_index(wl.workflow)
        queues[name] += [(k, dict(j), next_seed[name], i) for i, j in enumerate(wl.jobs)]
        next_seed[name] += 1

    jobs = []
    if n_jobs is None:
        for name in names:
            refill(name)
            for k, inp, s, i in queues[name]:
                jobs.append({"wf": k, "inputs": inp, "tag": f"{name}-{i}"})
    else:
        while len(jobs) < n_jobs:
            for name in names:
                if not queues[name]:
                    refill(name)
                k, inp, s, i = queues[name].pop(0)
                jobs.append({"wf": k, "inputs": inp, "tag": f"{name}-s{s}-{i}"})
                if len(jobs) >= n_jobs:
                    break
    for j in jobs:
        wf = wfs[j["wf"]]
        if any(s == "orders_url" or (isinstance(s, dict) and s.get("name") == "orders_url")
               for s in wf.get("inputs", [])):
            j["inputs"]["orders_url"] = f"http://127.0.0.1:{service_port or 9}/orders"
    rng = random.Random(f"arrival-{seed}-{arrival}")
    t = 0.0
    if arrival.startswith("poisson:"):
        rate = float(arrival.split(":", 1)[1])
        for j in jobs:
            j["t"] = round(t, 6)
            t += rng.expovariate(rate)
    else:
        for j in jobs:
            j["t"] = 0.0
    return {"workflows": wfs, "jobs": jobs}


def service_for(names, scale="small", seed=1, batch=None, n_seeds=1):
    """The tool service (bench/workflows.py's Service) with every route the named workloads call."""
    import workflows as WF  # noqa: E402
    svc = WF.Service()
    for name in names:
        for s in range(seed, seed + n_seeds):
            svc.routes.update(W.build(name, scale, s, batch).service)
    return svc


MAX_ACTIVE = None  # --max-active-jobs (None: the coordinator's default)
HELIUM_FEED = None  # --helium-feed (None: the coordinator's default)


def run_sim(exe, model, scen, workers, policy, geom, cost, workdir, extra=None):
    os.makedirs(workdir, exist_ok=True)
    sp = os.path.join(workdir, f"scen-{os.getpid()}-{random.randrange(1 << 30)}.json")
    with open(sp, "w") as f:
        json.dump(scen, f)
    out = sp + ".out.json"
    dig = sp + ".digests"
    cmd = [exe, "--model", model, "--scenario", sp, "--workers", str(workers), "--policy", policy,
           "--block-size", str(geom["block_size"]), "--kv-blocks", str(geom["kv_blocks_total"]),
           "--ctx", str(geom["n_ctx"]), "--max-seqs", "64", "--batch-tokens", str(geom.get("max_batch") or 512),
           "--out", out, "--outputs", dig]
    debug = os.environ.get("HELIUM_SIM_DEBUG")  # a file: the coordinator's debug log goes there
    if not debug:
        cmd.append("--quiet")
    if cost:
        cmd += ["--cost", cost]
    if MAX_ACTIVE is not None:
        cmd += ["--max-active-jobs", str(MAX_ACTIVE)]
    if HELIUM_FEED is not None:
        cmd += ["--helium-feed", str(HELIUM_FEED)]
    cmd += extra or []
    if os.environ.get("SIM_WRAP"):  # e.g. SIM_WRAP="perf record -g -o /tmp/sim.perf" to profile the coordinator
        cmd = shlex.split(os.environ["SIM_WRAP"]) + cmd
    p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=3600)
    if debug:
        with open(debug, "wb") as f:
            f.write(p.stderr)
    rec = None
    if os.path.exists(out):
        with open(out) as f:
            rec = json.loads(f.read())
    digests = {}
    if os.path.exists(dig):
        with open(dig) as f:
            for ln in f:
                parts = ln.split()
                if len(parts) >= 3:
                    digests[parts[0]] = (parts[1], parts[2])
    for pth in (sp, out, dig):
        if os.path.exists(pth):
            os.remove(pth)
    if rec is None or p.returncode not in (0, 1):
        raise RuntimeError(f"helium-sim exited {p.returncode}: {p.stderr.decode()[-800:]}")
    rec["rc"] = p.returncode
    rec["stderr_tail"] = p.stderr.decode()[-400:]
    return rec, digests


# ---------------------------------------------------------------- commands

def common(ap):
    ap.add_argument("--build", default="/tmp/b-sim" if os.path.isdir("/tmp/b-sim") else os.path.join(SRC, "build"))
    ap.add_argument("--cost", default=os.path.join(HERE, "cost.json"))
    ap.add_argument("--workdir", default=None)
    ap.add_argument("--out", default=os.path.join(BENCH, "results", "sim"))
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--coord-time", type=float, default=0,
                    help="the coordinator's CPU time in the loop, simulated seconds per CPU second (0: instant)")
    ap.add_argument("--max-active-jobs", type=int, default=None,
                    help="jobs the coordinator starts at once (default: its own, 8 per worker; 0: no limit)")
    ap.add_argument("--helium-feed", type=int, default=None,
                    help="helium: a job arriving on its own (not with a batch) starts only while fewer than N "
                    "calls a worker are ready or running (default: the coordinator's, 4; 0: off)")
    ap.add_argument("--preset", default="small", choices=["tiny", "small", "medium"],
                    help="generated model (its tokenizer renders the prompts)")
    ap.add_argument("--geometry", default="", help="BLOCK_SIZE,KV_BLOCKS,CTX,BATCH_TOKENS instead of probing a "
                    "real worker")


def setup(a):
    global MAX_ACTIVE, HELIUM_FEED
    MAX_ACTIVE = a.max_active_jobs
    HELIUM_FEED = a.helium_feed
    a.build = os.path.abspath(a.build)
    if not a.workdir:  # a scratch folder of our own: removed on exit
        a.workdir = tempfile.mkdtemp(prefix="helium-sim-")
        atexit.register(shutil.rmtree, a.workdir, True)
    a.model = ensure_model(a.build, a.preset)
    a.exe = ensure_sim(a.build)
    if a.geometry:
        bs, kv, ctx, bt = (int(x) for x in a.geometry.split(","))
        a.geom = {"block_size": bs, "kv_blocks_total": kv, "n_ctx": ctx, "max_batch": bt}
    else:
        a.geom = probe_geometry(a.build, a.model)
    if not os.path.exists(a.cost):
        log(f"bench/sim: no cost model at {a.cost}: the simulator's defaults (fit one with fit_cost.py)")
        a.cost = None


def cmd_once(a):
    names = a.workloads.split(",") if a.workloads else W.NAMES
    svc = service_for(names, n_seeds=max(1, a.jobs // 6 + 2))
    try:
        scen = scenario(names, a.jobs, a.seed, a.batch, a.arrival, svc.port)
        rec, _ = run_sim(a.exe, a.model, scen, a.workers, a.policy, a.geom, a.cost, a.workdir,
                         ["--coord-time", str(a.coord_time)] if a.coord_time else None)
    finally:
        svc.close()
    print(json.dumps(rec, indent=1))


def cmd_check(a):
    """Tiny, every policy: all jobs DONE, computed >= min, identical outputs."""
    names = a.workloads.split(",") if a.workloads else W.NAMES
    svc = service_for(names, n_seeds=max(1, a.jobs // 6 + 2))
    bad = []
    try:
        scen = scenario(names, a.jobs, a.seed, a.batch, a.arrival, svc.port)
        ref = None
        # every policy with an instant coordinator, and helium with its own CPU time in the loop
        for pol, extra in [(p, None) for p in POLICIES] + [("helium", ["--coord-time", "1"])]:
            rec, dig = run_sim(a.exe, a.model, scen, a.workers, pol, a.geom, a.cost, a.workdir, extra)
            if extra:
                pol = "helium (coordinator time in the loop)"
            log(f"{pol:9s} jobs {rec['jobs_done']}/{rec['n_jobs']} computed {rec['computed_tokens']} "
                f"min {rec['min_prompt_tokens']} makespan {rec['makespan_s']:.2f}s decisions {rec['decisions']} "
                f"placements {rec['placements']} skipped {rec['placements_skipped']}")
            if rec["jobs_done"] != len(scen["jobs"]) or rec["rc"] != 0:
                bad.append(f"{pol}: {rec['jobs_done']} of {len(scen['jobs'])} jobs done ({rec['stderr_tail']})")
            if rec["min_prompt_tokens"] and rec["computed_tokens"] < rec["min_prompt_tokens"]:
                bad.append(f"{pol}: computed {rec['computed_tokens']} < minimum {rec['min_prompt_tokens']}")
            if len(dig) != len(scen["jobs"]):
                bad.append(f"{pol}: {len(dig)} digests for {len(scen['jobs'])} jobs")
            if ref is None:
                ref = (pol, dig)
            else:
                diff = [t for t in dig if dig[t][0] != ref[1].get(t, ("?",))[0]]
                if diff:
                    bad.append(f"{pol}: {len(diff)} jobs' outputs differ from {ref[0]}'s (e.g. {diff[0]})")
    finally:
        svc.close()
    for b in bad:
        print("FAIL:", b)
    print("sim check:", "FAILED" if bad else "ok")
    return 1 if bad else 0


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    for name in ("once", "check"):
        p = sub.add_parser(name)
        common(p)
        p.add_argument("--workers", type=int, default=2)
        p.add_argument("--policy", default="helium")
        p.add_argument("--jobs", type=int, default=12)
        p.add_argument("--batch", type=int, default=None)
        p.add_argument("--workloads", default="")
        p.add_argument("--arrival", default="batch")
    p = sub.add_parser("validate")
    common(p)
    p.add_argument("--workers", default="2,4")
    p.add_argument("--workloads", default="map_reduce,reflection,parallel_chains")
    p.add_argument("--policies", default="helium,router")
    p.add_argument("--batch", type=int, default=0, help="jobs a batch (0: each workload's own bench batch)")
    p.add_argument("--calibrate", default="others", help="workloads whose real forward time sets the speed: "
                   "'others' (every workload run but the one validated; debate is run for it) or W[,W...]")
    p.add_argument("--reuse-real", action="store_true", help="re-simulate the real runs already in --workdir")
    p.add_argument("--no-replay", action="store_true", help="submit every simulated job at t=0, not at its real "
                   "run's submit time")
    p.add_argument("--reps", type=int, default=5, help="real runs per batch (the median makespan's is kept)")
    p = sub.add_parser("scale")
    common(p)
    p.add_argument("--workers", default="8,32,128")
    p.add_argument("--jobs", default="1000")
    p.add_argument("--arrivals", default="batch,poisson:auto")
    p.add_argument("--policies", default=",".join(POLICIES))
    p.add_argument("--append", action="store_true", help="keep the points of results/sim/scale.json already run")
    p.add_argument("--reps", type=int, default=1, help="runs per point and policy with --coord-time (the "
                   "median throughput's run is kept, the range recorded)")
    p.add_argument("--instant-max-jobs", type=int, default=1000,
                   help="also run helium with an instant coordinator at points of at most this many jobs")
    p = sub.add_parser("curve")
    common(p)
    p.add_argument("--workers", type=int, default=32)
    p.add_argument("--jobs", type=int, default=600)
    p.add_argument("--workloads", default="")
    p.add_argument("--policies", default="prefix,router,kvflow,helium")
    p.add_argument("--fractions", default="0.3,0.5,0.6,0.7,0.8,0.9,1.0,1.2",
                   help="offered loads, as fractions of helium's batch throughput")
    p.add_argument("--p99-bound", type=float, default=0, help="p99 bound, s (0: --p99-factor x the lowest "
                   "baseline p99, or p50 with --p99-base p50, at the lowest load)")
    p.add_argument("--p99-factor", type=float, default=3.0)
    p.add_argument("--p99-base", choices=["p99", "p50"], default="p99")
    a = ap.parse_args()
    setup(a)
    if a.cmd == "once":
        return cmd_once(a)
    if a.cmd == "check":
        return cmd_check(a)
    import sim_report  # noqa: E402  (validate, scale: bench/sim/sim_report.py)
    return sim_report.main(a)


if __name__ == "__main__":
    sys.exit(main() or 0)
