// bbh_test.cc: lm-eval bbh_cot_fewshot's answer filter on hand-made outputs (the expected
// strings were worked by hand and agree with Python's re on "(?<=the answer is )(.*)(?=.)" plus
// strip), the few-shot prefix and prompt, loading (folder of .json / .jsonl, single JSONL with
// "subtask", errors), and RunBbh through a ScriptedModel on tests/trainer/eval/data/tasks/bbh/.
#include "trainer/eval/bbh.h"

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
std::string WriteTemp(const std::string& rel, const std::string& text) {
  return testing::WriteTempFile("bbh_test/" + rel, text);
}

namespace fs = std::filesystem;
using testing::ScriptedModel;

TEST(Bbh, AnswerFilterIsLmEvalsGetAnswerRegex) {
  EXPECT_EQ(BbhExtractAnswer("A = True. So the answer is False."), "False");
  EXPECT_EQ(BbhExtractAnswer("So the answer is (A)."), "(A)");
  // (.*)(?=.) always gives the line's last character to the lookahead, period or not.
  EXPECT_EQ(BbhExtractAnswer("so the answer is False"), "Fals");
  EXPECT_EQ(BbhExtractAnswer("the answer is ab"), "a");
  EXPECT_EQ(BbhExtractAnswer("the answer is a"), "");
  // Case-sensitive lookbehind.
  EXPECT_EQ(BbhExtractAnswer("So The answer is False."), kBbhInvalid);
  EXPECT_EQ(BbhExtractAnswer("no conclusion"), kBbhInvalid);
  EXPECT_EQ(BbhExtractAnswer(""), kBbhInvalid);
  // Nothing after "is " on its line: that occurrence cannot match; a later one does.
  EXPECT_EQ(BbhExtractAnswer("the answer is \nfoo"), kBbhInvalid);
  EXPECT_EQ(BbhExtractAnswer("the answer is \nthe answer is (B)."), "(B)");
  // The first match is greedy to the end of its line.
  EXPECT_EQ(BbhExtractAnswer("the answer is x. Also the answer is y.\nthe answer is z."),
            "x. Also the answer is y");
  // Python strips whitespace (also U+00A0) and counts characters, not bytes.
  EXPECT_EQ(BbhExtractAnswer("the answer is  yes ."), "yes");
  EXPECT_EQ(BbhExtractAnswer("the answer is \u00a0x\u00a0."), "x");
  EXPECT_EQ(BbhExtractAnswer("the answer is caf\u00e9"), "caf");
  EXPECT_EQ(BbhExtractAnswer("the answer is 5 \u20ac"), "5");
}

const char* kBoolPrefix =
    "Evaluate the result of a random Boolean expression.\n"
    "\n"
    "Q: not ( ( not not True ) ) is\n"
    "A: Let's think step by step.\n"
    "not not True = True, so not ( ( True ) ) = False. So the answer is False.\n"
    "\n"
    "Q: True and False and not True and True is\n"
    "A: Let's think step by step.\n"
    "True and False = False, so the whole conjunction is False. So the answer is False.\n"
    "\n"
    "Q: not not ( not ( False ) ) is\n"
    "A: Let's think step by step.\n"
    "not ( False ) = True, and not not True = True. So the answer is True.";

TEST(Bbh, PrefixDropsTheCanaryHeaderAndTrailingNewlines) {
  EXPECT_EQ(BbhPromptPrefix("canary GUID x\n-----\nDescribe.\n\nQ: a\nA: b\n\n"),
            "Describe.\n\nQ: a\nA: b");
  EXPECT_EQ(BbhPromptPrefix("canary\r\n-----\r\nDescribe.\r\n\r\nQ: a\r\n"), "Describe.\n\nQ: a");
  EXPECT_EQ(BbhPromptPrefix("Describe.\n\nQ: a\n"), "Describe.\n\nQ: a");
  const auto prefixes =
      LoadBbhPrefixes(DataPath("bbh/cot-prompts"), {"boolean_expressions"});
  ASSERT_EQ(prefixes.size(), 1u);
  EXPECT_EQ(prefixes[0], kBoolPrefix);
}

TEST(Bbh, PromptIsThePrefixThenTheQuestionAsLmEvalRendersIt) {
  EXPECT_EQ(BbhPrompt("D.\n\nQ: x\nA: Let's think step by step.\ny", "not True is"),
            "D.\n\nQ: x\nA: Let's think step by step.\ny\n\nQ: not True is\nA: Let's think step "
            "by step.\n");
  EXPECT_EQ(BbhStopStrings(), (std::vector<std::string>{"</s>", "Q", "\n\n"}));
}

TEST(Bbh, LoadsAFolderOfJsonAndJsonlAndASingleJsonlWithLimitPerSubtask) {
  const auto folder = LoadBbhExamples(DataPath("bbh/data"), 0);
  ASSERT_EQ(folder.size(), 5u);
  EXPECT_EQ(folder[0].subtask, "boolean_expressions");
  EXPECT_EQ(folder[2].input, "not True or ( False and True ) is");
  EXPECT_EQ(folder[2].index, 2);
  EXPECT_EQ(folder[3].subtask, "sports_understanding");
  EXPECT_EQ(folder[3].target, "no");
  EXPECT_EQ(folder[3].index, 0);
  const auto limited = LoadBbhExamples(DataPath("bbh/data"), 1);
  ASSERT_EQ(limited.size(), 2u);
  EXPECT_EQ(limited[1].subtask, "sports_understanding");

  const auto single = LoadBbhExamples(DataPath("bbh_single.jsonl"), 2);
  ASSERT_EQ(single.size(), 4u);  // 2 of 3 boolean_expressions, 2 of 2 sports_understanding
  EXPECT_EQ(single[2].subtask, "sports_understanding");
  EXPECT_EQ(single[2].index, 2);
  EXPECT_NE(single[2].source.find("bbh_single.jsonl:4"), std::string::npos);
  const auto one = LoadBbhExamples(DataPath("bbh/data/boolean_expressions.json"), 0);
  ASSERT_EQ(one.size(), 3u);
  EXPECT_EQ(one[1].target, "True");
}

std::string ErrorOf(const std::function<void()>& fn) {
  try {
    fn();
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

TEST(Bbh, LoadingErrorsNameFileFieldAndMissingPrompts) {
  const std::string bad_target = WriteTemp(
      "t1/word_sorting.json", R"({"examples": [{"input": "a", "target": "b"}, {"input": "c"}]})");
  std::string e = ErrorOf([&] { LoadBbhExamples(bad_target, 0); });
  EXPECT_NE(e.find("word_sorting.json examples[1]: the field \"target\" must be a string"),
            std::string::npos)
      << e;
  e = ErrorOf([&] { LoadBbhExamples(WriteTemp("t2/x.json", R"([1, 2])"), 0); });
  EXPECT_NE(e.find("x.json: expected {\"examples\""), std::string::npos) << e;
  e = ErrorOf([&] {
    LoadBbhExamples(WriteTemp("t3/all.jsonl", "{\"subtask\": \"navigate\", \"input\": \"a\", "
                                              "\"target\": \"b\"}\n{\"input\": \"a\", "
                                              "\"target\": \"b\"}\n"),
                    0);
  });
  EXPECT_NE(e.find("all.jsonl:2: the field \"subtask\" is missing"), std::string::npos) << e;
  e = ErrorOf([&] {
    LoadBbhExamples(
        WriteTemp("t4/all.jsonl", "{\"subtask\": \"../x\", \"input\": \"a\", \"target\": \"b\"}\n"),
        0);
  });
  EXPECT_NE(e.find("all.jsonl:1: the field \"subtask\" must be a BBH subtask name"),
            std::string::npos)
      << e;
  WriteTemp("t5/navigate.json", R"({"examples": [{"input": "a", "target": "b"}]})");
  WriteTemp("t5/navigate.jsonl", "{\"input\": \"a\", \"target\": \"b\"}\n");
  e = ErrorOf([&] { LoadBbhExamples((fs::temp_directory_path() / "bbh_test/t5").string(), 0); });
  EXPECT_NE(e.find("two data files for the subtask navigate"), std::string::npos) << e;
  fs::create_directories(fs::temp_directory_path() / "bbh_test/t6");
  e = ErrorOf([&] { LoadBbhExamples((fs::temp_directory_path() / "bbh_test/t6").string(), 0); });
  EXPECT_NE(e.find("no <subtask>.json or <subtask>.jsonl files"), std::string::npos) << e;

  e = ErrorOf([&] { LoadBbhPrefixes("", {"navigate"}); });
  EXPECT_NE(e.find("bbh needs the few-shot prompts"), std::string::npos) << e;
  e = ErrorOf([&] {
    LoadBbhPrefixes(DataPath("bbh/cot-prompts"), {"boolean_expressions", "navigate", "snarks"});
  });
  EXPECT_NE(e.find("lacks 2 of 3 prompt files: navigate.txt, snarks.txt"), std::string::npos)
      << e;
}

// Answers keyed by the test question (the text after the prompt's last "\n\nQ: ").
ScriptedModel ModelAnswering(std::map<std::string, std::string> answers) {
  return ScriptedModel([answers](const std::string& prompt, int64_t) -> std::string {
    const std::string question = prompt.substr(prompt.rfind("\n\nQ: ") + 5);
    for (const auto& [key, text] : answers) {
      if (question.find(key) != std::string::npos) return text;
    }
    return "I am not sure.";
  });
}

TaskOptions Options() {
  TaskOptions o;
  o.task = "bbh";
  o.data = DataPath("bbh/data");
  o.fewshot = DataPath("bbh/cot-prompts");
  o.batch_size = 2;
  return o;
}

// Inputs of the five examples: boolean_expressions 0-2 (False, True, False), then
// sports_understanding 0-1 (no, yes).
const char* kB0 = "not ( True ) and ( True ) is";
const char* kB1 = "True and not not ( not False ) is";
const char* kB2 = "not True or ( False and True ) is";
const char* kS0 = "Joao Moutinho";
const char* kS1 = "Jonas Valanciunas";

TEST(Bbh, PerfectOutputsScoreOne) {
  ScriptedModel model = ModelAnswering({
      {kB0, "not True = False. So the answer is False.\n\nQ: more text"},
      {kB1, "not False = True. So the answer is True."},
      {kB2, "So the answer is False."},
      {kS0, "Moutinho is a soccer player. So the answer is no."},
      {kS1, "Valanciunas plays basketball. So the answer is yes."},
  });
  std::vector<std::pair<int64_t, int64_t>> progress;
  const TaskResult r = RunBbh(Options(), model, [&](int64_t done, int64_t total) {
    progress.emplace_back(done, total);
  });
  EXPECT_EQ(r.primary_metric, "exact_match");
  EXPECT_DOUBLE_EQ(r.score, 1.0);
  EXPECT_DOUBLE_EQ(r.metrics["exact_match_micro"].get<double>(), 1.0);
  EXPECT_DOUBLE_EQ(r.metrics["exact_match/sports_understanding"].get<double>(), 1.0);
  EXPECT_EQ(model.generate_calls, 3);
  EXPECT_EQ(progress, (std::vector<std::pair<int64_t, int64_t>>{{2, 5}, {4, 5}, {5, 5}}));
  EXPECT_EQ(model.last_options.stop, BbhStopStrings());
  EXPECT_EQ(model.last_options.max_new_tokens, 1024);
  // "Q" and "\n\n" stop the completion.
  EXPECT_EQ(r.records[0]["output"], "not True = False. So the answer is False.");
  ASSERT_EQ(r.records.size(), 5u);
  EXPECT_EQ(r.records[3]["subtask"], "sports_understanding");
  EXPECT_EQ(r.records[3]["index"], 0);
  EXPECT_EQ(r.records[3]["extracted"], "no");
  EXPECT_EQ(r.records[3]["target"], "no");
  EXPECT_EQ(r.records[3]["correct"], true);
  EXPECT_EQ(r.records[0]["prompt"],
            "Q: not ( True ) and ( True ) is\nA: Let's think step by step.\n");
  // The full prompt of example 0.
  EXPECT_EQ(model.prompts_seen[0],
            std::string(kBoolPrefix) +
                "\n\nQ: not ( True ) and ( True ) is\nA: Let's think step by step.\n");
}

TEST(Bbh, WrongOutputsScoreZero) {
  ScriptedModel model = ModelAnswering({{"", "So the answer is maybe."}});
  const TaskResult r = RunBbh(Options(), model, nullptr);
  EXPECT_DOUBLE_EQ(r.score, 0.0);
  EXPECT_DOUBLE_EQ(r.metrics["exact_match_micro"].get<double>(), 0.0);
}

TEST(Bbh, MixedOutputsScoreMacroAndMicroAverages) {
  ScriptedModel model = ModelAnswering({
      {kB0, "So the answer is False."},
      {kB1, "So the answer is True"},   // no final period: "Tru", wrong
      {kB2, "So the answer is False."},
      {kS0, "So the answer is No."},   // case matters: wrong
      {kS1, "So the answer is yes."},
  });
  const TaskResult r = RunBbh(Options(), model, nullptr);
  // boolean_expressions 2/3, sports_understanding 1/2: macro (2/3 + 1/2) / 2 = 7/12; micro 3/5.
  EXPECT_DOUBLE_EQ(r.metrics["exact_match/boolean_expressions"].get<double>(), 2.0 / 3.0);
  EXPECT_DOUBLE_EQ(r.metrics["exact_match/sports_understanding"].get<double>(), 0.5);
  EXPECT_DOUBLE_EQ(r.score, 7.0 / 12.0);
  EXPECT_DOUBLE_EQ(r.metrics["exact_match_micro"].get<double>(), 3.0 / 5.0);
  EXPECT_EQ(r.records[1]["extracted"], "Tru");
}

TEST(Bbh, SingleJsonlWithChatAndLimit) {
  ScriptedModel model = ModelAnswering({{"", "So the answer is False."}});
  TaskOptions o = Options();
  o.data = DataPath("bbh_single.jsonl");
  o.limit = 1;
  o.chat = true;
  const TaskResult r = RunBbh(o, model, nullptr);
  ASSERT_EQ(r.num_examples, 2);
  EXPECT_EQ(model.prompts_seen[0],
            "<|user|>\n" + std::string(kBoolPrefix) +
                "\n\nQ: not ( True ) and ( True ) is\nA: Let's think step by step.\n" +
                "\n<|assistant|>\n");
  EXPECT_EQ(r.records[1]["subtask"], "sports_understanding");
  EXPECT_EQ(r.records[1]["index"], 1);
  // boolean 1/1, sports 0/1 ("False" vs "no").
  EXPECT_DOUBLE_EQ(r.score, 0.5);
}

TEST(Bbh, MissingFewShotPromptsFailBeforeAnyGeneration) {
  ScriptedModel model = ModelAnswering({});
  TaskOptions o = Options();
  o.fewshot = (fs::temp_directory_path()).string();
  const std::string e = ErrorOf([&] { RunBbh(o, model, nullptr); });
  EXPECT_NE(e.find("boolean_expressions.txt, sports_understanding.txt"), std::string::npos) << e;
  EXPECT_EQ(model.generate_calls, 0);
}

}  // namespace
}  // namespace cemoe
