// distill_loss_test.cc: the distillation loss (trainer/distill/distill_loss.h) on tensors small
// enough to work by hand, then against ATen's own kl_div / mse_loss on random tensors in float64,
// and its gradient in the student's logits, (q - p) / tau per loss token.
#include "trainer/distill/distill_loss.h"

#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include <cmath>

#include "model/check.h"
#include "tests/tolerance.h"

namespace cemoe {
namespace {

// Two token positions, vocabulary 2, two MoE layers of hidden size 2; position 1 carries no loss
// (target -100) and huge values that must not count.
//   position 0: teacher logits [0, ln 3], student logits [0, 0], target 1.
//   tau = 2: p = softmax([0, ln 3 / 2]) = [1, sqrt 3] / (1 + sqrt 3), q = [1/2, 1/2]
//     KL = p0 ln(2 p0) + p1 ln(2 p1) = 0.366025 ln 0.732051 + 0.633975 ln 1.267949 = 0.036341
//   CE = -ln q(target) at tau 1 = ln 2
//   MoE outputs (student - teacher): layer 0 [1, -1] -> mean square 1; layer 1 [2, 0] -> 2;
//     mean over layers 1.5
//   loss with a = 0.5, b = 2, c = 3 over N = 4 global loss tokens:
//     (0.5 ln 2 + 2 x 2^2 x 0.036341 + 3 x 1.5) / 4
TEST(DistillLoss, HandWorkedTwoTokens) {
  const double s3 = std::sqrt(3.0);
  const at::Tensor teacher =
      at::tensor({0.0f, static_cast<float>(std::log(3.0)), 50.0f, -50.0f}).view({2, 2});
  const at::Tensor student = at::tensor({0.0f, 0.0f, -50.0f, 50.0f}).view({2, 2});
  const at::Tensor targets = at::tensor({int64_t{1}, int64_t{-100}});
  const std::vector<at::Tensor> s_moe = {at::tensor({1.0f, -1.0f, 9.0f, 9.0f}).view({1, 2, 2}),
                                         at::tensor({3.0f, 5.0f, -9.0f, 9.0f}).view({1, 2, 2})};
  const std::vector<at::Tensor> t_moe = {at::tensor({0.0f, 0.0f, 0.0f, 0.0f}).view({1, 2, 2}),
                                         at::tensor({1.0f, 5.0f, 9.0f, -9.0f}).view({1, 2, 2})};
  const DistillSums sums = DistillLossSums(student, teacher, targets, s_moe, t_moe, 2.0);
  const double p0 = 1 / (1 + s3), p1 = s3 / (1 + s3);
  const double kl = p0 * std::log(2 * p0) + p1 * std::log(2 * p1);
  EXPECT_NEAR(kl, 0.036341, 1e-6);  // the number in the comment above
  EXPECT_NEAR(sums.ce.item<double>(), std::log(2.0), test::FewUlps(std::log(2.0)));
  // KL: a difference of terms of size ~0.3 (ln 0.73, ln 1.27): a few ulps of those.
  EXPECT_NEAR(sums.kl.item<double>(), kl, test::FewUlps(0.3, 8));
  EXPECT_NEAR(sums.mse.item<double>(), 1.5, test::FewUlps(1.5));
  DistillWeights w;
  w.ce = 0.5, w.kl = 2, w.mse = 3, w.temperature = 2;
  const double want = (0.5 * std::log(2.0) + 2 * 4 * kl + 3 * 1.5) / 4;
  EXPECT_NEAR(CombineDistillLoss(sums, w, 4).item<double>(), want, test::FewUlps(want, 16));
  // A zero weight leaves its term out; no MoE outputs: no MSE.
  const DistillSums no_mse = DistillLossSums(student, teacher, targets, {}, {}, 2.0);
  EXPECT_FALSE(no_mse.mse.defined());
  w.mse = 0;
  EXPECT_NEAR(CombineDistillLoss(no_mse, w, 4).item<double>(), (0.5 * std::log(2.0) + 8 * kl) / 4,
              test::FewUlps(1, 16));
  w.mse = 1;
  EXPECT_THROW(CombineDistillLoss(no_mse, w, 4), Error);
}

// Random [T, V] logits, some positions without loss: the sums equal ATen's kl_div (log-target
// form, summed), cross_entropy and mse_loss applied to the loss positions, in float64.
TEST(DistillLoss, EqualsAtenReferencesOnRandomTensors) {
  at::Generator gen = at::detail::createCPUGenerator(11);
  const int64_t T = 9, V = 13, D = 5, L = 3;
  const double tau = 1.7;
  const at::Tensor s = at::randn({T, V}, gen, at::kDouble) * 3;
  const at::Tensor t = at::randn({T, V}, gen, at::kDouble) * 3;
  at::Tensor targets = at::randint(0, V, {T}, gen, at::kLong);
  targets[2] = -100;
  targets[7] = -100;
  std::vector<at::Tensor> sm, tm;
  for (int64_t l = 0; l < L; ++l) {
    sm.push_back(at::randn({1, T, D}, gen, at::kDouble));
    tm.push_back(at::randn({1, T, D}, gen, at::kDouble));
  }
  const DistillSums got = DistillLossSums(s, t, targets, sm, tm, tau);
  const at::Tensor keep = targets.ne(-100);
  const at::Tensor log_q = at::log_softmax(s.index({keep}) / tau, -1);
  const at::Tensor log_p = at::log_softmax(t.index({keep}) / tau, -1);
  const double kl =
      at::kl_div(log_q, log_p, at::Reduction::Sum, /*log_target=*/true).item<double>();
  const double ce = at::cross_entropy_loss(s, targets, {}, at::Reduction::Sum, -100).item<double>();
  double mse = 0;
  for (int64_t l = 0; l < L; ++l) {
    mse += at::mse_loss(sm[l].view({T, D}).index({keep}), tm[l].view({T, D}).index({keep}),
                        at::Reduction::Sum)
               .item<double>() /
           D;
  }
  mse /= L;
  // The function computes in float32: terms of size |log p| <= ~10, summed over 7 x 13.
  EXPECT_NEAR(got.kl.item<double>(), kl, test::SumTolerance(7 * V, 10));
  EXPECT_NEAR(got.ce.item<double>(), ce, test::SumTolerance(7 * V, ce));
  EXPECT_NEAR(got.mse.item<double>(), mse, test::SumTolerance(7 * D * L, mse));
}

// d KL / d student logits = (q - p) / tau on loss positions, 0 elsewhere.
TEST(DistillLoss, KlGradientInTheStudentLogits) {
  at::Generator gen = at::detail::createCPUGenerator(3);
  const double tau = 2.5;
  const at::Tensor s = (at::randn({4, 6}, gen, at::kFloat) * 2).requires_grad_(true);
  const at::Tensor t = at::randn({4, 6}, gen, at::kFloat) * 2;
  const at::Tensor targets = at::tensor({int64_t{0}, int64_t{-100}, int64_t{5}, int64_t{2}});
  DistillLossSums(s, t, targets, {}, {}, tau).kl.backward();
  at::Tensor want = (at::softmax(s.detach() / tau, -1) - at::softmax(t / tau, -1)) / tau;
  want[1].zero_();
  EXPECT_TRUE(test::CloseTo(s.grad(), want, test::SumTolerance(6, 1)));
}

}  // namespace
}  // namespace cemoe
