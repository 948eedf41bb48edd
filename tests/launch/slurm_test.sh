#!/usr/bin/env bash
# tests/launch/slurm_test.sh: the control flow of launch/slurm.sbatch without a Slurm cluster.
# `sbatch` and `mpirun` are replaced by shims on PATH (sbatch records its arguments and the
# ATTEMPT it passes on; mpirun drops its own options and runs the command), and CEMOE_CMD is a
# fake job that finishes, fails or runs long on cue, after its first step (it rewrites
# $RUN_DIR/PROGRESS) or before it. Checked:
#   1. a job that writes the DONE marker: one mpirun, no resubmission, exit 0;
#   2. a job that fails once then finishes: two mpiruns in the same allocation, no resubmission;
#   3. a job that fails twice: the second failure resubmits (afterany dependency on this job,
#      ATTEMPT 2) and exits with the job's status;
#   4. USR1 (Slurm's warning before the time limit): the job is stopped, the next attempt is
#      queued once, nothing more is started here, exit 0, within seconds;
#   5. the last allowed attempt failing twice does not resubmit;
#   6. without CEMOE_CMD and RECIPE nothing starts: exit 2 with a message, no mpirun, no sbatch;
#   7. a job that fails before its first step: one mpirun, no restart, no resubmission, its status;
#   8. a job that fails after progress, then before its first step: two mpiruns, no resubmission;
#   9. USR1 while the job has made no progress in this allocation: stopped, nothing queued, exit 1;
#  10. a new checkpoint folder counts as progress too (fails twice after checkpoints: resubmits).
#  11. RECIPE without CEMOE_CMD runs `build/cemoe run RECIPE --run-dir RUN_DIR`.
set -uo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
SBATCH_SCRIPT="${CEMOE_SBATCH_SCRIPT:-$HERE/../../launch/slurm.sbatch}"
WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT
mkdir -p "$WORK/bin"
cat > "$WORK/bin/sbatch" <<'SH'
#!/usr/bin/env bash
echo "ATTEMPT=$ATTEMPT $*" >> "$SHIM_LOG.sbatch"
SH
cat > "$WORK/bin/mpirun" <<'SH'
#!/usr/bin/env bash
while [ $# -gt 0 ]; do
  case "$1" in
    --np|--map-by|--bind-to|-x) shift 2 ;;
    *) break ;;
  esac
done
echo "$*" >> "$SHIM_LOG.mpirun"
exec "$@"
SH
# The fake job: reads its plan (one word per run) from $PLAN: done (steps, then DONE), fail (a
# step, then exit 3), ckfail (a checkpoint, then exit 3), early (exit 3 before any step), long
# (a step, then runs on), stall (runs on without a step).
cat > "$WORK/job.sh" <<'SH'
#!/usr/bin/env bash
n=$(( $(cat "$RUN_DIR/runs" 2>/dev/null || echo 0) + 1 ))
echo "$n" > "$RUN_DIR/runs"
step=$(echo "$PLAN" | cut -d' ' -f"$n")
case "$step" in
  done) echo "step of run $n" > "$RUN_DIR/PROGRESS"; touch "$RUN_DIR/DONE"; exit 0 ;;
  fail) echo "step of run $n" > "$RUN_DIR/PROGRESS"; exit 3 ;;
  ckfail) mkdir -p "$RUN_DIR/checkpoints/run-$n"; exit 3 ;;
  early) exit 3 ;;
  long) echo "step of run $n" > "$RUN_DIR/PROGRESS"; exec sleep 60 ;;
  stall) exec sleep 60 ;;
esac
exit 9
SH
chmod +x "$WORK/bin/sbatch" "$WORK/bin/mpirun" "$WORK/job.sh"

failures=0
check() {  # check NAME CONDITION_TEXT RESULT
  if [ "$3" = 0 ]; then echo "ok   $1: $2"; else echo "FAIL $1: $2"; failures=$((failures + 1)); fi
}
count() { [ -f "$1" ] && wc -l < "$1" | tr -d ' ' || echo 0; }

# run NAME PLAN [ATTEMPT [MAX_ATTEMPTS]]: runs the script in the background, sets PID and LOG.
run() {
  local name="$1"
  export RUN_DIR="$WORK/$name" PLAN="$2" ATTEMPT="${3:-1}" MAX_ATTEMPTS="${4:-20}"
  export SHIM_LOG="$WORK/$name" PATH="$WORK/bin:$PATH" SLURM_JOB_ID=4242 SLURM_NTASKS=2
  export SLURM_NTASKS_PER_NODE=2 SLURM_JOB_NUM_NODES=1 SLURM_SUBMIT_DIR="$WORK" RECIPE="${RECIPE_OVERRIDE-recipes/x.textproto}"
  export CEMOE_CMD="${CMD_OVERRIDE-$WORK/job.sh}"
  LOG="$WORK/$name.log"
  bash "$SBATCH_SCRIPT" > "$LOG" 2>&1 &
  PID=$!
}

run done_first "done"; wait $PID; rc=$?
check 1 "exit 0 ($rc), 1 mpirun, 0 sbatch" $([ $rc = 0 ] && [ "$(count "$WORK/done_first.mpirun")" = 1 ] && [ "$(count "$WORK/done_first.sbatch")" = 0 ]; echo $?)

run fail_once "fail done"; wait $PID; rc=$?
check 2 "exit 0 ($rc), 2 mpiruns, 0 sbatch" $([ $rc = 0 ] && [ "$(count "$WORK/fail_once.mpirun")" = 2 ] && [ "$(count "$WORK/fail_once.sbatch")" = 0 ]; echo $?)

run fail_twice "fail fail done"; wait $PID; rc=$?
check 3 "exit 3 ($rc), 2 mpiruns, 1 sbatch with afterany:4242 and ATTEMPT=2" $([ $rc = 3 ] && [ "$(count "$WORK/fail_twice.mpirun")" = 2 ] && [ "$(count "$WORK/fail_twice.sbatch")" = 1 ] && grep -q "ATTEMPT=2 --dependency=afterany:4242 --export=ALL" "$WORK/fail_twice.sbatch"; echo $?)

run time_limit "long long"
sleep 1
t0=$(date +%s)
kill -USR1 $PID
wait $PID; rc=$?
dt=$(( $(date +%s) - t0 ))
check 4 "exit 0 ($rc) within 10 s ($dt s), 1 mpirun, 1 sbatch, 'time limit' logged" $([ $rc = 0 ] && [ $dt -lt 10 ] && [ "$(count "$WORK/time_limit.mpirun")" = 1 ] && [ "$(count "$WORK/time_limit.sbatch")" = 1 ] && grep -q "time limit reached" "$LOG"; echo $?)

run last_attempt "fail fail" 20 20; wait $PID; rc=$?
check 5 "exit 3 ($rc), 0 sbatch, 'attempts used' logged" $([ $rc = 3 ] && [ "$(count "$WORK/last_attempt.sbatch")" = 0 ] && grep -q "20 attempts used" "$WORK/last_attempt.log"; echo $?)

CMD_OVERRIDE="" RECIPE_OVERRIDE="" run no_cmd "done"; wait $PID; rc=$?
check 6 "exit 2 ($rc), 0 mpirun, 0 sbatch, 'set RECIPE' logged" $([ $rc = 2 ] && [ "$(count "$WORK/no_cmd.mpirun")" = 0 ] && [ "$(count "$WORK/no_cmd.sbatch")" = 0 ] && grep -q "set RECIPE" "$WORK/no_cmd.log"; echo $?)

# 11. RECIPE without CEMOE_CMD runs the trainer on it, in the run folder the script watches.
CMD_OVERRIDE="" run recipe_default "done"; wait $PID; rc=$?
check 11 "mpirun runs 'build/cemoe run recipes/x.textproto --run-dir RUN_DIR'" $(grep -q "^build/cemoe run recipes/x.textproto --run-dir $WORK/recipe_default\$" "$WORK/recipe_default.mpirun"; echo $?)

run early "early done"; wait $PID; rc=$?
check 7 "exit 3 ($rc), 1 mpirun, 0 sbatch, 'before its first step' logged" $([ $rc = 3 ] && [ "$(count "$WORK/early.mpirun")" = 1 ] && [ "$(count "$WORK/early.sbatch")" = 0 ] && grep -q "failed before its first step" "$WORK/early.log"; echo $?)

run fail_early "fail early done"; wait $PID; rc=$?
check 8 "exit 3 ($rc), 2 mpiruns, 0 sbatch" $([ $rc = 3 ] && [ "$(count "$WORK/fail_early.mpirun")" = 2 ] && [ "$(count "$WORK/fail_early.sbatch")" = 0 ]; echo $?)

run stall "stall stall"
sleep 1
t0=$(date +%s)
kill -USR1 $PID
wait $PID; rc=$?
dt=$(( $(date +%s) - t0 ))
check 9 "exit 1 ($rc) within 10 s ($dt s), 1 mpirun, 0 sbatch, 'no progress' logged" $([ $rc = 1 ] && [ $dt -lt 10 ] && [ "$(count "$WORK/stall.mpirun")" = 1 ] && [ "$(count "$WORK/stall.sbatch")" = 0 ] && grep -q "no progress in .* during this allocation" "$WORK/stall.log"; echo $?)

run checkpoints "ckfail ckfail done"; wait $PID; rc=$?
check 10 "exit 3 ($rc), 2 mpiruns, 1 sbatch" $([ $rc = 3 ] && [ "$(count "$WORK/checkpoints.mpirun")" = 2 ] && [ "$(count "$WORK/checkpoints.sbatch")" = 1 ]; echo $?)

if [ $failures -gt 0 ]; then
  for f in "$WORK"/*.log; do echo "--- $f"; cat "$f"; done
  exit 1
fi
echo "slurm.sbatch: all 11 control-flow checks passed"
