// blas_core.h: the right BLAS kernels for this CPU, for the cemoe executable.
//
// Debian's OpenBLAS (built with DYNAMIC_ARCH) picks its kernels from the CPU model when it loads.
// A virtual machine that reports a generic model ("Intel(R) Xeon(R) Processor", family/model it
// does not know) gets the oldest SSE kernels even when the CPU has AVX-512: measured on such a
// 2-core VM, at::mm of [4096, 2048] x [2048, 1024] ran at 63 GFLOP/s on 2 threads, and at
// 279 GFLOP/s with OPENBLAS_CORETYPE=SkylakeX (docs/benchmarks.md). The kernels can only be chosen
// before the library loads, so cemoe runs itself again, once, with OPENBLAS_CORETYPE set when the
// loaded core is older than Haswell while the CPU has AVX2 + FMA (Haswell kernels) or AVX-512
// F/BW/DQ/VL (SkylakeX kernels). A core OpenBLAS did recognise (Haswell, Zen, SkylakeX, ...) is
// left alone, as is any OPENBLAS_CORETYPE already set; CEMOE_KEEP_BLAS_CORE=1 turns this off.
// Without OpenBLAS (a LibTorch with MKL) nothing happens.
// Thread-safety: call first thing in main, before any other thread exists.
#pragma once

#include <string>

namespace cemoe {

// Returns when nothing needs changing or the re-execution failed (after a warning on stderr);
// otherwise does not return.
void ReexecWithFittingBlasCore(char** argv);

// The running OpenBLAS core ("Haswell", "SkylakeX", ...), or "" without OpenBLAS.
const char* BlasCoreName();
// What the benchmarks print as the BLAS: "OpenBLAS <core>", else "MKL" (mkl: at::hasMKL()), else
// "not OpenBLAS".
std::string BlasLabel(bool mkl);

}  // namespace cemoe
