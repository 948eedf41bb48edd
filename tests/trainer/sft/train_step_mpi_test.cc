// train_step_mpi_test.cc: ComputeGradients (trainer/sft/train_step.h) under mpiexec -n 1, 2, 4 at
// every ep the world allows, against a naive reference computed on each rank alone: the whole
// model with its local dispatcher, all 8 rows in one forward, cross-entropy summed over the loss
// tokens and divided by their count. Every split of the 8 rows over micro-batches and ranks (8 x
// 1, 4 x 2, 1 x 8 rows on one rank; 4 or 2 rows per rank over 2 or 4 ranks) must give the
// reference's loss, gradient norm and gradients. Also: the loss of packed rows equals the
// token-weighted loss of their examples run one by one.
#include <ATen/ATen.h>
#include <fmt/format.h>
#include <gtest/gtest.h>

#include <map>
#include <vector>

#include "model/causal_lm.h"
#include "parallel/model_sharding.h"
#include "tests/parallel/mpi_test_env.h"
#include "trainer/sft/train_step.h"
#include "trainer/sft/trainable.h"

namespace cemoe {
namespace {

constexpr int64_t kRows = 8, kWidth = 12;

// 8 packed rows of width 12: examples of lengths from a fixed pattern, then padding; targets on
// the second half of each example (a "completion"), -100 elsewhere and across boundaries.
MicroBatchTensors PackedRows(int64_t vocab) {
  at::Generator gen = at::detail::createCPUGenerator(5);
  at::Tensor tokens = at::randint(0, vocab, {kRows, kWidth}, gen, at::kLong);
  at::Tensor targets = at::full({kRows, kWidth}, -100, at::kLong);
  at::Tensor positions = at::zeros({kRows, kWidth}, at::kLong);
  at::Tensor segments = at::zeros({kRows, kWidth}, at::kLong);
  const std::vector<std::vector<int64_t>> lengths = {{5, 7}, {12}, {3, 4, 4}, {6},
                                                     {2, 9}, {4, 4, 4}, {11}, {7, 3}};
  for (int64_t r = 0; r < kRows; ++r) {
    int64_t start = 0, segment = 1;
    for (int64_t len : lengths[r]) {
      for (int64_t i = 0; i < len; ++i) {
        positions[r][start + i] = i;
        segments[r][start + i] = segment;
        if (i + 1 < len && i + 1 >= len / 2) targets[r][start + i] = tokens[r][start + i + 1];
      }
      start += len;
      ++segment;
    }
    for (int64_t c = start; c < kWidth; ++c) tokens[r][c] = 0;  // padding
  }
  return MicroBatchTensors{tokens, targets, positions, segments};
}

MicroBatchTensors Rows(const MicroBatchTensors& all, int64_t begin, int64_t end) {
  return MicroBatchTensors{all.tokens_BS.slice(0, begin, end), all.targets_BS.slice(0, begin, end),
                           all.position_ids_BS.slice(0, begin, end),
                           all.segment_ids_BS.slice(0, begin, end)};
}

CausalLM TinyModel() {
  CausalLM model(PresetConfig("olmoe", "tiny"));
  model->InitRandom(3);
  {
    at::NoGradGuard no_grad;  // larger weights: routing far from ties, gradients well above noise
    for (auto& p : model->parameters()) {
      if (p.dim() > 1) p.mul_(5.0);
    }
  }
  return model;
}

struct Reference {
  double loss = 0, grad_norm = 0;
  std::map<std::string, at::Tensor> grads;
};

Reference NaiveReference(const MicroBatchTensors& all) {
  CausalLM model = TinyModel();
  at::Tensor hidden =
      model->Forward(TokenBatch{all.tokens_BS, all.position_ids_BS, all.segment_ids_BS}).hidden_BSD;
  at::Tensor logits = model->LmHead(hidden);
  const double count = all.targets_BS.ne(-100).sum().item<double>();
  at::Tensor loss = at::cross_entropy_loss(logits.reshape({-1, logits.size(-1)}),
                                           all.targets_BS.reshape({-1}), {}, at::Reduction::Sum,
                                           -100) /
                    count;
  loss.backward();
  Reference ref;
  ref.loss = loss.item<double>();
  double sq = 0;
  for (const auto& item : model->named_parameters()) {
    at::Tensor g = item.value().grad().defined() ? item.value().grad() : at::zeros_like(item.value());
    ref.grads[item.key()] = g.clone();
    sq += g.to(at::kDouble).pow(2).sum().item<double>();
  }
  ref.grad_norm = std::sqrt(sq);
  return ref;
}

TEST(ComputeGradients, EverySplitGivesTheGlobalBatchGradient) {
  const MicroBatchTensors all = PackedRows(PresetConfig("olmoe", "tiny").vocab_size);
  const Reference ref = NaiveReference(all);
  const ModelConfig config = PresetConfig("olmoe", "tiny");
  const int world = test::Session().world_size();
  const int64_t per_rank = kRows / world;
  for (int ep : test::EpSizes(world)) {
    ProcessGroups groups(test::Session(), test::TestOptions(ep));
    for (int64_t micro : {int64_t{1}, int64_t{2}, per_rank}) {
      if (micro > per_rank || per_rank % micro != 0) continue;
      SCOPED_TRACE(fmt::format("world {} ep {} micro-batch {} rows", world, ep, micro));
      CausalLM model = TinyModel();
      ShardExperts(*model, groups,
                   PlaceExperts(config.num_hidden_layers, config.num_experts, ep,
                                PlacementPolicy::kRoundRobin));
      TrainableParameters trainable = SelectTrainable(*model, {}, {});
      std::vector<MicroBatchTensors> batches;
      const int64_t begin = groups.world_rank() * per_rank;
      for (int64_t r = begin; r < begin + per_rank; r += micro) batches.push_back(Rows(all, r, r + micro));
      StepSettings settings;
      settings.max_grad_norm = 0;  // measure only
      const StepResult result = ComputeGradients(*model, batches, trainable, groups, settings);
      // Chain: one forward and backward over 12 positions, the tokens of the batch (weight
      // gradients) and the sums over micro-batches and ranks.
      const int64_t terms = 2 * test::ForwardTerms(config, kWidth) + kRows * kWidth + world;
      EXPECT_NEAR(result.loss, ref.loss, test::SumTolerance(terms, ref.loss));
      EXPECT_NEAR(result.grad_norm, ref.grad_norm, test::SumTolerance(terms, ref.grad_norm));
      EXPECT_EQ(result.loss_tokens, all.targets_BS.ne(-100).sum().item<int64_t>());
      EXPECT_EQ(result.tokens, all.segment_ids_BS.gt(0).sum().item<int64_t>());
      int checked = 0;
      for (const auto& item : model->named_parameters()) {
        const at::Tensor& want = ref.grads.at(item.key());
        ASSERT_TRUE(item.value().grad().defined()) << item.key();
        EXPECT_TRUE(test::SumsAgree(item.value().grad(), want, terms)) << item.key();
        ++checked;
      }
      EXPECT_GT(checked, 0);
      ASSERT_EQ(result.expert_load.size(), static_cast<size_t>(config.num_hidden_layers));
      double sum = 0;
      for (double f : result.expert_load[0]) sum += f;
      EXPECT_NEAR(sum, 1.0, 1e-12);
    }
  }
}

// Packed rows against each example alone: the summed cross-entropy is the same.
TEST(PackedLoss, EqualsTheExamplesOneByOne) {
  const MicroBatchTensors all = PackedRows(PresetConfig("olmoe", "tiny").vocab_size);
  CausalLM model = TinyModel();
  at::NoGradGuard no_grad;
  auto ce_sum = [&](const at::Tensor& tokens, const at::Tensor& targets, const TokenBatch& b) {
    at::Tensor logits = model->LmHead(model->Forward(b).hidden_BSD);
    return at::cross_entropy_loss(logits.reshape({-1, logits.size(-1)}), targets.reshape({-1}), {},
                                  at::Reduction::Sum, -100)
        .item<double>();
  };
  const double packed =
      ce_sum(all.tokens_BS, all.targets_BS,
             TokenBatch{all.tokens_BS, all.position_ids_BS, all.segment_ids_BS});
  double alone = 0;
  for (int64_t r = 0; r < kRows; ++r) {
    const at::Tensor seg = all.segment_ids_BS[r];
    for (int64_t s = 1; s <= seg.max().item<int64_t>(); ++s) {
      const at::Tensor idx = seg.eq(s).nonzero().reshape({-1});
      const at::Tensor tokens = all.tokens_BS[r].index_select(0, idx).view({1, -1});
      const at::Tensor targets = all.targets_BS[r].index_select(0, idx).view({1, -1});
      alone += ce_sum(tokens, targets, TokenBatch{tokens, {}, {}});
    }
  }
  const int64_t terms = test::ForwardTerms(PresetConfig("olmoe", "tiny"), kWidth) + kRows * kWidth;
  EXPECT_NEAR(packed, alone, test::SumTolerance(terms, alone));
  EXPECT_GT(alone, 1.0);
}

}  // namespace
}  // namespace cemoe
