#!/usr/bin/env bash
# launch/fuzz.sh: fuzzes a torch-free parser with libFuzzer. TARGET is
#   safetensors (default)  the safetensors header parser (cemoe::ParseHeader),
#                          harness tests/fuzz/safetensors_header_fuzz.cc
#   tokenizer              tokenizer.json loading, Encode and Decode (cemoe::Tokenizer),
#                          harness tests/fuzz/tokenizer_fuzz.cc
# Builds tests/fuzz as a standalone clang project (ASan + UBSan, no LibTorch) into build-fuzz/,
# writes a seed corpus of valid inputs by hand and a dictionary, runs the fuzzer for SECONDS
# (default 300) on one core and prints executions, exec/s, corpus size and findings. Exit status
# 1 when it found something (the reproducer is in build-fuzz/artifacts/ (safetensors) or
# build-fuzz/tokenizer-artifacts/; rerun it with build-fuzz/<harness> <file>).
#   usage: bash launch/fuzz.sh [SECONDS] [safetensors|tokenizer]
#   env:   CEMOE_FUZZ_DIR    build and work folder (default build-fuzz)
#          CEMOE_BUILD_LOCK  a file to flock around the build steps on a shared machine
#          CEMOE_FUZZ_FRESH=1  start from the seeds only (drop the corpus of earlier runs)
#          CEMOE_FUZZ_DEPTHS  nesting depths of the deep-JSON seeds (default "1000 8000 64000")
# Expected time: about 30 s to build a target on 2 cores, then SECONDS. Needs clang,
# libclang-rt-dev, and for the tokenizer pkg-config, libpcre2-dev and libutf8proc-dev.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
export LC_ALL=C  # ${#var} must count bytes
SECONDS_TO_RUN="${1:-300}"
TARGET="${2:-safetensors}"
WORK="${CEMOE_FUZZ_DIR:-$ROOT/build-fuzz}"
case "$TARGET" in
  safetensors)
    HARNESS=safetensors_header_fuzz
    PREFIX=""  # the folder names of the first version, kept so earlier corpora are reused
    # 256 KiB: room for JSON nested tens of thousands of levels deep (a 140 KB header of
    # "[[[..." overflowed the stack in nlohmann's dump(); 8 KiB could not reach it).
    MAX_LEN=262144
    ;;
  tokenizer)
    HARNESS=tokenizer_fuzz
    PREFIX="tokenizer-"
    MAX_LEN=262144  # as safetensors: deep nesting needs room
    ;;
  *)
    echo "fuzz.sh: unknown target '$TARGET' (safetensors or tokenizer)" >&2
    exit 2
    ;;
esac
BIN="$WORK/$HARNESS"

locked() {
  if [ -n "${CEMOE_BUILD_LOCK:-}" ]; then flock "$CEMOE_BUILD_LOCK" "$@"; else "$@"; fi
}

# --- build --------------------------------------------------------------------------------
if [ ! -f "$WORK/CMakeCache.txt" ]; then
  locked cmake -S tests/fuzz -B "$WORK" -G Ninja -DCMAKE_CXX_COMPILER=clang++ \
    -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
fi
locked cmake --build "$WORK" --target "$HARNESS"

SEEDS="$WORK/${PREFIX}seeds"
CORPUS="$WORK/${PREFIX}corpus"
ARTIFACTS="$WORK/${PREFIX}artifacts"
if [ "${CEMOE_FUZZ_FRESH:-0}" = 1 ]; then rm -rf "$CORPUS"; fi
rm -rf "$SEEDS"
mkdir -p "$SEEDS" "$CORPUS" "$ARTIFACTS"

# --- safetensors: valid files written byte by byte, and a dictionary of header tokens ------
if [ "$TARGET" = safetensors ]; then
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
  # Deep nesting where an error message quotes the value (dtype, a metadata value) and in
  # model.safetensors.index.json text (the harness also gives every input to ParseShardIndex),
  # at depths 1,000 to 64,000 (CEMOE_FUZZ_DEPTHS): the deepest are 128 KB, the size of the header
  # that crashed cemoe with a stack overflow (under ASan, dump() overflowed the 8 MiB stack
  # between 16,000 and 64,000 levels; mutations that keep the brackets balanced rarely deepen a
  # seed much, so the deep seed is what reaches it). nest N OPEN CLOSE: OPEN N times, CLOSE N
  # times.
  nest() { printf "%${1}s" '' | tr ' ' "$2"; printf "%${1}s" '' | tr ' ' "$3"; }
  for depth in ${CEMOE_FUZZ_DEPTHS:-1000 8000 64000}; do
    seed "deep_dtype_$depth" "{\"w\":{\"dtype\":$(nest $depth '[' ']'),\"shape\":[1],\"data_offsets\":[0,4]}}" 4
    seed "deep_meta_$depth" "{\"__metadata__\":{\"format\":$(nest $depth '[' ']')}}" 0
    printf '{"metadata":{"total_size":4},"weight_map":{"w":%s}}' "$(nest $depth '[' ']')" \
      >"$SEEDS/index_deep_$depth"
  done
  printf '%s' '{"metadata":{"total_size":12},"weight_map":{"a":"model-00001-of-00002.safetensors","b":"model-00002-of-00002.safetensors"}}' \
    >"$SEEDS/index_two_shards"

  # dictionary of header tokens
  DICT="$WORK/safetensors.dict"
  {
    for w in dtype shape data_offsets __metadata__ format pt weight_map metadata total_size \
      model-00001-of-00002.safetensors BOOL U8 I8 I16 U16 F16 BF16 I32 U32 \
      F32 F64 I64 U64 C64 F8_E4M3 F8_E5M2 F8_E8M0; do
      printf '"\\"%s\\""\n' "$w"
    done
    for w in '{' '}' '[' ']' ':' ',' '[0,0]' '[]' '\\u0000' '\\ud800' '\\udc00' '18446744073709551615' \
      '18446744073709551616' '9223372036854775807' '9223372036854775808' '4294967296' '-1' '-0' \
      '1e3' '1.0' 'null' 'true' '        ' '[[[[[[[[' ']]]]]]]]' '{\"a\":{\"a\":' '}}}}}}}}'; do
      printf '"%s"\n' "$w"
    done
  } >"$DICT"
fi

# --- tokenizer: the first byte picks the harness mode (byte % 4: '0' tokenizer.json,
# '1' text for the byte-level BPE, '2' Llama Prepend/Replace, '3' Llama Metaspace) -------
if [ "$TARGET" = tokenizer ]; then
  tseed() { printf '%s%s' "$2" "$3" >"$SEEDS/$1"; }  # tseed NAME MODE TEXT
  tseed json_minimal 0 '{"model":{"type":"BPE","vocab":{"a":0,"b":1,"ab":2},"merges":["a b"]}}'
  tseed json_neox 0 '{"version":"1.0","truncation":null,"padding":null,"added_tokens":[
{"id":9,"content":"<|endoftext|>","single_word":false,"lstrip":false,"rstrip":false,"normalized":false,"special":true},
{"id":10,"content":"<|user|>","single_word":false,"lstrip":true,"rstrip":false,"normalized":false,"special":true},
{"id":11,"content":"<|end|>","single_word":false,"lstrip":true,"rstrip":true,"normalized":false,"special":true},
{"id":12,"content":"<|sw|>","single_word":true,"lstrip":false,"rstrip":false,"normalized":false,"special":true},
{"id":13,"content":"<custom>","single_word":false,"lstrip":false,"rstrip":false,"normalized":true,"special":false}],
"normalizer":{"type":"NFC"},
"pre_tokenizer":{"type":"ByteLevel","add_prefix_space":false,"trim_offsets":true,"use_regex":true},
"post_processor":{"type":"ByteLevel","add_prefix_space":true,"trim_offsets":false,"use_regex":true},
"decoder":{"type":"ByteLevel","add_prefix_space":true,"trim_offsets":true,"use_regex":true},
"model":{"type":"BPE","dropout":null,"unk_token":null,"continuing_subword_prefix":null,
"end_of_word_suffix":null,"fuse_unk":false,"byte_fallback":false,"ignore_merges":false,
"vocab":{"h":0,"e":1,"l":2,"o":3,"\u0120":4,"he":5,"ll":6,"\u0120h":7,"\u00c3\u00a9":8},
"merges":[["h","e"],["l","l"],["\u0120","h"]]}}'
  tseed json_llama_prepend 0 '{"added_tokens":[
{"id":0,"content":"<unk>","special":true,"normalized":false},
{"id":1,"content":"<s>","special":true,"normalized":false},
{"id":2,"content":"</s>","special":true,"normalized":false},
{"id":12,"content":"[INST]","special":true,"normalized":false,"lstrip":true,"rstrip":true}],
"normalizer":{"type":"Sequence","normalizers":[{"type":"Prepend","prepend":"\u2581"},
{"type":"Replace","pattern":{"String":" "},"content":"\u2581"}]},
"pre_tokenizer":null,
"post_processor":{"type":"TemplateProcessing","single":[{"SpecialToken":{"id":"<s>","type_id":0}},{"Sequence":{"id":"A","type_id":0}}]},
"decoder":{"type":"Sequence","decoders":[{"type":"Replace","pattern":{"String":"\u2581"},"content":" "},
{"type":"ByteFallback"},{"type":"Fuse"},{"type":"Strip","content":" ","start":1,"stop":0}]},
"model":{"type":"BPE","unk_token":"<unk>","fuse_unk":true,"byte_fallback":true,
"vocab":{"<unk>":0,"<s>":1,"</s>":2,"<0x00>":3,"<0xC3>":4,"<0xA9>":5,"<0xE4>":6,"\u2581":7,"a":8,"b":9,"\u2581a":10,"ab":11},
"merges":["\u2581 a","a b"]}}'
  tseed json_llama_metaspace 0 '{"added_tokens":[
{"id":0,"content":"<unk>","special":true},{"id":7,"content":"<|x|>","special":false,"single_word":true}],
"normalizer":null,
"pre_tokenizer":{"type":"Metaspace","replacement":"\u2581","prepend_scheme":"first","split":false},
"decoder":{"type":"Sequence","decoders":[{"type":"ByteFallback"},{"type":"Metaspace","replacement":"\u2581","prepend_scheme":"first","split":false}]},
"model":{"type":"BPE","unk_token":"<unk>","fuse_unk":true,"byte_fallback":false,
"vocab":{"<unk>":0,"<0x41>":1,"\u2581":2,"x":3,"y":4,"\u2581x":5,"xy":6},"merges":["\u2581 x","x y"]}}'
  tseed json_llama3_split 0 '{"normalizer":{"type":"Sequence","normalizers":[{"type":"NFKC"},{"type":"Lowercase"}]},
"pre_tokenizer":{"type":"Sequence","pretokenizers":[
{"type":"Split","pattern":{"Regex":"(?i:'"'"'s|'"'"'t|'"'"'re|'"'"'ve|'"'"'m|'"'"'ll|'"'"'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"},"behavior":"Isolated","invert":false},
{"type":"Digits","individual_digits":true},
{"type":"ByteLevel","add_prefix_space":false,"use_regex":false}]},
"decoder":{"type":"ByteLevel"},
"model":{"type":"BPE","vocab":{"a":0,"b":1,"1":2,"\u0120":3,"ab":4,"\u0120a":5},"merges":["a b","\u0120 a"]}}'
  tseed json_word_level_parts 0 '{"normalizer":{"type":"Sequence","normalizers":[{"type":"NFD"},
{"type":"Strip","strip_left":true,"strip_right":false},{"type":"Replace","pattern":{"Regex":"\\s+"},"content":" "},{"type":"NFKD"}]},
"pre_tokenizer":{"type":"Sequence","pretokenizers":[{"type":"Whitespace"},{"type":"WhitespaceSplit"},
{"type":"Punctuation","behavior":"Removed"},{"type":"Split","pattern":{"String":"-"},"behavior":"MergedWithPrevious","invert":true},
{"type":"Split","pattern":{"Regex":"x+"},"behavior":"Contiguous"},{"type":"Split","pattern":{"String":"\\E.\\Q"},"behavior":"MergedWithNext"}]},
"decoder":{"type":"Sequence","decoders":[{"type":"Strip","content":"#","start":2,"stop":1},{"type":"Replace","pattern":{"Regex":"</w>$"},"content":""},{"type":"Fuse"}]},
"model":{"type":"BPE","unk_token":"[UNK]","continuing_subword_prefix":"##","end_of_word_suffix":"</w>","ignore_merges":true,
"vocab":{"[UNK]":0,"a":1,"##b</w>":2,"ab</w>":3,"a</w>":4,"##b":5},"merges":[["a","##b</w>"]]}}'
  tseed json_metaspace_split 0 '{"added_tokens":[{"id":3,"content":"  ","lstrip":true,"rstrip":true,"normalized":true}],
"pre_tokenizer":{"type":"Metaspace","replacement":"_","add_prefix_space":false,"split":true},
"decoder":{"type":"Metaspace","replacement":"_","add_prefix_space":true},
"model":{"type":"BPE","vocab":{"_":0,"a":1,"_a":2},"merges":["_ a"]}}'
  # A backtracking Split pattern (the encode budget stops it) and tokenizer.json nested deeper
  # than the depth limit (rejected before nlohmann parses it).
  tseed json_split_backtracking 0 '{"pre_tokenizer":{"type":"Split","pattern":{"Regex":"a*a*b|."},"behavior":"Isolated"},
"model":{"type":"BPE","vocab":{"a":0,"b":1},"merges":[]}}'
  for depth in ${CEMOE_FUZZ_DEPTHS:-1000 8000 64000}; do
    tseed "json_deep_$depth" 0 "{\"normalizer\":$(printf "%${depth}s" '' | tr ' ' '[')$(printf "%${depth}s" '' | tr ' ' ']'),\"model\":{\"type\":\"BPE\",\"vocab\":{},\"merges\":[]}}"
  done
  tseed text_ascii 1 "Hello world, it's the end of 2024!  and then"
  tseed text_unicode 1 $'h\xc3\xa9llo e\xcc\x81 \xe4\xb8\xad\xe6\x96\x87 \xf0\x9f\x98\x80\t\n\xe2\x80\x80x \xe3\x80\x80'
  tseed text_added 1 'a [eot]  [lst] x[rst]  y [both] [sw] z[sw] [norm] [nlst] [raw]  '
  tseed text_llama 2 $'the hello and \xe2\x96\x81 \xc3\xa9 \xe4\xb8\xad \xf0\x9f\x98\x80  x'
  tseed text_llama_added 2 '<s>the [INST] hello [n] and[sw] x </s><unk>'
  tseed text_metaspace 3 $'hello the  and \xe4\xb8\xad\xe6\x96\x87'
  tseed text_metaspace_added 3 '<s> hello[INST]the [sw] '
  # dictionary of tokenizer.json words
  DICT="$WORK/tokenizer.dict"
  {
    for w in type BPE vocab merges model normalizer pre_tokenizer decoder post_processor \
      added_tokens content id special lstrip rstrip single_word normalized unk_token fuse_unk \
      byte_fallback ignore_merges continuing_subword_prefix end_of_word_suffix dropout NFC NFD \
      NFKC NFKD Lowercase Prepend prepend Replace Strip strip_left strip_right Sequence \
      normalizers pretokenizers decoders ByteLevel add_prefix_space use_regex trim_offsets Split \
      pattern String Regex behavior invert Removed Isolated MergedWithPrevious MergedWithNext \
      Contiguous Digits individual_digits Metaspace replacement prepend_scheme first always never \
      split Whitespace WhitespaceSplit Punctuation ByteFallback Fuse start stop '<unk>' '<0x41>' \
      '[eot]' '[lst]' '[rst]' '[both]' '[sw]' '[norm]' '[nlst]' '[raw]' '[INST]' '[n]' '<s>'; do
      printf '"\\"%s\\""\n' "$w"
    done
    for w in '{' '}' '[' ']' ':' ',' 'null' 'true' 'false' '-1' '4294967296' '\\u2581' '\\u0120' \
      '\\\\s+' '\\\\p{L}' '(?!' '\\\\E' '\\\\Q' '\\\\C' '(a+)+' 'a*a*' '[[[[[[[[' ']]]]]]]]' '\xe2\x96\x81' '\xcc\x81' '\xc3\xa9' \
      '\xe2\x80\x80' '\xf0\x9f\x98\x80' '\xff'; do
      printf '"%s"\n' "$w"
    done
  } >"$DICT"
fi

count() { find "$1" -type f | wc -l; }

# --- run -----------------------------------------------------------------------------------
LOG="$WORK/${PREFIX}fuzz.log"
echo "fuzz.sh: running $BIN for ${SECONDS_TO_RUN}s ($(count "$SEEDS") seeds," \
  "$(count "$CORPUS") corpus files from earlier runs)"
set +e
started=$(date +%s)
nice -n 10 "$BIN" "$CORPUS" "$SEEDS" -dict="$DICT" -max_total_time="$SECONDS_TO_RUN" \
  -max_len="$MAX_LEN" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 -print_pcs=0 \
  -artifact_prefix="$ARTIFACTS/" >"$LOG" 2>&1
rc=$?
elapsed=$(($(date +%s) - started))
set -e

runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$LOG")
rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$LOG")
# (no "#N" status line when the fuzzer stops while loading the seeds)
cov=$(grep -E '^#[0-9]+' "$LOG" | tail -1 | sed -n 's/.*cov: \([0-9]*\) ft: \([0-9]*\).*/cov \1, ft \2/p' || true)
findings=$(find "$ARTIFACTS" -type f \( -name 'crash-*' -o -name 'leak-*' -o -name 'timeout-*' \
  -o -name 'oom-*' \) | wc -l)
echo "fuzz.sh: rc $rc after ${elapsed}s; executions ${runs:-?}; ${rate:-?} exec/s; ${cov:-coverage ?};" \
  "corpus $(count "$CORPUS") files; findings in $ARTIFACTS: $findings"
if [ "$rc" -ne 0 ] || [ "$findings" -ne 0 ]; then
  grep -E 'ERROR|SUMMARY|property violated|uncaught|terminate' "$LOG" | head -20 || true
  echo "fuzz.sh: see $LOG"
  exit 1
fi
