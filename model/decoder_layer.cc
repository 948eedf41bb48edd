#include "model/decoder_layer.h"

#include <ATen/ATen.h>

#include "model/norm.h"

namespace cemoe {

DecoderLayerImpl::DecoderLayerImpl(const ModelConfig& config, std::vector<int64_t> expert_ids)
    : config_(config) {
  const bool ln = config.uses_layer_norm();
  const std::vector<int64_t> d{config.hidden_size};
  input_layernorm = register_module("input_layernorm", ParamHolder(d, ln));
  self_attn = register_module("self_attn", Attention(config));
  post_attention_layernorm = register_module("post_attention_layernorm", ParamHolder(d, ln));
  mlp = register_module("mlp", MoeLayer(config, std::move(expert_ids)));
}

at::Tensor DecoderLayerImpl::Norm(const ParamHolder& norm, const at::Tensor& x) const {
  if (config_.uses_layer_norm()) return LayerNorm(x, norm->weight, norm->bias, config_.norm_eps);
  return RmsNorm(x, norm->weight, config_.norm_eps);
}

MoeLayerImpl::Output DecoderLayerImpl::MlpBlock(const at::Tensor& h) {
  MoeLayerImpl::Output moe = mlp->Forward(Norm(post_attention_layernorm, h));
  moe.mlp_out = moe.out;
  moe.out = h + moe.out;
  return moe;
}

MoeLayerImpl::Output DecoderLayerImpl::Forward(const at::Tensor& x_BSD, const RopeTables& rope,
                                               const at::Tensor& allowed_B1SS) {
  return MlpBlock(x_BSD +
                  self_attn->forward(Norm(input_layernorm, x_BSD), rope, allowed_B1SS));
}

MoeLayerImpl::Output DecoderLayerImpl::ForwardCached(const at::Tensor& x_BSD,
                                                     const RopeTables& rope,
                                                     const at::Tensor& allowed_B1SK,
                                                     at::Tensor& k_cache_BGCH,
                                                     at::Tensor& v_cache_BGCH, int64_t start) {
  return MlpBlock(x_BSD + self_attn->ForwardCached(Norm(input_layernorm, x_BSD), rope,
                                                   allowed_B1SK, k_cache_BGCH, v_cache_BGCH,
                                                   start));
}

}  // namespace cemoe
