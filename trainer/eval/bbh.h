// bbh.h: BIG-Bench Hard, 3-shot chain-of-thought exact match, as lm-evaluation-harness v0.4.12's
// group bbh_cot_fewshot (lm_eval/tasks/bbh/cot_fewshot/_cot_fewshot_template_yaml and
// <subtask>.yaml, version 4.0) scores it.
//
// Data (options.data), {"input", "target"} per example, one of:
//   - a folder of <subtask>.json files in the public BIG-Bench-Hard form
//     {"examples": [{"input", "target"}, ...]} (suzgun/BIG-Bench-Hard bbh/<subtask>.json), or of
//     <subtask>.jsonl files (one {"input", "target"} per line), one file per subtask;
//   - a single <subtask>.json file of that form;
//   - a single JSONL file whose lines also carry "subtask".
// options.limit keeps the first `limit` examples of each subtask.
// Few-shot prompts (options.fewshot, required): a folder of the public cot-prompts/<subtask>.txt;
// the text after the last "\n-----\n" line (the canary header) with trailing whitespace removed
// is the subtask's prefix: description, "\n\n", then three "Q: ...\nA: Let's think step by
// step.\n<reasoning>" shots separated by "\n\n".
// Prompt: prefix + "\n\nQ: " + input + "\nA: Let's think step by step.\n" (the text lm-eval
// builds from description + fewshot samples + doc_to_text with target_delimiter ""); chat:
// FormatChat of the whole prompt. Greedy, stop strings "</s>", "Q", "\n\n", at most 1024 new
// tokens (max_gen_toks).
// Answer: lm-eval's "get-answer" filter, regex "(?<=the answer is )(.*)(?=.)" then take_first:
// after the first "the answer is " followed by at least one character on its line, the rest of
// that line minus its last character, stripped of whitespace; "[invalid]" when none. Exact match
// against "target" (case- and punctuation-sensitive). Score: per subtask the mean; "exact_match"
// is the mean over subtasks (macro); "exact_match_micro" the mean over all examples (lm-eval's
// group aggregate, weight_by_size).
// Thread-safety: the functions are stateless; RunBbh is single-owner like its EvalModel.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "trainer/eval/task.h"

namespace cemoe {

inline constexpr const char* kBbhInvalid = "[invalid]";
inline constexpr int64_t kBbhMaxNewTokens = 1024;

struct BbhExample {
  std::string subtask;
  int64_t index = 0;     // 0-based position among the evaluated examples of its data file
  std::string source;    // "<file>:<line>" or "<file> examples[i]", for messages
  std::string input;
  std::string target;
};

// The examples of options.data (see above), limit per subtask, in order: a folder's subtasks
// sorted by name, a single file's in data order. Errors name the file, line or examples[i] and
// the field.
std::vector<BbhExample> LoadBbhExamples(const std::string& data, int64_t limit);

// The few-shot prefix of a cot-prompts <subtask>.txt text (canary header stripped).
std::string BbhPromptPrefix(const std::string& txt);

// The prefix for every subtask in `subtasks` from <fewshot_dir>/<subtask>.txt; an error lists
// all missing files.
std::vector<std::string> LoadBbhPrefixes(const std::string& fewshot_dir,
                                         const std::vector<std::string>& subtasks);

// prefix + "\n\nQ: " + input + "\nA: Let's think step by step.\n".
std::string BbhPrompt(const std::string& prefix, const std::string& input);
// generation_kwargs.until: {"</s>", "Q", "\n\n"}.
std::vector<std::string> BbhStopStrings();

// The get-answer filter (see above); kBbhInvalid when nothing matches.
std::string BbhExtractAnswer(const std::string& completion);

}  // namespace cemoe
