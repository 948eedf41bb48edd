#include "model/rope.h"

#include <ATen/ATen.h>

#include "model/config.h"

namespace cemoe {

RopeTables ComputeRope(const ModelConfig& config, int64_t seq_len, const at::Device& device) {
  const int64_t dim = config.head_dim;
  auto f32 = at::TensorOptions().dtype(at::kFloat);
  at::Tensor exponent = at::arange(0, dim, 2, at::TensorOptions().dtype(at::kLong)).to(at::kFloat) /
                        static_cast<double>(dim);
  at::Tensor base_pow = at::pow(at::scalar_tensor(config.rope_theta, f32), exponent);
  double mscale = 1.0;
  if (config.longrope) {
    const LongRope& lr = *config.longrope;
    const bool use_long = seq_len > lr.original_max_position_embeddings;
    const auto& factors = use_long ? lr.long_factor : lr.short_factor;
    at::Tensor ext = at::tensor(std::vector<float>(factors.begin(), factors.end()), f32);
    base_pow = ext * base_pow;
    mscale = use_long ? lr.long_mscale : lr.short_mscale;
  }
  at::Tensor inv_freq = 1.0 / base_pow;
  at::Tensor positions = at::arange(seq_len, at::TensorOptions().dtype(at::kLong)).to(at::kFloat);
  at::Tensor freqs = positions.unsqueeze(1) * inv_freq.unsqueeze(0);  // [S, dim/2]
  at::Tensor emb = at::cat({freqs, freqs}, -1);
  RopeTables t;
  t.cos_SH = (emb.cos() * mscale).to(device);
  t.sin_SH = (emb.sin() * mscale).to(device);
  return t;
}

RopeTables ComputeRopeAt(const ModelConfig& config, const at::Tensor& position_ids_BS,
                         const at::Device& device) {
  const int64_t b = position_ids_BS.size(0), s = position_ids_BS.size(1);
  const int64_t longest = position_ids_BS.numel() > 0 ? position_ids_BS.max().item<int64_t>() + 1 : 1;
  RopeTables all = ComputeRope(config, longest, device);
  const at::Tensor index = position_ids_BS.reshape({-1}).to(device);
  // The last size is explicit: a rank with no rows (b = 0) still runs every forward under
  // expert parallelism, and view() cannot infer a dimension of an empty tensor.
  const int64_t h = all.cos_SH.size(1);
  RopeTables t;
  t.cos_SH = all.cos_SH.index_select(0, index).view({b, 1, s, h});
  t.sin_SH = all.sin_SH.index_select(0, index).view({b, 1, s, h});
  return t;
}

at::Tensor ApplyRope(const at::Tensor& x_BNSH, const RopeTables& rope) {
  const int64_t half = x_BNSH.size(-1) / 2;
  at::Tensor x1 = x_BNSH.narrow(-1, 0, half);
  at::Tensor x2 = x_BNSH.narrow(-1, half, half);
  at::Tensor rotated = at::cat({-x2, x1}, -1);
  at::Tensor cos = rope.cos_SH.to(x_BNSH.scalar_type());
  at::Tensor sin = rope.sin_SH.to(x_BNSH.scalar_type());
  return x_BNSH * cos + rotated * sin;
}

}  // namespace cemoe
