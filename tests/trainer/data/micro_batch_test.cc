// micro_batch_test.cc: trainer/data/micro_batch.h on a hand-worked micro-batch of two rows, one
// packed with two examples and one shorter (padded): tokens, targets, positions, segments and
// counts written out below.
#include "trainer/data/micro_batch.h"

#include <gtest/gtest.h>

#include <map>

namespace cemoe {
namespace {

using V = std::vector<int64_t>;

TEST(MicroBatch, PackedAndPaddedRowsByHand) {
  // Examples (tokens / loss mask):
  //   7: 10 11 12 13 / 0 0 1 1
  //   8: 20 21 22    / 0 1 1
  //   9: 30 31       / 0 1
  // Rows {7, 8} (7 tokens) and {9} (2 tokens): S = 7, pad id 0.
  const std::map<int64_t, std::pair<std::vector<int32_t>, std::vector<uint8_t>>> ex = {
      {7, {{10, 11, 12, 13}, {0, 0, 1, 1}}},
      {8, {{20, 21, 22}, {0, 1, 1}}},
      {9, {{30, 31}, {0, 1}}}};
  auto view = [&](int64_t i) {
    const auto& e = ex.at(i);
    return ExampleView{e.first.data(), e.second.data(), static_cast<int64_t>(e.first.size())};
  };
  const MicroBatch mb = BuildMicroBatch({{7, 8}, {9}}, view, /*pad_id=*/0);
  EXPECT_EQ(mb.rows, 2);
  EXPECT_EQ(mb.width, 7);
  EXPECT_EQ(mb.tokens, (V{10, 11, 12, 13, 20, 21, 22,  //
                          30, 31, 0, 0, 0, 0, 0}));
  // Row 0: t=0 predicts 11 (mask 0): -100; t=1 predicts 12 (mask 1); t=2 -> 13; t=3 is the last of
  // example 7: -100 (never 20, the next example); t=4 -> 21; t=5 -> 22; t=6 last: -100.
  // Row 1: t=0 -> 31; t=1 last; padding -100.
  EXPECT_EQ(mb.targets, (V{-100, 12, 13, -100, 21, 22, -100,  //
                           31, -100, -100, -100, -100, -100, -100}));
  EXPECT_EQ(mb.position_ids, (V{0, 1, 2, 3, 0, 1, 2,  //
                                0, 1, 0, 0, 0, 0, 0}));
  EXPECT_EQ(mb.segment_ids, (V{1, 1, 1, 1, 2, 2, 2,  //
                               1, 1, 0, 0, 0, 0, 0}));
  EXPECT_EQ(mb.num_loss_tokens, 5);
  EXPECT_EQ(mb.num_real_tokens, 9);

  // Another pad id only changes the padding tokens.
  const MicroBatch p = BuildMicroBatch({{9}, {7}}, view, 104);
  EXPECT_EQ(p.width, 4);
  EXPECT_EQ(p.tokens, (V{30, 31, 104, 104, 10, 11, 12, 13}));
  EXPECT_EQ(p.targets, (V{31, -100, -100, -100, -100, 12, 13, -100}));
  // One row: no padding at all.
  const MicroBatch one = BuildMicroBatch({{8}}, view, 0);
  EXPECT_EQ(one.width, 3);
  EXPECT_EQ(one.segment_ids, (V{1, 1, 1}));
}

}  // namespace
}  // namespace cemoe
