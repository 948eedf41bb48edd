#include "model/kv_cache.h"

#include <ATen/ATen.h>

#include "model/check.h"
#include "model/config.h"

namespace cemoe {

KvCache::KvCache(const ModelConfig& config, int64_t batch, int64_t capacity,
                 const at::TensorOptions& options) {
  CEMOE_CHECK(batch >= 0 && capacity >= 1, "KV cache: batch {} and capacity {} must be >= 0 and >= 1",
              batch, capacity);
  for (int64_t l = 0; l < config.num_hidden_layers; ++l) {
    k_BGCH.push_back(
        at::zeros({batch, config.num_key_value_heads, capacity, config.head_dim}, options));
    v_BGCH.push_back(at::zeros_like(k_BGCH.back()));
  }
}

int64_t KvCache::capacity() const { return k_BGCH.empty() ? 0 : k_BGCH.front().size(2); }
int64_t KvCache::batch() const { return k_BGCH.empty() ? 0 : k_BGCH.front().size(0); }

}  // namespace cemoe
