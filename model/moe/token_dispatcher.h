// token_dispatcher.h: the seam between an MoE layer and wherever its experts live.
//
// The MoE layer (model/moe/moe_layer.h) reads as: route, Dispatch, experts, Combine. On one
// device the LocalDispatcher below sorts the (token, expert) assignments by expert; parallel/
// installs an all-to-all dispatcher with the same contract that sends rows to the ranks holding
// their experts. The model never knows which one it has.
//
// Shape legend: T tokens, K experts kept per token (the runtime top_k), D hidden size,
// E experts in the layer (global ids 0..E-1), L experts held by this instance (local),
// R rows handed to the local experts (one per kept (token, expert) assignment that lands here).
//
// Contract of Dispatch:
//   - x_RD holds the rows for the local experts grouped by local expert (local order given by
//     local_expert_ids()), num_rows_per_local_expert[l] rows each;
//   - every tensor in extras_T ([T, ...], per-token inputs such as the compressed-expert scales)
//     is routed with its token, so extras_R[i] row r belongs to the same token as x_RD row r;
//   - Dispatch and Combine are differentiable: gradients flow back to x_TD, extras and weights.
// Combine takes the local experts' outputs y_RD (aligned with x_RD) and returns
// out_TD[t] = sum_k topk_weights_TK[t, k] * y(t, k). Assignments dropped by a capacity limit
// contribute zero.
// Thread-safety: a dispatcher serves one layer of one model; not for concurrent use.
#pragma once

#include <ATen/core/Tensor.h>

#include <cstdint>
#include <memory>
#include <vector>

namespace cemoe {

// Whatever Combine needs to undo Dispatch; produced by a dispatcher, consumed by the same one.
class DispatchHandle {
 public:
  virtual ~DispatchHandle() = default;
};

struct DispatchResult {
  at::Tensor x_RD;                                 // rows grouped by local expert
  std::vector<at::Tensor> extras_R;                // per-token extras, rows aligned with x_RD
  std::vector<int64_t> num_rows_per_local_expert;  // [L], sums to R
  std::shared_ptr<DispatchHandle> handle;
};

class TokenDispatcher {
 public:
  virtual ~TokenDispatcher() = default;
  // x_TD: tokens; topk_ids_TK: global expert ids (int64, [T, K]); extras_T: [T, ...] each.
  virtual DispatchResult Dispatch(const at::Tensor& x_TD, const at::Tensor& topk_ids_TK,
                                  const std::vector<at::Tensor>& extras_T) = 0;
  // y_RD: outputs of the local experts aligned with Dispatch's x_RD; topk_weights_TK: [T, K].
  virtual at::Tensor Combine(const at::Tensor& y_RD, const DispatchHandle& handle,
                             const at::Tensor& topk_weights_TK) = 0;
  // Global ids of the experts this instance computes, in local order.
  virtual const std::vector<int64_t>& local_expert_ids() const = 0;
};

// ep = 1: all E experts are local; rows are sorted by expert id (stable in token order).
// The reference every other dispatcher is tested against, and the fallback.
class LocalDispatcher : public TokenDispatcher {
 public:
  explicit LocalDispatcher(int64_t num_experts);
  DispatchResult Dispatch(const at::Tensor& x_TD, const at::Tensor& topk_ids_TK,
                          const std::vector<at::Tensor>& extras_T) override;
  at::Tensor Combine(const at::Tensor& y_RD, const DispatchHandle& handle,
                     const at::Tensor& topk_weights_TK) override;
  const std::vector<int64_t>& local_expert_ids() const override { return expert_ids_; }

 private:
  int64_t num_experts_;
  std::vector<int64_t> expert_ids_;
};

}  // namespace cemoe
