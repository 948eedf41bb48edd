// crc32c.h: CRC-32C (Castagnoli: reflected polynomial 0x82F63B78, initial value and final xor
// 0xFFFFFFFF), the checksum of TensorFlow's record framing, and its "masked" form.
//
//   Crc32c("123456789") == 0xE3069283           (the standard check value)
//   MaskedCrc32c(data) == MaskCrc(Crc32c(data))   where MaskCrc(c) = ((c >> 15) | (c << 17)) +
//   0xa282ead8
//
// The mask is TensorFlow's (tensorflow/core/lib/hash/crc32c.h, kMaskDelta): a record that itself
// contains CRCs would otherwise checksum badly. Table-driven, one byte at a time (a few hundred
// MB/s; the event files it frames hold a few hundred bytes per step).
// Torch-free (cemoe_metrics). Thread-safety: stateless (the table is a constant).
#pragma once

#include <cstddef>
#include <cstdint>
#include <string_view>

namespace cemoe {

// Continues a CRC-32C: Crc32cExtend(Crc32c(a), b) == Crc32c(a + b). Crc32c(x) == Crc32cExtend(0,
// x).
uint32_t Crc32cExtend(uint32_t crc, const void* data, size_t size);
inline uint32_t Crc32c(const void* data, size_t size) { return Crc32cExtend(0, data, size); }
inline uint32_t Crc32c(std::string_view data) { return Crc32c(data.data(), data.size()); }

inline constexpr uint32_t kCrcMaskDelta = 0xa282ead8u;

inline uint32_t MaskCrc(uint32_t crc) { return ((crc >> 15) | (crc << 17)) + kCrcMaskDelta; }
inline uint32_t UnmaskCrc(uint32_t masked) {
  const uint32_t rot = masked - kCrcMaskDelta;
  return (rot >> 17) | (rot << 15);
}
inline uint32_t MaskedCrc32c(std::string_view data) { return MaskCrc(Crc32c(data)); }

}  // namespace cemoe
