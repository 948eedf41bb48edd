#include "trainer/sft/memory_estimate.h"

#include <fmt/format.h>

#include "model/config.h"

namespace cemoe {

MemoryEstimate EstimateTrainingMemory(const ModelConfig& c, const MemoryInputs& in) {
  MemoryEstimate m;
  m.parameters = 4 * (in.dense_params + in.expert_params);
  m.gradients = 4 * in.trainable_params;
  m.optimizer = 8 * in.trainable_params;
  const int64_t act_bytes = in.bf16 ? 2 : 4;
  const int64_t R = in.micro_batch_rows, S = in.seq_len, T = R * S;
  const int64_t D = c.hidden_size, I = c.intermediate_size, E = c.num_experts, H = c.head_dim;
  const int64_t N = c.num_attention_heads, G = c.num_key_value_heads;
  const int64_t per_layer = act_bytes * (8 * T * D + T * (N + 2 * G) * H * 2 + T * 2 * E +
                                         T * in.top_k * (2 * D + 4 * I)) +
                            4 * 2 * R * N * S * S;
  const int64_t layers = c.num_hidden_layers;
  const int64_t kept = in.activation_checkpointing ? per_layer + layers * act_bytes * T * D
                                                   : layers * per_layer;
  m.activations = kept + 3 * 4 * T * c.vocab_size;
  return m;
}

std::string FormatBytes(int64_t bytes) {
  const double b = static_cast<double>(bytes);
  if (b >= 1024.0 * 1024 * 1024) return fmt::format("{:.2f} GiB", b / (1024.0 * 1024 * 1024));
  if (b >= 1024.0 * 1024) return fmt::format("{:.1f} MiB", b / (1024.0 * 1024));
  return fmt::format("{:.1f} KiB", b / 1024.0);
}

std::string DescribeMemory(const MemoryEstimate& m) {
  return fmt::format("parameters {}, gradients {}, optimizer {}, activations {}: total {}",
                     FormatBytes(m.parameters), FormatBytes(m.gradients), FormatBytes(m.optimizer),
                     FormatBytes(m.activations), FormatBytes(m.total()));
}

}  // namespace cemoe
