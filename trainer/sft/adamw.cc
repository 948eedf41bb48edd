#include "trainer/sft/adamw.h"

#include <ATen/ATen.h>
#include <ATen/core/grad_mode.h>
#include <fmt/ranges.h>

#include <cmath>

#include "model/check.h"

namespace cemoe {

AdamW::AdamW(std::vector<OptimizedParameter> params, AdamWSettings settings)
    : params_(std::move(params)), state_(params_.size()), settings_(settings) {}

void AdamW::Step(double lr) {
  at::NoGradGuard no_grad;
  const double beta1 = settings_.beta1, beta2 = settings_.beta2;
  for (size_t i = 0; i < params_.size(); ++i) {
    at::Tensor& p = params_[i].param;
    const at::Tensor& grad = p.grad();
    if (!grad.defined()) continue;
    State& s = state_[i];
    if (!s.exp_avg.defined()) {
      s.exp_avg = at::zeros_like(p, at::MemoryFormat::Preserve);
      s.exp_avg_sq = at::zeros_like(p, at::MemoryFormat::Preserve);
    }
    s.step += 1;
    const double wd = params_[i].decay ? settings_.weight_decay : 0.0;
    if (wd != 0.0) p.mul_(1.0 - lr * wd);
    s.exp_avg.lerp_(grad, 1.0 - beta1);
    s.exp_avg_sq.mul_(beta2).addcmul_(grad, grad, 1.0 - beta2);
    const double bias_correction1 = 1.0 - std::pow(beta1, static_cast<double>(s.step));
    const double bias_correction2 = 1.0 - std::pow(beta2, static_cast<double>(s.step));
    const double step_size = lr / bias_correction1;
    const double bias_correction2_sqrt = std::sqrt(bias_correction2);
    at::Tensor denom = (s.exp_avg_sq.sqrt() / bias_correction2_sqrt).add_(settings_.eps);
    p.addcdiv_(s.exp_avg, denom, -step_size);
  }
}

std::vector<std::pair<std::string, at::Tensor>> AdamW::StateTensors(
    const std::function<bool(const std::string&)>& keep) const {
  std::vector<std::pair<std::string, at::Tensor>> out;
  for (size_t i = 0; i < params_.size(); ++i) {
    const State& s = state_[i];
    if (!s.exp_avg.defined() || !keep(params_[i].name)) continue;
    const std::string& n = params_[i].name;
    out.emplace_back(n + ".exp_avg", s.exp_avg.detach().to(at::kCPU).contiguous());
    out.emplace_back(n + ".exp_avg_sq", s.exp_avg_sq.detach().to(at::kCPU).contiguous());
    out.emplace_back(n + ".step", at::scalar_tensor(s.step, at::kLong).view({1}));
  }
  return out;
}

void AdamW::LoadState(const std::function<std::optional<at::Tensor>(const std::string&)>& find) {
  at::NoGradGuard no_grad;
  for (size_t i = 0; i < params_.size(); ++i) {
    const std::string& n = params_[i].name;
    const at::Tensor& p = params_[i].param;
    std::optional<at::Tensor> m = find(n + ".exp_avg");
    std::optional<at::Tensor> v = find(n + ".exp_avg_sq");
    std::optional<at::Tensor> step = find(n + ".step");
    State& s = state_[i];
    if (!m && !v && !step) {
      s = State{};
      continue;
    }
    CEMOE_CHECK(m && v && step, "optimizer state of {} is incomplete (exp_avg {}, exp_avg_sq {}, "
                "step {})", n, m ? "present" : "missing", v ? "present" : "missing",
                step ? "present" : "missing");
    CEMOE_CHECK(m->sizes() == p.sizes() && v->sizes() == p.sizes(),
                "optimizer state of {}: shape {} does not match the parameter's {}", n,
                fmt::join(m->sizes(), "x"), fmt::join(p.sizes(), "x"));
    CEMOE_CHECK(step->numel() == 1, "optimizer state {}.step must hold one value", n);
    s.exp_avg = m->to(p.device(), p.scalar_type()).clone();
    s.exp_avg_sq = v->to(p.device(), p.scalar_type()).clone();
    s.step = step->to(at::kLong).item<int64_t>();
  }
}

}  // namespace cemoe
