// `quantkit compare REFERENCE.onnx CANDIDATE.onnx --data DIR`: runs both models on the same
// samples and prints, per output, SQNR, cosine similarity, max abs error and top-1 agreement.
#include <fmt/format.h>

#include "cli/cli_common.h"
#include "quant/compare_models.h"

namespace quantkit::cli {

Command AddCompareCommand(CLI::App& app) {
  auto* cmd = app.add_subcommand("compare", "Compare a candidate model's outputs with a reference model's on the same data");
  struct Args {
    std::string reference, candidate, data;
    int threads = 0;
    bool json = false;
    bool per_tensor = false;
    size_t max_samples = 0;
  };
  auto a = std::make_shared<Args>();
  cmd->add_option("reference", a->reference, "Reference ONNX model (usually FP32)")->required();
  cmd->add_option("candidate", a->candidate, "Candidate ONNX model (usually quantized)")->required();
  cmd->add_option("--data", a->data, "Sample directory: <input>.npy files, sample sub-folders, or *.npy (one input)")
      ->required();
  cmd->add_option("--threads", a->threads, "Worker threads (default: all cores)");
  cmd->add_option("--max-samples", a->max_samples, "Use at most this many samples");
  cmd->add_flag("--json", a->json, "Print the report as JSON");
  AddMemoryLimitOption(cmd);
  cmd->add_flag("--per-tensor", a->per_tensor,
                "Also compare every float intermediate tensor both models compute (the candidate runs unfused), "
                "to find where the error comes from");
  return {cmd, [a]() -> int {
            quant::CompareOptions options;
            options.threads = a->threads;
            options.max_samples = a->max_samples;
            options.per_tensor = a->per_tensor;
            auto result = quant::CompareModels(a->reference, a->candidate, a->data, options);
            if (!result.ok()) return ReportError(result.status());
            const std::string report = a->json ? quant::FormatComparisonJson(*result) + "\n"
                                               : quant::FormatComparisonTable(*result);
            std::fputs(report.c_str(), stdout);
            return 0;
          }};
}

}  // namespace quantkit::cli
