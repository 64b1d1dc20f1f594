// CalibrateModel: the FP32 model over the calibration data, one run at a time, observers on
// every float32 activation.
#include "quant/calibrator.h"

#include <fmt/format.h>

#include <algorithm>
#include <cstring>

#include "core/sha256.h"
#include "passes/passes.h"
#include "quant/observers.h"
#include "quantkit/model_io.h"

namespace quantkit::quant {

// ---------------------------------------------------------------- data

StatusOr<CalibrationData> CalibrationData::Open(const std::string& dir, const std::vector<ValueInfo>& inputs,
                                                const ImagePreprocessing& image, int64_t batch_size) {
  CalibrationData data;
  data.inputs_ = inputs;
  data.batch_size_ = batch_size;
  if (LooksLikeImageFolder(dir)) {
    if (inputs.size() != 1) {
      return InvalidArgument(fmt::format("image folder '{}': the model has {} inputs; images can feed only a "
                                         "single-input model (use .npz samples)", dir, inputs.size()));
    }
    QK_ASSIGN_OR_RETURN(data.images_, ImageFolder::Open(dir, inputs[0], image));
    return data;
  }
  QK_ASSIGN_OR_RETURN(data.samples_, SampleDirectory::Open(dir, inputs));
  data.samples_->AllowBatchedFiles(batch_size > 0);
  return data;
}

size_t CalibrationData::files() const { return images_ ? images_->size() : samples_->size(); }

const std::string& CalibrationData::FileName(size_t i) const {
  return images_ ? images_->SampleName(i) : samples_->SampleName(i);
}

std::string CalibrationData::Describe() const {
  if (images_) return images_->Describe();
  return fmt::format("{} sample file(s); batches split into runs of {}", samples_->size(),
                     batch_size_ > 0 ? std::to_string(batch_size_) + " item(s)" : std::string("whole files"));
}

std::optional<int64_t> SplittableBatch(const Sample& sample, const std::vector<ValueInfo>& inputs) {
  std::optional<int64_t> batch;
  for (const auto& [name, t] : sample) {
    if (t.rank() == 0) return std::nullopt;
    if (batch && *batch != t.dim(0)) return std::nullopt;
    batch = t.dim(0);
    for (const auto& in : inputs) {
      if (in.name != name || !in.has_shape || in.shape.empty()) continue;
      if (in.shape[0].known() && in.shape[0].value != 1 && in.shape[0].value != t.dim(0)) return std::nullopt;
      if (in.shape[0].known() && in.shape[0].value == t.dim(0) && t.dim(0) != 1) return std::nullopt;  // one fixed batch
    }
  }
  return batch;
}

Sample SliceItems(const Sample& sample, int64_t start, int64_t count) {
  Sample run;
  for (const auto& [name, t] : sample) {
    Shape shape = t.shape();
    const size_t row_bytes = t.nbytes() / static_cast<size_t>(shape[0]);
    shape[0] = count;
    Tensor part(t.dtype(), shape);
    std::memcpy(part.raw_data(), static_cast<const char*>(t.raw_data()) + static_cast<size_t>(start) * row_bytes,
                static_cast<size_t>(count) * row_bytes);
    run.emplace_back(name, std::move(part));
  }
  return run;
}

StatusOr<Sample> CalibrationData::ReadFile(size_t i) const { return images_ ? images_->Read(i) : samples_->Read(i); }

CalibrationData::RunPlan CalibrationData::PlanRuns(const Sample& sample, uint64_t max_items) const {
  RunPlan plan;
  const std::optional<int64_t> batch = SplittableBatch(sample, inputs_);
  if (!batch || *batch == 0) return plan;  // one run, one item
  plan.items = max_items > 0 ? std::min<int64_t>(*batch, static_cast<int64_t>(max_items)) : *batch;
  // A model that fixes the batch at 1 takes one item per run, whatever the batch size.
  bool fixed_single = false;
  for (const auto& in : inputs_)
    fixed_single |= in.has_shape && !in.shape.empty() && in.shape[0].known() && in.shape[0].value == 1;
  plan.run_size = fixed_single ? 1 : batch_size_ > 0 ? batch_size_ : *batch;
  plan.split = plan.run_size < *batch || plan.items < *batch;
  if (!plan.split) plan.run_size = *batch;
  return plan;
}

// ---------------------------------------------------------------- statistics

ValueObserver StatsCollector::Observer() {
  return [this](const Node& node, size_t output_index, const Value& value) {
    if (value.is_tensor() && output_index < node.outputs.size()) Observe(node.outputs[output_index], value.tensor);
  };
}

void StatsCollector::ObserveInputs(const Sample& sample) {
  for (const auto& [name, t] : sample) Observe(name, t);
}

void StatsCollector::Observe(const std::string& name, const Tensor& t) {
  if (t.dtype() != DType::kFloat32 || name.empty()) return;
  ObserveTensor(&stats_->tensors[name], t, stats_->settings);
}

namespace {

// Constant subexpressions become initializers (they are not activations) and constant Ifs are
// inlined (their branch's tensors become top-level, visible to the observer), but nothing is
// renamed or fused: every tensor of the original graph keeps its name, so the statistics cover
// whatever graph the quantizer builds from it (BatchNorm folded or not).
Status PrepareForCalibration(Model& model) {
  QK_RETURN_IF_ERROR(passes::ConstantNodesToInitializers(model));
  QK_RETURN_IF_ERROR(passes::TopologicalSort(model.graph));
  for (int round = 0; round < 4; ++round) {
    const size_t before = model.graph.nodes.size();
    QK_RETURN_IF_ERROR(passes::InlineConstantIf(model));
    QK_RETURN_IF_ERROR(passes::FoldConstants(model));
    if (model.graph.nodes.size() == before) break;
  }
  return passes::TopologicalSort(model.graph);
}

}  // namespace

}  // namespace quantkit::quant

namespace quantkit {

StatusOr<CalibrationStats> CalibrateModel(const std::string& model_path, const std::string& data_dir,
                                          const CalibrationOptions& options) {
  QK_RETURN_IF_ERROR(ValidateCalibrationSettings(options.settings));
  QK_ASSIGN_OR_RETURN(Model model, LoadModel(model_path));
  QK_ASSIGN_OR_RETURN(std::string sha, Sha256OfFile(model_path));
  Status prepared = quant::PrepareForCalibration(model);
  if (!prepared.ok()) return prepared.WithContext(model_path);
  SessionOptions session_options;
  session_options.threads = options.threads;
  session_options.optimize = false;  // done above, without renaming passes
  auto session = Session::Create(std::move(model), session_options);
  if (!session.ok()) return session.status().WithContext(model_path);
  QK_ASSIGN_OR_RETURN(quant::CalibrationData data,
                      quant::CalibrationData::Open(data_dir, (*session)->inputs(), options.image,
                                                   options.settings.batch_size));
  if (options.log) options.log(fmt::format("calibration data {}: {}", data_dir, data.Describe()));

  CalibrationStats stats;
  stats.model_sha256 = sha;
  stats.model_path = model_path;
  stats.settings = options.settings;
  stats.data_sources = {data_dir};
  quant::StatsCollector collector(&stats);
  RunOptions run_options;
  run_options.observer = collector.Observer();
  CalibrationProgress progress;
  // After every run; the total is estimated from the files read so far (exact after the last).
  const auto report = [&](size_t files_read, uint64_t items_done) {
    if (!options.progress) return;
    const double per_file = static_cast<double>(stats.items) / static_cast<double>(files_read);
    progress.items_expected = files_read == data.files()
                                  ? stats.items
                                  : static_cast<uint64_t>(per_file * static_cast<double>(data.files()) + 0.5);
    if (options.max_items > 0) progress.items_expected = std::min(progress.items_expected, options.max_items);
    progress.items_done = items_done;
    options.progress(progress);
  };
  for (size_t i = 0; i < data.files(); ++i) {
    const uint64_t left = options.max_items > 0 ? options.max_items - stats.items : 0;
    progress.current = data.FileName(i);
    QK_ASSIGN_OR_RETURN(quant::Sample sample, data.ReadFile(i));
    const quant::CalibrationData::RunPlan plan = data.PlanRuns(sample, left);
    const uint64_t items_before = stats.items;
    stats.items += static_cast<uint64_t>(plan.items);  // counted up front for the estimate
    std::vector<Value> outputs;
    for (int64_t start = 0; start < plan.items; start += plan.run_size) {
      const int64_t count = std::min(plan.run_size, plan.items - start);
      // Slices are made one run at a time: memory holds the file and one run, not every run.
      const quant::Sample run = plan.split ? quant::SliceItems(sample, start, count) : sample;
      collector.ObserveInputs(run);
      std::vector<std::pair<std::string, Value>> feeds;
      for (const auto& [name, t] : run) feeds.emplace_back(name, Value::FromTensor(t));
      Status s = (*session)->RunValues(feeds, &outputs, run_options);
      if (!s.ok()) return s.WithContext(fmt::format("{} on {}", model_path, data.FileName(i)));
      ++stats.runs;
      report(i + 1, items_before + static_cast<uint64_t>(plan.split ? start + count : plan.items));
    }
    if (options.max_items > 0 && stats.items >= options.max_items) break;
  }
  return stats;
}

Status ValidateCalibrationSettings(const CalibrationSettings& s) {
  const int64_t b = s.histogram_bins;
  if (b < 256 || b > 65536 || (b & (b - 1)) != 0) {
    return InvalidArgument(fmt::format("histogram bins must be a power of two in [256, 65536], not {}", b));
  }
  if (!(s.momentum > 0 && s.momentum <= 1)) {
    return InvalidArgument(fmt::format("moving-average momentum must be in (0, 1], not {}", s.momentum));
  }
  if (s.batch_size < 0) return InvalidArgument(fmt::format("batch size must be >= 0, not {}", s.batch_size));
  // The recorded percentile is the quantizer's default whatever the method: check it always.
  RangeOptions as_percentile = s.ranges;
  as_percentile.method = CalibrationMethod::kPercentile;
  return ValidateRangeOptions(as_percentile);
}

}  // namespace quantkit
