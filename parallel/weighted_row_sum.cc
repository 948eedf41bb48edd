#include "parallel/weighted_row_sum.h"

#include <ATen/ATen.h>
#include <ATen/Dispatch.h>

#include <algorithm>

#include "model/check.h"

namespace cemoe {
namespace {

// o[d] = a * y[d] (assign) or o[d] += a * y[d]; o and y never overlap. Each 64-byte line of y
// also prefetches the same line of `next` (the next row to be summed, or null): rows are 4 KiB
// apart at random (one page each at hidden 1024), so the hardware prefetcher, which does not cross
// pages, starts every row cold; a whole row of lookahead keeps the next row's lines in flight.
template <typename Scalar>
void Axpy(Scalar* __restrict o, const Scalar* __restrict y, const Scalar* next, Scalar a, int64_t w,
          bool assign) {
  constexpr int64_t kLine = 64 / sizeof(Scalar);
  for (int64_t d0 = 0; d0 < w; d0 += kLine) {
    if (next != nullptr) __builtin_prefetch(next + d0);
    const int64_t d1 = std::min(w, d0 + kLine);
    if (assign) {
      for (int64_t d = d0; d < d1; ++d) o[d] = a * y[d];
    } else {
      for (int64_t d = d0; d < d1; ++d) o[d] += a * y[d];
    }
  }
}

template <typename Scalar>
void SumLoop(const Scalar* rows_a, int64_t num_a, const Scalar* rows_b, const int64_t* pos,
             const Scalar* weights, Scalar* out, int64_t num_tokens, int64_t k, int64_t w) {
  auto row = [&](int64_t r) { return r < num_a ? rows_a + r * w : rows_b + (r - num_a) * w; };
  const int64_t n = num_tokens * k;
  // The row of the first kept slot at or after `slot`, or null.
  auto next_row = [&](int64_t slot) -> const Scalar* {
    for (; slot < n; ++slot) {
      if (pos[slot] >= 0) return row(pos[slot]);
    }
    return nullptr;
  };
  for (int64_t t = 0; t < num_tokens; ++t) {
    Scalar* o = out + t * w;
    bool first = true;
    for (int64_t j = 0; j < k; ++j) {
      const int64_t slot = t * k + j;
      const int64_t r = pos[slot];
      if (r < 0) continue;
      Axpy(o, row(r), next_row(slot + 1), weights ? weights[slot] : Scalar(1), w, first);
      first = false;
    }
    if (first) {
      for (int64_t d = 0; d < w; ++d) o[d] = Scalar(0);
    }
  }
}

}  // namespace

at::Tensor WeightedRowSum(const at::Tensor& rows_AW, const at::Tensor& rows_BW,
                          const at::Tensor& pos_TK, const at::Tensor& weights_TK) {
  CEMOE_CHECK(rows_AW.dim() == 2 && pos_TK.dim() == 2 && pos_TK.scalar_type() == at::kLong,
              "WeightedRowSum: rows must be [A, W] ({} dims) and pos int64 [T, K] ({} dims)",
              rows_AW.dim(), pos_TK.dim());
  CEMOE_CHECK(!rows_BW.defined() || (rows_BW.dim() == 2 && rows_BW.size(1) == rows_AW.size(1) &&
                                     rows_BW.scalar_type() == rows_AW.scalar_type() &&
                                     rows_BW.device() == rows_AW.device()),
              "WeightedRowSum: the second rows must be [B, {}] like the first", rows_AW.size(1));
  CEMOE_CHECK(!weights_TK.defined() || weights_TK.sizes() == pos_TK.sizes(),
              "WeightedRowSum: weights must be [{}, {}] like pos", pos_TK.size(0), pos_TK.size(1));
  const int64_t t = pos_TK.size(0), k = pos_TK.size(1), w = rows_AW.size(1);
  const int64_t num_a = rows_AW.size(0), num_b = rows_BW.defined() ? rows_BW.size(0) : 0;
  const at::Tensor weights =
      weights_TK.defined() ? weights_TK.to(rows_AW.scalar_type()).contiguous() : at::Tensor();
  const at::ScalarType type = rows_AW.scalar_type();
  if (rows_AW.device().is_cpu() && (type == at::kFloat || type == at::kDouble)) {
    const at::Tensor pos = pos_TK.to(at::kCPU).contiguous();
    const at::Tensor a = rows_AW.contiguous();
    const at::Tensor b = num_b > 0 ? rows_BW.contiguous() : at::Tensor();
    if (pos.numel() > 0) {
      const int64_t hi = pos.max().item<int64_t>();
      CEMOE_CHECK(hi < num_a + num_b, "WeightedRowSum: row {} of {}", hi, num_a + num_b);
    }
    at::Tensor out = at::empty({t, w}, a.options());
    AT_DISPATCH_FLOATING_TYPES(type, "WeightedRowSum", [&] {
      SumLoop<scalar_t>(a.data_ptr<scalar_t>(), num_a,
                        b.defined() ? b.data_ptr<scalar_t>() : nullptr, pos.data_ptr<int64_t>(),
                        weights.defined() ? weights.data_ptr<scalar_t>() : nullptr,
                        out.data_ptr<scalar_t>(), t, k, w);
    });
    return out;
  }
  const at::Tensor rows = num_b > 0 ? at::cat({rows_AW, rows_BW}) : rows_AW;
  const at::Tensor pos = pos_TK.to(rows.device());
  const at::Tensor kept = pos.ge(0);
  if (rows.size(0) == 0) return at::zeros({t, w}, rows.options());
  const at::Tensor gathered =
      rows.index_select(0, pos.clamp_min(0).reshape({-1})).reshape({t, k, w});
  at::Tensor scale = kept.to(rows.scalar_type());
  if (weights.defined()) scale = scale * weights.to(rows.device());
  // masked_fill, not only a zero scale: a dropped slot reads row 0, which may hold inf or nan.
  return (gathered * scale.unsqueeze(2)).masked_fill(kept.logical_not().unsqueeze(2), 0).sum(1);
}

}  // namespace cemoe
