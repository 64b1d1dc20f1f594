// The calibration loop behind CalibrateModel (include/quantkit/calibration.h): calibration data
// read one file at a time and split into model runs, and the collector that turns every run's
// float32 values into TensorStats through Session's RunOptions::observer.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "quant/dataset.h"
#include "quant/image_folder.h"
#include "quantkit/calibration.h"
#include "quantkit/session.h"

namespace quantkit::quant {

// A directory of calibration files: SampleDirectory layouts, or an image folder when the
// directory holds images and no sample files.
class CalibrationData {
 public:
  // batch_size: items per model run when a file holds a batch along axis 0 (see PlanRuns);
  // 0 feeds every file whole.
  static StatusOr<CalibrationData> Open(const std::string& dir, const std::vector<ValueInfo>& inputs,
                                        const ImagePreprocessing& image, int64_t batch_size);
  size_t files() const;
  const std::string& FileName(size_t i) const;
  // Reads file i, fully validated.
  StatusOr<Sample> ReadFile(size_t i) const;
  // How a file's sample is fed: `items` items (at most max_items, 0: no limit) in runs of
  // `run_size` items along axis 0; split == false: the whole sample is one run.
  struct RunPlan {
    int64_t items = 1;
    int64_t run_size = 1;
    bool split = false;
  };
  RunPlan PlanRuns(const Sample& sample, uint64_t max_items) const;
  std::string Describe() const;

 private:
  std::vector<ValueInfo> inputs_;
  int64_t batch_size_ = 1;
  std::optional<SampleDirectory> samples_;
  std::optional<ImageFolder> images_;
};

// The batch size shared by every input of a sample along axis 0, if the sample can be split
// there: every input has rank >= 1, the same leading size, and the model does not fix that
// dimension at a value other than 1. Otherwise nullopt (the sample is one run of one item).
std::optional<int64_t> SplittableBatch(const Sample& sample, const std::vector<ValueInfo>& inputs);

// Items [start, start + count) along axis 0 of every input (copied: one run's worth).
Sample SliceItems(const Sample& sample, int64_t start, int64_t count);

// Accumulates the statistics of model runs into a CalibrationStats.
class StatsCollector {
 public:
  explicit StatsCollector(CalibrationStats* stats) : stats_(stats) {}
  // The observer for RunOptions: every float32 node output of the run.
  ValueObserver Observer();
  // Graph inputs are not node outputs: the caller passes each run's inputs here.
  void ObserveInputs(const Sample& sample);
  void Observe(const std::string& name, const Tensor& t);

 private:
  CalibrationStats* stats_;
};

}  // namespace quantkit::quant
