"""agent.py: a plain asyncio agent runner that executes Helium workflow JSON
against llama.cpp's llama-server, the way an agent framework (LangGraph,
LangChain, a hand-written asyncio app) runs a multi-call workflow: every
operator is sent as soon as the operators it reads have finished, LLM calls
are POST /completion requests with cache_prompt, maps fan out one request per
item at once, tool calls are plain HTTP requests. Used by bench/peer/run.py.

Text is handled as bytes from end to end so that the prompts sent are the
very prompts Helium's coordinator renders (coordinator/jobs.c render_value,
coordinator/render.c rnd_split/rnd_join):
  - a template is literal text and {{input.X}}, {{op.X}}, {{item}}, {{prev}}
    placeholders (docs/workflow-format.md, escapes included);
  - a map's output is a list; where a template reads it, its items are joined
    with "\\n" (a join operator's own separator for a join);
  - generated text is rebuilt byte for byte from the generated token ids
    (`return_tokens`) and the model's own vocabulary, as Helium's worker
    detokenizes (control and unknown tokens render as nothing), because
    llama-server's `content` replaces invalid UTF-8 (a random-weight model
    emits plenty) with U+FFFD in its own way;
  - a prompt goes over JSON as text decoded with llama.cpp's tokenizer rule
    (an invalid byte becomes U+FFFD and consumes one byte), which both
    tokenizers apply to the raw bytes anyway, so the token ids are the same.
    Code points JSON cannot carry (UTF-16 surrogates from CESU-style bytes)
    are counted in `unsendable` and sent as U+FFFD.

Invariant: the runner never looks at Helium's results; equality is checked
afterwards by the caller.
"""
import asyncio
import http.client
import json
import re
import struct
import time
import urllib.parse

# ------------------------------------------------------------------ vocabulary


def _gguf_vocab(path):
    """(tokens: [str], types: [int]) from a GGUF file's tokenizer.ggml.* keys."""
    with open(path, "rb") as f:
        def rd(n):
            b = f.read(n)
            if len(b) != n:
                raise ValueError(f"{path}: truncated GGUF header")
            return b

        def u32():
            return struct.unpack("<I", rd(4))[0]

        def u64():
            return struct.unpack("<Q", rd(8))[0]

        def string():
            return rd(u64()).decode("utf-8", "surrogateescape")

        fixed = {0: "<B", 1: "<b", 2: "<H", 3: "<h", 4: "<I", 5: "<i", 6: "<f", 7: "<?", 10: "<Q", 11: "<q",
                 12: "<d"}

        def value(t):
            if t in fixed:
                fmt = fixed[t]
                return struct.unpack(fmt, rd(struct.calcsize(fmt)))[0]
            if t == 8:
                return string()
            if t == 9:
                et, n = u32(), u64()
                return [value(et) for _ in range(n)]
            raise ValueError(f"{path}: unknown GGUF value type {t}")

        if rd(4) != b"GGUF":
            raise ValueError(f"{path}: not a GGUF file")
        u32()  # version
        u64()  # tensors
        n_kv = u64()
        kv = {}
        for _ in range(n_kv):
            k = string()
            kv[k] = value(u32())
    return kv["tokenizer.ggml.tokens"], kv.get("tokenizer.ggml.token_type") or [1] * len(kv["tokenizer.ggml.tokens"])


def _unicode_to_byte():
    """GPT-2's byte <-> printable code point map, inverted."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(0xA1, 0xAC + 1)) + list(range(0xAE, 0xFF + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return {chr(c): b for b, c in zip(bs, cs)}


class Vocab:
    """Token id -> the bytes Helium's worker writes for it (tok_decode_piece,
    render_special false: control (3) and unknown (2) tokens are empty)."""

    def __init__(self, gguf_path):
        tokens, types = _gguf_vocab(gguf_path)
        u2b = _unicode_to_byte()
        self.pieces = []
        for t, ty in zip(tokens, types):
            if ty in (2, 3):
                self.pieces.append(b"")
            elif ty == 4:  # user-defined: the text itself
                self.pieces.append(t.encode("utf-8", "surrogateescape"))
            else:
                self.pieces.append(bytes(u2b[c] for c in t) if all(c in u2b for c in t)
                                   else t.encode("utf-8", "surrogateescape"))

    def decode(self, ids):
        return b"".join(self.pieces[i] for i in ids if 0 <= i < len(self.pieces))


# ------------------------------------------------------------------ text


def llama_text(b):
    """bytes -> (str the tokenizer sees, number of code points JSON cannot carry).
    Follows llama.cpp's unicode_cpt_from_utf8 plus its error path (one U+FFFD
    per byte of a malformed or truncated sequence; overlong forms accepted)."""
    out, bad, i, n = [], 0, 0, len(b)
    while i < n:
        c = b[i]
        if c < 0x80:
            out.append(c)
            i += 1
            continue
        cp, ln = None, 1
        if c & 0xE0 == 0xC0 and i + 1 < n and b[i + 1] & 0xC0 == 0x80:
            cp, ln = ((c & 0x1F) << 6) | (b[i + 1] & 0x3F), 2
        elif c & 0xF0 == 0xE0 and i + 2 < n and b[i + 1] & 0xC0 == 0x80 and b[i + 2] & 0xC0 == 0x80:
            cp, ln = ((c & 0x0F) << 12) | ((b[i + 1] & 0x3F) << 6) | (b[i + 2] & 0x3F), 3
        elif (c & 0xF8 == 0xF0 and i + 3 < n and b[i + 1] & 0xC0 == 0x80 and b[i + 2] & 0xC0 == 0x80
              and b[i + 3] & 0xC0 == 0x80):
            cp = ((c & 0x07) << 18) | ((b[i + 1] & 0x3F) << 12) | ((b[i + 2] & 0x3F) << 6) | (b[i + 3] & 0x3F)
            ln = 4
        if cp is None or cp > 0x10FFFF:
            cp = 0xFFFD
        elif 0xD800 <= cp <= 0xDFFF:
            cp, bad = 0xFFFD, bad + 1
        out.append(cp)
        i += ln
    return "".join(map(chr, out)), bad


_PH = re.compile(rb"\{\{\s*(input\.[A-Za-z0-9_.-]+|op\.[A-Za-z0-9_.-]+|item|prev)\s*\}\}")


def parse_template(t):
    """Template text -> [bytes | ('input'|'op', name) | ('item',) | ('prev',)],
    with the escapes of docs/workflow-format.md (a backslash before {{, and
    in a run of three or more '{' all but the last two are literal)."""
    b = t.encode("utf-8") if isinstance(t, str) else t
    parts, lit, i = [], bytearray(), 0
    while i < len(b):
        if b[i:i + 3] == b"\\{{":
            lit += b"{{"
            i += 3
            continue
        if b[i:i + 2] == b"{{":
            j = i
            while j < len(b) and b[j:j + 1] == b"{":
                j += 1
            lit += b[i:j - 2]  # extra braces of a run are literal
            m = _PH.match(b, j - 2)
            if not m:
                raise ValueError(f"bad placeholder at byte {i}")
            ref = m.group(1).decode()
            if ref in ("item", "prev"):
                ph = (ref,)
            else:
                kind, name = ref.split(".", 1)
                ph = (kind, name)
            if lit:
                parts.append(bytes(lit))
                lit = bytearray()
            parts.append(ph)
            i = m.end()
            continue
        lit.append(b[i])
        i += 1
    if lit:
        parts.append(bytes(lit))
    return parts


def template_refs(parts):
    return {p[1] for p in parts if isinstance(p, tuple) and p[0] == "op"}


def split_items(text, mode):
    """coordinator/render.c rnd_split: lines (trimmed, blanks skipped) or a JSON array."""
    if mode != "lines":
        try:
            s = text.decode("utf-8")
            arr = json.loads(s) if s.strip().startswith("[") else None
        except ValueError:
            arr = None
        if isinstance(arr, list):
            return [x.encode() if isinstance(x, str) else json.dumps(x, separators=(",", ":")).encode()
                    for x in arr]
        if mode == "json":
            raise ValueError("the list is not a JSON array")
    items = []
    for ln in text.split(b"\n"):
        ln = ln.strip(b" \t\r\n\f\v")
        if ln:
            items.append(ln)
    return items


# ------------------------------------------------------------------ HTTP


def http_call(host, port, method, path, body=None, headers=None, timeout=600):
    """One HTTP request on a fresh connection; returns (status, body bytes)."""
    c = http.client.HTTPConnection(host, port, timeout=timeout)
    try:
        c.request(method, path, body=body, headers=headers or {})
        r = c.getresponse()
        return r.status, r.read()
    finally:
        c.close()


def http_url(method, url, body=b"", headers=None, timeout=5.0):
    u = urllib.parse.urlsplit(url)
    path = (u.path or "/") + (("?" + u.query) if u.query else "")
    return http_call(u.hostname, u.port or 80, method.upper(), path, body or None, headers, timeout)


# ------------------------------------------------------------------ runner


class Stats:
    """Counters over every request of a run; only touched from the event loop thread."""

    def __init__(self):
        self.requests = self.prompt_tokens = self.computed_tokens = self.generated_tokens = 0
        self.tool_requests = self.unsendable = 0
        self.prompt_ms = self.predicted_ms = 0.0


class Agent:
    """Runs jobs of one workflow against a llama-server at host:port."""

    def __init__(self, workflow, vocab, host, port, pool):
        self.wf = workflow
        self.vocab = vocab
        self.host, self.port = host, port
        self.pool = pool  # a ThreadPoolExecutor for the blocking HTTP calls
        self.stats = Stats()
        self.defaults = {s["name"]: s["default"].encode() for s in workflow.get("inputs", [])
                         if isinstance(s, dict) and "default" in s}
        self.ops = {op["id"]: op for op in workflow["ops"]}
        self.tmpl = {}
        for op in workflow["ops"]:
            self._parse(op)
        used = set()
        for op in workflow["ops"]:
            used |= self._deps(op)
        self.output = workflow.get("output") or [o["id"] for o in workflow["ops"] if o["id"] not in used][-1]

    def _parse(self, op):
        key = id(op)
        t = op["type"]
        if t == "llm":
            self.tmpl[key] = {"prompt": parse_template(op["prompt"])}
        elif t == "tool":
            self.tmpl[key] = {"url": parse_template(op["url"]), "body": parse_template(op.get("body", ""))}
        elif t == "join":
            self.tmpl[key] = {"parts": parse_template(op["parts"])} if "parts" in op else {
                "refs": [tuple(r.split(".", 1)) for r in op["refs"]]}
        elif t == "map":
            self._parse(op["body"])
        elif t == "loop":
            for b in op["body"]:
                self._parse(b)

    def _deps(self, op):
        """Ids of top-level ops that op (and its body) reads."""
        t = op["type"]
        if t == "map":
            d = self._deps(op["body"])
            if op["over"].startswith("op."):
                d.add(op["over"][3:])
            return d
        if t == "loop":
            inner = {b["id"] for b in op["body"]}
            d = set()
            for b in op["body"]:
                d |= self._deps(b)
            return d - inner
        tm = self.tmpl[id(op)]
        if "refs" in tm:
            return {n for k, n in tm["refs"] if k == "op"}
        d = set()
        for parts in tm.values():
            d |= template_refs(parts)
        return d

    # -- rendering

    @staticmethod
    def _value(v, sep):
        return sep.join(v) if isinstance(v, list) else v

    def _render(self, parts, env, sep=b"\n"):
        out = []
        for p in parts:
            if isinstance(p, bytes):
                out.append(p)
            elif p[0] == "input":
                out.append(env["inputs"][p[1]])
            elif p[0] == "op":
                out.append(self._value(env["outs"][p[1]], sep))
            elif p[0] == "item":
                out.append(env.get("item") or b"")
            else:
                out.append(env.get("prev") or b"")
        return b"".join(out)

    # -- operators

    async def _llm(self, op, env, calls):
        prompt = self._render(self.tmpl[id(op)]["prompt"], env)
        text, bad = llama_text(prompt)
        self.stats.unsendable += bad
        req = {"prompt": text, "n_predict": op.get("max_tokens", 256), "temperature": op.get("temperature", 0),
               "cache_prompt": True, "return_tokens": True, "stream": False}
        if op.get("temperature", 0) > 0:
            req.update({"top_k": op.get("top_k", 0), "top_p": op.get("top_p", 1), "seed": op.get("seed", 0)})
        if op.get("stop"):
            req["stop"] = op["stop"] if isinstance(op["stop"], list) else [op["stop"]]
        body = json.dumps(req, ensure_ascii=False).encode("utf-8")
        loop = asyncio.get_running_loop()
        st, data = await loop.run_in_executor(self.pool, http_call, self.host, self.port, "POST", "/completion", body,
                                              {"Content-Type": "application/json"})
        if st != 200:
            raise RuntimeError(f"llama-server /completion {st}: {data[:300]!r}")
        r = json.loads(data)
        tm = r.get("timings") or {}
        s = self.stats
        s.requests += 1
        s.prompt_tokens += r.get("tokens_evaluated") or 0
        s.computed_tokens += tm.get("prompt_n") or 0
        s.generated_tokens += tm.get("predicted_n") or 0
        s.prompt_ms += tm.get("prompt_ms") or 0.0
        s.predicted_ms += tm.get("predicted_ms") or 0.0
        calls.append({"op": env.get("label"), "prompt_tokens": r.get("tokens_evaluated"), "computed": tm.get("prompt_n")})
        toks = r.get("tokens")
        if toks is None:
            raise RuntimeError("llama-server did not return the generated token ids (return_tokens)")
        return self.vocab.decode(toks)

    async def _tool(self, op, env):
        tm = self.tmpl[id(op)]
        url = self._render(tm["url"], env).decode("utf-8", "replace")
        body = self._render(tm["body"], env)
        loop = asyncio.get_running_loop()
        st, data = await loop.run_in_executor(self.pool, http_url, op.get("method", "GET"), url, body,
                                              op.get("headers"), op.get("timeout_ms", 5000) / 1000.0)
        self.stats.tool_requests += 1
        if not 200 <= st < 300:
            raise RuntimeError(f"tool {op.get('id')}: HTTP {st}")
        return data

    def _join(self, op, env):
        sep = op.get("separator", "\n").encode()
        tm = self.tmpl[id(op)]
        if "parts" in tm:
            return self._render(tm["parts"], env, sep)
        vals = [env["inputs"][n] if k == "input" else self._value(env["outs"][n], sep) for k, n in tm["refs"]]
        return sep.join(vals)

    async def _one(self, op, env, calls):
        t = op["type"]
        if t == "llm":
            return await self._llm(op, env, calls)
        if t == "tool":
            return await self._tool(op, env)
        if t == "join":
            return self._join(op, env)
        raise RuntimeError(f"unsupported body operator type {t}")

    async def _map(self, op, env, calls):
        kind, name = op["over"].split(".", 1)
        src = env["inputs"][name] if kind == "input" else self._value(env["outs"][name], b"\n")
        items = split_items(src, op.get("split", "auto"))
        if len(items) > op.get("max_width", 256):
            raise RuntimeError(f"map {op['id']}: {len(items)} items > max_width")
        return list(await asyncio.gather(*(self._one(op["body"], dict(env, item=it), calls) for it in items)))

    async def _loop(self, op, env, calls, outs):
        prev = b""
        last = op.get("output") or op["body"][-1]["id"]
        for _ in range(op.get("max_rounds", 3)):
            round_outs = dict(env["outs"])
            renv = dict(env, outs=round_outs, prev=prev)
            await self._graph(op["body"], renv, calls, round_outs)
            for b in op["body"]:
                outs[b["id"]] = round_outs[b["id"]]  # a body op reports its last round
            prev = self._value(round_outs[last], b"\n")
            if op.get("until_contains") and op["until_contains"].encode() in prev:
                break
        return prev

    async def _graph(self, ops, env, calls, outs):
        """Runs ops (one scope) with each op started as soon as its deps are done."""
        tasks = {}

        async def run(op):
            for d in self._deps(op):
                if d in tasks:
                    await tasks[d]
            t = op["type"]
            oenv = dict(env, label=op["id"])
            if t == "map":
                v = await self._map(op, oenv, calls)
            elif t == "loop":
                v = await self._loop(op, oenv, calls, outs)
            else:
                v = await self._one(op, oenv, calls)
            outs[op["id"]] = v
            return v

        for op in ops:
            tasks[op["id"]] = asyncio.ensure_future(run(op))
        await asyncio.gather(*tasks.values())

    async def run_job(self, inputs):
        """One job: {op id: bytes or [bytes]}, the job output, timing and per-call counts."""
        t0 = time.time()
        env = {"inputs": dict(self.defaults, **{k: v.encode() for k, v in inputs.items()}), "outs": {}}
        outs, calls = env["outs"], []
        await self._graph(self.wf["ops"], env, calls, outs)
        return {"outputs": outs, "output": self._value(outs[self.output], b"\n"), "start": t0, "end": time.time(),
                "calls": calls}
