// router_losses.h: the auxiliary losses on router logits that SFT may add to the cross-entropy.
//
// Shape legend: L MoE layers, T tokens of this micro-batch, E experts, K the runtime top_k.
// LoadBalancingLoss is transformers' load_balancing_loss_func (Switch Transformer eq. 4-6, as
// OlmoeForCausalLM / PhimoeForCausalLM add it with router_aux_loss_coef), over the tokens of
// every layer together:
//   p = softmax(logits) in float32, [L*T, E];  chosen = the K largest of p (one-hot [L*T, K, E])
//   f[k, e] = mean over valid tokens of chosen[:, k, e];  P[e] = mean over valid tokens of p[:, e]
//   loss = E * sum_{k, e} f[k, e] * P[e]          (1 when routing is perfectly uniform)
// RouterZLoss is ST-MoE's z-loss, summed over layers as Megatron-Core adds one per layer:
//   loss = sum_l mean over valid tokens of logsumexp(logits_l)^2
// token_mask_T: float [T] (1 = a real token, 0 = padding), or undefined for all tokens. Both
// losses are computed on this rank's tokens; the trainer weights them per micro-batch
// (docs/training.md).
// Thread-safety: pure functions.
#pragma once

#include <ATen/core/Tensor.h>

#include <cstdint>
#include <vector>

#include "model/moe/router.h"

namespace cemoe {

at::Tensor LoadBalancingLoss(const std::vector<RouterOutput>& routing, int64_t num_experts,
                             int64_t top_k, const at::Tensor& token_mask_T = {});
at::Tensor RouterZLoss(const std::vector<RouterOutput>& routing,
                       const at::Tensor& token_mask_T = {});

}  // namespace cemoe
