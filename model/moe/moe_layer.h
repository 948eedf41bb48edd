// moe_layer.h: one sparse MoE block. forward reads as the method does:
//   1. route:    router(x_TD, top_k) -> topk_ids_TK, topk_weights_TK     (router.h)
//   2. (hook):   compressed experts keep the main experts and add scales (compressed_experts.h,
//                through the seam of compressed_expert_hook.h)
//   3. dispatch: rows to the experts that own them, grouped by expert   (token_dispatcher.h)
//   4. experts:  grouped SwiGLU over contiguous slices                   (experts.h)
//   5. combine:  rows back to tokens, weighted by the gates, summed over K
// Shape legend: T tokens, D hidden, K runtime top_k, E experts.
// The layer knows nothing of ranks: by default it holds all E experts and a LocalDispatcher;
// parallel/ calls set_dispatcher with a dispatcher whose local_expert_ids() name the experts
// this rank keeps, and the others are dropped from the module.
// Parameter names: "router.weight", "experts.<global id>.{gate,up,down}_proj.weight", and with
// compressed experts "compressed_experts.{g,u,d}" (replicated on every rank).
// Thread-safety: not for concurrent use.
#pragma once

#include <memory>
#include <vector>

#include "model/config.h"
#include "model/moe/compressed_expert_hook.h"
#include "model/moe/compressed_experts.h"
#include "model/moe/experts.h"
#include "model/moe/router.h"
#include "model/moe/token_dispatcher.h"

namespace cemoe {

class MoeLayerImpl : public torch::nn::Module {
 public:
  // expert_ids: the global ids of the experts this layer holds, increasing; empty = all E.
  // A layer built with a subset must get a dispatcher owning exactly that subset
  // (set_dispatcher) before forward: the default LocalDispatcher needs every expert.
  explicit MoeLayerImpl(const ModelConfig& config, std::vector<int64_t> expert_ids = {});
  // x: [..., D] -> same shape.
  at::Tensor forward(const at::Tensor& x) { return Forward(x).out; }
  // The output and this forward's routing (router logits for the auxiliary losses, the chosen
  // experts for the load statistics), returned as values: the layer keeps no state between
  // forwards, so nothing holds a graph alive after the caller drops it.
  // routing is the router's full top_k also with compressed experts (the main experts are its
  // first main_experts() columns). mlp_out is the MoE block's own output (DecoderLayer sets it
  // before adding the residual, so that distillation can compare layers).
  struct Output {
    at::Tensor out;
    RouterOutput routing;
    at::Tensor mlp_out;
  };
  Output Forward(const at::Tensor& x);

  void set_top_k(int64_t top_k);
  int64_t top_k() const { return top_k_; }
  // Keeps only the experts named by dispatcher->local_expert_ids() (they must be held now).
  void set_dispatcher(std::shared_ptr<TokenDispatcher> dispatcher);
  TokenDispatcher& dispatcher() { return *dispatcher_; }
  void set_compressed_expert_hook(std::shared_ptr<CompressedExpertHook> hook) {
    hook_ = std::move(hook);
  }
  // Runs the first main_experts of the routed top_k in full and the rest as compressed experts.
  // The first call registers "compressed_experts" with vectors of ones (a checkpoint's values
  // are loaded over them); later calls only change K_m. Needs top_k > main_experts at forward.
  void EnableCompressedExperts(int64_t main_experts);
  // Back to plain top_k routing; the vectors stay (and stay in checkpoints).
  void DisableCompressedExperts();
  // K_m while compressed experts are on, else 0.
  int64_t main_experts() const;

  CompressedExperts compressed_experts{nullptr};  // null until EnableCompressedExperts
  Router router{nullptr};
  GroupedExperts experts{nullptr};

 private:
  ModelConfig config_;
  int64_t top_k_;
  std::shared_ptr<TokenDispatcher> dispatcher_;
  std::shared_ptr<CompressedExpertHook> hook_;
};
TORCH_MODULE(MoeLayer);

}  // namespace cemoe
