// HumanEval on the real problem set (tests/trainer/eval/data/humaneval/HumanEval.jsonl.gz, 164
// problems) with a scripted model: every canonical solution passes and every empty completion
// fails in the sandbox; a mixed script scores the hand-counted fraction; pass@1/5/10 with 10
// scripted samples per problem match the estimator worked by hand; the instruct (chat) variant
// builds lm-eval's prompt and cuts the completion at its code fence; bad setups fail before any
// generation.
#include <gtest/gtest.h>
#include <stdlib.h>

#include <cstdio>
#include <filesystem>
#include <map>
#include <string>
#include <vector>

#include "model/check.h"
#include "tests/trainer/eval/scripted_model.h"
#include "trainer/eval/eval_data.h"
#include "trainer/eval/task.h"

namespace cemoe {
namespace {

using testing::ScriptedModel;

struct Problem {
  std::string prompt;
  std::string canonical_solution;
};

class HumanEvalTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    const char* root = std::getenv("CEMOE_SOURCE_DIR");
    ASSERT_NE(root, nullptr) << "CEMOE_SOURCE_DIR is not set (run through ctest)";
    const std::string gz =
        std::string(root) + "/tests/trainer/eval/data/humaneval/HumanEval.jsonl.gz";
    data_ = (std::filesystem::temp_directory_path() /
             ("cemoe_humaneval_test_" + std::to_string(getpid()) + ".jsonl"))
                .string();
    const std::string command = "gzip -dc '" + gz + "' > '" + data_ + "'";
    ASSERT_EQ(std::system(command.c_str()), 0) << command;
    for (const EvalExample& ex : ReadEvalJsonl(data_, {"prompt", "canonical_solution"})) {
      problems_.push_back(
          {EvalString(ex, data_, "prompt"), EvalString(ex, data_, "canonical_solution")});
      index_of_[problems_.back().prompt] = static_cast<int64_t>(problems_.size()) - 1;
    }
    setenv("CEMOE_SANDBOX_WORKERS", "2", 1);
  }
  static void TearDownTestSuite() { std::filesystem::remove(data_); }

  TaskOptions Options() const {
    TaskOptions o;
    o.task = "humaneval";
    o.data = data_;
    return o;
  }

  static inline std::string data_;
  static inline std::vector<Problem> problems_;
  static inline std::map<std::string, int64_t> index_of_;  // prompt -> problem
};

TEST_F(HumanEvalTest, CanonicalSolutionsAllPassAndEmptyCompletionsAllFail) {
  ASSERT_EQ(problems_.size(), 164u);
  ScriptedModel canonical([&](const std::string& prompt, int64_t) {
    return problems_[index_of_.at(prompt)].canonical_solution;
  });
  std::vector<std::pair<int64_t, int64_t>> progress;
  const TaskResult good = RunHumanEval(Options(), canonical, [&](int64_t done, int64_t total) {
    progress.emplace_back(done, total);
  });
  EXPECT_EQ(good.num_examples, 164);
  EXPECT_EQ(good.primary_metric, "pass@1");
  EXPECT_EQ(good.score, 1.0);
  EXPECT_EQ(good.metrics.at("pass@1"), 1.0);
  EXPECT_FALSE(good.metrics.contains("pass@10"));  // one sample per problem
  ASSERT_EQ(good.records.size(), 164u);
  ASSERT_FALSE(good.notes.empty());
  EXPECT_NE(good.notes.back().find("sandbox: 164 program runs"), std::string::npos);
  EXPECT_NE(good.notes.back().find("statuses: passed 164;"), std::string::npos);
  GTEST_LOG_(INFO) << good.notes.back();
  for (size_t i = 0; i < good.records.size(); ++i) {
    const nlohmann::json& r = good.records[i];
    EXPECT_EQ(r.at("index"), static_cast<int64_t>(i));
    EXPECT_EQ(r.at("task_id"), "HumanEval/" + std::to_string(i));
    EXPECT_EQ(r.at("prompt"), problems_[i].prompt);
    EXPECT_EQ(r.at("output"), problems_[i].canonical_solution);
    EXPECT_EQ(r.at("extracted"), problems_[i].canonical_solution);
    EXPECT_EQ(r.at("correct"), 1.0) << r.at("task_id") << ": " << r.at("runs").dump();
    EXPECT_EQ(r.at("statuses"), nlohmann::json::array({"passed"}));
  }
  // lm-eval's humaneval.yaml: greedy, until the five stop strings, 1024 new tokens.
  const SamplingOptions& s = canonical.last_options;
  EXPECT_EQ(s.stop, (std::vector<std::string>{"\nclass", "\ndef", "\n#", "\nif", "\nprint"}));
  EXPECT_EQ(s.max_new_tokens, 1024);
  EXPECT_EQ(s.temperature, 0.0);
  EXPECT_EQ(s.num_samples, 1);
  EXPECT_EQ(canonical.generate_calls, 21);  // ceil(164 / batch_size 8)
  ASSERT_FALSE(progress.empty());
  EXPECT_EQ(progress.back(), std::make_pair(int64_t{164}, int64_t{164}));

  ScriptedModel empty([](const std::string&, int64_t) { return std::string(); });
  const TaskResult bad = RunHumanEval(Options(), empty, nullptr);
  EXPECT_EQ(bad.score, 0.0);
  for (const nlohmann::json& r : bad.records) {
    EXPECT_EQ(r.at("correct"), 0.0) << r.at("task_id");
    EXPECT_EQ(r.at("statuses"), nlohmann::json::array({"failed"})) << r.at("task_id");
  }
}

TEST_F(HumanEvalTest, MixedScriptScoresTheHandCountedFraction) {
  // Problems 0, 3, ..., 18 solved (7 of 20), problem 1 loops forever, the rest return None.
  ScriptedModel model([&](const std::string& prompt, int64_t) -> std::string {
    const int64_t i = index_of_.at(prompt);
    if (i % 3 == 0) return problems_[i].canonical_solution;
    if (i == 1) return "    while True:\n        pass\n";
    return "    return None\n";
  });
  TaskOptions o = Options();
  o.limit = 20;
  o.timeout_s = 1.0;
  const TaskResult r = RunHumanEval(o, model, nullptr);
  EXPECT_EQ(r.num_examples, 20);
  EXPECT_NEAR(r.score, 7.0 / 20.0, 1e-15);
  EXPECT_EQ(r.records[1].at("statuses"), nlohmann::json::array({"timeout"}));
  EXPECT_EQ(r.records[2].at("statuses"), nlohmann::json::array({"failed"}));
  EXPECT_NE(r.records[2].at("runs")[0].at("output").get<std::string>().find("AssertionError"),
            std::string::npos);
  EXPECT_EQ(r.records[3].at("correct"), 1.0);
}

TEST_F(HumanEvalTest, PassAtKWithTenScriptedSamples) {
  // Problem i gets c_i = {0, 1, 5, 10}[i] passing samples out of n = 10.
  const std::vector<int64_t> c = {0, 1, 5, 10};
  ScriptedModel model([&](const std::string& prompt, int64_t sample) -> std::string {
    const int64_t i = index_of_.at(prompt);
    return sample < c[i] ? problems_[i].canonical_solution : "    pass\n";
  });
  TaskOptions o = Options();
  o.limit = 4;
  o.samples = 10;
  o.temperature = 0.8;
  o.top_p = 0.95;
  o.seed = 7;
  o.pass_at = {1, 5, 10};
  const TaskResult r = RunHumanEval(o, model, nullptr);
  EXPECT_EQ(r.primary_metric, "pass@10");
  // pass@1 = mean c/n; pass@5 = 1 - C(n-c,5)/C(10,5) = {0, 1 - 126/252, 1 - 1/252, 1};
  // pass@10 = [c > 0].
  EXPECT_NEAR(r.metrics.at("pass@1").get<double>(), (0.0 + 0.1 + 0.5 + 1.0) / 4, 1e-12);
  EXPECT_NEAR(r.metrics.at("pass@5").get<double>(), (0.0 + 0.5 + 251.0 / 252.0 + 1.0) / 4, 1e-12);
  EXPECT_NEAR(r.metrics.at("pass@10").get<double>(), 0.75, 1e-12);
  EXPECT_EQ(r.score, r.metrics.at("pass@10").get<double>());
  for (int64_t i = 0; i < 4; ++i) {
    const nlohmann::json& rec = r.records[i];
    EXPECT_NEAR(rec.at("correct").get<double>(), c[i] / 10.0, 1e-15);
    EXPECT_EQ(rec.at("num_correct"), c[i]);
    ASSERT_EQ(rec.at("output").size(), 10u);
    ASSERT_EQ(rec.at("statuses").size(), 10u);
    EXPECT_EQ(rec.at("statuses")[0], c[i] > 0 ? "passed" : "failed");
  }
  EXPECT_EQ(model.last_options.num_samples, 10);
  EXPECT_EQ(model.last_options.temperature, 0.8);
  EXPECT_EQ(model.last_options.top_p, 0.95);
  EXPECT_EQ(model.last_options.seed, 7u);

  // Fewer samples than k: pass@10 is skipped (with a note) and pass@1 is primary.
  o.samples = 5;
  const TaskResult five = RunHumanEval(o, model, nullptr);
  EXPECT_EQ(five.primary_metric, "pass@1");
  EXPECT_FALSE(five.metrics.contains("pass@10"));
  EXPECT_NEAR(five.score, (0.0 + 0.2 + 1.0 + 1.0) / 4, 1e-12);
}

TEST_F(HumanEvalTest, InstructVariantWrapsThePromptAndCutsAtTheFence) {
  ScriptedModel model([&](const std::string& prompt, int64_t) -> std::string {
    for (const auto& [p, i] : index_of_) {
      if (prompt.size() > p.size() &&
          prompt.compare(prompt.size() - p.size() - 1, p.size(), p) == 0) {
        return problems_[i].canonical_solution + "```\n\nThis solution works because...\n";
      }
    }
    return "unknown prompt";
  });
  TaskOptions o = Options();
  o.limit = 3;
  o.chat = true;
  const TaskResult r = RunHumanEval(o, model, nullptr);
  const std::string& p0 = problems_[0].prompt;
  EXPECT_EQ(model.prompts_seen[0],
            "<|user|>\nWrite a solution to the following problem and make sure that it passes "
            "the tests:\n```python\n" +
                p0 +
                "\n```\n\n<|assistant|>\nHere is the completed "
                "function:\n```python\n" +
                p0 + "\n");
  EXPECT_EQ(r.score, 1.0);
  EXPECT_EQ(r.records[0].at("extracted"), problems_[0].canonical_solution);
  EXPECT_NE(r.harness.find("humaneval_instruct"), std::string::npos) << r.harness;

  // Without chat the same output is not cut: the fence is a syntax error.
  ScriptedModel plain([&](const std::string& prompt, int64_t) {
    return problems_[index_of_.at(prompt)].canonical_solution + "```\n";
  });
  o.chat = false;
  EXPECT_EQ(RunHumanEval(o, plain, nullptr).score, 0.0);
}

TEST_F(HumanEvalTest, BadSetupsFailBeforeGenerating) {
  ScriptedModel model([](const std::string&, int64_t) { return std::string(); });
  auto error_of = [&](const TaskOptions& o) -> std::string {
    try {
      RunHumanEval(o, model, nullptr);
    } catch (const Error& e) {
      return e.what();
    }
    return "";
  };
  TaskOptions o = Options();
  o.data = "/x/HumanEval.jsonl.gz";
  EXPECT_NE(error_of(o).find("gzip -dk /x/HumanEval.jsonl.gz"), std::string::npos);
  o = Options();
  o.samples = 0;
  EXPECT_NE(error_of(o).find("samples"), std::string::npos);
  o = Options();
  o.pass_at = {0};
  EXPECT_NE(error_of(o).find("pass_at"), std::string::npos);
  o = Options();
  setenv("CEMOE_PYTHON", "cemoe-no-such-python3", 1);
  const std::string missing = error_of(o);
  unsetenv("CEMOE_PYTHON");
  EXPECT_NE(missing.find("\"cemoe-no-such-python3\" is not on PATH"), std::string::npos) << missing;
  EXPECT_EQ(model.generate_calls, 0);
}

}  // namespace
}  // namespace cemoe

namespace cemoe {
namespace {

// Under mpirun only world rank 0 runs the programs: another rank runs none (its interpreter is
// never even looked up) and scores what rank 0 shares.
class NonRootModel : public testing::ScriptedModel {
 public:
  using ScriptedModel::ScriptedModel;
  bool IsRoot() const override { return false; }
  std::string ShareFromRoot(const std::string& value) override {
    EXPECT_EQ(value, "");  // a non-root rank has no results of its own
    ++shares;
    return shared;
  }
  std::string shared;
  int shares = 0;
};

TEST_F(HumanEvalTest, NonRootRanksRunNoProgramAndScoreTheSharedResults) {
  NonRootModel model([](const std::string&, int64_t) { return std::string("    return 0\n"); });
  auto run = [](bool passed) {
    return nlohmann::json{{"passed", passed}, {"status", passed ? "passed" : "failed"},
                          {"exit_code", passed ? 0 : 1}, {"signal", 0}, {"wall_s", 0.05},
                          {"output", ""}, {"network", "guard"}, {"work_dir", "/tmp/x"}};
  };
  model.shared = nlohmann::json::array({run(true), run(false), run(true), run(false)}).dump();
  TaskOptions o = Options();
  o.limit = 4;
  setenv("CEMOE_PYTHON", "cemoe-no-such-python3", 1);  // rank 0 would fail to find it
  const TaskResult r = RunHumanEval(o, model, nullptr);
  unsetenv("CEMOE_PYTHON");
  EXPECT_EQ(model.shares, 1);
  EXPECT_DOUBLE_EQ(r.metrics["pass@1"].get<double>(), 0.5);
  EXPECT_EQ(r.records[1]["statuses"][0], "failed");
}

}  // namespace
}  // namespace cemoe
