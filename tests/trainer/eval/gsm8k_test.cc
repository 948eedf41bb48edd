// gsm8k_test.cc: lm-eval gsm8k_cot_zeroshot's filters and exact match on hand-made outputs (the
// expected strings were worked by hand and agree with Python's re on lm-eval v0.4.12's patterns),
// and RunGsm8k on tests/trainer/eval/data/tasks/gsm8k.jsonl through a ScriptedModel.
#include "trainer/eval/gsm8k.h"

#include <gtest/gtest.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>

#include "model/check.h"
#include "tests/trainer/eval/eval_test_files.h"
#include "tests/trainer/eval/scripted_model.h"

namespace cemoe {
namespace {

std::string DataPath(const std::string& name) { return testing::EvalTestData("tasks/" + name); }

using testing::ScriptedModel;

TEST(Gsm8k, PromptAndStopStringsAreLmEvalsZeroShotCot) {
  EXPECT_EQ(Gsm8kPrompt("What is 2 + 3?"), "Q: What is 2 + 3?\nA: Let's think step by step.");
  EXPECT_EQ(Gsm8kStopStrings(), (std::vector<std::string>{"Q:", "</s>", "<|im_end|>"}));
}

TEST(Gsm8k, StrictMatchTakesTheFirstAnswerIsAndNeedsATrailingCharacter) {
  EXPECT_EQ(Gsm8kExtractStrict("So 5 + 7 = 12. The answer is 12."), "12");
  EXPECT_EQ(Gsm8kExtractStrict("It fell to -3 degrees. The answer is -3."), "-3");
  EXPECT_EQ(Gsm8kExtractStrict("The answer is 1,234."), "1,234");
  EXPECT_EQ(Gsm8kExtractStrict("The answer is 3.50."), "3.50");
  EXPECT_EQ(Gsm8kExtractStrict("The answer is 1,234,567.89!"), "1,234,567.89");
  // Several occurrences: the first; its greedy run keeps the "." ("3." then " " is the final
  // any-character).
  EXPECT_EQ(Gsm8kExtractStrict("The answer is 3. Wait, the answer is 4. The answer is 5."), "3.");
  // The final "." of the pattern needs one more character that is not "\n": at the very end
  // (or before a newline) the run gives its last digit back, as Python's re does.
  EXPECT_EQ(Gsm8kExtractStrict("The answer is 42"), "4");
  EXPECT_EQ(Gsm8kExtractStrict("The answer is 42\n"), "4");
  EXPECT_EQ(Gsm8kExtractStrict("The answer is 7\nmore"), kGsm8kInvalid);
  EXPECT_EQ(Gsm8kExtractStrict("The answer is -5"), kGsm8kInvalid);
  EXPECT_EQ(Gsm8kExtractStrict("The answer is -."), kGsm8kInvalid);
  // "$" is not in the strict class; lower-case "the answer is" does not match.
  EXPECT_EQ(Gsm8kExtractStrict("The answer is $18."), kGsm8kInvalid);
  EXPECT_EQ(Gsm8kExtractStrict("the answer is 18."), kGsm8kInvalid);
  EXPECT_EQ(Gsm8kExtractStrict("It costs $5."), kGsm8kInvalid);
  EXPECT_EQ(Gsm8kExtractStrict("I do not know."), kGsm8kInvalid);
  EXPECT_EQ(Gsm8kExtractStrict("The result is \\boxed{42}."), kGsm8kInvalid);
  EXPECT_EQ(Gsm8kExtractStrict(""), kGsm8kInvalid);
}

TEST(Gsm8k, FlexibleExtractTakesTheLastNumberLikeRun) {
  EXPECT_EQ(Gsm8kExtractFlexible("So 5 + 7 = 12. The answer is 12."), "12.");
  EXPECT_EQ(Gsm8kExtractFlexible("It fell to -3 degrees. The answer is -3."), "-3.");
  EXPECT_EQ(Gsm8kExtractFlexible("The answer is 1,234."), "1,234.");
  EXPECT_EQ(Gsm8kExtractFlexible("It costs $5."), "$5.");
  EXPECT_EQ(Gsm8kExtractFlexible("The total is 42."), "42.");
  EXPECT_EQ(Gsm8kExtractFlexible("The answer is 3. Wait, the answer is 4. The answer is 5."),
            "5.");
  EXPECT_EQ(Gsm8kExtractFlexible("The result is \\boxed{42}."), "42");
  EXPECT_EQ(Gsm8kExtractFlexible("The answer is 42"), "42");
  EXPECT_EQ(Gsm8kExtractFlexible("Step 1. Add them"), "1.");
  EXPECT_EQ(Gsm8kExtractFlexible("It drops by -5 degrees"), "-5");  // second alternative
  EXPECT_EQ(Gsm8kExtractFlexible("--5"), "-5");
  EXPECT_EQ(Gsm8kExtractFlexible("x 7"), "7");
  EXPECT_EQ(Gsm8kExtractFlexible("costs $1,000.00 total"), "$1,000.00");
  EXPECT_EQ(Gsm8kExtractFlexible("The answer is -."), kGsm8kInvalid);
  EXPECT_EQ(Gsm8kExtractFlexible("I do not know."), kGsm8kInvalid);
  EXPECT_EQ(Gsm8kExtractFlexible(""), kGsm8kInvalid);
}

TEST(Gsm8k, ExactMatchAppliesLmEvalsIgnoreRulesToBothSides) {
  EXPECT_EQ(Gsm8kNormalize("Natalia sold 48/2 = <<48/2=24>>24 clips in May.\n#### 72"), "72");
  EXPECT_EQ(Gsm8kNormalize("#### 1,234"), "1234");
  EXPECT_EQ(Gsm8kNormalize("$1,234."), "1234");
  EXPECT_EQ(Gsm8kNormalize("a #### b #### 9"), "9");  // greedy: up to the last "#### "
  EXPECT_EQ(Gsm8kNormalize("42.."), "42.");           // one final "." only
  EXPECT_EQ(Gsm8kNormalize("7.\n"), "7\n");           // Python's "$" before a final newline
  EXPECT_EQ(Gsm8kNormalize("ABC"), "abc");
  EXPECT_TRUE(Gsm8kExactMatch("1,234.", "so #### 1234"));
  EXPECT_TRUE(Gsm8kExactMatch("$5.", "#### 5"));
  EXPECT_TRUE(Gsm8kExactMatch("-3.", "#### -3"));
  // String equality, not numeric: "3.50" is not "3.5", "18.0" is not "18".
  EXPECT_FALSE(Gsm8kExactMatch("3.50", "#### 3.5"));
  EXPECT_FALSE(Gsm8kExactMatch("18.0", "#### 18"));
  EXPECT_FALSE(Gsm8kExactMatch(kGsm8kInvalid, "#### 18"));
}

// Answers keyed by a word of each question of gsm8k.jsonl (golds 18, 3, 1,650, -5).
ScriptedModel ModelAnswering(std::map<std::string, std::string> answers) {
  return ScriptedModel([answers](const std::string& prompt, int64_t) -> std::string {
    for (const auto& [key, text] : answers) {
      if (prompt.find(key) != std::string::npos) return text;
    }
    return "no idea";
  });
}

TaskOptions Options() {
  TaskOptions o;
  o.task = "gsm8k";
  o.data = DataPath("gsm8k.jsonl");
  o.batch_size = 3;
  return o;
}

TEST(Gsm8k, PerfectOutputsScoreOne) {
  ScriptedModel model = ModelAnswering({
      {"ducks", "She sells 9 eggs for $2 each. The answer is 18.\n\nQ: another question"},
      {"robe", "2 + 1 = 3. The answer is 3."},
      {"house", "1,200 + 450 = 1,650. The answer is $1,650."},
      {"temperature", "4 - 9 = -5. The answer is -5."},
  });
  std::vector<std::pair<int64_t, int64_t>> progress;
  const TaskResult r = RunGsm8k(Options(), model, [&](int64_t done, int64_t total) {
    progress.emplace_back(done, total);
  });
  // "$1,650." fails strict ("$" is not in its class) but passes flexible.
  EXPECT_DOUBLE_EQ(r.metrics["exact_match_flexible"].get<double>(), 1.0);
  EXPECT_DOUBLE_EQ(r.metrics["exact_match_strict"].get<double>(), 0.75);
  EXPECT_EQ(r.primary_metric, "exact_match_flexible");
  EXPECT_DOUBLE_EQ(r.score, 1.0);
  EXPECT_EQ(r.num_examples, 4);
  ASSERT_EQ(r.records.size(), 4u);
  EXPECT_EQ(model.generate_calls, 2);
  EXPECT_EQ(progress, (std::vector<std::pair<int64_t, int64_t>>{{3, 4}, {4, 4}}));
  // The stop string "Q:" cut the first completion.
  EXPECT_EQ(r.records[0]["output"], "She sells 9 eggs for $2 each. The answer is 18.\n\n");
  EXPECT_EQ(r.records[0]["extracted"], "18.");
  EXPECT_EQ(r.records[0]["extracted_strict"], "18");
  EXPECT_EQ(r.records[0]["gold"], "18");
  EXPECT_EQ(r.records[0]["correct"], true);
  EXPECT_EQ(r.records[2]["extracted_strict"], kGsm8kInvalid);
  EXPECT_EQ(r.records[2]["correct_strict"], false);
  EXPECT_EQ(r.records[3]["index"], 3);
  EXPECT_NE(r.harness.find("v0.4.12 gsm8k_cot_zeroshot"), std::string::npos);
  EXPECT_EQ(model.last_options.stop, Gsm8kStopStrings());
  EXPECT_EQ(model.last_options.max_new_tokens, 256);
  EXPECT_EQ(model.last_options.temperature, 0.0);
  // The exact prompt of example 0, as lm-eval renders doc_to_text.
  EXPECT_EQ(model.prompts_seen[0],
            "Q: Janet's ducks lay 16 eggs per day. She eats three for breakfast and bakes "
            "muffins with four. She sells the rest for $2 each. How much does she make every "
            "day?\nA: Let's think step by step.");
  EXPECT_EQ(r.records[0]["prompt"], model.prompts_seen[0]);
}

TEST(Gsm8k, WrongOutputsScoreZero) {
  ScriptedModel model = ModelAnswering({{"", "Let me see. The answer is 7."}});
  const TaskResult r = RunGsm8k(Options(), model, nullptr);
  EXPECT_DOUBLE_EQ(r.metrics["exact_match_flexible"].get<double>(), 0.0);
  EXPECT_DOUBLE_EQ(r.metrics["exact_match_strict"].get<double>(), 0.0);
}

TEST(Gsm8k, MixedOutputsScoreTheHandCountedFraction) {
  ScriptedModel model = ModelAnswering({
      {"ducks", "The answer is 18."},        // strict and flexible right
      {"robe", "so it takes 3 bolts"},       // flexible "3" right, strict [invalid]
      {"house", "The answer is 1650 total"},  // both right ("1650" then " ")
      {"temperature", "The answer is 5."},   // both wrong (gold -5)
  });
  TaskOptions o = Options();
  o.max_new_tokens = 64;
  const TaskResult r = RunGsm8k(o, model, nullptr);
  EXPECT_DOUBLE_EQ(r.metrics["exact_match_flexible"].get<double>(), 3.0 / 4.0);
  EXPECT_DOUBLE_EQ(r.metrics["exact_match_strict"].get<double>(), 2.0 / 4.0);
  EXPECT_EQ(model.last_options.max_new_tokens, 64);
  EXPECT_EQ(r.records[1]["extracted"], "3");
  EXPECT_EQ(r.records[1]["correct"], true);
  EXPECT_EQ(r.records[1]["correct_strict"], false);
}

TEST(Gsm8k, ChatWrapsThePromptAndLimitKeepsTheFirstExamples) {
  ScriptedModel model = ModelAnswering({{"", "The answer is 18."}});
  TaskOptions o = Options();
  o.chat = true;
  o.limit = 2;
  const TaskResult r = RunGsm8k(o, model, nullptr);
  EXPECT_EQ(r.num_examples, 2);
  ASSERT_EQ(model.prompts_seen.size(), 2u);
  EXPECT_EQ(model.prompts_seen[1],
            "<|user|>\nQ: A robe takes 2 bolts of blue fiber and half that much white fiber. "
            "How many bolts in total does it take?\nA: Let's think step by step.\n<|assistant|>\n");
  EXPECT_DOUBLE_EQ(r.score, 0.5);
}

std::string RunError(const std::string& data_text, const std::string& name) {
  TaskOptions o = Options();
  o.data = testing::WriteTempFile(name, data_text);
  ScriptedModel model = ModelAnswering({});
  try {
    RunGsm8k(o, model, nullptr);
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

TEST(Gsm8k, BadDataNamesFileLineAndField) {
  const std::string no_gold =
      RunError("{\"question\": \"q\", \"answer\": \"#### 1\"}\n{\"question\": \"q\", \"answer\": "
               "\"forty two\"}\n",
               "gsm8k_no_gold.jsonl");
  EXPECT_NE(no_gold.find("gsm8k_no_gold.jsonl:2: the field \"answer\" has no \"#### <number>\""),
            std::string::npos)
      << no_gold;
  const std::string missing = RunError("{\"answer\": \"#### 1\"}\n", "gsm8k_missing.jsonl");
  EXPECT_NE(missing.find("gsm8k_missing.jsonl:1: the field \"question\" is missing"),
            std::string::npos)
      << missing;
  const std::string not_string =
      RunError("{\"question\": 5, \"answer\": \"#### 1\"}\n", "gsm8k_type.jsonl");
  EXPECT_NE(not_string.find(":1: the field \"question\" must be a string, got 5"),
            std::string::npos)
      << not_string;
}

}  // namespace
}  // namespace cemoe
