#!/usr/bin/env bash
# launch/fuzz.sh: fuzzes the safetensors header parser (cemoe::ParseHeader) with libFuzzer.
# Builds tests/fuzz as a standalone clang project (ASan + UBSan, no LibTorch) into build-fuzz/,
# writes a seed corpus of valid files by hand, runs the fuzzer for SECONDS (default 300) on one
# core and prints executions, exec/s, corpus size and findings. Exit status 1 when it found
# something (the reproducer is in build-fuzz/artifacts/; rerun it with
# build-fuzz/safetensors_header_fuzz <file>).
#   usage: bash launch/fuzz.sh [SECONDS]
#   env:   CEMOE_FUZZ_DIR    build and work folder (default build-fuzz)
#          CEMOE_BUILD_LOCK  a file to flock around the build steps on a shared machine
#          CEMOE_FUZZ_FRESH=1  start from the seeds only (drop the corpus of earlier runs)
# Expected time: about 30 s to build on 2 cores, then SECONDS. Needs clang and libclang-rt-dev.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
export LC_ALL=C  # ${#var} must count bytes
SECONDS_TO_RUN="${1:-300}"
WORK="${CEMOE_FUZZ_DIR:-$ROOT/build-fuzz}"
BIN="$WORK/safetensors_header_fuzz"

locked() {
  if [ -n "${CEMOE_BUILD_LOCK:-}" ]; then flock "$CEMOE_BUILD_LOCK" "$@"; else "$@"; fi
}

# --- build --------------------------------------------------------------------------------
if [ ! -f "$WORK/CMakeCache.txt" ]; then
  locked cmake -S tests/fuzz -B "$WORK" -G Ninja -DCMAKE_CXX_COMPILER=clang++ \
    -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
fi
locked cmake --build "$WORK"

# --- seed corpus: valid files, written byte by byte ----------------------------------------
SEEDS="$WORK/seeds"
CORPUS="$WORK/corpus"
ARTIFACTS="$WORK/artifacts"
if [ "${CEMOE_FUZZ_FRESH:-0}" = 1 ]; then rm -rf "$CORPUS"; fi
rm -rf "$SEEDS"
mkdir -p "$SEEDS" "$CORPUS" "$ARTIFACTS"

# le64 N: the 8-byte little-endian length field.
le64() {
  local n=$1 i
  for i in 0 1 2 3 4 5 6 7; do
    # shellcheck disable=SC2059  # the format is the octal escape of one byte, on purpose
    printf "\\$(printf '%03o' $(((n >> (8 * i)) & 255)))"
  done
}
# seed NAME JSON DATA_BYTES: a file with JSON padded with spaces to a multiple of 8 and
# DATA_BYTES zero bytes of data.
seed() {
  local name=$1 json=$2 nbytes=$3
  while [ $((${#json} % 8)) -ne 0 ]; do json="$json "; done
  {
    le64 "${#json}"
    printf '%s' "$json"
    head -c "$nbytes" /dev/zero
  } >"$SEEDS/$name"
}
seed empty '{}' 0
seed empty_meta '{"__metadata__":{"format":"pt"}}' 0
seed one_f32 '{"__metadata__":{"format":"pt"},"w":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}' 8
seed hand_two '{"__metadata__":{"format":"pt"},"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"I16","shape":[1,2],"data_offsets":[8,12]}}' 12
seed scalar_and_empty '{"s":{"dtype":"F64","shape":[],"data_offsets":[0,8]},"e":{"dtype":"BF16","shape":[3,0,2],"data_offsets":[8,8]},"z":{"dtype":"I64","shape":[0],"data_offsets":[8,8]},"m":{"dtype":"U8","shape":[5],"data_offsets":[8,13]}}' 13
seed unordered '{"z":{"dtype":"U8","shape":[3],"data_offsets":[0,3]},"a":{"dtype":"I32","shape":[2,1],"data_offsets":[3,11]}}' 11
seed unicode_meta '{"__metadata__":{"format":"pt","n\u00f6te":"\ud83d\ude00 \"q\" \\ \n"},"layers.0.mlp.experts.3.down_proj.weight":{"dtype":"F16","shape":[2,2],"data_offsets":[0,8]}}' 8
all='{"__metadata__":{"format":"pt"}'
off=0
for spec in BOOL:1 U8:1 I8:1 I16:2 U16:2 F16:2 BF16:2 I32:4 U32:4 F32:4 F64:8 I64:8 U64:8 C64:8 \
  F8_E4M3:1 F8_E5M2:1 F8_E8M0:1; do
  dt=${spec%%:*}
  sz=${spec##*:}
  all="$all,\"t_$dt\":{\"dtype\":\"$dt\",\"shape\":[2],\"data_offsets\":[$off,$((off + 2 * sz))]}"
  off=$((off + 2 * sz))
done
seed all_dtypes "$all}" "$off"

# --- dictionary of header tokens -----------------------------------------------------------
DICT="$WORK/safetensors.dict"
{
  for w in dtype shape data_offsets __metadata__ format pt BOOL U8 I8 I16 U16 F16 BF16 I32 U32 \
    F32 F64 I64 U64 C64 F8_E4M3 F8_E5M2 F8_E8M0; do
    printf '"\\"%s\\""\n' "$w"
  done
  for w in '{' '}' '[' ']' ':' ',' '[0,0]' '[]' '\\u0000' '\\ud800' '\\udc00' '18446744073709551615' \
    '18446744073709551616' '9223372036854775807' '9223372036854775808' '4294967296' '-1' '-0' \
    '1e3' '1.0' 'null' 'true' '        '; do
    printf '"%s"\n' "$w"
  done
} >"$DICT"

count() { find "$1" -type f | wc -l; }

# --- run -----------------------------------------------------------------------------------
LOG="$WORK/fuzz.log"
echo "fuzz.sh: running $BIN for ${SECONDS_TO_RUN}s ($(count "$SEEDS") seeds," \
  "$(count "$CORPUS") corpus files from earlier runs)"
set +e
nice -n 10 "$BIN" "$CORPUS" "$SEEDS" -dict="$DICT" -max_total_time="$SECONDS_TO_RUN" \
  -max_len=8192 -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 -print_pcs=0 \
  -artifact_prefix="$ARTIFACTS/" >"$LOG" 2>&1
rc=$?
set -e

runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$LOG")
rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$LOG")
cov=$(grep -E '^#[0-9]+' "$LOG" | tail -1 | sed -n 's/.*cov: \([0-9]*\) ft: \([0-9]*\).*/cov \1, ft \2/p')
findings=$(find "$ARTIFACTS" -type f \( -name 'crash-*' -o -name 'leak-*' -o -name 'timeout-*' \
  -o -name 'oom-*' \) | wc -l)
echo "fuzz.sh: rc $rc; executions ${runs:-?}; ${rate:-?} exec/s; ${cov:-coverage ?};" \
  "corpus $(count "$CORPUS") files; findings in $ARTIFACTS: $findings"
if [ "$rc" -ne 0 ] || [ "$findings" -ne 0 ]; then
  grep -E 'ERROR|SUMMARY|property violated|uncaught|terminate' "$LOG" | head -20 || true
  echo "fuzz.sh: see $LOG"
  exit 1
fi
