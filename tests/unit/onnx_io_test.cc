// ONNX import/export: round trips through the checker, Constant weights, fp16 initializers,
// external data (and its path checks), unsorted nodes, unused opset domains, bad files.
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <fstream>

#include "passes/passes.h"
#include "quantkit/float16.h"
#include "quantkit/model_io.h"
#include "test_util.h"

namespace quantkit {
namespace {

namespace fs = std::filesystem;
using testing::MakeModel;
using testing::MakeNode;
using testing::MakeValueInfo;

fs::path TempDir(const std::string& name) {
  fs::path dir = fs::temp_directory_path() / ("quantkit_test_" + name + "_" + std::to_string(::getpid()));
  fs::remove_all(dir);
  fs::create_directories(dir);
  return dir;
}

// y = Relu(x * w + b) written with Mul/Add so only elementwise kernels are needed.
Model SmallModel() {
  Graph g;
  g.inputs = {MakeValueInfo("x", DType::kFloat32, {2, 3})};
  g.outputs = {MakeValueInfo("y", DType::kFloat32, {2, 3})};
  g.AddInitializer("w", Tensor::FromVector<float>({1, -2, 3}, {3}));
  g.AddInitializer("b", Tensor::FromVector<float>({0.5f, 0.5f, -10}, {3}));
  g.nodes.push_back(MakeNode("Mul", {"x", "w"}, {"xw"}));
  g.nodes.push_back(MakeNode("Add", {"xw", "b"}, {"xwb"}));
  g.nodes.push_back(MakeNode("Relu", {"xwb"}, {"y"}));
  return MakeModel(std::move(g), 13);
}

TEST(OnnxIo, RoundTripPassesCheckerAndKeepsEverything) {
  Model m = SmallModel();
  m.metadata_props.push_back({"k", "v"});
  ASSERT_TRUE(CheckModel(m).ok()) << CheckModel(m).message();
  auto bytes = SerializeModel(m);
  ASSERT_TRUE(bytes.ok());
  auto back = LoadModelFromBytes(*bytes);
  ASSERT_TRUE(back.ok()) << back.status().message();
  EXPECT_TRUE(CheckModel(*back).ok());
  EXPECT_EQ(back->graph.nodes.size(), 3u);
  EXPECT_EQ(back->graph.initializers.at("w").ToFloatVector(), (std::vector<float>{1, -2, 3}));
  EXPECT_EQ(back->metadata_props.size(), 1u);
  EXPECT_EQ(back->OpsetVersion(""), 13);
  // Deterministic serialisation: same model, same bytes.
  EXPECT_EQ(*SerializeModel(*back), *bytes);
}

TEST(OnnxIo, RoundTripOfOnnxTestModelsPassesChecker) {
  const fs::path root = "/usr/share/libonnx-testdata/data/node";
  if (!fs::exists(root)) GTEST_SKIP() << "libonnx-testdata not installed";
  int checked = 0;
  for (const char* name : {"test_conv_with_strides_padding", "test_lstm_defaults", "test_if", "test_loop11",
                           "test_resize_upsample_scales_linear", "test_gemm_default_no_bias"}) {
    auto m = LoadModel((root / name / "model.onnx").string());
    ASSERT_TRUE(m.ok()) << name << ": " << m.status().message();
    auto bytes = SerializeModel(*m);
    ASSERT_TRUE(bytes.ok());
    auto back = LoadModelFromBytes(*bytes);
    ASSERT_TRUE(back.ok()) << name;
    Status s = CheckModel(*back);
    EXPECT_TRUE(s.ok()) << name << ": " << s.message();
    ++checked;
  }
  EXPECT_EQ(checked, 6);
}

TEST(OnnxIo, Float16InitializersAndExternalData) {
  Model m = SmallModel();
  std::vector<float> big(5000);
  for (size_t i = 0; i < big.size(); ++i) big[i] = std::sin(static_cast<float>(i));
  m.graph.AddInitializer("unused_big", Tensor::FromVector<float>(big, {5000}));
  Tensor h(DType::kFloat16, {3});
  for (int i = 0; i < 3; ++i) h.data<uint16_t>()[i] = FloatToHalf(0.25f * i);
  m.graph.AddInitializer("half", h);
  const fs::path dir = TempDir("extdata");
  SaveOptions so;
  so.external_data_threshold = 1024;
  ASSERT_TRUE(SaveModel(m, (dir / "m.onnx").string(), so).ok());
  EXPECT_TRUE(fs::exists(dir / "m.onnx.data"));
  auto back = LoadModel((dir / "m.onnx").string());
  ASSERT_TRUE(back.ok()) << back.status().message();
  EXPECT_EQ(back->graph.initializers.at("unused_big").ToFloatVector(), big);
  const Tensor& hb = back->graph.initializers.at("half");
  EXPECT_EQ(hb.dtype(), DType::kFloat16);
  EXPECT_EQ(HalfToFloat(hb.data<uint16_t>()[2]), 0.5f);
  fs::remove_all(dir);
}

TEST(OnnxIo, ExternalDataMayNotLeaveTheModelDirectory) {
  Model m = SmallModel();
  std::vector<float> big(1000, 1.f);
  m.graph.AddInitializer("big", Tensor::FromVector<float>(big, {1000}));
  const fs::path dir = TempDir("extescape");
  SaveOptions so;
  so.external_data_threshold = 1024;
  ASSERT_TRUE(SaveModel(m, (dir / "m.onnx").string(), so).ok());
  // Rewrite the location to point outside: patch bytes of the model file.
  std::ifstream f(dir / "m.onnx", std::ios::binary);
  std::string bytes((std::istreambuf_iterator<char>(f)), {});
  const std::string from = "m.onnx.data";
  for (const std::string to : {"../m.onnx.d", "/etc/passwd"}) {
    std::string patched = bytes;
    auto pos = patched.find(from);
    ASSERT_NE(pos, std::string::npos);
    if (to.size() == from.size()) {
      patched.replace(pos, from.size(), to);
      auto r = LoadModelFromBytes(patched, dir.string());
      ASSERT_FALSE(r.ok());
      const std::string& msg = r.status().message();
      EXPECT_TRUE(msg.find("leaves the model's directory") != std::string::npos ||
                  msg.find("absolute path") != std::string::npos)
          << msg;
      EXPECT_NE(msg.find("'big'"), std::string::npos) << msg;
    }
  }
  fs::remove_all(dir);
}

TEST(OnnxIo, ConstantNodeWeightsUnsortedNodesAndUnusedDomains) {
  Graph g;
  g.inputs = {MakeValueInfo("x", DType::kFloat32, {3})};
  g.outputs = {MakeValueInfo("y", DType::kFloat32, {3})};
  // Nodes deliberately out of order: Add reads c, produced by the Constant after it.
  g.nodes.push_back(MakeNode("Add", {"x", "c"}, {"y"}));
  Node c = MakeNode("Constant", {}, {"c"});
  Attribute a;
  a.name = "value";
  a.type = Attribute::Type::kTensor;
  a.t = Tensor::FromVector<float>({10, 20, 30}, {3});
  c.attributes.push_back(a);
  g.nodes.push_back(c);
  Model m = MakeModel(std::move(g), 13);
  m.opsets.push_back({"com.example.never.used", 1});
  auto bytes = SerializeModel(m);
  auto back = LoadModelFromBytes(*bytes);
  ASSERT_TRUE(back.ok());
  ASSERT_TRUE(passes::TopologicalSort(back->graph).ok());
  EXPECT_EQ(back->graph.nodes[0].op_type, "Constant");
  ASSERT_TRUE(passes::ConstantNodesToInitializers(*back).ok());
  EXPECT_TRUE(back->graph.IsInitializer("c"));
  EXPECT_EQ(back->graph.nodes.size(), 1u);
}

TEST(OnnxIo, BadFilesGiveClearErrors) {
  const fs::path dir = TempDir("bad");
  auto missing = LoadModel((dir / "nope.onnx").string());
  ASSERT_FALSE(missing.ok());
  EXPECT_NE(missing.status().message().find("nope.onnx"), std::string::npos);
  auto bytes = *SerializeModel(SmallModel());
  std::ofstream(dir / "trunc.onnx", std::ios::binary).write(bytes.data(), static_cast<std::streamsize>(bytes.size() / 2));
  auto trunc = LoadModel((dir / "trunc.onnx").string());
  ASSERT_FALSE(trunc.ok());
  EXPECT_NE(trunc.status().message().find("trunc.onnx"), std::string::npos) << trunc.status().message();
  fs::remove_all(dir);
}

TEST(OnnxIo, RawDataLengthMustMatchShape) {
  Model m = SmallModel();
  m.graph.initializers["w"] = Tensor(DType::kFloat32, {4});
  auto good = SerializeModel(m);
  ASSERT_TRUE(good.ok());
  // Now patch dims 4 -> 5 in the serialized bytes (dims field tag 0x08 value 4 directly before data_type).
  std::string patched = *good;
  auto pos = patched.find(std::string("\x08\x04\x10\x01", 4));
  ASSERT_NE(pos, std::string::npos);
  patched[pos + 1] = 5;
  auto r = LoadModelFromBytes(patched);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("'w'"), std::string::npos) << r.status().message();
  EXPECT_NE(r.status().message().find("raw_data"), std::string::npos) << r.status().message();
}

}  // namespace
}  // namespace quantkit
