// compressed_experts_test.cc: the compressed experts of method.md section 1 (CE, arXiv 2503.00634).
//   - CE vectors of ones give the plain top-K_m model, at the MoE layer and the whole CausalLM,
//     OLMoE (K 4 / K_m 2, K 8 / K_m 4) and Phi-MoE (K 2 / K_m 1), both aggregation modes, to
//     within the order of the float sums: the scales are exactly 1.0, but with them the kernel
//     runs gate and up as two products where the plain layer runs one fused [2I, D] product, and
//     a BLAS may sum those in different orders (OpenBLAS's generic kernels agreed bit for bit;
//     its Haswell and SkylakeX kernels differed by 7.6e-5 at Phi-MoE's shape on a CPU where
//     OpenBLAS detects them itself);
//   - with random CE vectors the layer equals a per-token loop written from method.md 1.3, in
//     value and in every gradient (float64);
//   - gradients reach only the rows of auxiliary experts actually used, and equal central
//     finite differences;
//   - InitRandom, config.json in both layouts (round trips and named errors), Hugging Face
//     folders in both layouts (bit-exact logits, the authors' ces tensor), switching CE off and
//     the K_m >= K error.
#include <ATen/ATen.h>
#include <gtest/gtest.h>
#include <torch/autograd.h>
#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <functional>
#include <map>
#include <nlohmann/json.hpp>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "model/causal_lm.h"
#include "model/check.h"
#include "model/config.h"
#include "model/hf_checkpoint.h"
#include "model/moe/compressed_experts.h"
#include "model/moe/moe_layer.h"
#include "model/moe/router.h"
#include "model/safetensors.h"
#include "tests/tolerance.h"

namespace cemoe {
namespace {

namespace fs = std::filesystem;

// (arch, K, K_m, E; 0 = the preset's E)
struct Case {
  std::string arch;
  int64_t k, k_m, experts;
};

std::string CaseName(const Case& c) {
  return fmt::format("{}_K{}_Km{}_E{}", c.arch, c.k, c.k_m, c.experts);
}

const char* ModeName(CeAggregation m) {
  return m == CeAggregation::kAtExperts ? "AtExperts" : "AtSource";
}

ModelConfig ConfigOf(const Case& c) {
  ModelConfig config = PresetConfig(c.arch, "tiny");
  if (c.experts > 0) config.num_experts = c.experts;
  config.num_experts_per_tok = c.k;
  ValidateModelConfig(config, "test");
  return config;
}

const std::vector<Case> kCases = {
    {"olmoe", 4, 2, 0},    // the tiny preset: 8 experts
    {"olmoe", 8, 4, 16},   // OLMoE's real K / K_m at 16 experts
    {"phimoe", 2, 1, 0},   // sparsemixer, 4 experts
};

void SetCeMode(CausalLM& model, CeAggregation mode) {
  for (auto& layer : model->moe_layers()) layer->compressed_experts->set_aggregation(mode);
}

// ---------------------------------------------------------------------------------------------
// 1. Vectors of ones: bit for bit the top-K_m model.

class CeOnesTest : public ::testing::TestWithParam<std::tuple<Case, CeAggregation>> {};

TEST_P(CeOnesTest, LayerEqualsTopKm) {
  const auto [c, mode] = GetParam();
  const ModelConfig config = ConfigOf(c);
  at::manual_seed(5);
  MoeLayer layer(config);
  {
    at::NoGradGuard g;
    for (auto& p : layer->parameters()) p.normal_(0.0, 0.5);
  }
  at::Tensor x = at::randn({3, 11, config.hidden_size});
  layer->set_top_k(c.k_m);
  at::Tensor plain = layer->forward(x);
  layer->set_top_k(c.k);
  layer->EnableCompressedExperts(c.k_m);
  layer->compressed_experts->set_aggregation(mode);
  ASSERT_EQ(layer->main_experts(), c.k_m);
  MoeLayerImpl::Output ce = layer->Forward(x);
  EXPECT_EQ(ce.routing.topk_ids_TK.size(1), c.k);  // the full top-K is reported
  // One MoE layer's chain: the gate/up sums over D, the down sum over I, the combine over K.
  const int64_t terms = config.hidden_size + config.intermediate_size + c.k;
  EXPECT_TRUE(test::SumsAgree(ce.out, plain, terms));
}

TEST_P(CeOnesTest, CausalLMEqualsTopKm) {
  const auto [c, mode] = GetParam();
  const ModelConfig config = ConfigOf(c);
  CausalLM model(config);
  model->InitRandom(21);
  at::Tensor tokens = at::randint(0, config.vocab_size, {2, 10}, at::kLong);
  at::NoGradGuard no_grad;
  model->set_top_k(c.k_m);
  ModelOutput plain = model->Forward(TokenBatch{tokens, {}, {}}, /*keep_moe_outputs=*/true);
  const at::Tensor plain_logits = model->LmHead(plain.hidden_BSD);
  model->set_top_k(c.k);
  model->set_compressed_experts(c.k_m);
  SetCeMode(model, mode);
  ASSERT_EQ(model->main_experts(), c.k_m);
  ModelOutput ce = model->Forward(TokenBatch{tokens, {}, {}}, /*keep_moe_outputs=*/true);
  const int64_t terms = test::ForwardTerms(config, tokens.size(1));
  EXPECT_TRUE(test::SumsAgree(model->LmHead(ce.hidden_BSD), plain_logits, terms));
  ASSERT_EQ(ce.moe_out_BSD.size(), static_cast<size_t>(config.num_hidden_layers));
  for (size_t l = 0; l < ce.moe_out_BSD.size(); ++l) {
    EXPECT_TRUE(test::SumsAgree(ce.moe_out_BSD[l], plain.moe_out_BSD[l], terms)) << "layer " << l;
    EXPECT_EQ(ce.routing[l].topk_ids_TK.size(1), c.k);
  }
}

INSTANTIATE_TEST_SUITE_P(
    Families, CeOnesTest,
    ::testing::Combine(::testing::ValuesIn(kCases),
                       ::testing::Values(CeAggregation::kAtExperts, CeAggregation::kAtSource)),
    [](const auto& info) {
      return CaseName(std::get<0>(info.param)) + "_" + ModeName(std::get<1>(info.param));
    });

// ---------------------------------------------------------------------------------------------
// 2. Random vectors: the layer against method.md 1.3 written out per token.

// A float64 layer with random weights (std 0.5, as moe_test.cc) and CE vectors 1 + N(0, 0.5).
MoeLayer RandomCeLayer(const Case& c, CeAggregation mode, uint64_t seed) {
  const ModelConfig config = ConfigOf(c);
  at::manual_seed(seed);
  MoeLayer layer(config);
  layer->EnableCompressedExperts(c.k_m);
  layer->compressed_experts->set_aggregation(mode);
  {
    at::NoGradGuard g;
    for (auto& item : layer->named_parameters(true)) {
      const bool ce = item.key().rfind("compressed_experts.", 0) == 0;
      item.value().normal_(ce ? 1.0 : 0.0, 0.5);
    }
  }
  layer->to(at::kDouble);
  return layer;
}

struct Reference {
  at::Tensor out_TD;
  std::set<int64_t> aux_used;  // experts that were auxiliary for some token
};

// method.md 1.3, one token at a time. OLMoE: alpha = softmax(router(x)) with the router's
// documented float32 softmax (router.h), top-K by sorting here, main = first K_m, aux = rest;
// w'_j = alpha_j / sum_aux alpha; g, u, d = sum_j w'_j (g_j, u_j, d_j); output = sum over main e
// of alpha_e * down_e(silu(gate_e(x * g)) * up_e(x * u) * d). Phi-MoE: the sparsemixer's two
// choices (router.h; tested on hand-worked values in moe_test.cc), main = first with its
// multiplier, aux = second whose vectors are used as they are.
Reference MethodLoop(MoeLayerImpl& layer, const ModelConfig& config, const at::Tensor& x_TD,
                     int64_t k, int64_t k_m) {
  const at::Tensor& G = layer.compressed_experts->g;
  const at::Tensor& U = layer.compressed_experts->u;
  const at::Tensor& Dv = layer.compressed_experts->d;
  at::Tensor logits_TE = at::linear(x_TD, layer.router->weight);
  at::Tensor probs_TE, phi_ids, phi_w;
  if (config.is_phimoe()) {
    RouterOutput r = SparseMixer(logits_TE, k, config.router_jitter_noise);
    phi_ids = r.topk_ids_TK;
    phi_w = r.topk_weights_TK;
  } else {
    probs_TE = at::softmax(logits_TE, -1, at::kFloat).to(x_TD.scalar_type());
  }
  Reference ref;
  std::vector<at::Tensor> rows;
  for (int64_t t = 0; t < x_TD.size(0); ++t) {
    std::vector<int64_t> ids;
    std::vector<at::Tensor> w;
    if (config.is_phimoe()) {
      for (int64_t j = 0; j < k; ++j) {
        ids.push_back(phi_ids[t][j].item<int64_t>());
        w.push_back(phi_w[t][j]);
      }
    } else {
      std::vector<std::pair<double, int64_t>> order;
      for (int64_t e = 0; e < config.num_experts; ++e) {
        order.emplace_back(probs_TE[t][e].item<double>(), e);
      }
      std::stable_sort(order.begin(), order.end(),
                       [](const auto& a, const auto& b) { return a.first > b.first; });
      for (int64_t j = 0; j < k; ++j) {
        ids.push_back(order[j].second);
        w.push_back(probs_TE[t][order[j].second]);
      }
    }
    at::Tensor sum_aux = at::zeros({}, x_TD.options());
    for (int64_t j = k_m; j < k; ++j) sum_aux = sum_aux + w[j];
    at::Tensor g = at::zeros({config.hidden_size}, x_TD.options());
    at::Tensor u = at::zeros({config.hidden_size}, x_TD.options());
    at::Tensor d = at::zeros({config.intermediate_size}, x_TD.options());
    for (int64_t j = k_m; j < k; ++j) {
      at::Tensor wj = w[j] / sum_aux;  // renormalised over the aux set
      g = g + wj * G[ids[j]];
      u = u + wj * U[ids[j]];
      d = d + wj * Dv[ids[j]];
      ref.aux_used.insert(ids[j]);
    }
    at::Tensor xt = x_TD[t];
    at::Tensor acc = at::zeros({config.hidden_size}, x_TD.options());
    for (int64_t j = 0; j < k_m; ++j) {
      Expert& ex = layer.experts->expert(static_cast<size_t>(ids[j]));
      at::Tensor a = at::mv(ex->gate_proj->weight, xt * g);
      at::Tensor h = a * at::sigmoid(a) * at::mv(ex->up_proj->weight, xt * u) * d;
      acc = acc + w[j] * at::mv(ex->down_proj->weight, h);  // ORIGINAL weight
    }
    rows.push_back(acc);
  }
  ref.out_TD = at::stack(rows);
  return ref;
}

class CeLoopTest : public ::testing::TestWithParam<std::tuple<Case, CeAggregation>> {};

TEST_P(CeLoopTest, LayerEqualsMethodLoopInValueAndGradient) {
  const auto [c, mode] = GetParam();
  const ModelConfig config = ConfigOf(c);
  MoeLayer layer = RandomCeLayer(c, mode, 17);
  at::Tensor x = at::randn({13, config.hidden_size}, at::kDouble).requires_grad_(true);
  at::Tensor y = layer->forward(x);
  Reference ref = MethodLoop(*layer, config, x, c.k, c.k_m);
  // Both run in float64 (the router's softmax in float32 on identical logits, so both get the
  // same alpha) and add in other orders. Additions along the longest chain: router (D) and
  // softmax (E), the aggregation (K_a), gate/up (D), down (I), the combine (K_m); backward
  // down^T (D), gate/up^T (2 I), the aggregation (K_a), softmax^T (E), router^T (D) and the
  // tokens for weight gradients.
  const int64_t d = config.hidden_size, i = config.intermediate_size, e = config.num_experts;
  const int64_t terms = (d + e + c.k + d + i + c.k) + (d + 2 * i + c.k + e + d) + x.size(0);
  EXPECT_TRUE(test::SumsAgree(y, ref.out_TD, terms));
  // The aggregated vectors really modulate the experts: the plain top-K_m layer differs.
  layer->DisableCompressedExperts();
  layer->set_top_k(c.k_m);
  EXPECT_GT(test::MaxAbsDiff(layer->forward(x), y), 1e-3 * test::MaxAbs(y));
  layer->set_top_k(c.k);
  layer->EnableCompressedExperts(c.k_m);

  at::Tensor gy = at::randn_like(y);
  std::vector<at::Tensor> inputs = {x};
  std::vector<std::string> names = {"x"};
  for (auto& item : layer->named_parameters(true)) {
    inputs.push_back(item.value());
    names.push_back(item.key());
  }
  auto g1 = torch::autograd::grad({y}, inputs, {gy}, /*retain_graph=*/true,
                                  /*create_graph=*/false, /*allow_unused=*/true);
  auto g2 = torch::autograd::grad({ref.out_TD}, inputs, {gy}, true, false, true);
  int compared = 0;
  for (size_t n = 0; n < inputs.size(); ++n) {
    if (!g1[n].defined() && !g2[n].defined()) continue;
    at::Tensor a = g1[n].defined() ? g1[n] : at::zeros_like(inputs[n]);
    at::Tensor b = g2[n].defined() ? g2[n] : at::zeros_like(inputs[n]);
    // Gradients that pass through the router's float32 softmax backward (x, router) carry its
    // float32 rounding of dL/dalpha (E terms); the rest are float64 throughout.
    const bool through_router = names[n] == "x" || names[n] == "router.weight";
    if (through_router && !config.is_phimoe()) {
      EXPECT_TRUE(test::CloseTo(a, b,
                                test::SumTolerance(terms, test::MaxAbs(b), test::kFloat64Eps) +
                                    test::SumTolerance(e + 2, test::MaxAbs(b), test::kFloat32Eps),
                                "float64 sums + the router's float32 softmax backward"))
          << names[n];
    } else {
      EXPECT_TRUE(test::SumsAgree(a, b, terms)) << names[n];
    }
    ++compared;
  }
  EXPECT_GE(compared, 5);  // x, router, g, u, d and the experts used
}

INSTANTIATE_TEST_SUITE_P(
    Families, CeLoopTest,
    ::testing::Combine(::testing::ValuesIn(kCases),
                       ::testing::Values(CeAggregation::kAtExperts, CeAggregation::kAtSource)),
    [](const auto& info) {
      return CaseName(std::get<0>(info.param)) + "_" + ModeName(std::get<1>(info.param));
    });

// ---------------------------------------------------------------------------------------------
// 3. Gradients: only the used auxiliary rows, and equal to finite differences.

class CeGradTest : public ::testing::TestWithParam<std::tuple<Case, CeAggregation>> {};

TEST_P(CeGradTest, OnlyUsedAuxRowsGetGradientsEqualToFiniteDifferences) {
  const auto [c, mode] = GetParam();
  const ModelConfig config = ConfigOf(c);
  MoeLayer layer = RandomCeLayer(c, mode, 29);
  // Few tokens, so that some experts are never auxiliary.
  at::Tensor x = at::randn({2, config.hidden_size}, at::kDouble).requires_grad_(true);
  at::Tensor gy = at::randn({2, config.hidden_size}, at::kDouble);
  auto loss_of = [&](const at::Tensor& xx) { return (layer->forward(xx) * gy).sum(); };
  at::Tensor loss = loss_of(x);
  MoeLayerImpl::Output o = layer->Forward(x);
  std::set<int64_t> aux_used;
  for (int64_t t = 0; t < 2; ++t) {
    for (int64_t j = c.k_m; j < c.k; ++j) aux_used.insert(o.routing.topk_ids_TK[t][j].item<int64_t>());
  }
  ASSERT_LT(aux_used.size(), static_cast<size_t>(config.num_experts)) << "every expert was aux";
  loss.backward();
  CompressedExpertsImpl& ce = *layer->compressed_experts;
  for (const auto& [name, p] : std::vector<std::pair<std::string, at::Tensor>>{
           {"g", ce.g}, {"u", ce.u}, {"d", ce.d}}) {
    ASSERT_TRUE(p.grad().defined()) << name;
    for (int64_t e = 0; e < config.num_experts; ++e) {
      const bool used = aux_used.count(e) > 0;
      const at::Tensor row = p.grad()[e];
      if (used) {
        EXPECT_TRUE(at::all(row != 0).item<bool>()) << name << " row " << e << " (aux) has zeros";
      } else {
        EXPECT_TRUE(at::equal(row, at::zeros_like(row))) << name << " row " << e << " not aux";
      }
    }
  }

  // Central differences, float64. Rounding: L is a sum of ~n terms, so each evaluation is off by
  // at most n eps Labs (Labs = sum |out * gy|), the difference quotient by n eps Labs / h.
  // Truncation: h^2 / 6 |L'''|; with entries of order 1 and tanh-like curvature |L'''| is of the
  // order of Labs, so h^2 Labs bounds it. For OLMoE the router's float32 softmax adds a rounding
  // of alpha (a few float32 ulps, 8 here as moe_test.cc) to every evaluation along x and the
  // router: 8 eps32 Labs / h more (and a larger h keeps that small).
  const double labs = (layer->forward(x) * gy).abs().sum().item<double>();
  const int64_t n = config.hidden_size + config.intermediate_size + config.num_experts + 2 * c.k;
  auto check = [&](const std::string& what, at::Tensor param, std::vector<int64_t> index,
                   bool through_router) {
    const bool f32 = through_router && !config.is_phimoe();
    const double h = f32 ? 1e-3 : 1e-5;
    at::Tensor entry = param.detach();
    for (int64_t i : index) entry = entry.select(0, i);
    at::Tensor analytic = param.grad();
    for (int64_t i : index) analytic = analytic.select(0, i);
    const double want = analytic.item<double>();
    const double saved = entry.item<double>();
    at::NoGradGuard no_grad;
    auto eval = [&](double v) {
      entry.fill_(v);
      at::Tensor ids = layer->Forward(x).routing.topk_ids_TK;
      EXPECT_TRUE(at::equal(ids, o.routing.topk_ids_TK)) << what << ": the step changed routing";
      return loss_of(x).item<double>();
    };
    const double fd = (eval(saved + h) - eval(saved - h)) / (2 * h);
    entry.fill_(saved);
    const double tol = n * test::kFloat64Eps * labs / h + h * h * labs +
                       (f32 ? 8 * test::kFloat32Eps * labs / h : 0.0);
    EXPECT_NEAR(fd, want, tol) << what << " (Labs " << labs << ", h " << h << ")";
  };
  const int64_t a = *aux_used.begin(), b = *aux_used.rbegin();
  check("g", ce.g, {a, 3}, false);
  check("g", ce.g, {b, 10}, false);
  check("u", ce.u, {a, 5}, false);
  check("u", ce.u, {b, 0}, false);
  check("d", ce.d, {a, 7}, false);
  check("d", ce.d, {b, config.intermediate_size - 1}, false);
  check("router", layer->router->weight, {a, 2}, true);
  check("router", layer->router->weight, {o.routing.topk_ids_TK[0][0].item<int64_t>(), 9}, true);
  check("x", x, {0, 4}, true);
  check("x", x, {1, 20}, true);
}

INSTANTIATE_TEST_SUITE_P(
    Families, CeGradTest,
    ::testing::Combine(::testing::ValuesIn(kCases),
                       ::testing::Values(CeAggregation::kAtExperts, CeAggregation::kAtSource)),
    [](const auto& info) {
      return CaseName(std::get<0>(info.param)) + "_" + ModeName(std::get<1>(info.param));
    });

// ---------------------------------------------------------------------------------------------
// 4. InitRandom, config, checkpoints, switching.

std::map<std::string, at::Tensor> Named(const torch::nn::Module& m) {
  std::map<std::string, at::Tensor> out;
  for (const auto& item : m.named_parameters(true)) out[item.key()] = item.value();
  return out;
}

TEST(CompressedExperts, InitRandomKeepsThePlainWeightsAndGivesOnes) {
  for (const Case& c : kCases) {
    SCOPED_TRACE(CaseName(c));
    ModelConfig config = ConfigOf(c);
    CausalLM plain(config);
    plain->InitRandom(3);
    config.ce_main_experts = c.k_m;
    CausalLM ce(config);
    ce->InitRandom(3);
    EXPECT_EQ(ce->main_experts(), c.k_m);
    const auto p = Named(*plain);
    int ce_params = 0;
    for (const auto& [name, t] : Named(*ce)) {
      if (name.find(".compressed_experts.") != std::string::npos) {
        EXPECT_TRUE(at::equal(t, at::ones_like(t))) << name;
        const int64_t width = name.back() == 'd' ? config.intermediate_size : config.hidden_size;
        EXPECT_EQ(t.sizes(), (at::IntArrayRef{config.num_experts, width})) << name;
        ++ce_params;
        continue;
      }
      ASSERT_TRUE(p.count(name)) << name;
      EXPECT_TRUE(at::equal(t, p.at(name))) << name;
    }
    EXPECT_EQ(ce_params, 3 * config.num_hidden_layers);
    EXPECT_EQ(p.size() + 3 * config.num_hidden_layers, Named(*ce).size());
  }
}

std::string ErrorOf(const std::function<void()>& f) {
  try {
    f();
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

TEST(CompressedExpertsConfig, BothLayoutsRoundTrip) {
  for (const Case& c : kCases) {
    for (const std::string layout : {"cemoe", "authors"}) {
      SCOPED_TRACE(CaseName(c) + " " + layout);
      ModelConfig config = ConfigOf(c);
      config.ce_main_experts = c.k_m;
      config.ce_layout = layout;
      const nlohmann::json j = ModelConfigToJson(config);
      if (layout == "cemoe") {
        EXPECT_EQ(j.at("num_experts_per_tok"), c.k_m);  // what a plain loader runs
        EXPECT_EQ(j.at("compressed_experts").at("main_experts"), c.k_m);
        EXPECT_EQ(j.at("compressed_experts").at("auxiliary_experts"), c.k - c.k_m);
        EXPECT_FALSE(j.contains("use_ce"));
      } else {
        EXPECT_EQ(j.at("num_experts_per_tok"), c.k);
        EXPECT_EQ(j.at("use_ce"), true);
        EXPECT_EQ(j.at("n_ce"), c.k - c.k_m);
        EXPECT_FALSE(j.contains("compressed_experts"));
      }
      const ModelConfig back = ParseModelConfig(j, "config.json");
      EXPECT_EQ(back.num_experts_per_tok, c.k);
      EXPECT_EQ(back.ce_main_experts, c.k_m);
      EXPECT_EQ(back.ce_layout, layout);
      EXPECT_EQ(ModelConfigToJson(back), j);
    }
  }
  // Without CE neither key is written, and parsing gives no CE.
  const nlohmann::json plain = ModelConfigToJson(PresetConfig("olmoe", "tiny"));
  EXPECT_FALSE(plain.contains("use_ce") || plain.contains("compressed_experts"));
  EXPECT_EQ(ParseModelConfig(plain, "config.json").ce_main_experts, 0);
}

TEST(CompressedExpertsConfig, BadFieldsAreNamed) {
  ModelConfig config = PresetConfig("olmoe", "tiny");  // K = 4
  config.ce_main_experts = 2;
  config.ce_layout = "authors";
  const nlohmann::json authors = ModelConfigToJson(config);
  for (int64_t bad : {0, 4, 5}) {
    nlohmann::json j = authors;
    j["n_ce"] = bad;
    const std::string e = ErrorOf([&] { ParseModelConfig(j, "cfg.json"); });
    EXPECT_NE(e.find("\"n_ce\" (" + std::to_string(bad) + ")"), std::string::npos) << e;
    EXPECT_NE(e.find("cfg.json"), std::string::npos) << e;
  }
  {
    nlohmann::json j = authors;
    j.erase("n_ce");
    EXPECT_NE(ErrorOf([&] { ParseModelConfig(j, "cfg.json"); }).find("n_ce"), std::string::npos);
  }
  config.ce_layout = "cemoe";
  const nlohmann::json ours = ModelConfigToJson(config);
  {
    nlohmann::json j = ours;
    j["use_ce"] = true;
    j["n_ce"] = 2;
    const std::string e = ErrorOf([&] { ParseModelConfig(j, "cfg.json"); });
    EXPECT_NE(e.find("\"use_ce\""), std::string::npos) << e;
    EXPECT_NE(e.find("\"compressed_experts\""), std::string::npos) << e;
  }
  {
    nlohmann::json j = ours;
    j["compressed_experts"]["main_experts"] = 3;  // num_experts_per_tok says 2
    const std::string e = ErrorOf([&] { ParseModelConfig(j, "cfg.json"); });
    EXPECT_NE(e.find("\"main_experts\" (3)"), std::string::npos) << e;
    EXPECT_NE(e.find("num_experts_per_tok (2)"), std::string::npos) << e;
  }
  {
    nlohmann::json j = ours;
    j["compressed_experts"]["auxiliary_experts"] = 0;
    const std::string e = ErrorOf([&] { ParseModelConfig(j, "cfg.json"); });
    EXPECT_NE(e.find("auxiliary_experts (0)"), std::string::npos) << e;
  }
  {
    nlohmann::json j = ours;
    j["compressed_experts"]["auxiliary_experts"] = 7;  // 2 + 7 > 8 experts
    EXPECT_NE(ErrorOf([&] { ParseModelConfig(j, "cfg.json"); }), "");
  }
}

class CeCheckpointTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() / ("cemoe_ce_ckpt_" + std::to_string(::getpid()));
    fs::remove_all(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }
  // A CE model with random (not ones) vectors.
  static CausalLM RandomCeModel(ModelConfig config, int64_t k_m) {
    config.ce_main_experts = k_m;
    CausalLM model(config);
    model->InitRandom(13);
    at::NoGradGuard g;
    at::manual_seed(2);
    for (auto& layer : model->moe_layers()) {
      for (auto& p : layer->compressed_experts->parameters()) p.normal_(1.0, 0.3);
    }
    return model;
  }
  static at::Tensor Logits(CausalLM& m) {
    at::NoGradGuard g;
    at::Tensor tokens = at::arange(0, 24, at::kLong).view({2, 12}) * 5 % m->config().vocab_size;
    return m->forward(tokens);
  }
  fs::path dir_;
};

TEST_F(CeCheckpointTest, CemoeLayoutRoundTripsBitExact) {
  for (const Case& c : kCases) {
    SCOPED_TRACE(CaseName(c));
    CausalLM model = RandomCeModel(ConfigOf(c), c.k_m);
    SaveHfCheckpoint(*model, dir_.string(), 1ull << 40);
    ShardedCheckpoint ck(dir_.string());
    const std::string moe = c.arch == "phimoe" ? "block_sparse_moe" : "mlp";
    EXPECT_TRUE(ck.Contains("model.layers.1." + moe + ".compressed_experts.d"));
    CausalLM back = LoadHfModel(dir_.string());
    EXPECT_EQ(back->main_experts(), c.k_m);
    EXPECT_EQ(back->top_k(), c.k);
    EXPECT_TRUE(at::equal(Logits(back), Logits(model)));
    fs::remove_all(dir_);
  }
}

TEST_F(CeCheckpointTest, AuthorsLayoutWritesCesAndRoundTripsBitExact) {
  for (const Case& c : kCases) {
    if (c.arch != "olmoe") continue;
    SCOPED_TRACE(CaseName(c));
    ModelConfig config = ConfigOf(c);
    config.ce_layout = "authors";
    CausalLM model = RandomCeModel(config, c.k_m);
    SaveHfCheckpoint(*model, dir_.string(), 1ull << 40);
    ShardedCheckpoint ck(dir_.string());
    const int64_t E = config.num_experts, D = config.hidden_size, I = config.intermediate_size;
    ASSERT_LT(I, D);
    for (int64_t l = 0; l < config.num_hidden_layers; ++l) {
      const std::string name = fmt::format("model.layers.{}.mlp.ces", l);
      ASSERT_TRUE(ck.Contains(name)) << name;
      EXPECT_FALSE(ck.Contains(fmt::format("model.layers.{}.mlp.compressed_experts.g", l)));
      const at::Tensor ces = ck.Get(name);
      ASSERT_EQ(ces.sizes(), (at::IntArrayRef{E, 3, D}));
      const CompressedExpertsImpl& ce = *model->moe_layers()[l]->compressed_experts;
      EXPECT_TRUE(at::equal(ces.select(1, 0), ce.g));
      EXPECT_TRUE(at::equal(ces.select(1, 1).narrow(1, 0, I), ce.d));
      const at::Tensor pad = ces.select(1, 1).narrow(1, I, D - I);
      EXPECT_TRUE(at::equal(pad, at::ones_like(pad)));
      EXPECT_TRUE(at::equal(ces.select(1, 2), ce.u));
    }
    CausalLM back = LoadHfModel(dir_.string());
    EXPECT_EQ(back->config().ce_layout, "authors");
    EXPECT_EQ(back->main_experts(), c.k_m);
    EXPECT_EQ(back->top_k(), c.k);
    EXPECT_TRUE(at::equal(Logits(back), Logits(model)));
    fs::remove_all(dir_);
  }
}

TEST_F(CeCheckpointTest, AuthorsLayoutOnPhiThrowsNamingTheSizes) {
  ModelConfig config = PresetConfig("phimoe", "tiny");
  config.ce_layout = "authors";
  CausalLM model = RandomCeModel(config, 1);
  const std::string e = ErrorOf([&] { SaveHfCheckpoint(*model, dir_.string(), 1ull << 40); });
  EXPECT_NE(e.find(fmt::format("{} > {}", config.intermediate_size, config.hidden_size)),
            std::string::npos)
      << e;
  EXPECT_FALSE(fs::exists(dir_ / "config.json"));
}

TEST(CompressedExperts, OffGivesThePlainModelAndKmBelowKIsChecked) {
  for (const Case& c : kCases) {
    SCOPED_TRACE(CaseName(c));
    const ModelConfig config = ConfigOf(c);
    at::Tensor tokens = at::randint(0, config.vocab_size, {2, 8}, at::kLong);
    at::NoGradGuard no_grad;
    CausalLM plain(config);
    plain->InitRandom(8);
    CausalLM model(config);
    model->InitRandom(8);
    model->set_compressed_experts(c.k_m);
    for (auto& layer : model->moe_layers()) {
      for (auto& p : layer->compressed_experts->parameters()) p.normal_(1.0, 0.3);
    }
    EXPECT_FALSE(at::equal(model->forward(tokens), plain->forward(tokens)));
    model->set_compressed_experts(0);
    EXPECT_EQ(model->main_experts(), 0);
    EXPECT_EQ(model->config().ce_main_experts, 0);
    EXPECT_TRUE(at::equal(model->forward(tokens), plain->forward(tokens)));  // plain top-K
    // K_m >= K: a clear error at forward.
    model->set_compressed_experts(c.k);
    std::string e = ErrorOf([&] { model->forward(tokens); });
    EXPECT_NE(e.find(fmt::format("{} main experts of top_k {}", c.k, c.k)), std::string::npos)
        << e;
    model->set_compressed_experts(c.k_m);
    model->set_top_k(c.k_m);
    e = ErrorOf([&] { model->forward(tokens); });
    EXPECT_NE(e.find(fmt::format("{} main experts of top_k {}", c.k_m, c.k_m)), std::string::npos)
        << e;
  }
}

// A token whose auxiliary weights all underflowed to 0 has no defined average: its vectors are
// taken as ones (no modulation), and neither the value nor the gradient is NaN.
TEST(CeUnderflowTest, ZeroAuxWeightsGiveOnesNotNan) {
  ModelConfig config = PresetConfig("olmoe", "tiny");  // E 8, K 4
  for (CeAggregation mode : {CeAggregation::kAtExperts, CeAggregation::kAtSource}) {
    CompressedExperts ce(config, 2, mode);
    {
      at::NoGradGuard no_grad;
      ce->g.uniform_(0.5, 1.5);
      ce->u.uniform_(0.5, 1.5);
      ce->d.uniform_(0.5, 1.5);
    }
    RouterOutput routing;
    routing.logits_TE = at::zeros({2, config.num_experts});
    routing.topk_ids_TK = at::tensor({0, 1, 2, 3, 4, 5, 6, 7}, at::kLong).view({2, 4});
    // Token 0: aux weights 0 and 0; token 1: ordinary weights.
    at::Tensor w = at::tensor({0.9f, 0.1f, 0.0f, 0.0f, 0.4f, 0.3f, 0.2f, 0.1f}).view({2, 4});
    routing.topk_weights_TK = w.requires_grad_(true);
    MainRouting main = ce->Apply(routing);
    ExpertScales s = ce->Scales(main.extras_T);
    EXPECT_TRUE(at::equal(s.gate_in_RD[0], at::ones({config.hidden_size})));
    EXPECT_TRUE(at::equal(s.down_in_RI[0], at::ones({config.intermediate_size})));
    // Token 1: (0.2 g_6 + 0.1 g_7) / 0.3.
    at::Tensor want = (ce->g[6] * 0.2f + ce->g[7] * 0.1f) / 0.3f;
    EXPECT_TRUE(at::allclose(s.gate_in_RD[1], want, 1e-6, 1e-6));
    (s.gate_in_RD.sum() + s.up_in_RD.sum() + s.down_in_RI.sum()).backward();
    EXPECT_TRUE(at::isfinite(w.grad()).all().item<bool>());
    EXPECT_TRUE(at::isfinite(ce->g.grad()).all().item<bool>());
  }
}

}  // namespace
}  // namespace cemoe
