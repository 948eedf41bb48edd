// truthfulqa.h: TruthfulQA MC2, as lm-evaluation-harness v0.4.12's task truthfulqa_mc2
// (lm_eval/tasks/truthfulqa/truthfulqa_mc2.yaml, which includes truthfulqa_mc1.yaml, and
// utils.process_results_mc2) scores it.
//
// Data: the public truthful_qa "multiple_choice" validation split as JSONL, one
// {"question", "mc2_targets": {"choices": [...], "labels": [1, ..., 0, ...]}} per line (other
// fields, such as mc1_targets, are ignored).
// Prompt (context): the fixed 6-shot QA primer, then "\n\nQ: " + question + "\nA:"; each choice
// is scored as the continuation " " + choice: its summed log-likelihood (natural log, not
// normalised by length). MC2 = the probability mass of the true choices (label 1) among all
// choices, computed from exp(ll - max ll) so it stays finite where exp(ll) underflows.
// options.chat: lm-eval's --apply_chat_template: the context is FormatChat(prompt) and the
// continuation is the choice without the leading space (target_delimiter "" under a chat
// template).
// Thread-safety: the functions are stateless; RunTruthfulQaMc2 is single-owner like its model.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "trainer/eval/task.h"

namespace cemoe {

// The six question/answer pairs lm-eval puts before every question (no trailing newline).
extern const char* const kTruthfulQaPrimer;

// kTruthfulQaPrimer + "\n\nQ: " + question + "\nA:" (doc_to_text).
std::string TruthfulQaPrompt(const std::string& question);

// sum_{labels[i] == 1} exp(ll[i]) / sum_i exp(ll[i]), each exp taken relative to the largest
// log-likelihood. Sizes must match and be >= 1, labels 0 or 1, log-likelihoods not NaN or +inf,
// at least one finite; otherwise an error.
double Mc2Score(const std::vector<double>& loglikelihoods, const std::vector<int>& labels);

}  // namespace cemoe
