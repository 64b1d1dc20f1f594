// Small file helpers (see file_util.h).
#include "core/file_util.h"

#include <fmt/format.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <random>

namespace quantkit {

namespace fs = std::filesystem;

// Writes bytes to path via a temp file in the same directory + rename: never a partial file.
Status WriteFileAtomically(const std::string& path, const std::string& bytes) {
  const fs::path target(path);
  std::random_device rd;
  const fs::path tmp = target.parent_path() / fmt::format(".{}.tmp{:08x}", target.filename().string(), rd());
  {
    std::ofstream f(tmp, std::ios::binary | std::ios::trunc);
    if (!f) return InvalidArgument(fmt::format("cannot write '{}' (directory missing or not writable)", path));
    f.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
    f.flush();
    if (!f) {
      f.close();
      std::remove(tmp.c_str());
      return InvalidArgument(fmt::format("writing '{}' failed (disk full?)", path));
    }
  }
  std::error_code ec;
  fs::rename(tmp, target, ec);
  if (ec) {
    std::remove(tmp.c_str());
    return InvalidArgument(fmt::format("cannot move the output into place at '{}': {}", path, ec.message()));
  }
  return Status::Ok();
}


}  // namespace quantkit
