// CRC32C against published vectors (RFC 3720 section B.4, the iSCSI test patterns LevelDB's
// crc32c_test.cc also uses, and the "123456789" check value of the CRC catalogue), plus the
// properties of Extend and of the mask.
#include "data/crc32c.h"

#include <string>

#include "gtest/gtest.h"

namespace headroom {
namespace {

TEST(Crc32cTest, CheckValueOfDigits) { EXPECT_EQ(crc32c::Value("123456789", 9), 0xe3069283u); }

TEST(Crc32cTest, Rfc3720Vectors) {
  char buf[32];
  for (char& c : buf) c = 0;
  EXPECT_EQ(crc32c::Value(buf, sizeof(buf)), 0x8a9136aau);
  for (char& c : buf) c = static_cast<char>(0xff);
  EXPECT_EQ(crc32c::Value(buf, sizeof(buf)), 0x62a8ab43u);
  for (int i = 0; i < 32; ++i) buf[i] = static_cast<char>(i);
  EXPECT_EQ(crc32c::Value(buf, sizeof(buf)), 0x46dd794eu);
  for (int i = 0; i < 32; ++i) buf[i] = static_cast<char>(31 - i);
  EXPECT_EQ(crc32c::Value(buf, sizeof(buf)), 0x113fdb5cu);
  // An iSCSI read command PDU (RFC 3720 B.4).
  const unsigned char pdu[48] = {0x01, 0xc0, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
                                 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x14, 0x00, 0x00, 0x00,
                                 0x00, 0x00, 0x04, 0x00, 0x00, 0x00, 0x00, 0x14, 0x00, 0x00,
                                 0x00, 0x18, 0x28, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
                                 0x02, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00};
  EXPECT_EQ(crc32c::Value(reinterpret_cast<const char*>(pdu), sizeof(pdu)), 0xd9963a56u);
}

TEST(Crc32cTest, EmptyInputIsZero) { EXPECT_EQ(crc32c::Value("", 0), 0u); }

TEST(Crc32cTest, ExtendEqualsValueOfConcatenationAtEverySplit) {
  // Long and unaligned enough to cover the 8-byte loop and the byte tail at every split.
  std::string s;
  for (int i = 0; i < 77; ++i) s.push_back(static_cast<char>(i * 37 + 11));
  uint32_t whole = crc32c::Value(s.data(), s.size());
  for (size_t split = 0; split <= s.size(); ++split) {
    EXPECT_EQ(crc32c::Extend(crc32c::Value(s.data(), split), s.data() + split, s.size() - split),
              whole)
        << "split " << split;
  }
  EXPECT_EQ(crc32c::Extend(crc32c::Value("hello ", 6), "world", 5),
            crc32c::Value("hello world", 11));
}

TEST(Crc32cTest, MaskIsTheTensorFlowRotateAndAdd) {
  uint32_t crc = crc32c::Value("foo", 3);
  // The definition, written out independently of the implementation.
  uint32_t expected = ((crc >> 15) | (crc << 17)) + 0xa282ead8u;
  EXPECT_EQ(crc32c::Mask(crc), expected);
  EXPECT_NE(crc32c::Mask(crc), crc);
  EXPECT_NE(crc32c::Mask(crc32c::Mask(crc)), crc);
  EXPECT_EQ(crc32c::Unmask(crc32c::Mask(crc)), crc);
  EXPECT_EQ(crc32c::Unmask(crc32c::Unmask(crc32c::Mask(crc32c::Mask(crc)))), crc);
  for (uint32_t c : {0u, 1u, 0xffffffffu, 0x80000000u, 0xe3069283u}) {
    EXPECT_EQ(crc32c::Unmask(crc32c::Mask(c)), c);
  }
}

}  // namespace
}  // namespace headroom
