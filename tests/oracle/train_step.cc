// train_step: the C++ side of the training-step oracle (tests/oracle/train_step_oracle.py).
// Run under mpiexec:
//   mpiexec -n N train_step MODEL BATCH OUT EP TOP_K LR WEIGHT_DECAY EPS MAX_NORM
// MODEL is a Hugging Face folder (float32), BATCH a safetensors file with int64 "tokens" [B, S]
// and "targets" [B, S] (-100 = no loss). World rank w takes rows [B*w/N, B*(w+1)/N) (a rank may
// get none: it still joins every collective with an empty micro-batch) and loads only its experts
// (round_robin placement at expert-parallel size EP; the rest of the world is data parallel).
// One optimiser step through the trainer's own code (cemoe train takes it the same way,
// trainer/sft/sft_trainer.cc), in train mode:
//   trainable = SelectTrainable(model, no freeze, the recipe default no_decay {"norm", "bias"})
//   grads     = ComputeGradients (trainer/sft/train_step.h) on one micro-batch (the rank's rows):
//               loss = sum of the rank's token cross-entropies / global number of loss tokens,
//               backward, ReduceGradients (dense over world, experts over edp), global norm,
//               clipped to MAX_NORM (no auxiliary losses: coefficients 0)
//   update    = cemoe::AdamW (trainer/sft/adamw.h), betas (0.9, 0.999), EPS, WEIGHT_DECAY except
//               for the no_decay parameters, at learning rate LR
// It writes, through the expert-parallel checkpoint writer (Hugging Face names, experts by
// global id, float32):
//   OUT/grads/  the reduced gradients AFTER clipping (what AdamW sees), in place of the weights
//   OUT/after/  the weights after the step
//   OUT/result.json (rank 0)  {"loss", "grad_norm" (before clipping), "loss_tokens", "world", "ep",
//                              "dp"}
// transformers (eval mode, gradients on) with torch.optim.AdamW must give the same numbers.
// TOP_K 0 keeps the checkpoint's. Exit 0 on success; on error one line on stderr and exit 1.
#include <ATen/ATen.h>
#include <torch/types.h>

#include <cstdlib>
#include <exception>
#include <fstream>
#include <iostream>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "model/causal_lm.h"
#include "model/safetensors.h"
#include "parallel/model_sharding.h"
#include "parallel/process_groups.h"
#include "parallel/sharded_checkpoint.h"
#include "trainer/config/run_config.h"
#include "trainer/sft/adamw.h"
#include "trainer/sft/train_step.h"
#include "trainer/sft/trainable.h"

namespace {

// Saves the model with each parameter's value replaced by `values` (same order as parameters()).
void SaveWith(cemoe::CausalLM& model, const std::vector<at::Tensor>& values,
              cemoe::ProcessGroups& groups, const cemoe::ModelPlacement& placement,
              const std::string& dir) {
  std::vector<at::Tensor> params = model->parameters();
  std::vector<at::Tensor> kept;
  at::NoGradGuard no_grad;
  for (size_t i = 0; i < params.size(); ++i) {
    kept.push_back(params[i].clone());
    params[i].copy_(values[i]);
  }
  cemoe::SaveExpertParallelCheckpoint(*model, groups, placement, dir, 1 << 20);
  for (size_t i = 0; i < params.size(); ++i) params[i].copy_(kept[i]);
}

int Run(int argc, char** argv) {
  cemoe::MpiSession session(&argc, &argv);
  const std::string model_dir = argv[1], batch_path = argv[2], out = argv[3];
  cemoe::ParallelOptions options;
  options.ep = std::atoi(argv[4]);
  options.backend = "mpi";
  options.collectives.timeout_s = 120;
  const int64_t top_k = std::atoll(argv[5]);
  const double lr = std::atof(argv[6]), weight_decay = std::atof(argv[7]);
  const double eps = std::atof(argv[8]), max_norm = std::atof(argv[9]);
  cemoe::ProcessGroups groups(session, options);

  const cemoe::SafetensorsFile batch(batch_path);
  const at::Tensor tokens_BS = batch.Get("tokens"), targets_BS = batch.Get("targets");
  const int64_t B = tokens_BS.size(0);
  const int w = groups.world_rank(), n = groups.world_size();
  const int64_t begin = B * w / n, end = B * (w + 1) / n;
  const at::Tensor tokens = tokens_BS.slice(0, begin, end);
  const at::Tensor targets = targets_BS.slice(0, begin, end);

  const cemoe::ModelPlacement placement = cemoe::ChooseModelPlacement(
      model_dir, groups, cemoe::PlacementPolicy::kRoundRobin, at::Tensor(), 0);
  cemoe::CausalLM model = cemoe::LoadExpertParallelModel(model_dir, groups, placement);
  if (top_k > 0) model->set_top_k(top_k);
  model->train();
  const cemoe::TrainableParameters trainable =
      cemoe::SelectTrainable(*model, {}, cemoe::OptimSection{}.no_decay);

  cemoe::StepSettings settings;
  settings.max_grad_norm = max_norm;
  const cemoe::StepResult result = cemoe::ComputeGradients(
      *model, {cemoe::MicroBatchTensors{tokens, targets, {}, {}}}, trainable, groups, settings);
  if (!result.finite) throw std::runtime_error("the step's loss or gradient norm is not finite");

  std::vector<at::Tensor> grads;
  for (const at::Tensor& p : model->parameters()) {
    grads.push_back(p.grad().defined() ? p.grad().clone() : at::zeros_like(p));
  }
  SaveWith(model, grads, groups, placement, out + "/grads");

  cemoe::AdamWSettings adam;
  adam.eps = eps;
  adam.weight_decay = weight_decay;
  cemoe::AdamW optimizer(trainable.params, adam);
  optimizer.Step(lr);
  cemoe::SaveExpertParallelCheckpoint(*model, groups, placement, out + "/after", 1 << 20);

  if (w == 0) {
    std::ofstream f(out + "/result.json");
    f.precision(17);
    f << "{\"loss\": " << result.loss << ", \"grad_norm\": " << result.grad_norm
      << ", \"loss_tokens\": " << result.loss_tokens << ", \"world\": " << n
      << ", \"ep\": " << groups.ep() << ", \"dp\": " << groups.dp() << "}\n";
    if (!f) throw std::runtime_error("cannot write " + out + "/result.json");
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 10) {
    std::cerr << "usage: train_step MODEL BATCH OUT EP TOP_K LR WEIGHT_DECAY EPS MAX_NORM\n";
    return 2;
  }
  try {
    return Run(argc, argv);
  } catch (const std::exception& e) {
    std::cerr << "train_step: error: " << e.what() << std::endl;
    return 1;
  }
}
