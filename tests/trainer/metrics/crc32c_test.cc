// CRC-32C and its mask against published vectors: the standard check value, RFC 3720 (iSCSI)
// appendix B.4's 32-byte vectors, and masked values computed by TensorBoard's own
// tensorboard.compat.tensorflow_stub.pywrap_tensorflow.masked_crc32c (tensorboard 2.21).
#include "trainer/metrics/crc32c.h"

#include <gtest/gtest.h>

#include <string>

namespace cemoe {
namespace {

std::string Bytes(int n, int (*f)(int)) {
  std::string s;
  for (int i = 0; i < n; ++i) s.push_back(static_cast<char>(f(i)));
  return s;
}

TEST(Crc32c, StandardCheckValue) { EXPECT_EQ(Crc32c("123456789"), 0xE3069283u); }

TEST(Crc32c, Rfc3720Vectors) {
  EXPECT_EQ(Crc32c(""), 0u);
  EXPECT_EQ(Crc32c("a"), 0xC1D04330u);
  EXPECT_EQ(Crc32c(std::string(32, '\0')), 0x8A9136AAu);
  EXPECT_EQ(Crc32c(std::string(32, '\xff')), 0x62A8AB43u);
  EXPECT_EQ(Crc32c(Bytes(32, [](int i) { return i; })), 0x46DD794Eu);
  EXPECT_EQ(Crc32c(Bytes(32, [](int i) { return 31 - i; })), 0x113FDB5Cu);
}

TEST(Crc32c, ExtendEqualsWhole) {
  const std::string s = "The quick brown fox jumps over the lazy dog";
  for (size_t cut = 0; cut <= s.size(); ++cut) {
    EXPECT_EQ(Crc32cExtend(Crc32c(s.substr(0, cut)), s.data() + cut, s.size() - cut), Crc32c(s));
  }
}

TEST(Crc32c, MaskMatchesTensorBoard) {
  EXPECT_EQ(MaskedCrc32c("123456789"), 0xC78AB0E5u);
  EXPECT_EQ(MaskedCrc32c(""), 0xA282EAD8u);
  EXPECT_EQ(MaskedCrc32c("a"), 0x28E46E78u);
  EXPECT_EQ(MaskedCrc32c(std::string(32, '\0')), 0x0FD7FFFAu);
  EXPECT_EQ(MaskedCrc32c(Bytes(32, [](int i) { return i; })), 0x951F7892u);
  for (uint32_t c : {0u, 1u, 0xE3069283u, 0xFFFFFFFFu, 0x80000000u})
    EXPECT_EQ(UnmaskCrc(MaskCrc(c)), c);
}

}  // namespace
}  // namespace cemoe
