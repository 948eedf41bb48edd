// small_rows_isa.h: the per-ISA entry points behind small_rows_product.h (private to it and its
// test). Each is compiled with its ISA's flags; call one only when the CPU runs that ISA.
#pragma once

#include <cstdint>

namespace cemoe {
// This thread's scratch buffer, 64-byte aligned, at least `floats` long; valid until the thread's
// next call. Defined in small_rows_product.cc, compiled without the ISA flags: the ISA files
// instantiate no template of a type they share with the rest of the program (a std::vector<float>
// member compiled there with AVX-512 flags is a weak symbol the linker may keep for every caller,
// which a CPU without AVX-512 could not run).
float* SmallRowsScratch(int64_t floats);
// Columns per pass of a product whose pass over `cols` columns keeps bytes_per_column x columns
// within pass_bytes (small_rows_product.h: half the L2 cache), so that it stays in cache while the
// weight streams past it: as few passes as that allows, all equal, each a multiple of `granule`
// columns (rounded up: a pass may exceed pass_bytes by under one granule). The count is taken
// from the columns that fit, not from them rounded down to granules first: that turned OLMoE's
// 2048 columns at 128 rows (1024 fit in 512 KiB) into three passes instead of two.
// Defined in small_rows_product.cc (integer arithmetic, no ISA flags needed).
int64_t EqualPassColumns(int64_t cols, int64_t bytes_per_column, int64_t pass_bytes,
                         int64_t granule);
#define CEMOE_SMALL_ROWS_ENTRY_POINTS                                                       \
  void XWt(const float* x, int64_t ldx, const float* w, int64_t ldw, float* y, int64_t ldy, \
           int64_t m, int64_t n, int64_t k, int64_t pass_bytes);                            \
  void XW(const float* d, int64_t ldd, const float* w, int64_t ldw, float* y, int64_t ldy,  \
          int64_t m, int64_t n, int64_t k, int64_t pass_bytes);                             \
  void AtB(const float* a, int64_t lda, const float* b, int64_t ldb, float* c, int64_t ldc, \
           int64_t m, int64_t n, int64_t k, bool accumulate, int64_t pass_bytes);
namespace small_rows_avx512 {
CEMOE_SMALL_ROWS_ENTRY_POINTS
}
namespace small_rows_avx2 {
CEMOE_SMALL_ROWS_ENTRY_POINTS
}
#undef CEMOE_SMALL_ROWS_ENTRY_POINTS
}  // namespace cemoe
