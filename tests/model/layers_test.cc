// layers_test.cc: config.json parsing and its errors, RoPE and longrope against the formula,
// attention against an explicit per-head loop, norms against their definitions.
#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include <unistd.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "model/attention.h"
#include "model/check.h"
#include "model/config.h"
#include "model/norm.h"
#include "model/published_configs.h"
#include "model/rope.h"
#include "tests/tolerance.h"

namespace cemoe {
namespace {

using nlohmann::json;

json OlmoeJson() {
  return json::parse(R"({"model_type": "olmoe", "vocab_size": 100, "hidden_size": 32,
    "intermediate_size": 16, "num_hidden_layers": 2, "num_attention_heads": 4,
    "num_key_value_heads": 2, "num_experts": 8, "num_experts_per_tok": 2,
    "norm_topk_prob": true, "rms_norm_eps": 1e-6, "clip_qkv": 3.5,
    "rope_parameters": {"rope_theta": 500.0, "rope_type": "default"}})");
}

std::string ErrorOf(const json& j) {
  try {
    ParseModelConfig(j, "cfg.json");
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

TEST(Config, ReadsTransformers5Spelling) {
  ModelConfig c = ParseModelConfig(OlmoeJson(), "cfg.json");
  EXPECT_EQ(c.num_experts, 8);
  EXPECT_EQ(c.num_key_value_heads, 2);
  EXPECT_EQ(c.head_dim, 8);
  EXPECT_TRUE(c.norm_topk_prob);
  EXPECT_DOUBLE_EQ(c.rope_theta, 500.0);
  EXPECT_DOUBLE_EQ(*c.clip_qkv, 3.5);
  EXPECT_DOUBLE_EQ(c.norm_eps, 1e-6);
  EXPECT_FALSE(c.longrope.has_value());
}

// Phi-MoE: 2 as published, 1 as `cemoe export` writes a top-1 fine-tune; nothing else.
TEST(Config, PhiMoeExpertsPerTokenIsOneOrTwo) {
  nlohmann::json j = ModelConfigToJson(PresetConfig("phimoe", "tiny"));
  for (int k : {1, 2}) {
    j["num_experts_per_tok"] = k;
    EXPECT_EQ(ParseModelConfig(j, "cfg.json").num_experts_per_tok, k);
  }
  j["num_experts_per_tok"] = 3;
  EXPECT_NE(ErrorOf(j).find("cfg.json: Phi-MoE's sparsemixer routes 1 or 2 experts, "
                            "num_experts_per_tok is 3"),
            std::string::npos)
      << ErrorOf(j);
}

TEST(Config, ErrorsNameFileFieldAndValue) {
  json j = OlmoeJson();
  j["model_type"] = "mixtral";
  EXPECT_NE(ErrorOf(j).find("cfg.json: unsupported model_type \"mixtral\""), std::string::npos);
  j = OlmoeJson();
  j.erase("hidden_size");
  EXPECT_NE(ErrorOf(j).find("cfg.json: missing field \"hidden_size\""), std::string::npos);
  j = OlmoeJson();
  j["num_key_value_heads"] = 3;
  EXPECT_NE(ErrorOf(j).find("num_attention_heads (4) must be divisible by num_key_value_heads (3)"),
            std::string::npos)
      << ErrorOf(j);
  j = OlmoeJson();
  j["num_experts_per_tok"] = 9;
  EXPECT_NE(ErrorOf(j).find("num_experts_per_tok (9) exceeds the number of experts (8)"),
            std::string::npos);
  j = OlmoeJson();
  j["vocab_size"] = "big";
  EXPECT_NE(ErrorOf(j).find("field \"vocab_size\" must be an integer, got \"big\""),
            std::string::npos);
  j = OlmoeJson();
  j.erase("rope_parameters");
  EXPECT_NE(ErrorOf(j).find("missing field \"rope_theta\""), std::string::npos);
}

TEST(Config, HostileFilesAreErrorsNamingTheFile) {
  namespace fs = std::filesystem;
  const fs::path dir = fs::temp_directory_path() / ("cemoe_cfg_" + std::to_string(::getpid()));
  fs::create_directories(dir);
  const std::string path = (dir / "config.json").string();
  auto error_of = [&](const std::string& text) {
    std::ofstream(path, std::ios::trunc) << text;
    try {
      LoadModelConfig(dir.string());
    } catch (const Error& e) {
      return std::string(e.what());
    }
    return std::string("no error");
  };
  // A value nested 100000 deep: nlohmann's dump() in an error message would overflow the stack.
  const std::string deep = "{\"model_type\": " + std::string(100000, '[') +
                           std::string(100000, ']') + "}";
  EXPECT_NE(error_of(deep).find(path + ": invalid JSON: arrays and objects nested deeper than 128"),
            std::string::npos)
      << error_of(deep);
  EXPECT_NE(error_of("{\"model_type\": ").find(path + ": invalid JSON"), std::string::npos);
  EXPECT_NE(error_of("").find(path + ": invalid JSON"), std::string::npos);
  fs::remove_all(dir);
  EXPECT_NE(error_of("{}").find("cannot open config file"), std::string::npos);
}

TEST(Config, PhiLongropeBothSpellingsAndFactorLength) {
  ModelConfig phi = PresetConfig("phimoe", "phi-3.5-moe");
  ASSERT_TRUE(phi.longrope.has_value());
  EXPECT_EQ(phi.longrope->short_factor.size(), 64u);
  EXPECT_EQ(phi.longrope->original_max_position_embeddings, 4096);
  EXPECT_DOUBLE_EQ(phi.longrope->long_mscale, 1.243163121016122);
  EXPECT_EQ(phi.num_key_value_heads, 8);
  EXPECT_EQ(phi.num_experts, 16);
  EXPECT_TRUE(phi.attention_bias && phi.lm_head_bias);
  // Round trip through our writer (4.x spelling) gives the same config.
  ModelConfig again = ParseModelConfig(ModelConfigToJson(phi), "written");
  EXPECT_EQ(again.longrope->long_factor, phi.longrope->long_factor);
  // Wrong factor count.
  json j = json::parse(PublishedConfigJson("phi-3.5-moe"));
  j["rope_scaling"]["short_factor"].erase(0);
  EXPECT_NE(ErrorOf(j).find("longrope short_factor has 63 entries, head_dim / 2 is 64"),
            std::string::npos)
      << ErrorOf(j);
  ModelConfig olmoe = PresetConfig("olmoe", "olmoe-1b-7b");
  EXPECT_EQ(olmoe.num_experts, 64);
  EXPECT_EQ(olmoe.intermediate_size, 1024);
  EXPECT_EQ(olmoe.num_experts_per_tok, 8);
}

TEST(Rope, MatchesTheFormulaAndSwitchesToLongFactors) {
  ModelConfig c = PresetConfig("phimoe", "tiny");  // head_dim 16, original 64
  const LongRope& lr = *c.longrope;
  // ComputeRope works in float32: the angle s * inv_freq carries pow (<= 2 ulps), the factor's
  // cast, its product, the reciprocal and the product by s (<= eps / 2 each), so <= 4 eps of
  // |angle| (the reference is float64); cos and sin add a few ulps of their value, and mscale
  // one more rounding. The angle's part grows with the position (angles reach ~99 here).
  constexpr int kAngleUlps = 4, kTrigUlps = 4;
  for (int64_t seq : {10, 100}) {
    RopeTables t = ComputeRope(c, seq, at::kCPU);
    const bool use_long = seq > lr.original_max_position_embeddings;
    const auto& f = use_long ? lr.long_factor : lr.short_factor;
    const double m = use_long ? lr.long_mscale : lr.short_mscale;
    for (int64_t s : {int64_t{0}, int64_t{3}, seq - 1}) {
      for (int64_t i = 0; i < c.head_dim / 2; ++i) {
        const double inv = 1.0 / (f[i] * std::pow(c.rope_theta, 2.0 * i / c.head_dim));
        const double angle = static_cast<double>(s) * inv;
        const double tol = m * (test::FewUlps(angle, kAngleUlps) + test::FewUlps(1.0, kTrigUlps));
        EXPECT_NEAR(t.cos_SH[s][i].item<float>(), std::cos(angle) * m, tol);
        EXPECT_NEAR(t.sin_SH[s][i + c.head_dim / 2].item<float>(), std::sin(angle) * m, tol);
      }
    }
  }
  // Rotate-half on a hand-worked vector: x = [1, 2, 3, 4], cos = c, sin = s ->
  // [1c - 3s, 2c - 4s, 3c + 1s, 4c + 2s], every product and sum exact in float32.
  RopeTables one{at::full({1, 4}, 0.5f), at::full({1, 4}, 0.25f)};
  at::Tensor x = at::tensor({1.0f, 2.0f, 3.0f, 4.0f}).view({1, 1, 1, 4});
  at::Tensor y = ApplyRope(x, one).view({4});
  EXPECT_TRUE(at::equal(y, at::tensor({-0.25f, 0.0f, 1.75f, 2.5f})));
}

TEST(Attention, CausalSoftmaxMatchesExplicitLoop) {
  at::manual_seed(1);
  at::Tensor q = at::randn({1, 2, 5, 4}, at::kDouble), k = at::randn({1, 2, 5, 4}, at::kDouble),
             v = at::randn({1, 2, 5, 4}, at::kDouble);
  at::Tensor out = CausalAttention(q, k, v, 0.5);
  for (int64_t h = 0; h < 2; ++h) {
    for (int64_t i = 0; i < 5; ++i) {
      std::vector<double> w;
      double z = 0;
      for (int64_t j = 0; j <= i; ++j) {
        w.push_back(std::exp(0.5 * at::dot(q[0][h][i], k[0][h][j]).item<double>()));
        z += w.back();
      }
      at::Tensor ref = at::zeros({4}, at::kDouble);
      for (int64_t j = 0; j <= i; ++j) ref += (w[j] / z) * v[0][h][j];
      // float64, other orders of the q.k (head_dim 4), softmax (<= 5) and weights x v additions.
      EXPECT_TRUE(test::SumsAgree(out[0][h][i], ref, 4 + 5 + 5)) << h << " " << i;
    }
  }
}

TEST(Attention, GqaSharesKvHeadsBetweenAdjacentQueryHeads) {
  // 4 query heads on 2 kv heads: heads 0,1 use kv 0 and heads 2,3 use kv 1. With identical
  // queries per head, the outputs of heads 0 and 1 are equal and differ from heads 2, 3.
  ModelConfig c = PresetConfig("phimoe", "tiny");
  c.longrope.reset();
  at::manual_seed(2);
  Attention attn(c);
  {
    at::NoGradGuard g;
    for (auto& p : attn->parameters()) p.normal_(0.0, 0.3);
    // Make every query head's projection identical.
    at::Tensor w = attn->q_proj->weight.view({4, 16, 64});
    for (int h = 1; h < 4; ++h) w[h].copy_(w[0]);
    at::Tensor b = attn->q_proj->bias.view({4, 16});
    for (int h = 1; h < 4; ++h) b[h].copy_(b[0]);
    attn->o_proj->weight.copy_(at::eye(64));
    attn->o_proj->bias.zero_();
  }
  at::Tensor x = at::randn({1, 6, 64});
  at::Tensor out = attn->forward(x, ComputeRope(c, 6, at::kCPU)).view({6, 4, 16});
  // Same numbers through other slices of batched matmuls: at most other orders of the q
  // projection (64), q.k (16), softmax and weights x v (6 each) and o_proj (64) additions.
  const int64_t terms = 64 + 16 + 6 + 6 + 64;
  EXPECT_TRUE(test::SumsAgree(out.select(1, 1), out.select(1, 0), terms));
  EXPECT_TRUE(test::SumsAgree(out.select(1, 3), out.select(1, 2), terms));
  // Other kv heads: different by far more than rounding (1e-3 of the scale).
  EXPECT_GT(test::MaxAbsDiff(out.select(1, 0), out.select(1, 2)),
            1e-3 * test::MaxAbs(out.select(1, 0)));
}

TEST(Norms, RmsAndLayerNormDefinitions) {
  at::Tensor x = at::tensor({3.0f, 4.0f}).view({1, 2});
  at::Tensor w = at::tensor({2.0f, 0.5f});
  // rms = sqrt((9 + 16) / 2) = sqrt(12.5). Squares, their sum and the mean are exact; rsqrt
  // (<= 2 ulps) and the two products (eps / 2 each) round: 4 ulps.
  at::Tensor y = RmsNorm(x, w, 0.0).view({2});
  const double y0 = 2.0 * 3.0 / std::sqrt(12.5), y1 = 0.5 * 4.0 / std::sqrt(12.5);
  EXPECT_NEAR(y[0].item<float>(), y0, test::FewUlps(y0, 4));
  EXPECT_NEAR(y[1].item<float>(), y1, test::FewUlps(y1, 4));
  // Layer norm: mean 3.5, variance 0.25, normalised [-1, 1]; the variance's rsqrt and the affine
  // map round: 4 ulps of the result.
  at::Tensor ln = LayerNorm(x, w, at::tensor({1.0f, -1.0f}), 0.0).view({2});
  EXPECT_NEAR(ln[0].item<float>(), 2.0 * -1.0 + 1.0, test::FewUlps(2.0 * -1.0 + 1.0, 4));
  EXPECT_NEAR(ln[1].item<float>(), 0.5 * 1.0 - 1.0, test::FewUlps(0.5 * 1.0 - 1.0, 4));
}

}  // namespace
}  // namespace cemoe
