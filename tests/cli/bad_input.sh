#!/usr/bin/env bash
# Bad input to helium-worker: every case must end with a clear typed message
# and exit code 1 (usage errors: 2) — never a crash or a sanitizer report.
set -u
BIN=${HELIUM_BIN:?HELIUM_BIN not set}
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT
# a crash or sanitizer finding exits 99 (ASan/UBSan) or >= 128 (signal)
export ASAN_OPTIONS="exitcode=99:detect_leaks=0" UBSAN_OPTIONS="halt_on_error=1:exitcode=99:print_stacktrace=1"
pass=0; fail=0
check() { # name, expected exit code, expected text in stderr, command...
  local name=$1 want=$2 text=$3; shift 3
  "$@" >"$T/out" 2>"$T/err"; local rc=$?
  if [ "$rc" = "$want" ] && grep -q -- "$text" "$T/err"; then
    pass=$((pass+1))
  else
    fail=$((fail+1))
    echo "FAIL $name: exit $rc (want $want), stderr:"; head -5 "$T/err"
  fi
}
"$BIN/helium-mkmodel" --preset tiny --arch llama --dtype f32 --seed 5 -o "$T/good.gguf" 2>/dev/null || { echo "mkmodel failed"; exit 1; }
M="$T/good.gguf"
SIZE=$(stat -c %s "$M")
gen() { "$BIN/helium-worker" generate --model "$1" --prompt-ids 1,2,3 --max-tokens 2; }

# corrupt files
head -c $((SIZE / 2)) "$M" > "$T/trunc_half.gguf"
head -c 100 "$M" > "$T/trunc_header.gguf"
: > "$T/empty.gguf"
{ printf 'GGUX'; tail -c +5 "$M"; } > "$T/magic.gguf"
cp "$M" "$T/version.gguf"; printf '\x07\x00\x00\x00' | dd of="$T/version.gguf" bs=1 seek=4 conv=notrunc 2>/dev/null
check truncated_half 1 "error" gen "$T/trunc_half.gguf"
check truncated_header 1 "error" gen "$T/trunc_header.gguf"
check empty_file 1 "error" gen "$T/empty.gguf"
check wrong_magic 1 "magic" gen "$T/magic.gguf"
check bad_version 1 "version" gen "$T/version.gguf"
check missing_file 1 "EIO" gen "$T/nope.gguf"
check directory 1 "error" gen "$T"

# a tensor offset past the end, and an unknown tensor type, written with the
# GGUF writer-compatible layout: patch the first tensor descriptor in place.
python3 - "$M" "$T" <<'PY' || { echo "FAIL python patcher"; fail=$((fail+1)); }
import struct, sys
src, out = sys.argv[1], sys.argv[2]
b = bytearray(open(src, 'rb').read())
o = 4
ver, = struct.unpack_from('<I', b, o); o += 4
nt, nkv = struct.unpack_from('<QQ', b, o); o += 16
def rstr(o):
    n, = struct.unpack_from('<Q', b, o); return o + 8 + n
sizes = {0:1,1:1,2:2,3:2,4:4,5:4,6:4,7:1,10:8,11:8,12:8}
def rval(t, o):
    if t == 8: return rstr(o)
    if t == 9:
        et, n = struct.unpack_from('<IQ', b, o); o += 12
        for _ in range(n): o = rval(et, o)
        return o
    return o + sizes[t]
for _ in range(nkv):
    o = rstr(o); t, = struct.unpack_from('<I', b, o); o = rval(t, o + 4)
# first tensor info: name, n_dims, dims, type, offset
o = rstr(o); nd, = struct.unpack_from('<I', b, o); o += 4 + 8 * nd
type_pos, off_pos = o, o + 4
x = bytearray(b); struct.pack_into('<Q', x, off_pos, 1 << 40); open(out + '/offset.gguf', 'wb').write(x)
x = bytearray(b); struct.pack_into('<I', x, type_pos, 77); open(out + '/type.gguf', 'wb').write(x)
x = bytearray(b); struct.pack_into('<I', x, type_pos, 16); open(out + '/iq2.gguf', 'wb').write(x)
x = bytearray(b); struct.pack_into('<I', x, type_pos, 12); open(out + '/q4k.gguf', 'wb').write(x)
x = bytearray(b); struct.pack_into('<Q', x, 8, 1 << 60); open(out + '/count.gguf', 'wb').write(x)
PY
check offset_past_end 1 "past end" gen "$T/offset.gguf"
check unknown_type 1 "type" gen "$T/type.gguf"
check unsupported_type 1 "not supported" gen "$T/iq2.gguf"
# Q4_K is supported, but the first tensor's rows are not whole 256-element blocks
check quant_row_not_whole_blocks 1 "block size" gen "$T/q4k.gguf"
check absurd_count 1 "error" gen "$T/count.gguf"

# bad prompts
LONG=$(python3 -c "print(','.join(['5']*2100))")
check prompt_past_context 1 "ECONTEXT" "$BIN/helium-worker" generate --model "$M" --prompt-ids "$LONG" --max-tokens 2
check empty_prompt 1 "EEMPTY" "$BIN/helium-worker" generate --model "$M" --prompt "" --no-bos --max-tokens 2
check bad_token_id 1 "ERANGE" "$BIN/helium-worker" generate --model "$M" --prompt-ids 1,999999 --max-tokens 2
check bad_id_list 1 "EINVAL" "$BIN/helium-worker" generate --model "$M" --prompt-ids 1,x,3 --max-tokens 2
check eval_empty 1 "EEMPTY" "$BIN/helium-worker" eval --model "$M" --ids "" --logits-out "$T/l.bin"
echo 'not json' > "$T/bad.jsonl"
check bad_prompts_file 1 "JSON" "$BIN/helium-worker" generate --model "$M" --prompts-file "$T/bad.jsonl"
check no_model 2 "model" "$BIN/helium-worker" generate --prompt hi
check unknown_cmd 2 "unknown" "$BIN/helium-worker" frobnicate
check bad_max_tokens 2 "max-tokens" "$BIN/helium-worker" generate --model "$M" --prompt hi --max-tokens 0
# a mistyped number is refused, not read as its digits (atoi took "5x" as 5)
check trailing_junk_number 2 "bad value '5x' for --max-tokens" "$BIN/helium-worker" generate --model "$M" --prompt hi --max-tokens 5x
check bad_temperature 2 "bad value 'warm' for --temperature" "$BIN/helium-worker" generate --model "$M" --prompt hi --temperature warm
check bad_serve_threads 2 "--threads must be an integer" "$BIN/helium-worker" serve --model "$M" --threads two
check bench_prefill_ctx_short 2 "prefill-ctx must be at least" "$BIN/helium-worker" bench --model "$M" --prompt-tokens 16 --prefill-ctx 8

# bench --prefill-ctx: the timed prefill runs after the context, and says so
"$BIN/helium-worker" bench --model "$M" --prompt-tokens 8 --prefill-ctx 32 --gen-tokens 2 --batch 1 --reps 1 \
    >"$T/out" 2>"$T/err"
if [ $? = 0 ] && grep -q '"test":"prefill","tokens":8,"ctx":32' "$T/out" && grep -q '"test":"decode"' "$T/out"; then
    pass=$((pass+1)); else fail=$((fail+1)); echo "FAIL bench --prefill-ctx"; cat "$T/out" "$T/err"; fi

# and after all that, a good run still works and reports its cache figures
"$BIN/helium-worker" generate --model "$M" --prompt "hello world" --max-tokens 4 >"$T/out" 2>"$T/err"
if [ $? = 0 ] && grep -q "prefix hit rate" "$T/err"; then pass=$((pass+1)); else fail=$((fail+1)); echo "FAIL good run"; cat "$T/err"; fi
echo "bad_input: $pass passed, $fail failed"
[ "$fail" = 0 ]
