// content_hash.h: a 128-bit content hash for cache keys (the tokenized-data cache,
// trainer/data/token_cache.h): the bytes of the data files and tokenizer.json, and the settings
// that change the tokens.
//
// Two independent 64-bit lanes run over the input in 8-byte little-endian words: lane A is
// xxHash64's round (a = rotl(a + w * P2, 31) * P1), lane B a different multiply-rotate
// (b = rotl(b ^ (w * P3), 27) * P5 + P4) from different seeds. The tail (< 8 bytes) is padded
// with zeros and the total byte count is mixed into both lanes, then each goes through the
// MurmurHash3 finalizer (fmix64) and B also takes in A. Not cryptographic: it tells apart
// different inputs by accident, not by an adversary (the cache is not a security boundary).
// Reading is about memory speed (docs/data.md gives the measured rate).
//
// Fields are hashed with a length prefix (AddField) so that ("ab", "c") and ("a", "bc") differ.
// Thread-safety: a ContentHasher is a single-owner value; the free functions are stateless.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace cemoe {

struct Hash128 {
  uint64_t hi = 0;
  uint64_t lo = 0;
  // 32 lowercase hex digits, hi first.
  std::string Hex() const;
  bool operator==(const Hash128& o) const { return hi == o.hi && lo == o.lo; }
  bool operator!=(const Hash128& o) const { return !(*this == o); }
};

class ContentHasher {
 public:
  ContentHasher();
  // Raw bytes, in order; Update(a); Update(b) equals Update(a + b).
  void Update(const void* data, size_t size);
  void Update(std::string_view bytes) { Update(bytes.data(), bytes.size()); }
  // One field: its byte length (8 bytes) then its bytes.
  void AddField(std::string_view bytes);
  void AddField(int64_t value);
  // The hash of everything so far; the hasher can go on after it.
  Hash128 Finish() const;

 private:
  void Word(uint64_t w);
  uint64_t a_, b_;
  uint64_t total_ = 0;
  unsigned char tail_[8] = {};
  size_t tail_size_ = 0;
};

Hash128 HashBytes(std::string_view bytes);
// The hash of a file's bytes (read in 1 MiB chunks); `what` names the file in the error when it
// cannot be read.
Hash128 HashFile(const std::string& path, const std::string& what);

}  // namespace cemoe
