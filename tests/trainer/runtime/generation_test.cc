// The generation engine (trainer/runtime/generation.h) against naive references on tiny random
// models of both families: the KV-cached forward against the full forward, greedy decoding
// against a loop that recomputes the whole sequence for every token, padding side and batch
// composition, EOS and stop strings, and the sampling filters against their definitions.
#include "trainer/runtime/generation.h"

#include <ATen/ATen.h>
#include <ATen/CPUGeneratorImpl.h>
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <fstream>

#include "model/check.h"
#include "model/config.h"
#include "tests/tolerance.h"
#include "trainer/runtime/inference_session.h"

namespace cemoe {
namespace {

struct Family {
  const char* arch;
  int64_t top_k;  // 0 = the preset's
};

class GenerationTest : public ::testing::TestWithParam<Family> {
 protected:
  void SetUp() override {
    ModelConfig config = PresetConfig(GetParam().arch, "tiny");
    model_ = CausalLM(config);
    model_->InitRandom(7);
    // Weights at the scale of a trained model (as tests/oracle/model_parity.py randomize does):
    // projections ~ N(0, 1/fan_in), embeddings ~ N(0, 1), routers ~ N(0, 4/hidden), so that
    // attention and positions shape the next token and greedy choices are decisive.
    {
      at::NoGradGuard g;
      for (auto& item : model_->named_parameters()) {
        at::Tensor p = item.value();
        const std::string& name = item.key();
        if (name.find("norm") != std::string::npos || name.find("bias") != std::string::npos ||
            p.dim() < 2) {
          continue;
        }
        const double fan_in = static_cast<double>(p.size(-1));
        const double scale = name.find("embed_tokens") != std::string::npos ? 1.0
                             : name.find("router") != std::string::npos ? 2.0 / std::sqrt(fan_in)
                                                                          : 1.0 / std::sqrt(fan_in);
        p.copy_(p / 0.02 * scale);
      }
    }
    if (GetParam().top_k > 0) model_->set_top_k(GetParam().top_k);
    model_->eval();
  }

  // Greedy decoding by recomputing the whole (unpadded) sequence for every new token.
  std::vector<int64_t> NaiveGreedy(std::vector<int64_t> seq, int64_t n,
                                   const std::vector<int64_t>& eos = {}) {
    at::NoGradGuard g;
    std::vector<int64_t> out;
    for (int64_t i = 0; i < n; ++i) {
      const at::Tensor t = at::tensor(seq, at::kLong).view({1, -1});
      const int64_t tok = model_->forward(t)[0][-1].argmax().item<int64_t>();
      if (std::find(eos.begin(), eos.end(), tok) != eos.end()) break;
      out.push_back(tok);
      seq.push_back(tok);
    }
    return out;
  }

  std::vector<std::vector<int64_t>> Prompts() const {
    return {{5, 17, 3, 9, 22}, {40}, {8, 8, 31, 2, 14, 60, 7, 11, 19}, {3, 4}};
  }

  CausalLM model_{nullptr};
};

TEST_P(GenerationTest, CachedForwardEqualsFullForward) {
  at::NoGradGuard g;
  const std::vector<int64_t> seq = {5, 17, 3, 9, 22, 41, 13, 6};
  const at::Tensor full = model_->Hidden(at::tensor(seq, at::kLong).view({1, -1}));  // [1, 8, D]
  // Prefill 3 positions, then one at a time; a left-padded second row holds the same tokens
  // after 2 padding slots (its positions still start at 0).
  const int64_t S = static_cast<int64_t>(seq.size()), pad = 2, C = S + pad;
  KvCache cache(model_->config(), 2, C, at::TensorOptions().dtype(at::kFloat));
  at::Tensor valid = at::zeros({2, C}, at::kBool);
  auto feed = [&](int64_t from, int64_t count) {
    // slots [cache.length, cache.length + count): row 0 plain, row 1 shifted by `pad`.
    const int64_t start = cache.length;
    at::Tensor tokens = at::zeros({2, count}, at::kLong), pos = at::zeros({2, count}, at::kLong);
    for (int64_t i = 0; i < count; ++i) {
      const int64_t slot = start + i;
      // row 0: position = slot (its last `pad` slots stay unused); row 1: slot - pad
      if (slot < S) {
        tokens[0][i] = seq[slot];
        pos[0][i] = slot;
        valid[0][slot] = true;
      }
      if (slot >= pad) {
        tokens[1][i] = seq[slot - pad];
        pos[1][i] = slot - pad;
        valid[1][slot] = true;
      }
    }
    const at::Tensor causal = at::ones({C, C}, at::kBool).tril().narrow(0, start, count)
                                  .narrow(1, 0, start + count);
    at::Tensor allowed = causal.unsqueeze(0).logical_and(valid.narrow(1, 0, start + count).unsqueeze(1));
    for (int64_t i = 0; i < count; ++i) allowed.select(1, i).select(1, start + i).fill_(true);
    return model_->ForwardCached(tokens, pos, allowed.unsqueeze(1), cache);
  };
  std::vector<at::Tensor> h;
  h.push_back(feed(0, 3 + pad));
  for (int64_t s = 3 + pad; s < C; ++s) h.push_back(feed(s, 1));
  const at::Tensor cached = at::cat(h, 1);  // [2, C, D]
  // Same arithmetic in a different order (keys split over calls, other rows beside): the
  // forward's summation bound (tests/tolerance.h).
  const double tol = test::Float32SumTolerance(test::ForwardTerms(model_->config(), S),
                                               test::MaxAbs(full));
  EXPECT_TRUE(test::CloseTo(cached[0].narrow(0, 0, S), full[0], tol));
  EXPECT_TRUE(test::CloseTo(cached[1].narrow(0, pad, S), full[0], tol));
  EXPECT_EQ(cache.length, C);
}

TEST_P(GenerationTest, GreedyEqualsNaiveLoopForAnyPaddingAndBatch) {
  const int64_t n = 10;
  std::vector<std::vector<int64_t>> want;
  for (const auto& p : Prompts()) want.push_back(NaiveGreedy(p, n));
  for (bool left : {true, false}) {
    GenerationOptions o;
    o.max_new_tokens = n;
    o.pad_left = left;
    o.pad_id = 0;
    const auto rows = GenerateTokens(*model_, Prompts(), o, at::kCPU);
    ASSERT_EQ(rows.size(), want.size());
    for (size_t i = 0; i < rows.size(); ++i) {
      EXPECT_EQ(rows[i].tokens, want[i]) << "row " << i << (left ? " left" : " right");
      EXPECT_EQ(rows[i].finish_reason, "length");
    }
  }
  // One prompt alone gives the same tokens as inside the batch.
  GenerationOptions o;
  o.max_new_tokens = n;
  EXPECT_EQ(GenerateTokens(*model_, {Prompts()[2]}, o, at::kCPU)[0].tokens, want[2]);
}

TEST_P(GenerationTest, EosAndStopStringsEndARow) {
  const std::vector<int64_t> prompt = Prompts()[0];
  const std::vector<int64_t> free_run = NaiveGreedy(prompt, 8);
  ASSERT_EQ(free_run.size(), 8u);
  // EOS = the 4th greedy token: three tokens are kept (EOS itself is not).
  GenerationOptions o;
  o.max_new_tokens = 8;
  o.eos_ids = {free_run[3]};
  auto rows = GenerateTokens(*model_, {prompt}, o, at::kCPU);
  const std::vector<int64_t> before_eos = NaiveGreedy(prompt, 8, o.eos_ids);
  EXPECT_EQ(rows[0].tokens, before_eos);
  EXPECT_EQ(rows[0].finish_reason, before_eos.size() < 8 ? "eos" : "length");
  // Stop string: text "<id>," per token; stop at the 3rd token's text: 3 tokens kept, text cut.
  o.eos_ids.clear();
  o.decode = [](const std::vector<int64_t>& ids) {
    std::string s;
    for (int64_t id : ids) s += "<" + std::to_string(id) + ">";
    return s;
  };
  o.stop = {"<" + std::to_string(free_run[2]) + ">"};
  rows = GenerateTokens(*model_, {prompt}, o, at::kCPU);
  const std::string full_text = o.decode(free_run);
  const size_t cut = full_text.find(o.stop[0]);
  EXPECT_EQ(rows[0].finish_reason, "stop");
  EXPECT_EQ(rows[0].text, full_text.substr(0, cut));
  EXPECT_LE(rows[0].tokens.size(), 3u);
  EXPECT_EQ(o.decode(rows[0].tokens).find(o.stop[0]) != std::string::npos, true);
}

TEST_P(GenerationTest, SamplingIsReproducibleAndRowIndependent) {
  GenerationOptions o;
  o.max_new_tokens = 6;
  o.temperature = 0.9;
  o.top_p = 0.95;
  o.row_seeds = {11, 12, 13, 14};
  const auto a = GenerateTokens(*model_, Prompts(), o, at::kCPU);
  const auto b = GenerateTokens(*model_, Prompts(), o, at::kCPU);
  for (size_t i = 0; i < a.size(); ++i) EXPECT_EQ(a[i].tokens, b[i].tokens);
  // Row 2 alone with its own seed draws the same tokens.
  GenerationOptions one = o;
  one.row_seeds = {13};
  EXPECT_EQ(GenerateTokens(*model_, {Prompts()[2]}, one, at::kCPU)[0].tokens, a[2].tokens);
}

INSTANTIATE_TEST_SUITE_P(Families, GenerationTest,
                         ::testing::Values(Family{"olmoe", 0}, Family{"olmoe", 2},
                                           Family{"phimoe", 0}, Family{"phimoe", 1}),
                         [](const auto& info) {
                           return std::string(info.param.arch) + "_top" +
                                  std::to_string(info.param.top_k);
                         });

TEST(SampleToken, FiltersFollowTheirDefinitions) {
  // probabilities at temperature 1: softmax(log p) = p.
  const at::Tensor logits = at::log(at::tensor({0.5, 0.3, 0.15, 0.05}, at::kFloat));
  at::Generator gen = at::detail::createCPUGenerator(3);
  // top_k 1 and a tiny top_p keep only the most likely token.
  for (int i = 0; i < 20; ++i) {
    EXPECT_EQ(SampleToken(logits, 1.0, 1, 1.0, gen), 0);
    EXPECT_EQ(SampleToken(logits, 1.0, 0, 0.01, gen), 0);
  }
  // top_p 0.75: the smallest set with mass >= 0.75 is {0, 1}; top_k 3 drops token 3.
  std::vector<int> counts(4, 0), counts_k(4, 0);
  const int draws = 4000;
  for (int i = 0; i < draws; ++i) {
    ++counts[SampleToken(logits, 1.0, 0, 0.75, gen)];
    ++counts_k[SampleToken(logits, 1.0, 3, 1.0, gen)];
  }
  EXPECT_EQ(counts[2] + counts[3], 0);
  EXPECT_EQ(counts_k[3], 0);
  // Frequencies within 5 binomial standard deviations of the renormalised probabilities.
  auto near = [&](int c, double p) {
    return std::abs(c / double(draws) - p) <= 5 * std::sqrt(p * (1 - p) / draws);
  };
  EXPECT_TRUE(near(counts[0], 0.5 / 0.8)) << counts[0];
  EXPECT_TRUE(near(counts_k[2], 0.15 / 0.95)) << counts_k[2];
}

TEST(ModelEosIds, GenerationConfigListWinsOverConfigJson) {
  const std::filesystem::path dir = std::filesystem::temp_directory_path() / "cemoe_eos_ids";
  std::filesystem::remove_all(dir);
  std::filesystem::create_directories(dir);
  ModelConfig config = PresetConfig("phimoe", "tiny");
  config.eos_token_id = 2;
  SaveModelConfig(config, dir.string());
  EXPECT_EQ(ModelEosIds(dir.string()), std::vector<int64_t>{2});
  std::ofstream(dir / "generation_config.json") << R"({"eos_token_id": [32000, 32007]})";
  EXPECT_EQ(ModelEosIds(dir.string()), (std::vector<int64_t>{32000, 32007}));
  std::ofstream(dir / "generation_config.json") << R"({"eos_token_id": "x"})";
  EXPECT_THROW(ModelEosIds(dir.string()), Error);
}

}  // namespace
}  // namespace cemoe
