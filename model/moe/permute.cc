#include "model/moe/permute.h"

#include <ATen/ATen.h>

#include "model/check.h"

namespace cemoe {

Permutation SortByBucket(const at::Tensor& bucket_ids_TK, int64_t num_buckets) {
  CEMOE_CHECK(bucket_ids_TK.dim() == 2, "bucket ids must be [T, K], got {} dims",
              bucket_ids_TK.dim());
  CEMOE_CHECK(bucket_ids_TK.scalar_type() == at::kLong, "bucket ids must be int64");
  const int64_t k = bucket_ids_TK.size(1);
  at::Tensor flat_N = bucket_ids_TK.reshape({-1}).to(at::kCPU);
  if (flat_N.numel() > 0) {
    const int64_t max_id = flat_N.max().item<int64_t>();
    CEMOE_CHECK(max_id < num_buckets, "bucket id {} out of range [0, {})", max_id, num_buckets);
  }
  // Dropped assignments (id < 0) sort to the front and are cut off.
  at::Tensor keyed_N = at::where(flat_N < 0, at::full_like(flat_N, -1), flat_N);
  at::Tensor order_N = std::get<1>(keyed_N.sort(/*stable=*/true, /*dim=*/0, /*descending=*/false));
  const int64_t num_dropped = (flat_N < 0).sum().item<int64_t>();
  Permutation perm;
  perm.order_R = order_N.slice(0, num_dropped).to(bucket_ids_TK.device());
  perm.token_R = at::div(perm.order_R, k, "floor");
  at::Tensor kept = flat_N.index_select(0, order_N.slice(0, num_dropped));
  at::Tensor counts = at::bincount(kept, /*weights=*/{}, /*minlength=*/num_buckets);
  perm.counts.assign(counts.data_ptr<int64_t>(), counts.data_ptr<int64_t>() + num_buckets);
  return perm;
}

at::Tensor Permute(const at::Tensor& x_TD, const Permutation& perm) {
  return x_TD.index_select(0, perm.token_R);
}

at::Tensor Unpermute(const at::Tensor& y_RD, const Permutation& perm,
                     const at::Tensor& weights_TK) {
  const int64_t t = weights_TK.size(0), k = weights_TK.size(1);
  CEMOE_CHECK(y_RD.size(0) == perm.order_R.size(0), "Unpermute: {} rows for {} assignments",
              y_RD.size(0), perm.order_R.size(0));
  // Weight each row by its assignment's weight, then add rows into their tokens.
  at::Tensor w_R = weights_TK.reshape({-1}).index_select(0, perm.order_R).to(y_RD.scalar_type());
  at::Tensor weighted_RD = y_RD * w_R.unsqueeze(1);
  at::Tensor out_TD = at::zeros({t, y_RD.size(1)}, y_RD.options());
  (void)k;
  return out_TD.index_add(0, perm.token_R, weighted_RD);
}

}  // namespace cemoe
