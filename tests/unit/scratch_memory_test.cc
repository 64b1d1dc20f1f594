// Kernel scratch memory (im2col columns, packed int8 activations, accumulators, the RNN input
// projection) comes from the session's pool and counts against SessionOptions::max_memory_bytes:
// a limit that holds every tensor (outputs, intermediates) but not the scratch is an error naming
// the node and the scratch, and a limit large enough gives exactly the bits of an unlimited run.
#include <gtest/gtest.h>

#include <cstring>
#include <random>

#include "runtime/kernels/qdirect_conv.h"
#include "test_util.h"

namespace quantkit {
namespace {

using testing::RandomFloats;
using testing::RandomInts;
using testing::IntAttr;
using testing::IntsAttr;
using testing::MakeModel;
using testing::MakeNode;
using testing::MakeValueInfo;

using Feeds = std::vector<std::pair<std::string, Tensor>>;

constexpr uint64_t kKiB = 1024, kMiB = 1024 * 1024;

struct Outcome {
  Status status;
  std::vector<Tensor> outputs;
  uint64_t peak = 0;  // pool bytes
};

// limit 0: the default (half of physical memory).
Outcome RunLimited(const Model& model, const Feeds& feeds, uint64_t limit, bool optimize, int threads = 1) {
  SessionOptions opts;
  opts.threads = threads;
  opts.optimize = optimize;
  opts.max_memory_bytes = limit;
  auto session = Session::Create(model, opts);
  if (!session.ok()) {
    ADD_FAILURE() << "Session::Create: " << session.status().message();
    return {};
  }
  Outcome o;
  o.status = (*session)->Run(feeds, &o.outputs);
  o.peak = (*session)->peak_pool_bytes();
  return o;
}

void ExpectSameBits(const std::vector<Tensor>& a, const std::vector<Tensor>& b) {
  ASSERT_EQ(a.size(), b.size());
  for (size_t i = 0; i < a.size(); ++i) {
    ASSERT_EQ(a[i].dtype(), b[i].dtype()) << "output " << i;
    ASSERT_EQ(a[i].shape(), b[i].shape()) << "output " << i;
    EXPECT_EQ(std::memcmp(a[i].raw_data(), b[i].raw_data(), a[i].nbytes()), 0) << "output " << i << " differs";
  }
}

// Runs `model` under `tight` (must fail naming `node` and the scratch) and under `roomy` (must
// succeed, bit-identical to the default limit). Returns the default-limit outputs.
std::vector<Tensor> CheckLimits(const Model& model, const Feeds& feeds, uint64_t tight, uint64_t roomy,
                                const std::string& node, const std::string& scratch, bool optimize, int threads = 1) {
  const Outcome reference = RunLimited(model, feeds, 0, optimize, threads);
  EXPECT_TRUE(reference.status.ok()) << reference.status.message();
  // The tight limit holds everything the runtime counted before scratch was counted: the pool's
  // peak of a successful run is mostly tensors, and the tight limit is above the outputs.
  uint64_t output_bytes = 0;
  for (const Tensor& t : reference.outputs) output_bytes += t.nbytes();
  EXPECT_GT(tight, output_bytes);

  const Outcome refused = RunLimited(model, feeds, tight, optimize, threads);
  EXPECT_FALSE(refused.status.ok()) << "expected the " << scratch << " scratch to exceed " << tight << " bytes";
  EXPECT_EQ(refused.status.code(), StatusCode::kResourceExhausted);
  const std::string& msg = refused.status.message();
  EXPECT_NE(msg.find(node + ":"), std::string::npos) << msg;
  EXPECT_NE(msg.find(scratch + " scratch of "), std::string::npos) << msg;
  EXPECT_NE(msg.find("would exceed the memory limit of " + std::to_string(tight) + " bytes"), std::string::npos) << msg;
  EXPECT_EQ(msg.find('\n'), std::string::npos) << "one line: " << msg;

  const Outcome ok = RunLimited(model, feeds, roomy, optimize, threads);
  EXPECT_TRUE(ok.status.ok()) << ok.status.message();
  EXPECT_LE(ok.peak, roomy);
  ExpectSameBits(reference.outputs, ok.outputs);
  return reference.outputs;
}

ValueInfo Output(const std::string& name) {
  ValueInfo vi;
  vi.name = name;
  return vi;
}

// y = QLinearConv(x [1, C, H, W] uint8, w [M, C, k, k] int8): constant weights take the fast path
// (im2col + packed int8 GEMM); weights fed at run time take the reference path (int16 operands,
// int32 accumulator).
Model QLinearConvModel(int64_t C, int64_t H, int64_t M, int64_t k, bool constant_weights, Feeds* feeds,
                       int64_t group = 1) {
  Graph g;
  const Tensor x = RandomInts<uint8_t>({1, C, H, H}, 1);
  const Tensor w = RandomInts<int8_t>({M, C / group, k, k}, 2);
  g.inputs.push_back(MakeValueInfo("x", DType::kUInt8, {1, C, H, H}));
  feeds->emplace_back("x", x);
  if (constant_weights) {
    g.AddInitializer("w", w);
  } else {
    g.inputs.push_back(MakeValueInfo("w", DType::kInt8, {M, C / group, k, k}));
    feeds->emplace_back("w", w);
  }
  g.AddInitializer("xs", Tensor::Scalar<float>(0.02f));
  g.AddInitializer("xz", Tensor::Scalar<uint8_t>(128));
  g.AddInitializer("ws", Tensor::Scalar<float>(0.01f));
  g.AddInitializer("wz", Tensor::Scalar<int8_t>(0));
  g.AddInitializer("ys", Tensor::Scalar<float>(0.5f));
  g.AddInitializer("yz", Tensor::Scalar<uint8_t>(120));
  g.outputs.push_back(Output("y"));
  Node conv = MakeNode("QLinearConv", {"x", "xs", "xz", "w", "ws", "wz", "ys", "yz"}, {"y"}, "conv1");
  conv.attributes = {IntsAttr("pads", {k / 2, k / 2, k / 2, k / 2}), IntAttr("group", group)};
  g.nodes.push_back(conv);
  return MakeModel(std::move(g), 13);
}

TEST(ScratchMemory, QLinearConvScratchCountsAgainstTheLimit) {
  // x [1, 32, 60, 60], 3x3 in 2 groups of 16 channels (grouped: the GEMM path on every ISA, never
  // the direct kernel): output 112.5 KiB; a 2-D convolution packs blocks of output pixels straight
  // from the image (no im2col matrix): 384 rows x 144 bytes per group (54 KiB; avx2 adds their
  // int16 copy), more than the 31.5 KiB the tight limit leaves beside the output.
  Feeds feeds;
  const Model fast = QLinearConvModel(32, 60, 32, 3, /*constant_weights=*/true, &feeds, /*group=*/2);
  const auto y = CheckLimits(fast, feeds, 144 * kKiB, 8 * kMiB, "QLinearConv node 'conv1'", "packed activations", false);
  // The reference path (weights fed at run time: int32 accumulator, int16 operands) gives the same
  // bits and its scratch counts too.
  Feeds ref_feeds;
  const Model reference = QLinearConvModel(32, 60, 32, 3, /*constant_weights=*/false, &ref_feeds, /*group=*/2);
  const auto y_ref = CheckLimits(reference, ref_feeds, 512 * kKiB, 8 * kMiB, "QLinearConv node 'conv1'",
                                 "int32 accumulator", false);
  ExpectSameBits(y, y_ref);
  // Two threads: the same bits.
  ExpectSameBits(y, RunLimited(fast, feeds, 8 * kMiB, false, 2).outputs);
}

// x [1, 16, 64, 64], 3x3 on AVX2's direct kernel (rows a multiple of 16 wide): output 64 KiB; its
// padded copy of the input (66 x 66 x 16: 68 KiB) exceeds the 32 KiB left; the same bits as the
// reference path, at one and two threads (there the GEMM path's packed activations count).
TEST(ScratchMemory, QLinearConvDirect2DScratchCountsAgainstTheLimit) {
  Feeds feeds;
  const Model fast = QLinearConvModel(16, 64, 16, 3, /*constant_weights=*/true, &feeds);
  const bool direct = kernels::QDirectConvSupported(kernels::DefaultQGemmIsa());
  const auto y = CheckLimits(fast, feeds, 96 * kKiB, 8 * kMiB, "QLinearConv node 'conv1'",
                             direct ? "padded input" : "packed activations", false);
  Feeds ref_feeds;
  const Model reference = QLinearConvModel(16, 64, 16, 3, /*constant_weights=*/false, &ref_feeds);
  ExpectSameBits(y, RunLimited(reference, ref_feeds, 0, false, 1).outputs);
  ExpectSameBits(y, RunLimited(fast, feeds, 8 * kMiB, false, 2).outputs);
}

// A map smaller than one block of pixels (7x7: one block) on two threads: one worker packs and
// the GEMM splits the 128 output channels over the pool. The same bits as one thread and as the
// reference path (weights fed at run time).
TEST(QLinearConvThreads, SmallMapSplitsOutputChannelsSameBits) {
  Feeds feeds;
  const Model fast = QLinearConvModel(64, 7, 128, 3, /*constant_weights=*/true, &feeds);
  Feeds ref_feeds;
  const Model reference = QLinearConvModel(64, 7, 128, 3, /*constant_weights=*/false, &ref_feeds);
  const Outcome ref = RunLimited(reference, ref_feeds, 0, false, 1);
  const Outcome one = RunLimited(fast, feeds, 0, false, 1);
  const Outcome two = RunLimited(fast, feeds, 0, false, 2);
  ASSERT_TRUE(ref.status.ok() && one.status.ok() && two.status.ok());
  ExpectSameBits(ref.outputs, one.outputs);
  ExpectSameBits(ref.outputs, two.outputs);
}

TEST(ScratchMemory, QLinearConvPackedActivationsCountAgainstTheLimit) {
  // Pointwise on the GEMM path (a 7x7 map, 64 output channels): x [1, 512, 7, 7], 1x1 -> output
  // 3 KiB; packed activations 49 pixels x 512 channels (25 KiB of bytes; on avx2 also int16
  // words), more than the 16 KiB limit.
  Feeds feeds;
  const Model m = QLinearConvModel(512, 7, 64, 1, true, &feeds);
  CheckLimits(m, feeds, 16 * kKiB, 8 * kMiB, "QLinearConv node 'conv1'", "packed activations", false);
}

TEST(ScratchMemory, QLinearConvPointwisePanelCountsAgainstTheLimit) {
  // Pointwise on AVX2's direct kernel (kernels/qdirect_conv.h, a 32x32 map): x [1, 64, 32, 32] ->
  // output 64 KiB; each task's panel is 32 channel pairs x 16 pixels of int16 (2 KiB): a limit
  // 1 KiB above the output refuses it. Other ISAs take the GEMM path (its packed activations).
  Feeds feeds;
  const Model m = QLinearConvModel(64, 32, 64, 1, true, &feeds);
  const bool direct = kernels::QDirectConvSupported(kernels::DefaultQGemmIsa());
  CheckLimits(m, feeds, 65 * kKiB, 8 * kMiB, "QLinearConv node 'conv1'", direct ? "direct conv panel" : "packed activations",
              false);
}

// y = QLinearMatMul(a [256, 512] uint8, b [512, 64] int8 constant).
TEST(ScratchMemory, QLinearMatMulAccumulatorAndOperandsCountAgainstTheLimit) {
  Graph g;
  g.inputs.push_back(MakeValueInfo("a", DType::kUInt8, {256, 512}));
  g.AddInitializer("b", RandomInts<int8_t>({512, 64}, 3));
  g.AddInitializer("as", Tensor::Scalar<float>(0.02f));
  g.AddInitializer("az", Tensor::Scalar<uint8_t>(128));
  g.AddInitializer("bs", Tensor::Scalar<float>(0.01f));
  g.AddInitializer("bz", Tensor::Scalar<int8_t>(0));
  g.AddInitializer("ys", Tensor::Scalar<float>(4.f));
  g.AddInitializer("yz", Tensor::Scalar<uint8_t>(128));
  g.outputs.push_back(Output("y"));
  g.nodes.push_back(MakeNode("QLinearMatMul", {"a", "as", "az", "b", "bs", "bz", "ys", "yz"}, {"y"}, "qmm"));
  const Model m = MakeModel(std::move(g), 13);
  const Feeds feeds = {{"a", RandomInts<uint8_t>({256, 512}, 4)}};
  // Output 16 KiB; int32 accumulator 64 KiB; int16 A 256 KiB.
  CheckLimits(m, feeds, 48 * kKiB, 8 * kMiB, "QLinearMatMul node 'qmm'", "int32 accumulator", false);
  CheckLimits(m, feeds, 160 * kKiB, 8 * kMiB, "QLinearMatMul node 'qmm'", "int16 A", false);
}

// Dynamic quantization in the integer-ops form (DynamicQuantizeLinear -> MatMulInteger -> Cast ->
// Mul), fused at session creation into com.quantkit::MatMulIntegerToFloat, which quantizes and
// packs the float activations itself.
TEST(ScratchMemory, FusedDynamicMatMulPackedActivationsCountAgainstTheLimit) {
  constexpr int64_t M = 2048, K = 256, N = 64;
  Graph g;
  g.inputs.push_back(MakeValueInfo("X", DType::kFloat32, {M, K}));
  g.outputs.push_back(Output("Y"));
  g.AddInitializer("Wq", RandomInts<int8_t>({K, N}, 5));
  g.AddInitializer("Ws", Tensor::Scalar<float>(0.003f));
  g.AddInitializer("Wz", Tensor::Scalar<int8_t>(0));
  g.nodes.push_back(MakeNode("DynamicQuantizeLinear", {"X"}, {"Xq", "Xs", "Xz"}));
  g.nodes.push_back(MakeNode("MatMulInteger", {"Xq", "Wq", "Xz", "Wz"}, {"acc"}, "mm"));
  Node cast = MakeNode("Cast", {"acc"}, {"accf"});
  cast.attributes.push_back(IntAttr("to", 1));
  g.nodes.push_back(cast);
  g.nodes.push_back(MakeNode("Mul", {"Xs", "Ws"}, {"S"}));
  g.nodes.push_back(MakeNode("Mul", {"accf", "S"}, {"Y"}));
  const Model m = MakeModel(std::move(g), 13);
  const Feeds feeds = {{"X", RandomFloats({M, K}, 6)}};
  // Output 512 KiB; packed activations >= 2048 x 256 bytes (+ int16 copy on avx2).
  const auto fused = CheckLimits(m, feeds, 768 * kKiB, 16 * kMiB, "MatMulIntegerToFloat node 'mm_fused_int8'",
                                 "packed activations", /*optimize=*/true);
  // Unfused, the standard ops' int16 operand counts too (Xq 512 KiB + acc 512 KiB are tensors).
  const auto unfused = CheckLimits(m, feeds, 1536 * kKiB, 16 * kMiB, "MatMulInteger node 'mm'", "int16 A",
                                   /*optimize=*/false);
  ExpectSameBits(fused, unfused);
}

// Float Conv: im2col chunk per (batch, group) task; sequential (big tasks) and from ParallelFor
// workers (many small tasks, two threads).
// Float Conv copies its input into phase planes (zero padding, column phases), then packs its
// im2col values straight into GEMM panels (256 x 768 floats at most per task).
TEST(ScratchMemory, FloatConvPlanesAndPanelsCountAgainstTheLimit) {
  // k x k kernels, padded by k / 2 when `pad`. 3x3 stride-1 convs of 32 channels on these maps run
  // as Winograd (their scratch: the tiles); the taps path is exercised with 5x5 kernels.
  auto conv_model = [](int64_t N, int64_t C, int64_t H, bool pad, int64_t stride = 1, int64_t k = 3) {
    Graph g;
    g.inputs.push_back(MakeValueInfo("x", DType::kFloat32, {N, C, H, H}));
    g.AddInitializer("w", RandomFloats({C, C, k, k}, 7, 0.2f));
    g.AddInitializer("b", RandomFloats({C}, 8));
    g.outputs.push_back(Output("y"));
    Node conv = MakeNode("Conv", {"x", "w", "b"}, {"y"}, "conv");
    if (pad) conv.attributes.push_back(IntsAttr("pads", {k / 2, k / 2, k / 2, k / 2}));
    if (stride != 1) conv.attributes.push_back(IntsAttr("strides", {stride, stride}));
    g.nodes.push_back(conv);
    return MakeModel(std::move(g), 13);
  };
  // Each (image, group) task's scratch holds its channels' phase planes and its GEMM workspace.
  {  // [1, 16, 128, 128], 5x5 padded: output 1 MiB; planes 16 x 132 x 132 floats = 1.06 MiB.
    const Model m = conv_model(1, 16, 128, true, 1, 5);
    const Feeds feeds = {{"x", RandomFloats({1, 16, 128, 128}, 9)}};
    for (int threads : {1, 2}) {
      CheckLimits(m, feeds, 2 * kMiB, 32 * kMiB, "Conv node 'conv'", "conv planes and tile rows", false, threads);
    }
  }
  {  // [1, 16, 128, 128] 5x5 unpadded, stride 1 (B read in place): output 984064 bytes, planes
     // 1048576 and a margin; the tiles' rows, 16 x 768 floats = 49152 bytes per task.
    const Model m = conv_model(1, 16, 128, false, 1, 5);
    const Feeds feeds = {{"x", RandomFloats({1, 16, 128, 128}, 9)}};
    for (int threads : {1, 2}) {
      CheckLimits(m, feeds, 2000000, 32 * kMiB, "Conv node 'conv'", "conv planes and tile rows", false, threads);
    }
  }
  {  // [1, 32, 128, 128] 3x3 padded, Winograd: output 2 MiB; per task a block of 4 rows of 64 tiles,
     // their 16 x (32 + 32) x 256 transformed floats (1 MiB) and the GEMM panel.
    const Model m = conv_model(1, 32, 128, true);
    const Feeds feeds = {{"x", RandomFloats({1, 32, 128, 128}, 9)}};
    for (int threads : {1, 2}) {
      CheckLimits(m, feeds, 3 * kMiB, 32 * kMiB, "Conv node 'conv'", "Winograd tiles", false, threads);
    }
  }
  {  // Stride 2 (im2col panels): output 254016 bytes, planes 1040448; a panel of 144 x 768 floats =
     // 0.42 MiB per task.
    const Model m = conv_model(1, 16, 128, false, 2);
    const Feeds feeds = {{"x", RandomFloats({1, 16, 128, 128}, 9)}};
    for (int threads : {1, 2}) {
      CheckLimits(m, feeds, 1400 * kKiB, 32 * kMiB, "Conv node 'conv'", "conv planes and panel", false, threads);
    }
  }
  {  // [8, 8, 32, 32] 5x5 on two threads: images run in parallel, each worker with one image's planes
     // (8 x 36 x 36 floats, 41 KiB) and its tile rows (one worker may run them all); output 262144.
    const Model m = conv_model(8, 8, 32, true, 1, 5);
    const Feeds feeds = {{"x", RandomFloats({8, 8, 32, 32}, 10)}};
    const auto two =
        CheckLimits(m, feeds, 300 * kKiB, 8 * kMiB, "Conv node 'conv'", "conv planes and tile rows", false, 2);
    ExpectSameBits(two, RunLimited(m, feeds, 8 * kMiB, false, 1).outputs);
  }
}

// LSTM: the input projection for every step ([seq * batch, 4 * hidden] floats) is scratch.
TEST(ScratchMemory, LstmInputProjectionCountsAgainstTheLimit) {
  constexpr int64_t S = 64, B = 8, I = 16, H = 256;
  for (int64_t layout : {0, 1}) {
    Graph g;
    const std::vector<int64_t> x_shape = layout ? std::vector<int64_t>{B, S, I} : std::vector<int64_t>{S, B, I};
    g.inputs.push_back(MakeValueInfo("X", DType::kFloat32, x_shape));
    g.AddInitializer("W", RandomFloats({1, 4 * H, I}, 11, 0.3f));
    g.AddInitializer("R", RandomFloats({1, 4 * H, H}, 12, 0.05f));
    g.AddInitializer("Bias", RandomFloats({1, 8 * H}, 13, 0.1f));
    for (const char* o : {"Y", "Y_h", "Y_c"}) g.outputs.push_back(Output(o));
    Node lstm = MakeNode("LSTM", {"X", "W", "R", "Bias"}, {"Y", "Y_h", "Y_c"}, "lstm");
    lstm.attributes = {IntAttr("hidden_size", H), IntAttr("layout", layout)};
    g.nodes.push_back(lstm);
    const Model m = MakeModel(std::move(g), 14);
    const Feeds feeds = {{"X", RandomFloats(x_shape, 14)}};
    // Outputs 528 KiB; the input projection 2 MiB.
    const auto y = CheckLimits(m, feeds, 1 * kMiB, 16 * kMiB, "LSTM node 'lstm'", "input projection", false);
    ASSERT_EQ(y.size(), 3u);
    EXPECT_EQ(y[0].shape(), layout ? (Shape{B, S, 1, H}) : (Shape{S, 1, B, H}));
  }
}

}  // namespace
}  // namespace quantkit
