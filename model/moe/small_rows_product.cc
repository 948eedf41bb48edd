// small_rows_product.cc: picks the ISA path of small_rows_product.h.
#include "model/moe/small_rows_product.h"

#include <unistd.h>
#if CEMOE_SMALL_ROWS_X86
#include <cpuid.h>
#endif

#include <atomic>
#include <cstdint>
#include <vector>

#include "model/check.h"
#include "model/moe/small_rows_isa.h"

namespace cemoe {
namespace {

SmallRowsIsa Detect() {
#if CEMOE_SMALL_ROWS_X86
  // libgcc's checks include the OS's support for the vector state (XGETBV).
  __builtin_cpu_init();
  if (__builtin_cpu_supports("avx512f")) return SmallRowsIsa::kAvx512;
  if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) return SmallRowsIsa::kAvx2;
#endif
  return SmallRowsIsa::kNone;
}

// AMD family 19h (Zen 3 and Zen 4; of them only Zen 4 has AVX-512): it executes each 512-bit
// operation as two 256-bit halves, so its AVX-512 products race BLAS differently from an Intel
// core's (SmallRowsMax).
bool AmdFamily19h() {
#if CEMOE_SMALL_ROWS_X86
  unsigned eax = 0, ebx = 0, ecx = 0, edx = 0;
  if (__get_cpuid(0, &eax, &ebx, &ecx, &edx) == 0) return false;
  // "AuthenticAMD" in EBX, EDX, ECX.
  if (ebx != 0x68747541u || edx != 0x69746e65u || ecx != 0x444d4163u) return false;
  if (__get_cpuid(1, &eax, &ebx, &ecx, &edx) == 0) return false;
  const unsigned base = (eax >> 8) & 0xfu, extended = (eax >> 20) & 0xffu;
  return (base == 0xfu ? base + extended : base) == 0x19u;
#else
  return false;
#endif
}

std::atomic<int>& Current() {
  static std::atomic<int> current{static_cast<int>(SmallRowsIsaDetected())};
  return current;
}

std::atomic<int64_t> g_pass_bytes{0};

}  // namespace

float* SmallRowsScratch(int64_t floats) {
  thread_local std::vector<float> buffer;
  const size_t need = static_cast<size_t>(floats) + 16;
  if (buffer.size() < need) buffer.resize(need);
  const uintptr_t p = reinterpret_cast<uintptr_t>(buffer.data());
  return reinterpret_cast<float*>((p + 63) & ~static_cast<uintptr_t>(63));
}

int64_t EqualPassColumns(int64_t cols, int64_t bytes_per_column, int64_t pass_bytes,
                         int64_t granule) {
  const int64_t fit = std::max<int64_t>(1, pass_bytes / std::max<int64_t>(1, bytes_per_column));
  const int64_t passes = std::max<int64_t>(1, (cols + fit - 1) / fit);
  const int64_t per = (cols + passes - 1) / passes;
  return std::max<int64_t>(granule, (per + granule - 1) / granule * granule);
}

void SetSmallRowsPassBytes(int64_t bytes) {
  CEMOE_CHECK(bytes >= 0, "small-rows products: pass bytes {} < 0", bytes);
  g_pass_bytes.store(bytes);
}

int64_t GetSmallRowsPassBytes() {
  static const int64_t half_l2 = [] {
    const long l2 = sysconf(_SC_LEVEL2_CACHE_SIZE);
    return l2 > 0 ? static_cast<int64_t>(l2) / 2 : int64_t{512} << 10;
  }();
  const int64_t set = g_pass_bytes.load();
  return set > 0 ? set : half_l2;
}

SmallRowsIsa SmallRowsIsaDetected() {
  static const SmallRowsIsa detected = Detect();
  return detected;
}

const char* SmallRowsIsaName(SmallRowsIsa isa) {
  switch (isa) {
    case SmallRowsIsa::kAvx512:
      return "avx512";
    case SmallRowsIsa::kAvx2:
      return "avx2";
    case SmallRowsIsa::kNone:
      break;
  }
  return "off";
}

SmallRowsIsa ParseSmallRowsIsa(const std::string& option, const std::string& name) {
  if (name == "auto") return SmallRowsIsaDetected();
  for (SmallRowsIsa isa : {SmallRowsIsa::kAvx512, SmallRowsIsa::kAvx2, SmallRowsIsa::kNone}) {
    if (name == SmallRowsIsaName(isa)) return isa;
  }
  CEMOE_FAIL("{}: expected auto, avx512, avx2 or off, got '{}'", option, name);
}

void SetSmallRowsIsa(SmallRowsIsa isa) {
  CEMOE_CHECK(static_cast<int>(isa) <= static_cast<int>(SmallRowsIsaDetected()),
              "small-rows products: {} asked for, this CPU runs at most {}", SmallRowsIsaName(isa),
              SmallRowsIsaName(SmallRowsIsaDetected()));
  Current().store(static_cast<int>(isa));
}

SmallRowsIsa GetSmallRowsIsa() { return static_cast<SmallRowsIsa>(Current().load()); }

int64_t SmallRowsMax(SmallRowsProduct product, SmallRowsBlas blas) {
  // Measured against the same ISA's BLAS kernels (OpenBLAS SkylakeX / Haswell; MKL), [2048, 2048]
  // weights (and Phi-3.5-MoE's), one product per thread on 2 threads (docs/benchmarks.md). With
  // AVX-512: XWt wins up to 192 rows (362-365 against 296-306 GFLOP/s at 128, even at 256; MKL
  // 315 against 283 at 128, 319 against 303 at 192). XW against OpenBLAS up to 160 (at 160:
  // 274-287 against 270-273 at [2048, 2048], 312 against 262 at [2048, 1024], 290 against 237 at
  // Phi's [4096, 6400], 263 against 270 at its [12800, 4096]; loses at 192), against MKL up to 64
  // (307 against 278 at 64, ties at 96, loses 11 % at 128). AtB accumulating up to 96 against
  // OpenBLAS (361 against 316 at 96; at 128 OpenBLAS wins, 328-330 against 339-351), up to 128
  // against MKL (291-296 against 267-278 at 128, [2048, 2048] and Phi's [12800, 4096]; ties at
  // 160); overwriting up to 160 (against oneDNN's sgemm, the Debian build's overwrite: 306-327
  // against 286-304 at 128 rows, 298-304 against 281-289 at 160, 307 / 292 at Phi's [12800,
  // 4096], 1.02x at 176; against MKL 303 / 285 at 128, 300-310 / 285-289 at 160, 318 / 300 at
  // [12800, 4096]). With AVX2: XWt up to 96, XW up to 32 (136 against 131; loses at 64), AtB up
  // to 64 either way (206 against 207 at 64, 204 against 216 at 96, accumulating; overwriting not
  // measured apart). All of that on an Intel Xeon VM.
  //
  // On AMD Zen 4 (EPYC, 2026-12-04, `cemoe bench products`, [2048, 2048], [2048, 1024] and
  // [12800, 4096]) the kernels run at 140-195 GFLOP/s on 2 threads (a few cells 97-108, the BLAS
  // as slow there). OpenBLAS (its Cooperlake kernels there) reaches 78-221, and the races end
  // earlier than on Intel: XWt still wins up to 192 (1.04-1.12x at 192, 0.88-0.94x at 256), XW up
  // to 96 (1.06-1.13x; 0.97-1.04x at 128), AtB accumulating up to 96 (1.00-1.08x), overwriting up
  // to 64 (0.98-1.03x; 0.93-1.01x at 96, 0.79-0.90x at 128 against oneDNN). MKL there stays at
  // 84-189 (it runs no AVX-512 kernels on AMD), and they end later: XWt up to 256 (1.07-1.16x;
  // 0.93x at 512), XW up to 256 (1.02x; ties at 320-384, 0.90x at 512), AtB up to 192 (1.05-1.11x;
  // 0.97-1.00x at 256), overwriting up to 256 (1.04-1.12x; 0.95-1.03x at 384). Since the
  // kernels' loops are aligned to 64 bytes and their passes no longer split one more time than the
  // cache needs (session 18, same machine kind), XW against OpenBLAS wins up to 128 (1.01-1.05x
  // at [2048, 2048], [2048, 1024] and [12800, 4096]; 0.95-1.03x at 160); the other races moved
  // by a few percent and their limits stand (AtB at 128: 0.99-1.03x). And since XWt keeps its
  // partial sums between passes in a transposed buffer instead of y, it wins against OpenBLAS up
  // to 320 rows (1.05-1.08x at 256, 1.02-1.08x at 320, 1.02-1.06x at 384; it was 1.00-1.05x at
  // 256 and 0.98-1.00x at 320).
  const bool avx512 = GetSmallRowsIsa() == SmallRowsIsa::kAvx512;
  static const bool zen4 = AmdFamily19h();
  if (avx512 && zen4) {
    const bool mkl = blas == SmallRowsBlas::kMkl;
    switch (product) {
      case SmallRowsProduct::kXWt:
        return mkl ? 256 : 320;
      case SmallRowsProduct::kXW:
        return mkl ? 256 : 128;
      case SmallRowsProduct::kAtB:
        return mkl ? 192 : 96;
      case SmallRowsProduct::kAtBOverwrite:
        return mkl ? 256 : 64;
    }
  }
  switch (GetSmallRowsIsa()) {
    case SmallRowsIsa::kAvx512:
    case SmallRowsIsa::kAvx2:
      switch (product) {
        case SmallRowsProduct::kXWt:
          return avx512 ? 192 : 96;
        case SmallRowsProduct::kXW:
          return !avx512 ? 32 : blas == SmallRowsBlas::kMkl ? 64 : 160;
        case SmallRowsProduct::kAtB:
          return !avx512 ? 64 : blas == SmallRowsBlas::kMkl ? 128 : 96;
        case SmallRowsProduct::kAtBOverwrite:
          return avx512 ? 160 : 64;
      }
      break;
    case SmallRowsIsa::kNone:
      break;
  }
  return 0;
}

void SmallRowsXWt(const float* x, int64_t ldx, const float* w, int64_t ldw, float* y, int64_t ldy,
                  int64_t m, int64_t n, int64_t k) {
#if CEMOE_SMALL_ROWS_X86
  switch (GetSmallRowsIsa()) {
    case SmallRowsIsa::kAvx512:
      return small_rows_avx512::XWt(x, ldx, w, ldw, y, ldy, m, n, k, GetSmallRowsPassBytes());
    case SmallRowsIsa::kAvx2:
      return small_rows_avx2::XWt(x, ldx, w, ldw, y, ldy, m, n, k, GetSmallRowsPassBytes());
    case SmallRowsIsa::kNone:
      break;
  }
#endif
  CEMOE_FAIL("SmallRowsXWt [{}, {}] x [{}, {}]^T: no small-rows path on this CPU or build", m, k, n,
             k);
}

void SmallRowsXW(const float* d, int64_t ldd, const float* w, int64_t ldw, float* y, int64_t ldy,
                 int64_t m, int64_t n, int64_t k) {
#if CEMOE_SMALL_ROWS_X86
  switch (GetSmallRowsIsa()) {
    case SmallRowsIsa::kAvx512:
      return small_rows_avx512::XW(d, ldd, w, ldw, y, ldy, m, n, k, GetSmallRowsPassBytes());
    case SmallRowsIsa::kAvx2:
      return small_rows_avx2::XW(d, ldd, w, ldw, y, ldy, m, n, k, GetSmallRowsPassBytes());
    case SmallRowsIsa::kNone:
      break;
  }
#endif
  CEMOE_FAIL("SmallRowsXW [{}, {}] x [{}, {}]: no small-rows path on this CPU or build", m, n, n,
             k);
}

void SmallRowsAtB(const float* a, int64_t lda, const float* b, int64_t ldb, float* c, int64_t ldc,
                  int64_t m, int64_t n, int64_t k, bool accumulate) {
#if CEMOE_SMALL_ROWS_X86
  switch (GetSmallRowsIsa()) {
    case SmallRowsIsa::kAvx512:
      return small_rows_avx512::AtB(a, lda, b, ldb, c, ldc, m, n, k, accumulate,
                                    GetSmallRowsPassBytes());
    case SmallRowsIsa::kAvx2:
      return small_rows_avx2::AtB(a, lda, b, ldb, c, ldc, m, n, k, accumulate,
                                  GetSmallRowsPassBytes());
    case SmallRowsIsa::kNone:
      break;
  }
#endif
  CEMOE_FAIL("SmallRowsAtB [{}, {}]^T x [{}, {}]: no small-rows path on this CPU or build", m, n, m,
             k);
}

}  // namespace cemoe
