// grouped_swiglu.h: the experts' compute kernel, forward and backward by hand, on the stacked
// layout of expert_pack.h.
//
// Shape legend: R rows grouped by local expert (counts[l] rows for expert l), D hidden,
// I intermediate, L local experts.
// For expert l and its rows x (gate input xg, up input xu; both x without compressed experts):
//   gu = [xg W_gate^T | xu W_up^T]   [r, 2I]  (one matmul with W_gate_up[l] when xg is xu)
//   h  = silu(gu[:, :I]) * gu[:, I:] * s   [r, I]   (s: the optional down-input scale)
//   y  = h W_down^T                   [r, D], written into its slice of y [R, D] (no concatenation)
// Backward computes dx (or dxg, dxu), ds and each weight gradient, the latter written straight
// into the gradient targets of ExpertPack::GradTargets (overwrite or accumulate in place); the
// weights' autograd edges get no gradient, so autograd allocates nothing for them.
//
// Threads: when experts get few rows each (kAuto: fewer than kRowsPerThreadedMatmul on average),
// or there are at least kExpertsPerThread experts with rows per thread and none has more than a
// thread's share of the rows, the experts run on separate threads (each thread takes the next
// expert not yet taken, largest first; each matmul on one thread) instead of splitting every
// matmul over all threads. CUDA tensors always run the experts one after another.
//
// Thread-safety: SetExpertThreading is process-wide (a benchmark switch); the rest is per call.
#pragma once

#include <ATen/core/Tensor.h>

#include <cstdint>
#include <memory>
#include <vector>

#include "model/moe/expert_pack.h"
#include "model/moe/small_rows_product.h"

namespace cemoe {

enum class ExpertThreading { kAuto, kAcrossExperts, kWithinMatmul };
void SetExpertThreading(ExpertThreading mode);
ExpertThreading GetExpertThreading();
// Below this mean number of rows per expert with rows, kAuto runs experts on separate threads
// (measured: docs/benchmarks.md, "Threads across experts").
constexpr int64_t kRowsPerThreadedMatmul = 192;
// With more rows each, kAuto runs experts on separate threads when there are at least this many
// with rows per thread (so that taking them largest first evens out the threads' ends).
constexpr int64_t kExpertsPerThread = 2;
// Whether kAuto (or the mode set) runs experts with counts[l] rows each on separate threads, on
// CPU at the current intra-op thread count (never inside a parallel region).
bool ExpertsOnSeparateThreads(const std::vector<int64_t>& counts);
// The BLAS behind ATen's mm here, which the small-rows products (small_rows_product.h) stand in
// for up to SmallRowsMax rows.
SmallRowsBlas AtenSmallRowsBlas();

// x_gate_RD: rows grouped by expert; x_up_RD: undefined = the same rows as x_gate_RD (fused gate
// and up matmul); down_scale_RI: undefined = no scale. params: the registered parameters of the
// L experts, already packed (pack->Pack(params)), so that pack's stacked tensors are their data.
// Differentiable in x_gate_RD, x_up_RD, down_scale_RI and the parameters. Returns y_RD.
at::Tensor GroupedSwiglu(const std::shared_ptr<ExpertPack>& pack,
                         const std::vector<ExpertParams>& params, const at::Tensor& x_gate_RD,
                         const at::Tensor& x_up_RD, const at::Tensor& down_scale_RI,
                         const std::vector<int64_t>& counts);

}  // namespace cemoe
