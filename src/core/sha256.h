// SHA-256 (FIPS 180-4), for recording which model file a result came from.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

#include "quantkit/status.h"

namespace quantkit {

class Sha256 {
 public:
  Sha256();
  void Update(const void* data, size_t size);
  // Lowercase hex digest; the object must not be updated afterwards.
  std::string HexDigest();

 private:
  void Block(const uint8_t* block);
  uint32_t h_[8];
  uint8_t buffer_[64];
  size_t buffered_ = 0;
  uint64_t total_bytes_ = 0;
};

std::string Sha256Hex(const void* data, size_t size);
// Streams the file; errors name it.
StatusOr<std::string> Sha256OfFile(const std::string& path);

}  // namespace quantkit
