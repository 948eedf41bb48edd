// logits.cc: `cemoe logits` runs a model folder on a batch of token ids and writes float32
// logits [batch, seq, vocab] under the tensor name "logits" (the computation:
// trainer/runtime/logits.h).
// Under mpirun (or with --ep > 1) it runs expert-parallel: world = dp x ep, each rank loads the
// dense weights and only its experts (parallel/sharded_checkpoint.h), the batch rows are split
// over the world ranks, tokens travel to their experts by all-to-all, and rank 0 gathers the
// logits and writes the file. Rank 0 prints the layout and the placement at start-up.
#include <ATen/ATen.h>
#include <fmt/format.h>
#include <torch/cuda.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <iostream>
#include <nlohmann/json.hpp>
#include <utility>

#include "model/check.h"
#include "model/config.h"
#include "model/safetensors.h"
#include "parallel/process_groups.h"
#include "trainer/cli/checks.h"
#include "trainer/cli/commands.h"
#include "trainer/cli/model_options.h"
#include "trainer/runtime/logits.h"

namespace cemoe {

namespace {

struct LogitsOptions : ModelOptions {
  std::string tokens, out;
};

void RunExpertParallel(const LogitsOptions& opt) {
  MpiSession session(nullptr, nullptr);
  ProcessGroups groups(session, InferenceParallelOptions(opt));
  ModelRequest request = ToModelRequest(opt);
  std::string log;
  const at::Tensor all_tokens = ReadTokenBatch(opt.tokens);
  at::Tensor logits =
      ComputeLogitsExpertParallel(request, all_tokens, opt.tokens, groups, session.local_rank(), &log);
  if (groups.world_rank() == 0) {
    std::cout << log << std::flush;
    SaveSafetensors(opt.out, {{"logits", logits}}, {{"format", "pt"}});
    std::cout << fmt::format("logits: [{}, {}, {}] ({}, {} ranks) -> {}\n", logits.size(0),
                             logits.size(1), logits.size(2), DescribeRouting(opt),
                             groups.world_size(), opt.out);
  }
}

}  // namespace

void AddLogitsCommand(CLI::App& app) {
  using Options = LogitsOptions;
  auto opt = std::make_shared<Options>();
  CLI::App* cmd = app.add_subcommand(
      "logits", "Compute float32 logits [batch, seq, vocab] of a model folder on token ids");
  cmd->add_option("--tokens", opt->tokens, "JSON file: a list of equal-length lists of token ids")
      ->required();
  cmd->add_option("--out", opt->out, "Output .safetensors file (tensor \"logits\")")->required();
  AddModelOptions(*cmd, *opt, /*require_model=*/true, /*balanced=*/true);
  cmd->callback([opt] {
    // Checked before the model runs, so a typo in --out does not cost a whole forward pass.
    const std::filesystem::path out_dir = std::filesystem::absolute(opt->out).parent_path();
    CEMOE_CHECK(std::filesystem::is_directory(out_dir), "--out {}: the folder {} does not exist",
                opt->out, out_dir.string());
    ResolveModelOptions(*opt);
    if (opt->ep > 1 || LaunchedAsSeveralRanks()) {
      RunExpertParallel(*opt);
      return;
    }
    const at::Tensor logits =
        ComputeLogits(opt->model, ReadTokenBatch(opt->tokens), opt->top_k, opt->device,
                      opt->main_experts);
    SaveSafetensors(opt->out, {{"logits", logits}}, {{"format", "pt"}});
    std::cout << fmt::format("logits: [{}, {}, {}] ({}) -> {}\n", logits.size(0),
                             logits.size(1), logits.size(2), DescribeRouting(*opt), opt->out);
  });
}

}  // namespace cemoe
