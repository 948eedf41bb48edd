// attention.h: causal self-attention with grouped-query heads and RoPE, for both families.
//
// Shapes: B batch, S sequence, D hidden, N query heads, G kv heads (N % G == 0), H head_dim.
// forward(x_BSD): q = q_proj(x) [B, S, N*H], k, v = k_proj(x), v_proj(x) [B, S, G*H]
//   OLMoE: q = RMSNorm_q(q), k = RMSNorm_k(k) over the whole projected vector; then, if
//          clip_qkv is set, q, k, v are clamped to +-clip_qkv.
//   heads: [B, N, S, H] / [B, G, S, H]; RoPE on q and k; k and v repeated N/G times;
//   scores = q k^T / sqrt(H) + causal mask; softmax in float32; out = o_proj(softmax @ v).
// Parameter names follow Hugging Face: q_proj, k_proj, v_proj, o_proj (+ bias with
// attention_bias), q_norm, k_norm (OLMoE).
// Thread-safety: not for concurrent use.
#pragma once

#include "model/config.h"
#include "model/module_base.h"
#include "model/rope.h"

namespace cemoe {

class AttentionImpl : public torch::nn::Module {
 public:
  explicit AttentionImpl(const ModelConfig& config);
  at::Tensor forward(const at::Tensor& x_BSD, const RopeTables& rope);

  Linear q_proj{nullptr}, k_proj{nullptr}, v_proj{nullptr}, o_proj{nullptr};
  ParamHolder q_norm{nullptr}, k_norm{nullptr};  // OLMoE only

 private:
  ModelConfig config_;
};
TORCH_MODULE(Attention);

// softmax(q k^T * scale + causal) v in float32 softmax; q_BNSH, k_BNSH, v_BNSH with equal heads.
at::Tensor CausalAttention(const at::Tensor& q_BNSH, const at::Tensor& k_BNSH,
                           const at::Tensor& v_BNSH, double scale);

}  // namespace cemoe
