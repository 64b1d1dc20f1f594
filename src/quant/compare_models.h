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
};

struct ModelComparison {
  size_t samples = 0;
  std::vector<std::string> output_names;    // the reference's outputs, in order
  std::vector<OutputComparison> outputs;    // one per output
};

// Errors name the model file, the sample and the output.
StatusOr<ModelComparison> CompareModels(const std::string& reference_path, const std::string& candidate_path,
                                        const std::string& data_dir, const CompareOptions& options = {});

// The report as a text table (one line per output) or as JSON (infinite SQNR written as 999).
std::string FormatComparisonTable(const ModelComparison& comparison);
std::string FormatComparisonJson(const ModelComparison& comparison);

}  // namespace quantkit::quant
