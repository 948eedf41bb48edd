// dispatch_layout_test.cc: the local steps of the all-to-all dispatcher on a hand-worked example.
//
// 2 ranks, 4 experts, round-robin placement: rank 0 holds experts {0, 2}, rank 1 holds {1, 3}.
// Bucket = rank * 2 + local index: expert 0 -> 0, 2 -> 1, 1 -> 2, 3 -> 3.
// Tokens (T = 3, K = 2): topk_ids = [[3, 0], [1, 2], [2, 3]]
//   buckets      = [[3, 0], [2, 1], [1, 3]] -> flat [3, 0, 2, 1, 1, 3]
//   sorted order = [1, 3, 4, 2, 0, 5]  (bucket 0: 1; bucket 1: 3, 4; bucket 2: 2; bucket 3: 0, 5)
//   token of row = [0, 1, 2, 1, 0, 2]
//   counts       = [1, 2, 1, 2] -> rows per destination rank [3, 3]
// Receiving side (rank 0): from rank 0 counts [1, 2], from rank 1 [2, 0]. Received rows:
//   0 = (src 0, expert 0), 1-2 = (src 0, expert 2), 3-4 = (src 1, expert 0).
//   Expert-major: expert 0 <- rows 0, 3, 4; expert 2 <- rows 1, 2: gather = [0, 3, 4, 1, 2],
//   rows per expert [3, 2]; scatter (the inverse) = [0, 3, 4, 1, 2].
#include "parallel/dispatch_layout.h"

#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include "model/check.h"
#include "model/moe/permute.h"

namespace cemoe {
namespace {

std::vector<int64_t> ToVector(const at::Tensor& t) {
  at::Tensor c = t.to(at::kLong).contiguous();
  return std::vector<int64_t>(c.data_ptr<int64_t>(), c.data_ptr<int64_t>() + c.numel());
}

at::Tensor Ids(std::vector<int64_t> flat, int64_t k) {
  return at::tensor(flat, at::kLong).reshape({-1, k});
}

TEST(DispatchLayout, HandWorkedTwoRanks) {
  ExpertPlacement placement = MakePlacement(4, 2, PlacementPolicy::kRoundRobin);
  at::Tensor buckets = DestinationBuckets(Ids({3, 0, 1, 2, 2, 3}, 2), placement);
  EXPECT_EQ(ToVector(buckets), (std::vector<int64_t>{3, 0, 2, 1, 1, 3}));
  Permutation perm = SortByBucket(buckets, 4);
  EXPECT_EQ(ToVector(perm.order_R), (std::vector<int64_t>{1, 3, 4, 2, 0, 5}));
  EXPECT_EQ(ToVector(perm.token_R), (std::vector<int64_t>{0, 1, 2, 1, 0, 2}));
  EXPECT_EQ(perm.counts, (std::vector<int64_t>{1, 2, 1, 2}));
  EXPECT_EQ(RowsPerRank(perm.counts, 2), (std::vector<int64_t>{3, 3}));

  ExpertMajorOrder order = MakeExpertMajorOrder({1, 2, 2, 0}, 2);
  EXPECT_FALSE(order.identity);
  EXPECT_EQ(ToVector(order.gather_R), (std::vector<int64_t>{0, 3, 4, 1, 2}));
  EXPECT_EQ(ToVector(order.scatter_R), (std::vector<int64_t>{0, 3, 4, 1, 2}));
  EXPECT_EQ(order.rows_per_expert, (std::vector<int64_t>{3, 2}));
  // Gathering then scattering is the identity.
  at::Tensor rows = at::arange(5, at::kLong) * 10;
  EXPECT_TRUE(rows.index_select(0, order.gather_R).index_select(0, order.scatter_R).equal(rows));
}

TEST(DispatchLayout, ExpertMajorOrderOfAnotherShape) {
  // 3 sources, 2 experts: counts (s, e) = (0,0) 1, (0,1) 0, (1,0) 1, (1,1) 2, (2,0) 0, (2,1) 1.
  // Received rows: 0 = (0,0), 1 = (1,0), 2-3 = (1,1), 4 = (2,1).
  // Expert 0 <- 0, 1; expert 1 <- 2, 3, 4.
  ExpertMajorOrder order = MakeExpertMajorOrder({1, 0, 1, 2, 0, 1}, 3);
  EXPECT_EQ(ToVector(order.gather_R), (std::vector<int64_t>{0, 1, 2, 3, 4}));
  EXPECT_EQ(order.rows_per_expert, (std::vector<int64_t>{2, 3}));
  // 2 sources, 2 experts, (s, e) = (0,0) 2, (0,1) 1, (1,0) 1, (1,1) 1: rows 0-1, 2, 3, 4.
  // Expert 0 <- 0, 1, 3; expert 1 <- 2, 4. Inverse: row 2 sits at 3, row 3 at 2.
  ExpertMajorOrder o2 = MakeExpertMajorOrder({2, 1, 1, 1}, 2);
  EXPECT_EQ(ToVector(o2.gather_R), (std::vector<int64_t>{0, 1, 3, 2, 4}));
  EXPECT_EQ(ToVector(o2.scatter_R), (std::vector<int64_t>{0, 1, 3, 2, 4}));
  EXPECT_TRUE(MakeExpertMajorOrder({4, 5}, 1).identity);
  EXPECT_TRUE(MakeExpertMajorOrder({4, 5}, 2).identity);
}

// ids [[0, 1], [0, 2], [0, 1], [1, 0]], E = 3. Factor 1.0: C = ceil(8 / 3) = 3: expert 0 appears
// at (0,0), (1,0), (2,0), (3,1): the fourth is dropped. Factor 0.5: C = ceil(4 / 3) = 2:
// expert 0 keeps (0,0), (1,0); expert 1 keeps (0,1), (2,1) and drops (3,0); expert 2 keeps (1,1).
TEST(DispatchLayout, CapacityDropRule) {
  at::Tensor ids = Ids({0, 1, 0, 2, 0, 1, 1, 0}, 2);
  EXPECT_EQ(ExpertCapacity(1.0, 4, 2, 3), 3);
  EXPECT_EQ(ExpertCapacity(0.5, 4, 2, 3), 2);
  EXPECT_EQ(ExpertCapacity(0.0, 4, 2, 3), 0);
  EXPECT_EQ(ToVector(ApplyCapacity(ids, 3, 3)), (std::vector<int64_t>{0, 1, 0, 2, 0, 1, 1, -1}));
  EXPECT_EQ(ToVector(ApplyCapacity(ids, 3, 2)), (std::vector<int64_t>{0, 1, 0, 2, -1, 1, -1, -1}));
  // Dropped assignments map to bucket -1 and leave the sort.
  at::Tensor buckets = DestinationBuckets(ApplyCapacity(ids, 3, 2),
                                          MakePlacement(3, 1, PlacementPolicy::kContiguous));
  EXPECT_EQ(SortByBucket(buckets, 3).counts, (std::vector<int64_t>{2, 2, 1}));
}

TEST(DispatchLayout, RejectsOutOfRangeIds) {
  ExpertPlacement placement = MakePlacement(4, 2, PlacementPolicy::kContiguous);
  EXPECT_THROW(DestinationBuckets(Ids({0, 4}, 2), placement), Error);
  EXPECT_THROW(DestinationBuckets(at::zeros({2, 2}, at::kInt), placement), Error);
  EXPECT_THROW(RowsPerRank({1, 2, 3}, 2), Error);
}

}  // namespace
}  // namespace cemoe
