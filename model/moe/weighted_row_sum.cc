#include "model/moe/weighted_row_sum.h"

#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>

#include <algorithm>
#include <limits>
#include <vector>

#include "model/check.h"

namespace cemoe {
namespace {

// Tokens per task of the fused loops: a token's K rows are a few KiB each.
constexpr int64_t kTokenGrain = 16;

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

// <g, y> (if dot) and o[d] = a * g[d] (if o), one line at a time, prefetching `next` as Axpy
// does. The dot product keeps one partial sum per lane of a line (vectorised without reordering
// any single sum), added up in order at the end.
template <typename Scalar>
Scalar DotAndScale(const Scalar* __restrict g, const Scalar* __restrict y, Scalar* __restrict o,
                   const Scalar* next, Scalar a, int64_t w, bool dot) {
  constexpr int64_t kLine = 64 / sizeof(Scalar);
  Scalar part[kLine] = {};
  int64_t d0 = 0;
  for (; d0 + kLine <= w; d0 += kLine) {
    if (next != nullptr) __builtin_prefetch(next + d0);
    if (dot) {
      for (int64_t i = 0; i < kLine; ++i) part[i] += g[d0 + i] * y[d0 + i];
    }
    if (o != nullptr) {
      for (int64_t i = 0; i < kLine; ++i) o[d0 + i] = a * g[d0 + i];
    }
  }
  for (int64_t d = d0; d < w; ++d) {
    if (dot) part[d - d0] += g[d] * y[d];
    if (o != nullptr) o[d] = a * g[d];
  }
  Scalar sum = 0;
  for (int64_t i = 0; i < kLine; ++i) sum += part[i];
  return sum;
}

// The rows [rows_a; rows_b] as the loops read them.
template <typename Scalar>
struct Rows {
  const Scalar* a;
  int64_t num_a;
  const Scalar* b;
  int64_t w;
  const Scalar* operator()(int64_t r) const { return r < num_a ? a + r * w : b + (r - num_a) * w; }
};

// The row of the first kept slot in [slot, end), or null.
template <typename Scalar>
const Scalar* NextRow(const Rows<Scalar>& row, const int64_t* pos, int64_t slot, int64_t end) {
  for (; slot < end; ++slot) {
    if (pos[slot] >= 0) return row(pos[slot]);
  }
  return nullptr;
}

template <typename Scalar>
void SumLoop(const Rows<Scalar>& row, const int64_t* pos, const Scalar* weights, Scalar* out,
             int64_t num_tokens, int64_t k) {
  const int64_t w = row.w;
  at::parallel_for(0, num_tokens, kTokenGrain, [&](int64_t begin, int64_t end) {
    for (int64_t t = begin; t < end; ++t) {
      Scalar* o = out + t * w;
      bool first = true;
      for (int64_t j = 0; j < k; ++j) {
        const int64_t slot = t * k + j;
        const int64_t r = pos[slot];
        if (r < 0) continue;
        Axpy(o, row(r), NextRow(row, pos, slot + 1, end * k), weights ? weights[slot] : Scalar(1),
             w, first);
        first = false;
      }
      if (first) std::fill(o, o + w, Scalar(0));
    }
  });
}

// grad_rows (null: not wanted) and grad_weights (null: not wanted) of WeightedRowSumBackward.
template <typename Scalar>
void BackwardLoop(const Scalar* grad, const Rows<Scalar>& row, const int64_t* pos,
                  const Scalar* weights, const int64_t* dest, Scalar* grad_rows,
                  Scalar* grad_weights, int64_t num_tokens, int64_t k) {
  const int64_t w = row.w;
  at::parallel_for(0, num_tokens, kTokenGrain, [&](int64_t begin, int64_t end) {
    for (int64_t t = begin; t < end; ++t) {
      const Scalar* g = grad + t * w;
      for (int64_t j = 0; j < k; ++j) {
        const int64_t slot = t * k + j;
        const int64_t r = pos[slot];
        if (r < 0) {
          if (grad_weights) grad_weights[slot] = Scalar(0);
          continue;
        }
        Scalar* o = grad_rows ? grad_rows + dest[slot] * w : nullptr;
        // The rows are read only for the weights' gradient.
        const Scalar* y = grad_weights ? row(r) : g;
        const Scalar* next = grad_weights ? NextRow(row, pos, slot + 1, end * k) : nullptr;
        const Scalar dot = DotAndScale(g, y, o, next, weights ? weights[slot] : Scalar(1), w,
                                       grad_weights != nullptr);
        if (grad_weights) grad_weights[slot] = dot;
      }
    }
  });
}

void CheckRows(const char* what, const at::Tensor& rows_AW, const at::Tensor& rows_BW,
               const at::Tensor& pos_TK, const at::Tensor& weights_TK) {
  CEMOE_CHECK(rows_AW.dim() == 2 && pos_TK.dim() == 2 && pos_TK.scalar_type() == at::kLong,
              "{}: rows must be [A, W] ({} dims) and pos int64 [T, K] ({} dims)", what,
              rows_AW.dim(), pos_TK.dim());
  CEMOE_CHECK(!rows_BW.defined() || (rows_BW.dim() == 2 && rows_BW.size(1) == rows_AW.size(1) &&
                                     rows_BW.scalar_type() == rows_AW.scalar_type() &&
                                     rows_BW.device() == rows_AW.device()),
              "{}: the second rows must be [B, {}] like the first", what, rows_AW.size(1));
  CEMOE_CHECK(!weights_TK.defined() || weights_TK.sizes() == pos_TK.sizes(),
              "{}: weights must be [{}, {}] like pos", what, pos_TK.size(0), pos_TK.size(1));
}

// pos on the CPU, contiguous, every value below num_rows.
at::Tensor CheckedPos(const char* what, const at::Tensor& pos_TK, int64_t num_rows) {
  at::Tensor pos = pos_TK.to(at::kCPU).contiguous();
  if (pos.numel() > 0) {
    const int64_t hi = pos.max().item<int64_t>();
    CEMOE_CHECK(hi < num_rows, "{}: row {} of {}", what, hi, num_rows);
  }
  return pos;
}

}  // namespace

bool WeightedRowSumFused(const at::Tensor& rows) {
  const at::ScalarType type = rows.scalar_type();
  return rows.device().is_cpu() && (type == at::kFloat || type == at::kDouble);
}

at::Tensor WeightedRowSum(const at::Tensor& rows_AW, const at::Tensor& rows_BW,
                          const at::Tensor& pos_TK, const at::Tensor& weights_TK) {
  CheckRows("WeightedRowSum", rows_AW, rows_BW, pos_TK, weights_TK);
  const int64_t t = pos_TK.size(0), k = pos_TK.size(1), w = rows_AW.size(1);
  const int64_t num_a = rows_AW.size(0), num_b = rows_BW.defined() ? rows_BW.size(0) : 0;
  const at::Tensor weights =
      weights_TK.defined() ? weights_TK.to(rows_AW.scalar_type()).contiguous() : at::Tensor();
  if (WeightedRowSumFused(rows_AW)) {
    const at::Tensor pos = CheckedPos("WeightedRowSum", pos_TK, num_a + num_b);
    const at::Tensor a = rows_AW.contiguous();
    const at::Tensor b = num_b > 0 ? rows_BW.contiguous() : at::Tensor();
    at::Tensor out = at::empty({t, w}, a.options());
    AT_DISPATCH_FLOATING_TYPES(a.scalar_type(), "WeightedRowSum", [&] {
      const Rows<scalar_t> row{a.data_ptr<scalar_t>(), num_a,
                               b.defined() ? b.data_ptr<scalar_t>() : nullptr, w};
      SumLoop<scalar_t>(row, pos.data_ptr<int64_t>(),
                        weights.defined() ? weights.data_ptr<scalar_t>() : nullptr,
                        out.data_ptr<scalar_t>(), t, k);
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

WeightedRowSumGrads WeightedRowSumBackward(const at::Tensor& grad_TW, const at::Tensor& rows_AW,
                                           const at::Tensor& rows_BW, const at::Tensor& pos_TK,
                                           const at::Tensor& weights_TK, const at::Tensor& dest_TK,
                                           int64_t num_dest, bool rows_grad, bool weights_grad) {
  const char* what = "WeightedRowSumBackward";
  CheckRows(what, rows_AW, rows_BW, pos_TK, weights_TK);
  const int64_t t = pos_TK.size(0), k = pos_TK.size(1), w = rows_AW.size(1);
  CEMOE_CHECK(grad_TW.dim() == 2 && grad_TW.size(0) == t && grad_TW.size(1) == w,
              "{}: the gradient must be [{}, {}], got {} dims", what, t, w, grad_TW.dim());
  weights_grad = weights_grad && weights_TK.defined();
  WeightedRowSumGrads grads;
  if (!rows_grad && !weights_grad) return grads;
  const int64_t num_a = rows_AW.size(0), num_b = rows_BW.defined() ? rows_BW.size(0) : 0;
  const at::Tensor pos =
      CheckedPos(what, pos_TK, weights_grad ? num_a + num_b : std::numeric_limits<int64_t>::max());
  // Where each kept slot's gradient row goes: in range, and no row named twice (the threads write
  // rows without locks); rows nobody names are zero.
  at::Tensor dest;
  int64_t kept = 0;
  if (rows_grad) {
    CEMOE_CHECK(dest_TK.defined() && dest_TK.sizes() == pos_TK.sizes() &&
                    dest_TK.scalar_type() == at::kLong,
                "{}: dest must be int64 [{}, {}] like pos", what, t, k);
    dest = dest_TK.to(at::kCPU).contiguous();
    std::vector<char> named(num_dest, 0);
    const int64_t* p = pos.data_ptr<int64_t>();
    const int64_t* d = dest.data_ptr<int64_t>();
    for (int64_t s = 0; s < t * k; ++s) {
      if (p[s] < 0) continue;
      CEMOE_CHECK(d[s] >= 0 && d[s] < num_dest && !named[d[s]],
                  "{}: slot {} sends its gradient to row {} of {}{}", what, s, d[s], num_dest,
                  d[s] >= 0 && d[s] < num_dest ? ", which another slot already names" : "");
      named[d[s]] = 1;
      ++kept;
    }
  }
  const at::TensorOptions options = rows_AW.options();
  if (WeightedRowSumFused(rows_AW) && grad_TW.device().is_cpu() &&
      grad_TW.scalar_type() == rows_AW.scalar_type()) {
    const at::Tensor g = grad_TW.contiguous();
    const at::Tensor a = rows_AW.contiguous();
    const at::Tensor b = num_b > 0 ? rows_BW.contiguous() : at::Tensor();
    const at::Tensor weights =
        weights_TK.defined() ? weights_TK.to(rows_AW.scalar_type()).contiguous() : at::Tensor();
    if (rows_grad) {
      grads.rows_XW =
          kept == num_dest ? at::empty({num_dest, w}, options) : at::zeros({num_dest, w}, options);
    }
    at::Tensor dots = weights_grad ? at::empty({t, k}, options) : at::Tensor();
    AT_DISPATCH_FLOATING_TYPES(a.scalar_type(), "WeightedRowSumBackward", [&] {
      const Rows<scalar_t> row{a.data_ptr<scalar_t>(), num_a,
                               b.defined() ? b.data_ptr<scalar_t>() : nullptr, w};
      BackwardLoop<scalar_t>(g.data_ptr<scalar_t>(), row, pos.data_ptr<int64_t>(),
                             weights.defined() ? weights.data_ptr<scalar_t>() : nullptr,
                             rows_grad ? dest.data_ptr<int64_t>() : nullptr,
                             rows_grad ? grads.rows_XW.data_ptr<scalar_t>() : nullptr,
                             weights_grad ? dots.data_ptr<scalar_t>() : nullptr, t, k);
    });
    if (weights_grad) grads.weights_TK = dots.to(weights_TK.scalar_type());
    return grads;
  }
  // ATen ops: the kept slots' tokens' gradient rows, scaled and scattered; dot products.
  const at::Device device = rows_AW.device();
  const at::Tensor pos_N = pos.reshape({-1}).to(device);
  const at::Tensor kept_N = pos_N.ge(0).nonzero().reshape({-1});
  const at::Tensor g_NW =
      grad_TW.to(rows_AW.scalar_type()).index_select(0, at::div(kept_N, k, "floor"));
  if (rows_grad) {
    at::Tensor scaled = g_NW;
    if (weights_TK.defined()) {
      scaled = scaled * weights_TK.reshape({-1})
                            .to(device)
                            .index_select(0, kept_N)
                            .to(rows_AW.scalar_type())
                            .unsqueeze(1);
    }
    grads.rows_XW =
        at::zeros({num_dest, w}, options)
            .index_copy_(0, dest.reshape({-1}).to(device).index_select(0, kept_N), scaled);
  }
  if (weights_grad) {
    const at::Tensor rows = num_b > 0 ? at::cat({rows_AW, rows_BW}) : rows_AW;
    const at::Tensor y_NW = rows.index_select(0, pos_N.index_select(0, kept_N));
    const at::Tensor dots = (g_NW * y_NW).sum(1).to(weights_TK.scalar_type());
    grads.weights_TK =
        at::zeros({t * k}, weights_TK.options().requires_grad(false))
            .index_copy_(0, kept_N.to(weights_TK.device()), dots.to(weights_TK.device()))
            .reshape({t, k});
  }
  return grads;
}

}  // namespace cemoe
