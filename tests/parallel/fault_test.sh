#!/usr/bin/env bash
# fault_test.sh: one rank of a job fails (tests/parallel/fault_probe.cc); the job must end
# within a bound, with the right status and a message naming the cause.
#   usage: fault_test.sh MPIEXEC PROBE NP MODE
#   MODE         probe flags                          must end                  message
#   none         -                                    0, every step done        -
#   hang         --timeout 3                          != 0 within 60 s          collective ... rank(s) 1 did not answer
#   kill         --timeout 3                          != 0 within 60 s          signal 9 / did not answer
#   throw        --timeout 60 (peers would wait 60 s) != 0 within 20 s          cemoe: error: rank 1 of NP: ...injected failure
#   stop-setup   --timeout 3                          4 within 20 s             rank 0: MPI_Comm_dup/MPI_Comm_split (process-group setup) did not finish within 3 s
#   stop-finalize --load-timeout 3                    4 within 20 s             rank 0: MPI_Finalize (shutdown) did not finish within 3 s
#   busy         --timeout 2 --load-timeout 30,       0 (the busy rank is not   -
#                rank 1 busy 5 s inside the phase       killed), under 30 s
#   busy-over    --timeout 1 --load-timeout 3,        != 0 within 20 s          ... in phase 'loading (fault_probe)' (budget 3 s) timed out
#                rank 1 busy 60 s inside the phase
#   badenv       CEMOE_COLLECTIVE_TIMEOUT_S=abc       != 0 within 20 s          CEMOE_COLLECTIVE_TIMEOUT_S = 'abc'
# The job runs under `timeout 60` so that a regression (a hang) fails this test instead of
# leaving processes behind; mpiexec, stopped by SIGTERM, ends its ranks (stopped ones included).
set -uo pipefail
MPIEXEC="$1"; PROBE="$2"; NP="$3"; MODE="$4"
ARGS=(--fault "$MODE" --fault-rank 1)
ENVS=()
LIMIT_S=60     # the job must have ended after this many seconds
EXPECT_RC=nonzero
PATTERN=""
case "$MODE" in
  none) ARGS+=(--timeout 3); EXPECT_RC=0 ;;
  hang) ARGS+=(--timeout 3)
        PATTERN="collective MPI_I[a-z]+ #[0-9]+ on group '(ep|world)' timed out after [0-9.]+ s on rank [0-9]+: rank\(s\) 1 did not answer" ;;
  kill) ARGS+=(--timeout 3); PATTERN="signal 9|did not answer" ;;
  throw) ARGS+=(--timeout 60); LIMIT_S=20
         PATTERN="cemoe: error: rank 1 of $NP: .*fault_probe: injected failure on rank 1 at step 3" ;;
  stop-setup) ARGS+=(--timeout 3); LIMIT_S=20; EXPECT_RC=4
              PATTERN="cemoe: rank 0: MPI_Comm_dup/MPI_Comm_split \(process-group setup\) did not finish within 3 s" ;;
  stop-finalize) ARGS+=(--timeout 3 --load-timeout 3); LIMIT_S=20; EXPECT_RC=4
                 PATTERN="cemoe: rank 0: (MPI_Finalize|freeing the communicators) \(shutdown\) did not finish within 3 s" ;;
  busy) ARGS=(--fault busy --fault-rank 1 --timeout 2 --load-timeout 30 --busy 5); LIMIT_S=30
        EXPECT_RC=0 ;;
  busy-over) ARGS=(--fault busy --fault-rank 1 --timeout 1 --load-timeout 3 --busy 60); LIMIT_S=20
             PATTERN="in phase 'loading \(fault_probe\)' \(budget 3 s\) timed out after [0-9.]+ s on rank 0: rank\(s\) 1 did not answer" ;;
  badenv) ARGS=(--fault none); ENVS=(CEMOE_COLLECTIVE_TIMEOUT_S=abc); LIMIT_S=20
          PATTERN="CEMOE_COLLECTIVE_TIMEOUT_S = 'abc': a timeout must be a number of seconds" ;;
  *) echo "fault_test: unknown mode $MODE"; exit 2 ;;
esac
start=$(date +%s.%N)
out=$(env "${ENVS[@]}" timeout -k 5 60 "$MPIEXEC" --oversubscribe --allow-run-as-root -n "$NP" \
      "$PROBE" "${ARGS[@]}" 2>&1)
rc=$?
elapsed=$(awk -v a="$start" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }')
echo "$out"
echo "fault_test: mode $MODE on $NP ranks, exit status $rc after ${elapsed} s"
fail() { echo "fault_test: FAILED: $*"; exit 1; }
# (No test on rc 124/137 for the outer timeout: mpiexec itself returns 137 for a SIGKILLed rank;
# the elapsed-time limit below, <= 60 s, catches a job that needed the outer timeout.)
if [ "$EXPECT_RC" = 0 ]; then
  [ "$rc" -eq 0 ] || fail "the job exited with $rc, expected 0"
  echo "$out" | grep -q "fault_probe: 6 steps done on $NP ranks" || fail "the steps did not finish"
elif [ "$EXPECT_RC" = nonzero ]; then
  [ "$rc" -ne 0 ] || fail "the job exited 0 although rank 1 failed"
else
  [ "$rc" -eq "$EXPECT_RC" ] || fail "the job exited with $rc, expected $EXPECT_RC"
fi
awk -v e="$elapsed" -v l="$LIMIT_S" 'BEGIN { exit !(e <= l) }' \
  || fail "the job took ${elapsed} s to end (limit ${LIMIT_S} s)"
if [ -n "$PATTERN" ]; then
  echo "$out" | grep -Eq "$PATTERN" || fail "no message matching: $PATTERN"
fi
echo "fault_test: passed"
