// distill_loss.h: the distillation loss of one micro-batch (docs/training.md, "Distillation"),
// as sums over the micro-batch's loss tokens, so that the caller divides by the GLOBAL number of
// loss tokens of the step like the plain cross-entropy (trainer/sft/train_step.h).
//
// Shape legend: T token positions of the micro-batch (rows x sequence, flattened), V vocabulary,
// D hidden, L MoE layers. N_mb = the loss tokens of this micro-batch (targets != -100).
// With temperature tau, p_t = softmax(teacher_t / tau), q_t = softmax(student_t / tau):
//   ce  = sum_{t in loss} -log softmax(student_t)[target_t]
//   kl  = sum_{t in loss} sum_v p_t(v) (log p_t(v) - log q_t(v))         (KL(teacher || student))
//   mse = sum_{t in loss} (1 / L) sum_l (1 / D) sum_d (s_l,t,d - t_l,t,d)^2
// and the step's objective is
//   loss = (a ce + b tau^2 kl + c mse) / N_global      (a, b, c = distill.ce/kl/mse_weight)
// i.e. a x mean cross-entropy + b tau^2 x mean KL + c x mean over layers of the MSE over loss
// tokens and hidden dims. The teacher's tensors carry no graph (they are computed under NoGrad);
// everything is evaluated in float32 whatever the logits' dtype.
// Thread-safety: pure functions.
#pragma once

#include <ATen/core/Tensor.h>

#include <vector>

namespace cemoe {

struct DistillWeights {
  double ce = 1.0;           // a
  double kl = 1.0;           // b
  double mse = 0.0;          // c
  double temperature = 1.0;  // tau
};

// Sums over the loss tokens of one micro-batch (float32 scalars; ce, kl and mse carry the
// student's graph). mse is undefined when no MoE outputs are given.
struct DistillSums {
  at::Tensor ce, kl, mse;
};

// student_logits_TV, teacher_logits_TV: [T, V]; targets_T: int64 [T], -100 = no loss;
// student_moe_BSD / teacher_moe_BSD: one [B, S, D] (or [T, D]) per MoE layer, both empty or both
// of the same length (the MSE term then is computed).
DistillSums DistillLossSums(const at::Tensor& student_logits_TV,
                            const at::Tensor& teacher_logits_TV, const at::Tensor& targets_T,
                            const std::vector<at::Tensor>& student_moe_BSD,
                            const std::vector<at::Tensor>& teacher_moe_BSD, double temperature);

// (a ce + b tau^2 kl + c mse) / denominator; a term whose weight is 0 is left out of the graph.
at::Tensor CombineDistillLoss(const DistillSums& sums, const DistillWeights& weights,
                              double denominator);

}  // namespace cemoe
