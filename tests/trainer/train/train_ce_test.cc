// train_ce_test.cc: `cemoe train` with compressed experts (CE, method.md 1) in one process, run
// as a user runs it, on the tiny OLMoE (top-4 = 2 main + 2 compressed) and tiny Phi-MoE (top-2 =
// 1 + 1) from `cemoe init`:
//   - train.trainable ["compressed_experts"] trains the CE vectors alone: every other tensor of
//     the final checkpoint equals the initial model's bit for bit, every CE tensor moved; with
//     train.trainable empty the dense tensors, the CE vectors and most experts move; a list that
//     matches no parameter is a fast error naming train.trainable;
//   - a CE run (joint and CE-only) cut back to a middle checkpoint and resumed ends with the bytes
//     and losses of the straight run;
//   - the checkpoint and its `cemoe export` carry the CE in config.json ("compressed_experts":
//     {main_experts, auxiliary_experts}, num_experts_per_tok = K_m), and `cemoe logits
//     --compressed-experts` on the export equals `cemoe logits` on the checkpoint's model folder
//     bit for bit.
// The multi-rank agreement is in train_ce_mpi_test.cc.
#include <gtest/gtest.h>

#include <chrono>
#include <filesystem>
#include <string>
#include <vector>

#include "model/config.h"
#include "model/safetensors.h"
#include "tests/cli_runner.h"
#include "tests/trainer/train/train_runner.h"

namespace cemoe {
namespace {

namespace fs = std::filesystem;
using test::CliResult;
using test::ReadMetrics;
using test::StepDir;

constexpr int64_t kSteps = 4;
const char* const kCeOnly = "--set train.trainable=compressed_experts";

// model.layers.L.mlp.compressed_experts.{g,u,d} (OLMoE), model.layers.L.block_sparse_moe.
// compressed_experts.{g,u,d} (Phi-MoE: the prefix of its other MoE tensors).
bool IsCompressedExpert(const std::string& name) {
  return name.find(".compressed_experts.") != std::string::npos;
}

// Folders every test reads: the tiny models, their CE recipes, and the joint CE run of the tiny
// OLMoE (4 steps, a checkpoint at every step).
class TrainCeTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    root_ = fs::temp_directory_path() / ("cemoe_train_ce_test_" + std::to_string(::getpid()));
    fs::remove_all(root_);
    fs::create_directories(root_);
    for (const char* arch : {"olmoe", "phimoe"}) {
      const CliResult r = test::RunCemoe(
          fmt::format("init --arch {} --preset tiny --seed 5 --out {}", arch, R(arch)));
      ASSERT_EQ(r.code, 0) << r.output;
      test::WriteText(R(std::string(arch) + ".textproto"),
                      test::BaseRecipe(R(arch), R("cache"),
                                       fmt::format("moe {{ compressed_experts: \"true\" }}")));
    }
    const CliResult joint = Train("olmoe", R("joint"));
    ASSERT_EQ(joint.code, 0) << joint.output;
    const CliResult ce_only = Train("olmoe", R("ce_only_olmoe"), kCeOnly);
    ASSERT_EQ(ce_only.code, 0) << ce_only.output;
  }
  static void TearDownTestSuite() { fs::remove_all(root_); }

  static std::string R(const std::string& name) { return (root_ / name).string(); }
  static CliResult Train(const std::string& arch, const std::string& run_dir,
                         const std::string& sets = "") {
    std::string all = fmt::format("--set train.max_steps={} {}", kSteps, sets);
    if (arch == "phimoe") all += " --set data.chat_template=phi3";
    return test::RunCemoe("train " + R(arch + ".textproto") + " --run-dir " + run_dir + " " + all);
  }

  static fs::path root_;
};
fs::path TrainCeTest::root_;

// train.trainable ["compressed_experts"]: the final checkpoint holds the initial model's tensors
// bit for bit plus 3 CE tensors per layer, each moved away from ones.
TEST_F(TrainCeTest, CeOnlyTrainingChangesOnlyTheCompressedExperts) {
  const CliResult phi = Train("phimoe", R("ce_only_phimoe"), kCeOnly);
  ASSERT_EQ(phi.code, 0) << phi.output;
  for (const std::string arch : {"olmoe", "phimoe"}) {
    const std::string run = R("ce_only_" + arch);
    const ModelConfig config = LoadModelConfig(R(arch));
    const auto init = test::ModelTensors(R(arch));
    const auto trained = test::ModelTensors(StepDir(run, kSteps) + "/model");
    int same = 0, ce = 0;
    for (const auto& [name, t] : trained) {
      if (IsCompressedExpert(name)) {
        ++ce;
        EXPECT_FALSE(at::equal(t, at::ones_like(t))) << arch << ": " << name << " did not train";
        continue;
      }
      ASSERT_TRUE(init.count(name)) << arch << ": " << name;
      const bool equal = at::equal(t, init.at(name));
      same += equal;
      EXPECT_TRUE(equal) << arch << ": " << name << " is not trainable but changed";
    }
    EXPECT_EQ(ce, 3 * config.num_hidden_layers) << arch;
    EXPECT_EQ(same, static_cast<int>(init.size())) << arch;
    // Named like the layer's other MoE tensors; g, u [E, D], d [E, I].
    const std::string moe = arch == "phimoe" ? "block_sparse_moe" : "mlp";
    for (int64_t l = 0; l < config.num_hidden_layers; ++l) {
      for (const char* v : {"g", "u", "d"}) {
        const std::string name = fmt::format("model.layers.{}.{}.compressed_experts.{}", l, moe, v);
        ASSERT_TRUE(trained.count(name)) << name;
        const int64_t width = std::string(v) == "d" ? config.intermediate_size : config.hidden_size;
        EXPECT_EQ(trained.at(name).sizes(), at::IntArrayRef({config.num_experts, width})) << name;
        EXPECT_EQ(trained.at(name).scalar_type(), at::kFloat) << name;
      }
    }
  }
  // The trainable set changes no arithmetic of the forward pass: step 1 (both at the initial
  // weights) has the joint run's loss exactly, and a later one differs.
  const auto joint = ReadMetrics(R("joint")), ce_only = ReadMetrics(R("ce_only_olmoe"));
  ASSERT_EQ(ce_only.size(), static_cast<size_t>(kSteps));
  EXPECT_EQ(ce_only[0].loss, joint[0].loss);
  EXPECT_NE(ce_only[kSteps - 1].loss, joint[kSteps - 1].loss);
}

// train.trainable empty (the paper's joint route): every dense tensor and every CE tensor moved,
// and most experts (those that ran as a main expert).
TEST_F(TrainCeTest, JointTrainingChangesEveryKindOfParameter) {
  const auto init = test::ModelTensors(R("olmoe"));
  const auto trained = test::ModelTensors(StepDir(R("joint"), kSteps) + "/model");
  ASSERT_EQ(trained.size(), init.size() + 3 * 2);
  int experts = 0, experts_changed = 0, ce = 0;
  for (const auto& [name, t] : trained) {
    if (IsCompressedExpert(name)) {
      ++ce;
      EXPECT_FALSE(at::equal(t, at::ones_like(t))) << name;
    } else if (name.find(".experts.") != std::string::npos) {
      ++experts;
      experts_changed += !at::equal(t, init.at(name));
    } else {
      EXPECT_FALSE(at::equal(t, init.at(name))) << name << " is trainable but did not change";
    }
  }
  EXPECT_EQ(ce, 3 * 2);
  EXPECT_GT(experts_changed, experts / 2) << experts_changed << " of " << experts;
}

// A train.trainable list that selects no parameter (a name nothing contains, or
// "compressed_experts" with the CE off) stops within seconds naming the field; no run folder.
TEST_F(TrainCeTest, TrainableMatchingNothingIsANamedError) {
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"--set train.trainable=no_such_tensor", "no_such_tensor"},
      // One typo among entries that match is still named.
      {"--set train.trainable=compressed_experts,no_such_tensor", "train.trainable[1]"},
      {"--set train.trainable=compressed_experts --set moe.compressed_experts=false",
       "compressed_experts"},
  };
  for (const auto& [sets, word] : cases) {
    const std::string run = R("nothing");
    const auto start = std::chrono::steady_clock::now();
    const CliResult r = Train("olmoe", run, sets);
    const double seconds =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    EXPECT_EQ(r.code, 1) << sets << "\n" << r.output;
    EXPECT_LT(seconds, 30) << sets;
    EXPECT_NE(r.output.find("cemoe: error: "), std::string::npos) << r.output;
    EXPECT_NE(r.output.find("train.trainable"), std::string::npos) << sets << "\n" << r.output;
    EXPECT_NE(r.output.find(word), std::string::npos) << sets << "\n" << r.output;
    EXPECT_FALSE(fs::exists(run + "/checkpoints")) << sets;
    fs::remove_all(run);
  }
}

// The joint run and a CE-only run cut back to their step-2 checkpoint and resumed: the same loss
// at every step and the same bytes (weights, CE vectors, optimiser state) at step 4.
TEST_F(TrainCeTest, ResumeOfACeRunEqualsTheStraightRunBitForBit) {
  for (const auto& [straight, sets] : {std::pair<std::string, std::string>{R("joint"), ""},
                                       {R("ce_only_olmoe"), kCeOnly}}) {
    const std::string resumed = straight + "_resumed";
    test::CopyRunAtStep(straight, resumed, 2);
    const CliResult r = Train("olmoe", resumed, sets);
    ASSERT_EQ(r.code, 0) << r.output;
    EXPECT_NE(r.output.find("resuming from " + StepDir(resumed, 2) + " (step 2)"),
              std::string::npos)
        << r.output;
    const auto a = ReadMetrics(straight), b = ReadMetrics(resumed);
    ASSERT_EQ(a.size(), static_cast<size_t>(kSteps));
    ASSERT_EQ(b.size(), static_cast<size_t>(kSteps));
    for (size_t i = 0; i < a.size(); ++i) EXPECT_EQ(a[i].loss, b[i].loss) << sets << " step " << i + 1;
    const auto want = test::SafetensorsBytes(StepDir(straight, kSteps));
    ASSERT_EQ(want.size(), 2u);  // model/model.safetensors, optimizer-rank-00000.safetensors
    EXPECT_TRUE(want == test::SafetensorsBytes(StepDir(resumed, kSteps))) << sets;
    // The CE vectors moved after the resume point: the comparison covers their update.
    const auto mid = test::ModelTensors(StepDir(straight, 2) + "/model");
    const auto end = test::ModelTensors(StepDir(straight, kSteps) + "/model");
    EXPECT_FALSE(at::equal(mid.at("model.layers.1.mlp.compressed_experts.d"),
                           end.at("model.layers.1.mlp.compressed_experts.d")));
  }
}

// The checkpoint's config.json and its export say K_m = num_experts_per_tok plus K_a compressed;
// `cemoe logits --compressed-experts` on the export equals `cemoe logits` on the checkpoint's
// model folder bit for bit (and `cemoe logits` on the export, whose config turns them on), and
// differs from the export without its CE at the full top-K and at top-K_m: the vectors matter.
TEST_F(TrainCeTest, ExportCarriesTheCompressedExperts) {
  test::WriteText(R("tokens.json"),
                  "[[5, 17, 33, 64, 90, 101, 3, 12], [7, 7, 40, 41, 2, 99, 1, 0]]");
  struct Case {
    std::string arch, run;
    int64_t main, aux;
  };
  const CliResult phi = Train("phimoe", R("joint_phimoe"), "--set train.max_steps=2");
  ASSERT_EQ(phi.code, 0) << phi.output;
  for (const Case& c : {Case{"olmoe", R("joint"), 2, 2}, Case{"phimoe", R("joint_phimoe"), 1, 1}}) {
    const std::string step = StepDir(c.run, ReadMetrics(c.run).back().step) + "/model";
    const std::string out = R("exported_" + c.arch);
    const CliResult e = test::RunCemoe("export --from " + c.run + " --out " + out);
    ASSERT_EQ(e.code, 0) << e.output;
    for (const std::string& dir : {step, out}) {
      const auto config = nlohmann::json::parse(test::ReadText(dir + "/config.json"));
      EXPECT_EQ(config.at("num_experts_per_tok").get<int64_t>(), c.main) << dir;
      ASSERT_TRUE(config.contains("compressed_experts")) << dir;
      EXPECT_EQ(config.at("compressed_experts").at("main_experts").get<int64_t>(), c.main) << dir;
      EXPECT_EQ(config.at("compressed_experts").at("auxiliary_experts").get<int64_t>(), c.aux)
          << dir;
      EXPECT_FALSE(config.contains("use_ce")) << dir;
    }
    auto logits = [&](const std::string& model, const std::string& extra) {
      const std::string file = R("logits.safetensors");
      fs::remove(file);
      const CliResult l = test::RunCemoe("logits --model " + model + " --tokens " +
                                         R("tokens.json") + " --out " + file + " " + extra);
      EXPECT_EQ(l.code, 0) << l.output;
      return SafetensorsFile(file).Get("logits").clone();
    };
    const at::Tensor exported = logits(out, "--compressed-experts");
    EXPECT_TRUE(at::equal(exported, logits(step, ""))) << c.arch;
    EXPECT_TRUE(at::equal(exported, logits(out, ""))) << c.arch;
    // Without the CE: the full top-K, and the top-K_m alone.
    EXPECT_FALSE(at::equal(exported, logits(out, "--main-experts 0"))) << c.arch;
    EXPECT_FALSE(at::equal(exported, logits(out, fmt::format("--main-experts 0 --top-k {}",
                                                             c.main))))
        << c.arch;
  }
}

// A CE checkpoint trained on with the CE off stays loadable (it saves as the plain model), and
// resuming a CE run with moe.compressed_experts at its default ("checkpoint") keeps the CE of the
// checkpoint it resumes (the setting is read from that checkpoint, not from model.path).
TEST_F(TrainCeTest, CeCheckpointTrainedWithTheCeOffStaysLoadable) {
  const std::string exported = R("ce_model");
  ASSERT_EQ(test::RunCemoe("export --from " + R("joint") + " --out " + exported).code, 0);
  test::WriteText(R("tokens1.json"), "[[5, 17, 33, 64, 90, 101, 3, 12]]");
  // 1. From a CE model folder with the CE off: a named error, or a checkpoint that loads.
  const CliResult off = Train("olmoe", R("ce_off"),
                              "--set model.path=" + exported +
                                  " --set moe.compressed_experts=false --set train.max_steps=1");
  if (off.code == 0) {
    const CliResult l = test::RunCemoe("logits --model " + StepDir(R("ce_off"), 1) +
                                       "/model --tokens " + R("tokens1.json") + " --out " +
                                       R("off.safetensors"));
    EXPECT_EQ(l.code, 0) << l.output;
  } else {
    EXPECT_NE(off.output.find("moe.compressed_experts"), std::string::npos) << off.output;
  }
  // 2. The joint run resumed from step 2 by a recipe without the moe section: the straight run.
  test::WriteText(R("olmoe_plain.textproto"), test::BaseRecipe(R("olmoe"), R("cache")));
  const std::string resumed = R("joint_resumed_plain");
  test::CopyRunAtStep(R("joint"), resumed, 2);
  const CliResult r = test::RunCemoe("train " + R("olmoe_plain.textproto") + " --run-dir " +
                                     resumed + fmt::format(" --set train.max_steps={}", kSteps));
  ASSERT_EQ(r.code, 0) << r.output;
  EXPECT_TRUE(test::SafetensorsBytes(StepDir(R("joint"), kSteps)) ==
              test::SafetensorsBytes(StepDir(resumed, kSteps)));
}

}  // namespace
}  // namespace cemoe
