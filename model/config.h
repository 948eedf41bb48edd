// config.h: the Hugging Face config.json of an OLMoE ("olmoe", OlmoeForCausalLM) or Phi-3.5-MoE
// ("phimoe", PhimoeForCausalLM) model, reduced to the fields that change the math.
//
// Reads both the transformers 4.x spelling (rope_theta, rope_scaling) and the 5.x spelling
// (rope_parameters). Never relies on a class default for a size: vocab, hidden, intermediate,
// layers, heads, experts, experts per token, norm eps and rope theta must be present. Errors
// name the file, the field and the value. ToJson writes what transformers 4.x and 5.x both read.
// Thread-safety: plain values.
#pragma once

#include <cstdint>
#include <nlohmann/json_fwd.hpp>
#include <optional>
#include <string>
#include <vector>

namespace cemoe {

// Phi-3.5-MoE "longrope": inverse frequencies divided by per-dimension factors, cos/sin scaled by
// mscale; the long set applies when the sequence is longer than original_max_position_embeddings.
struct LongRope {
  std::vector<double> short_factor;  // [head_dim / 2]
  std::vector<double> long_factor;   // [head_dim / 2]
  double short_mscale = 1.0;
  double long_mscale = 1.0;
  int64_t original_max_position_embeddings = 0;
};

struct ModelConfig {
  std::string model_type;  // "olmoe" | "phimoe"
  int64_t vocab_size = 0;
  int64_t hidden_size = 0;        // D
  int64_t intermediate_size = 0;  // I, per expert
  int64_t num_hidden_layers = 0;
  int64_t num_attention_heads = 0;
  int64_t num_key_value_heads = 0;  // GQA when < num_attention_heads
  int64_t head_dim = 0;             // defaults to hidden_size / num_attention_heads
  int64_t num_experts = 0;          // E ("num_experts" for OLMoE, "num_local_experts" for Phi)
  int64_t num_experts_per_tok = 0;  // the checkpoint's k; the runtime top_k may differ
  // Compressed experts (method.md section 1): of the num_experts_per_tok experts routed per token
  // the first ce_main_experts (K_m) run in full and the others as compressed experts; 0 = none.
  int64_t ce_main_experts = 0;
  // How config.json and the weights store them (docs/checkpoint-format.md):
  //   "cemoe":   num_experts_per_tok = K_m (so transformers runs the plain top-K_m model),
  //              "compressed_experts": {"main_experts": K_m, "auxiliary_experts": K_a},
  //              tensors mlp.compressed_experts.{g,u,d};
  //   "authors": the authors' OLMoE code: "use_ce": true, "n_ce": K_a, num_experts_per_tok = K,
  //              tensor mlp.ces [E, 3, D] (rows g, d padded with ones, u); needs I <= D.
  std::string ce_layout = "cemoe";
  bool norm_topk_prob = false;      // OLMoE: renormalise the top-k softmax weights
  double norm_eps = 1e-5;           // rms_norm_eps (RMSNorm for OLMoE, LayerNorm eps for Phi)
  double rope_theta = 10000.0;
  std::optional<LongRope> longrope;  // Phi-3.5-MoE
  int64_t max_position_embeddings = 0;
  std::optional<double> clip_qkv;  // OLMoE: clamp q, k, v to +-clip_qkv after the q/k norms
  bool attention_bias = false;     // biases on q, k, v, o projections
  bool lm_head_bias = false;       // Phi
  bool tie_word_embeddings = false;
  double router_jitter_noise = 0.0;  // Phi sparsemixer eps
  double input_jitter_noise = 0.0;   // Phi, training only
  double router_aux_loss_coef = 0.0;
  std::optional<int64_t> bos_token_id, eos_token_id, pad_token_id;
  std::string dtype = "float32";  // storage dtype of the checkpoint ("torch_dtype" / "dtype")

  bool is_olmoe() const { return model_type == "olmoe"; }
  bool is_phimoe() const { return model_type == "phimoe"; }
  bool uses_layer_norm() const { return is_phimoe(); }  // else RMSNorm
  bool uses_qk_norm() const { return is_olmoe(); }
};

// Reads DIR/config.json (or the file itself when given a .json path).
ModelConfig LoadModelConfig(const std::string& path);
// `source` names the file in error messages.
ModelConfig ParseModelConfig(const nlohmann::json& json, const std::string& source);
// Ceilings on config.json sizes, far above any published model (OLMoE-1B-7B: vocab 50304,
// hidden 2048, 16 layers, 64 experts; Phi-3.5-MoE: vocab 32064, hidden 4096, 32 layers, 16
// experts, 131072 positions). A value above one is refused by name before anything is allocated.
inline constexpr int64_t kMaxVocabSize = int64_t{1} << 31;
inline constexpr int64_t kMaxWidth = int64_t{1} << 20;  // hidden_size, intermediate_size
inline constexpr int64_t kMaxLayers = 4096;
inline constexpr int64_t kMaxHeadsOrExperts = 65536;  // heads, head_dim, experts, top-k
inline constexpr int64_t kMaxPositions = int64_t{1} << 31;

// Cross-field checks (sizes positive and under the ceilings above, divisibility, longrope factor
// lengths, no overflow in any size product); throws naming the file, the field and the value.
void ValidateModelConfig(const ModelConfig& config, const std::string& source);
// An upper bound on the number of parameters, computed with overflow checks (throws naming
// `source` when a product overflows int64).
int64_t CheckedParameterCount(const ModelConfig& config, const std::string& source);
// The Hugging Face config.json for this model (architectures, model_type and every field above).
nlohmann::json ModelConfigToJson(const ModelConfig& config);
void SaveModelConfig(const ModelConfig& config, const std::string& dir);

// Presets for `cemoe init`: "tiny" and "small" (CPU-sized) and the published full-size configs
// "olmoe-1b-7b" (allenai/OLMoE-1B-7B-0924) and "phi-3.5-moe" (microsoft/Phi-3.5-MoE-instruct).
ModelConfig PresetConfig(const std::string& arch, const std::string& preset);

}  // namespace cemoe
