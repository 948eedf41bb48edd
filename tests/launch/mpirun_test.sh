#!/usr/bin/env bash
# tests/launch/mpirun_test.sh: launch/mpirun.sh hands the timeouts to every rank. `mpirun` is a
# shim on PATH that records its arguments. Checked:
#   1. --timeout 5 --load-timeout 7: -x CEMOE_COLLECTIVE_TIMEOUT_S=5 and -x CEMOE_LOAD_TIMEOUT_S=7;
#   2. the variables set in the calling shell pass through as they are (cemoe checks them);
#   3. the options win over the variables; 4. with neither, neither is exported.
set -uo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
SCRIPT="$HERE/../../launch/mpirun.sh"
WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT
mkdir -p "$WORK/bin"
cat > "$WORK/bin/mpirun" <<'SH'
#!/usr/bin/env bash
echo "$*" > "$SHIM_LOG"
SH
chmod +x "$WORK/bin/mpirun"
export PATH="$WORK/bin:$PATH" SHIM_LOG="$WORK/args"
unset CEMOE_COLLECTIVE_TIMEOUT_S CEMOE_LOAD_TIMEOUT_S
failures=0
check() {  # check NAME TEXT RESULT
  if [ "$3" = 0 ]; then echo "ok   $1: $2"; else echo "FAIL $1: $2"; failures=$((failures + 1)); fi
}
has() { grep -q -- "$1" "$WORK/args"; }

bash "$SCRIPT" -n 2 --timeout 5 --load-timeout 7 -- echo hi 2>/dev/null
check 1 "options exported" $(has "-x CEMOE_COLLECTIVE_TIMEOUT_S=5 " && has "-x CEMOE_LOAD_TIMEOUT_S=7 "; echo $?)

CEMOE_COLLECTIVE_TIMEOUT_S=abc CEMOE_LOAD_TIMEOUT_S=forever bash "$SCRIPT" -n 2 -- echo hi 2>/dev/null
check 2 "variables pass through" $(has "-x CEMOE_COLLECTIVE_TIMEOUT_S=abc " && has "-x CEMOE_LOAD_TIMEOUT_S=forever "; echo $?)

CEMOE_LOAD_TIMEOUT_S=9 bash "$SCRIPT" -n 2 --load-timeout 11 -- echo hi 2>/dev/null
check 3 "options win" $(has "-x CEMOE_LOAD_TIMEOUT_S=11 " && ! has "CEMOE_LOAD_TIMEOUT_S=9"; echo $?)

bash "$SCRIPT" -n 2 -- echo hi 2>/dev/null
check 4 "nothing exported without options or variables" $(! has "CEMOE_"; echo $?)

[ $failures = 0 ] || { cat "$WORK/args"; exit 1; }
echo "mpirun.sh: all 4 timeout checks passed"
