// adamw.h: AdamW with decoupled weight decay over named parameters, with its state saved and
// loaded by parameter name (so a checkpoint resumes at another expert-parallel layout: experts
// are named by global id).
//
// The update is torch.optim.AdamW's (single-tensor form, the one PyTorch uses for CPU tensors),
// operation for operation, for each parameter with a gradient:
//   step += 1;  p *= 1 - lr * wd;  m = lerp(m, g, 1 - beta1);  v = beta2 v + (1 - beta2) g^2
//   p -= lr / (1 - beta1^step) * m / (sqrt(v) / sqrt(1 - beta2^step) + eps)
// A parameter without a gradient (frozen, or an expert no token reached on any rank) is skipped
// and its step count does not advance, as in PyTorch. Weight decay applies only to parameters
// marked `decay` (docs/training.md: norms and biases are not decayed by default).
// State tensors: "<name>.exp_avg", "<name>.exp_avg_sq" (float32, the parameter's shape) and
// "<name>.step" (int64 scalar), created at a parameter's first update.
// Thread-safety: not for concurrent use.
#pragma once

#include <ATen/core/Tensor.h>

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <utility>
#include <vector>

namespace cemoe {

struct AdamWSettings {
  double beta1 = 0.9, beta2 = 0.999, eps = 1e-8, weight_decay = 0.0;
};

struct OptimizedParameter {
  std::string name;
  at::Tensor param;
  bool decay = true;
};

class AdamW {
 public:
  AdamW(std::vector<OptimizedParameter> params, AdamWSettings settings);
  // One update at learning rate `lr` for every parameter whose grad() is defined.
  void Step(double lr);
  const std::vector<OptimizedParameter>& params() const { return params_; }

  // The state of the parameters for which `keep(name)` is true, as named CPU tensors.
  std::vector<std::pair<std::string, at::Tensor>> StateTensors(
      const std::function<bool(const std::string&)>& keep) const;
  // Restores every parameter's state from `find` (state-tensor name -> tensor, or nullopt when
  // that parameter had no state yet). A parameter with exp_avg but no exp_avg_sq or step, or a
  // shape that differs from the parameter's, throws naming the tensor.
  void LoadState(const std::function<std::optional<at::Tensor>(const std::string&)>& find);

 private:
  struct State {
    at::Tensor exp_avg, exp_avg_sq;
    int64_t step = 0;
  };
  std::vector<OptimizedParameter> params_;
  std::vector<State> state_;
  AdamWSettings settings_;
};

}  // namespace cemoe
