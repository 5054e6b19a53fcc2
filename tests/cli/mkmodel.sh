#!/usr/bin/env bash
# CLI test for helium-mkmodel: generates tiny models for every arch / dtype /
# vocab type, checks exit codes, sizes, GGUF magic, determinism (same seed ->
# identical bytes, other seed -> different bytes) and that bad arguments fail
# with a message and leave no file behind. If /opt/helium-venv/bin/python has
# the gguf (and llama_cpp) packages, the files are also read back with them;
# without Python those checks are skipped and the test still runs.
#
# Env: HELIUM_BIN (dir holding helium-mkmodel), HELIUM_SRC (source tree).
set -u

here=$(cd "$(dirname "$0")" && pwd)
SRC=${HELIUM_SRC:-$(cd "$here/../.." && pwd)}
BIN=${HELIUM_BIN:-$SRC/build/bin}
MK=$BIN/helium-mkmodel
CORPUS=$SRC/data/corpus.txt
PY=${HELIUM_PYTHON:-/opt/helium-venv/bin/python}

if [ ! -x "$MK" ]; then
    echo "FAIL: $MK not found or not executable (set HELIUM_BIN)"
    exit 1
fi

tmp=$(mktemp -d "${TMPDIR:-/tmp}/mkmodel-test.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
fails=0
checks=0

ok() { checks=$((checks + 1)); }
fail() {
    checks=$((checks + 1))
    fails=$((fails + 1))
    echo "FAIL: $*"
}
size_of() { stat -c %s "$1"; }

# ---- every arch / dtype / vocab type
for arch in llama qwen2; do
    for vt in bpe spm; do
        for dt in f32 f16 bf16 q8_0; do
            out=$tmp/tiny-$arch-$vt-$dt.gguf
            if "$MK" --preset tiny --arch "$arch" --dtype "$dt" --vocab-type "$vt" --seed 1 \
                --corpus "$CORPUS" -o "$out" 2>"$tmp/err"; then
                ok
            else
                fail "tiny $arch $vt $dt: exit $? ($(cat "$tmp/err"))"
                continue
            fi
            grep -q "params" "$tmp/err" && grep -q "vocab 512" "$tmp/err" && ok ||
                fail "tiny $arch $vt $dt: no summary line on stderr: $(cat "$tmp/err")"
            magic=$(head -c 4 "$out")
            [ "$magic" = "GGUF" ] && ok || fail "tiny $arch $vt $dt: bad magic '$magic'"
            ver=$(od -An -tu4 -j4 -N4 "$out" | tr -d ' ')
            [ "$ver" = "3" ] && ok || fail "tiny $arch $vt $dt: GGUF version $ver, want 3"
            ls "$tmp"/*.tmp* >/dev/null 2>&1 && fail "temporary file left behind" || ok
        done
        f32=$(size_of "$tmp/tiny-$arch-$vt-f32.gguf")
        f16=$(size_of "$tmp/tiny-$arch-$vt-f16.gguf")
        bf16=$(size_of "$tmp/tiny-$arch-$vt-bf16.gguf")
        q8=$(size_of "$tmp/tiny-$arch-$vt-q8_0.gguf")
        [ "$f32" -lt 1000000 ] && ok || fail "tiny $arch $vt f32 is $f32 bytes, want < 1 MB"
        d=$((f16 - bf16))  # same tensor bytes; only general.name (and its padding) differs
        [ "${d#-}" -le 64 ] && ok || fail "tiny $arch $vt: f16 $f16 bytes vs bf16 $bf16 bytes"
        [ "$q8" -lt "$f16" ] && [ "$f16" -lt "$f32" ] && ok ||
            fail "tiny $arch $vt: sizes not q8_0 < f16 < f32 ($q8 $f16 $f32)"
    done
done

# ---- determinism
"$MK" --preset tiny --arch qwen2 --dtype q8_0 --seed 1 --corpus "$CORPUS" -o "$tmp/again.gguf" 2>/dev/null
cmp -s "$tmp/again.gguf" "$tmp/tiny-qwen2-bpe-q8_0.gguf" && ok || fail "same seed gave different bytes"
"$MK" --preset tiny --arch qwen2 --dtype q8_0 --seed 2 --corpus "$CORPUS" -o "$tmp/seed2.gguf" 2>/dev/null
if cmp -s "$tmp/seed2.gguf" "$tmp/tiny-qwen2-bpe-q8_0.gguf"; then fail "different seeds gave identical bytes"; else ok; fi
[ "$(size_of "$tmp/seed2.gguf")" -eq "$(size_of "$tmp/tiny-qwen2-bpe-q8_0.gguf")" ] && ok ||
    fail "seed changed the file size"
# the compiled-in default corpus is the same file
if "$MK" --preset tiny --seed 1 -o "$tmp/default.gguf" 2>"$tmp/err"; then
    cmp -s "$tmp/default.gguf" "$tmp/tiny-llama-bpe-f32.gguf" && ok || fail "default corpus differs from $CORPUS"
else
    fail "run without --corpus failed: $(cat "$tmp/err")"
fi
# the small preset builds too (quick: well under a second)
"$MK" --preset small --arch llama --dtype q8_0 --seed 5 --corpus "$CORPUS" -o "$tmp/small.gguf" 2>"$tmp/err" &&
    grep -q "vocab 4096" "$tmp/err" && ok || fail "small preset: $(cat "$tmp/err")"

# ---- bad arguments: nonzero exit, a message, no output file
expect_fail() {
    local what=$1 pattern=$2
    shift 2
    rm -f "$tmp/bad.gguf"
    if "$@" >"$tmp/out" 2>"$tmp/err"; then
        fail "$what: exit 0"
        return
    fi
    if ! grep -qi -- "$pattern" "$tmp/err"; then
        fail "$what: message does not mention '$pattern': $(cat "$tmp/err")"
        return
    fi
    [ -e "$tmp/bad.gguf" ] && fail "$what: left an output file" || ok
}
o=(-o "$tmp/bad.gguf")
expect_fail "unknown preset" "preset" "$MK" --preset huge "${o[@]}"
expect_fail "unknown arch" "arch" "$MK" --arch gpt2 "${o[@]}"
expect_fail "unknown dtype" "dtype" "$MK" --dtype q4_0 "${o[@]}"
expect_fail "unknown vocab type" "vocab type" "$MK" --vocab-type wordpiece "${o[@]}"
expect_fail "non-numeric seed" "seed" "$MK" --seed abc "${o[@]}"
expect_fail "negative seed" "seed" "$MK" --seed -1 "${o[@]}"
expect_fail "seed out of range" "seed" "$MK" --seed 99999999999999999999999 "${o[@]}"
expect_fail "missing -o" "-o" "$MK" --preset tiny
expect_fail "option without value" "needs a value" "$MK" "${o[@]}" --arch
expect_fail "unknown option" "unknown argument" "$MK" --frobnicate "${o[@]}"
expect_fail "missing corpus" "cannot open corpus" "$MK" --corpus "$tmp/nope.txt" "${o[@]}"
printf 'a tiny corpus. far too small for 512 tokens.\n' >"$tmp/small.txt"
expect_fail "corpus too small" "too small" "$MK" --corpus "$tmp/small.txt" "${o[@]}"
expect_fail "corpus too small (spm)" "too small" "$MK" --vocab-type spm --corpus "$tmp/small.txt" "${o[@]}"
expect_fail "HELIUM_CORPUS is used" "too small" env HELIUM_CORPUS="$tmp/small.txt" "$MK" "${o[@]}"
expect_fail "unwritable output" "error" "$MK" --corpus "$CORPUS" -o "$tmp/no/such/dir/x.gguf"
# --corpus wins over HELIUM_CORPUS
HELIUM_CORPUS="$tmp/small.txt" "$MK" --corpus "$CORPUS" -o "$tmp/env.gguf" 2>/dev/null && ok ||
    fail "--corpus did not override HELIUM_CORPUS"
"$MK" --help >"$tmp/out" 2>&1 && grep -q usage "$tmp/out" && ok || fail "--help"

# ---- optional: read back with gguf-py, load with llama.cpp
if [ -x "$PY" ] && "$PY" -c "import gguf" 2>/dev/null; then
    if "$PY" - "$tmp" <<'EOF'; then ok; else fail "gguf-py validation"; fi
import sys, glob, os
import numpy as np
from gguf import GGUFReader, GGMLQuantizationType as Q

def s(field):
    return bytes(field.parts[field.data[0]]).decode()

bad = 0
for path in sorted(glob.glob(os.path.join(sys.argv[1], "tiny-*.gguf"))):
    _, arch, vt, dt = os.path.basename(path)[:-5].split("-")
    r = GGUFReader(path)
    f = r.fields
    def check(cond, what):
        global bad
        if not cond:
            print(f"  {path}: {what}")
            bad += 1
    check(s(f["general.architecture"]) == arch, "architecture")
    check(s(f["general.name"]) == f"helium-tiny-{arch}-{dt}", "name")
    check(s(f["tokenizer.ggml.model"]) == ("gpt2" if vt == "bpe" else "llama"), "tokenizer model")
    toks = f["tokenizer.ggml.tokens"]
    texts = [bytes(toks.parts[i]).decode() for i in toks.data]
    check(len(texts) == 512 and len(set(texts)) == 512, "512 distinct tokens")
    if vt == "bpe":
        vocab = set(texts)
        m = f["tokenizer.ggml.merges"]
        for i in m.data:
            a, b = bytes(m.parts[i]).decode().split(" ")
            if a not in vocab or b not in vocab or a + b not in vocab:
                check(False, f"merge {a!r} {b!r} not in vocab")
                break
        check(texts[-4:] == ["<|begin_of_text|>", "<|end_of_text|>", "<|im_start|>", "<|im_end|>"], "specials")
    else:
        check(texts[:3] == ["<unk>", "<s>", "</s>"] and texts[3 + 0x41] == "<0x41>", "spm fixed tokens")
    want = {"f32": Q.F32, "f16": Q.F16, "bf16": Q.BF16, "q8_0": Q.Q8_0}[dt]
    names = {t.name: t for t in r.tensors}
    n_expect = 3 + 2 * (9 + (3 if arch == "qwen2" else 0))
    check(len(names) == n_expect, f"{len(names)} tensors, want {n_expect}")
    for name, t in names.items():
        norm = name.endswith("norm.weight") or name.endswith(".bias")
        check(t.tensor_type == (Q.F32 if norm else want), f"{name} type {t.tensor_type.name}")
    check([int(x) for x in names["blk.0.attn_k.weight"].shape] == [64, 32], "attn_k shape")
    check([int(x) for x in names["token_embd.weight"].shape] == [64, 512], "token_embd shape")
    if dt == "f32":
        a = np.asarray(names["output.weight"].data, dtype=np.float64)
        check(a.std() > 0.5 and np.isfinite(a).all(), "output.weight scale")
sys.exit(1 if bad else 0)
EOF
    if "$PY" -c "import llama_cpp" 2>/dev/null; then
        if "$PY" - "$tmp" <<'EOF'; then ok; else fail "llama.cpp load"; fi
import sys, os
import numpy as np
from llama_cpp import Llama
bad = 0
for arch in ("llama", "qwen2"):
    for vt in ("bpe", "spm"):
        for dt in ("f32", "q8_0"):
            path = os.path.join(sys.argv[1], f"tiny-{arch}-{vt}-{dt}.gguf")
            m = Llama(model_path=path, n_ctx=64, logits_all=True, verbose=False, n_threads=1)
            toks = m.tokenize(b"Where is my order? It left the depot.", add_bos=True)
            m.eval(toks)
            lg = np.array(m.scores[: len(toks)])
            if m.n_vocab() != 512 or not np.isfinite(lg).all() or lg.std() < 1.0:
                print(f"  {path}: n_vocab {m.n_vocab()}, logit std {lg.std()}")
                bad += 1
            del m
sys.exit(1 if bad else 0)
EOF
    else
        echo "note: llama_cpp not importable with $PY: skipping llama.cpp load"
    fi
else
    echo "note: no $PY with gguf: skipping Python validation"
fi

echo "mkmodel.sh: $checks checks, $fails failed"
[ "$fails" -eq 0 ]
