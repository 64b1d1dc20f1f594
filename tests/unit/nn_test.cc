// NN op family tests: SGEMM against a naive triple loop, Conv / ConvTranspose against naive
// direct implementations, Gemm/MatMul semantics, pooling against naive references, and errors.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <limits>
#include <random>

#include "core/thread_pool.h"
#include "quantkit/float16.h"
#include "runtime/kernels/ref/conv_kernels.h"
#include "runtime/kernels/ref/sgemm.h"
#include "test_util.h"

namespace quantkit {
namespace {

// A GEMM problem size: C is M x N, K deep.
struct Shape3 {
  int64_t M, N, K;
};

using testing::MakeModel;
using testing::MakeNode;
using testing::IntAttr;
using testing::IntsAttr;
using testing::FloatAttr;
using testing::StringAttr;
using testing::MakeValueInfo;

std::vector<float> RandomVec(size_t n, std::mt19937& rng, float lo = -1.f, float hi = 1.f) {
  std::uniform_real_distribution<float> d(lo, hi);
  std::vector<float> v(n);
  for (auto& x : v) x = d(rng);
  return v;
}

Tensor RandomTensor(const Shape& shape, std::mt19937& rng) {
  return Tensor::FromVector(RandomVec(static_cast<size_t>(NumElements(shape)), rng), shape);
}


// Runs one node. Inputs named "" are absent optional inputs. `constants` lists input indices
// given as initializers (so the factory sees them).
StatusOr<std::vector<Tensor>> RunOp(const std::string& op, const std::vector<Attribute>& attrs,
                                    const std::vector<Tensor>& inputs, size_t num_outputs, int threads = 2,
                                    const std::vector<size_t>& constants = {}, int64_t opset = 17) {
  Graph g;
  std::vector<std::string> in_names, out_names;
  std::vector<std::pair<std::string, Tensor>> feeds;
  for (size_t i = 0; i < inputs.size(); ++i) {
    if (!inputs[i].defined()) {
      in_names.push_back("");
      continue;
    }
    const std::string name = "in" + std::to_string(i);
    in_names.push_back(name);
    if (std::find(constants.begin(), constants.end(), i) != constants.end()) {
      g.AddInitializer(name, inputs[i]);
      g.initializer_order.push_back(name);
    } else {
      g.inputs.push_back(MakeValueInfo(name, inputs[i].dtype(), inputs[i].shape()));
      feeds.emplace_back(name, inputs[i]);
    }
  }
  for (size_t i = 0; i < num_outputs; ++i) {
    out_names.push_back("out" + std::to_string(i));
    ValueInfo vi;
    vi.name = out_names.back();
    g.outputs.push_back(vi);
  }
  Node n = MakeNode(op, in_names, out_names);
  n.attributes = attrs;
  g.nodes.push_back(n);
  SessionOptions opts;
  opts.optimize = false;
  opts.threads = threads;
  QK_ASSIGN_OR_RETURN(auto session, Session::Create(MakeModel(std::move(g), opset), opts));
  std::vector<Tensor> out;
  QK_RETURN_IF_ERROR(session->Run(feeds, &out));
  return out;
}

std::vector<Tensor> MustRun(const std::string& op, const std::vector<Attribute>& attrs,
                            const std::vector<Tensor>& inputs, size_t num_outputs = 1, int threads = 2,
                            const std::vector<size_t>& constants = {}) {
  auto r = RunOp(op, attrs, inputs, num_outputs, threads, constants);
  EXPECT_TRUE(r.ok()) << op << ": " << r.status().message();
  return r.ok() ? std::move(r).value() : std::vector<Tensor>{};
}

void ExpectClose(const Tensor& got, const Tensor& want, double tol, const std::string& what) {
  ASSERT_EQ(ShapeToString(got.shape()), ShapeToString(want.shape())) << what;
  for (int64_t i = 0; i < want.numel(); ++i) {
    const double g = got.GetAsDouble(i), w = want.GetAsDouble(i);
    ASSERT_NEAR(g, w, tol * (1 + std::fabs(w))) << what << " at flat index " << i;
  }
}

// ----------------------------------------------------------------------------------- SGEMM

void CheckSgemm(std::mt19937& rng, bool ta, bool tb, int64_t M, int64_t N, int64_t K, float alpha, float beta,
                ThreadPool* pool) {
  const int64_t lda = (ta ? M : K) + 3, ldb = (tb ? K : N) + 1, ldc = N + 2;
  const std::vector<float> A = RandomVec(static_cast<size_t>((ta ? K : M) * lda), rng);
  const std::vector<float> B = RandomVec(static_cast<size_t>((tb ? N : K) * ldb), rng);
  std::vector<float> C = RandomVec(static_cast<size_t>(M * ldc), rng);
  if (beta == 0.f) std::fill(C.begin(), C.end(), std::numeric_limits<float>::quiet_NaN());
  std::vector<float> R = C;
  kernels::Sgemm(ta, tb, M, N, K, alpha, A.data(), lda, B.data(), ldb, beta, C.data(), ldc, pool);
  kernels::SgemmNaive(ta, tb, M, N, K, alpha, A.data(), lda, B.data(), ldb, beta, R.data(), ldc);
  for (int64_t i = 0; i < M; ++i) {
    for (int64_t j = 0; j < N; ++j) {
      ASSERT_NEAR(C[i * ldc + j], R[i * ldc + j], 1e-4f * (1.f + static_cast<float>(K)) * 0.1f + 1e-5f)
          << "M=" << M << " N=" << N << " K=" << K << " ta=" << ta << " tb=" << tb << " alpha=" << alpha
          << " beta=" << beta << " at " << i << "," << j;
    }
    // Padding columns of C must not be touched.
    for (int64_t j = N; j < ldc; ++j) {
      const float c = C[i * ldc + j], r = R[i * ldc + j];
      ASSERT_TRUE(c == r || (std::isnan(c) && std::isnan(r))) << "wrote outside C at " << i << "," << j;
    }
  }
}

class SgemmTest : public ::testing::TestWithParam<kernels::SgemmIsa> {
 protected:
  void SetUp() override {
    if (!kernels::SgemmIsaSupported(GetParam())) GTEST_SKIP() << "this CPU lacks " << kernels::SgemmIsaName(GetParam());
    kernels::SgemmForceIsa(GetParam());
  }
  void TearDown() override { kernels::SgemmResetIsa(); }
};

TEST_P(SgemmTest, MatchesNaiveOnOddSizes) {
  std::mt19937 rng(42);
  const int64_t sizes[] = {1, 2, 3, 5, 6, 7, 9, 15, 16, 17, 31, 33, 47, 64, 70};
  const std::pair<float, float> ab[] = {{1.f, 0.f}, {0.5f, 1.f}, {-1.5f, 0.25f}, {2.f, -1.f}};
  int count = 0;
  for (int64_t M : sizes) {
    for (int64_t N : sizes) {
      for (int t = 0; t < 4; ++t) {
        const int64_t K = sizes[(M * 7 + N * 3 + t) % 15];
        const auto [alpha, beta] = ab[(M + N + t) % 4];
        CheckSgemm(rng, t & 1, t & 2, M, N, K, alpha, beta, nullptr);
        if (::testing::Test::HasFatalFailure()) return;
        ++count;
      }
    }
  }
  EXPECT_EQ(count, 15 * 15 * 4);
}

TEST_P(SgemmTest, MultiBlockAndThreaded) {
  std::mt19937 rng(7);
  ThreadPool pool(3);
  // K > KC (several K blocks with beta applied once), M > MC, N > NC.
  CheckSgemm(rng, false, false, 130, 70, 600, 1.f, 0.5f, &pool);
  CheckSgemm(rng, true, true, 257, 129, 300, -0.5f, 0.f, &pool);
  CheckSgemm(rng, false, true, 5, 3100, 3, 1.f, 1.f, &pool);
  CheckSgemm(rng, true, false, 200, 300, 64, 1.f, 0.f, &pool);
  // Matrix-vector shapes (no packing path).
  for (int t = 0; t < 4; ++t) {
    CheckSgemm(rng, t & 1, t & 2, 1, 1000, 300, 1.f, 0.f, &pool);
    CheckSgemm(rng, t & 1, t & 2, 1000, 1, 300, 2.f, 0.5f, &pool);
  }
}

// The packed float conv path: SgemmPacked over Im2ColPanel2D panels of the phase planes (bias and Clip in the
// micro-kernel's store) gives the same bits as im2col + Sgemm over a bias-prefilled C + Clip; with stride 1,
// so does SgemmPackedTaps (the planes read in place, a plane's padding columns computed and dropped).
TEST_P(SgemmTest, PackedConvPanelsEqualIm2ColPlusSgemm) {
  std::mt19937 rng(11);
  ThreadPool pool(2);
  struct Geo {
    int64_t C, M, ih, iw, kh, kw, sh, sw, dh, dw, ph, pw;
  };
  // Odd sizes, strides, dilations, pads; K over one block (C * kh * kw > 256); N over one NC block.
  const Geo cases[] = {{3, 7, 9, 11, 3, 3, 1, 1, 1, 1, 1, 1},     {5, 13, 12, 10, 3, 2, 2, 1, 1, 2, 1, 0},
                       {40, 9, 8, 7, 3, 3, 1, 1, 1, 1, 1, 1},     {2, 6, 70, 60, 1, 1, 1, 1, 1, 1, 0, 0},
                       {4, 17, 15, 9, 5, 3, 3, 2, 1, 1, 2, 1},     {1, 1, 5, 5, 5, 5, 1, 1, 1, 1, 0, 0},
                       {33, 20, 7, 7, 3, 3, 1, 1, 2, 2, 2, 2},     {8, 32, 64, 64, 3, 3, 1, 1, 1, 1, 1, 1},
                       {1, 16, 28, 28, 3, 3, 1, 1, 1, 1, 1, 1},    {6, 11, 1, 50, 1, 5, 1, 1, 1, 1, 0, 2},
                       {3, 5, 4, 3, 2, 4, 1, 1, 1, 1, 0, 3}};
  for (const Geo& c : cases) {
    const kernels::ConvGeometry g =
        testing::Conv2DGeometry(c.ih, c.iw, c.kh, c.kw, c.sh, c.sw, c.dh, c.dw, c.ph, c.pw, c.ph, c.pw);
    const int64_t K = c.C * c.kh * c.kw, P = g.OutSize();
    const std::vector<float> x = RandomVec(static_cast<size_t>(c.C * g.InSize()), rng);
    const std::vector<float> w = RandomVec(static_cast<size_t>(c.M * K), rng);
    const std::vector<float> bias = RandomVec(static_cast<size_t>(c.M), rng);
    std::vector<float> col(static_cast<size_t>(K * P));
    for (int64_t ch = 0; ch < c.C; ++ch) {
      kernels::Im2ColChannel<float>(g, x.data() + ch * g.InSize(), 0, P, col.data() + ch * c.kh * c.kw * P, P);
    }
    for (ThreadPool* tp : {static_cast<ThreadPool*>(nullptr), &pool}) {
      for (bool clamp : {false, true}) {
        std::vector<float> want(static_cast<size_t>(c.M * P));
        for (int64_t m = 0; m < c.M; ++m) std::fill(want.begin() + m * P, want.begin() + (m + 1) * P, bias[m]);
        kernels::Sgemm(false, false, c.M, P, K, 1.f, w.data(), K, col.data(), P, 1.f, want.data(), P, tp);
        if (clamp) {
          for (float& v : want) v = std::min(std::max(v, -0.5f), 0.75f);
        }
        const kernels::SgemmPackedA packed(w.data(), K, c.M, K);
        std::vector<float> ws(static_cast<size_t>(kernels::SgemmPackedWorkspace(packed, P, tp)) + 16);
        float* aligned = reinterpret_cast<float*>((reinterpret_cast<uintptr_t>(ws.data()) + 63) & ~uintptr_t{63});
        kernels::SgemmEpilogue epi;
        epi.bias = bias.data();
        epi.clamp = clamp;
        epi.lo = -0.5f;
        epi.hi = 0.75f;
        std::vector<float> got(want.size(), std::numeric_limits<float>::quiet_NaN());
        const kernels::ConvPanelPlanes planes = kernels::ConvPanelPlanesFor(g);
        const int64_t margin = kernels::kConvPanelMargin;
        std::vector<float> xp(static_cast<size_t>(c.C * planes.plane_floats + margin), 0.f);
        for (int64_t ch = 0; ch < c.C; ++ch) {
          kernels::FillPhasePlane(g, planes.rows, planes.phase_len, x.data() + ch * g.InSize(),
                                  xp.data() + ch * planes.plane_floats);
        }
        kernels::SgemmPacked(
            packed, P,
            [&](int64_t k0, int64_t kc, int64_t j0, int64_t nc, int nr, float* dst) {
              kernels::Im2ColPanel2D(g, planes, xp.data(), k0, kc, j0, nc, nr, dst);
            },
            got.data(), P, epi, tp, aligned);
        if (c.sh == 1 && c.sw == 1) {
          // Stride 1: B read in place from the planes (SgemmPackedTaps) gives SgemmPacked's bits.
          std::vector<int64_t> taps(static_cast<size_t>(K));
          for (int64_t k = 0; k < K; ++k) {
            const int64_t t = k % (c.kh * c.kw);
            taps[k] = k / (c.kh * c.kw) * planes.plane_floats + t / c.kw * c.dh * planes.row_len + t % c.kw * c.dw;
          }
          const int64_t cols = (g.out[0] - 1) * planes.row_len + g.out[1];
          std::vector<float> ws2(static_cast<size_t>(kernels::SgemmPackedTapsWorkspace(packed, cols, tp)));
          kernels::SgemmPlaneOutput out;
          std::vector<float> got2(want.size(), std::numeric_limits<float>::quiet_NaN());
          out.y = got2.data();
          out.ldy = P;
          out.row_len = planes.row_len;
          out.out_w = g.out[1];
          kernels::SgemmPackedTaps(packed, cols, xp.data(), taps.data(), out, epi, tp, ws2.data());
          ASSERT_EQ(0, std::memcmp(got.data(), got2.data(), got.size() * sizeof(float)))
              << "taps: C=" << c.C << " M=" << c.M << " in " << c.ih << "x" << c.iw << " k " << c.kh << "x" << c.kw
              << " threads=" << (tp ? 2 : 1) << " clamp=" << clamp;
        }
        if (c.M == 1 || P == 1) {  // Sgemm takes its matrix-vector path there: close, not the same sums
          for (size_t i = 0; i < got.size(); ++i) ASSERT_NEAR(got[i], want[i], 1e-4f) << i;
          continue;
        }
        ASSERT_EQ(0, std::memcmp(got.data(), want.data(), got.size() * sizeof(float)))
            << "C=" << c.C << " M=" << c.M << " in " << c.ih << "x" << c.iw << " k " << c.kh << "x" << c.kw
            << " threads=" << (tp ? 2 : 1) << " clamp=" << clamp;
      }
    }
  }
}

// Constant weights packed once (MatMul / Gemm): the same bits as Sgemm on the unpacked matrix,
// odd sizes, several column and K blocks, both transpositions, alpha/beta, one and two threads.
TEST_P(SgemmTest, PackedBEqualsSgemm) {
  std::mt19937 rng(23);
  ThreadPool pool(2);
  const Shape3 shapes[] = {{2, 16, 3}, {7, 33, 300}, {128, 100, 513}, {13, 3100, 40}, {64, 6200, 17}};
  const std::pair<float, float> ab[] = {{1.f, 0.f}, {0.5f, 1.f}, {-2.f, 0.25f}};
  int i = 0;
  for (const Shape3& sh : shapes) {
    for (int t = 0; t < 4; ++t, ++i) {
      const bool ta = t & 1, tb = t & 2;
      const auto [alpha, beta] = ab[i % 3];
      const int64_t lda = (ta ? sh.M : sh.K) + 1, ldb = (tb ? sh.K : sh.N) + 3;
      const std::vector<float> A = RandomVec(static_cast<size_t>((ta ? sh.K : sh.M) * lda), rng);
      const std::vector<float> B = RandomVec(static_cast<size_t>((tb ? sh.N : sh.K) * ldb), rng);
      const std::vector<float> C0 = RandomVec(static_cast<size_t>(sh.M * sh.N), rng);
      const kernels::SgemmPackedB packed(tb, B.data(), ldb, sh.K, sh.N);
      for (ThreadPool* tp : {static_cast<ThreadPool*>(nullptr), &pool}) {
        std::vector<float> want = C0, got = C0;
        kernels::Sgemm(ta, tb, sh.M, sh.N, sh.K, alpha, A.data(), lda, B.data(), ldb, beta, want.data(), sh.N, tp);
        kernels::SgemmWithPackedB(ta, sh.M, alpha, A.data(), lda, packed, beta, got.data(), sh.N, tp);
        ASSERT_EQ(0, std::memcmp(want.data(), got.data(), want.size() * sizeof(float)))
            << "M=" << sh.M << " N=" << sh.N << " K=" << sh.K << " ta=" << ta << " tb=" << tb << " threads "
            << (tp ? 2 : 1);
      }
    }
  }
}

// One row times packed B (a recurrent cell's step): the double-precision sum of every column,
// over sizes with partial slivers, 64-column groups, several column (kNC) and K (kKC) blocks,
// beta 0 and 1, one and two threads.
TEST_P(SgemmTest, PackedBVectorProductMatchesTheSum) {
  std::mt19937 rng(29);
  ThreadPool pool(2);
  const std::pair<int64_t, int64_t> shapes[] = {{1, 1},     {3, 17},    {300, 64}, {513, 100},
                                                {512, 2048}, {40, 3100}, {7, 6200}};
  for (const auto& [K, N] : shapes) {
    for (bool trans : {false, true}) {
      const int64_t ldb = (trans ? K : N) + 2;
      const std::vector<float> B = RandomVec(static_cast<size_t>((trans ? N : K) * ldb), rng);
      const std::vector<float> x = RandomVec(static_cast<size_t>(K), rng);
      const std::vector<float> y0 = RandomVec(static_cast<size_t>(N), rng);
      const kernels::SgemmPackedB packed(trans, B.data(), ldb, K, N);
      for (float beta : {0.f, 1.f}) {
        for (ThreadPool* tp : {static_cast<ThreadPool*>(nullptr), &pool}) {
          std::vector<float> y = y0;
          kernels::SgemvWithPackedB(x.data(), packed, beta, y.data(), tp);
          for (int64_t j = 0; j < N; ++j) {
            double want = beta * y0[j], magnitude = std::abs(want);
            for (int64_t k = 0; k < K; ++k) {
              const double b = trans ? B[j * ldb + k] : B[k * ldb + j];
              want += double(x[k]) * b;
              magnitude += std::abs(double(x[k]) * b);
            }
            ASSERT_NEAR(y[j], want, 1e-5 * magnitude + 1e-6)
                << "K=" << K << " N=" << N << " j=" << j << " trans=" << trans << " beta=" << beta;
          }
        }
      }
    }
  }
}

INSTANTIATE_TEST_SUITE_P(Kernels, SgemmTest,
                         ::testing::Values(kernels::SgemmIsa::kPortable, kernels::SgemmIsa::kAvx2,
                                           kernels::SgemmIsa::kAvx512),
                         [](const ::testing::TestParamInfo<kernels::SgemmIsa>& i) {
                           return std::string(kernels::SgemmIsaName(i.param));
                         });

// AVX-512 (8 x 32 tiles over pairs of slivers, 4-row tiles for few rows) gives exactly AVX2's bits
// (6 x 16 tiles) on every entry point: Sgemm, a packed A with a packer (bias, Clip), a packed A
// reading B in place, a packed B. Sizes hit every edge: odd rows, a last single 16-column
// sliver, partial slivers, several K blocks.
TEST(SgemmIsas, Avx512GivesAvx2sBits) {
  if (!kernels::SgemmIsaSupported(kernels::SgemmIsa::kAvx512)) GTEST_SKIP() << "this CPU lacks AVX-512";
  std::mt19937 rng(41);
  ThreadPool pool(2);
  const Shape3 shapes[] = {{4, 32, 70},   {12, 48, 300},  {16, 15, 9},   {20, 100, 64}, {37, 800, 129},
                           {64, 31, 520}, {8, 16, 1},     {130, 70, 600}, {3, 33, 65}};
  for (const Shape3& sh : shapes) {
    const std::vector<float> A = RandomVec(static_cast<size_t>(sh.M * sh.K), rng);
    const std::vector<float> B = RandomVec(static_cast<size_t>(sh.K * (sh.N + 16)), rng);
    const std::vector<float> bias = RandomVec(static_cast<size_t>(sh.M), rng);
    const std::vector<float> C0 = RandomVec(static_cast<size_t>(sh.M * sh.N), rng);
    kernels::SgemmEpilogue epi;
    epi.bias = bias.data();
    epi.clamp = true;
    epi.lo = -0.75f;
    epi.hi = 0.5f;
    auto run = [&](kernels::SgemmIsa isa, ThreadPool* tp) {
      kernels::SgemmForceIsa(isa);
      std::vector<float> all;
      for (int t = 0; t < 4; ++t) {  // Sgemm: both transpositions (the stored matrices read either way)
        const bool ta = t & 1, tb = t & 2;
        std::vector<float> c = C0;
        kernels::Sgemm(ta, tb, sh.M, sh.N, sh.K, 0.5f, A.data(), ta ? sh.M : sh.K, B.data(), tb ? sh.K : sh.N,
                       t == 3 ? 0.f : 0.25f, c.data(), sh.N, tp);
        all.insert(all.end(), c.begin(), c.end());
      }
      const kernels::SgemmPackedA pa(A.data(), sh.K, sh.M, sh.K);
      std::vector<float> ws(static_cast<size_t>(kernels::SgemmPackedWorkspace(pa, sh.N, tp)) + 16);
      float* aligned = reinterpret_cast<float*>((reinterpret_cast<uintptr_t>(ws.data()) + 63) & ~uintptr_t{63});
      std::vector<float> c(C0.size());
      kernels::SgemmPacked(
          pa, sh.N,
          [&](int64_t k0, int64_t kc, int64_t j0, int64_t nc, int nr, float* dst) {
            kernels::SgemmPackRows(B.data(), sh.N, k0, kc, j0, nc, nr, dst);
          },
          c.data(), sh.N, epi, tp, aligned);
      all.insert(all.end(), c.begin(), c.end());
      // In place: row k of B at k * (N + 16) (16 readable floats past each row).
      std::vector<int64_t> taps(static_cast<size_t>(sh.K));
      for (int64_t k = 0; k < sh.K; ++k) taps[k] = k * (sh.N + 16);
      std::vector<float> ws2(static_cast<size_t>(kernels::SgemmPackedTapsWorkspace(pa, sh.N, tp)));
      kernels::SgemmPlaneOutput out;
      out.y = c.data();
      out.ldy = sh.N;
      out.row_len = sh.N;
      out.out_w = sh.N;
      kernels::SgemmPackedTaps(pa, sh.N, B.data(), taps.data(), out, epi, tp, ws2.data());
      all.insert(all.end(), c.begin(), c.end());
      const kernels::SgemmPackedB pb(false, B.data(), sh.N, sh.K, sh.N);
      c = C0;
      kernels::SgemmWithPackedB(false, sh.M, 1.f, A.data(), sh.K, pb, 1.f, c.data(), sh.N, tp);
      all.insert(all.end(), c.begin(), c.end());
      kernels::SgemmResetIsa();
      return all;
    };
    for (ThreadPool* tp : {static_cast<ThreadPool*>(nullptr), &pool}) {
      const std::vector<float> avx2 = run(kernels::SgemmIsa::kAvx2, tp);
      const std::vector<float> avx512 = run(kernels::SgemmIsa::kAvx512, tp);
      ASSERT_EQ(avx2.size(), avx512.size());
      for (size_t i = 0; i < avx2.size(); ++i) {
        ASSERT_EQ(std::bit_cast<uint32_t>(avx2[i]), std::bit_cast<uint32_t>(avx512[i]))
            << "M=" << sh.M << " N=" << sh.N << " K=" << sh.K << " value " << i << " threads " << (tp ? 2 : 1);
      }
    }
  }
}

// SgemmPacked's fused residual (a conv's Add in the epilogue): the bits of the GEMM with its bias,
// then the Add, then the Clip as separate passes, at every ISA, 1 and 2 threads, with partial
// tiles, several K blocks, K = 0, and row strides wider than N (every tile's residual offset).
TEST(Sgemm, PackedResidualEqualsTheSeparateAdd) {
  std::mt19937 rng(43);
  ThreadPool pool(2);
  const Shape3 shapes[] = {{4, 32, 70}, {37, 129, 600}, {16, 15, 9}, {64, 800, 33}, {9, 20, 0}};
  for (const Shape3& sh : shapes) {
    const int64_t ld = sh.N + 3;
    const std::vector<float> A = RandomVec(static_cast<size_t>(std::max<int64_t>(1, sh.M * sh.K)), rng);
    const std::vector<float> B = RandomVec(static_cast<size_t>(std::max<int64_t>(1, sh.K * sh.N)), rng);
    const std::vector<float> bias = RandomVec(static_cast<size_t>(sh.M), rng);
    const std::vector<float> r = RandomVec(static_cast<size_t>(sh.M * ld), rng);
    const float lo = -0.75f, hi = 0.5f;
    for (kernels::SgemmIsa isa : {kernels::SgemmIsa::kPortable, kernels::SgemmIsa::kAvx2, kernels::SgemmIsa::kAvx512}) {
      if (!kernels::SgemmIsaSupported(isa)) continue;
      kernels::SgemmForceIsa(isa);
      for (ThreadPool* tp : {static_cast<ThreadPool*>(nullptr), &pool}) {
        const kernels::SgemmPackedA pa(A.data(), sh.K, sh.M, sh.K);
        std::vector<float> ws(static_cast<size_t>(kernels::SgemmPackedWorkspace(pa, sh.N, tp)) + 16);
        float* aligned = reinterpret_cast<float*>((reinterpret_cast<uintptr_t>(ws.data()) + 63) & ~uintptr_t{63});
        auto packer = [&](int64_t k0, int64_t kc, int64_t j0, int64_t nc, int nr, float* dst) {
          kernels::SgemmPackRows(B.data(), sh.N, k0, kc, j0, nc, nr, dst);
        };
        kernels::SgemmEpilogue plain;
        plain.bias = bias.data();
        std::vector<float> want(static_cast<size_t>(sh.M * ld), 9.f);
        kernels::SgemmPacked(pa, sh.N, packer, want.data(), ld, plain, tp, aligned);
        for (int64_t i = 0; i < sh.M; ++i) {
          for (int64_t j = 0; j < sh.N; ++j) {
            float& v = want[i * ld + j];
            v = std::min(std::max(v + r[i * ld + j], lo), hi);
          }
        }
        kernels::SgemmEpilogue fused = plain;
        fused.clamp = true;
        fused.lo = lo;
        fused.hi = hi;
        fused.residual = r.data();
        fused.ldr = ld;
        std::vector<float> got(want.size(), 9.f);
        kernels::SgemmPacked(pa, sh.N, packer, got.data(), ld, fused, tp, aligned);
        ASSERT_EQ(0, std::memcmp(want.data(), got.data(), want.size() * sizeof(float)))
            << kernels::SgemmIsaName(isa) << " M=" << sh.M << " N=" << sh.N << " K=" << sh.K << " threads "
            << (tp ? 2 : 1);
      }
      kernels::SgemmResetIsa();
    }
  }
}

TEST(Sgemm, KZeroScalesC) {
  std::vector<float> C = {1, 2, 3, 4};
  kernels::Sgemm(false, false, 2, 2, 0, 1.f, nullptr, 1, nullptr, 2, 2.f, C.data(), 2, nullptr);
  EXPECT_EQ(C, (std::vector<float>{2, 4, 6, 8}));
  kernels::Sgemm(false, false, 2, 2, 0, 1.f, nullptr, 1, nullptr, 2, 0.f, C.data(), 2, nullptr);
  EXPECT_EQ(C, (std::vector<float>{0, 0, 0, 0}));
}

// ------------------------------------------------------------------------------------ Conv

struct ConvCase {
  Shape x;            // N, C, spatial...
  int64_t M;          // output channels
  int64_t group;
  Shape kernel;
  std::vector<int64_t> strides, dilations, pads;  // pads: begins then ends
  bool bias = true;
};

// Naive direct convolution (any spatial rank <= 3, promoted to 3-D).
Tensor NaiveConv(const Tensor& x, const Tensor& w, const Tensor* b, const ConvCase& c, const Shape& out_spatial) {
  const size_t nd = c.kernel.size();
  auto pad3 = [&](const std::vector<int64_t>& v, int64_t def, size_t off) {
    std::vector<int64_t> r(3, def);
    for (size_t i = 0; i < nd; ++i) r[3 - nd + i] = v.empty() ? def : v[off + i];
    return r;
  };
  const auto in = pad3({x.shape().begin() + 2, x.shape().end()}, 1, 0);
  const auto k = pad3(c.kernel, 1, 0), s = pad3(c.strides, 1, 0), d = pad3(c.dilations, 1, 0);
  const auto pb = pad3(c.pads, 0, 0), out = pad3(out_spatial, 1, 0);
  const int64_t N = x.dim(0), C = x.dim(1), M = c.M, G = c.group, Cg = C / G, Mg = M / G;
  Shape yshape = {N, M};
  yshape.insert(yshape.end(), out_spatial.begin(), out_spatial.end());
  Tensor y(DType::kFloat32, yshape);
  const float* xd = x.data<float>();
  const float* wd = w.data<float>();
  float* yd = y.data<float>();
  for (int64_t n = 0; n < N; ++n)
    for (int64_t m = 0; m < M; ++m) {
      const int64_t g = m / Mg;
      for (int64_t o0 = 0; o0 < out[0]; ++o0)
        for (int64_t o1 = 0; o1 < out[1]; ++o1)
          for (int64_t o2 = 0; o2 < out[2]; ++o2) {
            double acc = b ? b->data<float>()[m] : 0.0;
            for (int64_t cc = 0; cc < Cg; ++cc)
              for (int64_t k0 = 0; k0 < k[0]; ++k0)
                for (int64_t k1 = 0; k1 < k[1]; ++k1)
                  for (int64_t k2 = 0; k2 < k[2]; ++k2) {
                    const int64_t i0 = o0 * s[0] - pb[0] + k0 * d[0];
                    const int64_t i1 = o1 * s[1] - pb[1] + k1 * d[1];
                    const int64_t i2 = o2 * s[2] - pb[2] + k2 * d[2];
                    if (i0 < 0 || i0 >= in[0] || i1 < 0 || i1 >= in[1] || i2 < 0 || i2 >= in[2]) continue;
                    const float xv = xd[(((n * C + g * Cg + cc) * in[0] + i0) * in[1] + i1) * in[2] + i2];
                    const float wv = wd[(((m * Cg + cc) * k[0] + k0) * k[1] + k1) * k[2] + k2];
                    acc += static_cast<double>(xv) * wv;
                  }
            yd[(((n * M + m) * out[0] + o0) * out[1] + o1) * out[2] + o2] = static_cast<float>(acc);
          }
    }
  return y;
}

Shape ConvOutSpatial(const ConvCase& c) {
  Shape out;
  const size_t nd = c.kernel.size();
  for (size_t i = 0; i < nd; ++i) {
    const int64_t s = c.strides.empty() ? 1 : c.strides[i], d = c.dilations.empty() ? 1 : c.dilations[i];
    const int64_t pb = c.pads.empty() ? 0 : c.pads[i], pe = c.pads.empty() ? 0 : c.pads[i + nd];
    out.push_back((c.x[2 + i] + pb + pe - (c.kernel[i] - 1) * d - 1) / s + 1);
  }
  return out;
}

void CheckConv(const ConvCase& c, int threads = 2, bool const_weights = false) {
  std::mt19937 rng(static_cast<unsigned>(c.x.size() * 131 + c.M * 7 + c.group));
  const Tensor x = RandomTensor(c.x, rng);
  Shape wshape = {c.M, c.x[1] / c.group};
  wshape.insert(wshape.end(), c.kernel.begin(), c.kernel.end());
  const Tensor w = RandomTensor(wshape, rng);
  const Tensor b = RandomTensor({c.M}, rng);
  std::vector<Attribute> attrs = {IntAttr("group", c.group), IntsAttr("kernel_shape", c.kernel)};
  if (!c.strides.empty()) attrs.push_back(IntsAttr("strides", c.strides));
  if (!c.dilations.empty()) attrs.push_back(IntsAttr("dilations", c.dilations));
  if (!c.pads.empty()) attrs.push_back(IntsAttr("pads", c.pads));
  std::vector<Tensor> ins = {x, w};
  if (c.bias) ins.push_back(b);
  auto out = MustRun("Conv", attrs, ins, 1, threads, const_weights ? std::vector<size_t>{1, 2} : std::vector<size_t>{});
  ASSERT_EQ(out.size(), 1u);
  const Tensor want = NaiveConv(x, w, c.bias ? &b : nullptr, c, ConvOutSpatial(c));
  ExpectClose(out[0], want, 1e-4, "Conv x=" + ShapeToString(c.x) + " k=" + ShapeToString(c.kernel));
}

TEST(Conv, MatchesNaive2D) {
  CheckConv({{2, 3, 9, 8}, 4, 1, {3, 3}, {}, {}, {}});
  CheckConv({{1, 4, 11, 10}, 6, 2, {3, 2}, {2, 1}, {1, 2}, {1, 0, 2, 1}});
  CheckConv({{2, 6, 7, 7}, 9, 3, {2, 3}, {1, 2}, {2, 1}, {0, 1, 1, 0}, false});
  CheckConv({{1, 8, 5, 6}, 16, 1, {1, 1}, {}, {}, {}});        // pointwise: plain GEMM
  CheckConv({{1, 8, 5, 6}, 16, 1, {1, 1}, {2, 2}, {}, {}});    // 1x1 strided: im2col
  CheckConv({{1, 8, 5, 6}, 4, 1, {1, 1}, {}, {}, {1, 1, 1, 1}});  // 1x1 padded
  CheckConv({{3, 2, 4, 4}, 3, 1, {4, 4}, {}, {}, {}}, 1);       // single-threaded, 1x1 output
}

// 3x3 stride-1 convs (32+ channels each side) with constant weights and at least 64 tiles of 2x2 outputs run as Winograd
// F(2x2, 3x3) (kernels/winograd_f32.h), and so do maps of 36+ tiles with 64+ in the batch:
// close to the direct convolution (uneven pads, odd sizes, a batch of small maps, a fused Relu),
// and the same bits on 1 and 2 threads (blocks of tile rows, or of images, per thread).
// Pointwise convs with fewer output than input channels (at most 32) and a multiple of 16 pixels
// read their input planes in place on one thread (SgemmPackedTaps, no panel packing), and pack
// panels on two: groups, batches, K deeper than one K block; both close to the naive conv and
// (below) bit-identical to each other.
TEST(Conv, PointwiseInPlaceMatchesNaive) {
  for (int threads : {1, 2}) {
    CheckConv({{2, 48, 8, 8}, 24, 1, {1, 1}, {}, {}, {}}, threads, true);
    CheckConv({{1, 64, 16, 8}, 32, 2, {1, 1}, {}, {}, {}}, threads, true);
    CheckConv({{1, 300, 12, 16}, 20, 1, {1, 1}, {}, {}, {}, false}, threads, true);
    CheckConv({{3, 40, 8, 8}, 8, 1, {1, 1}, {}, {}, {}}, threads, false);
  }
  std::mt19937 rng(53);
  const Tensor x = RandomTensor({2, 300, 12, 16}, rng), w = RandomTensor({20, 300, 1, 1}, rng);
  const Tensor b = RandomTensor({20}, rng);
  const auto one = MustRun("Conv", {IntsAttr("kernel_shape", {1, 1})}, {x, w, b}, 1, 1, {1, 2});
  const auto two = MustRun("Conv", {IntsAttr("kernel_shape", {1, 1})}, {x, w, b}, 1, 2, {1, 2});
  ASSERT_EQ(one[0].numel(), two[0].numel());
  EXPECT_EQ(0, std::memcmp(one[0].data<float>(), two[0].data<float>(), one[0].numel() * sizeof(float)));
}

// The outputs of model at one thread and at two (Session's optimizations on: fused convs).
std::vector<std::vector<Tensor>> RunAtOneAndTwoThreads(const Model& model,
                                                       const std::vector<std::pair<std::string, Tensor>>& inputs) {
  std::vector<std::vector<Tensor>> runs;
  for (int threads : {1, 2}) {
    SessionOptions opts;
    opts.threads = threads;
    auto session = Session::Create(model, opts);
    EXPECT_TRUE(session.ok()) << session.status().message();
    runs.emplace_back();
    if (!session.ok()) continue;
    EXPECT_TRUE((*session)->Run(inputs, &runs.back()).ok());
  }
  return runs;
}

// With a fused residual Add and Relu (FusedConv), the in-place path stores whole tiles straight
// into the output with the residual in their epilogue, and adds it in the copy for partial tiles
// (22 rows: a last tile of 4); K deeper than one K block keeps partial sums in the output. One
// thread (in place) and two (packed panels) give the same bits, close to the naive conv.
TEST(Conv, PointwiseInPlaceResidualMatchesPackedAndNaive) {
  struct Case {
    int64_t N, C, M, H, W;
  };
  for (const Case& c : {Case{1, 64, 24, 16, 12}, Case{2, 48, 22, 8, 8}, Case{1, 300, 30, 12, 16}}) {
    std::mt19937 rng(59);
    const Tensor x = RandomTensor({c.N, c.C, c.H, c.W}, rng), w = RandomTensor({c.M, c.C, 1, 1}, rng);
    const Tensor b = RandomTensor({c.M}, rng), r = RandomTensor({c.N, c.M, c.H, c.W}, rng);
    Graph g;
    g.inputs.push_back(MakeValueInfo("x", DType::kFloat32, {c.N, c.C, c.H, c.W}));
    g.inputs.push_back(MakeValueInfo("r", DType::kFloat32, {c.N, c.M, c.H, c.W}));
    g.AddInitializer("w", w);
    g.AddInitializer("b", b);
    Node conv = MakeNode("Conv", {"x", "w", "b"}, {"y"});
    conv.attributes = {IntsAttr("kernel_shape", {1, 1})};
    g.nodes.push_back(conv);
    g.nodes.push_back(MakeNode("Add", {"y", "r"}, {"s"}));
    g.nodes.push_back(MakeNode("Relu", {"s"}, {"z"}));
    ValueInfo out;
    out.name = "z";
    g.outputs.push_back(out);
    const std::vector<std::vector<Tensor>> runs = RunAtOneAndTwoThreads(MakeModel(std::move(g), 13), {{"x", x}, {"r", r}});
    const int64_t numel = c.N * c.M * c.H * c.W;
    ASSERT_EQ(runs[0].size(), 1u);
    ASSERT_EQ(runs[1].size(), 1u);
    ASSERT_EQ(runs[0][0].numel(), numel);
    ASSERT_EQ(runs[1][0].numel(), numel);
    EXPECT_EQ(0, std::memcmp(runs[0][0].data<float>(), runs[1][0].data<float>(), numel * sizeof(float)))
        << "M=" << c.M << " C=" << c.C;
    ConvCase cc{{c.N, c.C, c.H, c.W}, c.M, 1, {1, 1}, {}, {}, {}};
    Tensor want = NaiveConv(x, w, &b, cc, ConvOutSpatial(cc));
    for (int64_t i = 0; i < numel; ++i) {
      want.data<float>()[i] = std::max(want.data<float>()[i] + r.data<float>()[i], 0.f);
    }
    ExpectClose(runs[0][0], want, 1e-4, "FusedConv 1x1 + residual + Relu");
  }
}

TEST(Conv, Winograd3x3MatchesNaiveAndThreadCounts) {
  CheckConv({{1, 32, 16, 16}, 32, 1, {3, 3}, {}, {}, {1, 1, 1, 1}}, 2, true);
  CheckConv({{1, 33, 21, 19}, 40, 1, {3, 3}, {}, {}, {1, 0, 2, 1}}, 2, true);  // 22x18 output
  CheckConv({{2, 32, 17, 17}, 32, 1, {3, 3}, {}, {}, {}, false}, 1, true);    // 15x15 per image
  CheckConv({{9, 32, 14, 14}, 32, 1, {3, 3}, {}, {}, {1, 1, 1, 1}}, 2, true);  // 14x14 maps side by side
  std::mt19937 rng(47);
  const Tensor x = RandomTensor({2, 32, 30, 27}, rng), w = RandomTensor({40, 32, 3, 3}, rng);
  const Tensor b = RandomTensor({40}, rng);
  // Conv -> Relu, fused by the session into FusedConv: the Relu in the output transform.
  Graph g;
  g.inputs.push_back(MakeValueInfo("x", DType::kFloat32, {2, 32, 30, 27}));
  g.AddInitializer("w", w);
  g.AddInitializer("b", b);
  Node conv = MakeNode("Conv", {"x", "w", "b"}, {"y"});
  conv.attributes = {IntsAttr("kernel_shape", {3, 3}), IntsAttr("pads", {1, 1, 1, 1})};
  g.nodes.push_back(conv);
  g.nodes.push_back(MakeNode("Relu", {"y"}, {"z"}));
  ValueInfo out;
  out.name = "z";
  g.outputs.push_back(out);
  const std::vector<std::vector<Tensor>> runs = RunAtOneAndTwoThreads(MakeModel(std::move(g), 13), {{"x", x}});
  ASSERT_EQ(runs[0].size(), 1u);
  ASSERT_EQ(runs[1].size(), 1u);
  ASSERT_EQ(runs[0][0].numel(), 2 * 40 * 30 * 27);
  EXPECT_EQ(0, std::memcmp(runs[0][0].data<float>(), runs[1][0].data<float>(), runs[0][0].numel() * sizeof(float)));
  ConvCase c{{2, 32, 30, 27}, 40, 1, {3, 3}, {}, {}, {1, 1, 1, 1}};
  Tensor want = NaiveConv(x, w, &b, c, ConvOutSpatial(c));
  for (int64_t i = 0; i < want.numel(); ++i) want.data<float>()[i] = std::max(want.data<float>()[i], 0.f);
  ExpectClose(runs[0][0], want, 1e-4, "FusedConv Relu 2x32x30x27");
}

// Small output maps (1 to 64 pixels, 32+ output channels, constant weights) run transposed:
// C^T = im2col^T * W^T with the weights packed as B. The sums are the packed path's (same K
// blocks, the bias as the first block's addend, the fused Relu last): the same bits as im2col +
// Sgemm over a bias-prefilled output, for pointwise, strided, padded, dilated and batched convs.
TEST(Conv, SmallMapsTransposedGiveThePackedPathsBits) {
  struct Case {
    int64_t N, C, M, H, k, stride, pad, dil;
    bool bias, relu;
  };
  // Not 3x3 with both channel counts multiples of 16: at AVX-512 those take the NCHW16c direct
  // conv (Conv.NchwcDirectMatchesNaive).
  const Case cases[] = {{1, 56, 72, 7, 3, 1, 1, 1, true, true},    {2, 40, 48, 8, 1, 1, 0, 1, true, false},
                        {1, 33, 40, 14, 1, 2, 0, 1, false, false}, {1, 20, 32, 9, 3, 2, 1, 1, true, true},
                        {1, 300, 36, 5, 3, 1, 2, 2, true, false},  {2, 24, 64, 4, 3, 1, 1, 1, false, true},
                        // Maps of 1 to 4 pixels (Silero's last convs): 1x1, 2x2 strided, pointwise 2x2.
                        {1, 129, 128, 3, 3, 1, 0, 1, true, true},  {2, 56, 64, 4, 3, 2, 1, 1, true, false},
                        {1, 40, 33, 2, 1, 1, 0, 1, false, false},
                        // Big enough for the parallel im2col and transposition (run at 2 threads too).
                        {1, 64, 512, 8, 1, 1, 0, 1, true, false},  {2, 300, 40, 6, 3, 1, 1, 1, true, true}};
  std::mt19937 rng(43);
  for (const Case& c : cases) {
    const Tensor x = RandomTensor({c.N, c.C, c.H, c.H}, rng), w = RandomTensor({c.M, c.C, c.k, c.k}, rng);
    const Tensor b = RandomTensor({c.M}, rng);
    Graph g;
    g.inputs.push_back(MakeValueInfo("x", DType::kFloat32, {c.N, c.C, c.H, c.H}));
    g.AddInitializer("w", w);
    std::vector<std::string> ins = {"x", "w"};
    if (c.bias) {
      g.AddInitializer("b", b);
      ins.push_back("b");
    }
    Node conv = MakeNode("Conv", ins, {"y"});
    conv.attributes = {IntsAttr("kernel_shape", {c.k, c.k}), IntsAttr("strides", {c.stride, c.stride}),
                       IntsAttr("pads", {c.pad, c.pad, c.pad, c.pad}), IntsAttr("dilations", {c.dil, c.dil})};
    g.nodes.push_back(conv);
    if (c.relu) g.nodes.push_back(MakeNode("Relu", {"y"}, {"z"}));
    ValueInfo out;
    out.name = c.relu ? "z" : "y";
    g.outputs.push_back(out);
    const Model model = MakeModel(std::move(g), 13);
    for (int threads : {1, 2}) {
      SCOPED_TRACE(std::to_string(threads) + " threads");
      SessionOptions opts;
      opts.threads = threads;
      auto session = Session::Create(model, opts);
      ASSERT_TRUE(session.ok()) << session.status().message();
      std::vector<Tensor> got;
      ASSERT_TRUE((*session)->Run({{"x", x}}, &got).ok());
      ASSERT_EQ(got.size(), 1u);
      const kernels::ConvGeometry geo = testing::Conv2DGeometry(c.H, c.H, c.k, c.k, c.stride, c.stride, c.dil, c.dil,
                                                                 c.pad, c.pad, c.pad, c.pad);
      const int64_t P = geo.OutSize(), K = c.C * c.k * c.k;
      ASSERT_TRUE(P >= 1 && P <= 64) << "not a small map: " << P;
      ASSERT_EQ(got[0].numel(), c.N * c.M * P);
      // The reference product has at least 2 columns (a zero one added to a 1-pixel map): Sgemm
      // runs a one-column product as a GEMV, whose sums the conv paths do not share.
      const int64_t Q = std::max<int64_t>(P, 2);
      std::vector<float> col(static_cast<size_t>(K * Q), 0.f);
      for (int64_t n = 0; n < c.N; ++n) {
        for (int64_t ch = 0; ch < c.C; ++ch) {
          kernels::Im2ColChannel<float>(geo, x.data<float>() + (n * c.C + ch) * c.H * c.H, 0, P,
                                        col.data() + ch * c.k * c.k * Q, Q);
        }
        std::vector<float> want(static_cast<size_t>(c.M * Q), 0.f);
        for (int64_t m = 0; m < c.M && c.bias; ++m) std::fill(want.begin() + m * Q, want.begin() + (m + 1) * Q, b.data<float>()[m]);
        kernels::Sgemm(false, false, c.M, Q, K, 1.f, w.data<float>(), K, col.data(), Q, c.bias ? 1.f : 0.f,
                       want.data(), Q, nullptr);
        if (c.relu) {
          for (float& v : want) v = std::min(std::max(v, 0.f), std::numeric_limits<float>::infinity());
        }
        for (int64_t m = 0; m < c.M; ++m) {
          ASSERT_EQ(0, std::memcmp(want.data() + m * Q, got[0].data<float>() + (n * c.M + m) * P, P * sizeof(float)))
              << "C=" << c.C << " M=" << c.M << " " << c.H << "x" << c.H << " k=" << c.k << " stride=" << c.stride
              << " image " << n << " channel " << m;
        }
      }
    }
  }
}

TEST(Conv, Depthwise) {
  CheckConv({{2, 5, 9, 11}, 5, 5, {3, 3}, {}, {}, {1, 1, 1, 1}});
  CheckConv({{1, 4, 10, 9}, 4, 4, {3, 5}, {2, 3}, {2, 1}, {2, 0, 1, 3}});
  CheckConv({{1, 3, 12}, 3, 3, {5}, {2}, {1}, {2, 2}});  // 1-D depthwise
  CheckConv({{1, 3, 7, 7}, 6, 3, {3, 3}, {}, {}, {1, 1, 1, 1}});  // channel multiplier 2
}

TEST(Conv, OneAndThreeD) {
  CheckConv({{2, 4, 17}, 6, 2, {4}, {3}, {2}, {3, 1}});
  CheckConv({{1, 4, 5, 6, 7}, 4, 2, {2, 3, 2}, {1, 2, 2}, {2, 1, 1}, {1, 0, 1, 0, 1, 1}});
  CheckConv({{1, 2, 4, 4, 4}, 3, 1, {1, 1, 1}, {}, {}, {}});
}

TEST(Conv, LargeChunkedAndConstantWeights) {
  // im2col needs more than one chunk of output positions here.
  CheckConv({{1, 32, 80, 80}, 8, 1, {3, 3}, {}, {}, {1, 1, 1, 1}}, 2, true);
  CheckConv({{4, 16, 6, 6}, 32, 16, {3, 3}, {}, {}, {1, 1, 1, 1}}, 2, true);  // many small groups
}

TEST(Conv, AutoPad) {
  std::mt19937 rng(3);
  const Tensor x = RandomTensor({1, 2, 7, 6}, rng), w = RandomTensor({3, 2, 3, 4}, rng);
  // SAME_UPPER with stride 2: out = ceil(in / 2); total pad H = (4-1)*2+3-7 = 2 -> 1/1;
  // W: out 3, total = (3-1)*2+4-6 = 2 -> 1/1. SAME_LOWER with stride 1: H total 2 (1/1), W 3 (2/1).
  auto up = MustRun("Conv", {StringAttr("auto_pad", "SAME_UPPER"), IntsAttr("strides", {2, 2})}, {x, w});
  ConvCase cu{{1, 2, 7, 6}, 3, 1, {3, 4}, {2, 2}, {}, {1, 1, 1, 1}, false};
  ExpectClose(up[0], NaiveConv(x, w, nullptr, cu, {4, 3}), 1e-4, "SAME_UPPER");
  auto lo = MustRun("Conv", {StringAttr("auto_pad", "SAME_LOWER")}, {x, w});
  ConvCase cl{{1, 2, 7, 6}, 3, 1, {3, 4}, {}, {}, {1, 2, 1, 1}, false};
  ExpectClose(lo[0], NaiveConv(x, w, nullptr, cl, {7, 6}), 1e-4, "SAME_LOWER");
  auto valid = MustRun("Conv", {StringAttr("auto_pad", "VALID"), IntsAttr("pads", {1, 1, 1, 1})}, {x, w});
  ConvCase cv{{1, 2, 7, 6}, 3, 1, {3, 4}, {}, {}, {}, false};
  ExpectClose(valid[0], NaiveConv(x, w, nullptr, cv, {5, 3}), 1e-4, "VALID");
}

TEST(Conv, Float16AndDouble) {
  std::mt19937 rng(5);
  const Tensor x = RandomTensor({1, 2, 5, 5}, rng), w = RandomTensor({2, 2, 3, 3}, rng);
  ConvCase c{{1, 2, 5, 5}, 2, 1, {3, 3}, {}, {}, {1, 1, 1, 1}, false};
  const Tensor want = NaiveConv(x, w, nullptr, c, {5, 5});
  auto to_dtype = [](const Tensor& t, DType dt) {
    Tensor r(dt, t.shape());
    for (int64_t i = 0; i < t.numel(); ++i) {
      if (dt == DType::kFloat16) r.data<uint16_t>()[i] = FloatToHalf(t.data<float>()[i]);
      else r.data<double>()[i] = t.data<float>()[i];
    }
    return r;
  };
  auto h = MustRun("Conv", {IntsAttr("pads", {1, 1, 1, 1})}, {to_dtype(x, DType::kFloat16), to_dtype(w, DType::kFloat16)});
  ASSERT_EQ(h[0].dtype(), DType::kFloat16);
  ExpectClose(h[0], want, 1e-2, "float16");
  auto d = MustRun("Conv", {IntsAttr("pads", {1, 1, 1, 1})}, {to_dtype(x, DType::kFloat64), to_dtype(w, DType::kFloat64)});
  ASSERT_EQ(d[0].dtype(), DType::kFloat64);
  ExpectClose(d[0], want, 1e-5, "float64");
}

TEST(Conv, RejectsBadShapes) {
  std::mt19937 rng(1);
  const Tensor x = RandomTensor({1, 3, 5, 5}, rng);
  auto r = RunOp("Conv", {}, {x, RandomTensor({2, 2, 3, 3}, rng)}, 1);  // channel mismatch
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("channels"), std::string::npos) << r.status().message();
  r = RunOp("Conv", {}, {x, RandomTensor({2, 3, 7, 7}, rng)}, 1);  // kernel larger than input
  EXPECT_FALSE(r.ok());
  r = RunOp("Conv", {}, {x, RandomTensor({2, 3, 3, 3}, rng), RandomTensor({3}, rng)}, 1);  // bad bias
  EXPECT_FALSE(r.ok());
  r = RunOp("Conv", {IntAttr("group", 2)}, {x, RandomTensor({4, 3, 3, 3}, rng)}, 1, 1, {1});  // factory check
  EXPECT_FALSE(r.ok());
  r = RunOp("Conv", {IntsAttr("strides", {1, 1, 1})}, {x, RandomTensor({2, 3, 3, 3}, rng)}, 1);
  EXPECT_FALSE(r.ok());
}

// --------------------------------------------------------------------------- ConvTranspose

// Naive scatter: y[n, g*Mg+m, i*s - p + k*d] += x[n, g*Cg+c, i] * w[g*Cg+c, m, k] (2-D).
Tensor NaiveConvTranspose2D(const Tensor& x, const Tensor& w, const Tensor* b, int64_t group, const Shape& stride,
                            const Shape& dil, const Shape& pad_begin, const Shape& out) {
  const int64_t N = x.dim(0), C = x.dim(1), H = x.dim(2), W = x.dim(3), Mg = w.dim(1), M = Mg * group;
  const int64_t KH = w.dim(2), KW = w.dim(3), Cg = C / group;
  Tensor y(DType::kFloat32, {N, M, out[0], out[1]});
  float* yd = y.data<float>();
  for (int64_t n = 0; n < N; ++n)
    for (int64_t m = 0; m < M; ++m)
      for (int64_t i = 0; i < out[0] * out[1]; ++i) yd[(n * M + m) * out[0] * out[1] + i] = b ? b->data<float>()[m] : 0.f;
  for (int64_t n = 0; n < N; ++n)
    for (int64_t c = 0; c < C; ++c)
      for (int64_t m = 0; m < Mg; ++m)
        for (int64_t ih = 0; ih < H; ++ih)
          for (int64_t iw = 0; iw < W; ++iw)
            for (int64_t kh = 0; kh < KH; ++kh)
              for (int64_t kw = 0; kw < KW; ++kw) {
                const int64_t oh = ih * stride[0] - pad_begin[0] + kh * dil[0];
                const int64_t ow = iw * stride[1] - pad_begin[1] + kw * dil[1];
                if (oh < 0 || oh >= out[0] || ow < 0 || ow >= out[1]) continue;
                const int64_t mo = (c / Cg) * Mg + m;
                yd[((n * M + mo) * out[0] + oh) * out[1] + ow] +=
                    x.data<float>()[((n * C + c) * H + ih) * W + iw] * w.data<float>()[((c * Mg + m) * KH + kh) * KW + kw];
              }
  return y;
}

TEST(ConvTranspose, MatchesNaive) {
  std::mt19937 rng(11);
  {
    const Tensor x = RandomTensor({2, 4, 5, 4}, rng), w = RandomTensor({4, 3, 3, 2}, rng), b = RandomTensor({6}, rng);
    // group 2, strides (2,3), dilations (2,1), pads (1,0,2,1), output_padding (1,2).
    auto y = MustRun("ConvTranspose",
                     {IntAttr("group", 2), IntsAttr("strides", {2, 3}), IntsAttr("dilations", {2, 1}),
                      IntsAttr("pads", {1, 0, 2, 1}), IntsAttr("output_padding", {1, 2})},
                     {x, w, b});
    // out = s*(in-1) + op + (k-1)*d + 1 - pb - pe: H = 8+1+5-3 = 11, W = 9+2+2-1 = 12.
    ExpectClose(y[0], NaiveConvTranspose2D(x, w, &b, 2, {2, 3}, {2, 1}, {1, 0}, {11, 12}), 1e-4, "convT groups");
  }
  {
    const Tensor x = RandomTensor({1, 3, 4, 4}, rng), w = RandomTensor({3, 2, 3, 3}, rng);
    auto y = MustRun("ConvTranspose", {IntsAttr("strides", {2, 2}), IntsAttr("output_shape", {10, 9})}, {x, w});
    // natural 9x9: H grows to 10 (extra row at the end), W total pad 0.
    ExpectClose(y[0], NaiveConvTranspose2D(x, w, nullptr, 1, {2, 2}, {1, 1}, {0, 0}, {10, 9}), 1e-4, "output_shape");
    auto s = MustRun("ConvTranspose", {StringAttr("auto_pad", "SAME_LOWER"), IntsAttr("strides", {2, 2})}, {x, w});
    // out = 8, total pad = 9 - 8 = 1: SAME_LOWER puts it at the beginning.
    ExpectClose(s[0], NaiveConvTranspose2D(x, w, nullptr, 1, {2, 2}, {1, 1}, {1, 1}, {8, 8}), 1e-4, "SAME_LOWER");
  }
  {
    const Tensor x = RandomTensor({2, 8, 3, 5}, rng), w = RandomTensor({8, 4, 1, 1}, rng), b = RandomTensor({4}, rng);
    auto y = MustRun("ConvTranspose", {}, {x, w, b}, 1, 2, {1, 2});  // pointwise
    ExpectClose(y[0], NaiveConvTranspose2D(x, w, &b, 1, {1, 1}, {1, 1}, {0, 0}, {3, 5}), 1e-4, "pointwise");
  }
  {
    // 1-D: reshape to 2-D reference with H = 1.
    const Tensor x = RandomTensor({1, 2, 6}, rng), w = RandomTensor({2, 3, 4}, rng);
    auto y = MustRun("ConvTranspose", {IntsAttr("strides", {3}), IntsAttr("pads", {1, 2})}, {x, w});
    const Tensor want = NaiveConvTranspose2D(x.Reshaped({1, 2, 1, 6}), w.Reshaped({2, 3, 1, 4}), nullptr, 1, {1, 3},
                                             {1, 1}, {0, 1}, {1, 16});
    ExpectClose(y[0], want.Reshaped({1, 3, 16}), 1e-4, "1-D");
  }
}

// ----------------------------------------------------------------------------- Gemm/MatMul

TEST(Gemm, AttributesAndBroadcastC) {
  std::mt19937 rng(21);
  const Tensor a = RandomTensor({5, 3}, rng), b = RandomTensor({4, 5}, rng);  // transA, transB: [3,5]x[5,4]
  const Shape cshapes[] = {{}, {1}, {4}, {3, 1}, {1, 4}, {3, 4}};
  for (const Shape& cs : cshapes) {
    const Tensor c = RandomTensor(cs, rng);
    auto y = MustRun("Gemm",
                     {IntAttr("transA", 1), IntAttr("transB", 1), FloatAttr("alpha", 0.5f), FloatAttr("beta", -2.f)},
                     {a, b, c});
    ASSERT_EQ(y.size(), 1u);
    Tensor want(DType::kFloat32, {3, 4});
    for (int64_t i = 0; i < 3; ++i)
      for (int64_t j = 0; j < 4; ++j) {
        double s = 0;
        for (int64_t k = 0; k < 5; ++k) s += a.data<float>()[k * 3 + i] * b.data<float>()[j * 5 + k];
        const int64_t ci = cs.size() == 2 && cs[0] == 3 ? i : 0;
        const int64_t cj = !cs.empty() && cs.back() == 4 ? j : 0;
        const float cv = c.data<float>()[ci * (cs.empty() ? 1 : cs.back()) + cj];
        want.data<float>()[i * 4 + j] = static_cast<float>(0.5 * s - 2.0 * cv);
      }
    ExpectClose(y[0], want, 1e-5, "Gemm C shape " + ShapeToString(cs));
  }
  // No C (opset 11+), integer types are exact.
  const Tensor ai = Tensor::FromVector<int32_t>({1, 2, 3, 4, 5, 6}, {2, 3});
  const Tensor bi = Tensor::FromVector<int32_t>({1, 0, -1, 2, 3, 1}, {3, 2});
  auto yi = MustRun("Gemm", {}, {ai, bi});
  EXPECT_EQ(yi[0].ToInt64Vector(), (std::vector<int64_t>{8, 7, 17, 16}));
  // Bad C shape and inner-dim mismatch are errors.
  auto bad_c = RunOp("Gemm", {IntAttr("transA", 1), IntAttr("transB", 1)}, {a, b, RandomTensor({2, 4}, rng)}, 1);
  ASSERT_FALSE(bad_c.ok());
  EXPECT_NE(bad_c.status().message().find("cannot be broadcast"), std::string::npos) << bad_c.status().message();
  EXPECT_FALSE(RunOp("Gemm", {}, {a, b}, 1).ok());
}

// One row times a constant B (a classifier head at batch 1) streams the packed B
// (kernels::SgemvWithPackedB): Gemm with transA / transB, C and beta (alpha 1), and MatMul.
TEST(Gemm, OneRowWithConstantBStreamsThePackedWeights) {
  std::mt19937 rng(47);
  const int64_t K = 300, N = 1000;
  for (int t = 0; t < 4; ++t) {
    const bool ta = t & 1, tb = t & 2;
    const Tensor a = RandomTensor(ta ? Shape{K, 1} : Shape{1, K}, rng);
    const Tensor b = RandomTensor(tb ? Shape{N, K} : Shape{K, N}, rng);
    const Tensor c = RandomTensor({N}, rng);
    const float beta = t == 3 ? 0.f : 0.75f;
    auto y = MustRun("Gemm", {IntAttr("transA", ta), IntAttr("transB", tb), FloatAttr("beta", beta)}, {a, b, c}, 1, 2,
                     {1, 2});
    ASSERT_EQ(y.size(), 1u);
    Tensor want(DType::kFloat32, {1, N});
    for (int64_t j = 0; j < N; ++j) {
      double sum = beta * c.data<float>()[j];
      for (int64_t k = 0; k < K; ++k) sum += double(a.data<float>()[k]) * b.data<float>()[tb ? j * K + k : k * N + j];
      want.data<float>()[j] = static_cast<float>(sum);
    }
    ExpectClose(y[0], want, 1e-5, "Gemm one row, transA " + std::to_string(ta) + " transB " + std::to_string(tb));
  }
  const Tensor a = RandomTensor({1, K}, rng), b = RandomTensor({K, N}, rng);
  auto y = MustRun("MatMul", {}, {a, b}, 1, 2, {1});
  Tensor want(DType::kFloat32, {1, N});
  for (int64_t j = 0; j < N; ++j) {
    double sum = 0;
    for (int64_t k = 0; k < K; ++k) sum += double(a.data<float>()[k]) * b.data<float>()[k * N + j];
    want.data<float>()[j] = static_cast<float>(sum);
  }
  ExpectClose(y[0], want, 1e-5, "MatMul one row");
}

TEST(MatMul, BatchedBroadcastAndVectors) {
  std::mt19937 rng(9);
  auto naive = [](const Tensor& a, const Tensor& b, int64_t batch, int64_t M, int64_t K, int64_t N, bool bcast_a,
                  bool bcast_b) {
    std::vector<float> y(static_cast<size_t>(batch * M * N));
    for (int64_t t = 0; t < batch; ++t)
      for (int64_t i = 0; i < M; ++i)
        for (int64_t j = 0; j < N; ++j) {
          double s = 0;
          for (int64_t k = 0; k < K; ++k)
            s += a.data<float>()[(bcast_a ? 0 : t) * M * K + i * K + k] * b.data<float>()[(bcast_b ? 0 : t) * K * N + k * N + j];
          y[(t * M + i) * N + j] = static_cast<float>(s);
        }
    return y;
  };
  {
    const Tensor a = RandomTensor({2, 3, 4, 5}, rng), b = RandomTensor({5, 6}, rng);
    auto y = MustRun("MatMul", {}, {a, b});
    ExpectClose(y[0], Tensor::FromVector(naive(a, b, 6, 4, 5, 6, false, true), {2, 3, 4, 6}), 1e-5, "A batched");
  }
  {
    const Tensor a = RandomTensor({4, 5}, rng), b = RandomTensor({3, 5, 7}, rng);
    auto y = MustRun("MatMul", {}, {a, b});
    ExpectClose(y[0], Tensor::FromVector(naive(a, b, 3, 4, 5, 7, true, false), {3, 4, 7}), 1e-5, "B batched");
  }
  {
    // [2,1,3,4] x [1,3,4,2] -> [2,3,3,2]: both broadcast.
    const Tensor a = RandomTensor({2, 1, 3, 4}, rng), b = RandomTensor({1, 3, 4, 2}, rng);
    auto y = MustRun("MatMul", {}, {a, b});
    ASSERT_EQ(ShapeToString(y[0].shape()), ShapeToString({2, 3, 3, 2}));
    for (int64_t i = 0; i < 2; ++i)
      for (int64_t j = 0; j < 3; ++j)
        for (int64_t r = 0; r < 3; ++r)
          for (int64_t c = 0; c < 2; ++c) {
            double s = 0;
            for (int64_t k = 0; k < 4; ++k) s += a.data<float>()[(i * 3 + r) * 4 + k] * b.data<float>()[(j * 4 + k) * 2 + c];
            ASSERT_NEAR(y[0].data<float>()[((i * 3 + j) * 3 + r) * 2 + c], s, 1e-5);
          }
  }
  {
    const Tensor v = Tensor::FromVector<float>({1, 2, 3}, {3});
    const Tensor m = Tensor::FromVector<float>({1, 2, 3, 4, 5, 6}, {3, 2});
    auto y = MustRun("MatMul", {}, {v, m});  // [3] x [3,2] -> [2]
    ExpectClose(y[0], Tensor::FromVector<float>({22, 28}, {2}), 1e-6, "vector-matrix");
    const Tensor m2 = Tensor::FromVector<float>({1, 2, 3, 4, 5, 6}, {2, 3});
    y = MustRun("MatMul", {}, {m2, v});  // [2,3] x [3] -> [2]
    ExpectClose(y[0], Tensor::FromVector<float>({14, 32}, {2}), 1e-6, "matrix-vector");
    y = MustRun("MatMul", {}, {v, v});  // [3] x [3] -> scalar
    ExpectClose(y[0], Tensor::FromVector<float>({14}, {}), 1e-6, "dot");
  }
  {
    const Tensor a = Tensor::FromVector<int64_t>({1, -2, 3, 4}, {2, 2});
    auto y = MustRun("MatMul", {}, {a, a});
    EXPECT_EQ(y[0].ToInt64Vector(), (std::vector<int64_t>{-5, -10, 15, 10}));
  }
  EXPECT_FALSE(RunOp("MatMul", {}, {RandomTensor({2, 3}, rng), RandomTensor({4, 2}, rng)}, 1).ok());
  EXPECT_FALSE(RunOp("MatMul", {}, {RandomTensor({2, 2, 3}, rng), RandomTensor({3, 3, 2}, rng)}, 1).ok());
}

// -------------------------------------------------------------------------------- Pooling

TEST(MaxPool, DilationsCeilModeAndIndices) {
  // 1x1x5x6 input with distinct values; kernel 2x2, dilations 2x1, strides 2x2, ceil_mode, pads.
  std::vector<float> xv(30);
  for (int i = 0; i < 30; ++i) xv[i] = static_cast<float>((i * 17) % 31);
  const Tensor x = Tensor::FromVector(xv, {1, 1, 5, 6});
  auto out = MustRun("MaxPool",
                     {IntsAttr("kernel_shape", {2, 2}), IntsAttr("dilations", {2, 1}), IntsAttr("strides", {2, 2}),
                      IntsAttr("pads", {1, 0, 0, 1}), IntAttr("ceil_mode", 1), IntAttr("storage_order", 1)},
                     {x}, 2);
  ASSERT_EQ(out.size(), 2u);
  // H: span = 5+1-3 = 3 -> ceil(3/2)+1 = 3 windows starting at -1, 1, 3.
  // W: span = 6+1-2 = 5 -> ceil(5/2)+1 = 4, but the last start (6) is in the end padding -> 3.
  ASSERT_EQ(ShapeToString(out[0].shape()), ShapeToString({1, 1, 3, 3}));
  for (int64_t oh = 0; oh < 3; ++oh)
    for (int64_t ow = 0; ow < 3; ++ow) {
      float best = -1e30f;
      int64_t bi = -1;
      for (int64_t kh = 0; kh < 2; ++kh)
        for (int64_t kw = 0; kw < 2; ++kw) {
          const int64_t ih = oh * 2 - 1 + kh * 2, iw = ow * 2 + kw;
          if (ih < 0 || ih >= 5 || iw >= 6) continue;
          if (xv[ih * 6 + iw] > best) {
            best = xv[ih * 6 + iw];
            bi = ih + iw * 5;  // column-major (storage_order = 1)
          }
        }
      EXPECT_EQ(out[0].data<float>()[oh * 3 + ow], best) << oh << "," << ow;
      EXPECT_EQ(out[1].data<int64_t>()[oh * 3 + ow], bi) << oh << "," << ow;
    }
}

TEST(MaxPool, IndicesCountBatchAndChannel) {
  const Tensor x = Tensor::FromVector<float>({1, 5, 3, 2, 8, 7, 6, 4}, {2, 1, 4});
  auto out = MustRun("MaxPool", {IntsAttr("kernel_shape", {2}), IntsAttr("strides", {2})}, {x}, 2);
  ExpectClose(out[0], Tensor::FromVector<float>({5, 3, 8, 6}, {2, 1, 2}), 0, "values");
  EXPECT_EQ(out[1].ToInt64Vector(), (std::vector<int64_t>{1, 2, 4, 6}));
  const Tensor xi = Tensor::FromVector<int8_t>({-5, -3, 7, -128}, {1, 1, 2, 2});
  auto oi = MustRun("MaxPool", {IntsAttr("kernel_shape", {2, 2}), StringAttr("auto_pad", "SAME_UPPER")}, {xi});
  EXPECT_EQ(oi[0].ToInt64Vector(), (std::vector<int64_t>{7, -3, 7, -128}));
}

// MaxPool without indices takes a row-max path; with the Indices output it takes the generic
// per-window loop. Both must give the same values for every geometry and type, NaN included
// (it propagates only from a window's first tap, in both).
TEST(MaxPool, RowMaxPathEqualsGenericLoop) {
  std::mt19937 rng(7);
  struct Geo {
    std::vector<int64_t> kernel, strides, pads, dilations;
    int64_t ceil_mode;
    Shape shape;
  };
  const std::vector<Geo> geos = {
      {{3, 3}, {2, 2}, {1, 1, 1, 1}, {1, 1}, 0, {1, 3, 13, 17}},  // resnet stem
      {{3, 3}, {2, 2}, {1, 1, 1, 1}, {1, 1}, 0, {1, 2, 7, 75}},   // stem, rows of 16-wide steps and a tail
      {{2, 2}, {2, 2}, {0, 0, 0, 0}, {1, 1}, 0, {2, 2, 8, 9}},
      {{3, 3}, {1, 1}, {1, 1, 1, 1}, {1, 1}, 0, {1, 2, 5, 6}},
      {{3, 2}, {2, 3}, {1, 0, 2, 1}, {2, 1}, 1, {1, 1, 11, 10}},  // H dilation, ceil, uneven pads
      {{5, 5}, {1, 1}, {2, 2, 2, 2}, {1, 1}, 0, {1, 1, 3, 4}},    // windows reaching past both sides
      {{3}, {2}, {1, 1}, {1}, 1, {2, 3, 15}},                     // 1-D
      {{3, 3}, {2, 2}, {0, 0, 0, 0}, {1, 1}, 1, {1, 2, 9, 12}},   // stem shape, no pad, a partial last window
  };
  std::normal_distribution<float> normal;
  for (DType dt : {DType::kUInt8, DType::kInt8, DType::kFloat32}) {
    for (const auto& g : geos) {
      Tensor x(dt, g.shape);
      for (int64_t i = 0; i < x.numel(); ++i) {
        if (dt == DType::kFloat32) {
          x.data<float>()[i] = rng() % 16 == 0 ? std::numeric_limits<float>::quiet_NaN() : normal(rng);
        } else {
          static_cast<uint8_t*>(x.raw_data())[i] = static_cast<uint8_t>(rng());
        }
      }
      const std::vector<Attribute> attrs = {IntsAttr("kernel_shape", g.kernel), IntsAttr("strides", g.strides),
                                            IntsAttr("pads", g.pads), IntsAttr("dilations", g.dilations),
                                            IntAttr("ceil_mode", g.ceil_mode)};
      auto fast = MustRun("MaxPool", attrs, {x});
      auto generic = MustRun("MaxPool", attrs, {x}, 2);
      ASSERT_EQ(fast[0].shape(), generic[0].shape());
      if (dt == DType::kFloat32) {
        for (int64_t i = 0; i < fast[0].numel(); ++i) {
          const float a = fast[0].data<float>()[i], b = generic[0].data<float>()[i];
          ASSERT_TRUE(std::memcmp(&a, &b, sizeof(a)) == 0 || (std::isnan(a) && std::isnan(b)))
              << ShapeToString(g.shape) << " element " << i << ": " << a << " vs " << b;
        }
      } else {
        EXPECT_EQ(fast[0].ToInt64Vector(), generic[0].ToInt64Vector()) << DTypeName(dt) << " " << ShapeToString(g.shape);
      }
    }
  }
}

TEST(AveragePool, CountIncludePadAndCeil) {
  std::vector<float> xv(20);
  for (int i = 0; i < 20; ++i) xv[i] = static_cast<float>(i + 1);
  const Tensor x = Tensor::FromVector(xv, {1, 1, 4, 5});
  for (int cip = 0; cip < 2; ++cip) {
    auto out = MustRun("AveragePool",
                       {IntsAttr("kernel_shape", {3, 3}), IntsAttr("strides", {2, 2}), IntsAttr("pads", {1, 1, 1, 0}),
                        IntAttr("ceil_mode", 1), IntAttr("count_include_pad", cip)},
                       {x});
    // H: span = 4+2-3 = 3 -> 3 windows (starts -1, 1, 3); W: span = 5+1-3 = 3 -> 3 (starts -1, 1, 3).
    ASSERT_EQ(ShapeToString(out[0].shape()), ShapeToString({1, 1, 3, 3}));
    for (int64_t oh = 0; oh < 3; ++oh)
      for (int64_t ow = 0; ow < 3; ++ow) {
        double s = 0;
        int n = 0, npad = 0;
        for (int64_t ih = oh * 2 - 1; ih < oh * 2 + 2; ++ih)
          for (int64_t iw = ow * 2 - 1; iw < ow * 2 + 2; ++iw) {
            if (ih >= -1 && ih < 5 && iw >= -1 && iw < 5) ++npad;  // inside the padded input
            if (ih < 0 || ih >= 4 || iw < 0 || iw >= 5) continue;
            s += xv[ih * 5 + iw];
            ++n;
          }
        EXPECT_NEAR(out[0].data<float>()[oh * 3 + ow], s / (cip ? npad : n), 1e-5) << cip << " " << oh << "," << ow;
      }
  }
}

TEST(LpPool, AndGlobalPools) {
  std::mt19937 rng(4);
  const Tensor x = RandomTensor({2, 3, 4, 5}, rng);
  const float* xd = x.data<float>();
  for (int64_t p : {1, 2, 3}) {
    auto out = MustRun("LpPool", {IntsAttr("kernel_shape", {2, 3}), IntsAttr("strides", {2, 2}), IntAttr("p", p)}, {x});
    ASSERT_EQ(ShapeToString(out[0].shape()), ShapeToString({2, 3, 2, 2}));
    for (int64_t pl = 0; pl < 6; ++pl)
      for (int64_t oh = 0; oh < 2; ++oh)
        for (int64_t ow = 0; ow < 2; ++ow) {
          double s = 0;
          for (int64_t kh = 0; kh < 2; ++kh)
            for (int64_t kw = 0; kw < 3; ++kw) s += std::pow(std::fabs(xd[pl * 20 + (oh * 2 + kh) * 5 + ow * 2 + kw]), p);
          EXPECT_NEAR(out[0].data<float>()[pl * 4 + oh * 2 + ow], std::pow(s, 1.0 / p), 1e-5);
        }
  }
  auto ga = MustRun("GlobalAveragePool", {}, {x});
  auto gm = MustRun("GlobalMaxPool", {}, {x});
  auto gl = MustRun("GlobalLpPool", {IntAttr("p", 3)}, {x});
  ASSERT_EQ(ShapeToString(ga[0].shape()), ShapeToString({2, 3, 1, 1}));
  for (int64_t pl = 0; pl < 6; ++pl) {
    double s = 0, l = 0;
    float m = -1e30f;
    for (int64_t i = 0; i < 20; ++i) {
      s += xd[pl * 20 + i];
      l += std::pow(std::fabs(xd[pl * 20 + i]), 3);
      m = std::max(m, xd[pl * 20 + i]);
    }
    EXPECT_NEAR(ga[0].data<float>()[pl], s / 20, 1e-5);
    EXPECT_EQ(gm[0].data<float>()[pl], m);
    EXPECT_NEAR(gl[0].data<float>()[pl], std::cbrt(l), 1e-5);
  }
}

TEST(Pool, Errors) {
  std::mt19937 rng(2);
  const Tensor x = RandomTensor({1, 1, 3, 3}, rng);
  EXPECT_FALSE(RunOp("MaxPool", {}, {x}, 1).ok());                                     // no kernel_shape
  EXPECT_FALSE(RunOp("MaxPool", {IntsAttr("kernel_shape", {4, 4})}, {x}, 1).ok());     // kernel > input
  EXPECT_FALSE(RunOp("AveragePool", {IntsAttr("kernel_shape", {2})}, {x}, 1).ok());    // rank mismatch
  EXPECT_FALSE(RunOp("MaxPool", {IntsAttr("kernel_shape", {2, 2}), IntsAttr("strides", {0, 1})}, {x}, 1).ok());
}

}  // namespace
}  // namespace quantkit
