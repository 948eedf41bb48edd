// record.h: TensorFlow's record framing (the TFRecord format), which TensorBoard event files use.
// Each record is
//   uint64 length   (little-endian)
//   uint32 masked CRC-32C of those 8 length bytes   (little-endian; crc32c.h MaskCrc)
//   byte   data[length]
//   uint32 masked CRC-32C of data                    (little-endian)
// so a record costs 16 bytes more than its data. Readers (TensorBoard's, ScanRecords below) check
// both CRCs: a record cut short by a crash or a flipped bit is detected, never misread.
// Torch-free (cemoe_metrics). Thread-safety: stateless.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>
#include <vector>

namespace cemoe {

inline constexpr size_t kRecordOverheadBytes = 16;

// `data` framed as one record.
std::string FrameRecord(std::string_view data);

// The records of a file's bytes, up to the first one that is cut short or fails a CRC.
struct RecordScan {
  std::vector<std::string_view> records;  // data of each intact record (views into the input)
  size_t valid_bytes = 0;                 // length of the prefix made of intact records
  // "" when the whole input is intact records; else what ended the scan, naming the byte offset
  // ("record at byte 40: 8 of 16 header bytes (torn)", "... length CRC mismatch", ...).
  std::string problem;
};
RecordScan ScanRecords(std::string_view bytes);

}  // namespace cemoe
