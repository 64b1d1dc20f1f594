// Runs a reference and a candidate model on the same samples and compares their outputs
// (`quantkit compare`, and `quantkit quantize --check`).
#pragma once

#include <string>
#include <vector>

#include "quant/metrics.h"
#include "quantkit/status.h"

namespace quantkit::quant {

struct CompareOptions {
  int threads = 0;         // 0 = all cores
  size_t max_samples = 0;  // 0 = all
  // Also compare every float intermediate tensor the two models share by name (where does the
  // error come from?). The candidate then runs without graph optimizations, so a QDQ model keeps
  // each quantized unit's float output tensor instead of fusing it away.
  bool per_tensor = false;
};

struct TensorComparison {
  std::string name;
  std::string producer;  // the reference node that writes it (op type and name)
  OutputComparison comparison;
};

struct ModelComparison {
  size_t samples = 0;
  std::vector<std::string> output_names;    // the reference's outputs, in order
  std::vector<OutputComparison> outputs;    // one per output
  std::vector<TensorComparison> tensors;    // with per_tensor: in the reference's execution order
};

// Errors name the model file, the sample and the output.
StatusOr<ModelComparison> CompareModels(const std::string& reference_path, const std::string& candidate_path,
                                        const std::string& data_dir, const CompareOptions& options = {});

// The report as a text table (one line per output) or as JSON (infinite SQNR written as 999).
std::string FormatComparisonTable(const ModelComparison& comparison);
std::string FormatComparisonJson(const ModelComparison& comparison);

}  // namespace quantkit::quant
