// `quantkit calibrate MODEL --calib DIR -o stats.json`: runs the FP32 model over calibration data
// and saves the activation statistics (include/quantkit/calibration.h);
// `quantkit calibrate --merge a.json b.json ... -o all.json` merges statistics of shards.
#include <fmt/format.h>
#include <fmt/ranges.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <sstream>

#include "cli/cli_common.h"
#include "quantkit/calibration.h"

namespace quantkit::cli {

namespace {

struct CalibrateArgs {
  std::vector<std::string> positional;  // MODEL, or the statistics files with --merge
  bool merge = false;
  std::string output, config, calib, method = "minmax", activation_type = "uint8", image_size, layout, color = "RGB";
  std::string mean, std;
  double percentile = 99.999, momentum = 0.01, scale = 1.0 / 255.0;
  int64_t calib_samples = 0, batch_size = 1, histogram_bins = 4096, resize_shorter = 0, threads = 0;
};

StatusOr<std::vector<double>> ParseNumberList(const std::string& text, const std::string& what) {
  std::vector<double> values;
  std::stringstream ss(text);
  std::string item;
  while (std::getline(ss, item, ',')) {
    try {
      size_t used = 0;
      values.push_back(std::stod(item, &used));
      if (used != item.size()) throw std::invalid_argument(item);
    } catch (const std::exception&) {
      return InvalidArgument(fmt::format("{} '{}' must be numbers separated by commas", what, text));
    }
  }
  if (values.empty()) return InvalidArgument(fmt::format("{} is empty", what));
  return values;
}

Status ParseImageSize(const std::string& text, ImagePreprocessing* image) {
  const auto x = text.find_first_of("xX");
  try {
    if (x == std::string::npos) throw std::invalid_argument(text);
    size_t used_h = 0, used_w = 0;
    image->height = std::stoll(text.substr(0, x), &used_h);
    image->width = std::stoll(text.substr(x + 1), &used_w);
    if (used_h != x || used_w != text.size() - x - 1 || image->height <= 0 || image->width <= 0) {
      throw std::invalid_argument(text);
    }
  } catch (const std::exception&) {
    return InvalidArgument(fmt::format("image size '{}' must be HxW, e.g. 224x224", text));
  }
  return Status::Ok();
}

// Applies a --config JSON file: keys are the flag names with '_' for '-' (calib, calib_samples,
// method, percentile, activation_type, batch_size, histogram_bins, momentum, image_size,
// resize_shorter, layout, color, scale, mean, std, threads), either at the top level or inside a
// "calibration" object (so one file can also hold the quantizer's settings). Flags given on the
// command line win.
Status ApplyConfig(const std::string& path, const CLI::App& cmd, CalibrateArgs* a) {
  std::ifstream f(path);
  if (!f) return NotFound(fmt::format("cannot open config '{}'", path));
  std::stringstream ss;
  ss << f.rdbuf();
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(ss.str());
  } catch (const nlohmann::json::exception& e) {
    return InvalidArgument(fmt::format("{}: not valid JSON: {}", path, e.what()));
  }
  if (!j.is_object()) return InvalidArgument(fmt::format("{}: must hold a JSON object", path));
  if (j.contains("calibration")) {
    j = j["calibration"];
    if (!j.is_object()) return InvalidArgument(fmt::format("{}: 'calibration' must be an object", path));
  }
  const std::map<std::string, std::string*> strings = {
      {"calib", &a->calib},   {"method", &a->method}, {"activation_type", &a->activation_type},
      {"layout", &a->layout}, {"color", &a->color},   {"image_size", &a->image_size}};
  const std::map<std::string, double*> numbers = {
      {"percentile", &a->percentile}, {"momentum", &a->momentum}, {"scale", &a->scale}};
  const std::map<std::string, int64_t*> integers = {
      {"calib_samples", &a->calib_samples}, {"batch_size", &a->batch_size}, {"histogram_bins", &a->histogram_bins},
      {"resize_shorter", &a->resize_shorter}, {"threads", &a->threads}};
  const std::map<std::string, std::string*> number_lists = {{"mean", &a->mean}, {"std", &a->std}};
  for (const auto& [key, value] : j.items()) {
    std::string flag = "--" + key;
    for (char& c : flag)
      if (c == '_') c = '-';
    const auto bad = [&, &key = key](const char* type) {  // clang 14 cannot capture a structured binding
      return InvalidArgument(fmt::format("{}: '{}' must be {}", path, key, type));
    };
    if (auto it = strings.find(key); it != strings.end()) {
      if (!value.is_string()) return bad("a string");
      if (cmd.count(flag) == 0) *it->second = value.get<std::string>();
    } else if (auto it = numbers.find(key); it != numbers.end()) {
      if (!value.is_number()) return bad("a number");
      if (cmd.count(flag) == 0) *it->second = value.get<double>();
    } else if (auto it = integers.find(key); it != integers.end()) {
      if (!value.is_number_integer() || value.get<int64_t>() < 0) return bad("a non-negative integer");
      if (cmd.count(flag) == 0) *it->second = value.get<int64_t>();
    } else if (auto it = number_lists.find(key); it != number_lists.end()) {
      // Kept as the flag's text form ("a,b,c") so one parser handles both.
      std::vector<std::string> parts;
      for (const auto& v : value.is_array() ? value : nlohmann::json::array({value})) {
        if (!v.is_number()) return bad("a number or a list of numbers");
        parts.push_back(fmt::format("{}", v.get<double>()));
      }
      if (cmd.count(flag) == 0) *it->second = fmt::format("{}", fmt::join(parts, ","));
    } else {
      return InvalidArgument(fmt::format("{}: unknown key '{}'", path, key));
    }
  }
  return Status::Ok();
}

// A progress bar on a terminal (stderr), plain lines on stdout at every 10% otherwise.
class ProgressReporter {
 public:
  ProgressReporter() : tty_(isatty(2) == 1), start_(Clock::now()) {}
  void Update(const CalibrationProgress& p) {
    const double elapsed = std::chrono::duration<double>(Clock::now() - start_).count();
    const double rate = elapsed > 0 ? static_cast<double>(p.items_done) / elapsed : 0.0;
    const uint64_t expected = std::max(p.items_expected, p.items_done);
    const double fraction = expected > 0 ? static_cast<double>(p.items_done) / static_cast<double>(expected) : 1.0;
    if (tty_) {
      if (elapsed - last_draw_ < 0.1 && p.items_done < expected) return;
      last_draw_ = elapsed;
      constexpr int kWidth = 30;
      const int filled = static_cast<int>(fraction * kWidth);
      std::fprintf(stderr, "\rcalibrate [%s%s] %llu/%llu items  %.1f items/s ", std::string(filled, '#').c_str(),
                   std::string(kWidth - filled, '.').c_str(), static_cast<unsigned long long>(p.items_done),
                   static_cast<unsigned long long>(expected), rate);
      drawn_ = true;
      return;
    }
    const int decile = static_cast<int>(fraction * 10);
    if (decile > last_decile_) {
      last_decile_ = decile;
      std::printf("calibrate: %llu/%llu items (%d%%), %.1f items/s\n", static_cast<unsigned long long>(p.items_done),
                  static_cast<unsigned long long>(expected), decile * 10, rate);
      std::fflush(stdout);
    }
  }
  // Ends the bar's line (before any other output).
  void Finish() {
    if (drawn_) std::fputc('\n', stderr);
    drawn_ = false;
  }

 private:
  using Clock = std::chrono::steady_clock;
  bool tty_;
  Clock::time_point start_;
  double last_draw_ = -1;
  bool drawn_ = false;
  int last_decile_ = 0;
};

int RunMerge(const CalibrateArgs& a) {
  if (!a.calib.empty()) return ReportError(InvalidArgument("--merge combines statistics files; it takes no --calib"));
  if (a.positional.size() < 2) {
    return ReportError(InvalidArgument("--merge needs at least two statistics files"));
  }
  std::vector<NamedInput> inputs;
  for (const auto& f : a.positional) inputs.push_back({"statistics file", f});
  if (Status s = RefuseToOverwriteInput(a.output, inputs); !s.ok()) return ReportError(s);
  auto merged = LoadCalibrationStats(a.positional[0]);
  if (!merged.ok()) return ReportError(merged.status());
  for (size_t i = 1; i < a.positional.size(); ++i) {
    auto next = LoadCalibrationStats(a.positional[i]);
    if (!next.ok()) return ReportError(next.status());
    Status s = MergeCalibrationStats(&*merged, *next, a.positional[i]);
    if (!s.ok()) return ReportError(s);
  }
  Status s = SaveCalibrationStats(*merged, a.output);
  if (!s.ok()) return ReportError(s);
  std::printf("merged %zu statistics files: %llu items, %zu tensors -> %s\n", a.positional.size(),
              static_cast<unsigned long long>(merged->items), merged->tensors.size(), a.output.c_str());
  return 0;
}

int RunCalibrate(const CLI::App& cmd, CalibrateArgs a) {
  if (!a.config.empty()) {
    Status s = ApplyConfig(a.config, cmd, &a);
    if (!s.ok()) return ReportError(s);
  }
  if (a.positional.size() != 1) {
    return ReportError(InvalidArgument(a.positional.empty() ? "give the model to calibrate (or --merge FILES)"
                                                            : "give exactly one model (to merge statistics use --merge)"));
  }
  if (a.calib.empty()) return ReportError(InvalidArgument("give the calibration data with --calib DIR"));
  if (Status s = RefuseToOverwriteInput(a.output, {{"model", a.positional[0]}}); !s.ok()) return ReportError(s);
  CalibrationOptions options;
  if (a.calib_samples < 0) return ReportError(InvalidArgument("--calib-samples must be >= 0"));
  options.max_items = static_cast<uint64_t>(a.calib_samples);
  options.threads = static_cast<int>(a.threads);
  CalibrationSettings& s = options.settings;
  s.histogram_bins = a.histogram_bins;
  s.momentum = a.momentum;
  s.batch_size = a.batch_size;
  s.ranges.percentile = a.percentile;
  auto method = ParseCalibrationMethod(a.method);
  if (!method.ok()) return ReportError(method.status());
  s.ranges.method = *method;
  auto type = ParseActivationType(a.activation_type);
  if (!type.ok()) return ReportError(type.status());
  s.ranges.type = *type;
  ImagePreprocessing& img = options.image;
  if (!a.image_size.empty()) {
    Status st = ParseImageSize(a.image_size, &img);
    if (!st.ok()) return ReportError(st);
  }
  img.resize_shorter = a.resize_shorter;
  img.layout = a.layout;
  img.color = a.color;
  img.scale = a.scale;
  if (!a.mean.empty()) {
    auto v = ParseNumberList(a.mean, "--mean");
    if (!v.ok()) return ReportError(v.status());
    img.mean = *v;
  }
  if (!a.std.empty()) {
    auto v = ParseNumberList(a.std, "--std");
    if (!v.ok()) return ReportError(v.status());
    img.std = *v;
  }
  ProgressReporter reporter;
  options.progress = [&](const CalibrationProgress& p) { reporter.Update(p); };
  options.log = [](const std::string& line) {
    std::printf("%s\n", line.c_str());
    std::fflush(stdout);
  };
  const auto start = std::chrono::steady_clock::now();
  auto stats = CalibrateModel(a.positional[0], a.calib, options);
  reporter.Finish();
  if (!stats.ok()) return ReportError(stats.status());
  Status saved = SaveCalibrationStats(*stats, a.output);
  if (!saved.ok()) return ReportError(saved);
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  std::printf("calibrated %llu items in %llu runs (%.1f s): %zu float32 tensors -> %s (default method %s)\n",
              static_cast<unsigned long long>(stats->items), static_cast<unsigned long long>(stats->runs), seconds,
              stats->tensors.size(), a.output.c_str(), ToString(s.ranges.method).c_str());
  return 0;
}

}  // namespace

Command AddCalibrateCommand(CLI::App& app) {
  auto* cmd = app.add_subcommand(
      "calibrate", "Gather activation statistics for static quantization (or merge statistics files with --merge)");
  auto a = std::make_shared<CalibrateArgs>();
  cmd->add_option("files", a->positional, "MODEL.onnx; with --merge: the statistics files to merge, in sample order");
  cmd->add_flag("--merge", a->merge, "Merge statistics files (same model, same settings) into one");
  cmd->add_option("-o,--output", a->output, "Statistics file to write (JSON)")->required();
  cmd->add_option("--calib", a->calib,
                  "Calibration data: .npy / .npz / ONNX .pb samples (as for compare --data), or an image folder");
  cmd->add_option("--calib-samples", a->calib_samples, "Use at most this many items (default: all)");
  cmd->add_option("--method", a->method,
                  "Default range method recorded for the quantizer: minmax, moving-average, percentile, entropy, mse "
                  "(statistics for every method are always saved)");
  cmd->add_option("--percentile", a->percentile, "Percentile for --method percentile (default 99.999)");
  cmd->add_option("--activation-type", a->activation_type, "uint8 (asymmetric, default) or int8 (symmetric)");
  cmd->add_option("--batch-size", a->batch_size,
                  "Items per model run when a file holds a batch (default 1; 0 feeds each file whole)");
  cmd->add_option("--histogram-bins", a->histogram_bins, "Histogram bins, a power of two (default 4096)");
  cmd->add_option("--momentum", a->momentum, "Moving-average momentum (default 0.01)");
  cmd->add_option("--image-size", a->image_size, "Image folders: model input size HxW (default: the model's)");
  cmd->add_option("--resize-shorter", a->resize_shorter,
                  "Image folders: resize the shorter side to this, then centre-crop to the image size");
  cmd->add_option("--layout", a->layout, "Image folders: NCHW or NHWC (default: from the model input)");
  cmd->add_option("--color", a->color, "Image folders: RGB (default) or BGR channel order");
  cmd->add_option("--scale", a->scale, "Image folders: pixel multiplier before mean/std (default 1/255)");
  cmd->add_option("--mean", a->mean, "Image folders: per-channel mean, e.g. 0.485,0.456,0.406 (default 0)");
  cmd->add_option("--std", a->std, "Image folders: per-channel std, e.g. 0.229,0.224,0.225 (default 1)");
  cmd->add_option("--config", a->config,
                  "JSON file with the same settings (keys: the flag names with '_'; flags given here win)");
  cmd->add_option("--threads", a->threads, "Worker threads (default: all cores)");
  AddMemoryLimitOption(cmd);
  return {cmd, [a, cmd]() -> int { return a->merge ? RunMerge(*a) : RunCalibrate(*cmd, *a); }};
}

}  // namespace quantkit::cli
