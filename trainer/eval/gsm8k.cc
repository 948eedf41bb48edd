#include "trainer/eval/gsm8k.h"

#include <fmt/format.h>

#include <algorithm>
#include <string>
#include <vector>

#include "model/check.h"
#include "model/json_file.h"
#include "trainer/eval/eval_data.h"

namespace cemoe {

namespace {

bool IsDigit(char c) { return c >= '0' && c <= '9'; }
// [0-9.,] of the strict pattern.
bool IsStrictChar(char c) { return IsDigit(c) || c == '.' || c == ','; }
// [$0-9.,] of the flexible pattern.
bool IsFlexibleChar(char c) { return IsStrictChar(c) || c == '$'; }

template <typename Pred>
size_t RunLength(const std::string& s, size_t from, Pred pred) {
  size_t end = from;
  while (end < s.size() && pred(s[end])) ++end;
  return end - from;
}

// The length of the match of "(-?[$0-9.,]{2,})|(-?[0-9]+)" starting exactly at `i` (0 = none).
// Python's re tries the first alternative, then the second; "-?" first takes the "-", and
// dropping it cannot help because neither class contains "-".
size_t FlexibleMatchAt(const std::string& s, size_t i) {
  const size_t sign = s[i] == '-' ? 1 : 0;
  const size_t run = RunLength(s, i + sign, IsFlexibleChar);
  if (run >= 2) return sign + run;
  const size_t digits = RunLength(s, i + sign, IsDigit);
  if (digits >= 1) return sign + digits;
  return 0;
}

}  // namespace

std::string Gsm8kPrompt(const std::string& question) {
  return "Q: " + question + "\nA: Let's think step by step.";
}

std::vector<std::string> Gsm8kStopStrings() { return {"Q:", "</s>", "<|im_end|>"}; }

std::string Gsm8kExtractStrict(const std::string& completion) {
  static const std::string kLead = "The answer is ";
  for (size_t at = completion.find(kLead); at != std::string::npos;
       at = completion.find(kLead, at + 1)) {
    const size_t start = at + kLead.size();
    const size_t sign = start < completion.size() && completion[start] == '-' ? 1 : 0;
    const size_t run = RunLength(completion, start + sign, IsStrictChar);
    // "([0-9.,]+)." : the greedy run, then any character but "\n"; if none follows, give one
    // character of the run back (it is a digit, "." or ",", never "\n").
    size_t len = 0;
    const size_t after = start + sign + run;
    if (run >= 1 && after < completion.size() && completion[after] != '\n') {
      len = run;
    } else if (run >= 2) {
      len = run - 1;
    }
    if (len > 0) return completion.substr(start, sign + len);
  }
  return kGsm8kInvalid;
}

std::string Gsm8kExtractFlexible(const std::string& completion) {
  std::string last;
  size_t i = 0;
  while (i < completion.size()) {
    const size_t len = FlexibleMatchAt(completion, i);
    if (len == 0) {
      ++i;
      continue;
    }
    last = completion.substr(i, len);
    i += len;
  }
  return last.empty() ? std::string(kGsm8kInvalid) : last;
}

std::string Gsm8kNormalize(const std::string& text) {
  std::string s = text;
  s.erase(std::remove(s.begin(), s.end(), ','), s.end());
  s.erase(std::remove(s.begin(), s.end(), '$'), s.end());
  const size_t hashes = s.rfind("#### ");
  if (hashes != std::string::npos) s.erase(0, hashes + 5);
  if (!s.empty() && s.back() == '.') {
    s.pop_back();
  } else if (s.size() >= 2 && s[s.size() - 1] == '\n' && s[s.size() - 2] == '.') {
    s.erase(s.size() - 2, 1);
  }
  for (char& c : s) {
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
  }
  return s;
}

bool Gsm8kExactMatch(const std::string& prediction, const std::string& answer) {
  return Gsm8kNormalize(prediction) == Gsm8kNormalize(answer);
}

TaskResult RunGsm8k(const TaskOptions& options, EvalModel& model, const ProgressFn& progress) {
  CEMOE_CHECK(options.batch_size >= 1, "gsm8k: batch_size must be >= 1, got {}",
              options.batch_size);
  CEMOE_CHECK(options.max_new_tokens >= 0, "gsm8k: max_new_tokens must be >= 0, got {}",
              options.max_new_tokens);
  const std::vector<EvalExample> examples =
      ReadEvalJsonl(options.data, {"question", "answer"}, options.limit);
  std::vector<std::string> prompts;
  std::vector<std::string> answers;
  for (const EvalExample& ex : examples) {
    const std::string question = EvalString(ex, options.data, "question");
    std::string answer = EvalString(ex, options.data, "answer");
    CEMOE_CHECK(answer.find("#### ") != std::string::npos,
                "{}:{}: the field \"answer\" has no \"#### <number>\" (the gold answer): {}",
                options.data, ex.line, Excerpt(answer, 200));
    const std::string text = Gsm8kPrompt(question);
    prompts.push_back(options.chat ? model.FormatChat(text) : text);
    answers.push_back(std::move(answer));
  }

  SamplingOptions sampling;
  sampling.max_new_tokens = options.max_new_tokens > 0 ? options.max_new_tokens
                                                       : kGsm8kMaxNewTokens;
  sampling.temperature = 0.0;
  sampling.stop = Gsm8kStopStrings();
  sampling.num_samples = 1;

  TaskResult result;
  result.task = "gsm8k";
  result.harness =
      "lm-evaluation-harness v0.4.12 gsm8k_cot_zeroshot (gsm8k-cot-zeroshot.yaml, version 3.0)";
  result.primary_metric = "exact_match_flexible";
  const int64_t total = static_cast<int64_t>(prompts.size());
  int64_t num_strict = 0;
  int64_t num_flexible = 0;
  const std::vector<Generation> outputs =
      GenerateInChunks("gsm8k", model, prompts, sampling, options.batch_size, progress);
  for (int64_t i = 0; i < total; ++i) {
    const Generation& g = outputs[static_cast<size_t>(i)];
    const std::string strict = Gsm8kExtractStrict(g.text);
    const std::string flexible = Gsm8kExtractFlexible(g.text);
    const bool strict_ok = Gsm8kExactMatch(strict, answers[i]);
    const bool flexible_ok = Gsm8kExactMatch(flexible, answers[i]);
    num_strict += strict_ok ? 1 : 0;
    num_flexible += flexible_ok ? 1 : 0;
    result.records.push_back({{"index", i},
                              {"prompt", prompts[i]},
                              {"output", g.text},
                              {"extracted", flexible},
                              {"correct", flexible_ok},
                              {"extracted_strict", strict},
                              {"correct_strict", strict_ok},
                              {"gold", Gsm8kNormalize(answers[i])},
                              {"finish_reason", g.finish_reason},
                              {"num_tokens", g.num_tokens}});
  }
  result.num_examples = total;
  result.metrics = {
      {"exact_match_flexible", static_cast<double>(num_flexible) / static_cast<double>(total)},
      {"exact_match_strict", static_cast<double>(num_strict) / static_cast<double>(total)}};
  result.score = result.metrics["exact_match_flexible"].get<double>();
  result.notes.push_back(
      "primary metric exact_match_flexible: lm-eval's flexible-extract filter (the last number "
      "in the output, as open-instruct's GSM8K CoT evaluation); exact_match_strict needs \"The "
      "answer is N.\"");
  return result;
}

}  // namespace cemoe
