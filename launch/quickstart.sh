#!/usr/bin/env bash
# launch/quickstart.sh: the pipeline on the embedded tiny model, on CPU in seconds.
# Writes a random tiny OLMoE and Phi-MoE (Hugging Face layout, with a character tokenizer) and
# computes their logits, then the OLMoE logits again on 2 MPI ranks that split its experts (expert
# parallelism), then fine-tunes the tiny OLMoE at top-2 on 2 ranks and exports it.
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
# Expert parallelism: 2 ranks, each loading and serving 4 of the 8 experts of every layer.
MPIEXEC=(mpiexec --oversubscribe -n 2)
if [ "$(id -u)" = 0 ]; then MPIEXEC+=(--allow-run-as-root); fi
"${MPIEXEC[@]}" build/cemoe logits --model "$OUT/olmoe-tiny" --tokens "$OUT/tokens.json" \
  --out "$OUT/olmoe-logits-ep2.safetensors" --ep 2 --placement balanced
# Supervised fine-tuning of the tiny OLMoE (top-2 of its 4) on the shipped chat data, experts
# split over 2 ranks, then a Hugging Face export of the result.
"${MPIEXEC[@]}" build/cemoe train recipes/tiny/olmoe_chat_ep2.textproto \
  --set model.path="$OUT/olmoe-tiny" --set model.top_k=2 --set checkpoint.resume=false \
  --run-dir "$OUT/sft"
build/cemoe export --from "$OUT/sft" --out "$OUT/sft-hf"
echo "quickstart: done, outputs in $OUT"
