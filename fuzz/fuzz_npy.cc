// Fuzz target: bytes -> .npy parser (ParseNpy); a parsed tensor must serialize and parse back.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <string>

#include "quantkit/npy.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string bytes(reinterpret_cast<const char*>(data), size);
  auto t = quantkit::ParseNpy(bytes, "fuzz.npy");
  if (!t.ok()) return 0;
  auto again = quantkit::ParseNpy(quantkit::SerializeNpy(*t), "again.npy");
  if (!again.ok() || again->shape() != t->shape() || again->dtype() != t->dtype() ||
      (t->nbytes() > 0 && std::memcmp(again->raw_data(), t->raw_data(), t->nbytes()) != 0)) {
    std::abort();  // a round trip that loses data is a bug
  }
  return 0;
}
