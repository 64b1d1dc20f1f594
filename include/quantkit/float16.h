// IEEE half and bfloat16 <-> float conversion (round to nearest even), used for fp16 weights and I/O.
#pragma once

#include <cstdint>
#include <cstring>

namespace quantkit {

struct Float16 {
  uint16_t bits = 0;
};
struct BFloat16 {
  uint16_t bits = 0;
};

float HalfToFloat(uint16_t h);
uint16_t FloatToHalf(float f);  // round to nearest even; overflow gives inf; NaN stays NaN

inline float BFloat16ToFloat(uint16_t b) {
  uint32_t u = static_cast<uint32_t>(b) << 16;
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}
uint16_t FloatToBFloat16(float f);  // round to nearest even; NaN stays NaN

}  // namespace quantkit
