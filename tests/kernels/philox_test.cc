// Philox-4x32-10 (kernels/philox.h) against Random123's published known answers, and the
// dropout threshold's edge cases.
//
// The vectors are the three "philox4x32 10" lines of Random123's tests/kat_vectors
// (github.com/DEShawResearch/random123): counter (4 words), key (2 words), expected output.
#include "kernels/philox.h"

#include <gtest/gtest.h>

namespace headroom {
namespace {

struct Kat {
  uint32_t ctr[4];
  uint32_t key[2];
  uint32_t want[4];
};

constexpr Kat kKats[] = {
    {{0x00000000, 0x00000000, 0x00000000, 0x00000000},
     {0x00000000, 0x00000000},
     {0x6627e8d5, 0xe169c58d, 0xbc57ac4c, 0x9b00dbd8}},
    {{0xffffffff, 0xffffffff, 0xffffffff, 0xffffffff},
     {0xffffffff, 0xffffffff},
     {0x408f276d, 0x41c83b0e, 0xa20bc7c6, 0x6d5451fd}},
    {{0x243f6a88, 0x85a308d3, 0x13198a2e, 0x03707344},
     {0xa4093822, 0x299f31d0},
     {0xd16cfe09, 0x94fdcceb, 0x5001e420, 0x24126ea1}},
};

TEST(PhiloxTest, MatchesRandom123KnownAnswers) {
  for (const Kat& k : kKats) {
    Philox4x32 ctr{{k.ctr[0], k.ctr[1], k.ctr[2], k.ctr[3]}};
    const Philox4x32 out = Philox4x32_10(ctr, k.key[0], k.key[1]);
    for (int i = 0; i < 4; ++i) EXPECT_EQ(out.v[i], k.want[i]) << "word " << i;
  }
}

TEST(PhiloxTest, DropoutWordsPlaceTheFieldsAsDocumented) {
  // counter = {lo32(group), hi32(group), layer << 8 | site, lo32(step)},
  // key = {lo32(seed), hi32(seed) ^ hi32(step)}.
  const uint64_t seed = 0x0123456789abcdefULL, step = 0x0000000500000007ULL;
  const uint64_t group = 0x00000002fffffff1ULL;
  const Philox4x32 got = DropoutWords(seed, step, 3, 4, group);
  const Philox4x32 want = Philox4x32_10(Philox4x32{{0xfffffff1u, 0x2u, (3u << 8) | 4u, 7u}},
                                        0x89abcdefu, 0x01234567u ^ 0x5u);
  for (int i = 0; i < 4; ++i) EXPECT_EQ(got.v[i], want.v[i]) << "word " << i;
}

TEST(PhiloxTest, DropoutThresholdEdges) {
  EXPECT_EQ(DropoutThreshold(0.0f), 0u);
  EXPECT_EQ(DropoutThreshold(0.5f), 0x80000000u);
  EXPECT_EQ(DropoutThreshold(1.0f), 0xFFFFFFFFu);
}

}  // namespace
}  // namespace headroom
