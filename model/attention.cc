#include "model/attention.h"

#include <ATen/ATen.h>

#include <cmath>
#include <limits>

#include "model/check.h"
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

AttentionImpl::Projected AttentionImpl::Project(const at::Tensor& x_BSD, const RopeTables& rope) {
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
  return {ApplyRope(q.view({b, s, n, h}).transpose(1, 2), rope),
          ApplyRope(k.view({b, s, g, h}).transpose(1, 2), rope), v.view({b, s, g, h}).transpose(1, 2)};
}

at::Tensor AttentionImpl::Attend(const at::Tensor& q_BNSH, at::Tensor k, at::Tensor v,
                                 const at::Tensor& allowed) {
  const int64_t b = q_BNSH.size(0), s = q_BNSH.size(2), h = config_.head_dim;
  const int64_t n = config_.num_attention_heads, g = config_.num_key_value_heads;
  if (g != n) {  // GQA: each kv head serves n / g query heads (adjacent query heads share)
    k = k.repeat_interleave(n / g, /*dim=*/1);
    v = v.repeat_interleave(n / g, /*dim=*/1);
  }
  at::Tensor out =
      CausalAttention(q_BNSH, k, v, 1.0 / std::sqrt(static_cast<double>(h)), allowed);
  return o_proj->forward(out.transpose(1, 2).reshape({b, s, n * h}));
}

at::Tensor AttentionImpl::forward(const at::Tensor& x_BSD, const RopeTables& rope,
                                  const at::Tensor& allowed_B1SS) {
  Projected p = Project(x_BSD, rope);
  return Attend(p.q_BNSH, std::move(p.k_BGSH), std::move(p.v_BGSH), allowed_B1SS);
}

at::Tensor AttentionImpl::ForwardCached(const at::Tensor& x_BSD, const RopeTables& rope,
                                        const at::Tensor& allowed_B1SK, at::Tensor& k_cache_BGCH,
                                        at::Tensor& v_cache_BGCH, int64_t start) {
  const int64_t s = x_BSD.size(1);
  CEMOE_CHECK(start >= 0 && start + s <= k_cache_BGCH.size(2),
              "KV cache overflow: {} positions from slot {} exceed the capacity {}", s, start,
              k_cache_BGCH.size(2));
  CEMOE_CHECK(allowed_B1SK.defined() && allowed_B1SK.size(-1) == start + s &&
                  allowed_B1SK.size(-2) == s,
              "cached attention needs a mask [B, 1, {}, {}]", s, start + s);
  Projected p = Project(x_BSD, rope);
  {
    at::NoGradGuard no_grad;  // the cache is inference state
    k_cache_BGCH.narrow(2, start, s).copy_(p.k_BGSH);
    v_cache_BGCH.narrow(2, start, s).copy_(p.v_BGSH);
  }
  return Attend(p.q_BNSH, k_cache_BGCH.narrow(2, 0, start + s),
                v_cache_BGCH.narrow(2, 0, start + s), allowed_B1SK);
}

}  // namespace cemoe
