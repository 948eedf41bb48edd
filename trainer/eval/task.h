// task.h: one evaluation task (GSM8K, TruthfulQA MC2, BBH, IFEval, HumanEval) run on an
// EvalModel, and what it leaves in the run folder.
//
// A task reads its public data set's own JSONL (docs/evaluation.md names the files), builds
// prompts as lm-evaluation-harness's task config does, asks the model (in chunks of
// options.batch_size prompts, reporting progress after each chunk), scores every example and
// returns per-example records and a summary. WriteTaskOutputs puts them in
// <out_dir>/records.jsonl (one JSON object per example, in data order) and
// <out_dir>/summary.json, each written atomically.
//
// summary.json (what `cemoe report` reads):
//   {"task": "gsm8k", "harness": "<the lm-evaluation-harness version and task config followed>",
//    "primary_metric": "exact_match", "score": 0.4125,          // fraction in [0, 1]
//    "metrics": {"exact_match": 0.4125, ...},                   // every metric, fractions
//    "num_examples": 1319, "model": {...model_info...}, "options": {...TaskOptions...},
//    "notes": ["..."]}                                          // e.g. unsupported IFEval ids
// Every record has at least "index" (0-based line of the data file among the evaluated ones),
// "prompt", "output" (the completion, or the chosen answer for log-likelihood tasks),
// "extracted" (the answer the scorer compared, "" when none) and "correct" (bool, or a fraction
// for tasks that score partially: MC2's true-answer mass).
// Thread-safety: tasks are single-owner; see EvalModel for mpirun.
#pragma once

#include <cstdint>
#include <functional>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "trainer/eval/eval_model.h"

namespace cemoe {

struct TaskOptions {
  std::string task;          // "gsm8k" | "truthfulqa_mc2" | "bbh" | "ifeval" | "humaneval"
  std::string data;          // the JSONL file (BBH: a file or a folder of <subtask>.jsonl / .json)
  std::string fewshot;       // BBH: the folder of 3-shot prompts <subtask>.txt; else unused
  int64_t limit = 0;         // evaluate the first `limit` examples (per BBH subtask); 0 = all
  bool chat = false;         // wrap each prompt with EvalModel::FormatChat
  int64_t batch_size = 8;    // prompts per model call
  int64_t max_new_tokens = 0;  // 0 = the task's default (docs/evaluation.md)
  // HumanEval sampling: n completions per problem at `temperature` / `top_p` (n = 1 with
  // temperature 0 = greedy pass@1); pass@k for every k in `pass_at` with k <= n.
  int64_t samples = 1;
  double temperature = 0.0;
  double top_p = 1.0;
  uint64_t seed = 0;
  std::vector<int64_t> pass_at = {1, 10};
  double timeout_s = 10.0;   // HumanEval: wall-clock limit per program run
};

struct TaskResult {
  std::string task;
  std::string harness;         // e.g. "lm-evaluation-harness v0.4.9 gsm8k_cot_zeroshot"
  std::string primary_metric;  // the metric the paper's table reports
  double score = 0.0;          // metrics[primary_metric]
  nlohmann::json metrics = nlohmann::json::object();
  int64_t num_examples = 0;
  std::vector<nlohmann::json> records;
  std::vector<std::string> notes;
};

// Called after every model call with (examples done, examples total).
using ProgressFn = std::function<void(int64_t done, int64_t total)>;

// The task named options.task; an unknown name is an error listing TaskNames().
TaskResult RunTask(const TaskOptions& options, EvalModel& model, const ProgressFn& progress);
std::vector<std::string> TaskNames();

// One function per task (trainer/eval/<task>.cc).
TaskResult RunGsm8k(const TaskOptions& options, EvalModel& model, const ProgressFn& progress);
TaskResult RunTruthfulQaMc2(const TaskOptions& options, EvalModel& model,
                            const ProgressFn& progress);
TaskResult RunBbh(const TaskOptions& options, EvalModel& model, const ProgressFn& progress);
TaskResult RunIfeval(const TaskOptions& options, EvalModel& model, const ProgressFn& progress);
TaskResult RunHumanEval(const TaskOptions& options, EvalModel& model, const ProgressFn& progress);

// The model's completions of `prompts` (sampling.num_samples each, prompt-major), asked in
// chunks of `batch_size` prompts with progress(prompts done, total) after each; an answer of the
// wrong size is an error naming `task`.
std::vector<Generation> GenerateInChunks(const std::string& task, EvalModel& model,
                                         const std::vector<std::string>& prompts,
                                         const SamplingOptions& sampling, int64_t batch_size,
                                         const ProgressFn& progress);

// The options as JSON (for summary.json).
nlohmann::json TaskOptionsJson(const TaskOptions& options);

// Writes <out_dir>/records.jsonl and <out_dir>/summary.json (creating out_dir), each atomically;
// `model_info` becomes the summary's "model" object: {"dir": model folder, "label": the row's
// name in a report, "stage": "pretrained" | "sft" | "distill" | "model", "top_k": K,
// "main_experts": K_m (0 = no compressed experts), "describe": EvalModel::Describe()}.
void WriteTaskOutputs(const std::string& out_dir, const TaskResult& result,
                      const TaskOptions& options, const nlohmann::json& model_info);

}  // namespace cemoe
