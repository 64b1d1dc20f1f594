// `quantkit bench MODEL [--input NAME=FILE.npy] [--shape NAME=1x3x224x224] ...`: FP32/INT8 latency of
// one model. The session is created once, warmed up, then run repeatedly; prints median, p90, min
// and mean latency and throughput (--json for scripts, with every timed run's latency).
#include <fmt/format.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <map>
#include <nlohmann/json.hpp>
#include <random>

#include "cli/cli_common.h"
#include "quantkit/float16.h"
#include "quantkit/model_io.h"
#include "quantkit/session.h"

namespace quantkit::cli {

// Defined in run.cc: parses NAME=FILE.npy (or .pb).
StatusOr<std::pair<std::string, Tensor>> ReadInputArg(const std::string& arg);

namespace {

using Clock = std::chrono::steady_clock;

double MsSince(Clock::time_point t0) {
  return std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
}

// Parses NAME=D0xD1x... (a scalar is NAME=, i.e. no dims).
StatusOr<std::pair<std::string, Shape>> ParseShapeArg(const std::string& arg) {
  const auto eq = arg.find('=');
  if (eq == std::string::npos || eq == 0) return InvalidArgument(fmt::format("--shape '{}' must be NAME=D0xD1x...", arg));
  Shape shape;
  const std::string dims = arg.substr(eq + 1);
  size_t pos = 0;
  while (pos < dims.size()) {
    size_t end = dims.find('x', pos);
    if (end == std::string::npos) end = dims.size();
    const std::string d = dims.substr(pos, end - pos);
    if (d.empty() || d.size() > 12 || !std::all_of(d.begin(), d.end(), [](char c) { return c >= '0' && c <= '9'; })) {
      return InvalidArgument(fmt::format("--shape '{}': '{}' is not a dimension (use e.g. 1x3x224x224)", arg, d));
    }
    shape.push_back(std::stoll(d));
    pos = end + 1;
    if (end + 1 == dims.size()) return InvalidArgument(fmt::format("--shape '{}' ends with 'x'", arg));
  }
  return std::make_pair(arg.substr(0, eq), shape);
}

std::string DescribeDims(const ValueInfo& in) {
  std::string s = "[";
  for (size_t i = 0; i < in.shape.size(); ++i) {
    s += (i ? "," : "") + (in.shape[i].known() ? std::to_string(in.shape[i].value)
                                                : (in.shape[i].param.empty() ? "?" : in.shape[i].param));
  }
  return s + "]";
}

// The shape to generate for `in`: the model's own if fully known, else --shape (checked against
// the known dims).
StatusOr<Shape> ShapeFor(const ValueInfo& in, const std::vector<std::pair<std::string, Shape>>& given) {
  auto it = std::find_if(given.begin(), given.end(), [&](const auto& g) { return g.first == in.name; });
  if (it == given.end()) {
    if (in.FullyKnownShape()) return in.KnownShape();
    return InvalidArgument(fmt::format("input '{}' has {} dims {}: give --shape {}=D0xD1x... or --input {}=FILE.npy",
                                       in.name, in.has_shape ? "dynamic" : "unknown", DescribeDims(in), in.name, in.name));
  }
  const Shape& s = it->second;
  if (in.has_shape) {
    bool fits = s.size() == in.shape.size();
    for (size_t d = 0; fits && d < s.size(); ++d) fits = !in.shape[d].known() || in.shape[d].value == s[d];
    if (!fits) {
      return InvalidArgument(fmt::format("--shape {}={} does not fit the model's {} dims {}", in.name, ShapeToString(s),
                                         in.name, DescribeDims(in)));
    }
  }
  return s;
}

// Deterministic pseudo-random input: floats uniform in [-1, 1), integers in [0, 10), bools 50/50.
StatusOr<Tensor> RandomInput(const ValueInfo& in, const Shape& shape, uint64_t seed) {
  QK_ASSIGN_OR_RETURN(Tensor t, Tensor::Create(in.dtype, shape, nullptr, fmt::format("input '{}'", in.name)));
  std::mt19937_64 rng(seed);
  std::uniform_real_distribution<float> real(-1.0f, 1.0f);
  std::uniform_int_distribution<int> small_int(0, 9);
  const int64_t n = t.numel();
  auto fill = [&](auto* p, auto gen) {
    for (int64_t i = 0; i < n; ++i) p[i] = gen();
  };
  switch (in.dtype) {
    case DType::kFloat32: fill(t.data<float>(), [&] { return real(rng); }); break;
    case DType::kFloat64: fill(t.data<double>(), [&] { return static_cast<double>(real(rng)); }); break;
    case DType::kFloat16: fill(t.data<uint16_t>(), [&] { return FloatToHalf(real(rng)); }); break;
    case DType::kBFloat16: fill(t.data<uint16_t>(), [&] { return FloatToBFloat16(real(rng)); }); break;
    case DType::kInt8: fill(t.data<int8_t>(), [&] { return static_cast<int8_t>(small_int(rng)); }); break;
    case DType::kUInt8: fill(t.data<uint8_t>(), [&] { return static_cast<uint8_t>(small_int(rng)); }); break;
    case DType::kInt16: fill(t.data<int16_t>(), [&] { return static_cast<int16_t>(small_int(rng)); }); break;
    case DType::kUInt16: fill(t.data<uint16_t>(), [&] { return static_cast<uint16_t>(small_int(rng)); }); break;
    case DType::kInt32: fill(t.data<int32_t>(), [&] { return static_cast<int32_t>(small_int(rng)); }); break;
    case DType::kUInt32: fill(t.data<uint32_t>(), [&] { return static_cast<uint32_t>(small_int(rng)); }); break;
    case DType::kInt64: fill(t.data<int64_t>(), [&] { return static_cast<int64_t>(small_int(rng)); }); break;
    case DType::kUInt64: fill(t.data<uint64_t>(), [&] { return static_cast<uint64_t>(small_int(rng)); }); break;
    case DType::kBool: fill(t.data<bool>(), [&] { return small_int(rng) < 5; }); break;
    default:
      return Unimplemented(fmt::format("cannot generate random data for input '{}' of type {}: give --input {}=FILE.npy",
                                       in.name, DTypeName(in.dtype), in.name));
  }
  return t;
}

// Nearest-rank percentile of sorted values (as tools/ort_run.js computes it).
double Percentile(const std::vector<double>& sorted, double p) {
  const double rank = std::ceil(p / 100.0 * static_cast<double>(sorted.size())) - 1;
  const size_t k = static_cast<size_t>(std::clamp(rank, 0.0, static_cast<double>(sorted.size() - 1)));
  return sorted[k];
}

double Median(const std::vector<double>& sorted) {
  const size_t n = sorted.size();
  return n % 2 ? sorted[n / 2] : 0.5 * (sorted[n / 2 - 1] + sorted[n / 2]);
}

// Per-node timings over a few runs (RunOptions::profile), summed by op type (domain::op) and by
// node. Returns (JSON, text table). Nodes are timed one by one, so the sum is a little above the
// plain latency.
StatusOr<std::pair<nlohmann::json, std::string>> ProfileNodes(const Session& session,
                                                              const std::vector<std::pair<std::string, Tensor>>& feeds) {
  constexpr int kRuns = 5;
  std::vector<std::pair<std::string, Value>> values;
  for (const auto& [name, t] : feeds) values.emplace_back(name, Value::FromTensor(t));
  std::map<const Node*, double> by_node;
  for (int r = 0; r < kRuns; ++r) {
    std::vector<NodeTiming> timings;
    RunOptions ro;
    ro.profile = &timings;
    std::vector<Value> outs;
    QK_RETURN_IF_ERROR(session.RunValues(values, &outs, ro));
    for (const auto& t : timings) by_node[t.node] += t.seconds / kRuns;
  }
  std::map<std::string, std::pair<double, int>> by_type;
  double total = 0;
  for (const auto& [node, sec] : by_node) {
    const std::string type = node->IsDefaultDomain() ? node->op_type : node->domain + "::" + node->op_type;
    by_type[type].first += sec;
    by_type[type].second += 1;
    total += sec;
  }
  std::vector<std::pair<std::string, std::pair<double, int>>> types(by_type.begin(), by_type.end());
  std::sort(types.begin(), types.end(), [](const auto& x, const auto& y) { return x.second.first > y.second.first; });
  std::vector<std::pair<const Node*, double>> nodes(by_node.begin(), by_node.end());
  std::sort(nodes.begin(), nodes.end(), [](const auto& x, const auto& y) { return x.second > y.second; });
  nlohmann::json j;
  j["runs"] = kRuns;
  j["total_ms"] = total * 1e3;
  std::string text = fmt::format("profile    {} runs, nodes sum to {:.3f} ms per run\n{:<40} {:>6} {:>10} {:>7}\n", kRuns,
                                 total * 1e3, "op type", "nodes", "ms/run", "share");
  for (const auto& [type, v] : types) {
    const double share = total > 0 ? v.first / total : 0;
    j["op_types"].push_back({{"op_type", type}, {"nodes", v.second}, {"ms", v.first * 1e3}, {"share", share}});
    text += fmt::format("{:<40} {:>6} {:>10.3f} {:>6.1f}%\n", type, v.second, v.first * 1e3, 100 * share);
  }
  text += "slowest nodes\n";
  for (size_t k = 0; k < nodes.size(); ++k) {  // the JSON lists every node, the text the 10 slowest
    const Node* n = nodes[k].first;
    const std::string type = n->IsDefaultDomain() ? n->op_type : n->domain + "::" + n->op_type;
    const nlohmann::json entry = {{"node", n->name}, {"op_type", type}, {"ms", nodes[k].second * 1e3}};
    j["nodes"].push_back(entry);
    if (k >= 10) continue;
    text += fmt::format("  {:>9.3f} ms  {:<28} {}\n", nodes[k].second * 1e3, type, n->name);
    j["slowest_nodes"].push_back(entry);
  }
  return std::make_pair(j, text);
}

}  // namespace

Command AddBenchCommand(CLI::App& app) {
  auto* cmd = app.add_subcommand("bench", "Time a model: one session, warm-up, repeated runs; median/p90/min latency");
  struct Args {
    std::string model;
    std::vector<std::string> inputs;
    std::vector<std::string> shapes;
    int threads = 0;
    double warmup_ms = 200;
    double min_time_ms = 1000;
    int repeat = 10;
    bool json = false;
    bool no_optimize = false;
    bool profile = false;
    bool verbose = false;
  };
  auto a = std::make_shared<Args>();
  cmd->add_option("model", a->model, "ONNX model file")->required();
  cmd->add_option("--input,-i", a->inputs, "NAME=FILE.npy (or .pb); inputs not given get deterministic random data");
  cmd->add_option("--shape", a->shapes, "NAME=D0xD1x...: shape of a generated input whose dims are dynamic");
  cmd->add_option("--threads", a->threads, "Worker threads (default: all cores)");
  cmd->add_option("--warmup-ms", a->warmup_ms, "Warm-up: run (at least once) until this much time has passed")
      ->check(CLI::NonNegativeNumber);
  cmd->add_option("--min-time-ms", a->min_time_ms, "Timed runs continue until this much time has passed ...")
      ->check(CLI::NonNegativeNumber);
  cmd->add_option("--repeat", a->repeat, "... and at least this many runs were timed")->check(CLI::PositiveNumber);
  cmd->add_flag("--json", a->json, "Print one JSON object (with every timed run's latency in samples_ms)");
  cmd->add_flag("--no-optimize", a->no_optimize, "Skip graph passes (constant folding, BN folding, ...)");
  cmd->add_flag("--profile", a->profile,
                "After the timed runs, time every node over a few more runs: time per op type and the slowest nodes");
  cmd->add_flag("--verbose", a->verbose, "Log the micro-kernels chosen for this CPU (and why the others were not)");
  AddMemoryLimitOption(cmd);
  return {cmd, [a]() -> int {
            std::vector<std::pair<std::string, Tensor>> feeds;
            for (const auto& arg : a->inputs) {
              auto in = ReadInputArg(arg);
              if (!in.ok()) return ReportError(in.status());
              feeds.push_back(std::move(in).value());
            }
            std::vector<std::pair<std::string, Shape>> shapes;
            for (const auto& arg : a->shapes) {
              auto s = ParseShapeArg(arg);
              if (!s.ok()) return ReportError(s.status());
              shapes.push_back(std::move(s).value());
            }
            const auto t_create = Clock::now();
            auto model = LoadModel(a->model);
            if (!model.ok()) return ReportError(model.status());
            SessionOptions opts;
            opts.threads = a->threads;
            opts.optimize = !a->no_optimize;
            opts.verbose = a->verbose;
            auto session_or = Session::Create(std::move(model).value(), opts);
            if (!session_or.ok()) return ReportError(session_or.status().WithContext(a->model));
            const Session& session = **session_or;
            const double create_ms = MsSince(t_create);

            for (const auto& [name, shape] : shapes) {
              const auto& ins = session.inputs();
              if (std::none_of(ins.begin(), ins.end(), [&name = name](const ValueInfo& v) { return v.name == name; })) {
                return ReportError(InvalidArgument(fmt::format("--shape: the model has no input '{}'", name)));
              }
            }
            nlohmann::json inputs_json = nlohmann::json::array();
            uint64_t seed = 20240601;
            for (const auto& in : session.inputs()) {
              ++seed;
              auto given = std::find_if(feeds.begin(), feeds.end(), [&](const auto& f) { return f.first == in.name; });
              if (given != feeds.end()) {
                inputs_json.push_back({{"name", in.name}, {"shape", given->second.shape()}, {"source", "file"}});
                continue;
              }
              auto shape = ShapeFor(in, shapes);
              if (!shape.ok()) return ReportError(shape.status());
              auto t = RandomInput(in, *shape, seed);
              if (!t.ok()) return ReportError(t.status());
              inputs_json.push_back({{"name", in.name}, {"shape", *shape}, {"source", "random"}});
              feeds.emplace_back(in.name, std::move(t).value());
            }

            std::vector<Tensor> outputs;
            auto run_once = [&]() -> StatusOr<double> {
              const auto t0 = Clock::now();
              Status s = session.Run(feeds, &outputs);
              if (!s.ok()) return s.WithContext(a->model);
              return MsSince(t0);
            };
            int warmup_runs = 0;
            const auto t_warm = Clock::now();
            do {
              auto ms = run_once();
              if (!ms.ok()) return ReportError(ms.status());
              ++warmup_runs;
            } while (MsSince(t_warm) < a->warmup_ms);

            std::vector<double> samples;
            const auto t_timed = Clock::now();
            while (static_cast<int>(samples.size()) < a->repeat || MsSince(t_timed) < a->min_time_ms) {
              auto ms = run_once();
              if (!ms.ok()) return ReportError(ms.status());
              samples.push_back(*ms);
            }
            nlohmann::json profile_json;
            std::string profile_text;
            if (a->profile) {
              auto prof = ProfileNodes(session, feeds);
              if (!prof.ok()) return ReportError(prof.status().WithContext(a->model));
              profile_json = prof->first;
              profile_text = prof->second;
            }
            std::vector<double> sorted = samples;
            std::sort(sorted.begin(), sorted.end());
            const double median = Median(sorted), p90 = Percentile(sorted, 90), min = sorted.front();
            double mean = 0;
            for (double s : samples) mean += s;
            mean /= static_cast<double>(samples.size());
            const double per_s = median > 0 ? 1000.0 / median : 0.0;

            if (a->json) {
              nlohmann::json j;
              j["model"] = a->model;
              j["threads"] = a->threads;
              j["create_ms"] = create_ms;
              j["inputs"] = inputs_json;
              j["warmup_runs"] = warmup_runs;
              j["runs"] = samples.size();
              j["median_ms"] = median;
              j["p90_ms"] = p90;
              j["min_ms"] = min;
              j["mean_ms"] = mean;
              j["runs_per_s"] = per_s;
              j["samples_ms"] = samples;
              if (a->profile) j["profile"] = profile_json;
              std::printf("%s\n", j.dump().c_str());
              return 0;
            }
            std::printf("model      %s (session created in %.1f ms, threads %s)\n", a->model.c_str(), create_ms,
                        a->threads > 0 ? std::to_string(a->threads).c_str() : "all cores");
            for (const auto& in : inputs_json) {
              std::printf("input      %-20s %-16s %s\n", in["name"].get<std::string>().c_str(),
                          ShapeToString(in["shape"].get<Shape>()).c_str(), in["source"].get<std::string>().c_str());
            }
            std::printf("runs       %zu timed after %d warm-up\n", samples.size(), warmup_runs);
            std::printf("latency    median %.3f ms  p90 %.3f ms  min %.3f ms  mean %.3f ms\n", median, p90, min, mean);
            std::printf("throughput %.2f runs/s (at the median)\n", per_s);
            std::fputs(profile_text.c_str(), stdout);
            return 0;
          }};
}

}  // namespace quantkit::cli
