#include "parallel/model_sharding.h"

#include <ATen/ATen.h>
#include <fmt/format.h>

#include "model/causal_lm.h"
#include "model/check.h"

namespace cemoe {

std::vector<std::vector<int64_t>> MeasureExpertLoad(CausalLMImpl& model,
                                                    const at::Tensor& sample_tokens_BS,
                                                    Communicator& world) {
  at::NoGradGuard no_grad;
  const int64_t num_experts = model.config().num_experts;
  const ModelOutput out = model.Forward(TokenBatch{sample_tokens_BS, {}, {}});
  std::vector<double> counts;  // [layer * E], summed over the world below
  for (const RouterOutput& routing : out.routing) {
    at::Tensor ids = routing.topk_ids_TK.reshape({-1}).to(at::kCPU);
    at::Tensor c = at::bincount(ids, /*weights=*/{}, num_experts).to(at::kDouble).contiguous();
    counts.insert(counts.end(), c.data_ptr<double>(), c.data_ptr<double>() + num_experts);
  }
  world.AllReduceHost(counts, ReduceOp::kSum);
  std::vector<std::vector<int64_t>> load(out.routing.size(), std::vector<int64_t>(num_experts));
  for (size_t l = 0; l < out.routing.size(); ++l) {
    for (int64_t e = 0; e < num_experts; ++e) {
      load[l][e] = static_cast<int64_t>(counts[l * num_experts + e]);
    }
  }
  return load;
}

std::vector<ExpertPlacement> PlaceExperts(int64_t num_layers, int64_t num_experts, int ep,
                                          PlacementPolicy policy,
                                          const std::vector<std::vector<int64_t>>& load) {
  if (policy == PlacementPolicy::kBalanced) {
    CEMOE_CHECK(static_cast<int64_t>(load.size()) == num_layers,
                "balanced placement needs the expert load of {} layers, got {}", num_layers,
                load.size());
  }
  std::vector<ExpertPlacement> placements;
  for (int64_t l = 0; l < num_layers; ++l) {
    placements.push_back(
        MakePlacement(num_experts, ep, policy,
                      policy == PlacementPolicy::kBalanced ? load[l] : std::vector<int64_t>{}));
  }
  return placements;
}

void ShardExperts(CausalLMImpl& model, ProcessGroups& groups,
                  const std::vector<ExpertPlacement>& placements, DispatcherOptions options) {
  std::vector<MoeLayer> layers = model.moe_layers();
  CEMOE_CHECK(layers.size() == placements.size(), "ShardExperts: {} placements for {} MoE layers",
              placements.size(), layers.size());
  for (size_t l = 0; l < layers.size(); ++l) {
    layers[l]->set_dispatcher(MakeTokenDispatcher(groups.ep_group(), placements[l], options));
  }
}

ParameterSplit SplitParameters(const torch::nn::Module& model) {
  ParameterSplit split;
  for (const auto& item : model.named_parameters(/*recurse=*/true)) {
    (IsExpertParameterName(item.key()) ? split.expert : split.dense).push_back(item.value());
  }
  return split;
}

std::string DescribePlacements(const std::vector<ExpertPlacement>& placements) {
  std::string out;
  for (size_t l = 0; l < placements.size(); ++l) {
    out += fmt::format("{}layer {}: {}", l == 0 ? "" : "\n", l, placements[l].ToString());
  }
  return out;
}

}  // namespace cemoe
