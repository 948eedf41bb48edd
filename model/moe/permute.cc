#include "model/moe/permute.h"

#include <ATen/ATen.h>
#include <torch/csrc/autograd/custom_function.h>

#include "model/check.h"
#include "model/moe/weighted_row_sum.h"

namespace cemoe {
namespace {

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

// The local combine in one pass each way (weighted_row_sum.h): out_TD[t] = sum_k w[t, k]
// y_RD[pos_TK[t, k]]; backward: the rows' gradient w[t, k] grad[t] written at pos_TK[t, k], the
// weights' gradient <grad[t], y_RD[pos_TK[t, k]]>.
class WeightedCombine : public torch::autograd::Function<WeightedCombine> {
 public:
  static at::Tensor forward(AutogradContext* ctx, const at::Tensor& y_RD,
                            const at::Tensor& weights_TK, const at::Tensor& pos_TK) {
    const at::Tensor y = y_RD.contiguous();
    ctx->save_for_backward({y, weights_TK, pos_TK});
    return WeightedRowSum(y, at::Tensor(), pos_TK, weights_TK);
  }
  static variable_list backward(AutogradContext* ctx, variable_list grad_T) {
    const variable_list saved = ctx->get_saved_variables();
    const at::Tensor &y = saved[0], &weights = saved[1], &pos = saved[2];
    if (!grad_T[0].defined()) return {at::Tensor(), at::Tensor(), at::Tensor()};
    WeightedRowSumGrads g =
        WeightedRowSumBackward(grad_T[0], y, at::Tensor(), pos, weights, pos, y.size(0),
                               ctx->needs_input_grad(0), ctx->needs_input_grad(1));
    return {g.rows_XW, g.weights_TK, at::Tensor()};
  }
};

// x_TD -> x_TD[token_R] (ATen's gather); backward: each token's K row gradients summed in one
// pass over the tokens (weighted_row_sum.h), instead of index_add's scattered adds.
class PermuteRows : public torch::autograd::Function<PermuteRows> {
 public:
  static at::Tensor forward(AutogradContext* ctx, const at::Tensor& x_TD, const at::Tensor& token_R,
                            const at::Tensor& pos_TK) {
    ctx->save_for_backward({pos_TK});
    return x_TD.index_select(0, token_R);
  }
  static variable_list backward(AutogradContext* ctx, variable_list grad_R) {
    if (!grad_R[0].defined()) return {at::Tensor(), at::Tensor(), at::Tensor()};
    const at::Tensor pos_TK = ctx->get_saved_variables()[0];
    return {WeightedRowSum(grad_R[0].contiguous(), at::Tensor(), pos_TK, at::Tensor()),
            at::Tensor(), at::Tensor()};
  }
};

}  // namespace

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
  const at::Tensor kept_order = order_N.slice(0, num_dropped);
  perm.pos_TK =
      at::full({flat_N.size(0)}, -1, kept_order.options())
          .index_copy_(0, kept_order, at::arange(kept_order.size(0), kept_order.options()))
          .view(bucket_ids_TK.sizes());
  return perm;
}

at::Tensor Permute(const at::Tensor& x_TD, const Permutation& perm) {
  if (WeightedRowSumFused(x_TD)) return PermuteRows::apply(x_TD, perm.token_R, perm.pos_TK);
  return x_TD.index_select(0, perm.token_R);
}

at::Tensor Unpermute(const at::Tensor& y_RD, const Permutation& perm,
                     const at::Tensor& weights_TK) {
  const int64_t t = weights_TK.size(0), k = weights_TK.size(1);
  CEMOE_CHECK(y_RD.size(0) == perm.order_R.size(0), "Unpermute: {} rows for {} assignments",
              y_RD.size(0), perm.order_R.size(0));
  CEMOE_CHECK(perm.pos_TK.size(0) == t && perm.pos_TK.size(1) == k,
              "Unpermute: weights [{}, {}] for assignments [{}, {}]", t, k, perm.pos_TK.size(0),
              perm.pos_TK.size(1));
  if (WeightedRowSumFused(y_RD)) return WeightedCombine::apply(y_RD, weights_TK, perm.pos_TK);
  // Other dtypes and devices: weight each row by its assignment's weight, then add rows into
  // their tokens.
  at::Tensor w_R = weights_TK.reshape({-1}).index_select(0, perm.order_R).to(y_RD.scalar_type());
  at::Tensor weighted_RD = y_RD * w_R.unsqueeze(1);
  at::Tensor out_TD = at::zeros({t, y_RD.size(1)}, y_RD.options());
  return out_TD.index_add(0, perm.token_R, weighted_RD);
}

}  // namespace cemoe
