// The NCHW16c direct conv (kernels/conv_nchwc) and the layout pass (passes::BlockConvChannels):
// - the AVX-512 and AVX2 rows (dense and depthwise, each where the CPU has it) give the portable
//   build's bits for every tail (1 to 4 output blocks, 1 to 16 interior pixels, left and right
//   borders, border pairs with one or both pixels outside a tap), strides 1, 2 (constant-offset builds) and 3 (the
//   generic one), dilation, asymmetric pads, several input-block passes, bias / residual / Clip,
//   NaN inputs; nothing read past the input or the residual (guard pages) or written past y;
// - the portable build matches a naive double-precision conv;
// - a model whose convs the pass blocks (a MaxPool, a residual, a GlobalAveragePool, a blocked
//   tensor that is also a graph output) gives the NCHW graph's values, the same bits at 1 and 2
//   threads, and the reorders appear only at the edges; a lone conv stays NCHW.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <map>
#include <random>

#include "passes/passes.h"
#include "quantkit/session.h"
#include "runtime/kernels/conv_nchwc.h"
#include "runtime/kernels/depthwise_f32.h"
#include "test_util.h"

namespace quantkit {
namespace {

using kernels::ConvGeometry;
using testing::IntAttr;
using testing::IntsAttr;
using testing::MakeNode;
using testing::MakeValueInfo;

constexpr int64_t B = kernels::kNchwcBlock;

struct KernelCase {
  int64_t C, M, H, W, KH, KW, sh, sw, dh, dw, pt, pl, pb, pr;
  bool plain = false;  // NCHW input (input blocks of 1 channel)
};

std::vector<float> Normal(size_t n, std::mt19937& rng) {
  std::normal_distribution<float> nd;
  std::vector<float> v(n);
  for (auto& x : v) x = nd(rng);
  return v;
}

// The SIMD builds of the blocked kernels, each compared with the portable one where the CPU
// runs it.
struct SimdBuild {
  const char* name;
  bool supported;
  void (*rows)(const kernels::NchwcConvArgs&, int64_t, int64_t, int64_t);
  void (*depthwise_rows)(const kernels::NchwcDepthwiseArgs&, int64_t, int64_t, int64_t);
};
std::vector<SimdBuild> SimdBuilds() {
  return {{"avx512", kernels::QGemmIsaSupported(kernels::QGemmIsa::kAvx512Vnni), &kernels::conv_nchwc::RowsAvx512,
           &kernels::conv_nchwc::DepthwiseRowsAvx512},
          {"avx2", kernels::QGemmIsaSupported(kernels::QGemmIsa::kAvx2) && __builtin_cpu_supports("fma"),
           &kernels::conv_nchwc::RowsAvx2, &kernels::conv_nchwc::DepthwiseRowsAvx2}};
}

// y (blocked) = conv of x (blocked) with w [M, C, KH, KW], in double.
double NaiveAt(const ConvGeometry& g, const KernelCase& c, const std::vector<float>& xb, const std::vector<float>& w,
               int64_t o, int64_t oy, int64_t ox) {
  double s = 0;
  for (int64_t ci = 0; ci < c.C; ++ci)
    for (int64_t kh = 0; kh < c.KH; ++kh)
      for (int64_t kw = 0; kw < c.KW; ++kw) {
        const int64_t iy = oy * g.stride[0] - g.pad_begin[0] + kh * g.dilation[0];
        const int64_t ix = ox * g.stride[1] - g.pad_begin[1] + kw * g.dilation[1];
        if (iy < 0 || iy >= c.H || ix < 0 || ix >= c.W) continue;
        const float xv = c.plain ? xb[(ci * c.H + iy) * c.W + ix] : xb[(((ci / B) * c.H + iy) * c.W + ix) * B + ci % B];
        s += static_cast<double>(xv) * w[((o * c.C + ci) * c.KH + kh) * c.KW + kw];
      }
  return s;
}

// The kernel's arguments for test variant 0 (plain), 1 (bias + Clip) or 2 (bias + residual + Clip).
kernels::NchwcConvArgs VariantArgs(const ConvGeometry& g, const KernelCase& c, const float* x,
                                   const kernels::NchwcWeights& packed, const std::vector<float>& bias,
                                   const float* residual, const float* lo_hi, int variant) {
  kernels::NchwcConvArgs a;
  a.g = &g;
  a.C = c.C;
  a.M = c.M;
  a.plain_input = c.plain;
  a.x = x;
  a.w = packed.data();
  a.w_layout = packed.layout();
  a.bias = variant > 0 ? bias.data() : nullptr;
  a.residual = variant == 2 ? residual : nullptr;
  a.clamp_lo_hi = variant > 0 ? lo_hi : nullptr;
  return a;
}

TEST(ConvNchwc, SimdRowsGiveThePortableBitsAndTheNaiveValues) {
  const std::vector<KernelCase> cases = {
      {32, 64, 9, 23, 3, 3, 1, 1, 1, 1, 1, 1, 1, 1},   // 4 blocks: one group; 21 interior = 3 x 6 + 3
      {16, 64, 6, 13, 3, 3, 1, 1, 1, 1, 1, 1, 1, 1},   // 11 interior = 6 + 5, then the right border
      {16, 80, 7, 7, 3, 3, 1, 1, 1, 1, 1, 1, 1, 1},    // 5 blocks: groups of 4 and 1
      {16, 16, 4, 37, 3, 3, 1, 1, 1, 1, 1, 1, 1, 1},   // 1 block: 35 interior = 2 x 16 + 3
      {32, 32, 5, 30, 3, 3, 1, 1, 1, 1, 1, 1, 1, 1},   // 2 blocks: 28 interior = 2 x 12 + 4
      {16, 48, 4, 21, 3, 3, 1, 1, 1, 1, 1, 1, 1, 1},   // 3 blocks: 19 interior = 2 x 8 + 3
      {32, 16, 7, 7, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0},    // pointwise, 1 block: a span of 49 = 3 x 16 + 1
      {48, 48, 8, 17, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0},   // 3 blocks, pointwise: rows as one span, 68 = 11 x 6 + 2
      {32, 80, 7, 7, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0},    // pointwise 7x7: spans of 21 and 28 pixels, groups of 4 and 1
      {32, 32, 7, 7, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1},    // 1x1 with padding: row by row, every border pixel
      {16, 32, 12, 19, 3, 3, 2, 2, 1, 1, 1, 1, 1, 1},  // stride 2
      {32, 16, 11, 20, 5, 5, 3, 3, 1, 1, 2, 2, 1, 2},  // stride 3 (generic build), 5x5, asymmetric pads
      {16, 48, 10, 16, 3, 3, 1, 1, 2, 2, 2, 2, 2, 2},  // dilation 2
      {16, 16, 3, 4, 5, 5, 1, 1, 1, 1, 2, 2, 2, 2},    // every pixel a border pixel
      {160, 32, 6, 10, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0},  // 10 input blocks: several passes (16 KB each)
      {64, 64, 5, 9, 3, 3, 2, 2, 1, 1, 0, 0, 1, 1},    // 4 blocks of 36 KB: one input block per pass
      {256, 32, 4, 6, 3, 3, 1, 1, 1, 1, 1, 1, 1, 1},   // 16 input blocks: 4 passes of 4 (AVX2, 80 KB)
      {256, 48, 24, 13, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0},  // pointwise, 2 spans of 156 pixels: AVX2 chunks of 126 + 30
      // NCHW input (a network's first conv): ResNet's 7x7 stride-2 stem, the Fashion CNN's 1 channel
      {3, 64, 21, 30, 7, 7, 2, 2, 1, 1, 3, 3, 3, 3, true},
      {1, 16, 9, 14, 3, 3, 1, 1, 1, 1, 1, 1, 1, 1, true},
      {5, 48, 8, 13, 3, 3, 3, 3, 1, 1, 1, 0, 1, 2, true},
      {3, 16, 5, 9, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, true},  // a pointwise NCHW-input conv: one span
  };
  std::mt19937 rng(5);
  for (const KernelCase& c : cases) {
    const ConvGeometry g = testing::Conv2DGeometry(c.H, c.W, c.KH, c.KW, c.sh, c.sw, c.dh, c.dw, c.pt, c.pl, c.pb, c.pr);
    SCOPED_TRACE("C=" + std::to_string(c.C) + " M=" + std::to_string(c.M) + " " + std::to_string(c.H) + "x" +
                 std::to_string(c.W) + " k=" + std::to_string(c.KH) + " stride=" + std::to_string(c.sw));
    const int64_t OH = g.out[0], OW = g.out[1], y_elems = c.M * OH * OW;
    std::vector<float> xb = Normal(static_cast<size_t>(c.C * c.H * c.W), rng);
    xb[5] = std::nanf("");  // a NaN input reaches the outputs that read it, in both builds
    const std::vector<float> w = Normal(static_cast<size_t>(c.M * c.C * c.KH * c.KW), rng);
    const std::vector<float> bias = Normal(static_cast<size_t>(c.M), rng);
    const std::vector<float> residual = Normal(static_cast<size_t>(y_elems), rng);
    // Both weight layouts (kGroupRows, the AVX-512 build's; kBlockMajor, the AVX2 build's), each
    // build on each: the same bits as the portable build on the first.
    const kernels::NchwcWeights packed(w.data(), c.M, c.C, c.KH, c.KW, c.plain ? 1 : B,
                                       kernels::NchwcWeightLayout::kGroupRows);
    const kernels::NchwcWeights block_major(w.data(), c.M, c.C, c.KH, c.KW, c.plain ? 1 : B,
                                            kernels::NchwcWeightLayout::kBlockMajor);
    auto bytes_of = [](const std::vector<float>& v) {
      std::vector<uint8_t> b(v.size() * sizeof(float));
      std::memcpy(b.data(), v.data(), b.size());
      return b;
    };
    testing::GuardedBytes gx(bytes_of(xb)), gr(bytes_of(residual));  // no read past either
    const float lo_hi[2] = {-0.75f, 1.5f};
    const int64_t groups = (c.M / B + 3) / 4;
    for (int variant = 0; variant < 3; ++variant) {  // plain; bias + Clip; bias + residual + Clip
      kernels::NchwcConvArgs a = VariantArgs(g, c, reinterpret_cast<const float*>(gx.data()), packed, bias,
                                             reinterpret_cast<const float*>(gr.data()), lo_hi, variant);
      std::vector<float> want(static_cast<size_t>(y_elems) + 16, -7.f), got(want.size(), -7.f);
      a.y = want.data();
      for (int64_t grp = 0; grp < groups; ++grp) kernels::conv_nchwc::RowsPortable(a, grp, 0, OH);
      for (const kernels::NchwcWeights* weights : {&packed, &block_major}) {
        a.w = weights->data();
        a.w_layout = weights->layout();
        const char* layout = weights == &packed ? "group rows" : "block major";
        std::fill(got.begin(), got.end(), -7.f);
        a.y = got.data();
        for (int64_t grp = 0; grp < groups; ++grp) kernels::conv_nchwc::RowsPortable(a, grp, 0, OH);
        ASSERT_EQ(0, std::memcmp(want.data(), got.data(), want.size() * sizeof(float))) << "portable " << layout;
        for (const SimdBuild& build : SimdBuilds()) {
          if (!build.supported) continue;
          std::fill(got.begin(), got.end(), -7.f);
          a.y = got.data();
          for (int64_t grp = 0; grp < groups; ++grp) {  // rows split as the runtime's tasks may split them
            build.rows(a, grp, 0, OH / 2);
            build.rows(a, grp, OH / 2, OH);
          }
          ASSERT_EQ(0, std::memcmp(want.data(), got.data(), want.size() * sizeof(float)))
              << build.name << " " << layout << " variant " << variant;
        }
      }
      for (int64_t i = y_elems; i < y_elems + 16; ++i) ASSERT_EQ(want[i], -7.f) << "written past y";
      if (variant != 0) continue;
      int nans = 0;
      for (int64_t o = 0; o < c.M; ++o)
        for (int64_t oy = 0; oy < OH; ++oy)
          for (int64_t ox = 0; ox < OW; ++ox) {
            const float v = want[(((o / B) * OH + oy) * OW + ox) * B + o % B];
            const double ref = NaiveAt(g, c, xb, w, o, oy, ox);
            if (std::isnan(ref)) {
              ASSERT_TRUE(std::isnan(v));
              ++nans;
              continue;
            }
            ASSERT_NEAR(v, ref, 1e-4 * (1 + std::fabs(ref))) << "o=" << o << " oy=" << oy << " ox=" << ox;
          }
      EXPECT_GT(nans, 0);
    }
  }
}

// Convs whose last output and/or input block has 8 real channels (24 in two blocks of 16: the
// pass pads them with zero weights, zero bias and zero input channels): the AVX2 rows told so
// (half_last_out / half_last_in) skip the padding's multiply-adds and still give the portable
// build's bits, which computes them; interior pixels, borders, a pointwise span, stride 2,
// several input passes, the NCHW-input stem, with bias, residual and Clip.
TEST(ConvNchwc, HalfPaddedLastBlocksGiveTheFullBlocksBits) {
  struct HalfCase {
    KernelCase k;
    int64_t c_real, m_real;
  };
  const std::vector<HalfCase> cases = {
      {{32, 32, 9, 23, 3, 3, 1, 1, 1, 1, 1, 1, 1, 1}, 24, 24},      // both halves, 3x3
      {{32, 64, 6, 13, 3, 3, 1, 1, 1, 1, 1, 1, 1, 1}, 24, 56},      // 4 output blocks, the last half
      {{48, 32, 8, 17, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0}, 40, 24},      // pointwise span
      {{32, 48, 12, 19, 3, 3, 2, 2, 1, 1, 1, 1, 1, 1}, 20, 40},     // stride 2, fewer than 8 real
      {{256, 32, 4, 6, 3, 3, 1, 1, 1, 1, 1, 1, 1, 1}, 248, 24},     // several passes, then the half one
      {{256, 48, 24, 13, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0}, 248, 40},   // pointwise chunks, passes
      {{3, 32, 21, 30, 7, 7, 2, 2, 1, 1, 3, 3, 3, 3, true}, 3, 24},  // NCHW input, half output
  };
  std::mt19937 rng(17);
  for (const HalfCase& hc : cases) {
    const KernelCase& c = hc.k;
    const ConvGeometry g = testing::Conv2DGeometry(c.H, c.W, c.KH, c.KW, c.sh, c.sw, c.dh, c.dw, c.pt, c.pl, c.pb, c.pr);
    SCOPED_TRACE("C=" + std::to_string(hc.c_real) + "/" + std::to_string(c.C) + " M=" + std::to_string(hc.m_real) +
                 "/" + std::to_string(c.M) + " k=" + std::to_string(c.KH));
    const int64_t OH = g.out[0], OW = g.out[1], y_elems = c.M * OH * OW;
    std::vector<float> xb = Normal(static_cast<size_t>(c.C * c.H * c.W), rng);
    if (!c.plain) {  // the padded input channels hold 0 (ToNchwc)
      for (size_t i = 0; i < xb.size(); ++i) {
        const int64_t channel = static_cast<int64_t>(i) / (c.H * c.W * B) * B + static_cast<int64_t>(i) % B;
        if (channel >= hc.c_real) xb[i] = 0.f;
      }
    }
    std::vector<float> w = Normal(static_cast<size_t>(c.M * c.C * c.KH * c.KW), rng);
    std::vector<float> bias = Normal(static_cast<size_t>(c.M), rng);
    for (int64_t o = 0; o < c.M; ++o)
      for (int64_t i = 0; i < c.C; ++i)
        if (o >= hc.m_real || i >= hc.c_real) std::fill_n(w.begin() + (o * c.C + i) * c.KH * c.KW, c.KH * c.KW, 0.f);
    for (int64_t o = hc.m_real; o < c.M; ++o) bias[o] = 0.f;
    std::vector<float> residual = Normal(static_cast<size_t>(y_elems), rng);
    const kernels::NchwcWeights packed(w.data(), c.M, c.C, c.KH, c.KW, c.plain ? 1 : B,
                                       kernels::NchwcWeightLayout::kGroupRows);
    const kernels::NchwcWeights block_major(w.data(), c.M, c.C, c.KH, c.KW, c.plain ? 1 : B,
                                            kernels::NchwcWeightLayout::kBlockMajor);
    const float lo_hi[2] = {-0.75f, 1.5f};
    const int64_t groups = (c.M / B + 3) / 4;
    for (int variant = 0; variant < 3; ++variant) {  // plain; bias + Clip; bias + residual + Clip
      kernels::NchwcConvArgs a = VariantArgs(g, c, xb.data(), packed, bias, residual.data(), lo_hi, variant);
      std::vector<float> want(static_cast<size_t>(y_elems), -7.f), got(want.size(), -7.f);
      a.y = want.data();
      for (int64_t grp = 0; grp < groups; ++grp) kernels::conv_nchwc::RowsPortable(a, grp, 0, OH);
      a.half_last_out = hc.m_real % B != 0 && hc.m_real % B <= 8;
      a.half_last_in = !c.plain && hc.c_real % B != 0 && hc.c_real % B <= 8;
      for (const kernels::NchwcWeights* weights : {&packed, &block_major}) {
        a.w = weights->data();
        a.w_layout = weights->layout();
        for (const SimdBuild& build : SimdBuilds()) {
          if (!build.supported) continue;
          std::fill(got.begin(), got.end(), -7.f);
          a.y = got.data();
          for (int64_t grp = 0; grp < groups; ++grp) build.rows(a, grp, 0, OH);
          ASSERT_EQ(0, std::memcmp(want.data(), got.data(), want.size() * sizeof(float)))
              << build.name << (weights == &packed ? " group rows" : " block major") << " variant " << variant;
        }
      }
    }
  }
}

ValueInfo Untyped(const std::string& name) {
  ValueInfo v;
  v.name = name;
  v.dtype = DType::kFloat32;
  return v;
}

// ResNet-like: conv -> conv (+ residual) -> MaxPool -> conv -> GlobalAveragePool, with the first
// conv's output also a graph output, and a lone eligible conv on a side branch.
Model BlockedModel() {
  std::mt19937 rng(9);
  Graph g;
  g.inputs.push_back(MakeValueInfo("x", DType::kFloat32, {2, 16, 13, 11}));
  auto conv = [&](const std::string& name, const std::string& in, int64_t C, int64_t M, int64_t k, int64_t s,
                  const std::string& out, const std::string& residual = "") {
    g.AddInitializer(name + "_w", Tensor::FromVector<float>(Normal(static_cast<size_t>(M * C * k * k), rng),
                                                           {M, C, k, k}));
    g.AddInitializer(name + "_b", Tensor::FromVector<float>(Normal(static_cast<size_t>(M), rng), {M}));
    Node n = MakeNode("Conv", {in, name + "_w", name + "_b"}, {residual.empty() ? out : out + "_c"});
    n.name = name;
    n.attributes = {IntsAttr("kernel_shape", {k, k}), IntsAttr("strides", {s, s}),
                    IntsAttr("pads", {k / 2, k / 2, k / 2, k / 2})};
    g.nodes.push_back(n);
    if (!residual.empty()) g.nodes.push_back(MakeNode("Add", {out + "_c", residual}, {out}));
  };
  conv("c1", "x", 16, 32, 3, 1, "a");  // + Relu: FusedConv, its output a graph output and read twice by c2
  g.nodes.push_back(MakeNode("Relu", {"a"}, {"a_relu"}));
  conv("c2", "a_relu", 32, 32, 3, 1, "b", "a_relu");
  Node pool = MakeNode("MaxPool", {"b"}, {"p"});
  pool.attributes = {IntsAttr("kernel_shape", {3, 3}), IntsAttr("strides", {2, 2}), IntsAttr("pads", {1, 1, 1, 1})};
  g.nodes.push_back(pool);
  conv("c3", "p", 32, 48, 1, 1, "d");
  g.nodes.push_back(MakeNode("GlobalAveragePool", {"d"}, {"gap"}));
  conv("lone", "x", 16, 16, 3, 2, "side");  // no eligible neighbour: stays NCHW
  g.nodes.push_back(MakeNode("Sigmoid", {"side"}, {"side_s"}));
  for (const char* out : {"gap", "a_relu", "side_s"}) g.outputs.push_back(Untyped(out));
  return testing::MakeModel(std::move(g), 13);
}

std::vector<Tensor> RunThreads(const Model& m, const Tensor& x, int threads, bool blocked_layout = true) {
  SessionOptions opts;
  opts.threads = threads;
  opts.blocked_layout = blocked_layout;
  opts.max_padded_work = std::numeric_limits<double>::infinity();  // padded components blocked on every ISA
  auto s = Session::Create(m, opts);
  EXPECT_TRUE(s.ok()) << s.status().message();
  std::vector<Tensor> out;
  if (s.ok()) {
    EXPECT_TRUE((*s)->Run({{"x", x}}, &out).ok());
  }
  return out;
}

// Runs m on x blocked at 1 and 2 threads and in NCHW: `outputs` outputs, the blocked ones within
// 1e-4 of the NCHW ones, the same bits at 1 and 2 threads. Returns the 1-thread blocked outputs.
std::vector<Tensor> ExpectNchwValuesAndThreadBits(const Model& m, const Tensor& x, size_t outputs) {
  const std::vector<Tensor> nchw = RunThreads(m, x, 1, /*blocked_layout=*/false);
  const std::vector<Tensor> one = RunThreads(m, x, 1), two = RunThreads(m, x, 2);
  EXPECT_EQ(one.size(), outputs);
  EXPECT_EQ(nchw.size(), outputs);
  EXPECT_EQ(two.size(), outputs);
  for (size_t i = 0; i < outputs && i < one.size() && i < nchw.size() && i < two.size(); ++i) {
    EXPECT_EQ(one[i].shape(), nchw[i].shape()) << i;
    if (one[i].shape() != nchw[i].shape()) continue;
    EXPECT_LT(testing::MaxAbsDiff(one[i], nchw[i]), 1e-4f) << "output " << i;
    EXPECT_EQ(0, std::memcmp(one[i].data<float>(), two[i].data<float>(), one[i].numel() * sizeof(float)))
        << "output " << i << ": 1 and 2 threads";
  }
  return one;
}

TEST(BlockConvChannels, BlockedGraphGivesTheNchwValues) {
  const Model m = BlockedModel();
  Model blocked = m;
  ASSERT_TRUE(passes::OptimizeForInference(blocked).ok());
  ASSERT_TRUE(passes::FuseConvActivation(blocked).ok());
  ASSERT_TRUE(passes::BlockConvChannels(blocked).ok());
  std::map<std::string, int> ops;
  for (const Node& n : blocked.graph.nodes) {
    ++ops[n.op_type];
    if (n.name == "lone") {
      EXPECT_EQ(n.AttrInt("nchwc", 0), 0) << "a lone conv stays NCHW";
    } else if (n.name == "c1" || n.name == "c2" || n.name == "c3") {
      EXPECT_EQ(n.AttrInt("nchwc", 0), 1) << n.name;
    }
  }
  EXPECT_EQ(ops["ToNchwc"], 1);    // x, read by c1 (the lone conv reads x as NCHW)
  EXPECT_EQ(ops["FromNchwc"], 1);  // a_relu: a graph output (c2 reads the blocked tensor)
  EXPECT_EQ(ops["NchwcMaxPool"], 1);
  EXPECT_EQ(ops["NchwcGlobalAveragePool"], 1);
  ASSERT_TRUE(VerifyGraph(blocked.graph).ok());

  ExpectNchwValuesAndThreadBits(m, testing::RandomFloats({2, 16, 13, 11}, 3), 3);
}

// Fashion-CNN-like: a 1-channel input, two 3x3 convs, each with Relu and a 2x2 MaxPool
// (FuseConvMaxPool), blocked: the first reads the NCHW input itself, and each conv computes each
// pooled row's two conv rows in a scratch and pools them. Odd maps (13x11:
// the last conv row and column are dropped by the pool), a batch of 3, NaN inputs.
TEST(BlockConvChannels, BlockedConvWithFusedMaxPoolGivesTheNchwValues) {
  std::mt19937 rng(4);
  Graph g;
  g.inputs.push_back(MakeValueInfo("x", DType::kFloat32, {3, 1, 13, 11}));
  const std::vector<Attribute> pool = {IntsAttr("kernel_shape", {2, 2}), IntsAttr("strides", {2, 2})};
  std::string in = "x";
  int64_t C = 1;  // the first conv reads the NCHW input itself (nchwc = 2)
  for (int i = 0; i < 2; ++i) {
    const std::string k = std::to_string(i);
    g.AddInitializer("w" + k, Tensor::FromVector<float>(Normal(static_cast<size_t>(32 * C * 9), rng), {32, C, 3, 3}));
    g.AddInitializer("b" + k, Tensor::FromVector<float>(Normal(32, rng), {32}));
    Node conv = MakeNode("Conv", {in, "w" + k, "b" + k}, {"c" + k});
    conv.attributes = {IntsAttr("kernel_shape", {3, 3}), IntsAttr("pads", {1, 1, 1, 1})};
    g.nodes.push_back(conv);
    g.nodes.push_back(MakeNode("Relu", {"c" + k}, {"r" + k}));
    Node p = MakeNode("MaxPool", {"r" + k}, {"p" + k});
    p.attributes = pool;
    g.nodes.push_back(p);
    in = "p" + k;
    C = 32;
  }
  g.outputs = {Untyped("p1")};
  const Model m = testing::MakeModel(std::move(g), 13);
  Model opt = m;
  ASSERT_TRUE(passes::OptimizeForInference(opt).ok());
  ASSERT_TRUE(passes::FuseConvActivation(opt).ok());
  ASSERT_TRUE(passes::BlockConvChannels(opt).ok());
  int blocked_pooled = 0;
  int reorders = 0;
  for (const Node& n : opt.graph.nodes) {
    blocked_pooled += n.AttrInt("nchwc", 0) != 0 && n.AttrInt("max_pool_2x2", 0) == 1;
    reorders += n.op_type == "ToNchwc";
  }
  EXPECT_EQ(blocked_pooled, 2);
  EXPECT_EQ(reorders, 0);
  Tensor x = testing::RandomFloats({3, 1, 13, 11}, 6);
  x.data<float>()[40] = std::nanf("");
  const std::vector<Tensor> nchw = RunThreads(m, x, 1, /*blocked_layout=*/false);
  const std::vector<Tensor> one = RunThreads(m, x, 1), two = RunThreads(m, x, 2);
  ASSERT_EQ(one.size(), 1u);
  ASSERT_EQ(nchw.size(), 1u);
  ASSERT_EQ(one[0].shape(), (Shape{3, 32, 3, 2}));
  ASSERT_EQ(one[0].shape(), nchw[0].shape());
  int nans = 0;
  for (int64_t i = 0; i < one[0].numel(); ++i) {
    const float a = one[0].data<float>()[i], b = nchw[0].data<float>()[i];
    if (std::isnan(b)) {
      EXPECT_TRUE(std::isnan(a)) << i;
      ++nans;
      continue;
    }
    EXPECT_NEAR(a, b, 1e-4f * (1 + std::fabs(b))) << i;
  }
  EXPECT_GT(nans, 0);
  EXPECT_EQ(0, std::memcmp(one[0].data<float>(), two[0].data<float>(), one[0].numel() * sizeof(float)));
}

// Two linked 1x1 convs whose outputs other ops also read: 1024 multiply-adds per pixel against 64
// reordered channels, below the pass's threshold: nothing is blocked.
TEST(BlockConvChannels, LightComponentsStayNchw) {
  std::mt19937 rng(2);
  Graph g;
  g.inputs.push_back(MakeValueInfo("x", DType::kFloat32, {1, 16, 5, 5}));
  g.AddInitializer("w1", Tensor::FromVector<float>(Normal(32 * 16, rng), {32, 16, 1, 1}));
  g.AddInitializer("w2", Tensor::FromVector<float>(Normal(16 * 32, rng), {16, 32, 1, 1}));
  g.nodes.push_back(MakeNode("Conv", {"x", "w1"}, {"a"}));
  g.nodes.push_back(MakeNode("Sigmoid", {"a"}, {"a_s"}));
  g.nodes.push_back(MakeNode("Conv", {"a", "w2"}, {"b"}));
  g.outputs = {Untyped("a_s"), Untyped("b")};
  Model m = testing::MakeModel(std::move(g), 13);
  ASSERT_TRUE(passes::BlockConvChannels(m).ok());
  for (const Node& n : m.graph.nodes) {
    EXPECT_EQ(n.AttrInt("nchwc", 0), 0) << n.Describe();
    EXPECT_TRUE(n.op_type == "Conv" || n.op_type == "Sigmoid") << n.op_type;
  }
}

// Three 3x3 convs of 24 channels (padded to 32: 1.78x the multiply-adds, weighted by each conv's
// output pixels from the shapes the graph declares): blocked without a limit, NCHW with
// max_padded_work 1.25 (the AVX2 default), blocked again at 1.8. A 32-channel chain is not padded
// and stays blocked at 1.25. Where the dense kernel skips a last block's padded half (AVX2:
// half_blocks_skipped) 24 channels cost 24, so the chain is blocked at 1.25; 20 channels (24
// computed: 1.44x) are not.
TEST(BlockConvChannels, HeavilyPaddedComponentsStayNchwUnderTheLimit) {
  auto chain = [](int64_t channels) {
    std::mt19937 rng(5);
    Graph g;
    g.inputs.push_back(MakeValueInfo("x", DType::kFloat32, {1, channels, 9, 9}));
    std::string in = "x";
    for (int i = 0; i < 3; ++i) {
      const std::string k = std::to_string(i);
      g.AddInitializer("w" + k, Tensor::FromVector<float>(Normal(static_cast<size_t>(channels * channels * 9), rng),
                                                         {channels, channels, 3, 3}));
      Node conv = MakeNode("Conv", {in, "w" + k}, {"c" + k});
      conv.attributes = {IntsAttr("kernel_shape", {3, 3}), IntsAttr("pads", {1, 1, 1, 1})};
      g.nodes.push_back(conv);
      g.value_info.push_back(MakeValueInfo("c" + k, DType::kFloat32, {1, channels, 9, 9}));
      in = "c" + k;
    }
    g.outputs = {Untyped(in)};
    return testing::MakeModel(std::move(g), 13);
  };
  auto blocked_convs = [](Model m, double limit, bool halves = false) {
    passes::BlockLayoutOptions options;
    options.max_padded_work = limit;
    options.half_blocks_skipped = halves;
    std::string report;
    EXPECT_TRUE(passes::BlockConvChannels(m, options, &report).ok());
    int blocked = 0;
    for (const Node& n : m.graph.nodes) blocked += n.AttrInt("nchwc", 0) != 0;
    return std::pair{blocked, report};
  };
  const Model padded = chain(24);
  EXPECT_EQ(blocked_convs(padded, std::numeric_limits<double>::infinity()).first, 3);
  const auto [nchw, report] = blocked_convs(padded, 1.25);
  EXPECT_EQ(nchw, 0);
  EXPECT_NE(report.find("padded 1.78x (limit 1.25x)"), std::string::npos) << report;
  EXPECT_EQ(blocked_convs(padded, 1.8).first, 3);
  EXPECT_EQ(blocked_convs(chain(32), 1.25).first, 3);
  const auto [halves, halves_report] = blocked_convs(padded, 1.25, /*halves=*/true);
  EXPECT_EQ(halves, 3);
  EXPECT_NE(halves_report.find("padded 1.00x (limit 1.25x)"), std::string::npos) << halves_report;
  EXPECT_EQ(blocked_convs(chain(20), 1.25, /*halves=*/true).first, 0);
}

TEST(BlockConvChannels, ReordersAndBlockedPoolsMatchThePlainOps) {
  // ToNchwc -> NchwcMaxPool -> FromNchwc, and ToNchwc -> NchwcGlobalAveragePool, against the
  // plain MaxPool and GlobalAveragePool: GlobalAveragePool's sums in the same order (the same
  // bits), MaxPool's selections (the same values).
  Graph g;
  g.inputs.push_back(MakeValueInfo("x", DType::kFloat32, {2, 32, 9, 10}));
  Node to = MakeNode("ToNchwc", {"x"}, {"xb"});
  to.domain = "com.quantkit";
  Node pool = MakeNode("NchwcMaxPool", {"xb"}, {"pb"});
  pool.domain = "com.quantkit";
  pool.attributes = {IntsAttr("kernel_shape", {3, 2}), IntsAttr("strides", {2, 1}), IntsAttr("pads", {1, 0, 1, 1})};
  Node from = MakeNode("FromNchwc", {"pb"}, {"p"});
  from.domain = "com.quantkit";
  Node gap = MakeNode("NchwcGlobalAveragePool", {"xb"}, {"gap"});
  gap.domain = "com.quantkit";
  Node plain_pool = MakeNode("MaxPool", {"x"}, {"p_plain"});
  plain_pool.attributes = pool.attributes;
  Node plain_gap = MakeNode("GlobalAveragePool", {"x"}, {"gap_plain"});
  g.nodes = {to, pool, from, gap, plain_pool, plain_gap};
  for (const char* out : {"p", "gap", "p_plain", "gap_plain", "xb"}) g.outputs.push_back(Untyped(out));
  const Model m = testing::MakeModel(std::move(g), 13);
  Tensor x = testing::RandomFloats({2, 32, 9, 10}, 4);
  x.data<float>()[17] = std::nanf("");
  const std::vector<Tensor> out = testing::RunModel(m, {{"x", x}}, false);
  ASSERT_EQ(out.size(), 5u);
  EXPECT_EQ(out[4].shape(), (Shape{2, 2, 9, 10, 16}));
  for (int64_t n = 0; n < 2; ++n)  // the blocked layout itself
    for (int64_t c = 0; c < 32; ++c)
      for (int64_t p = 0; p < 90; ++p) {
        const float a = x.data<float>()[(n * 32 + c) * 90 + p], b = out[4].data<float>()[((n * 2 + c / 16) * 90 + p) * 16 + c % 16];
        ASSERT_TRUE(std::memcmp(&a, &b, 4) == 0) << n << " " << c << " " << p;
      }
  ASSERT_EQ(out[0].shape(), out[2].shape());
  for (int64_t i = 0; i < out[0].numel(); ++i) {
    const float a = out[0].data<float>()[i], b = out[2].data<float>()[i];
    ASSERT_TRUE((std::isnan(a) && std::isnan(b)) || a == b) << i;
  }
  ASSERT_EQ(out[1].shape(), out[3].shape());
  EXPECT_EQ(0, std::memcmp(out[1].data<float>(), out[3].data<float>(), out[1].numel() * sizeof(float)));
}

TEST(BlockConvChannels, BadBlockedInputsAreClearErrors) {
  Graph g;
  g.inputs.push_back(Untyped("x"));
  Node to = MakeNode("ToNchwc", {"x"}, {"y"});
  to.domain = "com.quantkit";
  g.nodes = {to};
  g.outputs.push_back(Untyped("y"));
  const Model m = testing::MakeModel(std::move(g), 13);
  auto s = Session::Create(m);
  ASSERT_TRUE(s.ok());
  std::vector<Tensor> out;
  const Status st = (*s)->Run({{"x", testing::RandomFloats({1, 24, 3}, 1)}}, &out);
  ASSERT_FALSE(st.ok());
  EXPECT_NE(st.message().find("must be [N, C, H, W]"), std::string::npos) << st.message();

  Graph g2;  // a FromNchwc whose channels do not fit the blocks
  g2.inputs.push_back(Untyped("x"));
  Node to2 = MakeNode("ToNchwc", {"x"}, {"xb"});
  to2.domain = "com.quantkit";
  Node from = MakeNode("FromNchwc", {"xb"}, {"y"});
  from.domain = "com.quantkit";
  from.attributes = {IntAttr("channels", 40)};
  g2.nodes = {to2, from};
  g2.outputs.push_back(Untyped("y"));
  auto s2 = Session::Create(testing::MakeModel(std::move(g2), 13));
  ASSERT_TRUE(s2.ok());
  const Status st2 = (*s2)->Run({{"x", testing::RandomFloats({1, 24, 3, 3}, 1)}}, &out);
  ASSERT_FALSE(st2.ok());
  EXPECT_NE(st2.message().find("channels 40 does not fit"), std::string::npos) << st2.message();
}

// Depthwise rows: the AVX-512 and AVX2 builds give the portable build's bits, and all give the NCHW
// depthwise kernel's (kernels::DepthwiseConv2DFloat) bits channel by channel: 3x3 strides 1 and
// 2, 5x5 with asymmetric pads, stride 3 (the generic build), dilation, maps narrower than the
// kernel (all border), bias / Clip, a NaN input; nothing read past x (guard page) or written past y.
TEST(ConvNchwc, DepthwiseRowsGiveTheNchwDepthwiseBits) {
  struct Case {
    int64_t C, H, W, KH, KW, sh, sw, dh, dw, pt, pl, pb, pr;
  };
  const std::vector<Case> cases = {
      {32, 9, 23, 3, 3, 1, 1, 1, 1, 1, 1, 1, 1},  // 21 interior = 2 x 8 + 5; also with a half-padded block
      {32, 12, 19, 3, 3, 2, 2, 1, 1, 1, 1, 1, 1},  // stride 2, a half-padded block
      {16, 12, 19, 3, 3, 2, 2, 1, 1, 1, 1, 1, 1},  // stride 2
      {48, 10, 17, 5, 5, 1, 1, 1, 1, 2, 1, 2, 3},  // 5x5, asymmetric pads
      {16, 11, 20, 3, 3, 3, 3, 1, 1, 1, 1, 1, 1},  // stride 3
      {16, 10, 16, 3, 3, 1, 1, 2, 2, 2, 2, 2, 2},  // dilation 2
      {16, 3, 2, 5, 5, 1, 1, 1, 1, 2, 2, 2, 2},    // every pixel a border pixel
      {16, 14, 14, 3, 3, 2, 2, 1, 1, 0, 0, 1, 1},  // TF-style padding (bottom / right only)
  };
  std::mt19937 rng(8);
  for (const Case& c : cases) {
    const ConvGeometry g = testing::Conv2DGeometry(c.H, c.W, c.KH, c.KW, c.sh, c.sw, c.dh, c.dw, c.pt, c.pl, c.pb, c.pr);
    SCOPED_TRACE("C=" + std::to_string(c.C) + " " + std::to_string(c.H) + "x" + std::to_string(c.W) +
                 " k=" + std::to_string(c.KH) + " stride=" + std::to_string(c.sw));
    const int64_t OH = g.out[0], OW = g.out[1], taps = c.KH * c.KW, y_elems = c.C * OH * OW;
    std::vector<float> x = Normal(static_cast<size_t>(c.C * c.H * c.W), rng);  // NCHW
    x[7] = std::nanf("");
    const std::vector<float> w = Normal(static_cast<size_t>(c.C * taps), rng);
    const std::vector<float> bias = Normal(static_cast<size_t>(c.C), rng);
    std::vector<float> xb(x.size());
    for (int64_t cb = 0; cb < c.C / B; ++cb) kernels::BlockToNchwc(x.data() + cb * B * c.H * c.W, c.H * c.W, xb.data() + cb * B * c.H * c.W, kernels::QGemmIsa::kRef);
    std::vector<uint8_t> xbytes(xb.size() * sizeof(float));
    std::memcpy(xbytes.data(), xb.data(), xbytes.size());
    testing::GuardedBytes gx(xbytes);
    const kernels::NchwcWeights packed(kernels::NchwcWeights::Depthwise{}, w.data(), c.C, c.KH, c.KW);
    const float lo_hi[2] = {-0.5f, 1.25f};
    for (int variant = 0; variant < 2; ++variant) {  // plain; bias + Clip
      kernels::NchwcDepthwiseArgs a;
      a.g = &g;
      a.x = reinterpret_cast<const float*>(gx.data());
      a.w = packed.data();
      a.bias = variant ? bias.data() : nullptr;
      a.clamp_lo_hi = variant ? lo_hi : nullptr;
      std::vector<float> want(static_cast<size_t>(y_elems) + 16, -7.f), got(want.size(), -7.f);
      a.y = want.data();
      for (int64_t cb = 0; cb < c.C / B; ++cb) kernels::conv_nchwc::DepthwiseRowsPortable(a, cb, 0, OH);
      for (const SimdBuild& build : SimdBuilds()) {
        if (!build.supported) continue;
        std::fill(got.begin(), got.end(), -7.f);
        a.y = got.data();
        for (int64_t cb = 0; cb < c.C / B; ++cb) {
          build.depthwise_rows(a, cb, 0, OH / 2);
          build.depthwise_rows(a, cb, OH / 2, OH);
        }
        ASSERT_EQ(0, std::memcmp(want.data(), got.data(), want.size() * sizeof(float)))
            << build.name << " variant " << variant;
      }
      for (int64_t i = y_elems; i < y_elems + 16; ++i) ASSERT_EQ(want[i], -7.f) << "written past y";
      if (c.C == 32) {  // channels 24-31 as the pass pads them (zero weights and bias): AVX2 skips their taps
        std::vector<float> w_half = w, bias_half = bias;
        for (int64_t ch = 24; ch < 32; ++ch) {
          std::fill_n(w_half.begin() + ch * taps, taps, 0.f);
          bias_half[ch] = 0.f;
        }
        const kernels::NchwcWeights packed_half(kernels::NchwcWeights::Depthwise{}, w_half.data(), c.C, c.KH, c.KW);
        kernels::NchwcDepthwiseArgs h = a;
        h.w = packed_half.data();
        h.bias = variant ? bias_half.data() : nullptr;
        std::vector<float> want_half(want.size(), -7.f);
        h.y = want_half.data();
        for (int64_t cb = 0; cb < c.C / B; ++cb) kernels::conv_nchwc::DepthwiseRowsPortable(h, cb, 0, OH);
        h.half_block = 1;
        for (const SimdBuild& build : SimdBuilds()) {
          if (!build.supported) continue;
          std::fill(got.begin(), got.end(), -7.f);
          h.y = got.data();
          for (int64_t cb = 0; cb < c.C / B; ++cb) build.depthwise_rows(h, cb, 0, OH);
          ASSERT_EQ(0, std::memcmp(want_half.data(), got.data(), want_half.size() * sizeof(float)))
              << build.name << " half block, variant " << variant;
        }
      }
      std::vector<float> plane(static_cast<size_t>(kernels::DepthwiseFloatPlaneElems(g)));
      std::vector<float> nchw(static_cast<size_t>(OH * OW));
      int nans = 0;
      for (int64_t ch = 0; ch < c.C; ++ch) {
        kernels::DepthwiseConv2DFloat(g, x.data() + ch * c.H * c.W, w.data() + ch * taps, variant ? bias[ch] : 0.f,
                                      nchw.data(), plane.data(), kernels::QGemmIsa::kRef, a.clamp_lo_hi);
        for (int64_t p = 0; p < OH * OW; ++p) {
          const float v = want[((ch / B) * OH * OW + p) * B + ch % B];
          nans += std::isnan(v);
          ASSERT_TRUE(std::memcmp(&v, &nchw[p], sizeof(float)) == 0 || (std::isnan(v) && std::isnan(nchw[p])))
              << "channel " << ch << " pixel " << p << ": " << v << " vs " << nchw[p];
        }
      }
      EXPECT_GT(nans, 0);
    }
  }
}

// MobileNetV2-like, every conv blocked: an NCHW-input stem (3 -> 32, stride 2), depthwise convs
// with Clip (ReLU6), pointwise convs to 24 channels (padded to 32) with a residual Add, an
// expansion to 72 channels (padded to 80), a padded blocked tensor (24 channels) that is also a
// graph output, and a GlobalAveragePool of 24 channels. The blocked run gives the NCHW run's values, the same
// bits at 1 and 2 threads, with no reorder but the graph output's.
TEST(BlockConvChannels, DepthwiseAndPaddedChannelsGiveTheNchwValues) {
  std::mt19937 rng(12);
  Graph g;
  g.inputs.push_back(MakeValueInfo("x", DType::kFloat32, {2, 3, 17, 15}));
  auto conv = [&](const std::string& name, const std::string& in, int64_t C, int64_t M, int64_t k, int64_t s,
                  int64_t group, bool relu6, const std::string& out) {
    g.AddInitializer(name + "_w", Tensor::FromVector<float>(Normal(static_cast<size_t>(M * C / group * k * k), rng),
                                                           {M, C / group, k, k}));
    g.AddInitializer(name + "_b", Tensor::FromVector<float>(Normal(static_cast<size_t>(M), rng), {M}));
    Node n = MakeNode("Conv", {in, name + "_w", name + "_b"}, {relu6 ? out + "_c" : out});
    n.name = name;
    n.attributes = {IntsAttr("kernel_shape", {k, k}), IntsAttr("strides", {s, s}),
                    IntsAttr("pads", {k / 2, k / 2, k / 2, k / 2}), IntAttr("group", group)};
    g.nodes.push_back(n);
    if (relu6) {
      g.AddInitializer(name + "_lo", Tensor::Scalar<float>(0.f));
      g.AddInitializer(name + "_hi", Tensor::Scalar<float>(6.f));
      g.nodes.push_back(MakeNode("Clip", {out + "_c", name + "_lo", name + "_hi"}, {out}));
    }
  };
  conv("stem", "x", 3, 32, 3, 2, 1, true, "s");
  conv("dw1", "s", 32, 32, 3, 1, 32, true, "d1");
  conv("pw1", "d1", 32, 24, 1, 1, 1, false, "p1");  // 24 channels: padded
  conv("ex2", "p1", 24, 72, 1, 1, 1, true, "e2");
  conv("dw2", "e2", 72, 72, 3, 1, 72, true, "d2");   // a padded depthwise conv
  conv("pw2", "d2", 72, 24, 1, 1, 1, false, "p2c");
  g.nodes.push_back(MakeNode("Add", {"p2c", "p1"}, {"p2"}));  // the residual (FuseConvActivation)
  g.nodes.push_back(MakeNode("GlobalAveragePool", {"p2"}, {"gap"}));
  for (const char* out : {"gap", "p1"}) g.outputs.push_back(Untyped(out));
  const Model m = testing::MakeModel(std::move(g), 13);
  Model opt = m;
  ASSERT_TRUE(passes::OptimizeForInference(opt).ok());
  ASSERT_TRUE(passes::FuseConvActivation(opt).ok());
  ASSERT_TRUE(passes::BlockConvChannels(opt).ok());
  std::map<std::string, int> ops;
  int blocked = 0;
  for (const Node& n : opt.graph.nodes) {
    ++ops[n.op_type];
    blocked += n.AttrInt("nchwc", 0) != 0;
    if (n.op_type == "FromNchwc") {
      EXPECT_EQ(n.AttrInt("channels", 0), 24);
    }
  }
  EXPECT_EQ(blocked, 6);
  EXPECT_EQ(ops["ToNchwc"], 0);
  EXPECT_EQ(ops["FromNchwc"], 1);  // p1, a graph output
  EXPECT_EQ(ops["NchwcGlobalAveragePool"], 1);
  ASSERT_TRUE(VerifyGraph(opt.graph).ok());

  const std::vector<Tensor> one = ExpectNchwValuesAndThreadBits(m, testing::RandomFloats({2, 3, 17, 15}, 7), 2);
  ASSERT_EQ(one.size(), 2u);
  EXPECT_EQ(one[0].shape(), (Shape{2, 24, 1, 1}));
  EXPECT_EQ(one[1].shape(), (Shape{2, 24, 9, 8}));
}

// A partial last block: ToNchwc pads 20 channels to 32 with zeros, FromNchwc (channels = 20)
// and NchwcGlobalAveragePool (channels = 20) drop the padding again.
TEST(BlockConvChannels, PartialBlocksArePaddedAndDropped) {
  Graph g;
  g.inputs.push_back(MakeValueInfo("x", DType::kFloat32, {2, 20, 5, 7}));
  Node to = MakeNode("ToNchwc", {"x"}, {"xb"});
  to.domain = "com.quantkit";
  Node from = MakeNode("FromNchwc", {"xb"}, {"back"});
  from.domain = "com.quantkit";
  from.attributes = {IntAttr("channels", 20)};
  Node gap = MakeNode("NchwcGlobalAveragePool", {"xb"}, {"gap"});
  gap.domain = "com.quantkit";
  gap.attributes = {IntAttr("channels", 20)};
  Node plain_gap = MakeNode("GlobalAveragePool", {"x"}, {"gap_plain"});
  g.nodes = {to, from, gap, plain_gap};
  for (const char* out : {"xb", "back", "gap", "gap_plain"}) g.outputs.push_back(Untyped(out));
  const Model m = testing::MakeModel(std::move(g), 13);
  const Tensor x = testing::RandomFloats({2, 20, 5, 7}, 5);
  const std::vector<Tensor> out = testing::RunModel(m, {{"x", x}}, false);
  ASSERT_EQ(out.size(), 4u);
  ASSERT_EQ(out[0].shape(), (Shape{2, 2, 5, 7, 16}));
  for (int64_t n = 0; n < 2; ++n)
    for (int64_t c = 0; c < 32; ++c)
      for (int64_t p = 0; p < 35; ++p) {
        const float b = out[0].data<float>()[((n * 2 + c / 16) * 35 + p) * 16 + c % 16];
        ASSERT_EQ(b, c < 20 ? x.data<float>()[(n * 20 + c) * 35 + p] : 0.f) << n << " " << c << " " << p;
      }
  ASSERT_EQ(out[1].shape(), x.shape());
  EXPECT_EQ(0, std::memcmp(out[1].data<float>(), x.data<float>(), x.numel() * sizeof(float)));
  ASSERT_EQ(out[2].shape(), (Shape{2, 20, 1, 1}));
  EXPECT_EQ(0, std::memcmp(out[2].data<float>(), out[3].data<float>(), out[2].numel() * sizeof(float)));
}

}  // namespace
}  // namespace quantkit
