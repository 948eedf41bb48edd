// expert_pack.h: the compute layout of a group of SwiGLU experts, kept apart from their storage
// names.
//
// Shape legend: L experts held here, D hidden, I intermediate.
// The parameters stay one per expert and projection, under Hugging Face's names
// ("<id>.gate_proj.weight" [I, D], "<id>.up_proj.weight" [I, D], "<id>.down_proj.weight" [D, I]):
// checkpoints, the optimiser, gradient reduction and placement by global id see nothing else.
// Their data, though, are views into two stacked tensors:
//   gate_up_L2ID [L, 2I, D]: expert l's gate rows (0..I-1) then its up rows (I..2I-1), so that
//                            one matmul per expert computes both projections (transformers 5
//                            stores them the same way, as gate_up_proj [E, 2I, D]);
//   down_LDI     [L, D, I].
// Their gradients are views into two stacked gradient buffers of the same shapes, allocated once:
// backward (grouped_swiglu.h) writes each expert's weight gradient straight into its slice,
// overwriting it when .grad is undefined (and then setting .grad to the slice) and accumulating
// in place when .grad is defined. So a step allocates, and page-faults, no gradient memory after
// the first, whether the trainer keeps gradients between micro-batches or releases them after
// every step (the slice is reused once nothing outside holds it).
// Anything that replaces a parameter's data (Module::to, set_data, a loader that swaps tensors)
// breaks the views; Pack() notices (by data pointer) and packs again from the parameters' current
// values, so the layout is always derived from the parameters, never the other way round.
// Thread-safety: not for concurrent use; GradTargets is called once per backward, before any
// worker thread writes into the targets.
#pragma once

#include <ATen/core/Tensor.h>

#include <cstdint>
#include <vector>

namespace cemoe {

// The registered parameters of one expert.
struct ExpertParams {
  at::Tensor gate;  // [I, D]
  at::Tensor up;    // [I, D]
  at::Tensor down;  // [D, I]
};

// Where backward puts one weight gradient: out = grad (beta 0: overwrite) or out += grad (beta 1).
// When add_to is defined, out is a temporary and add_to += out follows (a .grad that cannot be
// written by a matmul directly: another dtype or not contiguous). Undefined out: not needed.
struct GradTarget {
  at::Tensor out;
  double beta = 0;
  at::Tensor add_to;
};

// The targets of one expert; gate_up, when defined, is one [2I, D] tensor covering the gate and up
// targets (adjacent slices of the stacked buffer with the same beta), for one fused matmul.
struct ExpertGradTargets {
  GradTarget gate, up, down;
  GradTarget gate_up;
};

class ExpertPack {
 public:
  ExpertPack(int64_t hidden, int64_t intermediate) : hidden_(hidden), intermediate_(intermediate) {}

  // Makes every parameter a view of the stacked tensors, copying the current values, unless they
  // all are already (3L pointer compares). All parameters must share one dtype and device.
  void Pack(const std::vector<ExpertParams>& params);
  // True when the parameters are views of the stacked tensors now.
  bool IsPacked(const std::vector<ExpertParams>& params) const;

  const at::Tensor& gate_up_L2ID() const { return gate_up_; }
  const at::Tensor& down_LDI() const { return down_; }

  // The gradient targets of the experts with rows (has_rows[l]); sets .grad to the buffer's slice
  // where it was undefined. Parameters that do not require grad get no target.
  std::vector<ExpertGradTargets> GradTargets(const std::vector<ExpertParams>& params,
                                             const std::vector<bool>& has_rows);
  // The stacked gradient buffers ([L, 2I, D], [L, D, I]; undefined before the first backward).
  const at::Tensor& grad_gate_up_L2ID() const { return grad_gate_up_; }
  const at::Tensor& grad_down_LDI() const { return grad_down_; }

 private:
  // New stacked gradient buffers (uninitialised) and their per-parameter views.
  void AllocateGradBuffers(const std::vector<ExpertParams>& params);
  // True when something outside this pack holds a view of the gradient buffers or one of the
  // per-parameter views that is not its parameter's .grad (then they must not be overwritten).
  bool GradBuffersHeldOutside(const std::vector<ExpertParams>& params) const;
  GradTarget TargetOf(const at::Tensor& param, at::Tensor& view);

  int64_t hidden_, intermediate_;
  at::Tensor gate_up_, down_;            // [L, 2I, D], [L, D, I]
  at::Tensor grad_gate_up_, grad_down_;  // same shapes
  std::vector<at::Tensor> grad_views_;   // [3L]: gate, up, down of expert 0, then expert 1, ...
};

}  // namespace cemoe
