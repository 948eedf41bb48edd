// small_rows_product.h: float32 products of a few rows with a row-major weight, multiplied straight
// from the weight's rows, and of a few rows' weight gradients, for the experts' kernel
// (grouped_swiglu.h) on CPU.
//
// With few rows per expert (OLMoE at 512 tokens and top-4: 32), a BLAS library spends much of
// each product repacking the weight into its own tile layout, and runs these products at under
// half its dense rate (docs/benchmarks.md). These kernels never repack the weight: the forward's
// few rows are transposed once into a small buffer (tiles of 1-3 vectors of rows), and each block
// of weight rows is read once, in order, while it multiplies every tile; the input gradient reads
// a block of weight rows in place, a group of columns at a time, against tiles of a few rows
// broadcast from a small transposed copy. SIMD through GCC/Clang vector extensions, compiled once
// for AVX-512 and once for AVX2 + FMA (small_rows_kernel.inc) and chosen at run time from what the
// CPU supports.
//
// Shape legend: M rows, N weight rows, K weight columns; ld*: row strides in elements.
// Thread-safety: each call runs on the calling thread with thread-local scratch; SetSmallRowsIsa
// is process-wide (tests and benchmarks).
#pragma once

#include <cstdint>
#include <string>

namespace cemoe {

enum class SmallRowsIsa { kNone, kAvx2, kAvx512 };

// The widest path this CPU runs (kNone: not x86-64, or no AVX2 + FMA).
SmallRowsIsa SmallRowsIsaDetected();
// The path the products take: the detected one unless narrowed (kNone: callers use ATen's mm).
// Widening beyond what the CPU runs is refused (an error naming both).
void SetSmallRowsIsa(SmallRowsIsa isa);
SmallRowsIsa GetSmallRowsIsa();
const char* SmallRowsIsaName(SmallRowsIsa isa);
// The path a command-line option names: "auto" (SmallRowsIsaDetected()), "avx512", "avx2" or "off"
// (kNone); anything else is an error naming `option` and the value.
SmallRowsIsa ParseSmallRowsIsa(const std::string& option, const std::string& name);

// Bytes of the few rows, transposed, that one pass over the weight multiplies (XW: of the
// output's rows that one pass accumulates; AtB: of b's rows; longer rows are taken in passes of
// columns, as few equal passes as fit, each rounded up to whole tiles): half the L2 cache by
// default (sysconf; 512 KiB when it says nothing). Measured at
// Phi-3.5-MoE's shapes with a 2 MiB L2 (docs/benchmarks.md): XWt with 1 MiB passes 363 GFLOP/s,
// 256 KiB 318, one pass of 2-3 MiB 303. Set (tests: 0 restores the default).
void SetSmallRowsPassBytes(int64_t bytes);
int64_t GetSmallRowsPassBytes();

// kAtB: weight gradients added to kept ones; kAtBOverwrite: written over released ones (where
// BLAS or oneDNN first clears or writes the output once, a different race to win).
enum class SmallRowsProduct { kXWt, kXW, kAtB, kAtBOverwrite };
// The BLAS behind ATen's mm, which the products stand in for (at::hasMKL()).
enum class SmallRowsBlas { kOpenBlas, kMkl };
// Up to how many rows the current path's product beats that BLAS (OpenBLAS 0.3.21, Debian's
// LibTorch 1.13; MKL, the torch wheel's), as `cemoe bench products` measured them on an Intel Xeon
// VM and, with AVX-512, apart on AMD Zen 4, where they differ (docs/benchmarks.md, issue 18); 0
// under kNone. Above it callers use mm.
int64_t SmallRowsMax(SmallRowsProduct product, SmallRowsBlas blas);

// y [M, N] = x [M, K] @ w [N, K]^T (the forward's products). Requires GetSmallRowsIsa() != kNone.
void SmallRowsXWt(const float* x, int64_t ldx, const float* w, int64_t ldw, float* y, int64_t ldy,
                  int64_t m, int64_t n, int64_t k);
// y [M, K] = d [M, N] @ w [N, K] (the backward's input-gradient products).
void SmallRowsXW(const float* d, int64_t ldd, const float* w, int64_t ldw, float* y, int64_t ldy,
                 int64_t m, int64_t n, int64_t k);
// c [N, K] = (accumulate ? c : 0) + a [M, N]^T @ b [M, K] (the backward's weight-gradient
// products: a = the output's gradient, b = the input, M = the rows). c streams past once, in tiles
// loaded (when accumulating) and stored once; a and b are copied into the tiles' order. The sum
// over M is formed before c is added, as BLAS's beta = 1 does: accumulating rounds exactly as
// overwriting a fresh tensor and adding it.
void SmallRowsAtB(const float* a, int64_t lda, const float* b, int64_t ldb, float* c, int64_t ldc,
                  int64_t m, int64_t n, int64_t k, bool accumulate);

}  // namespace cemoe
