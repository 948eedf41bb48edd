// ce_grads: the C++ side of the gradient cases of the compressed-experts oracle
// (tests/oracle/ce_oracle.py). Run under mpiexec (or alone):
//   [mpiexec -n N] ce_grads MODEL BATCH OUT EP TOP_K MAIN_EXPERTS AGGREGATION
// MODEL is a Hugging Face folder (float32) with or without compressed experts, BATCH a
// safetensors file with int64 "tokens" [B, S] and "targets" [B, S] (-100 = no loss). World rank
// w takes rows [B*w/N, B*(w+1)/N) and loads only its experts (round_robin placement at
// expert-parallel size EP). TOP_K 0 keeps the checkpoint's; MAIN_EXPERTS -1 keeps the
// checkpoint's compressed experts, 0 turns them off, K_m > 0 turns them on
// (CausalLMImpl::set_compressed_experts); AGGREGATION is "experts" or "source"
// (model/moe/compressed_experts.h). Then, in train mode, the trainer's own gradient code:
//   trainable = SelectTrainable(model, no freeze, no_decay {"norm", "bias"}): every parameter,
//               the compressed-expert vectors included;
//   grads     = ComputeGradients (trainer/sft/train_step.h) on one micro-batch (the rank's rows):
//               loss = sum of token cross-entropies / global number of loss tokens, backward,
//               ReduceGradients (dense parameters, the CE vectors among them, over the world;
//               experts over edp); no clipping, no auxiliary losses.
// It writes, through the expert-parallel checkpoint writer (Hugging Face names, experts by
// global id, the CE in the checkpoint's layout, float32):
//   OUT/grads/        the reduced gradients, in place of the weights (zeros where none)
//   OUT/result.json   (rank 0) {"loss", "grad_norm", "loss_tokens", "world", "ep"}
// Exit 0 on success; on error one line on stderr and exit 1.
#include <ATen/ATen.h>
#include <torch/types.h>

#include <cstdlib>
#include <exception>
#include <fstream>
#include <iostream>
#include <stdexcept>
#include <string>
#include <vector>

#include "model/causal_lm.h"
#include "model/safetensors.h"
#include "parallel/model_sharding.h"
#include "parallel/process_groups.h"
#include "parallel/sharded_checkpoint.h"
#include "trainer/sft/train_step.h"
#include "trainer/sft/trainable.h"

namespace {

int Run(int argc, char** argv) {
  cemoe::MpiSession session(&argc, &argv);
  const std::string model_dir = argv[1], batch_path = argv[2], out = argv[3];
  cemoe::ParallelOptions options;
  options.ep = std::atoi(argv[4]);
  options.backend = "mpi";
  options.collectives.timeout_s = 120;
  const int64_t top_k = std::atoll(argv[5]), main_experts = std::atoll(argv[6]);
  const std::string aggregation = argv[7];
  if (aggregation != "experts" && aggregation != "source") {
    throw std::runtime_error("AGGREGATION must be experts or source, got " + aggregation);
  }
  cemoe::ProcessGroups groups(session, options);

  const cemoe::SafetensorsFile batch(batch_path);
  const at::Tensor tokens_BS = batch.Get("tokens"), targets_BS = batch.Get("targets");
  const int64_t B = tokens_BS.size(0);
  const int w = groups.world_rank(), n = groups.world_size();
  const int64_t begin = B * w / n, end = B * (w + 1) / n;

  const cemoe::ModelPlacement placement = cemoe::ChooseModelPlacement(
      model_dir, groups, cemoe::PlacementPolicy::kRoundRobin, at::Tensor(), 0);
  cemoe::CausalLM model = cemoe::LoadExpertParallelModel(model_dir, groups, placement);
  if (top_k > 0) model->set_top_k(top_k);
  if (main_experts >= 0) model->set_compressed_experts(main_experts);
  for (cemoe::MoeLayer& layer : model->moe_layers()) {
    if (!layer->compressed_experts.is_empty()) {
      layer->compressed_experts->set_aggregation(aggregation == "source"
                                                     ? cemoe::CeAggregation::kAtSource
                                                     : cemoe::CeAggregation::kAtExperts);
    }
  }
  model->train();
  const cemoe::TrainableParameters trainable =
      cemoe::SelectTrainable(*model, {}, {"norm", "bias"});
  cemoe::StepSettings settings;
  settings.max_grad_norm = 0;  // measure only
  const cemoe::StepResult result = cemoe::ComputeGradients(
      *model,
      {cemoe::MicroBatchTensors{tokens_BS.slice(0, begin, end), targets_BS.slice(0, begin, end),
                                {}, {}}},
      trainable, groups, settings);
  if (!result.finite) throw std::runtime_error("the loss or gradient norm is not finite");

  {
    at::NoGradGuard no_grad;
    for (at::Tensor& p : model->parameters()) {
      p.copy_(p.grad().defined() ? p.grad() : at::zeros_like(p));
    }
  }
  cemoe::SaveExpertParallelCheckpoint(*model, groups, placement, out + "/grads", 1 << 20);
  if (w == 0) {
    std::ofstream f(out + "/result.json");
    f.precision(17);
    f << "{\"loss\": " << result.loss << ", \"grad_norm\": " << result.grad_norm
      << ", \"loss_tokens\": " << result.loss_tokens << ", \"world\": " << n
      << ", \"ep\": " << groups.ep() << "}\n";
    if (!f) throw std::runtime_error("cannot write " + out + "/result.json");
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 8) {
    std::cerr << "usage: ce_grads MODEL BATCH OUT EP TOP_K MAIN_EXPERTS AGGREGATION\n";
    return 2;
  }
  try {
    return Run(argc, argv);
  } catch (const std::exception& e) {
    std::cerr << "ce_grads: error: " << e.what() << std::endl;
    return 1;
  }
}
