// humaneval.cc: HumanEval (Chen et al. 2021), scored as lm-evaluation-harness's `humaneval` task
// (and `humaneval_instruct` with options.chat), commit 4e7e0d47 (v0.4.12-48), files
// lm_eval/tasks/humaneval/{humaneval.yaml, humaneval_instruct.yaml, utils.py}:
//   prompt      doc["prompt"] (chat: FormatChat(instruction) + gen_prefix, below)
//   generation  until ["\nclass", "\ndef", "\n#", "\nif", "\nprint"], max_gen_toks 1024
//   program     doc["prompt"] + completion + "\n" + doc["test"] + "\n" + "check(<entry_point>)"
//               (chat: the completion is cut at its first "```", utils.build_predictions_instruct)
//   metric      pass@k by the Codex paper's unbiased estimator (pass_at_k.h) over n samples
// Each program runs in the code sandbox (code_sandbox.h); a problem's sample passes when the
// program exits 0 within the limits. docs/evaluation.d/humaneval.md describes the task.
#include <fmt/format.h>
#include <fmt/ranges.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstdlib>
#include <map>
#include <set>
#include <string>
#include <vector>

#include "model/check.h"
#include "model/json_file.h"
#include "trainer/eval/code_sandbox.h"
#include "trainer/eval/eval_data.h"
#include "trainer/eval/humaneval.h"
#include "trainer/eval/pass_at_k.h"
#include "trainer/eval/task.h"

namespace cemoe {

namespace {

constexpr const char* kHarnessVersion = "lm-evaluation-harness v0.4.12-48-g4e7e0d47";
constexpr int64_t kDefaultMaxNewTokens = 1024;  // humaneval.yaml max_gen_toks
constexpr size_t kRunOutputChars = 1000;        // of a failed run's output, kept in the record

// humaneval_instruct.yaml (metadata version 4.0): doc_to_text and gen_prefix around the prompt.
constexpr const char* kInstructionHead =
    "Write a solution to the following problem and make sure that it passes the tests:\n"
    "```python\n";
constexpr const char* kInstructionTail = "\n```\n";
constexpr const char* kGenPrefixHead = "Here is the completed function:\n```python\n";

const std::vector<std::string>& StopStrings() {
  static const std::vector<std::string> stop = {"\nclass", "\ndef", "\n#", "\nif", "\nprint"};
  return stop;
}

struct Problem {
  std::string task_id;
  std::string prompt;  // the function signature and docstring the model completes
  std::string test;    // defines check(candidate)
  std::string entry_point;
};

// The text the model continues.
std::string ModelPrompt(const Problem& p, bool chat, EvalModel& model) {
  if (!chat) return p.prompt;
  return model.FormatChat(HumanEvalInstruction(p.prompt)) + HumanEvalGenPrefix(p.prompt);
}

// The part of a generation that goes into the program (utils.build_predictions[_instruct]).
std::string ProgramCompletion(const std::string& generation, bool chat) {
  if (!chat) return generation;
  const size_t fence = generation.find("```");
  return fence == std::string::npos ? generation : generation.substr(0, fence);
}

std::string Program(const Problem& p, const std::string& completion) {
  return p.prompt + completion + "\n" + p.test + "\n" + "check(" + p.entry_point + ")";
}

// An integer from the environment variable `name`, or `fallback` when unset.
int64_t EnvInt(const char* name, int64_t fallback, int64_t min_value) {
  const char* text = std::getenv(name);
  if (text == nullptr || *text == '\0') return fallback;
  char* end = nullptr;
  errno = 0;
  const long long value = std::strtoll(text, &end, 10);
  CEMOE_CHECK(errno == 0 && *end == '\0' && value >= min_value,
              "{}=\"{}\" must be an integer >= {}", name, Excerpt(text, 40), min_value);
  return value;
}

// The sandbox of a HumanEval run: options.timeout_s per program, the interpreter from
// CEMOE_PYTHON (default python3), the worker count from CEMOE_SANDBOX_WORKERS (default: the CPUs
// this process may use).
SandboxOptions HumanEvalSandbox(const TaskOptions& options) {
  SandboxOptions s;
  s.wall_limit_s = options.timeout_s;
  const char* python = std::getenv("CEMOE_PYTHON");
  if (python != nullptr && *python != '\0') s.python = python;
  return s;
}

void CheckHumanEvalOptions(const TaskOptions& o) {
  CEMOE_CHECK(!o.data.empty(),
              "humaneval needs its data file (HumanEval.jsonl: task_id, prompt, test, "
              "entry_point per line; see docs/evaluation.md)");
  const std::string gz = ".gz";
  CEMOE_CHECK(
      o.data.size() < gz.size() || o.data.compare(o.data.size() - gz.size(), gz.size(), gz) != 0,
      "humaneval data {} is gzipped; decompress it first (gzip -dk {})", o.data, o.data);
  CEMOE_CHECK(o.samples >= 1 && o.samples <= 100000,
              "humaneval samples (completions per problem) must be in [1, 100000], got {}",
              o.samples);
  CEMOE_CHECK(o.batch_size >= 1, "humaneval batch_size must be >= 1, got {}", o.batch_size);
  CEMOE_CHECK(o.max_new_tokens >= 0, "humaneval max_new_tokens must be >= 0 (0 = {}), got {}",
              kDefaultMaxNewTokens, o.max_new_tokens);
  CEMOE_CHECK(std::isfinite(o.temperature) && o.temperature >= 0,
              "humaneval temperature must be >= 0, got {}", o.temperature);
  CEMOE_CHECK(std::isfinite(o.top_p) && o.top_p > 0 && o.top_p <= 1,
              "humaneval top_p must be in (0, 1], got {}", o.top_p);
  CEMOE_CHECK(std::isfinite(o.timeout_s) && o.timeout_s > 0 && o.timeout_s <= 3600,
              "humaneval timeout_s (per program) must be in (0, 3600] seconds, got {}",
              o.timeout_s);
  for (const int64_t k : o.pass_at) {
    CEMOE_CHECK(k >= 1, "humaneval pass_at values must be >= 1, got {}", k);
  }
}

// The sandbox results as JSON text and back (shared from rank 0 under mpirun).
std::string SandboxResultsToJson(const std::vector<SandboxResult>& runs) {
  nlohmann::json j = nlohmann::json::array();
  for (const SandboxResult& r : runs) {
    j.push_back({{"passed", r.passed}, {"status", r.status}, {"exit_code", r.exit_code},
                 {"signal", r.signal}, {"wall_s", r.wall_s}, {"output", r.output},
                 {"network", r.network}, {"work_dir", r.work_dir}});
  }
  return j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

std::vector<SandboxResult> SandboxResultsFromJson(const std::string& text) {
  std::vector<SandboxResult> runs;
  for (const nlohmann::json& j : nlohmann::json::parse(text)) {
    SandboxResult r;
    r.passed = j.at("passed").get<bool>();
    r.status = j.at("status").get<std::string>();
    r.exit_code = j.at("exit_code").get<int>();
    r.signal = j.at("signal").get<int>();
    r.wall_s = j.at("wall_s").get<double>();
    r.output = j.at("output").get<std::string>();
    r.network = j.at("network").get<std::string>();
    r.work_dir = j.at("work_dir").get<std::string>();
    runs.push_back(std::move(r));
  }
  return runs;
}

}  // namespace

std::string HumanEvalInstruction(const std::string& prompt) {
  return kInstructionHead + prompt + kInstructionTail;
}

std::string HumanEvalGenPrefix(const std::string& prompt) { return kGenPrefixHead + prompt + "\n"; }

TaskResult RunHumanEval(const TaskOptions& options, EvalModel& model, const ProgressFn& progress) {
  CheckHumanEvalOptions(options);
  // The interpreter is found and tried before any generation: a missing python3 is an error
  // now, not after hours of sampling.
  // Programs run on world rank 0 only (EvalModel::IsRoot); the others receive the results.
  const SandboxOptions sandbox = model.IsRoot() ? ResolveSandboxPython(HumanEvalSandbox(options))
                                                : HumanEvalSandbox(options);
  const int64_t workers = EnvInt("CEMOE_SANDBOX_WORKERS", 0, 0);

  const std::vector<EvalExample> examples =
      ReadEvalJsonl(options.data, {"task_id", "prompt", "test", "entry_point"}, options.limit);
  std::vector<Problem> problems;
  std::vector<std::string> prompts;
  for (const EvalExample& ex : examples) {
    Problem p;
    p.task_id = EvalString(ex, options.data, "task_id");
    p.prompt = EvalString(ex, options.data, "prompt");
    p.test = EvalString(ex, options.data, "test");
    p.entry_point = EvalString(ex, options.data, "entry_point");
    prompts.push_back(ModelPrompt(p, options.chat, model));
    problems.push_back(std::move(p));
  }
  const int64_t num_problems = static_cast<int64_t>(problems.size());
  const int64_t n = options.samples;

  SamplingOptions sampling;
  sampling.max_new_tokens =
      options.max_new_tokens > 0 ? options.max_new_tokens : kDefaultMaxNewTokens;
  sampling.temperature = options.temperature;
  sampling.top_p = options.top_p;
  sampling.seed = options.seed;
  sampling.stop = StopStrings();
  sampling.num_samples = n;

  // Generation, in chunks of batch_size problems (n completions each, problem-major).
  const std::vector<Generation> generations =
      GenerateInChunks("humaneval", model, prompts, sampling, options.batch_size, progress);

  // Every sample's program, run in the sandbox.
  std::vector<std::string> completions(generations.size());
  std::vector<std::string> programs(generations.size());
  for (size_t i = 0; i < generations.size(); ++i) {
    completions[i] = ProgramCompletion(generations[i].text, options.chat);
    programs[i] = Program(problems[i / static_cast<size_t>(n)], completions[i]);
  }
  const std::vector<SandboxResult> runs = SandboxResultsFromJson(model.ShareFromRoot(
      model.IsRoot() ? SandboxResultsToJson(RunPythonPrograms(programs, sandbox, workers))
                     : std::string()));
  CEMOE_CHECK(runs.size() == programs.size(), "humaneval: {} program results for {} programs",
              runs.size(), programs.size());

  TaskResult result;
  result.task = "humaneval";
  result.num_examples = num_problems;
  std::vector<int64_t> num_correct(static_cast<size_t>(num_problems), 0);
  std::map<std::string, int64_t> status_counts;
  std::map<std::string, int64_t> network_counts;
  for (int64_t i = 0; i < num_problems; ++i) {
    nlohmann::json outputs = nlohmann::json::array();
    nlohmann::json extracted = nlohmann::json::array();
    nlohmann::json statuses = nlohmann::json::array();
    nlohmann::json details = nlohmann::json::array();
    for (int64_t j = 0; j < n; ++j) {
      const size_t s = static_cast<size_t>(i * n + j);
      const SandboxResult& run = runs[s];
      if (run.passed) ++num_correct[static_cast<size_t>(i)];
      ++status_counts[run.status];
      ++network_counts[run.network];
      outputs.push_back(generations[s].text);
      extracted.push_back(completions[s]);
      statuses.push_back(run.status);
      std::string tail = run.passed ? std::string() : run.output;
      if (tail.size() > kRunOutputChars) tail = "..." + tail.substr(tail.size() - kRunOutputChars);
      details.push_back({{"status", run.status},
                         {"exit_code", run.exit_code},
                         {"signal", run.signal},
                         {"wall_s", std::round(run.wall_s * 1000.0) / 1000.0},
                         {"finish_reason", generations[s].finish_reason},
                         {"num_tokens", generations[s].num_tokens},
                         {"output", tail}});
    }
    const int64_t c = num_correct[static_cast<size_t>(i)];
    nlohmann::json record = {
        {"index", i},
        {"task_id", problems[static_cast<size_t>(i)].task_id},
        {"prompt", prompts[static_cast<size_t>(i)]},
        {"output", n == 1 ? outputs[0] : outputs},
        {"extracted", n == 1 ? extracted[0] : extracted},
        {"correct", static_cast<double>(c) / static_cast<double>(n)},
        {"num_correct", c},
        {"num_samples", n},
        {"statuses", statuses},
        {"runs", details},
    };
    result.records.push_back(std::move(record));
  }

  // pass@k for every requested k <= n, and pass@1 always.
  std::set<int64_t> ks(options.pass_at.begin(), options.pass_at.end());
  ks.insert(1);
  for (const int64_t k : ks) {
    if (k > n) {
      result.notes.push_back(fmt::format(
          "pass@{} not computed: it needs at least {} samples per problem, got {}", k, k, n));
      continue;
    }
    result.metrics[fmt::format("pass@{}", k)] = MeanPassAtK(n, num_correct, k);
  }
  const bool pass_at_10 = n >= 10 && std::find(options.pass_at.begin(), options.pass_at.end(),
                                               10) != options.pass_at.end();
  result.primary_metric = pass_at_10 ? "pass@10" : "pass@1";
  result.score = result.metrics[result.primary_metric].get<double>();
  result.harness = fmt::format("{} {} (0-shot{})", kHarnessVersion,
                               options.chat ? "humaneval_instruct v4.0" : "humaneval v1.0",
                               n > 1 ? fmt::format(", {} samples per problem", n) : "");

  if (n > 1 && options.temperature == 0.0) {
    result.notes.push_back(
        fmt::format("{} samples at temperature 0 (greedy) are {} copies of one completion", n, n));
  }
  std::vector<std::string> parts;
  for (const auto& [status, count] : status_counts)
    parts.push_back(fmt::format("{} {}", status, count));
  std::vector<std::string> nets;
  for (const auto& [net, count] : network_counts) nets.push_back(fmt::format("{} {}", net, count));
  result.notes.push_back(fmt::format(
      "sandbox: {} program runs with {} (timeout {} s, {} workers); statuses: {}; network "
      "blocked by: {}",
      runs.size(), sandbox.python, options.timeout_s,
      workers > 0 ? workers : DefaultSandboxWorkers(), fmt::join(parts, ", "),
      fmt::join(nets, ", ")));
  return result;
}

}  // namespace cemoe
