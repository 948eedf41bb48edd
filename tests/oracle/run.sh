#!/usr/bin/env bash
# tests/oracle/run.sh SCRIPT ARGS...: runs an oracle script with the oracle venv's Python.
# The venv is ${CEMOE_ORACLE_VENV:-$HOME/.cache/cemoe/oracle-venv}, built by launch/oracle_env.sh
# (bash launch/test.sh runs it first). A missing venv is a FAILURE, never a skip.
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
VENV="${CEMOE_ORACLE_VENV:-$HOME/.cache/cemoe/oracle-venv}"
if [ ! -x "$VENV/bin/python" ] || [ ! -f "$VENV/.cemoe-oracle-stamp" ]; then
  echo "oracle: FAIL: no oracle environment at $VENV: run 'bash launch/oracle_env.sh' (or bash launch/test.sh)" >&2
  exit 1
fi
script="$1"; shift
exec "$VENV/bin/python" -u "$HERE/$script" "$@"
