#include "parallel/dispatch_layout.h"

#include <ATen/ATen.h>

#include <cmath>

#include "model/check.h"

namespace cemoe {

at::Tensor DestinationBuckets(const at::Tensor& topk_ids_TK, const ExpertPlacement& placement) {
  CEMOE_CHECK(topk_ids_TK.dim() == 2 && topk_ids_TK.scalar_type() == at::kLong,
              "topk_ids must be int64 [T, K], got {} dims of {}", topk_ids_TK.dim(),
              c10::toString(topk_ids_TK.scalar_type()));
  const int64_t e = placement.num_experts, l = placement.experts_per_rank();
  std::vector<int64_t> bucket_of_expert(e + 1);
  bucket_of_expert[0] = -1;  // index 0 is "dropped" (id -1 shifted by one)
  for (int64_t i = 0; i < e; ++i) {
    bucket_of_expert[i + 1] = placement.rank_of_expert[i] * l + placement.local_index_of_expert[i];
  }
  at::Tensor ids = topk_ids_TK.to(at::kCPU);
  if (ids.numel() > 0) {
    const int64_t max_id = ids.max().item<int64_t>();
    CEMOE_CHECK(max_id < e, "expert id {} out of range [0, {})", max_id, e);
  }
  at::Tensor table = at::tensor(bucket_of_expert, at::kLong);
  at::Tensor shifted = ids.clamp_min(-1) + 1;
  return table.index_select(0, shifted.reshape({-1})).reshape(ids.sizes()).to(topk_ids_TK.device());
}

int64_t ExpertCapacity(double capacity_factor, int64_t num_tokens, int64_t top_k,
                       int64_t num_experts) {
  if (capacity_factor <= 0) return 0;
  const double c = std::ceil(capacity_factor * static_cast<double>(num_tokens * top_k) /
                             static_cast<double>(num_experts));
  return std::max<int64_t>(1, static_cast<int64_t>(c));
}

at::Tensor ApplyCapacity(const at::Tensor& topk_ids_TK, int64_t num_experts, int64_t capacity) {
  CEMOE_CHECK(capacity > 0, "ApplyCapacity: capacity must be positive, got {}", capacity);
  at::Tensor ids = topk_ids_TK.to(at::kCPU).contiguous().clone();
  int64_t* data = ids.data_ptr<int64_t>();
  std::vector<int64_t> seen(num_experts, 0);
  for (int64_t i = 0; i < ids.numel(); ++i) {  // (token, slot) order = row-major order
    if (data[i] < 0) continue;
    CEMOE_CHECK(data[i] < num_experts, "expert id {} out of range [0, {})", data[i], num_experts);
    if (seen[data[i]]++ >= capacity) data[i] = -1;
  }
  return ids.to(topk_ids_TK.device());
}

std::vector<int64_t> RowsPerRank(const std::vector<int64_t>& counts_PL, int num_ranks) {
  CEMOE_CHECK(num_ranks > 0 && counts_PL.size() % num_ranks == 0,
              "RowsPerRank: {} bucket counts for {} ranks", counts_PL.size(), num_ranks);
  const size_t l = counts_PL.size() / num_ranks;
  std::vector<int64_t> rows(num_ranks, 0);
  for (size_t b = 0; b < counts_PL.size(); ++b) rows[b / l] += counts_PL[b];
  return rows;
}

ExpertMajorOrder MakeExpertMajorOrder(const std::vector<int64_t>& recv_counts_PL, int num_ranks) {
  CEMOE_CHECK(num_ranks > 0 && recv_counts_PL.size() % num_ranks == 0,
              "MakeExpertMajorOrder: {} counts for {} ranks", recv_counts_PL.size(), num_ranks);
  const int64_t p = num_ranks, l = static_cast<int64_t>(recv_counts_PL.size()) / num_ranks;
  ExpertMajorOrder order;
  order.rows_per_expert.assign(l, 0);
  // Offsets of block (source s, expert e) in the received buffer.
  std::vector<int64_t> offset_PL(p * l);
  int64_t total = 0;
  for (int64_t b = 0; b < p * l; ++b) {
    offset_PL[b] = total;
    total += recv_counts_PL[b];
    order.rows_per_expert[b % l] += recv_counts_PL[b];
  }
  order.identity = (p == 1 || l == 1);
  if (order.identity) return order;
  std::vector<int64_t> gather;
  gather.reserve(total);
  for (int64_t e = 0; e < l; ++e) {
    for (int64_t s = 0; s < p; ++s) {
      const int64_t b = s * l + e;
      for (int64_t i = 0; i < recv_counts_PL[b]; ++i) gather.push_back(offset_PL[b] + i);
    }
  }
  std::vector<int64_t> scatter(total);
  for (int64_t i = 0; i < total; ++i) scatter[gather[i]] = i;
  order.gather_R = at::tensor(gather, at::kLong);
  order.scatter_R = at::tensor(scatter, at::kLong);
  return order;
}

}  // namespace cemoe
