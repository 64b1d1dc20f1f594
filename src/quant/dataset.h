// Sample sets on disk, for `compare` (and calibration later). A directory holds one of:
//  - <input>.npy for every model input: one sample (may be a batch);
//  - sub-directories, each with <input>.npy files, or with ONNX test-data files input_<i>.pb
//    (the layout of ONNX's test_data_set_*): one sample each;
//  - *.npz files (np.savez): one sample each, one array per model input named after it (the
//    input's name or its SafeFileName form); every input must be present and no other key;
//  - for single-input models, any number of *.npy files: one sample each.
// A sample may hold a batch. Samples are read one at a time (streaming), in sorted path order.
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
  // Lets dimension 0 of an input that the model fixes at 1 hold any size: a batch of samples that
  // the caller feeds one at a time (calibration). Off by default.
  void AllowBatchedFiles(bool allow) { allow_batched_files_ = allow; }

 private:
  struct Entry {
    std::string name;
    std::vector<std::string> files;  // per model input
  };
  std::vector<ValueInfo> inputs_;
  std::vector<Entry> samples_;
  bool allow_batched_files_ = false;
};

}  // namespace quantkit::quant
