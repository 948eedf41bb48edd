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
  at::Tensor cos_SH;  // [S, head_dim]
  at::Tensor sin_SH;  // [S, head_dim]
};

// Tables for positions 0..seq_len-1, float32 on `device`.
RopeTables ComputeRope(const ModelConfig& config, int64_t seq_len, const at::Device& device);

// x_BNSH: [batch, heads, seq, head_dim].
at::Tensor ApplyRope(const at::Tensor& x_BNSH, const RopeTables& rope);

}  // namespace cemoe
