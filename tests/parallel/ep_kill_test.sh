#!/usr/bin/env bash
# ep_kill_test.sh: the expert-parallel save (mpiexec -n 2, ep 2; two shards, one per rank) over
# an existing 11-shard checkpoint is killed with SIGKILL on one rank at each of that rank's kill
# points (model/kill_point.h; mpiexec then ends the other rank too). After every kill, `cemoe logits` on the folder must give exactly
# the old model's logits (and no placement.json) or exactly the new model's (with placement.json):
# never a mix of old and new shards, never an unloadable folder.
#   usage: ep_kill_test.sh MPIEXEC CEMOE EP_SAVE WORK_DIR
set -uo pipefail
MPIEXEC="$1"; CEMOE="$2"; EP_SAVE="$3"; WORK="$4"
fail() { echo "ep_kill_test: FAILED: $*"; exit 1; }
rm -rf "$WORK" && mkdir -p "$WORK" && cd "$WORK" || exit 1
"$CEMOE" init --arch olmoe --preset tiny --seed 1 --max-shard-size 64KB --out old >/dev/null || fail "init old"
"$CEMOE" init --arch olmoe --preset tiny --seed 2 --out src >/dev/null || fail "init new"
echo '[[1, 5, 9, 13, 17, 21, 25, 29]]' > tokens.json
"$CEMOE" logits --model old --tokens tokens.json --out old.logits >/dev/null || fail "old logits"
"$CEMOE" logits --model src --tokens tokens.json --out new.logits >/dev/null || fail "new logits"
cmp -s old.logits new.logits && fail "the old and new models give the same logits"

start=$(date +%s)
total=0
for rank in 1 0; do
  killed=0; as_old=0; as_new=0
  for point in $(seq 1 200); do
    rm -rf ckpt ckpt.partial ckpt.old && cp -r old ckpt
    out=$(CEMOE_TEST_KILL_AT=$point CEMOE_TEST_KILL_RANK=$rank OMP_NUM_THREADS=1 \
          "$MPIEXEC" --oversubscribe --allow-run-as-root -n 2 "$EP_SAVE" src ckpt 2 contiguous 1000000 2>&1)
    rc=$?
    if [ "$rc" -ne 0 ]; then
      echo "$out" | grep -q "test kill point $point" || fail "rank $rank, point $point: the save failed without being killed (exit $rc): $out"
      killed=$((killed + 1))
    fi
    "$CEMOE" logits --model ckpt --tokens tokens.json --out got.logits >log.txt 2>&1 \
      || fail "rank $rank, point $point: the folder does not load: $(cat log.txt)"
    if cmp -s got.logits old.logits && [ ! -e ckpt/placement.json ]; then
      as_old=$((as_old + 1))
    elif cmp -s got.logits new.logits && [ -e ckpt/placement.json ]; then
      as_new=$((as_new + 1))
    else
      fail "rank $rank, point $point: the folder is neither the old nor the new checkpoint"
    fi
    [ "$rc" -eq 0 ] && break
  done
  [ "$rc" -eq 0 ] || fail "rank $rank: the save never finished"
  [ "$killed" -ge 2 ] || fail "rank $rank: only $killed kill points"
  echo "ep_kill_test: rank $rank killed at $killed points: $as_old left the old checkpoint, $((as_new - 1)) the new one"
  total=$((total + killed))
done
echo "ep_kill_test: passed ($total kills, $(( $(date +%s) - start )) s)"
