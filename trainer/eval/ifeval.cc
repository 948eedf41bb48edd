// ifeval.cc: RunIfeval, lm-evaluation-harness's ifeval task (lm_eval/tasks/ifeval/ifeval.yaml,
// utils.py): 0-shot, the prompt as is, greedy, max_gen_toks 1280, no stop strings; each
// instruction checked strictly and loosely (ifeval_checks.h); four accuracies.
//
// Examples with an instruction the checkers do not support (language:response_language, or an
// id the harness does not know) are generated and recorded but excluded from all four metrics
// (the prompt, and each of its instructions), and counted in the notes and in
// metrics.unsupported_prompts. docs/evaluation.d/ifeval.md has the details.
#include <fmt/format.h>
#include <fmt/ranges.h>

#include <algorithm>
#include <map>
#include <optional>

#include "model/check.h"
#include "model/json_file.h"
#include "trainer/eval/eval_data.h"
#include "trainer/eval/ifeval_checks.h"
#include "trainer/eval/task.h"

namespace cemoe {
namespace {

constexpr int64_t kIfevalMaxNewTokens = 1280;  // ifeval.yaml generation_kwargs.max_gen_toks

struct IfevalExample {
  int64_t index = 0;
  nlohmann::json key;
  std::string prompt;
  std::vector<std::string> ids;
  std::vector<std::optional<IfevalInstruction>> instructions;  // nullopt = unsupported
  std::vector<std::string> unsupported;
};

IfevalExample ParseExample(const EvalExample& ex, const std::string& path, int64_t index) {
  const std::string where = fmt::format("{}:{}", path, ex.line);
  IfevalExample out;
  out.index = index;
  out.key = ex.value.contains("key") ? ex.value["key"] : nlohmann::json();
  out.prompt = EvalString(ex, path, "prompt");
  const nlohmann::json& ids = ex.value["instruction_id_list"];
  const nlohmann::json& kwargs = ex.value["kwargs"];
  CEMOE_CHECK(ids.is_array(), "{}: the field \"instruction_id_list\" must be a list, got {}", where,
              JsonExcerpt(ids));
  CEMOE_CHECK(kwargs.is_array() && kwargs.size() == ids.size(),
              "{}: the field \"kwargs\" must be a list with one object per instruction ({}), "
              "got {}",
              where, ids.size(), JsonExcerpt(kwargs));
  for (size_t i = 0; i < ids.size(); ++i) {
    CEMOE_CHECK(ids[i].is_string(), "{}: instruction_id_list[{}] must be a string, got {}", where,
                i, JsonExcerpt(ids[i]));
    const std::string id = ids[i].get<std::string>();
    out.ids.push_back(id);
    if (IfevalInstructionSupported(id)) {
      out.instructions.emplace_back(MakeIfevalInstruction(id, kwargs[i], out.prompt, where));
    } else {
      out.instructions.emplace_back(std::nullopt);
      out.unsupported.push_back(id);
    }
  }
  return out;
}

double Fraction(int64_t num, int64_t den) {
  return den == 0 ? 0.0 : static_cast<double>(num) / static_cast<double>(den);
}

}  // namespace

TaskResult RunIfeval(const TaskOptions& options, EvalModel& model, const ProgressFn& progress) {
  const std::vector<EvalExample> raw =
      ReadEvalJsonl(options.data, {"prompt", "instruction_id_list", "kwargs"}, options.limit);
  // Every example's instructions are built before the first model call, so a bad kwarg fails
  // fast.
  std::vector<IfevalExample> examples;
  for (size_t i = 0; i < raw.size(); ++i) {
    examples.push_back(ParseExample(raw[i], options.data, static_cast<int64_t>(i)));
  }
  CEMOE_CHECK(options.batch_size > 0, "batch_size ({}) must be positive", options.batch_size);
  CEMOE_CHECK(options.max_new_tokens >= 0, "max_new_tokens ({}) must be >= 0 (0 = {})",
              options.max_new_tokens, kIfevalMaxNewTokens);

  SamplingOptions sampling;
  sampling.max_new_tokens = options.max_new_tokens > 0 ? options.max_new_tokens
                                                       : kIfevalMaxNewTokens;
  sampling.temperature = 0.0;  // greedy (do_sample: false); until: [] = no stop strings

  std::vector<std::string> prompts;
  for (const IfevalExample& ex : examples) {
    prompts.push_back(options.chat ? model.FormatChat(ex.prompt) : ex.prompt);
  }
  const int64_t total = static_cast<int64_t>(prompts.size());
  const std::vector<Generation> outputs =
      GenerateInChunks("ifeval", model, prompts, sampling, options.batch_size, progress);

  TaskResult result;
  result.task = "ifeval";
  result.harness =
      "lm-evaluation-harness 0.4.13.dev0 (v0.4.12-48-g4e7e0d47) lm_eval/tasks/ifeval/ifeval.yaml "
      "(version 4.0; utils.py, instructions.py, instructions_registry.py)";
  result.primary_metric = "prompt_level_loose_acc";
  result.num_examples = total;

  int64_t prompts_scored = 0, prompt_strict = 0, prompt_loose = 0;
  int64_t inst_scored = 0, inst_strict = 0, inst_loose = 0;
  int64_t excluded = 0;
  std::map<std::string, int64_t> unsupported_counts;
  for (size_t i = 0; i < examples.size(); ++i) {
    const IfevalExample& ex = examples[i];
    const std::string& response = outputs[i].text;
    nlohmann::json follow_strict = nlohmann::json::array();
    nlohmann::json follow_loose = nlohmann::json::array();
    bool all_strict = true, all_loose = true;
    for (const std::optional<IfevalInstruction>& inst : ex.instructions) {
      if (!inst) {
        follow_strict.push_back(nullptr);
        follow_loose.push_back(nullptr);
        continue;
      }
      const bool s = IfevalFollowsStrict(*inst, response);
      const bool l = IfevalFollowsLoose(*inst, response);
      follow_strict.push_back(s);
      follow_loose.push_back(l);
      all_strict = all_strict && s;
      all_loose = all_loose && l;
    }
    const bool is_excluded = !ex.unsupported.empty();
    if (is_excluded) {
      ++excluded;
      for (const std::string& id : ex.unsupported) ++unsupported_counts[id];
    } else {
      ++prompts_scored;
      prompt_strict += all_strict ? 1 : 0;
      prompt_loose += all_loose ? 1 : 0;
      for (size_t k = 0; k < ex.instructions.size(); ++k) {
        ++inst_scored;
        inst_strict += follow_strict[k].get<bool>() ? 1 : 0;
        inst_loose += follow_loose[k].get<bool>() ? 1 : 0;
      }
    }
    result.records.push_back({
        {"index", ex.index},
        {"key", ex.key},
        {"prompt", prompts[i]},
        {"output", response},
        {"extracted", response},
        {"correct", !is_excluded && all_loose},
        {"instruction_id_list", ex.ids},
        {"follow_strict", follow_strict},
        {"follow_loose", follow_loose},
        {"prompt_level_strict", !is_excluded && all_strict},
        {"prompt_level_loose", !is_excluded && all_loose},
        {"excluded", is_excluded},
        {"unsupported", ex.unsupported},
        {"num_tokens", outputs[i].num_tokens},
        {"finish_reason", outputs[i].finish_reason},
    });
  }

  result.metrics = {
      {"prompt_level_strict_acc", Fraction(prompt_strict, prompts_scored)},
      {"inst_level_strict_acc", Fraction(inst_strict, inst_scored)},
      {"prompt_level_loose_acc", Fraction(prompt_loose, prompts_scored)},
      {"inst_level_loose_acc", Fraction(inst_loose, inst_scored)},
      {"unsupported_prompts", excluded},
      {"scored_prompts", prompts_scored},
      {"scored_instructions", inst_scored},
  };
  result.score = result.metrics[result.primary_metric].get<double>();
  if (excluded > 0) {
    std::vector<std::string> parts;
    for (const auto& [id, n] : unsupported_counts) parts.push_back(fmt::format("{} (x {})", id, n));
    result.notes.push_back(fmt::format("{} prompts with unsupported instructions excluded: {}",
                                       excluded, fmt::join(parts, ", ")));
  }
  if (prompts_scored == 0) {
    result.notes.push_back("no prompt could be scored: every metric is reported as 0");
  }
  result.notes.push_back(
      "change_case:english_capital / english_lowercase check the case only; lm-evaluation-harness "
      "also asks langdetect whether the response is English");
  result.notes.push_back(
      "length_constraints:number_sentences counts sentences with a C++ port of nltk punkt whose "
      "English model lacks the orthographic-context table (docs/evaluation.md)");
  return result;
}

}  // namespace cemoe
