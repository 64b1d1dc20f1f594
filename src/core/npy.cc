// .npy format (version 1.0/2.0/3.0): magic, header length, a Python dict literal with 'descr',
// 'fortran_order' and 'shape', then the raw little-endian data in C order.
#include "quantkit/npy.h"

#include <fmt/format.h>

#include <cctype>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>

namespace quantkit {

namespace {

struct DescrMap {
  const char* descr;
  DType dtype;
};
constexpr DescrMap kDescrs[] = {
    {"<f4", DType::kFloat32}, {"<f2", DType::kFloat16}, {"<f8", DType::kFloat64}, {"|i1", DType::kInt8},
    {"|u1", DType::kUInt8},   {"<i2", DType::kInt16},   {"<u2", DType::kUInt16},  {"<i4", DType::kInt32},
    {"<u4", DType::kUInt32},  {"<i8", DType::kInt64},   {"<u8", DType::kUInt64},  {"|b1", DType::kBool},
    {"<i1", DType::kInt8},    {"<u1", DType::kUInt8},   {"<b1", DType::kBool},
};

// Extracts the value text after 'key': in the header dict.
bool FindValue(const std::string& header, const std::string& key, std::string* value) {
  auto pos = header.find("'" + key + "'");
  if (pos == std::string::npos) return false;
  pos = header.find(':', pos);
  if (pos == std::string::npos) return false;
  ++pos;
  while (pos < header.size() && header[pos] == ' ') ++pos;
  if (pos >= header.size()) return false;
  size_t end;
  if (header[pos] == '\'') {
    end = header.find('\'', pos + 1);
    if (end == std::string::npos) return false;
    *value = header.substr(pos + 1, end - pos - 1);
  } else if (header[pos] == '(') {
    end = header.find(')', pos);
    if (end == std::string::npos) return false;
    *value = header.substr(pos + 1, end - pos - 1);
  } else {
    end = header.find_first_of(",}", pos);
    if (end == std::string::npos) return false;
    *value = header.substr(pos, end - pos);
    while (!value->empty() && value->back() == ' ') value->pop_back();
  }
  return true;
}

}  // namespace

StatusOr<Tensor> ParseNpy(const std::string& bytes, const std::string& what) {
  if (bytes.size() < 10 || std::memcmp(bytes.data(), "\x93NUMPY", 6) != 0) {
    return InvalidArgument(fmt::format("{}: not a .npy file (bad magic)", what));
  }
  const uint8_t major = static_cast<uint8_t>(bytes[6]);
  size_t header_len, header_start;
  if (major == 1) {
    header_len = static_cast<uint8_t>(bytes[8]) | static_cast<size_t>(static_cast<uint8_t>(bytes[9])) << 8;
    header_start = 10;
  } else if (major == 2 || major == 3) {
    if (bytes.size() < 12) return InvalidArgument(fmt::format("{}: truncated .npy header", what));
    header_len = 0;
    for (int i = 0; i < 4; ++i) header_len |= static_cast<size_t>(static_cast<uint8_t>(bytes[8 + i])) << (8 * i);
    header_start = 12;
  } else {
    return InvalidArgument(fmt::format("{}: unsupported .npy version {}", what, major));
  }
  if (header_len > bytes.size() - header_start) return InvalidArgument(fmt::format("{}: truncated .npy header", what));
  const std::string header = bytes.substr(header_start, header_len);
  std::string descr, fortran, shape_text;
  if (!FindValue(header, "descr", &descr) || !FindValue(header, "fortran_order", &fortran) ||
      !FindValue(header, "shape", &shape_text)) {
    return InvalidArgument(fmt::format("{}: malformed .npy header '{}'", what, header));
  }
  DType dtype = DType::kUndefined;
  for (const auto& d : kDescrs)
    if (descr == d.descr) dtype = d.dtype;
  if (dtype == DType::kUndefined) {
    return Unimplemented(fmt::format("{}: .npy dtype '{}' is not supported (float16/32/64, int8..64, uint8..64, bool are)",
                                     what, descr));
  }
  if (fortran != "False") return Unimplemented(fmt::format("{}: Fortran-ordered .npy arrays are not supported", what));
  Shape shape;
  std::stringstream ss(shape_text);
  std::string item;
  while (std::getline(ss, item, ',')) {
    size_t b = item.find_first_not_of(" L");
    if (b == std::string::npos) continue;
    size_t e = item.find_last_not_of(" L");
    item = item.substr(b, e - b + 1);
    if (item.empty() || item.size() > 18 || item.find_first_not_of("0123456789") != std::string::npos) {
      return InvalidArgument(fmt::format("{}: bad dimension '{}' in .npy shape ({})", what, item, shape_text));
    }
    shape.push_back(std::stoll(item));
  }
  QK_RETURN_IF_ERROR(CheckShape(shape, dtype, what));
  const size_t data_start = header_start + header_len;
  const size_t need = static_cast<size_t>(NumElements(shape)) * DTypeSize(dtype);
  if (bytes.size() - data_start != need) {
    return InvalidArgument(fmt::format("{}: .npy data has {} bytes, shape {} of {} needs {}", what,
                                       bytes.size() - data_start, ShapeToString(shape), DTypeName(dtype), need));
  }
  QK_ASSIGN_OR_RETURN(Tensor t, Tensor::CreateUninitialized(dtype, shape, nullptr, what));
  if (need) std::memcpy(t.raw_data(), bytes.data() + data_start, need);
  if (dtype == DType::kBool) {  // normalise to 0/1 so bool semantics hold
    auto* b = static_cast<uint8_t*>(t.raw_data());
    for (size_t i = 0; i < need; ++i) b[i] = b[i] != 0;
  }
  return t;
}

StatusOr<Tensor> ReadNpy(const std::string& path) {
  std::error_code ec;
  if (!std::filesystem::is_regular_file(path, ec)) return NotFound(fmt::format("{}: no such file", path));
  std::ifstream f(path, std::ios::binary);
  if (!f) return NotFound(fmt::format("{}: cannot open", path));
  std::ostringstream ss;
  ss << f.rdbuf();
  return ParseNpy(ss.str(), path);
}

std::string SerializeNpy(const Tensor& t) {
  const char* descr = "<f4";
  for (const auto& d : kDescrs)
    if (d.dtype == t.dtype()) {
      descr = d.descr;
      break;
    }
  std::string shape;
  for (size_t i = 0; i < t.rank(); ++i) shape += std::to_string(t.dim(i)) + (t.rank() == 1 || i + 1 < t.rank() ? "," : "");
  std::string header = fmt::format("{{'descr': '{}', 'fortran_order': False, 'shape': ({}), }}", descr, shape);
  // Pad so that the data starts on a 64-byte boundary; header ends with '\n'.
  const size_t total = 10 + header.size() + 1;
  header.append((64 - total % 64) % 64, ' ');
  header.push_back('\n');
  std::string out = "\x93NUMPY";
  out.push_back('\x01');
  out.push_back('\x00');
  out.push_back(static_cast<char>(header.size() & 0xff));
  out.push_back(static_cast<char>(header.size() >> 8));
  out += header;
  out.append(static_cast<const char*>(t.raw_data()), t.nbytes());
  return out;
}

Status WriteNpy(const Tensor& t, const std::string& path) {
  const std::string tmp = path + ".tmp";
  {
    std::ofstream f(tmp, std::ios::binary | std::ios::trunc);
    if (!f) return InvalidArgument(fmt::format("cannot write '{}'", path));
    const std::string bytes = SerializeNpy(t);
    f.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
    if (!f) {
      f.close();
      std::filesystem::remove(tmp);
      return InvalidArgument(fmt::format("writing '{}' failed", path));
    }
  }
  std::error_code ec;
  std::filesystem::rename(tmp, path, ec);
  if (ec) return InvalidArgument(fmt::format("cannot rename to '{}': {}", path, ec.message()));
  return Status::Ok();
}

std::string SafeFileName(const std::string& name) {
  std::string out = name.empty() ? "unnamed" : name;
  for (char& c : out)
    if (!(std::isalnum(static_cast<unsigned char>(c)) || c == '.' || c == '_' || c == '-')) c = '_';
  if (out == "." || out == "..") out = "_";
  return out;
}

}  // namespace quantkit
