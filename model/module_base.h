// module_base.h: the small building blocks every model module uses: a bias-optional Linear and a
// named container, on top of torch::nn::Module (parameters registered under Hugging Face-like
// names, so named_parameters() reads "model.layers.0.self_attn.q_proj.weight").
// Thread-safety: modules are not for concurrent use.
#pragma once

#include <ATen/core/Tensor.h>
#include <torch/nn/module.h>
#include <torch/nn/pimpl.h>

#include <cstdint>
#include <vector>

namespace cemoe {

// y = x W^T (+ b); weight [out, in], bias [out].
class LinearImpl : public torch::nn::Module {
 public:
  LinearImpl(int64_t in_features, int64_t out_features, bool bias);
  at::Tensor forward(const at::Tensor& x) const;
  at::Tensor weight;
  at::Tensor bias;  // undefined when there is no bias
};
TORCH_MODULE(Linear);

// Holds one parameter named "weight" (embeddings) or weight + bias (norms), shapes given.
class ParamHolderImpl : public torch::nn::Module {
 public:
  ParamHolderImpl(std::vector<int64_t> weight_shape, bool bias);
  at::Tensor weight;
  at::Tensor bias;
};
TORCH_MODULE(ParamHolder);

}  // namespace cemoe
