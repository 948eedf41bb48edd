// shuffle_test.cc: trainer/data/shuffle.h against values pinned from an independent Python
// implementation of the same definitions (splitmix64, rejection-sampled bounded draws,
// Durstenfeld's Fisher-Yates), and SplitMix64 against Vigna's reference splitmix64.c outputs.
#include "trainer/data/shuffle.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <numeric>

namespace cemoe {
namespace {

TEST(Shuffle, SplitMix64MatchesTheReference) {
  // splitmix64.c with x = 0: the first three outputs.
  SplitMix64 rng(0);
  EXPECT_EQ(rng.Next(), 0xE220A8397B1DCDAFULL);
  EXPECT_EQ(rng.Next(), 0x6E789E6AA1B965F4ULL);
  EXPECT_EQ(rng.Next(), 0x06C45D188009454FULL);
}

TEST(Shuffle, PinnedPermutations) {
  // From the Python reference (see the file comment):
  //   perm(10, seed=42, epoch=0) = [6, 1, 8, 5, 2, 7, 4, 3, 9, 0]
  //   perm(10, seed=42, epoch=1) = [9, 0, 5, 3, 7, 2, 8, 1, 6, 4]
  //   perm(10, seed=7,  epoch=0) = [2, 0, 5, 7, 3, 9, 8, 1, 4, 6]
  EXPECT_EQ(EpochPermutation(10, 42, 0), (std::vector<int64_t>{6, 1, 8, 5, 2, 7, 4, 3, 9, 0}));
  EXPECT_EQ(EpochPermutation(10, 42, 1), (std::vector<int64_t>{9, 0, 5, 3, 7, 2, 8, 1, 6, 4}));
  EXPECT_EQ(EpochPermutation(10, 7, 0), (std::vector<int64_t>{2, 0, 5, 7, 3, 9, 8, 1, 4, 6}));
  EXPECT_TRUE(EpochPermutation(0, 1, 0).empty());
  EXPECT_EQ(EpochPermutation(1, 1, 0), (std::vector<int64_t>{0}));
}

TEST(Shuffle, DeterministicPermutationsThatDifferAcrossEpochsAndSeeds) {
  const int64_t n = 1000;
  const std::vector<int64_t> a = EpochPermutation(n, 3, 0);
  EXPECT_EQ(EpochPermutation(n, 3, 0), a);
  std::vector<int64_t> sorted = a;
  std::sort(sorted.begin(), sorted.end());
  std::vector<int64_t> iota(n);
  std::iota(iota.begin(), iota.end(), int64_t{0});
  EXPECT_EQ(sorted, iota);
  EXPECT_NE(a, iota);
  for (int64_t e = 1; e < 5; ++e) EXPECT_NE(EpochPermutation(n, 3, e), a) << e;
  EXPECT_NE(EpochPermutation(n, 4, 0), a);
}

TEST(Shuffle, BoundedUniformIsInRangeAndRoughlyUniform) {
  SplitMix64 rng(123);
  std::vector<int64_t> counts(3, 0);
  const int64_t draws = 30000;
  for (int64_t i = 0; i < draws; ++i) {
    const uint64_t x = BoundedUniform(rng, 3);
    ASSERT_LT(x, 3u);
    ++counts[x];
  }
  // Each bucket expects 10000 with a standard deviation of about 82: 6 sigma bounds.
  for (int64_t c : counts) EXPECT_NEAR(c, 10000, 500);
  EXPECT_EQ(BoundedUniform(rng, 1), 0u);
  // A range just above 2^63 rejects about half of the draws and still lands in range.
  const uint64_t big = (uint64_t{1} << 63) + 12345;
  for (int i = 0; i < 100; ++i) ASSERT_LT(BoundedUniform(rng, big), big);
}

TEST(Shuffle, FirstPositionIsUniformOverManySeeds) {
  // Which example comes first, over 4000 seeds of a 4-element shuffle: about 1000 each.
  std::vector<int64_t> first(4, 0);
  for (uint64_t seed = 0; seed < 4000; ++seed) ++first[EpochPermutation(4, seed, 0)[0]];
  for (int64_t c : first) EXPECT_NEAR(c, 1000, 200);
}

}  // namespace
}  // namespace cemoe
