"""sim_report: the `validate` and `scale` commands of bench/sim/run.py, and
their tables and plots (results/sim/validation.{json,md}, scale.{json,md},
sim_*.png). Python 3 standard library; matplotlib from any Python that has it
(~/.cache/helium/venv-plot) for the PNGs.
"""
import datetime
import hashlib
import json
import os
import shutil
import subprocess
import sys

import run as R
import workflows as WF  # bench/ is on the path (run.py)

VENV_PY = os.path.expanduser("~/.cache/helium/venv-plot/bin/python3")


def machine():
    return {"cpu": R.cpu_name(), "nproc": os.cpu_count()}


def load():
    return [round(x, 2) for x in os.getloadavg()]


def err(sim, real):
    if sim is None or real in (None, 0):
        return None
    return round(sim / real - 1, 4)


# ---------------------------------------------------------------- validate

def real_run(a, name, n, pols, outdir, reps):
    """One bench/workflows.py run of workload name on n workers (reps rounds,
    policies interleaved): {policy: record}."""
    path = os.path.join(outdir, "workflows.json")
    if a.reuse_real and os.path.exists(path):  # a re-simulation of runs already made
        R.log(f"validate {n}w {name}: the real runs already in {outdir}")
    else:
        cmd = [sys.executable, os.path.join(R.BENCH, "workflows.py"), "--workloads", name, "--policies",
               ",".join(pols), "--workers", str(n), "--batch", str(a.batch), "--build", a.build, "--out", outdir,
               "--no-plots", "--workdir", os.path.join(a.workdir, f"wf-{name}-{n}"), "--seed", str(a.seed),
               "--reps", str(reps)]
        if os.path.exists(path):
            os.unlink(path)
        p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=3600)
        if not os.path.exists(path):
            raise RuntimeError(f"bench/workflows.py wrote nothing: {p.stderr.decode()[-600:]}")
    with open(path) as f:
        return {r["policy"]: r for r in json.load(f)["records"]}


def real_runs(a, names, n, pols):
    """{workload: {policy: record}}: every workload's batch run a.reps times
    on n workers, in rounds (each round runs every workload once), so a
    drift in the shared machine's speed reaches every workload alike; each
    (workload, policy) keeps the run with the median makespan, every
    makespan in makespans_s. A workdir of the older layout (one run of
    a.reps rounds per workload) is read as it is with --reuse-real. Returns
    (that, whether the runs went in rounds)."""
    if a.reuse_real and all(os.path.exists(os.path.join(a.workdir, f"real-{w}-{n}", "workflows.json"))
                            for w in names):
        return {w: real_run(a, w, n, pols, os.path.join(a.workdir, f"real-{w}-{n}"), a.reps) for w in names}, False
    runs = {w: {p: [] for p in pols} for w in names}
    for rep in range(a.reps):
        for w in names:
            for p, r in real_run(a, w, n, pols, os.path.join(a.workdir, f"real-{w}-{n}", f"round{rep}"), 1).items():
                runs[w].setdefault(p, []).append(r)
    return {w: {p: WF.median_run(rs) for p, rs in runs[w].items() if rs} for w in names}, True


def vsim(a, scen, n, pol, cost, extra):
    """One simulation of validate: with --coord-time X the coordinator's own
    CPU time (times X) in the loop, as the real coordinator's is."""
    ct = ["--coord-time", str(a.coord_time)] if a.coord_time else []
    return R.run_sim(a.exe, a.model, scen, n, pol, a.geom, cost, a.workdir, list(extra) + ct)


def replay(a, scen, r):
    """scen with each job submitted when the real run r submitted it (its
    offset from the batch's first submit: the batch's heliumctl processes
    start together, but their submits reach the coordinator over up to
    some hundreds of ms while the first jobs already run); scen unchanged
    when r has no submit times (--no-replay, or a run of an older bench)."""
    subs = (r or {}).get("job_submit_s")
    if a.no_replay or not subs or len(subs) != len(scen["jobs"]):
        return scen
    return {"workflows": scen["workflows"], "jobs": [dict(j, t=float(t)) for j, t in zip(scen["jobs"], subs)]}


def calibrate(a, n, cal_real, scens, pols, tag):
    """The simulator's speed on this shared machine, from the real runs of
    the calibration workloads (never the one validated) at this size. Three
    numbers: bg, the other runnable processes sharing the cores (searched on
    a grid), and for each bg two scales, decode-only and other steps, that
    make the simulator's forward time equal the real workers' (counters
    forward_us, decode_us, summed over the workloads and policies). The
    smallest bg whose makespans come within a point of the closest to the
    real ones (mean relative error over the workloads and policies) wins:
    bg and the scales trade off (a large bg with small scales can fit as
    well), and a bg the data does not clearly ask for is noise."""
    pairs = [(w, p, r) for w, recs in cal_real.items() for p, r in recs.items()
             if p in pols and r and not r.get("error")]
    real_dec = sum((r["worker_counters"].get("decode_us") or 0) / 1e6 for _, _, r in pairs)
    real_fwd = sum((r["worker_counters"].get("forward_us") or 0) / 1e6 for _, _, r in pairs)
    real_mix = real_fwd - real_dec
    with open(a.cost) as f:
        base = json.load(f)
    cands = []
    for bg in [0, 1, 2, 3, 4, 5, 6, 8, 10, 12]:
        core = ["--cores", str(os.cpu_count()), "--bg-load", str(bg)]
        sim_dec = sim_mix = 0.0
        for w, pol, r in pairs:
            s, _ = vsim(a, replay(a, scens[w], r), n, pol, a.cost, core)
            sim_dec += s["busy_decode_s"]
            sim_mix += s["busy_s"] - s["busy_decode_s"]
        doc = json.loads(json.dumps(base))
        doc["model"]["scale_decode"] = round(real_dec / sim_dec, 4) if sim_dec > 0 else 1.0
        doc["model"]["scale_mixed"] = round(real_mix / sim_mix, 4) if sim_mix > 0 else 1.0
        path = os.path.join(a.workdir, f"cost-cal-{n}-{tag}-bg{bg}.json")
        with open(path, "w") as f:
            json.dump(doc, f, indent=1)
        errs = []
        for w, pol, r in pairs:
            s, _ = vsim(a, replay(a, scens[w], r), n, pol, path, core)
            errs.append(abs(s["makespan_s"] / r["makespan_s"] - 1))
        cands.append((sum(errs) / len(errs), bg, path, doc["model"]))
    e_min = min(c[0] for c in cands)
    e, bg, path, model = min((c for c in cands if c[0] <= e_min + 0.01), key=lambda c: c[1])
    cal = {"bg_load": bg, "cores": os.cpu_count(), "calibration_makespan_err": round(e, 4),
           "real_decode_s": round(real_dec, 3), "real_other_s": round(real_mix, 3)}
    return path, model, cal


def calibration_sets(a, names):
    """(workloads run, {validated workload: the workloads its speed is
    calibrated on}). --calibrate others (the default): every workload run but
    the one validated (leave one out; debate is run for calibration only);
    --calibrate W[,W...]: those workloads, run for calibration only."""
    if a.calibrate == "others":
        extra = ["debate"]
        run = extra + [w for w in names if w not in extra]
        return run, {w: [x for x in run if x != w] for w in names}
    fixed = [w for w in a.calibrate.split(",") if w]
    if set(fixed) & set(names):
        raise SystemExit("bench/sim validate: a calibration workload cannot be validated too")
    return fixed + names, {w: fixed for w in names}


def validate(a):
    workers = [int(x) for x in str(a.workers).split(",")]
    names = a.workloads.split(",")
    pols = a.policies.split(",")
    run_names, cal_sets = calibration_sets(a, names)
    rows, cals, rounds = [], {}, True
    for n in workers:
        l0 = load()
        real, in_rounds = real_runs(a, run_names, n, pols)
        rounds = rounds and in_rounds
        l1 = load()
        svc = R.service_for(run_names, batch=a.batch)
        try:
            scens = {w: R.scenario([w], None, a.seed, a.batch, "batch", svc.port) for w in run_names}
            cal_paths = {}
            for key in sorted({tuple(v) for v in cal_sets.values()} | {tuple(run_names)}):
                cost_path, model, cal = calibrate(a, n, {w: real[w] for w in key}, scens, pols,
                                                  f"{len(cal_paths)}")
                cal_paths[key] = (cost_path, cal)
                cals.setdefault(str(n), []).append({"workloads": list(key), "model": model, **cal, "loadavg": l1})
                R.log(f"calibration {n}w on {'+'.join(key)}: decode x{model['scale_decode']}, other x{model['scale_mixed']}, "
                      f"background load {cal['bg_load']} on {cal['cores']} cores (makespan error there "
                      f"{cal['calibration_makespan_err']:.1%})")
            if n == workers[0]:  # the scale runs' cost model (run.py scale --cost): every workload run
                os.makedirs(a.out, exist_ok=True)
                shutil.copyfile(cal_paths[tuple(run_names)][0], os.path.join(a.out, "cost_calibrated.json"))
            for name in names:
                cost_path, cal = cal_paths[tuple(cal_sets[name])]
                for pol in pols:
                    r = real[name].get(pol)
                    scen = replay(a, scens[name], r)
                    s, _ = vsim(a, scen, n, pol, cost_path, ["--cores", str(cal["cores"]), "--bg-load",
                                                             str(cal["bg_load"])])
                    row = {"workers": n, "workload": name, "policy": pol, "jobs": len(scen["jobs"]),
                           "calibrated_on": cal_sets[name], "loadavg_before": l0, "loadavg_after": l1,
                           "real_makespans_s": (r or {}).get("makespans_s"),
                           "submits_replayed": scen is not scens[name],
                           "real_submit_spread_s": max((r or {}).get("job_submit_s") or [0])}
                    for k in ("makespan_s", "latency_p50_s", "latency_p99_s", "computed_tokens", "prompt_tokens",
                              "generated_tokens", "kv_pulls"):
                        row["real_" + k] = r.get(k) if r else None
                        row["sim_" + k] = s.get(k)
                        row["err_" + k] = err(s.get(k), r.get(k) if r else None)
                    wc = (r or {}).get("worker_counters") or {}
                    row["real_forward_s"] = round((wc.get("forward_us") or 0) / 1e6, 3)
                    row["sim_busy_s"] = s.get("busy_s")
                    # the same batch at the speed its own real workers showed (their forward_us and
                    # decode_us counters): what is left is the scheduling, queueing and token model
                    if r and wc.get("forward_us") and s.get("busy_s"):
                        rd, rf = (wc.get("decode_us") or 0) / 1e6, wc["forward_us"] / 1e6
                        sd, sf = s["busy_decode_s"], s["busy_s"]
                        with open(cost_path) as f:
                            own = json.load(f)
                        m = own["model"]
                        if sd > 0 and rd > 0:
                            m["scale_decode"] = m.get("scale_decode", 1.0) * rd / sd
                        if sf - sd > 0 and rf - rd > 0:
                            m["scale_mixed"] = m.get("scale_mixed", 1.0) * (rf - rd) / (sf - sd)
                        own_path = os.path.join(a.workdir, f"cost-own-{n}-{name}-{pol}.json")
                        with open(own_path, "w") as f:
                            json.dump(own, f)
                        s2, _ = vsim(a, scen, n, pol, own_path, ["--cores", str(cal["cores"]), "--bg-load",
                                                                  str(cal["bg_load"])])
                        for k in ("makespan_s", "latency_p50_s", "latency_p99_s"):
                            row["own_sim_" + k] = s2.get(k)
                            row["own_err_" + k] = err(s2.get(k), r.get(k))
                    # the cost model as fitted (bench/sim/cost.json), no calibration and no background
                    # load: what the simulator predicts from the engine bench alone
                    s0, _ = vsim(a, scen, n, pol, a.cost, ["--cores", str(cal["cores"]), "--bg-load", "0"])
                    for k in ("makespan_s", "latency_p50_s", "latency_p99_s"):
                        row["fit_sim_" + k] = s0.get(k)
                        row["fit_err_" + k] = err(s0.get(k), r.get(k) if r else None)
                    row["real_error"] = r.get("error") if r else "no record"
                    rows.append(row)
                    R.log(f"validate {n}w {name:16s} {pol:8s} makespan real {row['real_makespan_s']} sim "
                          f"{row['sim_makespan_s']:.3f} ({row['err_makespan_s']}); p99 {row['err_latency_p99_s']}; "
                          f"computed real {row['real_computed_tokens']} sim {row['sim_computed_tokens']} "
                          f"({row['err_computed_tokens']}); load {l1[0]}")
        finally:
            svc.close()
    keys = ("err_makespan_s", "err_latency_p50_s", "err_latency_p99_s", "err_computed_tokens",
            "own_err_makespan_s", "own_err_latency_p50_s", "own_err_latency_p99_s",
            "fit_err_makespan_s", "fit_err_latency_p50_s", "fit_err_latency_p99_s")
    summary = {}
    for k in keys:
        es = [abs(r[k]) for r in rows if r.get(k) is not None]
        summary[k] = {"mean_abs_err": round(sum(es) / len(es), 4) if es else None,
                      "max_abs_err": round(max(es), 4) if es else None,
                      "within_10pct": sum(1 for e in es if e <= 0.10), "n": len(es)}
    with open(a.cost) as f:
        cost = json.load(f)
    doc = {"date": datetime.datetime.utcnow().strftime("%Y-%m-%d %H:%M UTC"), "machine": machine(),
           "settings": {"batch": a.batch, "seed": a.seed, "workloads": names, "policies": pols, "reps": a.reps,
                        "geometry": a.geom, "calibration_workload": a.calibrate, "replay_submits": not a.no_replay,
                        "rounds": rounds, "reused_real": a.reuse_real},
           "cost_model": cost.get("model"), "calibration": cals, "rows": rows, "summary": summary}
    os.makedirs(a.out, exist_ok=True)
    with open(os.path.join(a.out, "validation.json"), "w") as f:
        json.dump(doc, f, indent=1)
    write_validation_md(doc, os.path.join(a.out, "validation.md"))
    R.log(json.dumps(summary, indent=1))
    return 0


def pctf(e):
    return "-" if e is None else f"{e:+.1%}"


def write_validation_md(doc, path):
    L = [f"# Simulator validation: helium-sim against the real cluster ({doc['date']})", "",
         f"Machine: {doc['machine']['cpu']}, {doc['machine']['nproc']} cores. Each row: bench/workflows.py on a "
         f"real cluster (1 thread per worker, the generated small model) then helium-sim on the same batch "
         f"({'batch ' + str(doc['settings']['batch']) if doc['settings']['batch'] else 'the bench batch'} of each "
         f"workload, seed {doc['settings']['seed']}; the real batch run "
         f"{doc['settings'].get('reps', 1)} times" + (" in rounds, every workload once a round;"
                                                      if doc['settings'].get('rounds') else ",") +
         " the run with the median makespan kept), " +
         ("the real runs of an earlier `bench/sim/run.py validate` re-simulated (`--reuse-real`; the date above "
          "is the simulation's). " if doc['settings'].get('reused_real') else
          "in one run of `bench/sim/run.py validate`: first every real batch at a size, then the simulator. ") +
         "The step cost "
         "model's shape is bench/sim/cost.json (fitted to `helium-worker bench`); its speed on this shared "
         "machine is calibrated at each size on workloads other than the one validated "
         f"(--calibrate {doc['settings']['calibration_workload']}: " +
         ("leave one out: every other workload run, debate included, which is run for calibration only"
          if doc['settings']['calibration_workload'] == "others" else "run for calibration only") +
         "): the workers and `bg` other runnable processes share the "
         "machine's cores fairly (a step stretches by (workers stepping + bg) / cores), and decode-only and other "
         "steps are scaled so that the simulator's forward time equals the real workers' forward_us / decode_us "
         "counters on those batches; bg is the smallest grid value whose makespans there come within a point of "
         "the closest. `real runs`: "
         "every real makespan of the batch, in the order run; `submits`: the time from the kept run's first "
         "submit to its last" + (", at which the simulation submits each job too (its real offset)"
                                 if doc['settings'].get('replay_submits') else "") + ". Error = sim/real - 1.",
         "",
         "| workers | workload | policy | jobs | submits | makespan real / sim (err) | real runs | p50 real / sim (err) "
         "| p99 real / sim (err) | computed tokens real / sim (err) | makespan, p99 at the run's own speed (err) "
         "| makespan, p99 as fitted (err) | load avg |",
         "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in doc["rows"]:
        def cell(k, fmt="{:.2f}"):
            rv, sv = r.get("real_" + k), r.get("sim_" + k)
            f = (lambda v: "-" if v is None else fmt.format(v))
            return f"{f(rv)} / {f(sv)} ({pctf(r.get('err_' + k))})"
        runs = " ".join(f"{v:.2f}" for v in (r.get("real_makespans_s") or []) if v is not None) or "-"
        sp = r.get("real_submit_spread_s")
        L.append(f"| {r['workers']} | {r['workload']} | {r['policy']} | {r['jobs']} | "
                 f"{'-' if sp is None else f'{sp:.2f} s'} | {cell('makespan_s')} | "
                 f"{runs} | {cell('latency_p50_s')} | {cell('latency_p99_s')} | {cell('computed_tokens', '{:.0f}')} | "
                 f"{pctf(r.get('own_err_makespan_s'))}, {pctf(r.get('own_err_latency_p99_s'))} | "
                 f"{pctf(r.get('fit_err_makespan_s'))}, {pctf(r.get('fit_err_latency_p99_s'))} | "
                 f"{r['loadavg_after'][0]} |")
    L += ["", "`err_*`: the speed calibrated on the held-out workload; `own_err_*`: the same batch re-simulated at "
          "the speed its own real workers showed (forward_us, decode_us), which leaves the scheduling, queueing "
          "and token model to be checked (the shared machine's load moved between the runs of one validation); "
          "`fit_err_*`: the cost model exactly as fitted by fit_cost.py, nothing calibrated, no background load.",
          "", "| metric | mean abs error | max abs error | rows within 10% |", "|---|---|---|---|"]
    for k, s in doc["summary"].items():
        L.append(f"| {k} | {pctf(s['mean_abs_err'])} | {pctf(s['max_abs_err'])} | {s['within_10pct']} of {s['n']} |")
    L += ["", "| workers | calibrated on | decode-only steps x | other steps x | background load | makespan error "
          "there | load avg |", "|---|---|---|---|---|---|---|"]
    for n, cs in (doc.get("calibration") or {}).items():
        for c in cs:
            L.append(f"| {n} | {', '.join(c['workloads'])} | {c['model']['scale_decode']} | "
                     f"{c['model']['scale_mixed']} | {c['bg_load']} on {c['cores']} cores | "
                     f"{c['calibration_makespan_err']:.1%} | {c['loadavg'][0]} |")
    if doc.get("cost_model"):
        L += ["", "Cost model (bench/sim/cost.json): " + ", ".join(f"{k} {v:.4g}" for k, v in doc["cost_model"].items())]
    with open(path, "w") as f:
        f.write("\n".join(L) + "\n")


# ---------------------------------------------------------------- scale

def scale(a):
    workers = [int(x) for x in str(a.workers).split(",")]
    jobs_l = [int(x) for x in str(a.jobs).split(",")]
    pols = a.policies.split(",")
    arrivals = a.arrivals.split(",")
    names = R.W.NAMES
    recs = []
    out_json = os.path.join(a.out, "scale.json")
    os.makedirs(a.out, exist_ok=True)
    if a.append and os.path.exists(out_json):  # keep the points already run (all jobs done)
        with open(out_json) as f:
            recs = [r for r in json.load(f)["records"] if r["jobs_done"] == r["n_jobs"]]
    have = {(r["jobs"], r["workers"], r["arrival"], r["policy"]): r for r in recs}
    max_jobs = max(jobs_l)
    svc = R.service_for(names, n_seeds=max_jobs // 6 + 3)
    try:
        for nj in jobs_l:
            for n in workers:
                batch_tp = {}
                for arr in arrivals:
                    if arr == "poisson:auto":  # 80% of the best baseline's batch throughput
                        base = [batch_tp[p] for p in pols if p != "helium" and p in batch_tp]
                        if not base:
                            continue
                        rate = 0.8 * max(base) / 60.0
                        arr_eff = f"poisson:{rate:.4f}"
                    else:
                        arr_eff = arr
                    scen = R.scenario(names, nj, a.seed, None, arr_eff, svc.port)
                    for pol in pols:
                        if (nj, n, arr, pol) in have:
                            if arr == "batch":
                                batch_tp[pol] = have[(nj, n, arr, pol)]["throughput_wpm"]
                            continue
                        l0 = load()
                        ct = ["--coord-time", str(a.coord_time)] if a.coord_time else None
                        # with the coordinator's time in the loop, its decisions follow its CPU
                        # timing: --reps runs, the median throughput's kept, the others' recorded
                        runs = [R.run_sim(a.exe, a.model, scen, n, pol, a.geom, a.cost, a.workdir, ct)
                                for _ in range(max(1, a.reps) if a.coord_time else 1)]
                        runs.sort(key=lambda x: x[0]["throughput_wpm"])
                        s, dig = runs[len(runs) // 2]
                        if len(runs) > 1:
                            s["reps_throughput_wpm"] = [x[0]["throughput_wpm"] for x in runs]
                            s["reps_decision_over_step"] = sorted(x[0]["decision_over_step"] for x in runs)
                        if pol == "helium" and a.coord_time and nj <= a.instant_max_jobs:
                            # the same point with an instant coordinator: what its own time cost
                            s0, dig0 = R.run_sim(a.exe, a.model, scen, n, pol, a.geom, a.cost, a.workdir)
                            s["instant"] = {k: s0[k] for k in ("makespan_s", "throughput_wpm", "latency_p99_s",
                                                               "coord_cpu_per_decision_us", "decision_over_step",
                                                               "place_over_step", "passes", "sim_wall_s")}
                            s["instant"]["same_outputs"] = dig0 == dig
                        s.update({"arrival": arr, "arrival_eff": arr_eff, "jobs": nj, "loadavg": l0,
                                  "outputs_digest": hashlib.sha1("\n".join(f"{k} {v[0]}" for k, v in
                                                                 sorted(dig.items())).encode()).hexdigest()})
                        recs.append(s)
                        if arr == "batch":
                            batch_tp[pol] = s["throughput_wpm"]
                        R.log(f"scale {nj} jobs {n:3d}w {arr_eff:16s} {pol:8s} tp {s['throughput_wpm']:8.1f}/min "
                              f"p50 {s['latency_p50_s']:.1f}s p99 {s['latency_p99_s']:.1f}s over-min "
                              f"{s['over_min']:.2f} pulls {s['kv_pulls']} cpu/dec "
                              f"{s['coord_cpu_per_decision_us']:.0f}us ({s['decision_over_step']:.1%} of a step) "
                              f"coord busy {s.get('coord_busy_over_makespan', 0):.0%} wall {s['sim_wall_s']:.0f}s")
                        with open(out_json, "w") as f:
                            json.dump(scale_doc(a, recs), f, indent=1)
    finally:
        svc.close()
    doc = scale_doc(a, recs)
    with open(out_json, "w") as f:
        json.dump(doc, f, indent=1)
    write_scale_md(doc, os.path.join(a.out, "scale.md"))
    plot(out_json, a.out)
    return 0


def scale_doc(a, recs):
    ratios = []
    keys = sorted({(r["jobs"], r["workers"], r["arrival"]) for r in recs})
    for k in keys:
        rs = {r["policy"]: r for r in recs if (r["jobs"], r["workers"], r["arrival"]) == k}
        h = rs.get("helium")
        base = [(p, r) for p, r in rs.items() if p != "helium" and r["jobs_done"] == r["n_jobs"]]
        if not h or not base:
            continue
        bp, br = max(base, key=lambda x: x[1]["throughput_wpm"])
        ratios.append({"jobs": k[0], "workers": k[1], "arrival": k[2], "best_baseline": bp,
                       "throughput_ratio": round(h["throughput_wpm"] / br["throughput_wpm"], 3)
                       if br["throughput_wpm"] else None,
                       "helium_p99_s": h["latency_p99_s"], "baseline_p99_s": br["latency_p99_s"],
                       "same_outputs": len({r["outputs_digest"] for r in rs.values()}) == 1})
    return {"date": datetime.datetime.utcnow().strftime("%Y-%m-%d %H:%M UTC"), "machine": machine(),
            "settings": {"geometry": a.geom, "cost": a.cost and os.path.relpath(a.cost, R.SRC), "seed": a.seed,
                         "workloads": R.W.NAMES, "coord_time": a.coord_time},
            "records": recs, "ratios": ratios}


def write_scale_md(doc, path):
    L = [f"# Cluster scale by simulation ({doc['date']})", "",
         f"helium-sim (bench/sim) on {doc['machine']['cpu']}: the coordinator's own modules against simulated "
         "workers (one core each, the fitted cost model of bench/sim/cost.json), jobs mixed round-robin from every "
         "bench workload (scale small). Throughput in jobs per minute of simulated time; coordinator CPU measured "
         "around every call into it; `cpu/dec` = coordinator CPU per Dispatch; `% step` = that over the mean "
         "simulated step; `coord busy` = the simulated time the coordinator spent computing over the makespan "
         f"(its CPU time in the loop, --coord-time {doc['settings'].get('coord_time', 0)}: messages wait while it "
         "computes, and a coordinator that cannot keep up shows in throughput and latency; 1.0 = never idle). "
         "`instant` (helium): the same point with a coordinator that takes no simulated time, one placement pass "
         "per simulated instant (the upper bound on passes, so the most CPU per decision). With --reps N each "
         "point with the coordinator's time in the loop ran N times (its timing moves its decisions): the run of "
         "the median throughput is shown, the range in parentheses.", "",
         "| jobs | workers | arrival | policy | done | throughput /min | p50 s | p99 s | hit rate | computed / min "
         "| pulls | pull MB | cpu/dec us | % step | coord busy | instant: throughput, cpu/dec us, % step | sim wall s |",
         "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in doc["records"]:
        ins = r.get("instant")
        ins_s = (f"{ins['throughput_wpm']:.1f}, {ins['coord_cpu_per_decision_us']:.0f}, "
                 f"{ins['decision_over_step']:.1%}" if ins else "-")
        reps = r.get("reps_throughput_wpm")
        tp = f"{r['throughput_wpm']:.1f}" + (f" ({reps[0]:.0f}-{reps[-1]:.0f})" if reps else "")
        L.append(f"| {r['jobs']} | {r['workers']} | {r['arrival_eff']} | {r['policy']} | {r['jobs_done']}/{r['n_jobs']} "
                 f"| {tp} | {r['latency_p50_s']:.1f} | {r['latency_p99_s']:.1f} | "
                 f"{r['hit_rate']:.3f} | {r['over_min']:.2f} | {r['kv_pulls']} | {r['kv_pull_bytes'] / 1e6:.1f} | "
                 f"{r['coord_cpu_per_decision_us']:.0f} | {r['decision_over_step']:.1%} | "
                 f"{r.get('coord_busy_over_makespan', 0):.3f} | {ins_s} | {r['sim_wall_s']:.0f} |")
    L += ["", "Helium against the best baseline (by throughput) at each point:", "",
          "| jobs | workers | arrival | best baseline | helium / best throughput | helium p99 s | baseline p99 s "
          "| identical outputs |", "|---|---|---|---|---|---|---|---|"]
    for q in doc["ratios"]:
        L.append(f"| {q['jobs']} | {q['workers']} | {q['arrival']} | {q['best_baseline']} | "
                 f"{q['throughput_ratio']:.2f}x | {q['helium_p99_s']:.1f} | {q['baseline_p99_s']:.1f} | "
                 f"{'yes' if q['same_outputs'] else 'NO'} |")
    with open(path, "w") as f:
        f.write("\n".join(L) + "\n")


PLOT = r'''
import json, sys
import matplotlib
matplotlib.use("Agg")
import matplotlib.pyplot as plt
doc = json.load(open(sys.argv[1])); out = sys.argv[2]
recs = doc["records"]
def series(arr, key, nj):
    s = {}
    for r in recs:
        if r["arrival"] == arr and r["jobs"] == nj:
            s.setdefault(r["policy"], []).append((r["workers"], r[key]))
    return {p: sorted(v) for p, v in s.items()}
# the job count run at the most cluster sizes (a curve needs several points)
nj = max({r["jobs"] for r in recs}, key=lambda j: (len({r["workers"] for r in recs if r["jobs"] == j}), j))
arrs = sorted({r["arrival"] for r in recs})
for key, ylab, fname, log in [("throughput_wpm", "jobs / min (simulated)", "sim_throughput.png", True),
                              ("latency_p99_s", "p99 job latency, s (simulated)", "sim_p99.png", True)]:
    fig, axs = plt.subplots(1, len(arrs), figsize=(5.5 * len(arrs), 4), squeeze=False)
    for ax, arr in zip(axs[0], arrs):
        for p, v in series(arr, key, nj).items():
            ax.plot([x for x, _ in v], [y for _, y in v], marker="o", label=p)
        ax.set_xscale("log", base=2); ax.set_xlabel("workers")
        if log: ax.set_yscale("log")
        ax.set_ylabel(ylab); ax.set_title(f"{nj} jobs, {arr} arrivals"); ax.grid(alpha=.3); ax.legend(fontsize=8)
    fig.tight_layout(); fig.savefig(f"{out}/{fname}", dpi=110); plt.close(fig)
fig, ax = plt.subplots(figsize=(5.5, 4))
for p, v in series(arrs[0], "coord_cpu_per_decision_us", nj).items():
    ax.plot([x for x, _ in v], [y / 1e3 for _, y in v], marker="o", label=p)
ax.set_xscale("log", base=2); ax.set_yscale("log"); ax.set_xlabel("workers")
ax.set_ylabel("coordinator CPU per decision, ms"); ax.set_title(f"{nj} jobs, {arrs[0]} arrivals")
ax.grid(alpha=.3); ax.legend(fontsize=8); fig.tight_layout(); fig.savefig(f"{out}/sim_decision_cpu.png", dpi=110)
'''


def plot(json_path, outdir, script=PLOT):
    py = VENV_PY if os.path.exists(VENV_PY) else sys.executable
    p = subprocess.run([py, "-c", script, json_path, outdir], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    if p.returncode:
        R.log(f"bench/sim: no plots ({p.stderr.decode()[-300:]})")


PLOT_CURVE = r'''
import json, os, sys
import matplotlib
matplotlib.use("Agg")
import matplotlib.pyplot as plt
path = sys.argv[1]; doc = json.load(open(path)); out = sys.argv[2]
n = doc["settings"]["workers"]
fig, axs = plt.subplots(1, 2, figsize=(11, 4))
for ax, key, lab in [(axs[0], "latency_p50_s", "p50"), (axs[1], "latency_p99_s", "p99")]:
    for pol, pts in doc["points"].items():
        xs = [p["offered_wpm"] for p in pts if p.get(key) is not None]
        ys = [p[key] for p in pts if p.get(key) is not None]
        ax.plot(xs, ys, marker="o", label=pol, lw=2.5 if pol == "helium" else 1.2)
    if key == "latency_p99_s":
        ax.axhline(doc["bound_s"], ls="--", color="gray", label=f"bound {doc['bound_s']:.2f} s")
    ax.set_yscale("log"); ax.set_xlabel("offered load, jobs / min (simulated)")
    ax.set_ylabel(f"{lab} job latency, s"); ax.set_title(f"{n} simulated workers, {lab}")
    ax.grid(alpha=.3); ax.legend(fontsize=8)
fig.tight_layout(); fig.savefig(os.path.join(out, f"sim_curve_{n}w.png"), dpi=110)
'''


# ---------------------------------------------------------------- curve

def curve(a):
    """Latency against offered load at one cluster size, in simulated time
    (Poisson arrivals, the same jobs and submit times for every policy): the
    sustainable load of each policy under a p99 bound, as bench/arrival.py
    computes it for the real 2-worker cluster (its interp_load, p99_at)."""
    sys.path.insert(0, R.BENCH)
    import arrival as AR  # noqa: E402
    n, nj = a.workers, a.jobs
    pols = a.policies.split(",")
    names = a.workloads.split(",") if a.workloads else R.W.NAMES
    ct = ["--coord-time", str(a.coord_time)] if a.coord_time else None
    svc = R.service_for(names, n_seeds=nj // 6 + 3)
    pts = {p: [] for p in pols}
    try:
        bscen = R.scenario(names, nj, a.seed, None, "batch", svc.port)
        b, _ = R.run_sim(a.exe, a.model, bscen, n, "helium", a.geom, a.cost, a.workdir, ct)
        cap = b["throughput_wpm"]
        R.log(f"curve {n}w {nj} jobs: helium batch throughput {cap:.1f} jobs/min")
        bound = a.p99_bound
        stopped = set()
        for f in [float(x) for x in a.fractions.split(",")]:
            rate = f * cap
            scen = R.scenario(names, nj, a.seed, None, f"poisson:{rate / 60.0:.6f}", svc.port)
            ref = None
            for pol in pols:
                if pol in stopped:
                    continue
                s, dig = R.run_sim(a.exe, a.model, scen, n, pol, a.geom, a.cost, a.workdir, ct)
                ok = s["jobs_done"] == s["n_jobs"]
                ref = ref or dig
                pt = {"offered_wpm": round(rate, 2), "achieved_wpm": s["throughput_wpm"] if ok else None,
                      "latency_p50_s": s["latency_p50_s"], "latency_p99_s": s["latency_p99_s"] if ok else None,
                      "computed_tokens": s["computed_tokens"], "generated_tokens": s["generated_tokens"],
                      "min_prompt_tokens": s["min_prompt_tokens"], "over_min": s["over_min"],
                      "coord_busy_over_makespan": s.get("coord_busy_over_makespan"),
                      "same_outputs": dig == ref}
                pts[pol].append(pt)
                R.log(f"curve {n}w {rate:8.1f}/min {pol:8s} achieved {s['throughput_wpm']:.1f}/min p50 "
                      f"{s['latency_p50_s']:.2f}s p99 {s['latency_p99_s']:.2f}s outputs "
                      f"{'same' if dig == ref else 'DIFFER'}")
            if not bound:  # p99 factor x the lowest p99 (or p50) of any baseline at the lowest load
                bound = AR.low_bound(pts, pols, a.p99_factor, a.p99_base) or 0
            # climb until past 2x the larger bound of both bases, so either analysis holds
            stop_at = max([b for b in (bound, AR.low_bound(pts, pols, a.p99_factor, "p99"),
                                       AR.low_bound(pts, pols, a.p99_factor, "p50")) if b] or [0])
            for pol in pols:
                if pts[pol] and (pts[pol][-1]["latency_p99_s"] or 1e9) > 2 * stop_at:
                    stopped.add(pol)
            if len(stopped) == len(pols):
                break
    finally:
        svc.close()
    an = AR.analyse(pts, pols, bound)
    other = "p50" if a.p99_base == "p99" else "p99"
    alt_bound = None if a.p99_bound else AR.low_bound(pts, pols, a.p99_factor, other)
    an_alt = AR.analyse(pts, pols, alt_bound) if alt_bound else None
    rule = f"{a.p99_bound:g} s (given)" if a.p99_bound else AR.rule_text(a.p99_factor, a.p99_base)
    doc = {"date": datetime.datetime.utcnow().strftime("%Y-%m-%d %H:%M UTC"), "machine": machine(),
           "settings": {"workers": n, "jobs": nj, "workloads": names, "fractions": a.fractions,
                        "coord_time": a.coord_time, "p99_factor": a.p99_factor, "p99_base": a.p99_base,
                        "bound_rule": rule, "cost": a.cost and
                        os.path.relpath(a.cost, R.SRC), "seed": a.seed},
           "helium_batch_wpm": cap, "bound_s": round(bound, 3), "points": pts, "analysis": an,
           "analysis_alt": an_alt, "bound_rule_alt": AR.rule_text(a.p99_factor, other) if an_alt else None}
    os.makedirs(a.out, exist_ok=True)
    base = os.path.join(a.out, f"curve_{n}w")
    with open(base + ".json", "w") as f:
        json.dump(doc, f, indent=1)
    L = [f"# Latency against offered load, {n} simulated workers ({doc['date']})", "",
         f"helium-sim on {doc['machine']['cpu']}; {nj} jobs per point mixed from every bench workload, Poisson "
         f"arrivals at fractions {a.fractions} of helium's batch throughput ({cap:.1f} jobs/min), the same submit "
         f"times for every policy; coordinator time in the loop (--coord-time {a.coord_time}). p99 bound "
         f"{bound:.2f} s ({rule}); sustainable load = the "
         "highest offered load with p99 within it, linear between points.", "",
         "| policy | offered /min | achieved /min | p50 s | p99 s | computed / min | coord busy | outputs |",
         "|---|---|---|---|---|---|---|---|"]
    for pol in pols:
        for pt in pts[pol]:
            L.append(f"| {pol} | {pt['offered_wpm']:.1f} | {pt['achieved_wpm'] or 0:.1f} | {pt['latency_p50_s']:.2f} | "
                     f"{pt['latency_p99_s'] if pt['latency_p99_s'] is not None else float('nan'):.2f} | "
                     f"{pt['over_min']:.2f} | {pt['coord_busy_over_makespan'] or 0:.2f} | "
                     f"{'same' if pt['same_outputs'] else 'DIFFER'} |")
    L += ["", "Sustainable load (jobs/min): " + ", ".join(f"{p} {v}" for p, v in an["sustainable_wpm"].items()) + "."]
    if an.get("sustainable_ratio"):
        L.append(f"helium / best baseline ({an['best_baseline']}): {an['sustainable_ratio']}x; helium's p99 at "
                 f"the best baseline's sustainable load: {an['helium_p99_there_s']} s, {an['p99_ratio_there']} of "
                 "the bound.")
    if an_alt and an_alt.get("sustainable_ratio"):
        L.append(f"Under the other rule ({doc['bound_rule_alt']}: {an_alt['bound_s']} s): sustainable load " +
                 ", ".join(f"{p} {v}" for p, v in an_alt["sustainable_wpm"].items()) +
                 f"; helium / {an_alt['best_baseline']} {an_alt['sustainable_ratio']}x; helium's p99 there "
                 f"{an_alt['p99_ratio_there']} of the bound.")
    elif an_alt:
        L.append(f"Under the other rule ({doc['bound_rule_alt']}: {an_alt['bound_s']} s): sustainable load " +
                 ", ".join(f"{p} {v}" for p, v in an_alt["sustainable_wpm"].items()) + ".")
    with open(base + ".md", "w") as f:
        f.write("\n".join(L) + "\n")
    plot(base + ".json", a.out, PLOT_CURVE)
    R.log("\n".join(L[-2:]))
    return 0


def main(a):
    if a.cmd == "validate":
        return validate(a)
    if a.cmd == "scale":
        return scale(a)
    if a.cmd == "curve":
        return curve(a)
    return 2
