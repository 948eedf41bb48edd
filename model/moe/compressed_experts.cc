#include "model/moe/compressed_experts.h"

#include <ATen/ATen.h>

#include "model/check.h"
#include "model/moe/router.h"

namespace cemoe {

CompressedExpertsImpl::CompressedExpertsImpl(const ModelConfig& config, int64_t main_experts,
                                             CeAggregation aggregation)
    : num_experts_(config.num_experts),
      hidden_(config.hidden_size),
      intermediate_(config.intermediate_size),
      main_experts_(0),
      aggregation_(aggregation) {
  set_main_experts(main_experts);
  g = register_parameter("g", at::ones({num_experts_, hidden_}));
  u = register_parameter("u", at::ones({num_experts_, hidden_}));
  d = register_parameter("d", at::ones({num_experts_, intermediate_}));
}

void CompressedExpertsImpl::set_main_experts(int64_t main_experts) {
  CEMOE_CHECK(main_experts >= 1 && main_experts < num_experts_,
              "compressed experts: main_experts ({}) must be at least 1 and below the number of "
              "experts ({})",
              main_experts, num_experts_);
  main_experts_ = main_experts;
}

at::Tensor CompressedExpertsImpl::Aggregate(const at::Tensor& aux_ids_NA,
                                            const at::Tensor& aux_weights_NA) const {
  const int64_t n = aux_ids_NA.size(0), k_a = aux_ids_NA.size(1);
  const int64_t width = 2 * hidden_ + intermediate_;
  // One [E, W + 1] table: g, u and d side by side (E x W numbers, 0.08 % of one OLMoE expert),
  // plus a constant column of ones that yields each row's weight sum, accumulated exactly as
  // every other column. Dividing by it makes vectors of ones aggregate to exactly 1 (the
  // renormalised weights sum to 1 only up to rounding, and 1 - 1ulp would change an untrained
  // CE model), and leaves the value and the gradient with respect to the router unchanged: the
  // quotient is invariant to the weights' scale, whose sum is 1.
  const at::ScalarType dtype = ComputeType();
  at::Tensor table_EW1 =
      at::cat({g, u, d, at::ones({num_experts_, 1}, g.options())}, 1).to(dtype);
  if (n == 0) {
    // Keep the graph connected to the weights (and the vectors): under expert parallelism the
    // weights arrived through an all-to-all whose backward every rank must run.
    return table_EW1.new_zeros({0, width}) + table_EW1.sum() * 0 + aux_weights_NA.sum() * 0;
  }
  at::Tensor offsets = at::arange(0, n * k_a, k_a, aux_ids_NA.options().dtype(at::kLong));
  at::Tensor sums_NW1 = std::get<0>(at::embedding_bag(
      table_EW1, aux_ids_NA.reshape({-1}).to(at::kLong), offsets,
      /*scale_grad_by_freq=*/false, /*mode=sum*/ 0, /*sparse=*/false,
      aux_weights_NA.reshape({-1}).to(dtype), /*include_last_offset=*/false));
  // One split (not two narrows, whose backwards each zero-fill an [N, W + 1] gradient).
  const std::vector<at::Tensor> parts = sums_NW1.split_with_sizes({width, 1}, 1);
  // A token whose aux weights all underflow to 0 (float32 softmax, logit gaps above ~100) has no
  // defined average: its vectors are taken as ones (no modulation) instead of 0 / 0 = NaN, with a
  // safe denominator so that the discarded branch puts no NaN into the gradient either.
  const at::Tensor positive = parts[1] > 0;
  const at::Tensor mean = parts[0] / at::where(positive, parts[1], at::ones_like(parts[1]));
  return at::where(positive, mean, at::ones_like(mean));
}

ExpertScales CompressedExpertsImpl::Split(const at::Tensor& scales_NW, at::ScalarType dtype) const {
  // One split, not three narrows: the backward of a narrow writes a zero-filled [N, W] gradient
  // and autograd then adds the three, where split's backward writes one [N, W] concatenation
  // (the same values; 0.3 s of a 1.0 s OLMoE layer step at 512 tokens, docs/benchmarks.md).
  std::vector<at::Tensor> s =
      scales_NW.to(dtype).split_with_sizes({hidden_, hidden_, intermediate_}, 1);
  return {s[0], s[1], s[2]};
}

MainRouting CompressedExpertsImpl::Apply(const RouterOutput& routing) {
  const at::Tensor& ids_TK = routing.topk_ids_TK;
  const at::Tensor& weights_TK = routing.topk_weights_TK;
  const int64_t k = ids_TK.size(1);
  CEMOE_CHECK(main_experts_ < k,
              "compressed experts need at least one auxiliary expert: {} main experts of top_k {}",
              main_experts_, k);
  const int64_t k_a = k - main_experts_;
  MainRouting out;
  out.topk_ids_TK = ids_TK.narrow(1, 0, main_experts_);
  out.topk_weights_TK = weights_TK.narrow(1, 0, main_experts_);
  at::Tensor aux_ids_TA = ids_TK.narrow(1, main_experts_, k_a).contiguous();
  // The aux weights as routed; Aggregate renormalises them over the aux set.
  at::Tensor aux_w_TA = weights_TK.narrow(1, main_experts_, k_a).to(ComputeType());
  if (aggregation_ == CeAggregation::kAtSource) {
    out.extras_T = {Aggregate(aux_ids_TA, aux_w_TA).to(weights_TK.scalar_type())};
  } else {
    out.extras_T = {aux_ids_TA, aux_w_TA};
  }
  return out;
}

ExpertScales CompressedExpertsImpl::Scales(const std::vector<at::Tensor>& extras_R) {
  if (aggregation_ == CeAggregation::kAtSource) {
    CEMOE_CHECK(extras_R.size() == 1, "compressed experts: expected 1 routed extra, got {}",
                extras_R.size());
    return Split(extras_R[0], g.scalar_type());
  }
  CEMOE_CHECK(extras_R.size() == 2, "compressed experts: expected 2 routed extras, got {}",
              extras_R.size());
  return Split(Aggregate(extras_R[0], extras_R[1]), g.scalar_type());
}

}  // namespace cemoe
