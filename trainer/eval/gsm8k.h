// gsm8k.h: GSM8K, 0-shot chain-of-thought exact match, as lm-evaluation-harness v0.4.12's task
// gsm8k_cot_zeroshot (lm_eval/tasks/gsm8k/gsm8k-cot-zeroshot.yaml) scores it.
//
// Data: the public openai/gsm8k "main" test split as JSONL, one {"question", "answer"} per line;
// the gold number is what follows the last "#### " in "answer".
// Prompt: "Q: {question}\nA: Let's think step by step." (options.chat: EvalModel::FormatChat of
// that text, as lm-eval's --apply_chat_template renders it as one user turn). Greedy decoding,
// stop strings "Q:", "</s>", "<|im_end|>", at most 256 new tokens (lm-eval's default
// max_gen_toks; the config sets none).
// Two answer filters, each followed by lm-eval's exact_match with ignore_case and
// regexes_to_ignore [",", "\$", "(?s).*#### ", "\.$"] applied to prediction and gold alike:
//   strict-match:     the first match of "The answer is (\-?[0-9\.\,]+)." (group 1);
//   flexible-extract: the last match of "(-?[$0-9.,]{2,})|(-?[0-9]+)" (its non-empty group).
// A filter without a match yields "[invalid]". The primary metric is exact_match_flexible (the
// rule closest to open-instruct's GSM8K script, which takes the last number of the output).
// The filters are written out by hand (no regex engine): they reproduce Python re's leftmost,
// backtracking matches of these patterns exactly (docs/evaluation.d/gsm8k.md).
// Thread-safety: the functions are stateless; RunGsm8k is single-owner like its EvalModel.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "trainer/eval/task.h"

namespace cemoe {

// What lm-eval's regex filter returns when its pattern does not match.
inline constexpr const char* kGsm8kInvalid = "[invalid]";
// lm-eval's default max_gen_toks (gsm8k_cot_zeroshot sets none).
inline constexpr int64_t kGsm8kMaxNewTokens = 256;

// "Q: " + question + "\nA: Let's think step by step." (doc_to_text).
std::string Gsm8kPrompt(const std::string& question);
// generation_kwargs.until: {"Q:", "</s>", "<|im_end|>"}.
std::vector<std::string> Gsm8kStopStrings();

// The strict-match filter: group 1 of the first match of "The answer is (\-?[0-9\.\,]+)." where
// the final "." is any character but "\n" ("The answer is 42" at the very end gives "4", as in
// lm-eval); kGsm8kInvalid when nothing matches.
std::string Gsm8kExtractStrict(const std::string& completion);
// The flexible-extract filter: the last of the non-overlapping, left-to-right matches of
// "(-?[$0-9.,]{2,})|(-?[0-9]+)"; kGsm8kInvalid when nothing matches.
std::string Gsm8kExtractFlexible(const std::string& completion);

// exact_match's normalisation, in lm-eval's order: delete every ","; delete every "$"; delete
// everything up to and including the last "#### "; delete a final "." (Python's "$" also matches
// before a final "\n": "7.\n" -> "7\n"); lower-case (ASCII letters).
std::string Gsm8kNormalize(const std::string& text);
// Gsm8kNormalize(prediction) == Gsm8kNormalize(answer) (`answer` = the data's full "answer").
bool Gsm8kExactMatch(const std::string& prediction, const std::string& answer);

}  // namespace cemoe
