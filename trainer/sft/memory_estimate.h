// memory_estimate.h: the device memory one rank needs for training, estimated at start-up from
// the model's shapes, this rank's share of the experts and the recipe's micro-batch, so that a
// recipe that cannot fit fails before anything is loaded.
//
// Bytes (float32 master weights; AdamW keeps two float32 moments per trainable parameter):
//   parameters   4 x (dense + this rank's experts)
//   gradients    4 x trainable of those
//   optimizer    8 x trainable of those
//   activations  what backward keeps for one micro-batch of R rows x S tokens (T = R x S), per
//                decoder layer: ~8 hidden-size tensors (norms, residuals, attention in/out), q/k/v,
//                the attention scores and probabilities (R x heads x S x S, float32: eager
//                attention), router logits and probabilities (T x E), the routed rows (T x k x
//                (2 D + 4 I): input, gate, up, activation and product, output); times the layers,
//                or, with activation checkpointing, one layer's worth plus every layer's input
//                (T x D each); plus the logits (T x vocab, three float32 copies: logits, softmax,
//                gradient). bf16 autocast halves the activations (counted as 2 bytes).
//   teacher      distillation only (trainer/distill/teacher.h): 4 x the teacher's parameters on this
//                rank (no gradients, no optimizer state), one teacher layer's forward at its
//                top_k (freed as it goes: no graph), its logits (T x vocab float32, kept until the
//                loss) and the student's extra log-softmax at the temperature and its gradient
//                (2 x T x vocab float32); with distill.mse_weight > 0 also every layer's MoE
//                output of the teacher and of the student (2 x layers x T x D float32).
// Compressed experts add their vectors (layers x E x (2 D + I)) to the dense parameters: every
// rank holds them all.
// Under expert parallelism a rank's routed rows depend on the routing; the estimate assumes an
// even share (T x k rows per rank on average). It is an estimate: docs/training.md says how it
// compares with measured peaks.
// Thread-safety: pure functions.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace cemoe {

struct ModelConfig;
struct DistillSection;

struct MemoryEstimate {
  int64_t parameters = 0, gradients = 0, optimizer = 0, activations = 0;
  int64_t teacher = 0;  // distillation only
  int64_t total() const { return parameters + gradients + optimizer + activations + teacher; }
};

struct MemoryInputs {
  int64_t dense_params = 0;      // this rank
  int64_t expert_params = 0;     // this rank
  int64_t trainable_params = 0;  // this rank
  int64_t micro_batch_rows = 1;
  int64_t seq_len = 4096;
  int64_t top_k = 1;
  bool activation_checkpointing = false;
  bool bf16 = false;
  // Distillation: the teacher's parameters on this rank (0 = no teacher), its top_k, and
  // whether the MoE outputs are kept for the MSE term.
  int64_t teacher_params = 0;
  int64_t teacher_top_k = 0;
  bool teacher_moe_outputs = false;
};

MemoryEstimate EstimateTrainingMemory(const ModelConfig& config, const MemoryInputs& inputs);

// Parameter counts of a config by group, without building the model (a 42 B model is counted
// on a laptop): what `cemoe train --estimate` uses.
struct ParameterCounts {
  int64_t embeddings = 0;  // embed_tokens + lm_head (when untied)
  int64_t attention = 0;   // projections, their biases, q/k norms
  int64_t norms = 0;       // the decoder layers' and the final norms
  int64_t routers = 0;
  int64_t experts = 0;     // all E experts of all layers
  int64_t dense() const { return embeddings + attention + norms + routers; }
  int64_t total() const { return dense() + experts; }
};
ParameterCounts CountParameters(const ModelConfig& config);
// This rank's MemoryInputs at expert-parallel size ep with the freeze groups of the recipe
// (train.freeze entries that are not group names are not counted as frozen). train.trainable,
// when not empty, counts only its groups as trainable ("compressed_experts" included; names that
// are not groups count nothing). main_experts > 0: the model has compressed experts.
MemoryInputs LayoutMemoryInputs(const ModelConfig& config, int ep,
                                const std::vector<std::string>& freeze,
                                const std::vector<std::string>& trainable = {},
                                int64_t main_experts = 0);
// Distillation: fills the teacher fields of `inputs`: its parameters on
// one rank at expert-parallel size ep (dense + its share of the experts), its top_k, and whether
// the MSE term keeps MoE outputs; from config.json alone. No change when distillation is off.
void AddTeacherMemory(const DistillSection& distill, const ModelConfig& teacher, int ep,
                      MemoryInputs& inputs);
// "parameters 1.2 GiB, gradients ..., total 9.8 GiB" (", teacher X" before the total when
// distilling)
std::string DescribeMemory(const MemoryEstimate& estimate);
std::string FormatBytes(int64_t bytes);

}  // namespace cemoe
