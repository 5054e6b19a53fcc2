#!/usr/bin/env python3
"""Workflow benchmark: the agentic workloads of bench/workloads under every
run-time policy of the same Helium cluster, side by side. Called by
bench/workflows; Python 3 standard library only for the run itself.

For each workload and each policy (isolated, prefix, router, kvflow, helium):
start a fresh local cluster (scripts/cluster.sh: one coordinator, 2 workers,
1 thread each, a generated model), submit the workload's whole batch of jobs at
once with `heliumctl submit --policy P`, wait for all of them, then record
  makespan        first submit to last finish (coordinator clock)
  throughput      jobs (workflows) per minute over the makespan
  p50, p99        job latency (submit to finish), nearest-rank over the batch
  computed        prompt tokens the workers computed (counter computed_tokens;
                  fallback: the workers' own computed_tokens, then prompt-cached)
  minimum         prompt tokens any system must compute: the tokens of the trie
                  of every LLM prompt of the batch, counted once (counter
                  min_prompt_tokens if the coordinator has it, else rendered
                  here from the reference run's outputs and tokenized with
                  `helium-worker tokenize`)
  hit rate        cached / prompt tokens;  KV transfers (kv_pulls, pulled tokens)
  planning        counter plan_us (cumulative planning time)
and check that every job's outputs equal those of the `isolated` policy (all
calls are greedy, so they must), reporting any mismatch loudly. Then print,
per workload, helium's throughput over each baseline's and the averages, and
write bench/results/workflows.json (one record per workload and policy),
workflows.md and PNG plots (matplotlib if some Python has it, else gnuplot,
else no plots).

Counters a coordinator does not have yet read as absent (None), never as 0.

With --arrival PATTERN (poisson:RATES, poisson:auto, trace:FILE) jobs arrive
over time instead: bench/arrival.py runs each policy at each offered load and
writes latency-throughput curves (results/arrival/).
"""
import argparse
import datetime
import http.server
import json
import math
import os
import platform
import random
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time

# the bench cluster runs without keys on loopback (scripts/cluster.sh passes --insecure
# unless HELIUM_CURVE=1): heliumctl must say so too (docs/security.md)
if not os.environ.get("HELIUMCTL_KEY"):
    os.environ.setdefault("HELIUMCTL_INSECURE", "1")

HERE = os.path.dirname(os.path.abspath(__file__))
SRC = os.path.dirname(HERE)
sys.path.insert(0, os.path.join(HERE, "workloads"))
sys.dont_write_bytecode = True  # no __pycache__ in the source tree
import workloads as W  # noqa: E402

POLICIES = ["isolated", "prefix", "router", "kvflow", "helium"]
BASELINES = ["isolated", "prefix", "router", "kvflow"]
FINISHED = ("DONE", "FAILED", "CANCELED")


def log(msg):
    print(msg, flush=True)


def warn(msg):
    print(msg, file=sys.stderr, flush=True)


# ---------------------------------------------------------------- helpers

def run(cmd, env=None, timeout=60, check=True):
    """Runs cmd; returns stdout as text (undecodable bytes kept as surrogates)."""
    p = subprocess.run(cmd, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                       timeout=timeout)
    out = p.stdout.decode("utf-8", "surrogateescape")
    if check and p.returncode != 0:
        err = p.stderr.decode("utf-8", "replace").strip()
        raise RuntimeError(f"{' '.join(cmd[:3])}... exited {p.returncode}: {err[-400:] or out[-400:]}")
    return out


def ports_free(base, offsets):
    for off in offsets:
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            s.bind(("127.0.0.1", base + off))
        except OSError:
            return False
        finally:
            s.close()
    return True


def pick_port(rng, n_workers):
    """A base port whose cluster ports (see scripts/cluster.sh) are all free."""
    offs = [0, 1, 2] + [10 + i for i in range(1, n_workers + 1)]
    for _ in range(200):
        base = rng.randrange(20000, 60000, 20)
        if ports_free(base, offs):
            return base
    raise RuntimeError("no free port range found")


def percentile(xs, q):
    """Nearest-rank percentile (q in 0..100) of a non-empty list."""
    s = sorted(xs)
    k = max(1, math.ceil(q / 100.0 * len(s)))
    return s[k - 1]


def counters_of(status):
    return dict(status.get("counters") or {})


def worker_sum(status, key):
    tot, seen = 0, False
    for w in status.get("workers") or []:
        c = w.get("counters") or {}
        if key in c:
            tot += c[key]
            seen = True
    return tot if seen else None


def delta(after, before, key):
    if key not in after:
        return None
    return after[key] - before.get(key, 0)


def machine_info():
    cpu = platform.processor()
    mem = None
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
        with open("/proc/meminfo") as f:
            mem = f.readline().split()[1]
    except OSError:
        pass
    return {"cpu": cpu, "nproc": os.cpu_count(), "mem_kb": int(mem) if mem else None,
            "kernel": platform.release(), "python": platform.python_version(),
            "loadavg_start": [round(x, 2) for x in os.getloadavg()]}


def git_rev():
    try:
        return run(["git", "-C", SRC, "rev-parse", "--short", "HEAD"], timeout=10).strip()
    except Exception:
        return None


# ---------------------------------------------------------------- tool service

class Service:
    """The local HTTP service tool operators call: GET PATH -> a fixed JSON body."""

    def __init__(self):
        self.routes = {}
        self.hits = 0  # requests answered; guarded by lock (the server is threaded)
        self.lock = threading.Lock()
        routes, svc = self.routes, self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                body = routes.get(self.path)
                with svc.lock:
                    svc.hits += 1
                data = (body if body is not None else json.dumps({"error": "not found"})).encode()
                self.send_response(200 if body is not None else 404)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *a):
                pass

        class Server(http.server.ThreadingHTTPServer):
            request_queue_size = 1024  # the default 5 drops connections when a batch fans out
            daemon_threads = True

        self.httpd = Server(("127.0.0.1", 0), Handler)
        self.port = self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


# ---------------------------------------------------------------- cluster

class Cluster:
    """A fresh local cluster in DIR (scripts/cluster.sh up/down)."""

    def __init__(self, args, cdir, port):
        self.bin = args.bin
        self.dir = cdir
        self.env = dict(os.environ)
        self.env.update({"HELIUM_BIN": args.bin, "HELIUM_MODEL": args.model, "HELIUM_PORT": str(port),
                         "HELIUM_THREADS": str(args.threads), "HELIUM_WATCH_PID": str(os.getpid()),
                         "HELIUM_COORD_ARGS": " ".join(["--allow-host", "127.0.0.1", "--baseline-pulls",
                                                        str(args.baseline_pulls)] + args.coord_args.split()),
                         "HELIUM_WORKER_ARGS": args.worker_args})
        self.endpoint = f"tcp://127.0.0.1:{port}"
        self.n = args.workers

    def up(self):
        os.makedirs(self.dir, exist_ok=True)
        run(["bash", os.path.join(SRC, "scripts", "cluster.sh"), "up", self.dir, str(self.n)], env=self.env,
            timeout=120)

    def down(self):
        try:
            run(["bash", os.path.join(SRC, "scripts", "cluster.sh"), "down", self.dir], env=self.env, timeout=60,
                check=False)
        except Exception as e:  # noqa: BLE001
            warn(f"bench/workflows: cluster down in {self.dir}: {e}")

    def ctl(self, *a, timeout_ms=10000, check=True):
        return run([os.path.join(self.bin, "heliumctl"), "--coordinator", self.endpoint, "--timeout-ms",
                    str(timeout_ms), "--json", *a], env=self.env, timeout=timeout_ms / 1000 + 30, check=check)

    def ctl_json(self, *a, timeout_ms=10000):
        return json.loads(self.ctl(*a, timeout_ms=timeout_ms))


# ---------------------------------------------------------------- one run

def submit_batch(cl, wf_path, job_files, policy, tag):
    """Submits every job at once (one heliumctl per job, all started together).
    Returns ([job id or None], [error text or None], wall time of the first start)."""
    procs = []
    t0 = time.time()
    for i, files in enumerate(job_files):
        cmd = [os.path.join(cl.bin, "heliumctl"), "--coordinator", cl.endpoint, "--timeout-ms", "20000", "--json",
               "submit", wf_path, "--policy", policy, "--tag", f"{tag}-{i}"]
        for k, p in files.items():
            cmd += ["--input-file", f"{k}={p}"]
        procs.append(subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                      env=cl.env))
    ids, errs = [], []
    for p in procs:
        out, err = p.communicate(timeout=60)
        if p.returncode == 0:
            try:
                ids.append(json.loads(out)["job_id"])
                errs.append(None)
                continue
            except (ValueError, KeyError):
                pass
        ids.append(None)
        errs.append((err.decode("utf-8", "replace") or out.decode("utf-8", "replace")).strip()[-300:])
    return ids, errs, t0


def wait_jobs(cl, ids, timeout_s):
    """Polls until every job in ids finished; returns {job id: state}."""
    want = set(i for i in ids if i)
    deadline = time.time() + timeout_s
    states = {}
    delay = 0.1
    while True:
        try:
            lst = cl.ctl_json("jobs", "--limit", "100000")
            states = {j["job_id"]: j["state"] for j in lst.get("jobs", []) if j["job_id"] in want}
        except Exception as e:  # noqa: BLE001
            warn(f"bench/workflows: jobs poll failed: {e}")
        if want and all(states.get(i) in FINISHED for i in want):
            return states
        if time.time() > deadline:
            for i in want:
                if states.get(i) not in FINISHED:
                    cl.ctl("cancel", i, check=False)
            return states
        time.sleep(delay)
        delay = min(0.5, delay * 1.5)


def llm_outputs(result):
    """{op id: output or [outputs]} of a job result's LLM, map and tool ops."""
    out = {}
    for op in result.get("ops", []):
        if op.get("kind") in ("llm", "map", "tool") and op.get("state") == "DONE":
            out[op["op_id"]] = op.get("outputs") if op.get("outputs") else op.get("output", "")
    return out


def run_policy(args, wl, wl_dir, policy, rng, service):
    """One fresh cluster, one batch under one policy; returns the record."""
    rec = {"workload": wl.name, "policy": policy, "n_jobs": len(wl.jobs),
           "llm_calls": sum(wl.n_llm_ops(j) for j in wl.jobs), "error": None}
    cdir = os.path.join(args.workdir, f"cluster-{wl.name}-{policy}")
    shutil.rmtree(cdir, ignore_errors=True)
    cl = Cluster(args, cdir, pick_port(rng, args.workers))
    t_start = time.time()
    try:
        cl.up()
        before = cl.ctl_json("status")
        ids, errs, t0 = submit_batch(cl, wl_dir["wf"], wl_dir["jobs"], policy, f"{wl.name}-{policy}")
        if not any(ids):
            rec["error"] = f"no job accepted: {errs[0]}"
            return rec, None
        if any(e for e in errs):
            rec["error"] = f"{sum(1 for e in errs if e)} submits failed: {next(e for e in errs if e)}"
        wait_jobs(cl, ids, args.timeout)
        t1 = time.time()
        time.sleep(args.settle)  # let the workers' last heartbeats (counters) arrive
        after = cl.ctl_json("status")
        results = []
        for jid in ids:
            results.append(cl.ctl_json("result", jid) if jid else None)
    except Exception as e:  # noqa: BLE001
        rec["error"] = str(e)[-500:]
        return rec, None
    finally:
        cl.down()
        rec["wall_s"] = round(time.time() - t_start, 2)

    ok = [r for r in results if r and r.get("state") == "DONE"]
    rec["jobs_done"] = len(ok)
    rec["jobs_failed"] = sum(1 for r in results if r and r.get("state") != "DONE") + sum(1 for r in results if not r)
    if rec["jobs_failed"]:
        bad = next((r for r in results if r and r.get("state") != "DONE"), None)
        msg = (bad or {}).get("error", {}).get("message") if bad else "not submitted"
        rec["error"] = rec["error"] or f"{rec['jobs_failed']} jobs did not finish: {msg or (bad or {}).get('state')}"
    sub = [r["timing"]["submitted_us"] for r in results if r and r["timing"].get("submitted_us")]
    fin = [r["timing"]["finished_us"] for r in ok if r["timing"].get("finished_us")]
    lat = [(r["timing"]["finished_us"] - r["timing"]["submitted_us"]) / 1e6 for r in ok
           if r["timing"].get("finished_us") and r["timing"].get("submitted_us")]
    if sub and fin and len(ok) == len(results):
        mk = (max(fin) - min(sub)) / 1e6
        rec["makespan_s"] = round(mk, 3)
        rec["throughput_wpm"] = round(len(ok) / mk * 60.0, 2) if mk > 0 else None
    else:
        rec["makespan_s"] = rec["throughput_wpm"] = None
    if sub and len(sub) == len(results):  # per job, in the batch's order (bench/sim validate replays the submits)
        rec["job_submit_s"] = [round((r["timing"]["submitted_us"] - min(sub)) / 1e6, 4) for r in results]
        rec["job_latency_s"] = [round((r["timing"]["finished_us"] - r["timing"]["submitted_us"]) / 1e6, 4)
                                if r.get("state") == "DONE" and r["timing"].get("finished_us") else None
                                for r in results]
    rec["client_makespan_s"] = round(t1 - t0, 3)
    rec["latency_p50_s"] = round(percentile(lat, 50), 3) if lat else None
    rec["latency_p99_s"] = round(percentile(lat, 99), 3) if lat else None

    cb, ca = counters_of(before), counters_of(after)
    raw = {k: ca[k] - cb.get(k, 0) for k in ca if isinstance(ca[k], (int, float))}
    rec["counters"] = raw
    rec["prompt_tokens"] = delta(ca, cb, "prompt_tokens")
    rec["cached_tokens"] = delta(ca, cb, "cached_tokens")
    if "computed_tokens" in ca:
        rec["computed_tokens"], rec["computed_source"] = delta(ca, cb, "computed_tokens"), "coordinator"
    elif worker_sum(after, "computed_tokens") is not None:
        rec["computed_tokens"] = worker_sum(after, "computed_tokens") - (worker_sum(before, "computed_tokens") or 0)
        rec["computed_source"] = "workers"
    elif rec["prompt_tokens"] is not None and rec["cached_tokens"] is not None:
        rec["computed_tokens"], rec["computed_source"] = rec["prompt_tokens"] - rec["cached_tokens"], "prompt-cached"
    else:
        rec["computed_tokens"], rec["computed_source"] = None, None
    rec["min_prompt_tokens"] = delta(ca, cb, "min_prompt_tokens")
    rec["min_source"] = "coordinator" if rec["min_prompt_tokens"] is not None else None
    p, c = rec["prompt_tokens"], rec["cached_tokens"]
    rec["hit_rate"] = round(c / p, 4) if p and c is not None else None
    rec["pulled_tokens"] = delta(ca, cb, "pulled_tokens")
    rec["kv_pulls"] = delta(ca, cb, "kv_pulls")
    pu = delta(ca, cb, "plan_us")
    rec["plan_ms"] = round(pu / 1000.0, 2) if pu is not None else None
    rec["generated_tokens"] = delta(ca, cb, "generated_tokens")
    rec["worker_forward_s"] = round((worker_sum(after, "forward_us") or 0) / 1e6, 3)
    rec["workers"] = args.workers
    # the workers' own counters (summed over workers, this batch only): KV
    # evictions, pins refused, pulls waited on, ...
    wkeys = sorted({k for w in after.get("workers") or [] for k, v in (w.get("counters") or {}).items()
                    if isinstance(v, (int, float))})
    rec["worker_counters"] = {k: worker_sum(after, k) - (worker_sum(before, k) or 0) for k in wkeys}
    rec["tool_requests"] = service.hits
    rec["job_policy"] = sorted(set(r.get("policy", "") for r in results if r))
    rec["loadavg_end"] = [round(x, 2) for x in os.getloadavg()]
    return rec, results


# ---------------------------------------------------------------- minimum tokens

_PH = re.compile(r"\{\{\s*(input\.[A-Za-z0-9_.-]+|op\.[A-Za-z0-9_.-]+|item|prev)\s*\}\}")


def render(tmpl, inputs, outputs, item=None):
    """Renders a template of the benchmark's workflows (no escapes, no loops)."""
    def sub(m):
        ref = m.group(1)
        if ref == "item":
            return item
        if ref == "prev":
            raise ValueError("loops are not rendered here")
        kind, name = ref.split(".", 1)
        if kind == "input":
            return inputs[name]
        return outputs[name]
    return _PH.sub(sub, tmpl)


def job_prompts(wl, job_inputs, result):
    """[(op id, [rendered prompts])] of one finished job; None if it cannot render."""
    vals = {}
    for spec in wl.workflow.get("inputs", []):
        if isinstance(spec, dict) and "default" in spec:
            vals[spec["name"]] = spec["default"]
    vals.update(job_inputs)
    outs = {op["op_id"]: op.get("output", "") for op in result.get("ops", [])}
    res = []
    for op in wl.workflow["ops"]:
        if op["type"] == "llm":
            res.append((op["id"], [render(op["prompt"], vals, outs)]))
        elif op["type"] == "map" and op["body"]["type"] == "llm":
            kind, name = op["over"].split(".", 1)
            src = vals[name] if kind == "input" else outs[name]
            if op.get("split", "auto") == "lines":
                items = [ln.strip() for ln in src.split("\n") if ln.strip()]
            else:
                return None
            res.append((op["id"], [render(op["body"]["prompt"], vals, outs, it) for it in items]))
        elif op["type"] in ("loop",):
            return None
    return res


def min_prompt_tokens(args, wl, results):
    """Tokens of the trie of every LLM prompt of the batch (counted once), and
    how many ops' token counts matched the coordinator's prompt_tokens."""
    cache = {}

    def tokenize(text):
        if text not in cache:
            if "\x00" in text:
                raise ValueError("prompt contains a NUL byte")
            out = run([os.path.join(args.bin, "helium-worker"), "tokenize", "--model", args.model, "--text", text],
                      timeout=60)
            cache[text] = tuple(int(x) for x in out.strip().split(",") if x)
        return cache[text]

    trie, nodes, checked, matched = {}, 0, 0, 0
    for job_inputs, res in zip(wl.jobs, results):
        prompts = job_prompts(wl, job_inputs, res)
        if prompts is None:
            return None, None
        ptoks = {op["op_id"]: op.get("prompt_tokens") for op in res.get("ops", [])}
        for op_id, texts in prompts:
            total = 0
            for t in texts:
                ids = tokenize(t)
                total += len(ids)
                node = trie
                for tok in ids:
                    nxt = node.get(tok)
                    if nxt is None:
                        nxt = node[tok] = {}
                        nodes += 1
                    node = nxt
            checked += 1
            matched += ptoks.get(op_id) == total
    return nodes, (matched, checked)


# ---------------------------------------------------------------- outputs check

def compare(ref, got):
    """Lists (job index, op id) whose outputs differ from the reference run."""
    bad = []
    for i, (a, b) in enumerate(zip(ref, got)):
        if not a or not b:
            bad.append((i, "(job missing)"))
            continue
        oa, ob = llm_outputs(a), llm_outputs(b)
        for k in sorted(set(oa) | set(ob)):
            if oa.get(k) != ob.get(k):
                bad.append((i, k))
        if a.get("output") != b.get("output") and not any(x[0] == i for x in bad):
            bad.append((i, "(job output)"))
    return bad


# ---------------------------------------------------------------- report

def fmt(v, nd=2):
    if v is None:
        return "n/a"
    if isinstance(v, float):
        return f"{v:.{nd}f}"
    return str(v)


def work_of(r):
    """Token work of a run: prompt tokens computed + tokens generated (on this
    CPU both cost about the same per token at these context lengths)."""
    if r.get("computed_tokens") is None or r.get("generated_tokens") is None:
        return None
    return r["computed_tokens"] + r["generated_tokens"]


def work_ratios(records, policies):
    """{workload: {baseline: baseline work / helium work}}: the most a
    compute-bound cluster can gain by doing less work."""
    by = {}
    for r in records:
        by.setdefault(r["workload"], {})[r["policy"]] = r
    out = {}
    for wlname, d in by.items():
        hw = work_of(d["helium"]) if d.get("helium") else None
        if not hw:
            continue
        out[wlname] = {b: (round(work_of(d[b]) / hw, 3) if d.get(b) and work_of(d[b]) else None)
                       for b in policies if b != "helium"}
    return out


def work_ceiling(d, best):
    """The best baseline's work over the least work any system must do (the
    minimum prompt tokens + the fewest tokens any policy generated): what a
    system doing only that work, as busy as the baseline, would gain. A decode
    row costs more than a prompt token here (the `decode` column), and every
    policy generates about the same tokens, so counting both alike overstates
    this bound a little rather than understating it. best: the baseline run
    with the highest throughput."""
    h = d.get("helium") or {}
    gens = [r["generated_tokens"] for r in d.values() if r.get("generated_tokens") is not None]
    bw = work_of(best)
    if not bw or not h.get("min_prompt_tokens") or not gens:
        return None
    return round(bw / (h["min_prompt_tokens"] + min(gens)), 3)


def ratios(records, policies):
    """{workload: {baseline: helium/baseline throughput}} and the averages."""
    by = {}
    for r in records:
        by.setdefault(r["workload"], {})[r["policy"]] = r
    out, avg = {}, {}
    if "helium" not in policies:
        return out, avg
    for wlname, d in by.items():
        h = (d.get("helium") or {}).get("throughput_wpm")
        row = {}
        for b in policies:
            if b == "helium":
                continue
            t = (d.get(b) or {}).get("throughput_wpm")
            row[b] = round(h / t, 3) if h and t else None
        bases = [d[b] for b in policies if b != "helium" and d.get(b) and d[b].get("throughput_wpm")]
        best = max(bases, key=lambda r: r["throughput_wpm"]) if bases else None
        row["best_baseline"] = round(h / best["throughput_wpm"], 3) if h and best else None
        row["ceiling"] = work_ceiling(d, best) if best else None
        out[wlname] = row
    for b in [p for p in policies if p != "helium"] + ["best_baseline", "ceiling"]:
        xs = [row[b] for row in out.values() if row.get(b)]
        if xs:
            avg[b] = {"mean": round(sum(xs) / len(xs), 3),
                      "geomean": round(math.exp(sum(math.log(x) for x in xs) / len(xs)), 3), "n": len(xs)}
    return out, avg


REUSE_KEYS = [("ops_merged", "merged"), ("ops_pruned", "pruned"), ("rcache_hits", "rcache"),
              ("dedup_hits", "dedup"), ("warm_tokens", "warm tok")]


def reuse(c):
    """The optimizer's work-saved counters of one run, compactly ("-" if none exist)."""
    parts = [f"{label} {c[k]}" for k, label in REUSE_KEYS if k in c]
    return ", ".join(parts) if parts else "-"


def reuse_cell(r):
    cell = reuse(r.get("counters") or {})
    if r.get("tool_requests"):
        cell = ("" if cell == "-" else cell + ", ") + f"tool HTTP {r['tool_requests']}"
    return cell


def min_cell(r):
    """The minimum the ratio uses, and the token-trie minimum where that differs."""
    m, t = r.get("min_prompt_tokens"), r.get("min_prompt_tokens_trie")
    if m is not None and t is not None and r.get("min_source") != "token trie" and m != t:
        return f"{m} (trie {t})"
    return fmt(m)


def busy_of(r):
    """Fraction of the makespan the workers spent in forward passes."""
    f, m, n = r.get("worker_forward_s"), r.get("makespan_s"), r.get("workers")
    return round(f / (n * m), 2) if f and m and n else None


def decode_of(r):
    """Share of the forward time in decode-only steps, and their mean batch (sequences per step)."""
    w = r.get("worker_counters") or {}
    f, d, st, rows = r.get("worker_forward_s"), w.get("decode_us"), w.get("decode_steps"), w.get("decode_rows")
    if not f or d is None or not st:
        return "n/a"
    return f"{d / 1e6 / f:.0%} x{rows / st:.1f}"


def table_rows(records):
    hdr = ["workload", "policy", "jobs", "makespan s", "wf/min", "p50 s", "p99 s", "computed tok", "min tok",
           "comp/min", "hit rate", "KV pulls (tok)", "reuse", "plan ms", "work tok", "busy", "decode", "outputs"]
    rows = []
    for r in records:
        if r.get("error") and r.get("makespan_s") is None:
            rows.append([r["workload"], r["policy"], f"0/{r['n_jobs']}", "FAILED"] + ["-"] * (len(hdr) - 5) +
                        ["see errors"])
            continue
        cm = (r["computed_tokens"] / r["min_prompt_tokens"]) if r.get("computed_tokens") is not None and \
            r.get("min_prompt_tokens") else None
        pulls = "n/a" if r.get("kv_pulls") is None else f"{r['kv_pulls']} ({fmt(r.get('pulled_tokens'))})"
        outs = r.get("outputs_check", "n/a")
        rows.append([r["workload"], r["policy"], f"{r.get('jobs_done', 0)}/{r['n_jobs']}", fmt(r.get("makespan_s")),
                     fmt(r.get("throughput_wpm"), 1), fmt(r.get("latency_p50_s")), fmt(r.get("latency_p99_s")),
                     fmt(r.get("computed_tokens")), min_cell(r), fmt(cm), fmt(r.get("hit_rate"), 3),
                     pulls, reuse_cell(r), fmt(r.get("plan_ms"), 1), fmt(work_of(r)), fmt(busy_of(r)), decode_of(r), outs])
    return hdr, rows


def print_table(hdr, rows):
    w = [max(len(str(x)) for x in col) for col in zip(hdr, *rows)] if rows else [len(h) for h in hdr]
    log("  ".join(h.ljust(w[i]) for i, h in enumerate(hdr)))
    for r in rows:
        log("  ".join(str(x).ljust(w[i]) for i, x in enumerate(r)))


def md_table(hdr, rows):
    s = "| " + " | ".join(hdr) + " |\n|" + "|".join("---" for _ in hdr) + "|\n"
    for r in rows:
        s += "| " + " | ".join(str(x).replace("|", "/") for x in r) + " |\n"
    return s


def write_md(path, doc, hdr, rows, plots):
    st = doc["settings"]
    m = doc["machine"]
    s = ["# Workflow benchmark (bench/workflows)", "",
         f"Run {doc['date']} on {m['cpu']} ({m['nproc']} cores; load average at start "
         f"{', '.join(str(x) for x in m['loadavg_start'])}; at the end "
         f"{', '.join(str(x) for x in m.get('loadavg_end', []))}), git {doc.get('git') or '?'} (plus uncommitted "
         f"changes, if any); the whole run took {doc.get('total_wall_s')} s.", "",
         "## Settings", "",
         f"- scale `{st['scale']}`, input seed {st['seed']}; model `{os.path.basename(st['model'])}` "
         f"(helium-mkmodel --preset {st['preset']} --arch llama --dtype f32 --seed 1: random weights, so the text is "
         "gibberish but every call does real prefill and decode work); all calls greedy",
         f"- cluster per run: a fresh coordinator and {st['workers']} workers with {st['threads']} thread(s) each, "
         "started by scripts/cluster.sh; the whole batch is submitted at once (one `heliumctl submit --policy P` per "
         "job, all started together)"
         + (f"; extra worker arguments `{st['worker_args']}`" if st.get("worker_args") else "")
         + (f"; extra coordinator arguments `{st['coord_args']}`" if st.get("coord_args") else ""),
         ("- baselines: `router` and `kvflow` route by cache and never move KV between workers "
          "(coordinator `--baseline-pulls 0`), as SGLang's router, llm-d's prefix scorer and KVFlow do; only "
          "`helium` pulls KV pages from another worker" if st.get("baseline_pulls") == 0 else
          "- baselines: `router` and `kvflow` may also pull a prefix's KV pages from another worker "
          "(coordinator `--baseline-pulls 1`), which the systems they stand for (SGLang's router, llm-d, KVFlow) "
          "do not: baselines stronger than the real ones" if st.get("baseline_pulls") == 1 else
          "- baselines: `router` and `kvflow` may also pull a prefix's KV pages from another worker (before the "
          "`--baseline-pulls` option existed)"),
         f"- text lengths (tokens, aimed): documents {st['scale_params']['doc']}, chunks "
         f"{st['scale_params']['chunk']}, catalogue {st['scale_params']['catalogue']}, small inputs "
         f"{st['scale_params']['short']}; max_tokens {st['scale_params']['out_short']} for fan-out calls, "
         f"{st['scale_params']['out_long']} for reducers and drafts (decode runs to max_tokens: random weights "
         "rarely emit EOS)",
         "- makespan = first job submitted to last job finished (coordinator clock); throughput = jobs / makespan; "
         "latency percentiles are nearest-rank over the batch (in a batch under 100 jobs, p99 is the slowest job)"
         + (f"; {st['reps']} runs per workload and policy, policies interleaved, the run with the median makespan "
            "shown (all makespans in the JSON)" if st.get("reps", 1) > 1 else "; one run per workload and policy"),
         "- computed tok = prompt tokens the workers prefilled (source in the JSON: `computed_source`); min tok = "
         "the minimum any system must prefill: the coordinator's counter `min_prompt_tokens` where it has one, "
         "else (and in brackets where it differs) the tokens of the trie of every LLM prompt of the batch counted "
         "once, rendered here from the reference run's outputs and tokenized with `helium-worker tokenize` (its "
         "per-call token counts are checked against the coordinator's: `min_render_check` in the JSON); hit rate = "
         "cached / prompt tokens of the calls that ran; KV pulls = KV transfers between workers (tokens pulled); "
         "reuse = the optimizer's counters (operators merged and pruned, result-cache and dedup hits, tokens "
         "prefilled ahead) and the HTTP requests the tool service received; plan ms = cumulative planning time "
         "(counter plan_us); decode = the share of the workers' forward time spent in decode-only steps, and "
         "the mean sequences per such step",
         f"- outputs: every op output of every job compared with the `{st.get('reference_policy', 'isolated')}` run "
         "(greedy, so they must be equal)",
         "", "## Workloads", ""]
    for name, w in doc["workloads"].items():
        s.append(f"- **{name}**: {w['notes']}; {w.get('llm_calls', '?')} LLM calls per batch; prompt tokens per call "
                 f"{w.get('prompt_tokens_range', 'n/a')}; token-trie minimum {fmt(w.get('min_prompt_tokens_trie'))} "
                 f"(rendered prompts matched the coordinator's counts for {w.get('min_render_check', 'n/a')})")
    s += ["", "## Results", "", md_table(hdr, rows)]
    if doc.get("ratios"):
        pols = [p for p in doc["settings"]["policies"] if p != "helium"] + ["best_baseline", "ceiling"]
        rh = ["workload"] + [f"helium / {p}" for p in pols[:-1]] + ["ceiling: best baseline work / minimum work"]
        rr = [[wl] + [fmt(d.get(p), 2) for p in pols] for wl, d in doc["ratios"].items()]
        for kind in ("mean", "geomean"):
            rr.append([f"**{kind}**"] + [fmt((doc["ratio_avg"].get(p) or {}).get(kind), 2) for p in pols])
        s += ["## Throughput ratio of `helium` to each baseline", "",
              "The last column bounds what any system could reach against the best baseline here: that "
              "baseline's work (prompt tokens computed + tokens generated) over the least work the batch needs "
              "(the minimum prompt tokens + the fewest tokens any policy generated). On this CPU throughput "
              "follows work, so a ratio well above this bound would need the baseline to use its workers worse, "
              "not more work saved.", "", md_table(rh, rr)]
        wr = work_ratios(doc["records"], doc["settings"]["policies"])
        if wr:
            bp = [p for p in doc["settings"]["policies"] if p != "helium"]
            s += ["## Work of each baseline over helium's", "",
                  "Work = prompt tokens computed + tokens generated (column `work tok`). The workers are busy most "
                  "of the makespan (column `busy`: forward-pass time / (workers x makespan)), so on this CPU a "
                  "policy's throughput gain is bounded by how much less work it does: this ratio is roughly the "
                  "ceiling of the throughput ratio above.", "",
                  md_table(["workload"] + [f"{p} / helium" for p in bp],
                           [[wl] + [fmt(d.get(p), 2) for p in bp] for wl, d in wr.items()])]
    errs = [r for r in doc["records"] if r.get("error")]
    if errs:
        s += ["## Errors", ""] + [f"- {r['workload']} / {r['policy']}: {r['error']}" for r in errs] + [""]
    mism = [r for r in doc["records"] if r.get("mismatches")]
    if mism:
        s += ["## OUTPUT MISMATCHES", ""]
        for r in mism:
            s.append(f"- {r['workload']} / {r['policy']}: {len(r['mismatches'])} ops differ from the reference, e.g. "
                     + ", ".join(f"job {j} op {o}" for j, o in r["mismatches"][:5]))
        s.append("")
    if plots:
        s += ["## Plots", ""] + [f"![{p}]({p})" for p in plots] + [""]
    with open(path, "w") as f:
        f.write("\n".join(s) + "\n")


# ---------------------------------------------------------------- plots

def plot_matplotlib(doc, outdir):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    recs = doc["records"]
    wls = list(doc["workloads"])
    pols = doc["settings"]["policies"]
    by = {(r["workload"], r["policy"]): r for r in recs}
    files = []
    width = 0.8 / max(1, len(pols))
    ref = doc["settings"].get("reference_policy", pols[0])
    fig, (ax, ax2) = plt.subplots(2, 1, figsize=(max(8, 1.3 * len(wls)), 8), sharex=True)
    for i, p in enumerate(pols):
        xs = [x + (i - (len(pols) - 1) / 2) * width for x in range(len(wls))]
        ys = [(by.get((w, p)) or {}).get("throughput_wpm") or 0 for w in wls]
        ax.bar(xs, ys, width, label=p)
        rel = []
        for w, y in zip(wls, ys):
            base = (by.get((w, ref)) or {}).get("throughput_wpm")
            rel.append(y / base if base and y else 0)
        ax2.bar(xs, rel, width, label=p)
    ax.set_ylabel("workflows / min")
    ax.set_title(f"Throughput per workload and policy ({doc['settings']['scale']} scale, "
                 f"{doc['settings']['workers']} CPU workers)")
    ax.legend(fontsize=8)
    ax2.axhline(1.0, color="black", lw=0.8)
    ax2.set_ylabel(f"throughput / {ref}")
    ax2.set_xticks(range(len(wls)))
    ax2.set_xticklabels(wls, rotation=20, ha="right")
    fig.tight_layout()
    fig.savefig(os.path.join(outdir, "workflows_throughput.png"), dpi=100)
    plt.close(fig)
    files.append("workflows_throughput.png")

    fig, ax = plt.subplots(figsize=(max(8, 1.3 * len(wls)), 4.5))
    for i, p in enumerate(pols):
        ys = []
        for w in wls:
            r = by.get((w, p)) or {}
            ys.append(r["computed_tokens"] / r["min_prompt_tokens"] if r.get("computed_tokens") is not None and
                      r.get("min_prompt_tokens") else 0)
        ax.bar([x + (i - (len(pols) - 1) / 2) * width for x in range(len(wls))], ys, width, label=p)
    ax.set_yscale("log")
    ax.axhline(1.0, color="black", lw=0.8)
    ax.axhline(1.1, color="red", lw=0.8, ls="--", label="target 1.1x")
    ax.set_xticks(range(len(wls)))
    ax.set_xticklabels(wls, rotation=20, ha="right")
    ax.set_ylabel("prompt tokens computed / minimum (log)")
    ax.set_title("Prompt tokens computed against the minimum (prefix trie of the batch)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(os.path.join(outdir, "workflows_tokens.png"), dpi=100)
    plt.close(fig)
    files.append("workflows_tokens.png")
    return files


def plot_gnuplot(doc, outdir):
    wls = list(doc["workloads"])
    pols = doc["settings"]["policies"]
    by = {(r["workload"], r["policy"]): r for r in doc["records"]}
    files = []
    for name, key, ylabel in (("workflows_throughput", "tp", "workflows / min"),
                              ("workflows_tokens", "tok", "computed / minimum")):
        dat = os.path.join(outdir, f".{name}.dat")
        with open(dat, "w") as f:
            f.write("workload " + " ".join(pols) + "\n")
            for w in wls:
                vals = []
                for p in pols:
                    r = by.get((w, p)) or {}
                    if key == "tp":
                        v = r.get("throughput_wpm") or 0
                    else:
                        v = (r["computed_tokens"] / r["min_prompt_tokens"]) if r.get("computed_tokens") is not None \
                            and r.get("min_prompt_tokens") else 0
                    vals.append(f"{v:.4f}")
                f.write(w + " " + " ".join(vals) + "\n")
        script = (f"set terminal pngcairo size 1000,450\nset output '{os.path.join(outdir, name + '.png')}'\n"
                  "set style data histograms\nset style histogram cluster gap 1\nset style fill solid border -1\n"
                  f"set ylabel '{ylabel}'\nset xtics rotate by -20\nset key top left autotitle columnhead\n"
                  + ("set logscale y\nset yrange [0.5:*]\n" if key == "tok" else "") +
                  f"plot for [i=2:{len(pols) + 1}] '{dat}' using i:xtic(1)\n")
        subprocess.run(["gnuplot"], input=script.encode(), check=True, timeout=60)
        os.unlink(dat)
        files.append(name + ".png")
    return files


def make_plots(json_path, outdir):
    """PNG plots of json_path into outdir; returns the file names (maybe [])."""
    with open(json_path) as f:
        doc = json.load(f)
    try:
        import matplotlib  # noqa: F401
        return plot_matplotlib(doc, outdir)
    except ImportError:
        pass
    for py in [os.environ.get("HELIUM_PYTHON"), "/opt/helium-venv/bin/python"]:
        if py and py != sys.executable and os.access(py, os.X_OK):
            ok = subprocess.run([py, "-c", "import matplotlib"], capture_output=True).returncode == 0
            if ok:
                p = subprocess.run([py, os.path.abspath(__file__), "--plot-only", json_path, "--out", outdir],
                                   capture_output=True, text=True)
                if p.returncode == 0:
                    return json.loads(p.stdout.strip().splitlines()[-1])
                warn(f"bench/workflows: plotting with {py} failed: {p.stderr[-300:]}")
    if shutil.which("gnuplot"):
        try:
            return plot_gnuplot(doc, outdir)
        except Exception as e:  # noqa: BLE001
            warn(f"bench/workflows: gnuplot failed: {e}")
            return []
    warn("bench/workflows: no matplotlib (pip install matplotlib) and no gnuplot: no PNG plots written")
    return []


# ---------------------------------------------------------------- main

def prepare_workload(args, wl, service):
    """Writes the workflow and every job's inputs under workdir; returns paths."""
    d = os.path.join(args.workdir, "workloads", wl.name)
    os.makedirs(d, exist_ok=True)
    shipped = os.path.join(HERE, "workloads", args.scale, f"{wl.name}.json")
    try:
        with open(shipped) as f:
            if json.load(f) != wl.workflow:
                warn(f"bench/workflows: {shipped} is stale (regenerate: python3 bench/workloads/workloads.py "
                     f"--scale {args.scale}); running the generated workflow")
    except (OSError, ValueError):
        pass
    wf_path = os.path.join(d, "workflow.json")
    with open(wf_path, "w") as f:
        json.dump(wl.workflow, f, indent=1)
    service.routes.update(wl.service)
    jobs = []
    for i, inputs in enumerate(wl.jobs):
        files = {}
        for k, v in inputs.items():
            p = os.path.join(d, f"job{i}.{k}.txt")
            with open(p, "w") as f:
                f.write(v)
            files[k] = p
        if any(isinstance(s, str) and s == "orders_url" or isinstance(s, dict) and s.get("name") == "orders_url"
               for s in wl.workflow.get("inputs", [])):
            p = os.path.join(d, f"job{i}.orders_url.txt")
            with open(p, "w") as f:
                f.write(f"http://127.0.0.1:{service.port}/orders")
            files["orders_url"] = p
            inputs["orders_url"] = f"http://127.0.0.1:{service.port}/orders"
        jobs.append(files)
    return {"wf": wf_path, "jobs": jobs}


def describe_workload(args, wl, rec, results):
    """The workload's entry of the report, with the minimum computed from the
    reference run's results when the coordinator does not count it."""
    d = {"notes": wl.notes, "jobs": len(wl.jobs), "llm_calls": rec["llm_calls"]}
    if not results or not all(r and r.get("state") == "DONE" for r in results):
        return d
    ptok = sorted(op["prompt_tokens"] // max(1, op.get("items_total") or 1) for r in results for op in r["ops"]
                  if op.get("kind") in ("llm", "map") and op.get("prompt_tokens"))
    d["prompt_tokens_range"] = f"{ptok[0]}-{ptok[-1]}" if ptok else None
    try:
        mn, chk = min_prompt_tokens(args, wl, results)
    except Exception as e:  # noqa: BLE001
        warn(f"bench/workflows: {wl.name}: cannot compute the minimum: {e}")
        return d
    d["min_prompt_tokens_trie"] = mn
    if chk:
        d["min_render_check"] = f"{chk[0]}/{chk[1]} ops"
        if chk[0] != chk[1]:
            warn(f"bench/workflows: {wl.name}: rendered prompts match the coordinator's token counts for only "
                 f"{chk[0]}/{chk[1]} ops; the minimum may be off")
    return d


def median_run(rs):
    """Of several records of one batch and policy, the run with the median
    makespan (the last run when none has one), every makespan in
    makespans_s."""
    good = sorted((r for r in rs if r.get("makespan_s") is not None), key=lambda r: r["makespan_s"])
    pick = dict(good[(len(good) - 1) // 2] if good else rs[-1])
    pick["makespans_s"] = [r.get("makespan_s") for r in rs]
    return pick


def bench_workload(args, wl, paths, pols, ref_pol, doc, service, rng):
    """Runs wl under every policy (reference first), args.reps rounds with the
    policies interleaved; returns one record per policy (the run with the
    median makespan, with every run's makespan in makespans_s)."""
    order = [ref_pol] + [p for p in pols if p != ref_pol]
    ref_results, runs = None, {p: [] for p in pols}
    for rep in range(args.reps):
        for pol in order:
            hits0 = service.hits
            rec, results = run_policy(args, wl, paths, pol, rng, service)
            rec["tool_requests"] = service.hits - hits0
            rec["rep"] = rep
            if pol == ref_pol and ref_results is None:
                ref_results = results
                doc["workloads"][wl.name] = describe_workload(args, wl, rec, results)
            wd = doc["workloads"].get(wl.name, {})
            rec["min_prompt_tokens_trie"] = wd.get("min_prompt_tokens_trie")
            if rec.get("min_prompt_tokens") is None and wd.get("min_prompt_tokens_trie"):
                rec["min_prompt_tokens"], rec["min_source"] = wd["min_prompt_tokens_trie"], "token trie"
            if results is not None and ref_results is not None and results is not ref_results:
                bad = compare(ref_results, results)
                rec["mismatches"] = bad
                rec["outputs_check"] = "ok" if not bad else f"MISMATCH {len(bad)}"
                if bad:
                    warn(f"!!! OUTPUT MISMATCH: {wl.name} / {pol}: {len(bad)} ops differ from {ref_pol}: " +
                         ", ".join(f"job {j} op {o}" for j, o in bad[:8]))
            elif results is not None and results is ref_results:
                rec["outputs_check"] = "reference"
            runs[pol].append(rec)
            log(f"   {pol:9s} " + (f"[{rep + 1}/{args.reps}] " if args.reps > 1 else "") +
                ("FAILED: " + (rec["error"] or "") if rec.get("makespan_s") is None else
                 f"makespan {fmt(rec['makespan_s'])} s, {fmt(rec['throughput_wpm'], 1)} wf/min, p50 "
                 f"{fmt(rec['latency_p50_s'])} s, computed {fmt(rec['computed_tokens'])} / min "
                 f"{fmt(rec.get('min_prompt_tokens'))} tok, hit {fmt(rec['hit_rate'], 3)}, outputs "
                 f"{rec.get('outputs_check', 'n/a')}" + (f" ({rec['error']})" if rec.get("error") else "")))
            if rec.get("makespan_s") is None and (rec.get("error") or "").startswith("no job accepted"):
                rec["_skip"] = True  # e.g. an unknown policy: no more rounds of it
        order = [p for p in order if not (runs[p] and runs[p][-1].get("_skip"))]
    out = []
    for p in pols:
        rs = runs[p]
        if not rs:
            continue
        for r in rs:
            r.pop("_skip", None)
        pick = median_run(rs)
        mism = [m for r in rs for m in (r.get("mismatches") or [])]
        if mism and not pick.get("mismatches"):
            pick["mismatches"] = mism
            pick["outputs_check"] = f"MISMATCH {len(mism)} (other rep)"
        out.append(pick)
    return out


def main():
    ap = argparse.ArgumentParser(description="Helium workflow benchmark: workloads x policies (see the file header)")
    ap.add_argument("--workloads", default=",".join(W.NAMES), help="comma list (default: all): " + ",".join(W.NAMES))
    ap.add_argument("--policies", default=",".join(POLICIES), help="comma list (default: all five)")
    ap.add_argument("--scale", default="small", choices=list(W.SCALES))
    ap.add_argument("--seed", type=int, default=1, help="input generator seed")
    ap.add_argument("--batch", type=int, default=0, help="override every workload's batch size")
    ap.add_argument("--build", default=os.path.join(SRC, "build"), help="build dir with bin/ (default: build)")
    ap.add_argument("--preset", default="small", choices=["tiny", "small", "medium"], help="generated model preset")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--threads", type=int, default=1, help="threads per worker")
    ap.add_argument("--coord-args", default="", help="extra helium-coordinator arguments")
    ap.add_argument("--baseline-pulls", type=int, default=0, choices=[0, 1],
                    help="0 (default): router and kvflow never move KV between workers, as SGLang's router, llm-d "
                    "and KVFlow; 1: they pull prefixes like helium (stronger than the systems they stand for)")
    ap.add_argument("--worker-args", default="", help="extra helium-worker serve arguments (e.g. --kv-mb 64)")
    ap.add_argument("--reps", type=int, default=1, help="runs per workload and policy (policies interleaved); "
                    "the run with the median makespan is reported")
    ap.add_argument("--timeout", type=float, default=600, help="seconds one batch may take")
    ap.add_argument("--settle", type=float, default=1.2, help="seconds to wait for worker counters after a batch")
    ap.add_argument("--workdir", default=None, help="scratch dir (default: a new dir under /tmp)")
    ap.add_argument("--out", default=os.path.join(HERE, "results"), help="where workflows.json/.md/.png go")
    ap.add_argument("--no-plots", action="store_true")
    ap.add_argument("--report-only", metavar="JSON", help="rewrite workflows.md and the plots in --out from a "
                    "workflows.json, without running anything")
    ap.add_argument("--plot-only", metavar="JSON", help=argparse.SUPPRESS)
    ap.add_argument("--arrival", action="append", metavar="PATTERN", help="live traffic instead of one batch: "
                    "poisson:RATES (jobs/min, comma list), poisson:auto, or trace:FILE[@SPEEDS]; may repeat; writes "
                    "arrival.json/.md/PNGs to --out (default results/arrival); see bench/arrival.py")
    ap.add_argument("--arrival-jobs", type=int, default=24, help="jobs per point of a Poisson pattern")
    ap.add_argument("--auto-fractions", default="0.2,0.35,0.5,0.65,0.8,1.0,1.2",
                    help="poisson:auto rates as fractions of helium's batch throughput")
    ap.add_argument("--p99-bound", type=float, default=0, help="p99 latency bound, s (0: --p99-factor x the "
                    "lowest baseline p99, or p50 with --p99-base p50, at the lowest load)")
    ap.add_argument("--p99-factor", type=float, default=3.0)
    ap.add_argument("--p99-base", choices=["p99", "p50"], default="p99")
    args = ap.parse_args()
    if args.arrival and args.out == os.path.join(HERE, "results"):
        args.out = os.path.join(HERE, "results", "arrival")

    if args.plot_only:
        print(json.dumps(plot_matplotlib(json.load(open(args.plot_only)), args.out)))
        return 0
    if args.report_only:
        with open(args.report_only) as f:
            doc = json.load(f)
        # the derived figures follow this script (a column added since the run)
        doc["ratios"], doc["ratio_avg"] = ratios(doc["records"], doc["settings"]["policies"])
        if os.path.abspath(args.report_only) == os.path.abspath(os.path.join(args.out, "workflows.json")):
            with open(args.report_only, "w") as f:
                json.dump(doc, f, indent=1)
                f.write("\n")
        hdr, rows = table_rows(doc["records"])
        print_table(hdr, rows)
        plots = [] if args.no_plots else make_plots(args.report_only, args.out)
        write_md(os.path.join(args.out, "workflows.md"), doc, hdr, rows, plots)
        log(f"wrote {os.path.join(args.out, 'workflows.md')}" + (", " + ", ".join(plots) if plots else ""))
        return 0

    args.bin = os.path.join(os.path.abspath(args.build), "bin")
    for exe in ("helium-coordinator", "helium-worker", "heliumctl", "helium-mkmodel"):
        if not os.access(os.path.join(args.bin, exe), os.X_OK):
            warn(f"bench/workflows: {args.bin}/{exe} missing (build first: make build, or --build DIR)")
            return 1
    wls = [w for w in args.workloads.split(",") if w]
    pols = [p for p in args.policies.split(",") if p]
    for w in wls:
        if w not in W.BUILDERS:
            warn(f"bench/workflows: unknown workload '{w}' (have: {', '.join(W.NAMES)})")
            return 2
    own_workdir = args.workdir is None
    args.workdir = args.workdir or f"/tmp/helium-bench-workflows-{os.getpid()}"
    os.makedirs(args.workdir, exist_ok=True)
    os.makedirs(args.out, exist_ok=True)
    args.model = os.path.join(args.workdir, f"model-{args.preset}.gguf")
    run([os.path.join(args.bin, "helium-mkmodel"), "--preset", args.preset, "--arch", "llama", "--dtype", "f32",
         "--seed", "1", "-o", args.model], timeout=300)
    if args.arrival:
        import arrival  # the live-traffic mode (bench/arrival.py)
        signal.signal(signal.SIGTERM, lambda *a: sys.exit(143))
        rc = arrival.run(args, sys.modules[__name__])
        if own_workdir:
            shutil.rmtree(args.workdir, ignore_errors=True)
        return rc

    signal.signal(signal.SIGTERM, lambda *a: sys.exit(143))
    service = Service()
    rng = random.Random(os.getpid() ^ int(time.time()))
    ref_pol = "isolated" if "isolated" in pols else pols[0]
    doc = {"date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"), "git": git_rev(),
           "machine": machine_info(),
           "settings": {"scale": args.scale, "scale_params": W.SCALES[args.scale], "seed": args.seed,
                        "batch_override": args.batch or None, "preset": args.preset, "model": args.model,
                        "workers": args.workers, "threads": args.threads, "coord_args": args.coord_args,
                        "worker_args": args.worker_args, "baseline_pulls": args.baseline_pulls, "policies": pols, "reference_policy": ref_pol,
                        "reps": args.reps},
           "workloads": {}, "records": []}
    t_all = time.time()
    try:
        for name in wls:
            wl = W.build(name, args.scale, args.seed, args.batch or None)
            paths = prepare_workload(args, wl, service)
            log(f"== {name}: {len(wl.jobs)} jobs, {sum(wl.n_llm_ops(j) for j in wl.jobs)} LLM calls; {wl.notes}")
            doc["records"] += bench_workload(args, wl, paths, pols, ref_pol, doc, service, rng)
    finally:
        service.close()
    doc["total_wall_s"] = round(time.time() - t_all, 1)
    doc["machine"]["loadavg_end"] = [round(x, 2) for x in os.getloadavg()]
    doc["ratios"], doc["ratio_avg"] = ratios(doc["records"], pols)

    log("")
    hdr, rows = table_rows(doc["records"])
    print_table(hdr, rows)
    for r in doc["records"]:
        if r.get("error"):
            warn(f"error: {r['workload']} / {r['policy']}: {r['error']}")
    if doc["ratios"]:
        log("\nthroughput of helium / baseline:")
        for wlname, d in doc["ratios"].items():
            log(f"  {wlname:18s} " + "  ".join(f"{b} {fmt(v)}" for b, v in d.items()))
        for b, a in doc["ratio_avg"].items():
            log(f"  average vs {b}: mean {a['mean']:.2f}x, geomean {a['geomean']:.2f}x over {a['n']} workloads")
    n_mis = sum(len(r.get("mismatches") or []) for r in doc["records"])
    if n_mis:
        warn(f"\n!!! {n_mis} op outputs differ from the {ref_pol} policy's: see 'mismatches' in the JSON")
    jpath = os.path.join(args.out, "workflows.json")
    with open(jpath, "w") as f:
        json.dump(doc, f, indent=1)
        f.write("\n")
    plots = [] if args.no_plots else make_plots(jpath, args.out)
    write_md(os.path.join(args.out, "workflows.md"), doc, hdr, rows, plots)
    log(f"\nwrote {jpath}, {os.path.join(args.out, 'workflows.md')}" +
        (", " + ", ".join(os.path.join(args.out, p) for p in plots) if plots else "") +
        f"; total {doc['total_wall_s']} s")
    if own_workdir:
        shutil.rmtree(args.workdir, ignore_errors=True)
    return 1 if n_mis else 0


if __name__ == "__main__":
    sys.exit(main())
