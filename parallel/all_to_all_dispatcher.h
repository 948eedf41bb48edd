// all_to_all_dispatcher.h: the expert-parallel TokenDispatcher (contract in
// model/moe/token_dispatcher.h). Each rank of the EP group holds placement.experts_of_rank[r];
// Dispatch sends every kept (token, expert) row to the rank holding its expert, Combine brings
// the expert outputs back and applies the gate weights.
//
// Dispatch, in two phases:
//   1. layout:  bucket ids (destination rank, local expert), optional capacity drop,
//               SortByBucket, counts per bucket, exchanged (parallel/dispatch_layout.h)
//   2. rows:    one Communicator::AllToAllRows per tensor (x and every extra): rows are read
//               straight from x in bucket order (no permuted copy) and land straight in
//               (local expert, source rank) order (no regroup pass), so the experts see
//               contiguous per-expert slices
// Combine is the mirror: one AllToAllRows back from the expert-major rows to bucket order, then
// the gate weighting fused into the sum over each token's K rows (parallel/weighted_row_sum.h).
// Both are autograd functions: backward of the row exchange of Dispatch is the return exchange
// of Combine and vice versa, so gradients reach x, the extras and the weights.
// The number of experts a token keeps (K) is whatever topk_ids_TK has; the rows for one
// (destination rank, local expert) bucket are one chunk of the exchange.
//
// Lifetime: the dispatcher and the autograd graph it builds hold a pointer to the EP
// communicator; the ProcessGroups owning it must outlive both.
// Thread-safety: one layer of one model; not for concurrent use.
#pragma once

#include <memory>
#include <vector>

#include "model/moe/token_dispatcher.h"
#include "parallel/communicator.h"
#include "parallel/placement.h"

namespace cemoe {

struct DispatcherOptions {
  double capacity_factor = 0;  // 0 = dropless; else the drop rule of parallel/dispatch_layout.h
};

class AllToAllDispatcher : public TokenDispatcher {
 public:
  // ep_group.size() must equal placement.ep; this rank holds placement.experts_of_rank[rank].
  AllToAllDispatcher(Communicator& ep_group, ExpertPlacement placement,
                     DispatcherOptions options = {});

  DispatchResult Dispatch(const at::Tensor& x_TD, const at::Tensor& topk_ids_TK,
                          const std::vector<at::Tensor>& extras_T) override;
  at::Tensor Combine(const at::Tensor& y_RD, const DispatchHandle& handle,
                     const at::Tensor& topk_weights_TK) override;
  const std::vector<int64_t>& local_expert_ids() const override { return local_ids_; }

  const ExpertPlacement& placement() const { return placement_; }

 private:
  Communicator& comm_;
  ExpertPlacement placement_;
  DispatcherOptions options_;
  std::vector<int64_t> local_ids_;
};

// ep_group.size() == 1 and no capacity limit: the LocalDispatcher (the reference); else an
// AllToAllDispatcher.
std::shared_ptr<TokenDispatcher> MakeTokenDispatcher(Communicator& ep_group,
                                                     const ExpertPlacement& placement,
                                                     DispatcherOptions options = {});

}  // namespace cemoe
