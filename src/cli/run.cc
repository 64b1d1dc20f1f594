// `quantkit run MODEL --input NAME=FILE.npy ... --output-dir DIR`: runs a model, writes outputs.
// With `--data DIR` it runs every sample of a sample directory in order with one session and
// writes DIR_OUT/<sample>/<output>.npy; `--carry OUTPUT=INPUT` feeds an output of sample i to an
// input of sample i+1 (stateful models such as Silero VAD, run frame by frame).
#include <fmt/format.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <filesystem>
#include <map>

#include "cli/cli_common.h"
#include "quant/dataset.h"
#include "quantkit/model_io.h"
#include "quantkit/npy.h"
#include "quantkit/session.h"

namespace quantkit::cli {

namespace fs = std::filesystem;

// Reads NAME=FILE: .npy, or .pb (TensorProto). Also used by `quantkit bench` (bench.cc).
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

namespace {

struct Carry {
  std::string output;
  std::string input;
  size_t output_index = 0;
};

// Parses --carry OUTPUT=INPUT against the session's outputs and the --input feeds.
StatusOr<std::vector<Carry>> ParseCarries(const std::vector<std::string>& args, const Session& session,
                                          const std::vector<std::pair<std::string, Tensor>>& feeds) {
  std::vector<Carry> carries;
  for (const auto& arg : args) {
    const auto eq = arg.find('=');
    if (eq == std::string::npos || eq == 0 || eq + 1 == arg.size()) {
      return InvalidArgument(fmt::format("--carry '{}' must be OUTPUT=INPUT", arg));
    }
    Carry c{arg.substr(0, eq), arg.substr(eq + 1)};
    const auto& outs = session.outputs();
    auto out_it = std::find_if(outs.begin(), outs.end(), [&](const ValueInfo& v) { return v.name == c.output; });
    if (out_it == outs.end()) return InvalidArgument(fmt::format("--carry '{}': the model has no output '{}'", arg, c.output));
    c.output_index = static_cast<size_t>(out_it - outs.begin());
    const auto& ins = session.inputs();
    if (std::none_of(ins.begin(), ins.end(), [&](const ValueInfo& v) { return v.name == c.input; })) {
      return InvalidArgument(fmt::format("--carry '{}': the model has no input '{}'", arg, c.input));
    }
    // The first sample needs a starting value: the --input file.
    if (std::none_of(feeds.begin(), feeds.end(), [&](const auto& f) { return f.first == c.input; })) {
      return InvalidArgument(fmt::format("--carry '{}': give the first value of '{}' with --input {}=FILE.npy", arg,
                                         c.input, c.input));
    }
    for (const auto& other : carries) {
      if (other.input == c.input) return InvalidArgument(fmt::format("--carry: input '{}' is carried twice", c.input));
    }
    carries.push_back(c);
  }
  return carries;
}

// Folder name of a sample: the last path component, without ".npy" for one-file samples.
std::string SampleFolderName(const std::string& sample_path) {
  fs::path p(sample_path);
  while (!p.empty() && p.filename().empty()) p = p.parent_path();  // "dir/" -> "dir"
  std::string name = p.filename().string();
  if (p.extension() == ".npy") name = p.stem().string();
  return SafeFileName(name);
}

Status WriteOutputs(const Session& session, const std::vector<Tensor>& outputs, const std::string& dir, bool print) {
  std::error_code ec;
  fs::create_directories(dir, ec);
  if (ec) return InvalidArgument(fmt::format("cannot create output directory '{}': {}", dir, ec.message()));
  const auto& infos = session.outputs();
  for (size_t i = 0; i < outputs.size(); ++i) {
    const std::string file = (fs::path(dir) / (SafeFileName(infos[i].name) + ".npy")).string();
    QK_RETURN_IF_ERROR(WriteNpy(outputs[i], file));
    if (print) {
      std::printf("%-24s %-8s %-20s -> %s\n", infos[i].name.c_str(), DTypeName(outputs[i].dtype()).c_str(),
                  ShapeToString(outputs[i].shape()).c_str(), file.c_str());
    }
  }
  return Status::Ok();
}

// Runs every sample of `data_dir` in order. Inputs given with --input are fixed for all samples
// (carried ones only for the first); the sample folders hold the others.
Status RunSamples(const Session& session, std::vector<std::pair<std::string, Tensor>> fixed,
                  const std::vector<std::string>& carry_args, const std::string& data_dir, const std::string& out_dir,
                  const std::string& model_path) {
  QK_ASSIGN_OR_RETURN(std::vector<Carry> carries, ParseCarries(carry_args, session, fixed));
  std::vector<ValueInfo> from_samples;
  for (const auto& in : session.inputs()) {
    if (std::none_of(fixed.begin(), fixed.end(), [&](const auto& f) { return f.first == in.name; })) from_samples.push_back(in);
  }
  if (from_samples.empty()) {
    return InvalidArgument(fmt::format("--data '{}': every model input is given with --input, nothing to read per sample", data_dir));
  }
  QK_ASSIGN_OR_RETURN(quant::SampleDirectory data, quant::SampleDirectory::Open(data_dir, from_samples));
  // Two samples must not write into the same folder.
  std::map<std::string, std::string> folders;
  for (size_t i = 0; i < data.size(); ++i) {
    auto [it, inserted] = folders.emplace(SampleFolderName(data.SampleName(i)), data.SampleName(i));
    if (!inserted) {
      return InvalidArgument(fmt::format("samples '{}' and '{}' would both write to '{}'", it->second, data.SampleName(i), it->first));
    }
  }
  double run_ms = 0;
  std::vector<Tensor> outputs;
  for (size_t i = 0; i < data.size(); ++i) {
    QK_ASSIGN_OR_RETURN(quant::Sample sample, data.Read(i));
    for (const auto& f : fixed) sample.push_back(f);
    const auto t0 = std::chrono::steady_clock::now();
    QK_RETURN_IF_ERROR(session.Run(sample, &outputs).WithContext(fmt::format("{} on sample '{}'", model_path, data.SampleName(i))));
    run_ms += std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
    const std::string sample_dir = (fs::path(out_dir) / SampleFolderName(data.SampleName(i))).string();
    QK_RETURN_IF_ERROR(WriteOutputs(session, outputs, sample_dir, false));
    for (const auto& c : carries) {
      for (auto& f : fixed)
        if (f.first == c.input) f.second = outputs[c.output_index];
    }
  }
  std::printf("ran %zu samples in %.2f ms (%.3f ms per sample); outputs in %s/<sample>/<output>.npy\n", data.size(),
              run_ms, run_ms / static_cast<double>(data.size()), out_dir.c_str());
  return Status::Ok();
}

}  // namespace

Command AddRunCommand(CLI::App& app) {
  auto* cmd = app.add_subcommand("run", "Run a model on .npy inputs and write one .npy per output");
  struct Args {
    std::string model;
    std::vector<std::string> inputs;
    std::string output_dir;
    std::string data;
    std::vector<std::string> carries;
    int threads = 0;
    bool no_optimize = false;
  };
  auto a = std::make_shared<Args>();
  cmd->add_option("model", a->model, "ONNX model file")->required();
  cmd->add_option("--input,-i", a->inputs, "NAME=FILE.npy (or .pb TensorProto), once per model input");
  cmd->add_option("--output-dir,-o", a->output_dir, "Directory for <output>.npy files (created if missing)")->required();
  cmd->add_option("--data", a->data,
                  "Sample directory (as for compare): run every sample in order, write OUT/<sample>/<output>.npy; "
                  "--input values are used for every sample");
  cmd->add_option("--carry", a->carries,
                  "OUTPUT=INPUT (with --data): OUTPUT of sample i becomes INPUT of sample i+1; the first sample "
                  "uses --input INPUT=FILE");
  cmd->add_option("--threads", a->threads, "Worker threads (default: all cores)");
  AddMemoryLimitOption(cmd);
  cmd->add_flag("--no-optimize", a->no_optimize, "Skip graph passes (constant folding, BN folding, ...)");
  return {cmd, [a]() -> int {
            if (!a->carries.empty() && a->data.empty()) {
              return ReportError(InvalidArgument("--carry needs --data (it links consecutive samples)"));
            }
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
            auto session = Session::Create(std::move(model).value(), opts);
            if (!session.ok()) return ReportError(session.status().WithContext(a->model));
            if (!a->data.empty()) {
              Status s = RunSamples(**session, std::move(feeds), a->carries, a->data, a->output_dir, a->model);
              return s.ok() ? 0 : ReportError(s);
            }
            const auto t0 = std::chrono::steady_clock::now();
            std::vector<Tensor> outputs;
            Status s = (*session)->Run(feeds, &outputs);
            if (!s.ok()) return ReportError(s.WithContext(a->model));
            const double ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
            s = WriteOutputs(**session, outputs, a->output_dir, true);
            if (!s.ok()) return ReportError(s);
            std::printf("ran in %.2f ms\n", ms);
            return 0;
          }};
}

}  // namespace quantkit::cli
