// `quantkit quantize MODEL -o OUT --mode dynamic [...]`: post-training quantization. Writes OUT
// atomically (never a partial or stale file on error), records the settings, quantkit's version and
// the input's sha256 in OUT's metadata, prints a summary; --check DIR then compares OUT with MODEL.
#include <fmt/format.h>

#include <cstdio>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <sstream>

#include "cli/cli_common.h"
#include "core/sha256.h"
#include "passes/passes.h"
#include "quant/compare_models.h"
#include "quant/quant_config.h"
#include "quantkit/model_io.h"
#include "quantkit/quantize.h"
#include "quantkit/static_quantize.h"

namespace quantkit::cli {

namespace {

namespace fs = std::filesystem;

std::vector<std::string> SplitCommas(const std::vector<std::string>& args) {
  std::vector<std::string> out;
  for (const auto& arg : args) {
    std::stringstream ss(arg);
    std::string item;
    while (std::getline(ss, item, ','))
      if (!item.empty()) out.push_back(item);
  }
  return out;
}

std::string Bytes(uintmax_t n) {
  if (n >= (uintmax_t{1} << 20)) return fmt::format("{:.2f} MiB ({} bytes)", static_cast<double>(n) / (1 << 20), n);
  return fmt::format("{:.1f} KiB ({} bytes)", static_cast<double>(n) / 1024, n);
}

std::string Summary(const std::string& in, const std::string& out, const QuantizeOptions& o, const QuantizeReport& r,
                    uintmax_t size_in, uintmax_t size_out) {
  std::string s = fmt::format("quantized {} -> {}\n", in, out);
  s += fmt::format("settings: mode {}, format {}, {} weights {} ({} range), activations per {}\n", ToString(o.mode),
                   ToString(o.format), ToString(o.weight_type), o.per_channel ? "per channel" : "per tensor",
                   ToString(o.weight_range), ToString(o.activation_granularity));
  for (const auto& note : r.notes) s += fmt::format("note: {}\n", note);
  s += fmt::format("quantized nodes: {}\n", r.total_quantized());
  for (const auto& [op, count] : r.quantized) s += fmt::format("  {:<12} {}\n", op, count);
  s += fmt::format("left in FP32: {}\n", r.skipped.size());
  for (const auto& sk : r.skipped) s += fmt::format("  {}: {}\n", sk.node, sk.reason);
  for (const auto& [op, count] : r.not_selected) {
    s += fmt::format("not selected (not in --op-types): {} {}\n", count, op);
  }
  const double ratio = size_in ? static_cast<double>(size_out) / static_cast<double>(size_in) : 0.0;
  s += fmt::format("size: {} -> {} ({:.1f}%)\n", Bytes(size_in), Bytes(size_out), 100.0 * ratio);
  return s;
}

// --mode static: statistics (loaded, or gathered now from --calib), ranges by --method, the QDQ
// rewrite, atomic write with the settings in the metadata.
template <typename Args>
int RunStatic(const Args& a, const QuantizeOptions& o, bool op_types_given) {
  std::error_code ec;
  if (Status s = RefuseToOverwriteInput(a.output, {{"model", a.model}, {"statistics file", a.stats}}); !s.ok()) {
    return ReportError(s);
  }
  if (a.stats.empty() == a.calib.empty()) {
    return ReportError(InvalidArgument("--mode static needs exactly one of --stats FILE or --calib DIR"));
  }
  if (!a.format.empty() && a.format != "qdq" && a.format != "qoperator") {
    return ReportError(InvalidArgument(fmt::format("--mode static: --format '{}' must be qdq or qoperator", a.format)));
  }
  const bool qoperator = a.format == "qoperator";
  RangeOptions ro;
  auto method = ParseCalibrationMethod(a.method);
  if (!method.ok()) return ReportError(method.status());
  auto type = ParseActivationType(a.activation_type);
  if (!type.ok()) return ReportError(type.status());
  ro.method = *method;
  ro.type = *type;
  ro.percentile = a.percentile;
  Status s = ValidateRangeOptions(ro);
  if (!s.ok()) return ReportError(s);
  StatusOr<CalibrationStats> stats = InvalidArgument("no statistics");
  if (!a.stats.empty()) {
    stats = LoadCalibrationStats(a.stats);
  } else {
    CalibrationOptions co;
    co.max_items = a.calib_samples;
    co.threads = a.threads;
    stats = CalibrateModel(a.model, a.calib, co);
  }
  if (!stats.ok()) return ReportError(stats.status());
  auto ranges = ComputeRanges(*stats, ro);
  if (!ranges.ok()) return ReportError(ranges.status());
  auto model = LoadModel(a.model);
  if (!model.ok()) return ReportError(model.status());
  s = CheckGraphStructure(*model);
  if (!s.ok()) return ReportError(s.WithContext(a.model));
  auto sha = Sha256OfFile(a.model);
  if (!sha.ok()) return ReportError(sha.status());
  if (!a.stats.empty() && stats->model_sha256 != *sha) {
    return ReportError(InvalidArgument(fmt::format("{}: statistics of a different model (sha256 {}...), not of {}",
                                                   a.stats, stats->model_sha256.substr(0, 12), a.model)));
  }
  StaticQuantizeOptions so;
  if (op_types_given) so.op_types = o.op_types;
  so.exclude = o.exclude;
  so.activation_type = ro.type;
  so.per_channel = o.per_channel;
  so.weight_type = o.weight_type;
  so.weight_range = o.weight_range;
  so.bias_correction = !a.no_bias_correction;
  so.equalize = a.equalize;
  auto report = QuantizeStatic(*model, *ranges, so, ChannelStatsOf(*stats));
  if (!report.ok()) return ReportError(report.status().WithContext(a.model));
  if (qoperator) {
    s = passes::ConvertQdqToQOperator(*model);
    if (!s.ok()) return ReportError(s.WithContext(a.model));
  }
  QuantizeOptions recorded = o;
  recorded.op_types = so.op_types;  // the static set actually used, not the dynamic default
  quant::SetQuantizationMetadata(*model, recorded, *sha);
  const nlohmann::ordered_json static_settings = {
      {"method", ToString(ro.method)},
      {"percentile", ro.percentile},
      {"activation_type", ToString(ro.type)},
      {"per_channel", so.per_channel},
      {"bias_correction", so.bias_correction},
      {"equalization", so.equalize},
      {"statistics", a.stats.empty() ? "calibrated from " + a.calib : a.stats}};
  model->metadata_props.emplace_back("quantkit.static", static_settings.dump());
  s = SaveModel(*model, a.output);
  if (!s.ok()) return ReportError(s);
  const uintmax_t size_in = fs::file_size(a.model, ec), size_out = fs::file_size(a.output, ec);
  std::printf("quantized %s -> %s (static %s, %s ranges, %s activations)\n", a.model.c_str(), a.output.c_str(),
              qoperator ? "QOperator" : "QDQ",
              ToString(ro.method).c_str(), ToString(ro.type).c_str());
  for (const auto& note : report->notes) std::printf("note: %s\n", note.c_str());
  std::printf("quantized nodes: %d\n", report->total_quantized());
  for (const auto& [op, count] : report->quantized) std::printf("  %-12s %d\n", op.c_str(), count);
  std::printf("left in FP32: %zu\n", report->skipped.size());
  for (const auto& sk : report->skipped) std::printf("  %s: %s\n", sk.node.c_str(), sk.reason.c_str());
  std::printf("size: %s -> %s\n", Bytes(size_in).c_str(), Bytes(size_out).c_str());
  if (!a.check.empty()) {
    quant::CompareOptions copts;
    copts.threads = a.threads;
    auto cmp = quant::CompareModels(a.model, a.output, a.check, copts);
    if (!cmp.ok()) {
      fs::remove(a.output, ec);
      return ReportError(cmp.status().WithContext("--check"));
    }
    std::fputs(("check against the FP32 model:\n" + quant::FormatComparisonTable(*cmp)).c_str(), stdout);
  }
  return 0;
}

}  // namespace

Command AddQuantizeCommand(CLI::App& app) {
  auto* cmd = app.add_subcommand("quantize", "Quantize a model (post-training, dynamic or static)");
  struct Args {
    std::string model, output, mode, weight_type, granularity, format, config, check;
    std::vector<std::string> op_types, exclude;
    bool per_channel = false, per_tensor = false;
    std::string weight_range;
    int threads = 0;
    // --mode static
    std::string stats, calib, method = "minmax", activation_type = "uint8";
    double percentile = 99.999;
    uint64_t calib_samples = 0;
    bool no_bias_correction = false, equalize = false;
  };
  auto a = std::make_shared<Args>();
  cmd->add_option("model", a->model, "FP32 ONNX model")->required();
  cmd->add_option("-o,--output", a->output, "Quantized model to write")->required();
  auto* mode = cmd->add_option("--mode", a->mode, "dynamic (default) or static (needs --stats or --calib)");
  cmd->add_option("--stats", a->stats, "static: calibration statistics from `quantkit calibrate` (no inference rerun)");
  cmd->add_option("--calib", a->calib, "static: calibration sample directory (calibrates first; see `quantkit calibrate`)");
  cmd->add_option("--calib-samples", a->calib_samples, "static with --calib: use at most this many items");
  cmd->add_option("--method", a->method, "static: minmax (default), moving-average, percentile, entropy or mse");
  cmd->add_option("--percentile", a->percentile, "static: percentile for --method percentile (default 99.999)");
  cmd->add_option("--activation-type", a->activation_type, "static: uint8 (asymmetric, default) or int8 (symmetric)");
  cmd->add_flag("--no-bias-correction", a->no_bias_correction,
                "static: keep biases as they are (default: each Conv/Gemm bias absorbs the mean error its quantized "
                "weights add, from the calibrated channel means)");
  cmd->add_flag("--equalize", a->equalize,
                "static: cross-layer equalization: Conv -> [Relu] -> Conv pairs rescaled per channel to even out the "
                "channels of the tensor between them (exact in float; helps models whose channels span orders of "
                "magnitude, e.g. BlazeFace)");
  auto* op_types = cmd->add_option("--op-types", a->op_types, "Op types to quantize, comma-separated (default MatMul,Gemm,LSTM,GRU; Conv opt-in)");
  auto* exclude = cmd->add_option("--exclude", a->exclude, "Node names (exact or regex) to keep in FP32, comma-separated");
  auto* weight_type = cmd->add_option("--weight-type", a->weight_type,
                                      "uint8-symmetric (default: int8 values + 128, zero point 128; ONNX Runtime runs it exactly "
                                      "on every x86 CPU), int8 (symmetric; ONNX Runtime's u8s8 kernels saturate without VNNI) "
                                      "or uint8 (asymmetric)");
  auto* per_channel = cmd->add_flag("--per-channel", a->per_channel, "One scale per output channel (default)");
  auto* per_tensor = cmd->add_flag("--per-tensor", a->per_tensor, "One scale per weight tensor");
  per_channel->excludes(per_tensor);
  auto* weight_range = cmd->add_option("--weight-range", a->weight_range,
                                       "narrow ([-127,127] (+128 for uint8-symmetric), default), full ([-128,127]) or reduced "
                                       "(7 bits: [-64,64], uint8 [0,127]; avoids int16 saturation in ONNX Runtime's u8s8 "
                                       "AVX2 kernels with int8 weights)");
  auto* granularity = cmd->add_option("--activation-granularity", a->granularity, "tensor (default) or row (int8 per row; symmetric weights, written as int8)");
  auto* format = cmd->add_option("--format", a->format,
                                 "dynamic: integer-ops (default) or qdq-weights; static: qdq (default) or qoperator");
  cmd->add_option("--config", a->config, "JSON file with the same settings (keys: mode, op_types, exclude, weight_type, "
                                         "per_channel, weight_range, activation_granularity, format); flags override it");
  cmd->add_option("--check", a->check, "After writing, compare the output with the input model on this sample directory");
  cmd->add_option("--threads", a->threads, "Worker threads for --check and --calib (default: all cores)");
  AddMemoryLimitOption(cmd);
  return {cmd, [=]() -> int {
            // Settings: defaults, then the config file, then the flags given on the command line.
            QuantizeOptions o;
            if (!a->config.empty()) {
              Status s = quant::ApplyQuantizeConfigFile(a->config, &o);
              if (!s.ok()) return ReportError(s);
            }
            auto apply = [](auto parsed, auto* field) -> Status {
              if (!parsed.ok()) return parsed.status();
              *field = *parsed;
              return Status::Ok();
            };
            Status s;
            if (mode->count()) s = apply(ParseQuantMode(a->mode), &o.mode);
            if (s.ok() && op_types->count()) o.op_types = SplitCommas(a->op_types);
            if (s.ok() && exclude->count()) o.exclude = SplitCommas(a->exclude);
            if (s.ok() && weight_type->count()) s = apply(ParseQuantWeightType(a->weight_type), &o.weight_type);
            if (per_channel->count()) o.per_channel = true;
            if (per_tensor->count()) o.per_channel = false;
            if (s.ok() && weight_range->count()) s = apply(ParseWeightRange(a->weight_range), &o.weight_range);
            if (s.ok() && granularity->count()) s = apply(ParseActivationGranularity(a->granularity), &o.activation_granularity);
            // Static mode has its own formats (qdq, qoperator), read in RunStatic.
            if (s.ok() && format->count() && o.mode != QuantMode::kStatic) s = apply(ParseQuantFormat(a->format), &o.format);
            if (s.ok() && o.mode == QuantMode::kStatic) return RunStatic(*a, o, op_types->count() > 0);
            if (s.ok()) s = ValidateQuantizeOptions(o);
            if (!s.ok()) return ReportError(s);

            std::error_code ec;
            s = RefuseToOverwriteInput(a->output, {{"model", a->model}});
            if (!s.ok()) return ReportError(s);
            auto model = LoadModel(a->model);
            if (!model.ok()) return ReportError(model.status());
            s = CheckGraphStructure(*model);
            if (!s.ok()) return ReportError(s.WithContext(a->model));
            auto sha = Sha256OfFile(a->model);
            if (!sha.ok()) return ReportError(sha.status());
            auto report = QuantizeDynamic(*model, o);
            if (!report.ok()) return ReportError(report.status().WithContext(a->model));
            quant::SetQuantizationMetadata(*model, o, *sha);
            s = SaveModel(*model, a->output);
            if (!s.ok()) return ReportError(s);

            const uintmax_t size_in = fs::file_size(a->model, ec), size_out = fs::file_size(a->output, ec);
            std::fputs(Summary(a->model, a->output, o, *report, size_in, size_out).c_str(), stdout);
            if (!a->check.empty()) {
              quant::CompareOptions copts;
              copts.threads = a->threads;
              auto cmp = quant::CompareModels(a->model, a->output, a->check, copts);
              if (!cmp.ok()) {
                fs::remove(a->output, ec);  // a failed check leaves no output behind
                return ReportError(cmp.status().WithContext("--check"));
              }
              std::fputs(("check against the FP32 model:\n" + quant::FormatComparisonTable(*cmp)).c_str(), stdout);
            }
            return 0;
          }};
}

}  // namespace quantkit::cli
