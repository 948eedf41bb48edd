// weighted_row_sum.h: the last step of a combine in one pass: every token's output is the
// weighted sum of its K rows, read where they are; and its backward in one pass.
//
// Shape legend: T tokens, K slots per token, A + B rows to read from, W row width, X rows of the
// rows' gradient.
// The rows are those of [rows_AW; rows_BW] (rows_BW may be undefined: B = 0), read where they
// are, without concatenating: the all-to-all combine (parallel/all_to_all_dispatcher.h) reads the
// rows other ranks returned from one buffer and this rank's own rows from the experts' output;
// the local combine (permute.h) reads the experts' output alone.
// out_TW[t] = sum_k weights_TK[t, k] * row(pos_TK[t, k]), summed in slot order; a slot with
// pos < 0 (dropped) adds nothing, a token with no kept slot is 0. weights_TK undefined: all 1.
// Float and double CPU tensors: one fused loop, tokens split over the intra-op threads, each
// output row written once while its K rows are summed in cache (no y * w tensor, no zero fill,
// no index_add). Other dtypes and devices: the same sum with ATen ops (cat, gather, multiply, sum
// over K). Weights are cast to the rows' dtype. Not differentiable by itself: the callers'
// autograd functions own the backward, through WeightedRowSumBackward.
// Hand-worked example: rows_A [[1, 2], [3, 4]], rows_B [[5, 6]], pos [[2, 0], [-1, 1]],
// weights [[0.5, 2], [7, 1]] -> out [[0.5*5 + 2*1, 0.5*6 + 2*2], [3, 4]] = [[4.5, 7], [3, 4]].
// Thread-safety: pure functions.
#pragma once

#include <ATen/core/Tensor.h>

#include <cstdint>

namespace cemoe {

at::Tensor WeightedRowSum(const at::Tensor& rows_AW, const at::Tensor& rows_BW,
                          const at::Tensor& pos_TK, const at::Tensor& weights_TK);

// True when rows like these take the fused loops (float or double on the CPU), not ATen ops.
bool WeightedRowSumFused(const at::Tensor& rows);

// The gradients of out_TW = WeightedRowSum(rows_AW, rows_BW, pos_TK, weights_TK) given grad_TW:
//   rows_XW [X = num_dest, W]: row dest_TK[t, k] = weights_TK[t, k] * grad_TW[t] for every kept
//     slot (the rows' gradient, laid out as the caller sends or returns it: dest = pos for the
//     rows' own order); rows no kept slot names are 0. dest_TK must name each row at most once.
//   weights_TK [T, K] (weights' dtype): <grad_TW[t], row(pos_TK[t, k])>, 0 for dropped slots.
// Either is undefined when not asked for (or, for weights, when weights_TK is undefined). The
// rows are read only for the weights' gradient: without it rows_AW gives the rows' gradient its
// width, dtype and device, and pos only marks which slots are kept. Float
// and double CPU tensors: one pass over the tokens (split over the intra-op threads), each kept
// row read once for its dot product while its gradient row is written; else ATen ops.
// Hand-worked example (the one above, dest = pos, X = 3, grad [[1, 1], [2, 0]]):
//   rows [[2, 2], [2, 0], [0.5, 0.5]], weights [[1*5 + 1*6, 1*1 + 1*2], [0, 2*3 + 0*4]]
//   = [[11, 3], [0, 6]].
struct WeightedRowSumGrads {
  at::Tensor rows_XW;
  at::Tensor weights_TK;
};
WeightedRowSumGrads WeightedRowSumBackward(const at::Tensor& grad_TW, const at::Tensor& rows_AW,
                                           const at::Tensor& rows_BW, const at::Tensor& pos_TK,
                                           const at::Tensor& weights_TK, const at::Tensor& dest_TK,
                                           int64_t num_dest, bool rows_grad, bool weights_grad);

}  // namespace cemoe
