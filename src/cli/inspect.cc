// `quantkit inspect MODEL`: inputs/outputs, op histogram, parameters, opsets, unsupported ops.
#include <fmt/format.h>

#include <map>
#include <nlohmann/json.hpp>
#include <set>

#include "cli/cli_common.h"
#include "quantkit/model_io.h"
#include "quantkit/session.h"

namespace quantkit::cli {

namespace {

struct Stats {
  std::map<std::string, int> ops;  // "Conv" or "domain::Op"
  std::set<std::string> unsupported;
  int64_t params = 0;
  uint64_t param_bytes = 0;
};

void Collect(const Graph& g, Stats* s) {
  for (const auto& name : g.initializer_order) {
    const Tensor& t = g.initializers.at(name);
    s->params += t.numel();
    s->param_bytes += t.nbytes();
  }
  for (const auto& n : g.nodes) {
    const std::string key = n.IsDefaultDomain() ? n.op_type : n.domain + "::" + n.op_type;
    s->ops[key]++;
    if (!IsOpSupported(n.domain, n.op_type)) s->unsupported.insert(key);
    if (n.op_type == "Constant" && n.IsDefaultDomain()) {
      if (const Attribute* a = n.FindAttr("value"); a && a->type == Attribute::Type::kTensor) {
        s->params += a->t.numel();
        s->param_bytes += a->t.nbytes();
      }
    }
    for (const auto& a : n.attributes) {
      if (a.g) Collect(*a.g, s);
      for (const auto& sg : a.graphs) Collect(*sg, s);
    }
  }
}

std::string TypeString(const ValueInfo& vi) {
  std::string shape;
  if (vi.has_shape) {
    shape = "[";
    for (size_t i = 0; i < vi.shape.size(); ++i) {
      if (i) shape += ",";
      shape += vi.shape[i].known() ? std::to_string(vi.shape[i].value) : (vi.shape[i].param.empty() ? "?" : vi.shape[i].param);
    }
    shape += "]";
  } else {
    shape = "(unknown shape)";
  }
  std::string t = vi.dtype == DType::kUndefined ? "?" : DTypeName(vi.dtype);
  if (vi.kind == ValueInfo::Kind::kSequence) return fmt::format("sequence<{} {}>", t, shape);
  return fmt::format("{} {}", t, shape);
}

nlohmann::json ValueJson(const ValueInfo& vi) {
  nlohmann::json j;
  j["name"] = vi.name;
  j["dtype"] = vi.dtype == DType::kUndefined ? "?" : DTypeName(vi.dtype);
  if (vi.has_shape) {
    nlohmann::json dims = nlohmann::json::array();
    for (const auto& d : vi.shape) {
      if (d.known()) dims.push_back(d.value);
      else dims.push_back(d.param.empty() ? "?" : d.param);
    }
    j["shape"] = dims;
  }
  return j;
}

}  // namespace

Command AddInspectCommand(CLI::App& app) {
  auto* cmd = app.add_subcommand("inspect", "Show a model's inputs, outputs, ops, parameters and what quantkit cannot run");
  auto path = std::make_shared<std::string>();
  auto json = std::make_shared<bool>(false);
  cmd->add_option("model", *path, "ONNX model file")->required();
  cmd->add_flag("--json", *json, "Print the report as JSON");
  return {cmd, [path, json]() -> int {
            auto model = LoadModel(*path);
            if (!model.ok()) return ReportError(model.status());
            if (Status s = CheckGraphStructure(*model); !s.ok()) return ReportError(s.WithContext(*path));
            const Model& m = *model;
            Stats st;
            Collect(m.graph, &st);
            std::vector<const ValueInfo*> inputs;
            for (const auto& in : m.graph.inputs)
              if (!m.graph.IsInitializer(in.name)) inputs.push_back(&in);
            if (*json) {
              nlohmann::json j;
              j["file"] = *path;
              j["ir_version"] = m.ir_version;
              for (const auto& o : m.opsets) j["opsets"][o.domain.empty() ? "ai.onnx" : o.domain] = o.version;
              j["producer"] = m.producer_name + " " + m.producer_version;
              for (const auto* in : inputs) j["inputs"].push_back(ValueJson(*in));
              for (const auto& out : m.graph.outputs) j["outputs"].push_back(ValueJson(out));
              j["ops"] = st.ops;
              j["parameters"] = st.params;
              j["parameter_bytes"] = st.param_bytes;
              j["unsupported_ops"] = st.unsupported;
              std::printf("%s\n", j.dump(2).c_str());
              return 0;
            }
            std::printf("model      %s\n", path->c_str());
            std::printf("ir         %lld   producer %s %s\n", static_cast<long long>(m.ir_version), m.producer_name.c_str(),
                        m.producer_version.c_str());
            std::string opsets;
            for (const auto& o : m.opsets) opsets += fmt::format("{}{}={}", opsets.empty() ? "" : ", ", o.domain.empty() ? "ai.onnx" : o.domain, o.version);
            std::printf("opsets     %s\n", opsets.c_str());
            std::printf("inputs\n");
            for (const auto* in : inputs) std::printf("  %-24s %s\n", in->name.c_str(), TypeString(*in).c_str());
            std::printf("outputs\n");
            for (const auto& out : m.graph.outputs) std::printf("  %-24s %s\n", out.name.c_str(), TypeString(out).c_str());
            std::printf("parameters %lld (%.2f MB)\n", static_cast<long long>(st.params), st.param_bytes / 1e6);
            int total = 0;
            for (const auto& kv : st.ops) total += kv.second;
            std::printf("ops        %d nodes (including subgraphs)\n", total);
            std::vector<std::pair<int, std::string>> sorted;
            for (const auto& [op, count] : st.ops) sorted.emplace_back(-count, op);
            std::sort(sorted.begin(), sorted.end());
            for (const auto& [neg, op] : sorted) std::printf("  %-28s %d\n", op.c_str(), -neg);
            if (st.unsupported.empty()) {
              std::printf("quantkit can run every op of this model\n");
            } else {
              std::string list;
              for (const auto& op : st.unsupported) list += (list.empty() ? "" : ", ") + op;
              std::printf("quantkit cannot run: %s\n", list.c_str());
            }
            return 0;
          }};
}

}  // namespace quantkit::cli
