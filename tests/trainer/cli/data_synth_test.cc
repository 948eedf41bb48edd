// data_synth_test.cc: `cemoe data synth` as a user runs it: every documented file written with
// the requested counts and listed in the output, the same bytes from a second process with the
// same seed, and a bad option value as a one-line error naming the option, exit code 1.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>

#include "tests/cli_runner.h"

namespace cemoe {
namespace {

using test::RunCemoe;

std::string Read(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

size_t Lines(const std::string& path) {
  const std::string text = Read(path);
  return static_cast<size_t>(std::count(text.begin(), text.end(), '\n'));
}

class DataSynthCliTest : public test::TempDirTest {};

TEST_F(DataSynthCliTest, WritesEveryFileDeterministically) {
  const std::string args =
      " --seed 1 --pretrain-docs 50 --sft-examples 40 --eval-examples 5";
  const test::CliResult r = RunCemoe("data synth --out " + P("a") + args);
  ASSERT_EQ(r.code, 0) << r.output;
  EXPECT_NE(r.output.find("sft.jsonl"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("eval/HumanEval.jsonl"), std::string::npos) << r.output;
  EXPECT_EQ(Lines(P("a/pretrain.jsonl")), 50u);
  EXPECT_EQ(Lines(P("a/sft.jsonl")), 40u);
  for (const char* f : {"gsm8k_test.jsonl", "truthfulqa_mc.jsonl", "ifeval.jsonl",
                        "HumanEval.jsonl"}) {
    EXPECT_EQ(Lines(P("a/eval/") + f), 5u) << f;
  }
  for (const char* sub : {"boolean_expressions", "date_understanding", "dyck_languages",
                          "word_sorting"}) {
    const nlohmann::json doc = nlohmann::json::parse(Read(P("a/eval/bbh/") + sub + ".json"));
    EXPECT_EQ(doc["examples"].size(), 5u) << sub;
    EXPECT_TRUE(std::filesystem::exists(P("a/eval/bbh-cot-prompts/") + sub + ".txt")) << sub;
  }
  const nlohmann::json manifest = nlohmann::json::parse(Read(P("a/manifest.json")));
  EXPECT_EQ(manifest["seed"], 1);
  EXPECT_EQ(manifest["options"]["sft_examples"], 40);
  EXPECT_EQ(manifest["files"].size(), 14u);
  // A second process, same options: identical bytes everywhere.
  ASSERT_EQ(RunCemoe("data synth --out " + P("b") + args).code, 0);
  for (const auto& entry : std::filesystem::recursive_directory_iterator(P("a"))) {
    if (!entry.is_regular_file()) continue;
    const std::string rel = std::filesystem::relative(entry.path(), P("a")).string();
    EXPECT_EQ(Read(entry.path().string()), Read(P("b/") + rel)) << rel;
  }
}

TEST_F(DataSynthCliTest, BadValuesAreOneLineErrors) {
  for (const std::string& bad : {std::string("--eval-examples 0"), std::string("--pretrain-docs -3"),
                                 std::string("--sft-examples -1")}) {
    const test::CliResult r = RunCemoe("data synth --out " + P("x") + " " + bad);
    EXPECT_EQ(r.code, 1) << bad << ": " << r.output;
    const std::string option = bad.substr(0, bad.find(' '));
    EXPECT_EQ(r.output.rfind("cemoe: error: ", 0), 0u) << r.output;
    EXPECT_NE(r.output.find(option + " must be"), std::string::npos) << r.output;
    EXPECT_NE(r.output.find(bad.substr(bad.find(' ') + 1)), std::string::npos) << r.output;
    EXPECT_EQ(std::count(r.output.begin(), r.output.end(), '\n'), 1) << r.output;
    EXPECT_FALSE(std::filesystem::exists(P("x/manifest.json")));
  }
  const test::CliResult missing = RunCemoe("data synth --seed 2");
  EXPECT_NE(missing.code, 0);
  EXPECT_NE(missing.output.find("--out"), std::string::npos) << missing.output;
}

}  // namespace
}  // namespace cemoe
