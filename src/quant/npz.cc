// .npz reader: zip directory parsing, stored/deflate members, CRC check, then the .npy parser.
#include "quant/npz.h"

#include <fmt/format.h>
#include <zlib.h>

#include <algorithm>
#include <fstream>
#include <limits>

#include "quantkit/npy.h"

namespace quantkit::quant {

namespace {

constexpr uint32_t kEndOfCentralDirectory = 0x06054b50;
constexpr uint32_t kZip64EndLocator = 0x07064b50;
constexpr uint32_t kZip64End = 0x06064b50;
constexpr uint32_t kCentralHeader = 0x02014b50;
constexpr uint32_t kLocalHeader = 0x04034b50;
constexpr uint64_t kMaxMembers = 1 << 20;
constexpr uint64_t kMaxArrayBytes = uint64_t{16} << 30;  // as the model loader's tensor limit
// Deflate cannot expand data more than ~1032x: a larger claimed size is a lie, refused before the
// output buffer is allocated.
constexpr uint64_t kMaxDeflateRatio = 1032;

// Little-endian field reader over a byte range; `ok` turns false on any read past the end.
struct Reader {
  const std::string& bytes;
  size_t pos = 0;
  bool ok = true;
  uint64_t Get(int size) {
    if (pos + static_cast<size_t>(size) > bytes.size()) {
      ok = false;
      return 0;
    }
    uint64_t v = 0;
    for (int i = 0; i < size; ++i) v |= static_cast<uint64_t>(static_cast<uint8_t>(bytes[pos + i])) << (8 * i);
    pos += static_cast<size_t>(size);
    return v;
  }
  uint16_t U16() { return static_cast<uint16_t>(Get(2)); }
  uint32_t U32() { return static_cast<uint32_t>(Get(4)); }
  uint64_t U64() { return Get(8); }
  std::string Bytes(size_t n) {
    if (pos + n > bytes.size()) {
      ok = false;
      return {};
    }
    std::string s = bytes.substr(pos, n);
    pos += n;
    return s;
  }
};

Status ReadAt(const std::string& path, uint64_t offset, uint64_t size, std::string* out) {
  std::ifstream f(path, std::ios::binary);
  if (!f) return NotFound(fmt::format("cannot open '{}'", path));
  out->resize(static_cast<size_t>(size));
  f.seekg(static_cast<std::streamoff>(offset));
  f.read(out->data(), static_cast<std::streamsize>(size));
  if (!f || static_cast<uint64_t>(f.gcount()) != size) return InvalidArgument(fmt::format("{}: read failed", path));
  return Status::Ok();
}

Status Corrupt(const std::string& path, const std::string& what) {
  return InvalidArgument(fmt::format("{}: not a valid .npz (zip) file: {}", path, what));
}

}  // namespace

bool NpzFile::Contains(const std::string& key) const {
  return std::find(keys_.begin(), keys_.end(), key) != keys_.end();
}

StatusOr<NpzFile> NpzFile::Open(const std::string& path) {
  NpzFile npz;
  npz.path_ = path;
  {
    std::ifstream f(path, std::ios::binary | std::ios::ate);
    if (!f) return NotFound(fmt::format("cannot open '{}'", path));
    npz.file_size_ = static_cast<uint64_t>(f.tellg());
  }
  const uint64_t size = npz.file_size_;
  if (size < 22) return Corrupt(path, "too short");
  // The end record is 22 bytes plus a comment of up to 65535 bytes at the very end.
  const uint64_t tail_size = std::min<uint64_t>(size, 22 + 65535);
  std::string tail;
  QK_RETURN_IF_ERROR(ReadAt(path, size - tail_size, tail_size, &tail));
  int64_t eocd = -1;
  for (int64_t p = static_cast<int64_t>(tail_size) - 22; p >= 0; --p) {
    Reader r{tail, static_cast<size_t>(p)};
    if (r.U32() != kEndOfCentralDirectory) continue;
    r.pos = static_cast<size_t>(p) + 20;
    if (static_cast<uint64_t>(p) + 22 + r.U16() == tail_size) {
      eocd = p;
      break;
    }
  }
  if (eocd < 0) return Corrupt(path, "no end-of-central-directory record");
  Reader end{tail, static_cast<size_t>(eocd) + 4};
  const uint16_t disk = end.U16(), cd_disk = end.U16();
  uint64_t entries_here = end.U16(), entries = end.U16();
  uint64_t cd_size = end.U32(), cd_offset = end.U32();
  if (disk != 0 || cd_disk != 0 || entries_here != entries) return Corrupt(path, "multi-disk archives are not supported");
  if (entries == 0xFFFF || cd_size == 0xFFFFFFFF || cd_offset == 0xFFFFFFFF) {
    // zip64: a locator right before the end record points at the zip64 end record.
    const uint64_t eocd_abs = size - tail_size + static_cast<uint64_t>(eocd);
    if (eocd_abs < 20) return Corrupt(path, "zip64 locator missing");
    std::string loc;
    QK_RETURN_IF_ERROR(ReadAt(path, eocd_abs - 20, 20, &loc));
    Reader l{loc};
    if (l.U32() != kZip64EndLocator) return Corrupt(path, "zip64 locator missing");
    l.U32();
    const uint64_t z64_offset = l.U64();
    if (z64_offset > size || size - z64_offset < 56) return Corrupt(path, "zip64 end record outside the file");
    std::string z64;
    QK_RETURN_IF_ERROR(ReadAt(path, z64_offset, 56, &z64));
    Reader z{z64};
    if (z.U32() != kZip64End) return Corrupt(path, "bad zip64 end record");
    z.U64();
    z.U16();
    z.U16();
    z.U32();
    z.U32();
    entries_here = z.U64();
    entries = z.U64();
    cd_size = z.U64();
    cd_offset = z.U64();
    if (entries_here != entries) return Corrupt(path, "multi-disk archives are not supported");
  }
  if (entries > kMaxMembers) return Corrupt(path, fmt::format("{} members", entries));
  if (cd_offset > size || cd_size > size - cd_offset) return Corrupt(path, "central directory outside the file");
  std::string cd;
  QK_RETURN_IF_ERROR(ReadAt(path, cd_offset, cd_size, &cd));
  Reader r{cd};
  for (uint64_t i = 0; i < entries; ++i) {
    if (r.U32() != kCentralHeader) return Corrupt(path, fmt::format("bad central directory entry {}", i));
    r.U16();
    r.U16();
    const uint16_t flags = r.U16();
    Member m;
    m.method = r.U16();
    r.U16();
    r.U16();
    m.crc32 = r.U32();
    m.compressed_size = r.U32();
    m.uncompressed_size = r.U32();
    const uint16_t name_len = r.U16(), extra_len = r.U16(), comment_len = r.U16();
    r.U16();
    r.U16();
    r.U32();
    m.local_header_offset = r.U32();
    const std::string name = r.Bytes(name_len);
    const std::string extra = r.Bytes(extra_len);
    r.Bytes(comment_len);
    if (!r.ok) return Corrupt(path, "central directory truncated");
    // zip64 extra field (id 1): 64-bit values for the 32-bit fields that hold 0xFFFFFFFF, in order.
    Reader x{extra};
    while (x.ok && x.pos + 4 <= extra.size()) {
      const uint16_t id = x.U16(), len = x.U16();
      const size_t next = x.pos + len;
      if (id == 1) {
        if (m.uncompressed_size == 0xFFFFFFFF) m.uncompressed_size = x.U64();
        if (m.compressed_size == 0xFFFFFFFF) m.compressed_size = x.U64();
        if (m.local_header_offset == 0xFFFFFFFF) m.local_header_offset = x.U64();
        if (!x.ok || x.pos > next) return Corrupt(path, fmt::format("member '{}': bad zip64 field", name));
      }
      x.pos = next;
    }
    if (flags & 1) return Unimplemented(fmt::format("{}: member '{}' is encrypted", path, name));
    if (m.method != 0 && m.method != 8) {
      return Unimplemented(fmt::format("{}: member '{}' uses compression method {} (stored and deflate are supported)",
                                       path, name, m.method));
    }
    if (m.local_header_offset > size || m.compressed_size > size) {
      return Corrupt(path, fmt::format("member '{}' lies outside the file", name));
    }
    if (name.size() < 4 || name.compare(name.size() - 4, 4, ".npy") != 0) continue;
    m.key = name.substr(0, name.size() - 4);
    if (npz.Contains(m.key)) return Corrupt(path, fmt::format("member '{}' appears twice", name));
    npz.keys_.push_back(m.key);
    npz.members_.push_back(std::move(m));
  }
  return npz;
}

StatusOr<Tensor> NpzFile::Read(const std::string& key) const {
  auto it = std::find_if(members_.begin(), members_.end(), [&](const Member& m) { return m.key == key; });
  if (it == members_.end()) return NotFound(fmt::format("{}: no array '{}'", path_, key));
  const Member& m = *it;
  const std::string what = fmt::format("{}: array '{}'", path_, key);
  std::string header;
  if (file_size_ - m.local_header_offset < 30) return Corrupt(path_, fmt::format("array '{}': truncated", key));
  QK_RETURN_IF_ERROR(ReadAt(path_, m.local_header_offset, 30, &header));
  Reader h{header};
  if (h.U32() != kLocalHeader) return Corrupt(path_, fmt::format("array '{}': bad local header", key));
  h.pos = 26;
  const uint64_t data_offset = m.local_header_offset + 30 + h.U16() + h.U16();
  if (data_offset > file_size_ || m.compressed_size > file_size_ - data_offset) {
    return Corrupt(path_, fmt::format("array '{}': data runs past the end of the file", key));
  }
  if (m.uncompressed_size > kMaxArrayBytes) {
    return InvalidArgument(fmt::format("{}: {} bytes uncompressed (limit {})", what, m.uncompressed_size, kMaxArrayBytes));
  }
  if (m.method == 0 && m.compressed_size != m.uncompressed_size) {
    return Corrupt(path_, fmt::format("array '{}': size mismatch", key));
  }
  if (m.method == 8 && m.uncompressed_size > m.compressed_size * kMaxDeflateRatio + 64) {
    return Corrupt(path_, fmt::format("array '{}': claims {} bytes from {} deflated bytes", key, m.uncompressed_size,
                                      m.compressed_size));
  }
  std::string stored;
  QK_RETURN_IF_ERROR(ReadAt(path_, data_offset, m.compressed_size, &stored));
  std::string bytes;
  if (m.method == 0) {
    bytes = std::move(stored);
  } else {
    bytes.resize(static_cast<size_t>(m.uncompressed_size));
    z_stream zs{};
    if (inflateInit2(&zs, -MAX_WBITS) != Z_OK) return Internal("zlib inflateInit2 failed");
    zs.next_in = reinterpret_cast<Bytef*>(stored.data());
    zs.next_out = reinterpret_cast<Bytef*>(bytes.data());
    uint64_t in_left = stored.size(), out_left = bytes.size();
    int rc = Z_OK;
    // zlib counts in uInt: feed at most 1 GiB at a time.
    constexpr uint64_t kChunk = uint64_t{1} << 30;
    while (rc == Z_OK) {
      if (zs.avail_in == 0 && in_left > 0) {
        zs.avail_in = static_cast<uInt>(std::min(in_left, kChunk));
        in_left -= zs.avail_in;
      }
      if (zs.avail_out == 0 && out_left > 0) {
        zs.avail_out = static_cast<uInt>(std::min(out_left, kChunk));
        out_left -= zs.avail_out;
      }
      rc = inflate(&zs, Z_NO_FLUSH);
      if (rc == Z_BUF_ERROR && (zs.avail_in > 0 || in_left > 0) && (zs.avail_out > 0 || out_left > 0)) rc = Z_OK;
    }
    const uint64_t produced = zs.total_out;
    inflateEnd(&zs);
    if (rc != Z_STREAM_END || produced != m.uncompressed_size) {
      return Corrupt(path_, fmt::format("array '{}': deflate data is corrupt or has the wrong size", key));
    }
  }
  uLong crc = crc32(0L, Z_NULL, 0);
  for (size_t done = 0; done < bytes.size();) {
    const size_t n = std::min<size_t>(bytes.size() - done, size_t{1} << 30);
    crc = crc32(crc, reinterpret_cast<const Bytef*>(bytes.data() + done), static_cast<uInt>(n));
    done += n;
  }
  if (static_cast<uint32_t>(crc) != m.crc32) return Corrupt(path_, fmt::format("array '{}': CRC-32 mismatch", key));
  return ParseNpy(bytes, what);
}

}  // namespace quantkit::quant
