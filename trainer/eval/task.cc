#include "trainer/eval/task.h"

#include <fmt/format.h>
#include <fmt/ranges.h>

#include <algorithm>
#include <filesystem>
#include <map>
#include <string>

#include "model/atomic_folder.h"
#include "model/check.h"

namespace cemoe {

namespace {

using TaskFn = TaskResult (*)(const TaskOptions&, EvalModel&, const ProgressFn&);

const std::map<std::string, TaskFn>& Registry() {
  static const std::map<std::string, TaskFn> tasks = {
      {"gsm8k", &RunGsm8k},   {"truthfulqa_mc2", &RunTruthfulQaMc2}, {"bbh", &RunBbh},
      {"ifeval", &RunIfeval}, {"humaneval", &RunHumanEval},
  };
  return tasks;
}

}  // namespace

std::vector<std::string> TaskNames() {
  // The paper's column order (method.md 1.5).
  return {"ifeval", "bbh", "truthfulqa_mc2", "gsm8k", "humaneval"};
}

TaskResult RunTask(const TaskOptions& options, EvalModel& model, const ProgressFn& progress) {
  const auto it = Registry().find(options.task);
  CEMOE_CHECK(it != Registry().end(), "unknown eval task \"{}\"; the tasks are {}", options.task,
              fmt::join(TaskNames(), ", "));
  CEMOE_CHECK(options.batch_size >= 1, "eval task {}: batch_size must be >= 1, got {}",
              options.task, options.batch_size);
  CEMOE_CHECK(options.limit >= 0, "eval task {}: limit must be >= 0, got {}", options.task,
              options.limit);
  TaskResult result = it->second(options, model, progress);
  result.task = options.task;
  return result;
}

std::vector<Generation> GenerateInChunks(const std::string& task, EvalModel& model,
                                         const std::vector<std::string>& prompts,
                                         const SamplingOptions& sampling, int64_t batch_size,
                                         const ProgressFn& progress) {
  const int64_t total = static_cast<int64_t>(prompts.size());
  const int64_t n = sampling.num_samples;
  std::vector<Generation> out;
  out.reserve(static_cast<size_t>(total * n));
  for (int64_t begin = 0; begin < total; begin += batch_size) {
    const int64_t end = std::min(total, begin + batch_size);
    const std::vector<std::string> chunk(prompts.begin() + begin, prompts.begin() + end);
    std::vector<Generation> got = model.Generate(chunk, sampling);
    CEMOE_CHECK(static_cast<int64_t>(got.size()) == (end - begin) * n,
                "{}: the model returned {} completions for {} prompts x {} samples", task,
                got.size(), end - begin, n);
    for (Generation& g : got) out.push_back(std::move(g));
    if (progress) progress(end, total);
  }
  return out;
}

nlohmann::json TaskOptionsJson(const TaskOptions& o) {
  return {{"task", o.task},           {"data", o.data},
          {"fewshot", o.fewshot},     {"limit", o.limit},
          {"chat", o.chat},           {"batch_size", o.batch_size},
          {"max_new_tokens", o.max_new_tokens},
          {"samples", o.samples},     {"temperature", o.temperature},
          {"top_p", o.top_p},         {"seed", o.seed},
          {"pass_at", o.pass_at},     {"timeout_s", o.timeout_s}};
}

void WriteTaskOutputs(const std::string& out_dir, const TaskResult& result,
                      const TaskOptions& options, const nlohmann::json& model_info) {
  std::error_code ec;
  std::filesystem::create_directories(out_dir, ec);
  CEMOE_CHECK(!ec, "cannot create the eval folder {}: {}", out_dir, ec.message());
  std::string records;
  for (const nlohmann::json& r : result.records) {
    records += r.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
    records += '\n';
  }
  WriteTextFileAtomically(out_dir + "/records.jsonl", records);
  const nlohmann::json summary = {
      {"task", result.task},
      {"harness", result.harness},
      {"primary_metric", result.primary_metric},
      {"score", result.score},
      {"metrics", result.metrics},
      {"num_examples", result.num_examples},
      {"model", model_info},
      {"options", TaskOptionsJson(options)},
      {"notes", result.notes},
  };
  WriteTextFileAtomically(out_dir + "/summary.json",
                          summary.dump(2, ' ', false, nlohmann::json::error_handler_t::replace) +
                              "\n");
}

}  // namespace cemoe
