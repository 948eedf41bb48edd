#include "trainer/data/token_cache_format.h"

#include <cstring>
#include <vector>

#include "model/check.h"

namespace cemoe {
namespace {

static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__, "the cache is read little-endian");

template <typename T>
void Put(std::string& out, size_t at, T value) {
  std::memcpy(&out[at], &value, sizeof(T));
}

template <typename T>
T Get(const unsigned char* data, size_t at) {
  T value;
  std::memcpy(&value, data + at, sizeof(T));
  return value;
}

}  // namespace

std::string EncodeTokenCacheHeader(const TokenCacheHeader& h) {
  std::string out(kTokenCacheHeaderBytes, '\0');
  std::memcpy(&out[0], kTokenCacheMagic, 8);
  Put<uint32_t>(out, 8, kTokenCacheVersion);
  Put<uint32_t>(out, 12, static_cast<uint32_t>(kTokenCacheHeaderBytes));
  Put<uint64_t>(out, 16, h.key.hi);
  Put<uint64_t>(out, 24, h.key.lo);
  const TokenCacheCounts& c = h.counts;
  const int64_t fields[] = {c.examples, c.tokens, c.loss_tokens,   c.truncated,
                            c.dropped,  c.lines,  c.skipped_lines, h.max_length};
  for (size_t i = 0; i < 8; ++i) Put<int64_t>(out, 32 + 8 * i, fields[i]);
  return out;
}

bool TokenCacheLayoutOf(const TokenCacheCounts& c, TokenCacheLayout* layout) {
  // Bounds far below overflow: 2^50 examples or tokens would be a petabyte file.
  constexpr int64_t kMax = int64_t{1} << 50;
  if (c.examples < 0 || c.tokens < 0 || c.examples >= kMax || c.tokens >= kMax) return false;
  layout->offsets_at = kTokenCacheHeaderBytes;
  layout->tokens_at = layout->offsets_at + 8 * static_cast<uint64_t>(c.examples + 1);
  layout->mask_at = layout->tokens_at + 4 * static_cast<uint64_t>(c.tokens);
  layout->file_size = layout->mask_at + static_cast<uint64_t>(c.tokens);
  return true;
}

std::string CheckTokenCacheBytes(const unsigned char* data, size_t size, TokenCacheHeader* header) {
  if (size < kTokenCacheHeaderBytes) {
    return fmt::format("{} bytes, shorter than the {}-byte header", size, kTokenCacheHeaderBytes);
  }
  if (std::memcmp(data, kTokenCacheMagic, 8) != 0) return "not a cemoe token cache (bad magic)";
  const uint32_t version = Get<uint32_t>(data, 8);
  if (version != kTokenCacheVersion) {
    return fmt::format("format version {}, expected {}", version, kTokenCacheVersion);
  }
  if (Get<uint32_t>(data, 12) != kTokenCacheHeaderBytes) return "bad header size";
  TokenCacheHeader h;
  h.key.hi = Get<uint64_t>(data, 16);
  h.key.lo = Get<uint64_t>(data, 24);
  TokenCacheCounts& c = h.counts;
  int64_t* fields[] = {&c.examples, &c.tokens, &c.loss_tokens,   &c.truncated,
                       &c.dropped,  &c.lines,  &c.skipped_lines, &h.max_length};
  for (size_t i = 0; i < 8; ++i) *fields[i] = Get<int64_t>(data, 32 + 8 * i);
  for (size_t i = 0; i < 8; ++i) {
    if (*fields[i] < 0) return fmt::format("negative count at header byte {}", 32 + 8 * i);
  }
  if (c.loss_tokens > c.tokens || c.truncated > c.examples) return "inconsistent counts";
  TokenCacheLayout layout;
  if (!TokenCacheLayoutOf(c, &layout)) return "counts out of range";
  if (layout.file_size != size) {
    return fmt::format("{} bytes, but the header's {} examples and {} tokens need {} bytes", size,
                       c.examples, c.tokens, layout.file_size);
  }
  int64_t prev = Get<int64_t>(data, layout.offsets_at);
  if (prev != 0) return "offsets[0] is not 0";
  for (int64_t i = 1; i <= c.examples; ++i) {
    const int64_t o = Get<int64_t>(data, layout.offsets_at + 8 * static_cast<uint64_t>(i));
    if (o <= prev || o - prev > h.max_length) {
      return fmt::format("offsets[{}] = {} after {}: not a valid example length", i, o, prev);
    }
    prev = o;
  }
  if (prev != c.tokens) {
    return fmt::format("offsets end at {}, but the header says {} tokens", prev, c.tokens);
  }
  *header = h;
  return "";
}

}  // namespace cemoe
