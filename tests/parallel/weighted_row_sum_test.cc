// weighted_row_sum_test.cc: the fused weighted sum of Combine (parallel/weighted_row_sum.h) on
// the header's hand-worked example, in the fused loop (float, double) and the ATen path
// (bfloat16), rows in one tensor or two, with a dropped slot whose clamped row holds inf, and
// against a naive loop.
#include "parallel/weighted_row_sum.h"

#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include <limits>

#include "tests/tolerance.h"

namespace cemoe {
namespace {

TEST(WeightedRowSum, HandWorkedExampleOfTheHeader) {
  const at::Tensor rows = at::tensor({1.0, 2.0, 3.0, 4.0, 5.0, 6.0}, at::kDouble).reshape({3, 2});
  const at::Tensor pos = at::tensor(std::vector<int64_t>{2, 0, -1, 1}, at::kLong).reshape({2, 2});
  const at::Tensor w = at::tensor({0.5, 2.0, 7.0, 1.0}, at::kDouble).reshape({2, 2});
  const at::Tensor want = at::tensor({4.5, 7.0, 3.0, 4.0}, at::kDouble).reshape({2, 2});
  const at::Tensor want_sum = at::tensor({6.0, 8.0, 3.0, 4.0}, at::kDouble).reshape({2, 2});
  for (at::ScalarType type : {at::kFloat, at::kDouble, at::kBFloat16}) {
    // The rows in one tensor, and split 2 + 1 as in the header (the same rows, read in place).
    for (int64_t split : {int64_t{3}, int64_t{2}}) {
      const at::Tensor a = rows.slice(0, 0, split).to(type);
      const at::Tensor b = split < 3 ? rows.slice(0, split).to(type) : at::Tensor();
      const at::Tensor out = WeightedRowSum(a, b, pos, w.to(at::kFloat));
      EXPECT_EQ(out.scalar_type(), type);
      // Every product and sum is exact in all three types (bfloat16 holds 8 significant bits).
      EXPECT_TRUE(out.to(at::kDouble).equal(want)) << c10::toString(type) << ": " << out;
      // Unweighted: plain sums of the kept rows.
      const at::Tensor sum = WeightedRowSum(a, b, pos, at::Tensor());
      EXPECT_TRUE(sum.to(at::kDouble).equal(want_sum)) << c10::toString(type) << ": " << sum;
    }
  }
}

TEST(WeightedRowSum, DroppedSlotsAddNothingEvenNextToInf) {
  const double inf = std::numeric_limits<double>::infinity();
  for (at::ScalarType type : {at::kFloat, at::kBFloat16}) {
    // Row 0 is inf; token 1 has only dropped slots (0, not nan), token 0 keeps row 1.
    at::Tensor rows = at::tensor({inf, inf, 3.0, 4.0}, at::kDouble).reshape({2, 2}).to(type);
    at::Tensor pos = at::tensor(std::vector<int64_t>{-1, 1, -1, -1}, at::kLong).reshape({2, 2});
    at::Tensor w = at::full({2, 2}, 2.0, at::kFloat);
    at::Tensor out = WeightedRowSum(rows, at::Tensor(), pos, w).to(at::kDouble);
    EXPECT_TRUE(out.equal(at::tensor({6.0, 8.0, 0.0, 0.0}, at::kDouble).reshape({2, 2})))
        << c10::toString(type) << ": " << out;
  }
}

TEST(WeightedRowSum, EqualsANaiveLoopOnRandomRows) {
  at::Generator gen = at::detail::createCPUGenerator(3);
  const int64_t t = 7, k = 3, r = 15, w = 5;
  at::Tensor rows = at::randn({r, w}, gen, at::kDouble);
  at::Tensor pos = at::randperm(t * k, gen, at::kLong).reshape({t, k}) - (t * k - r);  // 6 < 0
  at::Tensor weights = at::rand({t, k}, gen, at::kDouble);
  // Rows 0-3 in one tensor, 4-14 in another.
  at::Tensor out = WeightedRowSum(rows.slice(0, 0, 4), rows.slice(0, 4), pos, weights);
  at::Tensor ref = at::zeros({t, w}, at::kDouble);
  for (int64_t i = 0; i < t; ++i) {
    for (int64_t j = 0; j < k; ++j) {
      const int64_t p = pos[i][j].item<int64_t>();
      if (p >= 0) ref[i] += weights[i][j] * rows[p];
    }
  }
  // The same k products and additions in the same slot order, in double (a compiler may fuse
  // a multiply-add: SumTolerance of k terms, not bitwise equality).
  EXPECT_TRUE(test::SumsAgree(out, ref, k));
  // An empty set of rows (every slot dropped) gives zeros.
  at::Tensor none = WeightedRowSum(at::empty({0, w}, at::kFloat), at::Tensor(),
                                   at::full({t, k}, -1, at::kLong), weights.to(at::kFloat));
  EXPECT_TRUE(none.equal(at::zeros({t, w}, at::kFloat)));
}

}  // namespace
}  // namespace cemoe
