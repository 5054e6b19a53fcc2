#!/usr/bin/env python3
"""Stop strings that end generation: the examples' generated tokens before and after.

Before issue 14 a stop string only cut the text after decoding, so a call with
`stop` decoded to max_tokens anyway. Since then the engine ends the request the
moment its text contains a stop string. The old behaviour is exactly a run of
the same workflow with its stop strings removed (greedy decoding is the same;
the old worker then cut the text afterwards), so this script runs both on one
cluster, in one run, and prints per example: tokens generated without and with
the stops, the ratio, and whether every output equals the stop-less output
cut at its first stop string (it must). Job times are printed but are not a
comparison: the second run of each pair finds the first's prompts cached.

    python3 bench/stop_strings.py [--build build] [--model PATH] [--reps 1]

The default model is SmolLM2-135M-Instruct (scripts/fetch-model.sh): a real
model writes the newlines the examples stop at; a generated model's random
weights rarely do.
"""
import argparse, copy, http.server, json, os, subprocess, sys, tempfile, threading, time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

STORES = """Store 101 Lyon: sales -4% vs last year, out-of-stock 2.1%, no alarms, 1 complaint.
Store 102 Paris Bastille: sales -18% vs last year, out-of-stock 3.0%, no alarms, 2 complaints.
Store 103 Berlin Mitte: sales +6%, out-of-stock 9.2%, no alarms, 0 complaints.
Store 104 Madrid Sol: sales -2%, out-of-stock 1.5%, refrigeration alarm 35 minutes, 1 complaint."""
DOCUMENT = ("Northwind Outfitters reported revenue of 41.2 million, up 6% on the year, while gross margin fell "
            "from 44% to 39% as freight costs rose. The company signed a new five-year lease for its Lyon warehouse "
            "and faces a pending claim from a supplier over a cancelled order. Cash on hand is 3.1 million against "
            "a 5 million revolving credit line that matures next spring.")
EXAMPLES = [
    ("store_monitoring", {"stores": STORES}),
    ("map_reduce", {"document": DOCUMENT}),
    ("customer_service", {"message": "Where is my order? It has been a week.", "order_id": "A1001"}),
]


class Orders(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        body = json.dumps({"order_id": self.path.rsplit("/", 1)[-1], "status": "shipped",
                           "carrier": "DHL", "eta": "2 days"}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *a):
        pass


def strip_stops(wf):
    w = copy.deepcopy(wf)
    def walk(op):
        op.pop("stop", None)
        if isinstance(op.get("body"), dict):
            walk(op["body"])
        for b in op.get("body", []) if isinstance(op.get("body"), list) else []:
            walk(b)
    for op in w["ops"]:
        walk(op)
    return w


def stops_of(wf):
    """op id -> its stop strings; a map's body is named MAP.body unless it has an id."""
    out = {}
    def walk(op, default_id=None):
        oid = op.get("id", default_id)
        if "stop" in op:
            out[oid] = op["stop"] if isinstance(op["stop"], list) else [op["stop"]]
        if isinstance(op.get("body"), dict):
            walk(op["body"], oid + ".body")
        elif isinstance(op.get("body"), list):
            for b in op["body"]:
                walk(b)
    for op in wf["ops"]:
        walk(op)
    return out


def cut(text, stops):
    at = len(text)
    for s in stops:
        i = text.find(s)
        if 0 <= i < at:
            at = i
    return text[:at]


def run_job(ctl, path, inputs):
    cmd = ctl + ["--json", "submit", path, "--wait"]
    for k, v in inputs.items():
        cmd += ["--input", f"{k}={v}"]
    t0 = time.time()
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
    dt = time.time() - t0
    if r.returncode != 0:
        sys.exit(f"heliumctl failed ({r.returncode}): {r.stderr}\n{r.stdout[-2000:]}")
    return json.loads(r.stdout), dt


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--build", default="build")
    ap.add_argument("--model", default=None)
    ap.add_argument("--reps", type=int, default=1)
    ap.add_argument("--out", default=os.path.join(ROOT, "bench/results/stop_strings"))
    a = ap.parse_args()
    bindir = os.path.join(ROOT, a.build, "bin")
    model = a.model or subprocess.run(["bash", os.path.join(ROOT, "scripts/fetch-model.sh"), "smollm2-135m-instruct"],
                                      capture_output=True, text=True, check=True).stdout.strip().splitlines()[-1]
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Orders)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    orders = f"http://127.0.0.1:{srv.server_address[1]}/orders"
    run = tempfile.mkdtemp(prefix="helium-stops.")
    env = dict(os.environ, HELIUM_BIN=bindir, HELIUM_MODEL=model, HELIUM_PORT=os.environ.get("HELIUM_PORT", "7950"),
               HELIUM_THREADS="1")
    subprocess.run(["bash", os.path.join(ROOT, "scripts/cluster.sh"), "up", run, "2"], env=env, check=True,
                   stdout=subprocess.DEVNULL)
    rows = []
    try:
        cenv = dict(l.split("=", 1) for l in open(os.path.join(run, "cluster.env")).read().split() if "=" in l)
        ctl = [os.path.join(bindir, "heliumctl"), "--insecure", "--coordinator", cenv["HELIUM_COORDINATOR"].strip('"')]
        for name, inputs in EXAMPLES:
            wf = json.load(open(os.path.join(ROOT, "examples", name + ".json")))
            if name == "customer_service":
                inputs = dict(inputs, orders_url=orders)
            if "allow_hosts" in wf:
                wf["allow_hosts"] = ["127.0.0.1:%d" % srv.server_address[1]]
            plain = os.path.join(run, name + ".nostop.json")
            json.dump(strip_stops(wf), open(plain, "w"))
            withstop = os.path.join(run, name + ".json")
            json.dump(wf, open(withstop, "w"))
            stops = stops_of(wf)
            for rep in range(a.reps):
                jb, tb = run_job(ctl, plain, inputs)            # before: stops cut afterwards
                ja, ta = run_job(ctl, withstop, inputs)         # after: stops end generation
                gb = sum(o["generated_tokens"] for o in jb["ops"])
                ga = sum(o["generated_tokens"] for o in ja["ops"])
                same = True
                for ob, oa in zip(jb["ops"], ja["ops"]):
                    if ob["op_id"] in stops:
                        outs_b = ob["outputs"] or [ob["output"]]
                        outs_a = oa["outputs"] or [oa["output"]]
                        if [cut(x, stops[ob["op_id"]]) for x in outs_b] != outs_a:
                            same = False
                rows.append({"example": name, "rep": rep, "generated_before": gb, "generated_after": ga,
                             "seconds_before": round(tb, 2), "seconds_after": round(ta, 2), "outputs_equal": same})
                print(f"{name:18s} generated {gb:5d} -> {ga:5d} tokens ({gb / max(ga, 1):.2f}x fewer), "
                      f"{tb:6.2f} s -> {ta:6.2f} s, outputs equal: {same}", flush=True)
    finally:
        subprocess.run(["bash", os.path.join(ROOT, "scripts/cluster.sh"), "down", run], env=env,
                       stdout=subprocess.DEVNULL)
        srv.shutdown()
    os.makedirs(a.out, exist_ok=True)
    cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "?")
    json.dump({"model": os.path.basename(model), "cpu": cpu, "load": os.getloadavg(), "rows": rows},
              open(os.path.join(a.out, "stop_strings.json"), "w"), indent=1)
    if not all(r["outputs_equal"] for r in rows):
        sys.exit("an output differs from the stop-less output cut at its stop string")


if __name__ == "__main__":
    main()
