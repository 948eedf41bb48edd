// batch_plan_test.cc: trainer/data/batch_plan.h: next-fit packing on a hand-worked order, the
// invariants of an epoch (every example exactly once, rows within max_length, a new row only when
// the next example does not fit), steps and the dropped partial step, the data-parallel split
// (the ranks' rows together are the single-rank rows, no overlap) and micro-batches, resume by
// step (LocateStep), and the settings check.
#include "trainer/data/batch_plan.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <set>

#include "model/check.h"
#include "trainer/data/shuffle.h"

namespace cemoe {
namespace {

using ::testing::HasSubstr;

TEST(BatchPlan, NextFitPackingByHand) {
  // lengths: 0:5 1:3 2:8 3:2 4:6 5:1, max 10, order 0..5:
  // [0 1] (5+3=8, +8>10) [2 3] (8+2=10) [4 5] (6+1=7).
  const std::vector<int64_t> lengths = {5, 3, 8, 2, 6, 1};
  const std::vector<int64_t> order = {0, 1, 2, 3, 4, 5};
  EXPECT_EQ(PackRows(order, lengths, 10, true), (std::vector<Row>{{0, 1}, {2, 3}, {4, 5}}));
  // Order 2 0 4 1 3 5: [2] (8+5>10) [0] (5+6>10) [4 1] (6+3=9, +2>10) [3 5].
  EXPECT_EQ(PackRows({2, 0, 4, 1, 3, 5}, lengths, 10, true),
            (std::vector<Row>{{2}, {0}, {4, 1}, {3, 5}}));
  // Without packing: one example per row.
  EXPECT_EQ(PackRows({2, 0, 4}, lengths, 10, false), (std::vector<Row>{{2}, {0}, {4}}));
  EXPECT_THROW(PackRows({0}, {11}, 10, true), Error);
  EXPECT_THROW(PackRows({0}, {0}, 10, true), Error);
}

// Lengths 1..max of a fixed pseudo-random sequence.
std::vector<int64_t> SomeLengths(int64_t n, int64_t max_length) {
  SplitMix64 rng(99);
  std::vector<int64_t> out;
  for (int64_t i = 0; i < n; ++i) out.push_back(1 + int64_t(BoundedUniform(rng, max_length)));
  return out;
}

TEST(BatchPlan, EpochInvariants) {
  const std::vector<int64_t> lengths = SomeLengths(500, 64);
  BatchPlanOptions o;
  o.max_length = 64;
  o.seed = 5;
  o.global_batch = 8;
  for (bool packing : {true, false}) {
    o.packing = packing;
    for (int64_t epoch = 0; epoch < 3; ++epoch) {
      const EpochPlan plan(lengths, o, epoch);
      std::vector<int64_t> seen;
      for (size_t r = 0; r < plan.rows().size(); ++r) {
        const Row& row = plan.rows()[r];
        ASSERT_FALSE(row.empty());
        int64_t used = 0;
        for (int64_t i : row) used += lengths[i];
        EXPECT_LE(used, o.max_length);
        if (!packing) {
          EXPECT_EQ(row.size(), 1u);
        }
        // Next-fit: the next row's first example did not fit this row.
        if (packing && r + 1 < plan.rows().size()) {
          EXPECT_GT(used + lengths[plan.rows()[r + 1][0]], o.max_length);
        }
        seen.insert(seen.end(), row.begin(), row.end());
      }
      // Rows in order are the epoch's permutation: every example exactly once.
      EXPECT_EQ(seen, EpochPermutation(500, o.seed, epoch));
      EXPECT_EQ(plan.num_steps(), plan.num_rows() / 8);
      EXPECT_EQ(plan.dropped_rows(), plan.num_rows() % 8);
    }
    EXPECT_NE(EpochPlan(lengths, o, 0).rows(), EpochPlan(lengths, o, 1).rows());
  }
  o.packing = false;
  EXPECT_EQ(EpochPlan(lengths, o, 0).num_rows(), 500);
  EXPECT_EQ(EpochPlan(lengths, o, 0).num_steps(), 62);
  EXPECT_EQ(EpochPlan(lengths, o, 0).dropped_rows(), 4);
}

TEST(BatchPlan, DataParallelSplitCoversEachStepOnce) {
  const std::vector<int64_t> lengths = SomeLengths(300, 32);
  BatchPlanOptions single;
  single.max_length = 32;
  single.seed = 11;
  single.global_batch = 12;
  single.micro_batch = 1;
  single.dp = 1;
  const EpochPlan ref(lengths, single, 2);
  ASSERT_GT(ref.num_steps(), 3);
  for (int64_t dp : {1, 2, 3, 6}) {
    for (int64_t micro : {1, 2}) {
      if (12 % (dp * micro) != 0) continue;
      BatchPlanOptions o = single;
      o.dp = dp;
      o.micro_batch = micro;
      const EpochPlan plan(lengths, o, 2);
      ASSERT_EQ(plan.num_steps(), ref.num_steps());
      for (int64_t s = 0; s < plan.num_steps(); ++s) {
        std::vector<Row> all;
        for (int64_t d = 0; d < dp; ++d) {
          const auto mbs = plan.StepMicroBatches(s, d);
          EXPECT_EQ(static_cast<int64_t>(mbs.size()), 12 / (dp * micro));
          for (const auto& mb : mbs) {
            EXPECT_EQ(static_cast<int64_t>(mb.size()), micro);
            all.insert(all.end(), mb.begin(), mb.end());
          }
          // The pure function gives the same as the plan.
          EXPECT_EQ(StepMicroBatches(lengths, o, 2, s, d), mbs);
        }
        // Ranks in order, concatenated = the single rank's rows of the step: same rows, no
        // overlap, none missing.
        const auto one = ref.StepMicroBatches(s, 0);
        std::vector<Row> want;
        for (const auto& mb : one) want.insert(want.end(), mb.begin(), mb.end());
        EXPECT_EQ(all, want) << "dp " << dp << " micro " << micro << " step " << s;
        EXPECT_EQ(want,
                  std::vector<Row>(ref.rows().begin() + s * 12, ref.rows().begin() + (s + 1) * 12));
      }
    }
  }
  // Across all steps no example is seen twice.
  std::set<int64_t> examples;
  int64_t count = 0;
  for (int64_t s = 0; s < ref.num_steps(); ++s) {
    for (const auto& mb : ref.StepMicroBatches(s, 0)) {
      for (const Row& row : mb) {
        for (int64_t i : row) {
          examples.insert(i);
          ++count;
        }
      }
    }
  }
  EXPECT_EQ(static_cast<int64_t>(examples.size()), count);
  EXPECT_THROW(ref.StepMicroBatches(ref.num_steps(), 0), Error);
  EXPECT_THROW(ref.StepMicroBatches(0, 1), Error);
}

TEST(BatchPlan, HandWorkedStepsAndRanks) {
  // 6 examples of one token each without packing: rows = the permutation of seed 42 over 6,
  // global batch 4 -> 1 step (2 rows dropped); dp 2 -> rank 0 rows 0-1, rank 1 rows 2-3.
  const std::vector<int64_t> lengths(6, 1);
  BatchPlanOptions o;
  o.max_length = 4;
  o.packing = false;
  o.seed = 42;
  o.global_batch = 4;
  o.dp = 2;
  const std::vector<int64_t> p = EpochPermutation(6, 42, 0);
  const EpochPlan plan(lengths, o, 0);
  EXPECT_EQ(plan.num_steps(), 1);
  EXPECT_EQ(plan.dropped_rows(), 2);
  EXPECT_EQ(plan.StepMicroBatches(0, 0), (std::vector<std::vector<Row>>{{{p[0]}}, {{p[1]}}}));
  EXPECT_EQ(plan.StepMicroBatches(0, 1), (std::vector<std::vector<Row>>{{{p[2]}}, {{p[3]}}}));
  // With packing all six fit one row of 4? No: rows of at most 4 tokens: [p0..p3] [p4 p5].
  o.packing = true;
  o.global_batch = 2;
  o.dp = 1;
  const EpochPlan packed(lengths, o, 0);
  EXPECT_EQ(packed.rows(), (std::vector<Row>{{p[0], p[1], p[2], p[3]}, {p[4], p[5]}}));
}

TEST(BatchPlan, LocateStepAndStepsForEpochs) {
  const std::vector<int64_t> lengths = SomeLengths(200, 16);
  BatchPlanOptions o;
  o.max_length = 16;
  o.global_batch = 4;
  const int64_t s0 = EpochPlan(lengths, o, 0).num_steps();
  const int64_t s1 = EpochPlan(lengths, o, 1).num_steps();
  EXPECT_EQ(LocateStep(lengths, o, 0).epoch, 0);
  EXPECT_EQ(LocateStep(lengths, o, s0 - 1).step, s0 - 1);
  EXPECT_EQ(LocateStep(lengths, o, s0).epoch, 1);
  EXPECT_EQ(LocateStep(lengths, o, s0).step, 0);
  EXPECT_EQ(LocateStep(lengths, o, s0 + s1).epoch, 2);
  EXPECT_EQ(StepsForEpochs(lengths, o, 1.0), s0);
  EXPECT_EQ(StepsForEpochs(lengths, o, 2.0), s0 + s1);
  EXPECT_EQ(StepsForEpochs(lengths, o, 1.5), s0 + s1 / 2);
  o.global_batch = 1000;
  EXPECT_THROW(LocateStep(lengths, o, 0), Error);
}

TEST(BatchPlan, SettingsCheckNamesTheFields) {
  BatchPlanOptions o;
  o.global_batch = 8;
  o.micro_batch = 3;
  o.dp = 2;
  try {
    CheckBatchPlanOptions(o);
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_THAT(e.what(), HasSubstr("train.global_batch_size (8) must be a positive multiple of "
                                    "train.micro_batch_size (3) * parallel.dp (2)"));
  }
  o.micro_batch = 2;
  EXPECT_NO_THROW(CheckBatchPlanOptions(o));
  o.max_length = 1;
  EXPECT_THROW(CheckBatchPlanOptions(o), Error);
}

}  // namespace
}  // namespace cemoe
