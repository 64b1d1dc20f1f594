// Conversions between ONNX protobuf messages and quantkit's IR. Only src/onnx includes ONNX headers.
#pragma once

#include <onnx/onnx_pb.h>

#include <string>

#include "quantkit/ir.h"
#include "quantkit/model_io.h"
#include "quantkit/session.h"

namespace quantkit::onnx_io {

struct ImportContext {
  std::string base_dir;   // directory of the model file, for external data
  std::string file;       // model file (for messages)
  LoadOptions options;
  int depth = 0;          // subgraph nesting, bounded
};

StatusOr<Tensor> TensorFromProto(const onnx::TensorProto& proto, const ImportContext& ctx);
void TensorToProto(const Tensor& t, const std::string& name, onnx::TensorProto* proto);
StatusOr<Model> ModelFromProto(const onnx::ModelProto& proto, const ImportContext& ctx);
Status GraphFromProto(const onnx::GraphProto& proto, const ImportContext& ctx, Graph* graph);
void ModelToProto(const Model& model, onnx::ModelProto* proto);
ValueInfo ValueInfoFromProto(const onnx::ValueInfoProto& proto);
// Parses a protobuf message from bytes without protobuf's default 64 MiB limit.
bool ParseLarge(google::protobuf::MessageLite* msg, const std::string& bytes);

}  // namespace quantkit::onnx_io
