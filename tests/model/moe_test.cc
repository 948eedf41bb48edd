// moe_test.cc: router rules on hand-worked logits, permutation on the hand-worked example of
// permute.h, grouped experts and the whole MoE layer against a naive per-token loop.
#include <ATen/ATen.h>
#include <gtest/gtest.h>
#include <torch/autograd.h>

#include <algorithm>
#include <cmath>

#include "model/causal_lm.h"
#include "model/check.h"
#include "model/config.h"
#include "model/moe/moe_layer.h"
#include "model/moe/permute.h"
#include "model/moe/router.h"
#include "tests/tolerance.h"

namespace cemoe {
namespace {

at::Tensor Ids(std::vector<int64_t> v, int64_t rows) {
  return at::tensor(v, at::kLong).view({rows, -1});
}

// Router weights against hand-worked values: the float32 log, the max subtraction, exp, the
// three additions of the softmax sum and the division each round by at most eps / 2 relative (the
// log's absolute error is amplified by |logit| < 1.4), under 8 eps in all; renormalising the top-k
// adds one addition and one division.
constexpr int kSoftmaxUlps = 8;
constexpr int kRenormalisedUlps = kSoftmaxUlps + 2;

TEST(SoftmaxTopK, HandWorkedWithAndWithoutRenormalisation) {
  // logits ln([1, 2, 3, 4]) -> probs [0.1, 0.2, 0.3, 0.4].
  at::Tensor logits = at::log(at::tensor({1.0f, 2.0f, 3.0f, 4.0f})).view({1, 4});
  RouterOutput r = SoftmaxTopK(logits, 2, /*normalize=*/false, at::kFloat);
  EXPECT_EQ(r.topk_ids_TK[0][0].item<int64_t>(), 3);
  EXPECT_EQ(r.topk_ids_TK[0][1].item<int64_t>(), 2);
  EXPECT_NEAR(r.topk_weights_TK[0][0].item<float>(), 0.4, test::FewUlps(0.4, kSoftmaxUlps));
  EXPECT_NEAR(r.topk_weights_TK[0][1].item<float>(), 0.3, test::FewUlps(0.3, kSoftmaxUlps));
  RouterOutput n = SoftmaxTopK(logits, 2, /*normalize=*/true, at::kFloat);
  EXPECT_NEAR(n.topk_weights_TK[0][0].item<float>(), 4.0 / 7,
              test::FewUlps(4.0 / 7, kRenormalisedUlps));
  EXPECT_NEAR(n.topk_weights_TK[0][1].item<float>(), 3.0 / 7,
              test::FewUlps(3.0 / 7, kRenormalisedUlps));
  // Top-1 override keeps the best expert with its unnormalised probability.
  RouterOutput one = SoftmaxTopK(logits, 1, false, at::kFloat);
  EXPECT_EQ(one.topk_ids_TK.size(1), 1);
  EXPECT_NEAR(one.topk_weights_TK[0][0].item<float>(), 0.4, test::FewUlps(0.4, kSoftmaxUlps));
}

TEST(SparseMixer, HandWorkedTwoChoices) {
  // scores [3.0, 2.99, 1.0, -5.0], eps 0.01 (threshold 0.02).
  // First: m1 = 3; (3 - s)/max(|s|, 3): [0, 0.0033, 0.667, 1.6] -> keep {0, 1}.
  //   w1 = e^3 / (e^3 + e^2.99).
  // Second: e1 removed, m2 = 2.99; (2.99 - s)/max(|s|, 2.99) for s_1..: [.., 0, 0.665, 2.67]
  //   -> keep {1} only (e0 is -inf), w2 = 1.
  at::Tensor s = at::tensor({3.0f, 2.99f, 1.0f, -5.0f}).view({1, 4});
  RouterOutput r = SparseMixer(s, 2, 0.01);
  EXPECT_EQ(r.topk_ids_TK[0][0].item<int64_t>(), 0);
  EXPECT_EQ(r.topk_ids_TK[0][1].item<int64_t>(), 1);
  const double w1 = std::exp(3.0) / (std::exp(3.0) + std::exp(2.99));
  // Two-term softmaxes: fewer roundings than kSoftmaxUlps counts (2.99f is 2.99 + 1e-8, which
  // moves w1 by 2.5e-9, well inside).
  EXPECT_NEAR(r.topk_weights_TK[0][0].item<float>(), w1, test::FewUlps(w1, kSoftmaxUlps));
  EXPECT_NEAR(r.topk_weights_TK[0][1].item<float>(), 1.0, test::FewUlps(1.0, kSoftmaxUlps));
  // Wider eps keeps expert 2 in the second softmax: (2.99 - 1)/2.99 = 0.666 < 2 * 0.4.
  RouterOutput wide = SparseMixer(s, 2, 0.4);
  const double w2 = std::exp(2.99) / (std::exp(2.99) + std::exp(1.0));
  EXPECT_NEAR(wide.topk_weights_TK[0][1].item<float>(), w2, test::FewUlps(w2, kSoftmaxUlps));
  // Top-1 = the first choice only, weight unchanged.
  RouterOutput one = SparseMixer(s, 1, 0.01);
  EXPECT_EQ(one.topk_ids_TK.size(1), 1);
  EXPECT_NEAR(one.topk_weights_TK[0][0].item<float>(), w1, test::FewUlps(w1, kSoftmaxUlps));
  EXPECT_THROW(SparseMixer(s, 3, 0.01), Error);
}

TEST(Permute, HandWorkedExampleOfTheHeader) {
  at::Tensor ids = Ids({1, 0, 0, 1, 1, 1}, 3);
  Permutation p = SortByBucket(ids, 2);
  EXPECT_TRUE(at::equal(p.order_R, at::tensor({1, 2, 0, 3, 4, 5}, at::kLong)));
  EXPECT_TRUE(at::equal(p.token_R, at::tensor({0, 1, 0, 1, 2, 2}, at::kLong)));
  EXPECT_EQ(p.counts, (std::vector<int64_t>{2, 4}));
  EXPECT_TRUE(at::equal(p.pos_TK, at::tensor({2, 0, 1, 3, 4, 5}, at::kLong).view({3, 2})));
  // Unpermute with weights: out[t] = sum_k w[t,k] * y[row of (t,k)], y rows = 10 * (row + 1).
  at::Tensor y = (at::arange(1, 7, at::kFloat) * 10).view({6, 1});
  at::Tensor w = at::tensor({0.5f, 0.25f, 1.0f, 2.0f, 1.0f, 1.0f}).view({3, 2});
  at::Tensor out = Unpermute(y, p, w);
  // token 0: (t0,k0)=assign 0 -> row 2 (30) * 0.5 + (t0,k1)=assign 1 -> row 0 (10) * 0.25 = 17.5
  // token 1: assign 2 -> row 1 (20) * 1 + assign 3 -> row 3 (40) * 2 = 100
  // token 2: assign 4 -> row 4 (50) + assign 5 -> row 5 (60) = 110
  // Every product and sum here is exact in float32 (powers of two times small integers).
  EXPECT_TRUE(at::equal(out.view({3}), at::tensor({17.5f, 100.0f, 110.0f})));
  // Dropped assignments (id -1) vanish.
  Permutation d = SortByBucket(Ids({1, -1, 0, 1}, 2), 2);
  EXPECT_EQ(d.counts, (std::vector<int64_t>{1, 2}));
  EXPECT_TRUE(at::equal(d.order_R, at::tensor({2, 0, 3}, at::kLong)));
  EXPECT_TRUE(at::equal(d.pos_TK, at::tensor({1, -1, 0, 2}, at::kLong).view({2, 2})));
  EXPECT_THROW(SortByBucket(Ids({2, 0}, 1), 2), Error);
}

// Permute then Unpermute (one pass each way on the CPU in float and double, weighted_row_sum.h)
// against autograd through the plain index ops (index_select; multiply; index_add), with a
// dropped assignment: values, the tokens' gradient and the weights' gradient.
TEST(Permute, OnePassGradientsEqualAutogradOfTheIndexOps) {
  at::Generator gen = at::detail::createCPUGenerator(11);
  const int64_t t = 7, k = 3, d = 37, e = 4;
  at::Tensor ids = at::randint(0, e, {t, k}, gen, at::kLong);
  ids[2][1] = -1;
  for (at::ScalarType type : {at::kDouble, at::kFloat}) {
    const Permutation p = SortByBucket(ids, e);
    const int64_t rows = p.order_R.size(0);
    ASSERT_EQ(rows, t * k - 1);
    const at::Tensor x = at::randn({t, d}, gen, at::kDouble).to(type);
    const at::Tensor w = at::rand({t, k}, gen, at::kDouble).to(type);
    const at::Tensor m = at::randn({rows, d}, gen, at::kDouble).to(type);  // the "experts"
    const at::Tensor grad = at::randn({t, d}, gen, at::kDouble).to(type);
    at::Tensor x1 = x.clone().requires_grad_(true), w1 = w.clone().requires_grad_(true);
    const at::Tensor out = Unpermute(Permute(x1, p) * m, p, w1);
    out.backward(grad);
    at::Tensor x2 = x.clone().requires_grad_(true), w2 = w.clone().requires_grad_(true);
    const at::Tensor w_R = w2.reshape({-1}).index_select(0, p.order_R);
    const at::Tensor want =
        at::zeros({t, d}, x.options())
            .index_add(0, p.token_R, x2.index_select(0, p.token_R) * m * w_R.unsqueeze(1));
    want.backward(grad);
    // Sums of K products in another order (slots against rows); the weights' gradient: dot
    // products of d terms.
    EXPECT_TRUE(test::SumsAgree(out, want, k)) << c10::toString(type);
    EXPECT_TRUE(test::SumsAgree(x1.grad(), x2.grad(), k)) << c10::toString(type);
    EXPECT_TRUE(test::SumsAgree(w1.grad(), w2.grad(), d)) << c10::toString(type);
    EXPECT_EQ(w1.grad()[2][1].item<double>(), 0.0);
  }
}

ModelConfig SmallConfig(const std::string& arch) {
  ModelConfig c = PresetConfig(arch, "tiny");
  return c;
}

// Naive reference: for each token, each chosen expert computed on its own and summed.
at::Tensor NaiveMoe(MoeLayerImpl& layer, const at::Tensor& x_TD, const RouterOutput& r) {
  std::vector<at::Tensor> rows;
  for (int64_t t = 0; t < x_TD.size(0); ++t) {
    at::Tensor acc = at::zeros({x_TD.size(1)}, x_TD.options());
    for (int64_t k = 0; k < r.topk_ids_TK.size(1); ++k) {
      const int64_t e = r.topk_ids_TK[t][k].item<int64_t>();
      Expert& ex = layer.experts->expert(static_cast<size_t>(e));
      at::Tensor xt = x_TD[t];
      at::Tensor g = at::mv(ex->gate_proj->weight, xt);
      at::Tensor u = at::mv(ex->up_proj->weight, xt);
      at::Tensor h = g * at::sigmoid(g) * u;
      acc = acc + r.topk_weights_TK[t][k] * at::mv(ex->down_proj->weight, h);
    }
    rows.push_back(acc);
  }
  return at::stack(rows);
}

class MoeLayerTest : public ::testing::TestWithParam<std::tuple<std::string, int64_t>> {};

TEST_P(MoeLayerTest, MatchesPerTokenLoopInValueAndGradient) {
  const auto [arch, top_k] = GetParam();
  at::manual_seed(7);
  MoeLayer layer(SmallConfig(arch));
  {
    at::NoGradGuard g;
    for (auto& p : layer->parameters()) p.normal_(0.0, 0.5);
  }
  layer->to(at::kDouble);  // float64: SumTolerance below is in float64 epsilon
  layer->set_top_k(top_k);
  at::Tensor x = at::randn({13, layer->experts->hidden()}, at::kDouble).requires_grad_(true);
  MoeLayerImpl::Output o = layer->Forward(x);
  at::Tensor y = o.out;
  const RouterOutput& r = o.routing;
  EXPECT_EQ(r.topk_ids_TK.size(1), top_k);
  at::Tensor ref = NaiveMoe(*layer, x, r);
  // Grouped experts and the per-token loop add in other orders. Additions along the longest
  // chain: forward gate/up (D), down (I), the top-k combine (K); backward down^T (D), gate/up^T
  // (2 I), the router's softmax (E) and projection (D), and the tokens for weight gradients.
  const ModelConfig c = SmallConfig(arch);
  const int64_t terms = (c.hidden_size + c.intermediate_size + top_k) +
                        (2 * c.hidden_size + 2 * c.intermediate_size + c.num_experts) + x.size(0);
  EXPECT_TRUE(test::SumsAgree(y, ref, terms));
  // Gradients: same upstream gradient through both graphs.
  at::Tensor gy = at::randn_like(y);
  auto params = layer->parameters();
  std::vector<at::Tensor> inputs = {x};
  inputs.insert(inputs.end(), params.begin(), params.end());
  auto g1 = torch::autograd::grad({y}, inputs, {gy}, /*retain_graph=*/true,
                                  /*create_graph=*/false, /*allow_unused=*/true);
  auto g2 = torch::autograd::grad({ref}, inputs, {gy}, true, false, true);
  for (size_t i = 0; i < inputs.size(); ++i) {
    if (!g1[i].defined() && !g2[i].defined()) continue;
    at::Tensor a = g1[i].defined() ? g1[i] : at::zeros_like(inputs[i]);
    at::Tensor b = g2[i].defined() ? g2[i] : at::zeros_like(inputs[i]);
    EXPECT_TRUE(test::SumsAgree(a, b, terms)) << "input " << i;
  }
}

INSTANTIATE_TEST_SUITE_P(Families, MoeLayerTest,
                         ::testing::Values(std::make_tuple("olmoe", 1), std::make_tuple("olmoe", 2),
                                           std::make_tuple("olmoe", 4), std::make_tuple("olmoe", 8),
                                           std::make_tuple("phimoe", 1),
                                           std::make_tuple("phimoe", 2)));

TEST(MoeLayer, TopKLimitsAreChecked) {
  MoeLayer olmoe(SmallConfig("olmoe"));
  EXPECT_THROW(olmoe->set_top_k(0), Error);
  EXPECT_THROW(olmoe->set_top_k(9), Error);
  MoeLayer phi(SmallConfig("phimoe"));
  EXPECT_THROW(phi->set_top_k(3), Error);
}

TEST(MoeLayer, HeldExpertSubsetNeedsAMatchingDispatcher) {
  const ModelConfig c = SmallConfig("olmoe");
  MoeLayer part(c, std::vector<int64_t>{1, 4, 6});
  ASSERT_EQ(part->experts->expert_ids(), (std::vector<int64_t>{1, 4, 6}));
  std::vector<std::string> names;
  for (const auto& item : part->named_parameters(true)) names.push_back(item.key());
  EXPECT_EQ(names.size(), 1u + 3 * 3);  // router + 3 experts x {gate, up, down}
  EXPECT_NE(std::find(names.begin(), names.end(), "experts.4.up_proj.weight"), names.end());
  try {
    part->forward(at::ones({3, c.hidden_size}));
    ADD_FAILURE() << "a layer holding 3 of 8 experts ran with the local dispatcher";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("holds 3 of 8 experts"), std::string::npos) << e.what();
  }
  EXPECT_THROW(MoeLayer(c, std::vector<int64_t>{4, 1}), Error);  // not increasing
  EXPECT_THROW(MoeLayer(c, std::vector<int64_t>{0, 8}), Error);  // out of range
  EXPECT_THROW(CausalLM(c, std::vector<std::vector<int64_t>>{{0, 1}}), Error);  // held experts for 1 of 2 layers
}

TEST(GroupedExperts, ScalesMultiplyGateUpAndIntermediate) {
  at::manual_seed(3);
  GroupedExperts ex(8, 6, std::vector<int64_t>{0, 1});
  {
    at::NoGradGuard g;
    for (auto& p : ex->parameters()) p.normal_();
  }
  at::Tensor x = at::randn({5, 8});
  std::vector<int64_t> counts{2, 3};
  ExpertScales s{at::rand({5, 8}), at::rand({5, 8}), at::rand({5, 6})};
  at::Tensor y = ex->forward(x, counts, &s);
  for (int64_t r = 0; r < 5; ++r) {
    Expert& e = ex->expert(r < 2 ? 0 : 1);
    at::Tensor g = at::mv(e->gate_proj->weight, x[r] * s.gate_in_RD[r]);
    at::Tensor u = at::mv(e->up_proj->weight, x[r] * s.up_in_RD[r]);
    at::Tensor h = at::silu(g) * u * s.down_in_RI[r];
    // mv against the grouped matmul: other orders of the D (gate, up) and I (down) additions.
    EXPECT_TRUE(test::SumsAgree(y[r], at::mv(e->down_proj->weight, h), 8 + 6)) << r;
  }
  // All-ones scales change nothing (an untrained compressed expert is the identity): x * 1 is
  // exact, but with scales gate and up are two matmuls and without them one fused [2I, D] matmul
  // (model/moe/grouped_swiglu.h), which BLAS may block differently: the D and I sums may round
  // differently.
  ExpertScales ones{at::ones({5, 8}), at::ones({5, 8}), at::ones({5, 6})};
  EXPECT_TRUE(test::SumsAgree(ex->forward(x, counts, &ones), ex->forward(x, counts), 8 + 6));
  EXPECT_THROW(ex->forward(x, std::vector<int64_t>{2, 2}), Error);
}

}  // namespace
}  // namespace cemoe
