#!/usr/bin/env bash
# launch/quickstart.sh: the pipeline on the embedded tiny model, on CPU in seconds.
# Today: write a random tiny OLMoE and Phi-MoE (Hugging Face layout) and compute their logits,
# then the OLMoE logits again on 2 MPI ranks that split its experts (expert parallelism).
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
echo "quickstart: done, outputs in $OUT"
