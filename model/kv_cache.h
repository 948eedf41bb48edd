// kv_cache.h: the attention keys and values of every decoder layer, kept between the steps of
// incremental decoding (trainer/runtime/generation.h).
//
// Per layer: k_BGCH, v_BGCH [B, G, C, H] (B rows, G kv heads, C slots, H head_dim), after RoPE
// (and OLMoE's q/k norms and clip), before the GQA repeat, in the model's dtype on its device.
// Slots [0, length) hold the positions fed so far, the same slots for every row; which slots a
// row may attend to (its padding excluded) is the caller's mask (CausalLMImpl::ForwardCached).
// Memory: 2 * L * B * G * C * H elements.
// Thread-safety: plain state of one generation; single owner.
#pragma once

#include <ATen/core/Tensor.h>

#include <cstdint>
#include <vector>

namespace cemoe {

struct ModelConfig;

struct KvCache {
  // Zero-filled slots for `batch` rows and `capacity` positions, `options` = dtype and device.
  KvCache(const ModelConfig& config, int64_t batch, int64_t capacity,
          const at::TensorOptions& options);
  std::vector<at::Tensor> k_BGCH;  // [layer]
  std::vector<at::Tensor> v_BGCH;  // [layer]
  int64_t length = 0;              // slots filled
  int64_t capacity() const;
  int64_t batch() const;
};

}  // namespace cemoe
