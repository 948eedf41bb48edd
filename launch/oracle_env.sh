#!/usr/bin/env bash
# launch/oracle_env.sh: creates or updates the Python virtual environment the oracle tests
# (ctest -L oracle) run in, from the pinned launch/oracle-requirements.txt.
#   venv:  ${CEMOE_ORACLE_VENV:-$HOME/.cache/cemoe/oracle-venv}  (outside the source tree)
#   python: ${CEMOE_PYTHON:-python3}  (Debian 12: python3 + python3-venv, installed by setup.sh)
# Idempotent and quiet: when the stamp file in the venv matches the hash of the requirements file
# (and of the Python version), it prints nothing and exits 0 at once. Otherwise it installs with
# pip (which reuses pip's cache, ~/.cache/pip or PIP_CACHE_DIR), checks the imports, writes the stamp,
# and prints one line. If the environment cannot be built it prints why and exits non-zero: the
# oracle tests are never skipped.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
REQ="$ROOT/launch/oracle-requirements.txt"
VENV="${CEMOE_ORACLE_VENV:-$HOME/.cache/cemoe/oracle-venv}"
PY="${CEMOE_PYTHON:-python3}"
STAMP="$VENV/.cemoe-oracle-stamp"

die() { echo "oracle_env: ERROR: $*" >&2; exit 1; }

command -v "$PY" >/dev/null 2>&1 || die "no '$PY' on PATH (install python3 and python3-venv: bash launch/setup.sh)"
want="$( { cat "$REQ"; "$PY" -c 'import sys; print(sys.version)'; } | sha256sum | cut -d' ' -f1)"

# Fast path: nothing to do.
if [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$want" ] && [ -x "$VENV/bin/python" ]; then
  exit 0
fi

mkdir -p "$(dirname "$VENV")"
# One installer at a time (two test runs starting together must not interleave pip).
exec 9>"$VENV.lock"
flock 9
if [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$want" ] && [ -x "$VENV/bin/python" ]; then
  exit 0
fi

LOG="$(mktemp "${TMPDIR:-/tmp}/cemoe-oracle-env.XXXXXX.log")"
start=$(date +%s)
echo "oracle_env: installing the oracle environment into $VENV (log: $LOG)"
if [ ! -x "$VENV/bin/python" ]; then
  "$PY" -m venv "$VENV" >>"$LOG" 2>&1 ||
    { tail -n 20 "$LOG" >&2; die "'$PY -m venv $VENV' failed (on Debian: apt-get install python3-venv)"; }
fi
rm -f "$STAMP"
"$VENV/bin/python" -m pip install --quiet --disable-pip-version-check -r "$REQ" >>"$LOG" 2>&1 ||
  { tail -n 30 "$LOG" >&2; die "pip install -r $REQ failed (see $LOG)"; }
"$VENV/bin/python" - >>"$LOG" 2>&1 <<'PYEOF' || { tail -n 30 "$LOG" >&2; die "the installed environment does not import (see $LOG)"; }
import torch, transformers, safetensors, tokenizers, tensorboard, numpy
from safetensors import safe_open
from transformers import OlmoeForCausalLM, PhimoeForCausalLM
print("torch", torch.__version__, "transformers", transformers.__version__, "safetensors", safetensors.__version__,
      "tokenizers", tokenizers.__version__, "tensorboard", tensorboard.__version__, "numpy", numpy.__version__)
PYEOF
echo "$want" >"$STAMP"
echo "oracle_env: ready in $(( $(date +%s) - start )) s ($(tail -n 1 "$LOG"))"
rm -f "$LOG"
