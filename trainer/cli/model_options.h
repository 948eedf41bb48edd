// model_options.h: the options every inference subcommand shares (`cemoe logits`, `generate`,
// `eval`, `bench latency`): the model folder, its routing at run time (top_k, compressed
// experts), the device, and expert parallelism under mpirun.
// Thread-safety: values; use while building and running one command.
#pragma once

#include <cstdint>
#include <string>

#include "trainer/runtime/distributed_model.h"

namespace CLI {
class App;
}

namespace cemoe {

struct ModelOptions {
  std::string model;
  int64_t top_k = 0;               // 0 = the checkpoint's
  bool compressed_experts = false;
  int64_t main_experts = -1;       // -1 = the checkpoint's (or top_k / 2 with the flag)
  std::string device = "cpu";
  int ep = 1;
  std::string placement = "contiguous";
};

// Adds --model (required when `require_model`), --top-k, --compressed-experts, --main-experts,
// --device, --ep, --placement to `cmd`. `balanced`: whether --placement accepts "balanced".
void AddModelOptions(CLI::App& cmd, ModelOptions& opt, bool require_model = true,
                     bool balanced = false);

// Checks the device and resolves main_experts as ModelRequest::main_experts wants it (-1 = the
// checkpoint's, 0 = off, K_m); errors name the option and value.
void ResolveModelOptions(ModelOptions& opt);

// The ModelRequest of the resolved options (placement policy parsed).
ModelRequest ToModelRequest(const ModelOptions& opt);

// The process layout of an inference command: --ep, MPI on CPU (NCCL where CUDA and available),
// the collective timeouts from the environment.
ParallelOptions InferenceParallelOptions(const ModelOptions& opt);

// "top_k 4" or "top_k 4: 2 main + 2 compressed" (after ResolveModelOptions).
std::string DescribeRouting(const ModelOptions& opt);

// Started by mpirun/srun (OpenMPI, PMI or PMIx environment) with more than one process.
bool LaunchedAsSeveralRanks();

}  // namespace cemoe
