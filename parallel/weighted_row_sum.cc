#include "parallel/weighted_row_sum.h"

#include <ATen/ATen.h>
#include <ATen/Dispatch.h>

#include "model/check.h"

namespace cemoe {
namespace {

template <typename Scalar>
void SumLoop(const Scalar* rows, const int64_t* pos, const Scalar* weights, Scalar* out,
             int64_t num_tokens, int64_t k, int64_t w) {
  for (int64_t t = 0; t < num_tokens; ++t) {
    Scalar* o = out + t * w;
    bool first = true;
    for (int64_t j = 0; j < k; ++j) {
      const int64_t r = pos[t * k + j];
      if (r < 0) continue;
      const Scalar a = weights ? weights[t * k + j] : Scalar(1);
      const Scalar* y = rows + r * w;
      if (first) {
        for (int64_t d = 0; d < w; ++d) o[d] = a * y[d];
        first = false;
      } else {
        for (int64_t d = 0; d < w; ++d) o[d] += a * y[d];
      }
    }
    if (first) {
      for (int64_t d = 0; d < w; ++d) o[d] = Scalar(0);
    }
  }
}

}  // namespace

at::Tensor WeightedRowSum(const at::Tensor& rows_RW, const at::Tensor& pos_TK,
                          const at::Tensor& weights_TK) {
  CEMOE_CHECK(rows_RW.dim() == 2 && pos_TK.dim() == 2 && pos_TK.scalar_type() == at::kLong,
              "WeightedRowSum: rows must be [R, W] ({} dims) and pos int64 [T, K] ({} dims)",
              rows_RW.dim(), pos_TK.dim());
  CEMOE_CHECK(!weights_TK.defined() || weights_TK.sizes() == pos_TK.sizes(),
              "WeightedRowSum: weights must be [{}, {}] like pos", pos_TK.size(0), pos_TK.size(1));
  const int64_t t = pos_TK.size(0), k = pos_TK.size(1), w = rows_RW.size(1);
  const at::Tensor weights =
      weights_TK.defined() ? weights_TK.to(rows_RW.scalar_type()).contiguous() : at::Tensor();
  const at::ScalarType type = rows_RW.scalar_type();
  if (rows_RW.device().is_cpu() && (type == at::kFloat || type == at::kDouble)) {
    const at::Tensor pos = pos_TK.to(at::kCPU).contiguous();
    const at::Tensor rows = rows_RW.contiguous();
    if (pos.numel() > 0) {
      const int64_t hi = pos.max().item<int64_t>();
      CEMOE_CHECK(hi < rows.size(0), "WeightedRowSum: row {} of {}", hi, rows.size(0));
    }
    at::Tensor out = at::empty({t, w}, rows.options());
    AT_DISPATCH_FLOATING_TYPES(type, "WeightedRowSum", [&] {
      SumLoop<scalar_t>(rows.data_ptr<scalar_t>(), pos.data_ptr<int64_t>(),
                        weights.defined() ? weights.data_ptr<scalar_t>() : nullptr,
                        out.data_ptr<scalar_t>(), t, k, w);
    });
    return out;
  }
  const at::Tensor pos = pos_TK.to(rows_RW.device());
  const at::Tensor kept = pos.ge(0);
  if (rows_RW.size(0) == 0) return at::zeros({t, w}, rows_RW.options());
  const at::Tensor gathered =
      rows_RW.index_select(0, pos.clamp_min(0).reshape({-1})).reshape({t, k, w});
  at::Tensor scale = kept.to(rows_RW.scalar_type());
  if (weights.defined()) scale = scale * weights.to(rows_RW.device());
  // masked_fill, not only a zero scale: a dropped slot reads row 0, which may hold inf or nan.
  return (gathered * scale.unsqueeze(2)).masked_fill(kept.logical_not().unsqueeze(2), 0).sum(1);
}

}  // namespace cemoe
