// NumPy .npz files (np.savez / np.savez_compressed): a zip archive with one <key>.npy member per
// array. The zip structure is parsed here (end-of-central-directory record, zip64 records and
// extra fields, central directory, local headers); members may be stored or deflated (zlib raw
// inflate) and their CRC-32 is checked. Every offset and size is checked against the file size
// before anything is read or allocated; errors name the file and the member.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "quantkit/status.h"
#include "quantkit/tensor.h"

namespace quantkit::quant {

class NpzFile {
 public:
  // Reads the archive's directory (not the arrays).
  static StatusOr<NpzFile> Open(const std::string& path);
  // Array names: the .npy members' names without the ".npy" suffix (other members are ignored).
  const std::vector<std::string>& keys() const { return keys_; }
  bool Contains(const std::string& key) const;
  // Reads, decompresses, checks and parses one array.
  StatusOr<Tensor> Read(const std::string& key) const;
  const std::string& path() const { return path_; }

 private:
  struct Member {
    std::string key;
    uint16_t method = 0;  // 0 stored, 8 deflate
    uint32_t crc32 = 0;
    uint64_t compressed_size = 0;
    uint64_t uncompressed_size = 0;
    uint64_t local_header_offset = 0;
  };
  std::string path_;
  uint64_t file_size_ = 0;
  std::vector<Member> members_;
  std::vector<std::string> keys_;
};

}  // namespace quantkit::quant
