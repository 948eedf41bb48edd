#include "model/attention.h"

#include <ATen/ATen.h>

#include <cmath>
#include <limits>

#include "model/norm.h"

namespace cemoe {

AttentionImpl::AttentionImpl(const ModelConfig& config) : config_(config) {
  const int64_t d = config.hidden_size, h = config.head_dim;
  const int64_t n = config.num_attention_heads, g = config.num_key_value_heads;
  q_proj = register_module("q_proj", Linear(d, n * h, config.attention_bias));
  k_proj = register_module("k_proj", Linear(d, g * h, config.attention_bias));
  v_proj = register_module("v_proj", Linear(d, g * h, config.attention_bias));
  o_proj = register_module("o_proj", Linear(n * h, d, config.attention_bias));
  if (config.uses_qk_norm()) {
    q_norm = register_module("q_norm", ParamHolder(std::vector<int64_t>{n * h}, false));
    k_norm = register_module("k_norm", ParamHolder(std::vector<int64_t>{g * h}, false));
  }
}

at::Tensor AttentionMask(const at::Tensor& segment_ids_BS) {
  const int64_t s = segment_ids_BS.size(1);
  at::Tensor same = segment_ids_BS.unsqueeze(2).eq(segment_ids_BS.unsqueeze(1));  // [B, S, S]
  at::Tensor causal =
      at::ones({s, s}, at::TensorOptions().dtype(at::kBool).device(segment_ids_BS.device())).tril();
  return same.logical_and(causal).unsqueeze(1);
}

at::Tensor CausalAttention(const at::Tensor& q_BNSH, const at::Tensor& k_BNSH,
                           const at::Tensor& v_BNSH, double scale,
                           const at::Tensor& allowed_B1SS) {
  const int64_t s = q_BNSH.size(2);
  at::Tensor scores = at::matmul(q_BNSH, k_BNSH.transpose(-2, -1)) * scale;
  if (allowed_B1SS.defined()) {
    scores = scores.masked_fill(allowed_B1SS.logical_not(),
                                -std::numeric_limits<float>::infinity());
  } else {
    at::Tensor future =
        at::ones({s, s}, at::TensorOptions().dtype(at::kBool).device(q_BNSH.device())).triu(1);
    scores = scores.masked_fill(future, -std::numeric_limits<float>::infinity());
  }
  // Softmax in float32 at least (bf16/f16 inputs are upcast, as transformers does).
  const at::ScalarType acc = q_BNSH.scalar_type() == at::kDouble ? at::kDouble : at::kFloat;
  at::Tensor probs = at::softmax(scores, -1, acc).to(q_BNSH.scalar_type());
  return at::matmul(probs, v_BNSH);
}

at::Tensor AttentionImpl::forward(const at::Tensor& x_BSD, const RopeTables& rope,
                                  const at::Tensor& allowed_B1SS) {
  const int64_t b = x_BSD.size(0), s = x_BSD.size(1), h = config_.head_dim;
  const int64_t n = config_.num_attention_heads, g = config_.num_key_value_heads;
  at::Tensor q = q_proj->forward(x_BSD);
  at::Tensor k = k_proj->forward(x_BSD);
  at::Tensor v = v_proj->forward(x_BSD);
  if (config_.uses_qk_norm()) {
    q = RmsNorm(q, q_norm->weight, config_.norm_eps);
    k = RmsNorm(k, k_norm->weight, config_.norm_eps);
  }
  if (config_.clip_qkv) {
    const double c = *config_.clip_qkv;
    q = q.clamp(-c, c);
    k = k.clamp(-c, c);
    v = v.clamp(-c, c);
  }
  q = ApplyRope(q.view({b, s, n, h}).transpose(1, 2), rope);
  k = ApplyRope(k.view({b, s, g, h}).transpose(1, 2), rope);
  v = v.view({b, s, g, h}).transpose(1, 2);
  if (g != n) {  // GQA: each kv head serves n / g query heads (adjacent query heads share)
    k = k.repeat_interleave(n / g, /*dim=*/1);
    v = v.repeat_interleave(n / g, /*dim=*/1);
  }
  at::Tensor out = CausalAttention(q, k, v, 1.0 / std::sqrt(static_cast<double>(h)), allowed_B1SS);
  return o_proj->forward(out.transpose(1, 2).reshape({b, s, n * h}));
}

}  // namespace cemoe
