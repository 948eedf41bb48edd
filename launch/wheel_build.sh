#!/usr/bin/env bash
# launch/wheel_build.sh: builds cemoe and the model's unit tests a second time, against the LibTorch
# 2.x inside the oracle environment's torch wheel (MKL, C++20; docs/build.md), in build-torch2/ with
# the CUDA path off, and runs those tests and the model's logits oracles (against transformers,
# through build-torch2/cemoe) there. The code must keep compiling against Debian's 1.13 and the
# wheel's 2.x (every library translation unit is in cemoe), and the experts' kernels choose their
# products by the BLAS behind ATen (OpenBLAS in Debian's, MKL in the wheel's;
# model/moe/small_rows_product.h). CI runs it after launch/test.sh.
#   usage: bash launch/wheel_build.sh [extra ctest args]
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
bash launch/oracle_env.sh
VENV="${CEMOE_ORACLE_VENV:-$HOME/.cache/cemoe/oracle-venv}"
PREFIX="$("$VENV/bin/python" -c 'import torch; print(torch.utils.cmake_prefix_path)')"
export CCACHE_DIR="${CCACHE_DIR:-$HOME/.cache/ccache}"
export CCACHE_BASEDIR="${CCACHE_BASEDIR:-$ROOT}"
JOBS="${CEMOE_JOBS:-$(nproc)}"
start=$(date +%s)
if [ ! -f build-torch2/CMakeCache.txt ]; then
  cmake -S . -B build-torch2 -G Ninja -DCMAKE_BUILD_TYPE=Release -DCMAKE_PREFIX_PATH="$PREFIX" \
    -DCEMOE_WITH_CUDA=OFF >/dev/null
fi
# The model's test executables, by their ninja targets (tests/model/model_*_test), and ep_save,
# the oracles' helper that saves a checkpoint from expert-parallel ranks.
mapfile -t tests < <(ninja -C build-torch2 -t targets all |
  sed -n 's|^tests/model/\(model_[a-z0-9_]*_test\): .*|\1|p')
[ ${#tests[@]} -gt 0 ] || { echo "wheel_build: no model tests found in build-torch2" >&2; exit 1; }
cmake --build build-torch2 -j "$JOBS" --target cemoe ep_save "${tests[@]}"
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
ctest --test-dir build-torch2 --output-on-failure -j "$JOBS" -R '^(model_|oracle_model_)' "$@"
echo "wheel_build: LibTorch $("$VENV/bin/python" -c 'import torch; print(torch.__version__)'), built and tested in $(($(date +%s) - start)) s"
