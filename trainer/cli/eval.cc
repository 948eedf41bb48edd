// eval.cc: `cemoe eval` scores a model folder on the paper's benchmarks (trainer/eval/task.h:
// ifeval, bbh, truthfulqa_mc2, gsm8k, humaneval) and optionally measures its generation latency,
// writing <out>/eval/<task>/records.jsonl + summary.json (and <out>/eval/latency/summary.json),
// which `cemoe report` turns into the paper's table. `cemoe eval RECIPE` takes the tasks, the
// model ("final": the run's latest checkpoint; "pretrained"; or a folder), the routing, device
// and layout from the recipe (its eval section, docs/recipes.md) and writes into its run folder.
// One process, or expert-parallel under mpirun: every rank runs the task code, the model calls are
// split over the ranks (trainer/runtime/inference_session.h), world rank 0 writes and prints.
#include <fmt/format.h>
#include <fmt/ranges.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <chrono>
#include <cmath>
#include <filesystem>
#include <iostream>
#include <memory>
#include <nlohmann/json.hpp>

#include "model/atomic_folder.h"
#include "model/check.h"
#include "parallel/mpi_communicator.h"
#include "parallel/process_groups.h"
#include "trainer/cli/checks.h"
#include "trainer/cli/commands.h"
#include "trainer/cli/eval_stage.h"
#include "trainer/cli/model_options.h"
#include "trainer/config/recipe_loader.h"
#include "trainer/eval/task.h"
#include "trainer/metrics/progress.h"
#include "trainer/runtime/inference_session.h"
#include "trainer/runtime/latency.h"
#include "trainer/sft/checkpoint.h"

namespace cemoe {

namespace {

struct EvalOptions : ModelOptions {
  std::string recipe, run_dir;  // `cemoe eval RECIPE [--set ...] [--run-dir DIR]`
  std::vector<std::string> overrides;
  std::vector<std::string> tasks, data;
  std::string fewshot, out = ".", label, stage = "model", chat_template = "model";
  bool chat = false;
  int64_t limit = 0, batch_size = 8, max_new_tokens = 0, samples = 1;
  double temperature = 0.0, top_p = 1.0, timeout_s = 10.0;
  uint64_t seed = 0;
  std::vector<int64_t> pass_at = {1, 10};
  bool latency = false;
  int64_t latency_batch = 8, latency_input = 32, latency_new = 128, latency_warmup = 10,
          latency_iters = 30;
  // `cemoe run` (RunRecipeEval): a model folder instead of eval.model, the row's stage and
  // label, and whether tasks with a summary.json already are skipped.
  std::string model_override, stage_override, label_override;
  bool skip_done = false;
};

// A one-line bar on a terminal ("\r" redraw), one line per 10 % otherwise; rank 0 only.
ProgressFn MakeProgress(const std::string& task, bool root) {
  if (!root) return [](int64_t, int64_t) {};
  const bool terminal = StdoutIsTerminal();
  auto last_decile = std::make_shared<int64_t>(-1);
  const auto start = std::chrono::steady_clock::now();
  return [task, terminal, last_decile, start](int64_t done, int64_t total) {
    const double s =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    const double eta = done > 0 ? s / done * (total - done) : NAN;
    if (terminal) {
      const int width = 20, fill = total > 0 ? static_cast<int>(width * done / total) : width;
      std::cout << fmt::format("\r{} [{}{}] {}/{} eta {}\x1b[K", task, std::string(fill, '#'),
                               std::string(width - fill, '.'), done, total, FormatDuration(eta))
                << (done >= total ? "\n" : "") << std::flush;
      return;
    }
    const int64_t decile = total > 0 ? 10 * done / total : 10;
    if (decile != *last_decile) {
      *last_decile = decile;
      std::cout << fmt::format("{}: {}/{} eta {}\n", task, done, total, FormatDuration(eta))
                << std::flush;
    }
  };
}

nlohmann::json ModelInfo(const EvalOptions& opt, InferenceSession& engine) {
  return {{"dir", opt.model},
          {"label",
           opt.label.empty() ? std::filesystem::path(opt.model).filename().string() : opt.label},
          {"stage", opt.stage},
          {"top_k", engine.model()->top_k()},
          {"main_experts", engine.model()->main_experts()},
          {"describe", engine.Describe()}};
}

// The paper's latency protocol on this configuration (see `cemoe bench latency`); written as a
// task summary {"task": "latency", "primary_metric": "mean_s", "score": seconds}.
void MeasureLatency(const EvalOptions& opt, InferenceSession& engine, ProcessGroups& groups,
                    const std::string& dir, const nlohmann::json& model_info) {
  CausalLM& model = engine.model();
  const std::vector<std::vector<int64_t>> prompts =
      LatencyPrompts(model->config().vocab_size, opt.latency_batch, opt.latency_input, opt.seed,
                     groups.world_rank(), groups.world_size());
  const AnyUnfinishedFn any = engine.WorldAnyUnfinished();
  std::vector<double> times;
  for (int64_t i = 0; i < opt.latency_warmup + opt.latency_iters; ++i) {
    const double dt =
        TimeGeneration(*model, prompts, opt.latency_new, engine.loaded().device, any, groups);
    if (i >= opt.latency_warmup) times.push_back(dt);
  }
  const LatencyStats stats = ComputeLatencyStats(times);
  const double mean = stats.mean_s, sd = stats.std_s;
  if (groups.world_rank() != 0) return;
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  CEMOE_CHECK(!ec, "cannot create {}: {}", dir, ec.message());
  const nlohmann::json summary = {{"task", "latency"},
                                  {"harness", "cemoe bench latency protocol (method.md 1.5)"},
                                  {"primary_metric", "mean_s"},
                                  {"score", mean},
                                  {"metrics",
                                   {{"mean_s", mean},
                                    {"std_s", sd},
                                    {"tokens_per_s", opt.latency_batch * opt.latency_new / mean}}},
                                  {"num_examples", static_cast<int64_t>(times.size())},
                                  {"model", model_info},
                                  {"options",
                                   {{"batch", opt.latency_batch},
                                    {"input_len", opt.latency_input},
                                    {"new_tokens", opt.latency_new},
                                    {"warmup", opt.latency_warmup},
                                    {"iters", opt.latency_iters},
                                    {"device", opt.device},
                                    {"ranks", groups.world_size()}}},
                                  {"notes", nlohmann::json::array()}};
  WriteTextFileAtomically(dir + "/summary.json", summary.dump(2) + "\n");
  std::cout << fmt::format("latency: mean {:.4f} s (std {:.4f}) over {} iterations -> {}\n", mean,
                           sd, times.size(), dir);
}

// What one `cemoe eval` does, from the command line or from a recipe's eval section.
struct EvalPlan {
  std::vector<TaskOptions> tasks;
  std::string model_source;  // "final": the run's latest checkpoint, resolved collectively
};

// One task as trainer/eval/task.h runs it: the task's own settings, the run's chat and seed.
TaskOptions ToTaskOptions(const EvalTask& e, const EvalOptions& opt) {
  TaskOptions t;
  t.task = e.name;
  t.data = e.data;
  t.fewshot = e.fewshot;
  t.limit = e.limit;
  t.chat = opt.chat;
  t.max_new_tokens = e.max_new_tokens;
  t.samples = e.samples;
  t.temperature = e.temperature;
  t.top_p = e.top_p;
  t.seed = opt.seed;
  t.pass_at = e.pass_at;
  t.timeout_s = e.timeout_s;
  return t;
}

EvalPlan PlanFromCommandLine(const EvalOptions& opt) {
  CEMOE_CHECK(!opt.tasks.empty() || opt.latency,
              "cemoe eval: give --task NAME --data FILE (repeatable) and/or --latency");
  CEMOE_CHECK(opt.tasks.size() == opt.data.size(),
              "cemoe eval: {} --task and {} --data options; give one data file per task",
              opt.tasks.size(), opt.data.size());
  CEMOE_CHECK(!opt.model.empty(), "cemoe eval: give --model DIR (or a recipe)");
  EvalPlan plan;
  for (size_t i = 0; i < opt.tasks.size(); ++i) {
    EvalTask e;  // the recipe's form of a task, filled from the command line
    e.name = opt.tasks[i];
    e.data = opt.data[i];
    e.fewshot = opt.fewshot;
    e.limit = opt.limit;
    e.max_new_tokens = opt.max_new_tokens;
    e.samples = opt.samples;
    e.temperature = opt.temperature;
    e.top_p = opt.top_p;
    e.pass_at = opt.pass_at;
    e.timeout_s = opt.timeout_s;
    plan.tasks.push_back(ToTaskOptions(e, opt));
  }
  return plan;
}

// The recipe's eval section into `opt` (model, routing, device, layout, output) and the plan.
EvalPlan PlanFromRecipe(EvalOptions& opt) {
  CEMOE_CHECK(opt.model.empty() && opt.tasks.empty() && opt.data.empty(),
              "cemoe eval {}: the recipe names the model and the tasks; --model, --task and "
              "--data are for evaluating without a recipe (change the recipe with --set)",
              opt.recipe);
  ValidateOptions checks;
  checks.check_data_files = false;  // evaluation does not read the training data
  checks.check_model_folder = false;
  const RunConfig config = LoadRecipe(opt.recipe, opt.overrides, opt.run_dir, checks);
  const EvalSection& ev = config.eval;
  CEMOE_CHECK(!ev.task.empty() || ev.latency,
              "{}: eval has no task and latency is off: nothing to evaluate", config.source);
  EvalPlan plan;
  opt.out = config.run_dir;
  opt.ep = config.parallel.ep;
  opt.device = config.train.device;
  opt.batch_size = ev.batch_size;
  opt.latency = ev.latency;
  opt.seed = static_cast<uint64_t>(ev.seed);
  opt.chat = ev.chat && config.data.chat_template != "plain";
  opt.chat_template = config.data.chat_template;
  opt.label = ev.label;
  opt.latency_iters = ev.latency_iters;
  opt.latency_warmup = ev.latency_warmup;
  if (!opt.model_override.empty()) {
    // An exported row (`cemoe run`): the folder's own routing, as trained.
    opt.model = opt.model_override;
    opt.stage = config.distill.enabled() ? "distill" : "sft";
    if (opt.label.empty()) opt.label = config.name;
  } else if (ev.model == "pretrained") {
    opt.model = config.model.path;  // its own routing: the table's Pretrained row
    opt.stage = "pretrained";
    if (opt.label.empty()) opt.label = "Pretrained";
  } else {
    opt.top_k = config.model.top_k;
    opt.main_experts = config.moe.compressed_experts == "false"  ? 0
                       : config.moe.compressed_experts == "true" ? config.moe.main_experts
                                                                 : -1;
    opt.compressed_experts = config.moe.compressed_experts == "true" || config.distill.enabled();
    if (opt.compressed_experts && opt.main_experts <= 0) opt.main_experts = -1;
    opt.stage = config.distill.enabled() ? "distill" : "sft";
    if (ev.model == "final") {
      plan.model_source = "final";
      // The checkpoint records the routing it was trained at.
      opt.top_k = 0;
      opt.main_experts = -1;
      opt.compressed_experts = false;
    } else {
      opt.model = ev.model;
      opt.stage = "model";
    }
    if (opt.label.empty()) opt.label = config.name;
  }
  if (!opt.stage_override.empty()) opt.stage = opt.stage_override;
  if (!opt.label_override.empty()) opt.label = opt.label_override;
  for (const EvalTask& e : ev.task) plan.tasks.push_back(ToTaskOptions(e, opt));
  return plan;
}

void RunEval(EvalOptions& opt) {
  EvalPlan plan = opt.recipe.empty() ? PlanFromCommandLine(opt) : PlanFromRecipe(opt);
  const std::vector<std::string> names = TaskNames();
  for (const TaskOptions& t : plan.tasks) {
    CEMOE_CHECK(std::find(names.begin(), names.end(), t.task) != names.end(),
                "--task {}: unknown task; the tasks are {}", t.task, fmt::join(names, ", "));
    CEMOE_CHECK(std::filesystem::exists(t.data), "{} data {}: no such file or folder", t.task,
                t.data);
  }
  MpiSession session(nullptr, nullptr);
  ProcessGroups groups(session, InferenceParallelOptions(opt));
  const bool root = groups.world_rank() == 0;
  if (plan.model_source == "final") {
    const std::optional<std::string> latest = FindLatestCheckpoint(opt.out, groups);
    CEMOE_CHECK(latest.has_value(),
                "{}: eval.model \"final\": the run folder {} has no checkpoint yet (train first, "
                "or set eval.model to \"pretrained\" or a model folder)",
                opt.recipe, opt.out);
    opt.model = (std::filesystem::path(*latest) / "model").string();
  }
  ResolveModelOptions(opt);
  InferenceOptions io;
  io.model = ToModelRequest(opt);
  io.chat_template = opt.chat_template;
  io.batch_size = opt.batch_size;
  InferenceSession engine(io, groups, session.local_rank());
  const nlohmann::json info = ModelInfo(opt, engine);
  if (root) std::cout << "eval: " << engine.Describe() << "\n" << std::flush;
  // With skip_done, a result already in the run folder is kept (world rank 0 decides for all).
  const auto done = [&](const std::string& task) {
    const std::filesystem::path summary =
        std::filesystem::path(opt.out) / "eval" / task / "summary.json";
    const bool here = opt.skip_done && root && std::filesystem::is_regular_file(summary);
    const bool skip = BroadcastString(groups, here ? "1" : "0", 0) == "1";
    if (skip && root) {
      std::cout << fmt::format("{}: done ({}), not recomputed\n", task, summary.string());
    }
    return skip;
  };
  for (TaskOptions& t : plan.tasks) {
    if (done(t.task)) continue;
    t.batch_size = opt.batch_size * groups.world_size();  // every rank gets batch_size rows
    const TaskResult result = RunTask(t, engine, MakeProgress(t.task, root));
    if (!root) continue;
    const std::string dir = (std::filesystem::path(opt.out) / "eval" / t.task).string();
    WriteTaskOutputs(dir, result, t, info);
    std::cout << fmt::format("{}: {} = {:.2f} % over {} examples -> {}\n", t.task,
                             result.primary_metric, 100.0 * result.score, result.num_examples, dir);
    for (const std::string& note : result.notes) std::cout << "  note: " << note << "\n";
    std::cout << std::flush;
  }
  if (opt.latency && !done("latency")) {
    MeasureLatency(opt, engine, groups,
                   (std::filesystem::path(opt.out) / "eval" / "latency").string(), info);
  }
}

}  // namespace

void RunRecipeEval(const RecipeEvalRequest& request) {
  EvalOptions opt;
  opt.recipe = request.recipe;
  opt.overrides = request.overrides;
  opt.run_dir = request.run_dir;
  opt.model_override = request.model;
  opt.stage_override = request.stage;
  opt.label_override = request.label;
  opt.skip_done = request.skip_done;
  RunEval(opt);
}

void AddEvalCommand(CLI::App& app) {
  auto opt = std::make_shared<EvalOptions>();
  CLI::App* cmd = app.add_subcommand(
      "eval", "Score a model folder on IFEval, BBH, TruthfulQA MC2, GSM8K, HumanEval and latency");
  cmd->add_option("recipe", opt->recipe,
                  "A recipe whose eval section names the tasks (instead of --model and --task)");
  cmd->add_option("--set", opt->overrides, "With a recipe: override a field (field.path=value)");
  cmd->add_option("--run-dir", opt->run_dir, "With a recipe: the run folder");
  AddModelOptions(*cmd, *opt, /*require_model=*/false);
  cmd->add_option("--task", opt->tasks,
                  "Task (repeatable, paired with --data): ifeval, bbh, truthfulqa_mc2, gsm8k, "
                  "humaneval");
  cmd->add_option("--data", opt->data, "The task's data file (BBH: a file or folder)");
  cmd->add_option("--fewshot", opt->fewshot, "BBH: the folder of 3-shot prompts <subtask>.txt");
  cmd->add_option("--out", opt->out,
                  "Run folder: results go to OUT/eval/<task>/ (records.jsonl, summary.json)")
      ->capture_default_str();
  cmd->add_option("--label", opt->label,
                  "Row name in `cemoe report` (default: the model folder's name)");
  cmd->add_option("--stage", opt->stage, "pretrained, sft, distill or model (for `cemoe report`)")
      ->check(CLI::IsMember({"pretrained", "sft", "distill", "model"}))
      ->capture_default_str();
  cmd->add_flag("--chat", opt->chat, "Wrap prompts in the model's chat template");
  cmd->add_option("--chat-template", opt->chat_template,
                  "\"model\" (the folder's) or a built-in: tulu, phi3, chatml")
      ->capture_default_str();
  cmd->add_option("--limit", opt->limit, "Evaluate the first N examples (per BBH subtask); 0 = all")
      ->check(AtLeast(0))
      ->capture_default_str();
  cmd->add_option("--batch-size", opt->batch_size, "Rows per forward on one rank")
      ->check(AtLeast(1))
      ->capture_default_str();
  cmd->add_option("--max-new-tokens", opt->max_new_tokens, "0 = the task's default")
      ->check(AtLeast(0))
      ->capture_default_str();
  cmd->add_option("--samples", opt->samples, "HumanEval: completions per problem")
      ->check(AtLeast(1))
      ->capture_default_str();
  cmd->add_option("--temperature", opt->temperature, "HumanEval sampling; 0 = greedy")
      ->check(AtLeastReal(0.0))
      ->capture_default_str();
  cmd->add_option("--top-p", opt->top_p, "HumanEval nucleus mass")
      ->check(CLI::Range(0.0, 1.0))
      ->capture_default_str();
  cmd->add_option("--seed", opt->seed, "Sampling seed (and latency prompts)")
      ->capture_default_str();
  cmd->add_option("--pass-at", opt->pass_at, "HumanEval: the k of pass@k (repeatable)")
      ->check(AtLeast(1));
  cmd->add_option("--timeout", opt->timeout_s, "HumanEval: wall-clock seconds per program")
      ->check(AtLeastReal(0.1))
      ->capture_default_str();
  cmd->add_flag("--latency", opt->latency,
                "Also measure generation latency (the paper's protocol) -> OUT/eval/latency/");
  cmd->add_option("--latency-batch", opt->latency_batch, "Latency: prompts per iteration")
      ->check(AtLeast(1))
      ->capture_default_str();
  cmd->add_option("--latency-input", opt->latency_input, "Latency: prompt tokens")
      ->check(AtLeast(1))
      ->capture_default_str();
  cmd->add_option("--latency-new-tokens", opt->latency_new, "Latency: generated tokens")
      ->check(AtLeast(1))
      ->capture_default_str();
  cmd->add_option("--latency-warmup", opt->latency_warmup, "Latency: untimed iterations")
      ->check(AtLeast(0))
      ->capture_default_str();
  cmd->add_option("--latency-iters", opt->latency_iters, "Latency: timed iterations (mean)")
      ->check(AtLeast(1))
      ->capture_default_str();
  cmd->callback([opt] { RunEval(*opt); });
}

}  // namespace cemoe
