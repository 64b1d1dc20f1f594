// Reference vs candidate model over a sample directory: the loop behind `quantkit compare`.
#include "quant/compare_models.h"

#include <fmt/format.h>

#include <cmath>
#include <memory>
#include <unordered_map>
#include <nlohmann/json.hpp>

#include "quant/dataset.h"
#include "quantkit/model_io.h"
#include "quantkit/session.h"
#include "quantkit/static_quantize.h"

namespace quantkit::quant {

namespace {

// observed: the run's intermediate tensors are compared by name (no blocked layout).
StatusOr<std::unique_ptr<Session>> OpenSession(const std::string& path, int threads, bool optimize, bool observed,
                                               Model* copy = nullptr) {
  auto model = LoadModel(path);
  if (!model.ok()) return model.status();
  if (copy) *copy = *model;
  SessionOptions opts;
  opts.threads = threads;
  opts.optimize = optimize;
  opts.blocked_layout = !observed;
  auto s = Session::Create(std::move(model).value(), opts);
  if (!s.ok()) return s.status().WithContext(path);
  return s;
}

std::string Db(double v) {
  if (std::isinf(v)) return v > 0 ? "inf" : "-inf";
  return fmt::format("{:.2f}", v);
}

// Per-tensor comparison: the reference run keeps a copy of every float tensor it produces, the
// candidate run compares its tensors of the same name and shape against them.
class TensorMatcher {
 public:
  explicit TensorMatcher(std::vector<TensorComparison>* results) : results_(results) {}

  ValueObserver ReferenceObserver() {
    return [this](const Node& node, size_t k, const Value& v) {
      if (!v.is_tensor() || v.tensor.dtype() != DType::kFloat32 || node.outputs[k].empty()) return;
      const std::string& name = node.outputs[k];
      auto [it, inserted] = index_.try_emplace(name, results_->size());
      if (inserted) results_->push_back({name, fmt::format("{} '{}'", node.op_type, node.name), {}});
      reference_[name] = v.tensor.Clone();  // the session may reuse the buffer later in the run
      (void)it;
    };
  }

  ValueObserver CandidateObserver() {
    return [this](const Node& node, size_t k, const Value& v) {
      if (!v.is_tensor() || v.tensor.dtype() != DType::kFloat32 || node.outputs[k].empty()) return;
      auto ref = reference_.find(node.outputs[k]);
      if (ref == reference_.end() || ref->second.shape() != v.tensor.shape()) return;
      auto eq = channel_scales_.find(ref->first);
      if (eq == channel_scales_.end()) {
        (void)(*results_)[index_.at(ref->first)].comparison.Add(ref->second, v.tensor);
        return;
      }
      // An equalized tensor: back to the FP32 model's scale before comparing.
      const std::vector<double>& s = eq->second;
      if (v.tensor.rank() < 2 || v.tensor.dim(1) != static_cast<int64_t>(s.size())) return;
      Tensor t = v.tensor.Clone();
      const int64_t channels = t.dim(1), inner = t.numel() / (t.dim(0) * channels);
      float* x = t.data<float>();
      for (int64_t i = 0; i < t.numel(); ++i) x[i] = static_cast<float>(x[i] * s[(i / inner) % channels]);
      (void)(*results_)[index_.at(ref->first)].comparison.Add(ref->second, t);
    };
  }

  // Reads the candidate's equalization metadata (kEqualizationMetadataKey), if any.
  Status SetEqualization(const Model& candidate) {
    for (const auto& [key, value] : candidate.metadata_props) {
      if (key != kEqualizationMetadataKey) continue;
      const auto j = nlohmann::json::parse(value, nullptr, /*allow_exceptions=*/false);
      if (j.is_discarded() || !j.contains("scales") || !j["scales"].is_object() || j.value("channel_axis", 0) != 1) {
        return InvalidArgument(fmt::format("metadata '{}' is malformed", key));
      }
      for (const auto& [tensor, scales] : j["scales"].items()) {
        if (!scales.is_array()) return InvalidArgument(fmt::format("metadata '{}': '{}' is not a list", key, tensor));
        std::vector<double>& s = channel_scales_[tensor];
        for (const auto& v : scales) {
          if (!v.is_number() || !(v.get<double>() > 0)) {
            return InvalidArgument(fmt::format("metadata '{}': '{}' holds a non-positive scale", key, tensor));
          }
          s.push_back(v.get<double>());
        }
      }
    }
    return Status::Ok();
  }

  void NextSample() { reference_.clear(); }

 private:
  std::vector<TensorComparison>* results_;
  std::unordered_map<std::string, size_t> index_;
  std::unordered_map<std::string, Tensor> reference_;
  std::unordered_map<std::string, std::vector<double>> channel_scales_;
};

}  // namespace

StatusOr<ModelComparison> CompareModels(const std::string& reference_path, const std::string& candidate_path,
                                        const std::string& data_dir, const CompareOptions& options) {
  QK_ASSIGN_OR_RETURN(std::unique_ptr<Session> ref,
                      OpenSession(reference_path, options.threads, /*optimize=*/true, options.per_tensor));
  Model candidate_model;
  QK_ASSIGN_OR_RETURN(std::unique_ptr<Session> cand,
                      OpenSession(candidate_path, options.threads, /*optimize=*/!options.per_tensor,
                                  options.per_tensor, &candidate_model));
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
  TensorMatcher matcher(&result.tensors);
  RunOptions ref_options, cand_options;
  if (options.per_tensor) {
    Status eq = matcher.SetEqualization(candidate_model);
    if (!eq.ok()) return eq.WithContext(candidate_path);
    ref_options.observer = matcher.ReferenceObserver();
    cand_options.observer = matcher.CandidateObserver();
  }
  for (size_t i = 0; i < result.samples; ++i) {
    QK_ASSIGN_OR_RETURN(Sample sample, data.Read(i));
    std::vector<std::pair<std::string, Value>> feeds;
    for (auto& [name, t] : sample) feeds.emplace_back(name, Value::FromTensor(t));
    std::vector<Value> rv, cv;
    matcher.NextSample();
    Status s = ref->RunValues(feeds, &rv, ref_options);
    if (!s.ok()) return s.WithContext(reference_path);
    s = cand->RunValues(feeds, &cv, cand_options);
    if (!s.ok()) return s.WithContext(candidate_path);
    for (size_t k = 0; k < rv.size(); ++k) {
      if (!rv[k].is_tensor() || !cv[k].is_tensor()) {
        return InvalidArgument(fmt::format("output '{}' is a sequence; compare needs tensors", ref_out[k].name));
      }
      Status st = result.outputs[k].Add(rv[k].tensor, cv[k].tensor);
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
  if (!c.tensors.empty()) {
    out += fmt::format("\nper tensor (reference execution order; tensors the candidate also computes)\n{:<40} {:>10} "
                       "{:>10} {:>14}  {}\n", "tensor", "SQNR dB", "cosine", "max abs err", "producer");
    for (const TensorComparison& t : c.tensors) {
      if (t.comparison.elements() == 0) continue;
      out += fmt::format("{:<40} {:>10} {:>10.6f} {:>14.6g}  {}\n", t.name, Db(t.comparison.sqnr_db()),
                         t.comparison.cosine(), t.comparison.max_abs_error(), t.producer);
    }
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
  if (!c.tensors.empty()) {
    j["tensors"] = nlohmann::json::array();
    for (const TensorComparison& t : c.tensors) {
      if (t.comparison.elements() == 0) continue;
      const double db = t.comparison.sqnr_db();
      j["tensors"].push_back({{"tensor", t.name},
                              {"producer", t.producer},
                              {"sqnr_db", std::isinf(db) ? (db > 0 ? 999.0 : -999.0) : db},
                              {"cosine", t.comparison.cosine()},
                              {"max_abs_error", t.comparison.max_abs_error()}});
    }
  }
  return j.dump(2);
}

}  // namespace quantkit::quant
