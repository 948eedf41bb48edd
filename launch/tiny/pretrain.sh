#!/usr/bin/env bash
# launch/tiny/pretrain.sh: remakes the tiny default models recipes/tiny/models/{olmoe,phimoe}
# from nothing, as they were made (docs/pipeline.md, "The default models"):
#   1. the synthetic corpus, SFT and evaluation sets (`cemoe data synth`, seed 0);
#   2. a 2048-token byte-level BPE tokenizer trained on the corpus by the tokenizers library
#      (launch/tiny/train_tokenizer.py, in the oracle environment of launch/oracle_env.sh);
#   3. per family: random weights (`cemoe init --config recipes/tiny/pretrain/<arch>_config.json`),
#      pretraining on 2 ranks (recipes/tiny/pretrain_<arch>.textproto), export into
#      recipes/tiny/models/<arch>/ and its SHA256SUMS (tests/launch checks them).
# Cost on the 2-core build machine: docs/pipeline.md. Training is deterministic for a given
# machine; another CPU sums in another order, so the weights (and checksums) differ in the last
# bits there.
#   usage: bash launch/tiny/pretrain.sh [olmoe|phimoe ...]   (default: both)
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$ROOT"
PYTHON="${CEMOE_ORACLE_PYTHON:-$HOME/.cache/cemoe/oracle-venv/bin/python}"
MPIEXEC=(mpiexec --oversubscribe -n 2)
if [ "$(id -u)" = 0 ]; then MPIEXEC+=(--allow-run-as-root); fi
ARCHS=("$@")
if [ ${#ARCHS[@]} = 0 ]; then ARCHS=(olmoe phimoe); fi

build/cemoe data synth --out runs/tiny/data --seed 0
if [ ! -f runs/tiny/tokenizer/tokenizer.json ]; then
  [ -x "$PYTHON" ] || bash launch/oracle_env.sh
  "$PYTHON" launch/tiny/train_tokenizer.py --corpus runs/tiny/data/pretrain.jsonl \
    --out runs/tiny/tokenizer --vocab 2048
fi
for arch in "${ARCHS[@]}"; do
  rm -rf "runs/tiny/$arch-init" "runs/tiny/pretrain-$arch"
  build/cemoe init --config "recipes/tiny/pretrain/${arch}_config.json" \
    --tokenizer runs/tiny/tokenizer --seed 0 --out "runs/tiny/$arch-init"
  OMP_NUM_THREADS=1 "${MPIEXEC[@]}" build/cemoe train "recipes/tiny/pretrain_$arch.textproto"
  build/cemoe export --from "runs/tiny/pretrain-$arch" --out "recipes/tiny/models/$arch"
  # The loss curve, with the scalars only (metrics.jsonl also holds per-expert loads).
  python3 -c '
import json, sys
keep = ("step", "loss", "aux_loss", "lr", "grad_norm", "tokens", "tokens_per_s")
rows = [json.loads(l) for l in open(sys.argv[1])]
print("\n".join(json.dumps({k: r[k] for k in keep if k in r}) for r in rows if "step" in r))
' "runs/tiny/pretrain-$arch/metrics.jsonl" > "recipes/tiny/models/$arch/pretrain_metrics.jsonl"
  (cd "recipes/tiny/models/$arch" && rm -f SHA256SUMS &&
   sha256sum -- * > SHA256SUMS.tmp && mv SHA256SUMS.tmp SHA256SUMS)
  echo "pretrain: $arch -> recipes/tiny/models/$arch"
done
