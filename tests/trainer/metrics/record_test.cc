// TFRecord framing (record.h): the bytes of a record worked out by hand, and ScanRecords on intact,
// torn and corrupted input.
#include "trainer/metrics/record.h"

#include <gtest/gtest.h>

#include <string>

#include "trainer/metrics/crc32c.h"

namespace cemoe {
namespace {

uint32_t Le32(const std::string& s, size_t at) {
  uint32_t v = 0;
  for (int i = 0; i < 4; ++i) v |= uint32_t{static_cast<unsigned char>(s[at + i])} << (8 * i);
  return v;
}

TEST(Record, FramingByHand) {
  // "abc": length 3 as 8 little-endian bytes, then the masked CRCs of those 8 bytes and of "abc".
  const std::string framed = FrameRecord("abc");
  ASSERT_EQ(framed.size(), 3u + 16u);
  EXPECT_EQ(framed.substr(0, 8), std::string("\x03\0\0\0\0\0\0\0", 8));
  const uint32_t crc_len = Crc32c(std::string("\x03\0\0\0\0\0\0\0", 8));
  EXPECT_EQ(Le32(framed, 8), ((crc_len >> 15) | (crc_len << 17)) + 0xa282ead8u);
  EXPECT_EQ(framed.substr(12, 3), "abc");
  const uint32_t crc_data = Crc32c("abc");
  EXPECT_EQ(Le32(framed, 15), ((crc_data >> 15) | (crc_data << 17)) + 0xa282ead8u);
  EXPECT_EQ(crc_data, 0x364B3FB7u);  // crc32c("abc"), a published value
}

TEST(Record, ScanIntact) {
  const std::string bytes =
      FrameRecord("first") + FrameRecord("") + FrameRecord(std::string(300, 'x'));
  const RecordScan scan = ScanRecords(bytes);
  EXPECT_EQ(scan.problem, "");
  ASSERT_EQ(scan.records.size(), 3u);
  EXPECT_EQ(scan.records[0], "first");
  EXPECT_EQ(scan.records[1], "");
  EXPECT_EQ(scan.records[2], std::string(300, 'x'));
  EXPECT_EQ(scan.valid_bytes, bytes.size());
}

TEST(Record, ScanStopsAtTornRecord) {
  const std::string good = FrameRecord("first");
  const std::string second = FrameRecord("second record");
  for (size_t cut = 1; cut < second.size(); ++cut) {
    const RecordScan scan = ScanRecords(good + second.substr(0, cut));
    ASSERT_EQ(scan.records.size(), 1u) << cut;
    EXPECT_EQ(scan.valid_bytes, good.size());
    EXPECT_NE(scan.problem.find("record at byte 21"), std::string::npos) << scan.problem;
    EXPECT_NE(scan.problem.find("(torn)"), std::string::npos) << scan.problem;
  }
}

TEST(Record, ScanDetectsFlippedBits) {
  const std::string good = FrameRecord("first");
  const std::string second = FrameRecord("second record");
  for (size_t at = 0; at < second.size(); ++at) {
    std::string bad = second;
    bad[at] = static_cast<char>(bad[at] ^ 0x10);
    const RecordScan scan = ScanRecords(good + bad);
    EXPECT_EQ(scan.records.size(), 1u) << at;
    EXPECT_NE(scan.problem, "") << at;
  }
  std::string bad = second;
  bad[14] ^= 1;  // a data byte
  EXPECT_NE(ScanRecords(bad).problem.find("data CRC mismatch"), std::string::npos);
  bad = second;
  bad[0] ^= 1;  // the length
  EXPECT_NE(ScanRecords(bad).problem.find("length CRC mismatch"), std::string::npos);
}

TEST(Record, HugeLengthIsTornNotAllocated) {
  std::string header("\xff\xff\xff\xff\xff\xff\xff\x7f", 8);
  const uint32_t m = MaskedCrc32c(header);
  for (int i = 0; i < 4; ++i) header.push_back(static_cast<char>((m >> (8 * i)) & 0xFF));
  const RecordScan scan = ScanRecords(header + "abcd");
  EXPECT_TRUE(scan.records.empty());
  EXPECT_NE(scan.problem.find("torn"), std::string::npos) << scan.problem;
}

}  // namespace
}  // namespace cemoe
