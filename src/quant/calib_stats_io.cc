// Calibration statistics as JSON, and merging.
//
// {
//   "format": "quantkit-calibration", "version": 1, "quantkit_version": "0.1.0",
//   "model": {"path": "m.onnx", "sha256": "<64 hex>"},
//   "settings": {"histogram_bins": 4096, "momentum": 0.01, "batch_size": 1,
//                "method": "entropy", "percentile": 99.999, "activation_type": "uint8"},
//   "data_sources": ["calib/"], "items": 1000, "runs": 1000,
//   "tensors": {                                   one line per tensor, sorted by name
//     "<name>": {"dtype": "float32", "shape": [-1, 32, 28, 28] (null if the rank varied),
//                "runs": 1000, "elements": 25088000, "nonfinite": 0,
//                "min": -1.5, "max": 7.25,         (null when no finite value was seen)
//                "moving_average": {"runs": 1000, "first_min": .., "first_max": .., "tail_min": ..,
//                                   "tail_max": .., "min": .., "max": ..},
//                "histogram": {"bins": 4096, "exponent": 3, "offset": 2040, "counts": [..]},
//                  (counts of bins offset .. offset + len - 1; the others are 0)
//                "channels": {"axis": 1, "min": [..], "max": [..], "sum": [..], "count": [..]}
//                  (null if not kept; a channel that saw no finite value has null min/max;
//                  sum/count, of each channel's finite values, may be absent: older files),
//                "range": {"method": "entropy", "type": "uint8", "min": .., "max": ..,
//                          "scale": .., "zero_point": ..}}
//   }
// }
// Moving-average "min"/"max" and "range" are derived (for people and for tools that only want
// the ranges); loading ignores them and recomputes. Floats are written as the shortest decimal
// that reads back to the same double, so save -> load is exact.
#include <fmt/format.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <limits>
#include <nlohmann/json.hpp>
#include <random>
#include <sstream>

#include "core/file_util.h"
#include "quant/observers.h"
#include "quantkit/calibration.h"

namespace quantkit {

namespace {

using nlohmann::json;
using ordered_json = nlohmann::ordered_json;  // written files keep the documented key order
namespace fs = std::filesystem;

constexpr const char* kFormat = "quantkit-calibration";
constexpr int kVersion = 1;

ordered_json FloatOrNull(double v) { return std::isfinite(v) ? ordered_json(v) : ordered_json(nullptr); }

ordered_json TensorToJson(const TensorStats& t, const RangeOptions& ranges) {
  ordered_json j;
  j["dtype"] = DTypeName(t.dtype);
  j["shape"] = t.rank_varies ? ordered_json(nullptr) : ordered_json(t.shape);
  j["runs"] = t.runs;
  j["elements"] = t.elements;
  j["nonfinite"] = t.nonfinite;
  j["min"] = t.minmax.empty() ? ordered_json(nullptr) : ordered_json(static_cast<double>(t.minmax.min));
  j["max"] = t.minmax.empty() ? ordered_json(nullptr) : ordered_json(static_cast<double>(t.minmax.max));
  const MovingAverageStats& ma = t.moving_average;
  j["moving_average"] = {{"runs", ma.runs},
                         {"first_min", static_cast<double>(ma.first_min)},
                         {"first_max", static_cast<double>(ma.first_max)},
                         {"tail_min", ma.tail_min},
                         {"tail_max", ma.tail_max},
                         {"min", FloatOrNull(ma.min())},
                         {"max", FloatOrNull(ma.max())}};
  const auto& counts = t.histogram.counts;
  size_t first = 0, last = counts.size();
  while (first < last && counts[first] == 0) ++first;
  while (last > first && counts[last - 1] == 0) --last;
  j["histogram"] = {{"bins", counts.size()},
                    {"exponent", t.histogram.exponent},
                    {"offset", first},
                    {"counts", std::vector<uint64_t>(counts.begin() + static_cast<std::ptrdiff_t>(first),
                                                     counts.begin() + static_cast<std::ptrdiff_t>(last))}};
  if (t.channels.axis < 0) {
    j["channels"] = nullptr;
  } else {
    ordered_json mins = ordered_json::array(), maxs = ordered_json::array();
    for (size_t c = 0; c < t.channels.min.size(); ++c) {
      mins.push_back(FloatOrNull(t.channels.min[c]));
      maxs.push_back(FloatOrNull(t.channels.max[c]));
    }
    j["channels"] = {{"axis", t.channels.axis}, {"min", mins}, {"max", maxs}};
    if (t.channels.has_means()) {
      j["channels"]["sum"] = t.channels.sum;
      j["channels"]["count"] = t.channels.count;
    }
  }
  if (!t.minmax.empty()) {
    auto r = ComputeRange(t, ranges);
    if (r.ok()) {
      const ActivationQuantParams p = ActivationParamsFromRange(*r, ranges.type);
      j["range"] = {{"method", ToString(ranges.method)}, {"type", ToString(ranges.type)},
                    {"min", static_cast<double>(r->min)}, {"max", static_cast<double>(r->max)},
                    {"scale", static_cast<double>(p.scale)}, {"zero_point", p.zero_point}};
    }
  }
  return j;
}

// ---- strict readers: every error names the file, the tensor and the key

struct JsonReader {
  std::string where;  // "stats.json: tensor 'x'"

  Status Error(const std::string& key, const std::string& what) const {
    return InvalidArgument(fmt::format("{}: '{}' {}", where, key, what));
  }
  StatusOr<const json*> Get(const json& obj, const std::string& key) const {
    auto it = obj.find(key);
    if (it == obj.end()) return Error(key, "is missing");
    return &*it;
  }
  StatusOr<double> Number(const json& obj, const std::string& key) const {
    QK_ASSIGN_OR_RETURN(const json* v, Get(obj, key));
    if (!v->is_number()) return Error(key, "must be a number");
    return v->get<double>();
  }
  // A float32 value (written as a double, so it reads back exactly); null means +-inf (no finite
  // value seen).
  StatusOr<float> Float(const json& obj, const std::string& key, float if_null) const {
    QK_ASSIGN_OR_RETURN(const json* v, Get(obj, key));
    return FloatValue(*v, key, if_null);
  }
  StatusOr<float> FloatValue(const json& v, const std::string& key, float if_null) const {
    if (v.is_null()) return if_null;
    if (!v.is_number()) return Error(key, "must be a number or null");
    const double d = v.get<double>();
    if (!(std::fabs(d) <= std::numeric_limits<float>::max())) return Error(key, "is outside the float32 range");
    return static_cast<float>(d);
  }
  StatusOr<uint64_t> Unsigned(const json& obj, const std::string& key) const {
    QK_ASSIGN_OR_RETURN(const json* v, Get(obj, key));
    if (!v->is_number_unsigned() && !(v->is_number_integer() && v->get<int64_t>() >= 0)) {
      return Error(key, "must be a non-negative integer");
    }
    return v->get<uint64_t>();
  }
  StatusOr<int64_t> Integer(const json& obj, const std::string& key) const {
    QK_ASSIGN_OR_RETURN(const json* v, Get(obj, key));
    if (!v->is_number_integer()) return Error(key, "must be an integer");
    return v->get<int64_t>();
  }
  StatusOr<std::string> String(const json& obj, const std::string& key) const {
    QK_ASSIGN_OR_RETURN(const json* v, Get(obj, key));
    if (!v->is_string()) return Error(key, "must be a string");
    return v->get<std::string>();
  }
  StatusOr<const json*> Object(const json& obj, const std::string& key) const {
    QK_ASSIGN_OR_RETURN(const json* v, Get(obj, key));
    if (!v->is_object()) return Error(key, "must be an object");
    return v;
  }
  StatusOr<const json*> Array(const json& obj, const std::string& key) const {
    QK_ASSIGN_OR_RETURN(const json* v, Get(obj, key));
    if (!v->is_array()) return Error(key, "must be an array");
    return v;
  }
};

StatusOr<TensorStats> TensorFromJson(const json& j, const JsonReader& r, const CalibrationSettings& settings) {
  if (!j.is_object()) return InvalidArgument(fmt::format("{}: must be an object", r.where));
  TensorStats t;
  QK_ASSIGN_OR_RETURN(std::string dtype, r.String(j, "dtype"));
  if (dtype != DTypeName(DType::kFloat32)) return r.Error("dtype", "must be float32 (only float32 tensors are observed)");
  QK_ASSIGN_OR_RETURN(const json* shape, r.Get(j, "shape"));
  if (shape->is_null()) {
    t.rank_varies = true;
  } else {
    if (!shape->is_array()) return r.Error("shape", "must be an array or null");
    for (const auto& d : *shape) {
      if (!d.is_number_integer() || d.get<int64_t>() < -1) return r.Error("shape", "must hold integers >= -1");
      t.shape.push_back(d.get<int64_t>());
    }
  }
  QK_ASSIGN_OR_RETURN(t.runs, r.Unsigned(j, "runs"));
  QK_ASSIGN_OR_RETURN(t.elements, r.Unsigned(j, "elements"));
  QK_ASSIGN_OR_RETURN(t.nonfinite, r.Unsigned(j, "nonfinite"));
  if (t.runs == 0) return r.Error("runs", "must be at least 1");
  QK_ASSIGN_OR_RETURN(t.minmax.min, r.Float(j, "min", std::numeric_limits<float>::infinity()));
  QK_ASSIGN_OR_RETURN(t.minmax.max, r.Float(j, "max", -std::numeric_limits<float>::infinity()));
  if ((t.elements > 0) == t.minmax.empty()) {
    return r.Error("min", t.elements > 0 ? "and 'max' must be numbers with min <= max when elements were seen"
                                         : "and 'max' must be null when no element was seen");
  }

  QK_ASSIGN_OR_RETURN(const json* ma, r.Object(j, "moving_average"));
  JsonReader rm{r.where + " moving_average"};
  t.moving_average.momentum = settings.momentum;
  QK_ASSIGN_OR_RETURN(t.moving_average.runs, rm.Unsigned(*ma, "runs"));
  QK_ASSIGN_OR_RETURN(t.moving_average.first_min, rm.Float(*ma, "first_min", 0));
  QK_ASSIGN_OR_RETURN(t.moving_average.first_max, rm.Float(*ma, "first_max", 0));
  QK_ASSIGN_OR_RETURN(t.moving_average.tail_min, rm.Number(*ma, "tail_min"));
  QK_ASSIGN_OR_RETURN(t.moving_average.tail_max, rm.Number(*ma, "tail_max"));
  if (t.moving_average.runs > t.runs) return rm.Error("runs", "exceeds the tensor's runs");
  if ((t.moving_average.runs > 0) != (t.elements > 0)) return rm.Error("runs", "disagrees with 'elements'");

  QK_ASSIGN_OR_RETURN(const json* h, r.Object(j, "histogram"));
  JsonReader rh{r.where + " histogram"};
  QK_ASSIGN_OR_RETURN(uint64_t bins, rh.Unsigned(*h, "bins"));
  if (bins != static_cast<uint64_t>(settings.histogram_bins)) {
    return rh.Error("bins", fmt::format("is {}, the settings say {}", bins, settings.histogram_bins));
  }
  QK_ASSIGN_OR_RETURN(int64_t exponent, rh.Integer(*h, "exponent"));
  if (exponent < kHistogramMinExponent || exponent > 128) return rh.Error("exponent", "is outside [-126, 128]");
  QK_ASSIGN_OR_RETURN(uint64_t offset, rh.Unsigned(*h, "offset"));
  QK_ASSIGN_OR_RETURN(const json* counts, rh.Array(*h, "counts"));
  if (offset > bins || counts->size() > bins - offset) return rh.Error("counts", "run past the last bin");
  t.histogram.exponent = static_cast<int32_t>(exponent);
  t.histogram.counts.assign(static_cast<size_t>(bins), 0);
  uint64_t total = 0;
  for (size_t i = 0; i < counts->size(); ++i) {
    const json& c = (*counts)[i];
    if (!c.is_number_unsigned() && !(c.is_number_integer() && c.get<int64_t>() >= 0)) {
      return rh.Error("counts", "must hold non-negative integers");
    }
    t.histogram.counts[static_cast<size_t>(offset) + i] = c.get<uint64_t>();
    total += c.get<uint64_t>();
  }
  if (total != t.elements) return rh.Error("counts", fmt::format("sum to {}, but 'elements' is {}", total, t.elements));
  if (t.elements > 0 && quant::HistogramExponentFor(t.minmax.min, t.minmax.max) > exponent) {
    return rh.Error("exponent", "is too small for the tensor's min/max");
  }

  QK_ASSIGN_OR_RETURN(const json* ch, r.Get(j, "channels"));
  if (!ch->is_null()) {
    if (!ch->is_object()) return r.Error("channels", "must be an object or null");
    JsonReader rc{r.where + " channels"};
    QK_ASSIGN_OR_RETURN(int64_t axis, rc.Integer(*ch, "axis"));
    if (axis != 1) return rc.Error("axis", "must be 1");
    QK_ASSIGN_OR_RETURN(const json* mins, rc.Array(*ch, "min"));
    QK_ASSIGN_OR_RETURN(const json* maxs, rc.Array(*ch, "max"));
    if (mins->size() != maxs->size()) return rc.Error("min", "and 'max' differ in length");
    t.channels.axis = static_cast<int>(axis);
    for (size_t c = 0; c < mins->size(); ++c) {
      QK_ASSIGN_OR_RETURN(float lo, rc.FloatValue((*mins)[c], "min", std::numeric_limits<float>::infinity()));
      QK_ASSIGN_OR_RETURN(float hi, rc.FloatValue((*maxs)[c], "max", -std::numeric_limits<float>::infinity()));
      t.channels.min.push_back(lo);
      t.channels.max.push_back(hi);
    }
    if (ch->contains("sum") || ch->contains("count")) {  // absent in older files
      QK_ASSIGN_OR_RETURN(const json* sums, rc.Array(*ch, "sum"));
      QK_ASSIGN_OR_RETURN(const json* counts, rc.Array(*ch, "count"));
      if (sums->size() != mins->size() || counts->size() != mins->size()) {
        return rc.Error("sum", "and 'count' must have one entry per channel");
      }
      for (size_t c = 0; c < sums->size(); ++c) {
        const json& sv = (*sums)[c];
        const json& cv = (*counts)[c];
        if (!sv.is_number() || !std::isfinite(sv.get<double>())) return rc.Error("sum", "must hold finite numbers");
        if (!cv.is_number_unsigned() && !(cv.is_number_integer() && cv.get<int64_t>() >= 0)) {
          return rc.Error("count", "must hold non-negative integers");
        }
        t.channels.sum.push_back(sv.get<double>());
        t.channels.count.push_back(cv.get<uint64_t>());
      }
    }
  }
  return t;
}


}  // namespace

std::string CalibrationStatsToJson(const CalibrationStats& stats) {
  const CalibrationSettings& s = stats.settings;
  ordered_json head;
  head["format"] = kFormat;
  head["version"] = kVersion;
  head["quantkit_version"] = QUANTKIT_VERSION;
  head["model"] = {{"path", stats.model_path}, {"sha256", stats.model_sha256}};
  head["settings"] = {{"histogram_bins", s.histogram_bins},
                      {"momentum", s.momentum},
                      {"batch_size", s.batch_size},
                      {"method", ToString(s.ranges.method)},
                      {"percentile", s.ranges.percentile},
                      {"activation_type", ToString(s.ranges.type)}};
  head["data_sources"] = stats.data_sources;
  head["items"] = stats.items;
  head["runs"] = stats.runs;
  // Pretty header, then one compact line per tensor (histograms would take thousands of lines).
  std::string out = head.dump(2);
  out.resize(out.size() - 2);  // drop "\n}"
  out += ",\n  \"tensors\": {";
  bool first = true;
  for (const auto& [name, t] : stats.tensors) {
    out += first ? "\n    " : ",\n    ";
    first = false;
    out += ordered_json(name).dump() + ": " + TensorToJson(t, s.ranges).dump();
  }
  out += first ? "}\n}\n" : "\n  }\n}\n";
  return out;
}

Status SaveCalibrationStats(const CalibrationStats& stats, const std::string& path) {
  return WriteFileAtomically(path, CalibrationStatsToJson(stats));
}

StatusOr<CalibrationStats> CalibrationStatsFromJson(const std::string& json_text, const std::string& what) {
  json j;
  try {
    j = json::parse(json_text);
  } catch (const json::exception& e) {
    return InvalidArgument(fmt::format("{}: not valid JSON: {}", what, e.what()));
  }
  const JsonReader r{what};
  if (!j.is_object()) return InvalidArgument(fmt::format("{}: not a calibration statistics file", what));
  auto format = r.String(j, "format");
  if (!format.ok() || *format != kFormat) {
    return InvalidArgument(fmt::format("{}: not a calibration statistics file (format is not '{}')", what, kFormat));
  }
  QK_ASSIGN_OR_RETURN(int64_t version, r.Integer(j, "version"));
  if (version != kVersion) return r.Error("version", fmt::format("is {}; this quantkit reads version {}", version, kVersion));
  CalibrationStats stats;
  QK_ASSIGN_OR_RETURN(const json* model, r.Object(j, "model"));
  QK_ASSIGN_OR_RETURN(stats.model_path, r.String(*model, "path"));
  QK_ASSIGN_OR_RETURN(stats.model_sha256, r.String(*model, "sha256"));
  if (stats.model_sha256.size() != 64 ||
      stats.model_sha256.find_first_not_of("0123456789abcdef") != std::string::npos) {
    return r.Error("sha256", "must be 64 lowercase hex digits");
  }
  QK_ASSIGN_OR_RETURN(const json* settings, r.Object(j, "settings"));
  const JsonReader rs{what + ": settings"};
  CalibrationSettings& s = stats.settings;
  QK_ASSIGN_OR_RETURN(s.histogram_bins, rs.Integer(*settings, "histogram_bins"));
  QK_ASSIGN_OR_RETURN(s.momentum, rs.Number(*settings, "momentum"));
  QK_ASSIGN_OR_RETURN(s.batch_size, rs.Integer(*settings, "batch_size"));
  QK_ASSIGN_OR_RETURN(std::string method, rs.String(*settings, "method"));
  QK_ASSIGN_OR_RETURN(s.ranges.method, ParseCalibrationMethod(method));
  QK_ASSIGN_OR_RETURN(s.ranges.percentile, rs.Number(*settings, "percentile"));
  QK_ASSIGN_OR_RETURN(std::string type, rs.String(*settings, "activation_type"));
  QK_ASSIGN_OR_RETURN(s.ranges.type, ParseActivationType(type));
  Status valid = ValidateCalibrationSettings(s);
  if (!valid.ok()) return valid.WithContext(what);
  QK_ASSIGN_OR_RETURN(const json* sources, r.Array(j, "data_sources"));
  for (const auto& src : *sources) {
    if (!src.is_string()) return r.Error("data_sources", "must hold strings");
    stats.data_sources.push_back(src.get<std::string>());
  }
  QK_ASSIGN_OR_RETURN(stats.items, r.Unsigned(j, "items"));
  QK_ASSIGN_OR_RETURN(stats.runs, r.Unsigned(j, "runs"));
  QK_ASSIGN_OR_RETURN(const json* tensors, r.Object(j, "tensors"));
  for (const auto& [name, tj] : tensors->items()) {
    const JsonReader rt{fmt::format("{}: tensor '{}'", what, name)};
    QK_ASSIGN_OR_RETURN(TensorStats t, TensorFromJson(tj, rt, s));
    if (t.runs > stats.runs) return rt.Error("runs", "exceeds the file's runs");
    stats.tensors.emplace(name, std::move(t));
  }
  return stats;
}

StatusOr<CalibrationStats> LoadCalibrationStats(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  if (!f) return NotFound(fmt::format("cannot open calibration statistics '{}'", path));
  std::stringstream ss;
  ss << f.rdbuf();
  return CalibrationStatsFromJson(ss.str(), path);
}

Status MergeCalibrationStats(CalibrationStats* into, const CalibrationStats& other, const std::string& other_what) {
  if (into->model_sha256 != other.model_sha256) {
    return InvalidArgument(fmt::format("{}: statistics of a different model ({}, sha256 {}...; expected {}, sha256 {}...)",
                                       other_what, other.model_path, other.model_sha256.substr(0, 12), into->model_path,
                                       into->model_sha256.substr(0, 12)));
  }
  const CalibrationSettings &a = into->settings, &b = other.settings;
  if (a.histogram_bins != b.histogram_bins || a.momentum != b.momentum || a.batch_size != b.batch_size) {
    return InvalidArgument(fmt::format(
        "{}: gathered with different settings (histogram bins {}, momentum {}, batch size {}; expected {}, {}, {})",
        other_what, b.histogram_bins, b.momentum, b.batch_size, a.histogram_bins, a.momentum, a.batch_size));
  }
  // Merge into a copy first: an error leaves `into` unchanged.
  CalibrationStats merged = *into;
  for (const auto& [name, t] : other.tensors) {
    Status s = quant::MergeTensorStats(&merged.tensors[name], t);
    if (!s.ok()) return s.WithContext(fmt::format("{}: tensor '{}'", other_what, name));
  }
  merged.items += other.items;
  merged.runs += other.runs;
  merged.data_sources.insert(merged.data_sources.end(), other.data_sources.begin(), other.data_sources.end());
  *into = std::move(merged);
  return Status::Ok();
}

}  // namespace quantkit
