// bfloat16 on the host: the upper 16 bits of an IEEE float32 (1 sign, 8 exponent, 7 mantissa
// bits), the storage type of activations in `train.precision: "bf16"`.
//
// Conversion from float rounds to nearest, ties to even, as the GPU's __float2bfloat16 (cvt.rn)
// does, so a CPU computation that rounds with `Bf16` at the points where a CUDA kernel stores
// bf16 gets the kernel's bits:
//  - finite values round on the 16 discarded bits; a value past the largest finite bf16
//    (about 3.39e38) by half an ulp or more becomes +-infinity;
//  - +-0, +-infinity and subnormals keep their meaning (bf16 has float32's exponent range);
//  - NaN stays NaN (quiet, sign kept), never becoming infinity through the carry.
// Widening to float is exact.
//
//   const Bf16 b(1.00390625f);    // 1 + 2^-8, halfway between 1 and 1 + 2^-7: ties to 1
//   float x = static_cast<float>(b);                 // 1.0f
//   float y = RoundToBf16(3.14159f);                 // 3.140625f
#ifndef HEADROOM_BASE_BF16_H_
#define HEADROOM_BASE_BF16_H_

#include <cstdint>
#include <cstring>

namespace headroom {

class Bf16 {
 public:
  Bf16() = default;
  // Rounds to nearest, ties to even.
  explicit Bf16(float x) : bits_(FloatToBits(x)) {}
  static Bf16 FromBits(uint16_t bits) {
    Bf16 b;
    b.bits_ = bits;
    return b;
  }

  uint16_t bits() const { return bits_; }
  explicit operator float() const {
    const uint32_t u = static_cast<uint32_t>(bits_) << 16;
    float f;
    std::memcpy(&f, &u, sizeof(f));
    return f;
  }

  friend bool operator==(Bf16 a, Bf16 b) { return a.bits_ == b.bits_; }

 private:
  static uint16_t FloatToBits(float x) {
    uint32_t u;
    std::memcpy(&u, &x, sizeof(u));
    if ((u & 0x7FFFFFFFu) > 0x7F800000u) {  // NaN: keep the sign, make it quiet
      return static_cast<uint16_t>((u >> 16) | 0x0040u);
    }
    // Adding 0x7FFF plus the kept part's lowest bit carries into bit 16 exactly when the
    // discarded half is above 0x8000, or equal to it with an odd kept part.
    u += 0x7FFFu + ((u >> 16) & 1u);
    return static_cast<uint16_t>(u >> 16);
  }

  uint16_t bits_ = 0;
};
static_assert(sizeof(Bf16) == 2, "Bf16 is stored as its 16 bits");

// The bf16 value nearest x (ties to even), as a float: what storing x in bf16 and reading it
// back gives.
inline float RoundToBf16(float x) { return static_cast<float>(Bf16(x)); }

}  // namespace headroom

#endif  // HEADROOM_BASE_BF16_H_
