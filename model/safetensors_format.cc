#include "model/safetensors_format.h"

#include <fmt/format.h>
#include <fmt/ranges.h>

#include <algorithm>
#include <limits>
#include <nlohmann/json.hpp>
#include <tuple>
#include <unordered_set>
#include <utility>

#include "model/check.h"
#include "model/json_file.h"

namespace cemoe {
namespace {

using Json = nlohmann::json;

struct DtypeRow {
  Dtype dtype;
  const char* name;
  size_t size;
};

// One row per Dtype, in enum order (checked by AllDtypes()).
constexpr DtypeRow kDtypeTable[] = {
    {Dtype::kBool, "BOOL", 1},      {Dtype::kU8, "U8", 1},          {Dtype::kI8, "I8", 1},
    {Dtype::kI16, "I16", 2},        {Dtype::kU16, "U16", 2},        {Dtype::kF16, "F16", 2},
    {Dtype::kBF16, "BF16", 2},      {Dtype::kI32, "I32", 4},        {Dtype::kU32, "U32", 4},
    {Dtype::kF32, "F32", 4},        {Dtype::kF64, "F64", 8},        {Dtype::kI64, "I64", 8},
    {Dtype::kU64, "U64", 8},        {Dtype::kC64, "C64", 8},        {Dtype::kF8E4M3, "F8_E4M3", 1},
    {Dtype::kF8E5M2, "F8_E5M2", 1}, {Dtype::kF8E8M0, "F8_E8M0", 1},
};
constexpr size_t kNumDtypes = sizeof(kDtypeTable) / sizeof(kDtypeTable[0]);

const DtypeRow& Row(Dtype dtype) {
  const auto i = static_cast<size_t>(dtype);
  CEMOE_CHECK(i < kNumDtypes && kDtypeTable[i].dtype == dtype, "invalid Dtype value {}", i);
  return kDtypeTable[i];
}

// Parses JSON text into a DOM, rejecting duplicate object keys at any depth (nlohmann would
// silently keep the last one). `what` prefixes error messages. Any nlohmann error becomes a
// cemoe::Error.
Json ParseStrictJson(std::string_view text, const std::string& what) {
  // One entry per open object: the keys seen so far and the key under which it was opened.
  struct Level {
    std::unordered_set<std::string> keys;
    std::string parent_key;
  };
  std::vector<Level> levels;
  std::string last_key;
  auto callback = [&](int /*depth*/, Json::parse_event_t event, Json& parsed) -> bool {
    switch (event) {
      case Json::parse_event_t::object_start:
        levels.push_back(Level{{}, levels.empty() ? std::string() : last_key});
        break;
      case Json::parse_event_t::object_end:
        if (!levels.empty()) levels.pop_back();
        break;
      case Json::parse_event_t::key: {
        const std::string& key = parsed.get_ref<const std::string&>();
        if (!levels.empty() && !levels.back().keys.insert(key).second) {
          if (levels.size() == 1) {
            CEMOE_FAIL("{}: duplicate name '{}' in the JSON object", what, key);
          }
          CEMOE_FAIL("{}: duplicate key '{}' inside the entry '{}'", what, key,
                     levels.back().parent_key);
        }
        last_key = key;
        break;
      }
      default:
        break;
    }
    return true;
  };
  // nlohmann's lexer treats a NUL byte as the end of input and would accept "{...}\0garbage";
  // JSON text can never hold a raw NUL, so reject it here.
  const size_t nul = text.find('\0');
  CEMOE_CHECK(nul == std::string_view::npos, "{}: invalid JSON: NUL byte at offset {}", what, nul);
  // nlohmann's parser recurses once per nesting level: a crafted header must not reach it.
  CheckJsonDepth(text, what);
  try {
    return Json::parse(text.begin(), text.end(), callback, /*allow_exceptions=*/true);
  } catch (const Json::exception& e) {
    CEMOE_FAIL("{}: invalid JSON: {}", what, Excerpt(e.what()));
  }
}

// A JSON integer that must be non-negative; `field` names it in errors.
uint64_t NonNegativeInteger(const Json& v, const std::string& field) {
  if (v.is_number_unsigned()) return v.get<uint64_t>();
  if (v.is_number_integer()) {
    const auto i = v.get<int64_t>();
    CEMOE_CHECK(i >= 0, "{} must be a non-negative integer, got {}", field, i);
    return static_cast<uint64_t>(i);
  }
  CEMOE_FAIL("{} must be a non-negative integer, got {}", field, JsonExcerpt(v));
}

TensorInfo ParseEntry(const std::string& name, const Json& entry, const std::string& where) {
  CEMOE_CHECK(entry.is_object(), "{}: tensor '{}': entry must be a JSON object, got {}", where,
              name, entry.type_name());
  TensorInfo info;
  info.name = name;

  auto dtype_it = entry.find("dtype");
  CEMOE_CHECK(dtype_it != entry.end(), "{}: tensor '{}': missing \"dtype\"", where, name);
  CEMOE_CHECK(dtype_it->is_string(), "{}: tensor '{}': \"dtype\" must be a string, got {}", where,
              name, JsonExcerpt(*dtype_it));
  const auto& dtype_name = dtype_it->get_ref<const std::string&>();
  const auto dtype = DtypeFromName(dtype_name);
  CEMOE_CHECK(dtype.has_value(), "{}: tensor '{}': unknown dtype \"{}\"", where, name, dtype_name);
  info.dtype = *dtype;

  auto shape_it = entry.find("shape");
  CEMOE_CHECK(shape_it != entry.end(), "{}: tensor '{}': missing \"shape\"", where, name);
  CEMOE_CHECK(shape_it->is_array(), "{}: tensor '{}': \"shape\" must be an array, got {}", where,
              name, JsonExcerpt(*shape_it));
  for (const auto& d : *shape_it) {
    const uint64_t dim =
        NonNegativeInteger(d, fmt::format("{}: tensor '{}': shape entry", where, name));
    CEMOE_CHECK(dim <= static_cast<uint64_t>(std::numeric_limits<int64_t>::max()),
                "{}: tensor '{}': shape dimension {} overflows int64", where, name, dim);
    info.shape.push_back(static_cast<int64_t>(dim));
  }

  auto offsets_it = entry.find("data_offsets");
  CEMOE_CHECK(offsets_it != entry.end(), "{}: tensor '{}': missing \"data_offsets\"", where, name);
  CEMOE_CHECK(offsets_it->is_array() && offsets_it->size() == 2,
              "{}: tensor '{}': \"data_offsets\" must be an array [begin, end], got {}", where,
              name, JsonExcerpt(*offsets_it));
  const std::string offsets_field = fmt::format("{}: tensor '{}': data_offsets", where, name);
  info.begin = NonNegativeInteger((*offsets_it)[0], offsets_field);
  info.end = NonNegativeInteger((*offsets_it)[1], offsets_field);
  CEMOE_CHECK(info.begin <= info.end, "{}: tensor '{}': data_offsets [{}, {}] has begin > end",
              where, name, info.begin, info.end);

  const size_t elem = DtypeSize(info.dtype);
  const int64_t numel = CheckedNumel(info.shape, elem, fmt::format("{}: tensor '{}'", where, name));
  const uint64_t expected = static_cast<uint64_t>(numel) * elem;
  CEMOE_CHECK(info.num_bytes() == expected,
              "{}: tensor '{}': data_offsets [{}, {}] hold {} bytes but dtype {} shape {} needs "
              "{} bytes",
              where, name, info.begin, info.end, info.num_bytes(), DtypeName(info.dtype),
              ShapeString(info.shape), expected);
  return info;
}

}  // namespace

std::string ShapeString(const std::vector<int64_t>& shape) {
  return fmt::format("[{}]", fmt::join(shape, ", "));
}

const std::vector<Dtype>& AllDtypes() {
  static const std::vector<Dtype> all = [] {
    std::vector<Dtype> v;
    for (size_t i = 0; i < kNumDtypes; ++i) {
      CEMOE_CHECK(static_cast<size_t>(kDtypeTable[i].dtype) == i, "dtype table out of order");
      v.push_back(kDtypeTable[i].dtype);
    }
    return v;
  }();
  return all;
}

size_t DtypeSize(Dtype dtype) { return Row(dtype).size; }

const char* DtypeName(Dtype dtype) { return Row(dtype).name; }

std::optional<Dtype> DtypeFromName(std::string_view name) {
  for (const auto& row : kDtypeTable) {
    if (name == row.name) return row.dtype;
  }
  return std::nullopt;
}

int64_t CheckedNumel(const std::vector<int64_t>& shape, size_t elem_size, const std::string& what) {
  int64_t numel = 1;
  for (const int64_t d : shape) {
    CEMOE_CHECK(d >= 0, "{}: negative dimension {} in shape {}", what, d, ShapeString(shape));
    CEMOE_CHECK(!__builtin_mul_overflow(numel, d, &numel),
                "{}: shape {} overflows: the element count exceeds 2^63-1", what,
                ShapeString(shape));
  }
  int64_t bytes = 0;
  CEMOE_CHECK(!__builtin_mul_overflow(numel, static_cast<int64_t>(elem_size), &bytes),
              "{}: shape {} overflows: {} elements of {} bytes exceed 2^63-1 bytes", what,
              ShapeString(shape), numel, elem_size);
  return numel;
}

const TensorInfo* SafetensorsHeader::Find(const std::string& name) const {
  auto it = index.find(name);
  return it == index.end() ? nullptr : &tensors[it->second];
}

SafetensorsHeader ParseHeader(const uint8_t* data, size_t file_size, const std::string& file_name) {
  const std::string& f = file_name;
  CEMOE_CHECK(file_size >= 8,
              "{}: file too small ({} bytes): a safetensors file starts with an 8-byte header "
              "length",
              f, file_size);
  uint64_t n = 0;
  for (int i = 7; i >= 0; --i) n = (n << 8) | data[i];
  CEMOE_CHECK(n <= kMaxHeaderSize, "{}: header length {} exceeds the limit of {} bytes", f, n,
              kMaxHeaderSize);
  CEMOE_CHECK(n <= file_size - 8,
              "{}: header length {} is larger than the {} bytes that follow the length field "
              "(file size {})",
              f, n, file_size - 8, file_size);

  SafetensorsHeader header;
  header.header_size = n;
  header.data_start = 8 + n;
  header.data_size = file_size - header.data_start;

  const std::string_view text(reinterpret_cast<const char*>(data + 8), n);
  CEMOE_CHECK(!text.empty() && text.front() == '{',
              "{}: the header must be a JSON object starting with '{{', got {}", f,
              text.empty() ? std::string("an empty header")
                           : fmt::format("first byte 0x{:02x}", static_cast<uint8_t>(text[0])));
  const Json json = ParseStrictJson(text, fmt::format("{}: header", f));
  // A text that starts with '{' and parses is an object; keep the check for clarity.
  CEMOE_CHECK(json.is_object(), "{}: the header must be a JSON object, got {}", f,
              json.type_name());

  for (const auto& [name, value] : json.items()) {
    if (name == "__metadata__") {
      CEMOE_CHECK(value.is_object(),
                  "{}: \"__metadata__\" must be a string->string map, got a JSON {}", f,
                  value.type_name());
      for (const auto& [key, v] : value.items()) {
        CEMOE_CHECK(v.is_string(),
                    "{}: \"__metadata__\" must be a string->string map, but key '{}' holds {}", f,
                    key, JsonExcerpt(v));
        header.metadata.emplace(key, v.get<std::string>());
      }
      continue;
    }
    header.tensors.push_back(ParseEntry(name, value, f));
  }

  // Sorted by offset, the entries must tile [0, data_size) exactly.
  std::sort(header.tensors.begin(), header.tensors.end(),
            [](const TensorInfo& a, const TensorInfo& b) {
              return std::tie(a.begin, a.end, a.name) < std::tie(b.begin, b.end, b.name);
            });
  uint64_t expected = 0;
  const TensorInfo* previous = nullptr;
  for (const TensorInfo& t : header.tensors) {
    if (t.end > header.data_size) {
      if (t.begin == expected) {
        CEMOE_FAIL(
            "{}: file truncated: tensor '{}' data_offsets [{}, {}] run past the end of "
            "the file (the data buffer holds only {} bytes)",
            f, t.name, t.begin, t.end, header.data_size);
      }
      if (t.begin > header.data_size) {
        CEMOE_FAIL(
            "{}: tensor '{}': data_offsets [{}, {}] out of range: the data buffer holds "
            "only {} bytes",
            f, t.name, t.begin, t.end, header.data_size);
      }
    }
    CEMOE_CHECK(t.begin >= expected,
                "{}: tensor '{}': data_offsets [{}, {}] overlap tensor '{}' at [{}, {}]", f, t.name,
                t.begin, t.end, previous ? previous->name : "", previous ? previous->begin : 0,
                previous ? previous->end : 0);
    CEMOE_CHECK(t.begin == expected,
                "{}: gap in the data buffer: bytes [{}, {}) before tensor '{}' belong to no tensor",
                f, expected, t.begin, t.name);
    expected = t.end;
    previous = &t;
  }
  CEMOE_CHECK(expected == header.data_size,
              "{}: the data buffer does not end at the end of the file: the tensors cover {} "
              "bytes but {} bytes follow the header ({} trailing bytes)",
              f, expected, header.data_size, header.data_size - expected);

  for (size_t i = 0; i < header.tensors.size(); ++i) {
    header.index.emplace(header.tensors[i].name, i);
  }
  return header;
}

uint64_t LayOutTensors(std::vector<TensorInfo>& tensors) {
  uint64_t offset = 0;
  for (TensorInfo& t : tensors) {
    const size_t elem = DtypeSize(t.dtype);
    const int64_t numel = CheckedNumel(t.shape, elem, fmt::format("tensor '{}'", t.name));
    t.begin = offset;
    t.end = offset + static_cast<uint64_t>(numel) * elem;
    CEMOE_CHECK(t.end >= t.begin, "tensor '{}': the data buffer would exceed 2^64 bytes", t.name);
    offset = t.end;
  }
  return offset;
}

std::string SerializeHeader(const std::vector<TensorInfo>& tensors,
                            const std::map<std::string, std::string>& metadata) {
  nlohmann::ordered_json json = nlohmann::ordered_json::object();
  if (!metadata.empty()) {
    auto& m = json["__metadata__"];
    m = nlohmann::ordered_json::object();
    for (const auto& [k, v] : metadata) m[k] = v;
  }
  uint64_t expected = 0;
  for (const TensorInfo& t : tensors) {
    CEMOE_CHECK(t.name != "__metadata__", "the tensor name \"__metadata__\" is reserved");
    CEMOE_CHECK(!json.contains(t.name), "duplicate tensor name '{}'", t.name);
    const size_t elem = DtypeSize(t.dtype);
    const int64_t numel = CheckedNumel(t.shape, elem, fmt::format("tensor '{}'", t.name));
    CEMOE_CHECK(t.begin == expected && t.end >= t.begin &&
                    t.end - t.begin == static_cast<uint64_t>(numel) * elem,
                "tensor '{}': data_offsets [{}, {}] do not continue the buffer at {} with {} "
                "bytes for dtype {} shape {}",
                t.name, t.begin, t.end, expected, static_cast<uint64_t>(numel) * elem,
                DtypeName(t.dtype), ShapeString(t.shape));
    expected = t.end;
    auto& e = json[t.name];
    e["dtype"] = DtypeName(t.dtype);
    e["shape"] = t.shape;
    e["data_offsets"] = {t.begin, t.end};
  }
  std::string text;
  try {
    text = json.dump();
  } catch (const nlohmann::json::exception& e) {
    CEMOE_FAIL("cannot serialize the safetensors header: {}", e.what());
  }
  text.append((8 - text.size() % 8) % 8, ' ');
  return text;
}

std::string EncodeHeaderLength(uint64_t header_size) {
  std::string out(8, '\0');
  for (int i = 0; i < 8; ++i) out[i] = static_cast<char>((header_size >> (8 * i)) & 0xff);
  return out;
}

ShardIndex ParseShardIndex(std::string_view text, const std::string& file_name) {
  const Json json = ParseStrictJson(text, file_name);
  CEMOE_CHECK(json.is_object(), "{}: must be a JSON object, got {}", file_name, json.type_name());
  ShardIndex index;
  auto meta_it = json.find("metadata");
  if (meta_it != json.end() && !meta_it->is_null()) {
    CEMOE_CHECK(meta_it->is_object(), "{}: \"metadata\" must be an object, got {}", file_name,
                meta_it->type_name());
    auto total_it = meta_it->find("total_size");
    if (total_it != meta_it->end()) {
      if (total_it->is_number_float()) {
        // Some writers store total_size as a float; accept it when it is an exact integer.
        const double d = total_it->get<double>();
        CEMOE_CHECK(d >= 0 && d < 18446744073709551616.0 &&
                        d == static_cast<double>(static_cast<uint64_t>(d)),
                    "{}: metadata.total_size must be a non-negative integer, got {}", file_name,
                    JsonExcerpt(*total_it));
        index.total_size = static_cast<uint64_t>(d);
      } else {
        index.total_size =
            NonNegativeInteger(*total_it, fmt::format("{}: metadata.total_size", file_name));
      }
    }
  }
  auto map_it = json.find("weight_map");
  CEMOE_CHECK(map_it != json.end(), "{}: missing \"weight_map\"", file_name);
  CEMOE_CHECK(map_it->is_object(), "{}: \"weight_map\" must be an object, got {}", file_name,
              map_it->type_name());
  for (const auto& [name, shard] : map_it->items()) {
    CEMOE_CHECK(shard.is_string(), "{}: weight_map['{}'] must be a shard file name, got {}",
                file_name, name, JsonExcerpt(shard));
    const auto& s = shard.get_ref<const std::string&>();
    CEMOE_CHECK(!s.empty() && s != "." && s != ".." && s.find('/') == std::string::npos &&
                    s.find('\\') == std::string::npos && s.find('\0') == std::string::npos,
                "{}: weight_map['{}'] = \"{}\" is not a plain file name in the checkpoint folder",
                file_name, name, s);
    index.weight_map.emplace(name, s);
  }
  return index;
}

std::string SerializeShardIndex(const ShardIndex& index) {
  Json json = Json::object();
  json["metadata"] = Json::object();
  if (index.total_size) json["metadata"]["total_size"] = *index.total_size;
  json["weight_map"] = Json::object();
  for (const auto& [name, shard] : index.weight_map) json["weight_map"][name] = shard;
  try {
    return json.dump(2) + "\n";
  } catch (const Json::exception& e) {
    CEMOE_FAIL("cannot serialize the shard index: {}", e.what());
  }
}

}  // namespace cemoe
