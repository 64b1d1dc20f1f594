// Session: passes, planning, input validation and execution.
#include "quantkit/session.h"

#include <fmt/format.h>

#include <algorithm>
#include <cstdio>
#include <cmath>
#include <cstdlib>
#include <string>

#include "core/thread_pool.h"
#include "passes/passes.h"
#include "runtime/buffer_pool.h"
#include "runtime/kernels/conv_nchwc.h"
#include "runtime/kernels/qgemm.h"
#include "runtime/kernels/ref/sgemm.h"
#include "runtime/plan.h"

namespace quantkit {
namespace {
// QUANTKIT_LAYOUT=nchw keeps every tensor in NCHW (passes::BlockConvChannels off): for A/B runs
// and for isolating a layout problem.
bool BlockedLayoutAllowed() {
  const char* v = std::getenv("QUANTKIT_LAYOUT");
  return !v || std::string(v) != "nchw";
}
}  // namespace

struct Session::Impl {
  Model model;
  std::unique_ptr<rt::Plan> plan;
  std::unique_ptr<ThreadPool> threads;
  std::unique_ptr<rt::BufferPool> pool;
  std::vector<ValueInfo> feed_inputs;
};

Session::Session(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Session::~Session() = default;

StatusOr<std::unique_ptr<Session>> Session::Create(Model model, const SessionOptions& options) {
  auto impl = std::make_unique<Impl>();
  impl->model = std::move(model);
  Model& m = impl->model;
  if (m.local_function_count > 0) {
    return Unimplemented("model-local functions are not supported (the model defines " +
                         std::to_string(m.local_function_count) + ")");
  }
  if (options.optimize) {
    QK_RETURN_IF_ERROR(passes::OptimizeForInference(m));
    QK_RETURN_IF_ERROR(passes::FuseConvActivation(m));
    if (options.blocked_layout && kernels::ConvNchwcSupported(kernels::DefaultQGemmIsa()) &&
        BlockedLayoutAllowed()) {
      std::string layout;
      passes::BlockLayoutOptions layout_options;
      // Each 16-channel block is two vectors on AVX2: padded channels cost their share, and the
      // NCHW kernels beat the blocked ones once padding adds a quarter (BlazeFace back: its
      // 24-channel convs padded to 32 add 1.5x, 9.3 ms blocked vs 8.1 NCHW at one thread on Zen 3).
      // There the dense kernel skips a last block's padded half, so those channels are counted as
      // computed (24 as 24; BlazeFace back 1.06x, blocked: 7.7 -> 6.8 ms once a full block and a
      // half one ran as one 3-vector tile and the half input block joined its pass).
      const bool avx2_blocks = !kernels::QGemmIsaHasAvx512(kernels::DefaultQGemmIsa());
      if (options.max_padded_work > 0) {
        layout_options.max_padded_work = options.max_padded_work;
      } else if (avx2_blocks) {
        layout_options.max_padded_work = 1.25;
      }
      layout_options.half_blocks_skipped = avx2_blocks;
      QK_RETURN_IF_ERROR(passes::BlockConvChannels(m, layout_options, options.verbose ? &layout : nullptr));
      if (options.verbose) std::fputs(layout.c_str(), stderr);
    }
  } else {
    QK_RETURN_IF_ERROR(passes::TopologicalSort(m.graph));
  }
  QK_RETURN_IF_ERROR(VerifyGraph(m.graph));
  if (options.verbose) {
    std::fputs(kernels::DescribeQGemmIsaChoice().c_str(), stderr);
    std::fprintf(stderr, "fp32 gemm  %s (best supported, capped by QUANTKIT_ISA)\n", kernels::SgemmKernelName());
  }
  QK_ASSIGN_OR_RETURN(impl->plan, rt::Plan::Build(m.graph, m, nullptr));
  impl->threads = std::make_unique<ThreadPool>(options.threads);
  impl->pool = std::make_unique<rt::BufferPool>(options.max_memory_bytes ? options.max_memory_bytes
                                                                         : rt::DefaultMemoryLimit());
  for (const auto& in : m.graph.inputs)
    if (!m.graph.IsInitializer(in.name)) impl->feed_inputs.push_back(in);
  return std::unique_ptr<Session>(new Session(std::move(impl)));
}

const std::vector<ValueInfo>& Session::inputs() const { return impl_->feed_inputs; }
const std::vector<ValueInfo>& Session::outputs() const { return impl_->model.graph.outputs; }
const Model& Session::model() const { return impl_->model; }
uint64_t Session::peak_pool_bytes() const { return impl_->pool->peak_bytes(); }

namespace {
Status CheckInput(const ValueInfo& vi, const Value& v) {
  if (vi.kind == ValueInfo::Kind::kSequence) {
    if (!v.is_sequence()) return InvalidArgument(fmt::format("input '{}' must be a sequence", vi.name));
    return Status::Ok();
  }
  if (!v.is_tensor()) return InvalidArgument(fmt::format("input '{}' must be a tensor", vi.name));
  const Tensor& t = v.tensor;
  if (vi.dtype != DType::kUndefined && t.dtype() != vi.dtype) {
    return InvalidArgument(fmt::format("input '{}' must be {}, got {}", vi.name, DTypeName(vi.dtype),
                                       DTypeName(t.dtype())));
  }
  if (vi.has_shape) {
    bool ok = vi.shape.size() == t.rank();
    for (size_t i = 0; ok && i < vi.shape.size(); ++i) ok = !vi.shape[i].known() || vi.shape[i].value == t.dim(i);
    if (!ok) {
      std::string want = "[";
      for (size_t i = 0; i < vi.shape.size(); ++i) {
        if (i) want += ",";
        want += vi.shape[i].known() ? std::to_string(vi.shape[i].value)
                                    : (vi.shape[i].param.empty() ? "?" : vi.shape[i].param);
      }
      want += "]";
      return InvalidArgument(fmt::format("input '{}' must have shape {}, got {}", vi.name, want,
                                         ShapeToString(t.shape())));
    }
  }
  return Status::Ok();
}
}  // namespace

Status Session::RunValues(const std::vector<std::pair<std::string, Value>>& inputs, std::vector<Value>* outputs,
                          const RunOptions& run_options) const {
  const Graph& g = impl_->model.graph;
  std::vector<Value> ordered(g.inputs.size());
  for (const auto& input : inputs) {
    // Not a structured binding: clang 14 (the sanitizer builds) cannot capture one in a lambda.
    const std::string& name = input.first;
    const Value& value = input.second;
    auto it = std::find_if(g.inputs.begin(), g.inputs.end(), [&](const ValueInfo& vi) { return vi.name == name; });
    if (it == g.inputs.end()) {
      std::string names;
      for (const auto& vi : impl_->feed_inputs) names += (names.empty() ? "" : ", ") + vi.name;
      return InvalidArgument(fmt::format("the model has no input '{}' (inputs: {})", name, names));
    }
    QK_RETURN_IF_ERROR(CheckInput(*it, value));
    ordered[it - g.inputs.begin()] = value;
  }
  for (size_t i = 0; i < g.inputs.size(); ++i) {
    if (ordered[i].kind == Value::Kind::kNone && !g.IsInitializer(g.inputs[i].name)) {
      return InvalidArgument(fmt::format("input '{}' was not given", g.inputs[i].name));
    }
  }
  rt::RunContext run{impl_->pool.get(), impl_->threads.get(), &run_options.observer, run_options.profile};
  return impl_->plan->Run(run, nullptr, std::move(ordered), outputs);
}

Status Session::Run(const std::vector<std::pair<std::string, Tensor>>& inputs, std::vector<Tensor>* outputs) const {
  std::vector<std::pair<std::string, Value>> values;
  for (const auto& [name, t] : inputs) values.emplace_back(name, Value::FromTensor(t));
  std::vector<Value> out;
  QK_RETURN_IF_ERROR(RunValues(values, &out));
  outputs->clear();
  for (size_t i = 0; i < out.size(); ++i) {
    if (!out[i].is_tensor()) {
      return Unimplemented(fmt::format("output '{}' is a sequence; use RunValues", impl_->model.graph.outputs[i].name));
    }
    outputs->push_back(std::move(out[i].tensor));
  }
  return Status::Ok();
}

std::vector<std::string> SupportedOps() {
  auto names = rt::KernelRegistry::Global().OpNames();
  std::sort(names.begin(), names.end());
  return names;
}

bool IsOpSupported(const std::string& domain, const std::string& op_type) {
  return rt::KernelRegistry::Global().Find(domain == "ai.onnx" ? "" : domain, op_type) != nullptr;
}

}  // namespace quantkit
