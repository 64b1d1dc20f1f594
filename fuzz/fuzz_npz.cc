// Fuzz target: bytes -> .npz reader (zip directory, deflate, CRC, then the .npy parser). NpzFile
// reads from a path, so the bytes go to an anonymous in-memory file (memfd) opened by its
// /proc/self/fd path: the parser runs unchanged.
#include <sys/mman.h>
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>

#include "quant/npz.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const int fd = memfd_create("fuzz.npz", 0);
  if (fd < 0) std::abort();
  for (size_t done = 0; done < size;) {
    const ssize_t n = write(fd, data + done, size - done);
    if (n <= 0) std::abort();
    done += static_cast<size_t>(n);
  }
  const std::string path = "/proc/self/fd/" + std::to_string(fd);
  auto npz = quantkit::quant::NpzFile::Open(path);
  if (npz.ok()) {
    for (const auto& key : npz->keys()) (void)npz->Read(key);
  }
  close(fd);
  return 0;
}
