#include "model/moe/experts.h"

#include <ATen/ATen.h>

#include <string>

#include "model/check.h"

namespace cemoe {

ExpertImpl::ExpertImpl(int64_t hidden, int64_t intermediate) {
  gate_proj = register_module("gate_proj", Linear(hidden, intermediate, false));
  up_proj = register_module("up_proj", Linear(hidden, intermediate, false));
  down_proj = register_module("down_proj", Linear(intermediate, hidden, false));
}

GroupedExpertsImpl::GroupedExpertsImpl(int64_t hidden, int64_t intermediate,
                                       std::vector<int64_t> expert_ids)
    : hidden_(hidden), intermediate_(intermediate), expert_ids_(std::move(expert_ids)) {
  for (int64_t id : expert_ids_) {
    experts_.push_back(register_module(std::to_string(id), Expert(hidden, intermediate)));
  }
}

at::Tensor GroupedExpertsImpl::forward(const at::Tensor& x_RD, const std::vector<int64_t>& counts,
                                       const ExpertScales* scales) {
  CEMOE_CHECK(counts.size() == experts_.size(), "experts: {} row counts for {} experts",
              counts.size(), experts_.size());
  int64_t total = 0;
  for (int64_t c : counts) total += c;
  CEMOE_CHECK(total == x_RD.size(0), "experts: counts sum to {} but {} rows arrived", total,
              x_RD.size(0));
  if (total == 0) {
    // Keep the graph connected so that every rank runs the same backward collectives.
    return x_RD.new_zeros({0, hidden_}) + x_RD.sum() * 0;
  }
  std::vector<at::Tensor> xs = x_RD.split_with_sizes(counts);
  std::vector<at::Tensor> gs, us, ds;
  if (scales) {
    gs = scales->gate_in_RD.split_with_sizes(counts);
    us = scales->up_in_RD.split_with_sizes(counts);
    ds = scales->down_in_RI.split_with_sizes(counts);
  }
  std::vector<at::Tensor> ys;
  ys.reserve(xs.size());
  for (size_t l = 0; l < xs.size(); ++l) {
    if (counts[l] == 0) continue;
    Expert& e = experts_[l];
    at::Tensor xg = scales ? xs[l] * gs[l] : xs[l];
    at::Tensor xu = scales ? xs[l] * us[l] : xs[l];
    at::Tensor h = at::silu(e->gate_proj->forward(xg)) * e->up_proj->forward(xu);
    if (scales) h = h * ds[l];
    ys.push_back(e->down_proj->forward(h));
  }
  return at::cat(ys, 0);
}

}  // namespace cemoe
