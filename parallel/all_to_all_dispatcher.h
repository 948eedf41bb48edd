// all_to_all_dispatcher.h: the expert-parallel TokenDispatcher (contract in
// model/moe/token_dispatcher.h). Each rank of the EP group holds placement.experts_of_rank[r];
// Dispatch sends every kept (token, expert) row to the rank holding its expert, Combine brings
// the expert outputs back and applies the gate weights.
//
// Dispatch, in three phases (no collective in the first or the last):
//   1. layout:  bucket ids (destination rank, local expert), optional capacity drop,
//               SortByBucket, rows per destination rank            (parallel/dispatch_layout.h)
//   2. exchange: all-to-all of the per-bucket counts, then of the rows (x and every extra)
//   3. regroup:  received rows reordered from (source rank, local expert) to (local expert,
//                source rank), so the experts see contiguous per-expert slices
// Combine is the mirror: ungroup, all-to-all back, Unpermute with the weights
// (model/moe/permute.h). Both are autograd functions: backward of the row exchange of Dispatch is
// the return exchange of Combine and vice versa, so gradients reach x, the extras and the weights.
// The number of experts a token keeps (K) is whatever topk_ids_TK has; rows of all experts of a
// destination rank travel in one message.
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
