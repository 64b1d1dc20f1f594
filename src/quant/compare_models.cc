// Reference vs candidate model over a sample directory: the loop behind `quantkit compare`.
#include "quant/compare_models.h"

#include <fmt/format.h>

#include <cmath>
#include <memory>
#include <nlohmann/json.hpp>

#include "quant/dataset.h"
#include "quantkit/model_io.h"
#include "quantkit/session.h"

namespace quantkit::quant {

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

StatusOr<ModelComparison> CompareModels(const std::string& reference_path, const std::string& candidate_path,
                                        const std::string& data_dir, const CompareOptions& options) {
  QK_ASSIGN_OR_RETURN(std::unique_ptr<Session> ref, OpenSession(reference_path, options.threads));
  QK_ASSIGN_OR_RETURN(std::unique_ptr<Session> cand, OpenSession(candidate_path, options.threads));
  const auto& ref_out = ref->outputs();
  if (ref_out.size() != cand->outputs().size()) {
    return InvalidArgument(fmt::format("the models have {} and {} outputs", ref_out.size(), cand->outputs().size()));
  }
  QK_ASSIGN_OR_RETURN(SampleDirectory data, SampleDirectory::Open(data_dir, ref->inputs()));
  ModelComparison result;
  result.outputs.resize(ref_out.size());
  for (const auto& o : ref_out) result.output_names.push_back(o.name);
  result.samples = data.size();
  if (options.max_samples && options.max_samples < result.samples) result.samples = options.max_samples;
  for (size_t i = 0; i < result.samples; ++i) {
    QK_ASSIGN_OR_RETURN(Sample sample, data.Read(i));
    std::vector<Tensor> r, c;
    Status s = ref->Run(sample, &r);
    if (!s.ok()) return s.WithContext(reference_path);
    s = cand->Run(sample, &c);
    if (!s.ok()) return s.WithContext(candidate_path);
    for (size_t k = 0; k < r.size(); ++k) {
      Status st = result.outputs[k].Add(r[k], c[k]);
      if (!st.ok()) return st.WithContext(fmt::format("output '{}' of {}", ref_out[k].name, data.SampleName(i)));
    }
  }
  return result;
}

std::string FormatComparisonTable(const ModelComparison& c) {
  std::string out = fmt::format("{} samples\n{:<28} {:>10} {:>10} {:>14} {:>10}\n", c.samples, "output", "SQNR dB",
                                "cosine", "max abs err", "top-1");
  for (size_t k = 0; k < c.outputs.size(); ++k) {
    const OutputComparison& o = c.outputs[k];
    const std::string top1 = o.has_top1() ? fmt::format("{:.2f}%", 100.0 * o.top1_agreement()) : "-";
    out += fmt::format("{:<28} {:>10} {:>10.6f} {:>14.6g} {:>10}\n", c.output_names[k], Db(o.sqnr_db()), o.cosine(),
                       o.max_abs_error(), top1);
  }
  return out;
}

std::string FormatComparisonJson(const ModelComparison& c) {
  nlohmann::json j;
  j["samples"] = c.samples;
  j["outputs"] = nlohmann::json::array();
  for (size_t k = 0; k < c.outputs.size(); ++k) {
    const OutputComparison& o = c.outputs[k];
    nlohmann::json e;
    e["output"] = c.output_names[k];
    e["sqnr_db"] = std::isinf(o.sqnr_db()) ? (o.sqnr_db() > 0 ? 999.0 : -999.0) : o.sqnr_db();
    e["cosine"] = o.cosine();
    e["max_abs_error"] = o.max_abs_error();
    if (o.has_top1()) e["top1_agreement"] = o.top1_agreement();
    j["outputs"].push_back(e);
  }
  return j.dump(2);
}

}  // namespace quantkit::quant
