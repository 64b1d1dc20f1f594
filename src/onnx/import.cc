// ONNX -> IR. Accepts what real exporters produce: initializers or Constant nodes, external data,
// fp16 weights, unsorted nodes, unused opset domains, IR 3..10. Every error names the file and the
// tensor, node or attribute at fault. protobuf never throws here; nothing is trusted from the file
// (sizes are checked before allocating).
#include <fmt/format.h>
#include <google/protobuf/io/coded_stream.h>
#include <google/protobuf/io/zero_copy_stream_impl_lite.h>
#include <sys/stat.h>

#include <charconv>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "onnx/proto_convert.h"

namespace quantkit::onnx_io {

namespace fs = std::filesystem;

namespace {

constexpr int kMaxSubgraphDepth = 64;

StatusOr<std::string> ReadFile(const std::string& path, uint64_t offset, int64_t length, const std::string& what) {
  std::error_code ec;
  if (!fs::exists(path, ec)) return NotFound(fmt::format("{} '{}' not found", what, path));
  // A directory or device would "open" and report a nonsense size.
  if (!fs::is_regular_file(path, ec)) return InvalidArgument(fmt::format("{} '{}' is not a regular file", what, path));
  std::ifstream f(path, std::ios::binary);
  if (!f) return NotFound(fmt::format("cannot open {} '{}'", what, path));
  f.seekg(0, std::ios::end);
  const uint64_t size = static_cast<uint64_t>(f.tellg());
  if (offset > size || (length >= 0 && static_cast<uint64_t>(length) > size - offset)) {
    return InvalidArgument(fmt::format("{} '{}' has {} bytes; offset {} + length {} is past its end", what, path,
                                       size, offset, length));
  }
  const uint64_t n = length >= 0 ? static_cast<uint64_t>(length) : size - offset;
  std::string data(n, '\0');
  f.seekg(static_cast<std::streamoff>(offset));
  if (n && !f.read(data.data(), static_cast<std::streamsize>(n))) {
    return InvalidArgument(fmt::format("cannot read {} '{}'", what, path));
  }
  return data;
}

// A decimal external-data field ("offset", "length"): digits only, no sign, no trailing text.
template <typename Int>
bool ParseExternalNumber(const std::string& text, Int* value) {
  const char* end = text.data() + text.size();
  auto [ptr, ec] = std::from_chars(text.data(), end, *value);
  return !text.empty() && text[0] != '-' && ec == std::errc() && ptr == end;
}

// Resolves an external-data location inside base_dir; refuses paths that escape it.
StatusOr<std::string> ResolveExternal(const std::string& location, const ImportContext& ctx,
                                      const std::string& tensor) {
  if (location.empty()) return InvalidArgument(fmt::format("tensor '{}': external data without a location", tensor));
  fs::path loc(location);
  if (loc.is_absolute()) {
    return InvalidArgument(fmt::format("tensor '{}': external data location '{}' is an absolute path", tensor, location));
  }
  for (const auto& part : loc)
    if (part == "..") {
      return InvalidArgument(fmt::format("tensor '{}': external data location '{}' leaves the model's directory",
                                         tensor, location));
    }
  std::error_code ec;
  const fs::path base = fs::weakly_canonical(ctx.base_dir.empty() ? fs::path(".") : fs::path(ctx.base_dir), ec);
  const fs::path full = fs::weakly_canonical(base / loc, ec);
  if (ec) return NotFound(fmt::format("tensor '{}': external data file '{}' not found", tensor, location));
  auto rel = full.lexically_relative(base);
  if (rel.empty() || *rel.begin() == "..") {
    return InvalidArgument(fmt::format("tensor '{}': external data file '{}' resolves outside the model's directory",
                                       tensor, location));
  }
  return full.string();
}

template <typename Dst, typename Field>
void CopyField(const Field& field, Tensor& t) {
  Dst* out = t.data<Dst>();
  for (int i = 0; i < field.size(); ++i) out[i] = static_cast<Dst>(field.Get(i));
}

}  // namespace

bool ParseLarge(google::protobuf::MessageLite* msg, const std::string& bytes) {
  google::protobuf::io::ArrayInputStream raw(bytes.data(), static_cast<int>(std::min<size_t>(bytes.size(), INT32_MAX)));
  google::protobuf::io::CodedInputStream coded(&raw);
  coded.SetTotalBytesLimit(INT32_MAX);
  coded.SetRecursionLimit(256);
  return msg->ParseFromCodedStream(&coded) && coded.ConsumedEntireMessage();
}

StatusOr<Tensor> TensorFromProto(const onnx::TensorProto& p, const ImportContext& ctx) {
  const std::string name = p.name().empty() ? "<unnamed>" : p.name();
  if (p.has_segment()) return Unimplemented(fmt::format("tensor '{}': segmented tensors are not supported", name));
  if (!IsSupportedDType(p.data_type())) {
    return Unimplemented(fmt::format("tensor '{}': element type {} is not supported", name,
                                     DTypeName(static_cast<DType>(p.data_type()))));
  }
  const DType dtype = static_cast<DType>(p.data_type());
  Shape shape(p.dims().begin(), p.dims().end());
  QK_RETURN_IF_ERROR(CheckShape(shape, dtype, fmt::format("tensor '{}'", name), ctx.options.max_tensor_bytes));
  const int64_t n = NumElements(shape);
  const size_t bytes = static_cast<size_t>(n) * DTypeSize(dtype);

  std::string external;
  const std::string* raw = nullptr;
  if (p.data_location() == onnx::TensorProto::EXTERNAL) {
    std::string location;
    uint64_t offset = 0;
    int64_t length = -1;
    for (const auto& kv : p.external_data()) {
      bool ok = true;
      if (kv.key() == "location") location = kv.value();
      else if (kv.key() == "offset") ok = ParseExternalNumber(kv.value(), &offset);
      else if (kv.key() == "length") ok = ParseExternalNumber(kv.value(), &length);
      if (!ok) return InvalidArgument(fmt::format("tensor '{}': bad external data {} '{}'", name, kv.key(), kv.value()));
    }
    QK_ASSIGN_OR_RETURN(std::string path, ResolveExternal(location, ctx, name));
    if (length >= 0 && static_cast<uint64_t>(length) != bytes) {
      return InvalidArgument(fmt::format("tensor '{}': external data length {} does not match {} bytes for shape {} of {}",
                                         name, length, bytes, ShapeToString(shape), DTypeName(dtype)));
    }
    auto read = ReadFile(path, offset, static_cast<int64_t>(bytes), "external data file");
    if (!read.ok()) return read.status().WithContext(fmt::format("tensor '{}'", name));
    external = std::move(read).value();
    raw = &external;
  } else if (p.has_raw_data()) {
    raw = &p.raw_data();
  }

  // The data present must match the declared shape before anything is allocated: a file may
  // declare gigabytes and carry a few bytes.
  auto check_count = [&](int count, const char* field) -> Status {
    if (count != n) {
      return InvalidArgument(fmt::format("tensor '{}': {} has {} values, but shape {} needs {}", name, field, count,
                                         ShapeToString(shape), n));
    }
    return Status::Ok();
  };
  if (raw) {
    if (raw->size() != bytes) {
      return InvalidArgument(fmt::format("tensor '{}': raw_data has {} bytes, but shape {} of {} needs {}", name,
                                         raw->size(), ShapeToString(shape), DTypeName(dtype), bytes));
    }
  } else {
    switch (dtype) {
      case DType::kFloat32: QK_RETURN_IF_ERROR(check_count(p.float_data_size(), "float_data")); break;
      case DType::kFloat64: QK_RETURN_IF_ERROR(check_count(p.double_data_size(), "double_data")); break;
      case DType::kInt64: QK_RETURN_IF_ERROR(check_count(p.int64_data_size(), "int64_data")); break;
      case DType::kUInt32:
      case DType::kUInt64: QK_RETURN_IF_ERROR(check_count(p.uint64_data_size(), "uint64_data")); break;
      default: QK_RETURN_IF_ERROR(check_count(p.int32_data_size(), "int32_data")); break;
    }
  }

  QK_ASSIGN_OR_RETURN(Tensor t, Tensor::Create(dtype, shape, nullptr, fmt::format("tensor '{}'", name)));
  if (raw) {
    if (bytes) std::memcpy(t.raw_data(), raw->data(), bytes);  // ONNX raw data is little-endian, as is x86
    return t;
  }
  switch (dtype) {
    case DType::kFloat32:
      CopyField<float>(p.float_data(), t);
      break;
    case DType::kFloat64:
      CopyField<double>(p.double_data(), t);
      break;
    case DType::kInt64:
      CopyField<int64_t>(p.int64_data(), t);
      break;
    case DType::kUInt32:
    case DType::kUInt64:
      if (dtype == DType::kUInt32) CopyField<uint32_t>(p.uint64_data(), t);
      else CopyField<uint64_t>(p.uint64_data(), t);
      break;
    case DType::kInt32: CopyField<int32_t>(p.int32_data(), t); break;
    case DType::kInt16: CopyField<int16_t>(p.int32_data(), t); break;
    case DType::kUInt16:
    case DType::kFloat16:
    case DType::kBFloat16:
      CopyField<uint16_t>(p.int32_data(), t);
      break;
    case DType::kInt8: CopyField<int8_t>(p.int32_data(), t); break;
    case DType::kUInt8: CopyField<uint8_t>(p.int32_data(), t); break;
    case DType::kBool: {
      bool* out = t.data<bool>();
      for (int i = 0; i < p.int32_data_size(); ++i) out[i] = p.int32_data(i) != 0;
      break;
    }
    default:
      return Unimplemented(fmt::format("tensor '{}': element type {} is not supported", name, DTypeName(dtype)));
  }
  return t;
}

ValueInfo ValueInfoFromProto(const onnx::ValueInfoProto& p) {
  ValueInfo vi;
  vi.name = p.name();
  vi.doc_string = p.doc_string();
  const onnx::TypeProto* type = p.has_type() ? &p.type() : nullptr;
  if (type && type->has_sequence_type()) {
    vi.kind = ValueInfo::Kind::kSequence;
    type = &type->sequence_type().elem_type();
  } else if (type && !type->has_tensor_type()) {
    vi.kind = ValueInfo::Kind::kOther;
    return vi;
  }
  if (type && type->has_tensor_type()) {
    const auto& tt = type->tensor_type();
    vi.dtype = static_cast<DType>(tt.elem_type());
    if (tt.has_shape()) {
      vi.has_shape = true;
      for (const auto& d : tt.shape().dim()) {
        Dim dim;
        if (d.has_dim_value() && d.dim_value() >= 0) dim.value = d.dim_value();
        else if (d.has_dim_param()) dim.param = d.dim_param();
        vi.shape.push_back(dim);
      }
    }
  }
  return vi;
}

namespace {

Status AttributeFromProto(const onnx::AttributeProto& p, const ImportContext& ctx, const std::string& node,
                          Attribute* a) {
  a->name = p.name();
  a->doc_string = p.doc_string();
  a->ref_attr_name = p.ref_attr_name();
  using T = Attribute::Type;
  auto where = [&] { return fmt::format("attribute '{}' of {}", p.name(), node); };
  auto sub = [&](const onnx::GraphProto& g) -> StatusOr<DeepPtr<Graph>> {
    if (ctx.depth >= kMaxSubgraphDepth) {
      return InvalidArgument(fmt::format("{}: subgraphs nested deeper than {}", where(), kMaxSubgraphDepth));
    }
    ImportContext inner = ctx;
    inner.depth = ctx.depth + 1;
    auto graph = std::make_unique<Graph>();
    Status s = GraphFromProto(g, inner, graph.get());
    if (!s.ok()) return s.WithContext(where());
    return DeepPtr<Graph>(std::move(graph));
  };
  switch (p.type()) {
    case onnx::AttributeProto::FLOAT: a->type = T::kFloat; a->f = p.f(); break;
    case onnx::AttributeProto::INT: a->type = T::kInt; a->i = p.i(); break;
    case onnx::AttributeProto::STRING: a->type = T::kString; a->s = p.s(); break;
    case onnx::AttributeProto::TENSOR: {
      a->type = T::kTensor;
      auto t = TensorFromProto(p.t(), ctx);
      if (!t.ok()) return t.status().WithContext(where());
      a->t = std::move(t).value();
      break;
    }
    case onnx::AttributeProto::GRAPH: {
      a->type = T::kGraph;
      QK_ASSIGN_OR_RETURN(a->g, sub(p.g()));
      break;
    }
    case onnx::AttributeProto::FLOATS: a->type = T::kFloats; a->floats.assign(p.floats().begin(), p.floats().end()); break;
    case onnx::AttributeProto::INTS: a->type = T::kInts; a->ints.assign(p.ints().begin(), p.ints().end()); break;
    case onnx::AttributeProto::STRINGS: a->type = T::kStrings; a->strings.assign(p.strings().begin(), p.strings().end()); break;
    case onnx::AttributeProto::TENSORS:
      a->type = T::kTensors;
      for (const auto& tp : p.tensors()) {
        auto t = TensorFromProto(tp, ctx);
        if (!t.ok()) return t.status().WithContext(where());
        a->tensors.push_back(std::move(t).value());
      }
      break;
    case onnx::AttributeProto::GRAPHS:
      a->type = T::kGraphs;
      for (const auto& gp : p.graphs()) {
        QK_ASSIGN_OR_RETURN(DeepPtr<Graph> g, sub(gp));
        a->graphs.push_back(std::move(g));
      }
      break;
    case onnx::AttributeProto::SPARSE_TENSOR: a->type = T::kSparseTensor; break;
    case onnx::AttributeProto::TYPE_PROTO: a->type = T::kTypeProto; break;
    default:
      // IR < 4 files may omit the type: infer it from the field that is set.
      if (p.has_f()) { a->type = T::kFloat; a->f = p.f(); }
      else if (p.has_i()) { a->type = T::kInt; a->i = p.i(); }
      else if (p.has_s()) { a->type = T::kString; a->s = p.s(); }
      else if (p.has_t()) {
        a->type = T::kTensor;
        auto t = TensorFromProto(p.t(), ctx);
        if (!t.ok()) return t.status().WithContext(where());
        a->t = std::move(t).value();
      } else if (p.has_g()) {
        a->type = T::kGraph;
        QK_ASSIGN_OR_RETURN(a->g, sub(p.g()));
      } else if (p.floats_size()) { a->type = T::kFloats; a->floats.assign(p.floats().begin(), p.floats().end()); }
      else if (p.ints_size()) { a->type = T::kInts; a->ints.assign(p.ints().begin(), p.ints().end()); }
      else if (p.strings_size()) { a->type = T::kStrings; a->strings.assign(p.strings().begin(), p.strings().end()); }
      else return InvalidArgument(fmt::format("{} has no type and no value", where()));
  }
  return Status::Ok();
}

}  // namespace

Status GraphFromProto(const onnx::GraphProto& p, const ImportContext& ctx, Graph* g) {
  g->name = p.name();
  g->doc_string = p.doc_string();
  if (p.sparse_initializer_size() > 0) {
    return Unimplemented(fmt::format("graph '{}': sparse initializers are not supported", p.name()));
  }
  for (const auto& tp : p.initializer()) {
    if (tp.name().empty()) return InvalidArgument(fmt::format("graph '{}': an initializer has no name", p.name()));
    if (g->IsInitializer(tp.name())) {
      return InvalidArgument(fmt::format("graph '{}': initializer '{}' is defined twice", p.name(), tp.name()));
    }
    QK_ASSIGN_OR_RETURN(Tensor t, TensorFromProto(tp, ctx));
    g->AddInitializer(tp.name(), std::move(t));
  }
  for (const auto& vi : p.input()) g->inputs.push_back(ValueInfoFromProto(vi));
  for (const auto& vi : p.output()) g->outputs.push_back(ValueInfoFromProto(vi));
  for (const auto& vi : p.value_info()) g->value_info.push_back(ValueInfoFromProto(vi));
  g->nodes.reserve(p.node_size());
  for (int k = 0; k < p.node_size(); ++k) {
    const auto& np = p.node(k);
    Node n;
    n.name = np.name();
    n.op_type = np.op_type();
    n.domain = np.domain();
    n.doc_string = np.doc_string();
    n.inputs.assign(np.input().begin(), np.input().end());
    n.outputs.assign(np.output().begin(), np.output().end());
    if (n.op_type.empty()) return InvalidArgument(fmt::format("graph '{}': node #{} has no op_type", p.name(), k));
    const std::string desc = n.name.empty() ? fmt::format("{} node #{}", n.op_type, k)
                                            : fmt::format("{} node '{}'", n.op_type, n.name);
    for (const auto& ap : np.attribute()) {
      Attribute a;
      QK_RETURN_IF_ERROR(AttributeFromProto(ap, ctx, desc, &a));
      n.attributes.push_back(std::move(a));
    }
    g->nodes.push_back(std::move(n));
  }
  return Status::Ok();
}

StatusOr<Model> ModelFromProto(const onnx::ModelProto& p, const ImportContext& ctx) {
  Model m;
  m.ir_version = p.ir_version();
  if (!p.has_ir_version()) return InvalidArgument("not an ONNX model (no ir_version field)");
  if (m.ir_version < 3 || m.ir_version > 10) {
    return Unimplemented(fmt::format("IR version {} is not supported (3 to 10 are)", m.ir_version));
  }
  for (const auto& o : p.opset_import()) m.opsets.push_back({o.domain(), o.version()});
  if (m.OpsetVersion("") == 0 && p.opset_import_size() == 0) m.opsets.push_back({"", 1});
  const int64_t onnx_opset = m.OpsetVersion("");
  if (onnx_opset > 21) {
    return Unimplemented(fmt::format("default-domain opset {} is newer than supported (up to 21)", onnx_opset));
  }
  m.producer_name = p.producer_name();
  m.producer_version = p.producer_version();
  m.domain = p.domain();
  m.model_version = p.model_version();
  m.doc_string = p.doc_string();
  for (const auto& kv : p.metadata_props()) m.metadata_props.emplace_back(kv.key(), kv.value());
  m.local_function_count = p.functions_size();
  m.path = ctx.file;
  if (!p.has_graph()) return InvalidArgument("the model has no graph");
  QK_RETURN_IF_ERROR(GraphFromProto(p.graph(), ctx, &m.graph));
  return m;
}

}  // namespace quantkit::onnx_io

namespace quantkit {

namespace {

// Parses the protobuf; callers add the file name to errors.
Status ParseModelProto(const std::string& bytes, onnx::ModelProto* proto) {
  if (bytes.empty()) return InvalidArgument("not a valid ONNX model (the file is empty)");
  if (!onnx_io::ParseLarge(proto, bytes)) {
    return InvalidArgument(
        "not a valid ONNX model (protobuf parse failed: truncated or corrupt file, or messages nested too deeply)");
  }
  return Status::Ok();
}

}  // namespace

StatusOr<Model> LoadModelFromBytes(const std::string& bytes, const std::string& base_dir, const LoadOptions& options) {
  onnx::ModelProto proto;
  QK_RETURN_IF_ERROR(ParseModelProto(bytes, &proto));
  onnx_io::ImportContext ctx;
  ctx.base_dir = base_dir;
  ctx.options = options;
  return onnx_io::ModelFromProto(proto, ctx);
}

StatusOr<Model> LoadModel(const std::string& path, const LoadOptions& options) {
  std::error_code ec;
  if (!std::filesystem::is_regular_file(path, ec)) return NotFound(fmt::format("{}: no such model file", path));
  auto bytes = onnx_io::ReadFile(path, 0, -1, "model file");
  if (!bytes.ok()) return bytes.status();
  const std::string dir = std::filesystem::path(path).parent_path().string();
  onnx::ModelProto proto;
  Status parsed = ParseModelProto(*bytes, &proto);
  if (!parsed.ok()) return parsed.WithContext(path);
  onnx_io::ImportContext ctx;
  ctx.base_dir = dir;
  ctx.file = path;
  ctx.options = options;
  auto model = onnx_io::ModelFromProto(proto, ctx);
  if (!model.ok()) return model.status().WithContext(path);
  return model;
}

}  // namespace quantkit
