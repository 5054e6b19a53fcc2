#!/usr/bin/env bash
# Gemma 3 270M (Q4_K_M, the PyPI file) against llama.cpp: `helium-worker eval`
# logits at every position of the first 128 tokens of the sequence in
# tests/conformance/vectors/chat/gemma3-270m.json (a rendered chat), compared
# with llama.cpp's (tests/conformance/gen_chat_vectors.py: all positions in
# one decode, F32 K/V) on 1024 sampled vocabulary ids plus each position's 32
# top ids.
#
# Tolerance, and why: relative L2 <= 0.25 at every position, <= 0.08 on
# average, and the same top token at >= 90% of the positions. llama.cpp is
# not closer to itself: its own logits computed one token at a time differ
# from its all-at-once logits by up to 0.20 (mean 0.04) on this file (recorded
# in the JSON as llama_self_rel_l2); the model's activations are large
# (embeddings scaled by sqrt(640), norm weights up to ~300), so rounding
# differences in the attention of later positions grow. Position 0, where
# attention is trivial, is within 1.5x llama.cpp's own position-0 difference
# (0.0093): Helium's quantized kernels sum each block exactly in int32 into
# one f32 chain per output (worker/cpu/cpu_quant.h), llama.cpp's batch-1 and
# batched kernels each in their own order, and on this model summation order
# alone moves position 0 by about 1e-2. On a generated gemma3 model (F32) every position
# matches llama.cpp to 1e-5 (tests/unit/test_cpu_forward.c checks the same
# forward against a naive reference).
#
# The model is fetched once with scripts/fetch-model.sh; without network this
# fails and says so. Env: HELIUM_BIN, HELIUM_SRC.
set -u
here=$(cd "$(dirname "$0")" && pwd)
SRC=${HELIUM_SRC:-$(cd "$here/../.." && pwd)}
BIN=${HELIUM_BIN:-$SRC/build/bin}
fail() { echo "FAIL: $*"; exit 1; }
MODEL=$(bash "$SRC/scripts/fetch-model.sh" gemma3-270m) || fail "scripts/fetch-model.sh gemma3-270m could not fetch the model (network?)"
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
VEC=$SRC/tests/conformance/vectors/chat
N=128
IDS=$(python3 -c 'import json,sys; print(",".join(map(str, json.load(open(sys.argv[1]))["ids"][:int(sys.argv[2])])))' "$VEC/gemma3-270m.json" $N) ||
  fail "cannot read $VEC/gemma3-270m.json"
"$BIN/helium-worker" eval --model "$MODEL" --ids "$IDS" --logits-out "$TMP/h.bin" --threads 2 >/dev/null ||
  fail "helium-worker eval failed"
python3 - "$VEC/gemma3-270m.json" "$VEC/gemma3-270m.bin" "$TMP/h.bin" $N <<'PY'
import array, json, math, sys
meta = json.load(open(sys.argv[1]))
n = int(sys.argv[4])
V, S, K = meta["n_vocab"], meta["sample_ids"], 32
ref = array.array("f"); ref.frombytes(open(sys.argv[2], "rb").read())
tol = meta["tolerance"]
errs, agree = [], 0
with open(sys.argv[3], "rb") as f:
    for t in range(n):
        row = array.array("f"); row.frombytes(f.read(4 * V))
        base = t * (len(S) + K)
        r = ref[base:base + len(S)]
        top = meta["top_ids"][t]
        rt = ref[base + len(S):base + len(S) + K]
        ids = S + top
        rv = list(r) + list(rt)
        num = sum((row[i] - x) ** 2 for i, x in zip(ids, rv))
        den = sum(x * x for x in rv)
        errs.append(math.sqrt(num / den))
        agree += max(range(V), key=row.__getitem__) == top[0]
mx, mean, frac = max(errs), sum(errs) / n, agree / n
self_mx = max(meta["llama_self_rel_l2"][:n])
print("gemma3-270m: %d positions, rel L2 max %.4f mean %.4f, same top token %.1f%% (llama.cpp vs itself: max %.4f)"
      % (n, mx, mean, 100 * frac, self_mx))
bad = []
if mx > tol["rel_l2_max"]: bad.append("max rel L2 %.4f > %g at position %d" % (mx, tol["rel_l2_max"], errs.index(mx)))
if mean > tol["rel_l2_mean"]: bad.append("mean rel L2 %.4f > %g" % (mean, tol["rel_l2_mean"]))
if frac < tol["argmax_agree_min"]: bad.append("top token agrees at %.1f%% < %g%%" % (100 * frac, 100 * tol["argmax_agree_min"]))
lim0 = 1.5 * meta["llama_self_rel_l2"][0]
if errs[0] > lim0: bad.append("position 0 rel L2 %.2e > %.2e (1.5x llama.cpp's own)" % (errs[0], lim0))
if bad:
    print("FAIL: " + "; ".join(bad))
    sys.exit(1)
print("PASS")
PY
