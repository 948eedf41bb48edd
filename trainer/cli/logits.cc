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
#include "trainer/runtime/logits.h"

namespace cemoe {

namespace {

struct LogitsOptions {
  std::string model, tokens, out;
  int64_t top_k = 0;
  bool compressed_experts = false;
  int64_t main_experts = -1;  // -1 = as the checkpoint (or the default K_m with the flag)
  std::string device = "cpu";
  int ep = 1;
  std::string placement = "contiguous";
};

// Routing of the run: top_k (0 = the checkpoint's) and ModelRequest::main_experts.
void ResolveRouting(LogitsOptions& opt) {
  const ModelConfig config = LoadModelConfig(opt.model);
  const int64_t top_k = opt.top_k > 0 ? opt.top_k : config.num_experts_per_tok;
  if (opt.compressed_experts && opt.main_experts < 0) {
    opt.main_experts = config.ce_main_experts > 0 && top_k == config.num_experts_per_tok
                           ? config.ce_main_experts
                           : top_k / 2;
  }
  if (opt.main_experts > 0 || (opt.main_experts < 0 && config.ce_main_experts > 0)) {
    const int64_t main = opt.main_experts > 0 ? opt.main_experts : config.ce_main_experts;
    CEMOE_CHECK(main >= 1 && main < top_k,
                "--main-experts {}: compressed experts need 1 <= main experts < top_k ({})", main,
                top_k);
  }
}

std::string DescribeRouting(const LogitsOptions& opt) {
  const ModelConfig config = LoadModelConfig(opt.model);
  const int64_t top_k = opt.top_k > 0 ? opt.top_k : config.num_experts_per_tok;
  const int64_t main = opt.main_experts >= 0 ? opt.main_experts : config.ce_main_experts;
  if (main == 0) return fmt::format("top_k {}", top_k);
  return fmt::format("top_k {}: {} main + {} compressed", top_k, main, top_k - main);
}

void RunExpertParallel(const LogitsOptions& opt) {
  MpiSession session(nullptr, nullptr);
  ParallelOptions options;
  options.ep = opt.ep;
  options.backend = opt.device == "cuda" ? "auto" : "mpi";
  // CEMOE_COLLECTIVE_TIMEOUT_S and CEMOE_LOAD_TIMEOUT_S, or their defaults (300 s, 3600 s).
  options.collectives = CollectiveOptionsFromEnvironment();
  ProcessGroups groups(session, options);
  ModelRequest request;
  request.dir = opt.model;
  request.policy = ParsePlacementPolicy(opt.placement);
  request.top_k = opt.top_k;
  request.main_experts = opt.main_experts;
  request.device = opt.device;
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

// Started by mpirun/srun (OpenMPI, PMI or PMIx environment) with more than one process.
bool LaunchedAsSeveralRanks() {
  for (const char* var : {"OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "PMIX_SIZE"}) {
    if (const char* v = std::getenv(var)) {
      if (std::atoi(v) > 1) return true;
    }
  }
  return false;
}

}  // namespace

void AddLogitsCommand(CLI::App& app) {
  using Options = LogitsOptions;
  auto opt = std::make_shared<Options>();
  CLI::App* cmd = app.add_subcommand(
      "logits", "Compute float32 logits [batch, seq, vocab] of a model folder on token ids");
  cmd->add_option("--model", opt->model, "Model folder (config.json + safetensors)")->required();
  cmd->add_option("--tokens", opt->tokens, "JSON file: a list of equal-length lists of token ids")
      ->required();
  cmd->add_option("--out", opt->out, "Output .safetensors file (tensor \"logits\")")->required();
  cmd->add_option("--top-k", opt->top_k,
                  "Active experts per token (0 = the checkpoint's num_experts_per_tok)")
      ->check(AtLeast(0))
      ->capture_default_str();
  cmd->add_flag("--compressed-experts", opt->compressed_experts,
               "Run the first --main-experts of the top-k in full and the rest as compressed "
               "experts (vectors of ones when the checkpoint has none)");
  cmd->add_option("--main-experts", opt->main_experts,
                  "Main experts per token with compressed experts (default: the checkpoint's, "
                  "else top-k / 2); 0 turns a checkpoint's compressed experts off")
      ->check(AtLeast(0));
  cmd->add_option("--device", opt->device, "cpu or cuda (the first GPU)")
      ->check(CLI::IsMember({"cpu", "cuda"}))
      ->capture_default_str();
  cmd->add_option("--ep", opt->ep,
                  "Expert-parallel size: ranks that split each layer's experts (under mpirun; "
                  "must divide the number of ranks and the number of experts)")
      ->check(AtLeast(1))
      ->capture_default_str();
  cmd->add_option("--placement", opt->placement,
                  "Expert placement over the EP ranks: contiguous, round_robin, or balanced "
                  "(by the routed load of the given tokens)")
      ->check(CLI::IsMember({"contiguous", "round_robin", "balanced"}))
      ->capture_default_str();
  cmd->callback([opt] {
    CEMOE_CHECK(opt->device == "cpu" || torch::cuda::is_available(),
                "--device cuda: no CUDA device is available (or this build has no CUDA)");
    // Checked before the model runs, so a typo in --out does not cost a whole forward pass.
    const std::filesystem::path out_dir = std::filesystem::absolute(opt->out).parent_path();
    CEMOE_CHECK(std::filesystem::is_directory(out_dir), "--out {}: the folder {} does not exist",
                opt->out, out_dir.string());
    ResolveRouting(*opt);
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
