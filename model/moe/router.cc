#include "model/moe/router.h"

#include <ATen/ATen.h>

#include <limits>

#include "model/check.h"

namespace cemoe {

RouterImpl::RouterImpl(const ModelConfig& config) : config_(config) {
  weight = register_parameter("weight", at::zeros({config.num_experts, config.hidden_size}));
}

RouterOutput SoftmaxTopK(const at::Tensor& logits_TE, int64_t top_k, bool normalize,
                         at::ScalarType out_dtype) {
  at::Tensor probs = at::softmax(logits_TE, -1, at::kFloat);
  auto [values, ids] = probs.topk(top_k, -1, /*largest=*/true, /*sorted=*/true);
  if (normalize) values = values / values.sum(-1, /*keepdim=*/true);
  return {logits_TE, ids, values.to(out_dtype)};
}

RouterOutput SparseMixer(const at::Tensor& logits_TE, int64_t top_k, double jitter_eps) {
  CEMOE_CHECK(top_k == 1 || top_k == 2,
              "Phi-MoE's sparsemixer routes 1 or 2 experts per token, top_k is {}", top_k);
  const double neg_inf = -std::numeric_limits<double>::infinity();
  const at::Tensor& scores = logits_TE;
  // First choice.
  at::Tensor m1, e1, mask;
  {
    at::NoGradGuard no_grad;
    std::tie(m1, e1) = scores.max(-1, /*keepdim=*/true);
    at::Tensor factor = scores.abs().clamp_min(m1);  // max(|s_j|, m1)
    mask = ((m1 - scores) / factor) > (2 * jitter_eps);
  }
  at::Tensor w1 = at::softmax(scores.masked_fill(mask, neg_inf), -1).gather(-1, e1);
  if (top_k == 1) return {logits_TE, e1, w1};
  // Second choice among the rest.
  at::Tensor rest = scores.scatter(-1, e1, neg_inf);
  at::Tensor m2, e2, mask2;
  {
    at::NoGradGuard no_grad;
    std::tie(m2, e2) = rest.max(-1, /*keepdim=*/true);
    at::Tensor factor = scores.abs().clamp_min(m2);
    mask2 = ((m2 - scores) / factor) > (2 * jitter_eps);
  }
  at::Tensor w2 = at::softmax(rest.masked_fill(mask2, neg_inf), -1).gather(-1, e2);
  return {logits_TE, at::cat({e1, e2}, -1), at::cat({w1, w2}, -1)};
}

void CheckTopK(const ModelConfig& config, int64_t top_k) {
  CEMOE_CHECK(top_k >= 1 && top_k <= config.num_experts,
              "top_k ({}) must be between 1 and the number of experts ({})", top_k,
              config.num_experts);
  CEMOE_CHECK(!config.is_phimoe() || top_k <= 2,
              "Phi-MoE routes 1 or 2 experts per token, top_k is {}", top_k);
}

RouterOutput RouterImpl::forward(const at::Tensor& x_TD, int64_t top_k) {
  CheckTopK(config_, top_k);
  at::Tensor logits_TE = at::linear(x_TD, weight);
  if (config_.is_phimoe()) return SparseMixer(logits_TE, top_k, config_.router_jitter_noise);
  return SoftmaxTopK(logits_TE, top_k, config_.norm_topk_prob, x_TD.scalar_type());
}

}  // namespace cemoe
