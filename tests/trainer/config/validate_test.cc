// validate_test.cc: every rule of trainer/config/validate.h, one failing case each. Each case
// starts from a valid configuration, breaks one field, and checks that exactly one problem is
// reported and that its line names the field path and the value ("optim.lr = -1: must be > 0").
#include "trainer/config/validate.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <functional>
#include <limits>

#include "model/check.h"

namespace cemoe {
namespace {

namespace fs = std::filesystem;

class ValidateTest : public ::testing::Test {
 protected:
  void SetUp() override {
    const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
    root_ = fs::temp_directory_path() /
            ("cemoe_validate_" + std::to_string(::getpid()) + "_" + info->name());
    fs::remove_all(root_);
    fs::create_directories(root_ / "model");
    std::ofstream(root_ / "model" / "config.json") << "{}";
    std::ofstream(root_ / "train.jsonl") << "{\"messages\": []}\n";
    fs::create_directories(root_ / "empty_model");
    valid_.name = "run";
    valid_.run_dir = "runs/run";
    valid_.model.path = (root_ / "model").string();
    DataSource source;
    source.path = (root_ / "train.jsonl").string();
    valid_.data.train.push_back(source);
  }
  void TearDown() override { fs::remove_all(root_); }

  // The message of Validate(config), "" when it passes.
  static std::string Problems(const RunConfig& config, const ValidateOptions& options = {}) {
    try {
      Validate(config, options);
    } catch (const Error& e) {
      return e.what();
    }
    return "";
  }

  fs::path root_;
  RunConfig valid_;
};

TEST_F(ValidateTest, ValidConfigPasses) { EXPECT_EQ(Problems(valid_), ""); }

struct Case {
  const char* expected;  // the problem line
  std::function<void(RunConfig&, const fs::path& root)> breaks;
};

TEST_F(ValidateTest, EachRuleNamesPathAndValue) {
  const double nan = std::numeric_limits<double>::quiet_NaN();
  const double inf = std::numeric_limits<double>::infinity();
  const std::vector<Case> cases = {
      {"name = \"\": must not be empty", [](RunConfig& c, auto&) { c.name = ""; }},
      {"name = \"a/b\": may hold only letters, digits, '.', '_' and '-'",
       [](RunConfig& c, auto&) { c.name = "a/b"; }},
      {"name = \"..\": may hold only", [](RunConfig& c, auto&) { c.name = ".."; }},
      {"run_dir = \"\": must not be empty", [](RunConfig& c, auto&) { c.run_dir = ""; }},
      {"seed = -1: must be >= 0", [](RunConfig& c, auto&) { c.seed = -1; }},
      {"model.path = \"\": must name the model folder",
       [](RunConfig& c, auto&) { c.model.path = ""; }},
      {"/nothing_here\": no such folder",
       [](RunConfig& c, auto& root) { c.model.path = (root / "nothing_here").string(); }},
      {"/empty_model\": has no config.json",
       [](RunConfig& c, auto& root) { c.model.path = (root / "empty_model").string(); }},
      {"model.top_k = -1: must be >= 0", [](RunConfig& c, auto&) { c.model.top_k = -1; }},
      {"model.renormalize = \"yes\": must be one of \"checkpoint\", \"true\", \"false\"",
       [](RunConfig& c, auto&) { c.model.renormalize = "yes"; }},
      {"data.train = []: needs at least one data source",
       [](RunConfig& c, auto&) { c.data.train.clear(); }},
      {"data.train[0].path = \"\": must name a JSONL file",
       [](RunConfig& c, auto&) { c.data.train[0].path = ""; }},
      {"data.train[1].path = \"",
       [](RunConfig& c, auto& root) {
         c.data.train.push_back(c.data.train[0]);
         c.data.train[1].path = (root / "missing.jsonl").string();
       }},
      {"/missing.jsonl\": no such file",
       [](RunConfig& c, auto& root) { c.data.train[0].path = (root / "missing.jsonl").string(); }},
      {"/model\": not a regular file",
       [](RunConfig& c, auto& root) { c.data.train[0].path = (root / "model").string(); }},
      {"data.train[0].format = \"csv\": must be one of \"messages\", \"prompt_completion\", "
       "\"instruction\"",
       [](RunConfig& c, auto&) { c.data.train[0].format = "csv"; }},
      {"data.train[0].messages_field = \"\": must not be empty",
       [](RunConfig& c, auto&) { c.data.train[0].messages_field = ""; }},
      {"data.train[0].system_field = \"sys\": only for formats",
       [](RunConfig& c, auto&) { c.data.train[0].system_field = "sys"; }},
      {"data.train[0].prompt_field = \"\": must not be empty",
       [](RunConfig& c, auto&) {
         c.data.train[0].format = "instruction";
         c.data.train[0].completion_field = "output";
       }},
      {"data.train[0].completion_field = \"\": must not be empty",
       [](RunConfig& c, auto&) {
         c.data.train[0].format = "prompt_completion";
         c.data.train[0].prompt_field = "prompt";
       }},
      {"data.chat_template = \"llama\": must be one of \"model\", \"tulu\", \"phi3\", "
       "\"chatml\", \"plain\"",
       [](RunConfig& c, auto&) { c.data.chat_template = "llama"; }},
      {"data.max_length = 1: must be >= 2", [](RunConfig& c, auto&) { c.data.max_length = 1; }},
      {"data.bad_lines = \"ignore\": must be one of \"error\", \"skip\"",
       [](RunConfig& c, auto&) { c.data.bad_lines = "ignore"; }},
      {"optim.lr = -1: must be > 0", [](RunConfig& c, auto&) { c.optim.lr = -1; }},
      {"optim.lr = 0: must be > 0", [](RunConfig& c, auto&) { c.optim.lr = 0; }},
      {"optim.lr = nan: must be > 0", [nan](RunConfig& c, auto&) { c.optim.lr = nan; }},
      {"optim.lr = inf: must be > 0", [inf](RunConfig& c, auto&) { c.optim.lr = inf; }},
      {"optim.weight_decay = -0.1: must be >= 0",
       [](RunConfig& c, auto&) { c.optim.weight_decay = -0.1; }},
      {"optim.beta1 = 1: must be in [0, 1)", [](RunConfig& c, auto&) { c.optim.beta1 = 1.0; }},
      {"optim.beta2 = -0.5: must be in [0, 1)", [](RunConfig& c, auto&) { c.optim.beta2 = -0.5; }},
      {"optim.eps = 0: must be > 0", [](RunConfig& c, auto&) { c.optim.eps = 0; }},
      {"optim.no_decay[1] = \"\": must not be empty",
       [](RunConfig& c, auto&) {
         c.optim.no_decay = {"norm", ""};
       }},
      {"optim.no_decay[2] = \"norm\": listed twice",
       [](RunConfig& c, auto&) {
         c.optim.no_decay = {"norm", "bias", "norm"};
       }},
      {"optim.max_grad_norm = inf: must be a finite number",
       [inf](RunConfig& c, auto&) { c.optim.max_grad_norm = inf; }},
      {"schedule.kind = \"step\": must be one of \"cosine\", \"linear\", \"constant\"",
       [](RunConfig& c, auto&) { c.schedule.kind = "step"; }},
      {"schedule.warmup_steps = -1: must be >= 0",
       [](RunConfig& c, auto&) { c.schedule.warmup_steps = -1; }},
      {"schedule.warmup_ratio = 1: must be in [0, 1)",
       [](RunConfig& c, auto&) { c.schedule.warmup_ratio = 1.0; }},
      {"schedule.min_lr_ratio = 1.5: must be in [0, 1]",
       [](RunConfig& c, auto&) { c.schedule.min_lr_ratio = 1.5; }},
      {"train.global_batch_size = 0: must be >= 1",
       [](RunConfig& c, auto&) { c.train.global_batch_size = 0; }},
      {"train.micro_batch_size = 0: must be >= 1",
       [](RunConfig& c, auto&) { c.train.micro_batch_size = 0; }},
      {"train.global_batch_size = 10: must be a multiple of train.micro_batch_size (4)",
       [](RunConfig& c, auto&) {
         c.train.global_batch_size = 10;
         c.train.micro_batch_size = 4;
       }},
      {"train.max_steps = -1: must be >= 0", [](RunConfig& c, auto&) { c.train.max_steps = -1; }},
      {"train.epochs = 0: must be > 0", [](RunConfig& c, auto&) { c.train.epochs = 0; }},
      {"train.aux_loss_coef = -0.01: must be >= 0",
       [](RunConfig& c, auto&) { c.train.aux_loss_coef = -0.01; }},
      {"train.z_loss_coef = -1: must be >= 0",
       [](RunConfig& c, auto&) { c.train.z_loss_coef = -1; }},
      {"train.freeze[0] = \"\": must not be empty",
       [](RunConfig& c, auto&) { c.train.freeze = {""}; }},
      {"train.freeze[1] = \"router\": listed twice",
       [](RunConfig& c, auto&) {
         c.train.freeze = {"router", "router"};
       }},
      {"train.precision = \"fp16\": must be one of \"fp32\", \"bf16\"",
       [](RunConfig& c, auto&) { c.train.precision = "fp16"; }},
      {"train.device = \"tpu\": must be one of \"cpu\", \"cuda\"",
       [](RunConfig& c, auto&) { c.train.device = "tpu"; }},
      {"train.device_memory_gib = -1: must be >= 0",
       [](RunConfig& c, auto&) { c.train.device_memory_gib = -1; }},
      {"train.max_nonfinite_steps = 0: must be >= 1",
       [](RunConfig& c, auto&) { c.train.max_nonfinite_steps = 0; }},
      {"parallel.ep = 0: must be >= 1", [](RunConfig& c, auto&) { c.parallel.ep = 0; }},
      {"parallel.dp = -1: must be >= 0", [](RunConfig& c, auto&) { c.parallel.dp = -1; }},
      {"parallel.placement = \"random\": must be one of \"contiguous\", \"round_robin\", "
       "\"balanced\"",
       [](RunConfig& c, auto&) { c.parallel.placement = "random"; }},
      {"parallel.backend = \"gloo\": must be one of \"auto\", \"mpi\", \"nccl\"",
       [](RunConfig& c, auto&) { c.parallel.backend = "gloo"; }},
      {"parallel.backend = \"nccl\": needs train.device = \"cuda\" (it is \"cpu\")",
       [](RunConfig& c, auto&) { c.parallel.backend = "nccl"; }},
      {"parallel.collective_timeout_s = -1: must be >= 0",
       [](RunConfig& c, auto&) { c.parallel.collective_timeout_s = -1; }},
      {"parallel.capacity_factor = -0.5: must be >= 0",
       [](RunConfig& c, auto&) { c.parallel.capacity_factor = -0.5; }},
      {"parallel.placement_sample_batches = 0: must be >= 1",
       [](RunConfig& c, auto&) { c.parallel.placement_sample_batches = 0; }},
      {"checkpoint.every_steps = -5: must be >= 0",
       [](RunConfig& c, auto&) { c.checkpoint.every_steps = -5; }},
      {"checkpoint.keep_last = 0: must be >= 1",
       [](RunConfig& c, auto&) { c.checkpoint.keep_last = 0; }},
      {"checkpoint.max_shard_bytes = 0: must be >= 1",
       [](RunConfig& c, auto&) { c.checkpoint.max_shard_bytes = 0; }},
      {"logging.every_steps = 0: must be >= 1",
       [](RunConfig& c, auto&) { c.logging.every_steps = 0; }},
  };
  for (const Case& one : cases) {
    RunConfig config = valid_;
    one.breaks(config, root_);
    const std::string message = Problems(config);
    EXPECT_NE(message.find(one.expected), std::string::npos)
        << "expected [" << one.expected << "] in:\n"
        << message;
    EXPECT_NE(message.find(": 1 problem:"), std::string::npos) << message;
  }
}

TEST_F(ValidateTest, AllProblemsAtOnceNamingTheRecipe) {
  RunConfig config = valid_;
  config.source = "recipes/x.textproto";
  config.optim.lr = -1;
  config.parallel.ep = 0;
  const std::string message = Problems(config);
  EXPECT_NE(message.find("recipe recipes/x.textproto: 2 problems:\n  optim.lr = -1: must be > 0\n"
                         "  parallel.ep = 0: must be >= 1"),
            std::string::npos)
      << message;
}

TEST_F(ValidateTest, FileChecksCanBeSkipped) {
  RunConfig config = valid_;
  config.model.path = (root_ / "absent_model").string();
  config.data.train[0].path = (root_ / "absent.jsonl").string();
  EXPECT_NE(Problems(config), "");
  ValidateOptions options;
  options.check_model_folder = false;
  options.check_data_files = false;
  EXPECT_EQ(Problems(config, options), "");
}

std::string WorldProblems(const RunConfig& config, int world) {
  try {
    ValidateForWorld(config, world);
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

TEST(ValidateForWorld, Rules) {
  RunConfig c;
  c.train.global_batch_size = 8;
  c.train.micro_batch_size = 2;
  c.parallel.ep = 2;
  EXPECT_EQ(WorldProblems(c, 4), "");  // 2 rows x 4 ranks = 8 rows per step
  EXPECT_EQ(WorldProblems(c, 2), "");  // dp = 1
  EXPECT_NE(WorldProblems(c, 3).find("parallel.ep = 2: must divide the world size (3 ranks)"),
            std::string::npos)
      << WorldProblems(c, 3);

  RunConfig dp = c;
  dp.parallel.dp = 3;
  EXPECT_NE(WorldProblems(dp, 4).find("parallel.dp = 3: parallel.dp x parallel.ep (3 x 2 = 6) "
                                      "must equal the world size (4 ranks)"),
            std::string::npos)
      << WorldProblems(dp, 4);
  dp.parallel.dp = 2;
  EXPECT_EQ(WorldProblems(dp, 4), "");

  RunConfig batch = c;
  batch.train.global_batch_size = 12;
  // Every rank reads its own rows: micro-batch 2 x 8 ranks = 16 rows do not divide 12.
  EXPECT_NE(WorldProblems(batch, 8).find("train.global_batch_size = 12: must be a multiple of "
                                         "train.micro_batch_size x ranks (2 x 8 = 16)"),
            std::string::npos)
      << WorldProblems(batch, 8);
  EXPECT_EQ(WorldProblems(batch, 6), "");  // 2 x 6 = 12
}

std::string ModelProblems(const RunConfig& config, const ModelFacts& facts) {
  try {
    ValidateForModel(config, facts);
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

TEST(ValidateForModel, Rules) {
  const ModelFacts olmoe{"olmoe", 64, 8};
  const ModelFacts phimoe{"phimoe", 16, 2};
  RunConfig c;
  c.parallel.ep = 8;
  c.model.top_k = 8;
  EXPECT_EQ(ModelProblems(c, olmoe), "");
  c.model.top_k = 65;
  EXPECT_NE(ModelProblems(c, olmoe).find("model.top_k = 65: must be <= the model's expert count "
                                         "(64)"),
            std::string::npos);
  c.model.top_k = 3;
  EXPECT_NE(ModelProblems(c, phimoe).find("model.top_k = 3: must be <= 2 for Phi-MoE"),
            std::string::npos);
  EXPECT_EQ(ModelProblems(c, olmoe), "");
  c.model.top_k = 2;
  EXPECT_EQ(ModelProblems(c, phimoe), "");
  c.parallel.ep = 3;
  EXPECT_NE(ModelProblems(c, olmoe).find("parallel.ep = 3: must divide the model's expert count "
                                         "(64)"),
            std::string::npos);
  c.parallel.ep = 32;
  EXPECT_NE(ModelProblems(c, phimoe).find("parallel.ep = 32: must divide the model's expert "
                                          "count (16)"),
            std::string::npos);
}

TEST_F(ValidateTest, ReadModelFacts) {
  std::ofstream(root_ / "model" / "config.json")
      << R"({"model_type": "phimoe", "num_local_experts": 16, "num_experts_per_tok": 2})";
  const ModelFacts phi = ReadModelFacts((root_ / "model").string());
  EXPECT_EQ(phi.model_type, "phimoe");
  EXPECT_EQ(phi.num_experts, 16);
  EXPECT_EQ(phi.num_experts_per_tok, 2);
  std::ofstream(root_ / "model" / "config.json")
      << R"({"model_type": "olmoe", "num_experts": 64, "num_experts_per_tok": 8})";
  const ModelFacts olmoe = ReadModelFacts((root_ / "model").string());
  EXPECT_EQ(olmoe.num_experts, 64);
  EXPECT_EQ(olmoe.num_experts_per_tok, 8);
  std::ofstream(root_ / "model" / "config.json") << R"({"model_type": "olmoe", "num_experts": 64})";
  try {
    ReadModelFacts((root_ / "model").string());
    ADD_FAILURE() << "no error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("config.json: \"num_experts_per_tok\" missing"),
              std::string::npos)
        << e.what();
  }
}

}  // namespace
}  // namespace cemoe
