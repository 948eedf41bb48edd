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

ParameterCounts CountParameters(const ModelConfig& c) {
  ParameterCounts p;
  const int64_t D = c.hidden_size, I = c.intermediate_size, E = c.num_experts, L = c.num_hidden_layers;
  const int64_t N = c.num_attention_heads, G = c.num_key_value_heads, H = c.head_dim;
  const int64_t V = c.vocab_size;
  p.embeddings = V * D + (c.tie_word_embeddings ? 0 : V * D) + (c.lm_head_bias ? V : 0);
  const int64_t attention = D * N * H + 2 * D * G * H + N * H * D +
                            (c.attention_bias ? N * H + 2 * G * H + D : 0) +
                            (c.uses_qk_norm() ? N * H + G * H : 0);
  p.attention = L * attention;
  const int64_t norm = c.uses_layer_norm() ? 2 * D : D;
  p.norms = (2 * L + 1) * norm;
  p.routers = L * E * D;
  p.experts = L * E * 3 * D * I;
  return p;
}

MemoryInputs LayoutMemoryInputs(const ModelConfig& config, int ep,
                                const std::vector<std::string>& freeze) {
  const ParameterCounts p = CountParameters(config);
  MemoryInputs in;
  in.dense_params = p.dense();
  in.expert_params = p.experts / ep;
  int64_t frozen = 0;
  for (const std::string& group : freeze) {
    if (group == "embeddings") frozen += p.embeddings;
    if (group == "attention") frozen += p.attention;
    if (group == "norms") frozen += p.norms;
    if (group == "router") frozen += p.routers;
    if (group == "experts") frozen += in.expert_params;
  }
  in.trainable_params = in.dense_params + in.expert_params - frozen;
  in.top_k = config.num_experts_per_tok;
  return in;
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
