// synth_random.h: the pseudo-random numbers of `cemoe data synth`, identical on every platform
// and standard library: xoshiro256** (Blackman and Vigna) seeded through splitmix64, integer
// ranges by rejection (no modulo bias), and a Fisher-Yates shuffle of our own. The standard
// library's distributions and std::shuffle are implementation-defined and never used here.
//
// Streams: SynthRng(seed, "gsm8k/eval") mixes the 64-bit FNV-1a hash of the stream name into the
// seed, so every file and task family draws from its own stream and changing the size of one
// file leaves every other file's draws unchanged.
// Torch-free, header-only. Thread-safety: a SynthRng is a single-owner value.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string_view>
#include <utility>
#include <vector>

#include "model/check.h"

namespace cemoe::synth {

// splitmix64's step: advances `state` and returns the next output.
inline uint64_t SplitMix64(uint64_t& state) {
  state += 0x9E3779B97F4A7C15ULL;
  uint64_t z = state;
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
  return z ^ (z >> 31);
}

// 64-bit FNV-1a of `text`.
inline uint64_t Fnv1a64(std::string_view text) {
  uint64_t h = 0xCBF29CE484222325ULL;
  for (const char c : text) {
    h ^= static_cast<unsigned char>(c);
    h *= 0x100000001B3ULL;
  }
  return h;
}

class SynthRng {
 public:
  SynthRng(uint64_t seed, std::string_view stream) {
    uint64_t sm = seed ^ Fnv1a64(stream);
    for (uint64_t& word : s_) word = SplitMix64(sm);
  }

  // A generator in the raw xoshiro256** state {s0, s1, s2, s3} (not all zero), for tests against
  // the reference implementation's published outputs.
  static SynthRng FromState(uint64_t s0, uint64_t s1, uint64_t s2, uint64_t s3) {
    SynthRng rng(0, "");
    rng.s_[0] = s0;
    rng.s_[1] = s1;
    rng.s_[2] = s2;
    rng.s_[3] = s3;
    return rng;
  }

  // xoshiro256**.
  uint64_t Next() {
    const uint64_t result = Rotl(s_[1] * 5, 7) * 9;
    const uint64_t t = s_[1] << 17;
    s_[2] ^= s_[0];
    s_[3] ^= s_[1];
    s_[1] ^= s_[2];
    s_[0] ^= s_[3];
    s_[2] ^= t;
    s_[3] = Rotl(s_[3], 45);
    return result;
  }

  // Uniform in [0, n); n >= 1.
  uint64_t Below(uint64_t n) {
    CEMOE_CHECK(n >= 1, "SynthRng::Below: n must be >= 1, got {}", n);
    const uint64_t limit = UINT64_MAX - UINT64_MAX % n;  // accept r < limit: a multiple of n
    uint64_t r = Next();
    while (r >= limit) r = Next();
    return r % n;
  }

  // Uniform in [lo, hi]; lo <= hi.
  int64_t Range(int64_t lo, int64_t hi) {
    CEMOE_CHECK(lo <= hi, "SynthRng::Range: empty range [{}, {}]", lo, hi);
    return lo + static_cast<int64_t>(Below(static_cast<uint64_t>(hi - lo) + 1));
  }

  // True with probability num / den.
  bool Chance(uint64_t num, uint64_t den) { return Below(den) < num; }

  template <typename T>
  const T& Pick(const std::vector<T>& items) {
    CEMOE_CHECK(!items.empty(), "SynthRng::Pick: empty list");
    return items[Below(items.size())];
  }

  // Fisher-Yates, from the back.
  template <typename T>
  void Shuffle(std::vector<T>& items) {
    for (size_t i = items.size(); i > 1; --i) {
      const size_t j = Below(i);
      std::swap(items[i - 1], items[j]);
    }
  }

  // `k` distinct elements of `items` in random order; k <= items.size().
  template <typename T>
  std::vector<T> Sample(const std::vector<T>& items, size_t k) {
    CEMOE_CHECK(k <= items.size(), "SynthRng::Sample: {} of {} items", k, items.size());
    std::vector<T> pool = items;
    std::vector<T> out;
    for (size_t i = 0; i < k; ++i) {
      const size_t j = i + Below(pool.size() - i);
      std::swap(pool[i], pool[j]);
      out.push_back(pool[i]);
    }
    return out;
  }

 private:
  static uint64_t Rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }
  uint64_t s_[4];
};

}  // namespace cemoe::synth
