#include "trainer/data/content_hash.h"

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <memory>
#include <system_error>
#include <vector>

#include "model/check.h"

namespace cemoe {
namespace {

static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__, "words are read little-endian");

constexpr uint64_t kP1 = 0x9E3779B185EBCA87ULL;  // xxHash64 primes
constexpr uint64_t kP2 = 0xC2B2AE3D27D4EB4FULL;
constexpr uint64_t kP3 = 0x165667B19E3779F9ULL;
constexpr uint64_t kP4 = 0x85EBCA77C2B2AE63ULL;
constexpr uint64_t kP5 = 0x27D4EB2F165667C5ULL;

inline uint64_t Rotl(uint64_t x, int r) { return (x << r) | (x >> (64 - r)); }

// MurmurHash3's 64-bit finalizer.
inline uint64_t Fmix64(uint64_t k) {
  k ^= k >> 33;
  k *= 0xFF51AFD7ED558CCDULL;
  k ^= k >> 33;
  k *= 0xC4CEB9FE1A85EC53ULL;
  k ^= k >> 33;
  return k;
}

}  // namespace

std::string Hash128::Hex() const { return fmt::format("{:016x}{:016x}", hi, lo); }

ContentHasher::ContentHasher() : a_(0x243F6A8885A308D3ULL), b_(0x13198A2E03707344ULL) {}

inline void ContentHasher::Word(uint64_t w) {
  a_ = Rotl(a_ + w * kP2, 31) * kP1;
  b_ = Rotl(b_ ^ (w * kP3), 27) * kP5 + kP4;
}

void ContentHasher::Update(const void* data, size_t size) {
  const unsigned char* p = static_cast<const unsigned char*>(data);
  total_ += size;
  if (tail_size_ > 0) {
    const size_t take = std::min(size, 8 - tail_size_);
    std::memcpy(tail_ + tail_size_, p, take);
    tail_size_ += take;
    p += take;
    size -= take;
    if (tail_size_ < 8) return;
    uint64_t w;
    std::memcpy(&w, tail_, 8);
    Word(w);
    tail_size_ = 0;
  }
  while (size >= 8) {
    uint64_t w;
    std::memcpy(&w, p, 8);
    Word(w);
    p += 8;
    size -= 8;
  }
  std::memcpy(tail_, p, size);
  tail_size_ = size;
}

void ContentHasher::AddField(std::string_view bytes) {
  AddField(static_cast<int64_t>(bytes.size()));
  Update(bytes);
}

void ContentHasher::AddField(int64_t value) {
  const uint64_t v = static_cast<uint64_t>(value);
  Update(&v, sizeof(v));
}

Hash128 ContentHasher::Finish() const {
  uint64_t a = a_, b = b_;
  if (tail_size_ > 0) {
    uint64_t w = 0;
    std::memcpy(&w, tail_, tail_size_);
    a = Rotl(a + w * kP2, 31) * kP1;
    b = Rotl(b ^ (w * kP3), 27) * kP5 + kP4;
  }
  Hash128 h;
  h.hi = Fmix64(a ^ (total_ * kP1));
  h.lo = Fmix64(b ^ Rotl(total_ * kP4, 17) ^ h.hi);
  return h;
}

Hash128 HashBytes(std::string_view bytes) {
  ContentHasher h;
  h.Update(bytes);
  return h.Finish();
}

Hash128 HashFile(const std::string& path, const std::string& what) {
  std::unique_ptr<FILE, int (*)(FILE*)> f(std::fopen(path.c_str(), "rb"), &std::fclose);
  CEMOE_CHECK(f != nullptr, "{}: cannot open '{}': {}", what, path,
              std::generic_category().message(errno));
  ContentHasher h;
  std::vector<char> buf(size_t{1} << 20);
  while (true) {
    const size_t n = std::fread(buf.data(), 1, buf.size(), f.get());
    if (n > 0) h.Update(buf.data(), n);
    if (n < buf.size()) {
      CEMOE_CHECK(!std::ferror(f.get()), "{}: cannot read '{}'", what, path);
      break;
    }
  }
  return h.Finish();
}

}  // namespace cemoe
