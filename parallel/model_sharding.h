// model_sharding.h: expert parallelism applied to a single-device CausalLM from outside.
//
// The model is built whole on every rank (same seed, same weights). Then, per MoE layer:
//   1. (balanced only) MeasureExpertLoad routes a sample of tokens through the router of every
//      layer and sums the per-expert counts over the world, so every rank computes the same
//      placement;
//   2. PlaceExperts picks the experts of each EP rank (parallel/placement.h);
//   3. ShardExperts installs a dispatcher per layer (MoeLayerImpl::set_dispatcher), which drops
//      the experts this rank does not hold. Parameter names keep global expert ids.
// SplitParameters then separates replicated (dense) from sharded (expert) parameters for
// gradient sync and clipping (parallel/grad_sync.h).
// Thread-safety: call from the training thread on every rank (steps 1 and 3 are collective).
#pragma once

#include <ATen/core/Tensor.h>

#include <cstdint>
#include <string>
#include <vector>

#include "parallel/all_to_all_dispatcher.h"
#include "parallel/grad_sync.h"
#include "parallel/placement.h"
#include "parallel/process_groups.h"

namespace torch {
namespace nn {
class Module;
}
}  // namespace torch

namespace cemoe {

class CausalLMImpl;

// [layer][expert] tokens routed to each expert by the model's current top_k when every rank
// routes its own sample_tokens_BS (int64 [B, S]); summed over `world`. No gradients.
std::vector<std::vector<int64_t>> MeasureExpertLoad(CausalLMImpl& model,
                                                    const at::Tensor& sample_tokens_BS,
                                                    Communicator& world);

// One placement per layer; `load` ([layer][expert]) is needed by kBalanced only.
std::vector<ExpertPlacement> PlaceExperts(int64_t num_layers, int64_t num_experts, int ep,
                                          PlacementPolicy policy,
                                          const std::vector<std::vector<int64_t>>& load = {});

// Installs MakeTokenDispatcher(groups.ep_group(), placements[l], options) in MoE layer l.
void ShardExperts(CausalLMImpl& model, ProcessGroups& groups,
                  const std::vector<ExpertPlacement>& placements, DispatcherOptions options = {});

// Dense and expert parameters of a module (IsExpertParameterName on named_parameters()).
ParameterSplit SplitParameters(const torch::nn::Module& model);

// Start-up log: one line per layer, "layer 0: rank 0: 0 1 | rank 1: 2 3".
std::string DescribePlacements(const std::vector<ExpertPlacement>& placements);

}  // namespace cemoe
