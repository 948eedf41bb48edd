#include "parallel/sharded_checkpoint.h"

#include <ATen/ATen.h>
#include <fmt/format.h>

#include <cstdio>
#include <exception>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <utility>

#include "model/atomic_folder.h"
#include "model/causal_lm.h"
#include "model/check.h"
#include "model/hf_checkpoint.h"
#include "model/json_file.h"
#include "model/safetensors.h"
#include "parallel/all_or_nothing.h"
#include "parallel/model_sharding.h"

namespace cemoe {
namespace fs = std::filesystem;

namespace {

constexpr const char* kPlacementFormat = "cemoe-placement-v1";

// [layer] the experts of EP rank `ep_rank`.
std::vector<std::vector<int64_t>> HeldExperts(const ModelPlacement& placement, int ep_rank) {
  std::vector<std::vector<int64_t>> held;
  for (const ExpertPlacement& p : placement.layers) held.push_back(p.experts_of_rank.at(ep_rank));
  return held;
}

// Rank 0 brings <dir> to a whole state after an interrupted save (model/atomic_folder.h) before
// any rank reads it; what it did is printed once.
void RecoverOnRoot(Communicator& world, const std::string& dir) {
  AllOrNothing(world, fmt::format("loading {}", dir), [&] {
    if (world.rank() != 0) return;
    const std::string note = RecoverInterruptedSave(dir);
    if (!note.empty()) std::fprintf(stderr, "cemoe: %s\n", note.c_str());
  });
}

}  // namespace

void SavePlacementFile(const std::string& dir, const ModelPlacement& placement) {
  nlohmann::json layers = nlohmann::json::array();
  for (const ExpertPlacement& p : placement.layers) layers.push_back(PlacementToJson(p));
  nlohmann::json j{{"format", kPlacementFormat},
                   {"policy", PlacementPolicyName(placement.policy)},
                   {"ep", placement.layers.empty() ? 1 : placement.layers[0].ep},
                   {"layers", std::move(layers)}};
  WriteTextFileAtomically((fs::path(dir) / kPlacementFileName).string(), j.dump(1) + "\n");
}

std::optional<ModelPlacement> LoadPlacementFile(const std::string& dir, int64_t num_layers,
                                                int64_t num_experts) {
  const std::string path = (fs::path(dir) / kPlacementFileName).string();
  if (!fs::exists(path)) return std::nullopt;
  ModelPlacement out;
  try {
    const nlohmann::json j = ReadJsonFile(path, "placement file");
    CEMOE_CHECK(j.value("format", "") == kPlacementFormat,
                "{}: field \"format\" must be \"{}\", got {}", path, kPlacementFormat,
                j.contains("format") ? JsonExcerpt(j["format"]) : "nothing");
    out.policy = ParsePlacementPolicy(j.at("policy").get<std::string>());
    const nlohmann::json& layers = j.at("layers");
    CEMOE_CHECK(layers.is_array() && static_cast<int64_t>(layers.size()) == num_layers,
                "{}: field \"layers\" holds {} placements, the model has {} MoE layers", path,
                layers.is_array() ? layers.size() : 0, num_layers);
    for (size_t l = 0; l < layers.size(); ++l) {
      ExpertPlacement p = PlacementFromJson(layers[l]);
      CEMOE_CHECK(p.num_experts == num_experts,
                  "{}: layers[{}].num_experts is {}, the model has {} experts", path, l,
                  p.num_experts, num_experts);
      CEMOE_CHECK(p.ep == JsonInt64(j.at("ep"), "field \"ep\""),
                  "{}: layers[{}].ep is {}, field \"ep\" is {}", path, l, p.ep,
                  JsonExcerpt(j.at("ep")));
      out.layers.push_back(std::move(p));
    }
  } catch (const nlohmann::json::exception& e) {
    CEMOE_FAIL("{}: malformed placement file: {}", path, e.what());
  } catch (const Error& e) {
    const std::string what = e.what();
    if (what.find(path) != std::string::npos) throw;
    CEMOE_FAIL("{}: {}", path, what);
  }
  return out;
}

ModelPlacement ChooseModelPlacement(const std::string& dir, ProcessGroups& groups,
                                    PlacementPolicy policy, const at::Tensor& sample_tokens_BS,
                                    int64_t top_k, DispatcherOptions options) {
  RecoverOnRoot(groups.world(), dir);
  const ModelConfig config = LoadModelConfig(dir);
  const int64_t L = config.num_hidden_layers, E = config.num_experts;
  if (std::optional<ModelPlacement> saved = LoadPlacementFile(dir, L, E)) {
    if (saved->policy == policy && !saved->layers.empty() && saved->layers[0].ep == groups.ep()) {
      return *saved;
    }
  }
  ModelPlacement out;
  out.policy = policy;
  if (policy != PlacementPolicy::kBalanced) {
    out.layers = PlaceExperts(L, E, groups.ep(), policy);
    return out;
  }
  // Measure with a contiguously sharded model, so no rank holds more than its share.
  ModelPlacement probe{PlacementPolicy::kContiguous,
                       PlaceExperts(L, E, groups.ep(), PlacementPolicy::kContiguous)};
  std::vector<std::vector<int64_t>> load;
  {
    CausalLM model = LoadExpertParallelModel(dir, groups, probe, options);
    if (top_k > 0) model->set_top_k(top_k);
    model->eval();
    load = MeasureExpertLoad(*model, sample_tokens_BS, groups.world());
  }
  out.layers = PlaceExperts(L, E, groups.ep(), policy, load);
  return out;
}

CausalLM LoadExpertParallelModel(const std::string& dir, ProcessGroups& groups,
                                 const ModelPlacement& placement, DispatcherOptions options) {
  // A rank reading a large model from cold storage is busy, not stopped: the load budget.
  ScopedPhase phase(groups, fmt::format("loading {}", dir));
  RecoverOnRoot(groups.world(), dir);
  const ModelConfig config = LoadModelConfig(dir);
  CEMOE_CHECK(static_cast<int64_t>(placement.layers.size()) == config.num_hidden_layers,
              "{}: {} expert placements for {} MoE layers", dir, placement.layers.size(),
              config.num_hidden_layers);
  for (size_t l = 0; l < placement.layers.size(); ++l) {
    CEMOE_CHECK(placement.layers[l].num_experts == config.num_experts &&
                    placement.layers[l].ep == groups.ep(),
                "{}: layer {} is placed for {} experts over ep {}, the model has {} experts and "
                "parallel.ep is {}",
                dir, l, placement.layers[l].num_experts, placement.layers[l].ep, config.num_experts,
                groups.ep());
  }
  // A tensor missing or malformed in the part one rank reads fails every rank here, instead of
  // leaving the others waiting for it in the first forward's all-to-all.
  CausalLM model{nullptr};
  AllOrNothing(groups.world(), fmt::format("loading {}", dir), [&] {
    CheckConfigMatchesCheckpoint(config, dir);
    model = CausalLM(config, HeldExperts(placement, groups.ep_rank()));
    LoadHfWeights(*model, dir);
  });
  ShardExperts(*model, groups, placement.layers, options);
  return model;
}

void SaveExpertParallelCheckpoint(const CausalLMImpl& model, ProcessGroups& groups,
                                  const ModelPlacement& placement, const std::string& dir_arg,
                                  uint64_t max_shard_bytes) {
  ScopedPhase phase(groups, fmt::format("saving {}", dir_arg));
  const std::string dir = NormalizeFolderPath(dir_arg);
  const ModelConfig& config = model.config();
  Communicator& world = groups.world();
  const bool root = groups.world_rank() == 0;
  const bool writes_experts = groups.dp_rank() == 0;
  const fs::path staging = fs::path(StagingFolderOf(dir));
  const std::string what = fmt::format("saving checkpoint {}", dir);

  // 1. Rank 0 recovers <dir> from an interrupted save and creates the staging folder (every
  // rank writes into it; only rank 0 commits or, on failure, removes it).
  std::optional<FolderWrite> folder;
  AllOrNothing(world, what, [&] {
    if (root) folder.emplace(dir);
  });

  // 2. This rank's tensors in storage dtype: dense ones on rank 0, experts on dp group 0.
  // (Inside AllOrNothing too: a rank that runs out of memory here must not strand the others.)
  std::vector<NamedTensors> shards;
  AllOrNothing(world, what, [&] {
    const at::ScalarType dtype = HfStorageDtype(config);
    NamedTensors mine;
    for (const auto& item : model.named_parameters(/*recurse=*/true)) {
      const bool expert = IsExpertParameterName(item.key());
      if (expert ? writes_experts : root) {
        mine.emplace_back(item.key(), item.value().detach().to(at::kCPU).to(dtype).contiguous());
      }
    }
    mine = ToHfTensors(config, std::move(mine));
    shards = PackShards(std::move(mine), max_shard_bytes);
  });

  // 3. Shard numbers in world-rank order, then every writer writes its own files.
  std::vector<double> counts(groups.world_size(), 0.0);
  counts[groups.world_rank()] = static_cast<double>(shards.size());
  world.AllReduceHost(counts, ReduceOp::kSum);
  int first = 0, total = 0;
  for (int r = 0; r < groups.world_size(); ++r) {
    if (r < groups.world_rank()) first += static_cast<int>(counts[r]);
    total += static_cast<int>(counts[r]);
  }
  AllOrNothing(world, what, [&] {
    for (size_t s = 0; s < shards.size(); ++s) {
      const std::string name =
          total == 1 ? kSingleFileName : ShardFileName(first + static_cast<int>(s) + 1, total);
      SaveSafetensors((staging / name).string(), shards[s]);
    }
  });
  shards.clear();

  // 4. Rank 0: index from the shards' own headers, config, placement; then the swap.
  AllOrNothing(world, what, [&] {
    if (!root) return;
    if (total > 1) {
      ShardIndex index;
      uint64_t bytes = 0;
      for (int s = 1; s <= total; ++s) {
        const std::string name = ShardFileName(s, total);
        SafetensorsFile file((staging / name).string());
        for (const TensorInfo& info : file.header().tensors) {
          CEMOE_CHECK(index.weight_map.emplace(info.name, name).second,
                      "{}: tensor \"{}\" was written by two ranks", dir, info.name);
          bytes += info.num_bytes();
        }
      }
      index.total_size = bytes;
      WriteTextFileAtomically((staging / kIndexFileName).string(), SerializeShardIndex(index));
    }
    SaveModelConfig(config, staging.string());
    SavePlacementFile(staging.string(), placement);
    folder->Commit();
  });
}

}  // namespace cemoe
