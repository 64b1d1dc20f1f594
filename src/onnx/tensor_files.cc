// TensorProto / SequenceProto files (.pb), the format of ONNX's test data sets.
#include <fmt/format.h>
#include <onnx/onnx-data_pb.h>

#include <filesystem>
#include <fstream>
#include <sstream>

#include "onnx/proto_convert.h"

namespace quantkit {

namespace {
StatusOr<std::string> Slurp(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  if (!f) return NotFound(fmt::format("cannot open '{}'", path));
  std::ostringstream ss;
  ss << f.rdbuf();
  return ss.str();
}
}  // namespace

StatusOr<Tensor> LoadTensorProto(const std::string& path) {
  QK_ASSIGN_OR_RETURN(std::string bytes, Slurp(path));
  onnx::TensorProto proto;
  if (!onnx_io::ParseLarge(&proto, bytes)) return InvalidArgument(fmt::format("{}: not a valid TensorProto", path));
  onnx_io::ImportContext ctx;
  ctx.base_dir = std::filesystem::path(path).parent_path().string();
  auto t = onnx_io::TensorFromProto(proto, ctx);
  if (!t.ok()) return t.status().WithContext(path);
  return t;
}

StatusOr<Value> LoadValueProto(const std::string& path, ValueInfo::Kind kind) {
  if (kind == ValueInfo::Kind::kOther) {
    return Unimplemented(fmt::format("{}: only tensor and sequence values are supported (optional/map types are not)", path));
  }
  if (kind != ValueInfo::Kind::kSequence) {
    QK_ASSIGN_OR_RETURN(Tensor t, LoadTensorProto(path));
    return Value::FromTensor(std::move(t));
  }
  QK_ASSIGN_OR_RETURN(std::string bytes, Slurp(path));
  onnx::SequenceProto proto;
  if (!onnx_io::ParseLarge(&proto, bytes)) return InvalidArgument(fmt::format("{}: not a valid SequenceProto", path));
  if (proto.elem_type() != onnx::SequenceProto::TENSOR && proto.tensor_values_size() == 0 &&
      proto.elem_type() != onnx::SequenceProto::UNDEFINED) {
    return Unimplemented(fmt::format("{}: only sequences of tensors are supported", path));
  }
  std::vector<Tensor> seq;
  onnx_io::ImportContext ctx;
  for (const auto& tp : proto.tensor_values()) {
    auto t = onnx_io::TensorFromProto(tp, ctx);
    if (!t.ok()) return t.status().WithContext(path);
    seq.push_back(std::move(t).value());
  }
  return Value::FromSequence(std::move(seq));
}

Status SaveTensorProto(const Tensor& t, const std::string& name, const std::string& path) {
  onnx::TensorProto proto;
  onnx_io::TensorToProto(t, name, &proto);
  std::string bytes;
  if (!proto.SerializeToString(&bytes)) return Internal("protobuf serialisation failed");
  const std::string tmp = path + ".tmp";
  {
    std::ofstream f(tmp, std::ios::binary | std::ios::trunc);
    if (!f) return InvalidArgument(fmt::format("cannot write '{}'", path));
    f.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
    if (!f) return InvalidArgument(fmt::format("writing '{}' failed", path));
  }
  std::error_code ec;
  std::filesystem::rename(tmp, path, ec);
  if (ec) return InvalidArgument(fmt::format("cannot rename to '{}': {}", path, ec.message()));
  return Status::Ok();
}

}  // namespace quantkit
