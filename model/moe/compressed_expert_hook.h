// compressed_expert_hook.h: the seam through which compressed experts (method.md section 1)
// enter an MoE layer. Installed with MoeLayerImpl::set_compressed_expert_hook; without one the
// layer runs all K routed experts in full.
//
// Shape legend: T tokens, K routed experts per token, K_m main experts, R dispatched rows,
// D hidden, I intermediate.
// Two calls per forward, on either side of the dispatcher:
//   Apply(routing)  where the token is: from the router's full top-K (sorted best first), the
//                   experts that actually run (the main ones, with the weights that combine
//                   them) and the per-token extras [T, ...] that travel with the token to the
//                   ranks of its main experts (TokenDispatcher extras);
//   Scales(extras)  where the experts are: from those extras, now one row per dispatched row,
//                   the per-row scales [R, D], [R, D], [R, I] that the expert applies
//                   (ExpertScales, experts.h).
// What travels is the hook's choice (model/moe/compressed_experts.h measures two).
// Thread-safety: as the layer that holds it.
#pragma once

#include <ATen/core/Tensor.h>

#include <vector>

#include "model/moe/experts.h"

namespace cemoe {

struct RouterOutput;

struct MainRouting {
  at::Tensor topk_ids_TK;            // [T, K_m] experts to run
  at::Tensor topk_weights_TK;        // [T, K_m] their combine weights
  std::vector<at::Tensor> extras_T;  // [T, ...] each, routed with the token
};

class CompressedExpertHook {
 public:
  virtual ~CompressedExpertHook() = default;
  virtual MainRouting Apply(const RouterOutput& routing) = 0;
  // extras_R: Apply's extras after dispatch, row r belonging to the token of dispatched row r.
  virtual ExpertScales Scales(const std::vector<at::Tensor>& extras_R) = 0;
};

}  // namespace cemoe
