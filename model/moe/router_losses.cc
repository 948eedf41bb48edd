#include "model/moe/router_losses.h"

#include <ATen/ATen.h>

#include "model/check.h"

namespace cemoe {
namespace {

// Mean over the rows of x_NX weighted by w_N (undefined: plain mean); [X].
at::Tensor WeightedMean(const at::Tensor& x_NX, const at::Tensor& w_N) {
  if (!w_N.defined()) return x_NX.mean(0);
  at::Tensor w = w_N.to(x_NX.scalar_type()).view({-1, 1});
  return (x_NX * w).sum(0) / w.sum().clamp_min(1.0);
}

}  // namespace

at::Tensor LoadBalancingLoss(const std::vector<RouterOutput>& routing, int64_t num_experts,
                             int64_t top_k, const at::Tensor& token_mask_T) {
  CEMOE_CHECK(!routing.empty(), "LoadBalancingLoss: no MoE layer routed");
  std::vector<at::Tensor> logits;
  for (const RouterOutput& r : routing) logits.push_back(r.logits_TE);
  at::Tensor all = at::cat(logits, 0);  // [L*T, E]
  at::Tensor mask;
  if (token_mask_T.defined()) mask = token_mask_T.to(all.device()).repeat({static_cast<int64_t>(routing.size())});
  if (all.size(0) == 0) return all.sum() * 0.0;
  at::Tensor probs = at::softmax(all, -1, at::kFloat);
  at::Tensor chosen = std::get<1>(probs.topk(top_k, -1));                        // [L*T, K]
  at::Tensor one_hot = at::one_hot(chosen, num_experts).to(at::kFloat);          // [L*T, K, E]
  at::Tensor f = WeightedMean(one_hot.view({all.size(0), -1}), mask).view({top_k, num_experts});
  at::Tensor p = WeightedMean(probs, mask);                                      // [E]
  return (f * p.unsqueeze(0)).sum() * static_cast<double>(num_experts);
}

at::Tensor RouterZLoss(const std::vector<RouterOutput>& routing, const at::Tensor& token_mask_T) {
  CEMOE_CHECK(!routing.empty(), "RouterZLoss: no MoE layer routed");
  at::Tensor total;
  for (const RouterOutput& r : routing) {
    at::Tensor z = at::logsumexp(r.logits_TE.to(at::kFloat), {-1}).pow(2);  // [T]
    at::Tensor m = r.logits_TE.size(0) == 0
                       ? z.sum() * 0.0
                       : WeightedMean(z.view({-1, 1}),
                                      token_mask_T.defined() ? token_mask_T.to(z.device())
                                                             : at::Tensor())
                             .squeeze(0);
    total = total.defined() ? total + m : m;
  }
  return total;
}

}  // namespace cemoe
