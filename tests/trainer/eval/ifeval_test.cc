// ifeval_test.cc: RunIfeval end to end on hand-made IFEval files with a ScriptedModel: the
// prompts and decoding it asks for, the four accuracies on perfect, violating and mixed
// responses (hand-computed), unsupported instructions, records and kwargs errors.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <map>

#include "model/check.h"
#include "tests/trainer/eval/eval_test_files.h"
#include "tests/trainer/eval/scripted_model.h"
#include "trainer/eval/task.h"

namespace cemoe {
namespace {

using testing::ScriptedModel;

// One line of the public file's format; unused kwargs are null as in the HF export.
std::string Line(int key, const std::string& prompt, const std::vector<std::string>& ids,
                 const nlohmann::json& kwargs) {
  return nlohmann::json({{"key", key},
                         {"prompt", prompt},
                         {"instruction_id_list", ids},
                         {"kwargs", kwargs}})
             .dump() +
         "\n";
}

// Three examples; each prompt names its responses in `answers`.
std::string ThreeExamples() {
  return Line(1, "Write two words without commas.",
              {"punctuation:no_comma", "length_constraints:number_words"},
              {{{"num_words", nullptr}}, {{"num_words", 5}, {"relation", "less than"}}}) +
         Line(2, "Give a titled poem.", {"detectable_format:title"}, {{{"keywords", nullptr}}}) +
         Line(3, "Say hi in quotes, with the word hello.",
              {"startend:quotation", "keywords:existence"}, {{}, {{"keywords", {"hello"}}}});
}

ScriptedModel ModelAnswering(std::map<std::string, std::string> answers) {
  return ScriptedModel([answers](const std::string& prompt, int64_t) {
    for (const auto& [key, answer] : answers) {
      if (prompt.find(key) != std::string::npos) return answer;
    }
    return std::string("unexpected prompt");
  });
}

TaskOptions Options(const std::string& path) {
  TaskOptions o;
  o.task = "ifeval";
  o.data = path;
  o.batch_size = 2;
  return o;
}

TEST(Ifeval, PerfectResponsesScoreOneAndPromptsAreTheHarnesss) {
  const std::string path = testing::WriteTempFile("ifeval_perfect.jsonl", ThreeExamples());
  ScriptedModel model = ModelAnswering({{"two words", "Hello there"},
                                        {"titled poem", "<<Joy>>\nRoses bloom."},
                                        {"quotes", "\"Hello, friend!\""}});
  std::vector<std::pair<int64_t, int64_t>> progress;
  const TaskResult r = RunIfeval(Options(path), model, [&](int64_t done, int64_t total) {
    progress.push_back({done, total});
  });
  for (const char* m : {"prompt_level_strict_acc", "inst_level_strict_acc",
                        "prompt_level_loose_acc", "inst_level_loose_acc"}) {
    EXPECT_DOUBLE_EQ(r.metrics[m].get<double>(), 1.0) << m;
  }
  EXPECT_EQ(r.primary_metric, "prompt_level_loose_acc");
  EXPECT_DOUBLE_EQ(r.score, 1.0);
  EXPECT_EQ(r.metrics["unsupported_prompts"], 0);
  EXPECT_EQ(r.num_examples, 3);
  EXPECT_NE(r.harness.find("lm-evaluation-harness"), std::string::npos);
  // 0-shot, the prompt as is, greedy, 1280 new tokens, no stop strings, chunks of batch_size.
  EXPECT_EQ(model.prompts_seen, (std::vector<std::string>{
                                    "Write two words without commas.", "Give a titled poem.",
                                    "Say hi in quotes, with the word hello."}));
  EXPECT_EQ(model.last_options.max_new_tokens, 1280);
  EXPECT_EQ(model.last_options.temperature, 0.0);
  EXPECT_TRUE(model.last_options.stop.empty());
  EXPECT_EQ(model.generate_calls, 2);
  EXPECT_EQ(progress, (std::vector<std::pair<int64_t, int64_t>>{{2, 3}, {3, 3}}));
  ASSERT_EQ(r.records.size(), 3u);
  const nlohmann::json& rec = r.records[0];
  EXPECT_EQ(rec["index"], 0);
  EXPECT_EQ(rec["key"], 1);
  EXPECT_EQ(rec["output"], "Hello there");
  EXPECT_EQ(rec["extracted"], "Hello there");
  EXPECT_EQ(rec["correct"], true);
  EXPECT_EQ(rec["follow_strict"], nlohmann::json({true, true}));
  EXPECT_EQ(rec["follow_loose"], nlohmann::json({true, true}));
  EXPECT_EQ(rec["instruction_id_list"][1], "length_constraints:number_words");
}

TEST(Ifeval, ViolatingResponsesScoreZero) {
  const std::string path = testing::WriteTempFile("ifeval_violating.jsonl", ThreeExamples());
  ScriptedModel model = ModelAnswering({{"two words", "Well, here are many more words"},
                                        {"titled poem", "Roses bloom."},
                                        {"quotes", "Hi there"}});
  const TaskResult r = RunIfeval(Options(path), model, nullptr);
  for (const char* m : {"prompt_level_strict_acc", "inst_level_strict_acc",
                        "prompt_level_loose_acc", "inst_level_loose_acc"}) {
    EXPECT_DOUBLE_EQ(r.metrics[m].get<double>(), 0.0) << m;
  }
  EXPECT_EQ(r.records[2]["correct"], false);
}

TEST(Ifeval, MixedFileHandComputedAndUnsupportedExcluded) {
  // A: "a, b" breaks no_comma (strict and loose: one line), keeps number_words < 5.
  // B: no_comma fails strict, passes loose (without the first line).
  // C: quotation and title both pass.
  // D: language:response_language is unsupported: the prompt and its instructions are excluded.
  // Scored prompts A, B, C: prompt strict 1/3 (C), prompt loose 2/3 (B, C).
  // Instructions: A 2 + B 1 + C 2 = 5; strict 1 + 0 + 2 = 3/5; loose 1 + 1 + 2 = 4/5.
  const std::string text =
      Line(10, "A?", {"punctuation:no_comma", "length_constraints:number_words"},
           {{}, {{"num_words", 5}, {"relation", "less than"}}}) +
      Line(11, "B?", {"punctuation:no_comma"}, {{}}) +
      Line(12, "C?", {"startend:quotation", "detectable_format:title"}, {{}, {}}) +
      Line(13, "D?", {"language:response_language", "punctuation:no_comma"},
           {{{"language", "fr"}}, {}});
  const std::string path = testing::WriteTempFile("ifeval_mixed.jsonl", text);
  ScriptedModel model = ModelAnswering({{"A?", "a, b"},
                                        {"B?", "Sure, here it is:\nno commas at all"},
                                        {"C?", "\"<<T>> text\""},
                                        {"D?", "Bonjour"}});
  const TaskResult r = RunIfeval(Options(path), model, nullptr);
  EXPECT_DOUBLE_EQ(r.metrics["prompt_level_strict_acc"].get<double>(), 1.0 / 3.0);
  EXPECT_DOUBLE_EQ(r.metrics["prompt_level_loose_acc"].get<double>(), 2.0 / 3.0);
  EXPECT_DOUBLE_EQ(r.metrics["inst_level_strict_acc"].get<double>(), 3.0 / 5.0);
  EXPECT_DOUBLE_EQ(r.metrics["inst_level_loose_acc"].get<double>(), 4.0 / 5.0);
  EXPECT_DOUBLE_EQ(r.score, 2.0 / 3.0);
  EXPECT_EQ(r.metrics["unsupported_prompts"], 1);
  EXPECT_EQ(r.metrics["scored_prompts"], 3);
  EXPECT_EQ(r.metrics["scored_instructions"], 5);
  EXPECT_EQ(r.num_examples, 4);
  ASSERT_FALSE(r.notes.empty());
  EXPECT_EQ(r.notes[0],
            "1 prompts with unsupported instructions excluded: language:response_language (x 1)");
  // D was still generated and recorded.
  EXPECT_EQ(model.prompts_seen.size(), 4u);
  const nlohmann::json& d = r.records[3];
  EXPECT_EQ(d["excluded"], true);
  EXPECT_EQ(d["correct"], false);
  EXPECT_EQ(d["unsupported"], nlohmann::json({"language:response_language"}));
  EXPECT_EQ(d["follow_strict"], nlohmann::json({nullptr, true}));
  const nlohmann::json& b = r.records[1];
  EXPECT_EQ(b["follow_strict"], nlohmann::json({false}));
  EXPECT_EQ(b["follow_loose"], nlohmann::json({true}));
  EXPECT_EQ(b["prompt_level_strict"], false);
  EXPECT_EQ(b["correct"], true);
}

TEST(Ifeval, ChatFormattingLimitAndMaxNewTokens) {
  const std::string path = testing::WriteTempFile("ifeval_chat.jsonl", ThreeExamples());
  ScriptedModel model = ModelAnswering({{"two words", "Hello there"}});
  TaskOptions o = Options(path);
  o.chat = true;
  o.limit = 1;
  o.max_new_tokens = 64;
  const TaskResult r = RunIfeval(o, model, nullptr);
  EXPECT_EQ(model.prompts_seen,
            (std::vector<std::string>{"<|user|>\nWrite two words without commas.\n<|assistant|>\n"}));
  EXPECT_EQ(r.records[0]["prompt"], model.prompts_seen[0]);
  EXPECT_EQ(model.last_options.max_new_tokens, 64);
  EXPECT_EQ(r.num_examples, 1);
  EXPECT_DOUBLE_EQ(r.score, 1.0);
}

TEST(Ifeval, BadKwargsFailBeforeGenerationNamingFileLineIdAndKwarg) {
  const std::string path = testing::WriteTempFile(
      "ifeval_badkw.jsonl",
      ThreeExamples() + Line(4, "x", {"keywords:frequency"},
                             {{{"keyword", "a"}, {"frequency", 2}, {"relation", "exactly"}}}));
  ScriptedModel model = ModelAnswering({});
  try {
    RunIfeval(Options(path), model, nullptr);
    FAIL() << "no error";
  } catch (const Error& e) {
    const std::string what = e.what();
    EXPECT_NE(what.find(path + ":4: instruction \"keywords:frequency\": kwarg \"relation\" must be "
                               "\"less than\" or \"at least\", got \"exactly\""),
              std::string::npos)
        << what;
  }
  EXPECT_EQ(model.generate_calls, 0);

  const std::string mismatch = testing::WriteTempFile(
      "ifeval_mismatch.jsonl", Line(1, "x", {"punctuation:no_comma", "startend:quotation"}, {{}}));
  try {
    RunIfeval(Options(mismatch), model, nullptr);
    FAIL() << "no error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find(mismatch + ":1: the field \"kwargs\" must be a list with "
                                                    "one object per instruction (2)"),
              std::string::npos)
        << e.what();
  }
}

}  // namespace
}  // namespace cemoe
