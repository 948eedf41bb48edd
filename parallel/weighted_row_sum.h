// weighted_row_sum.h: the last step of Combine in one pass: every token's output is the
// weighted sum of its K returned rows, read where the all-to-all left them.
//
// Shape legend: T tokens, K slots per token, A + B rows to read from, W row width.
// The rows are those of [rows_AW; rows_BW] (rows_BW may be undefined: B = 0), read where they
// are, without concatenating: the combine reads the rows other ranks returned from one buffer and
// this rank's own rows from the experts' output.
// out_TW[t] = sum_k weights_TK[t, k] * row(pos_TK[t, k]), summed in slot order; a slot with
// pos < 0 (dropped) adds nothing, a token with no kept slot is 0. weights_TK undefined: all 1.
// Float and double CPU tensors: one fused loop, each output row written once while its K rows
// are summed in cache (no y * w tensor, no zero fill, no index_add). Other dtypes and devices:
// the same sum with ATen ops (cat, gather, multiply, sum over K). Weights are cast to the rows'
// dtype. Not differentiable by itself: the dispatcher's autograd functions
// (all_to_all_dispatcher.cc) own the backward.
// Hand-worked example: rows_A [[1, 2], [3, 4]], rows_B [[5, 6]], pos [[2, 0], [-1, 1]],
// weights [[0.5, 2], [7, 1]] -> out [[0.5*5 + 2*1, 0.5*6 + 2*2], [3, 4]] = [[4.5, 7], [3, 4]].
// Thread-safety: pure function.
#pragma once

#include <ATen/core/Tensor.h>

namespace cemoe {

at::Tensor WeightedRowSum(const at::Tensor& rows_AW, const at::Tensor& rows_BW,
                          const at::Tensor& pos_TK, const at::Tensor& weights_TK);

}  // namespace cemoe
