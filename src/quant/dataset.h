// Sample sets on disk, for `compare` (and calibration later). A directory holds one of:
//  - <input>.npy for every model input: one sample (may be a batch);
//  - sub-directories, each with <input>.npy files, or with ONNX test-data files input_<i>.pb
//    (the layout of ONNX's test_data_set_*): one sample each;
//  - for single-input models, any number of *.npy files: one sample each.
// Samples are read one at a time (streaming), in sorted path order.
#pragma once

#include <string>
#include <utility>
#include <vector>

#include "quantkit/ir.h"
#include "quantkit/status.h"
#include "quantkit/tensor.h"

namespace quantkit::quant {

using Sample = std::vector<std::pair<std::string, Tensor>>;

class SampleDirectory {
 public:
  // inputs: the model inputs to feed (name, dtype and shape are checked per sample).
  static StatusOr<SampleDirectory> Open(const std::string& dir, std::vector<ValueInfo> inputs);
  size_t size() const { return samples_.size(); }
  // Reads sample i; errors name the file and the input.
  StatusOr<Sample> Read(size_t i) const;
  const std::string& SampleName(size_t i) const { return samples_[i].name; }

 private:
  struct Entry {
    std::string name;
    std::vector<std::string> files;  // per model input
  };
  std::vector<ValueInfo> inputs_;
  std::vector<Entry> samples_;
};

}  // namespace quantkit::quant
