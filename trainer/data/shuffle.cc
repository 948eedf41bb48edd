#include "trainer/data/shuffle.h"

#include <numeric>
#include <utility>

#include "model/check.h"

namespace cemoe {

uint64_t SplitMix64::Next() {
  uint64_t z = (state_ += 0x9E3779B97F4A7C15ULL);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
  return z ^ (z >> 31);
}

uint64_t BoundedUniform(SplitMix64& rng, uint64_t range) {
  CEMOE_CHECK(range >= 1, "BoundedUniform needs a range of at least 1");
  const uint64_t threshold = (0 - range) % range;  // 2^64 mod range
  while (true) {
    const uint64_t x = rng.Next();
    if (x >= threshold) return x % range;
  }
}

uint64_t EpochSeed(uint64_t seed, int64_t epoch) {
  SplitMix64 base(seed);
  SplitMix64 mixed(base.Next() ^ static_cast<uint64_t>(epoch));
  return mixed.Next();
}

std::vector<int64_t> EpochPermutation(int64_t n, uint64_t seed, int64_t epoch) {
  CEMOE_CHECK(n >= 0, "cannot permute {} examples", n);
  std::vector<int64_t> p(static_cast<size_t>(n));
  std::iota(p.begin(), p.end(), int64_t{0});
  SplitMix64 rng(EpochSeed(seed, epoch));
  for (int64_t i = n - 1; i >= 1; --i) {
    const int64_t j = static_cast<int64_t>(BoundedUniform(rng, static_cast<uint64_t>(i + 1)));
    std::swap(p[i], p[j]);
  }
  return p;
}

}  // namespace cemoe
