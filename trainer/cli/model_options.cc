#include "trainer/cli/model_options.h"

#include <fmt/format.h>
#include <torch/cuda.h>

#include <CLI/CLI.hpp>
#include <cstdlib>

#include "model/check.h"
#include "model/config.h"
#include "trainer/cli/checks.h"

namespace cemoe {

void AddModelOptions(CLI::App& cmd, ModelOptions& opt, bool require_model, bool balanced) {
  CLI::Option* model =
      cmd.add_option("--model", opt.model, "Model folder (config.json + safetensors)");
  if (require_model) model->required();
  cmd.add_option("--top-k", opt.top_k,
                 "Active experts per token (0 = the checkpoint's num_experts_per_tok)")
      ->check(AtLeast(0))
      ->capture_default_str();
  cmd.add_flag("--compressed-experts", opt.compressed_experts,
               "Run the first --main-experts of the top-k in full and the rest as compressed "
               "experts (vectors of ones when the checkpoint has none)");
  cmd.add_option("--main-experts", opt.main_experts,
                 "Main experts per token with compressed experts (default: the checkpoint's, "
                 "else top-k / 2); 0 turns a checkpoint's compressed experts off")
      ->check(AtLeast(0));
  cmd.add_option("--device", opt.device, "cpu or cuda (the first GPU)")
      ->check(CLI::IsMember({"cpu", "cuda"}))
      ->capture_default_str();
  cmd.add_option("--ep", opt.ep,
                 "Expert-parallel size: ranks that split each layer's experts (under mpirun; "
                 "must divide the number of ranks and the number of experts)")
      ->check(AtLeast(1))
      ->capture_default_str();
  if (balanced) {
    cmd.add_option("--placement", opt.placement,
                   "Expert placement over the EP ranks: contiguous, round_robin, or balanced "
                   "(by the routed load of the given tokens)")
        ->check(CLI::IsMember({"contiguous", "round_robin", "balanced"}))
        ->capture_default_str();
  } else {
    cmd.add_option("--placement", opt.placement,
                   "Expert placement over the EP ranks: contiguous or round_robin")
        ->check(CLI::IsMember({"contiguous", "round_robin"}))
        ->capture_default_str();
  }
}

void ResolveModelOptions(ModelOptions& opt) {
  CEMOE_CHECK(opt.device == "cpu" || torch::cuda::is_available(),
              "--device cuda: no CUDA device is available (or this build has no CUDA)");
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

ModelRequest ToModelRequest(const ModelOptions& opt) {
  ModelRequest request;
  request.dir = opt.model;
  request.policy = ParsePlacementPolicy(opt.placement);
  request.top_k = opt.top_k;
  request.main_experts = opt.main_experts;
  request.device = opt.device;
  return request;
}

ParallelOptions InferenceParallelOptions(const ModelOptions& opt) {
  ParallelOptions options;
  options.ep = opt.ep;
  options.backend = opt.device == "cuda" ? "auto" : "mpi";
  // CEMOE_COLLECTIVE_TIMEOUT_S and CEMOE_LOAD_TIMEOUT_S, or their defaults (300 s, 3600 s).
  options.collectives = CollectiveOptionsFromEnvironment();
  return options;
}

std::string DescribeRouting(const ModelOptions& opt) {
  const ModelConfig config = LoadModelConfig(opt.model);
  const int64_t top_k = opt.top_k > 0 ? opt.top_k : config.num_experts_per_tok;
  const int64_t main = opt.main_experts >= 0 ? opt.main_experts : config.ce_main_experts;
  if (main == 0) return fmt::format("top_k {}", top_k);
  return fmt::format("top_k {}: {} main + {} compressed", top_k, main, top_k - main);
}

bool LaunchedAsSeveralRanks() {
  for (const char* var : {"OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "PMIX_SIZE"}) {
    if (const char* v = std::getenv(var)) {
      if (std::atoi(v) > 1) return true;
    }
  }
  return false;
}

}  // namespace cemoe
