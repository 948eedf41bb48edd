// compressed_expert_hook.h: the seam through which compressed experts (method.md section 1)
// enter an MoE layer. Installed with MoeLayerImpl::set_compressed_expert_hook; without one the
// layer runs all K routed experts in full.
//
// Shape legend: T tokens, K routed experts per token, K_m main experts, D hidden, I intermediate.
// Given the router's full top-K (sorted best first), a hook returns the experts that actually
// run (the main ones, with the weights to combine them) and per-token scales [T, D], [T, D],
// [T, I] that every main expert of that token applies (ExpertScales). The scales travel with the
// token through the dispatcher (TokenDispatcher extras), so they work under expert parallelism.
// Thread-safety: as the layer that holds it.
#pragma once

#include <ATen/core/Tensor.h>

namespace cemoe {

struct RouterOutput;

struct MainRouting {
  at::Tensor topk_ids_TK;      // [T, K_m] experts to run
  at::Tensor topk_weights_TK;  // [T, K_m] their combine weights
  at::Tensor gate_in_TD;       // [T, D]
  at::Tensor up_in_TD;         // [T, D]
  at::Tensor down_in_TI;       // [T, I]
};

class CompressedExpertHook {
 public:
  virtual ~CompressedExpertHook() = default;
  virtual MainRouting Apply(const RouterOutput& routing) = 0;
};

}  // namespace cemoe
