// SampleDirectory: finds the samples of a directory and reads them with full validation.
#include "quant/dataset.h"

#include <fmt/format.h>
#include <fmt/ranges.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <optional>

#include "quant/npz.h"
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
  std::vector<fs::path> subdirs, npys, npzs;
  for (const auto& e : fs::directory_iterator(dir, ec)) {
    if (e.is_directory()) subdirs.push_back(e.path());
    else if (e.path().extension() == ".npy") npys.push_back(e.path());
    else if (e.path().extension() == ".npz") npzs.push_back(e.path());
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
  // .npz files: one sample each, whatever else the folder holds.
  for (const auto& f : npzs) sd.samples_.push_back({f.string(), std::vector<std::string>(sd.inputs_.size(), f.string())});
  std::stable_sort(sd.samples_.begin(), sd.samples_.end(), [](const Entry& a, const Entry& b) { return a.name < b.name; });
  if (sd.samples_.empty()) {
    std::string want;
    for (const auto& in : sd.inputs_) want += (want.empty() ? "" : ", ") + SafeFileName(in.name) + ".npy";
    return InvalidArgument(fmt::format(
        "data directory '{}' holds no samples (expected {}, *.npz files or sample sub-folders)", dir, want));
  }
  return sd;
}

namespace {

bool EndsWith(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

// The .npz key holding `input`: its name, or its SafeFileName form.
StatusOr<std::string> NpzKeyFor(const NpzFile& npz, const ValueInfo& input) {
  if (npz.Contains(input.name)) return input.name;
  if (npz.Contains(SafeFileName(input.name))) return SafeFileName(input.name);
  return InvalidArgument(fmt::format("{}: no array for input '{}' (arrays: {})", npz.path(), input.name,
                                     fmt::join(npz.keys(), ", ")));
}

Status CheckNpzKeys(const NpzFile& npz, const std::vector<ValueInfo>& inputs) {
  for (const auto& key : npz.keys()) {
    const bool known = std::any_of(inputs.begin(), inputs.end(), [&](const ValueInfo& in) {
      return in.name == key || SafeFileName(in.name) == key;
    });
    if (!known) {
      std::vector<std::string> names;
      for (const auto& in : inputs) names.push_back(in.name);
      return InvalidArgument(fmt::format("{}: array '{}' is not an input of the model (inputs: {})", npz.path(), key,
                                         fmt::join(names, ", ")));
    }
  }
  return Status::Ok();
}

}  // namespace

StatusOr<Sample> SampleDirectory::Read(size_t i) const {
  const Entry& e = samples_.at(i);
  Sample sample;
  std::optional<NpzFile> npz;
  for (size_t k = 0; k < inputs_.size(); ++k) {
    const ValueInfo& in = inputs_[k];
    const std::string& file = e.files[k];
    if (EndsWith(file, ".npz") && !npz) {
      QK_ASSIGN_OR_RETURN(npz, NpzFile::Open(file));
      QK_RETURN_IF_ERROR(CheckNpzKeys(*npz, inputs_));
    }
    const auto read = [&]() -> StatusOr<Tensor> {
      if (EndsWith(file, ".npz")) {
        QK_ASSIGN_OR_RETURN(std::string key, NpzKeyFor(*npz, in));
        return npz->Read(key);
      }
      return EndsWith(file, ".pb") ? LoadTensorProto(file) : ReadNpy(file);
    };
    StatusOr<Tensor> t = read();
    if (!t.ok()) return t.status();
    if (in.dtype != DType::kUndefined && t->dtype() != in.dtype) {
      return InvalidArgument(fmt::format("{}: input '{}' must be {}, the file holds {}", file, in.name,
                                         DTypeName(in.dtype), DTypeName(t->dtype())));
    }
    if (in.has_shape) {
      bool ok = in.shape.size() == t->rank();
      for (size_t d = 0; ok && d < in.shape.size(); ++d) {
        const bool batch_of_single = allow_batched_files_ && d == 0 && in.shape[0].value == 1;
        ok = !in.shape[d].known() || in.shape[d].value == t->dim(d) || batch_of_single;
      }
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
