#include "trainer/sft/memory_estimate.h"

#include <fmt/format.h>

#include <algorithm>

#include "model/config.h"
#include "trainer/config/run_config.h"

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
  auto per_layer = [&](int64_t top_k) {
    return act_bytes * (8 * T * D + T * (N + 2 * G) * H * 2 + T * 2 * E +
                        T * top_k * (2 * D + 4 * I)) +
           4 * 2 * R * N * S * S;
  };
  const int64_t layers = c.num_hidden_layers;
  const int64_t kept = in.activation_checkpointing
                           ? per_layer(in.top_k) + layers * act_bytes * T * D
                           : layers * per_layer(in.top_k);
  m.activations = kept + 3 * 4 * T * c.vocab_size;
  if (in.teacher_params > 0) {
    m.teacher = 4 * in.teacher_params + per_layer(in.teacher_top_k) + 3 * 4 * T * c.vocab_size +
                (in.teacher_moe_outputs ? 2 * 4 * layers * T * D : 0);
  }
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
                                const std::vector<std::string>& freeze,
                                const std::vector<std::string>& trainable, int64_t main_experts) {
  const ParameterCounts p = CountParameters(config);
  const int64_t ce = main_experts > 0 ? config.num_hidden_layers * config.num_experts *
                                            (2 * config.hidden_size + config.intermediate_size)
                                      : 0;
  MemoryInputs in;
  in.dense_params = p.dense() + ce;
  in.expert_params = p.experts / ep;
  auto group_size = [&](const std::string& group) -> int64_t {
    if (group == "embeddings") return p.embeddings;
    if (group == "attention") return p.attention;
    if (group == "norms") return p.norms;
    if (group == "router") return p.routers;
    if (group == "experts") return in.expert_params;
    if (group == "compressed_experts") return ce;
    return 0;
  };
  int64_t selected = in.dense_params + in.expert_params;
  if (!trainable.empty()) {
    selected = 0;
    for (const std::string& group : trainable) selected += group_size(group);
  }
  int64_t frozen = 0;
  for (const std::string& group : freeze) {
    // A frozen group counts only when it was trainable in the first place.
    bool listed = trainable.empty();
    for (const std::string& t : trainable) listed = listed || t == group;
    if (listed) frozen += group_size(group);
  }
  in.trainable_params = std::max<int64_t>(selected - frozen, 0);
  in.top_k = config.num_experts_per_tok;
  return in;
}

void AddTeacherMemory(const DistillSection& distill, const ModelConfig& teacher, int ep,
                      MemoryInputs& inputs) {
  if (!distill.enabled()) return;
  const MemoryInputs t = LayoutMemoryInputs(teacher, ep, {});
  inputs.teacher_params = t.dense_params + t.expert_params;
  inputs.teacher_top_k = distill.teacher_top_k > 0 ? distill.teacher_top_k : teacher.num_experts_per_tok;
  inputs.teacher_moe_outputs = distill.mse_weight > 0;
}

std::string FormatBytes(int64_t bytes) {
  const double b = static_cast<double>(bytes);
  if (b >= 1024.0 * 1024 * 1024) return fmt::format("{:.2f} GiB", b / (1024.0 * 1024 * 1024));
  if (b >= 1024.0 * 1024) return fmt::format("{:.1f} MiB", b / (1024.0 * 1024));
  return fmt::format("{:.1f} KiB", b / 1024.0);
}

std::string DescribeMemory(const MemoryEstimate& m) {
  return fmt::format("parameters {}, gradients {}, optimizer {}, activations {}{}: total {}",
                     FormatBytes(m.parameters), FormatBytes(m.gradients), FormatBytes(m.optimizer),
                     FormatBytes(m.activations),
                     m.teacher > 0 ? ", teacher " + FormatBytes(m.teacher) : std::string(),
                     FormatBytes(m.total()));
}

}  // namespace cemoe
