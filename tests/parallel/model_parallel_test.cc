// model_parallel_test.cc: the real model under expert parallelism, against one process.
//   - an MoE layer with the all-to-all dispatcher equals the same layer with the LocalDispatcher
//     on values and gradients (input, router, experts);
//   - a few AdamW steps of the tiny OLMoE model under every (dp, ep) the world allows and every
//     placement policy give the same loss at every step and the same parameters as a
//     single-process reference run on every rank, to float32 rounding (tests/tolerance.h).
// Every rank trains on its own rows of one global batch; the loss is normalised by the global
// number of loss tokens (rows mask different numbers of positions, so the split is unequal).
#include <ATen/ATen.h>
#include <gtest/gtest.h>
#include <torch/optim/adamw.h>
#include <torch/types.h>

// clip_grad.h does not include torch/types.h itself: it must come after it (separate block).
#include <torch/nn/utils/clip_grad.h>

#include <cmath>
#include <cstdio>
#include <map>

#include "model/causal_lm.h"
#include "model/config.h"
#include "model/moe/moe_layer.h"
#include "parallel/model_sharding.h"
#include "tests/parallel/mpi_test_env.h"

namespace cemoe {
namespace {

constexpr int64_t kBatch = 4;  // global rows, split over the world (1, 2 or 4 ranks)
constexpr int64_t kSeq = 12;
constexpr int kSteps = 3;
// With kAdamEps (below) a step is about lr * g, so lr is large enough for the updates (~1e-3) to
// stand far above the rounding of the weights themselves (~1e-8).
constexpr double kLr = 5e-2;
constexpr double kMaxNorm = 0.5;
// AdamW's epsilon, above every gradient entry: clipping makes the global norm, hence every
// |g|, at most kMaxNorm. A step moves a weight by lr * m / (sqrt(v) + eps); with eps > |g| that is
// nearly linear in g (a relative error of g is one of the step, at most twice), which is what lets
// the weights be compared with a bound derived from the sums. With LibTorch's default 1e-8 an
// entry whose gradient is near 0 moves by lr * dg / eps for a rounding difference dg (up to
// 1e-4 for dg = 1e-9; measured here 4.3e-6 on a weight whose whole update was 3e-3), and a
// gradient scaled by a constant would go unseen (Adam divides the scale out).
constexpr double kAdamEps = 2 * kMaxNorm;
constexpr double kWeightDecay = 0.1;

ModelConfig TinyConfig() { return PresetConfig("olmoe", "tiny"); }

std::map<std::string, at::Tensor> Named(const torch::nn::Module& m) {
  std::map<std::string, at::Tensor> out;
  for (const auto& item : m.named_parameters(true)) out[item.key()] = item.value();
  return out;
}

at::Tensor GradOrZeros(const at::Tensor& t) {
  return t.grad().defined() ? t.grad() : at::zeros_like(t);
}

TEST(MoeLayerEp, ValuesAndGradientsEqualTheLocalDispatcher) {
  const ModelConfig config = TinyConfig();
  for (int ep : test::EpSizes(test::Session().world_size())) {
    ProcessGroups groups(test::Session(), test::TestOptions(ep));
    const int rank = groups.world_rank();
    for (PlacementPolicy policy : {PlacementPolicy::kContiguous, PlacementPolicy::kRoundRobin}) {
      SCOPED_TRACE(fmt::format("ep {} placement {}", ep, PlacementPolicyName(policy)));
      MoeLayer ref(config), par(config);
      {
        at::NoGradGuard no_grad;
        int i = 0;
        for (auto& item : ref->named_parameters(true)) {
          item.value().copy_(test::Randn(item.value().sizes().vec(), 900 + i++) * 0.2);
        }
        auto par_params = Named(*par);
        for (auto& item : ref->named_parameters(true))
          par_params.at(item.key()).copy_(item.value());
      }
      par->set_dispatcher(std::make_shared<AllToAllDispatcher>(
          groups.ep_group(), MakePlacement(config.num_experts, ep, policy)));
      ASSERT_EQ(par->experts->expert_ids().size(), static_cast<size_t>(config.num_experts / ep));

      auto run = [&](MoeLayer& layer) {
        at::Tensor x =
            test::Randn({2, 5 + rank, config.hidden_size}, 50 + rank).set_requires_grad(true);
        at::Tensor out = layer->forward(x);
        (out * test::Randn(out.sizes().vec(), 70 + rank)).sum().backward();
        return std::make_pair(out, x);
      };
      auto [out_ref, x_ref] = run(ref);
      auto [out_par, x_par] = run(par);
      // The all-to-all run adds in other orders (experts see other row batches, the combine and
      // the EP all-reduce sum in another order), so values agree to SumTolerance of the additions
      // along the longest chain: forward router (D) and softmax (E), gate/up (D), down (I),
      // combine (K); backward down^T (D), gate/up^T (2 I), softmax^T (E), the rank's tokens for
      // weight gradients (T) and the EP all-reduce (ep).
      const int64_t d = config.hidden_size, e = config.num_experts;
      const int64_t i = config.intermediate_size, k = config.num_experts_per_tok;
      const int64_t tokens = x_ref.size(0) * x_ref.size(1);
      const int64_t terms = (d + e + d + i + k) + (d + 2 * i + e) + tokens + ep;
      EXPECT_TRUE(test::SumsAgree(out_par, out_ref, terms)) << "output";
      EXPECT_TRUE(test::SumsAgree(x_par.grad(), x_ref.grad(), terms)) << "input gradient";
      EXPECT_TRUE(test::SumsAgree(par->router->weight.grad(), ref->router->weight.grad(), terms))
          << "router weight gradient";
      // Expert gradients: every token of the EP group reaches the expert, so compare with the
      // reference's gradients summed over the EP group.
      // Every rank walks all experts of the reference in the same order (the collectives must
      // match) and checks the ones it holds.
      auto par_params = Named(*par);
      int checked = 0;
      for (auto& item : ref->named_parameters(true)) {
        if (!IsExpertParameterName(item.key())) continue;
        at::Tensor g = GradOrZeros(item.value()).contiguous().clone();
        groups.ep_group().AllReduce(g, ReduceOp::kSum);
        auto it = par_params.find(item.key());
        if (it == par_params.end()) continue;
        EXPECT_TRUE(test::SumsAgree(GradOrZeros(it->second), g, terms)) << item.key();
        ++checked;
      }
      EXPECT_EQ(checked, 3 * config.num_experts / ep);
    }
  }
}

// The global batch, the same on every rank; row b masks its first b positions.
void MakeBatch(int step, at::Tensor* tokens_BS, at::Tensor* targets_BS) {
  at::Generator gen = at::detail::createCPUGenerator(1234 + step);
  at::Tensor seq = at::randint(TinyConfig().vocab_size, {kBatch, kSeq + 1}, gen, at::kLong);
  *tokens_BS = seq.slice(1, 0, kSeq).contiguous();
  *targets_BS = seq.slice(1, 1, kSeq + 1).clone();
  for (int64_t b = 0; b < kBatch; ++b) targets_BS->select(0, b).slice(0, 0, b).fill_(-100);
}

at::Tensor SumLoss(CausalLM& model, const at::Tensor& tokens, const at::Tensor& targets) {
  at::Tensor logits = model->forward(tokens);
  return at::cross_entropy_loss(logits.reshape({-1, logits.size(-1)}), targets.reshape({-1}), {},
                                at::Reduction::Sum, -100);
}

struct Trajectory {
  std::vector<double> losses;
  std::map<std::string, at::Tensor> params;
  std::map<std::string, at::Tensor> initial;  // the reference's weights before the first step
};

torch::optim::AdamWOptions Adam() {
  return torch::optim::AdamWOptions(kLr).weight_decay(kWeightDecay).eps(kAdamEps);
}

Trajectory Reference() {
  CausalLM model(TinyConfig());
  model->InitRandom(7);
  torch::optim::AdamW opt(model->parameters(), Adam());
  Trajectory t;
  for (const auto& [name, p] : Named(*model)) t.initial[name] = p.detach().clone();
  for (int step = 0; step < kSteps; ++step) {
    at::Tensor tokens, targets;
    MakeBatch(step, &tokens, &targets);
    const double count = (targets != -100).sum().item<double>();
    opt.zero_grad();
    at::Tensor loss = SumLoss(model, tokens, targets) / count;
    loss.backward();
    torch::nn::utils::clip_grad_norm_(model->parameters(), kMaxNorm);
    opt.step();
    t.losses.push_back(loss.item<double>());
  }
  t.params = Named(*model);
  return t;
}

Trajectory Parallel(ProcessGroups& groups, PlacementPolicy policy) {
  CausalLM model(TinyConfig());
  model->InitRandom(7);
  const int w = groups.world_rank(), n = groups.world_size();
  const int64_t rows = kBatch / n;
  std::vector<std::vector<int64_t>> load;
  if (policy == PlacementPolicy::kBalanced) {
    at::Tensor sample, unused;
    MakeBatch(100, &sample, &unused);
    load = MeasureExpertLoad(*model, sample.slice(0, w * rows, (w + 1) * rows), groups.world());
  }
  const ModelConfig config = TinyConfig();
  std::vector<ExpertPlacement> placements =
      PlaceExperts(config.num_hidden_layers, config.num_experts, groups.ep(), policy, load);
  if (w == 0) {
    std::printf("[placement %s, %s]\n%s\n", PlacementPolicyName(policy), groups.Describe().c_str(),
                DescribePlacements(placements).c_str());
  }
  ShardExperts(*model, groups, placements);
  ParameterSplit split = SplitParameters(*model);
  EXPECT_EQ(split.expert.size(),
            static_cast<size_t>(3 * config.num_hidden_layers * config.num_experts / groups.ep()));
  torch::optim::AdamW opt(model->parameters(), Adam());
  Trajectory t;
  for (int step = 0; step < kSteps; ++step) {
    at::Tensor tokens, targets;
    MakeBatch(step, &tokens, &targets);
    tokens = tokens.slice(0, w * rows, (w + 1) * rows);
    targets = targets.slice(0, w * rows, (w + 1) * rows);
    const double count = GlobalCount(groups.world(), (targets != -100).sum().item<double>());
    opt.zero_grad();
    at::Tensor loss = SumLoss(model, tokens, targets) / count;
    loss.backward();
    ReduceGradients(groups, split);
    ClipGradNormGlobal(groups.ep_group(), split, kMaxNorm);
    opt.step();
    t.losses.push_back(GlobalCount(groups.world(), loss.item<double>()));
  }
  t.params = Named(*model);
  return t;
}

TEST(TrainingEp, FewStepsMatchOneProcessUnderEveryLayoutAndPlacement) {
  const Trajectory ref = Reference();
  const ModelConfig config = TinyConfig();
  // Additions along the longest chain (tests/tolerance.h): the loss is a forward pass, the
  // cross-entropy's log-sum-exp over the vocabulary and the mean over the batch's tokens; a step
  // adds the backward pass, the sum over the tokens for weight gradients and the all-reduce over
  // the world. Weights after the steps differ through their gradient steps, so their scale is the
  // largest step the reference's gradients made in the tensor: the weights minus the initial ones
  // decayed kSteps times by (1 - lr wd) (the decay is the same arithmetic on both sides and would
  // only inflate the scale), plus 4 ulps for the rounding of the weight itself.
  const int64_t loss_terms = test::ForwardTerms(config, kSeq) + config.vocab_size + kBatch * kSeq;
  const int64_t step_terms =
      loss_terms + test::ForwardTerms(config, kSeq) + kBatch * kSeq + test::Session().world_size();
  for (int ep : test::EpSizes(test::Session().world_size())) {
    ProcessGroups groups(test::Session(), test::TestOptions(ep));
    for (PlacementPolicy policy :
         {PlacementPolicy::kContiguous, PlacementPolicy::kRoundRobin, PlacementPolicy::kBalanced}) {
      SCOPED_TRACE(fmt::format("{}, placement {}", groups.Describe(), PlacementPolicyName(policy)));
      const Trajectory got = Parallel(groups, policy);
      ASSERT_EQ(got.losses.size(), ref.losses.size());
      for (size_t s = 0; s < ref.losses.size(); ++s) {
        EXPECT_NEAR(got.losses[s], ref.losses[s],
                    test::SumTolerance(loss_terms, std::abs(ref.losses[s])))
            << "step " << s << " (" << loss_terms << " terms)";
      }
      if (groups.world_rank() == 0) {
        std::printf("[losses %s dp %d ep %d] %.7f %.7f %.7f (one process: %.7f %.7f %.7f)\n",
                    PlacementPolicyName(policy), groups.dp(), groups.ep(), got.losses[0],
                    got.losses[1], got.losses[2], ref.losses[0], ref.losses[1], ref.losses[2]);
      }
      for (const auto& [name, p] : got.params) {
        ASSERT_TRUE(ref.params.count(name)) << name;
        const at::Tensor& want = ref.params.at(name);
        const double update =
            test::MaxAbsDiff(want, ref.initial.at(name) * std::pow(1 - kLr * kWeightDecay, kSteps));
        const double tol =
            test::SumTolerance(step_terms, update) + test::FewUlps(test::MaxAbs(want), 4);
        EXPECT_TRUE(test::CloseTo(
            p, want, tol,
            fmt::format("{} terms x largest gradient step {:.3g} + 4 ulps", step_terms, update)))
            << name;
      }
    }
  }
}

}  // namespace
}  // namespace cemoe
