// permute.h: communicator-free token permutation, the local steps of every dispatcher.
//
// Shape legend: T tokens, K kept experts per token, D hidden, E experts (or destination
// buckets), N = T * K assignments, R rows after permutation (R = N when nothing is dropped).
//
// SortByBucket orders the N assignments by bucket id (stable: token order inside a bucket);
// Permute gathers token rows in that order; Unpermute scatters rows back to assignment order and
// takes the weighted sum over K. A bucket is whatever the caller sorts by: an expert id for the
// local dispatcher, (destination rank, local expert) for the all-to-all dispatcher.
//
// Hand-worked example (T = 3, K = 2, E = 2):
//   topk_ids_TK = [[1, 0], [0, 1], [1, 1]] -> flat ids [1, 0, 0, 1, 1, 1]
//   order_R     = [1, 2, 0, 3, 4, 5]       (bucket 0: assignments 1, 2; bucket 1: 0, 3, 4, 5)
//   token_R     = [0, 1, 0, 1, 2, 2]       (order_R / K)
//   counts_E    = [2, 4]
//   pos_TK      = [[2, 0], [1, 3], [4, 5]] (the inverse of order_R)
// Thread-safety: pure functions.
#pragma once

#include <ATen/core/Tensor.h>

#include <cstdint>
#include <vector>

namespace cemoe {

struct Permutation {
  at::Tensor order_R;           // int64: index into the N flattened assignments, sorted by bucket
  at::Tensor token_R;           // int64: the token each permuted row comes from (order_R / K)
  std::vector<int64_t> counts;  // [num_buckets] rows per bucket
  at::Tensor pos_TK;            // int64 [T, K] on the CPU: each assignment's row (-1: dropped)
};

// bucket_ids_TK: int64 [T, K] with values in [0, num_buckets); a value < 0 drops the assignment.
Permutation SortByBucket(const at::Tensor& bucket_ids_TK, int64_t num_buckets);

// x_TD -> x_RD: rows of x in permuted order (differentiable; on the CPU in float and double the
// backward sums each token's K row gradients in one pass, weighted_row_sum.h).
at::Tensor Permute(const at::Tensor& x_TD, const Permutation& perm);

// y_RD -> out_TD = sum_k weights_TK[t, k] * y[row of (t, k)]; dropped assignments add zero
// (differentiable in y and in the weights; on the CPU in float and double one pass each way,
// weighted_row_sum.h).
at::Tensor Unpermute(const at::Tensor& y_RD, const Permutation& perm, const at::Tensor& weights_TK);

}  // namespace cemoe
