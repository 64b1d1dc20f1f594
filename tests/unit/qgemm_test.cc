// Integer GEMM kernels (runtime/kernels/qgemm.h): every ISA path must give exactly the reference
// accumulators (quant::IntegerGemm over zero-point-corrected operands) and exactly the float
// epilogue of the separate ONNX ops (Cast, Mul(a_scale, b_scale), Mul, Add), over odd sizes and
// edge zero points.
#include <gtest/gtest.h>
#if defined(__x86_64__)
#include <immintrin.h>
#endif

#include <algorithm>
#include <cmath>
#include <cstring>
#include <random>

#include "core/thread_pool.h"
#include "runtime/kernels/qgemm.h"
#include "runtime/kernels/ref/quantize.h"
#include "test_util.h"

namespace quantkit {
namespace {

using kernels::QGemmIsa;
using testing::EdgeBytes;
using testing::GuardedBytes;

struct Case {
  int64_t M, N, K;
  bool a_signed, b_signed;
  int32_t a_zp;
  bool per_col_zp;
};

std::vector<QGemmIsa> SupportedIsas() {
  std::vector<QGemmIsa> v;
  for (QGemmIsa isa : {QGemmIsa::kRef, QGemmIsa::kAvx2, QGemmIsa::kAvx512Vnni, QGemmIsa::kAmx})
    if (kernels::QGemmIsaSupported(isa)) v.push_back(isa);
  return v;
}

std::vector<int32_t> ReferenceAcc(const Case& c, const std::vector<uint8_t>& a, const std::vector<uint8_t>& b,
                                  const std::vector<int32_t>& b_zp) {
  std::vector<rt::quant::QOperand> qa(a.size()), qb(b.size());
  for (size_t i = 0; i < a.size(); ++i)
    qa[i] = static_cast<int16_t>((c.a_signed ? static_cast<int8_t>(a[i]) : a[i]) - c.a_zp);
  for (size_t i = 0; i < b.size(); ++i) {
    const int32_t zp = b_zp.size() == 1 ? b_zp[0] : b_zp[i % c.N];
    qb[i] = static_cast<int16_t>((c.b_signed ? static_cast<int8_t>(b[i]) : b[i]) - zp);
  }
  std::vector<int32_t> acc(static_cast<size_t>(c.M * c.N));
  rt::quant::IntegerGemm(c.M, c.N, c.K, qa.data(), c.K, qb.data(), c.N, acc.data(), c.N);
  return acc;
}

TEST(QGemm, EveryIsaMatchesReferenceExactly) {
  std::mt19937 rng(7);
  const std::vector<Case> cases = {
      {1, 1, 1, false, true, 0, false},      {3, 17, 5, false, true, 255, true},  {9, 33, 7, true, true, -128, true},
      {8, 32, 64, false, false, 128, true},  {13, 50, 129, true, false, 127, false}, {2, 16, 1000, false, true, 255, false},
      {70, 45, 33, false, true, 3, true},    {1, 200, 300, true, true, 0, true},   {17, 1, 19, false, false, 0, false},
      // Shapes for 16-row x 64-k tiles (amx): one exact tile, row and k tails, K past the 512 block.
      {16, 16, 64, false, true, 255, true},  {37, 48, 200, true, true, -3, true},  {64, 33, 1100, false, true, 7, true},
      {48, 17, 130, true, false, 0, false},
  };
  ThreadPool pool(2);
  for (const Case& c : cases) {
    const auto a = EdgeBytes(static_cast<size_t>(c.M * c.K), rng);
    const auto b = EdgeBytes(static_cast<size_t>(c.K * c.N), rng);
    std::vector<int32_t> b_zp(c.per_col_zp ? c.N : 1);
    for (size_t n = 0; n < b_zp.size(); ++n)
      b_zp[n] = c.b_signed ? static_cast<int32_t>(n * 37 % 256) - 128 : static_cast<int32_t>(n * 91 % 256);
    const std::vector<int32_t> want = ReferenceAcc(c, a, b, b_zp);
    for (QGemmIsa isa : SupportedIsas()) {
      for (bool trans : {false, true}) {
        std::vector<uint8_t> bt = b;
        if (trans)
          for (int64_t k = 0; k < c.K; ++k)
            for (int64_t n = 0; n < c.N; ++n) bt[n * c.K + k] = b[k * c.N + n];
        auto packed = kernels::PackQWeights(bt.data(), c.b_signed, trans, c.K, c.N, trans ? c.K : c.N, b_zp, isa);
        kernels::PackedQActivations pa;
        kernels::PackQActivations(a.data(), c.a_signed, c.M, c.K, c.K, c.a_zp, *packed, &pa);
        for (ThreadPool* p : {static_cast<ThreadPool*>(nullptr), &pool}) {
          std::vector<int32_t> got(want.size(), -1);
          kernels::QGemmOutput out;
          out.acc = got.data();
          out.ldc = c.N;
          kernels::QGemm(pa, *packed, out, p);
          ASSERT_EQ(got, want) << kernels::QGemmIsaName(isa) << " M=" << c.M << " N=" << c.N << " K=" << c.K
                               << " trans=" << trans << " threads=" << (p ? 2 : 1);
        }
      }
    }
  }
}

// The requantized 8-bit output (QLinearConv / QLinearMatMul) on every ISA equals the definition
// applied to the reference accumulators: q = clamp(round_half_even(float(acc + bias) * multiplier)
// + zp, q_min, q_max), with multipliers that put many products on exact .5 ties, per column and
// per tensor, both output types, a fused Relu range, column counts that leave every tail size, and
// the transposed (NCHW) store.
TEST(QGemm, RequantizedOutputEqualsTheDefinitionOnEveryIsa) {
  std::mt19937 rng(29);
  ThreadPool pool(2);
  const Case cases[] = {{70, 45, 33, false, true, 3, false}, {64, 64, 16, false, true, 128, false},
                        {5, 1, 9, false, true, 0, false},     {130, 100, 40, true, true, -5, false},
                        {9, 24, 300, false, true, 255, false}};
  for (const Case& c : cases) {
    const auto a = EdgeBytes(static_cast<size_t>(c.M * c.K), rng);
    const auto b = EdgeBytes(static_cast<size_t>(c.K * c.N), rng);
    const std::vector<int32_t> b_zp = {0};
    const std::vector<int32_t> acc = ReferenceAcc(c, a, b, b_zp);
    std::vector<int32_t> bias(static_cast<size_t>(c.N));
    std::vector<float> mult(static_cast<size_t>(c.N));
    std::uniform_int_distribution<int> bias_d(-5000, 5000), shift(1, 12);
    for (int64_t n = 0; n < c.N; ++n) {
      bias[n] = bias_d(rng);
      // Powers of two (ties on odd sums) and ordinary ratios.
      mult[n] = n % 3 == 0 ? std::ldexp(1.f, -shift(rng)) : 1.f / static_cast<float>(300 + 7 * n);
    }
    for (int variant = 0; variant < 8; ++variant) {
      const bool per_col = variant & 1, q_signed = variant & 2, relu = variant & 4;
      const int32_t zp = q_signed ? -3 : 131;
      const int32_t q_min = relu ? zp : (q_signed ? -128 : 0), q_max = q_signed ? 127 : 255;
      std::vector<uint8_t> want(static_cast<size_t>(c.M * c.N));
      for (int64_t m = 0; m < c.M; ++m) {
        for (int64_t n = 0; n < c.N; ++n) {
          const int32_t v = acc[m * c.N + n] + bias[n];
          const float r = static_cast<float>(v) * mult[per_col ? n : 0];
          const int32_t q = std::clamp(static_cast<int32_t>(std::nearbyint(r)) + zp, q_min, q_max);
          want[m * c.N + n] = static_cast<uint8_t>(q);
        }
      }
      for (QGemmIsa isa : SupportedIsas()) {
        auto packed = kernels::PackQWeights(b.data(), c.b_signed, false, c.K, c.N, c.N, b_zp, isa);
        kernels::PackedQActivations pa;
        kernels::PackQActivations(a.data(), c.a_signed, c.M, c.K, c.K, c.a_zp, *packed, &pa);
        for (bool transpose : {false, true}) {
          for (ThreadPool* p : {static_cast<ThreadPool*>(nullptr), &pool}) {
            std::vector<uint8_t> got(want.size(), 0xAB);
            kernels::QGemmOutput out;
            out.q = got.data();
            out.transpose = transpose;
            out.ldc = transpose ? c.M : c.N;
            out.q_signed = q_signed;
            out.bias_int32 = bias.data();
            out.multiplier = mult.data();
            out.multiplier_per_col = per_col;
            out.q_zero_point = zp;
            out.q_min = q_min;
            out.q_max = q_max;
            kernels::QGemm(pa, *packed, out, p);
            for (int64_t m = 0; m < c.M; ++m) {
              for (int64_t n = 0; n < c.N; ++n) {
                const uint8_t g = transpose ? got[n * c.M + m] : got[m * c.N + n];
                ASSERT_EQ(g, want[m * c.N + n])
                    << kernels::QGemmIsaName(isa) << " M=" << c.M << " N=" << c.N << " K=" << c.K << " m=" << m
                    << " n=" << n << " variant=" << variant << " transpose=" << transpose;
              }
            }
          }
        }
      }
    }
  }
}

// PackQActivationsConv2D on every ISA (the avx2 path writes int16 words, the others bytes), packed
// in blocks of output pixels: the GEMM results equal the reference GEMM of an im2col matrix built
// here (padding taps read the zero point).
TEST(QGemm, Conv2DPackingEqualsIm2ColOnEveryIsa) {
  std::mt19937 rng(11);
  struct ConvCase {
    kernels::QConv2DShape s;
    int64_t M;
    bool x_signed;
    int32_t zp;
    int64_t block;
  };
  const std::vector<ConvCase> cases = {
      {{3, 7, 9, 3, 3, 7, 9, 1, 1, 1, 1, 1, 1}, 5, false, 117, 12},
      {{4, 8, 6, 3, 2, 4, 4, 2, 2, 2, 1, 1, 0}, 17, true, -3, 5},
      {{2, 3, 20, 5, 5, 3, 20, 1, 1, 1, 1, 2, 2}, 4, false, 0, 60},
      {{2, 3, 20, 5, 5, 3, 20, 1, 1, 1, 1, 2, 2}, 6, true, 9, 7},
      // Windows inside the image, read as runs of KW bytes (avx2): K = 9 (kp 12), the runs' 8-byte
      // loads near the input's end (a guard page follows it), KW 7, and strided 1x1.
      {{1, 10, 12, 3, 3, 10, 12, 1, 1, 1, 1, 1, 1}, 16, false, 3, 40},
      {{5, 9, 11, 3, 3, 4, 5, 2, 2, 1, 1, 0, 0}, 7, true, 0, 9},
      {{3, 12, 13, 7, 7, 6, 7, 1, 1, 1, 1, 0, 0}, 20, false, 200, 11},
      {{6, 9, 9, 1, 1, 5, 5, 2, 2, 1, 1, 0, 0}, 9, false, 1, 25},
      {{2, 10, 10, 2, 8, 3, 3, 3, 1, 1, 1, 0, 0}, 3, false, 4, 9},
  };
  for (const ConvCase& c : cases) {
    const kernels::QConv2DShape& s = c.s;
    const int64_t K = s.C * s.KH * s.KW, P = s.OH * s.OW;
    const auto x_values = EdgeBytes(static_cast<size_t>(s.C * s.H * s.W), rng);
    GuardedBytes x_guarded(x_values);
    const uint8_t* x = x_guarded.data();
    const auto w = EdgeBytes(static_cast<size_t>(K * c.M), rng);  // [K, M]
    // im2col as rows [P, K], then the reference accumulators.
    std::vector<uint8_t> a(static_cast<size_t>(P * K));
    for (int64_t m = 0; m < P; ++m)
      for (int64_t ch = 0; ch < s.C; ++ch)
        for (int64_t kh = 0; kh < s.KH; ++kh)
          for (int64_t kw = 0; kw < s.KW; ++kw) {
            const int64_t ih = m / s.OW * s.stride_h - s.pad_top + kh * s.dilation_h;
            const int64_t iw = m % s.OW * s.stride_w - s.pad_left + kw * s.dilation_w;
            const bool inside = ih >= 0 && ih < s.H && iw >= 0 && iw < s.W;
            a[m * K + (ch * s.KH + kh) * s.KW + kw] =
                inside ? x[(ch * s.H + ih) * s.W + iw] : static_cast<uint8_t>(c.zp);
          }
    // Weight zero points: uint8 symmetric (128: no row sums needed, the packer skips them), or int8
    // per column (nonzero: the row sums count).
    const bool w_signed = c.M % 2 == 1;
    std::vector<int32_t> w_zp(static_cast<size_t>(c.M), 128);
    if (w_signed)
      for (int64_t n = 0; n < c.M; ++n) w_zp[n] = static_cast<int32_t>(n % 5) - 2;
    const Case gemm{P, c.M, K, c.x_signed, w_signed, c.zp, true};
    const std::vector<int32_t> want = ReferenceAcc(gemm, a, w, w_zp);
    for (QGemmIsa isa : SupportedIsas()) {
      auto packed = kernels::PackQWeights(w.data(), w_signed, false, K, c.M, c.M, w_zp, isa);
      std::vector<int32_t> got(want.size(), -1);
      kernels::PackedQActivations pa;
      for (int64_t first = 0; first < P; first += c.block) {
        const int64_t rows = std::min(c.block, P - first);
        kernels::PackQActivationsConv2D(x, c.x_signed, s, first, rows, c.zp, *packed, &pa);
        kernels::QGemmOutput out;
        out.acc = got.data() + first * c.M;
        out.ldc = c.M;
        kernels::QGemm(pa, *packed, out, nullptr);
      }
      ASSERT_EQ(got, want) << kernels::QGemmIsaName(isa) << " C=" << s.C << " M=" << c.M;
    }
  }
}

// PackQActivationsTransposed (A stored as A^T, a pointwise conv's NCHW input): the GEMM gives the
// reference accumulators on every ISA for K around its 16 x 16 byte tiles (a tail of 1 to 15 k,
// the padding to kKStep, rewritten over an earlier packing) and M around its 16-row tiles; A^T
// ends at a guard page (lda = M).
TEST(QGemm, TransposedPackingMatchesReferenceOnEveryIsa) {
  std::mt19937 rng(17);
  for (int64_t K : {1, 3, 8, 16, 17, 24, 31, 40, 72}) {
    for (int64_t M : {1, 15, 16, 33, 48}) {
      for (bool a_signed : {false, true}) {
        const int64_t N = 19;
        const int32_t a_zp = a_signed ? -7 : 131;
        const auto at_values = EdgeBytes(static_cast<size_t>(K * M), rng);  // [K, M]
        GuardedBytes at(at_values);
        std::vector<uint8_t> a(static_cast<size_t>(M * K));
        for (int64_t m = 0; m < M; ++m)
          for (int64_t k = 0; k < K; ++k) a[m * K + k] = at_values[k * M + m];
        const auto b = EdgeBytes(static_cast<size_t>(K * N), rng);
        // Weights uint8 symmetric (zero point 128: no row sums), or int8 with zero points per
        // column (the row sums count).
        const bool b_signed = a_signed;
        std::vector<int32_t> b_zp(static_cast<size_t>(N), 128);
        if (b_signed)
          for (int64_t n = 0; n < N; ++n) b_zp[n] = static_cast<int32_t>(n % 5) - 2;
        const Case c{M, N, K, a_signed, b_signed, a_zp, true};
        const std::vector<int32_t> want = ReferenceAcc(c, a, b, b_zp);
        for (QGemmIsa isa : SupportedIsas()) {
          auto packed = kernels::PackQWeights(b.data(), b_signed, false, K, N, N, b_zp, isa);
          // The storage first holds another packing (all 0xFF): the padding must be written again.
          kernels::PackedQActivations pa;
          const std::vector<uint8_t> ones(at_values.size(), 0xFF);
          kernels::PackQActivationsTransposed(ones.data(), a_signed, M, K, M, a_zp, *packed, &pa);
          kernels::PackQActivationsTransposed(at.data(), a_signed, M, K, M, a_zp, *packed, &pa);
          std::vector<int32_t> got(want.size(), -1);
          kernels::QGemmOutput out;
          out.acc = got.data();
          out.ldc = N;
          kernels::QGemm(pa, *packed, out, nullptr);
          ASSERT_EQ(got, want) << kernels::QGemmIsaName(isa) << " M=" << M << " K=" << K << " signed=" << a_signed;
        }
      }
    }
  }
}

TEST(QGemm, FloatEpilogueIsTheSeparateOpsExactly) {
  std::mt19937 rng(11);
  const int64_t M = 5, N = 21, K = 37;
  const auto a = EdgeBytes(M * K, rng);
  const auto b = EdgeBytes(K * N, rng);
  std::vector<float> a_scale_rows(M), b_scale(N), bias(N);
  std::uniform_real_distribution<float> u(1e-4f, 0.1f);
  for (auto& s : a_scale_rows) s = u(rng);
  for (auto& s : b_scale) s = u(rng);
  for (auto& x : bias) x = u(rng) * 100 - 5;
  const Case c{M, N, K, false, true, 131, false};
  const std::vector<int32_t> acc = ReferenceAcc(c, a, b, {0});
  for (QGemmIsa isa : SupportedIsas()) {
    auto packed = kernels::PackQWeights(b.data(), true, false, K, N, N, {0}, isa);
    kernels::PackedQActivations pa;
    kernels::PackQActivations(a.data(), false, M, K, K, c.a_zp, *packed, &pa);
    for (bool per_row : {false, true}) {
      std::vector<float> y(M * N);
      kernels::QGemmOutput out;
      out.y = y.data();
      out.ldc = N;
      out.a_scale = a_scale_rows.data();
      out.a_scale_per_row = per_row;
      out.b_scale = b_scale.data();
      out.b_scale_per_col = true;
      out.bias = bias.data();
      kernels::QGemm(pa, *packed, out, nullptr);
      for (int64_t m = 0; m < M; ++m)
        for (int64_t n = 0; n < N; ++n) {
          const volatile float s = a_scale_rows[per_row ? m : 0] * b_scale[n];  // Mul(a_scale, b_scale)
          const volatile float prod = static_cast<float>(acc[m * N + n]) * s;   // Mul(Cast(acc), S)
          const float want = prod + bias[n];                                    // Add(., bias)
          ASSERT_EQ(y[m * N + n], want) << kernels::QGemmIsaName(isa) << " m=" << m << " n=" << n;
        }
    }
  }
}

TEST(QGemm, FloatActivationsQuantizeLikeDynamicQuantizeLinear) {
  std::mt19937 rng(3);
  std::normal_distribution<float> nd(0.f, 2.f);
  const int64_t M = 4, K = 23;
  std::vector<float> x(M * K);
  for (auto& v : x) v = nd(rng);
  x[5] = 2.5f;  // ties and extremes
  const auto p = rt::quant::ComputeDynamicParams(x.data(), M * K);
  const std::vector<int8_t> one_column(K, 1);
  auto b = kernels::PackQWeights(one_column.data(), true, false, K, 1, 1, {0}, QGemmIsa::kRef);
  ASSERT_EQ(b->k_padded, 24);
  kernels::PackedQActivations pa;
  kernels::PackQActivationsFromFloat(x.data(), M, K, K, p.scale, p.zero_point, *b, &pa);
  for (int64_t m = 0; m < M; ++m) {
    int32_t sum = 0;
    for (int64_t k = 0; k < K; ++k) {
      const uint8_t want = rt::quant::QuantizeValue<uint8_t>(x[m * K + k], p.scale, p.zero_point);
      ASSERT_EQ(pa.bytes[m * 24 + k], want);
      sum += want;
    }
    EXPECT_EQ(pa.bytes[m * 24 + 23], 0) << "padding must be zero";
    EXPECT_EQ(pa.row_sums[m], sum);
  }
}

TEST(QGemm, IsaChoiceIsLogged) {
  const std::string log = kernels::DescribeQGemmIsaChoice();
  EXPECT_NE(log.find("ref"), std::string::npos);
  EXPECT_NE(log.find("chosen"), std::string::npos);
  EXPECT_TRUE(kernels::QGemmIsaSupported(kernels::DefaultQGemmIsa()));
}

#if defined(__x86_64__)
__attribute__((target("amx-tile"))) void ReleaseTilesLikeAnotherLibrary() { _tile_release(); }

// The tile configuration is per thread and other code in the process (oneDNN, the kernel bench's
// peak probe) may release it between two GEMMs: the amx kernel must configure the tiles itself
// for every GEMM, not once per thread (that crashed with SIGILL).
TEST(QGemm, AmxSurvivesAnotherLibraryReleasingTheTiles) {
  if (!kernels::QGemmIsaSupported(QGemmIsa::kAmx)) GTEST_SKIP() << "no usable AMX on this machine";
  std::mt19937 rng(11);
  const Case c{40, 48, 256, false, true, 9, false};
  const auto a = EdgeBytes(static_cast<size_t>(c.M * c.K), rng);
  const auto b = EdgeBytes(static_cast<size_t>(c.K * c.N), rng);
  const std::vector<int32_t> want = ReferenceAcc(c, a, b, {0});
  auto packed = kernels::PackQWeights(b.data(), true, false, c.K, c.N, c.N, {0}, QGemmIsa::kAmx);
  kernels::PackedQActivations pa;
  kernels::PackQActivations(a.data(), false, c.M, c.K, c.K, c.a_zp, *packed, &pa);
  for (int round = 0; round < 2; ++round) {
    std::vector<int32_t> got(static_cast<size_t>(c.M * c.N));
    kernels::QGemmOutput out;
    out.acc = got.data();
    out.ldc = c.N;
    kernels::QGemm(pa, *packed, out, nullptr);
    ASSERT_EQ(got, want) << "round " << round;
    ReleaseTilesLikeAnotherLibrary();
  }
}
#endif

}  // namespace
}  // namespace quantkit
