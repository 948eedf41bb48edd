// placement_test.cc: expert placement policies on hand-worked examples.
#include "parallel/placement.h"

#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "model/check.h"

namespace cemoe {
namespace {

using Ranks = std::vector<std::vector<int64_t>>;

TEST(Placement, ContiguousAndRoundRobin) {
  EXPECT_EQ(MakePlacement(8, 4, PlacementPolicy::kContiguous).experts_of_rank,
            (Ranks{{0, 1}, {2, 3}, {4, 5}, {6, 7}}));
  ExpertPlacement rr = MakePlacement(8, 4, PlacementPolicy::kRoundRobin);
  EXPECT_EQ(rr.experts_of_rank, (Ranks{{0, 4}, {1, 5}, {2, 6}, {3, 7}}));
  EXPECT_EQ(rr.rank_of_expert, (std::vector<int>{0, 1, 2, 3, 0, 1, 2, 3}));
  EXPECT_EQ(rr.local_index_of_expert, (std::vector<int64_t>{0, 0, 0, 0, 1, 1, 1, 1}));
  EXPECT_EQ(rr.ToString(), "rank 0: 0 4 | rank 1: 1 5 | rank 2: 2 6 | rank 3: 3 7");
  EXPECT_EQ(MakePlacement(4, 1, PlacementPolicy::kRoundRobin).experts_of_rank,
            (Ranks{{0, 1, 2, 3}}));
}

// Loads [10, 7, 4, 1] over 2 ranks. Longest first: 0 (10) -> rank 0; 1 (7) -> rank 1;
// 2 (4) -> rank 1 (7 < 10), now 11; 3 (1) -> rank 0 (rank 1 is full), now 11.
// Contiguous would give 17 / 5.
TEST(Placement, BalancedIsLongestProcessingTimeWithEqualExpertCounts) {
  const std::vector<int64_t> load{10, 7, 4, 1};
  ExpertPlacement p = MakePlacement(4, 2, PlacementPolicy::kBalanced, load);
  EXPECT_EQ(p.experts_of_rank, (Ranks{{0, 3}, {1, 2}}));
  EXPECT_EQ(TokensPerRank(p, load), (std::vector<int64_t>{11, 11}));
  EXPECT_EQ(TokensPerRank(MakePlacement(4, 2, PlacementPolicy::kContiguous), load),
            (std::vector<int64_t>{17, 5}));
  // Loads 8..1 over 4 ranks: 8, 7, 6, 5 open the ranks, then 4 -> rank 3, 3 -> rank 2,
  // 2 -> rank 1, 1 -> rank 0: every rank gets 9.
  const std::vector<int64_t> load8{8, 7, 6, 5, 4, 3, 2, 1};
  ExpertPlacement p8 = MakePlacement(8, 4, PlacementPolicy::kBalanced, load8);
  EXPECT_EQ(p8.experts_of_rank, (Ranks{{0, 7}, {1, 6}, {2, 5}, {3, 4}}));
  EXPECT_EQ(TokensPerRank(p8, load8), (std::vector<int64_t>{9, 9, 9, 9}));
  // A skewed load still gets exactly E / ep experts per rank.
  ExpertPlacement skew = MakePlacement(4, 2, PlacementPolicy::kBalanced, {100, 0, 0, 0});
  EXPECT_EQ(skew.experts_of_rank, (Ranks{{0, 3}, {1, 2}}));
}

TEST(Placement, ErrorsNameTheValues) {
  try {
    MakePlacement(6, 4, PlacementPolicy::kContiguous);
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_NE(
        std::string(e.what()).find("moe.num_experts (6) must be divisible by parallel.ep (4)"),
        std::string::npos)
        << e.what();
  }
  EXPECT_THROW(MakePlacement(4, 2, PlacementPolicy::kBalanced, {1, 2}), Error);
  EXPECT_THROW(ParsePlacementPolicy("random"), Error);
  EXPECT_EQ(ParsePlacementPolicy(""), PlacementPolicy::kContiguous);
  EXPECT_EQ(ParsePlacementPolicy("balanced"), PlacementPolicy::kBalanced);
}

TEST(Placement, JsonRoundTripNamesExpertsByGlobalId) {
  ExpertPlacement p = MakePlacement(8, 2, PlacementPolicy::kBalanced, {1, 2, 3, 4, 5, 6, 7, 8});
  nlohmann::json j = PlacementToJson(p);
  EXPECT_EQ(j.at("experts_of_rank").get<Ranks>(), p.experts_of_rank);
  ExpertPlacement back = PlacementFromJson(j);
  EXPECT_EQ(back.rank_of_expert, p.rank_of_expert);
  EXPECT_EQ(back.local_index_of_expert, p.local_index_of_expert);
  j["experts_of_rank"][0][0] = j["experts_of_rank"][1][0];  // one expert twice
  EXPECT_THROW(PlacementFromJson(j), Error);
}

// A huge num_experts used to reach an allocation of that size (std::bad_alloc); the lists must
// name every expert, so the file bounds what is allocated. Values are quoted as written.
TEST(Placement, HostileJsonIsANamedErrorNotAnAllocation) {
  const nlohmann::json good = PlacementToJson(MakePlacement(4, 2, PlacementPolicy::kContiguous));
  auto error = [](const nlohmann::json& j) -> std::string {
    try {
      PlacementFromJson(j);
    } catch (const Error& e) {
      return e.what();
    }
    return "no error";
  };
  nlohmann::json j = good;
  j["num_experts"] = int64_t{1} << 60;
  EXPECT_NE(error(j).find("lists 4 experts, field \"num_experts\" is 1152921504606846976"),
            std::string::npos)
      << error(j);
  j = good;
  j["num_experts"] = 18446744073709551615ull;
  EXPECT_NE(error(j).find("18446744073709551615 does not fit"), std::string::npos) << error(j);
  j = good;
  j["ep"] = 4294967298LL;  // 2^32 + 2 used to truncate to 2
  EXPECT_NE(error(j).find("ep (4294967298)"), std::string::npos) << error(j);
  j = good;
  j["experts_of_rank"][1] = "x";
  EXPECT_NE(error(j).find("\"experts_of_rank\" holds \"x\""), std::string::npos) << error(j);
}

}  // namespace
}  // namespace cemoe
