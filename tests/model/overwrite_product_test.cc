// overwrite_product_test.cc: out = a @ b through oneDNN (model/moe/overwrite_product.h) against
// a float64 product, for every operand layout the experts' kernel passes (a transposed view of a
// rows block, a rows block, an output with a wider leading dimension), with the output's old
// contents NaN (so a product that read them, as beta * out with beta = 0 does, would be NaN);
// and what it declines, leaving out untouched.
#include "model/moe/overwrite_product.h"

#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include <limits>

#include "tests/tolerance.h"

namespace cemoe {
namespace {

// |fl(a @ b) - a @ b| <= K u (|a| @ |b|) elementwise for any summation order (u = eps / 2), so
// K eps (|a| @ |b|) bounds it with a factor 2 to spare.
void ExpectProduct(const at::Tensor& got, const at::Tensor& a, const at::Tensor& b) {
  const at::Tensor want = at::mm(a.to(at::kDouble), b.to(at::kDouble));
  const at::Tensor bound =
      at::mm(a.abs().to(at::kDouble), b.abs().to(at::kDouble)) * (a.size(1) * test::kFloat32Eps);
  const at::Tensor err = (got.to(at::kDouble) - want).abs();
  EXPECT_TRUE(at::isfinite(got).all().item<bool>()) << "the old contents leaked into the product";
  EXPECT_TRUE((err <= bound).all().item<bool>())
      << "worst error " << (err - bound).max().item<double>() << " above the bound";
}

at::Tensor NaNs(at::IntArrayRef shape) {
  return at::full(shape, std::numeric_limits<float>::quiet_NaN(), at::kFloat);
}

class OverwriteProductTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!HaveOverwriteProduct()) GTEST_SKIP() << "this build has no oneDNN (CEMOE_WITH_DNNL_SGEMM)";
  }
};

TEST_F(OverwriteProductTest, WeightGradientLayoutTransposedRowsTimesRows) {
  // As the kernel calls it: dW [2I, D] = dY_rows^T [2I, r] @ X_rows [r, D], both row blocks
  // narrowed out of larger [R, .] tensors.
  at::manual_seed(1);
  for (int64_t r : {1, 7, 32, 65}) {
    const at::Tensor dy = at::randn({r + 5, 24}, at::kFloat).narrow(0, 3, r);
    const at::Tensor x = at::randn({r + 5, 17}, at::kFloat).narrow(0, 2, r);
    at::Tensor out = NaNs({24, 17});
    ASSERT_TRUE(OverwriteProduct(out, dy.t(), x)) << "r = " << r;
    ExpectProduct(out, dy.t(), x);
  }
}

TEST_F(OverwriteProductTest, EveryOperandLayoutAndAWiderOutput) {
  at::manual_seed(2);
  const at::Tensor a_n = at::randn({9, 13}, at::kFloat);      // rows contiguous
  const at::Tensor a_t = at::randn({13, 9}, at::kFloat).t();  // columns contiguous
  const at::Tensor b_n = at::randn({13, 11}, at::kFloat);
  const at::Tensor b_t = at::randn({11, 13}, at::kFloat).t();
  for (const at::Tensor& a : {a_n, a_t}) {
    for (const at::Tensor& b : {b_n, b_t}) {
      // out: the first 11 columns of a [9, 20] matrix (leading dimension 20); the rest must stay.
      at::Tensor wide = NaNs({9, 20});
      wide.narrow(1, 11, 9).fill_(5.0f);
      at::Tensor out = wide.narrow(1, 0, 11);
      ASSERT_TRUE(OverwriteProduct(out, a, b));
      ExpectProduct(out, a, b);
      EXPECT_TRUE(at::equal(wide.narrow(1, 11, 9), at::full({9, 9}, 5.0f)))
          << "wrote past the output's columns";
    }
  }
}

TEST(OverwriteProduct, DeclinesWhatItCannotWriteAndLeavesTheOutputAlone) {
  const at::Tensor a = at::randn({4, 3}, at::kFloat), b = at::randn({3, 5}, at::kFloat);
  auto untouched = [&](at::Tensor out, const at::Tensor& x, const at::Tensor& y) {
    const at::Tensor before = out.clone();
    EXPECT_FALSE(OverwriteProduct(out, x, y));
    EXPECT_TRUE(at::equal(out, before));
  };
  untouched(at::zeros({4, 5}, at::kDouble), a.to(at::kDouble), b.to(at::kDouble));  // float64
  untouched(at::zeros({4, 5}, at::kBFloat16), a.to(at::kBFloat16), b.to(at::kBFloat16));
  untouched(at::zeros({5, 4}, at::kFloat).t(), a, b);              // output by columns
  untouched(at::zeros({4, 5}, at::kFloat), a, b.narrow(0, 0, 2));  // inner sizes disagree
  untouched(at::zeros({4, 5}, at::kFloat), at::randn({4, 6}, at::kFloat).slice(1, 0, 6, 2),
            b);  // a strided both ways
  if (!HaveOverwriteProduct()) untouched(at::zeros({4, 5}, at::kFloat), a, b);
}

}  // namespace
}  // namespace cemoe
