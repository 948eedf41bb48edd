// eval_test.cc: `cemoe generate`, `cemoe eval` and `cemoe bench latency` as a user runs them on a
// tiny model (character tokenizer from `cemoe init`): outputs in the documented files and
// formats, greedy generation reproducible and identical to the eval path, and bad input as a
// one-line error naming the option or file with exit code 1.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <iterator>
#include <nlohmann/json.hpp>
#include <string>

#include "tests/cli_runner.h"

namespace cemoe {
namespace {

namespace fs = std::filesystem;
using test::RunCemoe;

class EvalCliTest : public test::TempDirTest {
 protected:
  void SetUp() override {
    TempDirTest::SetUp();
    ASSERT_EQ(RunCemoe("init --arch olmoe --preset tiny --seed 3 --out " + P("m")).code, 0);
  }
  static std::string Src(const std::string& rel) {
    return std::string(std::getenv("CEMOE_SOURCE_DIR")) + "/" + rel;
  }
  static std::vector<nlohmann::json> ReadJsonl(const std::string& path) {
    std::ifstream in(path);
    std::vector<nlohmann::json> out;
    for (std::string line; std::getline(in, line);) out.push_back(nlohmann::json::parse(line));
    return out;
  }
};

TEST_F(EvalCliTest, GenerateWritesJsonlAndIsReproducible) {
  const std::string args = "generate --model " + P("m") +
                           " --prompt 'Hello there' --prompt 'Q: 2+2?' --max-new-tokens 7 --output ";
  test::CliResult a = RunCemoe(args + P("a.jsonl"));
  ASSERT_EQ(a.code, 0) << a.output;
  EXPECT_NE(a.output.find("2 completion(s)"), std::string::npos) << a.output;
  const auto rows = ReadJsonl(P("a.jsonl"));
  ASSERT_EQ(rows.size(), 2u);
  EXPECT_EQ(rows[0]["prompt"], "Hello there");
  EXPECT_LE(rows[0]["completion_ids"].size(), 7u);
  EXPECT_EQ(rows[0]["num_tokens"], rows[0]["completion_ids"].size());
  // Greedy is deterministic, also with another batch size and padding side.
  ASSERT_EQ(RunCemoe(args + P("b.jsonl") + " --batch-size 1 --padding right").code, 0);
  const auto again = ReadJsonl(P("b.jsonl"));
  for (size_t i = 0; i < rows.size(); ++i) {
    EXPECT_EQ(again[i]["completion_ids"], rows[i]["completion_ids"]) << i;
  }
  // Sampling: the same seed draws the same tokens; two samples per prompt are prompt-major.
  const std::string s = "generate --model " + P("m") +
                        " --prompt 'Hi' --max-new-tokens 6 --temperature 1.0 --num-samples 2 "
                        "--seed 9 --output ";
  ASSERT_EQ(RunCemoe(s + P("s1.jsonl")).code, 0);
  ASSERT_EQ(RunCemoe(s + P("s2.jsonl")).code, 0);
  const auto s1 = ReadJsonl(P("s1.jsonl")), s2 = ReadJsonl(P("s2.jsonl"));
  ASSERT_EQ(s1.size(), 2u);
  EXPECT_EQ(s1[1]["sample"], 1);
  EXPECT_EQ(s1[0]["completion_ids"], s2[0]["completion_ids"]);
  EXPECT_EQ(s1[1]["completion_ids"], s2[1]["completion_ids"]);
}

TEST_F(EvalCliTest, EvalWritesRecordsSummariesAndLatency) {
  test::CliResult r = RunCemoe(
      "eval --model " + P("m") + " --out " + P("run") + " --label tiny --stage sft --limit 2" +
      " --task gsm8k --data " + Src("tests/trainer/eval/data/tasks/gsm8k.jsonl") +
      " --task truthfulqa_mc2 --data " + Src("tests/trainer/eval/data/tasks/truthfulqa_mc2.jsonl") +
      " --max-new-tokens 8 --latency --latency-batch 2 --latency-input 4 --latency-new-tokens 3 "
      "--latency-warmup 1 --latency-iters 2");
  ASSERT_EQ(r.code, 0) << r.output;
  for (const char* task : {"gsm8k", "truthfulqa_mc2"}) {
    std::ifstream in(P("run") + "/eval/" + task + "/summary.json");
    ASSERT_TRUE(in.good()) << task;
    const nlohmann::json s = nlohmann::json::parse(in);
    EXPECT_EQ(s["task"], task);
    EXPECT_EQ(s["num_examples"], 2);
    EXPECT_EQ(s["model"]["label"], "tiny");
    EXPECT_EQ(s["model"]["stage"], "sft");
    EXPECT_GE(s["score"].get<double>(), 0.0);
    EXPECT_LE(s["score"].get<double>(), 1.0);
    EXPECT_EQ(ReadJsonl(P("run") + "/eval/" + task + "/records.jsonl").size(), 2u);
  }
  // The GSM8K outputs are the greedy completions `cemoe generate` gives for the same prompts.
  const auto records = ReadJsonl(P("run") + "/eval/gsm8k/records.jsonl");
  std::ofstream(P("p.jsonl")) << nlohmann::json{{"prompt", records[0]["prompt"]}}.dump() << "\n";
  ASSERT_EQ(RunCemoe("generate --model " + P("m") + " --input " + P("p.jsonl") +
                     " --max-new-tokens 8 --stop 'Q:' --stop '</s>' --stop '<|im_end|>' --output " +
                     P("g.jsonl"))
                .code,
            0);
  EXPECT_EQ(ReadJsonl(P("g.jsonl"))[0]["completion"], records[0]["output"]);
  std::ifstream lat(P("run") + "/eval/latency/summary.json");
  ASSERT_TRUE(lat.good());
  const nlohmann::json l = nlohmann::json::parse(lat);
  EXPECT_EQ(l["primary_metric"], "mean_s");
  EXPECT_GT(l["score"].get<double>(), 0.0);
  EXPECT_EQ(l["num_examples"], 2);
  // `cemoe report` reads the run folder.
  test::CliResult rep = RunCemoe("report " + P("run"));
  EXPECT_EQ(rep.code, 0) << rep.output;
  EXPECT_NE(rep.output.find("| tiny"), std::string::npos) << rep.output;
}

TEST_F(EvalCliTest, RecipeEvalScoresTheFinalCheckpointAndThePretrainedModel) {
  std::ofstream(P("r.textproto"))
      << "name: \"tiny-sft\"\nmodel { path: \"" << P("m") << "\" top_k: 2 }\n"
      << "data { train { path: \"" << Src("recipes/tiny/data/chat.jsonl")
      << "\" } chat_template: \"chatml\" max_length: 64 }\n"
      << "train { global_batch_size: 2 micro_batch_size: 1 max_steps: 2 }\n"
      << "checkpoint { every_steps: 2 }\nlogging { tensorboard: false }\n"
      << "eval { task { name: \"gsm8k\" data: \"" << Src("tests/trainer/eval/data/tasks/gsm8k.jsonl")
      << "\" limit: 2 max_new_tokens: 6 } latency: false }\n";
  const std::string recipe = P("r.textproto") + " --run-dir " + P("run");
  // Before training there is no final checkpoint to score.
  test::CliResult none = RunCemoe("eval " + recipe);
  EXPECT_EQ(none.code, 1);
  EXPECT_NE(none.output.find("has no checkpoint yet"), std::string::npos) << none.output;
  test::CliResult both = RunCemoe("eval " + recipe + " --task gsm8k --data x.jsonl");
  EXPECT_EQ(both.code, 1);
  EXPECT_NE(both.output.find("the recipe names the model and the tasks"), std::string::npos)
      << both.output;
  ASSERT_EQ(RunCemoe("train " + recipe).code, 0);
  test::CliResult r = RunCemoe("eval " + recipe);
  ASSERT_EQ(r.code, 0) << r.output;
  EXPECT_NE(r.output.find("checkpoints/step-00000002/model (top_k 2"), std::string::npos)
      << r.output;
  std::ifstream in(P("run") + "/eval/gsm8k/summary.json");
  const nlohmann::json s = nlohmann::json::parse(in);
  EXPECT_EQ(s["model"]["label"], "tiny-sft");
  EXPECT_EQ(s["model"]["stage"], "sft");
  EXPECT_EQ(s["model"]["top_k"], 2);
  EXPECT_EQ(s["options"]["chat"], true);
  EXPECT_EQ(s["num_examples"], 2);
  // The pretrained row: model.path at its own routing (top_k 4), into another folder.
  ASSERT_EQ(RunCemoe("eval " + P("r.textproto") + " --run-dir " + P("pre") +
                     " --set eval.model=pretrained")
                .code,
            0);
  std::ifstream pin(P("pre") + "/eval/gsm8k/summary.json");
  const nlohmann::json ps = nlohmann::json::parse(pin);
  EXPECT_EQ(ps["model"]["label"], "Pretrained");
  EXPECT_EQ(ps["model"]["stage"], "pretrained");
  EXPECT_EQ(ps["model"]["top_k"], 4);
  test::CliResult rep = RunCemoe("report " + P("pre") + " " + P("run"));
  EXPECT_EQ(rep.code, 0) << rep.output;
  EXPECT_LT(rep.output.find("| Pretrained"), rep.output.find("| tiny-sft")) << rep.output;
}

TEST_F(EvalCliTest, BenchLatencyPrintsThreeConfigurationsWithRatios) {
  test::CliResult r = RunCemoe(
      "bench latency --preset tiny --batch 2 --input-len 4 --new-tokens 3 --warmup 1 --iters 2 "
      "--json " + P("lat.json"));
  ASSERT_EQ(r.code, 0) << r.output;
  std::ifstream in(P("lat.json"));
  const nlohmann::json j = nlohmann::json::parse(in);
  ASSERT_EQ(j["configs"].size(), 3u);
  EXPECT_EQ(j["configs"][0]["config"], "top-4");
  EXPECT_DOUBLE_EQ(j["configs"][0]["ratio_to_full"].get<double>(), 1.0);
  EXPECT_EQ(j["configs"][2]["main_experts"], 2);
  EXPECT_EQ(j["configs"][1]["times_s"].size(), 2u);
  const double ratio = j["configs"][1]["mean_s"].get<double>() / j["configs"][0]["mean_s"].get<double>();
  EXPECT_NEAR(j["configs"][1]["ratio_to_full"].get<double>(), ratio, 1e-12);
  // The transformers peer ran on the same shapes: OLMoE at top-4 and top-2 (no CE peer).
  ASSERT_EQ(j["transformers"]["results"].size(), 2u) << r.output;
  EXPECT_EQ(j["transformers"]["results"][1]["top_k"], 2);
  EXPECT_EQ(j["transformers"]["results"][0]["times_s"].size(), 2u);
  EXPECT_NE(r.output.find("cemoe speed-up"), std::string::npos) << r.output;
}

TEST_F(EvalCliTest, BadInputIsAOneLineError) {
  struct Case {
    std::string args, expect;
  };
  const std::vector<Case> cases = {
      {"eval --model " + P("m") + " --task nope --data " + P("m") + "/config.json", "unknown task"},
      {"eval --model " + P("m") + " --task gsm8k --data " + P("missing.jsonl"), "missing.jsonl"},
      {"eval --model " + P("m") + " --task gsm8k", "one data file per task"},
      {"generate --model " + P("m"), "give --prompt"},
      {"generate --model " + P("m") + " --prompt x --output " + P("no/such/dir/o.jsonl"),
       "does not exist"},
      {"bench latency --preset tiny --main-experts 4", "main experts"},
      {"bench latency --preset tiny --configs full,fast", "fast"},
  };
  for (const Case& c : cases) {
    test::CliResult r = RunCemoe(c.args);
    EXPECT_EQ(r.code, 1) << c.args << "\n" << r.output;
    EXPECT_NE(r.output.find(c.expect), std::string::npos) << c.args << "\n" << r.output;
  }
  // A data line without the task's field names the file and line.
  std::ofstream(P("bad.jsonl")) << "{\"question\": \"q\", \"answer\": \"#### 1\"}\n{\"question\": \"q\"}\n";
  test::CliResult r = RunCemoe("eval --model " + P("m") + " --task gsm8k --data " + P("bad.jsonl"));
  EXPECT_EQ(r.code, 1);
  EXPECT_NE(r.output.find("bad.jsonl:2"), std::string::npos) << r.output;
}

}  // namespace
}  // namespace cemoe
