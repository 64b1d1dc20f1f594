// SampleDirectory: finds the samples of a directory and reads them with full validation.
#include "quant/dataset.h"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <filesystem>

#include "quantkit/model_io.h"
#include "quantkit/npy.h"

namespace quantkit::quant {

namespace fs = std::filesystem;

namespace {
// Files for each input inside `dir` by name, or nullopt-like empty vector if not all present.
std::vector<std::string> NamedFiles(const fs::path& dir, const std::vector<ValueInfo>& inputs) {
  std::vector<std::string> files;
  for (const auto& in : inputs) {
    fs::path f = dir / (SafeFileName(in.name) + ".npy");
    std::error_code ec;
    if (!fs::is_regular_file(f, ec)) return {};
    files.push_back(f.string());
  }
  return files;
}

std::vector<std::string> PbFiles(const fs::path& dir, size_t count) {
  std::vector<std::string> files;
  for (size_t i = 0; i < count; ++i) {
    fs::path f = dir / fmt::format("input_{}.pb", i);
    std::error_code ec;
    if (!fs::is_regular_file(f, ec)) return {};
    files.push_back(f.string());
  }
  return files;
}
}  // namespace

StatusOr<SampleDirectory> SampleDirectory::Open(const std::string& dir, std::vector<ValueInfo> inputs) {
  std::error_code ec;
  if (!fs::is_directory(dir, ec)) return NotFound(fmt::format("data directory '{}' does not exist", dir));
  SampleDirectory sd;
  sd.inputs_ = std::move(inputs);
  if (auto files = NamedFiles(dir, sd.inputs_); !files.empty()) {
    sd.samples_.push_back({dir, files});
    return sd;
  }
  std::vector<fs::path> subdirs, npys;
  for (const auto& e : fs::directory_iterator(dir, ec)) {
    if (e.is_directory()) subdirs.push_back(e.path());
    else if (e.path().extension() == ".npy") npys.push_back(e.path());
  }
  std::sort(subdirs.begin(), subdirs.end());
  std::sort(npys.begin(), npys.end());
  for (const auto& sub : subdirs) {
    auto files = NamedFiles(sub, sd.inputs_);
    if (files.empty()) files = PbFiles(sub, sd.inputs_.size());
    if (files.empty()) {
      std::string want;
      for (const auto& in : sd.inputs_) want += (want.empty() ? "" : ", ") + SafeFileName(in.name) + ".npy";
      return InvalidArgument(fmt::format("sample folder '{}' has neither {} nor input_<i>.pb files", sub.string(), want));
    }
    sd.samples_.push_back({sub.string(), files});
  }
  if (sd.samples_.empty() && sd.inputs_.size() == 1) {
    for (const auto& f : npys) sd.samples_.push_back({f.string(), {f.string()}});
  }
  if (sd.samples_.empty()) {
    std::string want;
    for (const auto& in : sd.inputs_) want += (want.empty() ? "" : ", ") + SafeFileName(in.name) + ".npy";
    return InvalidArgument(fmt::format("data directory '{}' holds no samples (expected {} or sample sub-folders)", dir, want));
  }
  return sd;
}

StatusOr<Sample> SampleDirectory::Read(size_t i) const {
  const Entry& e = samples_.at(i);
  Sample sample;
  for (size_t k = 0; k < inputs_.size(); ++k) {
    const ValueInfo& in = inputs_[k];
    const std::string& file = e.files[k];
    StatusOr<Tensor> t = file.size() > 3 && file.compare(file.size() - 3, 3, ".pb") == 0 ? LoadTensorProto(file)
                                                                                       : ReadNpy(file);
    if (!t.ok()) return t.status();
    if (in.dtype != DType::kUndefined && t->dtype() != in.dtype) {
      return InvalidArgument(fmt::format("{}: input '{}' must be {}, the file holds {}", file, in.name,
                                         DTypeName(in.dtype), DTypeName(t->dtype())));
    }
    if (in.has_shape) {
      bool ok = in.shape.size() == t->rank();
      for (size_t d = 0; ok && d < in.shape.size(); ++d) ok = !in.shape[d].known() || in.shape[d].value == t->dim(d);
      if (!ok) {
        return InvalidArgument(fmt::format("{}: shape {} does not fit input '{}'", file, ShapeToString(t->shape()), in.name));
      }
    }
    if (IsFloatDType(t->dtype())) {
      for (int64_t j = 0; j < t->numel(); ++j) {
        if (!std::isfinite(t->GetAsDouble(j))) {
          return InvalidArgument(fmt::format("{}: input '{}' contains NaN or Inf (element {})", file, in.name, j));
        }
      }
    }
    sample.emplace_back(in.name, std::move(t).value());
  }
  return sample;
}

}  // namespace quantkit::quant
