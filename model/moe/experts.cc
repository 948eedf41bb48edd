#include "model/moe/experts.h"

#include <ATen/ATen.h>

#include <string>

#include "model/check.h"
#include "model/moe/grouped_swiglu.h"

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
  pack_ = std::make_shared<ExpertPack>(hidden, intermediate);
  // Packed from the start, so that loaders copying into the parameters keep the layout.
  pack_->Pack(params());
}

std::vector<ExpertParams> GroupedExpertsImpl::params() const {
  std::vector<ExpertParams> out;
  out.reserve(experts_.size());
  for (const Expert& e : experts_) {
    out.push_back({e->gate_proj->weight, e->up_proj->weight, e->down_proj->weight});
  }
  return out;
}

at::Tensor GroupedExpertsImpl::forward(const at::Tensor& x_RD, const std::vector<int64_t>& counts,
                                       const ExpertScales* scales) {
  CEMOE_CHECK(counts.size() == experts_.size(), "experts: {} row counts for {} experts",
              counts.size(), experts_.size());
  int64_t total = 0;
  for (int64_t c : counts) total += c;
  CEMOE_CHECK(total == x_RD.size(0), "experts: counts sum to {} but {} rows arrived", total,
              x_RD.size(0));
  const std::vector<ExpertParams> ps = params();
  pack_->Pack(ps);
  if (total == 0) {
    // Keep the graph connected so that every rank runs the same backward collectives.
    return x_RD.new_zeros({0, hidden_}) + x_RD.sum() * 0;
  }
  if (!scales) return GroupedSwiglu(pack_, ps, x_RD, at::Tensor(), at::Tensor(), counts);
  // Compressed experts: gate and up read differently scaled rows (two matmuls per expert).
  return GroupedSwiglu(pack_, ps, x_RD * scales->gate_in_RD, x_RD * scales->up_in_RD,
                       scales->down_in_RI, counts);
}

}  // namespace cemoe
