// ce_parallel_test.cc: compressed experts (method.md section 1) under expert parallelism, against
// one process, for both aggregation modes (CeAggregation):
//   - a CE MoE layer with the all-to-all dispatcher equals the same layer with the
//     LocalDispatcher: outputs, gradients of x, router, CE vectors (summed over the EP group with
//     AllReduceGradients: they are replicated dense parameters) and the held experts; only the
//     main experts are dispatched (T K_m rows over the EP group, not T K), also when a rank
//     receives no row at all;
//   - a tiny CE CausalLM sharded with ShardExperts equals the one-process model in logits and
//     gradients.
#include <ATen/ATen.h>
#include <ATen/CPUGeneratorImpl.h>
#include <gtest/gtest.h>

#include <map>
#include <memory>
#include <string>
#include <vector>

#include "model/causal_lm.h"
#include "model/config.h"
#include "model/moe/compressed_experts.h"
#include "model/moe/moe_layer.h"
#include "parallel/model_sharding.h"
#include "tests/parallel/mpi_test_env.h"

namespace cemoe {
namespace {

constexpr int64_t kMain = 2;  // K_m of the tiny OLMoE's K = 4

std::map<std::string, at::Tensor> Named(const torch::nn::Module& m) {
  std::map<std::string, at::Tensor> out;
  for (const auto& item : m.named_parameters(true)) out[item.key()] = item.value();
  return out;
}

at::Tensor GradOrZeros(const at::Tensor& t) {
  return t.grad().defined() ? t.grad() : at::zeros_like(t);
}

const char* ModeName(CeAggregation m) {
  return m == CeAggregation::kAtExperts ? "at experts" : "at source";
}

// Forwards to another dispatcher and counts the rows it hands to the local experts.
class CountingDispatcher : public TokenDispatcher {
 public:
  explicit CountingDispatcher(std::shared_ptr<TokenDispatcher> inner) : inner_(std::move(inner)) {}
  DispatchResult Dispatch(const at::Tensor& x_TD, const at::Tensor& topk_ids_TK,
                          const std::vector<at::Tensor>& extras_T) override {
    DispatchResult r = inner_->Dispatch(x_TD, topk_ids_TK, extras_T);
    for (int64_t n : r.num_rows_per_local_expert) rows += n;
    columns = topk_ids_TK.size(1);
    return r;
  }
  at::Tensor Combine(const at::Tensor& y_RD, const DispatchHandle& handle,
                     const at::Tensor& topk_weights_TK) override {
    return inner_->Combine(y_RD, handle, topk_weights_TK);
  }
  const std::vector<int64_t>& local_expert_ids() const override {
    return inner_->local_expert_ids();
  }
  int64_t rows = 0, columns = 0;

 private:
  std::shared_ptr<TokenDispatcher> inner_;
};

// Scenario: random weights, or a router that never picks the experts of the last EP rank (x > 0
// and their router rows -1), so that rank receives no rows.
void RunLayer(int ep, CeAggregation mode, bool starve_last_rank) {
  const ModelConfig config = PresetConfig("olmoe", "tiny");  // E 8, K 4
  ProcessGroups groups(test::Session(), test::TestOptions(ep));
  const int rank = groups.world_rank();
  const ExpertPlacement placement =
      MakePlacement(config.num_experts, ep, PlacementPolicy::kContiguous);
  SCOPED_TRACE(fmt::format("ep {}, aggregation {}, last rank starved {}", ep, ModeName(mode),
                           starve_last_rank));
  MoeLayer ref(config), par(config);
  for (MoeLayer* l : {&ref, &par}) {
    (*l)->EnableCompressedExperts(kMain);
    (*l)->compressed_experts->set_aggregation(mode);
  }
  {
    at::NoGradGuard no_grad;
    int i = 0;
    for (auto& item : ref->named_parameters(true)) {
      const bool ce = item.key().rfind("compressed_experts.", 0) == 0;
      item.value().copy_(test::Randn(item.value().sizes().vec(), 900 + i++) * 0.2 + (ce ? 1 : 0));
    }
    if (starve_last_rank) {
      for (int64_t e : placement.experts_of_rank[ep - 1]) ref->router->weight[e].fill_(-1);
    }
    auto par_params = Named(*par);
    for (auto& item : ref->named_parameters(true)) par_params.at(item.key()).copy_(item.value());
  }
  auto counting = std::make_shared<CountingDispatcher>(
      std::make_shared<AllToAllDispatcher>(groups.ep_group(), placement));
  par->set_dispatcher(counting);

  const int64_t tokens = 2 * (5 + rank);
  auto run = [&](MoeLayer& layer) {
    at::Tensor x = test::Randn({2, 5 + rank, config.hidden_size}, 50 + rank);
    if (starve_last_rank) x = x.abs() + 0.1;
    x.set_requires_grad(true);
    MoeLayerImpl::Output o = layer->Forward(x);
    (o.out * test::Randn(o.out.sizes().vec(), 70 + rank)).sum().backward();
    return std::make_tuple(o.out, x, o.routing.topk_ids_TK);
  };
  auto [out_ref, x_ref, ids_ref] = run(ref);
  auto [out_par, x_par, ids_par] = run(par);
  ASSERT_TRUE(at::equal(ids_par, ids_ref));
  ASSERT_EQ(ids_ref.size(1), config.num_experts_per_tok);

  // Only the main experts travel: T K_m rows over the EP group.
  EXPECT_EQ(counting->columns, kMain);
  std::vector<double> rows{static_cast<double>(counting->rows), static_cast<double>(tokens)};
  groups.ep_group().AllReduceHost(rows, ReduceOp::kSum);
  EXPECT_EQ(rows[0], rows[1] * kMain) << "dispatched rows over the EP group";
  if (starve_last_rank && ep > 1 && groups.ep_group().rank() == ep - 1) {
    EXPECT_EQ(counting->rows, 0);
  }

  // Additions along the longest chain (as model_parallel_test.cc) plus the aggregation (K_a,
  // forward and backward) and the CE gradients' sum over the EP group (ep).
  const int64_t d = config.hidden_size, e = config.num_experts, i = config.intermediate_size;
  const int64_t k = config.num_experts_per_tok;
  const int64_t terms = (d + e + d + i + k) + (d + 2 * i + e) + 2 * k + tokens + 2 * ep;
  EXPECT_TRUE(test::SumsAgree(out_par, out_ref, terms)) << "output";
  EXPECT_TRUE(test::SumsAgree(x_par.grad(), x_ref.grad(), terms)) << "input gradient";
  EXPECT_TRUE(test::SumsAgree(par->router->weight.grad(), ref->router->weight.grad(), terms))
      << "router weight gradient";

  // CE vectors: replicated dense parameters; each rank holds the gradient of the rows it
  // aggregated, so sum over the EP group (as the trainer's dense all-reduce does over world).
  EXPECT_FALSE(IsExpertParameterName("model.layers.0.mlp.compressed_experts.g"));
  EXPECT_FALSE(IsExpertParameterName("compressed_experts.d"));
  std::vector<at::Tensor> ce_par = {par->compressed_experts->g, par->compressed_experts->u,
                                    par->compressed_experts->d};
  AllReduceGradients(groups.ep_group(), ce_par);
  const std::vector<at::Tensor> ce_ref = {ref->compressed_experts->g, ref->compressed_experts->u,
                                          ref->compressed_experts->d};
  const char* names[] = {"g", "u", "d"};
  for (size_t n = 0; n < 3; ++n) {
    at::Tensor want = GradOrZeros(ce_ref[n]).contiguous().clone();
    groups.ep_group().AllReduce(want, ReduceOp::kSum);
    EXPECT_GT(test::MaxAbs(want), 0) << names[n];
    EXPECT_TRUE(test::SumsAgree(GradOrZeros(ce_par[n]), want, terms)) << "CE " << names[n];
  }

  // Held experts: the reference's gradients summed over the EP group.
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

TEST(CompressedExpertsEp, LayerEqualsOneProcessAndDispatchesMainExpertsOnly) {
  for (int ep : test::EpSizes(test::Session().world_size())) {
    for (CeAggregation mode : {CeAggregation::kAtExperts, CeAggregation::kAtSource}) {
      RunLayer(ep, mode, /*starve_last_rank=*/false);
    }
  }
}

TEST(CompressedExpertsEp, RankWithoutRowsStillTakesPartInBackward) {
  for (int ep : test::EpSizes(test::Session().world_size())) {
    if (ep == 1) continue;
    for (CeAggregation mode : {CeAggregation::kAtExperts, CeAggregation::kAtSource}) {
      RunLayer(ep, mode, /*starve_last_rank=*/true);
    }
  }
}

// A CE CausalLM with random vectors; the same on every rank.
CausalLM CeModel(const ModelConfig& config, CeAggregation mode) {
  CausalLM model(config);
  model->InitRandom(7);
  at::NoGradGuard no_grad;
  int i = 0;
  for (auto& layer : model->moe_layers()) {
    layer->compressed_experts->set_aggregation(mode);
    for (auto& p : layer->compressed_experts->parameters()) {
      p.copy_(test::Randn(p.sizes().vec(), 300 + i++) * 0.3 + 1);
    }
  }
  return model;
}

TEST(CompressedExpertsEp, CausalLMEqualsOneProcess) {
  ModelConfig config = PresetConfig("olmoe", "tiny");
  config.ce_main_experts = kMain;
  const int64_t seq = 7;
  for (int ep : test::EpSizes(test::Session().world_size())) {
    ProcessGroups groups(test::Session(), test::TestOptions(ep));
    const int rank = groups.world_rank();
    for (CeAggregation mode : {CeAggregation::kAtExperts, CeAggregation::kAtSource}) {
      SCOPED_TRACE(fmt::format("{}, aggregation {}", groups.Describe(), ModeName(mode)));
      CausalLM ref = CeModel(config, mode), par = CeModel(config, mode);
      ShardExperts(*par, groups,
                   PlaceExperts(config.num_hidden_layers, config.num_experts, ep,
                                PlacementPolicy::kRoundRobin));
      at::Generator gen = at::detail::createCPUGenerator(40 + rank);
      const at::Tensor tokens = at::randint(config.vocab_size, {2, seq}, gen, at::kLong);
      const at::Tensor gy = test::Randn({2, seq, config.vocab_size}, 60 + rank);
      at::Tensor logits_ref = ref->forward(tokens), logits_par = par->forward(tokens);
      (logits_ref * gy).sum().backward();
      (logits_par * gy).sum().backward();
      // A forward and a backward pass of the model, the tokens of the rank for the weight
      // gradients and the sum over the EP group (tests/tolerance.h).
      const int64_t terms = 2 * test::ForwardTerms(config, seq) + 2 * seq + 2 * ep;
      EXPECT_TRUE(test::SumsAgree(logits_par, logits_ref, terms)) << "logits";
      ParameterSplit split = SplitParameters(*par);
      const auto par_params = Named(*par);
      int ce = 0, experts = 0;
      std::vector<at::Tensor> ce_par;
      for (const auto& [name, p] : par_params) {
        if (name.find(".compressed_experts.") != std::string::npos) ce_par.push_back(p);
      }
      AllReduceGradients(groups.ep_group(), ce_par);
      for (const auto& [name, p] : Named(*ref)) {
        const bool is_ce = name.find(".compressed_experts.") != std::string::npos;
        const bool is_expert = IsExpertParameterName(name);
        EXPECT_FALSE(is_ce && is_expert) << name;
        at::Tensor want = GradOrZeros(p).contiguous().clone();
        if (is_ce || is_expert) groups.ep_group().AllReduce(want, ReduceOp::kSum);
        auto it = par_params.find(name);
        if (it == par_params.end()) {
          EXPECT_TRUE(is_expert) << name;
          continue;
        }
        EXPECT_TRUE(test::SumsAgree(GradOrZeros(it->second), want, terms)) << name;
        ce += is_ce;
        experts += is_expert;
      }
      EXPECT_EQ(ce, 3 * config.num_hidden_layers);
      EXPECT_EQ(static_cast<size_t>(experts), split.expert.size());
      EXPECT_EQ(experts, 3 * config.num_hidden_layers * config.num_experts / ep);
    }
  }
}

}  // namespace
}  // namespace cemoe
