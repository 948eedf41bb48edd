#include "parallel/placement.h"

#include <fmt/format.h>
#include <fmt/ranges.h>

#include <algorithm>
#include <cstdint>
#include <nlohmann/json.hpp>
#include <numeric>

#include "model/check.h"
#include "model/json_file.h"

namespace cemoe {
namespace {

// Fills rank_of_expert / local_index_of_expert from experts_of_rank and checks it is a partition.
void Index(ExpertPlacement& p) {
  p.rank_of_expert.assign(p.num_experts, -1);
  p.local_index_of_expert.assign(p.num_experts, -1);
  for (int r = 0; r < p.ep; ++r) {
    std::vector<int64_t>& ids = p.experts_of_rank[r];
    std::sort(ids.begin(), ids.end());
    CEMOE_CHECK(static_cast<int64_t>(ids.size()) == p.experts_per_rank(),
                "placement: rank {} holds {} experts, expected {}", r, ids.size(),
                p.experts_per_rank());
    for (size_t i = 0; i < ids.size(); ++i) {
      const int64_t e = ids[i];
      CEMOE_CHECK(e >= 0 && e < p.num_experts, "placement: expert id {} out of range [0, {})", e,
                  p.num_experts);
      CEMOE_CHECK(p.rank_of_expert[e] < 0, "placement: expert {} placed twice", e);
      p.rank_of_expert[e] = r;
      p.local_index_of_expert[e] = static_cast<int64_t>(i);
    }
  }
}

}  // namespace

PlacementPolicy ParsePlacementPolicy(const std::string& name) {
  if (name.empty() || name == "contiguous") return PlacementPolicy::kContiguous;
  if (name == "round_robin") return PlacementPolicy::kRoundRobin;
  if (name == "balanced") return PlacementPolicy::kBalanced;
  CEMOE_FAIL("parallel.placement must be contiguous, round_robin or balanced, got '{}'", name);
}

const char* PlacementPolicyName(PlacementPolicy policy) {
  switch (policy) {
    case PlacementPolicy::kContiguous:
      return "contiguous";
    case PlacementPolicy::kRoundRobin:
      return "round_robin";
    case PlacementPolicy::kBalanced:
      return "balanced";
  }
  return "?";
}

std::string ExpertPlacement::ToString() const {
  std::string out;
  for (int r = 0; r < ep; ++r) {
    out += fmt::format("{}rank {}: {}", r == 0 ? "" : " | ", r, fmt::join(experts_of_rank[r], " "));
  }
  return out;
}

ExpertPlacement MakePlacement(int64_t num_experts, int ep, PlacementPolicy policy,
                              const std::vector<int64_t>& tokens_per_expert) {
  CEMOE_CHECK(ep >= 1, "parallel.ep must be at least 1, got {}", ep);
  CEMOE_CHECK(num_experts > 0 && num_experts % ep == 0,
              "moe.num_experts ({}) must be divisible by parallel.ep ({})", num_experts, ep);
  ExpertPlacement p;
  p.num_experts = num_experts;
  p.ep = ep;
  p.experts_of_rank.assign(ep, {});
  const int64_t per_rank = num_experts / ep;
  switch (policy) {
    case PlacementPolicy::kContiguous:
      for (int64_t e = 0; e < num_experts; ++e) p.experts_of_rank[e / per_rank].push_back(e);
      break;
    case PlacementPolicy::kRoundRobin:
      for (int64_t e = 0; e < num_experts; ++e) p.experts_of_rank[e % ep].push_back(e);
      break;
    case PlacementPolicy::kBalanced: {
      CEMOE_CHECK(static_cast<int64_t>(tokens_per_expert.size()) == num_experts,
                  "balanced placement needs {} per-expert token counts, got {}", num_experts,
                  tokens_per_expert.size());
      std::vector<int64_t> order(num_experts);
      std::iota(order.begin(), order.end(), 0);
      std::stable_sort(order.begin(), order.end(), [&](int64_t a, int64_t b) {
        return tokens_per_expert[a] > tokens_per_expert[b];
      });
      std::vector<int64_t> load(ep, 0);
      for (int64_t e : order) {
        int best = -1;
        for (int r = 0; r < ep; ++r) {
          if (static_cast<int64_t>(p.experts_of_rank[r].size()) == per_rank) continue;
          if (best < 0 || load[r] < load[best]) best = r;
        }
        p.experts_of_rank[best].push_back(e);
        load[best] += tokens_per_expert[e];
      }
      break;
    }
  }
  Index(p);
  return p;
}

std::vector<int64_t> TokensPerRank(const ExpertPlacement& placement,
                                   const std::vector<int64_t>& tokens_per_expert) {
  std::vector<int64_t> per_rank(placement.ep, 0);
  for (int64_t e = 0; e < placement.num_experts; ++e) {
    per_rank[placement.rank_of_expert[e]] += tokens_per_expert.at(e);
  }
  return per_rank;
}

nlohmann::json PlacementToJson(const ExpertPlacement& placement) {
  return nlohmann::json{{"num_experts", placement.num_experts},
                        {"ep", placement.ep},
                        {"experts_of_rank", placement.experts_of_rank}};
}

ExpertPlacement PlacementFromJson(const nlohmann::json& json) {
  ExpertPlacement p;
  p.num_experts = JsonInt64(json.at("num_experts"), "placement: field \"num_experts\"");
  const int64_t ep = JsonInt64(json.at("ep"), "placement: field \"ep\"");
  CEMOE_CHECK(ep >= 1 && ep <= INT32_MAX && p.num_experts >= 1 && p.num_experts % ep == 0,
              "placement: num_experts ({}) must be positive and divisible by ep ({})",
              p.num_experts, ep);
  p.ep = static_cast<int>(ep);
  const nlohmann::json& lists = json.at("experts_of_rank");
  CEMOE_CHECK(lists.is_array() && static_cast<int64_t>(lists.size()) == ep,
              "placement: field \"experts_of_rank\" must hold {} lists (one per rank), got {}", ep,
              JsonExcerpt(lists));
  // The lists must name every expert once, so their total length bounds num_experts before the
  // tables of size num_experts are allocated (a file cannot make us allocate more than it holds).
  int64_t listed = 0;
  for (const nlohmann::json& ids : lists) {
    CEMOE_CHECK(ids.is_array(), "placement: \"experts_of_rank\" holds {}, not a list of expert ids",
                JsonExcerpt(ids));
    listed += static_cast<int64_t>(ids.size());
  }
  CEMOE_CHECK(listed == p.num_experts,
              "placement: \"experts_of_rank\" lists {} experts, field \"num_experts\" is {}",
              listed, p.num_experts);
  for (const nlohmann::json& ids : lists) {
    std::vector<int64_t>& out = p.experts_of_rank.emplace_back();
    for (const nlohmann::json& id : ids) out.push_back(JsonInt64(id, "placement: expert id"));
  }
  Index(p);
  return p;
}

}  // namespace cemoe
