// rope.h: rotary position embeddings in the rotate-half form, default and Phi's longrope.
//
// inv_freq[i] = 1 / (factor[i] * theta^(2i / head_dim)), i < head_dim / 2 (factor = 1 without
// longrope); angle[s, i] = position[s] * inv_freq[i]; cos/sin tables [S, head_dim] repeat the
// half twice and are multiplied by mscale (longrope: short_mscale, or long_mscale with the long
// factors when the sequence is longer than original_max_position_embeddings).
// ApplyRope: x * cos + rotate_half(x) * sin, rotate_half(x) = cat(-x2, x1).
// Thread-safety: pure functions.
#pragma once

#include <ATen/core/Tensor.h>

#include <cstdint>

namespace cemoe {

struct ModelConfig;

struct RopeTables {
  // [S, head_dim] for positions 0..S-1 in every row, or [B, 1, S, head_dim] for per-row
  // positions (packed rows): either broadcasts against x_BNSH.
  at::Tensor cos_SH;
  at::Tensor sin_SH;
};

// Tables for positions 0..seq_len-1, float32 on `device`.
RopeTables ComputeRope(const ModelConfig& config, int64_t seq_len, const at::Device& device);
// Tables for explicit positions (int64 [B, S], e.g. restarting at 0 for each example of a packed
// row): [B, 1, S, head_dim]. Longrope picks its factor set by max(position) + 1, as
// transformers does from position_ids.
RopeTables ComputeRopeAt(const ModelConfig& config, const at::Tensor& position_ids_BS,
                         const at::Device& device);

// x_BNSH: [batch, heads, seq, head_dim].
at::Tensor ApplyRope(const at::Tensor& x_BNSH, const RopeTables& rope);

}  // namespace cemoe
