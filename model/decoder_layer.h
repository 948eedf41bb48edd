// decoder_layer.h: one pre-norm transformer block:
//   x += self_attn(input_layernorm(x)); x += mlp(post_attention_layernorm(x))
// Norms are RMSNorm (OLMoE, weight only) or LayerNorm (Phi-MoE, weight and bias).
// Shapes: x_BSD [batch, seq, hidden]. Thread-safety: not for concurrent use.
#pragma once

#include "model/attention.h"
#include "model/moe/moe_layer.h"

namespace cemoe {

class DecoderLayerImpl : public torch::nn::Module {
 public:
  // expert_ids: the MoE layer's held experts (MoeLayerImpl); empty = all.
  explicit DecoderLayerImpl(const ModelConfig& config, std::vector<int64_t> expert_ids = {});
  // allowed_B1SS: the attention mask (AttentionMask), undefined = causal.
  at::Tensor forward(const at::Tensor& x_BSD, const RopeTables& rope,
                     const at::Tensor& allowed_B1SS = {}) {
    return Forward(x_BSD, rope, allowed_B1SS).out;
  }
  // The block's output and the routing of its MoE layer.
  MoeLayerImpl::Output Forward(const at::Tensor& x_BSD, const RopeTables& rope,
                               const at::Tensor& allowed_B1SS = {});
  // Incremental decoding: the attention reads and extends this layer's KV cache
  // (AttentionImpl::ForwardCached); the MoE block runs on x's positions only.
  MoeLayerImpl::Output ForwardCached(const at::Tensor& x_BSD, const RopeTables& rope,
                                     const at::Tensor& allowed_B1SK, at::Tensor& k_cache_BGCH,
                                     at::Tensor& v_cache_BGCH, int64_t start);

  ParamHolder input_layernorm{nullptr}, post_attention_layernorm{nullptr};
  Attention self_attn{nullptr};
  MoeLayer mlp{nullptr};

 private:
  at::Tensor Norm(const ParamHolder& norm, const at::Tensor& x) const;
  // The second half of the block: h = x + attention; out = h + mlp(post_attention_layernorm(h)).
  MoeLayerImpl::Output MlpBlock(const at::Tensor& h_BSD);
  ModelConfig config_;
};
TORCH_MODULE(DecoderLayer);

}  // namespace cemoe
