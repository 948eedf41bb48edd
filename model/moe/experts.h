// experts.h: a group of SwiGLU experts computed grouped: rows arrive sorted by expert, each
// expert runs one pass over its contiguous slice (one split of the input, no masked loop).
//
// Shape legend: R rows (sum of counts), D hidden, I intermediate, L experts held here.
// Expert e: y = down_e( silu(gate_e(x * g)) * up_e(x * u) * d ), where g [R, D], u [R, D],
// d [R, I] are optional per-row scales (ExpertScales): the compressed-expert modulation of
// method.md 1.3; without them g = u = d = 1.
// Each expert is a submodule named by its GLOBAL id ("3.gate_proj.weight" [I, D], "3.up_proj
// .weight" [I, D], "3.down_proj.weight" [D, I]), so checkpoints name experts by global id
// whatever subset a rank holds. Those per-expert parameters are views into a stacked compute
// layout (expert_pack.h: gate and up fused as [L, 2I, D], down as [L, D, I]); the kernel
// (grouped_swiglu.h) runs one gate+up matmul and one down matmul per expert and writes each
// weight gradient straight into its slice of a stacked gradient buffer.
// Thread-safety: not for concurrent use.
#pragma once

#include <memory>
#include <vector>

#include "model/module_base.h"
#include "model/moe/expert_pack.h"

namespace cemoe {

struct ExpertScales {
  at::Tensor gate_in_RD;  // multiplies the gate projection's input
  at::Tensor up_in_RD;    // multiplies the up projection's input
  at::Tensor down_in_RI;  // multiplies the intermediate activation before down
};

class ExpertImpl : public torch::nn::Module {
 public:
  ExpertImpl(int64_t hidden, int64_t intermediate);
  Linear gate_proj{nullptr}, up_proj{nullptr}, down_proj{nullptr};
};
TORCH_MODULE(Expert);

class GroupedExpertsImpl : public torch::nn::Module {
 public:
  GroupedExpertsImpl(int64_t hidden, int64_t intermediate, std::vector<int64_t> expert_ids);
  // x_RD grouped by expert in expert_ids() order, counts[l] rows for the l-th; scales optional.
  at::Tensor forward(const at::Tensor& x_RD, const std::vector<int64_t>& counts,
                     const ExpertScales* scales = nullptr);
  const std::vector<int64_t>& expert_ids() const { return expert_ids_; }
  Expert& expert(size_t local_index) { return experts_[local_index]; }
  int64_t hidden() const { return hidden_; }
  int64_t intermediate() const { return intermediate_; }
  // The registered parameters, expert by expert, and their compute layout (packed at forward).
  std::vector<ExpertParams> params() const;
  const ExpertPack& pack() const { return *pack_; }

 private:
  int64_t hidden_, intermediate_;
  std::vector<int64_t> expert_ids_;
  std::vector<Expert> experts_;
  std::shared_ptr<ExpertPack> pack_;
};
TORCH_MODULE(GroupedExperts);

}  // namespace cemoe
