#include "parallel/grad_sync.h"

#include <ATen/ATen.h>

#include <cmath>
#include <map>

#include "model/check.h"
#include "parallel/process_groups.h"

namespace cemoe {
namespace {

// The parameter's gradient, created as zeros when undefined.
at::Tensor GradOf(const at::Tensor& param) {
  at::Tensor grad = param.grad();
  if (!grad.defined()) {
    // mutable_grad() is the supported way to set a leaf's gradient from C++.
    const_cast<at::Tensor&>(param).mutable_grad() = at::zeros_like(param);
    grad = param.grad();
  }
  return grad;
}

}  // namespace

bool IsExpertParameterName(const std::string& name) {
  return name.rfind("experts.", 0) == 0 || name.find(".experts.") != std::string::npos;
}

double GlobalCount(Communicator& comm, double local) {
  std::vector<double> values{local};
  comm.AllReduceHost(values, ReduceOp::kSum);
  return values[0];
}

void AllReduceGradients(Communicator& comm, const std::vector<at::Tensor>& params) {
  if (comm.size() == 1) return;
  // A gradient is defined after the reduction iff it was defined on some rank: optimisers skip
  // parameters without a gradient, and must skip the same ones as a single process would.
  std::vector<double> defined(params.size());
  for (size_t i = 0; i < params.size(); ++i) defined[i] = params[i].grad().defined() ? 1 : 0;
  comm.AllReduceHost(defined, ReduceOp::kMax);
  // One flat buffer per (dtype, device): one collective each instead of one per parameter.
  std::map<std::pair<int, std::string>, std::vector<at::Tensor>> buckets;
  for (size_t i = 0; i < params.size(); ++i) {
    if (defined[i] == 0) continue;
    at::Tensor g = GradOf(params[i]);
    buckets[{static_cast<int>(g.scalar_type()), g.device().str()}].push_back(g);
  }
  for (auto& entry : buckets) {
    std::vector<at::Tensor>& grads = entry.second;
    std::vector<at::Tensor> flat;
    flat.reserve(grads.size());
    for (const at::Tensor& g : grads) flat.push_back(g.reshape({-1}));
    at::Tensor buffer = at::cat(flat);
    comm.AllReduce(buffer, ReduceOp::kSum);
    int64_t offset = 0;
    for (at::Tensor& g : grads) {
      g.copy_(buffer.slice(0, offset, offset + g.numel()).view_as(g));
      offset += g.numel();
    }
  }
}

void ReduceGradients(ProcessGroups& groups, const ParameterSplit& params) {
  AllReduceGradients(groups.world(), params.dense);
  AllReduceGradients(groups.edp_group(), params.expert);
}

double GlobalGradNorm(Communicator& ep_group, const ParameterSplit& params) {
  auto sum_squares = [](const std::vector<at::Tensor>& ps) {
    double total = 0;
    for (const at::Tensor& p : ps) {
      at::Tensor g = p.grad();
      // The 2-norm accumulated in float64 by the reduction itself (no float64 copy of the
      // gradient: that copy and its square cost 6 of the 16 s of an OLMoE-sized step,
      // docs/benchmarks.md).
      if (g.defined()) {
        const double n = at::linalg_vector_norm(g, 2, c10::nullopt, false, at::kDouble).item<double>();
        total += n * n;
      }
    }
    return total;
  };
  std::vector<double> expert{sum_squares(params.expert)};
  ep_group.AllReduceHost(expert, ReduceOp::kSum);
  return std::sqrt(sum_squares(params.dense) + expert[0]);
}

double ClipGradNormGlobal(Communicator& ep_group, const ParameterSplit& params, double max_norm) {
  const double norm = GlobalGradNorm(ep_group, params);
  CEMOE_CHECK(std::isfinite(norm), "gradient norm is not finite ({})", norm);
  if (max_norm <= 0) return norm;
  const double coef = max_norm / (norm + 1e-6);
  if (coef < 1) ScaleGradients(params, coef);
  return norm;
}

void ScaleGradients(const ParameterSplit& params, double factor) {
  for (const auto* group : {&params.dense, &params.expert}) {
    for (const at::Tensor& p : *group) {
      at::Tensor g = p.grad();
      if (g.defined()) g.mul_(factor);
    }
  }
}

}  // namespace cemoe
