#!/usr/bin/env bash
# The main job (for now, the engine alone): writes the default demo model with
# helium-mkmodel, then generates from a sample prompt and from a batch of
# prompts sharing a system prompt, printing text, tokens/s and cache figures.
set -euo pipefail
BUILD=${1:-build}
BIN="$BUILD/bin"
MODELS=${HELIUM_MODELS:-models}
mkdir -p "$MODELS"
MODEL="$MODELS/small-llama-f32.gguf"
if [ ! -f "$MODEL" ]; then
  echo "== writing the demo model ($MODEL) with helium-mkmodel"
  "$BIN/helium-mkmodel" --preset small --arch llama --dtype f32 --seed 1 -o "$MODEL"
fi
echo "== one prompt"
"$BIN/helium-worker" generate --model "$MODEL" --max-tokens 48 \
  --prompt "The store manager reviewed the weekly sales report and"
echo
echo "== eight prompts sharing one system prompt (continuous batching + prefix cache)"
SYS="You are a retail analyst for a chain of stores. Read the store's weekly figures, compare them with the region, and explain in two sentences why the store is above or below target. Be concise and factual."
PF=$(mktemp)
for s in Lyon Paris Berlin Madrid Milan Vienna Zurich Oslo; do
  printf '{"prompt": "%s\\nStore: %s. Sales are down 4%% week over week; foot traffic is flat.\\nAnalysis:", "max_tokens": 32}\n' "$SYS" "$s" >> "$PF"
done
"$BIN/helium-worker" generate --model "$MODEL" --prompts-file "$PF"
rm -f "$PF"
