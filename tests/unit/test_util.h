// Helpers for building small models in tests.
#pragma once

#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <random>
#include <string>
#include <type_traits>
#include <vector>

#include "quantkit/ir.h"
#include "quantkit/session.h"
#include "runtime/kernels/ref/conv_kernels.h"

namespace quantkit::testing {

inline Node MakeNode(const std::string& op, std::vector<std::string> inputs, std::vector<std::string> outputs,
                     const std::string& name = "") {
  Node n;
  n.op_type = op;
  n.inputs = std::move(inputs);
  n.outputs = std::move(outputs);
  n.name = name.empty() ? op + "_" + (n.outputs.empty() ? std::string("x") : n.outputs[0]) : name;
  return n;
}

inline ValueInfo MakeValueInfo(const std::string& name, DType dtype, std::vector<int64_t> shape) {
  ValueInfo vi;
  vi.name = name;
  vi.dtype = dtype;
  vi.has_shape = true;
  for (int64_t d : shape) vi.shape.push_back(Dim{d, ""});
  return vi;
}

inline Attribute IntAttr(const std::string& name, int64_t v) {
  Attribute a;
  a.name = name;
  a.type = Attribute::Type::kInt;
  a.i = v;
  return a;
}
inline Attribute IntsAttr(const std::string& name, std::vector<int64_t> v) {
  Attribute a;
  a.name = name;
  a.type = Attribute::Type::kInts;
  a.ints = std::move(v);
  return a;
}
inline Attribute FloatAttr(const std::string& name, float v) {
  Attribute a;
  a.name = name;
  a.type = Attribute::Type::kFloat;
  a.f = v;
  return a;
}
inline Attribute StringAttr(const std::string& name, std::string v) {
  Attribute a;
  a.name = name;
  a.type = Attribute::Type::kString;
  a.s = std::move(v);
  return a;
}

inline Model MakeModel(Graph graph, int64_t opset = 17) {
  Model m;
  m.ir_version = 8;
  m.opsets = {{"", opset}};
  m.producer_name = "quantkit-test";
  m.graph = std::move(graph);
  if (m.graph.name.empty()) m.graph.name = "test";
  return m;
}

// Runs a model and returns its outputs; fails the test on error.
inline std::vector<Tensor> RunModel(const Model& model, const std::vector<std::pair<std::string, Tensor>>& inputs,
                                    bool optimize = true) {
  SessionOptions opts;
  opts.optimize = optimize;
  opts.threads = 1;
  auto session = Session::Create(model, opts);
  if (!session.ok()) {
    ADD_FAILURE() << "Session::Create: " << session.status().message();
    return {};
  }
  std::vector<Tensor> out;
  Status s = (*session)->Run(inputs, &out);
  if (!s.ok()) ADD_FAILURE() << "Run: " << s.message();
  return out;
}

inline float MaxAbsDiff(const Tensor& a, const Tensor& b) {
  if (a.shape() != b.shape()) return 1e30f;
  float m = 0;
  for (int64_t i = 0; i < a.numel(); ++i) m = std::max(m, static_cast<float>(std::fabs(a.GetAsDouble(i) - b.GetAsDouble(i))));
  return m;
}

// Random bytes, half of them at the edges of the 8-bit types (0, 127, 128, 255), where
// saturation and sign bugs live.
inline std::vector<uint8_t> EdgeBytes(size_t n, std::mt19937& rng) {
  std::vector<uint8_t> v(n);
  std::uniform_int_distribution<int> byte(0, 255), pick(0, 7);
  constexpr uint8_t kEdges[4] = {0, 127, 128, 255};
  for (auto& x : v) {
    const int p = pick(rng);
    x = p < 4 ? kEdges[p] : static_cast<uint8_t>(byte(rng));
  }
  return v;
}

// Floats drawn from Normal(0, stddev), reproducible from the seed.
inline Tensor RandomFloats(std::vector<int64_t> shape, uint32_t seed, float stddev = 1.f) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> nd(0.f, stddev);
  int64_t n = 1;
  for (auto d : shape) n *= d;
  std::vector<float> v(static_cast<size_t>(n));
  for (auto& x : v) x = nd(rng);
  return Tensor::FromVector<float>(v, shape);
}

// 8-bit integers uniform over T's whole range.
template <typename T>
Tensor RandomInts(std::vector<int64_t> shape, std::mt19937& rng) {
  int64_t n = 1;
  for (auto d : shape) n *= d;
  std::uniform_int_distribution<int> d(std::is_signed_v<T> ? -128 : 0, std::is_signed_v<T> ? 127 : 255);
  std::vector<T> v(static_cast<size_t>(n));
  for (auto& x : v) x = static_cast<T>(d(rng));
  return Tensor::FromVector<T>(v, shape);
}
template <typename T>
Tensor RandomInts(std::vector<int64_t> shape, uint32_t seed) {
  std::mt19937 rng(seed);
  return RandomInts<T>(std::move(shape), rng);
}

}  // namespace quantkit::testing

namespace quantkit::testing {

// n bytes that end exactly at an inaccessible page: a kernel that reads even one byte past the
// end crashes the test (SIGSEGV) instead of reading a neighbour's memory unnoticed.
class GuardedBytes {
 public:
  explicit GuardedBytes(const std::vector<uint8_t>& contents) : n_(contents.size()) {
    const size_t page = static_cast<size_t>(sysconf(_SC_PAGESIZE));
    data_pages_ = (n_ + page - 1) / page * page;
    map_bytes_ = data_pages_ + page;
    void* p = mmap(nullptr, map_bytes_, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) std::abort();
    base_ = static_cast<uint8_t*>(p);
    if (mprotect(base_ + data_pages_, page, PROT_NONE) != 0) std::abort();
    std::copy(contents.begin(), contents.end(), data());
  }
  GuardedBytes(const GuardedBytes&) = delete;
  GuardedBytes& operator=(const GuardedBytes&) = delete;
  ~GuardedBytes() { munmap(base_, map_bytes_); }
  uint8_t* data() { return base_ + data_pages_ - n_; }
  size_t size() const { return n_; }

 private:
  size_t n_ = 0, data_pages_ = 0, map_bytes_ = 0;
  uint8_t* base_ = nullptr;
};

// A 2-D convolution geometry: input h x w, kernel kh x kw, strides, dilations, pads (top, left,
// bottom, right); the output size follows.
inline kernels::ConvGeometry Conv2DGeometry(int64_t h, int64_t w, int64_t kh, int64_t kw, int64_t sh, int64_t sw,
                                            int64_t dh, int64_t dw, int64_t pt, int64_t pl, int64_t pb, int64_t pr) {
  kernels::ConvGeometry g;
  g.nd = 2;
  g.in = {h, w};
  g.kernel = {kh, kw};
  g.stride = {sh, sw};
  g.dilation = {dh, dw};
  g.pad_begin = {pt, pl};
  g.out = {(h + pt + pb - ((kh - 1) * dh + 1)) / sh + 1, (w + pl + pr - ((kw - 1) * dw + 1)) / sw + 1};
  return g;
}

}  // namespace quantkit::testing
