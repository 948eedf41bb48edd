#!/usr/bin/env bash
# launch/test.sh: the README's second command. Builds (if needed), prepares the oracle Python
# environment (launch/oracle_env.sh) and runs every CTest test: unit, mpi (2 and 4 ranks,
# oversubscribed), golden and oracle.
#   usage: bash launch/test.sh [extra ctest args, e.g. -L mpi]
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
bash launch/setup.sh --no-quickstart
if [ -f launch/oracle_env.sh ]; then
  bash launch/oracle_env.sh
fi
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
ctest --test-dir build --output-on-failure -j "$(nproc)" "$@"
