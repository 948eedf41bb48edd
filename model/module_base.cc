#include "model/module_base.h"

#include <ATen/ATen.h>

namespace cemoe {

LinearImpl::LinearImpl(int64_t in_features, int64_t out_features, bool with_bias) {
  weight = register_parameter("weight", at::zeros({out_features, in_features}));
  if (with_bias) bias = register_parameter("bias", at::zeros({out_features}));
}

at::Tensor LinearImpl::forward(const at::Tensor& x) const {
  return at::linear(x, weight, bias.defined() ? c10::optional<at::Tensor>(bias) : c10::nullopt);
}

ParamHolderImpl::ParamHolderImpl(std::vector<int64_t> weight_shape, bool with_bias) {
  weight = register_parameter("weight", at::ones(weight_shape));
  if (with_bias) bias = register_parameter("bias", at::zeros({weight_shape.back()}));
}

}  // namespace cemoe
