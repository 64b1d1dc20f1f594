// `quantkit run MODEL --input NAME=FILE.npy ... --output-dir DIR`: runs a model, writes outputs.
#include <fmt/format.h>

#include <chrono>
#include <cmath>
#include <filesystem>

#include "cli/cli_common.h"
#include "quantkit/model_io.h"
#include "quantkit/npy.h"
#include "quantkit/session.h"

namespace quantkit::cli {

namespace {

// Reads NAME=FILE: .npy, or .pb (TensorProto).
StatusOr<std::pair<std::string, Tensor>> ReadInputArg(const std::string& arg) {
  const auto eq = arg.find('=');
  if (eq == std::string::npos || eq == 0 || eq + 1 == arg.size()) {
    return InvalidArgument(fmt::format("--input '{}' must be NAME=FILE.npy", arg));
  }
  const std::string name = arg.substr(0, eq), file = arg.substr(eq + 1);
  StatusOr<Tensor> t = file.size() > 3 && file.substr(file.size() - 3) == ".pb" ? LoadTensorProto(file) : ReadNpy(file);
  if (!t.ok()) return t.status().WithContext(fmt::format("input '{}'", name));
  return std::make_pair(name, std::move(t).value());
}

}  // namespace

Command AddRunCommand(CLI::App& app) {
  auto* cmd = app.add_subcommand("run", "Run a model on .npy inputs and write one .npy per output");
  struct Args {
    std::string model;
    std::vector<std::string> inputs;
    std::string output_dir;
    int threads = 0;
    bool no_optimize = false;
    uint64_t max_memory_mb = 0;
  };
  auto a = std::make_shared<Args>();
  cmd->add_option("model", a->model, "ONNX model file")->required();
  cmd->add_option("--input,-i", a->inputs, "NAME=FILE.npy (or .pb TensorProto), once per model input");
  cmd->add_option("--output-dir,-o", a->output_dir, "Directory for <output>.npy files (created if missing)")->required();
  cmd->add_option("--threads", a->threads, "Worker threads (default: all cores)");
  cmd->add_option("--max-memory-mb", a->max_memory_mb, "Limit on runtime tensor memory (default: half of RAM)");
  cmd->add_flag("--no-optimize", a->no_optimize, "Skip graph passes (constant folding, BN folding, ...)");
  return {cmd, [a]() -> int {
            std::vector<std::pair<std::string, Tensor>> feeds;
            for (const auto& arg : a->inputs) {
              auto in = ReadInputArg(arg);
              if (!in.ok()) return ReportError(in.status());
              feeds.push_back(std::move(in).value());
            }
            auto model = LoadModel(a->model);
            if (!model.ok()) return ReportError(model.status());
            SessionOptions opts;
            opts.threads = a->threads;
            opts.optimize = !a->no_optimize;
            opts.max_memory_bytes = a->max_memory_mb << 20;
            auto session = Session::Create(std::move(model).value(), opts);
            if (!session.ok()) return ReportError(session.status().WithContext(a->model));
            const auto t0 = std::chrono::steady_clock::now();
            std::vector<Tensor> outputs;
            Status s = (*session)->Run(feeds, &outputs);
            if (!s.ok()) return ReportError(s.WithContext(a->model));
            const double ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
            std::error_code ec;
            std::filesystem::create_directories(a->output_dir, ec);
            if (ec) return ReportError(InvalidArgument(fmt::format("cannot create output directory '{}': {}", a->output_dir, ec.message())));
            const auto& infos = (*session)->outputs();
            for (size_t i = 0; i < outputs.size(); ++i) {
              const std::string file = (std::filesystem::path(a->output_dir) / (SafeFileName(infos[i].name) + ".npy")).string();
              Status w = WriteNpy(outputs[i], file);
              if (!w.ok()) return ReportError(w);
              std::printf("%-24s %-8s %-20s -> %s\n", infos[i].name.c_str(), DTypeName(outputs[i].dtype()).c_str(),
                          ShapeToString(outputs[i].shape()).c_str(), file.c_str());
            }
            std::printf("ran in %.2f ms\n", ms);
            return 0;
          }};
}

}  // namespace quantkit::cli
