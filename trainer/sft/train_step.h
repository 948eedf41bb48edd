// train_step.h: the gradients of one optimiser step over this rank's micro-batches, reduced over
// the world, measured and clipped (the optimiser update itself is the caller's, so that a
// non-finite step can be skipped).
//
// Loss convention (parallel/grad_sync.h): every rank divides its token losses by the GLOBAL
// number of loss tokens of the step (all micro-batches, all ranks), so the gradient is that of
// the mean over every loss token of the global batch, whatever the split into micro-batches and
// ranks (accumulation 4 x 2 rows, 1 x 8 rows and 2 ranks x 4 rows give the same gradients).
// Auxiliary losses are per micro-batch (they are not sums over tokens): each micro-batch adds
//   aux_loss_coef * LoadBalancingLoss + z_loss_coef * RouterZLoss, divided by (micro-batches x
// world ranks), i.e. the mean over micro-batches (model/moe/router_losses.h).
// Distillation (a teacher given; trainer/distill/distill_loss.h): the token loss is
//   (a CE + b tau^2 KL(teacher_tau || student_tau) + c MSE of the MoE outputs) / N_global
// per micro-batch, with the same loss tokens and the same global normalisation; the teacher's
// forward runs first, under NoGrad, on every rank (it is placed like the student, so under
// expert parallelism its all-to-alls pair up across ranks exactly as the student's do).
// Returned values are global (identical on every rank).
// Thread-safety: collective over the world; call on every rank.
#pragma once

#include <ATen/core/Tensor.h>

#include <cstdint>
#include <vector>

#include "trainer/distill/distill_loss.h"
#include "trainer/sft/trainable.h"

namespace cemoe {

class CausalLMImpl;
class ProcessGroups;

// One rank's rows for one forward and backward (int64 [R, S] each, on any device).
struct MicroBatchTensors {
  at::Tensor tokens_BS;
  at::Tensor targets_BS;       // next-token targets, -100 = no loss
  at::Tensor position_ids_BS;  // undefined = 0..S-1
  at::Tensor segment_ids_BS;   // 0 = padding; undefined = one example per row, no padding
};

struct StepSettings {
  double aux_loss_coef = 0.0;
  double z_loss_coef = 0.0;
  double max_grad_norm = 1.0;  // <= 0: measure only
  bool bf16_autocast = false;  // CUDA only
  DistillWeights distill;      // used only when ComputeGradients gets a teacher
};

struct StepResult {
  double loss = 0;        // mean cross-entropy over the step's loss tokens; distilling: the
                          // objective a ce + b tau^2 kl + c mse
  // Distilling only (means over the step's loss tokens): the cross-entropy, KL(teacher_tau ||
  // student_tau) without tau^2 and weight, and the mean over layers of the MoE-output MSE
  // (has_mse: only computed when distill.mse_weight > 0).
  bool distilled = false, has_mse = false;
  double ce = 0, kl = 0, mse = 0;
  // With compressed experts: [layer] share of the routing weight the auxiliary experts carry,
  // sum of the aux (last K - K_m) top-k weights / sum of all top-k weights over real tokens.
  std::vector<double> aux_weight_share;
  double aux_loss = 0;    // mean over micro-batches of the load-balancing loss (unscaled)
  double z_loss = 0;      // mean over micro-batches of the z-loss (unscaled)
  double grad_norm = 0;   // before clipping
  int64_t loss_tokens = 0;
  int64_t tokens = 0;     // real (non-padding) tokens
  bool finite = true;     // loss and gradient norm are finite
  std::vector<std::vector<double>> expert_load;  // [layer][expert] fraction of routed slots
};

// teacher: distil from it (trainer/distill/teacher.h); nullptr = plain cross-entropy.
StepResult ComputeGradients(CausalLMImpl& model, const std::vector<MicroBatchTensors>& micro_batches,
                            const TrainableParameters& trainable, ProcessGroups& groups,
                            const StepSettings& settings, CausalLMImpl* teacher = nullptr);

}  // namespace cemoe
