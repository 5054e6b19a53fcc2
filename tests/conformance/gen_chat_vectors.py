#!/usr/bin/env python3
"""Writes the real-model tokenizer, chat and Gemma 3 logits vectors that
tests/unit/test_tok_conformance.c and tests/cli/gemma_conformance.sh check
(tests/conformance/vectors/chat/), from llama.cpp itself.

    gen_chat_vectors.py --llama-build DIR [--llama-src DIR] [--out DIR]

DIR is a CMake build of llama.cpp (the pinned version scripts/llama-venv.sh
uses); llama_ref.c is compiled against its static libraries. Models come from
scripts/fetch-model.sh. Chat templates are rendered with jinja2 the way
llama-cpp-python's Jinja2ChatFormatter and transformers render them
(trim_blocks, lstrip_blocks, raise_exception), from the GGUF's own
tokenizer.chat_template (SmolLM2) or, for the Gemma 3 270M file, which has
none, Helium's built-in `gemma` template (Gemma 3's published template).

What it writes:
  tokenize.json    per model: strings with llama.cpp's ids, parse_special on
                   and off (add_special off); chats with the rendered text and
                   the ids Helium sends (parse_special on; BOS added iff the
                   model adds one and the text does not start with it).
  gemma3-270m.json, gemma3-270m.bin
                   a 100+ token sequence; per position, llama.cpp's logits on
                   a fixed sample of vocabulary ids and its top ids (all
                   positions in one decode), and how far llama.cpp's own
                   one-token-at-a-time logits are from those (the noise floor
                   the tolerance is set against).
"""
import argparse
import array
import hashlib
import json
import math
import os
import random
import struct
import subprocess
import sys
import tempfile

import jinja2

HERE = os.path.dirname(os.path.abspath(__file__))
SRC = os.path.dirname(os.path.dirname(HERE))
SYS_PATH_CHAT = os.path.join(SRC, "common", "chat.c")

MODELS = {
    "smollm2": {"fetch": "smollm2-135m-instruct", "template": "model"},
    "gemma3": {"fetch": "gemma3-270m", "template": "gemma"},
}

CONTROL = {
    "smollm2": ["<|im_start|>", "<|im_end|>", "<|endoftext|>", "<repo_name>", "<file_sep>"],
    "gemma3": ["<start_of_turn>", "<end_of_turn>", "<bos>", "<eos>", "<pad>", "<start_of_image>"],
}

EXTRA = [
    "https://example.com/path?query=1&x=y#frag", "user@example.org", "C:\\Windows\\System32", "/usr/local/bin",
    "def f(x):\n    return x * 2\n", "int main(void) { return 0; }", "{\"key\": [1, 2.5, null, true]}",
    "SELECT * FROM orders WHERE id = 42;", "3.14159 2.71828 1e-10 -0.5 +7", "1,000,000.00", "2026-12-04T23:30:00Z",
    "A1001 A1002 B-77", "Mr. Smith's dog's bone", "don't won't can't shouldn't've", "l'été à Paris", "Grüße aus Köln",
    "Привет, мир", "مرحبا بالعالم", "שלום עולם", "你好，世界！", "こんにちは世界", "안녕하세요 세계", "ยินดีต้อนรับ",
    "e\u0301 vs é (NFC vs NFD)", "zero\u200bwidth", "tab\tseparated\tvalues", "   ", "\t", "a", "aaaaaaaaaaaaaaaaaaaaaaaa",
    "The quick brown fox jumps over the lazy dog.", "STATUS: ACTION\nWHY: sales -31%\nNEXT: call the manager",
    "<not_a_token>", "<|not_a_token|>", "<<>>", "||", "[INST] hello [/INST]", "<s> </s> <unk>",
]

CHATS = [
    [{"role": "user", "content": "What is the capital of France?"}],
    [{"role": "system", "content": "You are terse."}, {"role": "user", "content": "Hi there!"}],
    [{"role": "user", "content": "  leading and trailing spaces  \n"}],
    [{"role": "system", "content": "S"}, {"role": "user", "content": "a"}, {"role": "assistant", "content": " b "},
     {"role": "user", "content": "c"}],
    [{"role": "user", "content": "Store 102 Paris Bastille: sales -18% vs last year, out-of-stock 3.0%, 2 complaints."}],
    [{"role": "user", "content": "quote ' and \" and {{ braces }} and {% tags %}\n\ttab"}],
    [{"role": "user", "content": "Ünïcödé: 日本語のテキスト, emoji 😀, math ∑ x²"}],
    [{"role": "system", "content": "You watch stores.\n\nRules:\n- a\n- b"},
     {"role": "user", "content": "Store report: ok\n\nWrite the note."}],
    [{"role": "user", "content": "Line one\nLine two\n\n\nLine five"}],
    [{"role": "user", "content": "x"}, {"role": "assistant", "content": "y"}, {"role": "user", "content": "z"},
     {"role": "assistant", "content": "w"}, {"role": "user", "content": "v"}],
    [{"role": "user", "content": ""}],
    [{"role": "user", "content": "text with <|im_end|> and <end_of_turn> inside it"}],
]


def tok_strings(model):
    """150+ strings: the generated-model set, control tokens in many contexts."""
    src = open(os.path.join(HERE, "gen_vectors.py")).read()
    i = src.index("TOK_STRINGS = [")
    j = src.index("]\n", i)
    base = eval(src[i + len("TOK_STRINGS = "):j + 1])  # a literal list in our own file
    out = list(base)
    ctl = CONTROL[model]
    for c in ctl:
        out += [c, c + c, " " + c, c + " ", "a" + c + "b", c + "\nhello", "hello\n" + c, c[:-1], c[1:],
                c.upper(), "<" + c, "\n" + c, c + "\n\n", "x " + c + " y", c + "."]
    out += [ctl[0] + "user\nHello!" + ctl[1] + "\n" + ctl[0] + "assistant\n",
            "no control tokens at all, just text.",
            ctl[1] + ctl[0] + ctl[2],
            "mixed " + ctl[0] + " spaces " + ctl[1] + "  end"]
    out += EXTRA
    seen, uniq = set(), []
    for s in out:
        if s not in seen:
            seen.add(s)
            uniq.append(s)
    return uniq


def builtin_template(name):
    """A built-in template's Jinja source, read from common/chat.c."""
    import re
    src = open(SYS_PATH_CHAT).read()
    body = src[src.index("static const builtin BUILTINS[] = {"):]
    body = body[:body.index("};")]
    for m in re.finditer(r'\{"(\w+)",\s*((?:"(?:[^"\\]|\\.)*"\s*)+)\}', body):
        if m.group(1) == name:
            parts = re.findall(r'"((?:[^"\\]|\\.)*)"', m.group(2))
            return "".join(parts).encode("latin-1").decode("unicode_escape")
    raise KeyError(name)


def gguf_str(path, key):
    """Reads one string metadata value (None if absent)."""
    with open(path, "rb") as f:
        def rd(fmt):
            return struct.unpack("<" + fmt, f.read(struct.calcsize("<" + fmt)))
        f.read(8)
        _, nkv = rd("QQ")
        sizes = {0: 1, 1: 1, 2: 2, 3: 2, 4: 4, 5: 4, 6: 4, 7: 1, 10: 8, 11: 8, 12: 8}

        def skip(t):
            if t in sizes:
                f.read(sizes[t])
            elif t == 8:
                (n,) = rd("Q")
                return f.read(n)
            elif t == 9:
                et, n = rd("IQ")
                if et in sizes:
                    f.read(sizes[et] * n)
                else:
                    for _ in range(n):
                        skip(et)
            return None
        for _ in range(nkv):
            (n,) = rd("Q")
            k = f.read(n).decode()
            (t,) = rd("I")
            v = skip(t)
            if k == key:
                return v.decode() if v is not None else None
    return None


def render(tmpl, messages, bos, eos):
    def raise_exception(msg):
        raise jinja2.exceptions.TemplateError(msg)
    env = jinja2.Environment(trim_blocks=True, lstrip_blocks=True)
    env.globals["raise_exception"] = raise_exception
    return env.from_string(tmpl).render(messages=messages, add_generation_prompt=True, bos_token=bos, eos_token=eos)


def run_tok(ref, model, texts, tmp):
    inp, outp = os.path.join(tmp, "in.bin"), os.path.join(tmp, "out.txt")
    with open(inp, "wb") as f:
        for s in texts:
            b = s.encode()
            f.write(struct.pack("<I", len(b)) + b)
    subprocess.run([ref, "tok", model, inp, outp], check=True, stderr=subprocess.DEVNULL)
    lines = open(outp).read().split("\n")
    ids = [[int(x) for x in l.split(",")] if l else [] for l in lines[:2 * len(texts)]]
    return [(ids[2 * i], ids[2 * i + 1]) for i in range(len(texts))]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--llama-build", required=True)
    ap.add_argument("--llama-src", default=None)
    ap.add_argument("--out", default=os.path.join(HERE, "vectors", "chat"))
    ap.add_argument("--skip-logits", action="store_true", help="write tokenize.json only")
    args = ap.parse_args()
    lsrc = args.llama_src or os.path.join(os.path.dirname(args.llama_build.rstrip("/")), "src")
    os.makedirs(args.out, exist_ok=True)
    tmp = tempfile.mkdtemp()
    ref = os.path.join(tmp, "llama_ref")
    b = args.llama_build
    subprocess.run(["g++", "-O1", "-x", "c", os.path.join(HERE, "llama_ref.c"), "-x", "none",
                    "-I" + os.path.join(lsrc, "include"), "-I" + os.path.join(lsrc, "ggml", "include"), "-o", ref,
                    os.path.join(b, "src", "libllama.a"), os.path.join(b, "ggml", "src", "libggml.a"),
                    os.path.join(b, "ggml", "src", "libggml-cpu.a"), os.path.join(b, "ggml", "src", "libggml-base.a"),
                    "-fopenmp", "-lpthread", "-lm", "-ldl"], check=True)
    doc = {"reference": "llama.cpp llama_tokenize(add_special=false) via tests/conformance/llama_ref.c; "
                        "chats rendered by jinja2 (trim_blocks, lstrip_blocks)", "models": {}}
    gemma_path = None
    for key, mi in MODELS.items():
        path = subprocess.run(["bash", os.path.join(SRC, "scripts", "fetch-model.sh"), mi["fetch"]], check=True,
                              capture_output=True, text=True).stdout.strip()
        if key == "gemma3":
            gemma_path = path
        strings = tok_strings(key)
        res = run_tok(ref, path, strings, tmp)
        entry = {"fetch": mi["fetch"], "template": mi["template"],
                 "strings": [{"text": s, "special": a, "plain": p} for s, (a, p) in zip(strings, res)], "chats": []}
        tmpl = gguf_str(path, "tokenizer.chat_template") if mi["template"] == "model" else builtin_template(mi["template"])
        bos_text = {"smollm2": "<|im_start|>", "gemma3": "<bos>"}[key]  # text of tokenizer.ggml.bos_token_id
        eos_text = {"smollm2": "<|im_end|>", "gemma3": "<eos>"}[key]
        add_bos = key == "gemma3"  # tokenizer.ggml.add_bos_token of each file
        bos_id = {"smollm2": 1, "gemma3": 2}[key]
        texts, chats = [], []
        for c in CHATS:
            try:
                t = render(tmpl, c, bos_text, eos_text)
            except jinja2.exceptions.TemplateError as e:
                chats.append({"messages": c, "error": str(e)})
                continue
            chats.append({"messages": c, "text": t})
            texts.append(t)
        res = run_tok(ref, path, texts, tmp)
        k = 0
        for ch in chats:
            if "text" in ch:
                ids = res[k][0]
                k += 1
                if add_bos and not ch["text"].startswith(bos_text):
                    ids = [bos_id] + ids
                ch["ids"] = ids
        entry["chats"] = chats
        doc["models"][key] = entry
        print(key, len(strings), "strings,", len(chats), "chats", file=sys.stderr)
    with open(os.path.join(args.out, "tokenize.json"), "w") as f:
        json.dump(doc, f, ensure_ascii=False, indent=1)
        f.write("\n")

    if args.skip_logits:
        return
    # Gemma 3 logits: a chat's ids, repeated to 100+ tokens
    text = render(builtin_template("gemma"), [
        {"role": "system", "content": "You are the overnight operations assistant for a chain of grocery stores."},
        {"role": "user", "content": "Store 105 Milan Duomo: sales -31% vs last year, out-of-stock 4.4%, no alarms, "
                                    "6 complaints. Store 106 Vienna: sales +1%, out-of-stock 0.9%, no alarms, 0 "
                                    "complaints, staff absence 25%. Write one status line per store, naming the "
                                    "metric that matters most and what the manager should do next."}],
        "<bos>", "<eos>")
    ids = run_tok(ref, gemma_path, [text], tmp)[0][0]
    ids = ids + ids[1:]  # 100+ positions
    V = 262144
    rng = random.Random(15)
    sample = sorted(rng.sample(range(V), 1024))
    csv = ",".join(map(str, ids))
    full = os.path.join(tmp, "batch.bin")
    subprocess.run([ref, "logits", gemma_path, csv, full], check=True, stderr=subprocess.DEVNULL)
    step = os.path.join(tmp, "step.bin")
    subprocess.run([ref, "logits", gemma_path, csv, step], check=True, stderr=subprocess.DEVNULL,
                   env=dict(os.environ, LREF_STEP="1"))
    a, s_ = array.array("f"), array.array("f")
    a.frombytes(open(full, "rb").read())
    s_.frombytes(open(step, "rb").read())
    out = array.array("f")
    tops, self_err = [], []
    for t in range(len(ids)):
        row, srow = a[t * V:(t + 1) * V], s_[t * V:(t + 1) * V]
        out.extend(row[i] for i in sample)
        top = sorted(range(V), key=lambda i: -row[i])[:32]
        tops.append(top)
        num = sum((row[i] - srow[i]) ** 2 for i in sample)
        den = sum(row[i] ** 2 for i in sample)
        self_err.append(round(math.sqrt(num / den), 5))
        out.extend(row[i] for i in top)
    with open(os.path.join(args.out, "gemma3-270m.bin"), "wb") as f:
        out.tofile(f)
    meta = {"fetch": "gemma3-270m", "ids": ids, "n_vocab": V, "sample_ids": sample, "top_ids": tops,
            "layout": "per position: 1024 float32 logits at sample_ids, then 32 float32 logits at that position's top_ids",
            "llama_self_rel_l2": self_err,
            "tolerance": {"rel_l2_max": 0.25, "rel_l2_mean": 0.08, "argmax_agree_min": 0.9}}
    with open(os.path.join(args.out, "gemma3-270m.json"), "w") as f:
        json.dump(meta, f)
        f.write("\n")
    print("gemma3: %d positions, llama.cpp batch vs step rel L2 max %.3f mean %.3f" %
          (len(ids), max(self_err), sum(self_err) / len(self_err)), file=sys.stderr)


if __name__ == "__main__":
    main()
