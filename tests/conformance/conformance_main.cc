// ONNX node conformance runner: runs every test case of ONNX's own test data (libonnx-testdata)
// whose ops quantkit supports, compares outputs with ONNX's tolerances (rtol 1e-3, atol 1e-7;
// exact for integers and bool) and prints a summary. Cases using an op quantkit does not
// register are listed as unsupported, never hidden. Exit 1 if a case fails that is not listed in
// the expected-failures file (each line: case name, then the reason after '#').
#include <fmt/format.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "quantkit/model_io.h"
#include "quantkit/session.h"

namespace fs = std::filesystem;
using namespace quantkit;

namespace {

struct Options {
  std::string data_dir = "/usr/share/libonnx-testdata/data/node";
  std::vector<std::string> filters;
  std::string expect_file;
  bool verbose = false;
  bool no_optimize = false;
  std::string write_expect;  // write current failures as an expected-failures file
};

std::vector<std::string> Split(const std::string& s, char sep) {
  std::vector<std::string> out;
  std::stringstream ss(s);
  std::string item;
  while (std::getline(ss, item, sep))
    if (!item.empty()) out.push_back(item);
  return out;
}

std::string CompareTensors(const Tensor& got, const Tensor& want) {
  if (got.dtype() != want.dtype()) return fmt::format("dtype {} != expected {}", DTypeName(got.dtype()), DTypeName(want.dtype()));
  if (got.shape() != want.shape()) {
    return fmt::format("shape {} != expected {}", ShapeToString(got.shape()), ShapeToString(want.shape()));
  }
  const bool is_float = IsFloatDType(want.dtype());
  int64_t bad = 0;
  std::string first;
  for (int64_t i = 0; i < want.numel(); ++i) {
    bool ok;
    if (is_float) {
      const double a = got.GetAsDouble(i), b = want.GetAsDouble(i);
      if (std::isnan(b)) ok = std::isnan(a);
      else if (std::isinf(b)) ok = a == b;
      else ok = std::fabs(a - b) <= 1e-7 + 1e-3 * std::fabs(b);
    } else {
      ok = got.GetAsInt64(i) == want.GetAsInt64(i);
    }
    if (!ok && bad++ == 0) first = fmt::format("element {}: got {} expected {}", i, got.GetAsDouble(i), want.GetAsDouble(i));
  }
  if (bad) return fmt::format("{} of {} elements differ; first {}", bad, want.numel(), first);
  return "";
}

std::string CompareValues(const Value& got, const Value& want) {
  if (want.is_sequence()) {
    if (!got.is_sequence()) return "expected a sequence";
    if (got.sequence.size() != want.sequence.size()) {
      return fmt::format("sequence length {} != expected {}", got.sequence.size(), want.sequence.size());
    }
    for (size_t i = 0; i < want.sequence.size(); ++i) {
      std::string d = CompareTensors(got.sequence[i], want.sequence[i]);
      if (!d.empty()) return fmt::format("sequence item {}: {}", i, d);
    }
    return "";
  }
  if (!got.is_tensor()) return "expected a tensor";
  return CompareTensors(got.tensor, want.tensor);
}

void CollectOps(const Graph& g, std::set<std::pair<std::string, std::string>>* ops) {
  for (const auto& n : g.nodes) {
    ops->insert({n.IsDefaultDomain() ? "" : n.domain, n.op_type});
    for (const auto& a : n.attributes) {
      if (a.g) CollectOps(*a.g, ops);
      for (const auto& sg : a.graphs) CollectOps(*sg, ops);
    }
  }
}

// ONNX stores bfloat16 test data as uint16 (NumPy has no bfloat16): reinterpret the bits.
Value AsDeclaredType(Value v, const ValueInfo& declared) {
  if (declared.dtype == DType::kBFloat16 && v.is_tensor() && v.tensor.dtype() == DType::kUInt16) {
    Tensor t(DType::kBFloat16, v.tensor.shape());
    std::memcpy(t.raw_data(), v.tensor.raw_data(), v.tensor.nbytes());
    v.tensor = t;
  }
  return v;
}

enum class Outcome { kPass, kFail, kUnsupported };

Outcome RunCase(const fs::path& dir, const Options& opt, std::string* detail, std::set<std::string>* missing_ops) {
  auto model = LoadModel((dir / "model.onnx").string());
  if (!model.ok()) {
    *detail = "load: " + model.status().message();
    return model.status().code() == StatusCode::kUnimplemented ? Outcome::kUnsupported : Outcome::kFail;
  }
  std::set<std::pair<std::string, std::string>> ops;
  CollectOps(model->graph, &ops);
  for (const auto& [domain, op] : ops)
    if (!IsOpSupported(domain, op)) missing_ops->insert(domain.empty() ? op : domain + "::" + op);
  if (!missing_ops->empty()) return Outcome::kUnsupported;

  const Graph graph = model->graph;  // copy: the session takes the model
  SessionOptions so;
  so.threads = 1;
  so.optimize = !opt.no_optimize;
  auto session = Session::Create(std::move(model).value(), so);
  if (!session.ok()) {
    *detail = "session: " + session.status().message();
    return Outcome::kFail;
  }
  std::vector<const ValueInfo*> feeds;
  for (const auto& in : graph.inputs)
    if (!graph.IsInitializer(in.name)) feeds.push_back(&in);

  std::vector<fs::path> sets;
  for (const auto& e : fs::directory_iterator(dir))
    if (e.is_directory() && e.path().filename().string().rfind("test_data_set_", 0) == 0) sets.push_back(e.path());
  std::sort(sets.begin(), sets.end());
  if (sets.empty()) {
    *detail = "no test_data_set_* folders";
    return Outcome::kFail;
  }
  for (const auto& set : sets) {
    std::vector<std::pair<std::string, Value>> inputs;
    for (size_t i = 0;; ++i) {
      fs::path f = set / fmt::format("input_{}.pb", i);
      if (!fs::exists(f)) break;
      if (i >= feeds.size()) {
        *detail = fmt::format("{} has more inputs than the model", set.filename().string());
        return Outcome::kFail;
      }
      auto v = LoadValueProto(f.string(), feeds[i]->kind);
      if (!v.ok()) {
        *detail = v.status().message();
        return v.status().code() == StatusCode::kUnimplemented ? Outcome::kUnsupported : Outcome::kFail;
      }
      inputs.emplace_back(feeds[i]->name, AsDeclaredType(std::move(v).value(), *feeds[i]));
    }
    std::vector<Value> outputs;
    Status s = (*session)->RunValues(inputs, &outputs);
    if (!s.ok()) {
      *detail = "run: " + s.message();
      return Outcome::kFail;
    }
    for (size_t i = 0; i < graph.outputs.size(); ++i) {
      fs::path f = set / fmt::format("output_{}.pb", i);
      if (!fs::exists(f)) continue;
      auto want = LoadValueProto(f.string(), graph.outputs[i].kind);
      if (!want.ok()) {
        *detail = want.status().message();
        return want.status().code() == StatusCode::kUnimplemented ? Outcome::kUnsupported : Outcome::kFail;
      }
      std::string diff = CompareValues(outputs[i], AsDeclaredType(std::move(want).value(), graph.outputs[i]));
      if (!diff.empty()) {
        *detail = fmt::format("{} output '{}': {}", set.filename().string(), graph.outputs[i].name, diff);
        return Outcome::kFail;
      }
    }
  }
  return Outcome::kPass;
}

}  // namespace

int main(int argc, char** argv) {
  Options opt;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    auto next = [&]() -> std::string { return i + 1 < argc ? argv[++i] : ""; };
    if (a == "--data") opt.data_dir = next();
    else if (a == "--filter") opt.filters = Split(next(), ',');
    else if (a == "--expect") opt.expect_file = next();
    else if (a == "--write-expect") opt.write_expect = next();
    else if (a == "--no-optimize") opt.no_optimize = true;
    else if (a == "-v" || a == "--verbose") opt.verbose = true;
    else {
      std::printf(
          "usage: conformance [--data DIR] [--filter SUBSTR,...] [--expect FILE] [--write-expect FILE]\n"
          "                   [--no-optimize] [-v]\n"
          "Runs ONNX node test cases (DIR/test_*/) and compares with ONNX's tolerances.\n"
          "--filter: only cases whose name contains one of the substrings\n"
          "--expect: file of known failures ('name  # reason'); only other failures fail the run\n");
      return a == "--help" || a == "-h" ? 0 : 2;
    }
  }
  std::map<std::string, std::string> expected;
  if (!opt.expect_file.empty()) {
    std::ifstream f(opt.expect_file);
    std::string line;
    while (std::getline(f, line)) {
      auto hash = line.find('#');
      std::string name = line.substr(0, hash);
      name.erase(std::remove_if(name.begin(), name.end(), ::isspace), name.end());
      if (!name.empty()) expected[name] = hash == std::string::npos ? "" : line.substr(hash + 1);
    }
  }
  std::vector<fs::path> cases;
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(opt.data_dir, ec)) {
    const std::string name = e.path().filename().string();
    if (!e.is_directory() || name.rfind("test_", 0) != 0) continue;
    if (!opt.filters.empty() &&
        std::none_of(opt.filters.begin(), opt.filters.end(), [&](const std::string& f) { return name.find(f) != std::string::npos; }))
      continue;
    cases.push_back(e.path());
  }
  if (ec) {
    std::fprintf(stderr, "conformance: cannot read '%s': %s\n", opt.data_dir.c_str(), ec.message().c_str());
    return 2;
  }
  std::sort(cases.begin(), cases.end());
  int pass = 0, fail = 0, expected_fail = 0, unsupported = 0;
  std::vector<std::string> unexpected, fixed, failures;
  std::map<std::string, std::vector<std::string>> unsupported_by_op;
  const auto start = std::chrono::steady_clock::now();
  for (const auto& dir : cases) {
    const std::string name = dir.filename().string();
    std::string detail;
    std::set<std::string> missing;
    Outcome o = RunCase(dir, opt, &detail, &missing);
    if (o == Outcome::kPass) {
      ++pass;
      if (expected.count(name)) fixed.push_back(name);
      if (opt.verbose) std::printf("PASS %s\n", name.c_str());
    } else if (o == Outcome::kUnsupported) {
      ++unsupported;
      // Group by the reason without the file path (e.g. "only tensor and sequence values ...").
      std::string reason = detail.substr(detail.find(".pb: ") == std::string::npos ? 0 : detail.find(".pb: ") + 5);
      std::string key = missing.empty() ? "(" + reason.substr(0, 70) + ")" : "";
      for (const auto& m : missing) key += (key.empty() ? "" : "+") + m;
      unsupported_by_op[key].push_back(name);
      if (opt.verbose) std::printf("UNSUPPORTED %s: %s\n", name.c_str(), key.c_str());
    } else {
      failures.push_back(fmt::format("{}  # {}", name, detail));
      if (expected.count(name)) {
        ++expected_fail;
        if (opt.verbose) std::printf("KNOWN-FAIL %s: %s\n", name.c_str(), detail.c_str());
      } else {
        ++fail;
        unexpected.push_back(name);
        std::printf("FAIL %s: %s\n", name.c_str(), detail.c_str());
      }
    }
  }
  const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  std::printf("\nUnsupported cases (by missing op), not run:\n");
  for (const auto& [op, names] : unsupported_by_op) {
    std::string list;
    for (size_t i = 0; i < names.size() && i < 4; ++i) list += (i ? ", " : "") + names[i];
    if (names.size() > 4) list += fmt::format(", ... ({} more)", names.size() - 4);
    std::printf("  %-40s %3zu  %s\n", op.c_str(), names.size(), list.c_str());
  }
  if (expected_fail != 0) std::printf("\nKnown failures (expected-failures file): %d\n", expected_fail);
  for (const auto& f : fixed) std::printf("NOW PASSES (remove from expected failures): %s\n", f.c_str());
  if (!opt.write_expect.empty()) {
    std::ofstream out(opt.write_expect);
    for (const auto& f : failures) out << f << "\n";
  }
  std::printf("\nconformance: %d cases in %.1f s: %d passed, %d failed, %d known failures, %d unsupported\n",
              static_cast<int>(cases.size()), secs, pass, fail, expected_fail, unsupported);
  return fail == 0 ? 0 : 1;
}
