#!/usr/bin/env bash
# launch/mpirun.sh: run one cemoe command on NP ranks with mpirun, one GPU per local rank.
#
# What it runs, and the cost: whatever command follows "--". Examples and measured/expected
# cost (CPU numbers measured on the 2-core Debian 12 VM, docs/parallel.md):
#   launch/mpirun.sh -n 4 -- build/cemoe bench dispatch
#       0 GPUs, 4 ranks x 2048 tokens x top-8, 10 reps, ~1 minute on 2 cores.
#   launch/mpirun.sh -n 8 --per-node 8 --hostfile hosts -- build/cemoe train recipes/olmoe/top4_sft_tulu3.textproto
#       8 GPUs per node (one per local rank), tokens/steps/time as the recipe states (its header).
#
#   usage: launch/mpirun.sh [-n NP] [--hostfile FILE] [--per-node N] [--timeout S]
#                           [--load-timeout S] -- COMMAND...
#     -n NP            total ranks (default: number of GPUs on this host, else 2)
#     --hostfile F     OpenMPI hostfile ("node1 slots=8" lines) for several nodes
#     --per-node N     ranks per node (= GPUs per node); default: fill slots
#     --timeout S      collective timeout (CEMOE_COLLECTIVE_TIMEOUT_S; default 300 s)
#     --load-timeout S budget of loading/saving checkpoints and of shutdown
#                      (CEMOE_LOAD_TIMEOUT_S; default 3600 s)
#   S: seconds > 0, 0 = the default, or "forever"; cemoe checks the value (one parser,
#   docs/parallel.md "When a rank fails"). Both variables, when already set in this shell, are
#   passed to every rank as they are.
# Each rank picks its GPU from OMPI_COMM_WORLD_LOCAL_RANK (cemoe does this itself); this script
# only sets the environment MPI and NCCL need. CPU threads per rank: cemoe shares the cores it may
# run on among the ranks of its node (OMPI_COMM_WORLD_LOCAL_SIZE); OMP_NUM_THREADS, when set in
# this shell, is passed through and wins.
set -euo pipefail

NP=""
HOSTFILE=""
PER_NODE=""
TIMEOUT=""
LOAD_TIMEOUT=""
while [ $# -gt 0 ]; do
  case "$1" in
    -n) NP="$2"; shift 2 ;;
    --hostfile) HOSTFILE="$2"; shift 2 ;;
    --per-node) PER_NODE="$2"; shift 2 ;;
    --timeout) TIMEOUT="$2"; shift 2 ;;
    --load-timeout) LOAD_TIMEOUT="$2"; shift 2 ;;
    --) shift; break ;;
    -h|--help) sed -n '2,24p' "$0"; exit 0 ;;
    *) echo "mpirun.sh: unknown option $1 (the command goes after --)" >&2; exit 2 ;;
  esac
done
[ $# -gt 0 ] || { echo "mpirun.sh: no command after --" >&2; exit 2; }

GPUS=0
if command -v nvidia-smi >/dev/null 2>&1; then
  GPUS=$(nvidia-smi --list-gpus 2>/dev/null | wc -l || echo 0)
fi
if [ -z "$NP" ]; then
  NP=$(( GPUS > 0 ? GPUS : 2 ))
fi
CORES=$(nproc)

ARGS=(--np "$NP" --bind-to none)
[ -n "$HOSTFILE" ] && ARGS+=(--hostfile "$HOSTFILE")
[ -n "$PER_NODE" ] && ARGS+=(--map-by "ppr:${PER_NODE}:node")
if [ -z "$HOSTFILE" ] && [ "$NP" -gt "$CORES" ]; then ARGS+=(--oversubscribe); fi
[ "$(id -u)" = 0 ] && ARGS+=(--allow-run-as-root)

ENVS=(
  NCCL_DEBUG="${NCCL_DEBUG:-WARN}"
  NCCL_ASYNC_ERROR_HANDLING=1
  TORCH_NCCL_ASYNC_ERROR_HANDLING=1
)
# The options win over the variables already set in this shell, which otherwise pass through.
if [ -n "$TIMEOUT" ]; then
  ENVS+=(CEMOE_COLLECTIVE_TIMEOUT_S="$TIMEOUT")
elif [ -n "${CEMOE_COLLECTIVE_TIMEOUT_S+x}" ]; then
  ENVS+=(CEMOE_COLLECTIVE_TIMEOUT_S="$CEMOE_COLLECTIVE_TIMEOUT_S")
fi
if [ -n "$LOAD_TIMEOUT" ]; then
  ENVS+=(CEMOE_LOAD_TIMEOUT_S="$LOAD_TIMEOUT")
elif [ -n "${CEMOE_LOAD_TIMEOUT_S+x}" ]; then
  ENVS+=(CEMOE_LOAD_TIMEOUT_S="$CEMOE_LOAD_TIMEOUT_S")
fi
if [ -n "${OMP_NUM_THREADS+x}" ]; then ENVS+=(OMP_NUM_THREADS="$OMP_NUM_THREADS"); fi
for e in "${ENVS[@]}"; do ARGS+=(-x "$e"); done
# Pass through NCCL_SOCKET_IFNAME / NCCL_IB_HCA etc. when set on the launching host.
for v in $(env | grep -o '^NCCL_[A-Z_]*' || true); do ARGS+=(-x "$v"); done

echo "mpirun.sh: $NP rank(s), ${OMP_NUM_THREADS:-cores / local ranks} thread(s) per rank," \
  "$GPUS GPU(s) on this host: $*" >&2
exec mpirun "${ARGS[@]}" "$@"
