// grad_sync_test.cc: gradient reduction groups and the global gradient norm, with gradients whose
// sums and norms are worked out by hand: on world rank w every dense gradient entry is w + 1 and
// every expert gradient entry is 10 * (w + 1).
#include "parallel/grad_sync.h"

#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include <cmath>

#include "tests/parallel/mpi_test_env.h"

namespace cemoe {
namespace {

struct Params {
  at::Tensor dense, expert, unused_expert, partly_used_expert;
  ParameterSplit split;
};

Params MakeParams(int w) {
  Params p;
  p.dense = at::zeros({3}, at::kFloat).set_requires_grad(true);
  p.expert = at::zeros({2, 2}, at::kFloat).set_requires_grad(true);
  p.unused_expert = at::zeros({5}, at::kFloat).set_requires_grad(true);  // no gradient anywhere
  p.partly_used_expert = at::zeros({2}, at::kFloat).set_requires_grad(true);
  if (w == 0) p.partly_used_expert.mutable_grad() = at::full({2}, 3.0);  // only on rank 0
  p.dense.mutable_grad() = at::full({3}, w + 1.0);
  p.expert.mutable_grad() = at::full({2, 2}, 10.0 * (w + 1));
  p.split.dense = {p.dense};
  p.split.expert = {p.expert, p.unused_expert, p.partly_used_expert};
  return p;
}

TEST(GradSync, DenseOverWorldExpertsOverTheirEdpGroup) {
  for (int ep : test::EpSizes(test::Session().world_size())) {
    ProcessGroups groups(test::Session(), test::TestOptions(ep));
    const int w = groups.world_rank(), n = groups.world_size();
    Params p = MakeParams(w);
    ReduceGradients(groups, p.split);
    // Dense: sum over all ranks of (w + 1).
    EXPECT_TRUE(p.dense.grad().equal(at::full({3}, n * (n + 1) / 2.0))) << "ep " << ep;
    // Experts: sum over the ranks with the same ep_rank: w' = d * ep + (w % ep), d < dp.
    double edp_sum = 0;
    for (int d = 0; d < groups.dp(); ++d) edp_sum += 10.0 * (d * ep + w % ep + 1);
    EXPECT_TRUE(p.expert.grad().equal(at::full({2, 2}, edp_sum))) << "ep " << ep;
    // Undefined everywhere stays undefined (the optimiser skips it, as one process would);
    // defined on rank 0 only: the other ranks of rank 0's edp group take part with zeros.
    EXPECT_FALSE(p.unused_expert.grad().defined());
    if (w % ep == 0) {
      ASSERT_TRUE(p.partly_used_expert.grad().defined());
      EXPECT_TRUE(p.partly_used_expert.grad().equal(at::full({2}, 3.0)));
    } else {
      EXPECT_FALSE(p.partly_used_expert.grad().defined());
    }
  }
}

TEST(GradSync, GlobalNormCountsEveryParameterOnceAndClips) {
  for (int ep : test::EpSizes(test::Session().world_size())) {
    ProcessGroups groups(test::Session(), test::TestOptions(ep));
    const int w = groups.world_rank();
    Params p = MakeParams(w);
    ReduceGradients(groups, p.split);
    // After the reduction: dense (3 entries, value a) counted once; each EP rank e holds a
    // distinct expert shard (4 entries of value b_e); shards of the EP group are summed.
    const double a = p.dense.grad()[0].item<double>();
    // The partly used expert (gradient 3 on two entries) lives in rank 0's edp group.
    const double partly_sq = p.partly_used_expert.grad().defined() ? 2 * 9.0 : 0.0;
    std::vector<double> b_sq{4 * std::pow(p.expert.grad()[0][0].item<double>(), 2) + partly_sq};
    groups.ep_group().AllReduceHost(b_sq, ReduceOp::kSum);
    const double expected = std::sqrt(3 * a * a + b_sq[0]);
    // The squares are small integers, summed exactly in float64 in any order; only the square
    // root rounds (half an ulp): a few float64 ulps of the value.
    const double norm = GlobalGradNorm(groups.ep_group(), p.split);
    EXPECT_NEAR(norm, expected, test::FewUlps(expected, 4, test::kFloat64Eps)) << "ep " << ep;
    // Worked value for one rank (ep 1, world 1): a = 1, b = 10, partly 3 -> sqrt(3 + 400 + 18).
    if (groups.world_size() == 1) {
      EXPECT_NEAR(norm, std::sqrt(421.0), test::FewUlps(std::sqrt(421.0), 4, test::kFloat64Eps));
    }

    const double before = ClipGradNormGlobal(groups.ep_group(), p.split, 1.0);
    EXPECT_NEAR(before, expected, test::FewUlps(expected, 4, test::kFloat64Eps));
    // Clipping scales by 1 / (norm + 1e-6), so the new norm is 1 - 1e-6 / (norm + 1e-6), and
    // each scaled float32 entry rounds by at most eps / 2 relative: a few float32 ulps on top.
    EXPECT_NEAR(GlobalGradNorm(groups.ep_group(), p.split), 1.0, 1e-6 / before + test::FewUlps(1.0))
        << "ep " << ep;
  }
}

TEST(GradSync, GlobalCountSumsOverTheGroup) {
  ProcessGroups groups(test::Session(), test::TestOptions(1));
  const int n = groups.world_size();
  EXPECT_EQ(GlobalCount(groups.world(), groups.world_rank() + 1), n * (n + 1) / 2.0);
}

}  // namespace
}  // namespace cemoe
