#!/usr/bin/env bash
# launch/setup.sh: the README's first command. On a fresh Debian 12 machine it installs every
# Debian package the build and tests need (quiet and quick when they are present), builds cemoe
# into build/, and runs the quickstart on the embedded tiny model.
#   usage: bash launch/setup.sh [--no-quickstart]
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
SUDO=""
if [ "$(id -u)" != 0 ]; then SUDO="sudo"; fi

PACKAGES=(
  build-essential cmake ninja-build ccache pkg-config git
  libtorch-dev libopenblas0-openmp          # LibTorch 1.13 (CPU) with a fast BLAS
  libdnnl-dev                               # oneDNN sgemm: overwritten expert weight gradients
  libopenmpi-dev openmpi-bin                # MPI
  libprotobuf-dev protobuf-compiler         # recipes
  libgtest-dev libgmock-dev                 # tests
  nlohmann-json3-dev libfmt-dev libcli11-dev  # JSON, formatting, CLI parsing
  libpcre2-dev libutf8proc-dev              # tokenizer: regexes, Unicode normalization
  clang libclang-rt-14-dev                  # libFuzzer for the fuzz target
  python3 python3-venv                      # the oracle environment (launch/oracle_env.sh)
)
missing=()
for p in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "setup: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# Build (ccache makes rebuilds on the same machine cheap).
export CCACHE_DIR="${CCACHE_DIR:-$HOME/.cache/ccache}"
# Paths under the checkout are hashed relative to it: another clone or worktree hits the cache.
export CCACHE_BASEDIR="${CCACHE_BASEDIR:-$ROOT}"
ccache --max-size=5G >/dev/null 2>&1 || true
JOBS="${CEMOE_JOBS:-$(nproc)}"
if [ ! -f build/CMakeCache.txt ]; then
  cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=Release ${CEMOE_CMAKE_ARGS:-} >/dev/null
fi
cmake --build build -j "$JOBS"

if [ "${1:-}" != "--no-quickstart" ]; then
  bash launch/quickstart.sh
fi
