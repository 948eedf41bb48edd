// small_rows_avx512.cc: small_rows_kernel.inc for AVX-512: 16 floats per vector, 24 accumulators
// of its 32 vector registers; compiled with that ISA's flags (model/CMakeLists.txt).
#include <algorithm>
#include <array>
#include <cstdint>
#include <cstring>
#include <utility>
#include <vector>

#include "model/moe/small_rows_isa.h"

namespace cemoe {
namespace small_rows_avx512 {

constexpr int kLanes = 16;
constexpr int kAcc = 24;
#include "model/moe/small_rows_kernel.inc"

}  // namespace small_rows_avx512
}  // namespace cemoe
