// placement.h: which experts of an MoE layer live on which rank of the EP group.
//
// Every layer's E experts are split over the ep ranks of an EP group, exactly E / ep per rank
// (E not divisible by ep is an error naming both values). Policies:
//   contiguous   rank r holds experts [r * E/ep, (r + 1) * E/ep)
//   round_robin  rank r holds experts r, r + ep, r + 2 ep, ...
//   balanced     longest-processing-time bin packing of measured per-expert token counts: experts
//                in decreasing load (ties: lower id first) each go to the least-loaded rank that
//                still has room (ties: lower rank), so expected tokens per rank are as equal as
//                the counts allow, with exactly E/ep experts per rank.
// A rank's local experts are listed in increasing global id; that is the local order of
// TokenDispatcher::local_expert_ids(). The placement changes where experts compute, never what
// they compute; checkpoints and exports name experts by global id. Every rank must build the
// same placement: measure counts and reduce them over the world before calling MakePlacement
// (parallel/placement_measure.h).
// Thread-safety: plain values and pure functions.
#pragma once

#include <cstdint>
#include <nlohmann/json_fwd.hpp>
#include <string>
#include <vector>

namespace cemoe {

enum class PlacementPolicy { kContiguous, kRoundRobin, kBalanced };

// "" and "contiguous" -> kContiguous; "round_robin"; "balanced"; anything else throws.
PlacementPolicy ParsePlacementPolicy(const std::string& name);
const char* PlacementPolicyName(PlacementPolicy policy);

struct ExpertPlacement {
  int64_t num_experts = 0;                            // E
  int ep = 1;                                         // ranks in the EP group
  std::vector<int> rank_of_expert;                    // [E] owning EP rank
  std::vector<int64_t> local_index_of_expert;         // [E] position in the owner's local list
  std::vector<std::vector<int64_t>> experts_of_rank;  // [ep][E / ep] global ids, increasing

  int64_t experts_per_rank() const { return num_experts / ep; }
  // "rank 0: 0 1 4 5 | rank 1: 2 3 6 7"
  std::string ToString() const;
};

// tokens_per_expert ([E]) is needed by kBalanced only and ignored by the others.
ExpertPlacement MakePlacement(int64_t num_experts, int ep, PlacementPolicy policy,
                              const std::vector<int64_t>& tokens_per_expert = {});

// Expected tokens per rank under a placement ([ep]); for logs and tests.
std::vector<int64_t> TokensPerRank(const ExpertPlacement& placement,
                                   const std::vector<int64_t>& tokens_per_expert);

// Checkpoint form: {"num_experts": E, "ep": ep, "experts_of_rank": [[...], ...]} per layer.
nlohmann::json PlacementToJson(const ExpertPlacement& placement);
ExpertPlacement PlacementFromJson(const nlohmann::json& json);  // validates

}  // namespace cemoe
