#!/usr/bin/env python3
"""bench/peer: the workloads of bench/workflows through an outside system,
llama.cpp's own llama-server driven by a plain asyncio agent runner (agent.py),
against Helium's cluster, side by side in one run. Called by bench/peer/run.

Per workload, per round (--reps rounds, sides interleaved in each round):
  helium     a fresh local cluster (scripts/cluster.sh): coordinator + W workers
             x 1 thread, the whole batch submitted at once with `--policy helium`
             (bench/workflows.py run_policy, unchanged)
  peer npN   a fresh llama-server (2 threads, --parallel N, KV cache split among the slots (--kv-unified off),
             F32 KV, the same GGUF file), every job started at once by the agent
             runner: each operator sent as soon as its inputs exist, maps fanned
             out, /completion with cache_prompt, tool calls over HTTP to the
             same local tool service
and records makespan (first job start to last job end), throughput (jobs/min),
p50/p99 job latency, prompt tokens computed (llama-server: sum of
timings.prompt_n; Helium: computed_tokens), generated tokens, how many op
outputs and job outputs equal Helium's (greedy on both sides), the peer
server's CPU time, and the load of the machine. The best --parallel per
workload (median throughput over rounds) is the peer's figure; the report
prints helium / peer for it and checks the 3x target.

Tokenization: for up to --tok-check prompts per workload (rendered from
Helium's own outputs), the token ids of llama-server's /tokenize and of
`helium-worker tokenize` are compared one by one.

Writes OUT/peer.json (every run) and OUT/peer.md. Not a test: numbers from a
shared machine are noisy; the load is written down with them.
"""
import argparse
import asyncio
import concurrent.futures
import datetime
import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
BENCH = os.path.dirname(HERE)
SRC = os.path.dirname(BENCH)
sys.dont_write_bytecode = True
sys.path.insert(0, BENCH)
sys.path.insert(0, HERE)
import workflows as WF  # noqa: E402
import agent as A  # noqa: E402

W = WF.W
TARGET = 3.0


def log(msg):
    print(msg, flush=True)


# ---------------------------------------------------------------- machine load

def cpu_jiffies():
    """(busy, total) jiffies of the whole machine from /proc/stat."""
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:]]
    idle = v[3] + (v[4] if len(v) > 4 else 0)
    return sum(v) - idle, sum(v)


def proc_cpu_s(pid):
    """utime + stime of pid and its reaped children, seconds (None if gone)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            st = f.read().rsplit(")", 1)[1].split()
        return (int(st[11]) + int(st[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return None


class LoadProbe:
    """Machine busy fraction (all processes) over an interval."""

    def __init__(self):
        self.b0, self.t0 = cpu_jiffies()
        self.la0 = os.getloadavg()[0]

    def done(self):
        b1, t1 = cpu_jiffies()
        return {"busy_all": round((b1 - self.b0) / max(1, t1 - self.t0), 3),
                "loadavg": [round(self.la0, 2), round(os.getloadavg()[0], 2)]}


# ---------------------------------------------------------------- llama-server

def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


class LlamaServer:
    def __init__(self, args, n_parallel, logpath):
        self.port = free_port()
        self.cmd = [args.llama_server, "-m", args.model, "--host", "127.0.0.1", "--port", str(self.port),
                    "-t", str(args.peer_threads), "-tb", str(args.peer_threads), "--parallel", str(n_parallel),
                    "-c", str(args.ctx)] + (["--kv-unified"] if args.kv_unified == "on" else []) + [
                    "--cache-type-k", args.kv_type, "--cache-type-v", args.kv_type, "-fa", args.fa] + args.server_args.split()
        self.logf = open(logpath, "wb")
        self.p = subprocess.Popen(self.cmd, stdin=subprocess.DEVNULL, stdout=self.logf, stderr=subprocess.STDOUT)
        deadline = time.time() + 120
        while True:
            if self.p.poll() is not None:
                raise RuntimeError(f"llama-server exited {self.p.returncode} (log {logpath})")
            try:
                st, _ = A.http_call("127.0.0.1", self.port, "GET", "/health", timeout=2)
                if st == 200:
                    break
            except OSError:
                pass
            if time.time() > deadline:
                self.close()
                raise RuntimeError(f"llama-server not healthy after 120 s (log {logpath})")
            time.sleep(0.2)

    def cpu_s(self):
        return proc_cpu_s(self.p.pid)

    def tokenize(self, text):
        body = json.dumps({"content": text, "add_special": True}, ensure_ascii=False).encode()
        st, data = A.http_call("127.0.0.1", self.port, "POST", "/tokenize", body,
                               {"Content-Type": "application/json"})
        if st != 200:
            raise RuntimeError(f"/tokenize {st}")
        return json.loads(data)["tokens"]

    def close(self):
        if self.p.poll() is None:
            self.p.send_signal(signal.SIGTERM)
            try:
                self.p.wait(10)
            except subprocess.TimeoutExpired:
                self.p.kill()
                self.p.wait()
        self.logf.close()


# ---------------------------------------------------------------- one peer run

def run_peer(args, wl, n_parallel, vocab, tag):
    rec = {"workload": wl.name, "side": f"peer np{n_parallel}", "parallel": n_parallel, "n_jobs": len(wl.jobs),
           "error": None}
    srv = LlamaServer(args, n_parallel, os.path.join(args.workdir, f"llama-{tag}.log"))
    pool = concurrent.futures.ThreadPoolExecutor(max_workers=512)
    try:
        ag = A.Agent(wl.workflow, vocab, "127.0.0.1", srv.port, pool)
        cpu0, me0, probe = srv.cpu_s(), time.process_time(), LoadProbe()

        async def all_jobs():
            return await asyncio.gather(*(ag.run_job(j) for j in wl.jobs), return_exceptions=True)

        t0 = time.time()
        jobs = asyncio.run(asyncio.wait_for(all_jobs(), args.timeout))
        t1 = time.time()
        rec.update(probe.done())
        rec["server_cpu_s"] = round(srv.cpu_s() - cpu0, 2)
        rec["runner_cpu_s"] = round(time.process_time() - me0, 2)
    except Exception as e:  # noqa: BLE001
        rec["error"] = f"{type(e).__name__}: {e}"[-400:]
        return rec, None
    finally:
        pool.shutdown(wait=False, cancel_futures=True)
        srv.close()
    bad = [j for j in jobs if isinstance(j, BaseException)]
    if bad:
        rec["error"] = f"{len(bad)} jobs failed: {bad[0]!r}"[-400:]
        return rec, None
    st = ag.stats
    mk = t1 - t0
    lat = [j["end"] - j["start"] for j in jobs]
    rec.update({"makespan_s": round(mk, 3), "throughput_wpm": round(len(jobs) / mk * 60, 2),
                "latency_p50_s": round(WF.percentile(lat, 50), 3), "latency_p99_s": round(WF.percentile(lat, 99), 3),
                "requests": st.requests, "prompt_tokens": st.prompt_tokens, "computed_tokens": st.computed_tokens,
                "generated_tokens": st.generated_tokens, "prompt_ms_sum": round(st.prompt_ms, 1),
                "predicted_ms_sum": round(st.predicted_ms, 1), "tool_requests": st.tool_requests,
                "unsendable_codepoints": st.unsendable})
    rec["server_busy"] = round(rec["server_cpu_s"] / (args.peer_threads * mk), 2) if mk > 0 else None
    return rec, jobs


# ---------------------------------------------------------------- comparison

def hbytes(s):
    return s.encode("utf-8", "surrogateescape")


def compare_outputs(h_results, p_jobs):
    """{ops_equal, ops, jobs_equal, jobs, tok_match, tok_ops}: op outputs (LLM,
    map, tool ops Helium finished) and job outputs equal to Helium's; and per
    LLM/map op whether the prompt token counts agree (llama-server
    tokens_evaluated summed over the op's calls vs Helium's prompt_tokens; an
    op downstream of a differing output renders a different prompt)."""
    c = {"ops_equal": 0, "ops": 0, "jobs_equal": 0, "jobs": 0, "tok_match": 0, "tok_ops": 0}
    for hr, pj in zip(h_results, p_jobs):
        if not hr or hr.get("state") != "DONE" or not pj:
            continue
        c["jobs"] += 1
        c["jobs_equal"] += hbytes(hr.get("output", "")) == pj["output"]
        ptok = {}
        for call in pj["calls"]:
            ptok[call["op"]] = ptok.get(call["op"], 0) + (call["prompt_tokens"] or 0)
        for op in hr.get("ops", []):
            if op.get("kind") not in ("llm", "map", "tool") or op.get("state") != "DONE":
                continue
            mine = pj["outputs"].get(op["op_id"])
            theirs = [hbytes(x) for x in op["outputs"]] if op.get("outputs") else hbytes(op.get("output", ""))
            c["ops"] += 1
            c["ops_equal"] += mine == theirs
            if op.get("kind") in ("llm", "map") and op["op_id"] in ptok:
                c["tok_ops"] += 1
                c["tok_match"] += ptok[op["op_id"]] == op.get("prompt_tokens")
    return c


def tokenization_check(args, wl, h_results, vocab, n_max):
    """Token ids of llama-server /tokenize against helium-worker tokenize for
    up to n_max prompts rendered from Helium's outputs: (equal, checked)."""
    prompts = []
    for inputs, res in zip(wl.jobs, h_results):
        if not res or res.get("state") != "DONE":
            continue
        ps = WF.job_prompts(wl, inputs, res)
        for _, texts in ps or []:
            prompts += texts
        if len(prompts) >= n_max:
            break
    prompts = prompts[:n_max]
    if not prompts:
        return None
    srv = LlamaServer(args, 1, os.path.join(args.workdir, f"llama-tok-{wl.name}.log"))
    eq = 0
    try:
        for t in prompts:
            ids_h = [int(x) for x in WF.run([os.path.join(args.bin, "helium-worker"), "tokenize", "--model",
                                             args.model, "--text", t], timeout=60).strip().split(",") if x]
            ids_p = srv.tokenize(A.llama_text(hbytes(t))[0])
            eq += ids_h == ids_p
    finally:
        srv.close()
    return [eq, len(prompts)]


# ---------------------------------------------------------------- report

def median_pick(rs):
    good = sorted((r for r in rs if r.get("throughput_wpm")), key=lambda r: r["throughput_wpm"])
    return good[(len(good) - 1) // 2] if good else (rs[-1] if rs else None)


def summarize(doc):
    rows = []
    for name in doc["workloads"]:
        recs = [r for r in doc["records"] if r["workload"] == name]
        h = median_pick([r for r in recs if r["side"] == "helium"])
        by_np = {}
        for r in recs:
            if r["side"].startswith("peer"):
                by_np.setdefault(r["parallel"], []).append(r)
        peers = {n: median_pick(rs) for n, rs in by_np.items()}
        best = max((p for p in peers.values() if p and p.get("throughput_wpm")), key=lambda p: p["throughput_wpm"],
                   default=None)
        ratio = round(h["throughput_wpm"] / best["throughput_wpm"], 2) if h and best and h.get("throughput_wpm") \
            else None
        rows.append({"workload": name, "helium": h, "peer_best": best, "ratio": ratio,
                     "peer_by_parallel": {str(n): (p or {}).get("throughput_wpm") for n, p in sorted(peers.items())}})
    return rows


def fmt(v, nd=2):
    return WF.fmt(v, nd)


def table(summary):
    hdr = ["workload", "helium wf/min", "peer wf/min (best np)", "helium/peer", "p50 s H / P", "p99 s H / P",
           "computed tok H / P", "generated tok H / P", "outputs equal (ops, jobs)", "peer wf/min by --parallel",
           "peer server busy", "load (busy all)"]
    rows = []
    for s in summary:
        h, p = s["helium"] or {}, s["peer_best"] or {}
        cmp_ = p.get("compare") or {}
        rows.append([s["workload"], fmt(h.get("throughput_wpm"), 1),
                     f"{fmt(p.get('throughput_wpm'), 1)} (np{p.get('parallel', '?')})", fmt(s["ratio"]) + "x",
                     f"{fmt(h.get('latency_p50_s'))} / {fmt(p.get('latency_p50_s'))}",
                     f"{fmt(h.get('latency_p99_s'))} / {fmt(p.get('latency_p99_s'))}",
                     f"{fmt(h.get('computed_tokens'))} / {fmt(p.get('computed_tokens'))}",
                     f"{fmt(h.get('generated_tokens'))} / {fmt(p.get('generated_tokens'))}",
                     f"{cmp_.get('ops_equal', '?')}/{cmp_.get('ops', '?')}, {cmp_.get('jobs_equal', '?')}/"
                     f"{cmp_.get('jobs', '?')}",
                     ", ".join(f"{n}: {fmt(v, 1)}" for n, v in s["peer_by_parallel"].items()),
                     fmt(p.get("server_busy")), fmt(p.get("busy_all"))])
    return hdr, rows


def write_md(path, doc, hdr, rows):
    st, m = doc["settings"], doc["machine"]
    s = ["# Helium against llama-server driven by an agent runner (bench/peer)", "",
         f"Run {doc['date']} on {m['cpu']} ({m['nproc']} cores, shared with other jobs: load average "
         f"{', '.join(str(x) for x in m['loadavg_start'])} at the start, "
         f"{', '.join(str(x) for x in m.get('loadavg_end', []))} at the end), git {doc.get('git') or '?'}; "
         f"llama.cpp {st['llama_version']}; the whole run took {doc.get('total_wall_s')} s.", "",
         "## Settings", "",
         f"- workloads of bench/workflows at scale `{st['scale']}`, seed {st['seed']}; the model "
         f"`{os.path.basename(st['model'])}` (helium-mkmodel --preset {st['preset']} --arch llama --dtype f32 "
         "--seed 1), the same file on both sides; every call greedy",
         f"- helium: a fresh cluster per run, {st['workers']} workers x {st['threads']} thread, policy `helium`, "
         "the whole batch submitted at once",
         f"- peer: a fresh `llama-server -t {st['peer_threads']} -tb {st['peer_threads']} --parallel N -c "
         f"{st['ctx']}{' --kv-unified' if st.get('kv_unified', 'on') == 'on' else ''} --cache-type-k {st['kv_type']} --cache-type-v {st['kv_type']} -fa {st['fa']}"
         f"{(' ' + st['server_args']) if st['server_args'] else ''}` per run, N in {st['parallel']}; an asyncio "
         "agent runner (bench/peer/agent.py) starts every job at once and sends each operator as soon as its "
         "inputs exist: `/completion` with `cache_prompt: true`, `temperature: 0`, the operator's max_tokens as "
         "`n_predict`, maps fanned out one request per item, tool calls as HTTP GETs to the same local service; "
         "prompts rendered byte for byte as Helium's coordinator renders them",
         f"- {st['reps']} round(s) per workload, helium and every N interleaved within a round; the run with the "
         "median throughput is shown, and the peer's figure is its best N",
         "- throughput = jobs / makespan (first job start to last job end); latency = job start to end; computed "
         "tok = prompt tokens prefilled (llama-server `timings.prompt_n` summed; Helium's `computed_tokens`); "
         "outputs equal = LLM/map/tool op outputs and job outputs byte-equal to Helium's; peer server busy = "
         "llama-server CPU time / (threads x makespan); load = the whole machine's busy fraction during the peer "
         "run (2 cores; anything above the two sides' own use is other jobs)", "",
         "## Results", "", WF.md_table(hdr, rows)]
    tk = {n: w.get("tokenization") for n, w in doc["workloads"].items()}
    s += ["Tokenization: token ids of llama-server `/tokenize` equal to `helium-worker tokenize` for "
          + ", ".join(f"{n} {v[0]}/{v[1]}" for n, v in tk.items() if v) + " prompts (rendered from Helium's "
          "outputs). Prompt token counts per op agree for "
          + ", ".join(f"{r['workload']} {(r['peer_best'] or {}).get('compare', {}).get('tok_match', '?')}/"
                      f"{(r['peer_best'] or {}).get('compare', {}).get('tok_ops', '?')}" for r in doc["summary"])
          + " LLM/map ops (an op downstream of an output that differs renders another prompt).", ""]
    if doc.get("notes"):
        s += ["## Where the time goes", ""] + [f"- {n}" for n in doc["notes"]] + [""]
    with open(path, "w") as f:
        f.write("\n".join(s))


def notes_of(doc):
    """Sentences on workloads under the target: tokens and CPU of both sides."""
    out = []
    for r in doc["summary"]:
        h, p = r["helium"] or {}, r["peer_best"] or {}
        if r["ratio"] is None or r["ratio"] >= TARGET:
            continue
        hw = (h.get("computed_tokens") or 0) + (h.get("generated_tokens") or 0)
        pw = (p.get("computed_tokens") or 0) + (p.get("generated_tokens") or 0)
        out.append(
            f"{r['workload']}: {r['ratio']}x (< {TARGET}x). Token work (prefilled + generated): helium {hw}, peer "
            f"{pw} ({pw / hw:.2f}x helium's)" if hw else f"{r['workload']}: {r['ratio']}x")
        out[-1] += (f"; peer server CPU {fmt(p.get('server_cpu_s'))} s over a {fmt(p.get('makespan_s'))} s makespan "
                    f"(busy {fmt(p.get('server_busy'))} of {doc['settings']['peer_threads']} threads); peer per-token "
                    f"times summed over requests: prompt {fmt(p.get('prompt_ms_sum'), 0)} ms, decode "
                    f"{fmt(p.get('predicted_ms_sum'), 0)} ms; helium worker forward time "
                    f"{fmt(h.get('worker_forward_s'))} s over a {fmt(h.get('makespan_s'))} s makespan.")
    return out


# ---------------------------------------------------------------- main

def llama_version(path):
    try:
        p = subprocess.run([path, "--version"], capture_output=True, text=True, timeout=30)
        return (p.stdout + p.stderr).strip().splitlines()[0]
    except Exception:  # noqa: BLE001
        return "?"


def main():
    ap = argparse.ArgumentParser(description="Helium against llama-server + an agent runner (see the file header)")
    ap.add_argument("--workloads", default=",".join(W.NAMES))
    ap.add_argument("--scale", default="small", choices=list(W.SCALES))
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--batch", type=int, default=0)
    ap.add_argument("--build", default=os.path.join(SRC, "build"), help="Helium build dir with bin/")
    ap.add_argument("--preset", default="small", choices=["tiny", "small", "medium"])
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--threads", type=int, default=1, help="threads per Helium worker")
    ap.add_argument("--peer-threads", type=int, default=2, help="llama-server threads")
    ap.add_argument("--parallel", default="1,2,4,8", help="llama-server --parallel values to try")
    ap.add_argument("--ctx", type=int, default=32768, help="llama-server -c (the unified KV cache, all slots)")
    ap.add_argument("--kv-unified", default="off", choices=["on", "off"],
                    help="llama-server --kv-unified (one KV buffer for all slots: measured 3.6x slower on map_reduce; off, the default: -c split among the slots)")
    ap.add_argument("--kv-type", default="f32", help="llama-server KV cache type (f32: as Helium's)")
    ap.add_argument("--fa", default="off", choices=["on", "off", "auto"], help="llama-server flash attention")
    ap.add_argument("--server-args", default="--poll 0", help="extra llama-server arguments (default --poll 0: no "
                    "spin-waiting, which on a shared or oversubscribed CPU measured slower)")
    ap.add_argument("--llama-server", default=None, help="llama-server binary (default: build-llama-server.sh)")
    ap.add_argument("--reps", type=int, default=1)
    ap.add_argument("--tok-check", type=int, default=8, help="prompts per workload whose token ids are compared")
    ap.add_argument("--timeout", type=float, default=900)
    ap.add_argument("--workdir", default=None)
    ap.add_argument("--out", default=os.path.join(BENCH, "results", "peer"))
    args = ap.parse_args()

    args.bin = os.path.join(os.path.abspath(args.build), "bin")
    for exe in ("helium-coordinator", "helium-worker", "heliumctl", "helium-mkmodel"):
        if not os.access(os.path.join(args.bin, exe), os.X_OK):
            WF.warn(f"bench/peer: {args.bin}/{exe} missing (build first, or --build DIR)")
            return 1
    if not args.llama_server:
        p = subprocess.run(["bash", os.path.join(HERE, "build-llama-server.sh")], stdout=subprocess.PIPE, text=True)
        if p.returncode != 0:
            WF.warn("bench/peer: building llama-server failed")
            return 1
        args.llama_server = p.stdout.strip().splitlines()[-1]
    own = args.workdir is None
    args.workdir = args.workdir or f"/tmp/helium-bench-peer-{os.getpid()}"
    os.makedirs(args.workdir, exist_ok=True)
    os.makedirs(args.out, exist_ok=True)
    args.model = os.path.join(args.workdir, f"model-{args.preset}.gguf")
    WF.run([os.path.join(args.bin, "helium-mkmodel"), "--preset", args.preset, "--arch", "llama", "--dtype", "f32",
            "--seed", "1", "-o", args.model], timeout=300)
    # what bench/workflows.py's run_policy reads
    args.baseline_pulls, args.coord_args, args.worker_args, args.settle = 0, "", "", 1.2
    vocab = A.Vocab(args.model)
    nps = [int(x) for x in args.parallel.split(",") if x]
    signal.signal(signal.SIGTERM, lambda *a: sys.exit(143))
    service = WF.Service()
    rng = random.Random(os.getpid() ^ int(time.time()))
    doc = {"date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"), "git": WF.git_rev(),
           "machine": WF.machine_info(),
           "settings": {"scale": args.scale, "seed": args.seed, "batch_override": args.batch or None,
                        "preset": args.preset, "model": args.model, "workers": args.workers,
                        "threads": args.threads, "peer_threads": args.peer_threads, "parallel": nps,
                        "kv_unified": args.kv_unified,
                        "ctx": args.ctx, "kv_type": args.kv_type, "fa": args.fa, "server_args": args.server_args,
                        "reps": args.reps, "llama_server": args.llama_server,
                        "llama_version": llama_version(args.llama_server)},
           "workloads": {}, "records": []}
    t_all = time.time()
    try:
        for name in [w for w in args.workloads.split(",") if w]:
            wl = W.build(name, args.scale, args.seed, args.batch or None)
            paths = WF.prepare_workload(args, wl, service)
            log(f"== {name}: {len(wl.jobs)} jobs; {wl.notes}")
            h_ref = None
            for rep in range(args.reps):
                order = ["helium"] + nps if rep % 2 == 0 else nps[::-1] + ["helium"]
                for side in order:
                    if side == "helium":
                        probe = LoadProbe()
                        rec, res = WF.run_policy(args, wl, paths, "helium", rng, service)
                        rec.update(probe.done())
                        rec["side"] = "helium"
                        if res and h_ref is None:
                            h_ref = res
                    else:
                        rec, jobs = run_peer(args, wl, side, vocab, f"{name}-np{side}-r{rep}")
                        rec["_jobs"] = jobs
                    rec["rep"] = rep
                    doc["records"].append(rec)
                    log(f"   {rec['side']:9s} [{rep + 1}/{args.reps}] " + (
                        f"FAILED: {rec['error']}" if rec.get("throughput_wpm") is None else
                        f"makespan {fmt(rec['makespan_s'])} s, {fmt(rec['throughput_wpm'], 1)} wf/min, p50 "
                        f"{fmt(rec['latency_p50_s'])} s, computed {fmt(rec.get('computed_tokens'))} tok, "
                        f"load {fmt(rec.get('busy_all'))}"))
            for rec in doc["records"]:
                if rec["workload"] == name and "_jobs" in rec:
                    jobs = rec.pop("_jobs")
                    if jobs and h_ref:
                        rec["compare"] = compare_outputs(h_ref, jobs)
            wd = {"notes": wl.notes, "jobs": len(wl.jobs)}
            if h_ref:
                try:
                    wd["tokenization"] = tokenization_check(args, wl, h_ref, vocab, args.tok_check)
                except Exception as e:  # noqa: BLE001
                    WF.warn(f"bench/peer: {name}: tokenization check failed: {e}")
            doc["workloads"][name] = wd
            report(args, doc, t_all, final=False)  # what is measured so far, in case the run is cut short
    finally:
        service.close()
    report(args, doc, t_all, final=True)
    if own:
        shutil.rmtree(args.workdir, ignore_errors=True)
    return 0


def report(args, doc, t_all, final):
    """Writes OUT/peer.json and peer.md from the records so far; prints the table when final."""
    doc["total_wall_s"] = round(time.time() - t_all, 1)
    doc["machine"]["loadavg_end"] = [round(x, 2) for x in os.getloadavg()]
    doc["summary"] = summarize(doc)
    doc["notes"] = notes_of(doc)
    hdr, rows = table(doc["summary"])
    with open(os.path.join(args.out, "peer.json"), "w") as f:
        json.dump(doc, f, indent=1)
        f.write("\n")
    write_md(os.path.join(args.out, "peer.md"), doc, hdr, rows)
    if not final:
        return
    log("")
    WF.print_table(hdr, rows)
    log("\nhelium / peer throughput (peer at its best --parallel):")
    for s in doc["summary"]:
        log(f"  {s['workload']:18s} {fmt(s['ratio'])}x" + ("" if s["ratio"] and s["ratio"] >= TARGET else
                                                           f"   (below the {TARGET}x target)"))
    for n in doc["notes"]:
        log("  " + n)
    log(f"\nwrote {args.out}/peer.json, peer.md; total {doc['total_wall_s']} s")


if __name__ == "__main__":
    sys.exit(main())
