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

struct MemoryEstimate {
  int64_t parameters = 0, gradients = 0, optimizer = 0, activations = 0;
  int64_t total() const { return parameters + gradients + optimizer + activations; }
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
// (train.freeze entries that are not group names are not counted as frozen).
MemoryInputs LayoutMemoryInputs(const ModelConfig& config, int ep,
                                const std::vector<std::string>& freeze);
// "parameters 1.2 GiB, gradients ..., total 9.8 GiB"
std::string DescribeMemory(const MemoryEstimate& estimate);
std::string FormatBytes(int64_t bytes);

}  // namespace cemoe
