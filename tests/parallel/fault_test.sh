#!/usr/bin/env bash
# fault_test.sh: one rank of a job hangs or is killed; the job must end, non-zero, in bounded time,
# with a message naming the collective and the rank.
#   usage: fault_test.sh MPIEXEC PROBE NP hang|kill|none
set -uo pipefail
MPIEXEC="$1"; PROBE="$2"; NP="$3"; MODE="$4"
TIMEOUT_S=3
start=$(date +%s)
out=$("$MPIEXEC" --oversubscribe --allow-run-as-root -n "$NP" "$PROBE" --fault "$MODE" \
      --fault-rank 1 --timeout "$TIMEOUT_S" 2>&1)
rc=$?
elapsed=$(( $(date +%s) - start ))
echo "$out"
echo "fault_test: mode $MODE, exit status $rc after ${elapsed} s"
fail() { echo "fault_test: FAILED: $*"; exit 1; }
if [ "$MODE" = none ]; then
  [ "$rc" -eq 0 ] || fail "a job without faults exited with $rc"
  exit 0
fi
[ "$rc" -ne 0 ] || fail "the job exited 0 although rank 1 failed"
[ "$elapsed" -le 60 ] || fail "the job took ${elapsed} s to end"
if [ "$MODE" = hang ]; then
  echo "$out" | grep -Eq "collective MPI_I[a-z]+ #[0-9]+ on group '(ep|world)' timed out after [0-9.]+ s on rank [0-9]+: rank\(s\) 1 did not answer" \
    || fail "no timeout message naming the collective and rank 1"
else
  echo "$out" | grep -Eq "signal 9|did not answer" || fail "no message about the killed rank"
fi
echo "fault_test: passed"
