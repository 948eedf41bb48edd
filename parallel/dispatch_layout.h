// dispatch_layout.h: the communicator-free local steps of the all-to-all dispatcher, computed
// before any byte moves (the "layout" step), each tested on hand-worked examples
// (tests/parallel/dispatch_layout_test.cc).
//
// Shape legend: T tokens, K kept experts per token, E experts in the layer, P ranks in the EP
// group, L = E / P experts per rank, R rows received for the local experts.
// A bucket is a (destination rank, local expert) pair, numbered rank * L + local index; sorting
// assignments by bucket (SortByBucket in model/moe/permute.h) puts the rows for each rank
// together, in that rank's local-expert order, ready for one all-to-all.
//
// Drop rule (capacity_factor > 0): every sending rank keeps at most
// C = ceil(capacity_factor * T * K / E) assignments per expert, the first ones in (token, slot)
// order; later ones are dropped (their combine contributes zero). capacity_factor = 0 is
// dropless, the default.
// Thread-safety: pure functions.
#pragma once

#include <ATen/core/Tensor.h>

#include <cstdint>
#include <vector>

#include "parallel/placement.h"

namespace cemoe {

// topk_ids_TK (global expert ids, int64; < 0 = dropped) -> bucket ids [T, K] (< 0 kept as -1).
at::Tensor DestinationBuckets(const at::Tensor& topk_ids_TK, const ExpertPlacement& placement);

// C = ceil(capacity_factor * T * K / E), at least 1; 0 when capacity_factor <= 0 (dropless).
int64_t ExpertCapacity(double capacity_factor, int64_t num_tokens, int64_t top_k,
                       int64_t num_experts);

// Sets to -1 every assignment beyond the first `capacity` of its expert in (token, slot) order.
at::Tensor ApplyCapacity(const at::Tensor& topk_ids_TK, int64_t num_experts, int64_t capacity);

// Per-bucket counts [P * L] -> rows per destination rank [P] (the all-to-all split sizes).
std::vector<int64_t> RowsPerRank(const std::vector<int64_t>& counts_PL, int num_ranks);

// Rows arrive from the all-to-all ordered by (source rank, local expert), block sizes
// recv_counts_PL [P * L]. The experts want them ordered by (local expert, source rank).
struct ExpertMajorOrder {
  at::Tensor gather_R;                   // int64: expert_major[i] = received[gather_R[i]]
  at::Tensor scatter_R;                  // inverse: received[i] = expert_major[scatter_R[i]]
  std::vector<int64_t> rows_per_expert;  // [L]
  bool identity = true;                  // true when the two orders coincide (P = 1 or L = 1)
};
ExpertMajorOrder MakeExpertMajorOrder(const std::vector<int64_t>& recv_counts_PL, int num_ranks);

}  // namespace cemoe
