// `quantkit compare REFERENCE.onnx CANDIDATE.onnx --data DIR`: runs both models on the same
// samples and prints, per output, SQNR, cosine similarity, max abs error and top-1 agreement.
#include <fmt/format.h>

#include <cmath>
#include <nlohmann/json.hpp>

#include "cli/cli_common.h"
#include "quant/dataset.h"
#include "quant/metrics.h"
#include "quantkit/model_io.h"
#include "quantkit/session.h"

namespace quantkit::cli {

namespace {

StatusOr<std::unique_ptr<Session>> OpenSession(const std::string& path, int threads) {
  auto model = LoadModel(path);
  if (!model.ok()) return model.status();
  SessionOptions opts;
  opts.threads = threads;
  auto s = Session::Create(std::move(model).value(), opts);
  if (!s.ok()) return s.status().WithContext(path);
  return s;
}

std::string Db(double v) {
  if (std::isinf(v)) return v > 0 ? "inf" : "-inf";
  return fmt::format("{:.2f}", v);
}

}  // namespace

Command AddCompareCommand(CLI::App& app) {
  auto* cmd = app.add_subcommand("compare", "Compare a candidate model's outputs with a reference model's on the same data");
  struct Args {
    std::string reference, candidate, data;
    int threads = 0;
    bool json = false;
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
  return {cmd, [a]() -> int {
            auto ref = OpenSession(a->reference, a->threads);
            if (!ref.ok()) return ReportError(ref.status());
            auto cand = OpenSession(a->candidate, a->threads);
            if (!cand.ok()) return ReportError(cand.status());
            const auto& ref_out = (*ref)->outputs();
            const auto& cand_out = (*cand)->outputs();
            if (ref_out.size() != cand_out.size()) {
              return ReportError(InvalidArgument(fmt::format("the models have {} and {} outputs", ref_out.size(), cand_out.size())));
            }
            auto data = quant::SampleDirectory::Open(a->data, (*ref)->inputs());
            if (!data.ok()) return ReportError(data.status());
            std::vector<quant::OutputComparison> cmp(ref_out.size());
            size_t n = data->size();
            if (a->max_samples && a->max_samples < n) n = a->max_samples;
            for (size_t i = 0; i < n; ++i) {
              auto sample = data->Read(i);
              if (!sample.ok()) return ReportError(sample.status());
              std::vector<Tensor> r, c;
              Status s = (*ref)->Run(*sample, &r);
              if (!s.ok()) return ReportError(s.WithContext(a->reference));
              s = (*cand)->Run(*sample, &c);
              if (!s.ok()) return ReportError(s.WithContext(a->candidate));
              for (size_t k = 0; k < r.size(); ++k) {
                Status st = cmp[k].Add(r[k], c[k]);
                if (!st.ok()) return ReportError(st.WithContext(fmt::format("output '{}' of {}", ref_out[k].name, data->SampleName(i))));
              }
            }
            if (a->json) {
              nlohmann::json j;
              j["samples"] = n;
              for (size_t k = 0; k < cmp.size(); ++k) {
                nlohmann::json o;
                o["output"] = ref_out[k].name;
                o["sqnr_db"] = std::isinf(cmp[k].sqnr_db()) ? (cmp[k].sqnr_db() > 0 ? 999.0 : -999.0) : cmp[k].sqnr_db();
                o["cosine"] = cmp[k].cosine();
                o["max_abs_error"] = cmp[k].max_abs_error();
                if (cmp[k].has_top1()) o["top1_agreement"] = cmp[k].top1_agreement();
                j["outputs"].push_back(o);
              }
              std::printf("%s\n", j.dump(2).c_str());
              return 0;
            }
            std::printf("%zu samples\n%-28s %10s %10s %14s %10s\n", n, "output", "SQNR dB", "cosine", "max abs err", "top-1");
            for (size_t k = 0; k < cmp.size(); ++k) {
              std::string top1 = cmp[k].has_top1() ? fmt::format("{:.2f}%", 100.0 * cmp[k].top1_agreement()) : "-";
              std::printf("%-28s %10s %10.6f %14.6g %10s\n", ref_out[k].name.c_str(), Db(cmp[k].sqnr_db()).c_str(),
                          cmp[k].cosine(), cmp[k].max_abs_error(), top1.c_str());
            }
            return 0;
          }};
}

}  // namespace quantkit::cli
