// small_rows_avx2.cc: small_rows_kernel.inc for AVX2 + FMA: 8 floats per vector, 12 accumulators
// of its 16 vector registers; compiled with that ISA's flags (model/CMakeLists.txt).
#include <algorithm>
#include <array>
#include <cstdint>
#include <cstring>
#include <utility>
#include <vector>

#include "model/moe/small_rows_isa.h"

namespace cemoe {
namespace small_rows_avx2 {

constexpr int kLanes = 8;
constexpr int kAcc = 12;
#include "model/moe/small_rows_kernel.inc"

}  // namespace small_rows_avx2
}  // namespace cemoe
