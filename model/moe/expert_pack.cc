#include "model/moe/expert_pack.h"

#include <ATen/ATen.h>
#include <ATen/core/grad_mode.h>
#include <fmt/ranges.h>

#include "model/check.h"

namespace cemoe {
namespace {

const char* Bytes(const at::Tensor& t) { return static_cast<const char*>(t.data_ptr()); }

// A tensor sharing `base`'s storage at `base`'s offset and shape that autograd does not count as a
// view (optimisers call detach_() on gradients, which views refuse).
at::Tensor Alias(const at::Tensor& base) {
  at::NoGradGuard no_grad;
  at::Tensor t = at::empty({0}, base.options());
  t.set_(base.storage(), base.storage_offset(), base.sizes(), base.strides());
  return t;
}

bool SameTensor(const at::Tensor& a, const at::Tensor& b) {
  return a.defined() && b.defined() && a.unsafeGetTensorImpl() == b.unsafeGetTensorImpl();
}

}  // namespace

bool ExpertPack::IsPacked(const std::vector<ExpertParams>& params) const {
  const int64_t num = static_cast<int64_t>(params.size());
  if (!gate_up_.defined() || gate_up_.size(0) != num) return false;
  if (num == 0) return true;
  const int64_t block = intermediate_ * hidden_ * gate_up_.element_size();
  const char* gu = Bytes(gate_up_);
  const char* dn = Bytes(down_);
  for (int64_t l = 0; l < num; ++l) {
    const ExpertParams& p = params[l];
    for (const at::Tensor* t : {&p.gate, &p.up, &p.down}) {
      if (t->scalar_type() != gate_up_.scalar_type() || t->device() != gate_up_.device() ||
          !t->is_contiguous()) {
        return false;
      }
    }
    if (Bytes(p.gate) != gu + 2 * l * block || Bytes(p.up) != gu + (2 * l + 1) * block ||
        Bytes(p.down) != dn + l * block) {
      return false;
    }
  }
  return true;
}

void ExpertPack::Pack(const std::vector<ExpertParams>& params) {
  if (IsPacked(params)) return;
  const int64_t num = static_cast<int64_t>(params.size());
  const int64_t d = hidden_, i = intermediate_;
  const at::TensorOptions options =
      num > 0 ? params[0].gate.options().requires_grad(false) : at::TensorOptions(at::kFloat);
  for (int64_t l = 0; l < num; ++l) {
    const ExpertParams& p = params[l];
    CEMOE_CHECK(
        p.gate.sizes() == at::IntArrayRef({i, d}) && p.up.sizes() == at::IntArrayRef({i, d}) &&
            p.down.sizes() == at::IntArrayRef({d, i}),
        "expert pack: local expert {} has gate [{}], up [{}], down [{}]; expected [{}, {}], "
        "[{}, {}], [{}, {}]",
        l, fmt::join(p.gate.sizes(), ", "), fmt::join(p.up.sizes(), ", "),
        fmt::join(p.down.sizes(), ", "), i, d, i, d, d, i);
    for (const at::Tensor* t : {&p.gate, &p.up, &p.down}) {
      CEMOE_CHECK(
          t->scalar_type() == options.dtype().toScalarType() && t->device() == options.device(),
          "expert pack: local expert {} has a {} parameter on {}, expert 0 {} on {}: all "
          "experts of a layer must share dtype and device",
          l, c10::toString(t->scalar_type()), t->device().str(),
          c10::toString(options.dtype().toScalarType()), options.device().str());
    }
  }
  at::NoGradGuard no_grad;
  at::Tensor gate_up = at::empty({num, 2 * i, d}, options);
  at::Tensor down = at::empty({num, d, i}, options);
  for (int64_t l = 0; l < num; ++l) {
    gate_up[l].narrow(0, 0, i).copy_(params[l].gate);
    gate_up[l].narrow(0, i, i).copy_(params[l].up);
    down[l].copy_(params[l].down);
  }
  for (int64_t l = 0; l < num; ++l) {
    params[l].gate.set_data(gate_up[l].narrow(0, 0, i));
    params[l].up.set_data(gate_up[l].narrow(0, i, i));
    params[l].down.set_data(down[l]);
  }
  gate_up_ = gate_up;
  down_ = down;
  // Gradients of the old layout (if any) stay where they are; new buffers come with the next
  // backward.
  grad_gate_up_ = at::Tensor();
  grad_down_ = at::Tensor();
  grad_views_.clear();
}

void ExpertPack::AllocateGradBuffers(const std::vector<ExpertParams>& params) {
  const int64_t num = static_cast<int64_t>(params.size());
  const int64_t i = intermediate_;
  const at::TensorOptions options = gate_up_.options();
  grad_gate_up_ = at::empty(gate_up_.sizes(), options);
  grad_down_ = at::empty(down_.sizes(), options);
  grad_views_.clear();
  grad_views_.reserve(3 * num);
  for (int64_t l = 0; l < num; ++l) {
    grad_views_.push_back(Alias(grad_gate_up_[l].narrow(0, 0, i)));
    grad_views_.push_back(Alias(grad_gate_up_[l].narrow(0, i, i)));
    grad_views_.push_back(Alias(grad_down_[l]));
  }
}

bool ExpertPack::GradBuffersHeldOutside(const std::vector<ExpertParams>& params) const {
  const int64_t num = static_cast<int64_t>(params.size());
  // Storage references: the stacked tensor and the views made here (a parameter's .grad that is
  // one of them shares its TensorImpl, no extra reference). Anything beyond: a view from outside.
  if (grad_gate_up_.storage().use_count() != static_cast<size_t>(1 + 2 * num) ||
      grad_down_.storage().use_count() != static_cast<size_t>(1 + num)) {
    return true;
  }
  for (int64_t l = 0; l < num; ++l) {
    const at::Tensor* ps[3] = {&params[l].gate, &params[l].up, &params[l].down};
    for (int j = 0; j < 3; ++j) {
      const at::Tensor& view = grad_views_[3 * l + j];
      const size_t expected = SameTensor(ps[j]->grad(), view) ? 2 : 1;
      if (view.use_count() != expected) return true;
    }
  }
  return false;
}

GradTarget ExpertPack::TargetOf(const at::Tensor& param, at::Tensor& view) {
  if (!param.requires_grad()) return {};
  const at::Tensor& grad = param.grad();
  if (grad.defined()) {
    if (grad.scalar_type() == param.scalar_type() && grad.device() == param.device() &&
        grad.is_contiguous() && grad.sizes() == param.sizes()) {
      return {grad, 1.0, {}};
    }
    return {at::empty(param.sizes(), param.options().requires_grad(false)), 0.0, grad};
  }
  param.mutable_grad() = view;
  return {view, 0.0, {}};
}

std::vector<ExpertGradTargets> ExpertPack::GradTargets(const std::vector<ExpertParams>& params,
                                                       const std::vector<bool>& has_rows) {
  const int64_t num = static_cast<int64_t>(params.size());
  CEMOE_CHECK(IsPacked(params),
              "expert pack: backward found the parameters re-laid out since "
              "forward (Module::to or set_data between forward and backward)");
  bool buffer_needed = false;
  for (int64_t l = 0; l < num; ++l) {
    if (!has_rows[l]) continue;
    for (const at::Tensor* t : {&params[l].gate, &params[l].up, &params[l].down}) {
      if (t->requires_grad() && !t->grad().defined()) buffer_needed = true;
    }
  }
  if (buffer_needed && (!grad_gate_up_.defined() || GradBuffersHeldOutside(params))) {
    AllocateGradBuffers(params);
  }
  std::vector<ExpertGradTargets> targets(num);
  const int64_t block = intermediate_ * hidden_ * gate_up_.element_size();
  for (int64_t l = 0; l < num; ++l) {
    if (!has_rows[l]) continue;
    ExpertGradTargets& t = targets[l];
    at::Tensor none;
    t.gate = TargetOf(params[l].gate, buffer_needed ? grad_views_[3 * l] : none);
    t.up = TargetOf(params[l].up, buffer_needed ? grad_views_[3 * l + 1] : none);
    t.down = TargetOf(params[l].down, buffer_needed ? grad_views_[3 * l + 2] : none);
    if (grad_gate_up_.defined() && t.gate.out.defined() && t.up.out.defined() &&
        !t.gate.add_to.defined() && !t.up.add_to.defined() && t.gate.beta == t.up.beta &&
        Bytes(t.gate.out) == Bytes(grad_gate_up_) + 2 * l * block &&
        Bytes(t.up.out) == Bytes(grad_gate_up_) + (2 * l + 1) * block) {
      t.gate_up = {Alias(grad_gate_up_[l]), t.gate.beta, {}};
    }
  }
  return targets;
}

}  // namespace cemoe
