#!/usr/bin/env bash
# launch/quickstart.sh: the paper's experiment on the tiny default, on a 2-core CPU: under mpirun
# with 2 ranks (expert parallelism: 8 of the 16 experts of every layer on each rank),
# `cemoe run recipes/tiny/table4.textproto` makes the synthetic data, fine-tunes the pretrained
# tiny OLMoE at top-4, at top-2, at top-2 with compressed experts (joint SFT) and by distillation,
# exports and evaluates each row and the pretrained model (IFEval, BBH, TruthfulQA MC2, GSM8K,
# HumanEval and latency), and prints the paper's table (docs/pipeline.md). A second run recomputes
# nothing; an interrupted one continues where it stopped.
#   CEMOE_QUICKSTART_TABLES="table4 table3" also runs the Phi-MoE-shaped Table 3.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
MPIEXEC=(mpiexec --oversubscribe -n 2)
if [ "$(id -u)" = 0 ]; then MPIEXEC+=(--allow-run-as-root); fi
for table in ${CEMOE_QUICKSTART_TABLES:-table4}; do
  start=$(date +%s)
  OMP_NUM_THREADS=1 "${MPIEXEC[@]}" build/cemoe run "recipes/tiny/$table.textproto"
  echo "quickstart: recipes/tiny/$table.textproto in $(( $(date +%s) - start )) s;" \
       "the table is runs/tiny/$table/report/table.md"
done
