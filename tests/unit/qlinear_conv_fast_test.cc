// QLinearConv's fast paths (constant weights: packed int8 GEMM with the requantize epilogue, the
// depthwise and the direct kernels, stride 1 and 2) must equal the reference path (weights fed at run time: zero-point-corrected int16
// im2col GEMM) exactly, over geometries that stress padding, strides, dilation and groups.
#include <gtest/gtest.h>

#include <cstring>
#include <random>

#include "quantkit/session.h"

#include "test_util.h"

namespace quantkit {
namespace {

using testing::RandomInts;
using testing::IntAttr;
using testing::IntsAttr;
using testing::MakeModel;
using testing::MakeNode;
using testing::MakeValueInfo;
using testing::RunModel;

struct ConvCase {
  int64_t N, C, H, W, M, k, stride, pad, dil, group;
  bool x_signed;
  int64_t q_min = -1000, q_max = 1000;  // com.quantkit clamp when set
};

std::vector<Tensor> RunConv(const ConvCase& c, bool constant_weights, const std::vector<Tensor>& t, int threads = 1) {
  Graph g;
  const char* names[9] = {"x", "xs", "xz", "w", "ws", "wz", "ys", "yz", "b"};
  std::vector<std::pair<std::string, Tensor>> feeds;
  for (int i = 0; i < 9; ++i) {
    const bool is_weight = i >= 3 && i <= 5;
    if (i == 0 || (is_weight && !constant_weights)) {
      g.inputs.push_back(MakeValueInfo(names[i], t[i].dtype(), t[i].shape()));
      feeds.emplace_back(names[i], t[i]);
    } else {
      g.AddInitializer(names[i], t[i]);
    }
  }
  ValueInfo y;
  y.name = "y";
  g.outputs.push_back(y);
  Node conv = MakeNode("QLinearConv", {"x", "xs", "xz", "w", "ws", "wz", "ys", "yz", "b"}, {"y"});
  conv.attributes = {IntsAttr("strides", {c.stride, c.stride}), IntsAttr("pads", {c.pad, c.pad, c.pad, c.pad}),
                     IntsAttr("dilations", {c.dil, c.dil}), IntAttr("group", c.group)};
  Model m = MakeModel(std::move(g), 13);
  if (c.q_min != -1000) {
    conv.domain = "com.quantkit";
    conv.attributes.push_back(IntAttr("q_min", c.q_min));
    conv.attributes.push_back(IntAttr("q_max", c.q_max));
    m.opsets.push_back({"com.quantkit", 1});
  }
  m.graph.nodes.push_back(conv);
  if (threads == 1) return RunModel(m, feeds, /*optimize=*/false);
  SessionOptions opts;
  opts.optimize = false;
  opts.threads = threads;
  auto session = Session::Create(m, opts);
  EXPECT_TRUE(session.ok()) << session.status().message();
  std::vector<Tensor> out;
  if (session.ok()) {
    EXPECT_TRUE((*session)->Run(feeds, &out).ok());
  }
  return out;
}

TEST(QLinearConvFast, EqualsReferencePathExactly) {
  const std::vector<ConvCase> cases = {
      {1, 3, 9, 11, 5, 3, 1, 1, 1, 1, false},   {2, 4, 8, 8, 6, 3, 2, 1, 1, 1, true},
      {1, 16, 7, 7, 32, 1, 1, 0, 1, 1, false},  {1, 8, 10, 10, 8, 3, 1, 1, 1, 8, false},  // depthwise
      {1, 6, 12, 9, 4, 3, 1, 2, 2, 2, true},    {1, 5, 6, 6, 7, 5, 3, 2, 1, 1, false},
      {1, 8, 10, 10, 8, 3, 1, 1, 1, 1, false, 128, 255},  // fused Relu: clamp at the zero point
      // Depthwise (the direct kernel): strides, 5x5, dilation, no padding, signed input, clamp.
      {2, 12, 13, 17, 12, 3, 2, 1, 1, 12, true},  {1, 8, 9, 9, 8, 5, 1, 2, 1, 8, false},
      {1, 8, 11, 10, 8, 3, 1, 2, 2, 8, false},    {1, 8, 7, 7, 8, 3, 2, 0, 1, 8, false, 128, 200},
      {1, 4, 3, 20, 4, 5, 1, 2, 1, 4, true},  // kernel wider than the input height
      // Dense 2-D (packed straight from the image): taps above and below the input, stride with
      // dilation, one output pixel wide.
      {1, 3, 3, 20, 4, 5, 1, 2, 1, 1, true},      {1, 2, 5, 5, 3, 3, 2, 0, 2, 1, false},
      {1, 3, 6, 1, 5, 3, 1, 1, 1, 1, false, 128, 255},
      // Pointwise on the direct kernel (AVX2, kernels/qdirect_conv.h): few channels on a large map,
      // few output channels, a fused Relu; pixel counts with strip tails.
      {2, 24, 32, 40, 24, 1, 1, 0, 1, 1, false},  {1, 96, 5, 7, 6, 1, 1, 0, 1, 1, true},
      {1, 24, 33, 33, 20, 1, 1, 0, 1, 1, true, 128, 255},
      {1, 32, 9, 9, 40, 1, 1, 0, 1, 1, false},  // one 81-pixel run: at 2 threads, shares of channels
      // Stride-1 2-D convs on the direct kernel (rows a multiple of 16 wide, AVX2): padding,
      // dilation, signed input, a fused Relu, a 5x5 kernel, 13 output channels (a 1-channel tile).
      {2, 5, 7, 32, 6, 3, 1, 1, 1, 1, false},    {1, 4, 9, 16, 13, 3, 1, 2, 2, 1, true},
      {1, 3, 6, 48, 7, 5, 1, 2, 1, 1, false, 128, 255},
      // One input channel pair takes the direct kernel at any width (Fashion CNN's first conv,
      // 28 wide; 9 wide, signed, dilated).
      {3, 1, 28, 28, 16, 3, 1, 1, 1, 1, false},  {1, 2, 7, 9, 5, 3, 1, 2, 2, 1, true},
      // Few weights take it at any width, 16-pixel strips spanning output rows: 28 wide (one or
      // two rows per strip), 7 wide (three), 5x5 signed, dilation on an odd width, a fused Relu.
      {1, 16, 28, 28, 32, 3, 1, 1, 1, 1, false}, {2, 8, 7, 7, 16, 3, 1, 1, 1, 1, false},
      {1, 4, 14, 14, 8, 5, 1, 2, 1, 1, true},    {1, 6, 9, 13, 5, 3, 1, 2, 2, 1, false, 128, 255},
      // Stride 2 on the direct kernel, through the padded planes split by row and column parity:
      // BlazeFace's 5x5 3 -> 24 (strips spanning output rows), an odd padded size, dilation, a
      // signed input with a fused Relu, two images.
      {1, 3, 33, 40, 24, 5, 2, 2, 1, 1, false},  {1, 4, 10, 31, 13, 3, 2, 1, 2, 1, false},
      {2, 3, 17, 17, 16, 3, 2, 1, 1, 1, true, 128, 255},
  };
  std::mt19937 rng(21);
  for (const ConvCase& c : cases) {
    std::vector<Tensor> t(9);
    t[0] = c.x_signed ? RandomInts<int8_t>({c.N, c.C, c.H, c.W}, rng) : RandomInts<uint8_t>({c.N, c.C, c.H, c.W}, rng);
    t[1] = Tensor::FromVector<float>({0.02f}, {});
    t[2] = c.x_signed ? Tensor::FromVector<int8_t>({-3}, {}) : Tensor::FromVector<uint8_t>({117}, {});
    t[3] = RandomInts<int8_t>({c.M, c.C / c.group, c.k, c.k}, rng);
    std::vector<float> ws(static_cast<size_t>(c.M));
    for (size_t i = 0; i < ws.size(); ++i) ws[i] = 0.001f * static_cast<float>(i + 1);
    t[4] = Tensor::FromVector<float>(ws, {c.M});
    std::vector<int8_t> wz(static_cast<size_t>(c.M));
    for (size_t i = 0; i < wz.size(); ++i) wz[i] = static_cast<int8_t>(static_cast<int>(i % 3) - 1);
    t[5] = Tensor::FromVector<int8_t>(wz, {c.M});
    t[6] = Tensor::FromVector<float>({0.05f}, {});
    t[7] = Tensor::FromVector<uint8_t>({128}, {});
    std::vector<int32_t> bias(static_cast<size_t>(c.M));
    for (size_t i = 0; i < bias.size(); ++i) bias[i] = static_cast<int32_t>(i * 997 % 4001) - 2000;
    t[8] = Tensor::FromVector<int32_t>(bias, {c.M});
    const auto fast = RunConv(c, true, t);
    const auto ref = RunConv(c, false, t);
    const auto fast2 = RunConv(c, true, t, 2);
    ASSERT_EQ(fast2.size(), 1u);
    ASSERT_EQ(0, std::memcmp(fast2[0].raw_data(), ref[0].raw_data(), ref[0].nbytes())) << "2 threads, M=" << c.M;
    ASSERT_EQ(fast.size(), 1u);
    ASSERT_EQ(ref.size(), 1u);
    ASSERT_EQ(fast[0].shape(), ref[0].shape());
    int distinct = 0;
    for (int64_t i = 0; i < ref[0].numel(); ++i) {
      ASSERT_EQ(fast[0].data<uint8_t>()[i], ref[0].data<uint8_t>()[i]) << "element " << i << " case M=" << c.M;
      distinct += ref[0].data<uint8_t>()[i] != ref[0].data<uint8_t>()[0];
      if (c.q_min != -1000) {
        ASSERT_GE(fast[0].data<uint8_t>()[i], c.q_min);
      }
    }
    EXPECT_GT(distinct, 0) << "degenerate output";
  }
}

}  // namespace
}  // namespace quantkit
