// One Session, Run from several threads at once: every result must equal the single-threaded
// one bit for bit. Runs on the bundled CNN in FP32 and dynamically quantized to int8 (pre-packed
// int8 weights, shared by all runs). Also built alone under ThreadSanitizer (tests/CMakeLists.txt).
#include <gtest/gtest.h>

#include <cstring>
#include <random>
#include <thread>
#include <vector>

#include "quantkit/model_io.h"
#include "quantkit/quantize.h"
#include "quantkit/session.h"

namespace quantkit {
namespace {

constexpr int kThreads = 4;
constexpr int kRunsPerThread = 3;

Tensor RandomImages(int batch, uint32_t seed) {
  Tensor t(DType::kFloat32, {batch, 1, 28, 28});
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> u(0.0f, 1.0f);
  for (int64_t i = 0; i < t.numel(); ++i) t.data<float>()[i] = u(rng);
  return t;
}

bool SameBits(const std::vector<Tensor>& a, const std::vector<Tensor>& b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i) {
    if (a[i].dtype() != b[i].dtype() || a[i].shape() != b[i].shape() ||
        std::memcmp(a[i].raw_data(), b[i].raw_data(), a[i].nbytes()) != 0) {
      return false;
    }
  }
  return true;
}

void ExpectConcurrentRunsMatchSequential(Model model, int intra_op_threads) {
  SessionOptions options;
  options.threads = intra_op_threads;
  auto session = Session::Create(std::move(model), options);
  ASSERT_TRUE(session.ok()) << session.status().ToString();
  const std::string input = (*session)->inputs()[0].name;

  // Each thread gets its own input (batch sizes differ, so buffer sizes and pool reuse differ).
  std::vector<Tensor> inputs;
  std::vector<std::vector<Tensor>> expected(kThreads);
  for (int t = 0; t < kThreads; ++t) {
    inputs.push_back(RandomImages(1 + t, 100 + static_cast<uint32_t>(t)));
    Status s = (*session)->Run({{input, inputs[t]}}, &expected[t]);
    ASSERT_TRUE(s.ok()) << s.ToString();
  }

  std::vector<int> mismatches(kThreads, 0), errors(kThreads, 0);
  std::vector<std::thread> workers;
  for (int t = 0; t < kThreads; ++t) {
    workers.emplace_back([&, t] {
      for (int r = 0; r < kRunsPerThread; ++r) {
        std::vector<Tensor> out;
        if (!(*session)->Run({{input, inputs[t]}}, &out).ok()) ++errors[t];
        else if (!SameBits(out, expected[t])) ++mismatches[t];
      }
    });
  }
  for (auto& w : workers) w.join();
  for (int t = 0; t < kThreads; ++t) {
    EXPECT_EQ(errors[t], 0) << "thread " << t;
    EXPECT_EQ(mismatches[t], 0) << "thread " << t;
  }
}

Model LoadCnn() {
  auto model = LoadModel(std::string(QUANTKIT_SOURCE_DIR) + "/assets/fashion_mnist_cnn.onnx");
  EXPECT_TRUE(model.ok()) << model.status().ToString();
  return std::move(model).value();
}

TEST(SessionThreads, Fp32RunsFromFourThreadsMatchSequential) {
  ExpectConcurrentRunsMatchSequential(LoadCnn(), 1);
}

TEST(SessionThreads, Fp32WithIntraOpThreadPool) {
  ExpectConcurrentRunsMatchSequential(LoadCnn(), 2);
}

TEST(SessionThreads, DynamicInt8RunsFromFourThreadsMatchSequential) {
  Model model = LoadCnn();
  QuantizeOptions options;
  options.op_types = {"MatMul", "Gemm", "Conv"};
  auto report = QuantizeDynamic(model, options);
  ASSERT_TRUE(report.ok()) << report.status().ToString();
  ASSERT_GT(report->total_quantized(), 0);
  ExpectConcurrentRunsMatchSequential(std::move(model), 2);
}

}  // namespace
}  // namespace quantkit
