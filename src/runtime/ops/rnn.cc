// Recurrent ops: RNN, GRU, LSTM (ONNX opsets 7-22 semantics).
//
// All three share one driver: per direction, the input projection X * W^T (+ biases) for every
// time step is one matrix multiply ([seq*batch, input] x [input, gates*hidden]); each step then
// multiplies the previous hidden state by R^T ([batch, hidden] x [hidden, gates*hidden]) and applies
// the cell equations. Weights are transposed once into [K, N] row-major (constant weights at
// session creation); the multiplies go through kernels::Sgemm, or a small local loop for tiny sizes. Computation is in float32 (float16/bfloat16/double inputs are converted).
//
// Supported: directions forward/reverse/bidirectional; optional B, sequence_lens, initial_h,
// initial_c, P (peepholes); activations Sigmoid, Tanh, Relu, HardSigmoid, Affine, LeakyRelu,
// ThresholdedRelu, ScaledTanh, Elu, Softsign, Softplus with activation_alpha/activation_beta
// (consumed in order by the activations that take them, as onnxruntime does; defaults: LeakyRelu
// 0.01, HardSigmoid 0.2/0.5, Elu 1.0, ThresholdedRelu 1.0, Affine 1.0/0.0, ScaledTanh 1.0/1.0);
// clip; LSTM input_forget (f = 1 - i); GRU linear_before_reset; layout (opset 14); every output
// optional. Batch entries with sequence_lens[b] < seq_length produce zeros in Y after their end,
// and Y_h/Y_c hold the state after their last valid step (the initial state for length 0).
//
// Dynamic int8 variant (com.quantkit::LSTM/GRU/RNN, made by passes/fuse_quantized.cc from int8 W/R
// behind DequantizeLinear): W and R are int8/uint8 constants with per-gate-row scales (inputs
// 8..11: W_scale, W_zero_point, R_scale, R_zero_point). Each gate GEMM quantizes its float
// activation on the fly (uint8 per tensor, exactly DynamicQuantizeLinear: all of X for the input
// projection, the hidden state at every step for the recurrent one), runs the int8 GEMM and adds
// float(acc) * (a_scale * w_scale[n]) (+ bias) to the gates.
#include <fmt/format.h>

#include <algorithm>
#include <cctype>
#include <cmath>
#include <cstring>
#include <optional>
#include <string>
#include <vector>

#include "runtime/kernels/qgemm.h"
#include "runtime/kernels/ref/quantize.h"
#include "runtime/kernels/ref/sgemm.h"
#include "runtime/ops/elementwise_util.h"
#include "runtime/ops/op_util.h"
#include "runtime/ops/ops.h"

namespace quantkit::rt {
namespace {

// ---------------------------------------------------------------------------------------------
// Local matrix multiply for tiny problems: C[M, N] += A[M, K] * B[K, N] (row-major, leading dims lda/ldb/ldc).
// Blocked over N and K so a strip of C stays in L1 and a panel of B in L2; the inner loop is a
// contiguous saxpy over a row of B (vectorized by the compiler), four rows of B per pass.
void GemmAccumulate(int64_t M, int64_t N, int64_t K, const float* A, int64_t lda, const float* B, int64_t ldb,
                    float* C, int64_t ldc) {
  constexpr int64_t kBlockN = 256;
  constexpr int64_t kBlockK = 128;
  for (int64_t n0 = 0; n0 < N; n0 += kBlockN) {
    const int64_t nb = std::min(kBlockN, N - n0);
    for (int64_t k0 = 0; k0 < K; k0 += kBlockK) {
      const int64_t kb = std::min(kBlockK, K - k0);
      for (int64_t m = 0; m < M; ++m) {
        float* __restrict c = C + m * ldc + n0;
        const float* a = A + m * lda + k0;
        int64_t k = 0;
        for (; k + 3 < kb; k += 4) {
          const float a0 = a[k], a1 = a[k + 1], a2 = a[k + 2], a3 = a[k + 3];
          const float* __restrict b0 = B + (k0 + k) * ldb + n0;
          const float* __restrict b1 = b0 + ldb;
          const float* __restrict b2 = b1 + ldb;
          const float* __restrict b3 = b2 + ldb;
          for (int64_t j = 0; j < nb; ++j) c[j] += a0 * b0[j] + a1 * b1[j] + a2 * b2[j] + a3 * b3[j];
        }
        for (; k < kb; ++k) {
          const float a0 = a[k];
          const float* __restrict b0 = B + (k0 + k) * ldb + n0;
          for (int64_t j = 0; j < nb; ++j) c[j] += a0 * b0[j];
        }
      }
    }
  }
}

// C += A * B through the shared packed SGEMM (multi-threaded) for non-trivial sizes; the local
// loop above for tiny ones, where packing would cost more than the multiply.
void MatMulAccumulate(ThreadPool* pool, int64_t M, int64_t N, int64_t K, const float* A, int64_t lda, const float* B,
                      int64_t ldb, float* C, int64_t ldc) {
  if (M <= 0 || N <= 0 || K <= 0) return;
  if (M * N * K < (int64_t{1} << 15)) {
    GemmAccumulate(M, N, K, A, lda, B, ldb, C, ldc);
    return;
  }
  kernels::Sgemm(false, false, M, N, K, 1.0f, A, lda, B, ldb, 1.0f, C, ldc, pool);
}

// ---------------------------------------------------------------------------------------------
// Activations

enum class ActKind {
  kSigmoid, kTanh, kRelu, kHardSigmoid, kAffine, kLeakyRelu, kThresholdedRelu, kScaledTanh, kElu,
  kSoftsign, kSoftplus
};

struct Activation {
  ActKind kind = ActKind::kSigmoid;
  float alpha = 0, beta = 0;

  void Apply(float* x, int64_t n) const {
    switch (kind) {
      // The Sigmoid and Tanh ops' vector math (ew::simd, ~1-2 ulp of libm): the scalar libm
      // calls were a tenth of a 512-unit LSTM step.
      case ActKind::kSigmoid:
        ew::simd::Map(x, x, n, [](ew::simd::v4f v) { return ew::simd::Sigmoid(v); });
        break;
      case ActKind::kTanh:
        ew::simd::Map(x, x, n, [](ew::simd::v4f v) { return ew::simd::Tanh(v); });
        break;
      case ActKind::kRelu:
        for (int64_t i = 0; i < n; ++i) x[i] = std::max(x[i], 0.0f);
        break;
      case ActKind::kHardSigmoid:
        for (int64_t i = 0; i < n; ++i) x[i] = std::clamp(alpha * x[i] + beta, 0.0f, 1.0f);
        break;
      case ActKind::kAffine:
        for (int64_t i = 0; i < n; ++i) x[i] = alpha * x[i] + beta;
        break;
      case ActKind::kLeakyRelu:
        for (int64_t i = 0; i < n; ++i) x[i] = x[i] >= 0 ? x[i] : alpha * x[i];
        break;
      case ActKind::kThresholdedRelu:
        for (int64_t i = 0; i < n; ++i) x[i] = x[i] > alpha ? x[i] : 0.0f;
        break;
      case ActKind::kScaledTanh:
        for (int64_t i = 0; i < n; ++i) x[i] = alpha * std::tanh(beta * x[i]);
        break;
      case ActKind::kElu:
        for (int64_t i = 0; i < n; ++i) x[i] = x[i] >= 0 ? x[i] : alpha * (std::exp(x[i]) - 1.0f);
        break;
      case ActKind::kSoftsign:
        for (int64_t i = 0; i < n; ++i) x[i] = x[i] / (1.0f + std::fabs(x[i]));
        break;
      case ActKind::kSoftplus:
        for (int64_t i = 0; i < n; ++i) {
          const float v = x[i];
          x[i] = v > 20.0f ? v : std::log1p(std::exp(v));
        }
        break;
    }
  }
};

struct ActInfo {
  const char* name;
  ActKind kind;
  bool uses_alpha, uses_beta;
  float default_alpha, default_beta;
};

constexpr ActInfo kActs[] = {
    {"sigmoid", ActKind::kSigmoid, false, false, 0, 0},
    {"tanh", ActKind::kTanh, false, false, 0, 0},
    {"relu", ActKind::kRelu, false, false, 0, 0},
    {"hardsigmoid", ActKind::kHardSigmoid, true, true, 0.2f, 0.5f},
    {"affine", ActKind::kAffine, true, true, 1.0f, 0.0f},
    {"leakyrelu", ActKind::kLeakyRelu, true, false, 0.01f, 0},
    {"thresholdedrelu", ActKind::kThresholdedRelu, true, false, 1.0f, 0},
    {"scaledtanh", ActKind::kScaledTanh, true, true, 1.0f, 1.0f},
    {"elu", ActKind::kElu, true, false, 1.0f, 0},
    {"softsign", ActKind::kSoftsign, false, false, 0, 0},
    {"softplus", ActKind::kSoftplus, false, false, 0, 0},
};

// ---------------------------------------------------------------------------------------------
// Attributes

enum class CellType { kRnn, kGru, kLstm };

struct RnnAttrs {
  CellType cell = CellType::kRnn;
  int64_t gates = 1;             // 1, 3, 4
  int64_t hidden_size = -1;      // -1: taken from R
  int num_dirs = 1;
  bool reverse_only = false;     // direction == "reverse"
  std::optional<float> clip;
  bool input_forget = false;
  bool linear_before_reset = false;
  int64_t layout = 0;
  std::vector<Activation> acts;  // num_dirs * acts_per_dir
  int acts_per_dir = 1;
};

StatusOr<RnnAttrs> ReadAttrs(const KernelInit& init, CellType cell) {
  const Node& node = init.node;
  RnnAttrs a;
  a.cell = cell;
  a.gates = cell == CellType::kRnn ? 1 : cell == CellType::kGru ? 3 : 4;
  a.acts_per_dir = cell == CellType::kRnn ? 1 : cell == CellType::kGru ? 2 : 3;
  a.hidden_size = node.AttrInt("hidden_size", -1);
  QK_CHECK_ARG(!node.FindAttr("hidden_size") || a.hidden_size >= 1, "hidden_size must be >= 1, got {}",
               a.hidden_size);
  const std::string dir = node.AttrString("direction", "forward");
  if (dir == "forward") {
    a.num_dirs = 1;
  } else if (dir == "reverse") {
    a.num_dirs = 1;
    a.reverse_only = true;
  } else if (dir == "bidirectional") {
    a.num_dirs = 2;
  } else {
    return InvalidArgument(fmt::format("direction '{}' is not forward, reverse or bidirectional", dir));
  }
  if (node.FindAttr("clip")) {
    const float c = node.AttrFloat("clip", 0);
    QK_CHECK_ARG(c > 0, "clip must be positive, got {}", c);
    a.clip = c;
  }
  a.input_forget = node.AttrInt("input_forget", 0) != 0;
  a.linear_before_reset = node.AttrInt("linear_before_reset", 0) != 0;
  a.layout = node.AttrInt("layout", 0);
  QK_CHECK_ARG(a.layout == 0 || a.layout == 1, "layout must be 0 or 1, got {}", a.layout);
  QK_CHECK_ARG(a.layout == 0 || init.opset >= 14 || init.opset == 0, "layout attribute needs opset >= 14");
  if (cell == CellType::kLstm) {
    QK_CHECK_ARG(node.AttrInt("input_forget", 0) == 0 || node.AttrInt("input_forget", 0) == 1,
                 "input_forget must be 0 or 1");
  }
  // Activations.
  std::vector<std::string> names;
  if (const Attribute* at = node.FindAttr("activations")) names = at->strings;
  const int needed = a.num_dirs * a.acts_per_dir;
  if (names.empty()) {
    for (int d = 0; d < a.num_dirs; ++d) {
      if (cell == CellType::kRnn) {
        names.push_back("Tanh");
      } else if (cell == CellType::kGru) {
        names.insert(names.end(), {"Sigmoid", "Tanh"});
      } else {
        names.insert(names.end(), {"Sigmoid", "Tanh", "Tanh"});
      }
    }
  } else if (static_cast<int>(names.size()) == a.acts_per_dir && a.num_dirs == 2) {
    const std::vector<std::string> one = names;
    names.insert(names.end(), one.begin(), one.end());  // same activations for both directions
  }
  QK_CHECK_ARG(static_cast<int>(names.size()) == needed, "activations has {} entries, expected {} ({} per direction)",
               names.size(), needed, a.acts_per_dir);
  const std::vector<float> alphas = node.AttrFloats("activation_alpha");
  const std::vector<float> betas = node.AttrFloats("activation_beta");
  size_t ai = 0, bi = 0;
  for (const auto& name : names) {
    std::string lower = name;
    for (auto& ch : lower) ch = static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
    const ActInfo* info = nullptr;
    for (const auto& k : kActs) {
      if (lower == k.name) info = &k;
    }
    if (!info) return Unimplemented(fmt::format("activation '{}' is not supported", name));
    Activation act;
    act.kind = info->kind;
    act.alpha = info->default_alpha;
    act.beta = info->default_beta;
    if (info->uses_alpha && ai < alphas.size()) act.alpha = alphas[ai++];
    if (info->uses_beta && bi < betas.size()) act.beta = betas[bi++];
    a.acts.push_back(act);
  }
  return a;
}

// Int8 weights of one GEMM ([K, N] = W^T or R^T of one direction) with per-column scales.
struct QuantizedGemmWeights {
  std::shared_ptr<const kernels::PackedQWeights> packed;
  std::vector<float> scale;  // 1 or N
};

// Packed weights of one node: per direction, W^T [input, G*H] and R^T [H, G*H] (float), or their
// int8 forms (quantized: w_q[d], r_q[d]; GRU without linear_before_reset splits R^T into the z/r
// columns r_q[d] and the h columns rh_q[d], multiplied at different times).
struct Packed {
  int64_t input_size = 0, hidden = 0, gh = 0;
  std::vector<float> wt, rt;  // num_dirs blocks
  std::vector<kernels::SgemmPackedB> wt_packed;  // per direction: W^T for the input projection
  // Per direction: R^T for the recurrent product when it covers every gate column at once (LSTM,
  // RNN, GRU with linear_before_reset): read as contiguous slivers each step.
  std::vector<kernels::SgemmPackedB> rt_packed;
  bool quantized = false;
  std::vector<QuantizedGemmWeights> w_q, r_q, rh_q;
};

// C[M, N] (row stride ldc) += dynamic-int8 A[M, K] x B: A quantized like DynamicQuantizeLinear,
// packed into *pa (whose storage the caller reserved for the largest call and reuses).
void QuantizedMatMulAccumulate(ThreadPool* pool, int64_t M, const float* A, const QuantizedGemmWeights& B, float* C,
                               int64_t ldc, kernels::PackedQActivations* pa) {
  const int64_t K = B.packed->K;
  if (M <= 0 || B.packed->N <= 0) return;
  const quant::DynamicParams p = quant::ComputeDynamicParams(A, M * K);
  kernels::PackQActivationsFromFloat(A, M, K, K, p.scale, p.zero_point, *B.packed, pa);
  kernels::QGemmOutput out;
  out.y = C;
  out.ldc = ldc;
  out.a_scale = &p.scale;
  out.b_scale = B.scale.data();
  out.b_scale_per_col = B.scale.size() > 1;
  out.accumulate = true;
  kernels::QGemm(*pa, *B.packed, out, pool);
}

Tensor AsFloat32(const Tensor& t) {
  if (t.dtype() == DType::kFloat32) return t;
  if (t.dtype() == DType::kFloat16 || t.dtype() == DType::kBFloat16) return ToFloat32IfHalf(t, nullptr);
  Tensor out(DType::kFloat32, t.shape());
  float* d = out.data<float>();
  for (int64_t i = 0; i < t.numel(); ++i) d[i] = static_cast<float>(t.GetAsDouble(i));
  return out;
}

void TransposeInto(const float* src, int64_t rows, int64_t cols, float* dst) {
  // dst[c, r] = src[r, c]
  constexpr int64_t kB = 32;
  for (int64_t r0 = 0; r0 < rows; r0 += kB)
    for (int64_t c0 = 0; c0 < cols; c0 += kB)
      for (int64_t r = r0; r < std::min(rows, r0 + kB); ++r)
        for (int64_t c = c0; c < std::min(cols, c0 + kB); ++c) dst[c * rows + r] = src[r * cols + c];
}

Status CheckWeights(const RnnAttrs& a, const Tensor& W, const Tensor& R, int64_t* hidden) {
  QK_CHECK_ARG(W.rank() == 3, "W must have rank 3 [num_directions, {}*hidden_size, input_size], got {}", a.gates,
               ShapeToString(W.shape()));
  QK_CHECK_ARG(R.rank() == 3, "R must have rank 3 [num_directions, {}*hidden_size, hidden_size], got {}", a.gates,
               ShapeToString(R.shape()));
  const int64_t H = a.hidden_size > 0 ? a.hidden_size : R.dim(2);
  QK_CHECK_ARG(H >= 1, "hidden size must be >= 1 (R has shape {})", ShapeToString(R.shape()));
  QK_CHECK_ARG(W.dim(0) == a.num_dirs && W.dim(1) == a.gates * H,
               "W has shape {}, expected [{}, {}, input_size] (num_directions, {}*hidden_size)",
               ShapeToString(W.shape()), a.num_dirs, a.gates * H, a.gates);
  QK_CHECK_ARG(R.dim(0) == a.num_dirs && R.dim(1) == a.gates * H && R.dim(2) == H,
               "R has shape {}, expected [{}, {}, {}]", ShapeToString(R.shape()), a.num_dirs, a.gates * H, H);
  QK_CHECK_ARG(IsFloatDType(W.dtype()) && IsFloatDType(R.dtype()), "W and R must be float tensors (got {} and {})",
               DTypeName(W.dtype()), DTypeName(R.dtype()));
  *hidden = H;
  return Status::Ok();
}

Status PackWeights(const RnnAttrs& a, const Tensor& W_in, const Tensor& R_in, Packed* p) {
  QK_RETURN_IF_ERROR(CheckWeights(a, W_in, R_in, &p->hidden));
  const Tensor W = AsFloat32(W_in), R = AsFloat32(R_in);
  p->input_size = W.dim(2);
  p->gh = a.gates * p->hidden;
  p->wt.resize(static_cast<size_t>(a.num_dirs * p->input_size * p->gh));
  p->rt.resize(static_cast<size_t>(a.num_dirs * p->hidden * p->gh));
  for (int d = 0; d < a.num_dirs; ++d) {
    TransposeInto(W.data<float>() + d * p->gh * p->input_size, p->gh, p->input_size,
                  p->wt.data() + d * p->input_size * p->gh);
    TransposeInto(R.data<float>() + d * p->gh * p->hidden, p->gh, p->hidden, p->rt.data() + d * p->hidden * p->gh);
  }
  // The input projection (all steps at once) multiplies W^T as a packed constant; so does each
  // step's recurrent product (one hidden row per batch item: packed slivers stream at memory
  // speed, the row-major R^T's 8 KB strides do not).
  if (p->gh >= 16 && p->input_size > 0) {
    for (int d = 0; d < a.num_dirs; ++d) {
      p->wt_packed.emplace_back(false, p->wt.data() + d * p->input_size * p->gh, p->gh, p->input_size, p->gh);
    }
  }
  const bool whole_recurrent = a.cell != CellType::kGru || a.linear_before_reset;
  if (p->gh >= 16 && p->hidden > 0 && whole_recurrent) {
    for (int d = 0; d < a.num_dirs; ++d) {
      p->rt_packed.emplace_back(false, p->rt.data() + d * p->hidden * p->gh, p->gh, p->hidden, p->gh);
    }
  }
  return Status::Ok();
}

class RnnKernel final : public OpKernel {
 public:
  RnnKernel(RnnAttrs a, std::optional<Packed> packed) : a_(std::move(a)), packed_(std::move(packed)) {}

  Status Compute(KernelContext& ctx) override;

 private:
  RnnAttrs a_;
  std::optional<Packed> packed_;
};

Status RnnKernel::Compute(KernelContext& ctx) {
  QK_ASSIGN_OR_RETURN(const Tensor* x_in, ctx.RequiredInput(0));
  QK_ASSIGN_OR_RETURN(const Tensor* w_in, ctx.RequiredInput(1));
  QK_ASSIGN_OR_RETURN(const Tensor* r_in, ctx.RequiredInput(2));
  const Tensor* b_in = ctx.input(3);
  const Tensor* len_in = ctx.input(4);
  const Tensor* h0_in = ctx.input(5);
  const Tensor* c0_in = a_.cell == CellType::kLstm ? ctx.input(6) : nullptr;
  const Tensor* p_in = a_.cell == CellType::kLstm ? ctx.input(7) : nullptr;
  const DType dtype = x_in->dtype();
  QK_CHECK_ARG(IsFloatDType(dtype), "X must be a float tensor, got {}", DTypeName(dtype));
  QK_CHECK_ARG(x_in->rank() == 3, "X must have rank 3, got shape {}", ShapeToString(x_in->shape()));

  Packed local;
  const Packed* pk = packed_ ? &*packed_ : nullptr;
  if (!pk) {
    QK_RETURN_IF_ERROR(PackWeights(a_, *w_in, *r_in, &local));
    pk = &local;
  }
  const int D = a_.num_dirs;
  const int64_t H = pk->hidden, GH = pk->gh, I = pk->input_size;
  const bool batch_major = a_.layout == 1;
  const int64_t S = batch_major ? x_in->dim(1) : x_in->dim(0);
  const int64_t Bt = batch_major ? x_in->dim(0) : x_in->dim(1);
  QK_CHECK_ARG(x_in->dim(2) == I, "X has input size {} but W expects {}", x_in->dim(2), I);

  // X as float32 [S, B, I]: the input itself, or converted / made time-major in scratch memory.
  // Every buffer below whose size grows with the input (sequence, batch) is scratch from the
  // run's pool, counted against the session's memory limit.
  const float* X = x_in->data<float>();
  Tensor x_scratch;
  if (dtype != DType::kFloat32 || batch_major) {
    QK_ASSIGN_OR_RETURN(x_scratch, ctx.Scratch(DType::kFloat32, S * Bt * I, "float32 time-major X"));
    float* dst = x_scratch.data<float>();
    auto convert = [&](int64_t src, int64_t to, int64_t n) {  // n values from element src of x_in
      switch (dtype) {
        case DType::kFloat32:
          std::memcpy(dst + to, x_in->data<float>() + src, sizeof(float) * static_cast<size_t>(n));
          break;
        case DType::kFloat16:
          for (int64_t i = 0; i < n; ++i) dst[to + i] = HalfToFloat(x_in->data<uint16_t>()[src + i]);
          break;
        case DType::kBFloat16:
          for (int64_t i = 0; i < n; ++i) dst[to + i] = BFloat16ToFloat(x_in->data<uint16_t>()[src + i]);
          break;
        default:
          for (int64_t i = 0; i < n; ++i) dst[to + i] = static_cast<float>(x_in->GetAsDouble(src + i));
      }
    };
    if (batch_major) {
      for (int64_t b = 0; b < Bt; ++b)
        for (int64_t t = 0; t < S; ++t) convert((b * S + t) * I, (t * Bt + b) * I, I);
    } else {
      convert(0, 0, S * Bt * I);
    }
    X = dst;
  }
  // Biases [D, 2*GH] (Wb then Rb).
  std::vector<float> bias(static_cast<size_t>(D * 2 * GH), 0.0f);
  if (b_in) {
    QK_CHECK_ARG(b_in->rank() == 2 && b_in->dim(0) == D && b_in->dim(1) == 2 * GH, "B has shape {}, expected [{}, {}]",
                 ShapeToString(b_in->shape()), D, 2 * GH);
    bias = b_in->ToFloatVector();
  }
  // Sequence lengths.
  std::vector<int64_t> lens(static_cast<size_t>(Bt), S);
  if (len_in) {
    QK_CHECK_ARG(len_in->rank() == 1 && len_in->dim(0) == Bt, "sequence_lens has shape {}, expected [{}]",
                 ShapeToString(len_in->shape()), Bt);
    QK_CHECK_ARG(IsIntegerDType(len_in->dtype()), "sequence_lens must be int32, got {}", DTypeName(len_in->dtype()));
    lens = len_in->ToInt64Vector();
    for (int64_t b = 0; b < Bt; ++b) {
      QK_CHECK_ARG(lens[b] >= 0 && lens[b] <= S, "sequence_lens[{}] = {} is outside [0, {}]", b, lens[b], S);
    }
  }
  // Initial states [D, B, H] (layout 0) or [B, D, H] (layout 1) -> internal [D, B, H].
  auto read_state = [&](const Tensor* t, const char* what, Tensor* out) -> Status {
    if (t) {
      const Shape expect = batch_major ? Shape{Bt, D, H} : Shape{D, Bt, H};
      QK_CHECK_ARG(t->shape() == expect, "{} has shape {}, expected {}", what, ShapeToString(t->shape()),
                   ShapeToString(expect));
    }
    QK_ASSIGN_OR_RETURN(*out, ctx.Scratch(DType::kFloat32, D * Bt * H, what));
    float* dst = out->data<float>();
    if (!t) {
      std::fill(dst, dst + D * Bt * H, 0.0f);
      return Status::Ok();
    }
    const std::vector<float> v = t->ToFloatVector();
    for (int d = 0; d < D; ++d)
      for (int64_t b = 0; b < Bt; ++b) {
        const float* src = v.data() + (batch_major ? (b * D + d) : (d * Bt + b)) * H;
        std::copy(src, src + H, dst + (d * Bt + b) * H);
      }
    return Status::Ok();
  };
  Tensor h_state_t, c_state_t;
  QK_RETURN_IF_ERROR(read_state(h0_in, "initial_h", &h_state_t));
  if (a_.cell == CellType::kLstm) QK_RETURN_IF_ERROR(read_state(c0_in, "initial_c", &c_state_t));
  float* h_state = h_state_t.data<float>();
  float* c_state = a_.cell == CellType::kLstm ? c_state_t.data<float>() : nullptr;
  std::vector<float> peep(static_cast<size_t>(D * 3 * H), 0.0f);
  const bool has_peep = p_in != nullptr;
  if (p_in) {
    QK_CHECK_ARG(p_in->rank() == 2 && p_in->dim(0) == D && p_in->dim(1) == 3 * H, "P has shape {}, expected [{}, {}]",
                 ShapeToString(p_in->shape()), D, 3 * H);
    peep = p_in->ToFloatVector();
  }

  // Outputs (computed in float32, converted at the end if needed). Y in float32 is written straight
  // into the output; in other types it is staged in float32 scratch.
  const bool want_y = ctx.output_wanted(0);
  const Shape y_shape = batch_major ? Shape{Bt, S, D, H} : Shape{S, D, Bt, H};
  const Shape st_shape = batch_major ? Shape{Bt, D, H} : Shape{D, Bt, H};
  float* y = nullptr;
  Tensor y_stage;
  if (want_y) {
    if (dtype == DType::kFloat32) {
      QK_ASSIGN_OR_RETURN(Tensor * yt, ctx.Output(0, DType::kFloat32, y_shape));
      y = yt->data<float>();
    } else {
      QK_ASSIGN_OR_RETURN(y_stage, ctx.Scratch(DType::kFloat32, S * D * Bt * H, "float32 Y"));
      y = y_stage.data<float>();
    }
    std::fill(y, y + S * D * Bt * H, 0.0f);
  }
  auto y_at = [&](int64_t t, int d, int64_t b) -> float* {
    return y + (batch_major ? ((b * S + t) * D + d) : ((t * D + d) * Bt + b)) * H;
  };

  const bool gru_lbr = a_.cell == CellType::kGru && a_.linear_before_reset;
  QK_ASSIGN_OR_RETURN(Tensor xw_t, ctx.Scratch(DType::kFloat32, S * Bt * GH, "input projection"));
  QK_ASSIGN_OR_RETURN(Tensor hr_t, ctx.Scratch(DType::kFloat32, Bt * GH, "gates"));
  Tensor rh_t;  // r (.) H for GRU
  if (a_.cell == CellType::kGru) {
    QK_ASSIGN_OR_RETURN(rh_t, ctx.Scratch(DType::kFloat32, Bt * H, "reset hidden state"));
  }
  float* const xw = xw_t.data<float>();
  float* const hr = hr_t.data<float>();
  float* const rh = rh_t.data<float>();
  // Int8 weights: the activations of every GEMM (X once, then the hidden state per step) are
  // packed into one reservation, sized for the largest.
  kernels::PackedQActivations pa;
  if (pk->quantized) {
    int64_t bytes = 0;
    for (int d = 0; d < D; ++d) {
      bytes = std::max(bytes, kernels::PackedQActivationsBytes(S * Bt, *pk->w_q[d].packed));
      bytes = std::max(bytes, kernels::PackedQActivationsBytes(Bt, *pk->r_q[d].packed));
      if (!pk->rh_q.empty()) bytes = std::max(bytes, kernels::PackedQActivationsBytes(Bt, *pk->rh_q[d].packed));
    }
    QK_ASSIGN_OR_RETURN(pa.storage, ctx.Scratch(DType::kUInt8, bytes, "packed activations"));
  }
  const float clip = a_.clip.value_or(0.0f);
  auto do_clip = [&](float* v, int64_t n) {
    if (!a_.clip) return;
    for (int64_t i = 0; i < n; ++i) v[i] = std::clamp(v[i], -clip, clip);
  };

  // The LSTM cell for hidden units [j0, j1): gates g (the recurrent sums) plus the input
  // projection xr, peepholes, clip, activations; cell state c and the new hidden state h_out
  // updated there. Every operation is per unit, so any split of the units gives the same bits.
  auto lstm_cell = [&](const Activation* acts, const float* pi, const float* po, const float* pf, float* g,
                       const float* xr, float* c, float* h_out, int64_t j0, int64_t j1) {
    const int64_t n = j1 - j0;
    float* gi = g + j0;
    float* go = g + H + j0;
    float* gf = g + 2 * H + j0;
    float* gc = g + 3 * H + j0;
    float* cp = c + j0;
    for (int64_t q = 0; q < 4; ++q)
      for (int64_t j = j0; j < j1; ++j) g[q * H + j] += xr[q * H + j];
    if (has_peep) {
      for (int64_t j = 0; j < n; ++j) {
        gi[j] += pi[j0 + j] * cp[j];
        gf[j] += pf[j0 + j] * cp[j];
      }
    }
    do_clip(gi, n);
    do_clip(gf, n);
    do_clip(gc, n);
    acts[0].Apply(gi, n);
    if (a_.input_forget) {
      for (int64_t j = 0; j < n; ++j) gf[j] = 1.0f - gi[j];
    } else {
      acts[0].Apply(gf, n);
    }
    acts[1].Apply(gc, n);
    for (int64_t j = 0; j < n; ++j) cp[j] = gf[j] * cp[j] + gi[j] * gc[j];
    if (has_peep) {
      for (int64_t j = 0; j < n; ++j) go[j] += po[j0 + j] * cp[j];
    }
    do_clip(go, n);
    acts[0].Apply(go, n);
    // h(C) into gc (no longer needed).
    std::copy(cp, cp + n, gc);
    acts[2].Apply(gc, n);
    for (int64_t j = 0; j < n; ++j) h_out[j0 + j] = go[j] * gc[j];
  };
  // One row, float weights, several threads: each step is one parallel region in which every
  // worker takes its share of the hidden units (blocks of 64), computes their four gates' recurrent sums
  // (SgemvColumnsWithPackedB) and then their cell update, writing the new hidden state to a second
  // buffer (the others still read the old one). Instead of a parallel GEMV, then the cell update on
  // one thread while the other waits. Only for steps of 256K multiply-adds or more: Silero VAD v5's
  // (128 units, 64K) take about a microsecond, less than waking the pool.
  ThreadPool* const pool = ctx.thread_pool();
  const bool step_parallel = a_.cell == CellType::kLstm && !pk->quantized && !pk->rt_packed.empty() && Bt == 1 &&
                             H % 64 == 0 && pool && pool->num_threads() > 1 && H * GH >= (int64_t{1} << 18);
  std::vector<float> h_next(step_parallel ? static_cast<size_t>(H) : 0);

  for (int d = 0; d < D; ++d) {
    const bool reverse = a_.reverse_only || d == 1;
    const float* wt = pk->quantized ? nullptr : pk->wt.data() + d * I * GH;
    const float* rt = pk->quantized ? nullptr : pk->rt.data() + d * H * GH;
    const float* wb = bias.data() + d * 2 * GH;
    const float* rb = wb + GH;
    const Activation* acts = a_.acts.data() + d * a_.acts_per_dir;
    // Input projection for all steps: xw = X * W^T + Wb + Rb (GRU with linear_before_reset keeps
    // Rbh for the recurrent part).
    for (int64_t row = 0; row < S * Bt; ++row) {
      float* dst = xw + row * GH;
      for (int64_t j = 0; j < GH; ++j) dst[j] = wb[j] + rb[j];
      if (gru_lbr) {
        for (int64_t j = 2 * H; j < 3 * H; ++j) dst[j] = wb[j];
      }
    }
    if (pk->quantized) {
      QuantizedMatMulAccumulate(ctx.thread_pool(), S * Bt, X, pk->w_q[d], xw, GH, &pa);
    } else {
      if (!pk->wt_packed.empty() && S * Bt > 1 && S * Bt * GH * I >= (int64_t{1} << 15)) {
        kernels::SgemmWithPackedB(false, S * Bt, 1.f, X, I, pk->wt_packed[d], 1.f, xw, GH, ctx.thread_pool());
      } else {
        MatMulAccumulate(ctx.thread_pool(), S * Bt, GH, I, X, I, wt, GH, xw, GH);
      }
    }

    float* hs = h_state + d * Bt * H;
    float* cs = a_.cell == CellType::kLstm ? c_state + d * Bt * H : nullptr;
    const float* pi = peep.data() + d * 3 * H;
    const float* po = pi + H;
    const float* pf = po + H;
    for (int64_t s = 0; s < S; ++s) {
      if (step_parallel) {
        if (s >= lens[0]) continue;  // the row's sequence has ended: nothing to compute
        const int64_t t = reverse ? lens[0] - 1 - s : s;
        const float* xr = xw + t * GH;
        // One fixed share of the units per thread (as SgemvWithPackedB: R stays in the caches).
        const int64_t blocks = H / 64, shares = std::min<int64_t>(pool->num_threads(), blocks);
        pool->ParallelFor(shares, 1, [&](int64_t s0, int64_t s1) {
          const int64_t j0 = s0 * blocks / shares * 64, j1 = s1 * blocks / shares * 64;
          for (int64_t q = 0; q < 4; ++q) {
            std::fill(hr + q * H + j0, hr + q * H + j1, 0.0f);
            kernels::SgemvColumnsWithPackedB(hs, pk->rt_packed[d], 1.f, hr, (q * H + j0) / 64, (q * H + j1) / 64);
          }
          lstm_cell(acts, pi, po, pf, hr, xr, cs, h_next.data(), j0, j1);
        });
        std::copy(h_next.begin(), h_next.end(), hs);
        if (want_y) std::copy(hs, hs + H, y_at(t, d, 0));
        continue;
      }
      // Recurrent part for all batch rows: hr = H_prev * R^T (GRU without linear_before_reset: only
      // the z and r gates here; the h gate needs r first).
      const int64_t rec_cols = (a_.cell == CellType::kGru && !gru_lbr) ? 2 * H : GH;
      for (int64_t b = 0; b < Bt; ++b) std::fill(hr + b * GH, hr + b * GH + rec_cols, 0.0f);
      if (gru_lbr) {
        for (int64_t b = 0; b < Bt; ++b) std::copy(rb + 2 * H, rb + 3 * H, hr + b * GH + 2 * H);
      }
      if (pk->quantized) {
        QuantizedMatMulAccumulate(ctx.thread_pool(), Bt, hs, pk->r_q[d], hr, GH, &pa);
      } else if (!pk->rt_packed.empty() && Bt == 1) {
        kernels::SgemvWithPackedB(hs, pk->rt_packed[d], 1.f, hr, ctx.thread_pool());
      } else if (!pk->rt_packed.empty()) {
        kernels::SgemmWithPackedB(false, Bt, 1.f, hs, H, pk->rt_packed[d], 1.f, hr, GH, ctx.thread_pool());
      } else {
        MatMulAccumulate(ctx.thread_pool(), Bt, rec_cols, H, hs, H, rt, GH, hr, GH);
      }
      if (a_.cell == CellType::kGru && !gru_lbr) {
        // z, r first, then (r (.) H_prev) * Rh^T.
        for (int64_t b = 0; b < Bt; ++b) {
          if (s >= lens[b]) continue;
          const int64_t t = reverse ? lens[b] - 1 - s : s;
          float* g = hr + b * GH;
          const float* xr = xw + (t * Bt + b) * GH;
          for (int64_t j = 0; j < 2 * H; ++j) g[j] += xr[j];
          do_clip(g, 2 * H);
          acts[0].Apply(g, 2 * H);
          const float* hp = hs + b * H;
          float* rhb = rh + b * H;
          for (int64_t j = 0; j < H; ++j) rhb[j] = g[H + j] * hp[j];
        }
        for (int64_t b = 0; b < Bt; ++b) std::fill(hr + b * GH + 2 * H, hr + b * GH + 3 * H, 0.0f);
        if (pk->quantized) {
          QuantizedMatMulAccumulate(ctx.thread_pool(), Bt, rh, pk->rh_q[d], hr + 2 * H, GH, &pa);
        } else {
          MatMulAccumulate(ctx.thread_pool(), Bt, H, H, rh, H, rt + 2 * H, GH, hr + 2 * H, GH);
        }
      }
      for (int64_t b = 0; b < Bt; ++b) {
        if (s >= lens[b]) continue;
        const int64_t t = reverse ? lens[b] - 1 - s : s;
        const float* xr = xw + (t * Bt + b) * GH;
        float* g = hr + b * GH;
        float* hp = hs + b * H;
        switch (a_.cell) {
          case CellType::kRnn: {
            for (int64_t j = 0; j < H; ++j) g[j] += xr[j];
            do_clip(g, H);
            acts[0].Apply(g, H);
            std::copy(g, g + H, hp);
            break;
          }
          case CellType::kGru: {
            float* z = g;
            float* r = g + H;
            float* hh = g + 2 * H;
            if (gru_lbr) {
              for (int64_t j = 0; j < 2 * H; ++j) g[j] += xr[j];
              do_clip(g, 2 * H);
              acts[0].Apply(g, 2 * H);
              for (int64_t j = 0; j < H; ++j) hh[j] = xr[2 * H + j] + r[j] * hh[j];
            } else {
              for (int64_t j = 0; j < H; ++j) hh[j] += xr[2 * H + j];
            }
            do_clip(hh, H);
            acts[1].Apply(hh, H);
            for (int64_t j = 0; j < H; ++j) hp[j] = (1.0f - z[j]) * hh[j] + z[j] * hp[j];
            break;
          }
          case CellType::kLstm: {
            lstm_cell(acts, pi, po, pf, g, xr, cs + b * H, hp, 0, H);
            break;
          }
        }
        if (want_y) std::copy(hp, hp + H, y_at(t, d, b));
      }
    }
  }

  // Write outputs (states from the internal [D, B, H] order) in X's type.
  auto emit = [&](size_t idx, const Shape& shape, const float* data, bool state) -> Status {
    if (!ctx.output_wanted(idx)) return Status::Ok();
    QK_ASSIGN_OR_RETURN(Tensor * o, ctx.Output(idx, dtype, shape));
    auto put = [&](int64_t to, const float* src, int64_t n) {
      switch (dtype) {
        case DType::kFloat32: std::copy(src, src + n, o->data<float>() + to); break;
        case DType::kFloat64:
          for (int64_t i = 0; i < n; ++i) o->data<double>()[to + i] = src[i];
          break;
        case DType::kFloat16:
          for (int64_t i = 0; i < n; ++i) o->data<uint16_t>()[to + i] = FloatToHalf(src[i]);
          break;
        default:
          for (int64_t i = 0; i < n; ++i) o->data<uint16_t>()[to + i] = FloatToBFloat16(src[i]);
      }
    };
    if (!state || !batch_major) {
      put(0, data, o->numel());
    } else {
      for (int dd = 0; dd < D; ++dd)
        for (int64_t b = 0; b < Bt; ++b) put((b * D + dd) * H, data + (dd * Bt + b) * H, H);
    }
    return Status::Ok();
  };
  if (dtype != DType::kFloat32) QK_RETURN_IF_ERROR(emit(0, y_shape, y, false));  // float32: Y is the output
  QK_RETURN_IF_ERROR(emit(1, st_shape, h_state, true));
  if (a_.cell == CellType::kLstm) QK_RETURN_IF_ERROR(emit(2, st_shape, c_state, true));
  return Status::Ok();
}

// Int8 W [D, GH, I] / R [D, GH, H] with scale/zero point over axis 1 (gate rows) or per tensor.
Status PackQuantizedWeights(const RnnAttrs& a, const KernelInit& init, Packed* p) {
  const Tensor* w = init.ConstantInput(1);
  const Tensor* r = init.ConstantInput(2);
  QK_CHECK_ARG(w && r, "int8 W and R must be constants");
  QK_CHECK_ARG((w->dtype() == DType::kInt8 || w->dtype() == DType::kUInt8) && r->dtype() == w->dtype(),
               "int8 W and R must both be int8 or uint8 (got {} and {})", DTypeName(w->dtype()), DTypeName(r->dtype()));
  QK_CHECK_ARG(w->rank() == 3 && r->rank() == 3, "W and R must have rank 3");
  const int64_t H = a.hidden_size > 0 ? a.hidden_size : r->dim(2);
  QK_CHECK_ARG(H >= 1 && w->dim(0) == a.num_dirs && w->dim(1) == a.gates * H && r->dim(0) == a.num_dirs &&
                   r->dim(1) == a.gates * H && r->dim(2) == H,
               "W {} / R {} do not match {} directions x {} gates x hidden {}", ShapeToString(w->shape()),
               ShapeToString(r->shape()), a.num_dirs, a.gates, H);
  p->hidden = H;
  p->gh = a.gates * H;
  p->input_size = w->dim(2);
  p->quantized = true;
  const bool is_signed = w->dtype() == DType::kInt8;
  const bool split_h = a.cell == CellType::kGru && !a.linear_before_reset;
  // Packs rows [row0, row0 + rows) of direction d of t ([D, GH, K]) as B = those rows transposed.
  auto pack = [&](const Tensor& t, size_t scale_idx, size_t zp_idx, int d, int64_t row0, int64_t rows,
                  QuantizedGemmWeights* out) -> Status {
    const Tensor* scale = init.ConstantInput(scale_idx);
    const Tensor* zp = init.ConstantInput(zp_idx);
    QK_CHECK_ARG(scale && scale->dtype() == DType::kFloat32 && (scale->numel() == 1 || scale->numel() == p->gh),
                 "input {}: the scale must be a float constant with 1 or {} elements", scale_idx, p->gh);
    QK_CHECK_ARG(!init.node.HasInput(zp_idx) || (zp && zp->dtype() == t.dtype() && zp->numel() == scale->numel()),
                 "input {}: the zero point must be a constant like its scale", zp_idx);
    const int64_t K = t.dim(2);
    const std::vector<float> s = scale->ToFloatVector();
    std::vector<int32_t> z(s.size(), 0);
    if (zp)
      for (size_t i = 0; i < z.size(); ++i) z[i] = static_cast<int32_t>(zp->GetAsInt64(static_cast<int64_t>(i)));
    const bool per_row = s.size() > 1;
    out->scale = per_row ? std::vector<float>(s.begin() + row0, s.begin() + row0 + rows) : s;
    const std::vector<int32_t> zps = per_row ? std::vector<int32_t>(z.begin() + row0, z.begin() + row0 + rows) : z;
    const auto* base = static_cast<const uint8_t*>(t.raw_data()) + (d * p->gh + row0) * K;
    out->packed = kernels::PackQWeights(base, is_signed, /*trans_b=*/true, K, rows, K, zps, kernels::DefaultQGemmIsa());
    return Status::Ok();
  };
  p->w_q.resize(a.num_dirs);
  p->r_q.resize(a.num_dirs);
  p->rh_q.resize(split_h ? a.num_dirs : 0);
  for (int d = 0; d < a.num_dirs; ++d) {
    QK_RETURN_IF_ERROR(pack(*w, 8, 9, d, 0, p->gh, &p->w_q[d]));
    QK_RETURN_IF_ERROR(pack(*r, 10, 11, d, 0, split_h ? 2 * H : p->gh, &p->r_q[d]));
    if (split_h) QK_RETURN_IF_ERROR(pack(*r, 10, 11, d, 2 * H, H, &p->rh_q[d]));
  }
  return Status::Ok();
}

KernelFactory MakeQuantizedFactory(CellType cell) {
  return [cell](const KernelInit& init) -> StatusOr<std::unique_ptr<OpKernel>> {
    QK_ASSIGN_OR_RETURN(RnnAttrs a, ReadAttrs(init, cell));
    Packed p;
    QK_RETURN_IF_ERROR(PackQuantizedWeights(a, init, &p));
    return std::unique_ptr<OpKernel>(new RnnKernel(std::move(a), std::move(p)));
  };
}

KernelFactory MakeFactory(CellType cell) {
  return [cell](const KernelInit& init) -> StatusOr<std::unique_ptr<OpKernel>> {
    QK_ASSIGN_OR_RETURN(RnnAttrs a, ReadAttrs(init, cell));
    std::optional<Packed> packed;
    const Tensor* w = init.ConstantInput(1);
    const Tensor* r = init.ConstantInput(2);
    if (w && r) {
      Packed p;
      QK_RETURN_IF_ERROR(PackWeights(a, *w, *r, &p));
      packed = std::move(p);
    }
    return std::unique_ptr<OpKernel>(new RnnKernel(std::move(a), std::move(packed)));
  };
}

}  // namespace

void RegisterRnnOps(KernelRegistry& r) {
  r.Register("", "RNN", MakeFactory(CellType::kRnn));
  r.Register("", "GRU", MakeFactory(CellType::kGru));
  r.Register("", "LSTM", MakeFactory(CellType::kLstm));
  r.Register(kQuantkitDomain, "RNN", MakeQuantizedFactory(CellType::kRnn));
  r.Register(kQuantkitDomain, "GRU", MakeQuantizedFactory(CellType::kGru));
  r.Register(kQuantkitDomain, "LSTM", MakeQuantizedFactory(CellType::kLstm));
}

}  // namespace quantkit::rt
