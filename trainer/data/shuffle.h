// shuffle.h: the deterministic shuffle of the training examples, the same on every machine and
// standard library (std::shuffle and std::uniform_int_distribution are not: their algorithms are
// left to the implementation).
//
//   SplitMix64       Steele, Lea and Flood's 64-bit generator (state += 0x9E3779B97F4A7C15,
//                    then the variant-13 mix), as in Java's SplittableRandom and Vigna's
//                    reference splitmix64.c.
//   BoundedUniform   an unbiased integer in [0, range): draws below 2^64 mod range are rejected,
//                    then x mod range.
//   EpochPermutation Fisher-Yates (Durstenfeld: i from n-1 down to 1 swaps i with
//                    BoundedUniform(i + 1)) of 0..n-1, from a generator seeded by (seed, epoch):
//                    SplitMix64(SplitMix64(seed).Next() ^ epoch).Next().
// Thread-safety: SplitMix64 is a single-owner value; the functions are pure.
#pragma once

#include <cstdint>
#include <vector>

namespace cemoe {

class SplitMix64 {
 public:
  explicit SplitMix64(uint64_t seed) : state_(seed) {}
  uint64_t Next();

 private:
  uint64_t state_;
};

// range >= 1.
uint64_t BoundedUniform(SplitMix64& rng, uint64_t range);

// The seed of (seed, epoch)'s generator.
uint64_t EpochSeed(uint64_t seed, int64_t epoch);

// A permutation of 0..n-1 for (seed, epoch).
std::vector<int64_t> EpochPermutation(int64_t n, uint64_t seed, int64_t epoch);

}  // namespace cemoe
