// Loading and saving ONNX models (the only public entry to src/onnx).
#pragma once

#include <string>

#include "quantkit/ir.h"
#include "quantkit/session.h"
#include "quantkit/status.h"

namespace quantkit {

struct LoadOptions {
  uint64_t max_tensor_bytes = uint64_t{16} << 30;  // largest single initializer accepted
};

// Reads an ONNX file (and its external data files) into the IR. Errors name the file and tensor.
StatusOr<Model> LoadModel(const std::string& path, const LoadOptions& options = {});
StatusOr<Model> LoadModelFromBytes(const std::string& bytes, const std::string& base_dir = "",
                                   const LoadOptions& options = {});

struct SaveOptions {
  // Initializers of at least this many bytes go to "<file>.data" next to the model; 0 = never.
  // Models above 2 GiB always need it.
  uint64_t external_data_threshold = 0;
};

// Writes the model atomically (temp file + rename). Refuses to write over `protect_path` if set.
Status SaveModel(const Model& model, const std::string& path, const SaveOptions& options = {});
StatusOr<std::string> SerializeModel(const Model& model);

// ONNX's checker on the exported model (full check including shape inference).
Status CheckModel(const Model& model);
// ONNX's shape inference; fills graph.value_info (and output shapes) where it can.
Status InferShapesOnnx(Model& model);

// Reads one serialized TensorProto (.pb), as in ONNX's test data sets.
StatusOr<Tensor> LoadTensorProto(const std::string& path);
// Reads a .pb holding a TensorProto or, for sequence-typed values, a SequenceProto.
StatusOr<Value> LoadValueProto(const std::string& path, ValueInfo::Kind kind);
// Writes a tensor as a serialized TensorProto (atomically).
Status SaveTensorProto(const Tensor& t, const std::string& name, const std::string& path);

}  // namespace quantkit
