// train_test.cc: `cemoe train` and `cemoe export` in one process, run as a user runs them, on
// tiny models from `cemoe init` and the shipped tiny data: the loss falls and one batch is
// overfitted; a resumed run equals a straight one bit for bit; SIGTERM / SIGUSR1 stop with a
// checkpoint and the rerun finishes equal; bad input is a fast named error that leaves the run
// folder alone; non-finite steps are skipped, counted and stop the run; frozen tensors stay; the
// activation checkpointing switch changes nothing; export gives the checkpoint's logits.
// The multi-rank cases are in train_mpi_test.cc, the kill-during-save cases in
// train_kill_test.cc.
#include <gtest/gtest.h>

#include <chrono>
#include <cmath>
#include <filesystem>
#include <numeric>
#include <regex>
#include <string>
#include <vector>

#include "model/hf_checkpoint.h"
#include "tests/cli_runner.h"
#include "tests/trainer/train/train_runner.h"

namespace cemoe {
namespace {

namespace fs = std::filesystem;
using test::CliResult;
using test::ReadMetrics;
using test::RunCemoe;
using test::StepDir;

// Folders every test reads: the tiny models, the base recipe and its straight 6-step run
// (a checkpoint at every step).
class TrainTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    root_ = fs::temp_directory_path() / ("cemoe_train_test_" + std::to_string(::getpid()));
    fs::remove_all(root_);
    fs::create_directories(root_);
    for (const char* arch : {"olmoe", "phimoe"}) {
      const CliResult r = RunCemoe(fmt::format("init --arch {} --preset tiny --seed 3 --out {}",
                                               arch, R(arch)));
      ASSERT_EQ(r.code, 0) << r.output;
    }
    test::WriteText(R("base.textproto"), test::BaseRecipe(R("olmoe"), R("cache")));
    const CliResult base = Train(R("base.textproto"), R("base_run"));
    ASSERT_EQ(base.code, 0) << base.output;
  }
  static void TearDownTestSuite() { fs::remove_all(root_); }

  static std::string R(const std::string& name) { return (root_ / name).string(); }
  static CliResult Train(const std::string& recipe, const std::string& run_dir,
                         const std::string& sets = "", const std::string& env = "") {
    return test::RunCemoeWith(env, "train " + recipe + " --run-dir " + run_dir + " " + sets);
  }

  static fs::path root_;
};
fs::path TrainTest::root_;

double Mean(const std::vector<test::StepLine>& m, size_t from, size_t to) {
  double s = 0;
  for (size_t i = from; i < to; ++i) s += m[i].loss;
  return s / static_cast<double>(to - from);
}

// The shipped tiny recipes, as the quickstart runs them: the mean loss of the last 5 steps is
// well below that of the first 5 (measured: OLMoE 4.74 -> 4.09, Phi-MoE top-1 4.78 -> 3.96).
TEST_F(TrainTest, LossFallsOnTheShippedTinyRecipes) {
  for (const auto& [arch, recipe] :
       {std::pair<std::string, std::string>{"olmoe", "olmoe_chat"}, {"phimoe", "phimoe_chat_top1"}}) {
    const std::string run = R("fall_" + arch);
    const CliResult r = Train(test::SourceDir() + "/recipes/tiny/" + recipe + ".textproto", run,
                              "--set model.path=" + R(arch) + " --set data.train[0].path=" +
                                  test::TinyData("chat.jsonl") + " --set data.cache_dir=" +
                                  R("cache") + " --set logging.tensorboard=false");
    ASSERT_EQ(r.code, 0) << r.output;
    const auto m = ReadMetrics(run);
    ASSERT_EQ(m.size(), 20u) << arch;
    const double first = Mean(m, 0, 5), last = Mean(m, 15, 20);
    EXPECT_LT(last, first - 0.4) << arch << ": first-5 mean " << first << ", last-5 " << last;
    EXPECT_TRUE(fs::exists(run + "/DONE"));
  }
}

// One batch (the whole data: 4 conversations, no packing, global batch 4) at a constant learning
// rate: the model memorises it, the loss goes to (almost) zero.
TEST_F(TrainTest, OverfitsOneBatchToNearZeroLoss) {
  std::ifstream in(test::TinyData("chat.jsonl"));
  std::string line, subset;
  for (int i = 0; i < 4 && std::getline(in, line); ++i) subset += line + "\n";
  test::WriteText(R("four.jsonl"), subset);
  const std::string run = R("overfit");
  const CliResult r =
      Train(R("base.textproto"), run,
            "--set data.train[0].path=" + R("four.jsonl") +
                " --set data.packing=false --set data.max_length=128 --set train.max_steps=150"
                " --set schedule.kind=constant --set schedule.warmup_steps=0 --set optim.lr=1e-2"
                " --set checkpoint.every_steps=0");
  ASSERT_EQ(r.code, 0) << r.output;
  const auto m = ReadMetrics(run);
  ASSERT_EQ(m.size(), 150u);
  EXPECT_GT(m.front().loss, 4.0);
  EXPECT_LT(m.back().loss, 0.05) << "first " << m.front().loss;
}

// 6 steps straight against 3 steps, a crash, and the resume (a copy of the straight run cut back
// to its step-3 checkpoint): the same loss at every step and the same bytes in the final
// checkpoint (weights and optimiser state).
TEST_F(TrainTest, ResumeEqualsAStraightRunBitForBit) {
  const std::string resumed = R("resumed");
  test::CopyRunAtStep(R("base_run"), resumed, 3);
  const CliResult r = Train(R("base.textproto"), resumed);
  ASSERT_EQ(r.code, 0) << r.output;
  EXPECT_NE(r.output.find("resuming from " + StepDir(resumed, 3) + " (step 3)"), std::string::npos)
      << r.output;
  const auto straight = ReadMetrics(R("base_run")), again = ReadMetrics(resumed);
  ASSERT_EQ(straight.size(), 6u);
  ASSERT_EQ(again.size(), 6u);
  for (size_t i = 0; i < 6; ++i) {
    EXPECT_EQ(again[i].step, straight[i].step);
    EXPECT_EQ(again[i].loss, straight[i].loss) << "step " << straight[i].step;
  }
  EXPECT_NE(straight[5].loss, straight[4].loss);
  const auto want = test::SafetensorsBytes(StepDir(R("base_run"), 6));
  ASSERT_EQ(want.size(), 2u);  // model/model.safetensors, optimizer-rank-00000.safetensors
  EXPECT_TRUE(want == test::SafetensorsBytes(StepDir(resumed, 6)));
  EXPECT_TRUE(fs::exists(resumed + "/DONE"));
}

// SIGTERM and SIGUSR1 during a 40-step run: exit 0, the message, a checkpoint at the step
// reached and no DONE; the same command again finishes, writes DONE and ends with the weights of
// an uninterrupted run.
TEST_F(TrainTest, SignalsStopWithACheckpointAndTheRerunFinishesEqual) {
  const std::string sets = "--set train.max_steps=40 --set checkpoint.every_steps=0";
  const CliResult straight = Train(R("base.textproto"), R("long"), sets);
  ASSERT_EQ(straight.code, 0) << straight.output;
  const auto want = test::SafetensorsBytes(StepDir(R("long"), 40));
  for (int sig : {SIGTERM, SIGUSR1}) {
    const std::string run = R("signal_" + std::to_string(sig));
    const std::string log = run + ".log";
    {
      test::Background job(fmt::format("{} train {} --run-dir {} {}", std::getenv("CEMOE_BINARY"),
                                       R("base.textproto"), run, sets),
                           log);
      ASSERT_TRUE(test::WaitForStep(run, 3, 120)) << test::ReadText(log);
      ASSERT_EQ(::kill(job.pid(), sig), 0);
      EXPECT_EQ(job.Wait(), 0) << test::ReadText(log);
    }
    const std::string out = test::ReadText(log);
    std::smatch m;
    ASSERT_TRUE(std::regex_search(
        out, m, std::regex(fmt::format("stopped by signal {} after step ([0-9]+) of 40", sig))))
        << out;
    const int64_t reached = std::stoll(m[1]);
    EXPECT_GE(reached, 3);
    EXPECT_LT(reached, 40) << "the signal came too late to test anything";
    EXPECT_EQ(test::LatestName(run), fmt::format("step-{:08d}", reached));
    const auto state = nlohmann::json::parse(
        test::ReadText(StepDir(run, reached) + "/trainer_state.json"));
    EXPECT_EQ(state.at("step").get<int64_t>(), reached);
    EXPECT_FALSE(fs::exists(run + "/DONE"));
    const CliResult rest = Train(R("base.textproto"), run, sets);
    ASSERT_EQ(rest.code, 0) << rest.output;
    EXPECT_TRUE(fs::exists(run + "/DONE"));
    EXPECT_TRUE(want == test::SafetensorsBytes(StepDir(run, 40))) << "signal " << sig;
    const auto a = ReadMetrics(R("long")), b = ReadMetrics(run);
    ASSERT_EQ(b.size(), 40u);
    for (size_t i = 0; i < 40; ++i) EXPECT_EQ(a[i].loss, b[i].loss) << "step " << a[i].step;
  }
}

// Every file under `dir`, by relative path.
std::map<std::string, std::string> Snapshot(const std::string& dir) {
  std::map<std::string, std::string> out;
  for (const auto& e : fs::recursive_directory_iterator(dir)) {
    if (e.is_regular_file()) out[fs::relative(e.path(), dir).string()] = test::ReadText(e.path());
  }
  return out;
}

// Bad input: a non-zero exit within seconds, the message (naming the file and line, or the
// field and value), and the finished run folder it was pointed at left exactly as it was.
TEST_F(TrainTest, BadInputIsAFastNamedErrorAndLeavesTheRunFolderAlone) {
  const std::string run = R("bad_run");
  fs::copy(R("base_run"), run, fs::copy_options::recursive);
  const auto before = Snapshot(run);
  // Line 3, column 7: a value is missing after "lr:".
  test::WriteText(R("syntax.textproto"), "model { path: \"" + R("olmoe") +
                                             "\" }\noptim {\n  lr: }\n");
  // Line 3 of the data is not JSON.
  std::ifstream in(test::TinyData("chat.jsonl"));
  std::string line, bad;
  for (int i = 0; i < 6 && std::getline(in, line); ++i) bad += (i == 2 ? "{\"messages\": [" : line) + "\n";
  test::WriteText(R("bad.jsonl"), bad);
  struct Case {
    std::string recipe, sets, message;
  };
  const std::vector<Case> cases = {
      {R("syntax.textproto"), "", R("syntax.textproto") + ":3:7: "},
      {R("base.textproto"), "--set optim.lr=0", "optim.lr = 0: must be > 0"},
      {R("base.textproto"), "--set optim.lr=-1e-3", "optim.lr = -0.001: must be > 0"},
      {R("base.textproto"), "--set parallel.ep=2",
       "parallel.ep (2) must divide the world size (1 ranks)"},
      {R("base.textproto"), "--set model.top_k=9", "model.top_k = 9"},
      {R("base.textproto"), "--set data.train[0].path=" + R("absent.jsonl"), R("absent.jsonl")},
      {R("base.textproto"), "--set data.train[0].path=" + R("bad.jsonl"), R("bad.jsonl") + ":3"},
      {R("base.textproto"), "--set data.chat_template=klingon", "data.chat_template = \"klingon\""},
      // A recipe that does not fit the memory it names stops before the model is loaded.
      {R("base.textproto"), "--set train.device_memory_gib=0.0001",
       "exceeds the device memory 104.9 KiB (train.device_memory_gib = 0.0001)"},
  };
  for (const Case& c : cases) {
    const auto start = std::chrono::steady_clock::now();
    const CliResult r = Train(c.recipe, run, c.sets);
    const double seconds =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    EXPECT_EQ(r.code, 1) << c.sets << "\n" << r.output;
    EXPECT_LT(seconds, 30) << c.sets;
    EXPECT_NE(r.output.find("cemoe: error: "), std::string::npos) << r.output;
    EXPECT_NE(r.output.find(c.message), std::string::npos)
        << c.sets << ": expected \"" << c.message << "\" in:\n" << r.output;
    const auto after = Snapshot(run);
    for (const auto& [file, bytes] : after) {
      EXPECT_TRUE(before.count(file) && before.at(file) == bytes) << c.sets << ": " << file;
    }
    EXPECT_EQ(after.size(), before.size()) << c.sets;
  }
  // data.bad_lines "skip": the bad line is skipped and counted, the run goes on.
  const CliResult skip = Train(R("base.textproto"), R("skip_run"),
                               "--set data.train[0].path=" + R("bad.jsonl") +
                                   " --set data.bad_lines=skip --set train.max_steps=1");
  ASSERT_EQ(skip.code, 0) << skip.output;
  EXPECT_NE(skip.output.find("bad.jsonl: 6 lines, "), std::string::npos) << skip.output;
  EXPECT_NE(skip.output.find("1 bad lines skipped"), std::string::npos) << skip.output;
  EXPECT_NE(skip.output.find("first skipped line: "), std::string::npos) << skip.output;
  EXPECT_NE(skip.output.find(R("bad.jsonl") + ":3: invalid JSON"), std::string::npos)
      << skip.output;
}

// A learning rate of 1e30 sends the weights past float range after one update: every later step
// is non-finite, skipped (weights untouched) and logged with "skipped": 1, and the third in a row
// stops the run naming that step.
TEST_F(TrainTest, NonFiniteStepsAreSkippedCountedAndStopTheRun) {
  const std::string run = R("nonfinite");
  const CliResult r = Train(R("base.textproto"), run,
                            "--set optim.lr=1e30 --set train.max_nonfinite_steps=3 "
                            "--set train.max_steps=20 --set schedule.warmup_steps=0");
  EXPECT_EQ(r.code, 1) << r.output;
  const auto m = ReadMetrics(run);
  ASSERT_GE(m.size(), 2u) << r.output;
  EXPECT_EQ(m[0].skipped, 0);
  EXPECT_TRUE(std::isfinite(m[0].loss));
  size_t first = 0;
  while (first < m.size() && m[first].skipped == 0) ++first;
  ASSERT_LT(first, m.size()) << "no skipped step\n" << r.output;
  ASSERT_EQ(m.size(), first + 3) << "the run went on after 3 non-finite steps\n" << r.output;
  for (size_t i = first; i < m.size(); ++i) {
    EXPECT_EQ(m[i].skipped, 1);
    EXPECT_FALSE(std::isfinite(m[i].loss)) << "step " << m[i].step;
  }
  const int64_t last = m.back().step;
  EXPECT_NE(r.output.find(fmt::format("step {}: 3 steps in a row had a non-finite loss", last)),
            std::string::npos)
      << r.output;
  // The weights of the last finite update are what a skipped step leaves; the stopped run has no
  // later checkpoint than that step's.
  EXPECT_FALSE(fs::exists(run + "/DONE"));
}

// train.freeze ["router", "attention"]: those tensors in the final checkpoint are the initial
// ones bit for bit; every other dense tensor and most experts changed.
TEST_F(TrainTest, FrozenTensorsEqualTheInitialOnes) {
  const std::string run = R("frozen");
  const CliResult r = Train(R("base.textproto"), run, "--set train.freeze=router,attention");
  ASSERT_EQ(r.code, 0) << r.output;
  const auto init = test::ModelTensors(R("olmoe"));
  const auto trained = test::ModelTensors(StepDir(run, 6) + "/model");
  ASSERT_EQ(init.size(), trained.size());
  int frozen = 0, dense_changed = 0, experts = 0, experts_changed = 0;
  for (const auto& [name, t] : init) {
    ASSERT_TRUE(trained.count(name)) << name;
    const bool same = at::equal(t, trained.at(name));
    if (name.find(".mlp.gate.") != std::string::npos ||
        name.find(".self_attn.") != std::string::npos) {
      ++frozen;
      EXPECT_TRUE(same) << name << " is frozen but changed";
    } else if (name.find(".experts.") != std::string::npos) {
      ++experts;
      experts_changed += !same;
    } else {
      dense_changed += !same;
      EXPECT_FALSE(same) << name << " is trained but did not change";
    }
  }
  // 2 layers x (router + q, k, v, o + q_norm, k_norm).
  EXPECT_EQ(frozen, 2 * 7);
  EXPECT_EQ(dense_changed, 2 * 2 + 3);  // 2 norms per layer, final norm, embeddings, lm_head
  EXPECT_GT(experts_changed, experts / 2) << experts_changed << " of " << experts;
}

// Recomputing each layer in backward gives the same arithmetic: the same loss at every step and
// the same final bytes.
TEST_F(TrainTest, ActivationCheckpointingChangesNothing) {
  const std::string run = R("recompute");
  const CliResult r = Train(R("base.textproto"), run, "--set train.activation_checkpointing=true");
  ASSERT_EQ(r.code, 0) << r.output;
  const auto a = ReadMetrics(R("base_run")), b = ReadMetrics(run);
  ASSERT_EQ(b.size(), 6u);
  for (size_t i = 0; i < 6; ++i) EXPECT_EQ(a[i].loss, b[i].loss) << "step " << a[i].step;
  EXPECT_TRUE(test::SafetensorsBytes(StepDir(R("base_run"), 6)) ==
              test::SafetensorsBytes(StepDir(run, 6)));
}

// `cemoe export` of a top-2 run (the checkpoint's own is top-4): config.json says 2, the
// tokenizer files come along, and `cemoe logits` on the export equals `cemoe logits --top-k 2` on
// the checkpoint's model folder bit for bit (and differs from top-4: the setting matters).
TEST_F(TrainTest, ExportGivesTheCheckpointAtTheTrainedTopK) {
  const std::string run = R("top2");
  const CliResult r = Train(R("base.textproto"), run, "--set model.top_k=2 --set train.max_steps=2");
  ASSERT_EQ(r.code, 0) << r.output;
  const std::string out = R("exported");
  const CliResult e = RunCemoe("export --from " + run + " --out " + out);
  ASSERT_EQ(e.code, 0) << e.output;
  const auto config = nlohmann::json::parse(test::ReadText(out + "/config.json"));
  EXPECT_EQ(config.at("num_experts_per_tok").get<int>(), 2);
  for (const char* f : {"tokenizer.json", "tokenizer_config.json", "model.safetensors"}) {
    EXPECT_TRUE(fs::is_regular_file(out + "/" + f)) << f;
  }
  EXPECT_FALSE(fs::exists(out + "/placement.json"));
  EXPECT_EQ(test::ReadText(out + "/tokenizer.json"), test::ReadText(R("olmoe/tokenizer.json")));
  test::WriteText(R("tokens.json"), "[[5, 17, 33, 64, 90, 101, 3, 12], [7, 7, 40, 41, 2, 99, 1, 0]]");
  auto logits = [&](const std::string& model, const std::string& extra) {
    const std::string file = R("logits.safetensors");
    const CliResult l = RunCemoe("logits --model " + model + " --tokens " + R("tokens.json") +
                                 " --out " + file + " " + extra);
    EXPECT_EQ(l.code, 0) << l.output;
    return SafetensorsFile(file).Get("logits").clone();
  };
  const at::Tensor exported = logits(out, "");
  const std::string step = StepDir(run, 2) + "/model";
  EXPECT_TRUE(at::equal(exported, logits(step, "--top-k 2")));
  // The checkpoint records the routing it was trained at too (set_top_k updates the config).
  EXPECT_TRUE(at::equal(exported, logits(step, "")));
  EXPECT_FALSE(at::equal(exported, logits(step, "--top-k 4")));
  // A step folder exports the same.
  const CliResult s = RunCemoe("export --from " + StepDir(run, 2) + " --out " + R("exported2"));
  ASSERT_EQ(s.code, 0) << s.output;
  EXPECT_TRUE(at::equal(exported, logits(R("exported2"), "")));
}

TEST_F(TrainTest, ExportOfABadSourceIsANamedError) {
  fs::create_directories(R("empty"));
  fs::create_directories(R("broken/checkpoints"));
  test::WriteText(R("broken/checkpoints/latest"), "step-00000007\n");
  const std::vector<std::pair<std::string, std::string>> cases = {
      {R("absent"), "--from " + R("absent") + ": no such folder"},
      {R("empty"), "--from " + R("empty") + ": neither a run folder"},
      {R("broken"), "names " + R("broken") + "/checkpoints/step-00000007, which is not a whole "
                    "checkpoint"},
  };
  for (const auto& [from, message] : cases) {
    const CliResult r = RunCemoe("export --from " + from + " --out " + R("x"));
    EXPECT_EQ(r.code, 1) << r.output;
    EXPECT_NE(r.output.find(message), std::string::npos) << r.output;
    EXPECT_FALSE(fs::exists(R("x")));
  }
}

}  // namespace
}  // namespace cemoe
