// safetensors_header_fuzz.cc: libFuzzer harness for cemoe::ParseHeader, the gate every
// safetensors file passes before LibTorch touches its bytes, and cemoe::ParseShardIndex, the
// reader of model.safetensors.index.json. The input is a whole file image, and the same bytes are
// also given to ParseShardIndex as index.json text (seeds of either kind reach both: a file image
// is rejected by the JSON parser at its first byte, an index text by the header length check).
//
// Properties checked on every input:
//  1. ParseHeader either returns or throws cemoe::Error; any other exception (a leaked nlohmann
//     exception, std::bad_alloc, ...) escapes and libFuzzer reports it as a crash. ASan and UBSan
//     catch out-of-bounds reads and integer overflow.
//  2. An accepted header satisfies the rules, re-checked here independently: the JSON bytes are
//     valid UTF-8 without NUL and end with '}' plus whitespace; entries in offset order tile
//     [0, data_size) exactly, each holds numel * elem size bytes, and data_start + data_size is
//     the input size.
//  3. Round trip: SerializeHeader of the accepted entries and metadata, followed by the same data
//     buffer, parses again to the same entries and metadata.
//  4. ParseShardIndex either returns or throws cemoe::Error; every shard name it accepts is a
//     plain, non-empty file name (no '/', '\\', NUL, "." or "..").
// Build and run with launch/fuzz.sh. Thread-safety: libFuzzer calls this from one thread.
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>

#include "model/check.h"
#include "model/safetensors_format.h"

namespace {

[[noreturn]] void Die(const char* what) {
  std::fprintf(stderr, "safetensors_header_fuzz: property violated: %s\n", what);
  std::abort();
}

void Require(bool ok, const char* what) {
  if (!ok) Die(what);
}

// Strict UTF-8 (no overlongs, no surrogates, at most U+10FFFF) and no NUL byte.
bool ValidUtf8WithoutNul(const uint8_t* p, size_t n) {
  size_t i = 0;
  while (i < n) {
    const uint8_t c = p[i];
    if (c == 0) return false;
    if (c < 0x80) {
      ++i;
      continue;
    }
    size_t len = 0;
    uint32_t cp = 0;
    if ((c & 0xe0) == 0xc0) {
      len = 2;
      cp = c & 0x1f;
    } else if ((c & 0xf0) == 0xe0) {
      len = 3;
      cp = c & 0x0f;
    } else if ((c & 0xf8) == 0xf0) {
      len = 4;
      cp = c & 0x07;
    } else {
      return false;
    }
    if (i + len > n) return false;
    for (size_t k = 1; k < len; ++k) {
      if ((p[i + k] & 0xc0) != 0x80) return false;
      cp = (cp << 6) | (p[i + k] & 0x3f);
    }
    const uint32_t min = len == 2 ? 0x80 : len == 3 ? 0x800 : 0x10000;
    if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff)) return false;
    i += len;
  }
  return true;
}

bool SameEntries(const cemoe::SafetensorsHeader& a, const cemoe::SafetensorsHeader& b) {
  if (a.tensors.size() != b.tensors.size() || a.metadata != b.metadata) return false;
  for (size_t i = 0; i < a.tensors.size(); ++i) {
    const auto& x = a.tensors[i];
    const auto& y = b.tensors[i];
    if (x.name != y.name || x.dtype != y.dtype || x.shape != y.shape || x.begin != y.begin ||
        x.end != y.end) {
      return false;
    }
  }
  return true;
}

// Property 4.
void FuzzShardIndex(const uint8_t* data, size_t size) {
  cemoe::ShardIndex index;
  try {
    index = cemoe::ParseShardIndex(std::string_view(reinterpret_cast<const char*>(data), size),
                                   "fuzz.index.json");
  } catch (const cemoe::Error&) {
    return;
  }
  for (const auto& [name, shard] : index.weight_map) {
    Require(!shard.empty() && shard != "." && shard != ".." &&
                shard.find_first_of(std::string("/\\\0", 3)) == std::string::npos,
            "accepted shard names are plain file names");
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  FuzzShardIndex(data, size);
  cemoe::SafetensorsHeader header;
  try {
    header = cemoe::ParseHeader(data, size, "fuzz.safetensors");
  } catch (const cemoe::Error&) {
    return 0;  // rejected with the project's error type: fine
  }

  // Property 2: the accepted header text and layout.
  const uint8_t* text = data + 8;
  const size_t text_size = static_cast<size_t>(header.header_size);
  Require(ValidUtf8WithoutNul(text, text_size), "header is UTF-8 without NUL");
  size_t last = text_size;
  while (last > 0 && (text[last - 1] == ' ' || text[last - 1] == '\n' || text[last - 1] == '\r' ||
                      text[last - 1] == '\t')) {
    --last;
  }
  Require(text_size > 0 && text[0] == '{' && last > 0 && text[last - 1] == '}',
          "header is '{' ... '}' plus trailing whitespace");
  Require(header.data_start == 8 + header.header_size, "data_start == 8 + header_size");
  Require(header.data_start + header.data_size == size, "data buffer ends at end of input");
  uint64_t expected = 0;
  for (size_t i = 0; i < header.tensors.size(); ++i) {
    const cemoe::TensorInfo& t = header.tensors[i];
    Require(t.begin == expected, "entries tile the buffer");
    uint64_t numel = 1;
    for (int64_t d : t.shape) {
      Require(d >= 0, "non-negative dimension");
      Require(!__builtin_mul_overflow(numel, static_cast<uint64_t>(d), &numel), "numel fits");
    }
    Require(t.end - t.begin == numel * cemoe::DtypeSize(t.dtype), "byte count matches shape");
    Require(header.Find(t.name) == &t, "index finds the entry");
    expected = t.end;
  }
  Require(expected == header.data_size, "entries cover the buffer");
  Require(header.index.size() == header.tensors.size(), "names are unique");

  // Property 3: serialize and parse again. Neither step may throw for an accepted header.
  std::string image;
  try {
    const std::string json = cemoe::SerializeHeader(header.tensors, header.metadata);
    image = cemoe::EncodeHeaderLength(json.size()) + json;
    image.append(reinterpret_cast<const char*>(data + header.data_start), header.data_size);
    const cemoe::SafetensorsHeader again = cemoe::ParseHeader(
        reinterpret_cast<const uint8_t*>(image.data()), image.size(), "fuzz-roundtrip");
    Require(SameEntries(header, again), "round trip keeps entries and metadata");
    Require(again.header_size % 8 == 0, "serialized header padded to 8");
  } catch (const cemoe::Error& e) {
    std::fprintf(stderr, "round trip threw: %s\n", e.what());
    Die("round trip of an accepted header must not throw");
  }
  return 0;
}
