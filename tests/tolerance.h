// tolerance.h: how the tests compare floating-point results. Header-only (namespace cemoe::test),
// usable from every test executable, single- or multi-rank.
//
// The rule (docs/testing.md has the longer version):
//   - Same arithmetic in the same order (a copy, a permutation, a round trip through a file or a
//     collective that only moves data, a sum of small integers): compare exactly (at::equal).
//   - A hand-worked value: a few units of float32 epsilon relative to the value, FewUlps().
//   - Two evaluations of the same quantity that add in different orders (another dispatcher,
//     another rank count, another CPU's GEMM blocking): SumTolerance(terms, scale).
//
// SumTolerance. A float sum of n terms computed in any order has |fl(s) - s| <= (n - 1) u S with
// u = eps / 2 and S = sum |x_i| (Higham, Accuracy and Stability of Numerical Algorithms, 4.2), so
// two orders differ by at most (n - 1) eps S. A result that comes out of a chain of sums (a
// forward pass then a backward pass) accumulates the relative errors of each stage, so n is the
// number of terms summed along the longest chain: the sum of the inner dimensions met on the way
// (hidden size, intermediate size, experts, tokens, ...), written out where each test sets it.
// S is not known element by element; the scale used is the reference's largest magnitude,
// max |want|. Where the terms all have one sign S = |s| and the bound is the textbook one; where
// they cancel, S exceeds |s| but rounding errors also cancel: they add as a random walk, about
// sqrt(n) u S, and S ~ sqrt(n) |s| for terms of random sign, so n eps |s| still covers them with
// a factor ~2. kSumSafety = 2 on top covers a CPU whose kernels block the sums differently from
// the one the margins were measured on (issue 13: 1.00136e-5 against an absolute 1e-5 on an AMD
// EPYC). Tests print nothing on success; a failure reports the worst element, the scale and the
// tolerance.
//
// The bound must stay far below the errors it is there to catch: for the chains in these tests n
// is at most a few hundred, so the tolerance is at most ~1e-4 of the scale, and a gradient off by
// 1e-3 of its size (a factor 1.001, a dropped term of that weight) still fails.
#pragma once

#include <ATen/ATen.h>
#include <fmt/format.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <string>

#include "model/config.h"

namespace cemoe {
namespace test {

constexpr double kFloat32Eps = std::numeric_limits<float>::epsilon();   // 2^-23 ~ 1.19e-7
constexpr double kFloat64Eps = std::numeric_limits<double>::epsilon();  // 2^-52 ~ 2.22e-16
constexpr double kSumSafety = 2;

// Epsilon of a tensor's floating type (float32 for anything narrower is not used in the tests).
inline double EpsOf(const at::Tensor& t) {
  return t.scalar_type() == at::kDouble ? kFloat64Eps : kFloat32Eps;
}

// Bound on |a - b| for two evaluations of one quantity built from `terms` additions along its
// longest chain, at magnitude `scale` (see the rule above).
inline double SumTolerance(int64_t terms, double scale, double eps = kFloat32Eps) {
  return kSumSafety * static_cast<double>(std::max<int64_t>(terms, 1)) * eps * scale;
}
inline double Float32SumTolerance(int64_t terms, double scale) {
  return SumTolerance(terms, scale, kFloat32Eps);
}

// Additions along the longest chain of one forward pass of `c` over `seq` positions, per layer:
// the input norm (D), q/k/v (D), OLMoE's q/k norms (D), q.k (head_dim), the softmax and weights x
// v (seq each), o_proj (heads x head_dim), the second norm (D), the router (D) and its softmax
// (E), gate/up (D), down (I) and the top-k combine (k); then the final norm and the LM head (D
// each). A backward pass mirrors it (each transposed product sums over the other side).
inline int64_t ForwardTerms(const ModelConfig& c, int64_t seq) {
  const int64_t d = c.hidden_size;
  const int64_t attention = d + d + (c.uses_qk_norm() ? d : 0) + c.head_dim + 2 * seq +
                            c.num_attention_heads * c.head_dim;
  const int64_t moe = d + d + c.num_experts + d + c.intermediate_size + c.num_experts_per_tok;
  return c.num_hidden_layers * (attention + moe) + 2 * d;
}

// A few units of epsilon relative to a hand-worked value: float32 rounds each operation to within
// eps / 2 of |value|, so `ulps` counts the roundings between the inputs and the result.
inline double FewUlps(double value, int ulps = 4, double eps = kFloat32Eps) {
  return ulps * eps * std::abs(value);
}

// max |t| in float64 (0 for an empty tensor).
inline double MaxAbs(const at::Tensor& t) {
  if (t.numel() == 0) return 0;
  return t.detach().to(at::kCPU, at::kDouble).abs().max().item<double>();
}

// max |a - b| in float64 (0 for two empty tensors).
inline double MaxAbsDiff(const at::Tensor& a, const at::Tensor& b) {
  if (a.numel() == 0 && b.numel() == 0) return 0;
  return (a.detach().to(at::kCPU, at::kDouble) - b.detach().to(at::kCPU, at::kDouble))
      .abs()
      .max()
      .item<double>();
}

// Every |got - want| <= tol (tensors of one shape). The failure message names the worst element,
// both values there, the reference's scale and the tolerance (and `why`: how tol was chosen).
inline ::testing::AssertionResult CloseTo(const at::Tensor& got, const at::Tensor& want, double tol,
                                          const std::string& why = "") {
  if (!got.sizes().equals(want.sizes())) {
    return ::testing::AssertionFailure()
           << "shapes differ: got " << got.sizes() << ", want " << want.sizes();
  }
  if (want.numel() == 0) return ::testing::AssertionSuccess();
  const at::Tensor g = got.detach().to(at::kCPU, at::kDouble).reshape({-1});
  const at::Tensor w = want.detach().to(at::kCPU, at::kDouble).reshape({-1});
  const at::Tensor diff = (g - w).abs();
  // A NaN or infinity anywhere fails (and is the element reported): NaN <= tol is false, but
  // argmax could pick another element.
  const at::Tensor bad = at::logical_not(at::isfinite(g) & at::isfinite(w));
  const bool finite = !bad.any().item<bool>();
  const int64_t at_flat = (finite ? diff : bad.to(at::kInt)).argmax().item<int64_t>();
  const double worst = diff[at_flat].item<double>();
  if (finite && worst <= tol) return ::testing::AssertionSuccess();
  std::string index;
  int64_t rest = at_flat;
  for (int64_t d = want.dim() - 1; d >= 0; --d) {
    index = fmt::format("{}{}", rest % want.size(d), index.empty() ? "" : ", " + index);
    rest /= want.size(d);
  }
  return ::testing::AssertionFailure() << fmt::format(
             "worst element [{}]: got {:.9g}, want {:.9g}, |diff| {:.4g} > tol {:.4g} "
             "(max |want| {:.4g}, |diff| / max |want| {:.3g}){}{}",
             index, g[at_flat].item<double>(), w[at_flat].item<double>(), worst, tol, MaxAbs(want),
             worst / std::max(MaxAbs(want), std::numeric_limits<double>::min()),
             why.empty() ? "" : "; ", why);
}

// CloseTo with SumTolerance(terms, max |want|) in the precision of `want`.
inline ::testing::AssertionResult SumsAgree(const at::Tensor& got, const at::Tensor& want,
                                            int64_t terms) {
  const double eps = EpsOf(want);
  return CloseTo(
      got, want, SumTolerance(terms, MaxAbs(want), eps),
      fmt::format("tol = {} x {} terms x eps {:.3g} x max |want|", kSumSafety, terms, eps));
}

}  // namespace test
}  // namespace cemoe
