// synth_random_test.cc: the synthetic-data PRNG against reference values: FNV-1a and splitmix64
// published outputs, xoshiro256**'s outputs from the reference C code's state {1, 2, 3, 4}, the
// seeded stream against an independent Python transcription, and the range, shuffle and sample
// helpers' contracts.
#include "trainer/synth/synth_random.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <numeric>
#include <set>
#include <vector>

namespace cemoe::synth {
namespace {

TEST(SynthRandomTest, HashAndSeedingMatchPublishedValues) {
  EXPECT_EQ(Fnv1a64(""), 0xCBF29CE484222325ULL);
  EXPECT_EQ(Fnv1a64("a"), 0xAF63DC4C8601EC8CULL);
  uint64_t state = 0;
  EXPECT_EQ(SplitMix64(state), 0xE220A8397B1DCDAFULL);
}

TEST(SynthRandomTest, XoshiroMatchesReferenceOutputs) {
  // xoshiro256starstar.c with s = {1, 2, 3, 4}: 11520, 0, 1509978240, 1215971899390074240.
  SynthRng rng = SynthRng::FromState(1, 2, 3, 4);
  EXPECT_EQ(rng.Next(), 11520ULL);
  EXPECT_EQ(rng.Next(), 0ULL);
  EXPECT_EQ(rng.Next(), 1509978240ULL);
  EXPECT_EQ(rng.Next(), 1215971899390074240ULL);
}

TEST(SynthRandomTest, SeededStreamsMatchPythonTranscription) {
  SynthRng a(0, "");
  EXPECT_EQ(a.Next(), 0x21382EF092ED7068ULL);
  EXPECT_EQ(a.Next(), 0x5B54C052757ADF62ULL);
  SynthRng b(42, "gsm8k/eval");
  EXPECT_EQ(b.Next(), 0xC206C6C58255B03CULL);
  EXPECT_EQ(b.Next(), 0xEA266D0C034B0499ULL);
  EXPECT_EQ(b.Next(), 0xCE1711D1A703707BULL);
  // Another stream of the same seed differs.
  SynthRng c(42, "gsm8k/sft");
  EXPECT_NE(c.Next(), 0xC206C6C58255B03CULL);
}

TEST(SynthRandomTest, RangesShufflesAndSamples) {
  SynthRng rng(7, "test");
  std::vector<int> seen(6, 0);
  for (int i = 0; i < 6000; ++i) {
    const int64_t v = rng.Range(-2, 3);
    ASSERT_GE(v, -2);
    ASSERT_LE(v, 3);
    ++seen[static_cast<size_t>(v + 2)];
  }
  // Each of 6 values expected 1000 times; 5 standard deviations (sqrt(6000/6*5/6) = 28.9).
  for (const int n : seen) EXPECT_NEAR(n, 1000, 145);
  std::vector<int> items(20);
  std::iota(items.begin(), items.end(), 0);
  std::vector<int> shuffled = items;
  rng.Shuffle(shuffled);
  EXPECT_NE(shuffled, items);
  std::vector<int> sorted = shuffled;
  std::sort(sorted.begin(), sorted.end());
  EXPECT_EQ(sorted, items);
  const std::vector<int> sample = rng.Sample(items, 7);
  EXPECT_EQ(std::set<int>(sample.begin(), sample.end()).size(), 7u);
  EXPECT_THROW(rng.Sample(items, 21), Error);
  EXPECT_THROW(rng.Below(0), Error);
}

}  // namespace
}  // namespace cemoe::synth
