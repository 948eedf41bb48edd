// compressed_experts.h: the compressed experts (CE) of one MoE layer, method.md section 1.
//
// Shape legend: T tokens, K routed experts per token (the layer's top_k), K_m main experts,
// K_a = K - K_m auxiliary experts, R dispatched rows, E experts, D hidden, I intermediate,
// W = 2 D + I (g, u and d side by side).
// Parameters (all initialised to ones, so an untrained CE changes nothing):
//   "g" [E, D]  multiplies the input of expert e's gate projection,
//   "u" [E, D]  multiplies the input of its up projection,
//   "d" [E, I]  multiplies its intermediate activation before the down projection.
// Forward of one token (method.md 1.3), given the router's top-K sorted best first:
//   main = the first K_m (ids and their ORIGINAL router weights: the combine weights);
//   aux  = the other K_a, weights renormalised over the aux set: w'_j = w_j / sum_aux w;
//   (g, u, d) = sum_j w'_j (g_j, u_j, d_j), the same for every main expert of the token.
// Phi-MoE at K = 2, K_m = 1: main = the first sparsemixer choice with its multiplier, aux = the
// second choice, whose vectors are used as they are (w' = 1). The auxiliary experts are never
// computed and never dispatched.
//
// Where the aggregation happens (the vectors are replicated on every rank, 0.08 % of an expert):
//   kAtExperts (default): the token carries its aux ids and router weights (2 K_a numbers
//              per dispatched row) and each expert's rank aggregates for the rows it receives;
//   kAtSource: the token's rank aggregates once per token and the token carries the W numbers
//              of (g, u, d) to each main expert.
// Both give the same values and gradients; docs/benchmarks.md measures traffic and time.
// Gradients reach exactly the vectors of the aux experts a token used (zero rows elsewhere);
// under expert parallelism each rank holds the gradient of its own rows' uses, and the dense
// gradient all-reduce sums them (the vectors are replicated, not expert parameters).
// The weighted sums run in float32 (embedding_bag) for narrower parameters, else in their dtype
// (float64 stays float64). Vectors of ones aggregate to exactly 1, so an untrained CE model is
// bit for bit the plain top-K_m model.
// Thread-safety: as the layer that holds it.
#pragma once

#include <cstdint>
#include <vector>

#include "model/config.h"
#include "model/module_base.h"
#include "model/moe/compressed_expert_hook.h"

namespace cemoe {

enum class CeAggregation { kAtExperts, kAtSource };

class CompressedExpertsImpl : public torch::nn::Module, public CompressedExpertHook {
 public:
  CompressedExpertsImpl(const ModelConfig& config, int64_t main_experts,
                        CeAggregation aggregation = CeAggregation::kAtExperts);

  MainRouting Apply(const RouterOutput& routing) override;
  ExpertScales Scales(const std::vector<at::Tensor>& extras_R) override;

  // K_m; checked against the routed K (which must leave K_a >= 1) at every Apply.
  void set_main_experts(int64_t main_experts);
  int64_t main_experts() const { return main_experts_; }
  void set_aggregation(CeAggregation aggregation) { aggregation_ = aggregation; }
  CeAggregation aggregation() const { return aggregation_; }

  at::Tensor g, u, d;  // [E, D], [E, D], [E, I]

 private:
  // [N, W] = the weighted mean over each row's K_a (ids, weights) of the concatenated (g | u | d):
  // sum_j w_j v_j / sum_j w_j, in float32.
  at::Tensor Aggregate(const at::Tensor& aux_ids_NA, const at::Tensor& aux_weights_NA) const;
  ExpertScales Split(const at::Tensor& scales_NW, at::ScalarType dtype) const;
  // float32, or the vectors' dtype where that is wider.
  at::ScalarType ComputeType() const { return at::promote_types(g.scalar_type(), at::kFloat); }

  int64_t num_experts_, hidden_, intermediate_, main_experts_;
  CeAggregation aggregation_;
};
TORCH_MODULE(CompressedExperts);

}  // namespace cemoe
