// weighted_row_sum_test.cc: the fused weighted sum of Combine (model/moe/weighted_row_sum.h) on
// the header's hand-worked example, in the fused loop (float, double) and the ATen path
// (bfloat16), rows in one tensor or two, with a dropped slot whose clamped row holds inf, and
// against a naive loop.
#include "model/moe/weighted_row_sum.h"

#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include <limits>

#include "model/check.h"
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

TEST(WeightedRowSumBackward, HandWorkedExampleOfTheHeader) {
  const at::Tensor rows = at::tensor({1.0, 2.0, 3.0, 4.0, 5.0, 6.0}, at::kDouble).reshape({3, 2});
  const at::Tensor pos = at::tensor(std::vector<int64_t>{2, 0, -1, 1}, at::kLong).reshape({2, 2});
  const at::Tensor w = at::tensor({0.5, 2.0, 7.0, 1.0}, at::kDouble).reshape({2, 2});
  const at::Tensor grad = at::tensor({1.0, 1.0, 2.0, 0.0}, at::kDouble).reshape({2, 2});
  const at::Tensor want_rows =
      at::tensor({2.0, 2.0, 2.0, 0.0, 0.5, 0.5}, at::kDouble).reshape({3, 2});
  const at::Tensor want_w = at::tensor({11.0, 3.0, 0.0, 6.0}, at::kDouble).reshape({2, 2});
  for (at::ScalarType type : {at::kFloat, at::kDouble, at::kBFloat16}) {
    for (int64_t split : {int64_t{3}, int64_t{2}}) {
      const at::Tensor a = rows.slice(0, 0, split).to(type);
      const at::Tensor b = split < 3 ? rows.slice(0, split).to(type) : at::Tensor();
      const WeightedRowSumGrads g =
          WeightedRowSumBackward(grad.to(type), a, b, pos, w.to(at::kFloat), pos, 3, true, true);
      EXPECT_EQ(g.rows_XW.scalar_type(), type);
      EXPECT_EQ(g.weights_TK.scalar_type(), at::kFloat);
      // Exact in all three types: small integers and halves.
      EXPECT_TRUE(g.rows_XW.to(at::kDouble).equal(want_rows)) << c10::toString(type) << g.rows_XW;
      EXPECT_TRUE(g.weights_TK.to(at::kDouble).equal(want_w))
          << c10::toString(type) << g.weights_TK;
      // Only what is asked for; unweighted: the rows' gradient is the token's gradient.
      const WeightedRowSumGrads rows_only =
          WeightedRowSumBackward(grad.to(type), a, b, pos, at::Tensor(), pos, 3, true, true);
      EXPECT_FALSE(rows_only.weights_TK.defined());
      EXPECT_TRUE(
          rows_only.rows_XW.to(at::kDouble)
              .equal(at::tensor({1.0, 1.0, 2.0, 0.0, 1.0, 1.0}, at::kDouble).reshape({3, 2})));
      const WeightedRowSumGrads w_only =
          WeightedRowSumBackward(grad.to(type), a, b, pos, w.to(at::kFloat), pos, 3, false, true);
      EXPECT_FALSE(w_only.rows_XW.defined());
      EXPECT_TRUE(w_only.weights_TK.to(at::kDouble).equal(want_w));
    }
  }
}

// Against autograd through the ATen formula (gather, scale, mask, sum over K) on random rows, in
// double and float, the rows' gradient laid out by a dest that is not pos (as the all-to-all
// combine sends it) with one more row than kept slots (left zero).
TEST(WeightedRowSumBackward, EqualsAutogradOfTheAtenFormula) {
  at::Generator gen = at::detail::createCPUGenerator(5);
  const int64_t t = 9, k = 3, r = 20, w = 37;  // 37: a partial line of doubles and floats
  const at::Tensor pos =
      at::randperm(t * k, gen, at::kLong).reshape({t, k}) - (t * k - r);  // 7 < 0
  const at::Tensor kept = pos.ge(0);
  const int64_t num_kept = kept.sum().item<int64_t>();
  ASSERT_EQ(num_kept, r);
  // dest: kept slots numbered in reverse slot order, in rows [1, r + 1) of r + 1.
  at::Tensor dest = at::full({t * k}, -1, at::kLong);
  {
    int64_t next = r;
    for (int64_t s = 0; s < t * k; ++s) {
      if (kept.reshape({-1})[s].item<bool>()) dest[s] = next--;
    }
  }
  dest = dest.reshape({t, k});
  for (at::ScalarType type : {at::kDouble, at::kFloat}) {
    const at::Tensor rows = at::randn({r, w}, gen, at::kDouble).to(type);
    const at::Tensor weights = at::rand({t, k}, gen, at::kDouble).to(type);
    const at::Tensor grad = at::randn({t, w}, gen, at::kDouble).to(type);
    // Reference: autograd through the ATen path of the forward.
    at::Tensor rows_ref = rows.clone().requires_grad_(true);
    at::Tensor weights_ref = weights.clone().requires_grad_(true);
    const at::Tensor gathered = rows_ref.index_select(0, pos.clamp_min(0).reshape({-1}));
    const at::Tensor scale = kept.to(type) * weights_ref;
    const at::Tensor out = (gathered.reshape({t, k, w}) * scale.unsqueeze(2))
                               .masked_fill(~kept.unsqueeze(2), 0)
                               .sum(1);
    out.backward(grad);
    at::Tensor want_rows = at::zeros({r + 1, w}, type);
    const at::Tensor kept_slots = kept.reshape({-1}).nonzero().reshape({-1});
    want_rows.index_copy_(
        0, dest.reshape({-1}).index_select(0, kept_slots),
        rows_ref.grad().index_select(0, pos.reshape({-1}).index_select(0, kept_slots)));
    const WeightedRowSumGrads g = WeightedRowSumBackward(
        grad, rows.slice(0, 0, 6), rows.slice(0, 6), pos, weights, dest, r + 1, true, true);
    // Rows: one product each, the same in both (exact). Weights: dot products of w terms summed
    // in different orders.
    EXPECT_TRUE(g.rows_XW.equal(want_rows)) << c10::toString(type);
    EXPECT_TRUE(test::SumsAgree(g.weights_TK, weights_ref.grad(), w)) << c10::toString(type);
    EXPECT_TRUE(g.rows_XW[0].eq(0).all().item<bool>());
  }
}

TEST(WeightedRowSumBackward, RefusesGradientRowsOutOfRangeOrNamedTwice) {
  const at::Tensor rows = at::ones({3, 2}, at::kFloat);
  const at::Tensor pos = at::tensor(std::vector<int64_t>{2, 0, -1, 1}, at::kLong).reshape({2, 2});
  const at::Tensor grad = at::ones({2, 2}, at::kFloat);
  auto run = [&](std::vector<int64_t> dest, int64_t num_dest) {
    return WeightedRowSumBackward(grad, rows, at::Tensor(), pos, at::Tensor(),
                                  at::tensor(dest, at::kLong).reshape({2, 2}), num_dest, true,
                                  false);
  };
  // A dropped slot's dest is never read: -7 there is fine.
  EXPECT_NO_THROW(run({0, 1, -7, 2}, 3));
  EXPECT_THROW(run({0, 1, -1, 3}, 3), Error);  // row 3 of 3
  EXPECT_THROW(run({0, 1, -1, -1}, 3), Error);
  EXPECT_THROW(run({0, 1, -1, 1}, 3), Error);  // row 1 twice: the threads would race
}

}  // namespace
}  // namespace cemoe
