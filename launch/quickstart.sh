#!/usr/bin/env bash
# launch/quickstart.sh: the pipeline on the embedded tiny model, on CPU in seconds.
# Today: write a random tiny OLMoE and Phi-MoE (Hugging Face layout) and compute their logits.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
OUT="${CEMOE_RUN_DIR:-runs/quickstart}"
mkdir -p "$OUT"
echo '[[1, 5, 9, 14, 3, 7, 2, 8], [4, 4, 11, 0, 6, 13, 10, 12]]' > "$OUT/tokens.json"
for arch in olmoe phimoe; do
  build/cemoe init --arch "$arch" --preset tiny --seed 0 --out "$OUT/$arch-tiny"
  build/cemoe logits --model "$OUT/$arch-tiny" --tokens "$OUT/tokens.json" \
    --out "$OUT/$arch-logits.safetensors"
done
echo "quickstart: done, outputs in $OUT"
