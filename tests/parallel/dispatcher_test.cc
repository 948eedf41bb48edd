// dispatcher_test.cc: AllToAllDispatcher against the LocalDispatcher (the reference) on values
// and gradients, under mpiexec -n 1, 2, 4, for every ep the world allows and every placement.
//
// Stand-in experts (written here, not the model's): expert g maps a row x with extra scale s to
//   y = (x * s) W_g + x * (g + 1),   W_g a fixed [D, D] matrix,
// so a row sent to the wrong expert, a scale that lost its token, or a gradient that went to the
// wrong place all change the numbers. Each rank routes its own tokens (ids, weights and values
// depend on the world rank); the reference runs the same tokens through LocalDispatcher with all
// experts. Expert weight gradients of the EP run must equal the reference's summed over the EP
// group (every rank's tokens reach the expert).
#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include <map>

#include "model/moe/token_dispatcher.h"
#include "parallel/all_to_all_dispatcher.h"
#include "parallel/dispatch_layout.h"
#include "tests/parallel/mpi_test_env.h"

namespace cemoe {
namespace {

constexpr int64_t kNumExperts = 8;
constexpr int64_t kHidden = 4;

struct Tokens {
  at::Tensor x_TD, ids_TK, weights_TK, scale_TD, tag_T, upstream_TD;
};

int64_t NumTokens(int world_rank, bool empty_rank1) {
  return (empty_rank1 && world_rank == 1) ? 0 : 5 + 3 * world_rank;
}

// Tokens of all ranks together: the most rows one expert can sum over for its weight gradient.
int64_t TotalTokens(int world) {
  int64_t n = 0;
  for (int r = 0; r < world; ++r) n += NumTokens(r, false);
  return n;
}

// The tokens of world rank `src` (any rank can regenerate any other rank's tokens).
Tokens MakeTokens(int src, int64_t k, bool empty_rank1, uint64_t seed) {
  const int64_t t = NumTokens(src, empty_rank1);
  Tokens tok;
  tok.x_TD = test::Randn({t, kHidden}, seed * 1000 + src).set_requires_grad(true);
  at::Generator gen = at::detail::createCPUGenerator(seed * 1000 + 500 + src);
  std::vector<at::Tensor> rows;
  for (int64_t i = 0; i < t; ++i)
    rows.push_back(at::randperm(kNumExperts, gen, at::kLong).slice(0, 0, k));
  tok.ids_TK = t > 0 ? at::stack(rows) : at::zeros({0, k}, at::kLong);
  tok.weights_TK =
      at::softmax(test::Randn({t, k}, seed * 1000 + 600 + src), 1).set_requires_grad(true);
  tok.scale_TD = test::Randn({t, kHidden}, seed * 1000 + 700 + src).set_requires_grad(true);
  tok.tag_T = at::arange(t, at::kLong) + src * 1000;
  tok.upstream_TD = test::Randn({t, kHidden}, seed * 1000 + 800 + src);
  return tok;
}

std::vector<at::Tensor> MakeExpertWeights() {
  std::vector<at::Tensor> w;
  for (int64_t g = 0; g < kNumExperts; ++g) {
    w.push_back((test::Randn({kHidden, kHidden}, 777 + g) * 0.3).set_requires_grad(true));
  }
  return w;
}

at::Tensor StandInExperts(const DispatchResult& r, const std::vector<int64_t>& ids,
                          const std::vector<at::Tensor>& w) {
  std::vector<at::Tensor> xs = r.x_RD.split_with_sizes(r.num_rows_per_local_expert);
  std::vector<at::Tensor> ss = r.extras_R[0].split_with_sizes(r.num_rows_per_local_expert);
  std::vector<at::Tensor> ys;
  for (size_t l = 0; l < ids.size(); ++l) {
    const int64_t g = ids[l];
    ys.push_back((xs[l] * ss[l]).matmul(w[g]) + xs[l] * static_cast<double>(g + 1));
  }
  return ys.empty() ? r.x_RD * 0 : at::cat(ys);
}

struct RunResult {
  at::Tensor out_TD;
  Tokens tok;
  std::vector<at::Tensor> w;
  DispatchResult routed;
};

RunResult RunLayer(TokenDispatcher& d, int rank, int64_t k, bool empty_rank1, uint64_t seed) {
  RunResult res;
  res.tok = MakeTokens(rank, k, empty_rank1, seed);
  res.w = MakeExpertWeights();
  res.routed = d.Dispatch(res.tok.x_TD, res.tok.ids_TK, {res.tok.scale_TD, res.tok.tag_T});
  at::Tensor y_RD = StandInExperts(res.routed, d.local_expert_ids(), res.w);
  res.out_TD = d.Combine(y_RD, *res.routed.handle, res.tok.weights_TK);
  (res.out_TD * res.tok.upstream_TD).sum().backward();
  return res;
}

at::Tensor GradOrZeros(const at::Tensor& t) {
  return t.grad().defined() ? t.grad() : at::zeros_like(t);
}

std::vector<int64_t> SomeLoad() {
  std::vector<int64_t> load(kNumExperts);
  for (int64_t e = 0; e < kNumExperts; ++e) load[e] = (e * 7) % 5 + e;
  return load;
}

TEST(AllToAllDispatcher, MatchesLocalDispatcherOnValuesAndGradients) {
  const int world = test::Session().world_size();
  for (int ep : test::EpSizes(world)) {
    ProcessGroups groups(test::Session(), test::TestOptions(ep));
    const int rank = groups.world_rank();
    for (PlacementPolicy policy :
         {PlacementPolicy::kContiguous, PlacementPolicy::kRoundRobin, PlacementPolicy::kBalanced}) {
      ExpertPlacement placement = MakePlacement(kNumExperts, ep, policy, SomeLoad());
      for (int64_t k : {1, 2, 3}) {
        for (bool empty_rank1 : {false, true}) {
          SCOPED_TRACE(fmt::format("ep {} placement {} k {} empty_rank1 {}", ep,
                                   PlacementPolicyName(policy), k, empty_rank1));
          const uint64_t seed = 10 * k + (empty_rank1 ? 1 : 0);
          LocalDispatcher local(kNumExperts);
          AllToAllDispatcher a2a(groups.ep_group(), placement);
          RunResult ref = RunLayer(local, rank, k, empty_rank1, seed);
          RunResult got = RunLayer(a2a, rank, k, empty_rank1, seed);

          // Values and gradients of everything on this rank's side. The two runs add in other
          // orders (expert rows batched differently, the combine and the EP all-reduce), so they
          // agree to SumTolerance of the additions along the longest chain: forward (x * s) W
          // (D) plus x (g + 1) and the combine (k); backward W^T (D) plus the identity term;
          // the rows of every rank for an expert's weight gradient, and the EP all-reduce (ep).
          const int64_t terms = (kHidden + 1 + k) + (kHidden + 1) + TotalTokens(world) + ep;
          EXPECT_TRUE(test::SumsAgree(got.out_TD, ref.out_TD, terms)) << "output";
          EXPECT_TRUE(test::SumsAgree(GradOrZeros(got.tok.x_TD), GradOrZeros(ref.tok.x_TD), terms))
              << "x gradient";
          EXPECT_TRUE(
              test::SumsAgree(GradOrZeros(got.tok.scale_TD), GradOrZeros(ref.tok.scale_TD), terms))
              << "scale gradient";
          EXPECT_TRUE(test::SumsAgree(GradOrZeros(got.tok.weights_TK),
                                      GradOrZeros(ref.tok.weights_TK), terms))
              << "weight gradient";

          // Expert side: rows per local expert and weight gradients are the EP group's sums.
          std::vector<at::Tensor> ref_grads;
          for (const at::Tensor& w : ref.w) ref_grads.push_back(GradOrZeros(w));
          at::Tensor ref_grad_E = at::stack(ref_grads).contiguous();
          groups.ep_group().AllReduce(ref_grad_E, ReduceOp::kSum);
          std::vector<double> ref_counts(ref.routed.num_rows_per_local_expert.begin(),
                                         ref.routed.num_rows_per_local_expert.end());
          groups.ep_group().AllReduceHost(ref_counts, ReduceOp::kSum);
          const std::vector<int64_t>& mine = a2a.local_expert_ids();
          ASSERT_EQ(got.routed.num_rows_per_local_expert.size(), mine.size());
          for (size_t l = 0; l < mine.size(); ++l) {
            EXPECT_EQ(got.routed.num_rows_per_local_expert[l], ref_counts[mine[l]]);
            EXPECT_TRUE(test::SumsAgree(GradOrZeros(got.w[mine[l]]), ref_grad_E[mine[l]], terms))
                << "expert " << mine[l];
          }

          // Every received row is its source token, next to its own extra, at an expert the
          // token chose.
          std::map<int, Tokens> sources;
          int64_t row = 0;
          for (size_t l = 0; l < mine.size(); ++l) {
            for (int64_t i = 0; i < got.routed.num_rows_per_local_expert[l]; ++i, ++row) {
              const int64_t tag = got.routed.extras_R[1][row].item<int64_t>();
              const int src = static_cast<int>(tag / 1000);
              const int64_t t = tag % 1000;
              if (!sources.count(src)) sources[src] = MakeTokens(src, k, empty_rank1, seed);
              const Tokens& s = sources[src];
              ASSERT_TRUE(got.routed.x_RD[row].equal(s.x_TD[t])) << "row " << row;
              ASSERT_TRUE(got.routed.extras_R[0][row].equal(s.scale_TD[t])) << "row " << row;
              EXPECT_TRUE((s.ids_TK[t] == mine[l]).any().item<bool>()) << "row " << row;
            }
          }
          EXPECT_EQ(row, got.routed.x_RD.size(0));
        }
      }
    }
  }
}

TEST(AllToAllDispatcher, DispatchThenCombineWithIdentityExpertsReturnsTheInput) {
  for (int ep : test::EpSizes(test::Session().world_size())) {
    ProcessGroups groups(test::Session(), test::TestOptions(ep));
    AllToAllDispatcher a2a(groups.ep_group(),
                           MakePlacement(kNumExperts, ep, PlacementPolicy::kRoundRobin));
    for (int64_t k : {1, 2, 4}) {
      Tokens tok = MakeTokens(groups.world_rank(), k, /*empty_rank1=*/false, 3);
      DispatchResult r = a2a.Dispatch(tok.x_TD, tok.ids_TK, {});
      at::Tensor w = at::full({tok.x_TD.size(0), k}, 1.0 / k);
      at::Tensor out = a2a.Combine(r.x_RD, *r.handle, w);
      // k copies of x / k added up: exact for k = 1; for k > 1 each addition may round (0.75 x
      // needs one more bit than x), so the sum of k terms has SumTolerance(k).
      if (k == 1) {
        EXPECT_TRUE(out.equal(tok.x_TD)) << "ep " << ep;
      } else {
        EXPECT_TRUE(test::SumsAgree(out, tok.x_TD, k)) << "ep " << ep << " k " << k;
      }
      (out * tok.upstream_TD).sum().backward();
      EXPECT_TRUE(test::SumsAgree(tok.x_TD.grad(), tok.upstream_TD, k))
          << "ep " << ep << " k " << k;
    }
  }
}

// Values and the gradients of x, the extra scale and the weights of `got` against `ref`, with
// the tolerance of MatchesLocalDispatcherOnValuesAndGradients.
void ExpectSameTokenSide(const RunResult& got, const RunResult& ref, int64_t terms) {
  EXPECT_TRUE(test::SumsAgree(got.out_TD, ref.out_TD, terms)) << "output";
  EXPECT_TRUE(test::SumsAgree(GradOrZeros(got.tok.x_TD), GradOrZeros(ref.tok.x_TD), terms))
      << "x gradient";
  EXPECT_TRUE(test::SumsAgree(GradOrZeros(got.tok.scale_TD), GradOrZeros(ref.tok.scale_TD), terms))
      << "scale gradient";
  EXPECT_TRUE(
      test::SumsAgree(GradOrZeros(got.tok.weights_TK), GradOrZeros(ref.tok.weights_TK), terms))
      << "weight gradient";
}

TEST(AllToAllDispatcher, CapacityDropsLaterAssignmentsAndTheyAddZero) {
  const int world = test::Session().world_size();
  for (int ep : test::EpSizes(world)) {
    ProcessGroups groups(test::Session(), test::TestOptions(ep));
    const int rank = groups.world_rank();
    DispatcherOptions options;
    options.capacity_factor = 0.5;
    AllToAllDispatcher a2a(groups.ep_group(),
                           MakePlacement(kNumExperts, ep, PlacementPolicy::kContiguous), options);
    const int64_t k = 2;
    RunResult got = RunLayer(a2a, rank, k, false, 5);
    // Reference: the drop rule applied locally, then the LocalDispatcher (which skips ids < 0),
    // on a fresh copy of the same tokens; gradients included (a dropped slot's weight gets 0).
    Tokens tok = MakeTokens(rank, k, false, 5);
    const int64_t capacity = ExpertCapacity(0.5, tok.x_TD.size(0), k, kNumExperts);
    at::Tensor kept_TK = ApplyCapacity(tok.ids_TK, kNumExperts, capacity);
    EXPECT_GT((kept_TK < 0).sum().item<int64_t>(), 0) << "the test should drop something";
    LocalDispatcher local(kNumExperts);
    RunResult ref;
    ref.tok = tok;
    ref.w = MakeExpertWeights();
    ref.routed = local.Dispatch(tok.x_TD, kept_TK, {tok.scale_TD, tok.tag_T});
    ref.out_TD = local.Combine(StandInExperts(ref.routed, local.local_expert_ids(), ref.w),
                               *ref.routed.handle, tok.weights_TK);
    (ref.out_TD * tok.upstream_TD).sum().backward();
    SCOPED_TRACE(fmt::format("ep {}", ep));
    ExpectSameTokenSide(got, ref, (kHidden + 1 + k) + (kHidden + 1) + TotalTokens(world) + ep);
    // Dropped slots: zero weight gradient, exactly.
    at::Tensor dropped = kept_TK < 0;
    EXPECT_TRUE(got.tok.weights_TK.grad().masked_select(dropped).eq(0).all().item<bool>());
  }
}

TEST(AllToAllDispatcher, SmallMessageLimitsGiveTheSameValuesAndGradients) {
  // Rows are 16 bytes (4 floats): a 20-byte limit sends one row per message (every chunk cut),
  // an 8-byte limit makes rows too large for a message (the communicator's default path: gather,
  // chunked all-to-all, scatter).
  const int world = test::Session().world_size();
  for (int64_t max_bytes : {int64_t{20}, int64_t{8}}) {
    ParallelOptions options = test::TestOptions(world);
    options.collectives.max_message_bytes = max_bytes;
    ProcessGroups groups(test::Session(), options);
    const int rank = groups.world_rank();
    for (bool empty_rank1 : {false, true}) {
      SCOPED_TRACE(fmt::format("max bytes {} empty_rank1 {}", max_bytes, empty_rank1));
      const int64_t k = 3;
      LocalDispatcher local(kNumExperts);
      AllToAllDispatcher a2a(groups.ep_group(),
                             MakePlacement(kNumExperts, world, PlacementPolicy::kRoundRobin));
      RunResult ref = RunLayer(local, rank, k, empty_rank1, 9);
      RunResult got = RunLayer(a2a, rank, k, empty_rank1, 9);
      ExpectSameTokenSide(got, ref, (kHidden + 1 + k) + (kHidden + 1) + TotalTokens(world) + world);
    }
  }
}

}  // namespace
}  // namespace cemoe
