// safetensors_format.h: the torch-free half of the safetensors format: dtypes, the header parser
// that validates a whole file image, and the header / shard-index serializers.
//
// File layout (docs/checkpoint-format.md has the full rules):
//   [8-byte little-endian u64 N][N bytes of UTF-8 JSON, space padded][data buffer]
// The JSON maps each tensor name to {"dtype", "shape", "data_offsets": [begin, end]} with offsets
// relative to the data buffer, plus an optional "__metadata__" string->string map.
//
// ParseHeader is the single gate for untrusted bytes: everything a reader later trusts (offsets
// inside the buffer, byte counts matching shapes, no overlaps) is checked here, so that code
// built on it (model/safetensors.h) only has to copy bytes. It is the target of the libFuzzer
// harness in tests/fuzz/. Every failure throws cemoe::Error naming the file, the fault and the
// tensor where there is one; no other exception type escapes.
//
// Kept free of LibTorch so the parser compiles in a second and can be fuzzed with sanitizers.
// Thread-safety: pure functions and plain value types; no shared state.
#pragma once

#include <cstddef>
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

namespace cemoe {

// Element types of the safetensors format (the byte-addressable ones; the sub-byte F4/F6 types
// are not supported and parse as unknown dtypes).
enum class Dtype : uint8_t {
  kBool,
  kU8,
  kI8,
  kI16,
  kU16,
  kF16,
  kBF16,
  kI32,
  kU32,
  kF32,
  kF64,
  kI64,
  kU64,
  kC64,
  kF8E4M3,
  kF8E5M2,
  kF8E8M0,
};

// Every Dtype, in declaration order (for tests and tables).
const std::vector<Dtype>& AllDtypes();

// Bytes per element (1 for BOOL and the F8 types).
size_t DtypeSize(Dtype dtype);

// The name used in the header, e.g. "BF16", "F8_E4M3".
const char* DtypeName(Dtype dtype);

// "[2, 3]": a shape as error messages print it.
std::string ShapeString(const std::vector<int64_t>& shape);

// Inverse of DtypeName; nullopt for a name this reader does not know.
std::optional<Dtype> DtypeFromName(std::string_view name);

// One tensor entry of a header. begin/end are byte offsets into the data buffer (not the file).
struct TensorInfo {
  std::string name;
  Dtype dtype = Dtype::kF32;
  std::vector<int64_t> shape;  // empty for a 0-d scalar
  uint64_t begin = 0;
  uint64_t end = 0;

  uint64_t num_bytes() const { return end - begin; }
};

// Number of elements of a shape (1 for a 0-d scalar); throws when a dimension is negative or the
// product (or the product times elem_size) overflows int64. `what` names the tensor in errors.
int64_t CheckedNumel(const std::vector<int64_t>& shape, size_t elem_size, const std::string& what);

// A validated header of one file image.
struct SafetensorsHeader {
  uint64_t header_size = 0;                     // N, the JSON length including padding
  uint64_t data_start = 0;                      // 8 + N: file offset of the data buffer
  uint64_t data_size = 0;                       // bytes in the data buffer (file size - data_start)
  std::vector<TensorInfo> tensors;              // sorted by begin offset (file order)
  std::map<std::string, std::string> metadata;  // "__metadata__", empty when absent

  // Index into `tensors` by name, or nullptr.
  const TensorInfo* Find(const std::string& name) const;

  std::unordered_map<std::string, size_t> index;  // name -> position in tensors
};

// Hard limit on N, the header length (the same limit as the reference implementation).
inline constexpr uint64_t kMaxHeaderSize = 100'000'000;

// Parses and validates the header of a complete file image `data` of `file_size` bytes:
// the length field, the JSON (UTF-8, an object starting with '{', trailing whitespace allowed,
// no duplicate keys at any level), each entry (known dtype, non-negative shape without
// overflow, data_offsets [begin, end] with begin <= end and end - begin = numel * elem size),
// the layout (sorted by offset the entries tile the buffer from 0 with no gap or overlap and the
// buffer ends exactly at the end of the file) and "__metadata__" (a string->string map).
// `file_name` is only used in error messages.
SafetensorsHeader ParseHeader(const uint8_t* data, size_t file_size, const std::string& file_name);

// The JSON header for `tensors` in the order given (each entry's begin/end must already be laid
// out), with "__metadata__" first when `metadata` is non-empty, padded with spaces to a multiple
// of 8 bytes so that the data buffer starts 8-aligned. Does not include the 8-byte length field.
// Throws on duplicate names, the reserved name "__metadata__", invalid UTF-8, or offsets that do
// not tile the buffer in the order given.
std::string SerializeHeader(const std::vector<TensorInfo>& tensors,
                            const std::map<std::string, std::string>& metadata);

// The 8-byte little-endian length field for a header of `header_size` bytes.
std::string EncodeHeaderLength(uint64_t header_size);

// Sets begin/end of each entry so that they tile the buffer in the order given, from the dtype
// and shape; returns the total buffer size.
uint64_t LayOutTensors(std::vector<TensorInfo>& tensors);

// model.safetensors.index.json: {"metadata": {"total_size": N, ...}, "weight_map": {name: shard}}.
struct ShardIndex {
  std::optional<uint64_t> total_size;             // metadata.total_size, when present
  std::map<std::string, std::string> weight_map;  // tensor name -> shard file name
};

// Parses an index.json text; `file_name` is used in errors. Shard names must be plain file names
// (no '/', not "." or ".."). Other metadata fields are ignored.
ShardIndex ParseShardIndex(std::string_view text, const std::string& file_name);

// The index.json text as transformers writes it: indent 2, keys sorted, trailing newline.
std::string SerializeShardIndex(const ShardIndex& index);

}  // namespace cemoe
