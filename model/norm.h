// norm.h: the two normalisations of the supported families.
// RmsNorm (OLMoE): computed in float32, y = w * (x / sqrt(mean(x^2) + eps)) cast back to x's
// dtype before the weight, as transformers does. LayerNorm (Phi-MoE): weight and bias.
// Thread-safety: pure functions.
#pragma once

#include <ATen/core/Tensor.h>

namespace cemoe {

at::Tensor RmsNorm(const at::Tensor& x, const at::Tensor& weight, double eps);
at::Tensor LayerNorm(const at::Tensor& x, const at::Tensor& weight, const at::Tensor& bias,
                     double eps);

}  // namespace cemoe
