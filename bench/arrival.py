"""arrival.py: the live-traffic mode of bench/workflows (`--arrival`). Jobs
of a workload arrive over time instead of in one batch; for each policy and
each offered load, a fresh cluster (2 workers x 1 thread by default) receives
the same jobs at the same submit times. Called from bench/workflows.py main();
uses its cluster, submit and comparison helpers unchanged.

Arrival patterns (--arrival may be given several times; each is run):
  poisson:R1,R2,...   Poisson arrivals at R jobs per minute (exponential gaps,
                      seeded: the same times for every policy; one sample of
                      the seed, scaled to each rate); the first job at t = 0
  poisson:auto        the rates are fractions (--auto-fractions) of the
                      throughput helium reaches on the same jobs submitted as
                      one batch (measured first, in the same run)
  trace:FILE[@S1,S2]  submit times in seconds (one number per line, or a JSON
                      list), shifted to start at 0; each S compresses time by
                      that factor (offered load x S); default S = 1
Per point: job latency = the coordinator's finished_us - submitted_us; p50 and
p99 nearest-rank over the jobs; achieved throughput = jobs / (last finish -
first submit); the offered load is the nominal rate (poisson) or jobs /
span of the submit times (trace).

The p99 bound: --p99-bound seconds, or (0, default) --p99-factor x the lowest
p99 job latency any baseline reached at the lowest load of the pattern (a
multiple of the unloaded tail, as latency SLOs are set; --p99-base p50 takes
the lowest p50 instead, which for a mix of job sizes, or Poisson bursts of
a few jobs, lies below what every policy's slowest job takes unloaded, so
nothing is sustainable under it). The analysis under the other base is
reported beside the main one. A policy's
sustainable load is the highest offered load whose p99 is within the bound,
interpolated linearly to the first load past it. A policy stops climbing its
ladder after a point whose p99 exceeds 2x the bound or that lost jobs.

Every job's op outputs are compared with the first run's (greedy: they must be
equal under every policy and arrival pattern). Writes OUT/arrival.json,
OUT/arrival.md and, when some Python has matplotlib, OUT/arrival_<workload>.png
(`python3 bench/arrival.py --report OUT/arrival.json OUT [BOUND_S]` redoes the
analysis, with another p99 bound if given, and redraws them).
"""
import datetime
import json
import os
import random
import shutil
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))


def parse_spec(spec):
    """'poisson:...' or 'trace:FILE[@S,...]' -> dict; ValueError on a bad spec."""
    kind, _, rest = spec.partition(":")
    if kind == "poisson":
        if rest == "auto":
            return {"spec": spec, "kind": "poisson", "auto": True}
        rates = [float(x) for x in rest.split(",") if x]
        if not rates or any(r <= 0 for r in rates):
            raise ValueError(f"bad rates in '{spec}' (jobs per minute, > 0)")
        return {"spec": spec, "kind": "poisson", "rates": sorted(rates)}
    if kind == "trace":
        path, _, sp = rest.partition("@")
        speeds = sorted(float(x) for x in sp.split(",") if x) if sp else [1.0]
        with open(path) as f:
            text = f.read()
        try:
            times = json.loads(text)
        except ValueError:
            times = [float(x) for x in text.split() if x.strip()]
        times = sorted(float(t) for t in times)
        if len(times) < 2 or any(s <= 0 for s in speeds):
            raise ValueError(f"{path}: a trace needs at least 2 submit times and speeds > 0")
        return {"spec": spec, "kind": "trace", "times": [t - times[0] for t in times], "speeds": speeds}
    raise ValueError(f"unknown arrival pattern '{spec}' (poisson:RATES, poisson:auto, trace:FILE[@SPEEDS])")


def poisson_offsets(rate_per_min, n, seed):
    """Submit times (s) of n Poisson arrivals at rate_per_min. Every rate
    scales one unit-rate sample of the seed (common random numbers): a burst
    at one rate is the same burst, closer together, at the next, so a curve's
    points differ by load alone, not by which sample each rate drew."""
    rng = random.Random(f"arrival-{seed}")
    t, out = 0.0, []
    for _ in range(n):
        out.append(t * 60.0 / rate_per_min)
        t += rng.expovariate(1.0)
    return out


def points_of(pat, n_jobs, seed, capacity=None, fractions=None):
    """[(offered jobs/min, [submit offsets s], label)] of one pattern, lowest load first."""
    if pat["kind"] == "poisson":
        rates = pat.get("rates") or [round(capacity * f, 2) for f in fractions]
        return [(r, poisson_offsets(r, n_jobs, seed), f"poisson {r:g}/min") for r in rates]
    out = []
    for s in pat["speeds"]:
        offs = [t / s for t in pat["times"]]
        out.append((round((len(offs) - 1) / offs[-1] * 60.0, 2), offs, f"trace x{s:g}"))
    return out


# ---------------------------------------------------------------- one point

def submit_over_time(WF, cl, wf_path, job_files, offsets, policy, tag):
    """Starts one `heliumctl submit` per job at its offset; returns (ids, errors)."""
    procs = [None] * len(job_files)
    t0 = time.time()
    for i, (files, off) in enumerate(zip(job_files, offsets)):
        d = t0 + off - time.time()
        if d > 0:
            time.sleep(d)
        cmd = [os.path.join(cl.bin, "heliumctl"), "--coordinator", cl.endpoint, "--timeout-ms", "20000", "--json",
               "submit", wf_path, "--policy", policy, "--tag", f"{tag}-{i}"]
        for k, p in files.items():
            cmd += ["--input-file", f"{k}={p}"]
        procs[i] = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                    env=cl.env)
        if i % 8 == 7:  # reap finished submitters so their pipes do not pile up
            for p in procs[:i]:
                p.poll()
    ids, errs = [], []
    for p in procs:
        out, err = p.communicate(timeout=60)
        try:
            ids.append(json.loads(out)["job_id"] if p.returncode == 0 else None)
            errs.append(None if p.returncode == 0 else err.decode("utf-8", "replace")[-300:])
        except (ValueError, KeyError):
            ids.append(None)
            errs.append(out.decode("utf-8", "replace")[-300:])
    return ids, errs


def run_point(WF, args, wl, paths, policy, offsets, rng, tag):
    """One fresh cluster, the jobs submitted at offsets under policy; (record, results)."""
    rec = {"policy": policy, "n_jobs": len(offsets), "error": None}
    cdir = os.path.join(args.workdir, f"cluster-{tag}")
    shutil.rmtree(cdir, ignore_errors=True)
    cl = WF.Cluster(args, cdir, WF.pick_port(rng, args.workers))
    results = []
    try:
        cl.up()
        before = cl.ctl_json("status")
        ids, errs = submit_over_time(WF, cl, paths["wf"], paths["jobs"], offsets, policy, tag)
        if any(errs):
            rec["error"] = f"{sum(1 for e in errs if e)} submits failed: {next(e for e in errs if e)}"
        WF.wait_jobs(cl, ids, args.timeout)
        time.sleep(args.settle)
        after = cl.ctl_json("status")
        results = [cl.ctl_json("result", j) if j else None for j in ids]
    except Exception as e:  # noqa: BLE001
        rec["error"] = str(e)[-500:]
        return rec, None
    finally:
        cl.down()
    ok = [r for r in results if r and r.get("state") == "DONE"]
    rec["jobs_done"] = len(ok)
    lat = [(r["timing"]["finished_us"] - r["timing"]["submitted_us"]) / 1e6 for r in ok]
    sub = [r["timing"]["submitted_us"] for r in results if r]
    if lat and len(ok) == len(offsets):
        span = (max(r["timing"]["finished_us"] for r in ok) - min(sub)) / 1e6
        rec["achieved_wpm"] = round(len(ok) / span * 60.0, 2)
    else:
        rec["achieved_wpm"] = None
        rec["error"] = rec["error"] or f"{len(offsets) - len(ok)} jobs did not finish"
    rec["latency_p50_s"] = round(WF.percentile(lat, 50), 3) if lat else None
    rec["latency_p99_s"] = round(WF.percentile(lat, 99), 3) if lat else None
    rec["latency_mean_s"] = round(sum(lat) / len(lat), 3) if lat else None
    rec["latencies_s"] = [round(x, 3) for x in lat]
    cb, ca = WF.counters_of(before), WF.counters_of(after)
    for k in ("prompt_tokens", "cached_tokens", "computed_tokens", "generated_tokens", "kv_pulls", "warm_tokens",
              "min_prompt_tokens"):
        rec[k] = WF.delta(ca, cb, k)
    rec["loadavg_end"] = round(os.getloadavg()[0], 2)
    return rec, results


# ---------------------------------------------------------------- curves

def interp_load(pts, bound):
    """Highest offered load with p99 <= bound on a curve [(load, p99 or None)],
    interpolated to the first point past the bound; (ladder value, interpolated)."""
    last_ok = None
    for load, p99 in pts:
        if p99 is not None and p99 <= bound:
            last_ok = (load, p99)
            continue
        if last_ok is None:
            return None, None
        if p99 is None:
            return last_ok[0], last_ok[0]
        l0, q0 = last_ok
        return l0, round(l0 + (bound - q0) / (p99 - q0) * (load - l0), 2)
    return (last_ok[0], last_ok[0]) if last_ok else (None, None)


def p99_at(pts, load):
    """p99 on a curve at an offered load (linear between points; None past it)."""
    pts = [(x, y) for x, y in pts if y is not None]
    for (x0, y0), (x1, y1) in zip(pts, pts[1:]):
        if x0 <= load <= x1:
            return round(y0 + (y1 - y0) * (load - x0) / (x1 - x0), 3) if x1 > x0 else y0
    if pts and abs(pts[0][0] - load) < 1e-9:
        return pts[0][1]
    return None


def work_bound(curves, bases):
    """The work bound (as bench/workflows' ceiling column): a job's work is the
    prompt tokens computed plus the tokens generated; the least work is the
    batch's minimum prompt tokens plus the fewest tokens any point generated.
    Where throughput follows work (this CPU), no policy can sustain more than
    (the best baseline's work / the least work) x its load. Decode rows cost
    more than prompt tokens here, so counting them alike can only raise it."""
    pts = [pt for c in curves.values() for pt in c if pt.get("achieved_wpm") and pt.get("min_prompt_tokens")]
    if not pts:
        return {}
    least = min(pt["min_prompt_tokens"] for pt in pts) + min(pt["generated_tokens"] for pt in pts)
    def work(pol):
        ws = sorted(pt["computed_tokens"] + pt["generated_tokens"] for pt in curves.get(pol, [])
                    if pt.get("achieved_wpm") and pt.get("computed_tokens") is not None)
        return ws[len(ws) // 2] if ws else None
    out = {"least_work_tok": least, "work_tok": {p: work(p) for p in curves}}
    bw = [out["work_tok"][p] for p in bases if out["work_tok"].get(p)]
    if bw and least:
        out["work_bound"] = round(min(bw) / least, 3)  # against any baseline (the least-work one)
    return out


def analyse(curves, pols, bound):
    """Sustainable loads and the issue's two targets for one workload and pattern."""
    sus = {p: interp_load([(pt["offered_wpm"], pt.get("latency_p99_s") if pt.get("achieved_wpm") else None)
                           for pt in curves.get(p, [])], bound) for p in pols}
    out = {"bound_s": round(bound, 3), "sustainable_wpm": {p: v[1] for p, v in sus.items()},
           "sustainable_ladder_wpm": {p: v[0] for p, v in sus.items()},
           # within the bound at the top of the ladder: the true limit is higher
           "not_reached": [p for p in pols if curves.get(p) and curves[p][-1].get("latency_p99_s") is not None
                           and curves[p][-1].get("achieved_wpm") and curves[p][-1]["latency_p99_s"] <= bound]}
    bases = [p for p in pols if p != "helium" and sus[p][1] is not None]
    out.update(work_bound(curves, bases))
    if "helium" in pols and bases:
        best = max(bases, key=lambda p: sus[p][1])
        load = sus[best][1]
        hp = p99_at([(pt["offered_wpm"], pt.get("latency_p99_s")) for pt in curves["helium"]], load)
        if out.get("work_tok", {}).get(best) and out.get("least_work_tok"):  # against the best baseline itself
            out["work_bound"] = round(out["work_tok"][best] / out["least_work_tok"], 3)
        out.update({"best_baseline": best, "best_baseline_load_wpm": load, "helium_p99_there_s": hp,
                    "p99_ratio_there": round(hp / bound, 3) if hp else None,
                    "sustainable_ratio": round(sus["helium"][1] / load, 3) if sus["helium"][1] and load else None})
    return out


# ---------------------------------------------------------------- report

def write_md(path, doc, pngs):
    st, m = doc["settings"], doc["machine"]
    s = ["# Live traffic: latency against offered load (bench/workflows --arrival)", "",
         f"Run {doc['date']} on {m['cpu']} ({m['nproc']} cores, shared with other jobs: load average "
         f"{', '.join(str(x) for x in m['loadavg_start'])} at the start, "
         f"{', '.join(str(x) for x in m.get('loadavg_end', []))} at the end), git {doc.get('git') or '?'}; "
         f"the whole run took {doc.get('total_wall_s')} s.", "",
         f"- {st['workers']} workers x {st['threads']} thread, a fresh cluster per point; model preset "
         f"`{st['preset']}`; scale `{st['scale']}`, {st['arrival_jobs']} jobs per point (the workload's "
         "generator with that batch size; the same jobs and submit times for every policy)",
         "- latency = submit to finish on the coordinator's clock; p50/p99 nearest-rank over the jobs of the point "
         f"(with {st['arrival_jobs']} jobs, p99 is the slowest job); offered = the nominal Poisson rate, or jobs / "
         "trace span; achieved = jobs / (last finish - first submit)",
         f"- p99 bound: {st['bound_rule']}; sustainable load = the highest offered load with p99 within it "
         "(linear between ladder points); a policy stops climbing after a point past 2x the bound",
         "- targets (issue 19): at the load where the best baseline's p99 reaches the bound, helium's p99 at most "
         "half the bound; helium's sustainable load at least 1.5x the best baseline's", ""]
    if doc.get("runs"):
        s += [f"Runs: {doc['runs']}.", ""]
    if doc.get("dropped_points"):
        s += ["Points without a measurement (not plotted): " + "; ".join(doc["dropped_points"]) + ".", ""]
    for key, a in doc["analysis"].items():
        wl, pat = key.split("|", 1)
        s += [f"## {wl}, {pat}", ""]
        hdr = ["policy", "offered /min", "achieved /min", "p50 s", "p99 s", "mean s", "computed tok", "outputs"]
        rows = [[p["policy"], WF_fmt(p["offered_wpm"], 1), WF_fmt(p.get("achieved_wpm"), 1),
                 WF_fmt(p.get("latency_p50_s")), WF_fmt(p.get("latency_p99_s")), WF_fmt(p.get("latency_mean_s")),
                 WF_fmt(p.get("computed_tokens")), p.get("outputs_check", "n/a")]
                for p in sorted((p for p in doc["points"] if p["workload"] == wl and p["pattern"] == pat),
                                key=lambda p: (doc["settings"]["policies"].index(p["policy"]), p["offered_wpm"]))]
        s.append(md(hdr, rows))
        sus = ", ".join(f"{p} {'>= ' if p in a.get('not_reached', []) else ''}{WF_fmt(v, 1)}"
                        for p, v in a["sustainable_wpm"].items())
        s.append(f"p99 bound {a['bound_s']} s. Sustainable load (jobs/min): {sus}.")
        if a.get("best_baseline"):
            s.append(f"Best baseline: {a['best_baseline']} ({WF_fmt(a['best_baseline_load_wpm'], 1)}/min). "
                     f"Helium's p99 there: {WF_fmt(a.get('helium_p99_there_s'))} s = "
                     f"{WF_fmt(a.get('p99_ratio_there'))} of the bound (target <= 0.5); helium's sustainable load "
                     f"/ the best baseline's: {WF_fmt(a.get('sustainable_ratio'))}x (target >= 1.5).")
        b = doc.get("analysis_alt", {}).get(key)
        if b and b.get("best_baseline"):
            s.append(f"Under the other rule ({st.get('bound_rule_alt')}: {b['bound_s']} s): sustainable " +
                     ", ".join(f"{p} {'>= ' if p in b.get('not_reached', []) else ''}{WF_fmt(v, 1)}"
                               for p, v in b["sustainable_wpm"].items()) +
                     f"; helium's p99 at {b['best_baseline']}'s limit {WF_fmt(b.get('p99_ratio_there'))} of the "
                     f"bound; sustainable ratio {WF_fmt(b.get('sustainable_ratio'))}x.")
        elif b:
            s.append(f"Under the other rule ({st.get('bound_rule_alt')}: {b['bound_s']} s): sustainable " +
                     ", ".join(f"{p} {WF_fmt(v, 1)}" for p, v in b["sustainable_wpm"].items()) + ".")
        if a.get("work_bound"):
            s.append(f"Work per point (prompt tokens computed + generated, median over the curve): " +
                     ", ".join(f"{p} {v}" for p, v in a["work_tok"].items() if v) +
                     f"; the least the jobs need: {a['least_work_tok']}. Work bound: {WF_fmt(a['work_bound'])}x "
                     "(the best baseline's work / the least work: where throughput follows work, no policy "
                     "sustains more than that multiple of its load).")
        s.append("")
    if pngs:
        s += ["Plots: " + ", ".join(f"`{p}`" for p in pngs), ""]
    with open(path, "w") as f:
        f.write("\n".join(s))


def WF_fmt(v, nd=2):  # noqa: N802 (mirrors workflows.fmt without importing it here)
    if v is None:
        return "n/a"
    return f"{v:.{nd}f}" if isinstance(v, float) else str(v)


def md(hdr, rows):
    s = "| " + " | ".join(hdr) + " |\n|" + "|".join("---" for _ in hdr) + "|\n"
    return s + "".join("| " + " | ".join(str(x) for x in r) + " |\n" for r in rows)


def plot(doc, outdir):
    """One PNG per workload and pattern: p50 and p99 against offered load."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker  # noqa: F401
    files = []
    for key, a in doc["analysis"].items():
        wl, pat = key.split("|", 1)
        pts = sorted((p for p in doc["points"] if p["workload"] == wl and p["pattern"] == pat),
                     key=lambda p: p["offered_wpm"])
        fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
        for ax, q in zip(axes, ("latency_p50_s", "latency_p99_s")):
            for pol in doc["settings"]["policies"]:
                xs = [p["offered_wpm"] for p in pts if p["policy"] == pol and p.get(q) is not None]
                ys = [p[q] for p in pts if p["policy"] == pol and p.get(q) is not None]
                if xs:
                    ax.plot(xs, ys, marker="o", lw=2.2 if pol == "helium" else 1.2, label=pol)
            if q == "latency_p99_s":
                ax.axhline(a["bound_s"], color="black", ls="--", lw=0.8, label=f"bound {a['bound_s']:.1f} s")
            ax.set_xlabel("offered load (jobs / min)")
            ax.set_ylabel(f"job latency {q.split('_')[1]} (s)")
            ax.set_yscale("log")
            ax.yaxis.set_major_locator(matplotlib.ticker.LogLocator(base=10, subs=(1, 2, 5)))
            ax.yaxis.set_major_formatter(matplotlib.ticker.FormatStrFormatter("%g"))
            ax.yaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
            ax.grid(alpha=0.3)
        axes[1].legend(fontsize=8)
        fig.suptitle(f"{wl}, {pat}: {doc['settings']['workers']} CPU workers, {doc['settings']['arrival_jobs']} "
                     "jobs per point")
        fig.tight_layout()
        name = f"arrival_{wl}_{pat.split(':')[0]}.png"
        fig.savefig(os.path.join(outdir, name), dpi=100)
        plt.close(fig)
        files.append(name)
    return files


def make_plots(json_path, outdir):
    try:
        import matplotlib  # noqa: F401
        with open(json_path) as f:
            return plot(json.load(f), outdir)
    except ImportError:
        pass
    for py in [os.environ.get("HELIUM_PYTHON"), os.path.expanduser("~/.cache/helium/venv-plot/bin/python"),
               "/opt/helium-venv/bin/python"]:
        if py and os.access(py, os.X_OK):
            p = subprocess.run([py, os.path.abspath(__file__), json_path, outdir], capture_output=True, text=True)
            if p.returncode == 0:
                return json.loads(p.stdout.strip().splitlines()[-1])
            print(f"bench/workflows: plotting with {py} failed: {p.stderr[-300:]}", file=sys.stderr)
    print("bench/workflows: no matplotlib (python3 -m venv ~/.cache/helium/venv-plot && "
          "~/.cache/helium/venv-plot/bin/pip install matplotlib): no PNG plots", file=sys.stderr)
    return []


def low_bound(curves, pols, factor, base):
    """factor x the lowest p50 or p99 (base) any baseline reached at the lowest
    offered load of the curves ({policy: [points by load]}), or None."""
    lows = [c[0] for p, c in curves.items() if p != "helium" and c]
    if not lows:
        return None
    low = min(pt["offered_wpm"] for pt in lows)
    vals = [pt[f"latency_{base}_s"] for pt in lows if pt["offered_wpm"] == low and pt.get(f"latency_{base}_s")]
    return factor * min(vals) if vals else None


def rule_text(factor, base):
    return f"{factor:g} x the lowest {base} of any baseline at the lowest load"


def reanalyse(doc, bound_s=0.0, factor=3.0, base="p99"):
    """Recomputes doc["analysis"] from its points (a given bound, or factor x
    the lowest baseline p99 (or p50: base) at the lowest load of each workload
    and pattern; doc["analysis_alt"]: the same under the other base)."""
    pols = doc["settings"]["policies"]
    other = "p50" if base == "p99" else "p99"
    doc["analysis"], doc["analysis_alt"] = {}, {}
    keys = []
    for p in doc["points"]:
        if (p["workload"], p["pattern"]) not in keys:
            keys.append((p["workload"], p["pattern"]))
    for wl, pat in keys:
        pts = [p for p in doc["points"] if p["workload"] == wl and p["pattern"] == pat]
        curves = {pol: sorted((p for p in pts if p["policy"] == pol), key=lambda p: p["offered_wpm"]) for pol in pols}
        bound = bound_s or low_bound(curves, pols, factor, base)
        if bound:
            doc["analysis"][f"{wl}|{pat}"] = analyse(curves, pols, bound)
        alt = None if bound_s else low_bound(curves, pols, factor, other)
        if alt:
            doc["analysis_alt"][f"{wl}|{pat}"] = analyse(curves, pols, alt)
    doc["settings"]["bound_rule"] = f"{bound_s:g} s (given)" if bound_s else rule_text(factor, base)
    doc["settings"]["bound_rule_alt"] = None if bound_s else rule_text(factor, other)


# ---------------------------------------------------------------- driver

def save(doc, outdir):
    os.makedirs(outdir, exist_ok=True)
    with open(os.path.join(outdir, "arrival.json"), "w") as f:
        json.dump(doc, f, indent=1)
        f.write("\n")


def run(args, WF):
    """The --arrival mode of bench/workflows; returns the exit status."""
    W = WF.W
    try:
        pats = [parse_spec(s) for s in args.arrival]
    except (ValueError, OSError) as e:
        WF.warn(f"bench/workflows: --arrival: {e}")
        return 2
    fracs = [float(x) for x in args.auto_fractions.split(",") if x]
    pols = [p for p in args.policies.split(",") if p]
    service = WF.Service()
    rng = random.Random(os.getpid() ^ int(time.time()))
    doc = {"date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"), "git": WF.git_rev(),
           "machine": WF.machine_info(),
           "settings": {"scale": args.scale, "seed": args.seed, "preset": args.preset, "workers": args.workers,
                        "threads": args.threads, "policies": pols, "arrival": args.arrival,
                        "arrival_jobs": args.arrival_jobs, "auto_fractions": fracs,
                        "bound_rule": (f"{args.p99_bound} s (given)" if args.p99_bound else
                                       rule_text(args.p99_factor, args.p99_base)),
                        "bound_rule_alt": None if args.p99_bound else rule_text(
                            args.p99_factor, "p50" if args.p99_base == "p99" else "p99")},
           "points": [], "analysis": {}, "analysis_alt": {}, "mismatches": 0}
    t_all = time.time()
    refs = {}  # (workload, jobs) -> the first run's results: the reference outputs
    try:
        for name in [w for w in args.workloads.split(",") if w]:
            for pat in pats:
                n = len(pat["times"]) if pat["kind"] == "trace" else args.arrival_jobs
                wl = W.build(name, args.scale, args.seed, n)
                paths = WF.prepare_workload(args, wl, service)
                cap = None
                if pat.get("auto"):
                    r0, _ = WF.run_policy(args, wl, paths, "helium" if "helium" in pols else pols[-1], rng, service)
                    cap = r0.get("throughput_wpm")
                    if not cap:
                        WF.warn(f"bench/workflows: {name}: the batch run for poisson:auto failed: {r0.get('error')}")
                        continue
                    WF.log(f"== {name}: batch throughput {cap} jobs/min; rates {[round(cap * f, 1) for f in fracs]}")
                pts = points_of(pat, n, args.seed, cap, fracs)
                ptag = pat["spec"] if pat["kind"] == "poisson" else f"trace:{os.path.basename(pat['spec'][6:])}"
                curves, stopped, bound = {p: [] for p in pols}, set(), args.p99_bound or None
                for li, (load, offs, label) in enumerate(pts):
                    order = pols[li % len(pols):] + pols[:li % len(pols)]  # rotate who runs first
                    for pol in order:
                        if pol in stopped:
                            continue
                        rec, res = run_point(WF, args, wl, paths, pol, offs, rng, f"{name}-{pol}-{li}")
                        rec.update({"workload": name, "pattern": ptag, "label": label, "offered_wpm": load})
                        if res:
                            if (name, n) not in refs:
                                refs[(name, n)] = res
                                rec["outputs_check"] = "reference"
                            else:
                                bad = WF.compare(refs[(name, n)], res)
                                rec["outputs_check"] = "ok" if not bad else f"MISMATCH {len(bad)}"
                                rec["mismatches"] = bad
                                doc["mismatches"] += len(bad)
                                if bad:
                                    WF.warn(f"!!! OUTPUT MISMATCH: {name} / {pol} / {label}: {bad[:6]}")
                        doc["points"].append(rec)
                        curves[pol].append(rec)
                        save(doc, args.out)  # every point as it comes (a cut-short run keeps what it measured)
                        WF.log(f"   {name} {label:18s} {pol:9s} " + (
                            f"FAILED: {rec['error']}" if rec.get("latency_p99_s") is None else
                            f"achieved {WF_fmt(rec.get('achieved_wpm'), 1)}/min, p50 {rec['latency_p50_s']:.2f} s, "
                            f"p99 {rec['latency_p99_s']:.2f} s, outputs {rec.get('outputs_check')}"))
                    if bound is None:
                        bound = low_bound(curves, pols, args.p99_factor, args.p99_base)
                    # climb until past 2x the larger bound of both bases, so either analysis holds
                    stop_at = max([b for b in (bound, low_bound(curves, pols, args.p99_factor, "p99"),
                                               low_bound(curves, pols, args.p99_factor, "p50")) if b] or [0])
                    for pol in pols:
                        c = curves[pol]
                        if stop_at and c and (c[-1].get("achieved_wpm") is None or
                                              (c[-1].get("latency_p99_s") or 0) > 2 * stop_at):
                            stopped.add(pol)
                if bound:
                    doc["analysis"][f"{name}|{ptag}"] = analyse(curves, pols, bound)
                alt = None if args.p99_bound else low_bound(curves, pols, args.p99_factor,
                                                             "p50" if args.p99_base == "p99" else "p99")
                if alt:
                    doc["analysis_alt"][f"{name}|{ptag}"] = analyse(curves, pols, alt)
    finally:
        service.close()
    doc["total_wall_s"] = round(time.time() - t_all, 1)
    doc["machine"]["loadavg_end"] = [round(x, 2) for x in os.getloadavg()]
    save(doc, args.out)
    jpath = os.path.join(args.out, "arrival.json")
    pngs = [] if args.no_plots else make_plots(jpath, args.out)
    write_md(os.path.join(args.out, "arrival.md"), doc, pngs)
    for key, a in doc["analysis"].items():
        WF.log(f"{key}: bound {a['bound_s']} s; sustainable " +
               ", ".join(f"{p} {WF_fmt(v, 1)}" for p, v in a["sustainable_wpm"].items()) +
               (f"; helium p99 at the best baseline's ({a['best_baseline']}) limit: {WF_fmt(a['p99_ratio_there'])} "
                f"of the bound; sustainable ratio {WF_fmt(a['sustainable_ratio'])}x" if a.get("best_baseline") else ""))
    WF.log(f"wrote {jpath}, arrival.md" + (", " + ", ".join(pngs) if pngs else "") + f"; {doc['total_wall_s']} s")
    if doc["mismatches"]:
        WF.warn(f"!!! {doc['mismatches']} op outputs differ from the reference run")
        return 1
    if any(p.get("error") for p in doc["points"]):
        WF.warn("bench/workflows: some points failed: see 'error' in arrival.json")
        return 1
    return 0


if __name__ == "__main__":
    if sys.argv[1:2] == ["--report"]:
        # arrival.py --report JSON OUTDIR [BOUND_S]: the analysis again (with a
        # given p99 bound, or the default rule), then the JSON, PNGs and arrival.md
        with open(sys.argv[2]) as f:
            d = json.load(f)
        reanalyse(d, float(sys.argv[4]) if len(sys.argv) > 4 else 0.0)
        jp = os.path.join(sys.argv[3], "arrival.json")
        with open(jp, "w") as f:
            json.dump(d, f, indent=1)
            f.write("\n")
        write_md(os.path.join(sys.argv[3], "arrival.md"), d, make_plots(jp, sys.argv[3]))
    else:  # plotting in another Python: arrival.py JSON OUTDIR
        with open(sys.argv[1]) as f:
            print(json.dumps(plot(json.load(f), sys.argv[2])))
