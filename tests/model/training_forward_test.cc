// training_forward_test.cc: the forward paths training adds. Packed rows (positions restarting,
// block-diagonal mask) against each example run alone; activation checkpointing against the plain
// backward; the router losses on hand-worked logits.
#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include <cmath>
#include <vector>

#include "model/causal_lm.h"
#include "model/moe/router_losses.h"
#include "tests/tolerance.h"

namespace cemoe {
namespace {

CausalLM RandomModel(const std::string& arch, at::ScalarType dtype) {
  CausalLM model(PresetConfig(arch, "tiny"));
  model->InitRandom(11);
  {
    at::NoGradGuard no_grad;  // larger weights than InitRandom's, so routing is not uniform
    for (auto& p : model->parameters()) {
      if (p.dim() > 1) p.mul_(10.0);
    }
  }
  model->to(dtype);
  return model;
}

class PackedRows : public ::testing::TestWithParam<std::string> {};

// One row holding examples of lengths 3, 5, 4 then 2 padding tokens gives, at every real
// position, the hidden state of that example run alone.
TEST_P(PackedRows, EqualEachExampleRunAlone) {
  CausalLM model = RandomModel(GetParam(), at::kDouble);
  at::NoGradGuard no_grad;
  const std::vector<int64_t> lengths = {3, 5, 4};
  const int64_t width = 14;
  at::Tensor tokens = at::randint(0, model->config().vocab_size, {1, width}, at::kLong);
  std::vector<int64_t> positions, segments;
  for (size_t e = 0; e < lengths.size(); ++e) {
    for (int64_t i = 0; i < lengths[e]; ++i) {
      positions.push_back(i);
      segments.push_back(static_cast<int64_t>(e) + 1);
    }
  }
  while (static_cast<int64_t>(positions.size()) < width) {
    positions.push_back(0);
    segments.push_back(0);
  }
  TokenBatch packed{tokens, at::tensor(positions).view({1, width}),
                    at::tensor(segments).view({1, width})};
  const at::Tensor hidden = model->Forward(packed).hidden_BSD;
  int64_t start = 0;
  for (int64_t len : lengths) {
    const at::Tensor alone = model->Hidden(tokens.slice(1, start, start + len));
    const at::Tensor part = hidden.slice(1, start, start + len);
    // The packed row multiplies by masked (exactly zero) weights over more keys: the sums differ
    // only in order and in added zeros. Chain: one forward over `width` positions.
    EXPECT_TRUE(test::SumsAgree(part, alone, test::ForwardTerms(model->config(), width)))
        << "example starting at " << start;
    start += len;
  }
  // Without the mask the second example would see the first: make sure the test can tell.
  const at::Tensor unmasked = model->Hidden(tokens).slice(1, 3, 8);
  const at::Tensor alone = model->Hidden(tokens.slice(1, 3, 8));
  EXPECT_GT(test::MaxAbsDiff(unmasked, alone), 1e-3 * test::MaxAbs(alone));
}

INSTANTIATE_TEST_SUITE_P(Families, PackedRows, ::testing::Values("olmoe", "phimoe"));

class Checkpointing : public ::testing::TestWithParam<std::string> {};

// The same loss, router logits included, with and without recomputation: equal gradients.
TEST_P(Checkpointing, GivesThePlainGradients) {
  CausalLM model = RandomModel(GetParam(), at::kFloat);
  at::Tensor tokens = at::randint(0, model->config().vocab_size, {2, 9}, at::kLong);
  auto grads_of = [&](bool recompute) {
    model->set_activation_checkpointing(recompute);
    model->zero_grad();
    ModelOutput out = model->Forward(TokenBatch{tokens, {}, {}});
    at::Tensor logits = model->LmHead(out.hidden_BSD);
    at::Tensor loss = at::cross_entropy_loss(logits.reshape({-1, logits.size(-1)}),
                                             tokens.roll(-1, 1).reshape({-1})) +
                      0.1 * LoadBalancingLoss(out.routing, model->config().num_experts,
                                              model->top_k()) +
                      0.01 * RouterZLoss(out.routing);
    loss.backward();
    std::vector<at::Tensor> grads;
    for (const auto& p : model->parameters()) {
      grads.push_back(p.grad().defined() ? p.grad().clone() : at::zeros_like(p));
    }
    return std::make_pair(loss.item<double>(), grads);
  };
  const auto plain = grads_of(false);
  const auto recomputed = grads_of(true);
  EXPECT_EQ(plain.first, recomputed.first);
  ASSERT_EQ(plain.second.size(), recomputed.second.size());
  int64_t nonzero = 0;
  for (size_t i = 0; i < plain.second.size(); ++i) {
    // Same operations on the same values in the same order: bit-identical.
    EXPECT_TRUE(at::equal(plain.second[i], recomputed.second[i]))
        << "parameter " << i << " max diff " << test::MaxAbsDiff(plain.second[i], recomputed.second[i])
        << " of " << test::MaxAbs(plain.second[i]);
    nonzero += plain.second[i].abs().sum().item<double>() > 0;
  }
  EXPECT_GT(nonzero, static_cast<int64_t>(plain.second.size()) / 2);
}

INSTANTIATE_TEST_SUITE_P(Families, Checkpointing, ::testing::Values("olmoe", "phimoe"));

RouterOutput Logits(std::vector<std::vector<double>> rows) {
  std::vector<at::Tensor> r;
  for (auto& row : rows) r.push_back(at::tensor(row, at::kDouble));
  return RouterOutput{at::stack(r), {}, {}};
}

// Two experts, top-1. Logits (0, ln 3) give p = (1/4, 3/4).
TEST(RouterLosses, LoadBalancingHandWorked) {
  const double l3 = std::log(3.0);
  // Balanced: one token each way: f = (1/2, 1/2), P = (1/2, 1/2): 2 * (1/4 + 1/4) = 1.
  EXPECT_NEAR(LoadBalancingLoss({Logits({{0, l3}, {l3, 0}})}, 2, 1).item<double>(), 1.0,
              test::FewUlps(1.0));
  // Both tokens to expert 1: f = (0, 1), P = (1/4, 3/4): 2 * 3/4 = 1.5.
  EXPECT_NEAR(LoadBalancingLoss({Logits({{0, l3}, {0, l3}})}, 2, 1).item<double>(), 1.5,
              test::FewUlps(1.5));
  // Two layers are pooled: layer 1 balanced, layer 2 all to expert 1: f = (1/4, 3/4),
  // P = (3/8, 5/8): 2 * (3/32 + 15/32) = 18/16.
  EXPECT_NEAR(LoadBalancingLoss({Logits({{0, l3}, {l3, 0}}), Logits({{0, l3}, {0, l3}})}, 2, 1)
                  .item<double>(),
              18.0 / 16, test::FewUlps(18.0 / 16));
  // A masked token does not count: (balanced pair) + a padding token to expert 1.
  at::Tensor mask = at::tensor(std::vector<double>{1, 1, 0}, at::kDouble);
  EXPECT_NEAR(LoadBalancingLoss({Logits({{0, l3}, {l3, 0}, {0, l3}})}, 2, 1, mask).item<double>(),
              1.0, test::FewUlps(1.0));
  // Top-2 of 2 experts: every token picks both; f = ((1/2,1/2),(1/2,1/2)) summed with P.
  EXPECT_NEAR(LoadBalancingLoss({Logits({{0, l3}, {0, l3}})}, 2, 2).item<double>(), 2.0,
              test::FewUlps(2.0));
}

TEST(RouterLosses, ZLossHandWorked) {
  const double l3 = std::log(3.0);
  // logsumexp(0, ln 3) = ln 4; logsumexp(0, 0) = ln 2. Layer 1 mean ((ln4)^2 + (ln2)^2) / 2,
  // layer 2 (ln 4)^2; summed over layers.
  const double want = (std::pow(std::log(4.0), 2) + std::pow(std::log(2.0), 2)) / 2 +
                      std::pow(std::log(4.0), 2);
  EXPECT_NEAR(RouterZLoss({Logits({{0, l3}, {0, 0}}), Logits({{l3, 0}})}).item<double>(), want,
              test::FewUlps(want, 8));
  at::Tensor mask = at::tensor(std::vector<double>{1, 0}, at::kDouble);
  EXPECT_NEAR(RouterZLoss({Logits({{0, l3}, {0, 0}})}, mask).item<double>(),
              std::pow(std::log(4.0), 2), test::FewUlps(2.0, 8));
}

}  // namespace
}  // namespace cemoe
