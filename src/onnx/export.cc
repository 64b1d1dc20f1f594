// IR -> ONNX, atomic file writes, ONNX checker and ONNX shape inference.
#include <fmt/format.h>
#include <google/protobuf/io/coded_stream.h>
#include <google/protobuf/io/zero_copy_stream_impl_lite.h>
#include <onnx/checker.h>
#include <onnx/shape_inference/implementation.h>
#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <random>

#include "core/file_util.h"
#include "onnx/proto_convert.h"

namespace quantkit::onnx_io {

namespace fs = std::filesystem;

void TensorToProto(const Tensor& t, const std::string& name, onnx::TensorProto* p) {
  p->set_name(name);
  p->set_data_type(static_cast<int32_t>(t.dtype()));
  for (int64_t d : t.shape()) p->add_dims(d);
  p->set_raw_data(t.raw_data(), t.nbytes());
}

namespace {

void ValueInfoToProto(const ValueInfo& vi, onnx::ValueInfoProto* p) {
  p->set_name(vi.name);
  if (!vi.doc_string.empty()) p->set_doc_string(vi.doc_string);
  if (vi.kind == ValueInfo::Kind::kOther) return;
  if (vi.dtype == DType::kUndefined && !vi.has_shape && vi.kind == ValueInfo::Kind::kTensor) return;
  onnx::TypeProto* type = p->mutable_type();
  if (vi.kind == ValueInfo::Kind::kSequence) type = type->mutable_sequence_type()->mutable_elem_type();
  auto* tt = type->mutable_tensor_type();
  tt->set_elem_type(static_cast<int32_t>(vi.dtype));
  if (vi.has_shape) {
    auto* shape = tt->mutable_shape();
    for (const Dim& d : vi.shape) {
      auto* dp = shape->add_dim();
      if (d.known()) dp->set_dim_value(d.value);
      else if (!d.param.empty()) dp->set_dim_param(d.param);
    }
  }
}

void GraphToProto(const Graph& g, onnx::GraphProto* p);

void AttributeToProto(const Attribute& a, onnx::AttributeProto* p) {
  p->set_name(a.name);
  if (!a.doc_string.empty()) p->set_doc_string(a.doc_string);
  if (!a.ref_attr_name.empty()) p->set_ref_attr_name(a.ref_attr_name);
  using T = Attribute::Type;
  switch (a.type) {
    case T::kFloat: p->set_type(onnx::AttributeProto::FLOAT); p->set_f(a.f); break;
    case T::kInt: p->set_type(onnx::AttributeProto::INT); p->set_i(a.i); break;
    case T::kString: p->set_type(onnx::AttributeProto::STRING); p->set_s(a.s); break;
    case T::kTensor: p->set_type(onnx::AttributeProto::TENSOR); TensorToProto(a.t, "", p->mutable_t()); break;
    case T::kGraph: p->set_type(onnx::AttributeProto::GRAPH); GraphToProto(*a.g, p->mutable_g()); break;
    case T::kFloats: p->set_type(onnx::AttributeProto::FLOATS); for (float f : a.floats) p->add_floats(f); break;
    case T::kInts: p->set_type(onnx::AttributeProto::INTS); for (int64_t i : a.ints) p->add_ints(i); break;
    case T::kStrings: p->set_type(onnx::AttributeProto::STRINGS); for (const auto& s : a.strings) p->add_strings(s); break;
    case T::kTensors:
      p->set_type(onnx::AttributeProto::TENSORS);
      for (const auto& t : a.tensors) TensorToProto(t, "", p->add_tensors());
      break;
    case T::kGraphs:
      p->set_type(onnx::AttributeProto::GRAPHS);
      for (const auto& g : a.graphs) GraphToProto(*g, p->add_graphs());
      break;
    default: break;
  }
}

void GraphToProto(const Graph& g, onnx::GraphProto* p) {
  p->set_name(g.name);
  if (!g.doc_string.empty()) p->set_doc_string(g.doc_string);
  for (const auto& name : g.initializer_order) TensorToProto(g.initializers.at(name), name, p->add_initializer());
  for (const auto& vi : g.inputs) ValueInfoToProto(vi, p->add_input());
  for (const auto& vi : g.outputs) ValueInfoToProto(vi, p->add_output());
  for (const auto& vi : g.value_info) ValueInfoToProto(vi, p->add_value_info());
  for (const auto& n : g.nodes) {
    auto* np = p->add_node();
    np->set_name(n.name);
    np->set_op_type(n.op_type);
    if (!n.domain.empty()) np->set_domain(n.domain);
    if (!n.doc_string.empty()) np->set_doc_string(n.doc_string);
    for (const auto& i : n.inputs) np->add_input(i);
    for (const auto& o : n.outputs) np->add_output(o);
    for (const auto& a : n.attributes) AttributeToProto(a, np->add_attribute());
  }
}

}  // namespace

void ModelToProto(const Model& m, onnx::ModelProto* p) {
  p->set_ir_version(m.ir_version);
  for (const auto& o : m.opsets) {
    auto* op = p->add_opset_import();
    op->set_domain(o.domain);
    op->set_version(o.version);
  }
  if (!m.producer_name.empty()) p->set_producer_name(m.producer_name);
  if (!m.producer_version.empty()) p->set_producer_version(m.producer_version);
  if (!m.domain.empty()) p->set_domain(m.domain);
  if (m.model_version) p->set_model_version(m.model_version);
  if (!m.doc_string.empty()) p->set_doc_string(m.doc_string);
  for (const auto& [k, v] : m.metadata_props) {
    auto* kv = p->add_metadata_props();
    kv->set_key(k);
    kv->set_value(v);
  }
  GraphToProto(m.graph, p->mutable_graph());
}

}  // namespace quantkit::onnx_io

namespace quantkit {

StatusOr<std::string> SerializeModel(const Model& model) {
  onnx::ModelProto proto;
  onnx_io::ModelToProto(model, &proto);
  if (proto.ByteSizeLong() > static_cast<size_t>(INT32_MAX)) {
    return Unimplemented("the model is over 2 GiB; save it with external data");
  }
  std::string bytes;
  // Deterministic: same model, same bytes (map fields are written in a fixed order).
  {
    google::protobuf::io::StringOutputStream out(&bytes);
    google::protobuf::io::CodedOutputStream coded(&out);
    coded.SetSerializationDeterministic(true);
    if (!proto.SerializeToCodedStream(&coded)) return Internal("protobuf serialisation failed");
  }
  return bytes;
}

Status SaveModel(const Model& model, const std::string& path, const SaveOptions& options) {
  std::error_code ec;
  if (!model.path.empty() && std::filesystem::equivalent(model.path, path, ec)) {
    return InvalidArgument(fmt::format("refusing to overwrite the input model '{}'", path));
  }
  if (options.external_data_threshold == 0) {
    QK_ASSIGN_OR_RETURN(std::string bytes, SerializeModel(model));
    return WriteFileAtomically(path, bytes);
  }
  // External data: large initializers go to "<name>.data" beside the model.
  onnx::ModelProto proto;
  onnx_io::ModelToProto(model, &proto);
  const std::string data_name = std::filesystem::path(path).filename().string() + ".data";
  std::string data;
  for (auto& t : *proto.mutable_graph()->mutable_initializer()) {
    if (t.raw_data().size() < options.external_data_threshold) continue;
    while (data.size() % 64) data.push_back('\0');  // aligned offsets allow mmap later
    const size_t offset = data.size();
    data += t.raw_data();
    t.clear_raw_data();
    t.set_data_location(onnx::TensorProto::EXTERNAL);
    auto add = [&](const char* k, const std::string& v) {
      auto* kv = t.add_external_data();
      kv->set_key(k);
      kv->set_value(v);
    };
    add("location", data_name);
    add("offset", std::to_string(offset));
    add("length", std::to_string(data.size() - offset));
  }
  std::string bytes;
  {
    google::protobuf::io::StringOutputStream out(&bytes);
    google::protobuf::io::CodedOutputStream coded(&out);
    coded.SetSerializationDeterministic(true);
    if (!proto.SerializeToCodedStream(&coded)) return Internal("protobuf serialisation failed");
  }
  const std::string data_path = (std::filesystem::path(path).parent_path() / data_name).string();
  QK_RETURN_IF_ERROR(WriteFileAtomically(data_path, data));
  return WriteFileAtomically(path, bytes);
}

Status CheckModel(const Model& model) {
  onnx::ModelProto proto;
  onnx_io::ModelToProto(model, &proto);
  try {
    onnx::checker::check_model(proto);
  } catch (const std::exception& e) {
    return InvalidArgument(fmt::format("ONNX checker: {}", e.what()));
  }
  return Status::Ok();
}

namespace {
void ImportValueInfos(const onnx::GraphProto& gp, Graph& g) {
  for (const auto& vi : gp.value_info()) {
    ValueInfo v = onnx_io::ValueInfoFromProto(vi);
    if (ValueInfo* existing = g.FindValueInfo(v.name)) {
      if (!existing->has_shape || existing->dtype == DType::kUndefined) *existing = v;
    } else {
      g.value_info.push_back(v);
    }
  }
  for (int i = 0; i < gp.output_size() && i < static_cast<int>(g.outputs.size()); ++i) {
    ValueInfo v = onnx_io::ValueInfoFromProto(gp.output(i));
    if (!g.outputs[i].has_shape && v.has_shape) g.outputs[i].shape = v.shape, g.outputs[i].has_shape = true;
    if (g.outputs[i].dtype == DType::kUndefined) g.outputs[i].dtype = v.dtype;
  }
  // Subgraphs: same node order both sides (ModelToProto preserves it).
  for (int k = 0; k < gp.node_size() && k < static_cast<int>(g.nodes.size()); ++k) {
    const auto& np = gp.node(k);
    auto& n = g.nodes[k];
    for (int a = 0; a < np.attribute_size() && a < static_cast<int>(n.attributes.size()); ++a) {
      if (np.attribute(a).has_g() && n.attributes[a].g) ImportValueInfos(np.attribute(a).g(), *n.attributes[a].g);
    }
  }
}
}  // namespace

Status InferShapesOnnx(Model& model) {
  onnx::ModelProto proto;
  onnx_io::ModelToProto(model, &proto);
  // Initializers are irrelevant to shape inference except as shapes: drop their payloads for speed
  // (ONNX needs the data of small int64 initializers such as Reshape targets, keep those).
  for (auto& t : *proto.mutable_graph()->mutable_initializer()) {
    if (t.raw_data().size() > 4096) {
      // Keep dims and type; shape inference only reads data for shape-like inputs.
      t.clear_raw_data();
      t.set_data_location(onnx::TensorProto::EXTERNAL);
      auto* kv = t.add_external_data();
      kv->set_key("location");
      kv->set_value("__dropped__");
    }
  }
  try {
    onnx::ShapeInferenceOptions opts(false, 0, true);
    onnx::shape_inference::InferShapes(proto, onnx::OpSchemaRegistry::Instance(), opts);
  } catch (const std::exception& e) {
    return InvalidArgument(fmt::format("ONNX shape inference: {}", e.what()));
  }
  ImportValueInfos(proto.graph(), model.graph);
  return Status::Ok();
}

}  // namespace quantkit
