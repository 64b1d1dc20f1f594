// QuantizeOptions <-> JSON (nlohmann-json). Values are validated by the same parsers as the CLI.
#include "quant/quant_config.h"

#include <fmt/format.h>

#include <algorithm>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

namespace quantkit {

// ---- option names shared by the CLI, the config file and the metadata ----

const std::vector<std::string>& QuantizableOpTypes() {
  static const std::vector<std::string> kTypes = {"MatMul", "Gemm", "Conv", "LSTM", "GRU"};
  return kTypes;
}

int QuantizeReport::total_quantized() const {
  int total = 0;
  for (const auto& [op, count] : quantized) total += count;
  return total;
}

std::string ToString(QuantMode v) { return v == QuantMode::kDynamic ? "dynamic" : "static"; }
std::string ToString(QuantWeightType v) {
  return v == QuantWeightType::kInt8 ? "int8" : v == QuantWeightType::kUInt8 ? "uint8" : "uint8-symmetric";
}
std::string ToString(QuantFormat v) { return v == QuantFormat::kIntegerOps ? "integer-ops" : "qdq-weights"; }
std::string ToString(ActivationGranularity v) { return v == ActivationGranularity::kTensor ? "tensor" : "row"; }
std::string ToString(WeightRange v) {
  return v == WeightRange::kNarrow ? "narrow" : v == WeightRange::kFull ? "full" : "reduced";
}

StatusOr<QuantMode> ParseQuantMode(const std::string& s) {
  if (s == "dynamic") return QuantMode::kDynamic;
  if (s == "static") return QuantMode::kStatic;
  return InvalidArgument(fmt::format("unknown mode '{}' (dynamic or static)", s));
}
StatusOr<QuantWeightType> ParseQuantWeightType(const std::string& s) {
  if (s == "int8") return QuantWeightType::kInt8;
  if (s == "uint8") return QuantWeightType::kUInt8;
  if (s == "uint8-symmetric") return QuantWeightType::kUInt8Symmetric;
  return InvalidArgument(fmt::format("unknown weight type '{}' (uint8-symmetric, int8 or uint8)", s));
}
StatusOr<QuantFormat> ParseQuantFormat(const std::string& s) {
  if (s == "integer-ops") return QuantFormat::kIntegerOps;
  if (s == "qdq-weights") return QuantFormat::kQdqWeights;
  return InvalidArgument(fmt::format("unknown format '{}' (integer-ops or qdq-weights)", s));
}
StatusOr<ActivationGranularity> ParseActivationGranularity(const std::string& s) {
  if (s == "tensor") return ActivationGranularity::kTensor;
  if (s == "row") return ActivationGranularity::kRow;
  return InvalidArgument(fmt::format("unknown activation granularity '{}' (tensor or row)", s));
}

StatusOr<WeightRange> ParseWeightRange(const std::string& s) {
  if (s == "narrow") return WeightRange::kNarrow;
  if (s == "full") return WeightRange::kFull;
  if (s == "reduced") return WeightRange::kReduced;
  return InvalidArgument(fmt::format("unknown weight range '{}' (narrow, full or reduced)", s));
}

Status ValidateQuantizeOptions(const QuantizeOptions& o) {
  if (o.mode == QuantMode::kStatic) {
    return Unimplemented("static quantization is not implemented yet (use --mode dynamic)");
  }
  const auto& known = QuantizableOpTypes();
  if (o.op_types.empty()) return InvalidArgument("no op types to quantize (op types list is empty)");
  for (const auto& op : o.op_types) {
    if (std::find(known.begin(), known.end(), op) == known.end()) {
      return InvalidArgument(fmt::format("op type '{}' cannot be quantized (supported: {})", op, fmt::join(known, ", ")));
    }
  }
  for (const auto& pattern : o.exclude) {
    if (pattern.empty()) return InvalidArgument("empty name in the exclude list");
  }
  if (o.activation_granularity == ActivationGranularity::kRow && o.weight_type == QuantWeightType::kUInt8) {
    return InvalidArgument(
        "row activation granularity quantizes activations to int8, which MatMulInteger pairs only with int8 "
        "weights: use weight type int8 or uint8-symmetric (written as int8 there)");
  }
  return Status::Ok();
}

}  // namespace quantkit

namespace quantkit::quant {

namespace {

using nlohmann::json;

StatusOr<std::string> GetString(const json& v, const std::string& where) {
  if (!v.is_string()) return InvalidArgument(fmt::format("{}: expected a string, got {}", where, v.dump()));
  return v.get<std::string>();
}

StatusOr<bool> GetBool(const json& v, const std::string& where) {
  if (!v.is_boolean()) return InvalidArgument(fmt::format("{}: expected true or false, got {}", where, v.dump()));
  return v.get<bool>();
}

// A list of strings; a single string is accepted as a comma-separated list (as on the command line).
StatusOr<std::vector<std::string>> GetStringList(const json& v, const std::string& where) {
  std::vector<std::string> out;
  if (v.is_string()) {
    std::stringstream ss(v.get<std::string>());
    std::string item;
    while (std::getline(ss, item, ','))
      if (!item.empty()) out.push_back(item);
    return out;
  }
  if (!v.is_array()) return InvalidArgument(fmt::format("{}: expected a list of strings, got {}", where, v.dump()));
  for (const auto& e : v) {
    QK_ASSIGN_OR_RETURN(std::string s, GetString(e, where));
    out.push_back(std::move(s));
  }
  return out;
}

template <typename T>
Status Assign(StatusOr<T> parsed, const std::string& where, T* out) {
  if (!parsed.ok()) return parsed.status().WithContext(where);
  *out = std::move(parsed).value();
  return Status::Ok();
}

}  // namespace

Status ApplyQuantizeConfigJson(const std::string& json_text, const std::string& what, QuantizeOptions* options) {
  json j = json::parse(json_text, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded()) return InvalidArgument(fmt::format("{}: not valid JSON", what));
  if (!j.is_object()) return InvalidArgument(fmt::format("{}: expected a JSON object of settings", what));
  QuantizeOptions o = *options;
  for (const auto& [key, value] : j.items()) {
    const std::string where = fmt::format("{}: key '{}'", what, key);
    if (key == "mode") {
      QK_ASSIGN_OR_RETURN(std::string s, GetString(value, where));
      QK_RETURN_IF_ERROR(Assign(ParseQuantMode(s), where, &o.mode));
    } else if (key == "op_types") {
      QK_ASSIGN_OR_RETURN(o.op_types, GetStringList(value, where));
    } else if (key == "exclude") {
      QK_ASSIGN_OR_RETURN(o.exclude, GetStringList(value, where));
    } else if (key == "weight_type") {
      QK_ASSIGN_OR_RETURN(std::string s, GetString(value, where));
      QK_RETURN_IF_ERROR(Assign(ParseQuantWeightType(s), where, &o.weight_type));
    } else if (key == "per_channel") {
      QK_ASSIGN_OR_RETURN(o.per_channel, GetBool(value, where));
    } else if (key == "weight_range") {
      QK_ASSIGN_OR_RETURN(std::string s, GetString(value, where));
      QK_RETURN_IF_ERROR(Assign(ParseWeightRange(s), where, &o.weight_range));
    } else if (key == "activation_granularity") {
      QK_ASSIGN_OR_RETURN(std::string s, GetString(value, where));
      QK_RETURN_IF_ERROR(Assign(ParseActivationGranularity(s), where, &o.activation_granularity));
    } else if (key == "format") {
      QK_ASSIGN_OR_RETURN(std::string s, GetString(value, where));
      QK_RETURN_IF_ERROR(Assign(ParseQuantFormat(s), where, &o.format));
    } else {
      return InvalidArgument(fmt::format(
          "{}: unknown key '{}' (known: mode, op_types, exclude, weight_type, per_channel, weight_range, "
          "activation_granularity, format)",
          what, key));
    }
  }
  *options = std::move(o);
  return Status::Ok();
}

Status ApplyQuantizeConfigFile(const std::string& path, QuantizeOptions* options) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return NotFound(fmt::format("config file '{}' cannot be opened", path));
  std::stringstream ss;
  ss << in.rdbuf();
  return ApplyQuantizeConfigJson(ss.str(), "config file '" + path + "'", options);
}

std::string QuantizeOptionsToJson(const QuantizeOptions& o) {
  json j;  // std::map-backed: keys come out sorted, so the same settings give the same text
  j["mode"] = ToString(o.mode);
  j["op_types"] = o.op_types;
  j["exclude"] = o.exclude;
  j["weight_type"] = ToString(o.weight_type);
  j["per_channel"] = o.per_channel;
  j["weight_range"] = ToString(o.weight_range);
  j["activation_granularity"] = ToString(o.activation_granularity);
  j["format"] = ToString(o.format);
  return j.dump();
}

void SetQuantizationMetadata(Model& model, const QuantizeOptions& options, const std::string& source_sha256) {
  const std::vector<std::pair<std::string, std::string>> entries = {
      {"quantkit.quantization", QuantizeOptionsToJson(options)},
      {"quantkit.version", QUANTKIT_VERSION},
      {"quantkit.source_sha256", source_sha256},
  };
  for (const auto& entry : entries) {
    const std::string& key = entry.first;  // not a structured binding: clang 14 cannot capture those
    const std::string& value = entry.second;
    auto it = std::find_if(model.metadata_props.begin(), model.metadata_props.end(),
                           [&](const auto& kv) { return kv.first == key; });
    if (it != model.metadata_props.end()) {
      it->second = value;
    } else {
      model.metadata_props.emplace_back(key, value);
    }
  }
}

}  // namespace quantkit::quant
