// generate.cc: `cemoe generate` writes completions of a model folder for prompts given on the
// command line or in a JSONL file, with the generation engine (trainer/runtime/generation.h)
// under trainer/runtime/inference_session.h: batched, KV-cached, greedy or sampled, one process
// or expert-parallel under mpirun (every rank loads its experts; the prompts are split over the
// ranks; world rank 0 prints and writes).
//
// Input lines: {"prompt": "text"} or {"prompt_ids": [token ids]} (ids skip the tokenizer and
// the chat template). Output (--output FILE.jsonl, written atomically), one line per prompt and
// sample: {"index", "sample", "prompt", "completion", "completion_ids", "finish_reason",
// "num_tokens"} (+ "prompt_ids" for id prompts). Without --output the completions are printed, separated by lines of "-".
#include <fmt/format.h>

#include <CLI/CLI.hpp>
#include <iostream>
#include <memory>
#include <nlohmann/json.hpp>

#include "model/atomic_folder.h"
#include "model/check.h"
#include "model/json_file.h"
#include "parallel/process_groups.h"
#include "trainer/cli/checks.h"
#include "trainer/cli/commands.h"
#include "trainer/cli/model_options.h"
#include "trainer/eval/eval_data.h"
#include "trainer/runtime/inference_session.h"
#include "trainer/tokenizer/tokenizer.h"

namespace cemoe {

namespace {

struct GenerateOptions : ModelOptions {
  std::vector<std::string> prompts;
  std::string input, output;
  bool chat = false;
  std::string chat_template = "model";
  int64_t max_new_tokens = 128;
  double temperature = 0.0, top_p = 1.0;
  int64_t sample_top_k = 0;
  uint64_t seed = 0;
  int64_t num_samples = 1;
  std::vector<std::string> stop;
  int64_t batch_size = 8;
  std::string padding = "left";
};

// One prompt: text (through the chat template when asked) or token ids as given.
struct PromptInput {
  std::string text;
  std::vector<int64_t> ids;
};

std::vector<PromptInput> ReadPrompts(const GenerateOptions& opt) {
  std::vector<PromptInput> out;
  for (const std::string& p : opt.prompts) out.push_back({p, {}});
  if (!opt.input.empty()) {
    for (const EvalExample& ex : ReadEvalJsonl(opt.input, {})) {
      PromptInput in;
      if (ex.value.contains("prompt_ids")) {
        const nlohmann::json& ids = ex.value["prompt_ids"];
        CEMOE_CHECK(ids.is_array() && !ids.empty(),
                    "{}:{}: \"prompt_ids\" must be a non-empty list of token ids, got {}",
                    opt.input, ex.line, JsonExcerpt(ids));
        for (size_t i = 0; i < ids.size(); ++i) {
          in.ids.push_back(JsonInt64(ids[i], fmt::format("{}:{}: prompt_ids[{}]", opt.input, ex.line, i)));
        }
      } else {
        in.text = EvalString(ex, opt.input, "prompt");
      }
      out.push_back(std::move(in));
    }
  }
  CEMOE_CHECK(!out.empty(), "cemoe generate: give --prompt TEXT or --input FILE.jsonl");
  return out;
}

void RunGenerate(GenerateOptions& opt) {
  ResolveModelOptions(opt);
  const std::vector<PromptInput> inputs = ReadPrompts(opt);
  if (!opt.output.empty()) {
    const std::filesystem::path dir = std::filesystem::absolute(opt.output).parent_path();
    CEMOE_CHECK(std::filesystem::is_directory(dir), "--output {}: the folder {} does not exist",
                opt.output, dir.string());
  }
  MpiSession session(nullptr, nullptr);
  ProcessGroups groups(session, InferenceParallelOptions(opt));
  InferenceOptions io;
  io.model = ToModelRequest(opt);
  io.chat_template = opt.chat_template;
  io.batch_size = opt.batch_size;
  io.pad_left = opt.padding == "left";
  InferenceSession engine(io, groups, session.local_rank());
  std::vector<std::vector<int64_t>> ids;
  std::vector<std::string> shown;
  for (size_t i = 0; i < inputs.size(); ++i) {
    if (!inputs[i].ids.empty()) {
      ids.push_back(inputs[i].ids);
      shown.push_back("");  // ids as given: no text
      continue;
    }
    const std::string text = opt.chat ? engine.FormatChat(inputs[i].text) : inputs[i].text;
    ids.push_back(engine.tokenizer().Encode(text));
    CEMOE_CHECK(!ids.back().empty(), "prompt {} encodes to no tokens", i);
    shown.push_back(text);
  }
  SamplingOptions sampling;
  sampling.max_new_tokens = opt.max_new_tokens;
  sampling.temperature = opt.temperature;
  sampling.top_p = opt.top_p;
  sampling.top_k = opt.sample_top_k;
  sampling.seed = opt.seed;
  sampling.stop = opt.stop;
  sampling.num_samples = opt.num_samples;
  const std::vector<GeneratedRow> rows = engine.GenerateIds(ids, sampling);
  if (groups.world_rank() != 0) return;
  std::string jsonl;
  for (size_t r = 0; r < rows.size(); ++r) {
    const size_t i = r / opt.num_samples;
    nlohmann::json line = {{"index", i},
                                 {"sample", r % opt.num_samples},
                                 {"prompt", shown[i]},
                                 {"completion", rows[r].text},
                                 {"completion_ids", rows[r].tokens},
                                 {"finish_reason", rows[r].finish_reason},
                                 {"num_tokens", rows[r].tokens.size()}};
    if (!inputs[i].ids.empty()) line["prompt_ids"] = inputs[i].ids;
    jsonl += line.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace) + "\n";
    if (opt.output.empty()) {
      std::cout << rows[r].text << "\n" << std::string(40, '-') << "\n";
    }
  }
  if (!opt.output.empty()) {
    WriteTextFileAtomically(opt.output, jsonl);
    std::cout << fmt::format("generate: {} completion(s) of {} ({}, {} rank{}) -> {}\n",
                             rows.size(), opt.model, DescribeRouting(opt), groups.world_size(),
                             groups.world_size() == 1 ? "" : "s", opt.output);
  }
}

}  // namespace

void AddGenerateCommand(CLI::App& app) {
  auto opt = std::make_shared<GenerateOptions>();
  CLI::App* cmd = app.add_subcommand(
      "generate", "Complete prompts with a model folder (KV cache; greedy or sampled)");
  AddModelOptions(*cmd, *opt);
  cmd->add_option("--prompt", opt->prompts, "A prompt (repeatable)");
  cmd->add_option("--input", opt->input,
                  "JSONL file: {\"prompt\": text} or {\"prompt_ids\": [ids]} per line");
  cmd->add_option("--output", opt->output, "Write the completions as JSONL here");
  cmd->add_flag("--chat", opt->chat, "Apply the chat template to text prompts (one user turn)");
  cmd->add_option("--chat-template", opt->chat_template,
                  "\"model\" (the folder's) or a built-in: tulu, phi3, chatml")
      ->capture_default_str();
  cmd->add_option("--max-new-tokens", opt->max_new_tokens, "New tokens per completion at most")
      ->check(AtLeast(1))
      ->capture_default_str();
  cmd->add_option("--temperature", opt->temperature, "0 = greedy")
      ->check(AtLeastReal(0.0))
      ->capture_default_str();
  cmd->add_option("--top-p", opt->top_p, "Nucleus sampling mass (0, 1]")
      ->check(CLI::Range(0.0, 1.0))
      ->capture_default_str();
  cmd->add_option("--sample-top-k", opt->sample_top_k,
                  "Sample among the k most likely tokens (0 = all)")
      ->check(AtLeast(0))
      ->capture_default_str();
  cmd->add_option("--seed", opt->seed, "Sampling seed")->capture_default_str();
  cmd->add_option("--num-samples", opt->num_samples, "Completions per prompt")
      ->check(AtLeast(1))
      ->capture_default_str();
  cmd->add_option("--stop", opt->stop, "Stop string (repeatable); the completion ends before it");
  cmd->add_option("--batch-size", opt->batch_size, "Prompts per forward on one rank")
      ->check(AtLeast(1))
      ->capture_default_str();
  cmd->add_option("--padding", opt->padding, "Padding side of a batch: left or right")
      ->check(CLI::IsMember({"left", "right"}))
      ->capture_default_str();
  cmd->callback([opt] { RunGenerate(*opt); });
}

}  // namespace cemoe
