// attention.h: causal self-attention with grouped-query heads and RoPE, for both families.
//
// Shapes: B batch, S sequence, D hidden, N query heads, G kv heads (N % G == 0), H head_dim.
// forward(x_BSD): q = q_proj(x) [B, S, N*H], k, v = k_proj(x), v_proj(x) [B, S, G*H]
//   OLMoE: q = RMSNorm_q(q), k = RMSNorm_k(k) over the whole projected vector; then, if
//          clip_qkv is set, q, k, v are clamped to +-clip_qkv.
//   heads: [B, N, S, H] / [B, G, S, H]; RoPE on q and k; k and v repeated N/G times;
//   scores = q k^T / sqrt(H) + mask; softmax in float32; out = o_proj(softmax @ v).
//   The mask is causal, or, for packed rows, causal within each example (AttentionMask).
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
  // allowed_B1SS: bool [B, 1, S, S] (true = may attend), or undefined for the plain causal mask.
  at::Tensor forward(const at::Tensor& x_BSD, const RopeTables& rope,
                     const at::Tensor& allowed_B1SS = {});
  // Incremental decoding (model/kv_cache.h): the keys and values of x's S positions are written
  // into slots [start, start + S) of k_cache_BGCH / v_cache_BGCH ([B, G, C, H], after RoPE and
  // OLMoE's norms and clip, before the GQA repeat), and the queries attend to slots
  // [0, start + S) where allowed_B1SK (bool [B, 1, S, start + S]) is true. rope holds the
  // tables of x's positions. Equals forward() on the whole sequence for the same positions.
  at::Tensor ForwardCached(const at::Tensor& x_BSD, const RopeTables& rope,
                           const at::Tensor& allowed_B1SK, at::Tensor& k_cache_BGCH,
                           at::Tensor& v_cache_BGCH, int64_t start);

  Linear q_proj{nullptr}, k_proj{nullptr}, v_proj{nullptr}, o_proj{nullptr};
  ParamHolder q_norm{nullptr}, k_norm{nullptr};  // OLMoE only

 private:
  struct Projected {
    at::Tensor q_BNSH, k_BGSH, v_BGSH;  // after norms, clip and RoPE; k, v not yet repeated
  };
  Projected Project(const at::Tensor& x_BSD, const RopeTables& rope);
  // softmax(q k^T / sqrt(H) + mask) v over keys k_BGKH, v_BGKH (repeated to N heads here), then
  // o_proj: [B, S, D].
  at::Tensor Attend(const at::Tensor& q_BNSH, at::Tensor k_BGKH, at::Tensor v_BGKH,
                    const at::Tensor& allowed);
  ModelConfig config_;
};
TORCH_MODULE(Attention);

// softmax(q k^T * scale + mask) v in float32 softmax; q_BNSH, k_BNSH, v_BNSH with equal heads.
// allowed_B1SS: bool, true where query i may attend to key j; undefined = causal (j <= i).
at::Tensor CausalAttention(const at::Tensor& q_BNSH, const at::Tensor& k_BNSH,
                           const at::Tensor& v_BNSH, double scale,
                           const at::Tensor& allowed_B1SS = {});
// The block-diagonal causal mask of packed rows: query i may attend to key j when j <= i and
// both belong to the same example (segment_ids_BS equal; padding is segment 0 and attends only
// to padding, so no row of the softmax is empty). Returns bool [B, 1, S, S].
at::Tensor AttentionMask(const at::Tensor& segment_ids_BS);

}  // namespace cemoe
