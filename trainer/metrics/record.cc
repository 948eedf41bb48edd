#include "trainer/metrics/record.h"

#include <fmt/format.h>

#include <cstdint>

#include "trainer/metrics/crc32c.h"

namespace cemoe {
namespace {

void AppendLe(std::string& out, uint64_t v, int bytes) {
  for (int i = 0; i < bytes; ++i) out.push_back(static_cast<char>((v >> (8 * i)) & 0xFF));
}

uint64_t ReadLe(std::string_view bytes, size_t at, int n) {
  uint64_t v = 0;
  for (int i = 0; i < n; ++i) v |= uint64_t{static_cast<unsigned char>(bytes[at + i])} << (8 * i);
  return v;
}

}  // namespace

std::string FrameRecord(std::string_view data) {
  std::string out;
  out.reserve(data.size() + kRecordOverheadBytes);
  AppendLe(out, data.size(), 8);
  AppendLe(out, MaskedCrc32c(std::string_view(out.data(), 8)), 4);
  out.append(data.data(), data.size());
  AppendLe(out, MaskedCrc32c(data), 4);
  return out;
}

RecordScan ScanRecords(std::string_view bytes) {
  RecordScan scan;
  size_t at = 0;
  while (at < bytes.size()) {
    const size_t left = bytes.size() - at;
    if (left < 12) {
      scan.problem = fmt::format("record at byte {}: {} of 12 header bytes (torn)", at, left);
      break;
    }
    const uint64_t length = ReadLe(bytes, at, 8);
    const uint32_t length_crc = static_cast<uint32_t>(ReadLe(bytes, at + 8, 4));
    if (length_crc != MaskedCrc32c(bytes.substr(at, 8))) {
      scan.problem =
          fmt::format("record at byte {}: length CRC mismatch (length field {})", at, length);
      break;
    }
    if (length > left - 12 || left - 12 - length < 4) {
      scan.problem =
          fmt::format("record at byte {}: length {} but only {} bytes follow the header (torn)", at,
                      length, left - 12);
      break;
    }
    const std::string_view data = bytes.substr(at + 12, length);
    const uint32_t data_crc = static_cast<uint32_t>(ReadLe(bytes, at + 12 + length, 4));
    if (data_crc != MaskedCrc32c(data)) {
      scan.problem =
          fmt::format("record at byte {}: data CRC mismatch ({} data bytes)", at, length);
      break;
    }
    scan.records.push_back(data);
    at += kRecordOverheadBytes + length;
    scan.valid_bytes = at;
  }
  return scan;
}

}  // namespace cemoe
