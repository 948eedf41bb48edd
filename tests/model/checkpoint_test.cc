// checkpoint_test.cc: golden round trips of tiny models through Hugging Face folders (single
// file, sharded, bf16, transformers-5 fused experts) and the loader's errors on bad folders.
#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <nlohmann/json.hpp>

#include "model/check.h"
#include "model/hf_checkpoint.h"
#include "model/safetensors.h"

namespace cemoe {
namespace {

namespace fs = std::filesystem;

class CheckpointTest : public ::testing::TestWithParam<std::string> {
 protected:
  void SetUp() override {
    dir_ =
        fs::temp_directory_path() / ("cemoe_ckpt_" + GetParam() + "_" + std::to_string(::getpid()));
    fs::remove_all(dir_);
    config_ = PresetConfig(GetParam(), "tiny");
    model_ = CausalLM(config_);
    model_->InitRandom(11);
    tokens_ = at::randint(0, config_.vocab_size, {2, 9}, at::kLong);
  }
  void TearDown() override { fs::remove_all(dir_); }
  at::Tensor Logits(CausalLM& m) {
    at::NoGradGuard g;
    return m->forward(tokens_);
  }
  std::string ErrorLoading(const fs::path& dir) {
    try {
      LoadHfModel(dir.string());
    } catch (const Error& e) {
      return e.what();
    }
    return "";
  }

  fs::path dir_;
  ModelConfig config_;
  CausalLM model_{nullptr};
  at::Tensor tokens_;
};

TEST_P(CheckpointTest, SingleFileRoundTripGivesIdenticalLogits) {
  SaveHfCheckpoint(*model_, dir_.string(), 1ull << 40);
  EXPECT_TRUE(fs::exists(dir_ / "model.safetensors"));
  EXPECT_TRUE(fs::exists(dir_ / "config.json"));
  CausalLM back = LoadHfModel(dir_.string());
  EXPECT_TRUE(at::equal(Logits(model_), Logits(back)));
  // Published names are used.
  ShardedCheckpoint ck(dir_.string());
  const std::string router = GetParam() == "phimoe" ? "model.layers.1.block_sparse_moe.gate.weight"
                                                    : "model.layers.1.mlp.gate.weight";
  const std::string expert = GetParam() == "phimoe"
                                 ? "model.layers.0.block_sparse_moe.experts.3.w2.weight"
                                 : "model.layers.0.mlp.experts.7.down_proj.weight";
  EXPECT_TRUE(ck.Contains(router));
  EXPECT_TRUE(ck.Contains(expert));
}

TEST_P(CheckpointTest, ShardedRoundTripGivesIdenticalLogits) {
  SaveHfCheckpoint(*model_, dir_.string(), 40000);
  EXPECT_TRUE(fs::exists(dir_ / "model.safetensors.index.json"));
  EXPECT_GT(ShardedCheckpoint(dir_.string()).ShardFiles().size(), 2u);
  CausalLM back = LoadHfModel(dir_.string());
  EXPECT_TRUE(at::equal(Logits(model_), Logits(back)));
}

TEST_P(CheckpointTest, Bf16StorageRoundsEachWeightOnce) {
  config_.dtype = "bfloat16";
  CausalLM bf(config_);
  {
    at::NoGradGuard g;
    auto src = model_->named_parameters();
    for (auto& p : bf->named_parameters()) p.value().copy_(src[p.key()]);
  }
  SaveHfCheckpoint(*bf, dir_.string(), 1ull << 40);
  ShardedCheckpoint ck(dir_.string());
  EXPECT_EQ(ck.Get("model.embed_tokens.weight").scalar_type(), at::kBFloat16);
  CausalLM back = LoadHfModel(dir_.string());
  for (auto& p : back->named_parameters()) {
    at::Tensor expected = model_->named_parameters()[p.key()].to(at::kBFloat16).to(at::kFloat);
    ASSERT_TRUE(at::equal(p.value(), expected)) << p.key();
  }
}

TEST_P(CheckpointTest, ReadsTransformers5FusedExperts) {
  // Write the fused layout by hand from the model's per-expert weights.
  NamedTensors tensors;
  for (auto& p : model_->named_parameters()) {
    const std::string hf = ToHfName(config_, p.key());
    if (p.key().find(".experts.") != std::string::npos) continue;
    std::string name = hf;
    if (GetParam() == "phimoe" && name.find("block_sparse_moe.gate.weight") != std::string::npos) {
      name = p.key();  // v5: model.layers.L.mlp.router.weight
    }
    tensors.emplace_back(name, p.value().detach().clone());
  }
  for (int64_t l = 0; l < config_.num_hidden_layers; ++l) {
    std::vector<at::Tensor> gate_up, down;
    auto& ex = model_->layers[l]->mlp->experts;
    for (int64_t e = 0; e < config_.num_experts; ++e) {
      gate_up.push_back(
          at::cat({ex->expert(e)->gate_proj->weight, ex->expert(e)->up_proj->weight}));
      down.push_back(ex->expert(e)->down_proj->weight);
    }
    const std::string base = "model.layers." + std::to_string(l) + ".mlp.experts.";
    tensors.emplace_back(base + "gate_up_proj", at::stack(gate_up).detach());
    tensors.emplace_back(base + "down_proj", at::stack(down).detach());
  }
  fs::create_directories(dir_);
  SaveSafetensors((dir_ / "model.safetensors").string(), tensors);
  SaveModelConfig(config_, dir_.string());
  CausalLM back = LoadHfModel(dir_.string());
  EXPECT_TRUE(at::equal(Logits(model_), Logits(back)));
}

TEST_P(CheckpointTest, BadFoldersGiveErrorsNamingTheTensor) {
  SaveHfCheckpoint(*model_, dir_.string(), 1ull << 40);
  const fs::path file = dir_ / "model.safetensors";
  NamedTensors all;
  {
    ShardedCheckpoint ck(dir_.string());
    for (const auto& n : ck.Names()) all.emplace_back(n, ck.Get(n));
  }
  auto rewrite = [&](NamedTensors t) { SaveSafetensors(file.string(), t); };
  // Missing tensor.
  NamedTensors missing(all.begin() + 1, all.end());
  rewrite(missing);
  EXPECT_NE(ErrorLoading(dir_).find("missing tensor \"" + all[0].first + "\""), std::string::npos)
      << ErrorLoading(dir_);
  // Wrong shape.
  NamedTensors shape = all;
  shape[0].second = at::zeros({3});
  rewrite(shape);
  EXPECT_NE(ErrorLoading(dir_).find("tensor \"" + all[0].first + "\" has shape [3], expected"),
            std::string::npos)
      << ErrorLoading(dir_);
  // Integer dtype.
  NamedTensors dtype = all;
  dtype[0].second = dtype[0].second.to(at::kInt);
  rewrite(dtype);
  EXPECT_NE(ErrorLoading(dir_).find("has dtype Int, expected a floating-point dtype"),
            std::string::npos)
      << ErrorLoading(dir_);
  // Unexpected tensor.
  NamedTensors extra = all;
  extra.emplace_back("model.layers.0.mystery.weight", at::zeros({2}));
  rewrite(extra);
  EXPECT_NE(ErrorLoading(dir_).find("1 unexpected tensor(s)"), std::string::npos);
  EXPECT_NE(ErrorLoading(dir_).find("model.layers.0.mystery.weight"), std::string::npos);
  // An expert id beyond num_experts is unexpected too.
  NamedTensors beyond = all;
  const std::string moe = GetParam() == "phimoe" ? "block_sparse_moe" : "mlp";
  beyond.emplace_back("model.layers.0." + moe + ".experts.99.w9.weight", at::zeros({2}));
  rewrite(beyond);
  EXPECT_NE(ErrorLoading(dir_).find("experts.99"), std::string::npos);
  // No config.json.
  rewrite(all);
  fs::remove(dir_ / "config.json");
  EXPECT_NE(ErrorLoading(dir_).find("config.json: cannot open config file"), std::string::npos)
      << ErrorLoading(dir_);
}

// config.json sizes are checked before anything is built: absurd values and sizes that disagree
// with the checkpoint's own tensors are named errors within a fraction of a second (before, they
// ran for minutes and ended in std::bad_alloc or SIGSEGV).
TEST_P(CheckpointTest, HostileConfigSizesAreNamedErrorsBeforeAnyAllocation) {
  SaveHfCheckpoint(*model_, dir_.string(), 1ull << 40);
  const nlohmann::json good = ModelConfigToJson(config_);
  const std::string experts = GetParam() == "phimoe" ? "num_local_experts" : "num_experts";
  struct Case {
    std::string field;
    nlohmann::json value;
    std::string message;
  };
  const std::vector<Case> cases = {
      {"num_hidden_layers", 1000000000, "\"num_hidden_layers\" is 1000000000, above the limit"},
      {experts, 1000000, "\"" + experts + "\" is 1000000, above the limit"},
      {"vocab_size", int64_t{1} << 40, "\"vocab_size\" is 1099511627776, above the limit"},
      {"max_position_embeddings", -5, "\"max_position_embeddings\" must be positive, got -5"},
      {"head_dim", 4611686018427387904LL, "\"head_dim\" is 4611686018427387904, above the limit"},
      // Within the limits but not what the checkpoint holds.
      {"num_hidden_layers", 1000, "num_hidden_layers is 1000, the checkpoint holds 2 decoder"},
      {experts, 64, " is 64, the checkpoint holds " + std::to_string(config_.num_experts)},
      {"vocab_size", 4096, "vocab_size 4096 and hidden_size"},
      {"intermediate_size", 100000, "intermediate_size 100000 and hidden_size"},
  };
  for (const Case& c : cases) {
    nlohmann::json j = good;
    j[c.field] = c.value;
    std::ofstream(dir_ / "config.json") << j.dump();
    const auto start = std::chrono::steady_clock::now();
    const std::string error = ErrorLoading(dir_);
    const double seconds =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    EXPECT_NE(error.find(c.message), std::string::npos) << c.field << ": " << error;
    EXPECT_NE(error.find("config.json"), std::string::npos) << error;
    EXPECT_LT(seconds, 1.0) << c.field;
  }
  // heads x head_dim overflowing int64 used to wrap and pass validation.
  nlohmann::json j = good;
  j["num_attention_heads"] = 65536;
  j["num_key_value_heads"] = 65536;
  j["head_dim"] = 65536;
  j["hidden_size"] = 1 << 20;
  j["intermediate_size"] = 1 << 20;
  j["num_hidden_layers"] = 4096;
  j[experts] = 65536;
  std::ofstream(dir_ / "config.json") << j.dump();
  EXPECT_NE(ErrorLoading(dir_).find("overflows 64-bit integers"), std::string::npos)
      << ErrorLoading(dir_);
}

// An expert index too large for int64 names the tensor instead of failing with "stoll".
TEST_P(CheckpointTest, AbsurdExpertIndexIsAnUnexpectedTensorByName) {
  SaveHfCheckpoint(*model_, dir_.string(), 1ull << 40);
  NamedTensors all;
  {
    ShardedCheckpoint ck(dir_.string());
    for (const auto& n : ck.Names()) all.emplace_back(n, ck.Get(n));
  }
  const std::string moe = GetParam() == "phimoe" ? "block_sparse_moe" : "mlp";
  const std::string name = "model.layers.0." + moe + ".experts.99999999999999999999999.w1.weight";
  all.emplace_back(name, at::zeros({2}));
  SaveSafetensors((dir_ / "model.safetensors").string(), all);
  EXPECT_NE(ErrorLoading(dir_).find("unexpected tensor(s) for a " + GetParam() + " model: \"" +
                                    name + "\""),
            std::string::npos)
      << ErrorLoading(dir_);
  all.back().first = "model.layers.99999999999999999999999.mlp.gate.weight";
  SaveSafetensors((dir_ / "model.safetensors").string(), all);
  EXPECT_NE(ErrorLoading(dir_).find("model.layers.99999999999999999999999.mlp.gate.weight"),
            std::string::npos)
      << ErrorLoading(dir_);
}

// A dispatcher that claims a subset of experts: the layer drops the others and the loader
// skips their tensors instead of calling them unexpected.
class SubsetDispatcher : public LocalDispatcher {
 public:
  SubsetDispatcher(int64_t e, std::vector<int64_t> ids)
      : LocalDispatcher(e), ids_(std::move(ids)) {}
  const std::vector<int64_t>& local_expert_ids() const override { return ids_; }

 private:
  std::vector<int64_t> ids_;
};

TEST_P(CheckpointTest, ExpertSubsetLoadsOnlyItsExperts) {
  SaveHfCheckpoint(*model_, dir_.string(), 1ull << 40);
  CausalLM part(config_);
  for (auto& layer : part->moe_layers()) {
    layer->set_dispatcher(
        std::make_shared<SubsetDispatcher>(config_.num_experts, std::vector<int64_t>{1, 3}));
  }
  LoadHfWeights(*part, dir_.string());
  auto full = model_->named_parameters();
  int64_t experts_seen = 0;
  for (auto& p : part->named_parameters()) {
    EXPECT_TRUE(at::equal(p.value(), full[p.key()])) << p.key();
    if (p.key().find(".experts.") != std::string::npos) ++experts_seen;
  }
  EXPECT_EQ(experts_seen, config_.num_hidden_layers * 2 * 3);
}

std::string ReadAll(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

TEST_P(CheckpointTest, StreamingInitWritesTheSameBytesAsTheWholeModel) {
  for (const std::string dtype : {"float32", "bfloat16"}) {
    for (uint64_t shard : {uint64_t{1} << 40, uint64_t{40000}}) {
      ModelConfig c = config_;
      c.dtype = dtype;
      CausalLM whole(c);
      whole->InitRandom(11);
      const fs::path a = dir_ / "whole", b = dir_ / "streamed";
      SaveHfCheckpoint(*whole, a.string(), shard);
      WriteRandomHfCheckpoint(c, 11, b.string(), shard);
      std::vector<std::string> files;
      for (const auto& e : fs::directory_iterator(a)) files.push_back(e.path().filename().string());
      size_t streamed_files = 0;
      for (const auto& e : fs::directory_iterator(b)) {
        (void)e;
        ++streamed_files;
      }
      ASSERT_EQ(files.size(), streamed_files) << dtype << " " << shard;
      EXPECT_EQ(files.size() > 2, shard < 100000) << "sharding did not happen as planned";
      for (const std::string& f : files) {
        EXPECT_EQ(ReadAll(a / f), ReadAll(b / f)) << f << " " << dtype << " " << shard;
      }
      fs::remove_all(a);
      fs::remove_all(b);
    }
  }
}

INSTANTIATE_TEST_SUITE_P(Families, CheckpointTest, ::testing::Values("olmoe", "phimoe"));

}  // namespace
}  // namespace cemoe
