// Fuzz target: bytes -> ONNX importer (LoadModelFromBytes), then what every command does next with
// a model that imported: the structure check (sort + verify) and export.
#include <cstddef>
#include <cstdint>
#include <string>

#include "passes/passes.h"
#include "quantkit/model_io.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string bytes(reinterpret_cast<const char*>(data), size);
  quantkit::LoadOptions options;
  options.max_tensor_bytes = uint64_t{64} << 20;  // keeps libFuzzer's RSS limit meaningful
  // External data must resolve inside a directory that does not exist: never read real files.
  auto model = quantkit::LoadModelFromBytes(bytes, "/nonexistent/quantkit-fuzz", options);
  if (!model.ok()) return 0;
  quantkit::Graph sorted = model->graph;
  if (quantkit::passes::TopologicalSort(sorted).ok()) (void)quantkit::VerifyGraph(sorted);
  (void)quantkit::SerializeModel(*model);
  return 0;
}
