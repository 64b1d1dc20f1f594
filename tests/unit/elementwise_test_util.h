// Helpers for the elementwise / reduce_norm op tests: run one node through a Session (no graph
// passes, several threads so the parallel paths run too) and compare tensors.
#pragma once

#include <gtest/gtest.h>

#include <cmath>
#include <functional>
#include <random>
#include <string>
#include <utility>
#include <vector>

#include "quantkit/float16.h"
#include "quantkit/ir.h"
#include "quantkit/session.h"

namespace quantkit::optest {

// Attribute setters applied to the node.
using AttrFn = std::function<void(Node&)>;
inline AttrFn I(const std::string& n, int64_t v) { return [=](Node& x) { x.SetAttrInt(n, v); }; }
inline AttrFn F(const std::string& n, float v) { return [=](Node& x) { x.SetAttrFloat(n, v); }; }
inline AttrFn S(const std::string& n, const std::string& v) { return [=](Node& x) { x.SetAttrString(n, v); }; }
inline AttrFn Ints(const std::string& n, std::vector<int64_t> v) { return [=](Node& x) { x.SetAttrInts(n, v); }; }

// Inputs: an undefined Tensor means "optional input absent".
inline Model OpModel(const std::string& op, const std::vector<Tensor>& inputs, int num_outputs,
                     const std::vector<AttrFn>& attrs, int64_t opset) {
  Model m;
  m.ir_version = 8;
  m.opsets = {{"", opset}};
  m.graph.name = "op_test";
  Node n;
  n.op_type = op;
  n.name = op + "_node";
  for (size_t i = 0; i < inputs.size(); ++i) {
    if (!inputs[i].defined()) {
      n.inputs.push_back("");
      continue;
    }
    const std::string name = "in" + std::to_string(i);
    n.inputs.push_back(name);
    ValueInfo vi;
    vi.name = name;
    vi.dtype = inputs[i].dtype();
    m.graph.inputs.push_back(vi);
  }
  for (int o = 0; o < num_outputs; ++o) {
    const std::string name = "out" + std::to_string(o);
    n.outputs.push_back(name);
    ValueInfo vi;
    vi.name = name;
    m.graph.outputs.push_back(vi);
  }
  for (const auto& a : attrs) a(n);
  m.graph.nodes.push_back(std::move(n));
  return m;
}

// Runs one op; returns the status and fills *outputs.
inline Status RunOp(const std::string& op, const std::vector<Tensor>& inputs, std::vector<Tensor>* outputs,
                    const std::vector<AttrFn>& attrs = {}, int64_t opset = 17, int num_outputs = 1) {
  SessionOptions opts;
  opts.optimize = false;
  opts.threads = 4;
  auto session = Session::Create(OpModel(op, inputs, num_outputs, attrs, opset), opts);
  if (!session.ok()) return session.status();
  std::vector<std::pair<std::string, Tensor>> feeds;
  for (size_t i = 0; i < inputs.size(); ++i) {
    if (inputs[i].defined()) feeds.emplace_back("in" + std::to_string(i), inputs[i]);
  }
  return (*session)->Run(feeds, outputs);
}

// Runs one op expecting success and returns output #0 (undefined tensor on failure).
inline Tensor Run1(const std::string& op, const std::vector<Tensor>& inputs, const std::vector<AttrFn>& attrs = {},
                   int64_t opset = 17) {
  std::vector<Tensor> out;
  Status s = RunOp(op, inputs, &out, attrs, opset);
  EXPECT_TRUE(s.ok()) << op << ": " << s.ToString();
  return s.ok() && !out.empty() ? out[0] : Tensor();
}

inline Tensor Rand(Shape shape, uint32_t seed, float lo = -3.0f, float hi = 3.0f) {
  std::mt19937 gen(seed);
  std::uniform_real_distribution<float> dist(lo, hi);
  Tensor t(DType::kFloat32, std::move(shape));
  for (int64_t i = 0; i < t.numel(); ++i) t.data<float>()[i] = dist(gen);
  return t;
}

inline Tensor Half(const std::vector<float>& v, Shape shape) {
  Tensor t(DType::kFloat16, std::move(shape));
  for (size_t i = 0; i < v.size(); ++i) t.data<uint16_t>()[i] = FloatToHalf(v[i]);
  return t;
}

// Values of any numeric tensor as doubles (float16/bfloat16 decoded).
inline std::vector<double> Values(const Tensor& t) {
  std::vector<double> v(t.numel());
  for (int64_t i = 0; i < t.numel(); ++i) {
    if (t.dtype() == DType::kFloat16) v[i] = HalfToFloat(t.data<uint16_t>()[i]);
    else if (t.dtype() == DType::kBFloat16) v[i] = BFloat16ToFloat(t.data<uint16_t>()[i]);
    else v[i] = t.GetAsDouble(i);
  }
  return v;
}

// Element-by-element check with |got - want| <= atol + rtol * |want| (NaN matches NaN).
inline void ExpectNear(const Tensor& got, const Shape& shape, const std::vector<double>& want, double atol = 1e-5,
                       double rtol = 1e-5) {
  ASSERT_TRUE(got.defined());
  ASSERT_EQ(got.shape(), shape);
  const std::vector<double> g = Values(got);
  ASSERT_EQ(g.size(), want.size());
  for (size_t i = 0; i < want.size(); ++i) {
    if (std::isnan(want[i])) {
      EXPECT_TRUE(std::isnan(g[i])) << "element " << i;
    } else if (std::isinf(want[i])) {
      EXPECT_EQ(g[i], want[i]) << "element " << i;
    } else {
      EXPECT_NEAR(g[i], want[i], atol + rtol * std::fabs(want[i])) << "element " << i;
    }
  }
}

// Row-major multi-index helpers for reference implementations.
inline std::vector<int64_t> Unravel(int64_t i, const Shape& s) {
  std::vector<int64_t> idx(s.size());
  for (size_t d = s.size(); d-- > 0;) {
    idx[d] = s[d] ? i % s[d] : 0;
    i = s[d] ? i / s[d] : 0;
  }
  return idx;
}
// Offset of a broadcast index into a (right-aligned) tensor of shape s.
inline int64_t BroadcastOffset(const std::vector<int64_t>& idx, const Shape& s) {
  int64_t off = 0;
  const size_t shift = idx.size() - s.size();
  for (size_t d = 0; d < s.size(); ++d) off = off * s[d] + (s[d] == 1 ? 0 : idx[d + shift]);
  return off;
}

}  // namespace quantkit::optest
