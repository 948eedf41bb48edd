// overwrite_product.h: out = a @ b for float32 CPU matrices, written without reading out first.
//
// The experts' weight gradients are overwritten (beta = 0) whenever their .grad was released:
// an [2I, D] output per expert from a handful of rows (K = 32-256), so the product is bound by
// writing the output. OpenBLAS 0.3.21 (Debian 12) first clears the whole output in a separate
// pass and then reads it back to add the product: three passes over memory where one suffices.
// oneDNN's sgemm (libdnnl, the library Debian's LibTorch already links) writes beta = 0 products
// in one pass: measured 2.6x faster at K = 32, 1.4x at K = 64 (docs/benchmarks.md). With gradients
// kept (beta = 1) it is not faster at every shape, so accumulation stays with ATen's addmm_.
#pragma once

namespace at {
class Tensor;
}

namespace cemoe {

// Whether this build carries oneDNN's sgemm (CMake option CEMOE_WITH_DNNL_SGEMM, on when
// oneDNN's header and library are found and LibTorch is 1.x; a LibTorch 2.x wheel multiplies
// through MKL, whose beta = 0 products already write the output once).
bool HaveOverwriteProduct();

// out [M, N] = a [M, K] @ b [K, N] through oneDNN when all three are float32 CPU matrices whose
// rows or columns are contiguous (a transposed view counts) and out's rows are; returns false
// (out untouched) otherwise, or when this build has no oneDNN: the caller then uses at::mm_out.
// Threads: OpenMP's, like ATen's (one thread inside an at::parallel_for worker). oneDNN 2.6's JIT
// sgemm points the stack pointer into a heap workspace while it runs: a signal handled on its
// thread corrupts the heap, so the threads that call it keep handled signals blocked
// (trainer/sft/stop_signal.h).
bool OverwriteProduct(at::Tensor& out, const at::Tensor& a, const at::Tensor& b);

}  // namespace cemoe
